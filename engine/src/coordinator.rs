//! What the group and transaction coordinators share: which shard coordinates a key (a group
//! id, a transactional id), and the one way to call it there.
//!
//! A key belongs to the shard that owns its partition of the coordinator's internal topic
//! (Kafka's mapping, [`partition_for`]), so that the coordinator's state changes are appended
//! to a local log. This module sits with the coordinators, above `shard`: `groups`, `txn` and
//! the handlers use it, and it names neither coordinator (each passes its own [`Coordinator`]).
//!
//! With replicated state topics a coordinator follows the leadership of its partitions, as
//! Kafka's do: when this broker becomes the leader of a state partition, the coordinator of the
//! shard that holds it replays that partition's log (what the previous leader wrote, copied
//! here by replication) before it answers for any of its keys; when it stops leading one, it
//! forgets that partition's keys. [`LoadedPartitions`] keeps which partitions a coordinator
//! answers for, and every call travels [`Coordinated`], so that a shard that has not loaded
//! (or has just given up) a partition answers NOT_COORDINATOR instead of empty state.
//!
//! The state topics are created as Kafka creates them: when a coordinator is first needed
//! (FindCoordinator, or any call to a coordinator), by asking the active controller, which
//! spreads their partitions over the live brokers. Until then they do not exist, and
//! coordinator calls are answered COORDINATOR_NOT_AVAILABLE.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use shardlog_protocol::error_code as ec;

use crate::config::BrokerConfig;
use crate::controller::{ControllerRequest, CONTROLLER_SHARD};
use crate::metadata::ClusterMetadata;
use crate::shard::router::ShardCall;
use crate::shard::Shard;
use crate::storage::log::Partition;

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
    let (partition, owner) = {
        let meta = shard.metadata.borrow();
        (coordinator.partition(&meta, key), coordinator.shard(&meta, shard.config.node_id, key))
    };
    let (partition, owner) = match (partition, owner) {
        (None, _) => return Err(ec::COORDINATOR_NOT_AVAILABLE),
        (Some(_), None) => return Err(ec::NOT_COORDINATOR),
        (Some(partition), Some(owner)) => (partition, owner),
    };
    match shard.call(owner, Coordinated { partition, call }).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!(coordinator = coordinator.name, key, error = %e, "coordinator unreachable");
            Err(ec::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

/// A call to a coordinator, with the state partition its key belongs to: the coordinator shard
/// answers Err(NOT_COORDINATOR) unless it has loaded that partition (the caller's shard may
/// have applied a leadership change a moment before the coordinator's shard did).
#[derive(Debug)]
pub struct Coordinated<C> {
    pub partition: i32,
    pub call: C,
}

impl<C: ShardCall> ShardCall for Coordinated<C> {
    type Reply = Result<C::Reply, i16>;
}

/// Registers a coordinator's service for calls of type `C`, which arrive [`Coordinated`]: a
/// call for a state partition the coordinator has not loaded (`loaded` says which it has) is
/// answered NOT_COORDINATOR, and the client looks for the coordinator again.
pub fn serve<T, C, F, Fut>(shard: &Rc<Shard>, coordinator: &Rc<T>, loaded: fn(&T) -> &LoadedPartitions, handler: F)
where
    T: 'static,
    C: ShardCall,
    F: Fn(Rc<T>, Rc<Shard>, C) -> Fut + 'static,
    Fut: std::future::Future<Output = C::Reply> + 'static,
{
    let coordinator = coordinator.clone();
    let handler = Rc::new(handler);
    shard.serve(move |shard, Coordinated { partition, call }: Coordinated<C>| {
        let (coordinator, handler) = (coordinator.clone(), handler.clone());
        async move {
            if !loaded(&coordinator).owns(partition) {
                return Err(ec::NOT_COORDINATOR);
            }
            Ok(handler(coordinator, shard, call).await)
        }
    });
}

/// The state partitions one shard's coordinator answers for, each with the leader epoch it was
/// loaded in. Kept in step with the metadata by [`LoadedPartitions::changes`].
#[derive(Debug, Default)]
pub struct LoadedPartitions(RefCell<HashMap<i32, i32>>);

/// What a coordinator must do after a metadata change: forget the keys of `unload` (in that
/// order first), then replay each partition of `load` (which were forgotten too when they were
/// loaded before, in an older leader epoch).
pub struct LoadChanges {
    pub unload: Vec<i32>,
    pub load: Vec<Rc<Partition>>,
}

impl LoadedPartitions {
    pub fn owns(&self, partition: i32) -> bool {
        self.0.borrow().contains_key(&partition)
    }

    /// Compares the loaded partitions with what this shard should answer for now: the
    /// partitions of the state topic it holds and this broker leads (or that have no other
    /// replica). A partition whose leader epoch changed is unloaded and loaded again: another
    /// leader may have written to it in between. Marks the result as done: the caller applies
    /// it at once, without awaiting in between.
    pub fn changes(&self, shard: &Shard, coordinator: Coordinator) -> LoadChanges {
        let node_id = shard.config.node_id;
        let wanted: HashMap<i32, (i32, Rc<Partition>)> = {
            let meta = shard.metadata.borrow();
            let partitions = meta.topics.get(coordinator.state_topic).map_or(&[][..], |t| &t.partitions[..]);
            partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.hosted && p.shard == shard.id && (p.replicas.is_empty() || p.leader == node_id))
                .filter_map(|(i, p)| shard.local_partition(coordinator.state_topic, i as i32).map(|log| (i as i32, (p.leader_epoch, log))))
                .collect()
        };
        let mut loaded = self.0.borrow_mut();
        let epochs: HashMap<i32, i32> = wanted.iter().map(|(p, (epoch, _))| (*p, *epoch)).collect();
        let (unload, to_load) = leadership_diff(&loaded, &epochs);
        for p in &unload {
            loaded.remove(p);
        }
        let mut load = Vec::new();
        for p in to_load {
            let (epoch, log) = &wanted[&p];
            loaded.insert(p, *epoch);
            load.push(log.clone());
        }
        LoadChanges { unload, load }
    }
}

/// What changes between the loaded state partitions and the wanted ones (each with its leader
/// epoch): (to unload, to load), sorted. A partition whose epoch changed is in both.
fn leadership_diff(loaded: &HashMap<i32, i32>, wanted: &HashMap<i32, i32>) -> (Vec<i32>, Vec<i32>) {
    let mut unload: Vec<i32> = loaded.iter().filter(|(p, epoch)| wanted.get(p) != Some(epoch)).map(|(p, _)| *p).collect();
    let mut load: Vec<i32> = wanted.iter().filter(|(p, epoch)| loaded.get(p) != Some(epoch)).map(|(p, _)| *p).collect();
    unload.sort_unstable();
    load.sort_unstable();
    (unload, load)
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
    fn leadership_diff_reloads_a_partition_led_again_in_a_new_epoch() {
        let map = |pairs: &[(i32, i32)]| pairs.iter().copied().collect::<HashMap<i32, i32>>();
        // 0 stays, 1 is lost, 2 is led again after another leader's epoch, 3 is new.
        let (unload, load) = leadership_diff(&map(&[(0, 5), (1, 5), (2, 5)]), &map(&[(0, 5), (2, 7), (3, 1)]));
        assert_eq!((unload, load), (vec![1, 2], vec![2, 3]));
        assert_eq!(leadership_diff(&map(&[(0, 1)]), &map(&[(0, 1)])), (vec![], vec![]));
        assert_eq!(leadership_diff(&map(&[]), &map(&[(4, 0)])), (vec![], vec![4]));
    }

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99162322);
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
    }
}
