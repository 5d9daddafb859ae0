//! ApiVersions (key 18): what this broker serves, exactly.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::RequestHeader;
use shardlog_protocol::response::{encode_response, Chunk};

use super::{respond, Response, SUPPORTED_APIS};

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

pub fn handle(header: &RequestHeader) -> Response {
    respond(header, &response(ec::NONE))
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
