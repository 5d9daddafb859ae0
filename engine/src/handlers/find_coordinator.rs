//! FindCoordinator (key 10): the coordinator of a group or transactional id is the broker that
//! leads the partition of the internal topic that holds its state (`__consumer_offsets` or
//! `__transaction_state`, chosen by the key's hash). The first request for a coordinator of a
//! kind has that topic created, as Kafka does: its partitions spread over the live brokers, so
//! the coordinators do too; until this broker has it, the answer is COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use shardlog_protocol::error_code::{self as ec, COORDINATOR_NOT_AVAILABLE, GROUP_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED};
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::authorizer::Operation;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(ctx: &Context<'_>, request: FindCoordinatorRequest) -> Response {
    let header = ctx.header;
    let authz = &ctx.authz;
    let coordinator_kind = match request.key_type {
        KEY_TYPE_GROUP => Some(crate::groups::COORDINATOR),
        KEY_TYPE_TRANSACTION => Some(crate::txn::COORDINATOR),
        _ => None,
    };
    let state_topic = coordinator_kind.map(|c| c.state_topic);
    // DESCRIBE on the group or transactional id the client looks for.
    let denied = |key: &str| -> Option<i16> {
        match request.key_type {
            KEY_TYPE_GROUP if !authz.group(Operation::Describe, key) => Some(GROUP_AUTHORIZATION_FAILED),
            KEY_TYPE_TRANSACTION if !authz.transactional_id(Operation::Describe, key) => Some(TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
            _ => None,
        }
    };
    // The broker leading the key's state partition, on this request's listener.
    let coordinator = |key: &str| -> Option<super::BrokerAddress> {
        let topic = state_topic?;
        let partitions = ctx.metadata().topics.get(topic)?.partitions.len();
        let partition = crate::coordinator::partition_for(key, partitions);
        ctx.broker(ctx.partition_leader(topic, partition)?)
    };
    // As in Kafka, only a request with a key the principal may describe has the topic created.
    let keys: Vec<&str> = if header.api_version >= 4 { request.coordinator_keys.iter().map(|k| &**k).collect() } else { vec![&*request.key] };
    let ready = match coordinator_kind {
        Some(kind) if keys.iter().any(|k| denied(k).is_none()) => ctx.ensure_state_topic(kind).await,
        Some(kind) => ctx.metadata().topics.contains_key(kind.state_topic),
        None => false,
    };
    let code = match (state_topic, ready) {
        (None, _) => ec::INVALID_REQUEST,
        (Some(_), false) => COORDINATOR_NOT_AVAILABLE,
        (Some(_), true) => ec::NONE,
    };
    let message = match code {
        ec::NONE => None,
        ec::INVALID_REQUEST => Some(str_bytes("unknown coordinator key type")),
        _ => Some(str_bytes("the coordinator's internal topic is being created; retry")),
    };
    let keyed = |key: &str| match denied(key) {
        Some(refused) => (refused, None, None),
        None if code == ec::NONE => match coordinator(key) {
            Some(address) => (code, None, Some(address)),
            None => (COORDINATOR_NOT_AVAILABLE, Some(str_bytes("the coordinator's broker is not registered yet; retry")), None),
        },
        None => (code, message.clone(), None),
    };
    let mut r = FindCoordinatorResponse::default();
    if header.api_version >= 4 {
        r.coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key.clone();
                let (code, message, address) = keyed(key);
                c.error_code = code;
                c.error_message = message;
                if let Some(address) = address {
                    c.node_id = BrokerId(address.node_id);
                    c.host = str_bytes(&address.host);
                    c.port = address.port as i32;
                } else {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
                c
            })
            .collect();
    } else {
        let (code, message, address) = keyed(&request.key);
        r.error_code = code;
        if header.api_version >= 1 {
            r.error_message = message;
        }
        if let Some(address) = address {
            r.node_id = BrokerId(address.node_id);
            r.host = str_bytes(&address.host);
            r.port = address.port as i32;
        } else {
            r.node_id = BrokerId(-1);
            r.port = -1;
        }
    }
    respond(header, &r)
}
