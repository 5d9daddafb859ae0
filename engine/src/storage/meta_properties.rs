//! Kafka's `meta.properties` (version 1) in the first log directory, the metadata directory: the
//! node and cluster it belongs to, and the directory's own id (KIP-858). Kafka's tools read it:
//! `kafka-metadata-quorum.sh add-controller` takes the new voter's directory id from the first
//! log directory's file. The metadata quorum uses that id (KIP-853's replica key) to tell a
//! voter from a node that comes back under its id with another, empty, metadata directory,
//! which must not vote with a log it does not have.
//!
//! Data directories from before this file get one at their next start: a new directory id, and
//! the cluster id once the node knows it. The other log directories get none: shardlog has no
//! use for their ids (Kafka's JBOD assignment), and a directory found offline at start (an
//! unmounted filesystem's empty mount point) must not be written into.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine as _;

pub const FILE: &str = "meta.properties";

/// What one log directory's `meta.properties` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub node_id: i32,
    /// None until the node learns its cluster's id (a node that joins a dynamic quorum).
    pub cluster_id: Option<String>,
    pub directory_id: uuid::Uuid,
}

/// Kafka's text form of a Uuid: URL-safe base64 without padding (22 characters).
pub fn uuid_text(id: uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Reads Kafka's text form of a Uuid.
pub fn parse_uuid(text: &str) -> Option<uuid::Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

pub fn read(dir: &Path) -> Result<Option<MetaProperties>> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let props = crate::config::parse_properties(&text);
    let damaged = |what: &str| format!("{} is damaged ({what}): restore it, or move the directory aside", path.display());
    if props.get("version").map(String::as_str) != Some("1") {
        bail!("{} is not a version 1 meta.properties (a ZooKeeper-era Kafka directory?): this node reads version 1 only", path.display());
    }
    let node_id = props.get("node.id").and_then(|v| v.parse().ok()).with_context(|| damaged("no node.id"))?;
    let directory_id = props.get("directory.id").and_then(|v| parse_uuid(v)).with_context(|| damaged("no directory.id"))?;
    Ok(Some(MetaProperties { node_id, cluster_id: props.get("cluster.id").cloned(), directory_id }))
}

fn write(dir: &Path, meta: &MetaProperties) -> Result<()> {
    use std::io::Write as _;
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    // Kafka writes the keys in this order, after a comment line.
    let mut text = String::from("#\n#Written by shardlog\n");
    if let Some(cluster_id) = &meta.cluster_id {
        text.push_str(&format!("cluster.id={cluster_id}\n"));
    }
    text.push_str(&format!("directory.id={}\nnode.id={}\nversion=1\n", uuid_text(meta.directory_id), meta.node_id));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all().with_context(|| format!("fsyncing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("fsyncing {}", dir.display()))?;
    Ok(())
}

/// Makes sure `dir` carries a `meta.properties` for `node_id` (and `cluster_id`, once known),
/// creating it with `new_directory_id` (or a random id) if it has none, and returns it. A
/// file of another node or another cluster is refused, as Kafka refuses to start on it.
pub fn ensure(dir: &Path, node_id: i32, cluster_id: Option<&str>, new_directory_id: Option<uuid::Uuid>) -> Result<MetaProperties> {
    let path = dir.join(FILE);
    let meta = match read(dir)? {
        Some(found) => {
            if found.node_id != node_id {
                bail!(
                    "{} belongs to node.id={}, but this node is node.id={node_id}: is node.id right, or log.dirs another node's?",
                    path.display(),
                    found.node_id
                );
            }
            match (found.cluster_id.as_deref(), cluster_id) {
                (Some(theirs), Some(ours)) if theirs != ours => bail!(
                    "{} belongs to cluster {theirs}, but this node is in cluster {ours}: is cluster.id right, or log.dirs another cluster's?",
                    path.display()
                ),
                (None, Some(ours)) => MetaProperties { cluster_id: Some(ours.to_string()), ..found },
                _ => return Ok(found),
            }
        }
        None => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the log directory {}", dir.display()))?;
            MetaProperties { node_id, cluster_id: cluster_id.map(str::to_string), directory_id: new_directory_id.unwrap_or_else(uuid::Uuid::new_v4) }
        }
    };
    write(dir, &meta)?;
    Ok(meta)
}

/// [`ensure`] on the first log directory (the metadata directory), whose directory id names
/// the node in the metadata quorum; returns that id.
pub fn ensure_metadata_dir(log_dirs: &[std::path::PathBuf], node_id: i32, cluster_id: Option<&str>, directory_id: Option<uuid::Uuid>) -> Result<uuid::Uuid> {
    let dir = log_dirs.first().context("no log directory (log.dirs is empty)")?;
    Ok(ensure(dir, node_id, cluster_id, directory_id)?.directory_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_kafkas_base64_and_reads_back() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = uuid_text(id);
        assert_eq!(text.len(), 22);
        assert_eq!(parse_uuid(&text), Some(id));
        assert_eq!(uuid_text(uuid::Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(parse_uuid("not a uuid"), None);
        assert_eq!(parse_uuid("AAAA"), None);
    }

    #[test]
    fn ensure_creates_keeps_fills_in_the_cluster_and_refuses_another_node_or_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let given = uuid::Uuid::new_v4();
        let made = ensure(dir.path(), 3, None, Some(given)).unwrap();
        assert_eq!(made, MetaProperties { node_id: 3, cluster_id: None, directory_id: given });
        // Kafka's loader needs these keys; a later start keeps the id, whatever it is offered.
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains("version=1\n") && text.contains("node.id=3\n") && text.contains(&format!("directory.id={}\n", uuid_text(given))));
        let again = ensure(dir.path(), 3, Some("c1"), Some(uuid::Uuid::new_v4())).unwrap();
        assert_eq!(again, MetaProperties { node_id: 3, cluster_id: Some("c1".into()), directory_id: given });
        assert_eq!(read(dir.path()).unwrap(), Some(again));
        let other_node = ensure(dir.path(), 4, Some("c1"), None).unwrap_err().to_string();
        assert!(other_node.contains("belongs to node.id=3"), "{other_node}");
        let other_cluster = ensure(dir.path(), 3, Some("c2"), None).unwrap_err().to_string();
        assert!(other_cluster.contains("belongs to cluster c1"), "{other_cluster}");
        std::fs::write(dir.path().join(FILE), "version=1\nnode.id=3\n").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("no directory.id"));
        std::fs::write(dir.path().join(FILE), "broker.id=3\nversion=0\n").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("version 1"));
    }

    #[test]
    fn only_the_metadata_directory_gets_one() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let given = uuid::Uuid::new_v4();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(ensure_metadata_dir(&dirs, 1, Some("c"), Some(given)).unwrap(), given);
        assert_eq!(read(b.path()).unwrap(), None, "another log directory is not written into");
        assert_eq!(ensure_metadata_dir(&dirs, 1, Some("c"), None).unwrap(), given);
    }
}
