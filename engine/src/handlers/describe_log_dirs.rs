//! DescribeLogDirs (key 35): every log directory with the partitions in it and their sizes,
//! gathered from every shard, and (v4) the directory's filesystem size and free space.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, topic_name, Context, Response};
use crate::shard::messages::LogDirSizes;

pub async fn handle(ctx: &Context<'_>, request: DescribeLogDirsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let calls = (0..ctx.shard_count()).map(|s| async move {
        match ctx.call(s, LogDirSizes).await {
            Ok(usage) => (usage.partitions, usage.failed),
            Err(e) => {
                tracing::warn!(shard = s, error = %e, "a shard did not report its log directory usage");
                (Vec::new(), Vec::new())
            }
        }
    });
    let mut sizes: Vec<(String, i32, usize, u64)> = Vec::new();
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    for (s, f) in futures::future::join_all(calls).await {
        sizes.extend(s);
        failed.extend(f);
    }
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics.iter().any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&partition)),
    };
    // log dir -> topic -> (partition, bytes)
    let mut per_dir: Vec<BTreeMap<String, Vec<(i32, u64)>>> = vec![BTreeMap::new(); ctx.config().log_dirs.len()];
    for (topic, partition, dir, bytes) in sizes {
        if dir < per_dir.len() && wanted(&topic, partition) {
            per_dir[dir].entry(topic).or_default().push((partition, bytes));
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    for (i, topics) in per_dir.into_iter().enumerate() {
        let path = &ctx.config().log_dirs[i];
        let mut result = DescribeLogDirsResult::default();
        result.error_code = if failed.contains_key(&i) { ec::KAFKA_STORAGE_ERROR } else { ec::NONE };
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        result.log_dir = str_bytes(&absolute.display().to_string());
        for (name, mut partitions) in topics {
            partitions.sort_unstable();
            let mut t = DescribeLogDirsTopic::default();
            t.name = topic_name(&name);
            for (index, bytes) in partitions {
                let mut p = DescribeLogDirsPartition::default();
                p.partition_index = index;
                p.partition_size = bytes as i64;
                p.offset_lag = 0;
                p.is_future_key = false;
                t.partitions.push(p);
            }
            result.topics.push(t);
        }
        if header.api_version >= 4 && !failed.contains_key(&i) {
            let (total, usable) = filesystem_bytes(&absolute).unwrap_or((-1, -1));
            result.total_bytes = total;
            result.usable_bytes = usable;
        }
        response.results.push(result);
    }
    respond(header, &response)
}

/// Total and available bytes of the filesystem holding `path`.
fn filesystem_bytes(path: &std::path::Path) -> Option<(i64, i64)> {
    crate::storage::disk::filesystem_bytes(path).map(|(total, free)| (total as i64, free as i64))
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeLogDirsRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Describe) {
        return deny!(header, m::DescribeLogDirsResponse, CLUSTER_DENIED);
    }
    None
}
