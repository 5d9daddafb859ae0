//! UnregisterBroker (key 64, v0): takes a broker's registration out of the cluster metadata, as
//! `kafka-cluster.sh unregister --id N` asks, typically for a broker that is gone for good.
//! The active controller removes it from leadership of its partitions (in a new leader epoch)
//! and drops its registration; a broker that is still running is told at its next heartbeat
//! that it is not registered, and registers again, as with Kafka.

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::ControllerRequest;

pub async fn handle(ctx: &Context<'_>, request: UnregisterBrokerRequest) -> Response {
    let header = ctx.header;
    let mut r = UnregisterBrokerResponse::default();
    if !ctx.authz.cluster(crate::authorizer::Operation::Alter) {
        r.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
        return respond(header, &r);
    }
    let node_id = request.broker_id.0;
    let (code, message) = call_controller(ctx, ControllerRequest::UnregisterBroker { node_id })
        .await
        .into_iter()
        .next()
        .map(|(_, code, message)| (code, message))
        .unwrap_or_else(|| (ec::UNKNOWN_SERVER_ERROR, Some("the controller did not answer; the broker may or may not be unregistered".into())));
    if code != ec::NONE {
        tracing::info!(peer = %ctx.session.peer, node_id, code = %ec::error_name(code), error = ?message, "UnregisterBroker refused");
    }
    r.error_code = code;
    r.error_message = message.as_deref().map(str_bytes);
    respond(header, &r)
}
