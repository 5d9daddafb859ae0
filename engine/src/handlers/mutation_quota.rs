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

/// What the bucket let through of one request's items.
pub struct Admitted<T> {
    /// The items that go on, in order.
    pub allowed: Vec<T>,
    /// (name, THROTTLING_QUOTA_EXCEEDED, Kafka's message) of each item refused.
    pub refused: Vec<(String, i16, Option<String>)>,
    /// For the response; the connection is muted this long (KIP-219).
    pub throttle_ms: i32,
}

/// Takes each of `items`' partitions to create or delete (`partitions`: None takes nothing)
/// from the client's bucket, in order, strict from request version `strict_since`. With no
/// `controller_mutation_rate` for the client (or no answer from the controller shard) every
/// item goes on.
pub async fn admit<T>(ctx: &Context<'_>, strict_since: i16, items: Vec<T>, partitions: impl Fn(&T) -> Option<i64>, name: impl Fn(&T) -> String) -> Admitted<T> {
    let asks: Vec<Option<i64>> = items.iter().map(&partitions).collect();
    let topics: Vec<i64> = asks.iter().flatten().copied().collect();
    let Some((answers, throttle_ms)) = take(ctx, strict_since, topics).await else {
        return Admitted { allowed: items, refused: Vec::new(), throttle_ms: 0 };
    };
    let mut answers = answers.into_iter();
    let (mut allowed, mut refused) = (Vec::new(), Vec::new());
    for (item, ask) in items.into_iter().zip(asks) {
        if ask.is_some() && answers.next() == Some(false) {
            refused.push((name(&item), ec::THROTTLING_QUOTA_EXCEEDED, Some(String::from("The throttling quota has been exceeded."))));
        } else {
            allowed.push(item);
        }
    }
    Admitted { allowed, refused, throttle_ms }
}

/// Per topic asked about, whether it may go on, and the throttle time; None when the client
/// has no quota to take from.
async fn take(ctx: &Context<'_>, strict_since: i16, topics: Vec<i64>) -> Option<(Vec<bool>, i32)> {
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
    Some((allowed, i32::try_from(throttle_ms).unwrap_or(i32::MAX)))
}
