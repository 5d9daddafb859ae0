//! What the admin CLI and the load generator do with an answer from a broker, through the
//! sans-io client core (`shardlog_protocol::client`). Input: api key (i16), api version (i16),
//! then the response frame after its length prefix (the response header, v0 or v1 as the
//! version implies, then the body).
//!
//! A client core starts one request of that API and version (ApiVersions as the clients send
//! it, any other with default fields), the frame goes through a `FrameReader` in two pieces,
//! `ClientCore::receive` matches it and strips the header, and `ResponseFrame::decode_body`
//! validates the body, then decodes it (the crate's one table of response decoders; for
//! ApiVersions the answer then goes through the version negotiation). The contract:
//! - nothing panics, and nothing allocates more than `-malloc_limit_mb` (kafka-protocol sizes
//!   vectors from counts on the wire: the validator must catch every hostile count);
//! - whatever validates decodes: after the validator's Ok, the decoder reads exactly the bytes
//!   the validator walked. The only refusals left to the decoder are those the validator leaves
//!   to it on purpose (see `validate/responses.rs`): a null (length -1) where the field's type
//!   has none, a string that is not UTF-8, and bytes after the end of the body (the walk stops
//!   where the schema ends; then the bytes read before them must decode on their own).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::client::{ClientConfig, ClientCore, ClientError, FrameReader, Negotiation, RequestFrame, ResponseBody, ResponseFrame};
use shardlog_protocol::kafka_protocol::messages::ApiKey;

const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// What this client speaks, for the negotiation an ApiVersions answer feeds.
const VERSIONS: &[(ApiKey, i16, i16)] = &[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 1, 12), (ApiKey::Produce, 3, 12), (ApiKey::Fetch, 4, 12)];

fn config() -> ClientConfig {
    ClientConfig {
        client_id: String::from("fuzz"),
        software_name: "shardlog-fuzz",
        software_version: "0.0.0",
        versions: VERSIONS,
        in_flight_max: 2,
        response_bytes_max: RESPONSE_BYTES_MAX,
    }
}

/// A decode error the validator leaves to the decoder on purpose.
fn left_to_the_decoder(reason: &str) -> bool {
    reason.contains("length is negative (-1)") || reason.contains("utf-8")
}

fuzz_target!(|data: &[u8]| {
    let Some((head, response)) = data.split_first_chunk::<4>() else {
        return;
    };
    let api_key = i16::from_be_bytes([head[0], head[1]]);
    let version = i16::from_be_bytes([head[2], head[3]]);
    let Ok(api) = ApiKey::try_from(api_key) else {
        return;
    };
    let mut core: ClientCore<u8> = ClientCore::new(config());
    let started = if api == ApiKey::ApiVersions {
        core.request_api_versions(version, 7)
    } else {
        RequestFrame::with_defaults(api, version, "fuzz").and_then(|frame| core.start(frame, 7).map_err(|(e, _)| e))
    };
    if started.is_err() {
        // No decoder for this API, or no request at this version: a client never waits for
        // such an answer.
        return;
    }

    // The byte stream: length prefix, then the frame, read in two pieces.
    let Ok(length) = i32::try_from(response.len()) else {
        return;
    };
    let mut stream = Vec::with_capacity(4 + response.len());
    stream.extend_from_slice(&length.to_be_bytes());
    stream.extend_from_slice(response);
    let mut reader = FrameReader::with_read_bytes_min(RESPONSE_BYTES_MAX, 0);
    let split = stream.len() / 2;
    reader.push(&stream[..split]);
    assert_eq!(reader.next_frame().ok().flatten(), None, "a frame before all of it arrived");
    reader.push(&stream[split..]);
    let frame = match reader.next_frame() {
        Ok(Some(frame)) => frame,
        Ok(None) => panic!("the whole frame arrived but the reader waits for more"),
        Err(ClientError::FrameLength { .. }) => return,
        Err(e) => panic!("the frame reader: {e}"),
    };
    assert_eq!(frame, Bytes::from(stream), "the reader changed the frame");
    assert_eq!(reader.buffered_bytes(), 0);

    let (response, token) = match core.receive(frame) {
        Ok(matched) => matched,
        Err(ClientError::UnknownCorrelationId { .. } | ClientError::Header { .. }) => return,
        Err(e) => panic!("receive: {e}"),
    };
    assert_eq!((response.api, response.version, response.correlation_id, token), (api, version, 1, 7));
    assert_eq!(core.in_flight(), 0);

    let (body, response_api, response_version) = (response.body.clone(), response.api, response.version);
    match response.decode_body() {
        Ok(ResponseBody::ApiVersions(answer)) => match core.receive_api_versions(&answer, version) {
            Ok(Negotiation::Done) => {
                for &(api, min, max) in VERSIONS {
                    if let Ok(v) = core.version(api) {
                        assert!((min..=max).contains(&v), "{api:?} negotiated at v{v}, outside {min}-{max}");
                    }
                }
            }
            Ok(Negotiation::Retry(v)) => assert!(v != version && (0..=4).contains(&v), "retry at v{v} after v{version}"),
            Err(_) => {}
        },
        Ok(_) => {}
        Err(ClientError::InvalidBody { .. }) => {}
        Err(ClientError::Undecodable { reason, .. }) if left_to_the_decoder(&reason) => {}
        Err(ClientError::TrailingBytes { count, .. }) => {
            // The walk, like the decoder, stops at the end of the body's schema; bytes after it
            // are the client's to refuse. What the decoder read must be a body on its own.
            assert!(count > 0 && count <= body.len(), "{count} bytes left of {}", body.len());
            let read = ResponseFrame { correlation_id: 1, api: response_api, version: response_version, body: body.slice(..body.len() - count) };
            match read.decode_body() {
                Ok(_) => {}
                Err(ClientError::Undecodable { reason, .. }) if left_to_the_decoder(&reason) => {}
                Err(e) => panic!("{api:?} v{version}: {count} bytes were left over, and the {} read before them do not decode: {e}", body.len() - count),
            }
        }
        Err(e) => panic!("{api:?} v{version}: validated, then: {e}"),
    }
});
