//! DescribeUserScramCredentials (key 50): which SCRAM mechanisms each user has, and with how
//! many iterations. Never the salt or the keys.

use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};

pub fn handle(ctx: &Context<'_>, request: DescribeUserScramCredentialsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    // Null or empty: every user, as Kafka answers.
    let names: Option<Vec<String>> = request.users.filter(|u| !u.is_empty()).map(|users| users.iter().map(|u| u.name.to_string()).collect());
    let mut r = DescribeUserScramCredentialsResponse::default();
    if let Some(names) = &names {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
            r.error_code = ec::DUPLICATE_RESOURCE;
            r.error_message = Some(str_bytes(&format!("Cannot describe SCRAM credentials for the same user twice in a single request: {dup}")));
            return respond(header, &r);
        }
    }
    r.results = ctx
        .config()
        .security
        .scram
        .describe(names.as_deref())
        .into_iter()
        .map(|(user, infos)| {
            let mut x = DescribeUserScramCredentialsResult::default();
            x.user = str_bytes(&user);
            match infos {
                Some(infos) => {
                    x.credential_infos = infos
                        .into_iter()
                        .map(|(mechanism, iterations)| {
                            let mut i = CredentialInfo::default();
                            i.mechanism = mechanism.wire();
                            i.iterations = iterations as i32;
                            i
                        })
                        .collect()
                }
                None => {
                    x.error_code = ec::RESOURCE_NOT_FOUND;
                    x.error_message = Some(str_bytes(&format!("Attempt to describe a user credential that does not exist: {user}")));
                }
            }
            x
        })
        .collect();
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &DescribeUserScramCredentialsRequest) -> Option<Response> {
    let (authz, header, _r) = (&ctx.authz, ctx.header, request);
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    if !authz.cluster(Describe) {
        return deny!(header, m::DescribeUserScramCredentialsResponse, CLUSTER_DENIED);
    }
    None
}
