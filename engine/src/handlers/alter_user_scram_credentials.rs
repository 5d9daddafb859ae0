//! AlterUserScramCredentials (key 51): add, replace and delete SCRAM credentials. The client
//! sends the salt, the iteration count and the salted password (PBKDF2 output); the broker keeps
//! only the stored and server keys derived from it (see `security::scram`).

use std::collections::HashMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{respond, str_bytes, Context, Response};
use crate::security::scram::{Change, ScramCredential, ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN, USER_NAME_BYTES_MAX};

/// Bound on the salt a client may send.
const SALT_BYTES_MAX: usize = 1024;

pub fn handle(ctx: &Context<'_>, request: AlterUserScramCredentialsRequest) -> Response {
    if let Some(denied) = denial(ctx, &request) {
        return denied;
    }
    let header = ctx.header;
    // Kafka rejects a request that changes one credential (user and mechanism) twice: every
    // change of that user fails.
    let mut mentions: HashMap<(String, i8), usize> = HashMap::new();
    for key in request.deletions.iter().map(|d| (d.name.to_string(), d.mechanism)).chain(request.upsertions.iter().map(|u| (u.name.to_string(), u.mechanism))) {
        *mentions.entry(key).or_default() += 1;
    }
    let duplicated: std::collections::HashSet<String> = mentions.iter().filter(|(_, &n)| n > 1).map(|((user, _), _)| user.clone()).collect();
    let mut results: Vec<(String, Option<(i16, String)>)> = Vec::new();
    let mut changes = Vec::new();
    let mut change_users = Vec::new();
    let check = |user: &str, mechanism: i8| -> Result<ScramMechanism, (i16, String)> {
        if duplicated.contains(user) {
            return Err((ec::DUPLICATE_RESOURCE, format!("A user credential cannot be altered twice in the same request: {user}")));
        }
        if user.is_empty() || user.len() > USER_NAME_BYTES_MAX {
            return Err((ec::UNACCEPTABLE_CREDENTIAL, format!("user names must have 1 to {USER_NAME_BYTES_MAX} bytes")));
        }
        ScramMechanism::from_wire(mechanism).ok_or((ec::UNSUPPORTED_SASL_MECHANISM, format!("Unknown SCRAM mechanism type {mechanism}")))
    };
    for d in &request.deletions {
        let user = d.name.to_string();
        match check(&user, d.mechanism) {
            Ok(mechanism) => {
                changes.push(Change::Delete { user: user.clone(), mechanism });
                change_users.push(user);
            }
            Err(e) => results.push((user, Some(e))),
        }
    }
    for u in &request.upsertions {
        let user = u.name.to_string();
        let outcome = check(&user, u.mechanism).and_then(|mechanism| {
            if u.iterations < ITERATIONS_MIN || u.iterations > ITERATIONS_MAX {
                return Err((ec::UNACCEPTABLE_CREDENTIAL, format!("Iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}, not {}", u.iterations)));
            }
            if u.salt.is_empty() || u.salt.len() > SALT_BYTES_MAX {
                return Err((ec::UNACCEPTABLE_CREDENTIAL, format!("the salt must have 1 to {SALT_BYTES_MAX} bytes")));
            }
            if u.salted_password.len() != mechanism.hash_bytes() {
                return Err((ec::UNACCEPTABLE_CREDENTIAL, format!("the salted password of {} must have {} bytes", mechanism.name(), mechanism.hash_bytes())));
            }
            Ok(mechanism)
        });
        match outcome {
            Ok(mechanism) => {
                let (stored_key, server_key) = mechanism.derive(&u.salted_password);
                let credential = ScramCredential { iterations: u.iterations as u32, salt: u.salt.to_vec(), stored_key, server_key };
                changes.push(Change::Upsert { user: user.clone(), mechanism, credential });
                change_users.push(user);
            }
            Err(e) => results.push((user, Some(e))),
        }
    }
    if !changes.is_empty() {
        let outcomes = ctx.config().security.scram.alter(changes);
        for (user, outcome) in change_users.into_iter().zip(outcomes) {
            if outcome.is_none() {
                tracing::info!(user = %user, "SCRAM credential changed");
            }
            results.push((user, outcome));
        }
    }
    let mut r = AlterUserScramCredentialsResponse::default();
    r.results = results
        .into_iter()
        .map(|(user, outcome)| {
            let mut x = AlterUserScramCredentialsResult::default();
            x.user = str_bytes(&user);
            if let Some((code, message)) = outcome {
                x.error_code = code;
                x.error_message = Some(str_bytes(&message));
            }
            x
        })
        .collect();
    respond(header, &r)
}

/// The request refused whole, with Kafka's error, when the principal lacks what it needs.
fn denial(ctx: &Context<'_>, request: &AlterUserScramCredentialsRequest) -> Option<Response> {
    use crate::authorizer::Operation::*;
    use kafka_protocol::messages as m;
    use shardlog_protocol::error_code::CLUSTER_AUTHORIZATION_FAILED as CLUSTER_DENIED;
    let (authz, header, r) = (&ctx.authz, ctx.header, request);
    if !authz.cluster(Alter) {
        let users = r.deletions.iter().map(|d| d.name.clone()).chain(r.upsertions.iter().map(|u| u.name.clone()));
        use m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult as UserResult;
        return deny_each!(header, m::AlterUserScramCredentialsResponse, results, UserResult, users, CLUSTER_DENIED, |name| user = name);
    }
    None
}
