//! The metadata controller, on shard 0: creates and deletes topics and partitions, ACLs and
//! configs, hands out producer ids, persists the result, and broadcasts it to every shard before
//! answering. Other shards reach it with the calls below, served by [`Controller::serve`].

pub mod config_ops;

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::runtime::Semaphore;
use anyhow::Result;
use shardlog_protocol::error_code as ec;

use crate::metadata::{validate_topic_name, ClusterMetadata, TopicMetadata};
use crate::shard::messages::ApplyMetadata;
use crate::shard::router::ShardCall;
use crate::shard::Shard;

/// The shard that runs the controller.
pub const CONTROLLER_SHARD: usize = 0;

/// A metadata change: one result per topic, ACL or config resource, in request order.
#[derive(Debug, Clone)]
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// CreateAcls: bindings already validated by the handler.
    CreateAcls {
        acls: Vec<crate::authorizer::AclBinding>,
    },
    /// AlterConfigs and IncrementalAlterConfigs: one result per resource, in order.
    AlterConfigs {
        resources: Vec<ConfigAlteration>,
        validate_only: bool,
    },
}

/// Config changes for one resource (a topic, or the broker).
#[derive(Debug, Clone)]
pub struct ConfigAlteration {
    /// Kafka's resource type: 2 topic, 4 broker.
    pub resource_type: i8,
    pub resource_name: String,
    /// AlterConfigs replaces every config of the resource with `ops` (all SET);
    /// IncrementalAlterConfigs applies them one by one.
    pub incremental: bool,
    /// (name, operation: 0 set, 1 delete, 2 append, 3 subtract, value)
    pub ops: Vec<(String, i8, Option<String>)>,
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl ShardCall for ControllerRequest {
    /// Per item: (name, error code, message).
    type Reply = Vec<(String, i16, Option<String>)>;
}

/// A new producer id for an idempotent or transactional producer: the id, or the error code.
#[derive(Debug)]
pub struct AllocateProducerId;

impl ShardCall for AllocateProducerId {
    type Reply = Result<i64, i16>;
}

/// DeleteAcls: every ACL that matches a filter goes. The reply lists them per filter, or says
/// why nothing changed.
#[derive(Debug)]
pub struct DeleteAcls {
    pub filters: Vec<crate::authorizer::AclFilter>,
}

impl ShardCall for DeleteAcls {
    type Reply = Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)>;
}

/// Upper bound on partitions per topic, so that one request cannot create millions of files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Producer ids reserved (and persisted) at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    shard: Rc<Shard>,
    /// One metadata change at a time.
    serial: Semaphore,
    /// The next producer id to hand out, and the end of the reserved block.
    next_producer_id: std::cell::Cell<i64>,
    producer_id_block_end: std::cell::Cell<i64>,
}

impl Controller {
    /// Bootstraps the metadata (see [`Controller::bootstrap`]) and registers the controller's
    /// calls on this shard's router.
    pub async fn start(shard: &Rc<Shard>) -> Result<Rc<Controller>> {
        assert_eq!(shard.id, CONTROLLER_SHARD, "the controller runs on shard {CONTROLLER_SHARD}");
        let controller = Rc::new(Controller {
            shard: shard.clone(),
            serial: Semaphore::new(1),
            next_producer_id: std::cell::Cell::new(0),
            producer_id_block_end: std::cell::Cell::new(0),
        });
        let c = controller.clone();
        shard.router.serve(move |request: ControllerRequest| {
            let c = c.clone();
            async move { c.change(request).await }
        });
        let c = controller.clone();
        shard.router.serve(move |_: AllocateProducerId| {
            let c = c.clone();
            async move { c.allocate_producer_id().await }
        });
        let c = controller.clone();
        shard.router.serve(move |request: DeleteAcls| {
            let c = c.clone();
            async move { c.delete_acls(request).await }
        });
        controller.bootstrap().await?;
        Ok(controller)
    }

    /// Loads (or creates) the metadata, repairs placement for the current shard count, persists
    /// it, and gives it to every shard.
    async fn bootstrap(&self) -> Result<()> {
        let shard = &self.shard;
        let dir = shard.meta_dir();
        let mut meta = match ClusterMetadata::load(&dir)? {
            Some(m) => m,
            None => {
                let id = shard.config.cluster_id.clone().unwrap_or_else(|| base64_uuid(uuid::Uuid::new_v4()));
                tracing::info!(cluster_id = %id, "new cluster: no metadata found");
                ClusterMetadata::new(id)
            }
        };
        if !meta.topics.contains_key(crate::metadata::OFFSETS_TOPIC) {
            let partitions = shard.config.offsets_topic_partitions as usize;
            let placed = meta.place_by_space(partitions, shard.shard_count(), &log_dir_free_bytes(shard));
            let configs = BTreeMap::from([(String::from("cleanup.policy"), String::from("compact"))]);
            meta.topics.insert(crate::metadata::OFFSETS_TOPIC.to_string(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
            meta.version += 1;
            tracing::info!(partitions, "created the internal topic {}", crate::metadata::OFFSETS_TOPIC);
        }
        if !meta.topics.contains_key(crate::metadata::TRANSACTION_STATE_TOPIC) {
            let partitions = shard.config.txn.state_partitions as usize;
            let placed = meta.place_by_space(partitions, shard.shard_count(), &log_dir_free_bytes(shard));
            let configs = BTreeMap::from([(String::from("cleanup.policy"), String::from("compact"))]);
            meta.topics.insert(crate::metadata::TRANSACTION_STATE_TOPIC.to_string(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
            meta.version += 1;
            tracing::info!(partitions, "created the internal topic {}", crate::metadata::TRANSACTION_STATE_TOPIC);
        }
        if meta.repair_placement(shard.shard_count(), shard.config.log_dirs.len()) {
            meta.version += 1;
            tracing::info!("placement table adjusted to {} shards and {} log directories", shard.shard_count(), shard.config.log_dirs.len());
        }
        // Ids of the last block may have been handed out before a crash: start after it.
        self.next_producer_id.set(meta.producer_id_block_end);
        self.producer_id_block_end.set(meta.producer_id_block_end);
        meta.persist(&dir)?;
        broadcast(shard, meta).await;
        Ok(())
    }
}

pub use crate::metadata::base64_uuid;

/// Gives `meta` to every shard, this one last (so that this shard's answer to the change comes
/// after every shard has it).
async fn broadcast(shard: &Rc<Shard>, meta: ClusterMetadata) {
    let peers: Vec<usize> = (0..shard.shard_count()).filter(|&s| s != shard.id).collect();
    let calls = peers.into_iter().map(|peer| {
        let meta = Box::new(meta.clone());
        let shard = shard.clone();
        async move { shard.router.call(peer, ApplyMetadata(meta)).await }
    });
    for result in futures::future::join_all(calls).await {
        if let Err(e) = result {
            tracing::error!(error = %e, "a shard did not take the new metadata");
        }
    }
    if let Err(e) = shard.router.call(shard.id, ApplyMetadata(Box::new(meta))).await {
        tracing::error!(error = %e, "the controller's shard did not take the new metadata");
    }
}

impl Controller {
    async fn allocate_producer_id(&self) -> Result<i64, i16> {
        let _permit = self.serial.acquire_permit(1).await.expect("semaphore never closes");
        let shard = &self.shard;
        let id = self.next_producer_id.get();
        if id >= self.producer_id_block_end.get() {
            let mut meta = (**shard.metadata.borrow()).clone();
            meta.producer_id_block_end = id + PRODUCER_ID_BLOCK;
            meta.version += 1;
            if let Err(e) = meta.persist(&shard.meta_dir()) {
                tracing::error!(error = %format!("{e:#}"), "cannot persist the producer id block");
                return Err(ec::KAFKA_STORAGE_ERROR);
            }
            self.producer_id_block_end.set(meta.producer_id_block_end);
            broadcast(shard, meta).await;
        }
        self.next_producer_id.set(id + 1);
        Ok(id)
    }

    async fn delete_acls(&self, request: DeleteAcls) -> Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)> {
        let _permit = self.serial.acquire_permit(1).await.expect("semaphore never closes");
        let shard = &self.shard;
        let mut meta = (**shard.metadata.borrow()).clone();
        let deleted: Vec<Vec<crate::authorizer::AclBinding>> =
            request.filters.iter().map(|f| meta.acls.acls.iter().filter(|a| f.matches(a)).cloned().collect()).collect();
        if deleted.iter().all(|d| d.is_empty()) {
            return Ok(deleted);
        }
        for acl in deleted.iter().flatten() {
            meta.acls.acls.remove(acl);
        }
        meta.version += 1;
        if let Err(e) = meta.persist(&shard.meta_dir()) {
            let msg = format!("persisting metadata failed: {e:#}");
            tracing::error!(error = %msg, "ACL deletion not applied");
            return Err((ec::KAFKA_STORAGE_ERROR, msg));
        }
        tracing::info!(deleted = deleted.iter().map(Vec::len).sum::<usize>(), "ACLs deleted");
        broadcast(shard, meta).await;
        Ok(deleted)
    }

    async fn change(&self, request: ControllerRequest) -> Vec<(String, i16, Option<String>)> {
        let _permit = self.serial.acquire_permit(1).await.expect("semaphore never closes");
        let shard = &self.shard;
        let mut meta = (**shard.metadata.borrow()).clone();
        let mut results = Vec::new();
        let mut changed = false;
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
            ControllerRequest::CreateTopics { topics, validate_only } => {
                for topic in topics {
                    let outcome = create_topic(shard, &mut meta, &topic, validate_only);
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
                        Some(n) if count <= n => {
                            Err((ec::INVALID_PARTITIONS, format!("topic {name} has {n} partitions; the new count {count} must be larger")))
                        }
                        Some(_) if count > TOPIC_PARTITIONS_MAX => {
                            Err((ec::INVALID_PARTITIONS, format!("{count} partitions exceeds the limit of {TOPIC_PARTITIONS_MAX}")))
                        }
                        Some(n) => {
                            if !validate_only {
                                let placed = meta.place_by_space((count - n) as usize, shard.shard_count(), &log_dir_free_bytes(shard));
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
            ControllerRequest::AlterConfigs { resources, validate_only } => {
                let (altered, c) = config_ops::alter(shard, &mut meta, &resources, validate_only);
                results.extend(altered);
                changed |= c;
            }
        }
        if changed {
            meta.version += 1;
            if let Err(e) = meta.persist(&shard.meta_dir()) {
                let msg = format!("persisting metadata failed: {e:#}");
                tracing::error!(error = %msg, "metadata change not applied");
                return results.into_iter().map(|(n, _, _)| (n, ec::KAFKA_STORAGE_ERROR, Some(msg.clone()))).collect();
            }
            broadcast(shard, meta).await;
        }
        results
    }
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

pub use crate::metadata::is_internal_topic;

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
