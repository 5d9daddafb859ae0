//! The metadata quorum: the controllers' Raft group, on raft-rs (TiKV's Raft: a sans-io state
//! machine fed ticks, messages and proposals, that hands back what to persist, send and
//! apply). One task on the controller shard drives it and is the only one that touches it;
//! everything else talks to that task through bounded queues.
//!
//! The log's entries are batches of metadata records ([`crate::metadata::records`]), proposed
//! by the leader (the active controller) only; every voter applies the committed ones in order
//! through the [`Applier`] it was started with. A broker-only node is no voter: it observes
//! the log, fetching the committed entries from a voter ([`observer`]).
//!
//! A dynamic quorum (KIP-853) changes its voters with raft-rs's own configuration change: one
//! voter in or out per ConfChangeV2 entry, whose context carries the QuorumVoters record of the
//! new set, so that raft's configuration and the image's voter set change at the same index. A
//! controller formatted to join observes the log until an applied change names it, then starts
//! as a raft member ([`VoterChange`], `become_voter`).

pub mod bootstrap;
mod link;
pub mod log_store;
pub mod observer;
pub mod transport;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::FutureExt;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, StateRole};
use serde::{Deserialize, Serialize};

use crate::config::{QuorumConfig, QuorumVoter};
use crate::metadata::records::MetadataRecord;
use crate::notify::Notify;
use log_store::LogStore;

/// How often raft-rs's clock ticks; the quorum's timeouts are counted in ticks.
pub const TICK: Duration = Duration::from_millis(50);
/// Messages from other voters waiting for the driver. Raft tolerates lost messages (they are
/// sent again), so past this bound new ones are dropped rather than queued.
pub const QUORUM_INBOX_MESSAGES_MAX: usize = 4096;
/// The largest append raft-rs sends in one message.
const RAFT_MESSAGE_BYTES_MAX: u64 = 1 << 20;
/// Appends in flight to one follower.
const RAFT_INFLIGHT_MESSAGES_MAX: usize = 256;

/// raft-rs ids start at 1 (0 means none); Kafka node ids start at 0.
pub fn raft_id(node_id: i32) -> u64 {
    node_id as u64 + 1
}

pub fn node_id(raft_id: u64) -> i32 {
    raft_id as i32 - 1
}

/// A committed batch of records, as stored in an entry.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    /// (node id, sequence) of the proposal, so that the proposer knows its own batch.
    proposal: (i32, u64),
    records: Vec<MetadataRecord>,
}

/// The batch an entry carries: a normal entry's data, or a voter change's context (the voter
/// change and the QuorumVoters record that names the new set commit as one entry). None for an
/// entry with no records (a new leader's first entry).
fn entry_batch(entry: &Entry) -> Result<Option<Batch>> {
    let bytes = match entry.get_entry_type() {
        EntryType::EntryNormal => &entry.data,
        EntryType::EntryConfChangeV2 | EntryType::EntryConfChange => &entry.context,
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(bytes).map(Some).with_context(|| format!("metadata log entry {} is damaged", entry.index))
}

/// A change of the voter set (KIP-853's AddRaftVoter and RemoveRaftVoter), by node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoterChange {
    Add(i32),
    Remove(i32),
}

impl VoterChange {
    /// raft-rs's form: one voter in or out, a simple change (no joint consensus), which raft
    /// allows one at a time.
    fn conf_change(self) -> ConfChangeV2 {
        let (change_type, id) = match self {
            VoterChange::Add(id) => (ConfChangeType::AddNode, id),
            VoterChange::Remove(id) => (ConfChangeType::RemoveNode, id),
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change_type);
        single.node_id = raft_id(id);
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc
    }
}

/// A proposal waiting for the driver: its sequence number, its batch, and the voter change it
/// makes, if any.
type Proposal = (u64, Vec<u8>, Option<VoterChange>);

/// What a controller that observes the log (formatted to join a running quorum) needs to
/// become a voter once the quorum adds it.
struct Promotion {
    dir: std::path::PathBuf,
    cluster_id: Option<String>,
    config: QuorumConfig,
    listen: std::net::SocketAddr,
}

/// Applies committed records, in log order, to this node's metadata (and persists them:
/// after `apply` returns, the batch at `index` is never given again after a restart).
pub trait Applier {
    fn apply(&self, index: u64, records: Vec<MetadataRecord>) -> futures::future::LocalBoxFuture<'_, Result<()>>;
    /// The image as applied so far, encoded for a snapshot, and the index it was applied to.
    fn snapshot(&self) -> Result<(u64, Vec<u8>)>;
    /// Replaces the image with a snapshot's (`data`, as [`Applier::snapshot`] encodes it) at
    /// `index`, and persists it.
    fn install(&self, index: u64, data: Vec<u8>) -> futures::future::LocalBoxFuture<'_, Result<()>>;
    /// The voter set the applied image names (a dynamic quorum's QuorumVoters record).
    fn voters(&self) -> Vec<QuorumVoter>;
}

/// What raft-rs reads: the log in memory, and snapshots of the applied image (sent to a voter
/// that is behind the log's start).
struct QuorumStorage {
    log: raft::storage::MemStorage,
    applier: Rc<dyn Applier>,
}

impl raft::Storage for QuorumStorage {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.log.initial_state()
    }
    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, context: raft::GetEntriesContext) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size, context)
    }
    fn term(&self, index: u64) -> raft::Result<u64> {
        self.log.term(index)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable);
        let (index, data) = self.applier.snapshot().map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "no metadata snapshot for a lagging voter (it is asked for again)");
            unavailable()
        })?;
        if index < request_index || index == 0 {
            return Err(unavailable());
        }
        let snapshot = image_snapshot(&self.log, index, data)?;
        tracing::info!(to = node_id(to), index, bytes = snapshot.data.len(), "sending a metadata snapshot to a voter behind the log's start");
        Ok(snapshot)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this node is not the active controller")]
    NotLeader,
    #[error("the metadata quorum lost its leader before the change was committed")]
    LeaderLost,
    #[error("the metadata log cannot be written on this node")]
    Failed,
    #[error("a change of the voter set is still being applied")]
    VoterChangePending,
}

/// What DescribeQuorum and `shardlog status` show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Whether this node is the leader and has applied everything of the terms before its
    /// own: only then may it work out changes from its image.
    pub ready_leader: bool,
    /// Per voter (leader only): the last index known to be in its log.
    pub voter_progress: Vec<(i32, u64)>,
    /// Messages from other voters dropped because the inbox was full
    /// ([`QUORUM_INBOX_MESSAGES_MAX`]), since start.
    pub dropped_messages: u64,
    /// The index of this node's latest metadata snapshot (the log starts after it); 0: none.
    pub snapshot_index: u64,
    /// At the leader: a voter change is proposed and not yet applied (raft takes one at a time).
    pub voter_change_pending: bool,
}

pub struct Quorum {
    pub node_id: i32,
    inbox: RefCell<VecDeque<Message>>,
    proposals: RefCell<VecDeque<Proposal>>,
    waiters: RefCell<HashMap<u64, futures::channel::oneshot::Sender<Result<(), ProposeError>>>>,
    next_proposal: Cell<u64>,
    wake: Notify,
    status: RefCell<QuorumStatus>,
    /// Signalled whenever the status changes.
    pub status_changed: Notify,
    dropped_messages: Cell<u64>,
    failed: Cell<bool>,
    peers: transport::Peers,
    /// Answers requests other nodes forward to this one (set by the controller).
    forward_handler: RefCell<Option<ForwardHandler>>,
    forwarded_in_flight: Cell<usize>,
    /// Requests this node forwarded, waiting for their answers.
    forward_waiters: RefCell<HashMap<u64, futures::channel::oneshot::Sender<Vec<u8>>>>,
    next_forward: Cell<u64>,
    /// Whether this node observes the log rather than votes (a broker-only node, or a
    /// controller not yet added as a voter).
    observer: Cell<bool>,
    /// What observers fetch, at a voter: its log (a handle on the driver's), and its image for
    /// an observer behind the log's start. None on an observer.
    log: RefCell<Option<raft::storage::MemStorage>>,
    applier: Rc<dyn Applier>,
    fetches_in_flight: Cell<usize>,
    /// At a voter: the observers that fetched from it, by node id: the last index each had
    /// (the fetch's index less one) and when it asked. Bounded by [`observer::OBSERVERS_TRACKED_MAX`].
    observed: RefCell<std::collections::BTreeMap<i32, observer::Observed>>,
    /// While this node leads: per voter, when it last answered an append or heartbeat (a
    /// KRaft fetch) and when it last had the leader's whole log, in ms since the epoch, for
    /// DescribeQuorum. The term they are of: a new leader starts with none. One entry per voter.
    voter_times: RefCell<(u64, VoterTimes)>,
    /// At a voter: the observers linked here that are controllers (may become voters), by node
    /// id, with how many links each has open. Bounded by the quorum's incoming connections.
    controller_observers: RefCell<HashMap<i32, usize>>,
    /// On a controller that observes (formatted to join a running quorum): how to become a
    /// voter. Taken when it does.
    promotion: RefCell<Option<Promotion>>,
    /// `controller.quorum.fetch.timeout.ms`: how long an observer waits for a voter's answer
    /// beyond the time the voter may hold its fetch.
    fetch_timeout_ms: u64,
    /// The cluster id the transport's hellos carry.
    cluster_id: RefCell<Option<String>>,
    /// On a voter that joined after observing the log: the index its image was applied to
    /// when raft started filling its empty log. Entries up to it are in the image already.
    image_ahead_through: Cell<u64>,
    /// The voters: `controller.quorum.voters`, or a dynamic quorum's (found at start, then as
    /// the committed voter changes name them); empty for the one-node default.
    voters: RefCell<Vec<QuorumVoter>>,
    /// Whether the voter set is dynamic (KIP-853): kept in the metadata log, not configured.
    pub dynamic: bool,
    /// This node's metadata directory id (its first log directory's meta.properties): with
    /// the node id, what names it as a voter of a dynamic quorum.
    pub directory_id: Option<uuid::Uuid>,
    /// TLS on every link, to and from this node, when the controller listener is SSL.
    tls: Option<crate::config::QuorumTls>,
    /// Whether the controller listener is open (it stays open when a voter leaves the voters).
    pub(super) listening: Cell<bool>,
    /// Set when a voter that hears from no leader is told by another voter that it is no
    /// longer one: the driver stops and the node observes.
    left_voters: Cell<bool>,
    /// On a voter that left because the others said so: its image still names it until it
    /// applies the removal, so it may join again only once it applied a voter change (or a
    /// snapshot) after it left.
    removal_unapplied: Cell<bool>,
    /// How long a voter of a dynamic quorum hears from no leader before it asks the other
    /// voters whether it is still one (and again as long after).
    voter_check_after: Duration,
}

/// Answers one forwarded request: (the asking node, the request) to the answer.
pub type ForwardHandler = Rc<dyn Fn(i32, Vec<u8>) -> futures::future::LocalBoxFuture<'static, Vec<u8>>>;

/// Requests forwarded to this node and not yet answered; past this, new ones are dropped and
/// their senders time out (they are retried by the clients behind them).
pub const FORWARDED_IN_FLIGHT_MAX: usize = 256;

impl Quorum {
    /// Opens the metadata log in `dir`, starts the driver and (with other voters) the
    /// transport. `applied_index`: the last index already in this node's image.
    pub fn start(
        dir: &std::path::Path,
        node_id: i32,
        cluster_id: Option<String>,
        config: &QuorumConfig,
        listen: Option<std::net::SocketAddr>,
        applied_index: u64,
        applier: Rc<dyn Applier>,
    ) -> Result<Rc<Quorum>> {
        let quorum = Quorum::new(node_id, QuorumStatus { applied_index, ..Default::default() }, applier, config);
        quorum.start_member(dir, cluster_id, config, listen)?;
        Ok(quorum)
    }

    /// Opens the log and starts the raft member, its transport and its driver.
    fn start_member(
        self: &Rc<Self>,
        dir: &std::path::Path,
        cluster_id: Option<String>,
        config: &QuorumConfig,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<()> {
        let node_id = self.node_id;
        let voter_list = self.voters.borrow().clone();
        let voters: Vec<u64> = if voter_list.is_empty() { vec![raft_id(node_id)] } else { voter_list.iter().map(|v| raft_id(v.node_id)).collect() };
        let store = LogStore::open(dir, &voters)?;
        let image_index = self.status.borrow().applied_index;
        // A snapshot newer than the image: the node stopped between writing the one and the
        // other. The driver installs it before anything else.
        let install = store.take_opened_snapshot().filter(|s| s.get_metadata().index > image_index);
        let last_index = raft::Storage::last_index(&store.storage()).context("reading the metadata log")?;
        // A controller formatted to join a dynamic quorum and added as a voter: its image is
        // ahead of a log it never had (it observed the log until then). Its hard state is empty,
        // so it never voted nor acknowledged an entry: raft fills its log from the leader's, and
        // the entries its image already has change raft's configuration only (see
        // `apply_entries`). It starts with the image's voters, itself among them, so replaying
        // the log's voter changes on that set ends at the same set. Any other image ahead of its
        // log is a lost log, refused below.
        //
        // So does a voter that left the voters and was added again: its log was emptied when it
        // left, keeping its term and vote (see `LogStore::clear`), which tells it from a log that
        // was lost.
        let hard_state = store.storage().rl().hard_state().clone();
        let formatted_to_join = || bootstrap::read(dir).ok().flatten().is_some_and(|f| f.initial_voters.is_empty());
        let joining = self.dynamic
            && image_index > 0
            && install.is_none()
            && last_index == 0
            && store.snapshot_index() == 0
            && hard_state.commit == 0
            && (hard_state.term > 0 || (hard_state == raft::prelude::HardState::default() && formatted_to_join()));
        let applied_index = if joining { 0 } else { image_index.max(store.snapshot_index()) };
        self.image_ahead_through.set(if joining { image_index } else { 0 });
        if applied_index > last_index {
            anyhow::bail!(
                "the metadata image was applied up to index {applied_index} but the metadata log in {} ends at {last_index}: \
                 was the quorum.log file removed? Restore it, or remove cluster-metadata.json's applied_index to rebuild from the quorum",
                dir.display()
            );
        }
        if self.dynamic && install.is_none() && image_index > 0 {
            // A dynamic quorum's configuration is the one of the applied index: the image's
            // voter set, which changes in the same entries as raft's (see `apply_entries`) and
            // is persisted with the image. The log's snapshot may be older.
            store.storage().wl().set_conf_state(ConfState::from((voters.clone(), vec![])));
        }
        // The commit index is persisted with the hard state, which may lag what this node
        // applied (raft-rs hands back later commits without a new hard state): whatever was
        // applied was committed.
        {
            let storage = store.storage();
            let mut core = storage.wl();
            let commit = core.hard_state().commit.max(applied_index);
            core.mut_hard_state().commit = commit;
        }
        let election_ticks_min = (config.fetch_timeout_ms / TICK.as_millis() as u64).max(2) as usize;
        let election_ticks_spread = (config.election_timeout_ms / TICK.as_millis() as u64).max(1) as usize;
        let raft_config = raft::Config {
            id: raft_id(node_id),
            election_tick: election_ticks_min,
            heartbeat_tick: (election_ticks_min / 4).max(1),
            min_election_tick: election_ticks_min,
            max_election_tick: election_ticks_min + election_ticks_spread,
            applied: applied_index,
            max_size_per_msg: RAFT_MESSAGE_BYTES_MAX,
            max_inflight_msgs: RAFT_INFLIGHT_MESSAGES_MAX,
            // A voter cut off from the others steps down rather than believe it still leads,
            // and must win a pre-vote before it disturbs a healthy leader on its return.
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let logger = slog::Logger::root(TracingDrain, slog::o!());
        let applier = self.applier.clone();
        let storage = QuorumStorage { log: store.storage(), applier: applier.clone() };
        let mut node = RawNode::new(&raft_config, storage, &logger).context("starting the metadata quorum")?;
        {
            let mut status = self.status.borrow_mut();
            status.snapshot_index = store.snapshot_index();
            status.applied_index = image_index.max(applied_index);
        }
        *self.log.borrow_mut() = Some(store.storage());
        self.observer.set(false);
        *self.cluster_id.borrow_mut() = cluster_id.clone();
        if voters.len() == 1 {
            // A quorum of one: no one else to wait for.
            node.campaign().context("electing the only controller")?;
        }
        // A named quorum listens even when this node is its only voter: broker-only nodes
        // fetch the metadata log there.
        if let Some(listen) = listen {
            transport::start(self, node_id, cluster_id.clone(), &voter_list, listen)?;
        } else if voters.len() > 1 {
            anyhow::bail!("a quorum of several needs a controller listener");
        }
        let q = self.clone();
        let snapshot_bytes = config.snapshot_bytes;
        // Should this voter be removed from the voters, it observes, and joins again this way.
        let rejoin = listen.map(|listen| Promotion { dir: dir.to_path_buf(), cluster_id, config: config.clone(), listen });
        crate::runtime::spawn(async move {
            let outcome = async {
                if let Some(s) = install {
                    let index = s.get_metadata().index;
                    tracing::info!(index, "the metadata image is older than the log's snapshot: installing the snapshot");
                    applier.install(index, s.data.to_vec()).await.context("installing the metadata log's snapshot")?;
                }
                let store = q.drive(node, store, applier.clone(), snapshot_bytes).await?;
                drop(store);
                let rejoin = rejoin.context("a voter without a controller listener left the voters")?;
                q.leave_voters(rejoin, applier).await
            };
            if let Err(e) = outcome.await {
                tracing::error!(error = %format!("{e:#}"), "the metadata quorum stopped on this node: it no longer votes or applies metadata; fix the cause and restart it");
                q.failed.set(true);
                q.fail_waiters(ProposeError::Failed);
            }
        })
        .detach();
        Ok(())
    }

    /// A voter removed from the voters: it stops its raft member, empties its log (keeping its
    /// term and vote) and observes the log from its applied index on, as Kafka's removed voter
    /// turns into an observer; added again, it joins as a new voter does (`become_voter`).
    async fn leave_voters(self: &Rc<Self>, rejoin: Promotion, applier: Rc<dyn Applier>) -> Result<()> {
        tracing::info!(
            voters = ?self.voters.borrow().iter().map(|v| v.node_id).collect::<Vec<_>>(),
            "this controller is no longer a voter of the metadata quorum: it stops voting and observes the metadata log until it is added again"
        );
        self.fail_waiters(ProposeError::LeaderLost);
        self.inbox.borrow_mut().clear();
        *self.log.borrow_mut() = None;
        self.observer.set(true);
        self.left_voters.set(false);
        self.removal_unapplied.set(self.names_this_node(&self.voters()));
        self.peers.stop_all();
        LogStore::clear(&rejoin.dir).await.context("emptying the metadata log of a voter that left the voters")?;
        {
            let mut status = self.status.borrow_mut();
            let applied_index = status.applied_index;
            *status = QuorumStatus { applied_index, ..Default::default() };
        }
        self.status_changed.notify_all();
        let cluster_id = rejoin.cluster_id.clone();
        *self.promotion.borrow_mut() = Some(rejoin);
        let voters = self.voters();
        transport::start_observer(self, self.node_id, cluster_id, &voters)?;
        crate::runtime::spawn(self.clone().observe(self.observer_wait(), applier)).detach();
        Ok(())
    }

    /// A voter that hears from no leader asks the other voters who they are: the leader stops
    /// writing to a voter it removed, possibly before that voter learned the removal
    /// committed, and such a voter would otherwise campaign in vain and never apply metadata
    /// again. An answer from a voter that knows a leader and whose applied voters do not name
    /// this node makes it leave (and observe, which brings it the removal).
    fn check_still_voter(self: &Rc<Self>) {
        let voters = self.voters();
        let (node_id, cluster_id, tls) = (self.node_id, self.cluster_id.borrow().clone(), self.tls.clone());
        let quorum = Rc::downgrade(self);
        crate::runtime::spawn(async move {
            let Some(found) = transport::ask_voters(&voters, node_id, cluster_id, tls.as_ref()).await else { return };
            let Some(q) = quorum.upgrade() else { return };
            let theirs = found.voters();
            if !q.observer.get() && !q.names_this_node(&theirs) {
                tracing::info!(
                    answered_by = found.node_id,
                    leader = ?found.leader,
                    voters = ?theirs.iter().map(|v| v.node_id).collect::<Vec<_>>(),
                    "this voter hears from no leader, and the quorum no longer names it as a voter: it was removed"
                );
                q.left_voters.set(true);
                q.wake.notify_all();
            }
        })
        .detach();
    }

    /// How long a voter may hold an observer's fetch that has nothing new: half the fetch
    /// timeout, so that news arrives at once and a dead voter is noticed within the timeout.
    fn observer_wait(&self) -> Duration {
        Duration::from_millis((self.fetch_timeout_ms / 2).max(1))
    }

    /// A quorum that observes (no raft log) until `start_member`, before anything runs.
    fn new(node_id: i32, status: QuorumStatus, applier: Rc<dyn Applier>, config: &QuorumConfig) -> Rc<Quorum> {
        Rc::new(Quorum {
            node_id,
            inbox: RefCell::new(VecDeque::new()),
            proposals: RefCell::new(VecDeque::new()),
            waiters: RefCell::new(HashMap::new()),
            next_proposal: Cell::new(1),
            wake: Notify::default(),
            status: RefCell::new(status),
            status_changed: Notify::default(),
            dropped_messages: Cell::new(0),
            failed: Cell::new(false),
            peers: transport::Peers::default(),
            forward_handler: RefCell::new(None),
            forwarded_in_flight: Cell::new(0),
            forward_waiters: RefCell::new(HashMap::new()),
            next_forward: Cell::new(1),
            observer: Cell::new(true),
            log: RefCell::new(None),
            applier,
            fetches_in_flight: Cell::new(0),
            observed: RefCell::new(std::collections::BTreeMap::new()),
            voter_times: RefCell::new((0, HashMap::new())),
            controller_observers: RefCell::new(HashMap::new()),
            promotion: RefCell::new(None),
            cluster_id: RefCell::new(None),
            image_ahead_through: Cell::new(0),
            fetch_timeout_ms: config.fetch_timeout_ms,
            voters: RefCell::new(config.voters.clone()),
            dynamic: config.dynamic(),
            directory_id: config.directory_id,
            tls: config.tls.clone(),
            listening: Cell::new(false),
            left_voters: Cell::new(false),
            removal_unapplied: Cell::new(false),
            voter_check_after: Duration::from_millis(2 * (config.fetch_timeout_ms + config.election_timeout_ms)),
        })
    }

    /// Starts a broker-only node's view of the metadata log: no raft member and no log of its
    /// own; it fetches committed entries from the voters of `config` ([`observer`]) from
    /// `applied_index + 1` on, and applies them through `applier`. `promote`: on a controller
    /// of a dynamic quorum that is not a voter yet, its metadata directory and controller
    /// listener, with which it becomes one once a committed voter change names it.
    pub fn start_observer(
        node_id: i32,
        cluster_id: Option<String>,
        config: &QuorumConfig,
        applied_index: u64,
        applier: Rc<dyn Applier>,
        promote: Option<(std::path::PathBuf, std::net::SocketAddr)>,
    ) -> Result<Rc<Quorum>> {
        anyhow::ensure!(!config.voters.is_empty(), "an observer needs controller.quorum.voters");
        let quorum = Quorum::new(node_id, QuorumStatus { applied_index, ..Default::default() }, applier.clone(), config);
        *quorum.cluster_id.borrow_mut() = cluster_id.clone();
        let clear = promote.as_ref().map(|(dir, _)| dir.clone());
        if let Some((dir, listen)) = promote {
            *quorum.promotion.borrow_mut() = Some(Promotion { dir, cluster_id: cluster_id.clone(), config: config.clone(), listen });
        }
        transport::start_observer(&quorum, node_id, cluster_id, &config.voters)?;
        let (q, wait) = (quorum.clone(), quorum.observer_wait());
        crate::runtime::spawn(async move {
            // A controller that was a voter before it was removed (and stopped) still has its
            // log: emptied as at a removal, before it could be added again.
            if let Some(dir) = clear {
                if let Err(e) = LogStore::clear(&dir).await {
                    tracing::error!(error = %format!("{e:#}"), "cannot empty the metadata log of a controller that is no longer a voter: fix the cause and restart it");
                    q.failed.set(true);
                    return;
                }
            }
            q.observe(wait, applier).await
        })
        .detach();
        Ok(quorum)
    }

    /// How this node's quorum links use TLS (an SSL controller listener), or None.
    pub fn tls(&self) -> Option<&crate::config::QuorumTls> {
        self.tls.as_ref()
    }

    /// Whether this node observes the log rather than votes.
    pub fn observer(&self) -> bool {
        self.observer.get()
    }

    /// The voters as this node last learned them (node id, controller listener).
    pub fn voters(&self) -> Vec<QuorumVoter> {
        self.voters.borrow().clone()
    }

    /// Takes the voter set an applied image names (dynamic quorums): links follow it, and a
    /// controller that observes becomes a voter when it is named.
    fn follow_voters(self: &Rc<Self>, voters: Vec<QuorumVoter>) {
        if !self.dynamic || voters.is_empty() {
            return;
        }
        if *self.voters.borrow() == voters {
            return;
        }
        tracing::info!(voters = ?voters.iter().map(|v| v.node_id).collect::<Vec<_>>(), "the metadata quorum's voter set changed");
        let old = self.voters.replace(voters.clone());
        // A voter whose controller listener moved (UpdateRaftVoter) is linked to again there.
        let moved: Vec<i32> = voters.iter().filter(|v| old.iter().any(|o| o.node_id == v.node_id && o.address != v.address)).map(|v| v.node_id).collect();
        transport::follow_voters(self, &voters, &moved);
    }

    /// On an observing controller: whether the applied voter set names it.
    fn promoted(&self) -> bool {
        self.promotion.borrow().is_some() && !self.removal_unapplied.get() && self.names_this_node(&self.voters.borrow())
    }

    /// Whether `voters` has this node as a voter: its node id, with its metadata directory
    /// where the voter's is recorded (a node back with another directory is not that voter).
    fn names_this_node(&self, voters: &[QuorumVoter]) -> bool {
        voters.iter().any(|v| match self.directory_id {
            Some(own) => v.is(self.node_id, own),
            None => v.node_id == self.node_id,
        })
    }

    /// An observing controller the quorum added as a voter: it drops its observer links and
    /// starts as a raft member with no log of its own, which the leader fills from its log or
    /// a snapshot (see `start_member`). Its image is already caught up: AddRaftVoter waits for
    /// that before the change, as Kafka does, so the new voter does not hold back commits.
    fn become_voter(self: &Rc<Self>) -> Result<()> {
        let Some(p) = self.promotion.borrow_mut().take() else { return Ok(()) };
        tracing::info!(
            voters = ?self.voters.borrow().iter().map(|v| v.node_id).collect::<Vec<_>>(),
            "this controller was added to the metadata quorum's voters: it stops observing and joins raft"
        );
        self.peers.stop_all();
        self.start_member(&p.dir, p.cluster_id, &p.config, Some(p.listen))
    }

    pub fn status(&self) -> QuorumStatus {
        QuorumStatus { dropped_messages: self.dropped_messages.get(), ..self.status.borrow().clone() }
    }

    /// Takes a message from another voter.
    pub fn receive(&self, message: Message) {
        if self.observer.get() {
            // Left the voters (or not one yet): raft runs no member here to take it.
            return;
        }
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() >= QUORUM_INBOX_MESSAGES_MAX {
            self.dropped_messages.set(self.dropped_messages.get() + 1);
            return;
        }
        inbox.push_back(message);
        drop(inbox);
        self.wake.notify_all();
    }

    pub fn set_forward_handler(&self, handler: ForwardHandler) {
        *self.forward_handler.borrow_mut() = Some(handler);
    }

    /// Sends `request` to node `to` (the active controller) and waits up to `timeout` for its
    /// answer, or until this node no longer knows `to` as the leader (it died or lost an
    /// election: its answer may never come). The caller then tries the new leader at once: a
    /// broker's heartbeat held for `timeout` by a dead controller would get it fenced by the
    /// new one.
    pub async fn forward(&self, to: i32, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ProposeError> {
        self.request(to, transport::FRAME_FORWARD, request, timeout, true).await
    }

    /// Sends a request frame of `kind` to node `to` and waits up to `timeout` for its answer;
    /// with `to_leader`, only while `to` is the leader this node knows (see [`Quorum::forward`]).
    async fn request(&self, to: i32, kind: u8, request: Vec<u8>, timeout: Duration, to_leader: bool) -> Result<Vec<u8>, ProposeError> {
        let id = self.next_forward.get();
        self.next_forward.set(id + 1);
        let (tx, rx) = futures::channel::oneshot::channel();
        self.forward_waiters.borrow_mut().insert(id, tx);
        let mut frame = id.to_be_bytes().to_vec();
        frame.extend_from_slice(&request);
        self.peers.send_frame(raft_id(to), kind, frame);
        let leader_moved = async {
            loop {
                let changed = self.status_changed.notified();
                if to_leader && self.status.borrow().leader != Some(to) {
                    return;
                }
                changed.await;
            }
        };
        let answer = futures::select! {
            answer = rx.fuse() => answer.map_err(|_| ProposeError::LeaderLost),
            _ = crate::runtime::sleep(timeout).fuse() => Err(ProposeError::LeaderLost),
            _ = leader_moved.fuse() => Err(ProposeError::LeaderLost),
        };
        self.forward_waiters.borrow_mut().remove(&id);
        answer
    }

    fn on_forward(self: &Rc<Self>, from: i32, id: u64, request: Vec<u8>) {
        let Some(handler) = self.forward_handler.borrow().clone() else { return };
        if self.forwarded_in_flight.get() >= FORWARDED_IN_FLIGHT_MAX {
            tracing::warn!(from, limit = FORWARDED_IN_FLIGHT_MAX, "too many forwarded metadata requests in flight: dropping one (its sender will retry)");
            return;
        }
        self.forwarded_in_flight.set(self.forwarded_in_flight.get() + 1);
        let quorum = self.clone();
        crate::runtime::spawn(async move {
            let answer = handler(from, request).await;
            let mut frame = id.to_be_bytes().to_vec();
            frame.extend_from_slice(&answer);
            quorum.peers.send_frame(raft_id(from), transport::FRAME_FORWARD_REPLY, frame);
            quorum.forwarded_in_flight.set(quorum.forwarded_in_flight.get() - 1);
        })
        .detach();
    }

    /// The answer to a request this node sent (a forwarded call, or an observer's fetch).
    fn on_forward_reply(&self, id: u64, answer: Vec<u8>) {
        if let Some(tx) = self.forward_waiters.borrow_mut().remove(&id) {
            let _ = tx.send(answer);
        }
    }

    /// Appends `records` to the metadata log; resolves once they are committed and applied on
    /// this node. Only the ready leader may propose.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<(), ProposeError> {
        self.propose_change(records, None).await
    }

    /// Proposes a change of the voter set with `records` (the QuorumVoters record naming the
    /// new set) in the same entry; resolves once it is committed and applied on this node.
    /// One at a time: while one is pending, VoterChangePending.
    pub async fn propose_voter_change(&self, change: VoterChange, records: Vec<MetadataRecord>) -> Result<(), ProposeError> {
        if self.status.borrow().voter_change_pending {
            return Err(ProposeError::VoterChangePending);
        }
        self.propose_change(records, Some(change)).await
    }

    async fn propose_change(&self, records: Vec<MetadataRecord>, change: Option<VoterChange>) -> Result<(), ProposeError> {
        if self.failed.get() {
            return Err(ProposeError::Failed);
        }
        if !self.status.borrow().ready_leader {
            return Err(ProposeError::NotLeader);
        }
        let seq = self.next_proposal.get();
        self.next_proposal.set(seq + 1);
        let data = serde_json::to_vec(&Batch { proposal: (self.node_id, seq), records }).expect("records serialize");
        let (tx, rx) = futures::channel::oneshot::channel();
        self.waiters.borrow_mut().insert(seq, tx);
        self.proposals.borrow_mut().push_back((seq, data, change));
        self.wake.notify_all();
        rx.await.unwrap_or(Err(ProposeError::LeaderLost))
    }

    /// Waits until this node is the ready leader or knows another leader, up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> QuorumStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.status_changed.notified();
            let status = self.status();
            if status.ready_leader || (status.leader.is_some() && status.leader != Some(self.node_id)) {
                return status;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return status;
            }
            futures::select! {
                _ = changed.fuse() => {}
                _ = crate::runtime::sleep(left).fuse() => {}
            }
        }
    }

    fn fail_waiters(&self, error: ProposeError) {
        for (_, tx) in self.waiters.borrow_mut().drain() {
            let _ = tx.send(Err(error));
        }
        self.proposals.borrow_mut().clear();
    }

    /// Runs the raft member until an error, or until this node is no longer a voter (a
    /// dynamic quorum's removal): then it hands its log back.
    async fn drive(self: &Rc<Self>, mut node: RawNode<QuorumStorage>, store: LogStore, applier: Rc<dyn Applier>, snapshot_bytes: u64) -> Result<LogStore> {
        let mut next_tick = Instant::now() + TICK;
        let mut applied_term_current = false;
        let mut leader_heard = Instant::now();
        let mut next_voter_check = Instant::now();
        loop {
            let woken = self.wake.notified();
            let now = Instant::now();
            if now >= next_tick {
                node.tick();
                next_tick = now + TICK;
            }
            let messages: Vec<Message> = self.inbox.borrow_mut().drain(..).collect();
            for m in messages {
                let answered = matches!(m.get_msg_type(), raft::prelude::MessageType::MsgAppendResponse | raft::prelude::MessageType::MsgHeartbeatResponse);
                let from = m.from;
                // A stale or misdirected message is dropped, as raft expects of a network.
                if let Err(e) = node.step(m) {
                    tracing::debug!(error = %e, "metadata quorum message dropped");
                } else if answered && node.raft.state == StateRole::Leader {
                    self.note_voter_answer(&node, from);
                }
            }
            let proposals: Vec<Proposal> = self.proposals.borrow_mut().drain(..).collect();
            for (seq, data, change) in proposals {
                // Only the leader proposes: it worked the change out from an image with every
                // committed record. (raft-rs would forward a follower's proposal to the leader,
                // which must not take a change made from a stale image.)
                let outcome = match change {
                    _ if node.raft.state != StateRole::Leader => Err((ProposeError::NotLeader, String::from("no longer the leader"))),
                    None => node.propose(vec![], data).map_err(|e| (ProposeError::NotLeader, e.to_string())),
                    // raft-rs would turn a second change into an empty entry, never resolved.
                    Some(_) if node.raft.has_pending_conf() => Err((ProposeError::VoterChangePending, String::from("a voter change is pending"))),
                    Some(change) => node.propose_conf_change(data, change.conf_change()).map_err(|e| (ProposeError::NotLeader, e.to_string())),
                };
                if let Err((error, e)) = outcome {
                    tracing::warn!(error = %e, "metadata change not proposed");
                    if let Some(tx) = self.waiters.borrow_mut().remove(&seq) {
                        let _ = tx.send(Err(error));
                    }
                }
            }
            if node.has_ready() {
                self.handle_ready(&mut node, &store, &*applier, &mut applied_term_current).await?;
            }
            if store.bytes_since_snapshot() >= snapshot_bytes {
                compact(&node, &store, &*applier).await;
            }
            self.publish_status(&node, &store, applied_term_current);
            if self.dynamic && node.raft.state != StateRole::Leader {
                // A leader removed hands leadership over first (see `apply_entries`).
                let voters = applier.voters();
                if self.left_voters.get() || (!voters.is_empty() && !self.names_this_node(&voters)) {
                    return Ok(store);
                }
                if node.raft.leader_id != 0 {
                    leader_heard = Instant::now();
                } else if leader_heard.elapsed() >= self.voter_check_after && Instant::now() >= next_voter_check {
                    next_voter_check = Instant::now() + self.voter_check_after;
                    self.check_still_voter();
                }
            }
            futures::select! {
                _ = woken.fuse() => {}
                _ = crate::runtime::sleep(next_tick.saturating_duration_since(Instant::now())).fuse() => {}
            }
        }
    }

    async fn handle_ready(
        self: &Rc<Self>,
        node: &mut RawNode<QuorumStorage>,
        store: &LogStore,
        applier: &dyn Applier,
        applied_term_current: &mut bool,
    ) -> Result<()> {
        let mut ready = node.ready();
        if let Some(ss) = ready.ss() {
            if ss.raft_state != StateRole::Leader {
                // Proposals of a leader that stepped down may or may not commit; their callers
                // learn it now, and a retry goes to the new leader.
                self.fail_waiters(ProposeError::LeaderLost);
            }
            *applied_term_current = false;
            tracing::info!(leader = ?(ss.leader_id != 0).then(|| node_id(ss.leader_id)), role = ?ss.raft_state, term = node.raft.term, "metadata quorum role changed");
        }
        // The leader may send before it persists (Raft's thesis, 10.2.1); followers may not.
        self.peers.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // The leader's log starts after this node's end: its image replaces ours. The image
            // is written first, so that a crash in between leaves an image at or past the log.
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().index;
            tracing::info!(index, bytes = snapshot.data.len(), "installing a metadata snapshot from the active controller");
            applier.install(index, snapshot.data.to_vec()).await.context("installing a metadata snapshot")?;
            store.install(snapshot).await.context("writing a metadata snapshot to the log")?;
            self.status.borrow_mut().applied_index = index;
            // The image is the snapshot's now: every entry after it is new to it.
            self.image_ahead_through.set(0);
            self.follow_voters(applier.voters());
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(node, store, committed, applier, applied_term_current).await?;
        let bytes = store.stage(ready.entries(), ready.hs())?;
        store.sync(bytes).await?;
        self.peers.send(ready.take_persisted_messages());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.set_commit(commit);
        }
        self.peers.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(node, store, committed, applier, applied_term_current).await?;
        node.advance_apply();
        Ok(())
    }

    async fn apply_entries(
        self: &Rc<Self>,
        node: &mut RawNode<QuorumStorage>,
        store: &LogStore,
        entries: Vec<Entry>,
        applier: &dyn Applier,
        applied_term_current: &mut bool,
    ) -> Result<()> {
        for entry in entries {
            if entry.term == node.raft.term {
                *applied_term_current = true;
            }
            let voter_change = matches!(entry.get_entry_type(), EntryType::EntryConfChangeV2 | EntryType::EntryConfChange);
            if voter_change {
                // raft's configuration and the image's QuorumVoters record change at the same
                // index: the image (persisted by the applier) is what a restart starts from.
                // Only V2 changes are proposed (see `VoterChange`).
                let cc = <ConfChangeV2 as protobuf::Message>::parse_from_bytes(&entry.data)
                    .with_context(|| format!("metadata log entry {} holds a voter change that does not decode", entry.index))?;
                let conf_state = node.apply_conf_change(&cc).with_context(|| format!("applying the voter change of metadata log entry {}", entry.index))?;
                tracing::info!(index = entry.index, voters = ?conf_state.voters.iter().map(|id| node_id(*id)).collect::<Vec<_>>(), "metadata quorum voter change applied");
                store.storage().wl().set_conf_state(conf_state.clone());
                if node.raft.state == StateRole::Leader && !conf_state.voters.contains(&raft_id(self.node_id)) {
                    // A leader removed from the voters hands over, as Kafka's resigns: to the
                    // voter furthest along.
                    let next = node.raft.prs().iter().filter(|(id, _)| conf_state.voters.contains(id)).max_by_key(|(_, pr)| pr.matched).map(|(id, _)| *id);
                    if let Some(next) = next {
                        tracing::info!(to = node_id(next), "this leader was removed from the voters: handing leadership over");
                        node.transfer_leader(next);
                    }
                }
            }
            // A voter that joined after observing has these records in its image already.
            let in_image = entry.index <= self.image_ahead_through.get();
            let mut proposed_here = None;
            // A voter's new address (UpdateRaftVoter) changes no raft configuration, only the
            // record: links follow it all the same.
            let mut voters_named = false;
            if let Some(batch) = entry_batch(&entry)?.filter(|_| !in_image) {
                voters_named = batch.records.iter().any(|r| matches!(r, MetadataRecord::QuorumVoters { .. }));
                applier.apply(entry.index, batch.records).await?;
                proposed_here = (batch.proposal.0 == self.node_id).then_some(batch.proposal.1);
            }
            let mut status = self.status.borrow_mut();
            status.applied_index = status.applied_index.max(entry.index);
            drop(status);
            if voter_change {
                // Published before the change's proposer hears it applied, so that what it
                // answers next (DescribeQuorum, another change) sees the new set.
                self.publish_status(node, store, *applied_term_current);
            }
            if voter_change || voters_named {
                self.follow_voters(applier.voters());
            }
            if let Some(tx) = proposed_here.and_then(|seq| self.waiters.borrow_mut().remove(&seq)) {
                let _ = tx.send(Ok(()));
            }
        }
        Ok(())
    }

    /// Voter `from` answered the leader: it fetched now, and is caught up if it has the whole
    /// log (Kafka's LastFetchTimestamp and LastCaughtUpTimestamp).
    fn note_voter_answer(&self, node: &RawNode<QuorumStorage>, from: u64) {
        let Some(progress) = node.raft.prs().get(from) else { return };
        let now = epoch_ms(std::time::SystemTime::now());
        let caught_up = progress.matched >= node.raft.raft_log.last_index();
        let mut times = self.voter_times.borrow_mut();
        if times.0 != node.raft.term {
            *times = (node.raft.term, HashMap::new());
        }
        let entry = times.1.entry(node_id(from)).or_insert((-1, -1));
        entry.0 = now;
        if caught_up {
            entry.1 = now;
        }
    }

    /// At the leader, for DescribeQuorum: (node id, last fetch, last caught up) in ms since the
    /// epoch, -1 where unknown; the leader itself has both now, as in Kafka.
    pub fn voter_times(&self) -> Vec<(i32, i64, i64)> {
        let status = self.status();
        let now = epoch_ms(std::time::SystemTime::now());
        let times = self.voter_times.borrow();
        status
            .voter_progress
            .iter()
            .map(|(id, _)| match times.1.get(id) {
                _ if *id == self.node_id => (*id, now, now),
                Some((fetched, caught_up)) if times.0 == status.term => (*id, *fetched, *caught_up),
                _ => (*id, -1, -1),
            })
            .collect()
    }

    fn publish_status(&self, node: &RawNode<QuorumStorage>, store: &LogStore, applied_term_current: bool) {
        let raft = &node.raft;
        let leader = (raft.leader_id != 0).then(|| node_id(raft.leader_id));
        let is_leader = raft.state == StateRole::Leader;
        let voter_progress = if is_leader { raft.prs().iter().map(|(id, pr)| (node_id(*id), pr.matched)).collect() } else { Vec::new() };
        let next = QuorumStatus {
            leader,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.status.borrow().applied_index,
            ready_leader: is_leader && applied_term_current,
            voter_progress,
            // Filled in by `status()`; kept out of the stored status so a drop is no change.
            dropped_messages: 0,
            snapshot_index: store.snapshot_index(),
            // raft-rs counts a change pending until the driver advances its applied index, at
            // the end of a turn; this node's applied index moves with each entry.
            voter_change_pending: is_leader && raft.pending_conf_index > self.status.borrow().applied_index,
        };
        if *self.status.borrow() != next {
            *self.status.borrow_mut() = next;
            self.status_changed.notify_all();
        }
    }
}

/// A snapshot of the image `data`, applied up to `index` of `log`.
fn image_snapshot(log: &raft::storage::MemStorage, index: u64, data: Vec<u8>) -> raft::Result<Snapshot> {
    use raft::Storage as _;
    let mut snapshot = Snapshot { data: data.into(), ..Default::default() };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = log.term(index)?;
    meta.set_conf_state(log.initial_state()?.conf_state);
    Ok(snapshot)
}

/// Compacts the metadata log into a snapshot of the applied image. A failure leaves the old
/// log whole; it is tried again after as many more bytes.
async fn compact(node: &RawNode<QuorumStorage>, store: &LogStore, applier: &dyn Applier) {
    let outcome = async {
        let (index, data) = applier.snapshot()?;
        if index <= store.snapshot_index() {
            return Ok(None);
        }
        let snapshot = image_snapshot(&node.store().log, index, data)?;
        let bytes = snapshot.data.len();
        store.compact(snapshot).await?;
        anyhow::Ok(Some((index, bytes)))
    };
    match outcome.await {
        Ok(Some((index, bytes))) => {
            tracing::info!(index, image_bytes = bytes, "metadata log compacted: a snapshot of the image replaces the entries up to its index")
        }
        // Nothing applied since the last snapshot (the bytes were hard states and empty
        // entries): wait for as many bytes again rather than encode the image on every turn.
        Ok(None) => store.postpone_compaction(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "compacting the metadata log failed; the log is kept whole and compaction is tried again later");
            store.postpone_compaction();
        }
    }
}

/// raft-rs logs through slog; this passes its lines to tracing.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let message = record.msg().to_string();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{message}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}"),
            slog::Level::Info => tracing::debug!(target: "raft", "{message}"),
            _ => tracing::trace!(target: "raft", "{message}"),
        }
        Ok(())
    }
}

/// Per voter: (last fetch, last caught up) in ms since the epoch.
type VoterTimes = HashMap<i32, (i64, i64)>;

/// Milliseconds since the Unix epoch, -1 for a clock before it.
pub fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(-1, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters_after(start: &[i32], changes: &[VoterChange]) -> Vec<i32> {
        let me = start[0];
        let storage = raft::storage::MemStorage::new_with_conf_state(ConfState::from((start.iter().map(|id| raft_id(*id)).collect::<Vec<_>>(), vec![])));
        let config = raft::Config { id: raft_id(me), ..Default::default() };
        let mut node = RawNode::new(&config, storage, &slog::Logger::root(slog::Discard, slog::o!())).unwrap();
        let mut voters = Vec::new();
        for change in changes {
            voters = node.apply_conf_change(&change.conf_change()).unwrap().voters;
        }
        voters.sort();
        voters.into_iter().map(node_id).collect()
    }

    #[test]
    fn a_voter_change_is_one_simple_raft_change() {
        assert_eq!(voters_after(&[1, 2], &[VoterChange::Add(3)]), vec![1, 2, 3]);
        assert_eq!(voters_after(&[1, 2, 3], &[VoterChange::Remove(2)]), vec![1, 3]);
        let cc = VoterChange::Add(0).conf_change();
        assert_eq!((cc.changes.len(), cc.changes[0].node_id, cc.changes[0].get_change_type()), (1, 1, ConfChangeType::AddNode));
    }

    #[test]
    fn replaying_the_logs_voter_changes_on_the_set_they_led_to_ends_at_that_set() {
        // A controller that joined after observing starts with the image's voters (itself among
        // them) and an empty log; raft then gives it every entry, voter changes included.
        // Started from {1, 2}: 2 joins, 3 joins, 1 leaves, 4 joins -> {2, 3, 4}.
        let history = [VoterChange::Add(2), VoterChange::Add(3), VoterChange::Remove(1), VoterChange::Add(4)];
        assert_eq!(voters_after(&[1], &history), vec![2, 3, 4]);
        assert_eq!(voters_after(&[4, 2, 3], &history), vec![2, 3, 4]);
    }

    #[test]
    fn a_voter_changes_records_ride_in_its_context() {
        let batch = Batch { proposal: (1, 7), records: vec![MetadataRecord::QuorumVoters { voters: vec![(1, "h:1".into())], directory_ids: Vec::new() }] };
        let bytes = serde_json::to_vec(&batch).unwrap();
        let mut normal = Entry { index: 3, data: bytes.clone().into(), ..Default::default() };
        assert_eq!(entry_batch(&normal).unwrap().unwrap().proposal, (1, 7));
        normal.data = Vec::<u8>::new().into();
        assert!(entry_batch(&normal).unwrap().is_none());
        let mut change = Entry { index: 4, context: bytes.into(), ..Default::default() };
        change.set_entry_type(EntryType::EntryConfChangeV2);
        change.data = protobuf::Message::write_to_bytes(&VoterChange::Add(2).conf_change()).unwrap().into();
        assert_eq!(entry_batch(&change).unwrap().unwrap().records.len(), 1);
        change.context = b"{".to_vec().into();
        assert!(entry_batch(&change).is_err());
    }
}
