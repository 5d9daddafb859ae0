//! Request decoding: header first, then a validated body.
//!
//! The body is checked by [`crate::validate`] before `kafka-protocol` sees it, because that
//! crate sizes its vectors from counts read off the wire.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::Decodable;

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

/// Requests the broker understands, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    Produce(m::ProduceRequest),
    Fetch(m::FetchRequest),
    ListOffsets(m::ListOffsetsRequest),
    Metadata(m::MetadataRequest),
    ApiVersions(m::ApiVersionsRequest),
    CreateTopics(m::CreateTopicsRequest),
    DeleteTopics(m::DeleteTopicsRequest),
    CreatePartitions(m::CreatePartitionsRequest),
    DescribeCluster(m::DescribeClusterRequest),
    FindCoordinator(m::FindCoordinatorRequest),
    JoinGroup(m::JoinGroupRequest),
    SyncGroup(m::SyncGroupRequest),
    Heartbeat(m::HeartbeatRequest),
    LeaveGroup(m::LeaveGroupRequest),
    OffsetCommit(m::OffsetCommitRequest),
    OffsetFetch(m::OffsetFetchRequest),
    ListGroups(m::ListGroupsRequest),
    DescribeGroups(m::DescribeGroupsRequest),
    DeleteGroups(m::DeleteGroupsRequest),
    OffsetDelete(m::OffsetDeleteRequest),
    ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(m::ConsumerGroupDescribeRequest),
    InitProducerId(m::InitProducerIdRequest),
    AddPartitionsToTxn(m::AddPartitionsToTxnRequest),
    AddOffsetsToTxn(m::AddOffsetsToTxnRequest),
    EndTxn(m::EndTxnRequest),
    TxnOffsetCommit(m::TxnOffsetCommitRequest),
    DescribeProducers(m::DescribeProducersRequest),
    DescribeTransactions(m::DescribeTransactionsRequest),
    ListTransactions(m::ListTransactionsRequest),
    DescribeAcls(m::DescribeAclsRequest),
    CreateAcls(m::CreateAclsRequest),
    DeleteAcls(m::DeleteAclsRequest),
    SaslHandshake(m::SaslHandshakeRequest),
    SaslAuthenticate(m::SaslAuthenticateRequest),
    DescribeUserScramCredentials(m::DescribeUserScramCredentialsRequest),
    AlterUserScramCredentials(m::AlterUserScramCredentialsRequest),
    DescribeConfigs(m::DescribeConfigsRequest),
    AlterConfigs(m::AlterConfigsRequest),
    IncrementalAlterConfigs(m::IncrementalAlterConfigsRequest),
    DeleteRecords(m::DeleteRecordsRequest),
    DescribeLogDirs(m::DescribeLogDirsRequest),
}

/// Validates and decodes the body of a request whose header is `header`.
/// The caller has already checked that the version is one it serves.
pub fn decode_body(header: &RequestHeader, frame: &Bytes) -> Result<RequestBody, RequestError> {
    let (api_key, api_version) = (header.api_key, header.api_version);
    let body = frame.slice(header.header_bytes..);
    validate_request_body(api_key, api_version, &body).map_err(|source| RequestError::InvalidBody { api_key, api_version, source })?;
    let mut buf = body;
    let undecodable = |e: anyhow::Error| RequestError::Undecodable { api_key, api_version, reason: e.to_string() };
    let key = ApiKey::try_from(api_key).map_err(|_| RequestError::UnknownApiKey { api_key, correlation_id: header.correlation_id })?;
    Ok(match key {
        ApiKey::Produce => RequestBody::Produce(m::ProduceRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::Fetch => RequestBody::Fetch(m::FetchRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::ListOffsets => RequestBody::ListOffsets(m::ListOffsetsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::Metadata => RequestBody::Metadata(m::MetadataRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::ApiVersions => RequestBody::ApiVersions(m::ApiVersionsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::CreateTopics => RequestBody::CreateTopics(m::CreateTopicsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DeleteTopics => RequestBody::DeleteTopics(m::DeleteTopicsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::CreatePartitions => RequestBody::CreatePartitions(m::CreatePartitionsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeCluster => RequestBody::DescribeCluster(m::DescribeClusterRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::FindCoordinator => RequestBody::FindCoordinator(m::FindCoordinatorRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::JoinGroup => RequestBody::JoinGroup(m::JoinGroupRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::SyncGroup => RequestBody::SyncGroup(m::SyncGroupRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::Heartbeat => RequestBody::Heartbeat(m::HeartbeatRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::LeaveGroup => RequestBody::LeaveGroup(m::LeaveGroupRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::OffsetCommit => RequestBody::OffsetCommit(m::OffsetCommitRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::OffsetFetch => RequestBody::OffsetFetch(m::OffsetFetchRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::ListGroups => RequestBody::ListGroups(m::ListGroupsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeGroups => RequestBody::DescribeGroups(m::DescribeGroupsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DeleteGroups => RequestBody::DeleteGroups(m::DeleteGroupsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::OffsetDelete => RequestBody::OffsetDelete(m::OffsetDeleteRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::ConsumerGroupHeartbeat => {
            RequestBody::ConsumerGroupHeartbeat(m::ConsumerGroupHeartbeatRequest::decode(&mut buf, api_version).map_err(undecodable)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            RequestBody::ConsumerGroupDescribe(m::ConsumerGroupDescribeRequest::decode(&mut buf, api_version).map_err(undecodable)?)
        }
        ApiKey::InitProducerId => RequestBody::InitProducerId(m::InitProducerIdRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::AddPartitionsToTxn => RequestBody::AddPartitionsToTxn(m::AddPartitionsToTxnRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::AddOffsetsToTxn => RequestBody::AddOffsetsToTxn(m::AddOffsetsToTxnRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::EndTxn => RequestBody::EndTxn(m::EndTxnRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::TxnOffsetCommit => RequestBody::TxnOffsetCommit(m::TxnOffsetCommitRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeProducers => RequestBody::DescribeProducers(m::DescribeProducersRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeTransactions => RequestBody::DescribeTransactions(m::DescribeTransactionsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::ListTransactions => RequestBody::ListTransactions(m::ListTransactionsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeAcls => RequestBody::DescribeAcls(m::DescribeAclsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::CreateAcls => RequestBody::CreateAcls(m::CreateAclsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DeleteAcls => RequestBody::DeleteAcls(m::DeleteAclsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::SaslHandshake => RequestBody::SaslHandshake(m::SaslHandshakeRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::SaslAuthenticate => RequestBody::SaslAuthenticate(m::SaslAuthenticateRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeUserScramCredentials => {
            RequestBody::DescribeUserScramCredentials(m::DescribeUserScramCredentialsRequest::decode(&mut buf, api_version).map_err(undecodable)?)
        }
        ApiKey::AlterUserScramCredentials => {
            RequestBody::AlterUserScramCredentials(m::AlterUserScramCredentialsRequest::decode(&mut buf, api_version).map_err(undecodable)?)
        }
        ApiKey::DescribeConfigs => RequestBody::DescribeConfigs(m::DescribeConfigsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::AlterConfigs => RequestBody::AlterConfigs(m::AlterConfigsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::IncrementalAlterConfigs => {
            RequestBody::IncrementalAlterConfigs(m::IncrementalAlterConfigsRequest::decode(&mut buf, api_version).map_err(undecodable)?)
        }
        ApiKey::DeleteRecords => RequestBody::DeleteRecords(m::DeleteRecordsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        ApiKey::DescribeLogDirs => RequestBody::DescribeLogDirs(m::DescribeLogDirsRequest::decode(&mut buf, api_version).map_err(undecodable)?),
        _ => return Err(RequestError::Undecodable { api_key, api_version, reason: String::from("no decoder for this api") }),
    })
}

/// Header then body, for fuzzing and tests.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, RequestBody), RequestError> {
    let header = parse_header(&frame)?;
    let body = decode_body(&header, &frame)?;
    Ok((header, body))
}
