//! DescribeCluster (key 60): the registered brokers. As in KRaft, the controller id given to
//! clients is a broker (this one), which forwards what only the active controller does.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};

pub fn handle(ctx: &Context<'_>, request: DescribeClusterRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = str_bytes(&ctx.metadata().cluster_id);
    r.controller_id = BrokerId(ctx.config().node_id);
    r.endpoint_type = request.endpoint_type;
    r.brokers = ctx
        .brokers()
        .into_iter()
        .map(|broker| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(broker.node_id);
            b.host = str_bytes(&broker.host);
            b.port = broker.port as i32;
            b.rack = broker.rack.as_deref().map(str_bytes);
            b
        })
        .collect();
    r.cluster_authorized_operations = if request.include_cluster_authorized_operations {
        ctx.authz.authorized_operations(crate::authorizer::ResourceType::Cluster, crate::handlers::authz::CLUSTER)
    } else {
        i32::MIN
    };
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeClusterRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Describe) {
        return deny!(header, m::DescribeClusterResponse, CLUSTER_DENIED);
    }
    None
}
