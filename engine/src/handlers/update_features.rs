//! UpdateFeatures (key 57, v0-2): finalizes feature levels, as `kafka-features.sh upgrade` /
//! `downgrade` ask, through the active controller and by Kafka's rules
//! (`metadata::features::apply_updates`): all or nothing, ALTER on the cluster. In practice
//! the level an operator moves is transaction.version; the others have one level, or are
//! settled when the cluster is formatted. As Kafka answers: a refusal is the top-level error
//! (with no per-feature results), success lists every feature with no error (v0-1; v2 has no
//! per-feature results).

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::{call_controller, respond, str_bytes, Context, Response};
use crate::controller::ControllerRequest;
use crate::metadata::features::{FeatureUpdate, SAFE_DOWNGRADE, UPGRADE};

pub async fn handle(ctx: &Context<'_>, request: UpdateFeaturesRequest) -> Response {
    let header = ctx.header;
    let mut r = UpdateFeaturesResponse::default();
    if !ctx.authz.cluster(crate::authorizer::Operation::Alter) {
        r.error_code = ec::CLUSTER_AUTHORIZATION_FAILED;
        r.error_message = Some(str_bytes("not authorized to alter the cluster's features"));
        return respond(header, &r);
    }
    let updates: Vec<FeatureUpdate> = request
        .feature_updates
        .iter()
        .map(|u| FeatureUpdate {
            name: u.feature.to_string(),
            level: u.max_version_level,
            // v0 had AllowDowngrade, which Kafka reads as a safe downgrade.
            upgrade_type: if header.api_version == 0 {
                if u.allow_downgrade {
                    SAFE_DOWNGRADE
                } else {
                    UPGRADE
                }
            } else {
                u.upgrade_type
            },
        })
        .collect();
    let names: Vec<String> = updates.iter().map(|u| u.name.clone()).collect();
    let results = if updates.is_empty() {
        Vec::new()
    } else {
        call_controller(ctx, ControllerRequest::UpdateFeatures { updates, validate_only: header.api_version >= 1 && request.validate_only }).await
    };
    if !names.is_empty() && results.len() != names.len() {
        r.error_code = ec::UNKNOWN_SERVER_ERROR;
        r.error_message = Some(str_bytes("the controller did not answer; the features may or may not be updated"));
        return respond(header, &r);
    }
    if let Some((_, code, message)) = results.iter().find(|(_, code, _)| *code != ec::NONE) {
        tracing::info!(peer = %ctx.session.peer, code = %ec::error_name(*code), error = ?message, "UpdateFeatures refused");
        r.error_code = *code;
        r.error_message = message.as_deref().map(str_bytes);
        return respond(header, &r);
    }
    r.error_message = None;
    for name in names {
        let mut result = UpdatableFeatureResult::default();
        result.feature = str_bytes(&name);
        result.error_message = None;
        r.results.push(result);
    }
    respond(header, &r)
}
