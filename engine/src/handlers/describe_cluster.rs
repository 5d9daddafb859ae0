//! DescribeCluster (key 60): this broker is the whole cluster and its controller.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Response};
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DescribeClusterRequest, listener: usize) -> Response {
    // The listener the request came in on: a client is sent back to the same kind of port.
    let listener = &shard.config.listeners[listener];
    let mut r = DescribeClusterResponse::default();
    r.cluster_id = str_bytes(&shard.metadata.borrow().cluster_id);
    r.controller_id = BrokerId(shard.config.node_id);
    r.endpoint_type = request.endpoint_type;
    let mut b = DescribeClusterBroker::default();
    b.broker_id = BrokerId(shard.config.node_id);
    b.host = str_bytes(&listener.advertised_host);
    b.port = listener.advertised_port as i32;
    r.brokers = vec![b];
    r.cluster_authorized_operations = i32::MIN;
    respond(header, &r)
}
