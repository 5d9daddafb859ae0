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
//! transaction, each on its owner shard; then logs CompleteCommit (CompleteAbort). A crash
//! between the two finds the Prepare record on restart and writes the markers again, so a
//! transaction always resolves whole.

pub mod coordinator;
pub mod state_log;

use std::rc::Rc;

use shardlog_protocol::error_code as ec;

pub use coordinator::{TxnConfig, TxnCoordinator};
pub use state_log::TRANSACTION_STATE_TOPIC;

use crate::shard::{Shard, TxnVerification};

/// Markers carry the coordinator epoch; a single broker is always coordinator epoch 0.
pub const COORDINATOR_EPOCH: i32 = 0;

/// A transaction request as it travels to the coordinator shard.
#[derive(Debug, Clone)]
pub enum TxnCall {
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    },
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
    /// Is `partition` in this producer's ongoing transaction? (KIP-890 verification of a
    /// transactional produce.)
    Verify {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partition: (String, i32),
    },
    Describe {
        transactional_id: String,
    },
    List {
        states: Vec<String>,
        producer_ids: Vec<i64>,
        duration_ms: i64,
        pattern: Option<String>,
    },
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

#[derive(Debug)]
pub enum TxnReply {
    ProducerId {
        error_code: i16,
        producer_id: i64,
        producer_epoch: i16,
    },
    /// Per partition, in request order.
    Partitions(Vec<i16>),
    Code(i16),
    Describe(Result<TxnDescription, i16>),
    List(Vec<TxnDescription>),
}

/// The shard that coordinates `transactional_id`, or None before the state topic exists.
pub fn coordinator_shard(meta: &crate::metadata::ClusterMetadata, transactional_id: &str) -> Option<usize> {
    let topic = meta.topics.get(TRANSACTION_STATE_TOPIC)?;
    let partition = crate::groups::offsets::partition_for(transactional_id, topic.partitions.len());
    topic.partitions.get(partition as usize).map(|p| p.shard)
}

impl crate::shard::router::ShardCall for TxnCall {
    type Reply = TxnReply;
}

/// Sends `call` to the coordinator of `transactional_id` and returns its reply, or the error
/// code to answer with when there is no coordinator.
pub async fn call(shard: &Shard, transactional_id: &str, call: TxnCall) -> Result<TxnReply, i16> {
    let Some(owner) = coordinator_shard(&shard.metadata.borrow(), transactional_id) else { return Err(ec::COORDINATOR_NOT_AVAILABLE) };
    shard.call(owner, call).await.map_err(|e| {
        tracing::warn!(transactional_id, error = %e, "transaction coordinator unreachable");
        ec::COORDINATOR_NOT_AVAILABLE
    })
}

/// Creates this shard's transaction coordinator, registers it for the transaction calls routed
/// here, and gives the shard its KIP-890 verifier (which asks the producer's coordinator,
/// wherever it is). Once the shard has its partitions, [`TxnCoordinator::load`] replays them.
pub fn start(shard: &Rc<Shard>, config: TxnConfig) -> Rc<TxnCoordinator> {
    let coordinator = Rc::new(TxnCoordinator::new(config));
    let (c, s) = (coordinator.clone(), Rc::downgrade(shard));
    shard.router.serve(move |call: TxnCall| {
        let (c, shard) = (c.clone(), s.upgrade().expect("the shard outlives its router"));
        async move { c.handle(&shard, call).await }
    });
    let s = Rc::downgrade(shard);
    let verifier: crate::shard::TxnVerifier = Rc::new(move |v: TxnVerification| {
        let shard = s.upgrade().expect("the shard outlives its verifier");
        Box::pin(async move {
            let transactional_id = v.transactional_id.clone();
            let verify = TxnCall::Verify {
                transactional_id: v.transactional_id,
                producer_id: v.producer_id,
                producer_epoch: v.producer_epoch,
                partition: (v.topic, v.partition),
            };
            match call(&shard, &transactional_id, verify).await {
                Ok(TxnReply::Code(code)) => code,
                Ok(other) => unreachable!("Verify is answered with a code, not {other:?}"),
                Err(code) => code,
            }
        })
    });
    assert!(shard.txn_verifier.set(verifier).is_ok(), "one transaction coordinator per shard");
    coordinator
}
