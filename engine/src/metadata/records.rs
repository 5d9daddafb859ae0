//! The metadata log's records: what the controller quorum replicates, one change per entity, as
//! KRaft's `__cluster_metadata` has them (TopicRecord, PartitionRecord, ConfigRecord,
//! AccessControlEntryRecord, ProducerIdsRecord, ...).
//!
//! The active controller works out a change on a copy of the image ([`ClusterMetadata`]) and
//! [`diff`] turns it into records; every node, the active controller included, then applies the
//! committed records in log order with [`apply`]. The image a node keeps is its *view*: the
//! replicated state plus where this node put its own replicas (shard and log directory), which
//! no record carries, because each broker has its own cores and disks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{BrokerRegistration, ClusterMetadata, PartitionPlacement, TopicMetadata};
use crate::authorizer::AclBinding;

/// Kafka's "no leader" in a partition's leader field.
pub const NO_LEADER: i32 = -1;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster's id; the first record of a new metadata log.
    ClusterId {
        cluster_id: String,
    },
    /// A new topic (its partitions follow as [`MetadataRecord::Partition`] records).
    Topic {
        name: String,
        topic_id: uuid::Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A partition's replica set, leader and epochs: a new partition, or a change to one.
    Partition {
        topic_id: uuid::Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        /// A reassignment's replicas to add and to take out (Kafka's AddingReplicas and
        /// RemovingReplicas); absent in records from before reassignments.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    RemoveTopic {
        topic_id: uuid::Uuid,
    },
    /// Every per-topic override of a topic, replacing the ones before.
    TopicConfigs {
        topic_id: uuid::Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Dynamic broker configs: of one broker (`broker`), or the cluster-wide defaults (None).
    BrokerConfigs {
        broker: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    /// Every dynamic config of a group, replacing the ones before (none: the group has no
    /// overrides left).
    GroupConfigs {
        group: String,
        configs: BTreeMap<String, String>,
    },
    AccessControlEntry {
        acl: AclBinding,
    },
    RemoveAccessControlEntry {
        acl: AclBinding,
    },
    /// Producer ids below `block_end` may have been handed out.
    ProducerIds {
        block_end: i64,
    },
    /// A broker registered (at its start), replacing an earlier registration of its node id.
    RegisterBroker {
        registration: BrokerRegistration,
    },
    /// A broker's registration taken out (UnregisterBroker; Kafka's UnregisterBrokerRecord).
    UnregisterBroker {
        node_id: i32,
    },
    /// A broker missed its session (`fenced`), or heartbeats again.
    BrokerFencing {
        node_id: i32,
        fenced: bool,
    },
    /// A feature's finalized level (Kafka's FeatureLevelRecord); level 0 takes it out of the
    /// finalized set.
    FeatureLevel {
        name: String,
        level: i16,
    },
    /// The voters of a dynamic metadata quorum (Kafka's VotersRecord, kraft.version 1), by
    /// node id with the address of each one's controller listener: the whole set, replacing
    /// the one before.
    QuorumVoters {
        voters: Vec<(i32, String)>,
        /// Each voter's metadata directory id, where known (records from before ids were
        /// kept have none). A list, not a map: an internally tagged enum cannot read back
        /// integer map keys.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        directory_ids: Vec<(i32, uuid::Uuid)>,
    },
    /// Every quota of one client quota entity, replacing the ones before (none: the entity
    /// has no quota left).
    ClientQuota {
        entity: crate::quota::QuotaEntity,
        values: BTreeMap<String, crate::quota::QuotaValue>,
    },
}

/// What applying records needs to know about the node it runs on.
pub trait LocalNode {
    fn node_id(&self) -> i32;
    /// Shard and log directory for a new replica of this node (the view tells what is placed).
    fn place(&self, view: &ClusterMetadata) -> PartitionPlacement;
}

/// The records that turn `old` into `new`, ignoring what is local to a node (shard and log
/// directory of each replica).
pub fn diff(old: &ClusterMetadata, new: &ClusterMetadata, node_id: i32) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if old.cluster_id != new.cluster_id {
        records.push(MetadataRecord::ClusterId { cluster_id: new.cluster_id.clone() });
    }
    for (name, topic) in &old.topics {
        if new.topics.get(name).is_none_or(|t| t.id != topic.id) {
            records.push(MetadataRecord::RemoveTopic { topic_id: topic.id });
        }
    }
    for (name, topic) in &new.topics {
        let before = old.topics.get(name).filter(|t| t.id == topic.id);
        match before {
            None => records.push(MetadataRecord::Topic { name: name.clone(), topic_id: topic.id, configs: topic.configs.clone() }),
            Some(b) if b.configs != topic.configs => records.push(MetadataRecord::TopicConfigs { topic_id: topic.id, configs: topic.configs.clone() }),
            Some(_) => {}
        }
        for (i, p) in topic.partitions.iter().enumerate() {
            let unchanged = before.and_then(|b| b.partitions.get(i)).is_some_and(|b| same_replication(b, p));
            if !unchanged {
                records.push(partition_record(topic.id, i as i32, p, node_id));
            }
        }
    }
    if old.broker_configs != new.broker_configs {
        records.push(MetadataRecord::BrokerConfigs { broker: Some(node_id), configs: new.broker_configs.clone() });
    }
    for id in old.other_broker_configs.keys().chain(new.other_broker_configs.keys()).collect::<std::collections::BTreeSet<_>>() {
        let configs = new.other_broker_configs.get(id).cloned().unwrap_or_default();
        if *id != node_id && old.other_broker_configs.get(id).cloned().unwrap_or_default() != configs {
            records.push(MetadataRecord::BrokerConfigs { broker: Some(*id), configs });
        }
    }
    if old.broker_default_configs != new.broker_default_configs {
        records.push(MetadataRecord::BrokerConfigs { broker: None, configs: new.broker_default_configs.clone() });
    }
    for group in old.group_configs.keys().chain(new.group_configs.keys()).collect::<std::collections::BTreeSet<_>>() {
        let configs = new.group_configs.get(group).cloned().unwrap_or_default();
        if old.group_configs.get(group).cloned().unwrap_or_default() != configs {
            records.push(MetadataRecord::GroupConfigs { group: group.clone(), configs });
        }
    }
    for acl in old.acls.acls.difference(&new.acls.acls) {
        records.push(MetadataRecord::RemoveAccessControlEntry { acl: acl.clone() });
    }
    for acl in new.acls.acls.difference(&old.acls.acls) {
        records.push(MetadataRecord::AccessControlEntry { acl: acl.clone() });
    }
    if old.producer_id_block_end != new.producer_id_block_end {
        records.push(MetadataRecord::ProducerIds { block_end: new.producer_id_block_end });
    }
    for id in old.brokers.keys().filter(|id| !new.brokers.contains_key(id)) {
        records.push(MetadataRecord::UnregisterBroker { node_id: *id });
    }
    for (id, registration) in &new.brokers {
        match old.brokers.get(id) {
            Some(before) if before == registration => {}
            Some(before) if BrokerRegistration { fenced: registration.fenced, ..before.clone() } == *registration => {
                records.push(MetadataRecord::BrokerFencing { node_id: *id, fenced: registration.fenced })
            }
            _ => records.push(MetadataRecord::RegisterBroker { registration: registration.clone() }),
        }
    }
    for name in old.finalized_features.keys().chain(new.finalized_features.keys()).collect::<std::collections::BTreeSet<_>>() {
        let level = new.finalized_features.get(name).copied().unwrap_or(0);
        if old.finalized_features.get(name).copied().unwrap_or(0) != level {
            records.push(MetadataRecord::FeatureLevel { name: name.clone(), level });
        }
    }
    if old.quorum_voters != new.quorum_voters || old.quorum_voter_directory_ids != new.quorum_voter_directory_ids {
        let directory_ids = new.quorum_voter_directory_ids.iter().map(|(id, d)| (*id, *d)).collect();
        records.push(MetadataRecord::QuorumVoters { voters: new.quorum_voters.clone(), directory_ids });
    }
    let (old_quotas, new_quotas) = (&old.client_quotas.entries, &new.client_quotas.entries);
    for entity in old_quotas.keys().chain(new_quotas.keys()).collect::<std::collections::BTreeSet<_>>() {
        let values = new_quotas.get(entity).cloned().unwrap_or_default();
        if old_quotas.get(entity).cloned().unwrap_or_default() != values {
            records.push(MetadataRecord::ClientQuota { entity: entity.clone(), values });
        }
    }
    records
}

fn same_replication(a: &PartitionPlacement, b: &PartitionPlacement) -> bool {
    (&a.replicas, &a.isr, a.leader, a.leader_epoch, a.partition_epoch, &a.adding_replicas, &a.removing_replicas)
        == (&b.replicas, &b.isr, b.leader, b.leader_epoch, b.partition_epoch, &b.adding_replicas, &b.removing_replicas)
}

/// A partition written before replicas were recorded (an image from a single-node version) is
/// this node's alone.
impl MetadataRecord {
    /// The QuorumVoters record that names `voters` (sorted by node id).
    pub fn quorum_voters(voters: &[crate::config::QuorumVoter]) -> MetadataRecord {
        let mut view = ClusterMetadata::new(String::new());
        view.set_voters(voters);
        MetadataRecord::QuorumVoters { voters: view.quorum_voters, directory_ids: view.quorum_voter_directory_ids.into_iter().collect() }
    }
}

fn partition_record(topic_id: uuid::Uuid, partition: i32, p: &PartitionPlacement, node_id: i32) -> MetadataRecord {
    let (replicas, isr, leader) = if p.replicas.is_empty() { (vec![node_id], vec![node_id], node_id) } else { (p.replicas.clone(), p.isr.clone(), p.leader) };
    MetadataRecord::Partition {
        topic_id,
        partition,
        replicas,
        isr,
        leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        adding_replicas: p.adding_replicas.clone(),
        removing_replicas: p.removing_replicas.clone(),
    }
}

/// Why a record could not be applied: the log and the image disagree, which is a bug or a
/// damaged log, never a client's doing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("record names topic id {0}, which the metadata image does not have")]
    UnknownTopic(uuid::Uuid),
    #[error("partition record for {topic} partition {partition} skips partitions (the topic has {count})")]
    PartitionGap { topic: String, partition: i32, count: usize },
}

/// Applies one committed record to this node's view.
pub fn apply(view: &mut ClusterMetadata, record: &MetadataRecord, node: &dyn LocalNode) -> Result<(), ApplyError> {
    match record {
        MetadataRecord::ClusterId { cluster_id } => view.cluster_id = cluster_id.clone(),
        MetadataRecord::Topic { name, topic_id, configs } => match view.topics.get_mut(name) {
            // The image already has it (a node that wrote its image before the metadata log
            // replays the records of that image): keep where its partitions are.
            Some(topic) if topic.id == *topic_id => topic.configs = configs.clone(),
            _ => {
                view.topics.insert(name.clone(), TopicMetadata { id: *topic_id, partitions: Vec::new(), configs: configs.clone() });
            }
        },
        MetadataRecord::Partition { topic_id, partition, replicas, isr, leader, leader_epoch, partition_epoch, adding_replicas, removing_replicas } => {
            let hosted = replicas.contains(&node.node_id());
            let name = topic_name(view, *topic_id)?;
            let count = view.topics[&name].partitions.len();
            let index = usize::try_from(*partition).unwrap_or(usize::MAX);
            if index > count {
                return Err(ApplyError::PartitionGap { topic: name, partition: *partition, count });
            }
            let local = match view.topics[&name].partitions.get(index) {
                Some(existing) if existing.hosted && hosted => (existing.shard, existing.log_dir),
                _ if hosted => {
                    let p = node.place(view);
                    (p.shard, p.log_dir)
                }
                _ => (0, 0),
            };
            let placement = PartitionPlacement {
                shard: local.0,
                log_dir: local.1,
                hosted,
                replicas: replicas.clone(),
                isr: isr.clone(),
                leader: *leader,
                leader_epoch: *leader_epoch,
                partition_epoch: *partition_epoch,
                adding_replicas: adding_replicas.clone(),
                removing_replicas: removing_replicas.clone(),
            };
            let partitions = &mut view.topics.get_mut(&name).expect("found above").partitions;
            if index == count {
                partitions.push(placement);
            } else {
                partitions[index] = placement;
            }
        }
        MetadataRecord::RemoveTopic { topic_id } => {
            let name = topic_name(view, *topic_id)?;
            view.topics.remove(&name);
        }
        MetadataRecord::TopicConfigs { topic_id, configs } => {
            let name = topic_name(view, *topic_id)?;
            view.topics.get_mut(&name).expect("found above").configs = configs.clone();
        }
        MetadataRecord::BrokerConfigs { broker: None, configs } => view.broker_default_configs = configs.clone(),
        MetadataRecord::BrokerConfigs { broker: Some(id), configs } => {
            if *id == node.node_id() {
                view.broker_configs = configs.clone();
            } else if configs.is_empty() {
                view.other_broker_configs.remove(id);
            } else {
                view.other_broker_configs.insert(*id, configs.clone());
            }
        }
        MetadataRecord::GroupConfigs { group, configs } => {
            if configs.is_empty() {
                view.group_configs.remove(group);
            } else {
                view.group_configs.insert(group.clone(), configs.clone());
            }
        }
        MetadataRecord::AccessControlEntry { acl } => {
            view.acls.acls.insert(acl.clone());
        }
        MetadataRecord::RemoveAccessControlEntry { acl } => {
            view.acls.acls.remove(acl);
        }
        MetadataRecord::ProducerIds { block_end } => view.producer_id_block_end = *block_end,
        MetadataRecord::RegisterBroker { registration } => {
            view.brokers.insert(registration.node_id, registration.clone());
        }
        MetadataRecord::UnregisterBroker { node_id } => {
            view.brokers.remove(node_id);
        }
        MetadataRecord::BrokerFencing { node_id, fenced } => {
            if let Some(b) = view.brokers.get_mut(node_id) {
                b.fenced = *fenced;
            }
        }
        MetadataRecord::FeatureLevel { name, level } => {
            if *level == 0 {
                view.finalized_features.remove(name);
            } else {
                view.finalized_features.insert(name.clone(), *level);
            }
        }
        MetadataRecord::QuorumVoters { voters, directory_ids } => {
            view.quorum_voters = voters.clone();
            view.quorum_voter_directory_ids = directory_ids.iter().copied().collect();
        }
        MetadataRecord::ClientQuota { entity, values } => {
            if values.is_empty() {
                view.client_quotas.entries.remove(entity);
            } else {
                view.client_quotas.entries.insert(entity.clone(), values.clone());
            }
        }
    }
    Ok(())
}

fn topic_name(view: &ClusterMetadata, topic_id: uuid::Uuid) -> Result<String, ApplyError> {
    view.topics.iter().find(|(_, t)| t.id == topic_id).map(|(n, _)| n.clone()).ok_or(ApplyError::UnknownTopic(topic_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        id: i32,
        shards: usize,
    }

    impl LocalNode for Node {
        fn node_id(&self) -> i32 {
            self.id
        }
        fn place(&self, view: &ClusterMetadata) -> PartitionPlacement {
            view.place(1, self.shards, 1).remove(0)
        }
    }

    fn replayed(old: &ClusterMetadata, new: &ClusterMetadata, node: &Node) -> ClusterMetadata {
        let mut view = old.clone();
        for r in diff(old, new, node.id) {
            apply(&mut view, &r, node).unwrap();
        }
        view
    }

    fn replication_only(m: &ClusterMetadata) -> ClusterMetadata {
        let mut m = m.clone();
        for t in m.topics.values_mut() {
            for p in &mut t.partitions {
                (p.shard, p.log_dir) = (0, 0);
            }
        }
        m
    }

    #[test]
    fn applying_the_diff_gives_the_new_image() {
        let node = Node { id: 1, shards: 2 };
        let old = ClusterMetadata::new("c".into());
        let mut new = old.clone();
        let mut placed = new.place(3, 2, 1);
        for p in &mut placed {
            (p.replicas, p.isr, p.leader) = (vec![1], vec![1], 1);
        }
        new.topics
            .insert("t".into(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs: BTreeMap::from([("retention.ms".into(), "5".into())]) });
        new.producer_id_block_end = 1000;
        new.broker_default_configs.insert("log.retention.ms".into(), "9".into());
        // Another broker's own configs are kept too (a snapshot carries them to it).
        new.other_broker_configs.insert(2, BTreeMap::from([("log.cleaner.threads".into(), "2".into())]));
        new.group_configs.insert("g".into(), BTreeMap::from([("consumer.heartbeat.interval.ms".into(), "6000".into())]));
        let alice = crate::quota::QuotaEntity { user: Some(crate::quota::EntityName::Named("alice".into())), ..Default::default() };
        new.client_quotas.entries.insert(alice, BTreeMap::from([(crate::quota::PRODUCER_BYTE_RATE.into(), crate::quota::QuotaValue(1024.0))]));
        let view = replayed(&old, &new, &node);
        assert_eq!(replication_only(&view), replication_only(&new));
        // A group whose last override is deleted leaves no empty entry behind.
        let mut cleared = view.clone();
        cleared.group_configs.clear();
        assert_eq!(replayed(&view, &cleared, &node).group_configs, BTreeMap::new());
        // So does an entity whose last quota is removed.
        let mut unquoted = view.clone();
        unquoted.client_quotas.entries.clear();
        assert!(replayed(&view, &unquoted, &node).client_quotas.is_empty());
        assert!(view.topics["t"].partitions.iter().all(|p| p.hosted));
        // Removing and growing: a topic deleted, another recreated under the same name.
        let mut newer = view.clone();
        newer.topics.get_mut("t").unwrap().id = uuid::Uuid::new_v4();
        newer.topics.get_mut("t").unwrap().partitions.truncate(1);
        let again = replayed(&view, &newer, &node);
        assert_eq!(replication_only(&again), replication_only(&newer));
        assert!(diff(&again, &newer, 1).is_empty());
    }

    #[test]
    fn a_dynamic_quorums_voter_set_is_one_record_that_replaces_the_set_before() {
        let node = Node { id: 1, shards: 1 };
        let old = ClusterMetadata::new("c".into());
        let mut new = old.clone();
        new.quorum_voters = vec![(1, "h:1".into()), (2, "h:2".into())];
        let ids = BTreeMap::from([(1, uuid::Uuid::new_v4()), (2, uuid::Uuid::new_v4())]);
        new.quorum_voter_directory_ids = ids.clone();
        let records = diff(&old, &new, 1);
        assert_eq!(records, vec![MetadataRecord::QuorumVoters { voters: new.quorum_voters.clone(), directory_ids: ids.clone().into_iter().collect() }]);
        // The record goes through the metadata log as JSON.
        let json = serde_json::to_string(&records[0]).unwrap();
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), records[0]);
        let view = replayed(&old, &new, &node);
        assert_eq!((&view.quorum_voters, &view.quorum_voter_directory_ids), (&new.quorum_voters, &ids));
        assert_eq!(view.voters()[1], crate::config::QuorumVoter { node_id: 2, address: "h:2".into(), directory_id: Some(ids[&2]) });
        let mut fewer = view.clone();
        fewer.quorum_voters.pop();
        fewer.quorum_voter_directory_ids.remove(&2);
        let replayed_fewer = replayed(&view, &fewer, &node);
        assert_eq!(replayed_fewer.quorum_voters, vec![(1, "h:1".to_string())]);
        assert_eq!(replayed_fewer.quorum_voter_directory_ids, BTreeMap::from([(1, ids[&1])]));
        assert!(diff(&fewer, &fewer, 1).is_empty());
        // A voter whose directory changed (removed and added again with a new disk) is news.
        let mut moved = fewer.clone();
        moved.quorum_voter_directory_ids.insert(1, uuid::Uuid::new_v4());
        assert_eq!(diff(&fewer, &moved, 1).len(), 1);
        // A record from before directory ids were kept reads as a set without them.
        let old_record: MetadataRecord = serde_json::from_str(r#"{"type":"QuorumVoters","voters":[[1,"h:1"]]}"#).unwrap();
        assert_eq!(old_record, MetadataRecord::QuorumVoters { voters: vec![(1, "h:1".into())], directory_ids: Vec::new() });
        // An image written before the field (or of a static quorum) has no voter set.
        let mut json = serde_json::to_value(&old).unwrap();
        assert!(json.as_object_mut().unwrap().remove("quorum_voters").is_none(), "an empty set is not written");
        let loaded: ClusterMetadata = serde_json::from_value(json).unwrap();
        assert!(loaded.quorum_voters.is_empty());
    }

    #[test]
    fn an_unregistered_broker_is_one_record_after_its_partitions_lost_it_as_leader() {
        let node = Node { id: 1, shards: 1 };
        let registration = |node_id| BrokerRegistration {
            node_id,
            incarnation_id: uuid::Uuid::new_v4(),
            endpoints: Vec::new(),
            rack: None,
            fenced: true,
            supported_features: Default::default(),
        };
        let mut old = ClusterMetadata::new("c".into());
        old.brokers.insert(1, registration(1));
        old.brokers.insert(2, registration(2));
        let mut placed = old.place(1, 1, 1);
        (placed[0].replicas, placed[0].isr, placed[0].leader) = (vec![2], vec![2], 2);
        old.topics.insert("t".into(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs: BTreeMap::new() });
        let mut new = old.clone();
        new.brokers.remove(&2);
        let p = &mut new.topics.get_mut("t").unwrap().partitions[0];
        (p.leader, p.leader_epoch, p.partition_epoch) = (NO_LEADER, p.leader_epoch + 1, p.partition_epoch + 1);
        let records = diff(&old, &new, 1);
        assert!(matches!(records[0], MetadataRecord::Partition { leader: NO_LEADER, .. }), "{records:?}");
        assert_eq!(records[1..], [MetadataRecord::UnregisterBroker { node_id: 2 }]);
        let view = replayed(&old, &new, &node);
        assert_eq!(view.brokers.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(view.topics["t"].partitions[0].leader, NO_LEADER);
        // Applying it again (a replay past a snapshot) changes nothing.
        let mut again = view.clone();
        apply(&mut again, &records[1], &node).unwrap();
        assert_eq!(again, view);
    }

    #[test]
    fn feature_levels_are_recorded_and_level_zero_leaves_the_finalized_set() {
        let node = Node { id: 1, shards: 1 };
        let old = ClusterMetadata::new("c".into());
        let mut new = old.clone();
        new.finalized_features = crate::metadata::features::bootstrap_levels();
        let view = replayed(&old, &new, &node);
        assert_eq!(view.finalized_features, new.finalized_features);
        let mut lower = view.clone();
        lower.finalized_features.remove("group.version");
        let records = diff(&view, &lower, 1);
        assert_eq!(records, vec![MetadataRecord::FeatureLevel { name: "group.version".into(), level: 0 }]);
        assert_eq!(replayed(&view, &lower, &node).finalized_features, lower.finalized_features);
    }

    #[test]
    fn replicas_of_other_brokers_are_not_hosted_and_a_legacy_image_becomes_this_nodes() {
        let node = Node { id: 2, shards: 1 };
        let mut view = ClusterMetadata::new("c".into());
        let id = uuid::Uuid::new_v4();
        apply(&mut view, &MetadataRecord::Topic { name: "t".into(), topic_id: id, configs: BTreeMap::new() }, &node).unwrap();
        let p = |partition, replicas: Vec<i32>| MetadataRecord::Partition {
            topic_id: id,
            partition,
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        apply(&mut view, &p(0, vec![1]), &node).unwrap();
        apply(&mut view, &p(1, vec![2]), &node).unwrap();
        assert!(!view.topics["t"].partitions[0].hosted && view.topics["t"].partitions[1].hosted);
        assert!(view.placement("t", 0).is_none() && view.placement("t", 1).is_some());
        assert!(matches!(apply(&mut view, &p(5, vec![2]), &node), Err(ApplyError::PartitionGap { .. })));
        // An image from before replicas were recorded: its partitions are given to this node.
        let mut legacy = ClusterMetadata::new("c".into());
        legacy.topics.insert("old".into(), TopicMetadata { id, partitions: legacy.place(2, 1, 1), configs: BTreeMap::new() });
        for p in &mut legacy.topics.get_mut("old").unwrap().partitions {
            p.replicas.clear();
        }
        let records = diff(&legacy, &legacy, 7);
        assert!(records.is_empty(), "an unchanged image needs no records: {records:?}");
        let records = diff(&ClusterMetadata::new("c".into()), &legacy, 7);
        assert!(records.iter().any(|r| matches!(r, MetadataRecord::Partition { replicas, leader: 7, .. } if replicas == &vec![7])));
    }
}
