//! Transactions: the transaction coordinator (InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn), its durable state in `__transaction_state`,
//! and the admin views (DescribeTransactions, ListTransactions).
//!
//! A transactional id belongs to the shard that owns its `__transaction_state` partition
//! (Kafka's mapping: the Java hash of the id, modulo the partition count), so its state
//! changes are appended to a local log and made durable by the same group commit as any
//! produce with acks=all. Other shards forward transaction requests there over the mesh.
//!
//! Ending a transaction: the coordinator logs PrepareCommit (or PrepareAbort) durably, which
//! decides the outcome; then writes a commit (or abort) marker to every partition in the
//! transaction, each on its owner shard, or, for a partition another broker leads, in a
//! WriteTxnMarkers request to that broker (`crate::inter_broker`); then logs CompleteCommit
//! (CompleteAbort). A crash between the two finds the Prepare record on restart and writes the
//! markers again, so a transaction always resolves whole.

pub mod coordinator;
pub mod state_log;

use std::rc::Rc;

use shardlog_protocol::error_code as ec;

pub use coordinator::{TxnConfig, TxnCoordinator};
pub use state_log::TRANSACTION_STATE_TOPIC;

use crate::coordinator::{coordinator_call, Coordinator};
use crate::shard::router::ShardCall;
use crate::shard::{Shard, TxnVerification};

/// Markers carry the coordinator epoch; a single broker is always coordinator epoch 0.
pub const COORDINATOR_EPOCH: i32 = 0;

/// Transactional ids are found by their `__transaction_state` partition: callers reach an id's
/// coordinator with [`crate::coordinator::coordinator_call`] and this.
pub const COORDINATOR: Coordinator =
    Coordinator { name: "transaction", state_topic: TRANSACTION_STATE_TOPIC, configured_partitions: |config| config.txn.state_partitions };

// The calls the transaction coordinator answers, each with its reply type. They travel to the
// coordinator shard of their transactional id (see [`COORDINATOR`]).

/// InitProducerId with a transactional id: the producer id and epoch, or the error code.
#[derive(Debug, Clone)]
pub struct InitProducerId {
    pub transactional_id: String,
    pub timeout_ms: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl ShardCall for InitProducerId {
    type Reply = Result<(i64, i16), i16>;
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, for the offsets partition; and, with transactions
/// v2, a transactional Produce or TxnOffsetCommit adding its own partition): one code per
/// partition, in request order.
#[derive(Debug, Clone)]
pub struct AddPartitions {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<(String, i32)>,
    /// 2 when the add comes from a transactions-v2 client (see [`client_transaction_version`]).
    pub client_transaction_version: i16,
}

impl ShardCall for AddPartitions {
    type Reply = Vec<i16>;
}

/// EndTxn: once the outcome is decided and logged, the producer id and epoch the producer goes
/// on with (with transactions v2 the epoch is one higher, or a new id at epoch 0 when it would
/// overflow); else the error code.
#[derive(Debug, Clone)]
pub struct EndTxn {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    /// 2: bump the epoch (see [`client_transaction_version`]).
    pub client_transaction_version: i16,
}

impl ShardCall for EndTxn {
    type Reply = Result<(i64, i16), i16>;
}

/// The transaction version a request speaks (Kafka's `TransactionVersion` of the client): 2
/// when the cluster finalized transaction.version 2 and the request's version is one that a
/// transactions-v2 client sends (EndTxn v5, Produce v12, TxnOffsetCommit v5,
/// AddPartitionsToTxn v5 from a partition leader), else 0. Both gates: a client that knows v2
/// uses it only when the cluster finalized it, and a cluster at 0 must not bump the epoch of a
/// client that merely speaks the newer versions.
pub fn client_transaction_version(shard: &Shard, api_version: i16, first_v2_version: i16) -> i16 {
    use crate::metadata::features::{transaction_version, TRANSACTION_VERSION_EPOCH_BUMP};
    let finalized = transaction_version(&shard.metadata.borrow().finalized_features);
    if finalized >= TRANSACTION_VERSION_EPOCH_BUMP && api_version >= first_v2_version {
        TRANSACTION_VERSION_EPOCH_BUMP
    } else {
        0
    }
}

/// Is `partition` in this producer's ongoing transaction? (KIP-890 verification of a
/// transactional produce.) An error code, NONE for yes.
#[derive(Debug, Clone)]
pub struct Verify {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partition: (String, i32),
}

impl ShardCall for Verify {
    type Reply = i16;
}

/// DescribeTransactions for one id.
#[derive(Debug, Clone)]
pub struct Describe {
    pub transactional_id: String,
}

impl ShardCall for Describe {
    type Reply = Result<TxnDescription, i16>;
}

/// ListTransactions on one coordinator shard.
#[derive(Debug, Clone)]
pub struct List {
    pub states: Vec<String>,
    pub producer_ids: Vec<i64>,
    pub duration_ms: i64,
    pub pattern: Option<String>,
}

impl ShardCall for List {
    type Reply = Vec<TxnDescription>;
}

#[derive(Debug, Clone)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: &'static str,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub start_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

/// Creates this shard's transaction coordinator, registers it for the transaction calls routed
/// here, and gives the shard its KIP-890 verifier (which asks the producer's coordinator,
/// wherever it is). Once the shard has its partitions, [`TxnCoordinator::load`] replays them.
pub fn start(shard: &Rc<Shard>, config: TxnConfig) -> Rc<TxnCoordinator> {
    let coordinator = Rc::new(TxnCoordinator::new(config));
    let c = &coordinator;
    serve(shard, c, |c, shard, call: InitProducerId| async move {
        c.init_producer_id(&shard, &call.transactional_id, call.timeout_ms, call.producer_id, call.producer_epoch).await
    });
    serve(shard, c, |c, shard, call: AddPartitions| async move { c.add_partitions(&shard, &call).await });
    serve(shard, c, |c, shard, call: EndTxn| async move { c.end_txn(&shard, &call).await });
    serve(shard, c, |c, _, call: Verify| async move { c.verify(&call) });
    serve(shard, c, |c, _, call: Describe| async move { c.describe(&call.transactional_id).ok_or(ec::TRANSACTIONAL_ID_NOT_FOUND) });
    // Asked of every shard, not of one id's coordinator: each lists the ids it loaded.
    let c = coordinator.clone();
    shard.router.serve(move |call: List| {
        let listed = c.list(&call);
        async move { listed }
    });
    let s = Rc::downgrade(shard);
    let c = Rc::downgrade(&coordinator);
    let verifier: crate::shard::TxnVerifier = Rc::new(move |v: TxnVerification| {
        let shard = s.upgrade().expect("the shard outlives its verifier");
        let coordinator = c.upgrade().expect("the coordinator outlives its verifier");
        Box::pin(async move {
            let id = v.transactional_id.clone();
            let count = v.partitions.len();
            match (coordinator_broker_elsewhere(&shard, &id), v.add) {
                // Kafka's partition leaders ask the producer's coordinator on its broker, in
                // AddPartitionsToTxn v4+ with verifyOnly (v5 without it, to add).
                (Some(broker), add) => coordinator.verify_on(&shard, broker, &v, add).await,
                (None, false) => {
                    let mut codes = Vec::with_capacity(count);
                    for partition in v.partitions {
                        let verify = Verify { transactional_id: id.clone(), producer_id: v.producer_id, producer_epoch: v.producer_epoch, partition };
                        codes.push(coordinator_call(&shard, COORDINATOR, &id, verify).await.unwrap_or_else(|code| code));
                    }
                    codes
                }
                (None, true) => {
                    let add = AddPartitions {
                        transactional_id: v.transactional_id,
                        producer_id: v.producer_id,
                        producer_epoch: v.producer_epoch,
                        partitions: v.partitions,
                        client_transaction_version: crate::metadata::features::TRANSACTION_VERSION_EPOCH_BUMP,
                    };
                    match coordinator_call(&shard, COORDINATOR, &id, add).await {
                        Ok(codes) if codes.len() == count => codes,
                        Ok(_) => vec![ec::UNKNOWN_SERVER_ERROR; count],
                        Err(code) => vec![code; count],
                    }
                }
            }
        })
    });
    assert!(shard.txn_verifier.set(verifier).is_ok(), "one transaction coordinator per shard");
    coordinator
}

/// The broker that leads the `__transaction_state` partition of `transactional_id`, when it is
/// another one (None: this one, or none yet).
fn coordinator_broker_elsewhere(shard: &Shard, transactional_id: &str) -> Option<i32> {
    let meta = shard.metadata.borrow();
    let index = COORDINATOR.partition(&meta, transactional_id)?;
    let p = meta.topics.get(TRANSACTION_STATE_TOPIC)?.partitions.get(index as usize)?;
    (!p.replicas.is_empty() && p.leader != shard.config.node_id && p.leader != crate::metadata::records::NO_LEADER).then_some(p.leader)
}

/// Registers the service for calls of type `C`, handing it this shard's coordinator.
fn serve<C, F, Fut>(shard: &Rc<Shard>, coordinator: &Rc<TxnCoordinator>, handler: F)
where
    C: ShardCall,
    F: Fn(Rc<TxnCoordinator>, Rc<Shard>, C) -> Fut + 'static,
    Fut: std::future::Future<Output = C::Reply> + 'static,
{
    crate::coordinator::serve(shard, coordinator, |c| &c.loaded, handler);
}
