//! Cluster metadata: topics, their partitions, and the placement table that says which shard
//! and which log directory own each partition.
//!
//! Shard 0 is the controller: it alone changes metadata, persists it (write to a temporary
//! file, fsync, rename, fsync the directory) and then broadcasts the new version to every
//! shard, each of which keeps its own read-only copy. Requests never take a lock to read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub mod features;
pub mod records;

/// The internal topics: committed offsets of consumer groups, and transaction state. The broker
/// creates them, and their partitions place the group and transaction coordinators.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Topics the broker keeps for itself.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// Kafka prints cluster ids as URL-safe base64 of a UUID, without padding.
pub fn base64_uuid(id: uuid::Uuid) -> String {
    crate::storage::meta_properties::uuid_text(id)
}

pub const METADATA_FILE: &str = "cluster-metadata.json";
/// A log directory with less free space than this gets no new partitions while another has more.
pub const LOG_DIR_FREE_BYTES_MIN: u64 = 1 << 30;

/// One partition as this node sees it: where the cluster keeps it (replicas, leader, epochs:
/// replicated by the metadata log) and, when this node holds a replica, where (shard and log
/// directory: this node's own choice, which no other node knows).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionPlacement {
    /// The owner shard, when `hosted`.
    pub shard: usize,
    /// Index into `log.dirs`, when `hosted`.
    pub log_dir: usize,
    /// Whether this node holds a replica. An image written before brokers were clustered has
    /// every partition here.
    #[serde(default = "hosted_by_default")]
    pub hosted: bool,
    /// Broker ids holding a replica, the preferred leader first. Empty in an image written
    /// before replicas were recorded: then this node is the only one.
    #[serde(default)]
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    #[serde(default)]
    pub isr: Vec<i32>,
    /// The leader's broker id, or [`records::NO_LEADER`].
    #[serde(default = "no_leader")]
    pub leader: i32,
    #[serde(default)]
    pub leader_epoch: i32,
    #[serde(default)]
    pub partition_epoch: i32,
    /// While a reassignment (KIP-455) moves the partition: the replicas it adds, which are in
    /// `replicas` and catch up as followers until all are in the ISR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// ... and those it takes out, which stay in `replicas` (and may lead) until it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

fn hosted_by_default() -> bool {
    true
}

fn no_leader() -> i32 {
    records::NO_LEADER
}

impl PartitionPlacement {
    /// A partition of this node alone (replicas are filled in when it is recorded).
    pub fn local(shard: usize, log_dir: usize) -> PartitionPlacement {
        PartitionPlacement {
            shard,
            log_dir,
            hosted: true,
            replicas: Vec::new(),
            isr: Vec::new(),
            leader: records::NO_LEADER,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// Whether a reassignment is moving it.
    pub fn reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic id (KIP-516), as a UUID.
    pub id: uuid::Uuid,
    pub partitions: Vec<PartitionPlacement>,
    /// Per-topic overrides, with Kafka's names (CreateTopics configs).
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: String,
    /// Bumped on every change.
    pub version: u64,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Producer ids below this may have been handed out; the controller allocates them in
    /// blocks and persists only the end of the current block.
    #[serde(default)]
    pub producer_id_block_end: i64,
    /// Kafka ACLs (CreateAcls, DeleteAcls), enforced when an authorizer is configured.
    #[serde(default)]
    pub acls: crate::authorizer::AclSet,
    /// Dynamic configs of this broker (AlterConfigs on BROKER resource "<node.id>").
    #[serde(default)]
    pub broker_configs: BTreeMap<String, String>,
    /// Dynamic configs of the other brokers, by node id: kept so that a snapshot of this image
    /// gives every broker its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other_broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Cluster-wide dynamic broker defaults (AlterConfigs on BROKER resource "").
    #[serde(default)]
    pub broker_default_configs: BTreeMap<String, String>,
    /// Dynamic group configs (KIP-848: `consumer.session.timeout.ms`, ...), by group id: set
    /// whether or not the group exists, as in Kafka.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Registered brokers, by node id (RegisterBrokerRecord): where clients reach each.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// The metadata log's index of the last record in this image (0: none yet, or an image
    /// from before the metadata log).
    #[serde(default)]
    pub applied_index: u64,
    /// Finalized feature levels (KIP-584) by Kafka's feature names; a feature at level 0 is
    /// absent, as in Kafka. Empty in an image from before features were recorded, until the
    /// active controller writes the defaults (see [`features::bootstrap_levels`]).
    #[serde(default)]
    pub finalized_features: BTreeMap<String, i16>,
    /// A dynamic quorum's voters (KIP-853), by node id with each one's controller listener
    /// (`host:port`): where a restarted controller finds the quorum, and what DescribeQuorum
    /// lists. Empty with a static `controller.quorum.voters` or the one-node default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quorum_voters: Vec<(i32, String)>,
    /// The metadata directory id of each of `quorum_voters`, where the quorum recorded one
    /// (KIP-853: a voter is a node id and a directory).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quorum_voter_directory_ids: BTreeMap<i32, uuid::Uuid>,
    /// The metadata log index of the record that last changed `finalized_features`: the
    /// epoch ApiVersions reports, which only grows, so a client tells the newer of two
    /// answers. -1 while none is recorded, as Kafka answers then.
    #[serde(default = "no_features_epoch")]
    pub finalized_features_epoch: i64,
    /// Client quotas (AlterClientQuotas), by entity.
    #[serde(default, skip_serializing_if = "crate::quota::ClientQuotas::is_empty")]
    pub client_quotas: crate::quota::ClientQuotas,
}

fn no_features_epoch() -> i64 {
    -1
}

/// A broker as it registered with the controller: how clients reach it, per listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub node_id: i32,
    /// A new one at every start, so that a restart is told from a second process that claims
    /// the same node id.
    pub incarnation_id: uuid::Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Not heard from for `broker.session.timeout.ms`: leads nothing, and is not listed to
    /// clients, until it heartbeats again.
    #[serde(default)]
    pub fenced: bool,
    /// The feature levels this broker supports, by name (min, max): UpdateFeatures finalizes
    /// no level a registered broker cannot run. Empty from versions before it was recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub supported_features: BTreeMap<String, (i16, i16)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// The listener's name (PLAINTEXT, SASL_SSL, ...): a client is sent to the listener of the
    /// same name it asked on.
    pub listener: String,
    pub host: String,
    pub port: u16,
}

impl BrokerRegistration {
    pub fn endpoint(&self, listener: &str) -> Option<&BrokerEndpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }
}

/// Kafka's rule for topic names: 1 to 249 characters of ASCII letters, digits, '.', '_', '-',
/// and not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!("topic name must be 1 to 249 characters long, not {}", name.len()));
    }
    if name == "." || name == ".." {
        return Err(String::from("topic name cannot be '.' or '..'"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

impl ClusterMetadata {
    /// A dynamic quorum's voters as the image records them, each with its directory id.
    pub fn voters(&self) -> Vec<crate::config::QuorumVoter> {
        crate::config::QuorumVoter::joined(&self.quorum_voters, &self.quorum_voter_directory_ids)
    }

    /// Records `voters` as the quorum's voter set (sorted by node id).
    pub fn set_voters(&mut self, voters: &[crate::config::QuorumVoter]) {
        let mut list: Vec<(i32, String)> = voters.iter().map(|v| (v.node_id, v.address.clone())).collect();
        list.sort();
        self.quorum_voters = list;
        self.quorum_voter_directory_ids = crate::config::QuorumVoter::directory_ids(voters);
    }

    /// Where partition `partition` of `topic` lives, or None if the topic or partition does not
    /// exist.
    pub fn placement(&self, topic: &str, partition: i32) -> Option<&PartitionPlacement> {
        self.topics.get(topic)?.partitions.get(usize::try_from(partition).ok()?).filter(|p| p.hosted)
    }

    pub fn new(cluster_id: String) -> ClusterMetadata {
        ClusterMetadata {
            cluster_id,
            version: 1,
            topics: BTreeMap::new(),
            producer_id_block_end: 0,
            broker_configs: BTreeMap::new(),
            other_broker_configs: BTreeMap::new(),
            broker_default_configs: BTreeMap::new(),
            group_configs: BTreeMap::new(),
            acls: Default::default(),
            brokers: BTreeMap::new(),
            applied_index: 0,
            finalized_features: BTreeMap::new(),
            quorum_voters: Vec::new(),
            quorum_voter_directory_ids: BTreeMap::new(),
            finalized_features_epoch: no_features_epoch(),
            client_quotas: Default::default(),
        }
    }

    pub fn path(meta_dir: &Path) -> PathBuf {
        meta_dir.join(METADATA_FILE)
    }

    pub fn load(meta_dir: &Path) -> Result<Option<ClusterMetadata>> {
        let path = Self::path(meta_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged; restore it from a backup", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn persist(&self, meta_dir: &Path) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(meta_dir)?;
        let path = Self::path(meta_dir);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(meta_dir)?.sync_all()?;
        Ok(())
    }

    /// Partitions per shard and per log directory, for placing new partitions evenly.
    fn load_counts(&self, shards: usize, log_dirs: usize) -> (Vec<usize>, Vec<usize>) {
        let mut per_shard = vec![0; shards];
        let mut per_dir = vec![0; log_dirs];
        for topic in self.topics.values() {
            for p in topic.partitions.iter().filter(|p| p.hosted) {
                if p.shard < shards {
                    per_shard[p.shard] += 1;
                }
                if p.log_dir < log_dirs {
                    per_dir[p.log_dir] += 1;
                }
            }
        }
        (per_shard, per_dir)
    }

    /// Places `count` new partitions on the least-loaded shards and log directories.
    pub fn place(&self, count: usize, shards: usize, log_dirs: usize) -> Vec<PartitionPlacement> {
        self.place_by_space(count, shards, &vec![None; log_dirs])
    }

    /// New partitions for `count` indexes, with each log directory's free bytes (None where
    /// unknown): shards by partition count; directories by partition count among those with at
    /// least [`LOG_DIR_FREE_BYTES_MIN`] free (all of them if none has), more free space first
    /// on a tie.
    pub fn place_by_space(&self, count: usize, shards: usize, free_bytes: &[Option<u64>]) -> Vec<PartitionPlacement> {
        let log_dirs = free_bytes.len().max(1);
        let (mut per_shard, mut per_dir) = self.load_counts(shards, log_dirs);
        let roomy: Vec<usize> = (0..free_bytes.len()).filter(|&d| free_bytes[d].is_none_or(|f| f >= LOG_DIR_FREE_BYTES_MIN)).collect();
        let candidates: Vec<usize> = if roomy.is_empty() { (0..log_dirs).collect() } else { roomy };
        (0..count)
            .map(|_| {
                let shard = argmin(&per_shard);
                let log_dir = *candidates
                    .iter()
                    .min_by_key(|&&d| (per_dir[d], std::cmp::Reverse(free_bytes.get(d).copied().flatten().unwrap_or(0)), d))
                    .expect("at least one log directory");
                per_shard[shard] += 1;
                per_dir[log_dir] += 1;
                PartitionPlacement::local(shard, log_dir)
            })
            .collect()
    }

    /// After a restart with fewer shards or log directories, moves orphaned partitions to the
    /// least-loaded ones that exist. Returns whether anything moved.
    pub fn repair_placement(&mut self, shards: usize, log_dirs: usize) -> bool {
        let mut changed = false;
        let names: Vec<String> = self.topics.keys().cloned().collect();
        for name in names {
            for i in 0..self.topics[&name].partitions.len() {
                let p = self.topics[&name].partitions[i].clone();
                if p.hosted && (p.shard >= shards || p.log_dir >= log_dirs) {
                    let (per_shard, per_dir) = self.load_counts(shards, log_dirs);
                    let fixed = PartitionPlacement {
                        shard: if p.shard >= shards { argmin(&per_shard) } else { p.shard },
                        log_dir: if p.log_dir >= log_dirs { argmin(&per_dir) } else { p.log_dir },
                        ..p.clone()
                    };
                    if p.log_dir >= log_dirs {
                        tracing::warn!(topic = %name, partition = i, "log directory {} is no longer in log.dirs; partition starts empty in directory {}", p.log_dir, fixed.log_dir);
                    }
                    self.topics.get_mut(&name).expect("exists").partitions[i] = fixed;
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
#[test]
fn placement_prefers_fewer_partitions_then_more_free_space_and_skips_full_directories() {
    let meta = ClusterMetadata::new("c".into());
    let gib = 1u64 << 30;
    // Equal counts: the directory with more free space first, then alternate by count.
    let dirs: Vec<usize> = meta.place_by_space(4, 2, &[Some(5 * gib), Some(50 * gib)]).iter().map(|p| p.log_dir).collect();
    assert_eq!(dirs, vec![1, 0, 1, 0]);
    // A directory below the free-space floor gets nothing while another has room.
    let dirs: Vec<usize> = meta.place_by_space(3, 2, &[Some(gib / 2), Some(50 * gib)]).iter().map(|p| p.log_dir).collect();
    assert_eq!(dirs, vec![1, 1, 1]);
    // Every directory full: placement by partition count still works.
    let dirs: Vec<usize> = meta.place_by_space(2, 1, &[Some(0), Some(0)]).iter().map(|p| p.log_dir).collect();
    assert_eq!(dirs, vec![0, 1]);
}

fn argmin(counts: &[usize]) -> usize {
    counts.iter().enumerate().min_by_key(|(_, c)| **c).map(|(i, _)| i).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_shards_and_dirs() {
        let mut meta = ClusterMetadata::new("c".into());
        let placed = meta.place(8, 4, 2);
        let mut per_shard = [0; 4];
        for p in &placed {
            per_shard[p.shard] += 1;
        }
        assert_eq!(per_shard, [2, 2, 2, 2]);
        meta.topics.insert("t".into(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs: BTreeMap::new() });
        assert!(meta.repair_placement(2, 2));
        assert!(meta.topics["t"].partitions.iter().all(|p| p.shard < 2));
        assert!(!meta.repair_placement(2, 2));
    }

    #[test]
    fn persist_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = ClusterMetadata::new("abc".into());
        meta.topics.insert("t".into(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: meta.place(3, 2, 1), configs: BTreeMap::new() });
        meta.persist(dir.path()).unwrap();
        assert_eq!(ClusterMetadata::load(dir.path()).unwrap(), Some(meta));
    }

    #[test]
    fn an_image_from_before_feature_levels_loads_with_none_finalized() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = serde_json::to_value(ClusterMetadata::new("abc".into())).unwrap();
        let fields = old.as_object_mut().unwrap();
        assert!(fields.remove("finalized_features").is_some() && fields.remove("finalized_features_epoch").is_some());
        std::fs::write(ClusterMetadata::path(dir.path()), serde_json::to_vec(&old).unwrap()).unwrap();
        let loaded = ClusterMetadata::load(dir.path()).unwrap().unwrap();
        assert!(loaded.finalized_features.is_empty());
        assert_eq!(loaded.finalized_features_epoch, -1);
    }

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
