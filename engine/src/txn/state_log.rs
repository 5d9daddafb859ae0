//! Transaction metadata as records of the internal `__transaction_state` topic, in Kafka's
//! formats (TransactionLogKey v0, TransactionLogValue v0), so tools that know Kafka's layout
//! can read them.
//!
//! Key: version i16 (0), transactional id string.
//! Value: version i16 (0), producer id i64, producer epoch i16, transaction timeout i32,
//! status i8, partitions (nullable array of topic string and array of partition i32),
//! last update timestamp i64, start timestamp i64. A null value is a tombstone.

use std::collections::BTreeSet;

use crate::internal_log::fields::{get_i16, get_i32, get_i64, get_i8, get_string, put_string};

pub use crate::metadata::TRANSACTION_STATE_TOPIC;
const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;
/// Partitions one transaction may touch, so that a damaged record cannot ask for an
/// unbounded allocation while it is replayed.
pub const TXN_PARTITIONS_MAX: usize = 100_000;

/// Kafka's `TransactionState`, with its on-disk ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_id(id: i8) -> Option<TxnState> {
        use TxnState::*;
        Some(match id {
            0 => Empty,
            1 => Ongoing,
            2 => PrepareCommit,
            3 => PrepareAbort,
            4 => CompleteCommit,
            5 => CompleteAbort,
            6 => Dead,
            7 => PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name Kafka's admin APIs use (DescribeTransactions, ListTransactions).
    pub fn name(self) -> &'static str {
        use TxnState::*;
        match self {
            Empty => "Empty",
            Ongoing => "Ongoing",
            PrepareCommit => "PrepareCommit",
            PrepareAbort => "PrepareAbort",
            CompleteCommit => "CompleteCommit",
            CompleteAbort => "CompleteAbort",
            Dead => "Dead",
            PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the open transaction began (its first AddPartitions or AddOffsets), or -1.
    pub start_ms: i64,
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.extend_from_slice(&KEY_VERSION.to_be_bytes());
    put_string(&mut out, transactional_id);
    out
}

pub fn decode_key(mut key: &[u8]) -> Option<String> {
    if get_i16(&mut key)? != KEY_VERSION {
        return None;
    }
    get_string(&mut key)
}

pub fn encode_value(m: &TxnMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&m.producer_id.to_be_bytes());
    out.extend_from_slice(&m.producer_epoch.to_be_bytes());
    out.extend_from_slice(&m.timeout_ms.to_be_bytes());
    out.push(m.state as u8);
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, list)) if *t == topic.as_str() => list.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (topic, partitions) in topics {
        put_string(&mut out, topic);
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    out
}

pub fn decode_value(mut value: &[u8]) -> Option<TxnMetadata> {
    if get_i16(&mut value)? != VALUE_VERSION {
        return None;
    }
    let producer_id = get_i64(&mut value)?;
    let producer_epoch = get_i16(&mut value)?;
    let timeout_ms = get_i32(&mut value)?;
    let state = TxnState::from_id(get_i8(&mut value)?)?;
    let topics = get_i32(&mut value)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut value)?;
        let count = get_i32(&mut value)?;
        if count < 0 || count as usize > value.len() / 4 || partitions.len() + count as usize > TXN_PARTITIONS_MAX {
            return None;
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), get_i32(&mut value)?));
        }
    }
    let last_update_ms = get_i64(&mut value)?;
    let start_ms = get_i64(&mut value)?;
    Some(TxnMetadata { producer_id, producer_epoch, timeout_ms, state, partitions, last_update_ms, start_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let m = TxnMetadata {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeSet::from([("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]),
            last_update_ms: 10,
            start_ms: 5,
        };
        assert_eq!(decode_value(&encode_value(&m)), Some(m.clone()));
        assert_eq!(decode_key(&encode_key("txn-1")).as_deref(), Some("txn-1"));
        let bytes = encode_value(&m);
        for cut in 0..bytes.len() {
            assert_eq!(decode_value(&bytes[..cut]), None, "truncated at {cut}");
        }
    }
}
