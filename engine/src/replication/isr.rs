//! Leaders keep their ISR in step with their followers (Kafka's `maybeShrinkIsr` and
//! `maybeExpandIsr`): a follower that has not caught up for `replica.lag.time.max.ms` leaves
//! the ISR, and one that holds everything up to the high watermark joins it again. The leader
//! does not change the ISR itself: it asks the controller (AlterPartition), which checks the
//! leader and partition epochs, so a leader that lost its place cannot change anything.

use std::rc::Rc;
use std::time::Duration;

use shardlog_protocol::error_code::error_name;

use crate::controller::{AlterPartition, CONTROLLER_SHARD};
use crate::runtime;
use crate::shard::{partition_ops, Shard, TopicPartition};
use crate::storage::log::now_ms;

/// Looks at every led partition this often: a quarter of `replica.lag.time.max.ms`, so a
/// laggard leaves within 1.25 times it, and a caught-up follower joins within this.
fn check_interval(shard: &Shard) -> Duration {
    Duration::from_millis((shard.config.replication.lag_time_max_ms / 4).clamp(10, 5_000))
}

pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    runtime::spawn(async move {
        while !shard.shutting_down.get() {
            runtime::sleep(check_interval(&shard)).await;
            for (key, change) in wanted_changes(&shard) {
                let shard = shard.clone();
                runtime::spawn(async move { alter(&shard, key, change).await }).detach();
            }
        }
    })
    .detach();
}

/// The ISR changes the led partitions want, each marked in flight.
fn wanted_changes(shard: &Shard) -> Vec<(TopicPartition, AlterPartition)> {
    let now = now_ms();
    let lag_max_ms = shard.config.replication.lag_time_max_ms;
    let mut out = Vec::new();
    let partitions = shard.partitions.borrow();
    let mut leaders = shard.leaders.borrow_mut();
    for (key, leader) in leaders.iter_mut() {
        let Some(p) = partitions.get(key) else { continue };
        // A follower that has not reached this epoch's first offset may still hold a tail the
        // leader does not have (it has not truncated yet).
        let epoch_start = p.log.borrow().leader_epochs().entries().last().map_or(0, |e| e.start_offset);
        let Some(new_isr) = leader.wanted_isr(now, lag_max_ms, epoch_start) else { continue };
        leader.change_in_flight = true;
        out.push((
            key.clone(),
            AlterPartition {
                topic: key.0.clone(),
                partition: key.1,
                leader_id: leader.node_id,
                leader_epoch: leader.leader_epoch,
                partition_epoch: leader.partition_epoch,
                new_isr,
            },
        ));
    }
    out
}

async fn alter(shard: &Shard, key: TopicPartition, change: AlterPartition) {
    let (from, to) = (shard.leaders.borrow().get(&key).map(|l| l.isr.clone()).unwrap_or_default(), change.new_isr.clone());
    let answer = shard.call(CONTROLLER_SHARD, change).await;
    match answer {
        Ok(Ok(state)) => {
            tracing::info!(topic = %key.0, partition = key.1, ?from, to = ?state.isr, partition_epoch = state.partition_epoch, "ISR changed");
            if state.isr.len() < from.len() {
                shard.shard_probe.isr_shrinks.inc();
            } else if state.isr.len() > from.len() {
                shard.shard_probe.isr_expands.inc();
            }
            // The metadata brings the committed state to every shard; take it here at once, so
            // the high watermark and waiting acks=all writes see the new ISR without waiting.
            let mut leaders = shard.leaders.borrow_mut();
            if let Some(l) = leaders.get_mut(&key).filter(|l| l.leader_epoch == state.leader_epoch && l.partition_epoch < state.partition_epoch) {
                // A reassignment this change completed took replicas out (a node of an older
                // version answers without them: keep those known).
                let replicas = if state.replicas.is_empty() { l.replicas.clone() } else { state.replicas.clone() };
                l.update(state.partition_epoch, replicas, state.isr.clone(), now_ms());
            }
        }
        Ok(Err((code, message))) => {
            tracing::warn!(topic = %key.0, partition = key.1, ?from, ?to, error = error_name(code), message, "ISR change refused by the controller")
        }
        Err(e) => tracing::warn!(topic = %key.0, partition = key.1, ?from, ?to, error = %e, "ISR change not delivered to the controller shard"),
    }
    if let Some(l) = shard.leaders.borrow_mut().get_mut(&key) {
        l.change_in_flight = false;
    }
    if let Some(p) = shard.local_partition(&key.0, key.1) {
        partition_ops::refresh_high_watermark(shard, &p);
        p.replicated.notify_all();
    }
}
