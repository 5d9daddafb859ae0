//! CreateAcls (key 30, v1-3): validated bindings go to the controller, which persists them in
//! the cluster metadata and gives every shard the new set.

use std::rc::Rc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{call_controller, respond, str_bytes, Response};
use crate::authorizer::AclBinding;
use crate::controller::ControllerRequest;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: CreateAclsRequest) -> Response {
    let parsed: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| AclBinding::from_wire(c.resource_type, &c.resource_name, c.resource_pattern_type, &c.principal, &c.host, c.operation, c.permission_type))
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut stored = if valid.is_empty() { Vec::new() } else { call_controller(shard, ControllerRequest::CreateAcls { acls: valid }).await }.into_iter();
    let mut r = CreateAclsResponse::default();
    for p in parsed {
        let mut result = AclCreationResult::default();
        result.error_message = None;
        match p {
            Ok(_) => {
                let (_, code, message) = stored.next().unwrap_or_default();
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
