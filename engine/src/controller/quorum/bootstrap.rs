//! A dynamic quorum's first voters (KIP-853). With `controller.quorum.bootstrap.servers` no
//! configuration names the voters: the metadata log does (a [`QuorumVoters`] record, Kafka's
//! VotersRecord). A controller that has no log yet must be told what to start from, as
//! `kafka-storage.sh format` tells a Kafka controller, by `shardlog format`:
//!
//! - `--standalone`: this controller is the quorum's only voter (a new cluster, grown later);
//! - `--initial-controllers 1@host:port,...`: these are the first voters (this node among them);
//! - `--no-initial-controllers`: this controller joins a running quorum; it follows the log as
//!   an observer until the quorum adds it as a voter.
//!
//! What format decides is kept in [`BOOTSTRAP_FILE`] in the metadata directory and read at each
//! start until the log's own voter set takes over. A static quorum, the one-node default and a
//! broker-only node need no format step, and data directories from before it start as they did.
//!
//! [`QuorumVoters`]: crate::metadata::records::MetadataRecord::QuorumVoters

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{BrokerConfig, QuorumVoter};
use crate::storage::meta_properties;

/// What `shardlog format` wrote, in the metadata directory.
pub const BOOTSTRAP_FILE: &str = "quorum-bootstrap.json";

/// A controller's formatted start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Formatted {
    /// The node id it was formatted for: another node's directory is refused.
    pub node_id: i32,
    /// The first voters (node id, controller listener); empty: join a running quorum.
    pub initial_voters: Vec<(i32, String)>,
    /// The first voters' metadata directory ids, where known: this node's own always (what
    /// its meta.properties says), the others' where `--initial-controllers` names them.
    /// Formatted before ids were kept: none.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub directory_ids: std::collections::BTreeMap<i32, uuid::Uuid>,
}

/// How `shardlog format` names the first voters, as kafka-storage's flags do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatMode {
    Standalone,
    InitialControllers(Vec<QuorumVoter>),
    NoInitialControllers,
}

pub fn read(meta_dir: &Path) -> Result<Option<Formatted>> {
    let path = meta_dir.join(BOOTSTRAP_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{} is damaged: format the node again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write(meta_dir: &Path, formatted: &Formatted) -> Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(meta_dir).with_context(|| format!("creating the metadata directory {}", meta_dir.display()))?;
    let path = meta_dir.join(BOOTSTRAP_FILE);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(formatted).expect("formatted serializes"))?;
    f.sync_all().with_context(|| format!("fsyncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(meta_dir)?.sync_all()?;
    Ok(())
}

/// Whether the metadata directory already holds a quorum's state (formatted, or a log).
fn formatted_already(meta_dir: &Path) -> bool {
    meta_dir.join(BOOTSTRAP_FILE).exists() || meta_dir.join(super::log_store::LOG_FILE).exists()
}

/// `shardlog format`: checks `mode` against the configuration with kafka-storage's rules and
/// writes what it decides. Returns what was done, for the operator.
pub fn format(config: &BrokerConfig, meta_dir: &Path, mode: Option<FormatMode>, ignore_formatted: bool) -> Result<String> {
    let q = &config.quorum;
    if mode.is_some() && !q.voters.is_empty() {
        bail!(
            "controller.quorum.voters is set, so the voters are static and there is nothing to format: --standalone, \
             --initial-controllers and --no-initial-controllers are for a dynamic quorum (remove controller.quorum.voters and set \
             controller.quorum.bootstrap.servers instead)"
        );
    }
    if mode.is_some() && !q.controller {
        bail!("process.roles={} has no controller: --standalone, --initial-controllers and --no-initial-controllers only format controllers", roles(config));
    }
    if !q.dynamic() || !q.controller {
        return Ok(String::from(
            "nothing to format: only a controller of a dynamic quorum (controller.quorum.bootstrap.servers without controller.quorum.voters) \
             needs it; this node starts as it is",
        ));
    }
    let Some(mode) = mode else {
        bail!(
            "controller.quorum.voters is not set on this controller, so name its first voters: --standalone (this node alone), \
             --initial-controllers ID@HOST:PORT,... (these nodes), or --no-initial-controllers (join a running quorum)"
        );
    };
    if formatted_already(meta_dir) {
        if ignore_formatted {
            return Ok(format!("{} is already formatted: left as it is (--ignore-formatted)", meta_dir.display()));
        }
        bail!("{} is already formatted (or holds a metadata log): refusing to format it again; --ignore-formatted skips it", meta_dir.display());
    }
    let own_directory_id = match &mode {
        FormatMode::InitialControllers(voters) => voters.iter().find(|v| v.node_id == config.node_id).and_then(|v| v.directory_id),
        _ => None,
    };
    let own = config
        .controller_listener()
        .map(|l| l.bind.to_string())
        .context("a dynamic quorum's controller needs its controller listener (controller.listener.names, in listeners)")?;
    let mut directory_ids = std::collections::BTreeMap::new();
    let initial_voters = match mode {
        FormatMode::Standalone => vec![(config.node_id, own)],
        FormatMode::NoInitialControllers => Vec::new(),
        FormatMode::InitialControllers(voters) => {
            directory_ids.extend(QuorumVoter::directory_ids(&voters));
            let Some(me) = voters.iter().find(|v| v.node_id == config.node_id) else {
                bail!(
                    "node.id={} is not among --initial-controllers: format it with --no-initial-controllers and add it to the quorum \
                     with AddRaftVoter (kafka-metadata-quorum.sh add-controller) once it runs",
                    config.node_id
                );
            };
            if me.address.rsplit_once(':').map(|(_, p)| p) != own.rsplit_once(':').map(|(_, p)| p) {
                bail!("--initial-controllers names node {} at {}, but its controller listener binds {own}: they must agree", me.node_id, me.address);
            }
            let mut list: Vec<(i32, String)> = voters.into_iter().map(|v| (v.node_id, v.address)).collect();
            list.sort();
            list
        }
    };
    // The metadata directory (the first log directory) gets Kafka's meta.properties, whose id is this node's in
    // the quorum. A directory that has one keeps it, and must then be the one named.
    let directory_id = meta_properties::ensure_metadata_dir(&config.log_dirs, config.node_id, config.cluster_id.as_deref(), own_directory_id)?;
    if own_directory_id.is_some_and(|named| named != directory_id) {
        bail!(
            "--initial-controllers names node {} with directory id {}, but {} already has directory id {}: name that one",
            config.node_id,
            meta_properties::uuid_text(own_directory_id.expect("checked")),
            config.log_dirs[0].join(meta_properties::FILE).display(),
            meta_properties::uuid_text(directory_id)
        );
    }
    directory_ids.insert(config.node_id, directory_id);
    let formatted = Formatted { node_id: config.node_id, initial_voters, directory_ids };
    write(meta_dir, &formatted)?;
    Ok(if formatted.initial_voters.is_empty() {
        format!("formatted {}: node {} joins the running quorum as an observer until it is added as a voter", meta_dir.display(), config.node_id)
    } else {
        let list: Vec<String> = formatted.initial_voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
        format!("formatted {}: the quorum starts with voters {}", meta_dir.display(), list.join(","))
    })
}

/// Parses `--initial-controllers`: `ID@HOST:PORT[:DIRECTORY_ID],...`, Kafka's form, where
/// the directory id is the controller's metadata directory id (Kafka's base64 text).
pub fn parse_initial_controllers(value: &str) -> Result<Vec<QuorumVoter>> {
    let mut cleaned = Vec::new();
    let mut ids = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, rest) = item.split_once('@').with_context(|| format!("--initial-controllers entry {item:?} must be ID@HOST:PORT"))?;
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let (address, directory_id) = match parts.as_slice() {
            // host:port:directory-id (a directory id is never a port number)
            [dir_id, port, host] if port.parse::<u16>().is_ok() && dir_id.parse::<u16>().is_err() => {
                let parsed = meta_properties::parse_uuid(dir_id)
                    .with_context(|| format!("--initial-controllers entry {item:?}: {dir_id:?} is not a directory id (22 characters of Kafka's base64)"))?;
                (format!("{host}:{port}"), Some(parsed))
            }
            _ => (rest.to_string(), None),
        };
        cleaned.push(format!("{id}@{address}"));
        ids.push(directory_id);
    }
    let mut voters = crate::config::parse_quorum_voters(&cleaned.join(",")).map_err(|e| anyhow::anyhow!("--initial-controllers: {e:#}"))?;
    if voters.is_empty() {
        bail!("--initial-controllers names no controller");
    }
    for (voter, directory_id) in voters.iter_mut().zip(ids) {
        voter.directory_id = directory_id;
    }
    Ok(voters)
}

fn roles(config: &BrokerConfig) -> &'static str {
    match (config.quorum.broker, config.quorum.controller) {
        (true, true) => "broker,controller",
        (true, false) => "broker",
        _ => "controller",
    }
}

/// Where a controller of a dynamic quorum starts from: the voters the metadata image names
/// (the log's own record, once one is committed), else what format decided. None: it was
/// formatted to join a running quorum, so the voters are asked for.
pub fn start_voters(meta_dir: &Path, node_id: i32, image_voters: Vec<QuorumVoter>) -> Result<Option<Vec<QuorumVoter>>> {
    if !image_voters.is_empty() {
        return Ok(Some(image_voters));
    }
    let Some(formatted) = read(meta_dir)? else {
        bail!(
            "this controller of a dynamic quorum (controller.quorum.bootstrap.servers) has no metadata in {} and was not formatted: \
             run `shardlog format --config FILE` with --standalone, --initial-controllers or --no-initial-controllers first, as \
             kafka-storage.sh format is run for a Kafka controller",
            meta_dir.display()
        );
    };
    if formatted.node_id != node_id {
        bail!(
            "{} was formatted for node.id={}, but this node is node.id={node_id}: is node.id right, or log.dirs another node's?",
            meta_dir.join(BOOTSTRAP_FILE).display(),
            formatted.node_id
        );
    }
    let voters = QuorumVoter::joined(&formatted.initial_voters, &formatted.directory_ids);
    Ok((!voters.is_empty()).then_some(voters))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> BrokerConfig {
        BrokerConfig::from_properties(&crate::config::parse_properties(text)).unwrap()
    }

    const DYNAMIC: &str = "process.roles=broker,controller\nnode.id=1\nlisteners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n\
                           controller.listener.names=CONTROLLER\ncontroller.quorum.bootstrap.servers=127.0.0.1:19093\n";

    #[test]
    fn format_follows_kafka_storages_rules_and_start_reads_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&format!("{DYNAMIC}log.dirs={}\n", dir.path().display()));
        let meta = dir.path();
        // A dynamic controller must be told its first voters, and nothing is written until it is.
        assert!(format(&c, meta, None, false).unwrap_err().to_string().contains("--standalone"));
        assert!(start_voters(meta, 1, Vec::new()).unwrap_err().to_string().contains("shardlog format"));
        let said = format(&c, meta, Some(FormatMode::Standalone), false).unwrap();
        assert!(said.contains("1@127.0.0.1:19093"), "{said}");
        let voters = start_voters(meta, 1, Vec::new()).unwrap().unwrap();
        // The voter is this node with the directory id its meta.properties was given.
        let own = meta_properties::read(meta).unwrap().unwrap();
        assert_eq!(own.node_id, 1);
        assert_eq!(voters, vec![QuorumVoter { node_id: 1, address: "127.0.0.1:19093".into(), directory_id: Some(own.directory_id) }]);
        // The image's voter set wins over what format wrote.
        let image = vec![voters[0].clone(), QuorumVoter { node_id: 2, address: "h:2".into(), directory_id: None }];
        assert_eq!(start_voters(meta, 1, image).unwrap().unwrap().len(), 2);
        // Formatted once; another node's directory is refused.
        assert!(format(&c, meta, Some(FormatMode::NoInitialControllers), false).unwrap_err().to_string().contains("already formatted"));
        assert!(format(&c, meta, Some(FormatMode::NoInitialControllers), true).unwrap().contains("left as it is"));
        assert!(start_voters(meta, 2, Vec::new()).unwrap_err().to_string().contains("formatted for node.id=1"));

        let other = tempfile::tempdir().unwrap();
        let c = config(&format!("{DYNAMIC}log.dirs={}\n", other.path().display()));
        format(&c, other.path(), Some(FormatMode::NoInitialControllers), false).unwrap();
        assert_eq!(start_voters(other.path(), 1, Vec::new()).unwrap(), None);
    }

    #[test]
    fn format_refuses_static_voters_brokers_and_initial_controllers_without_this_node() {
        let dir = tempfile::tempdir().unwrap();
        let static_voters = config(
            "process.roles=broker,controller\nnode.id=1\nlisteners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n\
             controller.listener.names=CONTROLLER\ncontroller.quorum.voters=1@127.0.0.1:19093\n",
        );
        assert!(format(&static_voters, dir.path(), Some(FormatMode::Standalone), false).unwrap_err().to_string().contains("controller.quorum.voters is set"));
        assert!(format(&static_voters, dir.path(), None, false).unwrap().contains("nothing to format"));
        let broker = config(
            "process.roles=broker\nnode.id=5\nlisteners=PLAINTEXT://127.0.0.1:19092\ncontroller.listener.names=CONTROLLER\n\
             controller.quorum.bootstrap.servers=127.0.0.1:19093\n",
        );
        assert!(format(&broker, dir.path(), Some(FormatMode::Standalone), false).unwrap_err().to_string().contains("only format controllers"));
        let c = config(&format!("{DYNAMIC}log.dirs={}\n", dir.path().display()));
        let others = parse_initial_controllers("2@h:2,3@h:3").unwrap();
        assert!(format(&c, dir.path(), Some(FormatMode::InitialControllers(others)), false).unwrap_err().to_string().contains("--no-initial-controllers"));
        assert!(!dir.path().join(BOOTSTRAP_FILE).exists());
        let all = parse_initial_controllers("2@h:2:pJfKtFSsQtmL3dXvHw2jBg,1@127.0.0.1:19093:AAAAAAAAAAAAAAAAAAAAAQ").unwrap();
        format(&c, dir.path(), Some(FormatMode::InitialControllers(all)), false).unwrap();
        let formatted = read(dir.path()).unwrap().unwrap();
        assert_eq!(formatted.initial_voters, vec![(1, "127.0.0.1:19093".to_string()), (2, "h:2".to_string())]);
        // Kafka's directory ids are kept: this node's goes into its meta.properties.
        let (two, one) = (meta_properties::parse_uuid("pJfKtFSsQtmL3dXvHw2jBg").unwrap(), uuid::Uuid::from_u128(1));
        assert_eq!(formatted.directory_ids, std::collections::BTreeMap::from([(1, one), (2, two)]));
        assert_eq!(meta_properties::read(dir.path()).unwrap().unwrap().directory_id, one);
        assert!(parse_initial_controllers("1@h:1:not-an-id").unwrap_err().to_string().contains("not a directory id"));
        assert!(parse_initial_controllers("").is_err() && parse_initial_controllers("x@h:1").is_err() && parse_initial_controllers("1@h").is_err());
    }
}
