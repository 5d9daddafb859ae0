//! The client side of the Kafka protocol, without I/O: what the admin CLI and the load generator
//! share. The caller owns the socket; this module turns requests into frames and frames into
//! responses.
//!
//! - [`negotiate`] and [`Versions`]: for each API a client speaks, the highest version that the
//!   broker's ApiVersions answer also lists, or why there is none.
//! - [`ClientCore`]: correlation ids, and the requests in flight (at most
//!   [`ClientConfig::in_flight_max`]) with the API and version each answer must be decoded at.
//!   Kafka answers a connection's requests in order, so an answer is matched to the oldest
//!   request; one that names another request, or none, is an error.
//! - [`FrameReader`]: whole frames out of a byte stream, each length checked against a maximum
//!   before anything is allocated for it.
//! - [`ResponseFrame::decode`]: the body, validated before `kafka-protocol` decodes it.
//!
//! What guards the decoder: `kafka-protocol` sizes a vector from the count it reads off the wire
//! (`Vec::with_capacity(n)`), so a few hostile bytes could ask for terabytes. Every response body
//! is therefore walked first by [`crate::validate::validate_response_body`], which checks each
//! array count (and string and bytes length) against the bytes that are really left; a version
//! without a response schema is refused, not decoded. The response header is decoded by the
//! crate directly: it has no arrays, and its tagged fields are read with bounds-checked slices.
//! Frame lengths are bounded by [`ClientConfig::response_bytes_max`].

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error_code::{error_name, NONE, UNSUPPORTED_VERSION};
use crate::frame::FRAME_LENGTH_BYTES;
use crate::validate::{validate_response_body, ValidationError};

/// The largest response accepted by default: the broker's own `socket.request.max.bytes`
/// default. A larger length prefix means a confused peer (not Kafka, or a stream out of step).
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Requests in flight on one connection by default. The load generator's producers keep at most
/// `max_in_flight` (a workload field, at most 1000) on a connection; the admin CLI keeps one.
pub const IN_FLIGHT_MAX_DEFAULT: usize = 1024;

/// The smallest response frame: a v0 response header (the correlation id) and an empty body.
pub const RESPONSE_BYTES_MIN: usize = 4;

/// The offset of the correlation id in a request frame: after the length prefix, api key and
/// api version. Every request header version puts it there.
const REQUEST_CORRELATION_ID_OFFSET: usize = FRAME_LENGTH_BYTES + 2 + 2;

/// How many ApiVersions requests a negotiation may send: the first answer, even a refusal,
/// lists the versions the broker serves, so a second try at one of those is the last.
pub const API_VERSIONS_TRIES_MAX: u32 = 2;

/// Spare room [`FrameReader::read_buffer`] keeps for the next read, unless told otherwise.
pub const READ_BYTES_MIN_DEFAULT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("this client does not speak {api:?} (it is not in its version table)")]
    NotSpoken { api: ApiKey },
    #[error("no ApiVersions answer yet: the versions of {api:?} are not negotiated")]
    NotNegotiated { api: ApiKey },
    #[error("the broker does not serve {api:?} (it is not in its ApiVersions answer)")]
    NotServed { api: ApiKey },
    #[error("the broker serves {api:?} versions {broker_min}-{broker_max}, and this client speaks {client_min}-{client_max}: no version in common")]
    NoCommonVersion { api: ApiKey, broker_min: i16, broker_max: i16, client_min: i16, client_max: i16 },
    #[error("the broker refused ApiVersions v{version}: {}", error_name(*error_code))]
    ApiVersionsRefused { version: i16, error_code: i16 },
    #[error("the broker and this client have no ApiVersions version in common")]
    NoApiVersionsInCommon,
    #[error("api key {0} is not one kafka-protocol knows")]
    UnknownApiKey(i16),
    #[error("cannot encode the {api:?} v{version} request: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
    #[error("{max} requests are already in flight on this connection")]
    TooManyInFlight { max: usize },
    #[error("response frame claims {length} bytes, outside {RESPONSE_BYTES_MIN}..={max}")]
    FrameLength { length: i64, max: usize },
    #[error("response frame of {actual} bytes after its length prefix, which says {length}")]
    FrameLengthMismatch { length: i64, actual: usize },
    #[error("response with correlation id {correlation_id}, which no request in flight has (next expected: {})", expected_text(*expected))]
    UnknownCorrelationId { correlation_id: i32, expected: Option<i32> },
    #[error("response with correlation id {correlation_id} arrived before the one to request {expected}: answers out of order")]
    OutOfOrder { correlation_id: i32, expected: i32 },
    #[error("cannot decode the {api:?} v{version} response header: {reason}")]
    Header { api: ApiKey, version: i16, reason: String },
    #[error("a {expected:?} response was decoded as {decoded:?} (programming error)")]
    WrongResponseType { expected: ApiKey, decoded: i16 },
    #[error("invalid {api:?} v{version} response body: {source}")]
    InvalidBody { api: ApiKey, version: i16, source: ValidationError },
    #[error("cannot decode the {api:?} v{version} response: {reason}")]
    Undecodable { api: ApiKey, version: i16, reason: String },
    #[error("the {api:?} v{version} response has {count} bytes left over after decoding")]
    TrailingBytes { api: ApiKey, version: i16, count: usize },
}

fn expected_text(expected: Option<i32>) -> String {
    expected.map_or_else(|| String::from("none in flight"), |id| id.to_string())
}

fn api_key_of<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|()| ClientError::UnknownApiKey(R::KEY))
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

/// What the negotiation found for one API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// The highest version both sides speak.
    Version(i16),
    /// The broker serves the API, but no version in common: (broker min, broker max).
    NoCommonVersion(i16, i16),
    /// The broker does not advertise the API at all.
    NotServed,
}

/// For each API in `client` (key, min, max), the highest version that `client` and `broker`
/// (key, min, max, as ApiVersions lists them) both speak.
pub fn negotiate(client: &[(ApiKey, i16, i16)], broker: &[(i16, i16, i16)]) -> Vec<(ApiKey, Negotiated)> {
    client
        .iter()
        .map(|&(key, client_min, client_max)| {
            let outcome = match broker.iter().find(|(k, _, _)| *k == key as i16) {
                None => Negotiated::NotServed,
                Some(&(_, broker_min, broker_max)) => {
                    let version = client_max.min(broker_max);
                    if version >= client_min.max(broker_min) {
                        Negotiated::Version(version)
                    } else {
                        Negotiated::NoCommonVersion(broker_min, broker_max)
                    }
                }
            };
            (key, outcome)
        })
        .collect()
}

/// The outcome of a negotiation: what the broker serves, and what this client will use.
#[derive(Debug, Clone)]
pub struct Versions {
    client: &'static [(ApiKey, i16, i16)],
    negotiated: Vec<(ApiKey, Negotiated)>,
    /// The broker's ApiVersions answer: (key, min, max).
    broker: Vec<(i16, i16, i16)>,
}

impl Versions {
    pub fn new(client: &'static [(ApiKey, i16, i16)], broker: Vec<(i16, i16, i16)>) -> Versions {
        Versions { client, negotiated: negotiate(client, &broker), broker }
    }

    /// The version to use for `api`, or why there is none.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        let (client_min, client_max) = self.client_range(api).ok_or(ClientError::NotSpoken { api })?;
        match self.negotiated.iter().find(|(k, _)| *k == api).map(|&(_, n)| n) {
            Some(Negotiated::Version(v)) => Ok(v),
            Some(Negotiated::NoCommonVersion(broker_min, broker_max)) => {
                Err(ClientError::NoCommonVersion { api, broker_min, broker_max, client_min, client_max })
            }
            Some(Negotiated::NotServed) => Err(ClientError::NotServed { api }),
            None => Err(ClientError::NotSpoken { api }),
        }
    }

    /// The versions (min, max) the broker advertised for `api`, for any API.
    pub fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker.iter().find(|(k, _, _)| *k == api as i16).map(|&(_, min, max)| (min, max))
    }

    /// The versions (min, max) this client speaks of `api`.
    pub fn client_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        client_range(self.client, api)
    }
}

fn client_range(client: &[(ApiKey, i16, i16)], api: ApiKey) -> Option<(i16, i16)> {
    client.iter().find(|(k, _, _)| *k == api).map(|&(_, min, max)| (min, max))
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// A request frame, encoded but not yet given a correlation id: the caller may encode it outside
/// any lock it shares with the connection's reader, and [`ClientCore::start`] numbers and tracks
/// it in O(1).
#[derive(Debug)]
pub struct RequestFrame {
    frame: BytesMut,
    api: ApiKey,
    version: i16,
}

impl RequestFrame {
    /// One request frame: the 4-byte length, the request header (v1, or v2 for flexible
    /// versions), the body; correlation id 0 until it is started.
    pub fn encode<R: Request>(request: &R, version: i16, client_id: &str) -> Result<RequestFrame, ClientError> {
        let api = api_key_of::<R>()?;
        let encode_error = |e: anyhow::Error| ClientError::Encode { api, version, reason: format!("{e:#}") };
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = 0;
        header.client_id = Some(StrBytes::from_string(client_id.to_string()));
        let mut frame = BytesMut::with_capacity(64);
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version)).map_err(encode_error)?;
        request.encode(&mut frame, version).map_err(encode_error)?;
        let length = i32::try_from(frame.len() - FRAME_LENGTH_BYTES).map_err(|_| ClientError::Encode {
            api,
            version,
            reason: String::from("request larger than 2 GiB"),
        })?;
        frame[..FRAME_LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
        Ok(RequestFrame { frame, api, version })
    }

    pub fn api(&self) -> ApiKey {
        self.api
    }

    pub fn version(&self) -> i16 {
        self.version
    }

    fn numbered(mut self, correlation_id: i32) -> Bytes {
        self.frame[REQUEST_CORRELATION_ID_OFFSET..REQUEST_CORRELATION_ID_OFFSET + 4].copy_from_slice(&correlation_id.to_be_bytes());
        self.frame.freeze()
    }
}

/// One request frame with its correlation id, for callers that number requests themselves.
pub fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32, client_id: &str) -> Result<Bytes, ClientError> {
    Ok(RequestFrame::encode(request, version, client_id)?.numbered(correlation_id))
}

/// An ApiVersions request at `version`, naming the client software (KIP-511: brokers check the
/// name and version against `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`).
pub fn api_versions_request(version: i16, software_name: &'static str, software_version: &'static str) -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    if version >= 3 {
        request.client_software_name = StrBytes::from_static_str(software_name);
        request.client_software_version = StrBytes::from_static_str(software_version);
    }
    request
}

// ---------------------------------------------------------------------------------------------
// The connection state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client id in every request header; brokers log it.
    pub client_id: String,
    /// ApiVersions v3+ names the client software and its version.
    pub software_name: &'static str,
    pub software_version: &'static str,
    /// The versions this client speaks, per API: (key, min, max).
    pub versions: &'static [(ApiKey, i16, i16)],
    pub in_flight_max: usize,
    pub response_bytes_max: usize,
}

/// A request in flight: what its answer must be decoded as, and the caller's token for it (a
/// channel to the waiting task, say; `()` for a caller with one request at a time).
#[derive(Debug)]
struct InFlight<T> {
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    token: T,
}

/// What [`ClientCore::receive_api_versions`] asks the caller to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// The versions are known.
    Done,
    /// The broker does not speak the version sent: send ApiVersions again at this version.
    Retry(i16),
}

/// One connection's protocol state: correlation ids, requests in flight, negotiated versions.
#[derive(Debug)]
pub struct ClientCore<T> {
    config: ClientConfig,
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight<T>>,
    versions: Option<Versions>,
    api_versions_tries: u32,
}

impl<T> ClientCore<T> {
    pub fn new(config: ClientConfig) -> ClientCore<T> {
        assert!(config.in_flight_max > 0, "a connection needs room for one request");
        ClientCore { config, next_correlation_id: 1, in_flight: VecDeque::new(), versions: None, api_versions_tries: 0 }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The negotiated versions, once ApiVersions has been answered.
    pub fn versions(&self) -> Option<&Versions> {
        self.versions.as_ref()
    }

    /// The version to use for `api`, or why there is none.
    pub fn version(&self, api: ApiKey) -> Result<i16, ClientError> {
        match &self.versions {
            Some(versions) => versions.version(api),
            None if client_range(self.config.versions, api).is_none() => Err(ClientError::NotSpoken { api }),
            None => Err(ClientError::NotNegotiated { api }),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Gives `request` the next correlation id and tracks it until its answer comes; returns
    /// the frame to write. The caller must write frames in the order they are started.
    pub fn start(&mut self, request: RequestFrame, token: T) -> Result<Bytes, (ClientError, T)> {
        if self.in_flight.len() >= self.config.in_flight_max {
            return Err((ClientError::TooManyInFlight { max: self.config.in_flight_max }, token));
        }
        let correlation_id = self.take_correlation_id();
        self.in_flight.push_back(InFlight { correlation_id, api: request.api, version: request.version, token });
        Ok(request.numbered(correlation_id))
    }

    /// Numbers a request the broker does not answer (a Produce with acks=0): nothing is tracked.
    pub fn start_without_response(&mut self, request: RequestFrame) -> Bytes {
        let correlation_id = self.take_correlation_id();
        request.numbered(correlation_id)
    }

    /// Encodes `request` at `version` and starts it (see [`ClientCore::start`]).
    pub fn request<R: Request>(&mut self, request: &R, version: i16, token: T) -> Result<Bytes, ClientError> {
        let frame = RequestFrame::encode(request, version, &self.config.client_id)?;
        self.start(frame, token).map_err(|(e, _)| e)
    }

    /// Encodes `request` at the version negotiated for its API, and starts it.
    pub fn request_negotiated<R: Request>(&mut self, request: &R, token: T) -> Result<Bytes, ClientError> {
        let version = self.version(api_key_of::<R>()?)?;
        self.request(request, version, token)
    }

    fn take_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    /// The ApiVersions request to send first: at the highest version this client speaks.
    pub fn api_versions_version_first(&self) -> i16 {
        client_range(self.config.versions, ApiKey::ApiVersions).map_or(0, |(_, max)| max)
    }

    /// Starts an ApiVersions request at `version`.
    pub fn request_api_versions(&mut self, version: i16, token: T) -> Result<Bytes, ClientError> {
        self.api_versions_tries += 1;
        let request = api_versions_request(version, self.config.software_name, self.config.software_version);
        self.request(&request, version, token)
    }

    /// Takes the broker's answer to the ApiVersions request sent at `version` and keeps, for
    /// each API this client speaks, the best version both sides speak.
    pub fn receive_api_versions(&mut self, response: &ApiVersionsResponse, version: i16) -> Result<Negotiation, ClientError> {
        let broker = response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        let versions = Versions::new(self.config.versions, broker);
        let outcome = match response.error_code {
            NONE => Ok(Negotiation::Done),
            UNSUPPORTED_VERSION => match versions.version(ApiKey::ApiVersions) {
                Ok(v) if v != version && self.api_versions_tries < API_VERSIONS_TRIES_MAX => Ok(Negotiation::Retry(v)),
                _ => Err(ClientError::NoApiVersionsInCommon),
            },
            error_code => Err(ClientError::ApiVersionsRefused { version, error_code }),
        };
        self.versions = Some(versions);
        outcome
    }

    /// Matches a whole response frame (length prefix included) to the oldest request in flight
    /// and strips its response header. On an error the connection is out of step: the caller
    /// should close it and fail what [`ClientCore::drain`] returns.
    pub fn receive(&mut self, frame: Bytes) -> Result<(ResponseFrame, T), ClientError> {
        let mut frame = frame;
        check_frame_length(&frame, self.config.response_bytes_max)?;
        frame.advance(FRAME_LENGTH_BYTES);
        // Both response header versions start with the correlation id; the check above ensures
        // the four bytes are there.
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let expected = self.in_flight.front().map(|p| p.correlation_id);
        if expected != Some(correlation_id) {
            return Err(match expected {
                Some(expected) if self.in_flight.iter().any(|p| p.correlation_id == correlation_id) => ClientError::OutOfOrder { correlation_id, expected },
                _ => ClientError::UnknownCorrelationId { correlation_id, expected },
            });
        }
        let pending = self.in_flight.pop_front().expect("the front was just read");
        let (api, version) = (pending.api, pending.version);
        ResponseHeader::decode(&mut frame, api.response_header_version(version)).map_err(|e| ClientError::Header { api, version, reason: format!("{e:#}") })?;
        Ok((ResponseFrame { correlation_id, api, version, body: frame }, pending.token))
    }

    /// Forgets every request in flight and returns their tokens, oldest first: for a caller
    /// whose connection has failed.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.in_flight.drain(..).map(|p| p.token)
    }
}

/// Checks that `frame` (length prefix included) is as long as its prefix says, within bounds.
fn check_frame_length(frame: &[u8], max: usize) -> Result<(), ClientError> {
    let Some(prefix) = frame.get(..FRAME_LENGTH_BYTES) else {
        return Err(ClientError::FrameLengthMismatch { length: -1, actual: frame.len() });
    };
    let length = i64::from(i32::from_be_bytes(prefix.try_into().expect("four bytes")));
    check_length(length, max)?;
    let actual = frame.len() - FRAME_LENGTH_BYTES;
    if actual as i64 != length {
        return Err(ClientError::FrameLengthMismatch { length, actual });
    }
    Ok(())
}

fn check_length(length: i64, max: usize) -> Result<usize, ClientError> {
    if length < RESPONSE_BYTES_MIN as i64 || length > max as i64 {
        return Err(ClientError::FrameLength { length, max });
    }
    Ok(length as usize)
}

/// A response matched to its request, header stripped: decode it with [`ResponseFrame::decode`].
#[derive(Debug, Clone)]
pub struct ResponseFrame {
    pub correlation_id: i32,
    pub api: ApiKey,
    pub version: i16,
    pub body: Bytes,
}

impl ResponseFrame {
    /// Validates the body against its response schema, decodes it as the response to `R`, and
    /// insists that every byte was read.
    pub fn decode<R: Request>(self) -> Result<R::Response, ClientError> {
        if R::KEY != self.api as i16 {
            return Err(ClientError::WrongResponseType { expected: self.api, decoded: R::KEY });
        }
        let api = self.api;
        let mut body = self.body;
        // A broker that does not know the ApiVersions version asked answers with a v0 body (the
        // error code comes first in every version), so that any client can read the refusal.
        let version =
            if api == ApiKey::ApiVersions && body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION { 0 } else { self.version };
        validate_response_body(api as i16, version, &body).map_err(|source| ClientError::InvalidBody { api, version, source })?;
        let response = R::Response::decode(&mut body, version).map_err(|e| ClientError::Undecodable { api, version, reason: format!("{e:#}") })?;
        if body.has_remaining() {
            return Err(ClientError::TrailingBytes { api, version, count: body.remaining() });
        }
        Ok(response)
    }
}

/// The one table of the APIs whose answers this crate's clients check and decode: the
/// [`ResponseBody`] enum, [`ResponseFrame::decode_body`] and [`RequestFrame::with_defaults`]
/// are generated from it, and a unit test holds it to the response validator's schemas (both
/// ways), so that a schema added there cannot be left out of the fuzz target that uses these.
/// Each name is the `ApiKey` variant and the `ResponseBody` variant; the type is
/// `kafka-protocol`'s request, whose `Response` is what is decoded.
macro_rules! response_decoders {
    ($($api:ident => $request:ident,)*) => {
        /// A response decoded for an API known only at run time (the fuzz target, tests); the
        /// clients decode the type they asked for with [`ResponseFrame::decode`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum ResponseBody {
            $($api(<m::$request as Request>::Response),)*
        }

        impl ResponseFrame {
            /// [`ResponseFrame::decode`] as the response to the API this frame was matched to.
            /// An API outside the table is refused as the validator refuses it.
            pub fn decode_body(self) -> Result<ResponseBody, ClientError> {
                match self.api {
                    $(ApiKey::$api => self.decode::<m::$request>().map(ResponseBody::$api),)*
                    api => Err(ClientError::InvalidBody { api, version: self.version, source: ValidationError::UnknownApi(api as i16) }),
                }
            }
        }

        impl RequestFrame {
            /// A request for `api` at `version` with every field at its default: something to
            /// start on a [`ClientCore`] so that it expects an answer of that API and version.
            pub fn with_defaults(api: ApiKey, version: i16, client_id: &str) -> Result<RequestFrame, ClientError> {
                match api {
                    $(ApiKey::$api => RequestFrame::encode(&m::$request::default(), version, client_id),)*
                    api => Err(ClientError::NotSpoken { api }),
                }
            }
        }

        #[cfg(test)]
        const RESPONSE_DECODED_APIS: &[ApiKey] = &[$(ApiKey::$api),*];
    };
}

response_decoders! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    Metadata => MetadataRequest,
    OffsetFetch => OffsetFetchRequest,
    JoinGroup => JoinGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    SyncGroup => SyncGroupRequest,
    DescribeGroups => DescribeGroupsRequest,
    ListGroups => ListGroupsRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    DescribeAcls => DescribeAclsRequest,
    CreateAcls => CreateAclsRequest,
    DeleteAcls => DeleteAclsRequest,
    DescribeConfigs => DescribeConfigsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
    AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    WriteTxnMarkers => WriteTxnMarkersRequest,
    AddPartitionsToTxn => AddPartitionsToTxnRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    SaslHandshake => SaslHandshakeRequest,
    SaslAuthenticate => SaslAuthenticateRequest,
}

// ---------------------------------------------------------------------------------------------
// Framing a byte stream
// ---------------------------------------------------------------------------------------------

/// Accumulates bytes read from a connection and yields whole response frames (length prefix
/// included), checking each length prefix against `frame_bytes_max` before it reserves room for
/// the frame.
#[derive(Debug)]
pub struct FrameReader {
    buffer: BytesMut,
    frame_bytes_max: usize,
    read_bytes_min: usize,
}

impl FrameReader {
    pub fn new(frame_bytes_max: usize) -> FrameReader {
        FrameReader::with_read_bytes_min(frame_bytes_max, READ_BYTES_MIN_DEFAULT)
    }

    /// A reader whose [`FrameReader::read_buffer`] always has room for `read_bytes_min` bytes:
    /// larger reads mean fewer syscalls for a stream of many small answers.
    pub fn with_read_bytes_min(frame_bytes_max: usize, read_bytes_min: usize) -> FrameReader {
        FrameReader { buffer: BytesMut::with_capacity(read_bytes_min), frame_bytes_max, read_bytes_min }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The buffer to read into directly (`read_buf`), with room for at least one more read.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        if self.buffer.capacity() - self.buffer.len() < self.read_bytes_min {
            self.buffer.reserve(self.read_bytes_min);
        }
        &mut self.buffer
    }

    /// Bytes received and not yet yielded as a frame.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole frame, None until one has arrived; an error when a length prefix is out
    /// of bounds (the stream cannot be followed past it).
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, ClientError> {
        let Some(prefix) = self.buffer.get(..FRAME_LENGTH_BYTES) else { return Ok(None) };
        let length = check_length(i64::from(i32::from_be_bytes(prefix.try_into().expect("four bytes"))), self.frame_bytes_max)?;
        let frame_bytes = FRAME_LENGTH_BYTES + length;
        if self.buffer.len() < frame_bytes {
            // Room for the rest of this frame at once, so that a large answer is not copied
            // again as it grows; the length is within the bound checked above.
            self.buffer.reserve(frame_bytes - self.buffer.len());
            return Ok(None);
        }
        Ok(Some(self.buffer.split_to(frame_bytes).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{decode_request, RequestBody};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
    use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

    const VERSIONS: &[(ApiKey, i16, i16)] = &[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 1, 12), (ApiKey::ListOffsets, 1, 10), (ApiKey::Produce, 3, 12)];

    fn config() -> ClientConfig {
        ClientConfig {
            client_id: String::from("test-client"),
            software_name: "shardlog-test",
            software_version: "1.0",
            versions: VERSIONS,
            in_flight_max: 3,
            response_bytes_max: 1024 * 1024,
        }
    }

    /// A response frame as a broker encodes it with kafka-protocol.
    fn response_frame<R: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
        crate::response::encode_response(correlation_id, api.response_header_version(version), body, version).unwrap()
    }

    fn broker_api_versions(keys: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        let mut response = ApiVersionsResponse::default();
        response.api_keys = keys
            .iter()
            .map(|&(key, min, max)| {
                let mut v = ApiVersion::default();
                v.api_key = key as i16;
                v.min_version = min;
                v.max_version = max;
                v
            })
            .collect();
        response
    }

    fn negotiated(keys: &[(ApiKey, i16, i16)]) -> ClientCore<u32> {
        let mut core = ClientCore::new(config());
        let version = core.api_versions_version_first();
        let frame = core.request_api_versions(version, 0).unwrap();
        let (_, body) = decode_request(frame.slice(4..)).unwrap();
        assert!(matches!(body, RequestBody::ApiVersions(_)));
        let (response, _) = core.receive(response_frame(ApiKey::ApiVersions, version, 1, &broker_api_versions(keys))).unwrap();
        let response = response.decode::<ApiVersionsRequest>().unwrap();
        assert_eq!(core.receive_api_versions(&response, version), Ok(Negotiation::Done));
        core
    }

    fn metadata_request(topic: &str) -> MetadataRequest {
        let mut request = MetadataRequest::default();
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
        request.topics = Some(vec![t]);
        request
    }

    #[test]
    fn negotiate_picks_the_highest_common_version() {
        let client = &[(ApiKey::ListGroups, 0, 5), (ApiKey::OffsetFetch, 2, 9), (ApiKey::ListOffsets, 1, 10), (ApiKey::DescribeGroups, 0, 6)];
        let broker = &[(ApiKey::ListGroups as i16, 0, 4), (ApiKey::OffsetFetch as i16, 0, 1), (ApiKey::ListOffsets as i16, 1, 12)];
        assert_eq!(
            negotiate(client, broker),
            vec![
                (ApiKey::ListGroups, Negotiated::Version(4)),
                (ApiKey::OffsetFetch, Negotiated::NoCommonVersion(0, 1)),
                (ApiKey::ListOffsets, Negotiated::Version(10)),
                (ApiKey::DescribeGroups, Negotiated::NotServed),
            ]
        );
        assert_eq!(
            negotiate(&[(ApiKey::ListOffsets, 1, 3)], &[(ApiKey::ListOffsets as i16, 4, 7)]),
            vec![(ApiKey::ListOffsets, Negotiated::NoCommonVersion(4, 7))]
        );
    }

    #[test]
    fn versions_name_the_api_when_there_is_none() {
        let core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 9), (ApiKey::ListOffsets, 11, 12)]);
        assert_eq!(core.version(ApiKey::Metadata), Ok(9));
        let e = core.version(ApiKey::ListOffsets).unwrap_err();
        assert_eq!(e.to_string(), "the broker serves ListOffsets versions 11-12, and this client speaks 1-10: no version in common");
        assert_eq!(core.version(ApiKey::Produce).unwrap_err().to_string(), "the broker does not serve Produce (it is not in its ApiVersions answer)");
        assert_eq!(core.version(ApiKey::Fetch), Err(ClientError::NotSpoken { api: ApiKey::Fetch }));
        assert_eq!(core.versions().unwrap().broker_versions(ApiKey::ListOffsets), Some((11, 12)));
        let fresh: ClientCore<()> = ClientCore::new(config());
        assert_eq!(fresh.version(ApiKey::Metadata), Err(ClientError::NotNegotiated { api: ApiKey::Metadata }));
    }

    #[test]
    fn an_unsupported_api_versions_version_is_retried_once_at_the_brokers_version() {
        let mut core: ClientCore<()> = ClientCore::new(config());
        let frame = core.request_api_versions(4, ()).unwrap();
        assert_eq!(i16::from_be_bytes([frame[6], frame[7]]), 4);
        // The refusal is a v0 body whatever version was asked.
        let mut refusal = broker_api_versions(&[(ApiKey::ApiVersions, 0, 2)]);
        refusal.error_code = UNSUPPORTED_VERSION;
        let (response, ()) = core.receive(response_frame(ApiKey::ApiVersions, 0, 1, &refusal)).unwrap();
        // Encoded at v0 but asked at v4: the frame says v4, the body is read at v0.
        assert_eq!(response.version, 4);
        let response = response.decode::<ApiVersionsRequest>().unwrap();
        assert_eq!(core.receive_api_versions(&response, 4), Ok(Negotiation::Retry(2)));
        core.request_api_versions(2, ()).unwrap();
        // A second refusal ends it: the tries are bounded.
        assert_eq!(core.receive_api_versions(&refusal, 2), Err(ClientError::NoApiVersionsInCommon));
        let mut other = broker_api_versions(&[]);
        other.error_code = 31;
        assert_eq!(core.receive_api_versions(&other, 2).unwrap_err().to_string(), "the broker refused ApiVersions v2: CLUSTER_AUTHORIZATION_FAILED (31)");
    }

    #[test]
    fn requests_round_trip_through_the_brokers_decoder() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        for version in [1, 8, 9, 12] {
            let frame = core.request(&metadata_request("orders"), version, 7).unwrap();
            assert_eq!(i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
            let (header, body) = decode_request(frame.slice(4..)).unwrap();
            assert_eq!((header.api_key, header.api_version), (ApiKey::Metadata as i16, version));
            assert_eq!(header.client_id_lossy(), "test-client");
            let RequestBody::Metadata(request) = body else { panic!("{body:?}") };
            assert_eq!(request.topics.unwrap()[0].name.as_ref().unwrap().0.as_str(), "orders");
            core.drain().for_each(drop);
        }
        // Correlation ids rise with each request, the negotiated version is used when asked for.
        let a = core.request_negotiated(&metadata_request("a"), 1).unwrap();
        let b = core.request_negotiated(&metadata_request("b"), 2).unwrap();
        let (ha, _) = decode_request(a.slice(4..)).unwrap();
        let (hb, _) = decode_request(b.slice(4..)).unwrap();
        assert_eq!(ha.api_version, 12);
        assert_eq!(hb.correlation_id, ha.correlation_id + 1);
    }

    #[test]
    fn responses_decode_with_their_header_version() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        let mut response = MetadataResponse::default();
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(3);
        broker.host = StrBytes::from_static_str("localhost");
        broker.port = 9092;
        response.brokers = vec![broker];
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_static_str("orders")));
        response.topics = vec![topic];
        // v8: response header v0; v12: header v1 with tagged fields. Two in flight at once.
        core.request(&metadata_request("orders"), 8, 80).unwrap();
        core.request(&metadata_request("orders"), 12, 120).unwrap();
        assert_eq!(core.in_flight(), 2);
        for (version, id, token) in [(8, 2, 80), (12, 3, 120)] {
            let (frame, got) = core.receive(response_frame(ApiKey::Metadata, version, id, &response)).unwrap();
            assert_eq!((frame.api, frame.version, frame.correlation_id, got), (ApiKey::Metadata, version, id, token));
            let decoded = frame.decode::<MetadataRequest>().unwrap();
            assert_eq!(decoded.brokers[0].host.as_str(), "localhost");
            assert_eq!(decoded.topics[0].name.as_ref().unwrap().0.as_str(), "orders");
        }
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn unknown_and_out_of_order_correlation_ids_are_errors() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        let response = MetadataResponse::default();
        assert_eq!(
            core.receive(response_frame(ApiKey::Metadata, 12, 2, &response)).unwrap_err(),
            ClientError::UnknownCorrelationId { correlation_id: 2, expected: None }
        );
        core.request(&metadata_request("a"), 12, 1).unwrap();
        core.request(&metadata_request("b"), 12, 2).unwrap();
        let e = core.receive(response_frame(ApiKey::Metadata, 12, 3, &response)).unwrap_err();
        assert_eq!(e, ClientError::OutOfOrder { correlation_id: 3, expected: 2 });
        assert!(e.to_string().contains("out of order"), "{e}");
        let e = core.receive(response_frame(ApiKey::Metadata, 12, 99, &response)).unwrap_err();
        assert_eq!(e.to_string(), "response with correlation id 99, which no request in flight has (next expected: 2)");
        assert_eq!(core.drain().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn wrong_lengths_truncation_and_hostile_counts_are_errors_not_panics() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        core.request(&metadata_request("a"), 12, 1).unwrap();
        let good = response_frame(ApiKey::Metadata, 12, 2, &MetadataResponse::default());
        // The prefix says more than is there, or less; no prefix at all; a negative one.
        let short = good.slice(..good.len() - 1);
        assert!(matches!(core.receive(short), Err(ClientError::FrameLengthMismatch { .. })));
        let mut long = BytesMut::from(&good[..]);
        long.put_u8(0);
        assert!(matches!(core.receive(long.freeze()), Err(ClientError::FrameLengthMismatch { .. })));
        assert!(core.receive(Bytes::from_static(&[0, 0])).is_err());
        assert!(matches!(core.receive(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])), Err(ClientError::FrameLength { length: -1, .. })));
        assert_eq!(core.in_flight(), 1, "a bad frame leaves the request in flight for the caller to fail");

        // A body cut short at every byte is refused, never decoded into a panic.
        let mut response = MetadataResponse::default();
        response.topics = vec![MetadataResponseTopic::default()];
        let whole = response_frame(ApiKey::Metadata, 12, 2, &response);
        for cut in 9..whole.len() {
            let mut frame = BytesMut::from(&whole[..cut]);
            let length = (cut - 4) as i32;
            frame[..4].copy_from_slice(&length.to_be_bytes());
            let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
            core.request(&metadata_request("a"), 12, 1).unwrap();
            match core.receive(frame.freeze()) {
                Ok((frame, _)) => assert!(frame.decode::<MetadataRequest>().is_err(), "cut at {cut}"),
                Err(e) => assert!(matches!(e, ClientError::Header { .. }), "cut at {cut}: {e}"),
            }
        }

        // A topic count of two billion in a 20-byte body: rejected before anything is reserved.
        let mut hostile = BytesMut::new();
        hostile.put_i32(0); // length, patched
        hostile.put_i32(2); // correlation id
        hostile.put_i32(0); // throttle time (v3+)
        hostile.put_i32(0); // no brokers
        hostile.put_i16(-1); // null cluster id
        hostile.put_i32(1); // controller id
        hostile.put_i32(i32::MAX); // topics
        let length = (hostile.len() - 4) as i32;
        hostile[..4].copy_from_slice(&length.to_be_bytes());
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 8)]);
        core.request(&metadata_request("a"), 8, 1).unwrap();
        let (frame, _) = core.receive(hostile.freeze()).unwrap();
        let e = frame.decode::<MetadataRequest>().unwrap_err();
        assert!(matches!(e, ClientError::InvalidBody { source: ValidationError::CountTooLarge { .. }, .. }), "{e}");
        assert!(e.to_string().starts_with("invalid Metadata v8 response body: MetadataResponse.Topics at byte 14"), "{e}");
    }

    #[test]
    fn trailing_bytes_and_versions_without_a_schema_are_refused() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        core.request(&metadata_request("a"), 9, 1).unwrap();
        let frame = response_frame(ApiKey::Metadata, 9, 2, &MetadataResponse::default());
        let mut longer = BytesMut::from(&frame[..]);
        longer.put_u8(7);
        let length = (longer.len() - 4) as i32;
        longer[..4].copy_from_slice(&length.to_be_bytes());
        let (frame, _) = core.receive(longer.freeze()).unwrap();
        assert_eq!(frame.clone().decode::<MetadataRequest>().unwrap_err(), ClientError::TrailingBytes { api: ApiKey::Metadata, version: 9, count: 1 });
        assert!(matches!(frame.decode::<ApiVersionsRequest>(), Err(ClientError::WrongResponseType { .. })));
        // Metadata v13 decodes in the crate, but has no response schema here: not decoded.
        let unchecked = ResponseFrame { correlation_id: 1, api: ApiKey::Metadata, version: 13, body: Bytes::new() };
        assert!(matches!(unchecked.decode::<MetadataRequest>(), Err(ClientError::InvalidBody { source: ValidationError::UnknownVersion { .. }, .. })));
    }

    #[test]
    fn in_flight_requests_are_bounded() {
        let mut core = negotiated(&[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)]);
        for token in 0..3 {
            core.request(&metadata_request("a"), 12, token).unwrap();
        }
        let frame = RequestFrame::encode(&metadata_request("a"), 12, "c").unwrap();
        let (e, token) = core.start(frame, 9).unwrap_err();
        assert_eq!((e, token), (ClientError::TooManyInFlight { max: 3 }, 9));
        // A request without an answer is numbered but not tracked.
        let frame = core.start_without_response(RequestFrame::encode(&metadata_request("a"), 12, "c").unwrap());
        let (header, _) = decode_request(frame.slice(4..)).unwrap();
        assert_eq!(header.correlation_id, 5);
        assert_eq!(core.in_flight(), 3);
    }

    #[test]
    fn the_frame_reader_yields_whole_frames_and_bounds_lengths() {
        let a = response_frame(ApiKey::Metadata, 12, 1, &MetadataResponse::default());
        let b = response_frame(ApiKey::Metadata, 8, 2, &MetadataResponse::default());
        let mut stream = a.to_vec();
        stream.extend_from_slice(&b);
        // Fed a byte at a time, then all at once: the same frames.
        let mut reader = FrameReader::new(1024);
        let mut frames = Vec::new();
        for byte in &stream {
            reader.push(&[*byte]);
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![a.clone(), b.clone()]);
        let mut reader = FrameReader::new(1024);
        reader.read_buffer().extend_from_slice(&stream);
        assert_eq!(reader.next_frame().unwrap(), Some(a));
        assert_eq!(reader.next_frame().unwrap(), Some(b));
        assert_eq!(reader.next_frame().unwrap(), None);
        assert_eq!(reader.buffered_bytes(), 0);

        for length in [i32::MAX, 1025, 3, 0, -1] {
            let mut reader = FrameReader::new(1024);
            reader.push(&length.to_be_bytes());
            let e = reader.next_frame().unwrap_err();
            assert_eq!(e, ClientError::FrameLength { length: i64::from(length), max: 1024 });
        }
        assert_eq!(ClientError::FrameLength { length: 2147483647, max: 1024 }.to_string(), "response frame claims 2147483647 bytes, outside 4..=1024");
    }

    #[test]
    fn the_response_table_covers_exactly_the_validators_schemas() {
        let schemas: std::collections::BTreeSet<i16> = crate::validate::response_schema_versions().map(|(key, _)| key).collect();
        let table: std::collections::BTreeSet<i16> = RESPONSE_DECODED_APIS.iter().map(|&api| api as i16).collect();
        assert_eq!(table, schemas);
        for (key, version) in crate::validate::response_schema_versions() {
            let api = ApiKey::try_from(key).unwrap();
            let request = RequestFrame::with_defaults(api, version, "t").unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
            assert_eq!((request.api(), request.version()), (api, version));
            // An empty body is refused for being cut short, never for want of a decoder.
            let e = ResponseFrame { correlation_id: 1, api, version, body: Bytes::new() }.decode_body().unwrap_err();
            assert!(!matches!(e, ClientError::InvalidBody { source: ValidationError::UnknownApi(_), .. }), "{api:?} v{version}: {e}");
        }
        let e = ResponseFrame { correlation_id: 1, api: ApiKey::EndTxn, version: 0, body: Bytes::new() }.decode_body().unwrap_err();
        assert_eq!(e, ClientError::InvalidBody { api: ApiKey::EndTxn, version: 0, source: ValidationError::UnknownApi(26) });
        assert_eq!(RequestFrame::with_defaults(ApiKey::EndTxn, 0, "t").unwrap_err(), ClientError::NotSpoken { api: ApiKey::EndTxn });
    }
}
