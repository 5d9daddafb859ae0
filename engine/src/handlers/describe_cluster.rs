//! DescribeCluster (key 60): this broker is the whole cluster and its controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};

pub fn handle(ctx: &Context<'_>, request: DescribeClusterRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let listener = ctx.session.listener;
    // The listener the request came in on: a client is sent back to the same kind of port.
    let listener = &ctx.config().listeners[listener];
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = str_bytes(&ctx.metadata().cluster_id);
    r.controller_id = BrokerId(ctx.config().node_id);
    r.endpoint_type = request.endpoint_type;
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(ctx.config().node_id);
    b.host = str_bytes(&listener.advertised_host);
    b.port = listener.advertised_port as i32;
    r.brokers = vec![b];
    r.cluster_authorized_operations = i32::MIN;
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
