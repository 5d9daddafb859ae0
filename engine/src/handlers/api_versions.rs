//! ApiVersions (key 18): what this broker serves, exactly.

use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::ApiVersionsResponse;
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;
use shardlog_protocol::response::{encode_response, Chunk};

use super::{respond, str_bytes, Context, Response, SUPPORTED_APIS};
use crate::metadata::features::SUPPORTED_FEATURES;
use crate::metadata::ClusterMetadata;

fn response(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = key as i16;
            v.min_version = min;
            v.max_version = max;
            v
        })
        .collect();
    r
}

/// The APIs, and (v3+, tagged fields older versions do not carry) the supported features and
/// the levels the cluster finalized, from this shard's metadata image.
pub fn handle(ctx: &Context<'_>) -> Response {
    respond(ctx.header, &with_features(response(ec::NONE), &ctx.metadata()))
}

fn with_features(mut r: ApiVersionsResponse, meta: &ClusterMetadata) -> ApiVersionsResponse {
    r.supported_features = SUPPORTED_FEATURES
        .iter()
        .map(|f| {
            let mut k = SupportedFeatureKey::default();
            k.name = str_bytes(f.name);
            k.min_version = f.level_min;
            k.max_version = f.level_max;
            k
        })
        .collect();
    r.finalized_features_epoch = meta.finalized_features_epoch;
    // Kafka answers the finalized level as both bounds since KIP-778 dropped the minimum level.
    r.finalized_features = meta
        .finalized_features
        .iter()
        .map(|(name, &level)| {
            let mut k = FinalizedFeatureKey::default();
            k.name = str_bytes(name);
            k.max_version_level = level;
            k.min_version_level = level;
            k
        })
        .collect();
    r
}

/// A v0 response (v0 header) with UNSUPPORTED_VERSION and the supported list.
pub fn unsupported_version(header: &RequestHeader) -> Response {
    v0(header, ec::UNSUPPORTED_VERSION)
}

pub fn invalid_request(header: &RequestHeader) -> Response {
    v0(header, ec::INVALID_REQUEST)
}

fn v0(header: &RequestHeader, code: i16) -> Response {
    match encode_response(header.correlation_id, 0, &response(code), 0) {
        Ok(bytes) => Response::Frame(vec![Chunk::Bytes(bytes)]),
        Err(e) => Response::Close(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_the_supported_table_and_the_images_finalized_levels() {
        let mut meta = ClusterMetadata::new("c".into());
        meta.finalized_features = crate::metadata::features::bootstrap_levels();
        meta.finalized_features_epoch = 7;
        let r = with_features(response(ec::NONE), &meta);
        assert_eq!(r.supported_features.len(), SUPPORTED_FEATURES.len());
        let group = r.supported_features.iter().find(|k| &*k.name == "group.version").unwrap();
        assert_eq!((group.min_version, group.max_version), (1, 1));
        assert_eq!(r.finalized_features_epoch, 7);
        let finalized: Vec<(&str, i16, i16)> = r.finalized_features.iter().map(|k| (&*k.name, k.min_version_level, k.max_version_level)).collect();
        assert_eq!(finalized, vec![("group.version", 1, 1), ("metadata.version", 22, 22), ("transaction.version", 2, 2)]);
        // An image from before feature levels: supported ones only, and Kafka's "none" epoch.
        let r = with_features(response(ec::NONE), &ClusterMetadata::new("c".into()));
        assert!(r.finalized_features.is_empty() && r.finalized_features_epoch == -1);
    }
}
