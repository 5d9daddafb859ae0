//! Request decoding: header first, then a validated body.
//!
//! The body is checked by [`crate::validate`] before `kafka-protocol` sees it, because that
//! crate sizes its vectors from counts read off the wire.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Message, VersionRange};

use crate::validate::{validate_request_body, ValidationError};

/// The parsed request header. `client_id` is kept as raw bytes: it is only logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<Bytes>,
    /// Bytes of the header, so that `frame[header_bytes..]` is the body.
    pub header_bytes: usize,
}

impl RequestHeader {
    pub fn client_id_lossy(&self) -> String {
        match &self.client_id {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => String::from("-"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request header is truncated: {0}")]
    TruncatedHeader(&'static str),
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("invalid request body for api key {api_key} version {api_version}: {source}")]
    InvalidBody { api_key: i16, api_version: i16, source: ValidationError },
    #[error("request body for api key {api_key} version {api_version} does not decode: {reason}")]
    Undecodable { api_key: i16, api_version: i16, reason: String },
}

/// The first 8 bytes of any request: enough to answer even when the rest is bad.
pub fn peek_key_version_correlation(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((i16::from_be_bytes([frame[0], frame[1]]), i16::from_be_bytes([frame[2], frame[3]]), i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])))
}

/// Parses the request header (v1, or v2 with tagged fields for flexible versions).
pub fn parse_header(frame: &Bytes) -> Result<RequestHeader, RequestError> {
    let (api_key, api_version, correlation_id) =
        peek_key_version_correlation(frame).ok_or(RequestError::TruncatedHeader("api key, version and correlation id"))?;
    let key = ApiKey::try_from(api_key).map_err(|_| RequestError::UnknownApiKey { api_key, correlation_id })?;
    let header_version = key.request_header_version(api_version);
    let mut buf = &frame[8..];
    let client_id = if header_version >= 1 {
        if buf.len() < 2 {
            return Err(RequestError::TruncatedHeader("client id length"));
        }
        let length = buf.get_i16();
        if length < 0 {
            None
        } else {
            let length = length as usize;
            if buf.len() < length {
                return Err(RequestError::TruncatedHeader("client id"));
            }
            let start = frame.len() - buf.len();
            buf.advance(length);
            Some(frame.slice(start..start + length))
        }
    } else {
        None
    };
    if header_version >= 2 {
        let count = read_uvarint(&mut buf).ok_or(RequestError::TruncatedHeader("tagged field count"))?;
        for _ in 0..count {
            let _tag = read_uvarint(&mut buf).ok_or(RequestError::TruncatedHeader("tagged field tag"))?;
            let size = read_uvarint(&mut buf).ok_or(RequestError::TruncatedHeader("tagged field size"))? as usize;
            if buf.len() < size {
                return Err(RequestError::TruncatedHeader("tagged field"));
            }
            buf.advance(size);
        }
    }
    Ok(RequestHeader { api_key, api_version, correlation_id, client_id, header_bytes: frame.len() - buf.len() })
}

fn read_uvarint(buf: &mut &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *buf.first()?;
        buf.advance(1);
        value |= ((byte & 0x7f) as u32).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The one table of request bodies this crate decodes: the `RequestBody` enum, the decoder
/// behind it and [`has_decoder`] are all generated from it, so the broker, the validator's tests
/// and the fuzz targets cannot drift apart. Each name is both the `ApiKey` variant and the
/// `RequestBody` variant; the type is `kafka-protocol`'s message.
macro_rules! request_bodies {
    ($($api:ident => $message:ident,)*) => {
        /// Requests the broker understands, decoded.
        #[derive(Debug, Clone, PartialEq)]
        pub enum RequestBody {
            $($api(m::$message),)*
        }

        /// The versions `kafka-protocol` decodes for `api_key`, None if it is not in the table.
        fn decoder_versions(api_key: i16) -> Option<VersionRange> {
            match ApiKey::try_from(api_key).ok()? {
                $(ApiKey::$api => Some(<m::$message as Message>::VERSIONS),)*
                _ => None,
            }
        }

        /// Decodes `body` with `kafka-protocol` and leaves it after the last byte read. It does
        /// not validate: anything from the wire goes through [`decode_body`], because the
        /// decoder sizes vectors from counts it reads.
        pub fn decode_request_body(api_key: i16, api_version: i16, body: &mut Bytes) -> Result<RequestBody, RequestError> {
            let undecodable = |e: anyhow::Error| RequestError::Undecodable { api_key, api_version, reason: e.to_string() };
            match ApiKey::try_from(api_key) {
                $(Ok(ApiKey::$api) => m::$message::decode(body, api_version).map(RequestBody::$api).map_err(undecodable),)*
                _ => Err(RequestError::Undecodable { api_key, api_version, reason: String::from("no decoder for this api") }),
            }
        }

        #[cfg(test)]
        const DECODED_APIS: &[ApiKey] = &[$(ApiKey::$api),*];
    };
}

request_bodies! {
    Produce => ProduceRequest,
    Fetch => FetchRequest,
    ListOffsets => ListOffsetsRequest,
    Metadata => MetadataRequest,
    ApiVersions => ApiVersionsRequest,
    CreateTopics => CreateTopicsRequest,
    DeleteTopics => DeleteTopicsRequest,
    CreatePartitions => CreatePartitionsRequest,
    DescribeCluster => DescribeClusterRequest,
    DescribeQuorum => DescribeQuorumRequest,
    AddRaftVoter => AddRaftVoterRequest,
    RemoveRaftVoter => RemoveRaftVoterRequest,
    UpdateRaftVoter => UpdateRaftVoterRequest,
    FindCoordinator => FindCoordinatorRequest,
    JoinGroup => JoinGroupRequest,
    SyncGroup => SyncGroupRequest,
    Heartbeat => HeartbeatRequest,
    LeaveGroup => LeaveGroupRequest,
    OffsetCommit => OffsetCommitRequest,
    OffsetFetch => OffsetFetchRequest,
    ListGroups => ListGroupsRequest,
    DescribeGroups => DescribeGroupsRequest,
    DeleteGroups => DeleteGroupsRequest,
    OffsetDelete => OffsetDeleteRequest,
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
    InitProducerId => InitProducerIdRequest,
    AddPartitionsToTxn => AddPartitionsToTxnRequest,
    AddOffsetsToTxn => AddOffsetsToTxnRequest,
    EndTxn => EndTxnRequest,
    TxnOffsetCommit => TxnOffsetCommitRequest,
    WriteTxnMarkers => WriteTxnMarkersRequest,
    DescribeProducers => DescribeProducersRequest,
    DescribeTransactions => DescribeTransactionsRequest,
    ListTransactions => ListTransactionsRequest,
    DescribeAcls => DescribeAclsRequest,
    CreateAcls => CreateAclsRequest,
    DeleteAcls => DeleteAclsRequest,
    SaslHandshake => SaslHandshakeRequest,
    SaslAuthenticate => SaslAuthenticateRequest,
    DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
    AlterUserScramCredentials => AlterUserScramCredentialsRequest,
    DescribeConfigs => DescribeConfigsRequest,
    AlterConfigs => AlterConfigsRequest,
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
    DeleteRecords => DeleteRecordsRequest,
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest,
    DescribeLogDirs => DescribeLogDirsRequest,
    DescribeTopicPartitions => DescribeTopicPartitionsRequest,
    DescribeClientQuotas => DescribeClientQuotasRequest,
    AlterClientQuotas => AlterClientQuotasRequest,
    UnregisterBroker => UnregisterBrokerRequest,
    UpdateFeatures => UpdateFeaturesRequest,
    ElectLeaders => ElectLeadersRequest,
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
    ListPartitionReassignments => ListPartitionReassignmentsRequest,
    ListConfigResources => ListConfigResourcesRequest,
}

/// True when the table has a decoder for this api key and `kafka-protocol` decodes this version.
pub fn has_decoder(api_key: i16, api_version: i16) -> bool {
    decoder_versions(api_key).is_some_and(|versions| versions.min <= api_version && api_version <= versions.max)
}

/// Validates and decodes the body of a request whose header is `header`.
/// The caller has already checked that the version is one it serves.
pub fn decode_body(header: &RequestHeader, frame: &Bytes) -> Result<RequestBody, RequestError> {
    let (api_key, api_version) = (header.api_key, header.api_version);
    let mut body = frame.slice(header.header_bytes..);
    validate_request_body(api_key, api_version, &body).map_err(|source| RequestError::InvalidBody { api_key, api_version, source })?;
    decode_request_body(api_key, api_version, &mut body)
}

/// Header then body, for fuzzing and tests.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, RequestBody), RequestError> {
    let header = parse_header(&frame)?;
    let body = decode_body(&header, &frame)?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate;

    #[test]
    fn every_version_the_validator_accepts_has_a_decoder() {
        let mut checked = 0;
        for (api_key, api_version) in validate::schema_versions() {
            assert!(has_decoder(api_key, api_version), "api key {api_key} v{api_version} validates, but the table has no decoder for it");
            checked += 1;
        }
        // A validator with no schemas would pass the loop above without checking anything.
        assert!(checked > 100, "only {checked} versions");
        assert!(!has_decoder(ApiKey::Fetch as i16, 10_000));
        assert!(!has_decoder(-1, 0));
    }

    #[test]
    fn every_decoder_in_the_table_has_a_schema() {
        // A decoder without a schema is dead code: `decode_body` rejects its requests unread.
        for &api in DECODED_APIS {
            assert!(validate::schema_versions().any(|(api_key, _)| api_key == api as i16), "{api:?} decodes, but the validator has no schema for it");
        }
    }

    #[test]
    fn decodes_through_the_table_and_leaves_the_rest() {
        // ApiVersions v3: compact strings for the client's software name and version, no tags.
        let mut body = Bytes::from_static(b"\x03ab\x021\x00trailing");
        let decoded = decode_request_body(ApiKey::ApiVersions as i16, 3, &mut body).unwrap();
        let RequestBody::ApiVersions(request) = decoded else { panic!("{decoded:?}") };
        assert_eq!(&*request.client_software_name, "ab");
        assert_eq!(&body[..], b"trailing");
        assert!(decode_request_body(ApiKey::ApiVersions as i16, 3, &mut Bytes::from_static(b"\x03a")).is_err());
        assert!(decode_request_body(-1, 0, &mut Bytes::new()).is_err());
    }
}
