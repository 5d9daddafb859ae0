//! The metadata controller, on shard 0: creates and deletes topics and partitions, ACLs and
//! configs, hands out producer ids, persists the result, and broadcasts it to every shard before
//! answering. Other shards reach it with the calls below, served by [`Controller::serve`].

pub mod config_ops;
pub mod placement;
pub mod quorum;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::runtime::{Permit, Semaphore};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use shardlog_protocol::error_code as ec;

use crate::config::QuorumVoter;
use crate::metadata::records::{self, MetadataRecord};
use crate::metadata::{validate_topic_name, BrokerEndpoint, BrokerRegistration, ClusterMetadata, PartitionPlacement, TopicMetadata};
use crate::shard::messages::ApplyMetadata;
use crate::shard::router::ShardCall;
use crate::shard::Shard;
use crate::storage::meta_properties;
use quorum::{ProposeError, Quorum};

/// The shard that runs the controller.
pub const CONTROLLER_SHARD: usize = 0;

/// A metadata change: one result per topic, ACL or config resource, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topics: Vec<NewPartitions>,
        validate_only: bool,
    },
    /// `__consumer_offsets` or `__transaction_state`, when a coordinator is first needed: created
    /// once (asking again when it exists succeeds) with `partitions` spread over the live
    /// brokers, each with the topic's configured replication factor (or fewer replicas, one per
    /// live broker, when fewer are live).
    CreateInternalTopic {
        name: String,
        partitions: i32,
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
    /// AlterClientQuotas: alterations already validated by the handler; one result per entry.
    AlterClientQuotas {
        entries: Vec<QuotaAlteration>,
        validate_only: bool,
    },
    /// UnregisterBroker: the broker's registration goes, and with it its leadership.
    UnregisterBroker {
        node_id: i32,
    },
    /// UpdateFeatures: all or nothing (one result per feature, all the same).
    UpdateFeatures {
        updates: Vec<crate::metadata::features::FeatureUpdate>,
        validate_only: bool,
    },
    /// ElectLeaders: a leader election (0 preferred, 1 unclean) for each (topic, partition),
    /// one result each, named `topic-partition`.
    ElectLeaders {
        election_type: i8,
        partitions: Vec<(String, i32)>,
    },
    /// AlterPartitionReassignments (KIP-455): for each (topic, partition), the replicas to move
    /// it to, or None to cancel its reassignment; one result each, named `topic-partition`.
    /// `allow_replication_factor_change` (KIP-860): whether a target may have another number of
    /// replicas than the partition has.
    AlterPartitionReassignments {
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    },
}

/// ElectLeaders' election types (KIP-460).
pub const ELECTION_PREFERRED: i8 = 0;
pub const ELECTION_UNCLEAN: i8 = 1;

/// The quota changes of one client quota entity: (key, Some(value) to set, None to remove).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuotaAlteration {
    pub entity: crate::quota::QuotaEntity,
    pub ops: Vec<(String, Option<f64>)>,
}

impl QuotaAlteration {
    /// How results and logs name the entity: `user=alice,client-id=<default>`.
    pub fn name(&self) -> String {
        let parts: Vec<String> = self.entity.components().iter().map(|(t, n)| format!("{t}={}", n.to_wire().unwrap_or("<default>"))).collect();
        parts.join(",")
    }
}

/// Config changes for one resource (a topic, or the broker).
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions`.
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
    /// An explicit replica assignment: (partition, broker ids), as the request lists them.
    /// Empty: the controller places the partitions.
    #[serde(default)]
    pub assignments: Vec<(i32, Vec<i32>)>,
}

/// CreatePartitions for one topic: the new partition count, and optionally the brokers of each
/// new partition, in partition order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewPartitions {
    pub name: String,
    pub count: i32,
    pub assignments: Option<Vec<Vec<i32>>>,
}

impl ControllerRequest {
    /// The name of each item, in request order, as its result names it.
    fn names(&self) -> Vec<String> {
        match self {
            ControllerRequest::CreateTopics { topics, .. } => topics.iter().map(|t| t.name.clone()).collect(),
            ControllerRequest::DeleteTopics { names } => names.clone(),
            ControllerRequest::CreatePartitions { topics, .. } => topics.iter().map(|t| t.name.clone()).collect(),
            ControllerRequest::CreateInternalTopic { name, .. } => vec![name.clone()],
            ControllerRequest::CreateAcls { acls } => acls.iter().map(acl_name).collect(),
            ControllerRequest::AlterConfigs { resources, .. } => resources.iter().map(|r| r.resource_name.clone()).collect(),
            ControllerRequest::AlterClientQuotas { entries, .. } => entries.iter().map(QuotaAlteration::name).collect(),
            ControllerRequest::UnregisterBroker { node_id } => vec![format!("broker {node_id}")],
            ControllerRequest::UpdateFeatures { updates, .. } => updates.iter().map(|u| u.name.clone()).collect(),
            ControllerRequest::ElectLeaders { partitions, .. } => partitions.iter().map(|(t, p)| format!("{t}-{p}")).collect(),
            ControllerRequest::AlterPartitionReassignments { partitions, .. } => partitions.iter().map(|(t, p, _)| format!("{t}-{p}")).collect(),
        }
    }
}

fn acl_name(acl: &crate::authorizer::AclBinding) -> String {
    format!("{} {} {}", acl.principal, acl.operation.name(), acl.resource_name)
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

/// DescribeQuorum: the metadata quorum as its leader sees it.
#[derive(Debug)]
pub struct DescribeQuorum;

/// The metadata quorum as its leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader: i32,
    /// The Raft term: KRaft's leader epoch.
    pub term: u64,
    /// The commit index: KRaft's high watermark.
    pub high_watermark: u64,
    /// (node id, last index known in its log), every voter.
    pub voters: Vec<(i32, u64)>,
    /// (node id, controller listener address), every voter.
    pub endpoints: Vec<(i32, String)>,
    /// (node id, last fetch, last caught up, in ms since the epoch; -1 unknown), every voter.
    #[serde(default)]
    pub voter_times: Vec<(i32, i64, i64)>,
    /// (node id, last index it fetched, when it last fetched in ms since the epoch), every
    /// broker-only node that fetched from this leader lately.
    #[serde(default)]
    pub observers: Vec<(i32, u64, i64)>,
    /// The metadata directory id of the voters, where known.
    #[serde(default)]
    pub directory_ids: BTreeMap<i32, uuid::Uuid>,
    /// The metadata directory id of the observers, where known: one may be under a voter's id
    /// with another directory.
    #[serde(default)]
    pub observer_directory_ids: BTreeMap<i32, uuid::Uuid>,
}

impl ShardCall for DescribeQuorum {
    type Reply = Result<QuorumDescription, (i16, String)>;
}

/// AddRaftVoter and RemoveRaftVoter (KIP-853): a change of a dynamic quorum's voter set,
/// answered by the active controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeVoters {
    /// The request's cluster id, checked against this cluster's when given.
    pub cluster_id: Option<String>,
    pub change: VoterCall,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VoterCall {
    /// Add `node_id`, reached for the quorum at `address` (its controller listener); wait up
    /// to `timeout_ms` for the change to commit.
    Add {
        node_id: i32,
        address: String,
        timeout_ms: u64,
        /// Its metadata directory id (Kafka's VoterDirectoryId); None: not named.
        #[serde(default)]
        directory_id: Option<uuid::Uuid>,
    },
    /// Remove `node_id`; where `directory_id` is named, only the voter with that directory.
    Remove {
        node_id: i32,
        #[serde(default)]
        directory_id: Option<uuid::Uuid>,
    },
    /// The voter `node_id` with `directory_id` is now reached at `address` (Kafka's
    /// UpdateRaftVoter, which a voter sends when its controller listener moved).
    Update { node_id: i32, directory_id: Option<uuid::Uuid>, address: String },
}

impl ShardCall for ChangeVoters {
    type Reply = Result<(), (i16, String)>;
}

/// AlterPartition (KIP-497, as Kafka's ReplicationControlManager answers it): a partition
/// leader asks for a new ISR, under the leader and partition epochs it knows. Any node may
/// call it; it goes to the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartition {
    pub topic: String,
    pub partition: i32,
    /// The broker asking: the partition's leader.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// A partition's leader, ISR and epochs, as the metadata log has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    /// The replicas: an ISR change may complete a reassignment, which changes them.
    #[serde(default)]
    pub replicas: Vec<i32>,
}

impl PartitionState {
    fn of(p: &PartitionPlacement) -> PartitionState {
        PartitionState { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch, isr: p.isr.clone(), replicas: p.replicas.clone() }
    }
}

impl ShardCall for AlterPartition {
    type Reply = Result<PartitionState, (i16, String)>;
}

/// A voter change that passed Kafka's checks: raft's change, the new set (sorted), and what it
/// does, for messages.
type CheckedVoterChange = (quorum::VoterChange, Vec<QuorumVoter>, String);

/// The longest AddRaftVoter waits for a new voter to be caught up, and for the change to
/// commit, whatever its TimeoutMs says: with a commit's wait past it (`leader_wait`), under
/// [`FORWARD_TIMEOUT`], so that a node that forwarded the request gets the active
/// controller's answer.
const VOTER_CHANGE_WAIT_MAX: Duration = Duration::from_secs(10);

/// Upper bound on partitions per topic, so that one request cannot create millions of files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// Producer ids reserved (and persisted) at a time.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct Controller {
    shard: Rc<Shard>,
    /// One metadata change at a time.
    serial: Semaphore,
    /// One request to create an internal topic at a time from this node: the requests that
    /// wait behind it find the topic created.
    internal_topic_creation: Semaphore,
    /// The next producer id to hand out, the end of the reserved block, and the quorum term
    /// they belong to (a new leader starts after the last block any leader reserved).
    next_producer_id: Cell<i64>,
    producer_id_block_end: Cell<i64>,
    producer_ids_term: Cell<u64>,
    /// This node's metadata view: every committed record applied, and where this node keeps
    /// its replicas. Shards get copies of it.
    view: RefCell<ClusterMetadata>,
    quorum: OnceCell<Rc<Quorum>>,
    /// The term in which this node last wrote the records every cluster needs (cluster id,
    /// internal topics); once per term it leads.
    bootstrapped_term: Cell<u64>,
    /// While this node leads: when each broker last heartbeat, and the term these times are
    /// of (a new leader gives every broker a full session from its first look).
    heartbeats: RefCell<(u64, std::collections::HashMap<i32, std::time::Instant>)>,
    /// This node's registration, once the controller has it.
    registered: RefCell<Option<BrokerRegistration>>,
    /// This process's incarnation, as Kafka's broker keeps one per start: registering again
    /// (after an UnregisterBroker, or a controller that lost it) is the same process, and the
    /// controller can tell it from another process with the same node id.
    incarnation_id: uuid::Uuid,
    /// At the active controller: the last refused registration logged, per node id (the
    /// incarnation, and when), so that a node retrying is not logged at every retry. One entry
    /// per registered node id at most.
    refusals_reported: RefCell<std::collections::HashMap<i32, (uuid::Uuid, std::time::Instant)>>,
}

/// How long a metadata change waits for a leader of the quorum (an election in progress)
/// before it is answered NOT_CONTROLLER.
fn leader_wait(shard: &Shard) -> Duration {
    Duration::from_millis(shard.config.quorum.fetch_timeout_ms + shard.config.quorum.election_timeout_ms)
}

/// A controller call sent on to the active controller by a node that is not it.
#[derive(Debug, Serialize, Deserialize)]
enum Forwarded {
    Change(ControllerRequest),
    AllocateProducerId,
    DeleteAcls(Vec<crate::authorizer::AclFilter>),
    RegisterBroker(BrokerRegistration),
    DescribeQuorum,
    Heartbeat { node_id: i32, incarnation_id: uuid::Uuid },
    ChangeVoters(ChangeVoters),
    AlterPartition(AlterPartition),
}

#[derive(Debug, Serialize, Deserialize)]
enum ForwardedReply {
    Change(Vec<(String, i16, Option<String>)>),
    ProducerId(Result<i64, i16>),
    DeleteAcls(Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)>),
    Registered(Result<(), (i16, String)>),
    Quorum(Result<QuorumDescription, (i16, String)>),
    Heartbeat(Result<(), (i16, String)>),
    Voters(Result<(), (i16, String)>),
    AlterPartition(Result<PartitionState, (i16, String)>),
}

/// Where a controller call is answered.
enum Route {
    /// This node is the ready leader.
    Here,
    /// Node `n` leads: forward to it.
    There(i32),
    /// No leader known within the wait.
    Nowhere(i16, String),
}

/// Where a registration comes from, at the active controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registrant {
    /// This process: the active controller registers its own node.
    ThisProcess,
    /// Another node, over the quorum's links.
    Forwarded,
}

/// How long a forwarded call waits for the active controller's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// Between attempts to register with the controller.
const REGISTRATION_RETRY: Duration = Duration::from_millis(300);

/// How often a node that waits for the quorum says so.
const QUORUM_WAIT_REPORT_INTERVAL: Duration = Duration::from_secs(5);

impl Controller {
    /// Loads this node's metadata view, starts the metadata quorum, registers the controller's
    /// calls on this shard's router, and returns once the metadata log has written the view.
    pub async fn start(shard: &Rc<Shard>) -> Result<Rc<Controller>> {
        assert_eq!(shard.id, CONTROLLER_SHARD, "the controller runs on shard {CONTROLLER_SHARD}");
        let dir = shard.meta_dir();
        let mut view = ClusterMetadata::load(&dir)?.unwrap_or_else(|| ClusterMetadata::new(String::new()));
        if view.repair_placement(shard.shard_count(), shard.config.log_dirs.len()) {
            view.version += 1;
            tracing::info!("placement table adjusted to {} shards and {} log directories", shard.shard_count(), shard.config.log_dirs.len());
            view.persist(&dir)?;
        }
        let controller = Rc::new(Controller {
            shard: shard.clone(),
            serial: Semaphore::new(1),
            internal_topic_creation: Semaphore::new(1),
            next_producer_id: Cell::new(0),
            producer_id_block_end: Cell::new(0),
            producer_ids_term: Cell::new(0),
            view: RefCell::new(view.clone()),
            quorum: OnceCell::new(),
            bootstrapped_term: Cell::new(0),
            heartbeats: RefCell::new((0, std::collections::HashMap::new())),
            registered: RefCell::new(None),
            incarnation_id: uuid::Uuid::new_v4(),
            refusals_reported: RefCell::new(std::collections::HashMap::new()),
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
        shard.router.serve(move |_: DescribeQuorum| {
            let c = c.clone();
            async move { c.describe_quorum().await }
        });
        let c = controller.clone();
        shard.router.serve(move |call: ChangeVoters| {
            let c = c.clone();
            async move { c.change_voters(call).await }
        });
        let c = controller.clone();
        shard.router.serve(move |change: AlterPartition| {
            let c = c.clone();
            async move { c.alter_partition(change).await }
        });
        let c = controller.clone();
        shard.router.serve(move |request: DeleteAcls| {
            let c = c.clone();
            async move { c.delete_acls(request).await }
        });
        if !view.cluster_id.is_empty() {
            broadcast(shard, view.clone()).await;
        }
        let applier: Rc<dyn quorum::Applier> = Rc::new(ViewApplier(Rc::downgrade(&controller)));
        let config = &shard.config;
        let mut quorum_config = config.quorum.clone();
        // Kafka's meta.properties in the first log directory: its directory id names
        // this node in a dynamic quorum.
        let known_cluster = Some(view.cluster_id.as_str()).filter(|id| !id.is_empty()).or(config.cluster_id.as_deref());
        let directory_id = meta_properties::ensure_metadata_dir(&config.log_dirs, config.node_id, known_cluster, None)?;
        quorum_config.directory_id = Some(directory_id);
        let votes = if quorum_config.dynamic() {
            // KIP-853: a controller starts from the voters its log (or `shardlog format`) names;
            // one that joins a running quorum, and a broker-only node, ask the bootstrap servers.
            let known = if config.quorum.controller { quorum::bootstrap::start_voters(&dir, config.node_id, view.voters())? } else { None };
            let voters = match known {
                Some(voters) => voters,
                None => quorum::transport::discover(&quorum_config.bootstrap_servers, config.node_id, config.cluster_id.clone(), quorum_config.tls.as_ref())
                    .await
                    .voters(),
            };
            quorum_config.voters = voters;
            quorum_config.voters_found = true;
            let votes = config.quorum.controller && quorum_config.voters.iter().any(|v| v.is(config.node_id, directory_id));
            if let Some(other) = quorum_config.voters.iter().find(|v| v.node_id == config.node_id && !v.is(config.node_id, directory_id)) {
                // A voter's id with another metadata directory: the disk it voted with is gone,
                // and with it what it promised. Voting from an empty log could elect a leader
                // without committed entries, so it only observes (as Kafka's replica key rule).
                tracing::error!(
                    node_id = config.node_id,
                    directory_id = %meta_properties::uuid_text(directory_id),
                    voter_directory_id = %other.directory_id.map(meta_properties::uuid_text).unwrap_or_default(),
                    "this node's id is a voter of the metadata quorum, but with another metadata directory (replaced or lost?): it does \
                     not vote, and observes the log; remove the old voter (kafka-metadata-quorum.sh remove-controller --controller-id {} \
                     --controller-directory-id {}) and add this node again (add-controller)",
                    config.node_id,
                    other.directory_id.map(meta_properties::uuid_text).unwrap_or_default()
                );
            } else if config.quorum.controller && !votes {
                tracing::info!(
                    voters = ?quorum_config.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(),
                    "this controller is not a voter of the metadata quorum: it observes the metadata log until it is added as one"
                );
            }
            votes
        } else {
            config.quorum.controller
        };
        let q = if votes {
            let listen = config.controller_listener().map(|l| l.bind);
            Quorum::start(&dir, config.node_id, config.cluster_id.clone(), &quorum_config, listen, view.applied_index, applier)?
        } else {
            // A broker-only node: no vote, no log of its own; it fetches what the voters commit. So
            // does a dynamic quorum's controller until it is added as a voter.
            let promote = if config.quorum.controller && quorum_config.dynamic() {
                let listen = config.controller_listener().map(|l| l.bind).context("a controller of a dynamic quorum needs its controller listener")?;
                Some((dir.clone(), listen))
            } else {
                None
            };
            Quorum::start_observer(config.node_id, config.cluster_id.clone(), &quorum_config, view.applied_index, applier, promote)?
        };
        let c = Rc::downgrade(&controller);
        q.set_forward_handler(Rc::new(move |from, request| {
            let c = c.clone();
            Box::pin(async move {
                match c.upgrade() {
                    Some(c) => c.answer_forwarded(from, request).await,
                    None => Vec::new(),
                }
            })
        }));
        let _ = controller.quorum.set(q);
        let c = Rc::downgrade(&controller);
        crate::runtime::spawn(async move { lead(c).await }).detach();
        if votes && quorum_config.dynamic() {
            let c = Rc::downgrade(&controller);
            crate::runtime::spawn(async move { update_own_endpoint(c).await }).detach();
        }
        if shard.config.quorum.broker {
            // A controller-only node is no broker: it never registers, so it is offered no
            // partitions and listed to no client.
            let c = Rc::downgrade(&controller);
            crate::runtime::spawn(async move { keep_registered(c).await }).detach();
        }
        controller.wait_for_cluster().await;
        // The cluster id is known now (a node that joined learned it from the quorum): Kafka's
        // meta.properties carries it, and a directory of another cluster stops the node here.
        let (dirs, node_id, cluster_id) = (config.log_dirs.clone(), config.node_id, controller.view.borrow().cluster_id.clone());
        crate::runtime::spawn_blocking(move || meta_properties::ensure_metadata_dir(&dirs, node_id, Some(&cluster_id), None)).await?;
        Ok(controller)
    }

    /// The metadata quorum, for status reports.
    pub fn quorum_handle(&self) -> Rc<Quorum> {
        self.quorum().clone()
    }

    fn quorum(&self) -> &Rc<Quorum> {
        self.quorum.get().expect("the quorum starts with the controller")
    }

    /// Waits until the view has been written by the metadata log at least once (a new node,
    /// or one whose image predates the log), saying now and then what it waits for.
    async fn wait_for_cluster(&self) {
        let mut last_report = std::time::Instant::now();
        while self.view.borrow().applied_index == 0 || self.view.borrow().cluster_id.is_empty() {
            let changed = self.quorum().status_changed.notified();
            futures::select! {
                _ = futures::FutureExt::fuse(changed) => {}
                _ = futures::FutureExt::fuse(crate::runtime::sleep(Duration::from_millis(200))) => {}
            }
            if last_report.elapsed() >= QUORUM_WAIT_REPORT_INTERVAL {
                let status = self.quorum().status();
                tracing::info!(leader = ?status.leader, term = status.term, voters = ?self.shard.config.quorum.voters.iter().map(|v| v.node_id).collect::<Vec<_>>(), "waiting for the metadata quorum to elect a leader and write the cluster's first records");
                last_report = std::time::Instant::now();
            }
        }
    }

    /// Applies committed records to the view, persists it, and gives it to every shard.
    async fn apply_records(&self, index: u64, batch: Vec<MetadataRecord>) -> Result<()> {
        let mut view = self.view.borrow().clone();
        let placer = LocalPlacer(&self.shard);
        for record in &batch {
            // A record the image cannot take is a bug or a damaged log: skip it, loudly, rather
            // than stop applying the rest of the cluster's metadata.
            if let Err(e) = records::apply(&mut view, record, &placer) {
                tracing::error!(index, error = %e, record = ?record, "metadata record not applied");
            }
        }
        if view.finalized_features != self.view.borrow().finalized_features {
            view.finalized_features_epoch = i64::try_from(index).unwrap_or(i64::MAX);
        }
        view.version += 1;
        view.applied_index = index;
        let dir = self.shard.meta_dir();
        let persisted = view.clone();
        crate::runtime::spawn_blocking(move || persisted.persist(&dir)).await?;
        *self.view.borrow_mut() = view.clone();
        broadcast(&self.shard, view).await;
        Ok(())
    }

    /// Where a call should be answered: here if this node is the ready leader, else the
    /// leader it knows, waiting (bounded) through an election.
    async fn route(&self) -> Route {
        let quorum = self.quorum();
        let me = self.shard.config.node_id;
        let mut status = quorum.status();
        if !status.ready_leader && status.leader.is_none_or(|l| l == me) {
            status = quorum.wait_for_leader(leader_wait(&self.shard)).await;
        }
        match status.leader {
            _ if status.ready_leader => Route::Here,
            Some(leader) if leader != me => Route::There(leader),
            _ => Route::Nowhere(
                ec::NOT_CONTROLLER,
                String::from("the metadata quorum has no leader (an election is in progress, or too few controllers are up)"),
            ),
        }
    }

    async fn forward(&self, leader: i32, call: Forwarded) -> Result<ForwardedReply, (i16, String)> {
        let request = serde_json::to_vec(&call).expect("forwarded calls serialize");
        let answer = self
            .quorum()
            .forward(leader, request, FORWARD_TIMEOUT)
            .await
            .map_err(|e| (ec::NOT_CONTROLLER, format!("the active controller, node {leader}, did not answer: {e}")))?;
        serde_json::from_slice(&answer).map_err(|e| (ec::UNKNOWN_SERVER_ERROR, format!("the active controller's answer does not decode: {e}")))
    }

    /// Answers a call another node forwarded; never forwards it again (the sender picked
    /// this node as the leader; if it no longer is, the answer says NOT_CONTROLLER).
    async fn answer_forwarded(&self, from: i32, request: Vec<u8>) -> Vec<u8> {
        let reply = match serde_json::from_slice::<Forwarded>(&request) {
            Ok(Forwarded::Change(r)) => ForwardedReply::Change(self.change_here(r).await),
            Ok(Forwarded::AllocateProducerId) => ForwardedReply::ProducerId(self.allocate_producer_id_here().await),
            Ok(Forwarded::DeleteAcls(filters)) => ForwardedReply::DeleteAcls(self.delete_acls_here(DeleteAcls { filters }).await),
            Ok(Forwarded::RegisterBroker(r)) => ForwardedReply::Registered(self.register_broker_here(r, Registrant::Forwarded).await),
            Ok(Forwarded::DescribeQuorum) => ForwardedReply::Quorum(self.describe_quorum_here()),
            Ok(Forwarded::Heartbeat { node_id, incarnation_id }) => ForwardedReply::Heartbeat(self.heartbeat_here(node_id, incarnation_id).await),
            Ok(Forwarded::ChangeVoters(call)) => ForwardedReply::Voters(self.change_voters_here(call).await),
            Ok(Forwarded::AlterPartition(change)) => ForwardedReply::AlterPartition(self.alter_partition_here(change).await),
            Err(e) => {
                tracing::warn!(from, error = %e, "a forwarded controller call does not decode: ignored (nodes of different versions?)");
                ForwardedReply::Registered(Err((ec::INVALID_REQUEST, format!("undecodable forwarded call: {e}"))))
            }
        };
        serde_json::to_vec(&reply).expect("replies serialize")
    }

    async fn describe_quorum(&self) -> Result<QuorumDescription, (i16, String)> {
        match self.route().await {
            Route::Here => self.describe_quorum_here(),
            Route::There(leader) => match self.forward(leader, Forwarded::DescribeQuorum).await? {
                ForwardedReply::Quorum(r) => r,
                other => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
            },
            Route::Nowhere(code, msg) => Err((code, msg)),
        }
    }

    fn describe_quorum_here(&self) -> Result<QuorumDescription, (i16, String)> {
        let status = self.quorum().status();
        if !status.ready_leader {
            return Err((ec::NOT_LEADER_OR_FOLLOWER, String::from("this node no longer leads the metadata quorum")));
        }
        let config = &self.shard.config;
        let endpoints = if self.quorum().dynamic {
            self.view.borrow().quorum_voters.clone()
        } else if config.quorum.voters.is_empty() {
            config.controller_listener().map(|l| vec![(config.node_id, l.bind.to_string())]).unwrap_or_default()
        } else {
            config.quorum.voters.iter().map(|v| (v.node_id, v.address.clone())).collect()
        };
        let mut voters = status.voter_progress.clone();
        voters.sort();
        // A controller added as a voter fetched as an observer until then: it is listed once. A
        // node under a voter's id with another metadata directory is another replica (KIP-853's
        // replica key): it is listed as the observer it is.
        let recorded = self.view.borrow().voters();
        let is_voter = |id: i32, directory_id: Option<uuid::Uuid>| match (recorded.iter().find(|v| v.node_id == id), directory_id) {
            (Some(v), Some(d)) => v.is(id, d),
            (Some(_), None) => true,
            (None, _) => voters.iter().any(|(v, _)| *v == id),
        };
        let observed: Vec<_> = self.quorum().observers().into_iter().filter(|(id, o)| !is_voter(*id, o.directory_id)).collect();
        let observer_directory_ids = observed.iter().filter_map(|(id, o)| Some((*id, o.directory_id?))).collect();
        let directory_ids = self.view.borrow().quorum_voter_directory_ids.clone();
        let observers = observed.into_iter().map(|(id, o)| (id, o.index, quorum::epoch_ms(o.at))).collect();
        let voter_times = self.quorum().voter_times();
        Ok(QuorumDescription {
            leader: config.node_id,
            term: status.term,
            high_watermark: status.commit_index,
            voters,
            endpoints,
            observers,
            voter_times,
            directory_ids,
            observer_directory_ids,
        })
    }

    /// This node's registration: how clients reach it.
    fn registration(&self) -> BrokerRegistration {
        let config = &self.shard.config;
        BrokerRegistration {
            node_id: config.node_id,
            incarnation_id: self.incarnation_id,
            endpoints: config
                .client_listeners()
                .map(|l| BrokerEndpoint { listener: l.name.clone(), host: l.advertised_host.clone(), port: l.advertised_port })
                .collect(),
            rack: config.broker_rack.clone(),
            fenced: false,
            supported_features: crate::metadata::features::SUPPORTED_FEATURES.iter().map(|f| (f.name.to_string(), (f.level_min, f.level_max))).collect(),
        }
    }

    async fn register_broker_here(&self, registration: BrokerRegistration, registrant: Registrant) -> Result<(), (i16, String)> {
        let (_permit, old) = self.begin_change().await?;
        let node_id = registration.node_id;
        // The active controller registering itself needs no check: it won its election as
        // voter node_id, so no other process of that id can be live (two would be one voter
        // twice). This keeps a restarted single-node broker, or a restarted node that leads,
        // from waiting out its own previous incarnation's session and then fencing it.
        let checked = registrant == Registrant::Forwarded;
        if let Some(existing) = old.brokers.get(&node_id).filter(|_| checked) {
            let session = Duration::from_millis(self.shard.config.quorum.broker_session_timeout_ms);
            let now = std::time::Instant::now();
            // As in fence_silent_brokers, a broker this leader has not looked at yet gets a
            // full session from now.
            let last_heard = *self.heartbeat_times().entry(node_id).or_insert(now);
            if let Some(reason) = duplicate_registration(existing, &registration, last_heard, session, now) {
                // Once per refused incarnation (it retries every REGISTRATION_RETRY), and again
                // now and then while the refusals go on.
                let mut refusals = self.refusals_reported.borrow_mut();
                let due = refusals
                    .get(&node_id)
                    .is_none_or(|(incarnation, at)| *incarnation != registration.incarnation_id || now.duration_since(*at) >= QUORUM_WAIT_REPORT_INTERVAL);
                if due {
                    refusals.insert(node_id, (registration.incarnation_id, now));
                    tracing::warn!(node_id, refused_incarnation = %registration.incarnation_id, "refused a broker registration (DUPLICATE_BROKER_REGISTRATION): {reason}");
                }
                return Err((ec::DUPLICATE_BROKER_REGISTRATION, reason));
            }
        }
        let mut new = old.clone();
        tracing::info!(node_id, incarnation = %registration.incarnation_id, rack = ?registration.rack, endpoints = ?registration.endpoints, "broker registered");
        let restarted = old.brokers.get(&node_id).is_some_and(|b| b.incarnation_id != registration.incarnation_id);
        if restarted {
            // A new process of the node may lack what the last one had not made durable: it
            // leaves the ISRs it shares (the partition leaders add it back once it has caught
            // up), as if fenced first.
            set_fenced(&mut new, node_id, true);
        }
        new.brokers.insert(node_id, registration);
        // A broker fenced while it was down leads its partitions again.
        set_fenced(&mut new, node_id, false);
        if restarted {
            keep_epochs_where_unchanged(&old, &mut new);
        }
        self.commit(&old, &new).await?;
        self.heartbeat_times().insert(node_id, std::time::Instant::now());
        Ok(())
    }

    /// A broker's heartbeat, at the active controller: notes it, and unfences the broker if
    /// it was fenced. A broker the controller does not know under this incarnation is told to
    /// register again (STALE_BROKER_EPOCH).
    async fn heartbeat_here(&self, node_id: i32, incarnation_id: uuid::Uuid) -> Result<(), (i16, String)> {
        self.ensure_ready().await?;
        let fenced = match self.view.borrow().brokers.get(&node_id) {
            Some(b) if b.incarnation_id == incarnation_id => b.fenced,
            _ => return Err((ec::STALE_BROKER_EPOCH, format!("node {node_id} is not registered under this incarnation; register again"))),
        };
        self.heartbeat_times().insert(node_id, std::time::Instant::now());
        if fenced {
            let _permit = self.serial_permit().await?;
            let old = self.view.borrow().clone();
            let mut new = old.clone();
            set_fenced(&mut new, node_id, false);
            tracing::info!(node_id, "broker heartbeats again: unfenced, its partitions led by it again");
            self.commit(&old, &new).await?;
        }
        Ok(())
    }

    /// The heartbeat times of the current term.
    fn heartbeat_times(&self) -> std::cell::RefMut<'_, std::collections::HashMap<i32, std::time::Instant>> {
        let term = self.quorum().status().term;
        let mut heartbeats = self.heartbeats.borrow_mut();
        if heartbeats.0 != term {
            *heartbeats = (term, std::collections::HashMap::new());
        }
        std::cell::RefMut::map(heartbeats, |h| &mut h.1)
    }

    /// At the active controller: fences every broker not heard from for
    /// `broker.session.timeout.ms` (each gets a full session from this leader's first look).
    async fn fence_silent_brokers(&self) {
        let session = Duration::from_millis(self.shard.config.quorum.broker_session_timeout_ms);
        let now = std::time::Instant::now();
        let silent: Vec<i32> = {
            let view = self.view.borrow();
            let mut times = self.heartbeat_times();
            view.brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| now.duration_since(*times.entry(b.node_id).or_insert(now)) > session)
                .map(|b| b.node_id)
                .collect()
        };
        if silent.is_empty() {
            return;
        }
        let Ok((_permit, old)) = self.begin_change().await else { return };
        let mut new = old.clone();
        for id in &silent {
            tracing::warn!(
                node_id = id,
                session_timeout_ms = session.as_millis() as u64,
                "broker not heard from within broker.session.timeout.ms: fenced, its partitions have no leader until it returns"
            );
            set_fenced(&mut new, *id, true);
        }
        if let Err((code, msg)) = self.commit(&old, &new).await {
            tracing::warn!(code, error = %msg, "fencing silent brokers failed; trying again");
        }
    }

    /// `unclean.leader.election.enable`: a partition left without a leader, none of whose ISR
    /// members is live, gets a live replica from outside the ISR as its leader (and whole ISR),
    /// as Kafka's controller elects for topics that allow it. What only the old ISR held is
    /// lost; the log says which partitions.
    async fn elect_unclean_leaders(&self) {
        let config = self.shard.config.clone();
        let wanted =
            |view: &ClusterMetadata| unclean_elections(view, |configs| crate::topic_config::resolve(&config, view, configs).unclean_leader_election_enable);
        match self.elect(wanted, ELECTION_UNCLEAN).await {
            Ok(elected) if !elected.is_empty() => tracing::warn!(
                partitions = %elected.join(", "),
                "unclean.leader.election.enable: leaders elected outside the ISR, which had no live member; records only the old ISR held are lost"
            ),
            Ok(_) => {}
            Err((code, msg)) => tracing::warn!(code, error = %msg, "unclean leader elections failed; trying again"),
        }
    }

    /// The elections of `election_type` that `wanted` finds in the metadata, committed as one
    /// change: the partitions that got a leader (`topic-partition (node N)`), none if there
    /// was nothing to elect.
    async fn elect(&self, wanted: impl Fn(&ClusterMetadata) -> Vec<(String, i32)>, election_type: i8) -> Result<Vec<String>, (i16, String)> {
        if wanted(&self.view.borrow()).is_empty() {
            return Ok(Vec::new());
        }
        let (_permit, old) = self.begin_change().await?;
        let mut new = old.clone();
        let mut elected = Vec::new();
        for (topic, partition) in wanted(&old) {
            if let Ok(leader) = elect_leader(&mut new, &topic, partition, election_type) {
                elected.push(format!("{topic}-{partition} (node {leader})"));
            }
        }
        if !elected.is_empty() {
            self.commit(&old, &new).await?;
        }
        Ok(elected)
    }

    /// `auto.leader.rebalance.enable`: moves leadership back to the preferred replica (the
    /// first) of each partition where it is live and in the ISR, as Kafka's controller does
    /// every `leader.imbalance.check.interval.seconds`, so that leaders do not stay piled on
    /// the brokers that survived a failure. Each move is a preferred election (a new leader
    /// epoch); at most [`BALANCE_ELECTIONS_MAX`] per round.
    async fn balance_leaders(&self) {
        match self.elect(preferred_elections, ELECTION_PREFERRED).await {
            Ok(moved) if !moved.is_empty() => {
                tracing::info!(partitions = moved.len(), "auto.leader.rebalance.enable: leadership moved back to preferred replicas")
            }
            Ok(_) => {}
            Err((code, msg)) => tracing::warn!(code, error = %msg, "moving leadership back to preferred replicas failed; trying again at the next check"),
        }
    }

    /// Registers this node with the active controller, retrying until it is done.
    async fn register(&self) {
        let registration = self.registration();
        let mut last_refusal_report = None;
        loop {
            let outcome = match self.route().await {
                Route::Here => self.register_broker_here(registration.clone(), Registrant::ThisProcess).await,
                Route::There(leader) => match self.forward(leader, Forwarded::RegisterBroker(registration.clone())).await {
                    Ok(ForwardedReply::Registered(r)) => r,
                    Ok(other) => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
                    Err(e) => Err(e),
                },
                Route::Nowhere(code, msg) => Err((code, msg)),
            };
            match outcome {
                Ok(()) => {
                    *self.registered.borrow_mut() = Some(registration);
                    return;
                }
                Err((ec::DUPLICATE_BROKER_REGISTRATION, msg)) => {
                    // Once at first, then now and then: the wait lasts up to a session.
                    if last_refusal_report.is_none_or(|t: std::time::Instant| t.elapsed() >= QUORUM_WAIT_REPORT_INTERVAL) {
                        tracing::warn!(
                            node_id = registration.node_id,
                            incarnation = %registration.incarnation_id,
                            "the controller refused this node's registration (DUPLICATE_BROKER_REGISTRATION: {msg}); retrying until that registration's session lapses"
                        );
                        last_refusal_report = Some(std::time::Instant::now());
                    }
                }
                Err((code, msg)) => tracing::debug!(code, error = %msg, "registration with the controller not done yet; retrying"),
            }
            crate::runtime::sleep(REGISTRATION_RETRY).await;
        }
    }

    /// Waits (bounded) until this node may change metadata: the quorum's ready leader, whose
    /// first records of its term (see [`Controller::bootstrap`]) are in, so that nothing is
    /// recorded before a new cluster's id.
    /// The start of a metadata change: holds the one-change-at-a-time permit, waits until
    /// this node may write the log (`ensure_ready`), and answers the view to change. The permit
    /// must be held until the change is committed.
    async fn begin_change(&self) -> Result<(Permit<'_>, ClusterMetadata), (i16, String)> {
        let permit = self.serial_permit().await?;
        let view = self.view.borrow().clone();
        Ok((permit, view))
    }

    /// The one-change-at-a-time permit, once this node may write the log. Readiness is waited
    /// for before queueing for the permit: a new leader's first records ([`Controller::bootstrap`])
    /// take the permit too, so a change that held it while waiting for them stalled both until
    /// its wait ran out (a new cluster's leader registered its own broker seconds late).
    async fn serial_permit(&self) -> Result<Permit<'_>, (i16, String)> {
        self.ensure_ready().await?;
        let permit = self.serial.acquire_permit(1).await.expect("semaphore never closes");
        // Checked again without waiting: leadership may have moved while in line.
        self.ready()?;
        Ok(permit)
    }

    async fn ensure_ready(&self) -> Result<(), (i16, String)> {
        self.ensure_leader().await?;
        let deadline = std::time::Instant::now() + leader_wait(&self.shard);
        loop {
            // Only the first records are waited for: a node that stopped leading fails at once.
            let outcome = self.ready();
            if outcome.is_ok() || !self.quorum().status().ready_leader || std::time::Instant::now() >= deadline {
                return outcome;
            }
            crate::runtime::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this node may change metadata now: the ready leader, its first records in.
    fn ready(&self) -> Result<(), (i16, String)> {
        let status = self.quorum().status();
        if !status.ready_leader {
            return Err((ec::NOT_CONTROLLER, String::from("this node stopped leading the metadata quorum")));
        }
        if self.bootstrapped_term.get() != status.term {
            return Err((ec::NOT_CONTROLLER, String::from("the active controller is still writing its first records; retry")));
        }
        Ok(())
    }

    /// Waits (bounded) until this node leads the quorum and has applied every earlier term.
    async fn ensure_leader(&self) -> Result<(), (i16, String)> {
        let quorum = self.quorum();
        let status = if quorum.status().ready_leader { quorum.status() } else { quorum.wait_for_leader(leader_wait(&self.shard)).await };
        if status.ready_leader {
            return Ok(());
        }
        let msg = match status.leader {
            Some(leader) => format!("node {} is not the active controller; node {leader} is", self.shard.config.node_id),
            None => String::from("the metadata quorum has no leader (an election is in progress, or too few controllers are up)"),
        };
        Err((ec::NOT_CONTROLLER, msg))
    }

    /// Proposes the records that turn `old` into `new`, and waits for them to be applied here.
    async fn commit(&self, old: &ClusterMetadata, new: &ClusterMetadata) -> Result<(), (i16, String)> {
        let records = records::diff(old, new, self.shard.config.node_id);
        if records.is_empty() {
            return Ok(());
        }
        self.quorum().propose(records).await.map_err(|e| {
            tracing::warn!(error = %e, "metadata change not committed");
            let code = if e == ProposeError::Failed { ec::KAFKA_STORAGE_ERROR } else { ec::NOT_CONTROLLER };
            (code, format!("metadata change not committed: {e}"))
        })
    }

    /// The records a cluster needs before anything else: its id and, from a node whose image
    /// predates the metadata log, everything that image holds (internal topics included). A
    /// new cluster's internal topics are created later, when a coordinator is first needed
    /// (see [`crate::coordinator::ensure_state_topic`]): by then the brokers have registered,
    /// and the topics' partitions, and so the coordinators, spread over them.
    async fn bootstrap(&self) -> Result<(), (i16, String)> {
        let _permit = self.serial.acquire_permit(1).await.expect("semaphore never closes");
        self.ensure_leader().await?;
        let shard = &self.shard;
        let view = self.view.borrow().clone();
        // An image never recorded in the log (a new cluster, or one from before the log) is
        // written out whole.
        let old = if view.applied_index == 0 { ClusterMetadata::new(String::new()) } else { view.clone() };
        let mut new = view;
        let new_cluster = new.cluster_id.is_empty();
        if new_cluster {
            new.cluster_id = shard.config.cluster_id.clone().unwrap_or_else(|| base64_uuid(uuid::Uuid::new_v4()));
            tracing::info!(cluster_id = %new.cluster_id, "new cluster: no metadata found");
        }
        // metadata.version is finalized in every cluster that has feature levels: without it
        // this is a new cluster, which gets the defaults, or one from before they were
        // recorded, which gets them but for transaction.version (its transactions keep the
        // format and epochs they had).
        if !new.finalized_features.contains_key(crate::metadata::features::METADATA_VERSION) {
            new.finalized_features =
                if new_cluster { crate::metadata::features::bootstrap_levels() } else { crate::metadata::features::levels_of_a_cluster_from_before_features() };
            tracing::info!(levels = ?new.finalized_features, "finalizing the default feature levels");
        }
        let quorum = self.quorum();
        if quorum.dynamic {
            // The voter set goes into the log (Kafka's VotersRecord at kraft.version 1) once, from
            // what the first leader started with; from then on the log's set is the quorum's.
            if new.quorum_voters.is_empty() {
                let voters = quorum.voters();
                tracing::info!(voters = %voters_text(&voters), "recording the dynamic quorum's voters in the metadata log");
                new.set_voters(&voters);
            }
            new.finalized_features.insert(crate::metadata::features::KRAFT_VERSION.to_string(), 1);
        }
        self.commit(&old, &new).await
    }

    /// Producer ids are handed out from blocks the metadata log reserves; a new leader starts
    /// after the last block reserved by anyone.
    fn producer_ids_for_term(&self) {
        let term = self.quorum().status().term;
        if self.producer_ids_term.get() != term {
            let end = self.view.borrow().producer_id_block_end;
            self.next_producer_id.set(end);
            self.producer_id_block_end.set(end);
            self.producer_ids_term.set(term);
        }
    }
}

/// How long a voter whose controller listener moved waits between attempts to have the
/// active controller record it, and for one attempt's effect to reach its own image.
const ENDPOINT_UPDATE_RETRY: Duration = Duration::from_secs(1);

/// Where this voter's controller listener is now, when it is no longer at `recorded`, or None.
/// Only what the bind address tells is compared: a recorded host name, or a listener bound to
/// every address (0.0.0.0, ::), keeps its host and moves with its port alone.
fn moved_address(recorded: &str, bind: std::net::SocketAddr) -> Option<String> {
    let (host, port) = recorded.rsplit_once(':')?;
    let recorded_ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok();
    let same_host = recorded_ip.is_none_or(|ip| bind.ip().is_unspecified() || ip == bind.ip());
    if same_host && port.parse::<u16>().ok() == Some(bind.port()) {
        return None;
    }
    Some(if same_host { format!("{host}:{}", bind.port()) } else { bind.to_string() })
}

/// A voter of a dynamic quorum whose controller listener is no longer where the voter set says
/// (moved to another host or port) has the active controller record the new one, as a Kafka
/// voter sends UpdateRaftVoter at start. Until then the other voters cannot reach it: links are
/// one-way, so it asks the bootstrap servers who leads, and sends the change on its own link to
/// the leader; the answer comes back on the leader's link to the old address and is lost, so
/// success is seen in its own image when the record arrives over the new one.
async fn update_own_endpoint(c: Weak<Controller>) {
    loop {
        let Some(controller) = c.upgrade() else { return };
        let config = &controller.shard.config;
        let (Some(bind), Some(directory_id)) = (config.controller_listener().map(|l| l.bind), controller.quorum().directory_id) else {
            return;
        };
        let recorded = controller.view.borrow().voters().into_iter().find(|v| v.is(config.node_id, directory_id));
        // Not (yet) a recorded voter: AddRaftVoter will carry its address.
        let Some(recorded) = recorded else { return };
        let Some(own) = moved_address(&recorded.address, bind) else { return };
        let call =
            ChangeVoters { cluster_id: None, change: VoterCall::Update { node_id: config.node_id, directory_id: Some(directory_id), address: own.clone() } };
        let leader = match controller.quorum().status().leader.filter(|l| *l != config.node_id) {
            Some(leader) => Some(leader),
            None => {
                let servers = config.quorum.bootstrap_servers.clone();
                let quorum = controller.quorum();
                let asked = quorum::transport::discover(&servers, config.node_id, config.cluster_id.clone(), quorum.tls());
                futures::select! {
                    found = futures::FutureExt::fuse(asked) => found.leader,
                    _ = futures::FutureExt::fuse(crate::runtime::sleep(ENDPOINT_UPDATE_RETRY * 5)) => None,
                }
            }
        };
        tracing::info!(from = %recorded.address, to = %own, leader = ?leader, "this voter's controller listener moved: asking the active controller to record it (UpdateRaftVoter)");
        if let Some(leader) = leader.filter(|l| *l != config.node_id) {
            let forwarded = controller.forward(leader, Forwarded::ChangeVoters(call));
            // Bounded: the answer may never come (see above); the image says whether it worked.
            futures::select! {
                _ = futures::FutureExt::fuse(forwarded) => {}
                _ = futures::FutureExt::fuse(crate::runtime::sleep(ENDPOINT_UPDATE_RETRY)) => {}
            }
        } else if controller.quorum().status().ready_leader {
            if let Err((code, message)) = controller.update_voter_here(call).await {
                tracing::warn!(code, error = %message, "recording this voter's new controller listener failed; trying again");
            }
        }
        drop(controller);
        crate::runtime::sleep(ENDPOINT_UPDATE_RETRY).await;
    }
}

/// Applies the quorum's committed records through the controller, while it lives.
struct ViewApplier(Weak<Controller>);

impl quorum::Applier for ViewApplier {
    fn apply(&self, index: u64, records: Vec<MetadataRecord>) -> futures::future::LocalBoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match self.0.upgrade() {
                Some(c) => c.apply_records(index, records).await,
                None => Ok(()),
            }
        })
    }

    fn snapshot(&self) -> Result<(u64, Vec<u8>)> {
        let c = self.0.upgrade().context("the controller stopped")?;
        let image = portable_image(&c.view.borrow(), c.shard.config.node_id);
        Ok((image.applied_index, serde_json::to_vec(&image)?))
    }

    fn voters(&self) -> Vec<QuorumVoter> {
        self.0.upgrade().map(|c| c.view.borrow().voters()).unwrap_or_default()
    }

    fn install(&self, index: u64, data: Vec<u8>) -> futures::future::LocalBoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(c) = self.0.upgrade() else { return Ok(()) };
            let image: ClusterMetadata = serde_json::from_slice(&data).context("a metadata snapshot that does not decode")?;
            let node_id = c.shard.config.node_id;
            let target = local_image(image, node_id);
            // The snapshot is applied as the records that turn this node's view into it, so
            // that its own replicas keep their shards and directories, and everything that
            // follows a record (new partitions, deleted topics) happens as for any other.
            let records = records::diff(&c.view.borrow(), &target, node_id);
            tracing::info!(index, records = records.len(), topics = target.topics.len(), "metadata snapshot installed");
            c.apply_records(index, records).await
        })
    }
}

/// The image as a snapshot carries it: this node's own broker configs filed under its id, as
/// every other broker's are.
fn portable_image(view: &ClusterMetadata, node_id: i32) -> ClusterMetadata {
    let mut image = view.clone();
    let own = std::mem::take(&mut image.broker_configs);
    if !own.is_empty() {
        image.other_broker_configs.insert(node_id, own);
    }
    image
}

/// A snapshot's image as node `node_id` keeps it (the inverse of [`portable_image`]).
fn local_image(mut image: ClusterMetadata, node_id: i32) -> ClusterMetadata {
    image.broker_configs = image.other_broker_configs.remove(&node_id).unwrap_or_default();
    image
}

/// Why a registration of `registration.node_id` must be refused while `existing` holds that
/// node id, or None: as in Kafka, another incarnation is refused while the registered one's
/// session is live (not fenced, and heard from within `session`; a leader counts its first
/// look at a broker as hearing from it). A node restarted after kill -9 therefore waits until the controller fences
/// its previous incarnation; the same incarnation may register again (a retry).
fn duplicate_registration(
    existing: &BrokerRegistration,
    registration: &BrokerRegistration,
    last_heard: std::time::Instant,
    session: Duration,
    now: std::time::Instant,
) -> Option<String> {
    if existing.incarnation_id == registration.incarnation_id || existing.fenced {
        return None;
    }
    let silent_for = now.saturating_duration_since(last_heard);
    if silent_for > session {
        return None;
    }
    Some(format!(
        "node {} is already registered under incarnation {}, whose session is live (heard from {} ms ago, broker.session.timeout.ms={}): \
         is another process running with node.id={}?",
        registration.node_id,
        existing.incarnation_id,
        silent_for.as_millis(),
        session.as_millis(),
        registration.node_id
    ))
}

/// Places this node's new replicas on its shards and log directories.
struct LocalPlacer<'a>(&'a Shard);

impl records::LocalNode for LocalPlacer<'_> {
    fn node_id(&self) -> i32 {
        self.0.config.node_id
    }
    fn place(&self, view: &ClusterMetadata) -> PartitionPlacement {
        view.place_by_space(1, self.0.shard_count(), &log_dir_free_bytes(self.0)).remove(0)
    }
}

/// Fences or unfences broker `node_id` in `view`, as Kafka's ReplicationControlManager
/// handles a broker fenced or unfenced. A fenced broker leaves the ISR of every partition
/// whose ISR has another member (the last member stays: any other leader would need an
/// unclean election), and leads nothing: a partition it led goes to the first replica that is
/// in the new ISR and live, or has no leader. An unfenced broker leads the partitions without
/// a leader whose ISR names it, but joins no ISR: the partition leader adds it (AlterPartition)
/// once it has caught up. A new leader bumps the leader epoch, and any change of leader or ISR
/// the partition epoch.
fn set_fenced(view: &mut ClusterMetadata, node_id: i32, fenced: bool) {
    let Some(b) = view.brokers.get_mut(&node_id) else { return };
    b.fenced = fenced;
    let live: std::collections::BTreeSet<i32> = view.brokers.values().filter(|b| !b.fenced).map(|b| b.node_id).collect();
    for p in view.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
        let (leader, isr) = if fenced {
            if p.leader != node_id && !p.isr.contains(&node_id) {
                continue;
            }
            let isr: Vec<i32> = if p.isr.len() > 1 { p.isr.iter().copied().filter(|&r| r != node_id).collect() } else { p.isr.clone() };
            let leader = if p.leader == node_id { isr_leader(&p.replicas, &isr, &live) } else { p.leader };
            (leader, isr)
        } else {
            if p.leader != records::NO_LEADER || !p.isr.contains(&node_id) {
                continue;
            }
            (isr_leader(&p.replicas, &p.isr, &live), p.isr.clone())
        };
        if leader == p.leader && isr == p.isr {
            continue;
        }
        if leader != p.leader {
            p.leader_epoch += 1;
        }
        (p.leader, p.isr) = (leader, isr);
        p.partition_epoch += 1;
    }
}

/// Partitions whose leader and ISR are what they were in `old` keep their epochs: a fence and
/// unfence in one change (a broker's new incarnation) that left them as they were is no
/// change for them.
fn keep_epochs_where_unchanged(old: &ClusterMetadata, new: &mut ClusterMetadata) {
    for (name, topic) in new.topics.iter_mut() {
        let Some(before) = old.topics.get(name).filter(|t| t.id == topic.id) else { continue };
        for (p, b) in topic.partitions.iter_mut().zip(&before.partitions) {
            if (p.leader, &p.isr) == (b.leader, &b.isr) {
                (p.leader_epoch, p.partition_epoch) = (b.leader_epoch, b.partition_epoch);
            }
        }
    }
}

/// The leader a partition gets from its ISR: the first replica, in replica order, that is in
/// the ISR and live; else none.
fn isr_leader(replicas: &[i32], isr: &[i32], live: &std::collections::BTreeSet<i32>) -> i32 {
    replicas.iter().copied().find(|r| isr.contains(r) && live.contains(r)).unwrap_or(records::NO_LEADER)
}

/// An AlterPartition's checks, in the order and with the error codes of Kafka's
/// ReplicationControlManager.validateAlterPartitionData, then the change: the new ISR in a new
/// partition epoch (the leader epoch stays). An epoch ahead of the controller's means the
/// asker heard from a newer controller (NOT_CONTROLLER, to look for it); one behind, that the
/// asker is stale. An ISR equal (as a set) to the current one changes nothing and answers the
/// current state.
fn alter_isr(meta: &mut ClusterMetadata, change: &AlterPartition) -> Result<PartitionState, (i16, String)> {
    let (topic, partition) = (&change.topic, change.partition);
    let name = format!("{topic}-{partition}");
    let live: std::collections::BTreeMap<i32, bool> = meta.brokers.values().map(|b| (b.node_id, !b.fenced)).collect();
    let Some(p) = meta.topics.get_mut(topic).and_then(|t| usize::try_from(partition).ok().and_then(|i| t.partitions.get_mut(i))) else {
        return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("No such partition as {name}")));
    };
    if change.leader_epoch > p.leader_epoch || change.partition_epoch > p.partition_epoch {
        return Err((
            ec::NOT_CONTROLLER,
            format!(
                "{name}: the request's leader epoch {} and partition epoch {} are ahead of the controller's {} and {}",
                change.leader_epoch, change.partition_epoch, p.leader_epoch, p.partition_epoch
            ),
        ));
    }
    if change.leader_epoch < p.leader_epoch {
        return Err((ec::FENCED_LEADER_EPOCH, format!("{name}: the current leader epoch is {}, not {}", p.leader_epoch, change.leader_epoch)));
    }
    if change.leader_id != p.leader {
        return Err((ec::INVALID_REQUEST, format!("{name}: node {} asked to change the ISR, but node {} leads", change.leader_id, p.leader)));
    }
    if change.partition_epoch < p.partition_epoch {
        return Err((ec::INVALID_UPDATE_VERSION, format!("{name}: the current partition epoch is {}, not {}", p.partition_epoch, change.partition_epoch)));
    }
    let mut sorted = change.new_isr.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != change.new_isr.len() || !sorted.iter().all(|r| p.replicas.contains(r)) {
        return Err((ec::INVALID_REQUEST, format!("{name}: the ISR {:?} is not a set of the replicas {:?}", change.new_isr, p.replicas)));
    }
    if !change.new_isr.contains(&p.leader) {
        return Err((ec::INVALID_REQUEST, format!("{name}: the ISR {:?} does not include the leader, node {}", change.new_isr, p.leader)));
    }
    let ineligible: Vec<String> = change
        .new_isr
        .iter()
        .filter_map(|r| match live.get(r) {
            None => Some(format!("{r} (not registered)")),
            Some(false) => Some(format!("{r} (fenced)")),
            Some(true) => None,
        })
        .collect();
    if !ineligible.is_empty() {
        return Err((ec::INELIGIBLE_REPLICA, format!("{name}: the ISR {:?} names ineligible replicas: {}", change.new_isr, ineligible.join(", "))));
    }
    let mut current = p.isr.clone();
    current.sort_unstable();
    if current != sorted {
        p.isr = change.new_isr.clone();
        p.partition_epoch += 1;
        let live: std::collections::BTreeSet<i32> = live.iter().filter(|(_, &up)| up).map(|(&id, _)| id).collect();
        if complete_reassignment(p, &live) {
            tracing::info!(partition = %name, replicas = ?p.replicas, isr = ?p.isr, leader = p.leader, "reassignment completed: every added replica is in sync");
        }
    }
    Ok(PartitionState::of(p))
}

/// Starts, replaces or cancels (`target` None) one partition's reassignment, as Kafka's
/// ReplicationControlManager does (KIP-455): the replicas become the target followed by those
/// the target leaves out, which stay (and may lead) until every added replica has joined the
/// ISR; then [`complete_reassignment`] drops them. A cancel takes out the replicas being
/// added. A reassignment that adds nothing completes at once.
fn reassign(
    meta: &mut ClusterMetadata,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_replication_factor_change: bool,
) -> Result<(), (i16, String)> {
    let name = format!("{topic}-{partition}");
    let live: std::collections::BTreeSet<i32> = meta.brokers.values().filter(|b| !b.fenced).map(|b| b.node_id).collect();
    let unknown = || (ec::UNKNOWN_TOPIC_OR_PARTITION, format!("No such partition as {name}"));
    let p = meta.topics.get(topic).and_then(|t| usize::try_from(partition).ok().and_then(|i| t.partitions.get(i))).ok_or_else(unknown)?;
    if let Some(target) = target {
        validate_manual_replicas(meta, partition, target, None)?;
        let replication_factor = p.replicas.len() - p.adding_replicas.len();
        if !allow_replication_factor_change && target.len() != replication_factor {
            return Err((
                ec::INVALID_REPLICATION_FACTOR,
                format!(
                    "{name}: the reassignment changes the replication factor from {replication_factor} to {}, and the request does not allow that",
                    target.len()
                ),
            ));
        }
    }
    let p = meta.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(partition as usize)).ok_or_else(unknown)?;
    let before = p.clone();
    match target {
        None => {
            if !p.reassigning() {
                return Err((ec::NO_REASSIGNMENT_IN_PROGRESS, format!("{name} has no reassignment in progress")));
            }
            let adding = std::mem::take(&mut p.adding_replicas);
            p.removing_replicas.clear();
            p.replicas.retain(|r| !adding.contains(r));
            p.isr.retain(|r| !adding.contains(r));
            if p.isr.is_empty() {
                // Every in-sync replica was one being added: the others become the ISR, which
                // may lack acknowledged records, as Kafka's revert does.
                tracing::warn!(partition = %name, replicas = ?p.replicas, "cancelled reassignment leaves no in-sync replica; the remaining replicas become the ISR");
                p.isr = p.replicas.clone();
            }
            let leader = if p.isr.contains(&p.leader) { p.leader } else { isr_leader(&p.replicas, &p.isr, &live) };
            if leader != p.leader || !adding.is_empty() {
                p.leader_epoch += 1;
            }
            p.leader = leader;
        }
        Some(target) => {
            let current = p.replicas.clone();
            // A replica the reassignment this one replaces was adding is still being added
            // (Kafka would count it as kept, and could complete without it ever in sync).
            let still_adding = std::mem::take(&mut p.adding_replicas);
            p.removing_replicas = current.iter().copied().filter(|r| !target.contains(r)).collect();
            p.adding_replicas = target.iter().copied().filter(|r| !current.contains(r) || still_adding.contains(r)).collect();
            p.replicas = target.iter().copied().chain(p.removing_replicas.iter().copied()).collect();
            complete_reassignment(p, &live);
        }
    }
    if *p != before {
        p.partition_epoch = before.partition_epoch + 1;
    }
    Ok(())
}

/// Completes a partition's reassignment once every replica it adds is in the ISR and some
/// replica it keeps is in sync (Kafka's PartitionReassignmentReplicas.maybeCompleteReassignment):
/// the replicas it removes leave the replicas and the ISR, a new leader is elected from the
/// ISR if the old one left, and the leader epoch is bumped whenever a replica left, so that
/// the removed ones stop fetching. Returns whether it completed.
fn complete_reassignment(p: &mut PartitionPlacement, live: &std::collections::BTreeSet<i32>) -> bool {
    if !p.reassigning() {
        return false;
    }
    let isr: Vec<i32> = p.isr.iter().copied().filter(|r| !p.removing_replicas.contains(r)).collect();
    if isr.is_empty() || !p.adding_replicas.iter().all(|r| isr.contains(r)) {
        return false;
    }
    let removing = std::mem::take(&mut p.removing_replicas);
    p.adding_replicas.clear();
    p.replicas.retain(|r| !removing.contains(r));
    p.isr = isr;
    let leader = if p.isr.contains(&p.leader) { p.leader } else { isr_leader(&p.replicas, &p.isr, live) };
    if leader != p.leader || !removing.is_empty() {
        p.leader_epoch += 1;
    }
    p.leader = leader;
    p.partition_epoch += 1;
    true
}

/// One partition's leader election, as Kafka's ReplicationControlManager.electLeader: the new
/// leader, or why there is none. Preferred: the first replica, when it is registered, not
/// fenced and in the ISR. Unclean: only for a partition without a leader, an ISR member that
/// is live, else any live replica (which then is the whole ISR: it may lack acknowledged
/// records, the trade `unclean.leader.election.enable` makes). Either bumps the leader epoch.
fn elect_leader(meta: &mut ClusterMetadata, topic: &str, partition: i32, election_type: i8) -> Result<i32, (i16, Option<String>)> {
    let live: Vec<i32> = meta.brokers.values().filter(|b| !b.fenced).map(|b| b.node_id).collect();
    let Some(t) = meta.topics.get_mut(topic) else { return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, Some(format!("No such topic as {topic}")))) };
    let Some(p) = usize::try_from(partition).ok().and_then(|i| t.partitions.get_mut(i)) else {
        return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, Some(format!("No such partition as {topic}-{partition}"))));
    };
    let leader = match election_type {
        ELECTION_PREFERRED => {
            let preferred = p.replicas.first().copied();
            if preferred == Some(p.leader) {
                return Err((ec::ELECTION_NOT_NEEDED, None));
            }
            preferred.filter(|r| live.contains(r) && p.isr.contains(r)).ok_or((ec::PREFERRED_LEADER_NOT_AVAILABLE, None))?
        }
        ELECTION_UNCLEAN => {
            if p.leader != records::NO_LEADER {
                return Err((ec::ELECTION_NOT_NEEDED, None));
            }
            let in_isr = p.isr.iter().copied().find(|r| live.contains(r));
            let leader = in_isr.or_else(|| p.replicas.iter().copied().find(|r| live.contains(r))).ok_or((ec::ELIGIBLE_LEADERS_NOT_AVAILABLE, None))?;
            if in_isr.is_none() {
                p.isr = vec![leader];
            }
            leader
        }
        other => return Err((ec::INVALID_REQUEST, Some(format!("unknown election type {other}: 0 is preferred, 1 unclean")))),
    };
    p.leader = leader;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
    Ok(leader)
}

/// The partitions of topics that allow unclean elections (`unclean`, given a topic's configs)
/// that have no leader, no live ISR member, and a live replica: those an unclean election
/// gives a leader. At most [`BALANCE_ELECTIONS_MAX`] per round.
fn unclean_elections(meta: &ClusterMetadata, unclean: impl Fn(&BTreeMap<String, String>) -> bool) -> Vec<(String, i32)> {
    let live = |id: &i32| meta.brokers.get(id).is_some_and(|b| !b.fenced);
    meta.topics
        .iter()
        .flat_map(|(name, t)| t.partitions.iter().enumerate().map(move |(i, p)| (name, t, i as i32, p)))
        .filter(|(_, _, _, p)| p.leader == records::NO_LEADER && !p.isr.iter().any(live) && p.replicas.iter().any(live))
        .filter(|(_, t, _, _)| unclean(&t.configs))
        .map(|(name, _, i, _)| (name.clone(), i))
        .take(BALANCE_ELECTIONS_MAX)
        .collect()
}

/// Preferred elections one leader-balancing round makes at most (Kafka's controller's bound).
const BALANCE_ELECTIONS_MAX: usize = 1000;

/// The partitions whose preferred replica (the first) is registered, not fenced and in the
/// ISR, but does not lead: those a preferred election would move, at most
/// [`BALANCE_ELECTIONS_MAX`].
fn preferred_elections(meta: &ClusterMetadata) -> Vec<(String, i32)> {
    let live = |id: i32| meta.brokers.get(&id).is_some_and(|b| !b.fenced);
    meta.topics
        .iter()
        .flat_map(|(name, t)| t.partitions.iter().enumerate().map(move |(i, p)| (name, i as i32, p)))
        .filter(|(_, _, p)| p.replicas.first().is_some_and(|&preferred| preferred != p.leader && live(preferred) && p.isr.contains(&preferred)))
        .map(|(name, i, _)| (name.clone(), i))
        .take(BALANCE_ELECTIONS_MAX)
        .collect()
}

/// Registers this node, then heartbeats every `broker.heartbeat.interval.ms`; registers again
/// when the controller no longer knows it.
async fn keep_registered(controller: Weak<Controller>) {
    let interval = match controller.upgrade() {
        Some(c) => Duration::from_millis(c.shard.config.quorum.broker_heartbeat_interval_ms),
        None => return,
    };
    loop {
        let Some(c) = controller.upgrade() else { return };
        let registration = c.registered.borrow().clone();
        match registration {
            None => c.register().await,
            Some(r) => {
                let outcome = match c.route().await {
                    Route::Here => c.heartbeat_here(r.node_id, r.incarnation_id).await,
                    Route::There(leader) => match c.forward(leader, Forwarded::Heartbeat { node_id: r.node_id, incarnation_id: r.incarnation_id }).await {
                        Ok(ForwardedReply::Heartbeat(r)) => r,
                        Ok(other) => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
                        Err(e) => Err(e),
                    },
                    Route::Nowhere(code, msg) => Err((code, msg)),
                };
                match outcome {
                    Ok(()) => {}
                    Err((ec::STALE_BROKER_EPOCH, msg)) => {
                        tracing::info!(error = %msg, "registering with the controller again");
                        *c.registered.borrow_mut() = None;
                        continue;
                    }
                    Err((code, msg)) => tracing::debug!(code, error = %msg, "heartbeat not delivered"),
                }
            }
        }
        drop(c);
        crate::runtime::sleep(interval).await;
    }
}

/// Whenever this node becomes the ready leader, writes what the cluster needs first; while it
/// leads, fences brokers that stopped heartbeating.
async fn lead(controller: Weak<Controller>) {
    let mut last_balance = std::time::Instant::now();
    loop {
        let Some(c) = controller.upgrade() else { return };
        let status = c.quorum().status();
        let replication = &c.shard.config.replication;
        let balance_interval = Duration::from_secs(replication.leader_imbalance_check_interval_s);
        if status.ready_leader && replication.auto_leader_rebalance_enable && last_balance.elapsed() >= balance_interval {
            last_balance = std::time::Instant::now();
            c.balance_leaders().await;
        }
        if status.ready_leader && c.bootstrapped_term.get() != status.term {
            match c.bootstrap().await {
                Ok(()) => c.bootstrapped_term.set(status.term),
                Err((code, msg)) => tracing::warn!(code, error = %msg, "writing the cluster's first metadata records failed; trying again"),
            }
        }
        if status.ready_leader && c.bootstrapped_term.get() == status.term {
            c.fence_silent_brokers().await;
            c.elect_unclean_leaders().await;
        }
        let quorum = c.quorum().clone();
        drop(c);
        let changed = quorum.status_changed.notified();
        futures::select! {
            _ = futures::FutureExt::fuse(changed) => {}
            _ = futures::FutureExt::fuse(crate::runtime::sleep(Duration::from_millis(500))) => {}
        }
    }
}

pub use crate::metadata::base64_uuid;

/// `1@host:port,2@host:port`, for messages.
fn voters_text(voters: &[QuorumVoter]) -> String {
    voters
        .iter()
        .map(|v| match v.directory_id {
            Some(d) => format!("{}@{}:{}", v.node_id, v.address, meta_properties::uuid_text(d)),
            None => format!("{}@{}", v.node_id, v.address),
        })
        .collect::<Vec<_>>()
        .join(",")
}

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
    /// A partition leader's ISR change (AlterPartition), committed through the metadata quorum
    /// by the active controller, wherever it is asked: the partition's state after it, or
    /// Kafka's error code and why.
    pub async fn alter_partition(&self, change: AlterPartition) -> Result<PartitionState, (i16, String)> {
        match self.route().await {
            Route::Here => self.alter_partition_here(change).await,
            Route::There(leader) => match self.forward(leader, Forwarded::AlterPartition(change)).await? {
                ForwardedReply::AlterPartition(r) => r,
                other => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
            },
            Route::Nowhere(code, msg) => Err((code, msg)),
        }
    }

    async fn alter_partition_here(&self, change: AlterPartition) -> Result<PartitionState, (i16, String)> {
        let (_permit, old) = self.begin_change().await?;
        let mut new = old.clone();
        let state = alter_isr(&mut new, &change)?;
        if new != old {
            tracing::info!(topic = %change.topic, partition = change.partition, leader = change.leader_id, isr = ?state.isr, partition_epoch = state.partition_epoch, "ISR changed");
            self.commit(&old, &new).await?;
        }
        Ok(state)
    }

    async fn change_voters(&self, call: ChangeVoters) -> Result<(), (i16, String)> {
        match self.route().await {
            Route::Here => self.change_voters_here(call).await,
            Route::There(leader) => match self.forward(leader, Forwarded::ChangeVoters(call)).await? {
                ForwardedReply::Voters(r) => r,
                other => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
            },
            Route::Nowhere(code, msg) => Err((code, msg)),
        }
    }

    /// KIP-853's voter changes at the active controller, with the checks of Kafka's
    /// AddVoterHandler and RemoveVoterHandler, carried out by raft-rs's configuration change
    /// (one voter in or out, committed by the new set's majority). The new set is recorded in
    /// the same entry (the QuorumVoters record), so the image and raft change together.
    async fn change_voters_here(&self, call: ChangeVoters) -> Result<(), (i16, String)> {
        let wait = match &call.change {
            VoterCall::Add { timeout_ms, .. } => Duration::from_millis(*timeout_ms).min(VOTER_CHANGE_WAIT_MAX),
            VoterCall::Remove { .. } => leader_wait(&self.shard),
            VoterCall::Update { .. } => return self.update_voter_here(call).await,
        };
        let deadline = std::time::Instant::now() + wait;
        self.ensure_ready().await?;
        self.check_voter_change(&call)?;
        let mut call = call;
        if let VoterCall::Add { node_id, directory_id, .. } = &mut call.change {
            // Kafka refuses a voter that is not caught up, so that it does not hold back the
            // commit of everything after the change. It is waited for here up to the request's
            // timeout (what KAFKA-17147 proposes), outside the serial section: other metadata
            // changes go on meanwhile. A request that names no directory gets the one the node
            // fetches with, so that the voter is recorded with it all the same.
            *directory_id = self.wait_caught_up(*node_id, *directory_id, wait).await?;
        }
        let _permit = self.serial_permit().await?;
        // Checked again: another change may have gone in while the new voter was waited for.
        let (change, voters, what) = self.check_voter_change(&call)?;
        let quorum = self.quorum().clone();
        tracing::info!(voters = %voters_text(&voters), "metadata quorum voter change: {what}");
        // What is left of the request's time, and at least what a commit takes with a leader.
        let wait = deadline.saturating_duration_since(std::time::Instant::now()).max(leader_wait(&self.shard));
        let proposed = quorum.propose_voter_change(change, vec![MetadataRecord::quorum_voters(&voters)]);
        let outcome = futures::select! {
            r = futures::FutureExt::fuse(proposed) => r,
            _ = futures::FutureExt::fuse(crate::runtime::sleep(wait)) => {
                return Err((ec::REQUEST_TIMED_OUT, format!("the voter change ({what}) did not commit within {} ms", wait.as_millis())));
            }
        };
        outcome.map_err(|e| match e {
            ProposeError::VoterChangePending => (ec::REQUEST_TIMED_OUT, e.to_string()),
            ProposeError::Failed => (ec::KAFKA_STORAGE_ERROR, e.to_string()),
            _ => (ec::NOT_CONTROLLER, format!("the voter change was not committed: {e}")),
        })
    }

    /// A voter's new controller listener (UpdateRaftVoter), with the checks of Kafka's
    /// UpdateVoterHandler. Raft's configuration does not change (the same node votes), so it
    /// commits as an ordinary metadata change; every node's links follow the new address.
    async fn update_voter_here(&self, call: ChangeVoters) -> Result<(), (i16, String)> {
        let VoterCall::Update { node_id, directory_id, address } = &call.change else { unreachable!("only updates come here") };
        let (_permit, old) = self.begin_change().await?;
        self.check_dynamic(&call, &old)?;
        let mut voters = old.voters();
        let Some(voter) = voters.iter_mut().find(|v| directory_id.map_or(v.node_id == *node_id, |d| v.is(*node_id, d))) else {
            return Err((ec::VOTER_NOT_FOUND, format!("node {node_id} is not a voter with that directory id of {}", voters_text(&old.voters()))));
        };
        if voter.address == *address {
            return Ok(());
        }
        tracing::info!(node_id, from = %voter.address, to = %address, "metadata quorum voter change: a voter's controller listener moved");
        voter.address = address.clone();
        let mut new = old.clone();
        new.set_voters(&voters);
        self.commit(&old, &new).await
    }

    /// Kafka's first checks of a voter change: the request's cluster, and a dynamic quorum.
    fn check_dynamic(&self, call: &ChangeVoters, view: &ClusterMetadata) -> Result<(), (i16, String)> {
        if let Some(theirs) = call.cluster_id.as_deref().filter(|id| !id.is_empty()) {
            if theirs != view.cluster_id {
                return Err((ec::INCONSISTENT_CLUSTER_ID, format!("the request is for cluster {theirs}, this is cluster {}", view.cluster_id)));
            }
        }
        let kraft_version = view.finalized_features.get(crate::metadata::features::KRAFT_VERSION).copied().unwrap_or(0);
        if !self.quorum().dynamic || kraft_version < 1 {
            return Err((
                ec::UNSUPPORTED_VERSION,
                format!(
                    "the cluster does not support changing voters: kraft.version is {kraft_version} (a static controller.quorum.voters; \
                     a dynamic quorum is set up with controller.quorum.bootstrap.servers and shardlog format)"
                ),
            ));
        }
        Ok(())
    }

    /// The checks of Kafka's AddVoterHandler and RemoveVoterHandler against the committed
    /// voter set: the raft change, the new set (sorted), and what it does, for messages.
    fn check_voter_change(&self, call: &ChangeVoters) -> Result<CheckedVoterChange, (i16, String)> {
        let quorum = self.quorum();
        let view = self.view.borrow();
        self.check_dynamic(call, &view)?;
        if quorum.status().voter_change_pending {
            return Err((ec::REQUEST_TIMED_OUT, String::from("a previous voter change is still being committed: retry")));
        }
        let mut voters = view.voters();
        let (change, what) = match &call.change {
            VoterCall::Add { node_id, address, directory_id, .. } => {
                if voters.iter().any(|v| v.node_id == *node_id) {
                    return Err((ec::DUPLICATE_VOTER, format!("node {node_id} is already a voter of {}", voters_text(&voters))));
                }
                voters.push(QuorumVoter { node_id: *node_id, address: address.clone(), directory_id: *directory_id });
                (quorum::VoterChange::Add(*node_id), format!("adding node {node_id} at {address}"))
            }
            VoterCall::Remove { node_id, directory_id } => {
                // Kafka names a voter by node id and directory: the voter of another directory
                // (a disk replaced since) is not the one asked for.
                if !voters.iter().any(|v| directory_id.map_or(v.node_id == *node_id, |asked| v.is(*node_id, asked))) {
                    let asked = directory_id.map(|d| format!(" with directory id {}", meta_properties::uuid_text(d))).unwrap_or_default();
                    return Err((ec::VOTER_NOT_FOUND, format!("node {node_id}{asked} is not a voter of {}", voters_text(&voters))));
                }
                if voters.len() == 1 {
                    return Err((ec::VOTER_NOT_FOUND, format!("node {node_id} is the only voter: a quorum cannot lose its last voter")));
                }
                voters.retain(|v| v.node_id != *node_id);
                (quorum::VoterChange::Remove(*node_id), format!("removing node {node_id}"))
            }
            VoterCall::Update { .. } => return Err((ec::INVALID_REQUEST, String::from("a voter's new address changes no voter"))),
        };
        voters.sort_by_key(|v| v.node_id);
        Ok((change, voters, what))
    }

    /// Waits (bounded by `wait`) until node `node_id` is a controller that observes the log
    /// from this leader and has everything committed, as Kafka checks a new voter is caught
    /// up before it counts in the majority; REQUEST_TIMED_OUT if it does not get there.
    /// Returns the directory id the new voter fetches with (None from nodes that do not send
    /// it), which is `directory_id` where the request names one.
    async fn wait_caught_up(&self, node_id: i32, directory_id: Option<uuid::Uuid>, wait: Duration) -> Result<Option<uuid::Uuid>, (i16, String)> {
        let quorum = self.quorum();
        let deadline = std::time::Instant::now() + wait;
        // A caught-up observer's fetch waits here at most half the fetch timeout before it is
        // answered and sent again.
        let fresh_ms = self.shard.config.quorum.fetch_timeout_ms as u128;
        loop {
            let changed = quorum.status_changed.notified();
            let commit = quorum.status().commit_index;
            let why = match quorum.observer_state(node_id) {
                None => format!("node {node_id} does not fetch the metadata log from the active controller (is it running, started with controller.quorum.bootstrap.servers and formatted with --no-initial-controllers?)"),
                Some((_, false)) => format!("node {node_id} observes the metadata log but is not a controller (process.roles has no controller)"),
                Some((o, _)) if o.at.elapsed().map_or(u128::MAX, |d| d.as_millis()) > fresh_ms => {
                    format!("node {node_id} has not fetched the metadata log for over controller.quorum.fetch.timeout.ms={fresh_ms}")
                }
                Some((o, _)) if directory_id.is_some() && o.directory_id.is_some() && o.directory_id != directory_id => format!(
                    "node {node_id} fetches the metadata log with directory id {}, not the {} the request names (add-controller reads it \
                     from the node's meta.properties: is that the node's configuration?)",
                    o.directory_id.map(meta_properties::uuid_text).unwrap_or_default(),
                    directory_id.map(meta_properties::uuid_text).unwrap_or_default()
                ),
                Some((o, _)) if o.index < commit => format!("node {node_id} is behind: it has index {}, the log is committed to {commit}", o.index),
                Some((o, _)) => return Ok(directory_id.or(o.directory_id)),
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err((ec::REQUEST_TIMED_OUT, format!("not adding the voter: {why}")));
            }
            futures::select! {
                _ = futures::FutureExt::fuse(changed) => {}
                _ = futures::FutureExt::fuse(crate::runtime::sleep(left.min(Duration::from_millis(50)))) => {}
            }
        }
    }

    async fn allocate_producer_id(&self) -> Result<i64, i16> {
        match self.route().await {
            Route::Here => self.allocate_producer_id_here().await,
            Route::There(leader) => match self.forward(leader, Forwarded::AllocateProducerId).await {
                Ok(ForwardedReply::ProducerId(r)) => r,
                _ => Err(ec::COORDINATOR_NOT_AVAILABLE),
            },
            Route::Nowhere(..) => Err(ec::COORDINATOR_NOT_AVAILABLE),
        }
    }

    async fn allocate_producer_id_here(&self) -> Result<i64, i16> {
        let _permit = self.serial_permit().await.map_err(|_| ec::COORDINATOR_NOT_AVAILABLE)?;
        self.producer_ids_for_term();
        let id = self.next_producer_id.get();
        if id >= self.producer_id_block_end.get() {
            let old = self.view.borrow().clone();
            let mut new = old.clone();
            new.producer_id_block_end = id + PRODUCER_ID_BLOCK;
            if let Err((code, msg)) = self.commit(&old, &new).await {
                tracing::error!(error = %msg, "cannot reserve a block of producer ids");
                return Err(if code == ec::NOT_CONTROLLER { ec::COORDINATOR_NOT_AVAILABLE } else { code });
            }
            self.producer_id_block_end.set(new.producer_id_block_end);
        }
        self.next_producer_id.set(id + 1);
        Ok(id)
    }

    async fn delete_acls(&self, request: DeleteAcls) -> Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)> {
        match self.route().await {
            Route::Here => self.delete_acls_here(request).await,
            Route::There(leader) => match self.forward(leader, Forwarded::DeleteAcls(request.filters)).await? {
                ForwardedReply::DeleteAcls(r) => r,
                other => Err((ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}"))),
            },
            Route::Nowhere(code, msg) => Err((code, msg)),
        }
    }

    async fn delete_acls_here(&self, request: DeleteAcls) -> Result<Vec<Vec<crate::authorizer::AclBinding>>, (i16, String)> {
        let (_permit, old) = self.begin_change().await?;
        let mut meta = old.clone();
        let deleted: Vec<Vec<crate::authorizer::AclBinding>> =
            request.filters.iter().map(|f| meta.acls.acls.iter().filter(|a| f.matches(a)).cloned().collect()).collect();
        if deleted.iter().all(|d| d.is_empty()) {
            return Ok(deleted);
        }
        for acl in deleted.iter().flatten() {
            meta.acls.acls.remove(acl);
        }
        self.commit(&old, &meta).await?;
        tracing::info!(deleted = deleted.iter().map(Vec::len).sum::<usize>(), "ACLs deleted");
        Ok(deleted)
    }

    async fn change(&self, request: ControllerRequest) -> Vec<(String, i16, Option<String>)> {
        let fail = |names: Vec<String>, code: i16, msg: String| names.into_iter().map(|n| (n, code, Some(msg.clone()))).collect();
        // Every coordinator request of a new cluster asks for its internal topic: one request
        // from this node goes to the active controller, and those behind it find the topic.
        let _creating = match &request {
            ControllerRequest::CreateInternalTopic { name, .. } => {
                let permit = self.internal_topic_creation.acquire_permit(1).await.expect("semaphore never closes");
                if self.view.borrow().topics.contains_key(name) {
                    return vec![(name.clone(), ec::NONE, None)];
                }
                Some(permit)
            }
            _ => None,
        };
        match self.route().await {
            Route::Here => self.change_here(request).await,
            Route::There(leader) => {
                let names = request.names();
                match self.forward(leader, Forwarded::Change(request)).await {
                    Ok(ForwardedReply::Change(results)) => results,
                    Ok(other) => fail(names, ec::UNKNOWN_SERVER_ERROR, format!("unexpected answer {other:?}")),
                    Err((code, msg)) => fail(names, code, msg),
                }
            }
            Route::Nowhere(code, msg) => fail(request.names(), code, msg),
        }
    }

    async fn change_here(&self, request: ControllerRequest) -> Vec<(String, i16, Option<String>)> {
        let shard = &self.shard;
        let (_permit, old) = match self.begin_change().await {
            Ok(started) => started,
            Err((code, msg)) => return request.names().into_iter().map(|n| (n, code, Some(msg.clone()))).collect(),
        };
        let mut meta = old.clone();
        let mut results = Vec::new();
        let mut changed = false;
        match request {
            ControllerRequest::CreateAcls { acls } => {
                for acl in acls {
                    let name = acl_name(&acl);
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
                for topic in topics {
                    let outcome = create_partitions(shard, &mut meta, &topic, validate_only);
                    changed |= outcome.is_ok() && !validate_only;
                    results.push(match outcome {
                        Ok(()) => (topic.name, ec::NONE, None),
                        Err((code, msg)) => (topic.name, code, Some(msg)),
                    });
                }
            }
            ControllerRequest::CreateInternalTopic { name, partitions } => {
                let outcome = if meta.topics.contains_key(&name) {
                    // Another broker's request created it first.
                    Ok(())
                } else if !is_internal_topic(&name) {
                    Err((ec::INVALID_REQUEST, format!("{name} is not an internal topic")))
                } else {
                    let configs = vec![(String::from("cleanup.policy"), String::from("compact"))];
                    let replication_factor = internal_topic_replication_factor(&shard.config, &meta, &name);
                    let topic = NewTopic { name: name.clone(), partitions, replication_factor, configs, assignments: Vec::new() };
                    let created = create_topic(shard, &mut meta, &topic, false);
                    changed |= created.is_ok();
                    created
                };
                results.push(match outcome {
                    Ok(()) => (name, ec::NONE, None),
                    Err((code, msg)) => (name, code, Some(msg)),
                });
            }
            ControllerRequest::AlterConfigs { resources, validate_only } => {
                let (altered, c) = config_ops::alter(shard, &mut meta, &resources, validate_only);
                results.extend(altered);
                changed |= c;
            }
            ControllerRequest::AlterClientQuotas { entries, validate_only } => {
                for alteration in entries {
                    let name = alteration.name();
                    let quotas = &mut meta.client_quotas.entries;
                    let mut values = quotas.get(&alteration.entity).cloned().unwrap_or_default();
                    for (key, value) in &alteration.ops {
                        match value {
                            Some(v) => values.insert(key.clone(), crate::quota::QuotaValue(*v)),
                            None => values.remove(key),
                        };
                    }
                    if !quotas.contains_key(&alteration.entity) && !values.is_empty() && quotas.len() >= crate::quota::ENTITIES_MAX {
                        let why = format!("the cluster keeps quotas for at most {} entities; remove some first", crate::quota::ENTITIES_MAX);
                        results.push((name, ec::INVALID_REQUEST, Some(why)));
                        continue;
                    }
                    if !validate_only && quotas.get(&alteration.entity).cloned().unwrap_or_default() != values {
                        tracing::info!(entity = %name, quotas = ?values, "client quotas altered");
                        if values.is_empty() {
                            quotas.remove(&alteration.entity);
                        } else {
                            quotas.insert(alteration.entity.clone(), values);
                        }
                        changed = true;
                    }
                    results.push((name, ec::NONE, None));
                }
            }
            ControllerRequest::UpdateFeatures { updates, validate_only } => {
                let brokers: Vec<(i32, &crate::metadata::features::SupportedRanges)> =
                    meta.brokers.iter().map(|(id, b)| (*id, &b.supported_features)).collect();
                match crate::metadata::features::apply_updates(&meta.finalized_features, &brokers, &updates) {
                    Err(why) => {
                        tracing::info!(error = %why, "UpdateFeatures refused");
                        results.extend(updates.iter().map(|u| (u.name.clone(), ec::INVALID_UPDATE_VERSION, Some(why.clone()))));
                    }
                    Ok(levels) => {
                        if !validate_only && levels != meta.finalized_features {
                            tracing::info!(before = ?meta.finalized_features, after = ?levels, "finalized feature levels updated");
                            meta.finalized_features = levels;
                            changed = true;
                        }
                        results.extend(updates.iter().map(|u| (u.name.clone(), ec::NONE, None)));
                    }
                }
            }
            ControllerRequest::UnregisterBroker { node_id } => {
                let name = format!("broker {node_id}");
                if meta.brokers.contains_key(&node_id) {
                    // As Kafka's ReplicationControlManager.unregisterBroker: it leads nothing
                    // (a new leader epoch for what it led), then its registration goes.
                    set_fenced(&mut meta, node_id, true);
                    meta.brokers.remove(&node_id);
                    self.heartbeat_times().remove(&node_id);
                    tracing::info!(node_id, "broker unregistered: its partitions have no leader on it until it registers again");
                    changed = true;
                    results.push((name, ec::NONE, None));
                } else {
                    results.push((name, ec::BROKER_ID_NOT_REGISTERED, Some(format!("Broker ID {node_id} is not currently registered"))));
                }
            }
            ControllerRequest::ElectLeaders { election_type, partitions } => {
                for (topic, partition) in partitions {
                    let outcome = elect_leader(&mut meta, &topic, partition, election_type);
                    changed |= outcome.is_ok();
                    results.push(match outcome {
                        Ok(leader) => {
                            tracing::info!(topic = %topic, partition, leader, election_type, "leader elected");
                            (format!("{topic}-{partition}"), ec::NONE, None)
                        }
                        Err((code, msg)) => (format!("{topic}-{partition}"), code, msg),
                    });
                }
            }
            ControllerRequest::AlterPartitionReassignments { partitions, allow_replication_factor_change } => {
                for (topic, partition, target) in partitions {
                    let name = format!("{topic}-{partition}");
                    let before = meta.topics.get(&topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?)).cloned();
                    let outcome = reassign(&mut meta, &topic, partition, target.as_deref(), allow_replication_factor_change);
                    let after = meta.topics.get(&topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?));
                    changed |= after != before.as_ref();
                    results.push(match outcome {
                        Ok(()) => {
                            let p = after.expect("reassigned");
                            match target {
                                Some(target) => tracing::info!(partition = %name, ?target, replicas = ?p.replicas, adding = ?p.adding_replicas, removing = ?p.removing_replicas, "reassignment started"),
                                None => tracing::info!(partition = %name, replicas = ?p.replicas, "reassignment cancelled"),
                            }
                            (name, ec::NONE, None)
                        }
                        Err((code, msg)) => (name, code, Some(msg)),
                    });
                }
            }
        }
        if changed {
            if let Err((code, msg)) = self.commit(&old, &meta).await {
                return results.into_iter().map(|(n, _, _)| (n, code, Some(msg.clone()))).collect();
            }
        }
        results
    }
}

/// Chooses the replicas of each new partition of a topic, `replication_factor` each (no more
/// than there are live brokers: the caller checked), the leader first and every replica in the
/// ISR. When every registered (unfenced) broker has a `broker.rack`, Kafka's rack-aware
/// assignment (see [`placement`]): leaders rotate over a rack-alternated broker list, starting,
/// for a new topic, at the broker that leads the fewest partitions, and continuing the topic's
/// rotation for added partitions; followers spread over the racks. Otherwise the leader is the
/// live broker that leads the fewest partitions of this topic, then the fewest in all, then
/// the lowest node id, so a topic's leaders spread evenly whatever the cluster already holds;
/// its followers are the other live brokers with the fewest replicas of this topic, then the
/// fewest in all, then the nearest after the leader in node id order, so replica counts stay
/// balanced too. With no broker registered yet (a new cluster's first records), this node.
/// `siblings`: the topic's existing partitions.
fn assign_replicas(meta: &ClusterMetadata, siblings: &[PartitionPlacement], placed: &mut [PartitionPlacement], this_node: i32, replication_factor: usize) {
    let live: Vec<&BrokerRegistration> = meta.brokers.values().filter(|b| !b.fenced).collect();
    let racks: Vec<(i32, String)> = live.iter().filter_map(|b| b.rack.clone().map(|r| (b.node_id, r))).collect();
    if !live.is_empty() && racks.len() == live.len() {
        assign_rack_aware(meta, &racks, siblings, placed, replication_factor);
        return;
    }
    if !racks.is_empty() {
        tracing::warn!(with_rack = racks.len(), brokers = live.len(), "only some brokers have broker.rack: placing partitions without regard to racks");
    }
    let mut load: BTreeMap<i32, BrokerLoad> = live.iter().map(|b| (b.node_id, BrokerLoad::default())).collect();
    if load.is_empty() {
        load.insert(this_node, BrokerLoad::default());
    }
    for p in meta.topics.values().flat_map(|t| &t.partitions) {
        if let Some(l) = load.get_mut(&p.leader) {
            l.leaders += 1;
        }
        for r in &p.replicas {
            if let Some(l) = load.get_mut(r) {
                l.replicas += 1;
            }
        }
    }
    for p in siblings {
        if let Some(l) = load.get_mut(&p.leader) {
            l.leaders_in_topic += 1;
        }
        for r in &p.replicas {
            if let Some(l) = load.get_mut(r) {
                l.replicas_in_topic += 1;
            }
        }
    }
    let ids: Vec<i32> = load.keys().copied().collect();
    let followers = replication_factor.clamp(1, ids.len()) - 1;
    for p in placed {
        let leader = *load.iter().min_by_key(|(id, l)| (l.leaders_in_topic, l.leaders, **id)).expect("at least one broker").0;
        let at = ids.iter().position(|&id| id == leader).expect("the leader is a live broker");
        // Ties go to the brokers just after the leader, so that equal loads rotate the
        // followers with the leaders rather than piling them on the lowest ids.
        let mut others: Vec<(usize, i32)> = (1..ids.len()).map(|d| (d, ids[(at + d) % ids.len()])).collect();
        others.sort_by_key(|&(distance, id)| (load[&id].replicas_in_topic, load[&id].replicas, distance));
        let replicas: Vec<i32> = std::iter::once(leader).chain(others.into_iter().take(followers).map(|(_, id)| id)).collect();
        let l = load.get_mut(&leader).expect("live");
        (l.leaders_in_topic, l.leaders) = (l.leaders_in_topic + 1, l.leaders + 1);
        for r in &replicas {
            let l = load.get_mut(r).expect("live");
            (l.replicas_in_topic, l.replicas) = (l.replicas_in_topic + 1, l.replicas + 1);
        }
        (p.leader, p.isr, p.replicas) = (leader, replicas.clone(), replicas);
    }
}

/// What a broker holds, for placing new partitions: partitions led and replicas, of the topic
/// being placed and in all.
#[derive(Debug, Default, Clone, Copy)]
struct BrokerLoad {
    leaders_in_topic: usize,
    leaders: usize,
    replicas_in_topic: usize,
    replicas: usize,
}

/// [`assign_replicas`] when every broker has a rack.
fn assign_rack_aware(
    meta: &ClusterMetadata,
    racks: &[(i32, String)],
    siblings: &[PartitionPlacement],
    placed: &mut [PartitionPlacement],
    replication_factor: usize,
) {
    let arranged = placement::rack_alternated_brokers(racks);
    let position = |id: i32| arranged.iter().position(|&b| b == id);
    // Added partitions continue where the topic's partition 0 started (as Kafka's
    // addPartitions does); a new topic starts at the broker leading the fewest partitions, so
    // that topics of few partitions do not all pile onto the list's first broker.
    let start = match siblings.first().and_then(|p| p.replicas.first()).and_then(|&id| position(id)) {
        Some(start) => start,
        None => {
            let mut led: BTreeMap<i32, usize> = arranged.iter().map(|&id| (id, 0)).collect();
            for p in meta.topics.values().flat_map(|t| &t.partitions) {
                if let Some(n) = led.get_mut(&p.leader) {
                    *n += 1;
                }
            }
            (0..arranged.len()).min_by_key(|&i| (led[&arranged[i]], i)).expect("at least one broker")
        }
    };
    let assignment = placement::assign_rack_aware(racks, replication_factor, placed.len(), siblings.len(), start);
    for (p, replicas) in placed.iter_mut().zip(assignment) {
        (p.leader, p.isr, p.replicas) = (replicas[0], replicas.clone(), replicas);
    }
}

/// How many brokers new replicas can go on: the registered, unfenced ones. A combined node
/// with none registered yet (a new cluster's first records) places on itself; a
/// controller-only one holds no partitions, and has none.
fn brokers_available(meta: &ClusterMetadata, this_node_is_broker: bool) -> usize {
    let live = meta.brokers.values().filter(|b| !b.fenced).count();
    if live == 0 && this_node_is_broker {
        1
    } else {
        live
    }
}

/// Kafka's refusal of a replication factor the live brokers cannot hold (its replica placer's
/// InvalidReplicationFactorException), with its message.
fn check_replication_factor(meta: &ClusterMetadata, this_node_is_broker: bool, replication_factor: usize) -> Result<(), (i16, String)> {
    let available = brokers_available(meta, this_node_is_broker);
    if replication_factor <= available {
        return Ok(());
    }
    Err((
        ec::INVALID_REPLICATION_FACTOR,
        format!(
            "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {available} broker(s) are registered."
        ),
    ))
}

/// The replication factor of a CreateTopics request: -1 is `default.replication.factor`, and
/// anything else must be positive (Kafka's check and message).
fn requested_replication_factor(requested: i16, default: i16) -> Result<usize, (i16, String)> {
    match requested {
        -1 => Ok(default.max(1) as usize),
        n if n > 0 => Ok(n as usize),
        _ => Err((ec::INVALID_REPLICATION_FACTOR, String::from("Replication factor must be larger than 0, or -1 to use the default value."))),
    }
}

/// The replication factor an internal topic is created with: its configured factor, or every
/// live broker when there are fewer (as Kafka does for a cluster still being started), so
/// that the coordinators of a small cluster come up.
fn internal_topic_replication_factor(config: &crate::config::BrokerConfig, meta: &ClusterMetadata, name: &str) -> i16 {
    let configured =
        if name == crate::metadata::OFFSETS_TOPIC { config.offsets_topic_replication_factor } else { config.transaction_state_log_replication_factor };
    let available = i16::try_from(brokers_available(meta, config.quorum.broker)).unwrap_or(i16::MAX);
    configured.min(available).max(1)
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
    let manual = if topic.assignments.is_empty() { None } else { Some(manual_assignment(meta, topic)?) };
    // Kafka checks the replication factor before the partition count.
    let replication_factor = match &manual {
        Some(assignments) => assignments.first().map_or(1, Vec::len),
        None => requested_replication_factor(topic.replication_factor, shard.config.default_replication_factor)?,
    };
    let partitions = match &manual {
        Some(assignments) => assignments.len() as i32,
        None if topic.partitions == -1 => shard.config.num_partitions,
        None => topic.partitions,
    };
    if partitions <= 0 || partitions > TOPIC_PARTITIONS_MAX {
        return Err((ec::INVALID_PARTITIONS, format!("Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, not {partitions}.")));
    }
    let mut configs = BTreeMap::new();
    for (k, v) in &topic.configs {
        if configs.insert(k.clone(), v.clone()).is_some() {
            return Err((ec::INVALID_REQUEST, format!("Error due to duplicate config keys: {k}")));
        }
    }
    crate::topic_config::validate_topic_configs(&configs).map_err(|m| (ec::INVALID_CONFIG, m))?;
    if manual.is_none() {
        check_replication_factor(meta, shard.config.quorum.broker, replication_factor)?;
    }
    if validate_only {
        return Ok(());
    }
    let mut placed = meta.place_by_space(partitions as usize, shard.shard_count(), &log_dir_free_bytes(shard));
    match manual {
        Some(assignments) => place_on(meta, &mut placed, &assignments),
        None => assign_replicas(meta, &[], &mut placed, shard.config.node_id, replication_factor),
    }
    tracing::info!(topic = %topic.name, partitions, replication_factor, manual_assignment = !topic.assignments.is_empty(), "creating topic");
    meta.topics.insert(topic.name.clone(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs });
    Ok(())
}

/// CreatePartitions for one topic: the new partitions, with as many replicas as the topic's
/// partition 0 has (Kafka's rule), placed by [`assign_replicas`] or on the brokers the
/// request names.
fn create_partitions(shard: &Shard, meta: &mut ClusterMetadata, topic: &NewPartitions, validate_only: bool) -> Result<(), (i16, String)> {
    let (name, count) = (&topic.name, topic.count);
    let Some(existing) = meta.topics.get(name) else {
        return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("topic {name} does not exist")));
    };
    let n = existing.partitions.len() as i32;
    // A partition recorded before replicas were (an image from a single-node version) has one.
    let replication_factor = existing.partitions.first().map_or(1, |p| p.replicas.len().max(1));
    if count <= n {
        return Err((ec::INVALID_PARTITIONS, format!("topic {name} has {n} partitions; the new count {count} must be larger")));
    }
    if count > TOPIC_PARTITIONS_MAX {
        return Err((ec::INVALID_PARTITIONS, format!("{count} partitions exceeds the limit of {TOPIC_PARTITIONS_MAX}")));
    }
    let additional = (count - n) as usize;
    if let Some(assignments) = &topic.assignments {
        if assignments.len() != additional {
            return Err((
                ec::INVALID_REPLICA_ASSIGNMENT,
                format!("Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.", assignments.len()),
            ));
        }
        for (i, replicas) in assignments.iter().enumerate() {
            validate_manual_replicas(meta, n + i as i32, replicas, Some(replication_factor))?;
        }
    } else {
        check_replication_factor(meta, shard.config.quorum.broker, replication_factor)?;
    }
    if validate_only {
        return Ok(());
    }
    let mut placed = meta.place_by_space(additional, shard.shard_count(), &log_dir_free_bytes(shard));
    match &topic.assignments {
        Some(assignments) => place_on(meta, &mut placed, assignments),
        None => assign_replicas(meta, &meta.topics[name].partitions, &mut placed, shard.config.node_id, replication_factor),
    }
    meta.topics.get_mut(name).expect("exists").partitions.extend(placed);
    tracing::info!(topic = %name, from = n, to = count, replication_factor, manual_assignment = topic.assignments.is_some(), "adding partitions");
    Ok(())
}

/// Puts each partition on the replicas a manual assignment names, as Kafka's controller does:
/// the ISR is the replicas that are not fenced, and the first of them leads (the assignment
/// was checked to have one).
fn place_on(meta: &ClusterMetadata, placed: &mut [PartitionPlacement], assignments: &[Vec<i32>]) {
    for (p, replicas) in placed.iter_mut().zip(assignments) {
        let isr: Vec<i32> = replicas.iter().copied().filter(|id| meta.brokers.get(id).is_some_and(|b| !b.fenced)).collect();
        (p.leader, p.isr, p.replicas) = (isr.first().copied().unwrap_or(records::NO_LEADER), isr, replicas.clone());
    }
}

/// The replicas of each partition of a CreateTopics explicit assignment, in partition order,
/// after Kafka's checks (its controller's, with its error codes and messages).
fn manual_assignment(meta: &ClusterMetadata, topic: &NewTopic) -> Result<Vec<Vec<i32>>, (i16, String)> {
    if topic.replication_factor != -1 {
        return Err((ec::INVALID_REQUEST, String::from("A manual partition assignment was specified, but replication factor was not set to -1.")));
    }
    if topic.partitions != -1 {
        return Err((ec::INVALID_REQUEST, String::from("A manual partition assignment was specified, but numPartitions was not set to -1.")));
    }
    if topic.assignments.len() > TOPIC_PARTITIONS_MAX as usize {
        return Err((ec::INVALID_PARTITIONS, format!("Number of partitions must be between 1 and {TOPIC_PARTITIONS_MAX}, not {}.", topic.assignments.len())));
    }
    let mut by_partition: BTreeMap<i32, &[i32]> = BTreeMap::new();
    let mut replication_factor = None;
    for (partition, replicas) in &topic.assignments {
        if by_partition.contains_key(partition) {
            return Err((ec::INVALID_REPLICA_ASSIGNMENT, format!("Found multiple manual partition assignments for partition {partition}")));
        }
        validate_manual_replicas(meta, *partition, replicas, replication_factor)?;
        replication_factor = Some(replicas.len());
        by_partition.insert(*partition, replicas);
    }
    if !by_partition.keys().copied().eq(0..by_partition.len() as i32) {
        return Err((ec::INVALID_REPLICA_ASSIGNMENT, String::from("partitions should be a consecutive 0-based integer sequence")));
    }
    Ok(by_partition.into_values().map(<[i32]>::to_vec).collect())
}

/// Kafka's checks of one partition's manual replica list: not empty, registered brokers, none
/// twice, as many as the other partitions have, and at least one broker not fenced.
fn validate_manual_replicas(meta: &ClusterMetadata, partition: i32, replicas: &[i32], replication_factor: Option<usize>) -> Result<(), (i16, String)> {
    let refuse = |msg: String| Err((ec::INVALID_REPLICA_ASSIGNMENT, msg));
    if replicas.is_empty() {
        return refuse(String::from("The manual partition assignment includes an empty replica list."));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (i, id) in sorted.iter().enumerate() {
        if !meta.brokers.contains_key(id) {
            return refuse(format!("The manual partition assignment includes broker {id}, but no such broker is registered."));
        }
        if i > 0 && sorted[i - 1] == *id {
            return refuse(format!("The manual partition assignment includes the broker {id} more than once."));
        }
    }
    if let Some(n) = replication_factor.filter(|&n| n != sorted.len()) {
        return refuse(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {n} replica(s).",
            sorted.len()
        ));
    }
    if replicas.iter().all(|id| meta.brokers[id].fenced) {
        return refuse(format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_voters_listener_moves_with_what_its_bind_address_tells() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(moved_address("127.0.0.1:9093", at("127.0.0.1:9093")), None);
        assert_eq!(moved_address("127.0.0.1:9093", at("127.0.0.1:9193")), Some("127.0.0.1:9193".into()));
        assert_eq!(moved_address("127.0.0.1:9093", at("10.0.0.2:9093")), Some("10.0.0.2:9093".into()));
        // Bound everywhere, or recorded by name: the host stays, only the port can move.
        assert_eq!(moved_address("10.0.0.2:9093", at("0.0.0.0:9093")), None);
        assert_eq!(moved_address("10.0.0.2:9093", at("0.0.0.0:9193")), Some("10.0.0.2:9193".into()));
        assert_eq!(moved_address("controller-1:9093", at("10.0.0.2:9093")), None);
        assert_eq!(moved_address("controller-1:9093", at("10.0.0.2:9193")), Some("controller-1:9193".into()));
        assert_eq!(moved_address("[::1]:9093", at("[::1]:9093")), None);
        assert_eq!(moved_address("no-port", at("[::1]:9093")), None);
    }

    #[test]
    fn cluster_id_is_22_chars_of_url_safe_base64() {
        let id = super::base64_uuid(uuid::Uuid::nil());
        assert_eq!(id, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(super::base64_uuid(uuid::Uuid::new_v4()).len(), 22);
    }

    fn broker(node_id: i32, rack: Option<&str>) -> BrokerRegistration {
        BrokerRegistration {
            node_id,
            incarnation_id: uuid::Uuid::new_v4(),
            endpoints: Vec::new(),
            rack: rack.map(String::from),
            fenced: false,
            supported_features: Default::default(),
        }
    }

    /// One topic "t" with a partition per (replicas, isr, leader).
    fn with_partitions(brokers: &[BrokerRegistration], partitions: &[(&[i32], &[i32], i32)]) -> ClusterMetadata {
        let mut meta = ClusterMetadata::new("c".into());
        meta.brokers = brokers.iter().map(|b| (b.node_id, b.clone())).collect();
        let mut placed = meta.place(partitions.len(), 1, 1);
        for (p, (replicas, isr, leader)) in placed.iter_mut().zip(partitions) {
            (p.replicas, p.isr, p.leader) = (replicas.to_vec(), isr.to_vec(), *leader);
        }
        meta.topics.insert("t".into(), TopicMetadata { id: uuid::Uuid::new_v4(), partitions: placed, configs: BTreeMap::new() });
        meta
    }

    #[test]
    fn leader_balancing_elects_only_preferred_replicas_that_are_live_and_in_sync() {
        let fenced = BrokerRegistration { fenced: true, ..broker(3, None) };
        let meta = with_partitions(
            &[broker(1, None), broker(2, None), fenced],
            &[
                (&[1, 2], &[1, 2], 1), // led by its preferred replica
                (&[1, 2], &[1, 2], 2), // preferred replica live and in sync: moves
                (&[3, 1], &[3, 1], 1), // preferred replica fenced
                (&[2, 1], &[1], 1),    // preferred replica out of sync
                (&[2, 1], &[2, 1], 1), // moves
            ],
        );
        assert_eq!(preferred_elections(&meta), vec![("t".to_string(), 1), ("t".to_string(), 4)]);
    }

    #[test]
    fn unclean_elections_only_where_the_topic_allows_and_no_isr_member_is_live() {
        let fenced = |id| BrokerRegistration { fenced: true, ..broker(id, None) };
        let mut meta = with_partitions(
            &[broker(1, None), fenced(2), fenced(3)],
            &[
                (&[2, 1], &[2], records::NO_LEADER),    // the ISR's only member fenced, 1 live: elected
                (&[2, 3], &[2], records::NO_LEADER),    // no live replica at all
                (&[1, 2], &[1], 1),                     // has a leader
                (&[2, 1], &[2, 1], records::NO_LEADER), // a live ISR member: a clean election's to make
            ],
        );
        assert_eq!(unclean_elections(&meta, |_| true), vec![("t".to_string(), 0)]);
        assert!(unclean_elections(&meta, |_| false).is_empty(), "not where the topic does not allow it");
        elect_leader(&mut meta, "t", 0, ELECTION_UNCLEAN).expect("elected");
        assert_eq!(states(&meta)[0], (1, vec![1], 1, 1));
        assert!(unclean_elections(&meta, |_| true).is_empty());
    }

    #[test]
    fn elections_give_kafkas_answers_and_bump_the_leader_epoch_only_when_they_elect() {
        let fenced = BrokerRegistration { fenced: true, ..broker(3, None) };
        let mut meta = with_partitions(
            &[broker(1, None), broker(2, None), fenced],
            &[
                (&[1, 2], &[1, 2], 1),               // led by its preferred replica
                (&[1, 2], &[1, 2], 2),               // preferred replica live and in sync
                (&[3, 1], &[3, 1], 1),               // preferred replica fenced
                (&[2, 1], &[1], 1),                  // preferred replica out of sync
                (&[3], &[3], records::NO_LEADER),    // its only replica fenced
                (&[3, 2], &[3], records::NO_LEADER), // no live ISR member, a live replica
            ],
        );
        let epoch = |m: &ClusterMetadata, p: usize| m.topics["t"].partitions[p].leader_epoch;
        let elect = |m: &mut ClusterMetadata, p: i32, kind: i8| elect_leader(m, "t", p, kind).map_err(|(code, _)| code);
        assert_eq!(elect(&mut meta, 0, ELECTION_PREFERRED), Err(ec::ELECTION_NOT_NEEDED));
        assert_eq!(elect(&mut meta, 1, ELECTION_PREFERRED), Ok(1));
        assert_eq!((meta.topics["t"].partitions[1].leader, epoch(&meta, 1)), (1, 1));
        assert_eq!(elect(&mut meta, 2, ELECTION_PREFERRED), Err(ec::PREFERRED_LEADER_NOT_AVAILABLE));
        assert_eq!(elect(&mut meta, 3, ELECTION_PREFERRED), Err(ec::PREFERRED_LEADER_NOT_AVAILABLE));
        assert_eq!(epoch(&meta, 2) + epoch(&meta, 3), 0, "no election, no new epoch");
        // Unclean: only a partition with no leader, and then any live replica.
        assert_eq!(elect(&mut meta, 0, ELECTION_UNCLEAN), Err(ec::ELECTION_NOT_NEEDED));
        assert_eq!(elect(&mut meta, 4, ELECTION_UNCLEAN), Err(ec::ELIGIBLE_LEADERS_NOT_AVAILABLE));
        assert_eq!(elect(&mut meta, 5, ELECTION_UNCLEAN), Ok(2));
        let p = &meta.topics["t"].partitions[5];
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2], 1, 1), "the unclean leader is the whole ISR");
        // What is not there, and election types Kafka does not have.
        assert_eq!(elect(&mut meta, 6, ELECTION_PREFERRED), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(elect(&mut meta, -1, ELECTION_PREFERRED), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(elect_leader(&mut meta, "nope", 0, ELECTION_PREFERRED).map_err(|(c, _)| c), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(elect(&mut meta, 0, 2), Err(ec::INVALID_REQUEST));
    }

    /// (leader, isr, leader epoch, partition epoch) of each partition of "t".
    fn states(meta: &ClusterMetadata) -> Vec<(i32, Vec<i32>, i32, i32)> {
        meta.topics["t"].partitions.iter().map(|p| (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch)).collect()
    }

    #[test]
    fn fencing_shrinks_isrs_to_their_last_member_and_moves_leadership_within_them() {
        const NONE: i32 = records::NO_LEADER;
        let mut meta = with_partitions(
            &[broker(1, None), broker(2, None), broker(3, None)],
            &[
                (&[1, 2, 3], &[1, 2, 3], 1), // led by 1, two others in sync
                (&[2, 1, 3], &[2, 1], 2),    // 1 a follower in sync
                (&[1], &[1], 1),             // 1 alone
                (&[3, 1], &[3], 3),          // 1 a follower out of sync: untouched
            ],
        );
        set_fenced(&mut meta, 1, true);
        assert_eq!(
            states(&meta),
            vec![(2, vec![2, 3], 1, 1), (2, vec![2], 0, 1), (NONE, vec![1], 1, 1), (3, vec![3], 0, 0)],
            "the next replica in the ISR leads; a follower leaves the ISR in the same leader epoch; the last ISR member stays"
        );
        set_fenced(&mut meta, 2, true);
        assert_eq!(states(&meta), vec![(3, vec![3], 2, 2), (NONE, vec![2], 1, 2), (NONE, vec![1], 1, 1), (3, vec![3], 0, 0)]);
        // Unfenced: it leads again where it is the ISR, and joins no ISR on its own.
        set_fenced(&mut meta, 1, false);
        assert_eq!(states(&meta), vec![(3, vec![3], 2, 2), (NONE, vec![2], 1, 2), (1, vec![1], 2, 2), (3, vec![3], 0, 0)]);
        set_fenced(&mut meta, 2, false);
        assert_eq!(states(&meta), vec![(3, vec![3], 2, 2), (2, vec![2], 2, 3), (1, vec![1], 2, 2), (3, vec![3], 0, 0)]);
        // Fencing a broker in no ISR and leading nothing changes no partition.
        let before = states(&meta);
        set_fenced(&mut meta, 1, false);
        set_fenced(&mut meta, 2, true);
        set_fenced(&mut meta, 2, false);
        assert_eq!(states(&meta)[0], before[0]);
    }

    #[test]
    fn a_new_incarnation_leaves_shared_isrs_and_keeps_the_epochs_of_what_it_had_alone() {
        let old = with_partitions(&[broker(1, None), broker(2, None)], &[(&[1, 2], &[1, 2], 1), (&[1], &[1], 1), (&[2, 1], &[2, 1], 2)]);
        let mut new = old.clone();
        set_fenced(&mut new, 1, true);
        set_fenced(&mut new, 1, false);
        keep_epochs_where_unchanged(&old, &mut new);
        assert_eq!(states(&new), vec![(2, vec![2], 1, 1), (1, vec![1], 0, 0), (2, vec![2], 0, 1)]);
    }

    #[test]
    fn alter_partition_gives_kafkas_answers_in_kafkas_order() {
        let fenced = BrokerRegistration { fenced: true, ..broker(4, None) };
        let mut meta = with_partitions(&[broker(1, None), broker(2, None), broker(3, None), fenced], &[(&[1, 2, 3, 4, 5], &[1], 1)]);
        {
            let p = &mut meta.topics.get_mut("t").unwrap().partitions[0];
            (p.leader_epoch, p.partition_epoch) = (2, 5);
        }
        let change = |leader_id, leader_epoch, partition_epoch, new_isr: &[i32]| AlterPartition {
            topic: String::from("t"),
            partition: 0,
            leader_id,
            leader_epoch,
            partition_epoch,
            new_isr: new_isr.to_vec(),
        };
        let code = |m: &mut ClusterMetadata, c: AlterPartition| alter_isr(m, &c).map_err(|(code, _)| code);
        let unknown = AlterPartition { partition: 1, ..change(1, 2, 5, &[1, 2]) };
        assert_eq!(code(&mut meta, unknown), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(code(&mut meta, AlterPartition { topic: String::from("nope"), ..change(1, 2, 5, &[1]) }), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(code(&mut meta, AlterPartition { partition: -1, ..change(1, 2, 5, &[1]) }), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(code(&mut meta, change(1, 3, 5, &[1, 2])), Err(ec::NOT_CONTROLLER), "a leader epoch from a newer controller");
        assert_eq!(code(&mut meta, change(1, 2, 6, &[1, 2])), Err(ec::NOT_CONTROLLER), "a partition epoch from a newer controller");
        assert_eq!(code(&mut meta, change(1, 1, 5, &[1, 2])), Err(ec::FENCED_LEADER_EPOCH));
        assert_eq!(code(&mut meta, change(2, 2, 5, &[1, 2])), Err(ec::INVALID_REQUEST), "not the leader");
        assert_eq!(code(&mut meta, change(1, 2, 4, &[1, 2])), Err(ec::INVALID_UPDATE_VERSION));
        for isr in [&[][..], &[1, 6], &[1, 1], &[2, 3]] {
            assert_eq!(code(&mut meta, change(1, 2, 5, isr)), Err(ec::INVALID_REQUEST), "{isr:?}");
        }
        let (c, msg) = alter_isr(&mut meta, &change(1, 2, 5, &[1, 2, 4])).expect_err("fenced");
        assert_eq!(c, ec::INELIGIBLE_REPLICA);
        assert!(msg.contains("4 (fenced)"), "{msg}");
        let (c, msg) = alter_isr(&mut meta, &change(1, 2, 5, &[1, 5])).expect_err("unregistered");
        assert_eq!(c, ec::INELIGIBLE_REPLICA);
        assert!(msg.contains("5 (not registered)"), "{msg}");
        assert_eq!(states(&meta), vec![(1, vec![1], 2, 5)], "nothing changed by a refusal");
        // Accepted: a new partition epoch, the same leader epoch.
        let state = alter_isr(&mut meta, &change(1, 2, 5, &[1, 3, 2])).expect("valid");
        assert_eq!(state, PartitionState { leader: 1, leader_epoch: 2, partition_epoch: 6, isr: vec![1, 3, 2], replicas: vec![1, 2, 3, 4, 5] });
        assert_eq!(states(&meta), vec![(1, vec![1, 3, 2], 2, 6)]);
        // The same ISR again (in any order): the current state, no change.
        let before = meta.clone();
        assert_eq!(alter_isr(&mut meta, &change(1, 2, 6, &[2, 1, 3])), Ok(state.clone()));
        assert_eq!(meta, before);
        // The request that led to it, sent again: its partition epoch is now stale.
        assert_eq!(code(&mut meta, change(1, 2, 5, &[1, 3, 2])), Err(ec::INVALID_UPDATE_VERSION));
        // A shrink.
        assert_eq!(alter_isr(&mut meta, &change(1, 2, 6, &[1])).map(|s| (s.isr, s.partition_epoch)), Ok((vec![1], 7)));
    }

    /// (replicas, adding, removing, isr, leader, leader epoch, partition epoch) of a partition.
    type Moving = (Vec<i32>, Vec<i32>, Vec<i32>, Vec<i32>, i32, i32, i32);

    /// [`Moving`] of "t"'s partition.
    fn moving(meta: &ClusterMetadata, partition: usize) -> Moving {
        let p = &meta.topics["t"].partitions[partition];
        (p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch, p.partition_epoch)
    }

    #[test]
    fn a_reassignment_adds_replicas_first_and_removes_the_old_ones_when_the_new_are_in_sync() {
        let brokers = [broker(1, None), broker(2, None), broker(3, None), broker(4, None)];
        let mut meta = with_partitions(&brokers, &[(&[1, 2, 3], &[1, 2, 3], 1), (&[1, 2], &[1, 2], 1)]);
        // Move partition 0 from 1,2,3 to 4,2,3: 4 is added and 1 (the leader) stays meanwhile.
        reassign(&mut meta, "t", 0, Some(&[4, 2, 3]), false).expect("valid");
        assert_eq!(moving(&meta, 0), (vec![4, 2, 3, 1], vec![4], vec![1], vec![1, 2, 3], 1, 0, 1));
        // An ISR change without 4 completes nothing.
        let change = |partition_epoch, new_isr: &[i32]| AlterPartition {
            topic: String::from("t"),
            partition: 0,
            leader_id: 1,
            leader_epoch: 0,
            partition_epoch,
            new_isr: new_isr.to_vec(),
        };
        alter_isr(&mut meta, &change(1, &[1, 2])).expect("shrink");
        assert_eq!(moving(&meta, 0), (vec![4, 2, 3, 1], vec![4], vec![1], vec![1, 2], 1, 0, 2));
        // 4 caught up: 1 leaves, a leader is elected from what stays, in a new epoch.
        let state = alter_isr(&mut meta, &change(2, &[1, 2, 4])).expect("expand");
        assert_eq!(moving(&meta, 0), (vec![4, 2, 3], vec![], vec![], vec![2, 4], 4, 1, 4));
        assert_eq!((state.leader, state.replicas), (4, vec![4, 2, 3]));
        // Taking a replica out only (nothing to add) completes at once, and bumps the leader
        // epoch so the removed replica stops fetching.
        reassign(&mut meta, "t", 1, Some(&[1]), true).expect("valid");
        assert_eq!(moving(&meta, 1), (vec![1], vec![], vec![], vec![1], 1, 1, 1));
        // Reordering the replicas changes the preferred leader, nothing else.
        reassign(&mut meta, "t", 0, Some(&[2, 3, 4]), false).expect("valid");
        assert_eq!(moving(&meta, 0), (vec![2, 3, 4], vec![], vec![], vec![2, 4], 4, 1, 5));
        // The same target again changes nothing.
        let before = meta.clone();
        reassign(&mut meta, "t", 0, Some(&[2, 3, 4]), false).expect("valid");
        assert_eq!(meta, before);
    }

    #[test]
    fn a_cancelled_reassignment_takes_out_the_replicas_it_was_adding() {
        let brokers = [broker(1, None), broker(2, None), broker(3, None), broker(4, None)];
        let mut meta = with_partitions(&brokers, &[(&[1, 2], &[1, 2], 1)]);
        let code = |m: &mut ClusterMetadata, target: Option<&[i32]>| reassign(m, "t", 0, target, false).map_err(|(code, _)| code);
        assert_eq!(code(&mut meta, None), Err(ec::NO_REASSIGNMENT_IN_PROGRESS));
        assert_eq!(code(&mut meta, Some(&[3, 4])), Ok(()));
        assert_eq!(moving(&meta, 0), (vec![3, 4, 1, 2], vec![3, 4], vec![1, 2], vec![1, 2], 1, 0, 1));
        // A new target replaces it: what was being added and is no longer wanted goes too.
        assert_eq!(code(&mut meta, Some(&[3, 2])), Ok(()));
        assert_eq!(moving(&meta, 0), (vec![3, 2, 4, 1], vec![3], vec![4, 1], vec![1, 2], 1, 0, 2), "3 is still being added");
        let mut cancelled = with_partitions(&brokers, &[(&[1, 2], &[1, 2], 1)]);
        code(&mut cancelled, Some(&[3, 4])).expect("valid");
        assert_eq!(code(&mut cancelled, None), Ok(()));
        assert_eq!(moving(&cancelled, 0), (vec![1, 2], vec![], vec![], vec![1, 2], 1, 1, 2));
    }

    #[test]
    fn a_reassignment_target_gets_kafkas_checks() {
        let fenced = BrokerRegistration { fenced: true, ..broker(3, None) };
        let mut meta = with_partitions(&[broker(1, None), broker(2, None), fenced], &[(&[1, 2], &[1, 2], 1)]);
        let code =
            |m: &mut ClusterMetadata, partition: i32, target: &[i32], allow: bool| reassign(m, "t", partition, Some(target), allow).map_err(|(code, _)| code);
        let before = meta.clone();
        assert_eq!(code(&mut meta, 0, &[], true), Err(ec::INVALID_REPLICA_ASSIGNMENT));
        assert_eq!(code(&mut meta, 0, &[1, 1], true), Err(ec::INVALID_REPLICA_ASSIGNMENT));
        assert_eq!(code(&mut meta, 0, &[1, 9], true), Err(ec::INVALID_REPLICA_ASSIGNMENT), "not registered");
        assert_eq!(code(&mut meta, 0, &[3], true), Err(ec::INVALID_REPLICA_ASSIGNMENT), "all fenced");
        assert_eq!(code(&mut meta, 0, &[1, 2, 3], false), Err(ec::INVALID_REPLICATION_FACTOR));
        assert_eq!(code(&mut meta, 1, &[1, 2], false), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(code(&mut meta, -1, &[1, 2], false), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(reassign(&mut meta, "nope", 0, Some(&[1]), true).map_err(|(c, _)| c), Err(ec::UNKNOWN_TOPIC_OR_PARTITION));
        assert_eq!(meta, before, "nothing changed by a refusal");
        // A fenced broker may be added (it catches up once it is back).
        assert_eq!(code(&mut meta, 0, &[1, 2, 3], true), Ok(()));
    }

    #[test]
    fn another_incarnation_is_refused_only_while_the_registered_session_lives() {
        let session = Duration::from_millis(1500);
        let now = Instant::now();
        let existing = broker(2, None);
        let newcomer = BrokerRegistration { incarnation_id: uuid::Uuid::new_v4(), ..existing.clone() };
        let reason = duplicate_registration(&existing, &newcomer, now - Duration::from_millis(200), session, now).expect("refused");
        assert!(reason.contains("node 2") && reason.contains(&existing.incarnation_id.to_string()), "{reason}");
        // The same incarnation again (a retry), a lapsed session, or a fenced broker: accepted.
        assert_eq!(duplicate_registration(&existing, &existing.clone(), now, session, now), None);
        assert_eq!(duplicate_registration(&existing, &newcomer, now - Duration::from_millis(1600), session, now), None);
        let fenced = BrokerRegistration { fenced: true, ..existing.clone() };
        assert_eq!(duplicate_registration(&fenced, &newcomer, now, session, now), None);
    }

    /// A view with `brokers` registered and a topic `t` of `partitions` placed by
    /// [`assign_replicas`] with one replica each; returns the leaders.
    fn place(brokers: &[BrokerRegistration], partitions: usize) -> Vec<i32> {
        let placed = place_replicated(brokers, partitions, 1);
        assert!(placed.iter().all(|p| p.replicas == vec![p.leader]));
        placed.iter().map(|p| p.leader).collect()
    }

    /// [`place`] with `replication_factor` replicas each: the partitions, each checked to have
    /// that many distinct replicas, led by the first, all in the ISR.
    fn place_replicated(brokers: &[BrokerRegistration], partitions: usize, replication_factor: usize) -> Vec<PartitionPlacement> {
        let mut meta = ClusterMetadata::new(String::from("c"));
        for b in brokers {
            meta.brokers.insert(b.node_id, b.clone());
        }
        let mut placed: Vec<PartitionPlacement> = (0..partitions).map(|_| PartitionPlacement::local(0, 0)).collect();
        assign_replicas(&meta, &[], &mut placed, 1, replication_factor);
        for p in &placed {
            let distinct: std::collections::BTreeSet<i32> = p.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), replication_factor, "{:?}", p.replicas);
            assert!(p.leader == p.replicas[0] && p.isr == p.replicas && (p.leader_epoch, p.partition_epoch) == (0, 0), "{p:?}");
        }
        placed
    }

    /// How many of `placed`'s replicas (`leaders`: leaders) each broker of `brokers` holds.
    fn per_broker(placed: &[PartitionPlacement], brokers: &[i32], leaders: bool) -> Vec<usize> {
        let held = |id: i32| placed.iter().filter(|p| if leaders { p.leader == id } else { p.replicas.contains(&id) }).count();
        brokers.iter().map(|&id| held(id)).collect()
    }

    #[test]
    fn replicas_spread_over_the_live_brokers_with_balanced_leaders_and_replica_counts() {
        let placed = place_replicated(&[broker(1, None), broker(2, None), broker(3, None)], 6, 3);
        assert_eq!(per_broker(&placed, &[1, 2, 3], true), vec![2, 2, 2]);
        assert_eq!(per_broker(&placed, &[1, 2, 3], false), vec![6, 6, 6]);
        // Fewer replicas than brokers: the followers rotate with the leaders.
        let brokers: Vec<BrokerRegistration> = (1..=4).map(|id| broker(id, None)).collect();
        let placed = place_replicated(&brokers, 8, 2);
        assert_eq!(per_broker(&placed, &[1, 2, 3, 4], true), vec![2, 2, 2, 2]);
        assert_eq!(per_broker(&placed, &[1, 2, 3, 4], false), vec![4, 4, 4, 4]);
        let placed = place_replicated(&brokers[..3], 3, 2);
        assert_eq!(placed.iter().map(|p| p.replicas.clone()).collect::<Vec<_>>(), vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        // A fenced broker holds nothing.
        let fenced = BrokerRegistration { fenced: true, ..broker(4, None) };
        let placed = place_replicated(&[broker(1, None), broker(2, None), broker(3, None), fenced], 6, 3);
        assert_eq!(per_broker(&placed, &[4], false), vec![0]);
        // With racks, each replica of a partition in its own rack.
        let racks = [broker(1, Some("a")), broker(2, Some("b")), broker(3, Some("c")), broker(4, Some("a")), broker(5, Some("b")), broker(6, Some("c"))];
        let placed = place_replicated(&racks, 12, 3);
        for p in &placed {
            let in_racks: std::collections::BTreeSet<i32> = p.replicas.iter().map(|id| id % 3).collect();
            assert_eq!(in_racks.len(), 3, "{:?}", p.replicas);
        }
        assert_eq!(per_broker(&placed, &[1, 2, 3, 4, 5, 6], true), vec![2; 6]);
        assert_eq!(per_broker(&placed, &[1, 2, 3, 4, 5, 6], false), vec![6; 6]);
    }

    #[test]
    fn a_replication_factor_needs_as_many_live_brokers_and_minus_one_is_the_default() {
        let mut meta = ClusterMetadata::new(String::from("c"));
        for b in [broker(1, None), broker(2, None), BrokerRegistration { fenced: true, ..broker(3, None) }] {
            meta.brokers.insert(b.node_id, b);
        }
        assert_eq!(check_replication_factor(&meta, true, 2), Ok(()));
        let (code, msg) = check_replication_factor(&meta, true, 3).expect_err("two live brokers");
        assert_eq!(code, ec::INVALID_REPLICATION_FACTOR);
        assert_eq!(
            msg,
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 2 broker(s) are registered."
        );
        // Before any broker registered, a combined node places on itself; a controller-only
        // node has nowhere to place.
        let empty = ClusterMetadata::new(String::from("c"));
        assert_eq!(check_replication_factor(&empty, true, 1), Ok(()));
        assert!(check_replication_factor(&empty, true, 2).is_err());
        assert!(check_replication_factor(&empty, false, 1).expect_err("none").1.contains("only 0 broker(s)"));
        assert_eq!(requested_replication_factor(-1, 3), Ok(3));
        assert_eq!(requested_replication_factor(2, 1), Ok(2));
        for bad in [0, -2] {
            assert_eq!(requested_replication_factor(bad, 1).map_err(|(code, _)| code), Err(ec::INVALID_REPLICATION_FACTOR));
        }
        // The internal topics: their configured factor, or every live broker when fewer.
        let config = crate::config::BrokerConfig { offsets_topic_replication_factor: 3, transaction_state_log_replication_factor: 1, ..Default::default() };
        assert_eq!(internal_topic_replication_factor(&config, &meta, crate::metadata::OFFSETS_TOPIC), 2);
        assert_eq!(internal_topic_replication_factor(&config, &meta, crate::metadata::TRANSACTION_STATE_TOPIC), 1);
        assert_eq!(internal_topic_replication_factor(&config, &empty, crate::metadata::OFFSETS_TOPIC), 1);
    }

    fn count(leaders: &[i32], of: impl Fn(i32) -> bool) -> usize {
        leaders.iter().filter(|&&l| of(l)).count()
    }

    #[test]
    fn with_racks_partitions_follow_the_rack_alternated_list_balanced_per_broker() {
        let leaders = place(&[broker(1, Some("a")), broker(2, Some("a")), broker(3, Some("b"))], 12);
        assert_eq!(&leaders[..3], &[1, 3, 2]);
        assert_eq!([1, 2, 3].map(|b| count(&leaders, |l| l == b)), [4, 4, 4]);
        assert_eq!((count(&leaders, |l| l != 3), count(&leaders, |l| l == 3)), (8, 4));
        // Fenced brokers get nothing; three racks of one broker each alternate strictly.
        let fenced = BrokerRegistration { fenced: true, ..broker(4, Some("a")) };
        let leaders = place(&[broker(1, Some("x")), broker(2, Some("y")), broker(3, Some("z")), fenced], 7);
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    fn assigned(assignments: &[(i32, &[i32])], partitions: i32, replication_factor: i16) -> Result<Vec<Vec<i32>>, (i16, String)> {
        let mut meta = ClusterMetadata::new(String::from("c"));
        for b in [broker(1, None), broker(2, None), BrokerRegistration { fenced: true, ..broker(3, None) }] {
            meta.brokers.insert(b.node_id, b);
        }
        let assignments = assignments.iter().map(|(p, r)| (*p, r.to_vec())).collect();
        let topic = NewTopic { name: String::from("t"), partitions, replication_factor, configs: Vec::new(), assignments };
        manual_assignment(&meta, &topic)
    }

    #[test]
    fn a_manual_assignment_names_registered_brokers_for_each_partition() {
        // In any order: the replicas come back in partition order.
        assert_eq!(assigned(&[(1, &[2]), (0, &[1]), (2, &[2])], -1, -1), Ok(vec![vec![1], vec![2], vec![2]]));
        let refused = |a: &[(i32, &[i32])], partitions, rf| assigned(a, partitions, rf).expect_err("refused");
        let (code, msg) = refused(&[(0, &[1])], 1, -1);
        assert_eq!(code, ec::INVALID_REQUEST, "{msg}");
        assert!(msg.contains("numPartitions"), "{msg}");
        assert_eq!(refused(&[(0, &[1])], -1, 1).0, ec::INVALID_REQUEST);
        let (code, msg) = refused(&[(0, &[1]), (1, &[7])], -1, -1);
        assert_eq!(code, ec::INVALID_REPLICA_ASSIGNMENT);
        assert!(msg.contains("broker 7") && msg.contains("no such broker is registered"), "{msg}");
        let (code, msg) = refused(&[(0, &[1]), (0, &[2])], -1, -1);
        assert_eq!(code, ec::INVALID_REPLICA_ASSIGNMENT);
        assert!(msg.contains("multiple manual partition assignments for partition 0"), "{msg}");
        let (code, msg) = refused(&[(0, &[1]), (2, &[2])], -1, -1);
        assert_eq!(code, ec::INVALID_REPLICA_ASSIGNMENT);
        assert!(msg.contains("consecutive 0-based"), "{msg}");
        assert_eq!(refused(&[(0, &[])], -1, -1).0, ec::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(refused(&[(0, &[2, 2])], -1, -1).0, ec::INVALID_REPLICA_ASSIGNMENT);
        assert_eq!(refused(&[(0, &[1]), (1, &[1, 2])], -1, -1).0, ec::INVALID_REPLICA_ASSIGNMENT);
        // A fenced broker alone cannot lead its partition.
        let (code, msg) = refused(&[(0, &[3])], -1, -1);
        assert_eq!(code, ec::INVALID_REPLICA_ASSIGNMENT);
        assert!(msg.contains("fenced"), "{msg}");
        // Several replicas each, as long as every partition has as many.
        assert_eq!(assigned(&[(0, &[1, 2]), (1, &[2, 1])], -1, -1), Ok(vec![vec![1, 2], vec![2, 1]]));
        // A fenced replica is no leader and not in sync; the first live one leads.
        let assignment = assigned(&[(0, &[3, 2, 1]), (1, &[1, 3, 2])], -1, -1).expect("one live replica suffices");
        let mut meta = ClusterMetadata::new(String::from("c"));
        for b in [broker(1, None), broker(2, None), BrokerRegistration { fenced: true, ..broker(3, None) }] {
            meta.brokers.insert(b.node_id, b);
        }
        let mut placed: Vec<PartitionPlacement> = (0..2).map(|_| PartitionPlacement::local(0, 0)).collect();
        place_on(&meta, &mut placed, &assignment);
        let state: Vec<(Vec<i32>, Vec<i32>, i32)> = placed.iter().map(|p| (p.replicas.clone(), p.isr.clone(), p.leader)).collect();
        assert_eq!(state, vec![(vec![3, 2, 1], vec![2, 1], 2), (vec![1, 3, 2], vec![1, 2], 1)]);
    }

    #[test]
    fn without_a_rack_on_every_broker_placement_ignores_racks() {
        let leaders = place(&[broker(1, Some("a")), broker(2, Some("a")), broker(3, None)], 6);
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    }
}
