//! DescribeAcls (key 29, v1-3): the ACLs that match a filter, grouped by resource pattern.

use std::rc::Rc;

use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Response};
use crate::authorizer::AclFilter;
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DescribeAclsRequest) -> Response {
    let filter = AclFilter::from_wire(
        request.resource_type_filter,
        request.resource_name_filter.as_deref(),
        request.pattern_type_filter,
        request.principal_filter.as_deref(),
        request.host_filter.as_deref(),
        request.operation,
        request.permission_type,
    );
    let mut r = DescribeAclsResponse::default();
    r.error_message = None; // the crate's default is Some(""); Kafka sends null on success
    if let Err(why) = filter.validate() {
        tracing::debug!(error = %why, "DescribeAcls with an invalid filter");
        r.error_code = ec::INVALID_REQUEST;
        r.error_message = Some(str_bytes(&why));
        return respond(header, &r);
    }
    let meta = shard.metadata.borrow().clone();
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
