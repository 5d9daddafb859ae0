//! Routing of consumer-group requests to the group's coordinator shard.

use std::rc::Rc;

use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;

use crate::groups::{self, GroupCall, GroupReply};
use crate::shard::Shard;

/// Runs `call` on the coordinator shard of `group`; Err carries the Kafka error code.
pub async fn group_call(shard: &Rc<Shard>, group: &str, call: GroupCall) -> Result<GroupReply, i16> {
    let Some(owner) = groups::coordinator_shard(shard, group) else { return Err(COORDINATOR_NOT_AVAILABLE) };
    shard.call(owner, call).await.map_err(|e| {
        tracing::warn!(group, error = %e, "group coordinator unreachable");
        COORDINATOR_NOT_AVAILABLE
    })
}

/// Runs `call` on every shard (ListGroups).
pub async fn all_shards(shard: &Rc<Shard>, make: impl Fn() -> GroupCall) -> Vec<GroupReply> {
    let calls = (0..shard.shard_count()).map(|owner| {
        let shard = shard.clone();
        let call = make();
        async move {
            match shard.call(owner, call).await {
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
