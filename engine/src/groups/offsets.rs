//! Committed offsets as records of the internal `__consumer_offsets` topic, in Kafka's formats,
//! so that tools which know Kafka's layout can read them.
//!
//! Key (version 1): group string, topic string, partition i32.
//! Value (version 3): offset i64, leader epoch i32, metadata string, commit timestamp i64.
//! A null value is a tombstone: the offset was deleted or expired.
//!
//! A classic group's membership (Kafka's GroupMetadata), written when a rebalance completes and
//! when the group empties, so that a coordinator taking the partition over knows the members:
//! key (version 2): group string; value (version 3): protocol type string, generation i32,
//! protocol nullable string, leader nullable string, state timestamp i64, and the members, each
//! member id, instance id (nullable), client id, client host strings, rebalance and session
//! timeouts i32, subscription and assignment bytes.

use bytes::Bytes;

use crate::internal_log::fields::{get_bytes, get_i16, get_i32, get_i64, get_nullable_string, get_string, put_bytes, put_nullable_string, put_string};
pub use crate::metadata::OFFSETS_TOPIC;
const KEY_VERSION_OFFSET: i16 = 1;
const VALUE_VERSION: i16 = 3;
const KEY_VERSION_GROUP: i16 = 2;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
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

/// A classic group's membership as its GroupMetadata record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

pub fn encode_group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.extend_from_slice(&KEY_VERSION_GROUP.to_be_bytes());
    put_string(&mut out, group);
    out
}

/// Decodes a GroupMetadata key; None for offset keys or damage.
pub fn decode_group_key(mut key: &[u8]) -> Option<String> {
    (get_i16(&mut key)? == KEY_VERSION_GROUP).then_some(())?;
    get_string(&mut key)
}

pub fn encode_group_value(g: &StoredGroup) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
    put_string(&mut out, &g.protocol_type);
    out.extend_from_slice(&g.generation.to_be_bytes());
    put_nullable_string(&mut out, g.protocol.as_deref());
    put_nullable_string(&mut out, g.leader.as_deref());
    out.extend_from_slice(&g.state_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(g.members.len() as i32).to_be_bytes());
    for m in &g.members {
        put_string(&mut out, &m.member_id);
        put_nullable_string(&mut out, m.instance_id.as_deref());
        put_string(&mut out, &m.client_id);
        put_string(&mut out, &m.client_host);
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

/// Decodes GroupMetadata values of versions 0 to 3 (the non-flexible ones Kafka has written);
/// None for other versions or damage. The member count is not trusted: members are read while
/// the bytes last.
pub fn decode_group_value(mut value: &[u8]) -> Option<StoredGroup> {
    let version = get_i16(&mut value)?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return None;
    }
    let protocol_type = get_string(&mut value)?;
    let generation = get_i32(&mut value)?;
    let protocol = get_nullable_string(&mut value)?;
    let leader = get_nullable_string(&mut value)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut value)? } else { -1 };
    let count = get_i32(&mut value)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = get_string(&mut value)?;
        let instance_id = if version >= 3 { get_nullable_string(&mut value)? } else { None };
        let client_id = get_string(&mut value)?;
        let client_host = get_string(&mut value)?;
        let session_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
            let session = get_i32(&mut value)?;
            (session, session)
        } else {
            let rebalance = get_i32(&mut value)?;
            (rebalance, get_i32(&mut value)?)
        };
        let subscription = get_bytes(&mut value)?;
        let assignment = get_bytes(&mut value)?;
        members.push(StoredMember { member_id, instance_id, client_id, client_host, rebalance_timeout_ms, session_timeout_ms, subscription, assignment });
    }
    Some(StoredGroup { protocol_type, generation, protocol, leader, state_timestamp_ms, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_metadata_round_trips_and_damage_is_refused() {
        let member = |id: &str, instance: Option<&str>| StoredMember {
            member_id: id.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            subscription: Bytes::from_static(b"sub"),
            assignment: Bytes::from_static(b"assigned"),
        };
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 99,
            members: vec![member("m1", None), member("m2", Some("i2"))],
        };
        let bytes = encode_group_value(&g);
        assert_eq!(decode_group_value(&bytes), Some(g.clone()));
        assert_eq!(decode_group_key(&encode_group_key("grp")), Some("grp".into()));
        assert_eq!(decode_key(&encode_group_key("grp")), None, "not an offset key");
        assert_eq!(decode_group_key(&encode_key("g", "t", 1)), None, "not a group key");
        // Every truncation fails cleanly; a huge member count does not allocate for it.
        for cut in 0..bytes.len() {
            assert_eq!(decode_group_value(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut lying = encode_group_value(&StoredGroup { members: vec![], ..g });
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_group_value(&lying), None);
    }

    #[test]
    fn round_trip() {
        let c = CommittedOffset { offset: 42, leader_epoch: 3, metadata: "meta".into(), commit_timestamp_ms: 1234 };
        assert_eq!(decode_value(&encode_value(&c)), Some(c));
        assert_eq!(decode_key(&encode_key("g", "t", 7)), Some(("g".into(), "t".into(), 7)));
        assert_eq!(decode_key(&[0, 1, 0]), None);
    }
}
