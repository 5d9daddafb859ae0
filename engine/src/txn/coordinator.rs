//! The transaction coordinator of one shard: the transactional ids whose `__transaction_state`
//! partition this shard owns, their state machine, and the ticker that aborts transactions
//! past their timeout and finishes decided ones whose markers are not all written yet.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TransactionalId, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::batch::{build_producer_batch, BatchProducer};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::strings::topic_name;

use super::state_log::{self, TxnMetadata, TxnState, TRANSACTION_STATE_TOPIC, TXN_PARTITIONS_MAX};
use super::TxnDescription;
use crate::controller::{AllocateProducerId, CONTROLLER_SHARD};
use crate::inter_broker::InterBrokerClient;
use crate::metadata::records::NO_LEADER;
use crate::metadata::ClusterMetadata;
use crate::runtime;
use crate::shard::messages::TxnMarker;
use crate::shard::Shard;
use crate::storage::log::{now_ms, AppendOrigin};

pub use crate::config::TxnConfig;

/// Epochs at or above this get a fresh producer id instead of a bump (Kafka does the same, so
/// that the epoch never overflows). Two below i16::MAX: InitProducerId may bump twice, once to
/// fence the producer of an open transaction and once for the new one.
const EPOCH_MAX: i16 = i16::MAX - 2;
/// After a failed marker write, how long before the ticker tries the transaction again.
const MARKER_RETRY_MS: u64 = 1_000;

pub struct TxnCoordinator {
    pub config: TxnConfig,
    txns: RefCell<HashMap<String, TxnMetadata>>,
    /// Transactional ids with a request in progress: a second one gets CONCURRENT_TRANSACTIONS,
    /// which clients retry, so that state changes of one id never interleave.
    busy: RefCell<HashSet<String>>,
    /// The `__transaction_state` partitions whose transactions this shard coordinates now.
    pub loaded: crate::coordinator::LoadedPartitions,
    ticker_started: Cell<bool>,
    /// This shard's connections to the brokers that lead partitions of its transactions.
    inter_broker: InterBrokerClient,
}

struct Busy<'a> {
    coordinator: &'a TxnCoordinator,
    id: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.coordinator.busy.borrow_mut().remove(&self.id);
    }
}

fn check_producer(m: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
    if m.producer_id != producer_id {
        Err(ec::INVALID_PRODUCER_ID_MAPPING)
    } else if m.producer_epoch != producer_epoch {
        Err(ec::PRODUCER_FENCED)
    } else {
        Ok(())
    }
}

/// Whether EndTxn from `producer_id` at `producer_epoch` may act on `m` (Kafka's
/// `endTransaction` checks). Once the last transaction was ended by a transactions-v2 client,
/// the stored epoch is one past the one that client used, so the same epoch no longer names
/// the producer in a finished state: there only a retry (one epoch behind, or the id before a
/// rotation at its exhausted epoch) is valid, and anything else is fenced.
fn check_end_txn_producer(m: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), i16> {
    if m.client_transaction_version < crate::metadata::features::TRANSACTION_VERSION_EPOCH_BUMP {
        return check_producer(m, producer_id, producer_epoch);
    }
    let retry_after_bump = producer_id == m.producer_id && i32::from(m.producer_epoch) == i32::from(producer_epoch) + 1;
    let retry_after_rotation = producer_id == m.previous_producer_id && producer_epoch >= EPOCH_MAX && m.producer_epoch == 0;
    if producer_id != m.producer_id && !retry_after_rotation {
        return Err(ec::INVALID_PRODUCER_ID_MAPPING);
    }
    let valid = match m.state {
        TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => producer_epoch == m.producer_epoch,
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_after_bump,
        TxnState::CompleteCommit | TxnState::CompleteAbort => retry_after_bump || retry_after_rotation,
    };
    if valid {
        Ok(())
    } else {
        Err(ec::PRODUCER_FENCED)
    }
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashSet::new()),
            loaded: Default::default(),
            ticker_started: Cell::new(false),
            inter_broker: InterBrokerClient::new(),
        }
    }

    fn try_busy(&self, id: &str) -> Option<Busy<'_>> {
        self.busy.borrow_mut().insert(id.to_string()).then(|| Busy { coordinator: self, id: id.to_string() })
    }

    /// Loads the `__transaction_state` partitions this shard coordinates, then starts the
    /// ticker, which at once finishes transactions that were decided but not completed before
    /// a crash (or before the partition's previous leader died).
    pub fn load(self: &Rc<Self>, shard: &Rc<Shard>) {
        self.follow_leadership(shard);
        if !self.ticker_started.replace(true) {
            let (coordinator, shard) = (self.clone(), shard.clone());
            runtime::spawn(async move { ticker(coordinator, shard).await }).detach();
        }
    }

    /// Keeps the transactional ids in step with the leadership of their `__transaction_state`
    /// partitions: forgets those of a partition this broker stopped leading, and replays a
    /// partition it started leading (the ticker then completes what the old leader decided).
    /// Called after every metadata change, with no await.
    pub fn follow_leadership(&self, shard: &Rc<Shard>) {
        let changes = self.loaded.changes(shard, super::COORDINATOR);
        let partition_count = shard.metadata.borrow().topics.get(TRANSACTION_STATE_TOPIC).map_or(0, |t| t.partitions.len());
        let forget: HashSet<i32> = changes.unload.iter().copied().chain(changes.load.iter().map(|p| p.partition)).collect();
        if !forget.is_empty() {
            self.txns.borrow_mut().retain(|id, _| partition_count > 0 && !forget.contains(&crate::coordinator::partition_for(id, partition_count)));
        }
        if !changes.unload.is_empty() {
            tracing::info!(shard = shard.id, partitions = ?changes.unload, "no longer coordinating the transactions of these __transaction_state partitions");
        }
        for p in changes.load {
            crate::internal_log::replay(&p, |_, bytes| {
                for r in shardlog_protocol::batch::records(bytes).unwrap_or_default() {
                    let Some(id) = r.key.and_then(state_log::decode_key) else { continue };
                    match r.value.and_then(state_log::decode_value) {
                        Some(m) => self.txns.borrow_mut().insert(id, m),
                        None => self.txns.borrow_mut().remove(&id),
                    };
                }
            });
            let txns = self.txns.borrow();
            let mine = txns.keys().filter(|id| crate::coordinator::partition_for(id, partition_count) == p.partition);
            let (count, open) = mine.fold((0, 0), |(count, open), id| {
                let done = matches!(txns[id].state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort);
                (count + 1, open + usize::from(!done))
            });
            tracing::info!(
                shard = shard.id,
                partition = p.partition,
                transactional_ids = count,
                open,
                "coordinating the transactions of a __transaction_state partition; its state is loaded"
            );
        }
    }

    /// KIP-890: an error code, NONE when the partition is in the producer's ongoing transaction.
    pub(super) fn verify(&self, call: &super::Verify) -> i16 {
        match self.txns.borrow().get(&call.transactional_id) {
            None => ec::INVALID_PRODUCER_ID_MAPPING,
            // Kafka's answers (`TransactionCoordinator.handleVerifyPartitionsInTransaction`): a
            // partition the transaction does not hold is TRANSACTION_ABORTABLE, which the
            // partition's leader turns into INVALID_TXN_STATE for clients that predate it.
            Some(m) => match check_producer(m, call.producer_id, call.producer_epoch) {
                Err(code) => code,
                Ok(()) if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) => ec::CONCURRENT_TRANSACTIONS,
                Ok(()) if m.state == TxnState::Ongoing && m.partitions.contains(&call.partition) => ec::NONE,
                Ok(()) => ec::TRANSACTION_ABORTABLE,
            },
        }
    }

    pub(super) fn list(&self, call: &super::List) -> Vec<TxnDescription> {
        let now = now_ms() as i64;
        let pattern = match call.pattern.as_deref().filter(|p| !p.is_empty()).map(regex::Regex::new) {
            Some(Ok(re)) => Some(re),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "ListTransactions pattern does not compile; nothing matches");
                return Vec::new();
            }
            None => None,
        };
        self.txns
            .borrow()
            .iter()
            .filter(|(_, m)| call.states.is_empty() || call.states.iter().any(|s| s == m.state.name()))
            .filter(|(_, m)| call.producer_ids.is_empty() || call.producer_ids.contains(&m.producer_id))
            .filter(|(_, m)| call.duration_ms < 0 || (m.start_ms >= 0 && now - m.start_ms >= call.duration_ms))
            .filter(|(id, _)| pattern.as_ref().is_none_or(|re| re.is_match(id)))
            .map(|(id, m)| describe(id, m))
            .collect()
    }

    pub(super) fn describe(&self, id: &str) -> Option<TxnDescription> {
        self.txns.borrow().get(id).map(|m| describe(id, m))
    }

    async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, i16> {
        shard.call(CONTROLLER_SHARD, AllocateProducerId).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the controller did not allocate a producer id");
            Err(ec::COORDINATOR_NOT_AVAILABLE)
        })
    }

    pub(super) async fn init_producer_id(
        &self,
        shard: &Rc<Shard>,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i64, i16), i16> {
        if timeout_ms <= 0 || timeout_ms > self.config.timeout_ms_max {
            return Err(ec::INVALID_TRANSACTION_TIMEOUT);
        }
        let Some(_busy) = self.try_busy(id) else { return Err(ec::CONCURRENT_TRANSACTIONS) };
        let existing = self.txns.borrow().get(id).cloned();
        let now = now_ms() as i64;
        let mut m = match existing {
            None => TxnMetadata::new(Self::allocate_producer_id(shard).await?, 0, timeout_ms, now),
            Some(mut m) => {
                // KIP-360: a producer that names its current id may only be the one the
                // coordinator knows (or one epoch behind, retrying), or the id it had before a
                // transactions-v2 end rotated it, at an exhausted epoch (it never got the answer
                // that named the new one).
                let rotated_from = producer_id == m.previous_producer_id && producer_epoch >= EPOCH_MAX;
                if producer_id >= 0 && !rotated_from && (producer_id != m.producer_id || producer_epoch < m.producer_epoch - 1) {
                    return Err(ec::PRODUCER_FENCED);
                }
                match m.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => {
                        let commit = m.state == TxnState::PrepareCommit;
                        m = self.complete(shard, id, m, commit).await.ok_or(ec::CONCURRENT_TRANSACTIONS)?;
                    }
                    TxnState::Ongoing => {
                        // A new producer with this id: abort what the old one left open, with a
                        // bumped epoch so that the old producer is fenced on every partition.
                        tracing::info!(transactional_id = id, producer_id = m.producer_id, "fencing the previous producer and aborting its open transaction");
                        m = self.abort_with_bump(shard, id, m).await.ok_or(ec::CONCURRENT_TRANSACTIONS)?;
                    }
                    _ => {}
                }
                if m.producer_epoch >= EPOCH_MAX {
                    m.producer_id = Self::allocate_producer_id(shard).await?;
                    m.producer_epoch = 0;
                } else {
                    m.producer_epoch += 1;
                }
                m.timeout_ms = timeout_ms;
                m.state = TxnState::Empty;
                m.partitions.clear();
                m.last_update_ms = now;
                m.start_ms = -1;
                m
            }
        };
        m.timeout_ms = timeout_ms;
        self.persist(shard, id, &m).await?;
        let out = (m.producer_id, m.producer_epoch);
        self.txns.borrow_mut().insert(id.to_string(), m);
        tracing::debug!(transactional_id = id, producer_id = out.0, producer_epoch = out.1, "transactional producer initialised");
        Ok(out)
    }

    pub(super) async fn add_partitions(&self, shard: &Rc<Shard>, call: &super::AddPartitions) -> Vec<i16> {
        let (id, partitions) = (call.transactional_id.as_str(), &call.partitions[..]);
        let all = |code| vec![code; partitions.len()];
        let Some(_busy) = self.try_busy(id) else { return all(ec::CONCURRENT_TRANSACTIONS) };
        let Some(mut m) = self.txns.borrow().get(id).cloned() else { return all(ec::INVALID_PRODUCER_ID_MAPPING) };
        let preparing = matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence);
        // A transactions-v2 producer whose last end rotated its id was told the new id before
        // the markers were all written: it waits, as the producer of the old id would.
        if preparing && call.producer_id == m.next_producer_id && call.producer_epoch == 0 {
            return all(ec::CONCURRENT_TRANSACTIONS);
        }
        if let Err(code) = check_producer(&m, call.producer_id, call.producer_epoch) {
            return all(code);
        }
        if preparing {
            return all(ec::CONCURRENT_TRANSACTIONS);
        }
        let unknown: Vec<bool> = {
            let meta = shard.metadata.borrow();
            partitions.iter().map(|(t, p)| !meta.topics.get(t).is_some_and(|topic| *p >= 0 && (*p as usize) < topic.partitions.len())).collect()
        };
        if unknown.iter().any(|u| *u) {
            return unknown.iter().map(|u| if *u { ec::UNKNOWN_TOPIC_OR_PARTITION } else { ec::OPERATION_NOT_ATTEMPTED }).collect();
        }
        if m.state == TxnState::Ongoing
            && partitions.iter().all(|tp| m.partitions.contains(tp))
            && m.client_transaction_version == call.client_transaction_version
        {
            return all(ec::NONE);
        }
        if m.partitions.len() + partitions.len() > TXN_PARTITIONS_MAX {
            return all(ec::INVALID_REQUEST);
        }
        let now = now_ms() as i64;
        if m.state != TxnState::Ongoing {
            m.partitions.clear();
            m.start_ms = now;
        }
        m.state = TxnState::Ongoing;
        m.partitions.extend(partitions.iter().cloned());
        m.last_update_ms = now;
        m.client_transaction_version = call.client_transaction_version;
        if let Err(code) = self.persist(shard, id, &m).await {
            return all(code);
        }
        self.txns.borrow_mut().insert(id.to_string(), m);
        all(ec::NONE)
    }

    /// EndTxn. With transactions v2 (`call.client_transaction_version` 2) the epoch is bumped as
    /// the outcome is logged, so the markers carry the new epoch and fence every write of the
    /// old one; an epoch that would overflow moves the transactional id to a new producer id at
    /// epoch 0 once the markers are written (Kafka's `prepareAbortOrCommit` and
    /// `prepareComplete`). Answers the producer id and epoch to go on with.
    pub(super) async fn end_txn(&self, shard: &Rc<Shard>, call: &super::EndTxn) -> Result<(i64, i16), i16> {
        let (id, producer_id, producer_epoch, commit) = (call.transactional_id.as_str(), call.producer_id, call.producer_epoch, call.commit);
        let Some(_busy) = self.try_busy(id) else { return Err(ec::CONCURRENT_TRANSACTIONS) };
        let Some(mut m) = self.txns.borrow().get(id).cloned() else { return Err(ec::INVALID_PRODUCER_ID_MAPPING) };
        check_end_txn_producer(&m, producer_id, producer_epoch)?;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn that already finished.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok((m.producer_id, m.producer_epoch)),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => return Err(ec::CONCURRENT_TRANSACTIONS),
            (state, _) => {
                tracing::debug!(transactional_id = id, state = state.name(), commit, "EndTxn in a state that cannot end");
                return Err(ec::INVALID_TXN_STATE);
            }
        }
        let bump = call.client_transaction_version >= crate::metadata::features::TRANSACTION_VERSION_EPOCH_BUMP;
        if bump {
            if m.producer_epoch >= EPOCH_MAX {
                m.next_producer_id = Self::allocate_producer_id(shard).await?;
            }
            // Saturating: a timed-out abort may have taken the epoch to i16::MAX already; the
            // markers are then at the batches' epoch, and the new id fences the old producer.
            m.producer_epoch = m.producer_epoch.saturating_add(1);
        }
        m.client_transaction_version = call.client_transaction_version;
        m.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        m.last_update_ms = now_ms() as i64;
        self.persist(shard, id, &m).await?;
        self.txns.borrow_mut().insert(id.to_string(), m.clone());
        // The outcome is decided and durable: if a marker cannot be written now, the ticker
        // finishes the transaction later, and the client's next request waits for it. The
        // producer goes on with what the completion will leave.
        let after = match self.complete(shard, id, m.clone(), commit).await {
            Some(done) => (done.producer_id, done.producer_epoch),
            None if m.next_producer_id >= 0 => (m.next_producer_id, 0),
            None => (m.producer_id, m.producer_epoch),
        };
        if bump {
            tracing::debug!(transactional_id = id, commit, producer_id = after.0, producer_epoch = after.1, "transaction ended; producer epoch bumped");
        }
        Ok(after)
    }

    /// Aborts an open transaction after bumping the producer epoch (fencing the producer).
    async fn abort_with_bump(&self, shard: &Rc<Shard>, id: &str, mut m: TxnMetadata) -> Option<TxnMetadata> {
        m.producer_epoch = m.producer_epoch.saturating_add(1);
        m.state = TxnState::PrepareAbort;
        m.last_update_ms = now_ms() as i64;
        self.persist(shard, id, &m).await.ok()?;
        self.txns.borrow_mut().insert(id.to_string(), m.clone());
        self.complete(shard, id, m, false).await
    }

    /// Writes the markers of a decided transaction and logs its completion. None if a marker
    /// could not be written (the transaction stays in its Prepare state, for a retry).
    ///
    /// A partition this broker leads gets its marker from its owner shard; those led by other
    /// brokers get theirs in one WriteTxnMarkers request per broker, as Kafka's coordinator
    /// sends them. A partition of a deleted topic needs none; one without a leader, or whose
    /// leader does not answer, fails the attempt.
    async fn complete(&self, shard: &Rc<Shard>, id: &str, mut m: TxnMetadata, commit: bool) -> Option<TxnMetadata> {
        let routes: Vec<MarkerRoute> = {
            let meta = shard.metadata.borrow();
            m.partitions.iter().map(|(topic, partition)| marker_route(&meta, shard.config.node_id, topic, *partition)).collect()
        };
        let marker = |topic: &str, partition: i32| TxnMarker {
            topic: topic.to_string(),
            partition,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            commit,
            coordinator_epoch: super::COORDINATOR_EPOCH,
        };
        let mut local = Vec::new();
        let mut remote: Vec<(i32, Vec<(String, i32)>)> = Vec::new();
        let mut results: Vec<(String, i32, i16)> = Vec::new();
        for ((topic, partition), route) in m.partitions.iter().zip(routes) {
            match route {
                MarkerRoute::Deleted => {}
                MarkerRoute::Failed(code) => results.push((topic.clone(), *partition, code)),
                MarkerRoute::Local(owner) => {
                    let (shard, call, topic, partition) = (shard.clone(), marker(topic, *partition), topic.clone(), *partition);
                    local.push(async move {
                        let code = shard.call(owner, call).await.unwrap_or_else(|e| {
                            tracing::warn!(topic = %topic, partition, error = %e, "transaction marker not delivered");
                            ec::COORDINATOR_NOT_AVAILABLE
                        });
                        vec![(topic, partition, code)]
                    });
                }
                MarkerRoute::Remote(leader) => match remote.iter_mut().find(|(l, _)| *l == leader) {
                    Some((_, partitions)) => partitions.push((topic.clone(), *partition)),
                    None => remote.push((leader, vec![(topic.clone(), *partition)])),
                },
            }
        }
        let remote =
            remote.into_iter().map(|(leader, partitions)| self.write_remote_markers(shard, leader, m.producer_id, m.producer_epoch, commit, partitions));
        let (local, remote) = futures::future::join(futures::future::join_all(local), futures::future::join_all(remote)).await;
        results.extend(local.into_iter().chain(remote).flatten());
        let failed: Vec<_> = results.iter().filter(|(_, _, code)| *code != ec::NONE).collect();
        if !failed.is_empty() {
            tracing::warn!(transactional_id = id, commit, failed = ?failed, "transaction markers not all written; will retry");
            return None;
        }
        m.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        m.partitions.clear();
        m.last_update_ms = now_ms() as i64;
        if m.next_producer_id >= 0 {
            // The markers carried the old id at its last epoch; the producer goes on with the
            // new one.
            m.previous_producer_id = m.producer_id;
            m.producer_id = m.next_producer_id;
            m.producer_epoch = 0;
            m.next_producer_id = -1;
        }
        if self.persist(shard, id, &m).await.is_err() {
            return None;
        }
        self.txns.borrow_mut().insert(id.to_string(), m.clone());
        tracing::debug!(transactional_id = id, commit, "transaction completed");
        Some(m)
    }

    /// The markers of one transaction for the partitions broker `leader` leads, in one
    /// WriteTxnMarkers request; answers each partition's code.
    async fn write_remote_markers(
        &self,
        shard: &Rc<Shard>,
        leader: i32,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32, i16)> {
        let all = |partitions: Vec<(String, i32)>, code: i16| partitions.into_iter().map(|(t, p)| (t, p, code)).collect();
        let address = match shard.inter_broker_address(leader) {
            Ok(address) => address,
            Err(why) => {
                tracing::error!(broker = leader, partitions = partitions.len(), "cannot send transaction markers to the partitions' leader: {why}");
                return all(partitions, ec::BROKER_NOT_AVAILABLE);
            }
        };
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(producer_id);
        marker.producer_epoch = producer_epoch;
        marker.transaction_result = commit;
        marker.coordinator_epoch = super::COORDINATOR_EPOCH;
        for (topic, partition) in &partitions {
            match marker.topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partition_indexes.push(*partition),
                None => {
                    let mut t = WritableTxnMarkerTopic::default();
                    t.name = topic_name(topic);
                    t.partition_indexes.push(*partition);
                    marker.topics.push(t);
                }
            }
        }
        let mut request = WriteTxnMarkersRequest::default();
        request.markers.push(marker);
        let response = match self.inter_broker.send(leader, &address, &request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(broker = leader, %address, error = %e, "WriteTxnMarkers to the partitions' leader failed");
                return all(partitions, ec::BROKER_NOT_AVAILABLE);
            }
        };
        partitions
            .into_iter()
            .map(|(topic, partition)| {
                let code = response
                    .markers
                    .iter()
                    .filter(|r| r.producer_id.0 == producer_id)
                    .flat_map(|r| r.topics.iter().filter(|t| t.name.0.as_str() == topic))
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .map(|p| p.error_code)
                    // An answer that leaves a partition out has not written its marker.
                    .unwrap_or(ec::UNKNOWN_SERVER_ERROR);
                (topic, partition, code)
            })
            .collect()
    }

    /// KIP-890 verification with the coordinator of `call`'s transactional id on broker
    /// `broker`: AddPartitionsToTxn v4+ with verifyOnly, as Kafka's partition leaders send it.
    /// An error code, NONE when the partition is in the producer's ongoing transaction.
    ///
    /// With `add` (transactions v2) the partition is added instead: AddPartitionsToTxn v5
    /// without verifyOnly, which the coordinator takes as a transactions-v2 add.
    pub(super) async fn verify_on(&self, shard: &Rc<Shard>, broker: i32, call: &crate::shard::TxnVerification, add: bool) -> Vec<i16> {
        let all = |code| vec![code; call.partitions.len()];
        let address = match shard.inter_broker_address(broker) {
            Ok(address) => address,
            Err(why) => {
                tracing::error!(broker, transactional_id = %call.transactional_id, "cannot verify a transactional batch with its coordinator: {why}");
                return all(ec::COORDINATOR_NOT_AVAILABLE);
            }
        };
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for (topic, partition) in &call.partitions {
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(*partition),
                None => {
                    let mut asked = AddPartitionsToTxnTopic::default();
                    asked.name = topic_name(topic);
                    asked.partitions = vec![*partition];
                    topics.push(asked);
                }
            }
        }
        let mut transaction = AddPartitionsToTxnTransaction::default();
        transaction.transactional_id = TransactionalId(StrBytes::from_string(call.transactional_id.clone()));
        transaction.producer_id = ProducerId(call.producer_id);
        transaction.producer_epoch = call.producer_epoch;
        transaction.verify_only = !add;
        transaction.topics = topics;
        let mut request = AddPartitionsToTxnRequest::default();
        request.transactions = vec![transaction];
        let response = match self.inter_broker.send(broker, &address, &request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(broker, %address, add, error = %e, "AddPartitionsToTxn (verify or add) to the transaction coordinator failed");
                return all(ec::COORDINATOR_NOT_AVAILABLE);
            }
        };
        if response.error_code != ec::NONE {
            return all(response.error_code);
        }
        let answered = |topic: &str, partition: i32| {
            response
                .results_by_transaction
                .iter()
                .filter(|r| r.transactional_id.0.as_str() == call.transactional_id)
                .flat_map(|r| r.topic_results.iter().filter(|t| t.name.0.as_str() == topic))
                .flat_map(|t| t.results_by_partition.iter())
                .find(|p| p.partition_index == partition)
                .map(|p| p.partition_error_code)
                // An answer that leaves the partition out has not verified it.
                .unwrap_or(ec::UNKNOWN_SERVER_ERROR)
        };
        call.partitions.iter().map(|(topic, partition)| answered(topic, *partition)).collect()
    }

    /// Logs the state of `id` durably in its `__transaction_state` partition.
    async fn persist(&self, shard: &Rc<Shard>, id: &str, m: &TxnMetadata) -> Result<(), i16> {
        let partition_count = shard.metadata.borrow().topics.get(TRANSACTION_STATE_TOPIC).map(|t| t.partitions.len()).unwrap_or(0);
        let index = crate::coordinator::partition_for(id, partition_count);
        let Some(p) = shard.local_partition(TRANSACTION_STATE_TOPIC, index) else {
            tracing::error!(transactional_id = id, partition = index, "transaction state partition is not on this shard");
            return Err(ec::NOT_COORDINATOR);
        };
        let key = state_log::encode_key(id);
        let transaction_version = crate::metadata::features::transaction_version(&shard.metadata.borrow().finalized_features);
        let value = state_log::encode_value(m, state_log::value_version(transaction_version));
        let batch = build_producer_batch(0, now_ms() as i64, &[(Some(&key), Some(&value))], &BatchProducer::NONE);
        crate::internal_log::append_durably(shard, &p, &batch, AppendOrigin::Coordinator).await?;
        // The partition's leadership moved meanwhile: its ids were forgotten here, and the new
        // coordinator reads this write from the log.
        if !self.loaded.owns(index) {
            return Err(ec::NOT_COORDINATOR);
        }
        Ok(())
    }

    /// Aborts transactions past their timeout, and retries decided ones left incomplete.
    async fn tick(&self, shard: &Rc<Shard>, check_timeouts: bool) {
        let now = now_ms() as i64;
        let due: Vec<(String, TxnMetadata)> = self
            .txns
            .borrow()
            .iter()
            .filter(|(id, m)| {
                !self.busy.borrow().contains(*id)
                    && match m.state {
                        TxnState::Ongoing => check_timeouts && m.start_ms >= 0 && now - m.start_ms > m.timeout_ms as i64,
                        TxnState::PrepareCommit | TxnState::PrepareAbort => now - m.last_update_ms >= MARKER_RETRY_MS as i64,
                        _ => false,
                    }
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, m) in due {
            let Some(_busy) = self.try_busy(&id) else { continue };
            match m.state {
                TxnState::Ongoing => {
                    tracing::info!(transactional_id = %id, producer_id = m.producer_id, timeout_ms = m.timeout_ms, "transaction timed out; aborting it and fencing its producer");
                    self.abort_with_bump(shard, &id, m).await;
                }
                state => {
                    self.complete(shard, &id, m, state == TxnState::PrepareCommit).await;
                }
            }
        }
    }
}

/// Where the marker of one partition of a transaction goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerRoute {
    /// The topic is gone (deleted, or recreated smaller): nothing left to mark.
    Deleted,
    /// This broker leads it: its owner shard writes the marker.
    Local(usize),
    /// Broker `n` leads it: a WriteTxnMarkers request there.
    Remote(i32),
    /// No marker can be written now (no leader, or led here but not hosted): this error.
    Failed(i16),
}

fn marker_route(meta: &ClusterMetadata, node_id: i32, topic: &str, partition: i32) -> MarkerRoute {
    let Some(p) = meta.topics.get(topic).and_then(|t| t.partitions.get(usize::try_from(partition).ok()?)) else {
        return MarkerRoute::Deleted;
    };
    // A partition recorded before replicas were is this node's alone.
    let leader = if p.replicas.is_empty() { node_id } else { p.leader };
    match leader {
        l if l == node_id && p.hosted => MarkerRoute::Local(p.shard),
        l if l == node_id => MarkerRoute::Failed(ec::NOT_LEADER_OR_FOLLOWER),
        NO_LEADER => MarkerRoute::Failed(ec::LEADER_NOT_AVAILABLE),
        l => MarkerRoute::Remote(l),
    }
}

fn describe(id: &str, m: &TxnMetadata) -> TxnDescription {
    TxnDescription {
        transactional_id: id.to_string(),
        state: m.state.name(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        timeout_ms: m.timeout_ms,
        start_ms: m.start_ms,
        partitions: m.partitions.iter().cloned().collect(),
    }
}

async fn ticker(txns: Rc<TxnCoordinator>, shard: Rc<Shard>) {
    // Decided transactions left incomplete by a crash are finished at once, not after the
    // first interval (their markers let read_committed consumers progress).
    txns.tick(&shard, false).await;
    let mut since_timeout_check_ms = 0;
    while !shard.shutting_down.get() {
        runtime::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
        since_timeout_check_ms += MARKER_RETRY_MS;
        let check_timeouts = since_timeout_check_ms >= txns.config.abort_check_interval_ms;
        if check_timeouts {
            since_timeout_check_ms = 0;
        }
        txns.tick(&shard, check_timeouts).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_txn_after_a_v2_end_knows_a_retry_from_a_zombie() {
        let mut m = TxnMetadata::new(7, 5, 60_000, 0);
        m.state = TxnState::Ongoing;
        // Transactions v1 (or none yet): the producer's own epoch, exactly.
        assert_eq!(check_end_txn_producer(&m, 7, 5), Ok(()));
        assert_eq!(check_end_txn_producer(&m, 7, 4), Err(ec::PRODUCER_FENCED));
        assert_eq!(check_end_txn_producer(&m, 8, 5), Err(ec::INVALID_PRODUCER_ID_MAPPING));
        // A v2 end bumped the epoch to 6: epoch 5 is the retry of that end, 4 a zombie, and 6
        // (the producer's new epoch) has nothing to end.
        m.client_transaction_version = 2;
        m.producer_epoch = 6;
        m.state = TxnState::CompleteCommit;
        assert_eq!(check_end_txn_producer(&m, 7, 5), Ok(()));
        assert_eq!(check_end_txn_producer(&m, 7, 4), Err(ec::PRODUCER_FENCED));
        assert_eq!(check_end_txn_producer(&m, 7, 6), Err(ec::PRODUCER_FENCED));
        m.state = TxnState::PrepareCommit;
        assert_eq!(check_end_txn_producer(&m, 7, 5), Ok(()));
        // The next transaction, at the new epoch: only that epoch ends it.
        m.state = TxnState::Ongoing;
        assert_eq!(check_end_txn_producer(&m, 7, 6), Ok(()));
        assert_eq!(check_end_txn_producer(&m, 7, 5), Err(ec::PRODUCER_FENCED));
        // An end that overflowed the epoch moved the id to 9 at epoch 0: the old id at its last
        // epoch is the retry.
        m = TxnMetadata::new(9, 0, 60_000, 0);
        m.client_transaction_version = 2;
        m.previous_producer_id = 7;
        m.state = TxnState::CompleteAbort;
        assert_eq!(check_end_txn_producer(&m, 7, EPOCH_MAX), Ok(()));
        assert_eq!(check_end_txn_producer(&m, 7, 3), Err(ec::INVALID_PRODUCER_ID_MAPPING));
    }
    use crate::metadata::{PartitionPlacement, TopicMetadata};

    #[test]
    fn each_marker_goes_to_its_partition_leader() {
        let placed = |leader: i32, hosted: bool, shard: usize| PartitionPlacement {
            shard,
            log_dir: 0,
            hosted,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        let mut meta = ClusterMetadata::new(String::from("c"));
        let partitions = vec![placed(1, true, 2), placed(2, false, 0), placed(NO_LEADER, false, 0), placed(1, false, 0), PartitionPlacement::local(3, 0)];
        meta.topics.insert(String::from("t"), TopicMetadata { id: uuid::Uuid::nil(), partitions, configs: Default::default() });
        let route = |partition| marker_route(&meta, 1, "t", partition);
        assert_eq!(route(0), MarkerRoute::Local(2));
        assert_eq!(route(1), MarkerRoute::Remote(2), "led by another broker: a WriteTxnMarkers request, not 'nothing to mark'");
        assert_eq!(route(2), MarkerRoute::Failed(ec::LEADER_NOT_AVAILABLE));
        assert_eq!(route(3), MarkerRoute::Failed(ec::NOT_LEADER_OR_FOLLOWER));
        // Recorded before replicas were: this node's alone.
        assert_eq!(route(4), MarkerRoute::Local(3));
        assert_eq!(route(5), MarkerRoute::Deleted);
        assert_eq!(route(-1), MarkerRoute::Deleted);
        assert_eq!(marker_route(&meta, 1, "gone", 0), MarkerRoute::Deleted);
    }
}
