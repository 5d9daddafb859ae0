//! CreateAcls (key 30, v1-3): validated bindings go to the controller, which persists them in
//! the cluster metadata and gives every shard the new set.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::authorizer::AclBinding;
use crate::controller::ControllerRequest;

pub async fn handle(ctx: &Context<'_>, request: CreateAclsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    if !ctx.config().authorizer.enabled {
        tracing::info!("CreateAcls refused: no authorizer.class.name is set, so ACLs are neither kept nor enforced");
        let mut r = CreateAclsResponse::default();
        for _ in &request.creations {
            let mut result = AclCreationResult::default();
            result.error_code = ec::SECURITY_DISABLED;
            result.error_message = Some(str_bytes(super::describe_acls::NO_AUTHORIZER));
            r.results.push(result);
        }
        return respond(header, &r);
    }
    let parsed: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| AclBinding::from_wire(c.resource_type, &c.resource_name, c.resource_pattern_type, &c.principal, &c.host, c.operation, c.permission_type))
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut stored = if valid.is_empty() { Vec::new() } else { call_controller(ctx, ControllerRequest::CreateAcls { acls: valid }).await }.into_iter();
    let mut r = CreateAclsResponse::default();
    for p in parsed {
        let mut result = AclCreationResult::default();
        result.error_message = None;
        match p {
            Ok(_) => {
                // No result: the controller did not answer, so the ACL may not be stored.
                let (_, code, message) =
                    stored.next().unwrap_or_else(|| (String::new(), ec::UNKNOWN_SERVER_ERROR, Some("the controller did not answer".into())));
                result.error_code = code;
                result.error_message = message.as_deref().map(str_bytes);
            }
            Err(why) => {
                tracing::info!(error = %why, "CreateAcls: invalid ACL refused");
                result.error_code = ec::INVALID_REQUEST;
                result.error_message = Some(str_bytes(&why));
            }
        }
        r.results.push(result);
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &CreateAclsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.cluster(Alter) {
        return deny_each!(header, m::CreateAclsResponse, results, m::create_acls_response::AclCreationResult, r.creations.iter(), CLUSTER_DENIED);
    }
    None
}
