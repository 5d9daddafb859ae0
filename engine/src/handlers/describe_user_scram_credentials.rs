//! DescribeUserScramCredentials (key 50): which SCRAM mechanisms each user has, and with how
//! many iterations. Never the salt or the keys.

use std::rc::Rc;

use kafka_protocol::messages::describe_user_scram_credentials_response::{CredentialInfo, DescribeUserScramCredentialsResult};
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;

use super::{respond, str_bytes, Response};
use crate::shard::Shard;

pub fn handle(shard: &Rc<Shard>, header: &RequestHeader, request: DescribeUserScramCredentialsRequest) -> Response {
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
    r.results = shard
        .config
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
