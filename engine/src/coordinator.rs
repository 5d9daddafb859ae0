//! What the group and transaction coordinators share: which shard coordinates a key (a group
//! id, a transactional id), and the one way to call it there.
//!
//! A key belongs to the shard that owns its partition of the coordinator's internal topic
//! (Kafka's mapping, [`partition_for`]), so that the coordinator's state changes are appended
//! to a local log. This module sits with the coordinators, above `shard`: `groups`, `txn` and
//! the handlers use it, and it names neither coordinator (each passes its own [`Coordinator`]).
//!
//! The state topics are created as Kafka creates them: when a coordinator is first needed
//! (FindCoordinator, or any call to a coordinator), by asking the active controller, which
//! spreads their partitions over the live brokers. Until then they do not exist, and
//! coordinator calls are answered COORDINATOR_NOT_AVAILABLE.

use std::time::Duration;

use shardlog_protocol::error_code as ec;

use crate::config::BrokerConfig;
use crate::controller::{ControllerRequest, CONTROLLER_SHARD};
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
    /// The partitions the state topic is created with (`offsets.topic.num.partitions`,
    /// `transaction.state.log.num.partitions`).
    pub configured_partitions: fn(&BrokerConfig) -> i32,
}

impl Coordinator {
    /// The partition of the state topic that holds `key`, or None before the topic exists.
    pub fn partition(&self, meta: &ClusterMetadata, key: &str) -> Option<i32> {
        let topic = meta.topics.get(self.state_topic)?;
        Some(partition_for(key, topic.partitions.len()))
    }

    /// The shard that coordinates `key` on node `node_id`, or None when the state topic does
    /// not exist or another broker leads the key's partition (a copy held here as a follower
    /// does not coordinate).
    pub fn shard(&self, meta: &ClusterMetadata, node_id: i32, key: &str) -> Option<usize> {
        let topic = meta.topics.get(self.state_topic)?;
        topic
            .partitions
            .get(partition_for(key, topic.partitions.len()) as usize)
            .filter(|p| p.hosted && (p.replicas.is_empty() || p.leader == node_id))
            .map(|p| p.shard)
    }
}

/// How long a request that had the state topic created waits for this node to apply it,
/// before it is answered COORDINATOR_NOT_AVAILABLE (and the client retries).
const STATE_TOPIC_APPLY_WAIT: Duration = Duration::from_secs(2);

/// Whether the coordinator's state topic exists, after asking the active controller to create
/// it when it does not (as Kafka's brokers do when a coordinator is first looked for). The
/// controller creates it once however many ask: the others find it there. False when it could
/// not be created, or this node has not applied it within [`STATE_TOPIC_APPLY_WAIT`]; the
/// caller answers COORDINATOR_NOT_AVAILABLE, which clients retry.
pub async fn ensure_state_topic(shard: &Shard, coordinator: Coordinator) -> bool {
    let exists = || shard.metadata.borrow().topics.contains_key(coordinator.state_topic);
    if exists() {
        return true;
    }
    let request =
        ControllerRequest::CreateInternalTopic { name: coordinator.state_topic.to_string(), partitions: (coordinator.configured_partitions)(&shard.config) };
    match shard.call(CONTROLLER_SHARD, request).await {
        Ok(results) => {
            for (name, code, message) in results.into_iter().filter(|(_, code, _)| *code != ec::NONE) {
                tracing::warn!(topic = %name, code, message = ?message, "creating the {} coordinator's internal topic failed; clients retry", coordinator.name);
            }
        }
        Err(e) => tracing::warn!(error = %e, "the controller shard did not answer a request to create {}", coordinator.state_topic),
    }
    // Created at the active controller: this node may apply it a moment later.
    let deadline = std::time::Instant::now() + STATE_TOPIC_APPLY_WAIT;
    while !exists() {
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        let changed = shard.metadata_changed.notified();
        futures::select! {
            _ = futures::FutureExt::fuse(changed) => {}
            _ = futures::FutureExt::fuse(crate::runtime::sleep(deadline - now)) => {}
        }
    }
    true
}

/// Runs `call` on the shard that coordinates `key` and returns its reply. Err is the code to
/// answer the client with when there is no coordinator to ask here: COORDINATOR_NOT_AVAILABLE
/// while the state topic is being created or the shard did not answer, NOT_COORDINATOR when
/// another broker leads the key's partition. Clients retry both after finding the coordinator
/// again.
pub async fn coordinator_call<C: ShardCall>(shard: &Shard, coordinator: Coordinator, key: &str, call: C) -> Result<C::Reply, i16> {
    if !ensure_state_topic(shard, coordinator).await {
        return Err(ec::COORDINATOR_NOT_AVAILABLE);
    }
    // The metadata is read before the await: the borrow must not be held across it.
    let owner = {
        let meta = shard.metadata.borrow();
        coordinator.partition(&meta, key).map(|_| coordinator.shard(&meta, shard.config.node_id, key))
    };
    let owner = match owner {
        None => return Err(ec::COORDINATOR_NOT_AVAILABLE),
        Some(None) => return Err(ec::NOT_COORDINATOR),
        Some(Some(owner)) => owner,
    };
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
