//! AlterClientQuotas (key 49, v0-1): set and remove quotas of client quota entities (user,
//! client-id, both, their defaults, or ip). Each entry is validated here with Kafka's checks
//! (INVALID_REQUEST for an unknown entity type or key, a bad combination, a bad value), then
//! the valid ones go to the controller, which keeps them in the cluster metadata.

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::{ControllerRequest, QuotaAlteration};
use crate::quota::QuotaEntity;

pub async fn handle(ctx: &Context<'_>, request: AlterClientQuotasRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let checked: Vec<Result<QuotaAlteration, String>> = request.entries.iter().map(check).collect();
    let valid: Vec<QuotaAlteration> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let mut stored = if valid.is_empty() {
        Vec::new()
    } else {
        call_controller(ctx, ControllerRequest::AlterClientQuotas { entries: valid, validate_only: request.validate_only }).await
    }
    .into_iter();
    let mut r = AlterClientQuotasResponse::default();
    for (entry, outcome) in request.entries.iter().zip(checked) {
        let mut result = EntryData::default();
        result.entity = echo_entity(entry);
        result.error_message = None;
        match outcome {
            Ok(_) => {
                // No result: the controller did not answer, so the change may not be stored.
                let (_, code, message) =
                    stored.next().unwrap_or_else(|| (String::new(), ec::UNKNOWN_SERVER_ERROR, Some("the controller did not answer".into())));
                result.error_code = code;
                result.error_message = message.as_deref().map(str_bytes);
            }
            Err(why) => {
                tracing::info!(peer = %ctx.session.peer, error = %why, "AlterClientQuotas: entry refused");
                result.error_code = ec::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&why));
            }
        }
        r.entries.push(result);
    }
    respond(header, &r)
}

fn check(entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData) -> Result<QuotaAlteration, String> {
    let entity = QuotaEntity::from_wire(entry.entity.iter().map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())))?;
    let mut ops: Vec<(String, Option<f64>)> = Vec::new();
    for op in &entry.ops {
        let key = op.key.as_str();
        if ops.iter().any(|(k, _)| k == key) {
            return Err(format!("Duplicate quota key {key} in one entry"));
        }
        let value = (!op.remove).then_some(op.value);
        entity.validate_op(key, value)?;
        ops.push((key.to_string(), value));
    }
    Ok(QuotaAlteration { entity, ops })
}

/// The entity as the request gave it: Kafka's response repeats it.
fn echo_entity(entry: &kafka_protocol::messages::alter_client_quotas_request::EntryData) -> Vec<EntityData> {
    entry
        .entity
        .iter()
        .map(|e| {
            let mut out = EntityData::default();
            out.entity_type = e.entity_type.clone();
            out.entity_name = e.entity_name.clone();
            out
        })
        .collect()
}

/// Kafka asks for ALTER_CONFIGS on the cluster; each entry is refused.
fn denial(ctx: &Context<'_>, request: &AlterClientQuotasRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    if !ctx.authz.cluster(AlterConfigs) {
        let mut r = AlterClientQuotasResponse::default();
        for entry in &request.entries {
            let mut result = EntryData::default();
            result.entity = echo_entity(entry);
            result.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
            result.error_message = None;
            r.entries.push(result);
        }
        return Some(respond(ctx.header, &r));
    }
    None
}
