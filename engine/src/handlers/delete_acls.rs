//! DeleteAcls (key 31, v1-3): every ACL that matches one of the filters is removed; the
//! answer lists them per filter.

use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::authorizer::AclFilter;
use crate::controller::{DeleteAcls, CONTROLLER_SHARD};

pub async fn handle(ctx: &Context<'_>, request: DeleteAclsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    if !ctx.config().authorizer.enabled {
        tracing::info!("DeleteAcls refused: no authorizer.class.name is set, so ACLs are neither kept nor enforced");
        let mut r = DeleteAclsResponse::default();
        for _ in &request.filters {
            let mut result = DeleteAclsFilterResult::default();
            result.error_code = ec::SECURITY_DISABLED;
            result.error_message = Some(str_bytes(super::describe_acls::NO_AUTHORIZER));
            r.filter_results.push(result);
        }
        return respond(header, &r);
    }
    let filters: Vec<AclFilter> = request
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let invalid: Vec<Option<String>> = filters.iter().map(|f| f.validate().err()).collect();
    let valid: Vec<AclFilter> = filters.iter().zip(&invalid).filter(|(_, bad)| bad.is_none()).map(|(f, _)| f.clone()).collect();
    let outcome = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        ctx.call(CONTROLLER_SHARD, DeleteAcls { filters: valid })
            .await
            .unwrap_or_else(|e| Err((ec::COORDINATOR_NOT_AVAILABLE, format!("the controller did not answer: {e}"))))
    };
    let mut deleted = match &outcome {
        Ok(lists) => lists.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let mut r = DeleteAclsResponse::default();
    for bad in invalid {
        let mut result = DeleteAclsFilterResult::default();
        result.error_message = None;
        match (bad, &outcome) {
            (Some(why), _) => {
                result.error_code = ec::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&why));
            }
            (None, Err((code, why))) => {
                result.error_code = *code;
                result.error_message = Some(str_bytes(why));
            }
            (None, Ok(_)) => {
                for acl in deleted.next().unwrap_or_default() {
                    let mut m = DeleteAclsMatchingAcl::default();
                    m.error_message = None;
                    m.resource_type = acl.resource_type as i8;
                    m.resource_name = str_bytes(&acl.resource_name);
                    m.pattern_type = acl.pattern_type as i8;
                    m.principal = str_bytes(&acl.principal);
                    m.host = str_bytes(&acl.host);
                    m.operation = acl.operation as i8;
                    m.permission_type = acl.permission as i8;
                    result.matching_acls.push(m);
                }
            }
        }
        r.filter_results.push(result);
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DeleteAclsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.cluster(Alter) {
        return deny_each!(header, m::DeleteAclsResponse, filter_results, m::delete_acls_response::DeleteAclsFilterResult, r.filters.iter(), CLUSTER_DENIED);
    }
    None
}
