//! Partition replication, as Kafka does it on the wire: followers copy their leaders' logs
//! with replica Fetch requests (`fetcher`), and leaders keep the ISR in step with what their
//! followers hold by asking the controller for changes (`isr`).
//!
//! Each shard replicates the partitions it owns: the shard of a follower's copy fetches from
//! the leader broker straight, one fetcher per leader broker, and the leader's shard answers
//! (`shard::partition_ops::fetch`, which also moves the high watermark). It sits above the
//! shard and the inter-broker client, beside the coordinators.

pub mod fetcher;
pub mod isr;

use std::rc::Rc;

use crate::shard::Shard;

/// Starts this shard's replica fetchers and its ISR checks.
pub fn start(shard: &Rc<Shard>) {
    fetcher::start(shard);
    isr::start(shard);
}
