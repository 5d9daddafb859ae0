//! Schemas of the response bodies that shardlog's clients (the admin CLI, the load generator)
//! decode, walked by the same validator as requests before `kafka-protocol` sees the bytes.
//!
//! Why: a response comes from a peer we do not control (a broker of another make, a port that
//! is not Kafka at all, a stream out of step), and `kafka-protocol` sizes its vectors from counts
//! read off the wire. Strings and bytes are safe without us (the crate checks their length
//! against the bytes left), so what matters here is every array, including those inside the
//! tagged fields the decoder knows (ApiVersions' features, Produce's and Fetch's leader hints):
//! those are decoded from the buffer straight away, so they need their schema too.
//!
//! Unlike request schemas, every string, bytes and array field is taken as nullable: null
//! allocates nothing, and the decoder itself rejects a null where its type has no `None`. Being
//! lenient here cannot admit a hostile count, and it cannot reject a response a broker may
//! legitimately send.
//!
//! Field lists: kafka-protocol 0.18's generated decoders (src/messages/*_response.rs), which
//! follow Apache Kafka's `<Name>Response.json`. A unit test encodes a populated response with
//! the crate at every version declared here and checks that it validates and decodes.

use super::*;

/// `response_struct!("Owner" { "Name": KIND, "0+"; ... } tagged { 0 => "Name": KIND, "3+"; })`:
/// the fields in wire order, every one nullable (see the module comment).
macro_rules! response_struct {
    ($owner:literal { $($name:literal: $kind:expr, $versions:literal;)* } $(tagged { $($tag:literal => $tagged_name:literal: $tagged_kind:expr, $tagged_versions:literal;)* })?) => {
        Struct {
            fields: &[$(Field::new(concat!($owner, ".", $name), $kind, $versions).nullable("0+")),*],
            tagged: &[$($(TaggedField { tag: $tag, field: Field::new(concat!($owner, ".", $tagged_name), $tagged_kind, $tagged_versions).nullable("0+") }),*)?],
        }
    };
}

/// Response schemas by api key: the versions declared are those the clients may negotiate, and
/// no more than `kafka-protocol` 0.18 decodes.
static RESPONSE_APIS: &[Api] = &[
    Api::new(0, "3-12", "9+", &PRODUCE_RESPONSE),
    Api::new(1, "4-12", "12+", &FETCH_RESPONSE),
    Api::new(2, "1-10", "6+", &LIST_OFFSETS_RESPONSE),
    Api::new(3, "0-12", "9+", &METADATA_RESPONSE),
    Api::new(9, "1-9", "6+", &OFFSET_FETCH_RESPONSE),
    Api::new(11, "0-9", "6+", &JOIN_GROUP_RESPONSE),
    Api::new(12, "0-4", "4+", &HEARTBEAT_RESPONSE),
    Api::new(13, "0-5", "4+", &LEAVE_GROUP_RESPONSE),
    Api::new(14, "0-5", "4+", &SYNC_GROUP_RESPONSE),
    Api::new(15, "0-6", "5+", &DESCRIBE_GROUPS_RESPONSE),
    Api::new(16, "0-5", "3+", &LIST_GROUPS_RESPONSE),
    Api::new(17, "1", "none", &SASL_HANDSHAKE_RESPONSE),
    Api::new(18, "0-4", "3+", &API_VERSIONS_RESPONSE),
    Api::new(19, "2-7", "5+", &CREATE_TOPICS_RESPONSE),
    Api::new(20, "1-6", "4+", &DELETE_TOPICS_RESPONSE),
    Api::new(23, "3-4", "4+", &OFFSET_FOR_LEADER_EPOCH_RESPONSE),
    Api::new(24, "4-5", "3+", &ADD_PARTITIONS_TO_TXN_RESPONSE),
    Api::new(27, "1", "1+", &WRITE_TXN_MARKERS_RESPONSE),
    Api::new(29, "1-3", "2+", &DESCRIBE_ACLS_RESPONSE),
    Api::new(30, "1-3", "2+", &CREATE_ACLS_RESPONSE),
    Api::new(31, "1-3", "2+", &DELETE_ACLS_RESPONSE),
    Api::new(32, "1-4", "4+", &DESCRIBE_CONFIGS_RESPONSE),
    Api::new(36, "0-2", "2+", &SASL_AUTHENTICATE_RESPONSE),
    Api::new(44, "0-1", "1+", &INCREMENTAL_ALTER_CONFIGS_RESPONSE),
    Api::new(50, "0", "0+", &DESCRIBE_USER_SCRAM_CREDENTIALS_RESPONSE),
    Api::new(51, "0", "0+", &ALTER_USER_SCRAM_CREDENTIALS_RESPONSE),
];

/// Checks `body` (response bytes after the response header) of `api_key`/`api_version`. On Ok,
/// every array count, string and bytes length fits in the bytes actually left, so decoding the
/// same bytes with `kafka-protocol` allocates at most O(body.len()) elements.
pub fn validate_response_body(api_key: i16, api_version: i16, body: &[u8]) -> Result<(), ValidationError> {
    let api = RESPONSE_APIS.iter().find(|api| api.key == api_key).ok_or(ValidationError::UnknownApi(api_key))?;
    if !api.versions.contains(api_version) {
        return Err(ValidationError::UnknownVersion { api_key, version: api_version });
    }
    let context = Context { version: api_version, flexible: api.flexible.contains(api_version) };
    let mut cursor = Cursor { body, position: 0, end: body.len() };
    walk_struct(&mut cursor, api.body, context, 0)
}

/// True when a response schema exists for this key and version: a client may only speak
/// versions whose answers it can check.
pub fn has_response_schema(api_key: i16, api_version: i16) -> bool {
    RESPONSE_APIS.iter().any(|api| api.key == api_key && api.versions.contains(api_version))
}

/// Every (api key, version) with a response schema, for the tests.
pub fn response_schema_versions() -> impl Iterator<Item = (i16, i16)> {
    RESPONSE_APIS.iter().flat_map(|api| (api.versions.min..=api.versions.max).map(move |version| (api.key, version)))
}

// Produce (0)
static PRODUCE_RESPONSE: Struct = response_struct!("ProduceResponse" {
    "Responses": array(&TOPIC_PRODUCE_RESPONSE), "0+";
    "ThrottleTimeMs": INT32, "1+";
} tagged {
    0 => "NodeEndpoints": array(&NODE_ENDPOINT), "10+";
});
static TOPIC_PRODUCE_RESPONSE: Struct = response_struct!("TopicProduceResponse" {
    "Name": STRING, "0-12";
    "TopicId": UUID, "13+";
    "PartitionResponses": array(&PARTITION_PRODUCE_RESPONSE), "0+";
});
static PARTITION_PRODUCE_RESPONSE: Struct = response_struct!("PartitionProduceResponse" {
    "Index": INT32, "0+";
    "ErrorCode": INT16, "0+";
    "BaseOffset": INT64, "0+";
    "LogAppendTimeMs": INT64, "2+";
    "LogStartOffset": INT64, "5+";
    "RecordErrors": array(&BATCH_INDEX_AND_ERROR_MESSAGE), "8+";
    "ErrorMessage": STRING, "8+";
} tagged {
    0 => "CurrentLeader": Kind::Struct(&LEADER_ID_AND_EPOCH), "10+";
});
static BATCH_INDEX_AND_ERROR_MESSAGE: Struct = response_struct!("BatchIndexAndErrorMessage" {
    "BatchIndex": INT32, "8+";
    "BatchIndexErrorMessage": STRING, "8+";
});
static LEADER_ID_AND_EPOCH: Struct = response_struct!("LeaderIdAndEpoch" {
    "LeaderId": INT32, "0+";
    "LeaderEpoch": INT32, "0+";
});
static NODE_ENDPOINT: Struct = response_struct!("NodeEndpoint" {
    "NodeId": INT32, "0+";
    "Host": STRING, "0+";
    "Port": INT32, "0+";
    "Rack": STRING, "0+";
});

// Fetch (1)
static FETCH_RESPONSE: Struct = response_struct!("FetchResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "ErrorCode": INT16, "7+";
    "SessionId": INT32, "7+";
    "Responses": array(&FETCHABLE_TOPIC_RESPONSE), "0+";
} tagged {
    0 => "NodeEndpoints": array(&NODE_ENDPOINT), "16+";
});
static FETCHABLE_TOPIC_RESPONSE: Struct = response_struct!("FetchableTopicResponse" {
    "Topic": STRING, "0-12";
    "TopicId": UUID, "13+";
    "Partitions": array(&FETCH_PARTITION_DATA), "0+";
});
static FETCH_PARTITION_DATA: Struct = response_struct!("PartitionData" {
    "PartitionIndex": INT32, "0+";
    "ErrorCode": INT16, "0+";
    "HighWatermark": INT64, "0+";
    "LastStableOffset": INT64, "4+";
    "LogStartOffset": INT64, "5+";
    "AbortedTransactions": array(&ABORTED_TRANSACTION), "4+";
    "PreferredReadReplica": INT32, "11+";
    "Records": RECORDS, "0+";
} tagged {
    0 => "DivergingEpoch": Kind::Struct(&EPOCH_END_OFFSET), "12+";
    1 => "CurrentLeader": Kind::Struct(&LEADER_ID_AND_EPOCH), "12+";
    2 => "SnapshotId": Kind::Struct(&SNAPSHOT_ID), "12+";
});
static ABORTED_TRANSACTION: Struct = response_struct!("AbortedTransaction" {
    "ProducerId": INT64, "4+";
    "FirstOffset": INT64, "4+";
});
static EPOCH_END_OFFSET: Struct = response_struct!("EpochEndOffset" {
    "Epoch": INT32, "12+";
    "EndOffset": INT64, "12+";
});
static SNAPSHOT_ID: Struct = response_struct!("SnapshotId" {
    "EndOffset": INT64, "0+";
    "Epoch": INT32, "0+";
});

// ListOffsets (2)
static LIST_OFFSETS_RESPONSE: Struct = response_struct!("ListOffsetsResponse" {
    "ThrottleTimeMs": INT32, "2+";
    "Topics": array(&LIST_OFFSETS_TOPIC_RESPONSE), "0+";
});
static LIST_OFFSETS_TOPIC_RESPONSE: Struct = response_struct!("ListOffsetsTopicResponse" {
    "Name": STRING, "0+";
    "Partitions": array(&LIST_OFFSETS_PARTITION_RESPONSE), "0+";
});
static LIST_OFFSETS_PARTITION_RESPONSE: Struct = response_struct!("ListOffsetsPartitionResponse" {
    "PartitionIndex": INT32, "0+";
    "ErrorCode": INT16, "0+";
    "Timestamp": INT64, "1+";
    "Offset": INT64, "1+";
    "LeaderEpoch": INT32, "4+";
});

// Metadata (3)
static METADATA_RESPONSE: Struct = response_struct!("MetadataResponse" {
    "ThrottleTimeMs": INT32, "3+";
    "Brokers": array(&METADATA_RESPONSE_BROKER), "0+";
    "ClusterId": STRING, "2+";
    "ControllerId": INT32, "1+";
    "Topics": array(&METADATA_RESPONSE_TOPIC), "0+";
    "ClusterAuthorizedOperations": INT32, "8-10";
    "ErrorCode": INT16, "13+";
});
static METADATA_RESPONSE_BROKER: Struct = response_struct!("MetadataResponseBroker" {
    "NodeId": INT32, "0+";
    "Host": STRING, "0+";
    "Port": INT32, "0+";
    "Rack": STRING, "1+";
});
static METADATA_RESPONSE_TOPIC: Struct = response_struct!("MetadataResponseTopic" {
    "ErrorCode": INT16, "0+";
    "Name": STRING, "0+";
    "TopicId": UUID, "10+";
    "IsInternal": BOOL, "1+";
    "Partitions": array(&METADATA_RESPONSE_PARTITION), "0+";
    "TopicAuthorizedOperations": INT32, "8+";
});
static METADATA_RESPONSE_PARTITION: Struct = response_struct!("MetadataResponsePartition" {
    "ErrorCode": INT16, "0+";
    "PartitionIndex": INT32, "0+";
    "LeaderId": INT32, "0+";
    "LeaderEpoch": INT32, "7+";
    "ReplicaNodes": ARRAY_INT32, "0+";
    "IsrNodes": ARRAY_INT32, "0+";
    "OfflineReplicas": ARRAY_INT32, "5+";
});

// OffsetFetch (9)
static OFFSET_FETCH_RESPONSE: Struct = response_struct!("OffsetFetchResponse" {
    "ThrottleTimeMs": INT32, "3+";
    "Topics": array(&OFFSET_FETCH_RESPONSE_TOPIC), "0-7";
    "ErrorCode": INT16, "2-7";
    "Groups": array(&OFFSET_FETCH_RESPONSE_GROUP), "8+";
});
static OFFSET_FETCH_RESPONSE_TOPIC: Struct = response_struct!("OffsetFetchResponseTopic" {
    "Name": STRING, "0-7";
    "Partitions": array(&OFFSET_FETCH_RESPONSE_PARTITION), "0-7";
});
static OFFSET_FETCH_RESPONSE_PARTITION: Struct = response_struct!("OffsetFetchResponsePartition" {
    "PartitionIndex": INT32, "0-7";
    "CommittedOffset": INT64, "0-7";
    "CommittedLeaderEpoch": INT32, "5-7";
    "Metadata": STRING, "0-7";
    "ErrorCode": INT16, "0-7";
});
static OFFSET_FETCH_RESPONSE_GROUP: Struct = response_struct!("OffsetFetchResponseGroup" {
    "GroupId": STRING, "8+";
    "Topics": array(&OFFSET_FETCH_RESPONSE_TOPICS), "8+";
    "ErrorCode": INT16, "8+";
});
static OFFSET_FETCH_RESPONSE_TOPICS: Struct = response_struct!("OffsetFetchResponseTopics" {
    "Name": STRING, "8-9";
    "TopicId": UUID, "10+";
    "Partitions": array(&OFFSET_FETCH_RESPONSE_PARTITIONS), "8+";
});
static OFFSET_FETCH_RESPONSE_PARTITIONS: Struct = response_struct!("OffsetFetchResponsePartitions" {
    "PartitionIndex": INT32, "8+";
    "CommittedOffset": INT64, "8+";
    "CommittedLeaderEpoch": INT32, "8+";
    "Metadata": STRING, "8+";
    "ErrorCode": INT16, "8+";
});

// JoinGroup (11)
static JOIN_GROUP_RESPONSE: Struct = response_struct!("JoinGroupResponse" {
    "ThrottleTimeMs": INT32, "2+";
    "ErrorCode": INT16, "0+";
    "GenerationId": INT32, "0+";
    "ProtocolType": STRING, "7+";
    "ProtocolName": STRING, "0+";
    "Leader": STRING, "0+";
    "SkipAssignment": BOOL, "9+";
    "MemberId": STRING, "0+";
    "Members": array(&JOIN_GROUP_RESPONSE_MEMBER), "0+";
});
static JOIN_GROUP_RESPONSE_MEMBER: Struct = response_struct!("JoinGroupResponseMember" {
    "MemberId": STRING, "0+";
    "GroupInstanceId": STRING, "5+";
    "Metadata": BYTES, "0+";
});

// SaslHandshake (17): v1 only, whose tokens then go in SaslAuthenticate (the inter-broker client).
static SASL_HANDSHAKE_RESPONSE: Struct = response_struct!("SaslHandshakeResponse" {
    "ErrorCode": INT16, "0+";
    "Mechanisms": ARRAY_STRING, "0+";
});

// SaslAuthenticate (36)
static SASL_AUTHENTICATE_RESPONSE: Struct = response_struct!("SaslAuthenticateResponse" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "AuthBytes": BYTES, "0+";
    "SessionLifetimeMs": INT64, "1+";
});

// Heartbeat (12)
static HEARTBEAT_RESPONSE: Struct = response_struct!("HeartbeatResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "ErrorCode": INT16, "0+";
});

// LeaveGroup (13)
static LEAVE_GROUP_RESPONSE: Struct = response_struct!("LeaveGroupResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "ErrorCode": INT16, "0+";
    "Members": array(&LEAVE_GROUP_MEMBER_RESPONSE), "3+";
});
static LEAVE_GROUP_MEMBER_RESPONSE: Struct = response_struct!("MemberResponse" {
    "MemberId": STRING, "3+";
    "GroupInstanceId": STRING, "3+";
    "ErrorCode": INT16, "3+";
});

// SyncGroup (14)
static SYNC_GROUP_RESPONSE: Struct = response_struct!("SyncGroupResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "ErrorCode": INT16, "0+";
    "ProtocolType": STRING, "5+";
    "ProtocolName": STRING, "5+";
    "Assignment": BYTES, "0+";
});

// DescribeGroups (15)
static DESCRIBE_GROUPS_RESPONSE: Struct = response_struct!("DescribeGroupsResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "Groups": array(&DESCRIBED_GROUP), "0+";
});
static DESCRIBED_GROUP: Struct = response_struct!("DescribedGroup" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "6+";
    "GroupId": STRING, "0+";
    "GroupState": STRING, "0+";
    "ProtocolType": STRING, "0+";
    "ProtocolData": STRING, "0+";
    "Members": array(&DESCRIBED_GROUP_MEMBER), "0+";
    "AuthorizedOperations": INT32, "3+";
});
static DESCRIBED_GROUP_MEMBER: Struct = response_struct!("DescribedGroupMember" {
    "MemberId": STRING, "0+";
    "GroupInstanceId": STRING, "4+";
    "ClientId": STRING, "0+";
    "ClientHost": STRING, "0+";
    "MemberMetadata": BYTES, "0+";
    "MemberAssignment": BYTES, "0+";
});

// ListGroups (16)
static LIST_GROUPS_RESPONSE: Struct = response_struct!("ListGroupsResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "ErrorCode": INT16, "0+";
    "Groups": array(&LISTED_GROUP), "0+";
});
static LISTED_GROUP: Struct = response_struct!("ListedGroup" {
    "GroupId": STRING, "0+";
    "ProtocolType": STRING, "0+";
    "GroupState": STRING, "4+";
    "GroupType": STRING, "5+";
});

// ApiVersions (18)
static API_VERSIONS_RESPONSE: Struct = response_struct!("ApiVersionsResponse" {
    "ErrorCode": INT16, "0+";
    "ApiKeys": array(&API_VERSION), "0+";
    "ThrottleTimeMs": INT32, "1+";
} tagged {
    0 => "SupportedFeatures": array(&SUPPORTED_FEATURE_KEY), "3+";
    1 => "FinalizedFeaturesEpoch": INT64, "3+";
    2 => "FinalizedFeatures": array(&FINALIZED_FEATURE_KEY), "3+";
    3 => "ZkMigrationReady": BOOL, "3+";
});
static API_VERSION: Struct = response_struct!("ApiVersion" {
    "ApiKey": INT16, "0+";
    "MinVersion": INT16, "0+";
    "MaxVersion": INT16, "0+";
});
static SUPPORTED_FEATURE_KEY: Struct = response_struct!("SupportedFeatureKey" {
    "Name": STRING, "3+";
    "MinVersion": INT16, "3+";
    "MaxVersion": INT16, "3+";
});
static FINALIZED_FEATURE_KEY: Struct = response_struct!("FinalizedFeatureKey" {
    "Name": STRING, "3+";
    "MaxVersionLevel": INT16, "3+";
    "MinVersionLevel": INT16, "3+";
});

// CreateTopics (19)
static CREATE_TOPICS_RESPONSE: Struct = response_struct!("CreateTopicsResponse" {
    "ThrottleTimeMs": INT32, "2+";
    "Topics": array(&CREATABLE_TOPIC_RESULT), "0+";
});
static CREATABLE_TOPIC_RESULT: Struct = response_struct!("CreatableTopicResult" {
    "Name": STRING, "0+";
    "TopicId": UUID, "7+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "1+";
    "NumPartitions": INT32, "5+";
    "ReplicationFactor": INT16, "5+";
    "Configs": array(&CREATABLE_TOPIC_CONFIGS), "5+";
} tagged {
    0 => "TopicConfigErrorCode": INT16, "5+";
});
static CREATABLE_TOPIC_CONFIGS: Struct = response_struct!("CreatableTopicConfigs" {
    "Name": STRING, "5+";
    "Value": STRING, "5+";
    "ReadOnly": BOOL, "5+";
    "ConfigSource": INT8, "5+";
    "IsSensitive": BOOL, "5+";
});

// DeleteTopics (20)
static DELETE_TOPICS_RESPONSE: Struct = response_struct!("DeleteTopicsResponse" {
    "ThrottleTimeMs": INT32, "1+";
    "Responses": array(&DELETABLE_TOPIC_RESULT), "0+";
});
static DELETABLE_TOPIC_RESULT: Struct = response_struct!("DeletableTopicResult" {
    "Name": STRING, "0+";
    "TopicId": UUID, "6+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "5+";
});

// DescribeAcls (29)
static DESCRIBE_ACLS_RESPONSE: Struct = response_struct!("DescribeAclsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "Resources": array(&DESCRIBE_ACLS_RESOURCE), "0+";
});
static DESCRIBE_ACLS_RESOURCE: Struct = response_struct!("DescribeAclsResource" {
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "PatternType": INT8, "1+";
    "Acls": array(&ACL_DESCRIPTION), "0+";
});
static ACL_DESCRIPTION: Struct = response_struct!("AclDescription" {
    "Principal": STRING, "0+";
    "Host": STRING, "0+";
    "Operation": INT8, "0+";
    "PermissionType": INT8, "0+";
});

// CreateAcls (30)
static CREATE_ACLS_RESPONSE: Struct = response_struct!("CreateAclsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "Results": array(&ACL_CREATION_RESULT), "0+";
});
static ACL_CREATION_RESULT: Struct = response_struct!("AclCreationResult" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
});

// DeleteAcls (31)
static DELETE_ACLS_RESPONSE: Struct = response_struct!("DeleteAclsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "FilterResults": array(&DELETE_ACLS_FILTER_RESULT), "0+";
});
static DELETE_ACLS_FILTER_RESULT: Struct = response_struct!("DeleteAclsFilterResult" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "MatchingAcls": array(&DELETE_ACLS_MATCHING_ACL), "0+";
});
static DELETE_ACLS_MATCHING_ACL: Struct = response_struct!("DeleteAclsMatchingAcl" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "PatternType": INT8, "1+";
    "Principal": STRING, "0+";
    "Host": STRING, "0+";
    "Operation": INT8, "0+";
    "PermissionType": INT8, "0+";
});

// DescribeConfigs (32)
static DESCRIBE_CONFIGS_RESPONSE: Struct = response_struct!("DescribeConfigsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "Results": array(&DESCRIBE_CONFIGS_RESULT), "0+";
});
static DESCRIBE_CONFIGS_RESULT: Struct = response_struct!("DescribeConfigsResult" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "Configs": array(&DESCRIBE_CONFIGS_RESOURCE_RESULT), "0+";
});
static DESCRIBE_CONFIGS_RESOURCE_RESULT: Struct = response_struct!("DescribeConfigsResourceResult" {
    "Name": STRING, "0+";
    "Value": STRING, "0+";
    "ReadOnly": BOOL, "0+";
    "IsDefault": BOOL, "0";
    "ConfigSource": INT8, "1+";
    "IsSensitive": BOOL, "0+";
    "Synonyms": array(&DESCRIBE_CONFIGS_SYNONYM), "1+";
    "ConfigType": INT8, "3+";
    "Documentation": STRING, "3+";
});
static DESCRIBE_CONFIGS_SYNONYM: Struct = response_struct!("DescribeConfigsSynonym" {
    "Name": STRING, "1+";
    "Value": STRING, "1+";
    "Source": INT8, "1+";
});

// AddPartitionsToTxn (24), the broker-to-broker versions: what a partition leader reads when
// it verifies a transactional batch with the producer's coordinator on another broker.
static ADD_PARTITIONS_TO_TXN_RESPONSE: Struct = response_struct!("AddPartitionsToTxnResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "ErrorCode": INT16, "4+";
    "ResultsByTransaction": array(&ADD_PARTITIONS_TO_TXN_RESULT), "4+";
    "ResultsByTopicV3AndBelow": array(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT), "0-3";
});
static ADD_PARTITIONS_TO_TXN_RESULT: Struct = response_struct!("AddPartitionsToTxnResult" {
    "TransactionalId": STRING, "4+";
    "TopicResults": array(&ADD_PARTITIONS_TO_TXN_TOPIC_RESULT), "4+";
});
static ADD_PARTITIONS_TO_TXN_TOPIC_RESULT: Struct = response_struct!("AddPartitionsToTxnTopicResult" {
    "Name": STRING, "0+";
    "ResultsByPartition": array(&ADD_PARTITIONS_TO_TXN_PARTITION_RESULT), "0+";
});
static ADD_PARTITIONS_TO_TXN_PARTITION_RESULT: Struct = response_struct!("AddPartitionsToTxnPartitionResult" {
    "PartitionIndex": INT32, "0+";
    "PartitionErrorCode": INT16, "0+";
});

// OffsetForLeaderEpoch (23): what a follower reads from its leader before it truncates.
static OFFSET_FOR_LEADER_EPOCH_RESPONSE: Struct = response_struct!("OffsetForLeaderEpochResponse" {
    "ThrottleTimeMs": INT32, "2+";
    "Topics": array(&OFFSET_FOR_LEADER_TOPIC_RESULT), "0+";
});
static OFFSET_FOR_LEADER_TOPIC_RESULT: Struct = response_struct!("OffsetForLeaderTopicResult" {
    "Topic": STRING, "0+";
    "Partitions": array(&OFFSET_FOR_LEADER_EPOCH_END_OFFSET), "0+";
});
static OFFSET_FOR_LEADER_EPOCH_END_OFFSET: Struct = response_struct!("EpochEndOffset" {
    "ErrorCode": INT16, "0+";
    "Partition": INT32, "0+";
    "LeaderEpoch": INT32, "1+";
    "EndOffset": INT64, "0+";
});

// WriteTxnMarkers (27): what the transaction coordinator reads from another broker.
static WRITE_TXN_MARKERS_RESPONSE: Struct = response_struct!("WriteTxnMarkersResponse" {
    "Markers": array(&WRITE_TXN_MARKERS_MARKER_RESULT), "0+";
});
static WRITE_TXN_MARKERS_MARKER_RESULT: Struct = response_struct!("WritableTxnMarkerResult" {
    "ProducerId": INT64, "0+";
    "Topics": array(&WRITE_TXN_MARKERS_TOPIC_RESULT), "0+";
});
static WRITE_TXN_MARKERS_TOPIC_RESULT: Struct = response_struct!("WritableTxnMarkerTopicResult" {
    "Name": STRING, "0+";
    "Partitions": array(&WRITE_TXN_MARKERS_PARTITION_RESULT), "0+";
});
static WRITE_TXN_MARKERS_PARTITION_RESULT: Struct = response_struct!("WritableTxnMarkerPartitionResult" {
    "PartitionIndex": INT32, "0+";
    "ErrorCode": INT16, "0+";
});

// IncrementalAlterConfigs (44)
static INCREMENTAL_ALTER_CONFIGS_RESPONSE: Struct = response_struct!("IncrementalAlterConfigsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "Responses": array(&ALTER_CONFIGS_RESOURCE_RESPONSE), "0+";
});
static ALTER_CONFIGS_RESOURCE_RESPONSE: Struct = response_struct!("AlterConfigsResourceResponse" {
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
});

// DescribeUserScramCredentials (50)
static DESCRIBE_USER_SCRAM_CREDENTIALS_RESPONSE: Struct = response_struct!("DescribeUserScramCredentialsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "Results": array(&DESCRIBE_USER_SCRAM_CREDENTIALS_RESULT), "0+";
});
static DESCRIBE_USER_SCRAM_CREDENTIALS_RESULT: Struct = response_struct!("DescribeUserScramCredentialsResult" {
    "User": STRING, "0+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
    "CredentialInfos": array(&CREDENTIAL_INFO), "0+";
});
static CREDENTIAL_INFO: Struct = response_struct!("CredentialInfo" {
    "Mechanism": INT8, "0+";
    "Iterations": INT32, "0+";
});

// AlterUserScramCredentials (51)
static ALTER_USER_SCRAM_CREDENTIALS_RESPONSE: Struct = response_struct!("AlterUserScramCredentialsResponse" {
    "ThrottleTimeMs": INT32, "0+";
    "Results": array(&ALTER_USER_SCRAM_CREDENTIALS_RESULT), "0+";
});
static ALTER_USER_SCRAM_CREDENTIALS_RESULT: Struct = response_struct!("AlterUserScramCredentialsResult" {
    "User": STRING, "0+";
    "ErrorCode": INT16, "0+";
    "ErrorMessage": STRING, "0+";
});

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    use super::*;

    fn s(value: &str) -> StrBytes {
        StrBytes::from_string(value.to_string())
    }

    /// Bytes the walker reads of `body`: a schema that misses a field, or gives one the wrong
    /// versions, reads a different number of bytes than the crate wrote (or fails).
    fn walked_bytes(api_key: i16, version: i16, body: &[u8]) -> Result<usize, ValidationError> {
        let api = RESPONSE_APIS.iter().find(|api| api.key == api_key).expect("schema");
        let context = Context { version, flexible: api.flexible.contains(version) };
        let mut cursor = Cursor { body, position: 0, end: body.len() };
        walk_struct(&mut cursor, api.body, context, 0)?;
        Ok(cursor.position)
    }

    /// Checks `response` against its schema and the crate's decoder; returns its encoded body.
    fn check<R: Encodable + Decodable + Debug + PartialEq>(api_key: i16, version: i16, response: &R) -> Bytes {
        let mut bytes = BytesMut::new();
        response.encode(&mut bytes, version).unwrap_or_else(|e| panic!("api {api_key} v{version}: the test response does not encode: {e:#}"));
        let walked = walked_bytes(api_key, version, &bytes).unwrap_or_else(|e| panic!("api {api_key} v{version}: {e}"));
        assert_eq!(walked, bytes.len(), "api {api_key} v{version}: the schema reads {walked} of the {} bytes", bytes.len());
        validate_response_body(api_key, version, &bytes).unwrap();
        let bytes = bytes.freeze();
        let mut body = bytes.clone();
        R::decode(&mut body, version).unwrap();
        bytes
    }

    fn produce(version: i16) -> ProduceResponse {
        use produce_response::*;
        let mut error = BatchIndexAndErrorMessage::default();
        if version >= 8 {
            error.batch_index = 2;
            error.batch_index_error_message = Some(s("bad record"));
        }
        let mut partition = PartitionProduceResponse::default();
        partition.index = 1;
        partition.base_offset = 10;
        partition.log_start_offset = 3;
        partition.record_errors = vec![error];
        partition.error_message = Some(s("no"));
        let mut topic = TopicProduceResponse::default();
        topic.name = TopicName(s("orders"));
        topic.partition_responses = vec![partition];
        let mut response = ProduceResponse::default();
        response.responses = vec![topic];
        response.throttle_time_ms = 5;
        if version >= 10 {
            let mut leader = LeaderIdAndEpoch::default();
            leader.leader_id = BrokerId(4);
            leader.leader_epoch = 7;
            response.responses[0].partition_responses[0].current_leader = leader;
            let mut endpoint = NodeEndpoint::default();
            endpoint.node_id = BrokerId(4);
            endpoint.host = s("h");
            endpoint.port = 9092;
            endpoint.rack = Some(s("r"));
            response.node_endpoints = vec![endpoint];
        }
        response
    }

    fn fetch(version: i16) -> FetchResponse {
        use fetch_response::*;
        let mut aborted = AbortedTransaction::default();
        aborted.producer_id = ProducerId(9);
        aborted.first_offset = 4;
        let mut partition = PartitionData::default();
        partition.partition_index = 2;
        partition.high_watermark = 100;
        partition.aborted_transactions = Some(vec![aborted]);
        partition.records = Some(Bytes::from_static(b"batches"));
        if version >= 11 {
            partition.preferred_read_replica = BrokerId(1);
        }
        if version >= 12 {
            let mut diverging = EpochEndOffset::default();
            diverging.epoch = 3;
            diverging.end_offset = 50;
            partition.diverging_epoch = diverging;
            let mut leader = LeaderIdAndEpoch::default();
            leader.leader_id = BrokerId(1);
            leader.leader_epoch = 3;
            partition.current_leader = leader;
            let mut snapshot = SnapshotId::default();
            snapshot.end_offset = 40;
            snapshot.epoch = 2;
            partition.snapshot_id = snapshot;
        }
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(s("orders"));
        topic.partitions = vec![partition];
        let mut response = FetchResponse::default();
        response.responses = vec![topic];
        if version >= 7 {
            response.session_id = 12;
        }
        response
    }

    fn list_offsets(version: i16) -> ListOffsetsResponse {
        use list_offsets_response::*;
        let mut partition = ListOffsetsPartitionResponse::default();
        partition.partition_index = 1;
        partition.offset = 42;
        if version >= 4 {
            partition.leader_epoch = 2;
        }
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = TopicName(s("t"));
        topic.partitions = vec![partition];
        let mut response = ListOffsetsResponse::default();
        response.topics = vec![topic];
        response
    }

    fn metadata(version: i16) -> MetadataResponse {
        use metadata_response::*;
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(1);
        broker.host = s("localhost");
        broker.port = 9092;
        broker.rack = Some(s("a"));
        let mut partition = MetadataResponsePartition::default();
        partition.leader_id = BrokerId(1);
        partition.replica_nodes = vec![BrokerId(1), BrokerId(2)];
        partition.isr_nodes = vec![BrokerId(1)];
        partition.offline_replicas = vec![BrokerId(2)];
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(s("orders")));
        topic.partitions = vec![partition];
        if version >= 8 {
            topic.topic_authorized_operations = 8;
        }
        let mut response = MetadataResponse::default();
        response.brokers = vec![broker];
        response.cluster_id = Some(s("cluster"));
        response.topics = vec![topic];
        if (8..=10).contains(&version) {
            response.cluster_authorized_operations = 4;
        }
        response
    }

    fn offset_fetch(version: i16) -> OffsetFetchResponse {
        use offset_fetch_response::*;
        let mut response = OffsetFetchResponse::default();
        if version <= 7 {
            let mut partition = OffsetFetchResponsePartition::default();
            partition.partition_index = 1;
            partition.committed_offset = 5;
            partition.metadata = Some(s("m"));
            let mut topic = OffsetFetchResponseTopic::default();
            topic.name = TopicName(s("t"));
            topic.partitions = vec![partition];
            response.topics = vec![topic];
        } else {
            let mut partition = OffsetFetchResponsePartitions::default();
            partition.partition_index = 1;
            partition.committed_offset = 5;
            partition.metadata = Some(s("m"));
            let mut topic = OffsetFetchResponseTopics::default();
            topic.name = TopicName(s("t"));
            topic.partitions = vec![partition];
            let mut group = OffsetFetchResponseGroup::default();
            group.group_id = GroupId(s("g"));
            group.topics = vec![topic];
            response.groups = vec![group];
        }
        response
    }

    fn join_group(version: i16) -> JoinGroupResponse {
        let mut member = join_group_response::JoinGroupResponseMember::default();
        member.member_id = s("m1");
        member.group_instance_id = Some(s("i1"));
        member.metadata = Bytes::from_static(b"meta");
        let mut response = JoinGroupResponse::default();
        response.generation_id = 3;
        response.protocol_type = Some(s("consumer"));
        response.protocol_name = Some(s("range"));
        response.leader = s("m1");
        response.member_id = s("m1");
        response.members = vec![member];
        response.skip_assignment = version >= 9;
        response
    }

    fn leave_group(version: i16) -> LeaveGroupResponse {
        let mut response = LeaveGroupResponse::default();
        if version >= 3 {
            let mut member = leave_group_response::MemberResponse::default();
            member.member_id = s("m1");
            member.group_instance_id = Some(s("i"));
            member.error_code = 25;
            response.members = vec![member];
        }
        response
    }

    fn sync_group() -> SyncGroupResponse {
        let mut response = SyncGroupResponse::default();
        response.protocol_type = Some(s("consumer"));
        response.protocol_name = Some(s("range"));
        response.assignment = Bytes::from_static(b"assignment");
        response
    }

    fn describe_groups(version: i16) -> DescribeGroupsResponse {
        use describe_groups_response::*;
        let mut member = DescribedGroupMember::default();
        member.member_id = s("m");
        member.group_instance_id = Some(s("i"));
        member.client_id = s("c");
        member.client_host = s("/127.0.0.1");
        member.member_metadata = Bytes::from_static(b"x");
        member.member_assignment = Bytes::from_static(b"y");
        let mut group = DescribedGroup::default();
        group.group_id = GroupId(s("g"));
        group.group_state = s("Stable");
        group.protocol_type = s("consumer");
        group.protocol_data = s("range");
        group.members = vec![member];
        if version >= 3 {
            group.authorized_operations = 1;
        }
        if version >= 6 {
            group.error_message = Some(s("none"));
        }
        let mut response = DescribeGroupsResponse::default();
        response.groups = vec![group];
        response
    }

    fn list_groups() -> ListGroupsResponse {
        let mut group = list_groups_response::ListedGroup::default();
        group.group_id = GroupId(s("g"));
        group.protocol_type = s("consumer");
        group.group_state = s("Empty");
        group.group_type = s("classic");
        let mut response = ListGroupsResponse::default();
        response.groups = vec![group];
        response
    }

    fn api_versions(version: i16) -> ApiVersionsResponse {
        use api_versions_response::*;
        let mut key = ApiVersion::default();
        key.api_key = 3;
        key.max_version = 12;
        let mut response = ApiVersionsResponse::default();
        response.api_keys = vec![key];
        if version >= 3 {
            let mut supported = SupportedFeatureKey::default();
            supported.name = s("metadata.version");
            supported.min_version = 1;
            supported.max_version = 20;
            let mut finalized = FinalizedFeatureKey::default();
            finalized.name = s("metadata.version");
            finalized.min_version_level = 1;
            finalized.max_version_level = 20;
            response.supported_features = vec![supported];
            response.finalized_features = vec![finalized];
            response.finalized_features_epoch = 6;
            response.zk_migration_ready = true;
        }
        response
    }

    fn create_topics(version: i16) -> CreateTopicsResponse {
        use create_topics_response::*;
        let mut topic = CreatableTopicResult::default();
        topic.name = TopicName(s("t"));
        topic.error_message = Some(s("e"));
        topic.num_partitions = 3;
        if version >= 5 {
            let mut config = CreatableTopicConfigs::default();
            config.name = s("cleanup.policy");
            config.value = Some(s("delete"));
            config.read_only = true;
            config.is_sensitive = true;
            topic.configs = Some(vec![config]);
            topic.topic_config_error_code = 29;
        }
        let mut response = CreateTopicsResponse::default();
        response.topics = vec![topic];
        response
    }

    fn delete_topics() -> DeleteTopicsResponse {
        let mut topic = delete_topics_response::DeletableTopicResult::default();
        topic.name = Some(TopicName(s("t")));
        topic.error_message = Some(s("e"));
        let mut response = DeleteTopicsResponse::default();
        response.responses = vec![topic];
        response
    }

    fn describe_acls() -> DescribeAclsResponse {
        use describe_acls_response::*;
        let mut acl = AclDescription::default();
        acl.principal = s("User:alice");
        acl.host = s("*");
        acl.operation = 3;
        let mut resource = DescribeAclsResource::default();
        resource.resource_type = 2;
        resource.resource_name = s("t");
        resource.acls = vec![acl];
        let mut response = DescribeAclsResponse::default();
        response.error_message = Some(s("e"));
        response.resources = vec![resource];
        response
    }

    fn create_acls() -> CreateAclsResponse {
        let mut result = create_acls_response::AclCreationResult::default();
        result.error_message = Some(s("e"));
        let mut response = CreateAclsResponse::default();
        response.results = vec![result];
        response
    }

    fn delete_acls() -> DeleteAclsResponse {
        use delete_acls_response::*;
        let mut matching = DeleteAclsMatchingAcl::default();
        matching.error_message = Some(s("e"));
        matching.resource_name = s("t");
        matching.principal = s("User:alice");
        matching.host = s("*");
        let mut result = DeleteAclsFilterResult::default();
        result.matching_acls = vec![matching];
        let mut response = DeleteAclsResponse::default();
        response.filter_results = vec![result];
        response
    }

    fn describe_configs() -> DescribeConfigsResponse {
        use describe_configs_response::*;
        let mut synonym = DescribeConfigsSynonym::default();
        synonym.name = s("log.retention.ms");
        synonym.value = Some(s("1"));
        let mut config = DescribeConfigsResourceResult::default();
        config.name = s("retention.ms");
        config.value = Some(s("1"));
        config.synonyms = vec![synonym];
        config.documentation = Some(s("doc"));
        let mut result = DescribeConfigsResult::default();
        result.resource_name = s("t");
        result.error_message = Some(s("e"));
        result.configs = vec![config];
        let mut response = DescribeConfigsResponse::default();
        response.results = vec![result];
        response
    }

    fn incremental_alter_configs() -> IncrementalAlterConfigsResponse {
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_name = s("t");
        result.error_message = Some(s("e"));
        let mut response = IncrementalAlterConfigsResponse::default();
        response.responses = vec![result];
        response
    }

    fn add_partitions_to_txn() -> AddPartitionsToTxnResponse {
        use add_partitions_to_txn_response::*;
        let mut partition = AddPartitionsToTxnPartitionResult::default();
        partition.partition_index = 2;
        partition.partition_error_code = 48;
        let mut topic = AddPartitionsToTxnTopicResult::default();
        topic.name = TopicName(s("t"));
        topic.results_by_partition = vec![partition];
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = TransactionalId(s("txn"));
        result.topic_results = vec![topic];
        let mut response = AddPartitionsToTxnResponse::default();
        response.error_code = 0;
        response.results_by_transaction = vec![result];
        response
    }

    fn write_txn_markers() -> WriteTxnMarkersResponse {
        use write_txn_markers_response::*;
        let mut partition = WritableTxnMarkerPartitionResult::default();
        partition.partition_index = 3;
        partition.error_code = 6;
        let mut topic = WritableTxnMarkerTopicResult::default();
        topic.name = TopicName(s("t"));
        topic.partitions = vec![partition];
        let mut marker = WritableTxnMarkerResult::default();
        marker.producer_id = ProducerId(7);
        marker.topics = vec![topic];
        let mut response = WriteTxnMarkersResponse::default();
        response.markers = vec![marker];
        response
    }

    fn offset_for_leader_epoch() -> OffsetForLeaderEpochResponse {
        use offset_for_leader_epoch_response::*;
        let mut partition = EpochEndOffset::default();
        partition.partition = 2;
        partition.leader_epoch = 5;
        partition.end_offset = 77;
        let mut topic = OffsetForLeaderTopicResult::default();
        topic.topic = TopicName(s("t"));
        topic.partitions = vec![partition];
        let mut response = OffsetForLeaderEpochResponse::default();
        response.throttle_time_ms = 1;
        response.topics = vec![topic];
        response
    }

    fn describe_user_scram_credentials() -> DescribeUserScramCredentialsResponse {
        use describe_user_scram_credentials_response::*;
        let mut info = CredentialInfo::default();
        info.mechanism = 1;
        info.iterations = 4096;
        let mut result = DescribeUserScramCredentialsResult::default();
        result.user = s("alice");
        result.credential_infos = vec![info];
        let mut response = DescribeUserScramCredentialsResponse::default();
        response.results = vec![result];
        response
    }

    fn alter_user_scram_credentials() -> AlterUserScramCredentialsResponse {
        let mut result = alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
        result.user = s("alice");
        result.error_message = Some(s("e"));
        let mut response = AlterUserScramCredentialsResponse::default();
        response.results = vec![result];
        response
    }

    /// The test response of every (api key, version) with a schema, checked, and its body.
    fn checked_test_responses() -> Vec<(i16, i16, Bytes)> {
        let mut checked = Vec::new();
        for (api_key, v) in response_schema_versions() {
            let body = match ApiKey::try_from(api_key).unwrap() {
                ApiKey::Produce => check(api_key, v, &produce(v)),
                ApiKey::Fetch => check(api_key, v, &fetch(v)),
                ApiKey::ListOffsets => check(api_key, v, &list_offsets(v)),
                ApiKey::Metadata => check(api_key, v, &metadata(v)),
                ApiKey::OffsetFetch => check(api_key, v, &offset_fetch(v)),
                ApiKey::JoinGroup => check(api_key, v, &join_group(v)),
                ApiKey::Heartbeat => check(api_key, v, &HeartbeatResponse::default().with_error_code(27)),
                ApiKey::LeaveGroup => check(api_key, v, &leave_group(v)),
                ApiKey::SyncGroup => check(api_key, v, &sync_group()),
                ApiKey::DescribeGroups => check(api_key, v, &describe_groups(v)),
                ApiKey::ListGroups => check(api_key, v, &list_groups()),
                ApiKey::ApiVersions => check(api_key, v, &api_versions(v)),
                ApiKey::CreateTopics => check(api_key, v, &create_topics(v)),
                ApiKey::DeleteTopics => check(api_key, v, &delete_topics()),
                ApiKey::DescribeAcls => check(api_key, v, &describe_acls()),
                ApiKey::CreateAcls => check(api_key, v, &create_acls()),
                ApiKey::DeleteAcls => check(api_key, v, &delete_acls()),
                ApiKey::DescribeConfigs => check(api_key, v, &describe_configs()),
                ApiKey::IncrementalAlterConfigs => check(api_key, v, &incremental_alter_configs()),
                ApiKey::WriteTxnMarkers => check(api_key, v, &write_txn_markers()),
                ApiKey::OffsetForLeaderEpoch => check(api_key, v, &offset_for_leader_epoch()),
                ApiKey::AddPartitionsToTxn => check(api_key, v, &add_partitions_to_txn()),
                ApiKey::DescribeUserScramCredentials => check(api_key, v, &describe_user_scram_credentials()),
                ApiKey::AlterUserScramCredentials => check(api_key, v, &alter_user_scram_credentials()),
                ApiKey::SaslHandshake => check(
                    api_key,
                    v,
                    &kafka_protocol::messages::SaslHandshakeResponse::default().with_error_code(33).with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]),
                ),
                ApiKey::SaslAuthenticate => check(
                    api_key,
                    v,
                    &kafka_protocol::messages::SaslAuthenticateResponse::default()
                        .with_error_code(58)
                        .with_error_message(Some(StrBytes::from_static_str("bad password")))
                        .with_auth_bytes(bytes::Bytes::from_static(b"v=signature"))
                        .with_session_lifetime_ms(if v >= 1 { 3_600_000 } else { 0 }),
                ),
                other => panic!("{other:?} has a response schema but no test response"),
            };
            checked.push((api_key, v, body));
        }
        checked
    }

    #[test]
    fn every_schema_reads_exactly_what_the_crate_writes_at_every_version() {
        let checked = checked_test_responses().len();
        assert!(checked > 100, "only {checked} versions");
    }

    /// Seeds for the `client_response` fuzz target: api key, api version, then the response as
    /// a broker sends it after the length prefix (response header with correlation id 1, the
    /// first id a client core gives, then the body). Run by hand, never committed:
    /// `SHARDLOG_FUZZ_SEEDS=fuzz/corpus/client_response cargo test -p shardlog-protocol --lib -- --ignored write_client_response_fuzz_seeds`
    #[test]
    #[ignore = "writes files: run by hand with SHARDLOG_FUZZ_SEEDS set"]
    fn write_client_response_fuzz_seeds() {
        let dir = std::path::PathBuf::from(std::env::var("SHARDLOG_FUZZ_SEEDS").expect("SHARDLOG_FUZZ_SEEDS names the seed folder"));
        std::fs::create_dir_all(&dir).unwrap();
        for (api_key, version, body) in checked_test_responses() {
            let mut seed = BytesMut::new();
            seed.extend_from_slice(&api_key.to_be_bytes());
            seed.extend_from_slice(&version.to_be_bytes());
            let header_version = ApiKey::try_from(api_key).unwrap().response_header_version(version);
            ResponseHeader::default().with_correlation_id(1).encode(&mut seed, header_version).unwrap();
            seed.extend_from_slice(&body);
            std::fs::write(dir.join(format!("seed-{api_key}-v{version}")), &seed).unwrap();
        }
    }

    #[test]
    fn a_cut_body_and_a_hostile_count_are_refused() {
        let mut bytes = BytesMut::new();
        metadata(12).encode(&mut bytes, 12).unwrap();
        for cut in 0..bytes.len() {
            assert!(validate_response_body(3, 12, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        // ApiVersions v3 with a supported-features tagged field that claims 2^28 entries.
        let hostile = [0, 0, 1, 0, 0, 0, 0, 1, 0, 5, 0x80, 0x80, 0x80, 0x80, 0x01];
        let e = validate_response_body(18, 3, &hostile).unwrap_err();
        assert!(matches!(e, ValidationError::CountTooLarge { field: "ApiVersionsResponse.SupportedFeatures", .. }), "{e}");
    }

    #[test]
    fn response_schemas_are_unique_and_nest_within_the_bound() {
        fn depth(kind: Kind) -> usize {
            match kind {
                Kind::Fixed(_) | Kind::String | Kind::Bytes => 0,
                Kind::Array(element) => 1 + depth(element.kind()),
                Kind::Struct(schema) | Kind::NullableStruct(schema) => {
                    1 + schema.fields.iter().map(|f| depth(f.kind)).chain(schema.tagged.iter().map(|t| depth(t.field.kind))).max().unwrap_or(0)
                }
            }
        }
        for (index, api) in RESPONSE_APIS.iter().enumerate() {
            assert!(RESPONSE_APIS[index + 1..].iter().all(|other| other.key != api.key), "api {}", api.key);
            assert!(depth(Kind::Struct(api.body)) < MAX_NESTING_DEPTH, "api {}", api.key);
        }
        assert!(has_response_schema(1, 12) && !has_response_schema(1, 13) && !has_response_schema(-1, 0));
    }
}
