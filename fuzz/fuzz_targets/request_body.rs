//! Every request schema the validator knows, not only those the broker decodes today.
//! Input: api key (i16), api version (i16), then the request body. Whatever validates is
//! decoded through the crate's decoder table (`request::decode_request_body`, the one the
//! broker uses), which must return, never panic or abort (an abort is what an unchecked
//! `Vec::with_capacity(count)` does; libFuzzer's `-malloc_limit_mb` flags it).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::request::{decode_request_body, has_decoder};
use shardlog_protocol::validate::validate_request_body;

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let api_key = i16::from_be_bytes([head[0], head[1]]);
    let api_version = i16::from_be_bytes([head[2], head[3]]);
    if validate_request_body(api_key, api_version, body).is_err() {
        return;
    }
    // The unit tests check this for every declared version; here it guards the decode below,
    // which would otherwise turn a missing decoder into a quiet error.
    assert!(has_decoder(api_key, api_version), "validator accepted api key {api_key} v{api_version}, which has no decoder");
    let mut buf = Bytes::copy_from_slice(body);
    let _ = decode_request_body(api_key, api_version, &mut buf);
});
