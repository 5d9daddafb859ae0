//! Shards: one pinned glommio executor per core. A shard owns the partitions the placement table
//! gives it and answers the calls other shards make on them over the channel mesh (`router`).
//! It knows nothing of the layers above it (connections, handlers, coordinators): `broker`
//! starts those, and each registers its own calls on the router.

pub mod hw_checkpoint;
pub mod log_dirs;
pub mod maintenance;
pub mod messages;
pub mod partition_ops;
pub mod probe;
pub mod replicas;
pub mod replication_quota;
pub mod router;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::budget::ByteBudget;
use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;
use crate::notify::Notify;
use crate::storage::log::Partition;
use router::Router;

/// Messages buffered per shard pair before a sender waits.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;

pub type TopicPartition = (String, i32);

pub type LocalFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T>>>;

/// A transactional producer's batches in partitions where it has no open transaction yet, for
/// the transaction coordinator to confirm (KIP-890).
#[derive(Debug, Clone)]
pub struct TxnVerification {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TopicPartition>,
    /// Transactions v2 (KIP-890 part 2): add the partitions to the producer's transaction,
    /// starting one if none is open, instead of only checking that they are there. All of a
    /// request's partitions go in one call, as Kafka's AddPartitionsToTxnManager batches them:
    /// separate calls for one transactional id would find each other in progress.
    pub add: bool,
}

/// Asks the producer's transaction coordinator; answers an error code per partition, in order
/// (NONE: the partition is in the producer's ongoing transaction). Registered at boot by the
/// transaction layer, which the shard does not name.
pub type TxnVerifier = Rc<dyn Fn(TxnVerification) -> LocalFuture<Vec<i16>>>;

pub struct Shard {
    pub id: usize,
    pub config: Rc<BrokerConfig>,
    pub metadata: RefCell<Rc<ClusterMetadata>>,
    pub metadata_changed: Notify,
    pub partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    /// The partitions this shard leads that have other replicas: what it knows of their
    /// followers (kept by `partition_ops::apply_metadata` and replica fetches).
    pub leaders: RefCell<HashMap<TopicPartition, replicas::LeaderReplicas>>,
    pub router: Rc<Router>,
    pub shutting_down: Cell<bool>,
    /// Set once at boot (see [`TxnVerifier`]); until then transactional batches are refused.
    pub txn_verifier: std::cell::OnceCell<TxnVerifier>,
    /// Connections, scheduling lag and stalls of this shard.
    pub shard_probe: probe::ShardProbe,
    /// Zero-copy sends from this shard (a probe: sendfile calls and bytes).
    pub sendfile_calls: Cell<u64>,
    pub sendfile_bytes: Cell<u64>,
    /// Which log directories failed, as this shard knows.
    pub log_dirs: log_dirs::LogDirHealth,
    /// Bytes appended to this shard's partitions and not yet durable
    /// (`shardlog.dirty.shard.bytes`): a produce waits while it is spent.
    pub dirty_budget: Rc<ByteBudget>,
    /// The batch caches of this shard's partitions together (`shardlog.cache.shard.bytes`):
    /// the oldest batch goes first when they pass it.
    pub batch_cache: Rc<crate::storage::cache::ShardCache>,
    /// Request bytes read by this shard's connections and not yet answered (its share of
    /// `queued.max.request.bytes`): connections stop reading while it is spent.
    pub request_budget: Rc<ByteBudget>,
    /// Bytes moved for throttled replicas (`*.replication.throttled.rate`).
    pub replication_quotas: replication_quota::ReplicationQuotas,
    /// The high watermarks `replication-offset-checkpoint` had at start, for the replicated
    /// partitions this shard has not opened yet (each is taken when it opens).
    pub hw_checkpoint: RefCell<HashMap<TopicPartition, i64>>,
}

impl Shard {
    pub fn shard_count(&self) -> usize {
        self.router.shard_count()
    }

    /// Registers on this shard's router the service for calls of type `C`; `handler` gets the
    /// shard with each call. The shard is held weakly, since the router belongs to it.
    pub fn serve<C, F, Fut>(self: &Rc<Self>, handler: F)
    where
        C: router::ShardCall,
        F: Fn(Rc<Shard>, C) -> Fut + 'static,
        Fut: std::future::Future<Output = C::Reply> + 'static,
    {
        let shard = Rc::downgrade(self);
        self.router.serve(move |call: C| handler(shard.upgrade().expect("the shard outlives its router"), call));
    }

    /// Runs `call` on shard `to`: here, or over the mesh (see [`router::Router::call`]).
    pub async fn call<C: router::ShardCall>(&self, to: usize, call: C) -> Result<C::Reply, router::CallError> {
        self.router.call(to, call).await
    }

    pub fn meta_dir(&self) -> PathBuf {
        meta_dir(&self.config)
    }

    /// The owner shard of a partition this node leads, or None if the topic or partition
    /// does not exist, or another broker leads it (or none does: its broker is fenced).
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        let node_id = self.config.node_id;
        self.metadata.borrow().placement(topic, partition).filter(|p| p.replicas.is_empty() || p.leader == node_id).map(|p| p.shard)
    }

    /// The error for a partition this shard does not hold: KAFKA_STORAGE_ERROR if the metadata
    /// places it here (its log could not be opened, e.g. in a failed log directory), otherwise
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn absent_partition_error(&self, topic: &str, partition: i32) -> i16 {
        use shardlog_protocol::error_code as ec;
        if self.owner(topic, partition) == Some(self.id) {
            ec::KAFKA_STORAGE_ERROR
        } else {
            ec::UNKNOWN_TOPIC_OR_PARTITION
        }
    }

    /// Kafka's check of a request's `current_leader_epoch` against the partition's: NONE when
    /// they agree or the client sent none (-1), FENCED_LEADER_EPOCH when the client's is older
    /// (it refreshes its metadata), UNKNOWN_LEADER_EPOCH when newer (this broker has not seen
    /// the change yet: the client retries).
    pub fn check_leader_epoch(&self, topic: &str, partition: i32, current_leader_epoch: i32) -> i16 {
        use shardlog_protocol::error_code as ec;
        if current_leader_epoch < 0 {
            return ec::NONE;
        }
        let Some(ours) = self.metadata.borrow().placement(topic, partition).map(|p| p.leader_epoch) else { return ec::NONE };
        match current_leader_epoch.cmp(&ours) {
            std::cmp::Ordering::Less => ec::FENCED_LEADER_EPOCH,
            std::cmp::Ordering::Greater => ec::UNKNOWN_LEADER_EPOCH,
            std::cmp::Ordering::Equal => ec::NONE,
        }
    }

    /// host:port of broker `node_id`'s inter-broker listener, or why there is none to use.
    pub fn inter_broker_address(&self, node_id: i32) -> Result<crate::inter_broker::BrokerAddress, String> {
        use crate::security::SecurityProtocol;
        let Some(listener) = self.config.inter_broker_listener() else {
            return Err(String::from("this broker has no client listener to reach other brokers on"));
        };
        let tls = match listener.security_protocol {
            SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext => None,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl if self.config.inter_broker_tls.is_some() => self.config.inter_broker_tls.clone(),
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => {
                return Err(format!(
                    "the inter-broker listener {} is {:?} but has no truststore to verify other brokers with: set ssl.truststore.location (or ssl.truststore.certificates) to the CA that signed the brokers' certificates",
                    listener.name, listener.security_protocol
                ))
            }
        };
        // Checked when the configuration was read: a SASL listener has a login.
        let sasl = self.config.inter_broker_sasl.clone().filter(|_| listener.security_protocol.uses_sasl()).map(std::sync::Arc::new);
        let meta = self.metadata.borrow();
        let Some(broker) = meta.brokers.get(&node_id) else { return Err(format!("broker {node_id} is not registered")) };
        let Some(endpoint) = broker.endpoint(&listener.name) else { return Err(format!("broker {node_id} has no {} listener", listener.name)) };
        Ok(crate::inter_broker::BrokerAddress { address: format!("{}:{}", endpoint.host, endpoint.port), tls, sasl })
    }

    pub fn local_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }
}

pub fn meta_dir(config: &BrokerConfig) -> PathBuf {
    config.log_dirs[0].join("__shardlog_meta")
}
