//! What the group and transaction coordinators share: which shard coordinates a key (a group
//! id, a transactional id), and the one way to call it there.
//!
//! A key belongs to the shard that owns its partition of the coordinator's internal topic
//! (Kafka's mapping, [`partition_for`]), so that the coordinator's state changes are appended
//! to a local log. This module sits with the coordinators, above `shard`: `groups`, `txn` and
//! the handlers use it, and it names neither coordinator (each passes its own [`Coordinator`]).

use shardlog_protocol::error_code as ec;

use crate::metadata::ClusterMetadata;
use crate::shard::router::ShardCall;
use crate::shard::Shard;

/// A coordinator as its callers find it: by the internal topic that holds its state.
#[derive(Debug, Clone, Copy)]
pub struct Coordinator {
    /// For log lines: "group", "transaction".
    pub name: &'static str,
    /// `__consumer_offsets`, `__transaction_state`.
    pub state_topic: &'static str,
}

impl Coordinator {
    /// The partition of the state topic that holds `key`, or None before the topic exists.
    pub fn partition(&self, meta: &ClusterMetadata, key: &str) -> Option<i32> {
        let topic = meta.topics.get(self.state_topic)?;
        Some(partition_for(key, topic.partitions.len()))
    }

    /// The shard that coordinates `key`, or None before the state topic exists.
    pub fn shard(&self, meta: &ClusterMetadata, key: &str) -> Option<usize> {
        let topic = meta.topics.get(self.state_topic)?;
        topic.partitions.get(partition_for(key, topic.partitions.len()) as usize).filter(|p| p.hosted).map(|p| p.shard)
    }
}

/// Runs `call` on the shard that coordinates `key` and returns its reply. Err is the code to
/// answer the client with when there is no coordinator to ask (the state topic does not exist
/// yet, or the shard did not answer): COORDINATOR_NOT_AVAILABLE, which clients retry after
/// finding the coordinator again.
pub async fn coordinator_call<C: ShardCall>(shard: &Shard, coordinator: Coordinator, key: &str, call: C) -> Result<C::Reply, i16> {
    // The metadata is read before the await: the borrow must not be held across it.
    let owner = coordinator.shard(&shard.metadata.borrow(), key);
    let Some(owner) = owner else { return Err(ec::COORDINATOR_NOT_AVAILABLE) };
    shard.call(owner, call).await.map_err(|e| {
        tracing::warn!(coordinator = coordinator.name, key, error = %e, "coordinator unreachable");
        ec::COORDINATOR_NOT_AVAILABLE
    })
}

/// Java's `String.hashCode`, which Kafka uses to map a key to its coordinator partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The coordinator partition of a key (a group's `__consumer_offsets` partition, a
/// transactional id's `__transaction_state` partition), as Kafka computes it.
pub fn partition_for(key: &str, partitions: usize) -> i32 {
    let h = java_string_hash(key);
    // Kafka's Utils.abs: Integer.MIN_VALUE maps to 0.
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    (abs as usize % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
    }
}
