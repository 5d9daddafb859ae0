//! KIP-599's controller mutation quota, as CreateTopics, CreatePartitions and DeleteTopics take
//! it: each topic's partitions come out of the client's token bucket
//! (`controller_mutation_rate`, partitions per second). From the versions Kafka made strict
//! (CreateTopics v6, CreatePartitions v3, DeleteTopics v5) a topic that finds the bucket below
//! zero is refused with THROTTLING_QUOTA_EXCEEDED, and every topic after it in the request too;
//! the topic that takes the bucket below zero still goes through, as in Kafka. Older versions
//! are permissive: everything is done and only the throttle time tells the client to slow down.
//! Either way the response carries the throttle time and the connection is muted for it.
//!
//! Kafka measures this at the active controller; here each broker measures the requests it
//! takes, on its controller shard (where they go next anyway), so that an admin client's
//! connections to one broker share one bucket whatever shard they land on. Topics the request
//! cannot create or delete anyway (already there, not there, not authorized, a validate-only
//! request) take nothing.

use shardlog_protocol::error_code as ec;

use super::Context;
use crate::quota::manager::{QuotaType, TakeMutations};

/// THROTTLING_QUOTA_EXCEEDED with Kafka's message, for a refused topic.
pub fn exceeded() -> (i16, Option<String>) {
    (ec::THROTTLING_QUOTA_EXCEEDED, Some(String::from("The throttling quota has been exceeded.")))
}

/// What the bucket answered for one request.
pub struct Taken {
    /// Per topic asked about, in order: whether it may go on.
    pub allowed: Vec<bool>,
    /// For the response; the connection is muted this long (KIP-219).
    pub throttle_ms: i32,
}

/// Takes each of `topics` (its partitions to create or delete) from the client's bucket,
/// strict from request version `strict_since`. None: the client has no
/// `controller_mutation_rate` (or the controller shard did not answer), and every topic may go
/// on.
pub async fn take(ctx: &Context<'_>, strict_since: i16, topics: Vec<i64>) -> Option<Taken> {
    if topics.is_empty() {
        return None;
    }
    let quota = ctx.client_quota(QuotaType::ControllerMutation)?;
    let strict = ctx.header.api_version >= strict_since;
    let call = TakeMutations { config: ctx.config().quota_window, quota: quota.clone(), strict, topics };
    let (allowed, throttle_ms) = match ctx.call(crate::controller::CONTROLLER_SHARD, call).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!(error = %e, "controller_mutation_rate not measured for a request: the controller shard did not answer");
            return None;
        }
    };
    if throttle_ms > 0 {
        tracing::debug!(user = %quota.user_tag, client_id = %quota.client_tag, bound = quota.bound, throttle_ms, strict, "client over its controller_mutation_rate: throttled");
        ctx.connection.mute_for(throttle_ms);
    }
    Some(Taken { allowed, throttle_ms: i32::try_from(throttle_ms).unwrap_or(i32::MAX) })
}
