//! Routing of consumer-group requests to the group's coordinator shard.

use std::rc::Rc;

use shardlog_protocol::error_code::COORDINATOR_NOT_AVAILABLE;

use crate::groups::{self, GroupCall, GroupReply};
use crate::shard::messages::{ShardReply, ShardRequest};
use crate::shard::Shard;

/// Runs `call` on the coordinator shard of `group`; Err carries the Kafka error code.
pub async fn group_call(shard: &Rc<Shard>, group: &str, call: GroupCall) -> Result<GroupReply, i16> {
    let Some(owner) = groups::coordinator_shard(shard, group) else { return Err(COORDINATOR_NOT_AVAILABLE) };
    if owner == shard.id {
        return Ok(groups::handle(shard.clone(), call).await);
    }
    match shard.router.call(owner, ShardRequest::Group(Box::new(call))).await {
        Ok(ShardReply::Group(reply)) => Ok(reply),
        Ok(_) | Err(_) => Err(COORDINATOR_NOT_AVAILABLE),
    }
}

/// Runs `call` on every shard (ListGroups).
pub async fn all_shards(shard: &Rc<Shard>, make: impl Fn() -> GroupCall) -> Vec<GroupReply> {
    let calls = (0..shard.shard_count()).map(|owner| {
        let shard = shard.clone();
        let call = make();
        async move {
            if owner == shard.id {
                Some(groups::handle(shard.clone(), call).await)
            } else {
                match shard.router.call(owner, ShardRequest::Group(Box::new(call))).await {
                    Ok(ShardReply::Group(reply)) => Some(reply),
                    _ => None,
                }
            }
        }
    });
    futures::future::join_all(calls).await.into_iter().flatten().collect()
}
