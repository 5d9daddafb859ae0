//! Transaction metadata as records of the internal `__transaction_state` topic, in Kafka's
//! formats (TransactionLogKey v0, TransactionLogValue v0 and v1), so tools that know Kafka's
//! layout can read them.
//!
//! Key: version i16 (0), transactional id string.
//! Value v0: version i16 (0), producer id i64, producer epoch i16, transaction timeout i32,
//! status i8, partitions (nullable array of topic string and array of partition i32),
//! last update timestamp i64, start timestamp i64. A null value is a tombstone.
//! Value v1 (KIP-890, written once `transaction.version` is 1 or more, as Kafka does): the same
//! fields in the flexible encoding (compact strings and arrays, tagged-field sections), with
//! three tagged fields that transactions v2 needs to survive a restart or a coordinator move:
//! the previous producer id (tag 0), the next producer id (tag 1) and the client's transaction
//! version (tag 2). v0 cannot carry them, which is why a cluster at transaction.version 0 keeps
//! writing v0 (older shardlog versions and Kafka at TV 0 read only that).

use std::collections::BTreeSet;

use crate::internal_log::fields::{get_i16, get_i32, get_i64, get_i8, get_string, put_string};

pub use crate::metadata::TRANSACTION_STATE_TOPIC;
const KEY_VERSION: i16 = 0;
/// The flexible TransactionLogValue, for clusters at transaction.version 1 and above.
pub const VALUE_VERSION_FLEXIBLE: i16 = 1;
const TAG_PREVIOUS_PRODUCER_ID: u32 = 0;
const TAG_NEXT_PRODUCER_ID: u32 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u32 = 2;
/// Tagged fields one value may carry: Kafka defines three; a damaged count stops here.
const TAGGED_FIELDS_MAX: u32 = 64;
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
    /// The producer id this transactional id had before its last rotation (an epoch that
    /// overflowed at the end of a transaction), or -1: so that a retried EndTxn from the old id
    /// is recognised.
    pub previous_producer_id: i64,
    /// The producer id the transaction moves to once its markers are written (set while a
    /// transactions-v2 end overflows the epoch), or -1.
    pub next_producer_id: i64,
    /// The transaction version the client spoke in its last add or end (2: the epoch is bumped
    /// at every end, KIP-890 part 2); decides how a retried EndTxn is recognised.
    pub client_transaction_version: i16,
}

impl TxnMetadata {
    /// A transactional id's first state: its producer id at the epoch InitProducerId gives.
    pub fn new(producer_id: i64, producer_epoch: i16, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            producer_epoch,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }
    }
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

/// The value in `version` 0 or [`VALUE_VERSION_FLEXIBLE`] (see [`value_version`]).
pub fn encode_value(m: &TxnMetadata, version: i16) -> Vec<u8> {
    let flexible = version >= VALUE_VERSION_FLEXIBLE;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&(if flexible { VALUE_VERSION_FLEXIBLE } else { 0 }).to_be_bytes());
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
    put_count(&mut out, topics.len(), flexible);
    for (topic, partitions) in topics {
        if flexible {
            put_uvarint(&mut out, topic.len() as u32 + 1);
            out.extend_from_slice(topic.as_bytes());
        } else {
            put_string(&mut out, topic);
        }
        put_count(&mut out, partitions.len(), flexible);
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
        if flexible {
            put_uvarint(&mut out, 0);
        }
    }
    out.extend_from_slice(&m.last_update_ms.to_be_bytes());
    out.extend_from_slice(&m.start_ms.to_be_bytes());
    if flexible {
        // Tagged fields at their default are left out, as Kafka's generated writer does.
        let mut tagged: Vec<(u32, Vec<u8>)> = Vec::new();
        if m.previous_producer_id != -1 {
            tagged.push((TAG_PREVIOUS_PRODUCER_ID, m.previous_producer_id.to_be_bytes().to_vec()));
        }
        if m.next_producer_id != -1 {
            tagged.push((TAG_NEXT_PRODUCER_ID, m.next_producer_id.to_be_bytes().to_vec()));
        }
        if m.client_transaction_version != 0 {
            tagged.push((TAG_CLIENT_TRANSACTION_VERSION, m.client_transaction_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut out, tagged.len() as u32);
        for (tag, data) in tagged {
            put_uvarint(&mut out, tag);
            put_uvarint(&mut out, data.len() as u32);
            out.extend_from_slice(&data);
        }
    }
    out
}

/// The TransactionLogValue version a cluster at `transaction_version` writes (Kafka's
/// `TransactionVersion.transactionLogValueVersion`).
pub fn value_version(transaction_version: i16) -> i16 {
    if transaction_version >= 1 {
        VALUE_VERSION_FLEXIBLE
    } else {
        0
    }
}

fn put_count(out: &mut Vec<u8>, count: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, count as u32 + 1);
    } else {
        out.extend_from_slice(&(count as i32).to_be_bytes());
    }
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An unsigned varint of at most five bytes, as Kafka reads them.
fn get_uvarint(buf: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A count: i32 in v0, a compact (count + 1) uvarint in v1, where 0 is null. Null reads as 0.
fn get_count(buf: &mut &[u8], flexible: bool) -> Option<i64> {
    if flexible {
        Some(i64::from(get_uvarint(buf)?) - 1)
    } else {
        get_i32(buf).map(i64::from)
    }
}

fn get_compact_string(buf: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(get_uvarint(buf)?.checked_sub(1)?).ok()?;
    let s = String::from_utf8(buf.get(..len)?.to_vec()).ok()?;
    *buf = &buf[len..];
    Some(s)
}

/// Skips a tagged-field section, handing each known field's bytes to `field`.
fn get_tagged_fields(buf: &mut &[u8], mut field: impl FnMut(u32, &[u8]) -> Option<()>) -> Option<()> {
    let count = get_uvarint(buf)?;
    if count > TAGGED_FIELDS_MAX {
        return None;
    }
    for _ in 0..count {
        let tag = get_uvarint(buf)?;
        let size = usize::try_from(get_uvarint(buf)?).ok()?;
        let data = buf.get(..size)?;
        field(tag, data)?;
        *buf = &buf[size..];
    }
    Some(())
}

pub fn decode_value(mut value: &[u8]) -> Option<TxnMetadata> {
    let version = get_i16(&mut value)?;
    if !(0..=VALUE_VERSION_FLEXIBLE).contains(&version) {
        return None;
    }
    let flexible = version >= VALUE_VERSION_FLEXIBLE;
    let producer_id = get_i64(&mut value)?;
    let producer_epoch = get_i16(&mut value)?;
    let timeout_ms = get_i32(&mut value)?;
    let state = TxnState::from_id(get_i8(&mut value)?)?;
    let topics = get_count(&mut value, flexible)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = if flexible { get_compact_string(&mut value)? } else { get_string(&mut value)? };
        let count = get_count(&mut value, flexible)?;
        if count < 0 || count as usize > value.len() / 4 || partitions.len() + count as usize > TXN_PARTITIONS_MAX {
            return None;
        }
        for _ in 0..count {
            partitions.insert((topic.clone(), get_i32(&mut value)?));
        }
        if flexible {
            get_tagged_fields(&mut value, |_, _| Some(()))?;
        }
    }
    let last_update_ms = get_i64(&mut value)?;
    let start_ms = get_i64(&mut value)?;
    let mut m = TxnMetadata::new(producer_id, producer_epoch, timeout_ms, last_update_ms);
    m.state = state;
    m.partitions = partitions;
    m.start_ms = start_ms;
    if flexible {
        get_tagged_fields(&mut value, |tag, mut data| {
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => m.previous_producer_id = get_i64(&mut data)?,
                TAG_NEXT_PRODUCER_ID => m.next_producer_id = get_i64(&mut data)?,
                TAG_CLIENT_TRANSACTION_VERSION => m.client_transaction_version = get_i16(&mut data)?,
                // A field a later version added: kept by whoever wrote it, unknown here.
                _ => {}
            }
            Some(())
        })?;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut m = TxnMetadata::new(4000, 3, 60_000, 10);
        m.state = TxnState::Ongoing;
        m.partitions = BTreeSet::from([("a".into(), 0), ("a".into(), 2), ("b".into(), 1)]);
        m.start_ms = 5;
        assert_eq!(decode_value(&encode_value(&m, 0)), Some(m.clone()));
        assert_eq!(decode_key(&encode_key("txn-1")).as_deref(), Some("txn-1"));
        let bytes = encode_value(&m, 0);
        for cut in 0..bytes.len() {
            assert_eq!(decode_value(&bytes[..cut]), None, "truncated at {cut}");
        }
    }

    #[test]
    fn flexible_values_keep_the_transactions_v2_fields() {
        let mut m = TxnMetadata::new(4000, 7, 60_000, 10);
        m.state = TxnState::PrepareCommit;
        m.partitions = BTreeSet::from([("a".into(), 0), ("b".into(), 1)]);
        m.start_ms = 5;
        m.previous_producer_id = 3999;
        m.next_producer_id = 4001;
        m.client_transaction_version = 2;
        let bytes = encode_value(&m, VALUE_VERSION_FLEXIBLE);
        assert_eq!(&bytes[..2], &[0, 1], "version 1");
        assert_eq!(decode_value(&bytes), Some(m.clone()));
        for cut in 0..bytes.len() {
            assert_eq!(decode_value(&bytes[..cut]), None, "truncated at {cut}");
        }
        // v0 cannot carry them: they read back at their defaults.
        let v0 = decode_value(&encode_value(&m, 0)).unwrap();
        assert_eq!((v0.previous_producer_id, v0.next_producer_id, v0.client_transaction_version), (-1, -1, 0));
        // Defaults are not written at all; the section is then one zero byte.
        let plain = TxnMetadata::new(1, 0, 1000, 0);
        let bytes = encode_value(&plain, VALUE_VERSION_FLEXIBLE);
        assert_eq!(bytes.last(), Some(&0));
        assert_eq!(decode_value(&bytes), Some(plain));
        assert_eq!((value_version(0), value_version(1), value_version(2)), (0, 1, 1));
    }

    #[test]
    fn a_flexible_value_in_kafkas_bytes_decodes() {
        // Kafka's TransactionLogValue v1 writer, by hand: producer 42, epoch 1, timeout 1000,
        // CompleteCommit, no partitions, times 9 and 8, ClientTransactionVersion 2 and an
        // unknown tag 7 that a later version might add.
        let mut bytes = vec![0, 1];
        bytes.extend_from_slice(&42i64.to_be_bytes());
        bytes.extend_from_slice(&1i16.to_be_bytes());
        bytes.extend_from_slice(&1000i32.to_be_bytes());
        bytes.push(4);
        bytes.push(1); // empty compact array
        bytes.extend_from_slice(&9i64.to_be_bytes());
        bytes.extend_from_slice(&8i64.to_be_bytes());
        bytes.extend_from_slice(&[2, 2, 2, 0, 2, 7, 1, 0xff]);
        let m = decode_value(&bytes).unwrap();
        assert_eq!((m.producer_id, m.producer_epoch, m.state, m.client_transaction_version), (42, 1, TxnState::CompleteCommit, 2));
        assert_eq!((m.last_update_ms, m.start_ms, m.next_producer_id), (9, 8, -1));
    }
}
