//! DescribeQuorum (key 55): the metadata quorum, as `kafka-metadata-quorum.sh describe` shows
//! it. Any broker answers, asking the active controller (which alone knows how far each voter
//! has got). The quorum's log is `__cluster_metadata` partition 0, as in KRaft; its offsets are
//! the Raft log's indexes.

use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::controller::{DescribeQuorum, CONTROLLER_SHARD};

/// KRaft's name for the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &Context<'_>, request: DescribeQuorumRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let described = match ctx.call(CONTROLLER_SHARD, DescribeQuorum).await {
        Ok(d) => d,
        Err(e) => Err((ec::NOT_LEADER_OR_FOLLOWER, format!("the controller shard did not answer: {e}"))),
    };
    let mut r = DescribeQuorumResponse::default();
    for topic in &request.topics {
        let mut t = TopicData::default();
        t.topic_name = topic.topic_name.clone();
        for asked in &topic.partitions {
            let mut p = PartitionData::default();
            p.partition_index = asked.partition_index;
            p.leader_id = BrokerId(-1);
            p.leader_epoch = -1;
            p.high_watermark = -1;
            if topic.topic_name.0.as_str() != METADATA_TOPIC || asked.partition_index != 0 {
                p.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION;
                p.error_message = Some(str_bytes("the metadata quorum's log is __cluster_metadata partition 0"));
            } else {
                match &described {
                    Ok(d) => {
                        p.leader_id = BrokerId(d.leader);
                        p.leader_epoch = i32::try_from(d.term).unwrap_or(i32::MAX);
                        p.high_watermark = d.high_watermark as i64;
                        p.current_voters = d
                            .voters
                            .iter()
                            .map(|(id, log_end)| {
                                let mut v = ReplicaState::default();
                                v.replica_id = BrokerId(*id);
                                v.replica_directory_id = d.directory_ids.get(id).copied().unwrap_or_default();
                                v.log_end_offset = *log_end as i64;
                                // The leader's view of the voter's last append or heartbeat
                                // answer; -1, Kafka's "unknown", before the first of this term.
                                let times = d.voter_times.iter().find(|(v, _, _)| v == id);
                                v.last_fetch_timestamp = times.map_or(-1, |t| t.1);
                                v.last_caught_up_timestamp = times.map_or(-1, |t| t.2);
                                v
                            })
                            .collect();
                        p.observers = d
                            .observers
                            .iter()
                            .map(|(id, log_end, fetched_ms)| {
                                let mut o = ReplicaState::default();
                                o.replica_id = BrokerId(*id);
                                o.replica_directory_id = d.observer_directory_ids.get(id).copied().unwrap_or_default();
                                o.log_end_offset = *log_end as i64;
                                o.last_fetch_timestamp = *fetched_ms;
                                o.last_caught_up_timestamp = -1;
                                o
                            })
                            .collect();
                    }
                    Err((code, msg)) => {
                        p.error_code = *code;
                        p.error_message = Some(str_bytes(msg));
                    }
                }
            }
            t.partitions.push(p);
        }
        r.topics.push(t);
    }
    if let (Ok(d), true) = (&described, header.api_version >= 2) {
        r.nodes = d
            .endpoints
            .iter()
            .map(|(id, address)| {
                let mut n = Node::default();
                n.node_id = BrokerId(*id);
                if let Some((host, port)) = address.rsplit_once(':') {
                    let mut l = Listener::default();
                    l.name = str_bytes(ctx.config().quorum.controller_listener_names.first().map(String::as_str).unwrap_or("CONTROLLER"));
                    l.host = str_bytes(host);
                    l.port = port.parse().unwrap_or(0);
                    n.listeners.push(l);
                }
                n
            })
            .collect();
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeQuorumRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Describe) {
        return deny!(header, m::DescribeQuorumResponse, CLUSTER_DENIED);
    }
    None
}
