//! A request frame (the bytes after the 4-byte length) through the broker's own decoder:
//! header, then validation, then `kafka-protocol`. It must return, never panic or abort.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog_protocol::request::decode_request;

fuzz_target!(|frame: &[u8]| {
    let _ = decode_request(bytes::Bytes::copy_from_slice(frame));
});
