//! Schema-driven validation of request bodies (and, in `responses`, of the response bodies
//! that our clients read), run before `kafka-protocol` decodes them.
//!
//! Why: `kafka-protocol` 0.18 decodes arrays with `Vec::with_capacity(n)`, where `n` is a count
//! read off the wire, so a handful of hostile bytes can ask for terabytes and abort the broker.
//! This module walks the body against a static description of each request (taken from Apache
//! Kafka's JSON message definitions and checked against the crate's generated decoders) and
//! rejects any body whose counts or lengths do not fit in the bytes actually left.
//!
//! The walker allocates nothing, reads each byte once, and recurses no deeper than
//! [`MAX_NESTING_DEPTH`]. Every array count is checked up front as
//! `count * minimum_encoded_element_size <= bytes_left` (at least one byte per element), so a
//! hostile count is rejected in O(1) and the walk itself stays O(`body.len()`); then every element
//! is walked, so on `Ok` all the elements the decoder will reserve room for are really there, and
//! decoding the same bytes allocates at most O(`body.len()`) elements.
//!
//! Two places where the decoder and the validator must agree on the byte position:
//! - Tagged fields that the decoder knows (only Fetch has them here) are decoded straight from the
//!   buffer, ignoring their declared size. We therefore validate their contents with their schema
//!   and require that they fill exactly their declared size.
//! - Unsigned varints are read the way the decoder reads them (at most five bytes); a fifth byte
//!   with its continuation bit set is rejected, as Java Kafka does, because the decoder would stop
//!   there and read the rest as the next field.

mod responses;

pub use responses::{has_response_schema, response_schema_versions, validate_response_body};

/// The deepest nesting the walker follows, counting each struct and each array as one level.
/// The deepest schema here, CreateTopics (topics → assignments → broker ids), needs 6; the bound
/// exists so that a schema mistake can never turn into unbounded recursion. A unit test checks
/// every schema against it.
pub const MAX_NESTING_DEPTH: usize = 8;

/// Why a request body was rejected. `offset` counts bytes from the start of the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("api key {0} has no request schema")]
    UnknownApi(i16),
    #[error("api key {api_key} version {version} has no request schema")]
    UnknownVersion { api_key: i16, version: i16 },
    #[error("request body truncated at byte {offset} while reading {field}")]
    Truncated { offset: usize, field: &'static str },
    #[error("{field} at byte {offset}: count or length {value} exceeds the {remaining} bytes left in the body")]
    CountTooLarge { offset: usize, field: &'static str, value: i64, remaining: usize },
    #[error("{field} at byte {offset}: invalid value {value}")]
    Invalid { offset: usize, field: &'static str, value: i64 },
}

/// Check `body` (request bytes after the header) of `api_key`/`api_version` against its schema.
/// Guarantees on Ok: every array count, string and bytes length fits in the bytes actually left, so
/// `kafka_protocol` decoding of the same bytes allocates at most O(body.len()) elements.
///
/// Bytes after a complete body are accepted and not read, as Kafka tolerates them.
pub fn validate_request_body(api_key: i16, api_version: i16, body: &[u8]) -> Result<(), ValidationError> {
    let api = find_api(api_key).ok_or(ValidationError::UnknownApi(api_key))?;
    if !api.versions.contains(api_version) {
        return Err(ValidationError::UnknownVersion { api_key, version: api_version });
    }
    let context = Context { version: api_version, flexible: api.flexible.contains(api_version) };
    let mut cursor = Cursor { body, position: 0, end: body.len() };
    walk_struct(&mut cursor, api.body, context, 0)
}

/// True when a schema exists for this key and version.
pub fn has_schema(api_key: i16, api_version: i16) -> bool {
    find_api(api_key).is_some_and(|api| api.versions.contains(api_version))
}

/// Every (api key, version) with a schema, so that a test can hold each one against the
/// request decoder table (`request::has_decoder`).
pub fn schema_versions() -> impl Iterator<Item = (i16, i16)> {
    APIS.iter().flat_map(|api| (api.versions.min..=api.versions.max).map(move |version| (api.key, version)))
}

// ---------------------------------------------------------------------------------------------
// Schema language
// ---------------------------------------------------------------------------------------------

const LATEST: i16 = i16::MAX;

/// An inclusive version range, written the way Kafka's JSON writes it ("0+", "3-5", "7", "none").
#[derive(Debug, Clone, Copy)]
struct Versions {
    min: i16,
    max: i16,
}

impl Versions {
    const NONE: Versions = Versions { min: 1, max: 0 };

    /// Parses a Kafka version spec at compile time; a malformed spec fails the build.
    const fn parse(spec: &str) -> Versions {
        let bytes = spec.as_bytes();
        if bytes.len() == 4 && bytes[0] == b'n' && bytes[1] == b'o' && bytes[2] == b'n' && bytes[3] == b'e' {
            return Versions::NONE;
        }
        let (min, after_min) = parse_number(bytes, 0);
        if after_min == bytes.len() {
            return Versions { min, max: min };
        }
        if bytes[after_min] == b'+' && after_min + 1 == bytes.len() {
            return Versions { min, max: LATEST };
        }
        if bytes[after_min] == b'-' {
            let (max, after_max) = parse_number(bytes, after_min + 1);
            if after_max == bytes.len() && max >= min {
                return Versions { min, max };
            }
        }
        panic!("malformed version spec");
    }

    const fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

const fn parse_number(bytes: &[u8], start: usize) -> (i16, usize) {
    let mut index = start;
    let mut value: i16 = 0;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        value = value * 10 + (bytes[index] - b'0') as i16;
        index += 1;
    }
    if index == start {
        panic!("version spec needs a number");
    }
    (value, index)
}

/// What a field holds on the wire. Fixed-size primitives (int8/16/32/64, uint16, float64, bool,
/// uuid) need only their size: the decoder accepts every bit pattern for them. Strings, bytes and
/// arrays switch to their compact encoding in flexible versions.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Fixed(usize),
    String,
    /// `bytes` and `records`; records are opaque here (the record-batch parser checks them).
    Bytes,
    Array(Element),
    Struct(&'static Struct),
    /// A struct Kafka's JSON marks `"nullableVersions"`: a presence byte (-1 null, 1 present),
    /// then the struct.
    NullableStruct(&'static Struct),
}

/// The element of an array. Array elements are never null, and Kafka has no arrays of arrays.
#[derive(Debug, Clone, Copy)]
enum Element {
    Fixed(usize),
    String,
    Struct(&'static Struct),
}

impl Element {
    const fn kind(self) -> Kind {
        match self {
            Element::Fixed(size) => Kind::Fixed(size),
            Element::String => Kind::String,
            Element::Struct(schema) => Kind::Struct(schema),
        }
    }
}

const INT8: Kind = Kind::Fixed(1);
const INT16: Kind = Kind::Fixed(2);
const INT32: Kind = Kind::Fixed(4);
const INT64: Kind = Kind::Fixed(8);
const BOOL: Kind = Kind::Fixed(1);
const UUID: Kind = Kind::Fixed(16);
const FLOAT64: Kind = Kind::Fixed(8);
const STRING: Kind = Kind::String;
const BYTES: Kind = Kind::Bytes;
const RECORDS: Kind = Kind::Bytes;
const ARRAY_INT8: Kind = Kind::Array(Element::Fixed(1));
const ARRAY_INT32: Kind = Kind::Array(Element::Fixed(4));
const ARRAY_STRING: Kind = Kind::Array(Element::String);
const ARRAY_INT64: Kind = Kind::Array(Element::Fixed(8));

const fn array(schema: &'static Struct) -> Kind {
    Kind::Array(Element::Struct(schema))
}

#[derive(Debug, Clone, Copy)]
struct Field {
    /// "Struct.Field", as in Kafka's JSON; shown in errors.
    name: &'static str,
    kind: Kind,
    versions: Versions,
    nullable: Versions,
}

impl Field {
    const fn new(name: &'static str, kind: Kind, versions: &str) -> Field {
        Field { name, kind, versions: Versions::parse(versions), nullable: Versions::NONE }
    }

    const fn nullable(self, versions: &str) -> Field {
        Field { nullable: Versions::parse(versions), ..self }
    }
}

/// A field in the tagged-field section of a flexible struct, which the decoder knows by tag.
#[derive(Debug, Clone, Copy)]
struct TaggedField {
    tag: u32,
    field: Field,
}

#[derive(Debug)]
struct Struct {
    fields: &'static [Field],
    tagged: &'static [TaggedField],
}

#[derive(Debug)]
struct Api {
    key: i16,
    /// The versions we declare: only ones `kafka-protocol` 0.18 decodes.
    versions: Versions,
    flexible: Versions,
    body: &'static Struct,
}

impl Api {
    const fn new(key: i16, versions: &str, flexible: &str, body: &'static Struct) -> Api {
        Api { key, versions: Versions::parse(versions), flexible: Versions::parse(flexible), body }
    }
}

/// `fields!("Owner" { "Name": KIND, "0+"; "Other": KIND, "3+", nullable "3+"; })`: one line per
/// field, in wire order, with Kafka's version specs.
macro_rules! fields {
    ($owner:literal { $($name:literal: $kind:expr, $versions:literal $(, nullable $nullable:literal)?;)* }) => {
        &[$(Field::new(concat!($owner, ".", $name), $kind, $versions) $(.nullable($nullable))?),*]
    };
}

macro_rules! plain_struct {
    ($owner:literal { $($body:tt)* }) => {
        Struct { fields: fields!($owner { $($body)* }), tagged: &[] }
    };
}

// ---------------------------------------------------------------------------------------------
// Schemas. Field lists: clients/src/main/resources/common/message/<Name>Request.json in Apache
// Kafka, cross-checked against kafka-protocol 0.18's generated decoders (src/messages/).
// ---------------------------------------------------------------------------------------------

static APIS: &[Api] = &[
    Api::new(0, "3-12", "9+", &PRODUCE),
    Api::new(1, "4-12", "12+", &FETCH),
    Api::new(2, "1-10", "6+", &LIST_OFFSETS),
    Api::new(3, "0-12", "9+", &METADATA),
    Api::new(8, "2-8", "8+", &OFFSET_COMMIT),
    Api::new(9, "1-8", "6+", &OFFSET_FETCH),
    Api::new(10, "0-4", "3+", &FIND_COORDINATOR),
    Api::new(11, "0-9", "6+", &JOIN_GROUP),
    Api::new(12, "0-4", "4+", &HEARTBEAT),
    Api::new(13, "0-5", "4+", &LEAVE_GROUP),
    Api::new(14, "0-5", "4+", &SYNC_GROUP),
    Api::new(15, "0-5", "5+", &DESCRIBE_GROUPS),
    Api::new(16, "0-5", "3+", &LIST_GROUPS),
    Api::new(17, "0-1", "none", &SASL_HANDSHAKE),
    Api::new(18, "0-4", "3+", &API_VERSIONS),
    Api::new(19, "2-7", "5+", &CREATE_TOPICS),
    Api::new(20, "1-6", "4+", &DELETE_TOPICS),
    Api::new(22, "0-5", "2+", &INIT_PRODUCER_ID),
    Api::new(23, "2-4", "4+", &OFFSET_FOR_LEADER_EPOCH),
    Api::new(24, "0-5", "3+", &ADD_PARTITIONS_TO_TXN),
    Api::new(25, "0-4", "3+", &ADD_OFFSETS_TO_TXN),
    Api::new(26, "0-5", "3+", &END_TXN),
    Api::new(27, "1", "1+", &WRITE_TXN_MARKERS),
    Api::new(28, "0-5", "3+", &TXN_OFFSET_COMMIT),
    Api::new(29, "1-3", "2+", &DESCRIBE_ACLS),
    Api::new(30, "1-3", "2+", &CREATE_ACLS),
    Api::new(31, "1-3", "2+", &DELETE_ACLS),
    Api::new(32, "1-4", "4+", &DESCRIBE_CONFIGS),
    Api::new(33, "0-2", "2+", &ALTER_CONFIGS),
    Api::new(36, "0-2", "2+", &SASL_AUTHENTICATE),
    Api::new(37, "0-3", "2+", &CREATE_PARTITIONS),
    Api::new(42, "0-2", "2+", &DELETE_GROUPS),
    Api::new(44, "0-1", "1+", &INCREMENTAL_ALTER_CONFIGS),
    Api::new(47, "0", "none", &OFFSET_DELETE),
    Api::new(50, "0", "0+", &DESCRIBE_USER_SCRAM_CREDENTIALS),
    Api::new(51, "0", "0+", &ALTER_USER_SCRAM_CREDENTIALS),
    Api::new(55, "0-2", "0+", &DESCRIBE_QUORUM),
    Api::new(60, "0-1", "0+", &DESCRIBE_CLUSTER),
    Api::new(61, "0", "0+", &DESCRIBE_PRODUCERS),
    Api::new(65, "0", "0+", &DESCRIBE_TRANSACTIONS),
    Api::new(66, "0-2", "0+", &LIST_TRANSACTIONS),
    Api::new(68, "0-1", "0+", &CONSUMER_GROUP_HEARTBEAT),
    Api::new(69, "0-1", "0+", &CONSUMER_GROUP_DESCRIBE),
    Api::new(75, "0", "0+", &DESCRIBE_TOPIC_PARTITIONS),
    Api::new(74, "0-1", "0+", &LIST_CONFIG_RESOURCES),
    Api::new(21, "0-2", "2+", &DELETE_RECORDS),
    Api::new(35, "1-4", "2+", &DESCRIBE_LOG_DIRS),
    Api::new(48, "0-1", "1+", &DESCRIBE_CLIENT_QUOTAS),
    Api::new(49, "0-1", "1+", &ALTER_CLIENT_QUOTAS),
    Api::new(64, "0", "0+", &UNREGISTER_BROKER),
    Api::new(57, "0-2", "0+", &UPDATE_FEATURES),
    Api::new(80, "0", "0+", &ADD_RAFT_VOTER),
    Api::new(81, "0", "0+", &REMOVE_RAFT_VOTER),
    Api::new(82, "0", "0+", &UPDATE_RAFT_VOTER),
    Api::new(43, "0-2", "2+", &ELECT_LEADERS),
    Api::new(45, "0-1", "0+", &ALTER_PARTITION_REASSIGNMENTS),
    Api::new(46, "0", "0+", &LIST_PARTITION_REASSIGNMENTS),
];

fn find_api(api_key: i16) -> Option<&'static Api> {
    APIS.iter().find(|api| api.key == api_key)
}

// Produce (0)
static PRODUCE: Struct = plain_struct!("ProduceRequest" {
    "TransactionalId": STRING, "3+", nullable "3+";
    "Acks": INT16, "0+";
    "TimeoutMs": INT32, "0+";
    "TopicData": array(&PRODUCE_TOPIC), "0+";
});
static PRODUCE_TOPIC: Struct = plain_struct!("TopicProduceData" {
    "Name": STRING, "0-12";
    "TopicId": UUID, "13+";
    "PartitionData": array(&PRODUCE_PARTITION), "0+";
});
static PRODUCE_PARTITION: Struct = plain_struct!("PartitionProduceData" {
    "Index": INT32, "0+";
    "Records": RECORDS, "0+", nullable "0+";
});

// Fetch (1)
static FETCH: Struct = Struct {
    fields: fields!("FetchRequest" {
        "ReplicaId": INT32, "0-14";
        "MaxWaitMs": INT32, "0+";
        "MinBytes": INT32, "0+";
        "MaxBytes": INT32, "3+";
        "IsolationLevel": INT8, "4+";
        "SessionId": INT32, "7+";
        "SessionEpoch": INT32, "7+";
        "Topics": array(&FETCH_TOPIC), "0+";
        "ForgottenTopicsData": array(&FETCH_FORGOTTEN_TOPIC), "7+";
        "RackId": STRING, "11+";
    }),
    tagged: &[
        TaggedField { tag: 0, field: Field::new("FetchRequest.ClusterId", STRING, "12+").nullable("12+") },
        TaggedField { tag: 1, field: Field::new("FetchRequest.ReplicaState", Kind::Struct(&FETCH_REPLICA_STATE), "15+") },
    ],
};
static FETCH_REPLICA_STATE: Struct = plain_struct!("ReplicaState" {
    "ReplicaId": INT32, "15+";
    "ReplicaEpoch": INT64, "15+";
});
static FETCH_TOPIC: Struct = plain_struct!("FetchTopic" {
    "Topic": STRING, "0-12";
    "TopicId": UUID, "13+";
    "Partitions": array(&FETCH_PARTITION), "0+";
});
static FETCH_PARTITION: Struct = Struct {
    fields: fields!("FetchPartition" {
        "Partition": INT32, "0+";
        "CurrentLeaderEpoch": INT32, "9+";
        "FetchOffset": INT64, "0+";
        "LastFetchedEpoch": INT32, "12+";
        "LogStartOffset": INT64, "5+";
        "PartitionMaxBytes": INT32, "0+";
    }),
    tagged: &[
        TaggedField { tag: 0, field: Field::new("FetchPartition.ReplicaDirectoryId", UUID, "17+") },
        TaggedField { tag: 1, field: Field::new("FetchPartition.HighWatermark", INT64, "18+") },
    ],
};
static FETCH_FORGOTTEN_TOPIC: Struct = plain_struct!("ForgottenTopic" {
    "Topic": STRING, "7-12";
    "TopicId": UUID, "13+";
    "Partitions": ARRAY_INT32, "7+";
});

// ListOffsets (2)
static LIST_OFFSETS: Struct = plain_struct!("ListOffsetsRequest" {
    "ReplicaId": INT32, "0+";
    "IsolationLevel": INT8, "2+";
    "Topics": array(&LIST_OFFSETS_TOPIC), "0+";
    "TimeoutMs": INT32, "10+";
});
static LIST_OFFSETS_TOPIC: Struct = plain_struct!("ListOffsetsTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&LIST_OFFSETS_PARTITION), "0+";
});
static LIST_OFFSETS_PARTITION: Struct = plain_struct!("ListOffsetsPartition" {
    "PartitionIndex": INT32, "0+";
    "CurrentLeaderEpoch": INT32, "4+";
    "Timestamp": INT64, "0+";
    "MaxNumOffsets": INT32, "0";
});

// Metadata (3)
static METADATA: Struct = plain_struct!("MetadataRequest" {
    "Topics": array(&METADATA_TOPIC), "0+", nullable "1+";
    "AllowAutoTopicCreation": BOOL, "4+";
    "IncludeClusterAuthorizedOperations": BOOL, "8-10";
    "IncludeTopicAuthorizedOperations": BOOL, "8+";
});
static METADATA_TOPIC: Struct = plain_struct!("MetadataRequestTopic" {
    "TopicId": UUID, "10+";
    "Name": STRING, "0+", nullable "10+";
});

// OffsetCommit (8)
static OFFSET_COMMIT: Struct = plain_struct!("OffsetCommitRequest" {
    "GroupId": STRING, "0+";
    "GenerationIdOrMemberEpoch": INT32, "1+";
    "MemberId": STRING, "1+";
    "GroupInstanceId": STRING, "7+", nullable "7+";
    "RetentionTimeMs": INT64, "2-4";
    "Topics": array(&OFFSET_COMMIT_TOPIC), "0+";
});
static OFFSET_COMMIT_TOPIC: Struct = plain_struct!("OffsetCommitRequestTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&OFFSET_COMMIT_PARTITION), "0+";
});
static OFFSET_COMMIT_PARTITION: Struct = plain_struct!("OffsetCommitRequestPartition" {
    "PartitionIndex": INT32, "0+";
    "CommittedOffset": INT64, "0+";
    "CommittedLeaderEpoch": INT32, "6+";
    "CommitTimestamp": INT64, "1";
    "CommittedMetadata": STRING, "0+", nullable "0+";
});

// OffsetFetch (9)
static OFFSET_FETCH: Struct = plain_struct!("OffsetFetchRequest" {
    "GroupId": STRING, "0-7";
    "Topics": array(&OFFSET_FETCH_TOPIC), "0-7", nullable "2-7";
    "Groups": array(&OFFSET_FETCH_GROUP), "8+";
    "RequireStable": BOOL, "7+";
});
static OFFSET_FETCH_TOPIC: Struct = plain_struct!("OffsetFetchRequestTopic" {
    "Name": STRING, "0-7";
    "PartitionIndexes": ARRAY_INT32, "0-7";
});
static OFFSET_FETCH_GROUP: Struct = plain_struct!("OffsetFetchRequestGroup" {
    "GroupId": STRING, "8+";
    "MemberId": STRING, "9+", nullable "9+";
    "MemberEpoch": INT32, "9+";
    "Topics": array(&OFFSET_FETCH_GROUP_TOPIC), "8+", nullable "8+";
});
static OFFSET_FETCH_GROUP_TOPIC: Struct = plain_struct!("OffsetFetchRequestTopics" {
    "Name": STRING, "8+";
    "PartitionIndexes": ARRAY_INT32, "8+";
});

// FindCoordinator (10)
static FIND_COORDINATOR: Struct = plain_struct!("FindCoordinatorRequest" {
    "Key": STRING, "0-3";
    "KeyType": INT8, "1+";
    "CoordinatorKeys": ARRAY_STRING, "4+";
});

// JoinGroup (11)
static JOIN_GROUP: Struct = plain_struct!("JoinGroupRequest" {
    "GroupId": STRING, "0+";
    "SessionTimeoutMs": INT32, "0+";
    "RebalanceTimeoutMs": INT32, "1+";
    "MemberId": STRING, "0+";
    "GroupInstanceId": STRING, "5+", nullable "5+";
    "ProtocolType": STRING, "0+";
    "Protocols": array(&JOIN_GROUP_PROTOCOL), "0+";
    "Reason": STRING, "8+", nullable "8+";
});
static JOIN_GROUP_PROTOCOL: Struct = plain_struct!("JoinGroupRequestProtocol" {
    "Name": STRING, "0+";
    "Metadata": BYTES, "0+";
});

// Heartbeat (12)
static HEARTBEAT: Struct = plain_struct!("HeartbeatRequest" {
    "GroupId": STRING, "0+";
    "GenerationId": INT32, "0+";
    "MemberId": STRING, "0+";
    "GroupInstanceId": STRING, "3+", nullable "3+";
});

// ConsumerGroupHeartbeat (68), KIP-848
static CONSUMER_GROUP_HEARTBEAT: Struct = plain_struct!("ConsumerGroupHeartbeatRequest" {
    "GroupId": STRING, "0+";
    "MemberId": STRING, "0+";
    "MemberEpoch": INT32, "0+";
    "InstanceId": STRING, "0+", nullable "0+";
    "RackId": STRING, "0+", nullable "0+";
    "RebalanceTimeoutMs": INT32, "0+";
    "SubscribedTopicNames": ARRAY_STRING, "0+", nullable "0+";
    "SubscribedTopicRegex": STRING, "1+", nullable "1+";
    "ServerAssignor": STRING, "0+", nullable "0+";
    "TopicPartitions": array(&CONSUMER_GROUP_HEARTBEAT_TOPIC), "0+", nullable "0+";
});
static CONSUMER_GROUP_HEARTBEAT_TOPIC: Struct = plain_struct!("TopicPartitions" {
    "TopicId": UUID, "0+";
    "Partitions": ARRAY_INT32, "0+";
});

// ConsumerGroupDescribe (69), KIP-848
static CONSUMER_GROUP_DESCRIBE: Struct = plain_struct!("ConsumerGroupDescribeRequest" {
    "GroupIds": ARRAY_STRING, "0+";
    "IncludeAuthorizedOperations": BOOL, "0+";
});

// DescribeUserScramCredentials (50)
static DESCRIBE_USER_SCRAM_CREDENTIALS: Struct = plain_struct!("DescribeUserScramCredentialsRequest" {
    "Users": array(&DESCRIBE_USER_SCRAM_CREDENTIALS_USER), "0+", nullable "0+";
});
static DESCRIBE_USER_SCRAM_CREDENTIALS_USER: Struct = plain_struct!("UserName" {
    "Name": STRING, "0+";
});

// AlterUserScramCredentials (51)
static ALTER_USER_SCRAM_CREDENTIALS: Struct = plain_struct!("AlterUserScramCredentialsRequest" {
    "Deletions": array(&SCRAM_CREDENTIAL_DELETION), "0+";
    "Upsertions": array(&SCRAM_CREDENTIAL_UPSERTION), "0+";
});
static SCRAM_CREDENTIAL_DELETION: Struct = plain_struct!("ScramCredentialDeletion" {
    "Name": STRING, "0+";
    "Mechanism": INT8, "0+";
});
static SCRAM_CREDENTIAL_UPSERTION: Struct = plain_struct!("ScramCredentialUpsertion" {
    "Name": STRING, "0+";
    "Mechanism": INT8, "0+";
    "Iterations": INT32, "0+";
    "Salt": BYTES, "0+";
    "SaltedPassword": BYTES, "0+";
});

// LeaveGroup (13)
static LEAVE_GROUP: Struct = plain_struct!("LeaveGroupRequest" {
    "GroupId": STRING, "0+";
    "MemberId": STRING, "0-2";
    "Members": array(&LEAVE_GROUP_MEMBER), "3+";
});
static LEAVE_GROUP_MEMBER: Struct = plain_struct!("MemberIdentity" {
    "MemberId": STRING, "3+";
    "GroupInstanceId": STRING, "3+", nullable "3+";
    "Reason": STRING, "5+", nullable "5+";
});

// SyncGroup (14)
static SYNC_GROUP: Struct = plain_struct!("SyncGroupRequest" {
    "GroupId": STRING, "0+";
    "GenerationId": INT32, "0+";
    "MemberId": STRING, "0+";
    "GroupInstanceId": STRING, "3+", nullable "3+";
    "ProtocolType": STRING, "5+", nullable "5+";
    "ProtocolName": STRING, "5+", nullable "5+";
    "Assignments": array(&SYNC_GROUP_ASSIGNMENT), "0+";
});
static SYNC_GROUP_ASSIGNMENT: Struct = plain_struct!("SyncGroupRequestAssignment" {
    "MemberId": STRING, "0+";
    "Assignment": BYTES, "0+";
});

// DescribeGroups (15)
static DESCRIBE_GROUPS: Struct = plain_struct!("DescribeGroupsRequest" {
    "Groups": ARRAY_STRING, "0+";
    "IncludeAuthorizedOperations": BOOL, "3+";
});

// ListGroups (16)
static LIST_GROUPS: Struct = plain_struct!("ListGroupsRequest" {
    "StatesFilter": ARRAY_STRING, "4+";
    "TypesFilter": ARRAY_STRING, "5+";
});

// SaslHandshake (17)
static SASL_HANDSHAKE: Struct = plain_struct!("SaslHandshakeRequest" {
    "Mechanism": STRING, "0+";
});

// ApiVersions (18)
static API_VERSIONS: Struct = plain_struct!("ApiVersionsRequest" {
    "ClientSoftwareName": STRING, "3+";
    "ClientSoftwareVersion": STRING, "3+";
});

// CreateTopics (19)
static CREATE_TOPICS: Struct = plain_struct!("CreateTopicsRequest" {
    "Topics": array(&CREATE_TOPICS_TOPIC), "0+";
    "TimeoutMs": INT32, "0+";
    "ValidateOnly": BOOL, "1+";
});
static CREATE_TOPICS_TOPIC: Struct = plain_struct!("CreatableTopic" {
    "Name": STRING, "0+";
    "NumPartitions": INT32, "0+";
    "ReplicationFactor": INT16, "0+";
    "Assignments": array(&CREATE_TOPICS_ASSIGNMENT), "0+";
    "Configs": array(&CREATE_TOPICS_CONFIG), "0+";
});
static CREATE_TOPICS_ASSIGNMENT: Struct = plain_struct!("CreatableReplicaAssignment" {
    "PartitionIndex": INT32, "0+";
    "BrokerIds": ARRAY_INT32, "0+";
});
static CREATE_TOPICS_CONFIG: Struct = plain_struct!("CreatableTopicConfig" {
    "Name": STRING, "0+";
    "Value": STRING, "0+", nullable "0+";
});

// DeleteTopics (20)
static DELETE_TOPICS: Struct = plain_struct!("DeleteTopicsRequest" {
    "Topics": array(&DELETE_TOPICS_TOPIC), "6+";
    "TopicNames": ARRAY_STRING, "0-5";
    "TimeoutMs": INT32, "0+";
});
static DELETE_TOPICS_TOPIC: Struct = plain_struct!("DeleteTopicState" {
    "Name": STRING, "6+", nullable "6+";
    "TopicId": UUID, "6+";
});

// InitProducerId (22)
static INIT_PRODUCER_ID: Struct = plain_struct!("InitProducerIdRequest" {
    "TransactionalId": STRING, "0+", nullable "0+";
    "TransactionTimeoutMs": INT32, "0+";
    "ProducerId": INT64, "3+";
    "ProducerEpoch": INT16, "3+";
});

// AddPartitionsToTxn (24): versions 4+ are the broker-to-broker batch form (KIP-890's
// verification by a partition leader).
static ADD_PARTITIONS_TO_TXN: Struct = plain_struct!("AddPartitionsToTxnRequest" {
    "Transactions": array(&ADD_PARTITIONS_TO_TXN_TRANSACTION), "4+";
    "TransactionalId": STRING, "0-3";
    "ProducerId": INT64, "0-3";
    "ProducerEpoch": INT16, "0-3";
    "Topics": array(&ADD_PARTITIONS_TO_TXN_TOPIC), "0-3";
});
static ADD_PARTITIONS_TO_TXN_TRANSACTION: Struct = plain_struct!("AddPartitionsToTxnTransaction" {
    "TransactionalId": STRING, "4+";
    "ProducerId": INT64, "4+";
    "ProducerEpoch": INT16, "4+";
    "VerifyOnly": BOOL, "4+";
    "Topics": array(&ADD_PARTITIONS_TO_TXN_TOPIC), "4+";
});
static ADD_PARTITIONS_TO_TXN_TOPIC: Struct = plain_struct!("AddPartitionsToTxnTopic" {
    "Name": STRING, "0+";
    "Partitions": ARRAY_INT32, "0+";
});

// AddOffsetsToTxn (25)
static ADD_OFFSETS_TO_TXN: Struct = plain_struct!("AddOffsetsToTxnRequest" {
    "TransactionalId": STRING, "0+";
    "ProducerId": INT64, "0+";
    "ProducerEpoch": INT16, "0+";
    "GroupId": STRING, "0+";
});

// EndTxn (26)
static END_TXN: Struct = plain_struct!("EndTxnRequest" {
    "TransactionalId": STRING, "0+";
    "ProducerId": INT64, "0+";
    "ProducerEpoch": INT16, "0+";
    "Committed": BOOL, "0+";
});

// TxnOffsetCommit (28)
static TXN_OFFSET_COMMIT: Struct = plain_struct!("TxnOffsetCommitRequest" {
    "TransactionalId": STRING, "0+";
    "GroupId": STRING, "0+";
    "ProducerId": INT64, "0+";
    "ProducerEpoch": INT16, "0+";
    "GenerationId": INT32, "3+";
    "MemberId": STRING, "3+";
    "GroupInstanceId": STRING, "3+", nullable "3+";
    "Topics": array(&TXN_OFFSET_COMMIT_TOPIC), "0+";
});
static TXN_OFFSET_COMMIT_TOPIC: Struct = plain_struct!("TxnOffsetCommitRequestTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&TXN_OFFSET_COMMIT_PARTITION), "0+";
});
static TXN_OFFSET_COMMIT_PARTITION: Struct = plain_struct!("TxnOffsetCommitRequestPartition" {
    "PartitionIndex": INT32, "0+";
    "CommittedOffset": INT64, "0+";
    "CommittedLeaderEpoch": INT32, "2+";
    "CommittedMetadata": STRING, "0+", nullable "0+";
});

// DescribeAcls (29): v0, without pattern types, is gone from Kafka 4.
static DESCRIBE_ACLS: Struct = plain_struct!("DescribeAclsRequest" {
    "ResourceTypeFilter": INT8, "0+";
    "ResourceNameFilter": STRING, "0+", nullable "0+";
    "PatternTypeFilter": INT8, "1+";
    "PrincipalFilter": STRING, "0+", nullable "0+";
    "HostFilter": STRING, "0+", nullable "0+";
    "Operation": INT8, "0+";
    "PermissionType": INT8, "0+";
});

// CreateAcls (30)
static CREATE_ACLS: Struct = plain_struct!("CreateAclsRequest" {
    "Creations": array(&CREATE_ACLS_CREATION), "0+";
});
static CREATE_ACLS_CREATION: Struct = plain_struct!("AclCreation" {
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "ResourcePatternType": INT8, "1+";
    "Principal": STRING, "0+";
    "Host": STRING, "0+";
    "Operation": INT8, "0+";
    "PermissionType": INT8, "0+";
});

// DeleteAcls (31)
static DELETE_ACLS: Struct = plain_struct!("DeleteAclsRequest" {
    "Filters": array(&DELETE_ACLS_FILTER), "0+";
});
static DELETE_ACLS_FILTER: Struct = plain_struct!("DeleteAclsFilter" {
    "ResourceTypeFilter": INT8, "0+";
    "ResourceNameFilter": STRING, "0+", nullable "0+";
    "PatternTypeFilter": INT8, "1+";
    "PrincipalFilter": STRING, "0+", nullable "0+";
    "HostFilter": STRING, "0+", nullable "0+";
    "Operation": INT8, "0+";
    "PermissionType": INT8, "0+";
});

// DescribeProducers (61)
static DESCRIBE_PRODUCERS: Struct = plain_struct!("DescribeProducersRequest" {
    "Topics": array(&DESCRIBE_PRODUCERS_TOPIC), "0+";
});
static DESCRIBE_PRODUCERS_TOPIC: Struct = plain_struct!("TopicRequest" {
    "Name": STRING, "0+";
    "PartitionIndexes": ARRAY_INT32, "0+";
});

// DescribeTransactions (65)
static DESCRIBE_TRANSACTIONS: Struct = plain_struct!("DescribeTransactionsRequest" {
    "TransactionalIds": ARRAY_STRING, "0+";
});

// ListTransactions (66)
static LIST_TRANSACTIONS: Struct = plain_struct!("ListTransactionsRequest" {
    "StateFilters": ARRAY_STRING, "0+";
    "ProducerIdFilters": ARRAY_INT64, "0+";
    "DurationFilter": INT64, "1+";
    "TransactionalIdPattern": STRING, "2+", nullable "2+";
});

// DescribeConfigs (32)
static DESCRIBE_CONFIGS: Struct = plain_struct!("DescribeConfigsRequest" {
    "Resources": array(&DESCRIBE_CONFIGS_RESOURCE), "0+";
    "IncludeSynonyms": BOOL, "1+";
    "IncludeDocumentation": BOOL, "3+";
});
static DESCRIBE_CONFIGS_RESOURCE: Struct = plain_struct!("DescribeConfigsResource" {
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "ConfigurationKeys": ARRAY_STRING, "0+", nullable "0+";
});

// OffsetForLeaderEpoch (23); versions 0 and 1 are gone from Kafka 4 (KIP-896).
static OFFSET_FOR_LEADER_EPOCH: Struct = plain_struct!("OffsetForLeaderEpochRequest" {
    "ReplicaId": INT32, "3+";
    "Topics": array(&OFFSET_FOR_LEADER_TOPIC), "0+";
});
static OFFSET_FOR_LEADER_TOPIC: Struct = plain_struct!("OffsetForLeaderTopic" {
    "Topic": STRING, "0+";
    "Partitions": array(&OFFSET_FOR_LEADER_PARTITION), "0+";
});
static OFFSET_FOR_LEADER_PARTITION: Struct = plain_struct!("OffsetForLeaderPartition" {
    "Partition": INT32, "0+";
    "CurrentLeaderEpoch": INT32, "2+";
    "LeaderEpoch": INT32, "0+";
});

// DeleteRecords (21)
static DELETE_RECORDS: Struct = plain_struct!("DeleteRecordsRequest" {
    "Topics": array(&DELETE_RECORDS_TOPIC), "0+";
    "TimeoutMs": INT32, "0+";
});
static DELETE_RECORDS_TOPIC: Struct = plain_struct!("DeleteRecordsTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&DELETE_RECORDS_PARTITION), "0+";
});
static DELETE_RECORDS_PARTITION: Struct = plain_struct!("DeleteRecordsPartition" {
    "PartitionIndex": INT32, "0+";
    "Offset": INT64, "0+";
});

// DescribeLogDirs (35)
static DESCRIBE_LOG_DIRS: Struct = plain_struct!("DescribeLogDirsRequest" {
    "Topics": array(&DESCRIBE_LOG_DIRS_TOPIC), "0+", nullable "0+";
});
static DESCRIBE_LOG_DIRS_TOPIC: Struct = plain_struct!("DescribableLogDirTopic" {
    "Topic": STRING, "0+";
    "Partitions": ARRAY_INT32, "0+";
});

// DescribeClientQuotas (48)
static DESCRIBE_CLIENT_QUOTAS: Struct = plain_struct!("DescribeClientQuotasRequest" {
    "Components": array(&DESCRIBE_CLIENT_QUOTAS_COMPONENT), "0+";
    "Strict": BOOL, "0+";
});
static DESCRIBE_CLIENT_QUOTAS_COMPONENT: Struct = plain_struct!("ComponentData" {
    "EntityType": STRING, "0+";
    "MatchType": INT8, "0+";
    "Match": STRING, "0+", nullable "0+";
});

// AlterClientQuotas (49)
static ALTER_CLIENT_QUOTAS: Struct = plain_struct!("AlterClientQuotasRequest" {
    "Entries": array(&ALTER_CLIENT_QUOTAS_ENTRY), "0+";
    "ValidateOnly": BOOL, "0+";
});
static ALTER_CLIENT_QUOTAS_ENTRY: Struct = plain_struct!("EntryData" {
    "Entity": array(&ALTER_CLIENT_QUOTAS_ENTITY), "0+";
    "Ops": array(&ALTER_CLIENT_QUOTAS_OP), "0+";
});
static ALTER_CLIENT_QUOTAS_ENTITY: Struct = plain_struct!("EntityData" {
    "EntityType": STRING, "0+";
    "EntityName": STRING, "0+", nullable "0+";
});
static ALTER_CLIENT_QUOTAS_OP: Struct = plain_struct!("OpData" {
    "Key": STRING, "0+";
    "Value": FLOAT64, "0+";
    "Remove": BOOL, "0+";
});

// AlterConfigs (33)
static ALTER_CONFIGS: Struct = plain_struct!("AlterConfigsRequest" {
    "Resources": array(&ALTER_CONFIGS_RESOURCE), "0+";
    "ValidateOnly": BOOL, "0+";
});
static ALTER_CONFIGS_RESOURCE: Struct = plain_struct!("AlterConfigsResource" {
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "Configs": array(&ALTER_CONFIGS_CONFIG), "0+";
});
static ALTER_CONFIGS_CONFIG: Struct = plain_struct!("AlterableConfig" {
    "Name": STRING, "0+";
    "Value": STRING, "0+", nullable "0+";
});

// SaslAuthenticate (36)
static SASL_AUTHENTICATE: Struct = plain_struct!("SaslAuthenticateRequest" {
    "AuthBytes": BYTES, "0+";
});

// CreatePartitions (37)
static CREATE_PARTITIONS: Struct = plain_struct!("CreatePartitionsRequest" {
    "Topics": array(&CREATE_PARTITIONS_TOPIC), "0+";
    "TimeoutMs": INT32, "0+";
    "ValidateOnly": BOOL, "0+";
});
static CREATE_PARTITIONS_TOPIC: Struct = plain_struct!("CreatePartitionsTopic" {
    "Name": STRING, "0+";
    "Count": INT32, "0+";
    "Assignments": array(&CREATE_PARTITIONS_ASSIGNMENT), "0+", nullable "0+";
});
static CREATE_PARTITIONS_ASSIGNMENT: Struct = plain_struct!("CreatePartitionsAssignment" {
    "BrokerIds": ARRAY_INT32, "0+";
});

// DeleteGroups (42)
static DELETE_GROUPS: Struct = plain_struct!("DeleteGroupsRequest" {
    "GroupsNames": ARRAY_STRING, "0+";
});

// IncrementalAlterConfigs (44)
static INCREMENTAL_ALTER_CONFIGS: Struct = plain_struct!("IncrementalAlterConfigsRequest" {
    "Resources": array(&INCREMENTAL_ALTER_CONFIGS_RESOURCE), "0+";
    "ValidateOnly": BOOL, "0+";
});
static INCREMENTAL_ALTER_CONFIGS_RESOURCE: Struct = plain_struct!("AlterConfigsResource" {
    "ResourceType": INT8, "0+";
    "ResourceName": STRING, "0+";
    "Configs": array(&INCREMENTAL_ALTER_CONFIGS_CONFIG), "0+";
});
static INCREMENTAL_ALTER_CONFIGS_CONFIG: Struct = plain_struct!("AlterableConfig" {
    "Name": STRING, "0+";
    "ConfigOperation": INT8, "0+";
    "Value": STRING, "0+", nullable "0+";
});

// OffsetDelete (47)
static OFFSET_DELETE: Struct = plain_struct!("OffsetDeleteRequest" {
    "GroupId": STRING, "0+";
    "Topics": array(&OFFSET_DELETE_TOPIC), "0+";
});
static OFFSET_DELETE_TOPIC: Struct = plain_struct!("OffsetDeleteRequestTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&OFFSET_DELETE_PARTITION), "0+";
});
static OFFSET_DELETE_PARTITION: Struct = plain_struct!("OffsetDeleteRequestPartition" {
    "PartitionIndex": INT32, "0+";
});

// WriteTxnMarkers (27): broker to broker. Version 0 was removed in Kafka 4.0, and
// kafka-protocol 0.18 decodes version 1 only.
static WRITE_TXN_MARKERS: Struct = plain_struct!("WriteTxnMarkersRequest" {
    "Markers": array(&WRITE_TXN_MARKERS_MARKER), "0+";
});
static WRITE_TXN_MARKERS_MARKER: Struct = plain_struct!("WritableTxnMarker" {
    "ProducerId": INT64, "0+";
    "ProducerEpoch": INT16, "0+";
    "TransactionResult": BOOL, "0+";
    "Topics": array(&WRITE_TXN_MARKERS_TOPIC), "0+";
    "CoordinatorEpoch": INT32, "0+";
});
static WRITE_TXN_MARKERS_TOPIC: Struct = plain_struct!("WritableTxnMarkerTopic" {
    "Name": STRING, "0+";
    "PartitionIndexes": ARRAY_INT32, "0+";
});

// DescribeQuorum (55)
static DESCRIBE_QUORUM: Struct = plain_struct!("DescribeQuorumRequest" {
    "Topics": array(&DESCRIBE_QUORUM_TOPIC), "0+";
});
static DESCRIBE_QUORUM_TOPIC: Struct = plain_struct!("TopicData" {
    "TopicName": STRING, "0+";
    "Partitions": array(&DESCRIBE_QUORUM_PARTITION), "0+";
});
static DESCRIBE_QUORUM_PARTITION: Struct = plain_struct!("PartitionData" {
    "PartitionIndex": INT32, "0+";
});

// AddRaftVoter (80), RemoveRaftVoter (81): KIP-853's voter changes.
static ADD_RAFT_VOTER: Struct = plain_struct!("AddRaftVoterRequest" {
    "ClusterId": STRING, "0+", nullable "0+";
    "TimeoutMs": INT32, "0+";
    "VoterId": INT32, "0+";
    "VoterDirectoryId": UUID, "0+";
    "Listeners": array(&ADD_RAFT_VOTER_LISTENER), "0+";
});
static ADD_RAFT_VOTER_LISTENER: Struct = plain_struct!("Listener" {
    "Name": STRING, "0+";
    "Host": STRING, "0+";
    "Port": INT16, "0+";
});
static REMOVE_RAFT_VOTER: Struct = plain_struct!("RemoveRaftVoterRequest" {
    "ClusterId": STRING, "0+", nullable "0+";
    "VoterId": INT32, "0+";
    "VoterDirectoryId": UUID, "0+";
});
// UpdateRaftVoter (82): a voter's new listeners (KIP-853).
static UPDATE_RAFT_VOTER: Struct = plain_struct!("UpdateRaftVoterRequest" {
    "ClusterId": STRING, "0+", nullable "0+";
    "CurrentLeaderEpoch": INT32, "0+";
    "VoterId": INT32, "0+";
    "VoterDirectoryId": UUID, "0+";
    "Listeners": array(&ADD_RAFT_VOTER_LISTENER), "0+";
    "KRaftVersionFeature": Kind::Struct(&UPDATE_RAFT_VOTER_KRAFT_VERSION), "0+";
});
static UPDATE_RAFT_VOTER_KRAFT_VERSION: Struct = plain_struct!("KRaftVersionFeature" {
    "MinSupportedVersion": INT16, "0+";
    "MaxSupportedVersion": INT16, "0+";
});

// ListConfigResources (74): v0 was ListClientMetricsResources (KIP-714), v1 lists every kind
// of config resource (KIP-1142).
static LIST_CONFIG_RESOURCES: Struct = plain_struct!("ListConfigResourcesRequest" {
    "ResourceTypes": ARRAY_INT8, "1+";
});

// DescribeCluster (60)
static DESCRIBE_CLUSTER: Struct = plain_struct!("DescribeClusterRequest" {
    "IncludeClusterAuthorizedOperations": BOOL, "0+";
    "EndpointType": INT8, "1+";
    "IncludeFencedBrokers": BOOL, "2+";
});

// ElectLeaders (43)
static ELECT_LEADERS: Struct = plain_struct!("ElectLeadersRequest" {
    "ElectionType": INT8, "1+";
    "TopicPartitions": array(&ELECT_LEADERS_TOPIC), "0+", nullable "0+";
    "TimeoutMs": INT32, "0+";
});
static ELECT_LEADERS_TOPIC: Struct = plain_struct!("TopicPartitions" {
    "Topic": STRING, "0+";
    "PartitionId": ARRAY_INT32, "0+";
});

// AlterPartitionReassignments (45)
static ALTER_PARTITION_REASSIGNMENTS: Struct = plain_struct!("AlterPartitionReassignmentsRequest" {
    "TimeoutMs": INT32, "0+";
    "AllowReplicationFactorChange": BOOL, "1+";
    "Topics": array(&ALTER_PARTITION_REASSIGNMENTS_TOPIC), "0+";
});
static ALTER_PARTITION_REASSIGNMENTS_TOPIC: Struct = plain_struct!("ReassignableTopic" {
    "Name": STRING, "0+";
    "Partitions": array(&ALTER_PARTITION_REASSIGNMENTS_PARTITION), "0+";
});
static ALTER_PARTITION_REASSIGNMENTS_PARTITION: Struct = plain_struct!("ReassignablePartition" {
    "PartitionIndex": INT32, "0+";
    "Replicas": ARRAY_INT32, "0+", nullable "0+";
});

// ListPartitionReassignments (46)
static LIST_PARTITION_REASSIGNMENTS: Struct = plain_struct!("ListPartitionReassignmentsRequest" {
    "TimeoutMs": INT32, "0+";
    "Topics": array(&LIST_PARTITION_REASSIGNMENTS_TOPIC), "0+", nullable "0+";
});
static LIST_PARTITION_REASSIGNMENTS_TOPIC: Struct = plain_struct!("ListPartitionReassignmentsTopics" {
    "Name": STRING, "0+";
    "PartitionIndexes": ARRAY_INT32, "0+";
});

// UpdateFeatures (57)
static UPDATE_FEATURES: Struct = plain_struct!("UpdateFeaturesRequest" {
    "TimeoutMs": INT32, "0+";
    "FeatureUpdates": array(&FEATURE_UPDATE_KEY), "0+";
    "ValidateOnly": BOOL, "1+";
});
static FEATURE_UPDATE_KEY: Struct = plain_struct!("FeatureUpdateKey" {
    "Feature": STRING, "0+";
    "MaxVersionLevel": INT16, "0+";
    "AllowDowngrade": BOOL, "0";
    "UpgradeType": INT8, "1+";
});

// UnregisterBroker (64)
static UNREGISTER_BROKER: Struct = plain_struct!("UnregisterBrokerRequest" {
    "BrokerId": INT32, "0+";
});

// DescribeTopicPartitions (75)
static DESCRIBE_TOPIC_PARTITIONS: Struct = plain_struct!("DescribeTopicPartitionsRequest" {
    "Topics": array(&DESCRIBE_TOPIC_PARTITIONS_TOPIC), "0+";
    "ResponsePartitionLimit": INT32, "0+";
    "Cursor": Kind::NullableStruct(&DESCRIBE_TOPIC_PARTITIONS_CURSOR), "0+";
});
static DESCRIBE_TOPIC_PARTITIONS_TOPIC: Struct = plain_struct!("TopicRequest" {
    "Name": STRING, "0+";
});
static DESCRIBE_TOPIC_PARTITIONS_CURSOR: Struct = plain_struct!("Cursor" {
    "TopicName": STRING, "0+";
    "PartitionIndex": INT32, "0+";
});

// ---------------------------------------------------------------------------------------------
// Walker
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Context {
    version: i16,
    /// Flexible versions use compact strings, bytes and arrays, and end each struct with a
    /// tagged-field section.
    flexible: bool,
}

/// A read position in the body. `end` is the body's length, or the end of the tagged field being
/// read; offsets in errors stay relative to the whole body.
struct Cursor<'a> {
    body: &'a [u8],
    position: usize,
    end: usize,
}

/// A length or count prefix as read: `None` for null.
type Length = Option<u64>;

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.end - self.position
    }

    fn skip(&mut self, size: usize, offset: usize, field: &'static str) -> Result<(), ValidationError> {
        if size > self.remaining() {
            return Err(ValidationError::Truncated { offset, field });
        }
        self.position += size;
        Ok(())
    }

    fn read_fixed<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ValidationError> {
        let offset = self.position;
        self.skip(N, offset, field)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.body[offset..offset + N]);
        Ok(out)
    }

    /// Reads an unsigned varint exactly as `kafka_protocol::protocol::types::UnsignedVarInt`
    /// does: at most five bytes, bits beyond 32 dropped.
    fn read_unsigned_varint(&mut self, field: &'static str) -> Result<u32, ValidationError> {
        let offset = self.position;
        let mut value: u32 = 0;
        for index in 0..5 {
            let [byte] = self.read_fixed::<1>(field).map_err(|_| ValidationError::Truncated { offset, field })?;
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ValidationError::Invalid { offset, field, value: i64::from(value) })
    }

    /// Reads a length or count prefix: compact (unsigned varint N+1, 0 for null) in flexible
    /// versions, else a signed int16/int32 with -1 for null. Rejects negative values other than
    /// -1, and null where the field is not nullable.
    fn read_length(&mut self, field: &'static str, context: Context, wide: bool, nullable: bool) -> Result<Length, ValidationError> {
        let offset = self.position;
        let raw: i64 = if context.flexible {
            i64::from(self.read_unsigned_varint(field)?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.read_fixed::<4>(field)?))
        } else {
            i64::from(i16::from_be_bytes(self.read_fixed::<2>(field)?))
        };
        match raw {
            -1 if nullable => Ok(None),
            length if length >= 0 => Ok(Some(length as u64)),
            length => Err(ValidationError::Invalid { offset, field, value: length }),
        }
    }

    /// Checks that `count` items of at least `unit_size` bytes each fit in what is left.
    fn check_fits(&self, offset: usize, field: &'static str, count: u64, unit_size: usize) -> Result<usize, ValidationError> {
        let remaining = self.remaining();
        let needed = count.checked_mul(unit_size.max(1) as u64);
        match needed {
            Some(needed) if needed <= remaining as u64 => Ok(count as usize),
            _ => Err(ValidationError::CountTooLarge { offset, field, value: count as i64, remaining }),
        }
    }
}

fn depth_error(cursor: &Cursor<'_>, depth: usize) -> ValidationError {
    ValidationError::Invalid { offset: cursor.position, field: "schema nesting depth", value: depth as i64 }
}

fn walk_struct(cursor: &mut Cursor<'_>, schema: &'static Struct, context: Context, depth: usize) -> Result<(), ValidationError> {
    if depth >= MAX_NESTING_DEPTH {
        return Err(depth_error(cursor, depth));
    }
    for field in schema.fields {
        if field.versions.contains(context.version) {
            let nullable = field.nullable.contains(context.version);
            walk_value(cursor, field.kind, field.name, nullable, context, depth)?;
        }
    }
    if context.flexible {
        walk_tagged_fields(cursor, schema, context, depth)?;
    }
    Ok(())
}

fn walk_value(cursor: &mut Cursor<'_>, kind: Kind, field: &'static str, nullable: bool, context: Context, depth: usize) -> Result<(), ValidationError> {
    let offset = cursor.position;
    match kind {
        Kind::Fixed(size) => cursor.skip(size, offset, field),
        Kind::String | Kind::Bytes => {
            let wide = matches!(kind, Kind::Bytes);
            if let Some(length) = cursor.read_length(field, context, wide, nullable)? {
                let length = cursor.check_fits(offset, field, length, 1)?;
                cursor.skip(length, offset, field)?;
            }
            Ok(())
        }
        Kind::Array(element) => {
            let Some(count) = cursor.read_length(field, context, true, nullable)? else {
                return Ok(());
            };
            let element_size = min_encoded_size(element.kind(), context, depth + 1).ok_or_else(|| depth_error(cursor, depth))?;
            let count = cursor.check_fits(offset, field, count, element_size)?;
            for _ in 0..count {
                walk_value(cursor, element.kind(), field, false, context, depth + 1)?;
            }
            Ok(())
        }
        // Kafka's Java decoder reads any negative presence byte as null and kafka-protocol's
        // reads anything but 1 as null: only a byte both read alike passes.
        Kind::NullableStruct(schema) => match cursor.read_fixed::<1>(field)?[0] as i8 {
            -1 => Ok(()),
            1 => walk_struct(cursor, schema, context, depth + 1),
            other => Err(ValidationError::Invalid { offset, field, value: i64::from(other) }),
        },
        Kind::Struct(schema) => walk_struct(cursor, schema, context, depth + 1),
    }
}

/// The tagged-field section: a count, then per field its tag, its size and its bytes.
fn walk_tagged_fields(cursor: &mut Cursor<'_>, schema: &'static Struct, context: Context, depth: usize) -> Result<(), ValidationError> {
    const FIELD: &str = "tagged fields";
    // A tag and a size take at least one byte each.
    const TAGGED_FIELD_SIZE_MIN: usize = 2;
    let offset = cursor.position;
    let count = u64::from(cursor.read_unsigned_varint(FIELD)?);
    let count = cursor.check_fits(offset, FIELD, count, TAGGED_FIELD_SIZE_MIN)?;
    for _ in 0..count {
        let tag_offset = cursor.position;
        let tag = cursor.read_unsigned_varint("tagged field tag")?;
        let size_offset = cursor.position;
        let size = u64::from(cursor.read_unsigned_varint("tagged field size")?);
        let size = cursor.check_fits(size_offset, "tagged field size", size, 1)?;
        let Some(known) = schema.tagged.iter().find(|known| known.tag == tag) else {
            cursor.skip(size, size_offset, "tagged field")?;
            continue;
        };
        let field = known.field;
        if !field.versions.contains(context.version) {
            // The decoder rejects a known tag outside its versions; so do we.
            return Err(ValidationError::Invalid { offset: tag_offset, field: field.name, value: i64::from(tag) });
        }
        // The decoder reads a known tagged field from the buffer without looking at its size,
        // so the value must fill exactly the size it declares.
        let window_end = cursor.position + size;
        let outer_end = cursor.end;
        cursor.end = window_end;
        let nullable = field.nullable.contains(context.version);
        let walked = walk_value(cursor, field.kind, field.name, nullable, context, depth);
        cursor.end = outer_end;
        walked?;
        if cursor.position != window_end {
            return Err(ValidationError::Invalid { offset: size_offset, field: field.name, value: size as i64 });
        }
    }
    Ok(())
}

/// The fewest bytes a value of `kind` can take on the wire: an empty or null string, bytes or
/// array, and a struct's fields at their minimum. `None` when the schema nests too deeply.
fn min_encoded_size(kind: Kind, context: Context, depth: usize) -> Option<usize> {
    if depth >= MAX_NESTING_DEPTH {
        return None;
    }
    let prefix_size = |wide: bool| match (context.flexible, wide) {
        (true, _) => 1,
        (false, true) => 4,
        (false, false) => 2,
    };
    match kind {
        Kind::Fixed(size) => Some(size),
        Kind::String => Some(prefix_size(false)),
        Kind::Bytes | Kind::Array(_) => Some(prefix_size(true)),
        // A null struct is its presence byte alone.
        Kind::NullableStruct(_) => Some(1),
        Kind::Struct(schema) => {
            let mut total = usize::from(context.flexible);
            for field in schema.fields {
                if field.versions.contains(context.version) {
                    total += min_encoded_size(field.kind, context, depth + 1)?;
                }
            }
            Some(total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How deep a schema nests, counted the way the walker counts.
    fn nesting_depth(kind: Kind) -> usize {
        match kind {
            Kind::Fixed(_) | Kind::String | Kind::Bytes => 0,
            Kind::Array(element) => 1 + nesting_depth(element.kind()),
            Kind::Struct(schema) | Kind::NullableStruct(schema) => {
                let fields = schema.fields.iter().map(|field| nesting_depth(field.kind));
                let tagged = schema.tagged.iter().map(|tagged| nesting_depth(tagged.field.kind));
                1 + fields.chain(tagged).max().unwrap_or(0)
            }
        }
    }

    #[test]
    fn every_schema_nests_within_the_bound() {
        for api in APIS {
            let depth = nesting_depth(Kind::Struct(api.body));
            assert!(depth < MAX_NESTING_DEPTH, "api {} nests {depth} deep", api.key);
        }
    }

    #[test]
    fn api_keys_are_unique() {
        for (index, api) in APIS.iter().enumerate() {
            assert!(APIS[index + 1..].iter().all(|other| other.key != api.key), "api {}", api.key);
        }
    }

    #[test]
    fn version_specs_parse_like_kafka() {
        let check = |spec: &str, min: i16, max: i16| {
            let versions = Versions::parse(spec);
            assert_eq!((versions.min, versions.max), (min, max), "{spec}");
        };
        check("0+", 0, LATEST);
        check("3-5", 3, 5);
        check("7", 7, 7);
        check("12+", 12, LATEST);
        assert!(!Versions::parse("none").contains(0));
    }

    #[test]
    fn struct_minimum_counts_fields_of_the_version() {
        let v4 = Context { version: 4, flexible: false };
        let v12 = Context { version: 12, flexible: true };
        // Partition, FetchOffset, PartitionMaxBytes.
        assert_eq!(min_encoded_size(Kind::Struct(&FETCH_PARTITION), v4, 0), Some(16));
        // + CurrentLeaderEpoch, LastFetchedEpoch, LogStartOffset, tagged-field count.
        assert_eq!(min_encoded_size(Kind::Struct(&FETCH_PARTITION), v12, 0), Some(33));
    }
}
