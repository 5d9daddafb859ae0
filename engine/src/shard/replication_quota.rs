//! Replication quotas (KIP-73), as `kafka-reassign-partitions.sh --throttle` sets them: a
//! broker's `leader.replication.throttled.rate` bounds the bytes it serves, as a leader, to
//! followers of throttled replicas that are not in the ISR, and its
//! `follower.replication.throttled.rate` the bytes it fetches, as such a follower. Which
//! replicas are throttled is a topic's `leader.replication.throttled.replicas` /
//! `follower.replication.throttled.replicas` (`partition:broker,...` or `*`), read for this
//! broker's id. Over the rate, a leader leaves the throttled partitions' records out of its
//! answer and a follower leaves them out of its request, as Kafka's `ReplicationQuotaManager`
//! does; in-sync replicas are never held back, so acks=all and the high watermark are not
//! slowed. The rate is measured per shard, each shard taking an equal share of the broker's.
//! The leader side is asked by the shard's reads (`partition_ops::read`), the follower side by
//! the replica fetcher.

use std::cell::RefCell;

use crate::quota::manager::{Rate, WindowConfig};
use crate::shard::Shard;
use crate::storage::log::now_ms;

/// Which side of replication a quota bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Leader,
    Follower,
}

impl Side {
    /// The dynamic broker config with the rate, in bytes per second.
    pub fn rate_config(self) -> &'static str {
        match self {
            Side::Leader => "leader.replication.throttled.rate",
            Side::Follower => "follower.replication.throttled.rate",
        }
    }

    /// The topic config that lists the throttled replicas.
    pub fn replicas_config(self) -> &'static str {
        match self {
            Side::Leader => "leader.replication.throttled.replicas",
            Side::Follower => "follower.replication.throttled.replicas",
        }
    }
}

/// The bytes each side of one shard moved for throttled replicas, over
/// `replication.quota.window.num` windows of `replication.quota.window.size.seconds`.
pub struct ReplicationQuotas {
    leader: RefCell<Rate>,
    follower: RefCell<Rate>,
}

impl Default for ReplicationQuotas {
    fn default() -> Self {
        ReplicationQuotas { leader: RefCell::new(Rate::new(now_ms())), follower: RefCell::new(Rate::new(now_ms())) }
    }
}

impl ReplicationQuotas {
    fn rate(&self, side: Side) -> &RefCell<Rate> {
        match side {
            Side::Leader => &self.leader,
            Side::Follower => &self.follower,
        }
    }
}

/// Whether a `*.replication.throttled.replicas` value names `partition` on `broker`.
pub fn lists(value: &str, partition: i32, broker: i32) -> bool {
    let value = value.trim();
    value == "*"
        || value
            .split(',')
            .any(|entry| entry.split_once(':').is_some_and(|(p, b)| p.trim().parse::<i32>() == Ok(partition) && b.trim().parse::<i32>() == Ok(broker)))
}

/// Whether this broker's replica of the partition is throttled on `side`.
pub fn throttled(shard: &Shard, side: Side, topic: &str, partition: i32) -> bool {
    let meta = shard.metadata.borrow();
    meta.topics.get(topic).and_then(|t| t.configs.get(side.replicas_config())).is_some_and(|v| lists(v, partition, shard.config.node_id))
}

/// This shard's share of the broker's rate on `side`, in bytes per second; None when unbounded
/// (unset, or Kafka's default of Long.MAX_VALUE).
fn bound(shard: &Shard, side: Side) -> Option<f64> {
    let rate: u64 = shard.metadata.borrow().broker_configs.get(side.rate_config())?.trim().parse().ok()?;
    (rate < i64::MAX as u64).then(|| rate as f64 / shard.shard_count().max(1) as f64)
}

fn window(shard: &Shard) -> WindowConfig {
    shard.config.replication.quota_window
}

/// Whether throttled replicas on `side` have used up this shard's share of the rate.
pub fn exceeded(shard: &Shard, side: Side) -> bool {
    let Some(bound) = bound(shard, side) else { return false };
    shard.replication_quotas.rate(side).borrow_mut().measure(window(shard), now_ms()) > bound
}

/// Counts `bytes` moved for a throttled replica on `side`.
pub fn record(shard: &Shard, side: Side, bytes: usize) {
    if bytes > 0 {
        shard.replication_quotas.rate(side).borrow_mut().record(window(shard), bytes as f64, now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::lists;

    #[test]
    fn throttled_replica_lists_name_partitions_on_brokers_or_everything() {
        assert!(lists("*", 7, 3));
        assert!(lists(" * ", 7, 3));
        assert!(lists("0:1,1:2, 7:3", 7, 3));
        assert!(!lists("0:1,1:2,7:4", 7, 3));
        assert!(!lists("", 0, 0));
        assert!(!lists("3", 3, 3));
        assert!(!lists("x:y,7", 7, 3));
    }
}
