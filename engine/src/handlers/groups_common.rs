//! Routing of consumer-group requests to the group's coordinator shard.

use super::Context;
use crate::groups::{self, GroupCall, GroupReply};

/// Runs `call` on the coordinator shard of `group`; Err carries the Kafka error code.
pub async fn group_call(ctx: &Context<'_>, group: &str, call: GroupCall) -> Result<GroupReply, i16> {
    ctx.coordinator_call(groups::COORDINATOR, group, call).await
}

/// Runs `call` on every shard (ListGroups).
pub async fn all_shards(ctx: &Context<'_>, make: impl Fn() -> GroupCall) -> Vec<GroupReply> {
    let calls = (0..ctx.shard_count()).map(|owner| {
        let call = make();
        async move {
            match ctx.call(owner, call).await {
                Ok(reply) => Some(reply),
                Err(e) => {
                    tracing::warn!(shard = owner, error = %e, "a group coordinator did not answer");
                    None
                }
            }
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}
