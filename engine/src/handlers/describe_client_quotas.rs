//! DescribeClientQuotas (key 48, v0-1): the quotas of every entity a filter matches, with
//! Kafka's filter semantics (exact name, default, any name of a type; `strict`) and errors.

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::quota::{FilterError, QuotaFilter};

pub fn handle(ctx: &Context<'_>, request: DescribeClientQuotasRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = DescribeClientQuotasResponse::default();
    let components = request.components.iter().map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref()));
    let filter = match QuotaFilter::from_wire(components, request.strict) {
        Ok(f) => f,
        Err(e) => {
            let (code, why) = match e {
                FilterError::Invalid(why) => (ec::INVALID_REQUEST, why),
                FilterError::Unsupported(why) => (ec::UNSUPPORTED_VERSION, why),
            };
            tracing::info!(peer = %ctx.session.peer, error = %why, "DescribeClientQuotas refused: bad filter");
            r.error_code = code;
            r.error_message = Some(str_bytes(&why));
            r.entries = None;
            return respond(header, &r);
        }
    };
    let meta = ctx.metadata();
    let mut entries = Vec::new();
    for (entity, values) in meta.client_quotas.entries.iter().filter(|(e, _)| filter.matches(e)) {
        let mut entry = EntryData::default();
        entry.entity = entity
            .components()
            .into_iter()
            .map(|(t, name)| {
                let mut e = EntityData::default();
                e.entity_type = str_bytes(t);
                e.entity_name = name.to_wire().map(str_bytes);
                e
            })
            .collect();
        entry.values = values
            .iter()
            .map(|(k, v)| {
                let mut value = ValueData::default();
                value.key = str_bytes(k);
                value.value = v.0;
                value
            })
            .collect();
        entries.push(entry);
    }
    r.error_message = None;
    r.entries = Some(entries);
    respond(header, &r)
}

/// Kafka asks for DESCRIBE_CONFIGS on the cluster.
fn denial(ctx: &Context<'_>, _request: &DescribeClientQuotasRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !ctx.authz.cluster(DescribeConfigs) {
        return deny!(ctx.header, m::DescribeClientQuotasResponse, CLUSTER_DENIED, entries = None);
    }
    None
}
