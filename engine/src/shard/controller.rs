//! The metadata controller, on shard 0: creates and deletes topics and partitions, persists the
//! result, and broadcasts it to every shard before answering.

use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::Result;
use glommio::sync::Semaphore;
use shardlog_protocol::error_code as ec;

use super::messages::{ControllerRequest, NewTopic, ShardReply, ShardRequest};
use super::{partition_ops, Shard};
use crate::metadata::{validate_topic_name, ClusterMetadata, TopicMetadata};

/// Upper bound on partitions per topic, so that one request cannot create millions of files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Producer ids reserved (and persisted) at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    /// One metadata change at a time.
    serial: Semaphore,
    /// The next producer id to hand out, and the end of the reserved block.
    next_producer_id: std::cell::Cell<i64>,
    producer_id_block_end: std::cell::Cell<i64>,
}

impl Controller {
    pub fn new() -> Controller {
        Controller { serial: Semaphore::new(1), next_producer_id: std::cell::Cell::new(0), producer_id_block_end: std::cell::Cell::new(0) }
    }
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

/// Loads (or creates) the metadata, repairs placement for the current shard count, persists it,
/// and gives it to every shard.
pub async fn bootstrap(shard: &Rc<Shard>) -> Result<()> {
    let dir = shard.meta_dir();
    let mut meta = match ClusterMetadata::load(&dir)? {
        Some(m) => m,
        None => {
            let id = shard.config.cluster_id.clone().unwrap_or_else(|| base64_uuid(uuid::Uuid::new_v4()));
            tracing::info!(cluster_id = %id, "new cluster: no metadata found");
            ClusterMetadata::new(id)
        }
    };
    if !meta.topics.contains_key(crate::groups::offsets::OFFSETS_TOPIC) {
        let partitions = shard.config.offsets_topic_partitions as usize;
        let placed = meta.place_by_space(partitions, shard.shard_count(), &log_dir_free_bytes(shard));
        let configs = BTreeMap::from([(String::from("cleanup.policy"), String::from("compact"))]);
        meta.topics.insert(crate::groups::offsets::OFFSETS_TOPIC.to_string(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
        meta.version += 1;
        tracing::info!(partitions, "created the internal topic {}", crate::groups::offsets::OFFSETS_TOPIC);
    }
    if !meta.topics.contains_key(crate::txn::TRANSACTION_STATE_TOPIC) {
        let partitions = shard.config.txn.state_partitions as usize;
        let placed = meta.place_by_space(partitions, shard.shard_count(), &log_dir_free_bytes(shard));
        let configs = BTreeMap::from([(String::from("cleanup.policy"), String::from("compact"))]);
        meta.topics.insert(crate::txn::TRANSACTION_STATE_TOPIC.to_string(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
        meta.version += 1;
        tracing::info!(partitions, "created the internal topic {}", crate::txn::TRANSACTION_STATE_TOPIC);
    }
    if meta.repair_placement(shard.shard_count(), shard.config.log_dirs.len()) {
        meta.version += 1;
        tracing::info!("placement table adjusted to {} shards and {} log directories", shard.shard_count(), shard.config.log_dirs.len());
    }
    // Ids of the last block may have been handed out before a crash: start after it.
    if let Some(c) = &shard.controller {
        c.next_producer_id.set(meta.producer_id_block_end);
        c.producer_id_block_end.set(meta.producer_id_block_end);
    }
    meta.persist(&dir)?;
    broadcast(shard, meta).await;
    Ok(())
}

/// Kafka prints cluster ids as URL-safe base64 of a UUID, without padding.
pub fn base64_uuid(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::new();
    let mut bits = 0u32;
    let mut nbits = 0;
    for &b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

async fn broadcast(shard: &Rc<Shard>, meta: ClusterMetadata) {
    let peers: Vec<usize> = (0..shard.shard_count()).filter(|&s| s != shard.id).collect();
    let calls = peers.into_iter().map(|peer| {
        let meta = Box::new(meta.clone());
        let shard = shard.clone();
        async move { shard.router.call(peer, ShardRequest::ApplyMetadata(meta)).await }
    });
    for result in futures::future::join_all(calls).await {
        if let Err(e) = result {
            tracing::error!(error = %e, "a shard did not take the new metadata");
        }
    }
    partition_ops::apply_metadata(shard, meta).await;
}

pub async fn handle(shard: Rc<Shard>, request: ControllerRequest) -> ShardReply {
    let controller = shard.controller.as_ref().expect("controller requests go to the controller shard");
    let _permit = controller.serial.acquire_permit(1).await.expect("semaphore never closes");
    let mut meta = (**shard.metadata.borrow()).clone();
    let mut results = Vec::new();
    let mut changed = false;
    if let ControllerRequest::AllocateProducerId = request {
        let id = controller.next_producer_id.get();
        if id >= controller.producer_id_block_end.get() {
            meta.producer_id_block_end = id + PRODUCER_ID_BLOCK;
            meta.version += 1;
            if let Err(e) = meta.persist(&shard.meta_dir()) {
                tracing::error!(error = %format!("{e:#}"), "cannot persist the producer id block");
                return ShardReply::ProducerId(-1, ec::KAFKA_STORAGE_ERROR);
            }
            controller.producer_id_block_end.set(meta.producer_id_block_end);
            broadcast(&shard, meta).await;
        }
        controller.next_producer_id.set(id + 1);
        return ShardReply::ProducerId(id, ec::NONE);
    }
    if let ControllerRequest::DeleteAcls { filters } = &request {
        let deleted: Vec<Vec<crate::authorizer::AclBinding>> =
            filters.iter().map(|f| meta.acls.acls.iter().filter(|a| f.matches(a)).cloned().collect()).collect();
        if deleted.iter().all(|d| d.is_empty()) {
            return ShardReply::AclsDeleted(Ok(deleted));
        }
        for acl in deleted.iter().flatten() {
            meta.acls.acls.remove(acl);
        }
        meta.version += 1;
        if let Err(e) = meta.persist(&shard.meta_dir()) {
            let msg = format!("persisting metadata failed: {e:#}");
            tracing::error!(error = %msg, "ACL deletion not applied");
            return ShardReply::AclsDeleted(Err((ec::KAFKA_STORAGE_ERROR, msg)));
        }
        tracing::info!(deleted = deleted.iter().map(Vec::len).sum::<usize>(), "ACLs deleted");
        broadcast(&shard, meta).await;
        return ShardReply::AclsDeleted(Ok(deleted));
    }
    match request {
        ControllerRequest::CreateAcls { acls } => {
            for acl in acls {
                let name = format!("{} {} {}", acl.principal, acl.operation.name(), acl.resource_name);
                if meta.acls.acls.len() >= crate::authorizer::ACLS_MAX && !meta.acls.acls.contains(&acl) {
                    results.push((name, ec::INVALID_REQUEST, Some(format!("the broker keeps at most {} ACLs", crate::authorizer::ACLS_MAX))));
                    continue;
                }
                tracing::info!(acl = ?acl, "ACL created");
                changed |= meta.acls.acls.insert(acl);
                results.push((name, ec::NONE, None));
            }
        }
        ControllerRequest::DeleteAcls { .. } => unreachable!("answered above"),
        ControllerRequest::CreateTopics { topics, validate_only } => {
            for topic in topics {
                let outcome = create_topic(&shard, &mut meta, &topic, validate_only);
                changed |= outcome.is_ok() && !validate_only;
                results.push(match outcome {
                    Ok(()) => (topic.name, ec::NONE, None),
                    Err((code, msg)) => (topic.name, code, Some(msg)),
                });
            }
        }
        ControllerRequest::DeleteTopics { names } => {
            for name in names {
                if is_internal_topic(&name) {
                    results.push((name, ec::INVALID_REQUEST, Some(String::from("internal topics cannot be deleted"))));
                } else if meta.topics.remove(&name).is_some() {
                    changed = true;
                    tracing::info!(topic = %name, "deleting topic");
                    results.push((name, ec::NONE, None));
                } else {
                    results.push((name, ec::UNKNOWN_TOPIC_OR_PARTITION, Some(String::from("This server does not host this topic."))));
                }
            }
        }
        ControllerRequest::CreatePartitions { topics, validate_only } => {
            for (name, count) in topics {
                let current = meta.topics.get(&name).map(|t| t.partitions.len() as i32);
                let outcome = match current {
                    None => Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic {name} does not exist"))),
                    Some(n) if count <= n => Err((ec::INVALID_PARTITIONS, format!("topic {name} has {n} partitions; the new count {count} must be larger"))),
                    Some(_) if count > TOPIC_PARTITIONS_MAX => {
                        Err((ec::INVALID_PARTITIONS, format!("{count} partitions exceeds the limit of {TOPIC_PARTITIONS_MAX}")))
                    }
                    Some(n) => {
                        if !validate_only {
                            let placed = meta.place_by_space((count - n) as usize, shard.shard_count(), &log_dir_free_bytes(&shard));
                            meta.topics.get_mut(&name).expect("exists").partitions.extend(placed);
                            changed = true;
                            tracing::info!(topic = %name, from = n, to = count, "adding partitions");
                        }
                        Ok(())
                    }
                };
                results.push(match outcome {
                    Ok(()) => (name, ec::NONE, None),
                    Err((code, msg)) => (name, code, Some(msg)),
                });
            }
        }
        ControllerRequest::AllocateProducerId => unreachable!("answered above"),
        ControllerRequest::AlterConfigs { resources, validate_only } => {
            let (altered, c) = super::config_ops::alter(&shard, &mut meta, &resources, validate_only);
            results.extend(altered);
            changed |= c;
        }
    }
    if changed {
        meta.version += 1;
        if let Err(e) = meta.persist(&shard.meta_dir()) {
            let msg = format!("persisting metadata failed: {e:#}");
            tracing::error!(error = %msg, "metadata change not applied");
            return ShardReply::Controller(results.into_iter().map(|(n, _, _)| (n, ec::KAFKA_STORAGE_ERROR, Some(msg.clone()))).collect());
        }
        broadcast(&shard, meta).await;
    }
    ShardReply::Controller(results)
}

/// Free bytes of each log directory's filesystem, for placing new partitions.
fn log_dir_free_bytes(shard: &Shard) -> Vec<Option<u64>> {
    // A failed directory counts as full: it gets new partitions only if every directory is.
    let free = |(i, d): (usize, &std::path::PathBuf)| {
        if shard.log_dirs.is_failed(i) {
            Some(0)
        } else {
            crate::storage::disk::filesystem_bytes(d).map(|(_, free)| free)
        }
    };
    shard.config.log_dirs.iter().enumerate().map(free).collect()
}

/// Topics the broker keeps for itself.
pub fn is_internal_topic(name: &str) -> bool {
    name == crate::groups::offsets::OFFSETS_TOPIC || name == crate::txn::TRANSACTION_STATE_TOPIC
}

fn create_topic(shard: &Shard, meta: &mut ClusterMetadata, topic: &NewTopic, validate_only: bool) -> Result<(), (i16, String)> {
    validate_topic_name(&topic.name).map_err(|m| (ec::INVALID_TOPIC_EXCEPTION, m))?;
    if meta.topics.contains_key(&topic.name) {
        return Err((ec::TOPIC_ALREADY_EXISTS, format!("Topic '{}' already exists.", topic.name)));
    }
    let partitions = if topic.partitions == -1 { shard.config.num_partitions } else { topic.partitions };
    if partitions <= 0 || partitions > TOPIC_PARTITIONS_MAX {
        return Err((ec::INVALID_PARTITIONS, format!("Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, not {partitions}.")));
    }
    if topic.replication_factor != -1 && topic.replication_factor != 1 {
        return Err((ec::INVALID_REPLICATION_FACTOR, format!("Replication factor {} is larger than the 1 available broker.", topic.replication_factor)));
    }
    let mut configs = BTreeMap::new();
    for (k, v) in &topic.configs {
        if configs.insert(k.clone(), v.clone()).is_some() {
            return Err((ec::INVALID_REQUEST, format!("Error due to duplicate config keys: {k}")));
        }
    }
    crate::topic_config::validate_topic_configs(&configs).map_err(|m| (ec::INVALID_CONFIG, m))?;
    if validate_only {
        return Ok(());
    }
    let placed = meta.place_by_space(partitions as usize, shard.shard_count(), &log_dir_free_bytes(shard));
    tracing::info!(topic = %topic.name, partitions, "creating topic");
    meta.topics.insert(topic.name.clone(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_id_is_22_chars_of_url_safe_base64() {
        let id = super::base64_uuid(uuid::Uuid::nil());
        assert_eq!(id, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(super::base64_uuid(uuid::Uuid::new_v4()).len(), 22);
    }
}
