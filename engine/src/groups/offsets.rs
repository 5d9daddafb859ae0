//! Committed offsets as records of the internal `__consumer_offsets` topic, in Kafka's formats,
//! so that tools which know Kafka's layout can read them.
//!
//! Key (version 1): group string, topic string, partition i32.
//! Value (version 3): offset i64, leader epoch i32, metadata string, commit timestamp i64.
//! A null value is a tombstone: the offset was deleted or expired.

pub use crate::metadata::OFFSETS_TOPIC;
const KEY_VERSION_OFFSET: i16 = 1;
const VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_i16(buf: &mut &[u8]) -> Option<i16> {
    let (head, rest) = buf.split_first_chunk::<2>()?;
    *buf = rest;
    Some(i16::from_be_bytes(*head))
}
fn get_i32(buf: &mut &[u8]) -> Option<i32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(i32::from_be_bytes(*head))
}
fn get_i64(buf: &mut &[u8]) -> Option<i64> {
    let (head, rest) = buf.split_first_chunk::<8>()?;
    *buf = rest;
    Some(i64::from_be_bytes(*head))
}
fn get_string(buf: &mut &[u8]) -> Option<String> {
    let len = get_i16(buf)?;
    if len < 0 || len as usize > buf.len() {
        return None;
    }
    let (s, rest) = buf.split_at(len as usize);
    *buf = rest;
    String::from_utf8(s.to_vec()).ok()
}

pub fn encode_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + group.len() + topic.len());
    out.extend_from_slice(&KEY_VERSION_OFFSET.to_be_bytes());
    put_string(&mut out, group);
    put_string(&mut out, topic);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

pub fn encode_value(c: &CommittedOffset) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + c.metadata.len());
    out.extend_from_slice(&VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&c.offset.to_be_bytes());
    out.extend_from_slice(&c.leader_epoch.to_be_bytes());
    put_string(&mut out, &c.metadata);
    out.extend_from_slice(&c.commit_timestamp_ms.to_be_bytes());
    out
}

/// Decodes an offset-commit key; None for other key kinds (group metadata) or damage.
pub fn decode_key(mut key: &[u8]) -> Option<(String, String, i32)> {
    let version = get_i16(&mut key)?;
    if version != 0 && version != KEY_VERSION_OFFSET {
        return None;
    }
    Some((get_string(&mut key)?, get_string(&mut key)?, get_i32(&mut key)?))
}

/// Decodes value versions 1 and 3 (those Kafka writes).
pub fn decode_value(mut value: &[u8]) -> Option<CommittedOffset> {
    let version = get_i16(&mut value)?;
    let offset = get_i64(&mut value)?;
    let leader_epoch = if version >= 3 { get_i32(&mut value)? } else { -1 };
    let metadata = get_string(&mut value)?;
    let commit_timestamp_ms = get_i64(&mut value)?;
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = CommittedOffset { offset: 42, leader_epoch: 3, metadata: "meta".into(), commit_timestamp_ms: 1234 };
        assert_eq!(decode_value(&encode_value(&c)), Some(c));
        assert_eq!(decode_key(&encode_key("g", "t", 7)), Some(("g".into(), "t".into(), 7)));
        assert_eq!(decode_key(&[0, 1, 0]), None);
    }
}
