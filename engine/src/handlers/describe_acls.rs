//! DescribeAcls (key 29, v1-3): the ACLs that match a filter, grouped by resource pattern.

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::authorizer::AclFilter;

/// Kafka's message when ACLs are managed on a broker without an authorizer (SECURITY_DISABLED),
/// with what to do about it.
pub const NO_AUTHORIZER: &str = "No Authorizer is configured: set authorizer.class.name to manage ACLs";

pub fn handle(ctx: &Context<'_>, request: DescribeAclsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    let mut r = DescribeAclsResponse::default();
    if !ctx.config().authorizer.enabled {
        tracing::info!("DescribeAcls refused: no authorizer.class.name is set, so ACLs are neither kept nor enforced");
        r.error_code = ec::SECURITY_DISABLED;
        r.error_message = Some(str_bytes(NO_AUTHORIZER));
        return respond(header, &r);
    }
    let filter = AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    );
    r.error_message = None; // the crate's default is Some(""); Kafka sends null on success
    if let Err(why) = filter.validate() {
        tracing::debug!(error = %why, "DescribeAcls with an invalid filter");
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes(&why));
        return respond(header, &r);
    }
    let meta = ctx.metadata();
    for acl in meta.acls.acls.iter().filter(|a| filter.matches(a)) {
        let mut d = AclDescription::default();
        d.principal = str_bytes(&acl.principal);
        d.host = str_bytes(&acl.host);
        d.operation = acl.operation as i8;
        d.permission_type = acl.permission as i8;
        let same = |res: &&mut DescribeAclsResource| {
            res.resource_type == acl.resource_type as i8 && res.resource_name.as_str() == acl.resource_name && res.pattern_type == acl.pattern_type as i8
        };
        match r.resources.iter_mut().find(same) {
            Some(res) => res.acls.push(d),
            None => {
                let mut res = DescribeAclsResource::default();
                res.resource_type = acl.resource_type as i8;
                res.resource_name = str_bytes(&acl.resource_name);
                res.pattern_type = acl.pattern_type as i8;
                res.acls.push(d);
                r.resources.push(res);
            }
        }
    }
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeAclsRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Describe) {
        return deny!(header, m::DescribeAclsResponse, CLUSTER_DENIED);
    }
    None
}
