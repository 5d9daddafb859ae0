//! Request-body validation against `kafka-protocol` 0.18's own encoder and decoder.
//!
//! 1. Every declared (api key, version): real requests encoded by the crate validate, decode to
//!    the last byte, and every strict prefix is rejected as truncated.
//! 2. Hand-made hostile bodies are rejected with the right error.
//! 3. Random mutations of valid encodings: whatever validates must decode without panicking and
//!    without any single allocation larger than `ALLOCATION_BYTES_PER_BODY_BYTE` times the body.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    add_partitions_to_txn_request, create_acls_request, delete_acls_request, describe_producers_request, txn_offset_commit_request, AddOffsetsToTxnRequest,
    AddPartitionsToTxnRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, DescribeProducersRequest, DescribeTransactionsRequest, EndTxnRequest,
    ListTransactionsRequest, TxnOffsetCommitRequest,
};
use kafka_protocol::messages::{alter_client_quotas_request, describe_client_quotas_request, AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::messages::{
    alter_configs_request, create_partitions_request, create_topics_request, delete_topics_request, describe_configs_request, fetch_request,
    incremental_alter_configs_request, join_group_request, leave_group_request, list_offsets_request, metadata_request, offset_commit_request,
    offset_delete_request, offset_fetch_request, produce_request, sync_group_request,
};
use kafka_protocol::messages::{
    alter_partition_reassignments_request, list_partition_reassignments_request, AlterPartitionReassignmentsRequest, ListPartitionReassignmentsRequest,
};
use kafka_protocol::messages::{
    consumer_group_heartbeat_request, AlterConfigsRequest, ApiVersionsRequest, BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    ProduceRequest, ProducerId, SaslAuthenticateRequest, SaslHandshakeRequest, SyncGroupRequest, TopicName, TransactionalId,
};
use kafka_protocol::messages::{delete_records_request, describe_log_dirs_request, DeleteRecordsRequest, DescribeLogDirsRequest};
use kafka_protocol::messages::{elect_leaders_request, ElectLeadersRequest, UnregisterBrokerRequest};
use kafka_protocol::messages::{offset_for_leader_epoch_request, OffsetForLeaderEpochRequest};
use kafka_protocol::protocol::{Encodable, StrBytes};
use shardlog_protocol::request::decode_request_body;
use shardlog_protocol::validate::{has_schema, validate_request_body, ValidationError};

// ---------------------------------------------------------------------------------------------
// Largest single allocation, per thread, so that parallel tests do not disturb each other.
// ---------------------------------------------------------------------------------------------

struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with`: the allocator may run while this thread's locals are being torn down.
    let _ = LARGEST_ALLOCATION_BYTES.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; we only record sizes.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, which is `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// A decoded element may take more memory than its smallest encoding: a compact string is one
/// byte on the wire and 32 in memory, a flexible `MetadataRequestTopic` 2 and about 72. This
/// bound leaves room for that; without validation a 5-byte body can ask for gigabytes.
const ALLOCATION_BYTES_PER_BODY_BYTE: usize = 64;
/// Fixed-size allocations the decoder makes whatever the input (B-tree nodes, error messages).
const ALLOCATION_BYTES_SLACK: usize = 4096;

// ---------------------------------------------------------------------------------------------
// Declared versions, and decoding.
// ---------------------------------------------------------------------------------------------

/// (api key, lowest, highest version) that the validator must declare, and no others.
const DECLARED: &[(i16, i16, i16)] = &[
    (0, 3, 12),
    (1, 4, 12),
    (2, 1, 10),
    (3, 0, 12),
    (8, 2, 8),
    (9, 1, 8),
    (10, 0, 4),
    (11, 0, 9),
    (12, 0, 4),
    (13, 0, 5),
    (14, 0, 5),
    (15, 0, 5),
    (16, 0, 5),
    (17, 0, 1),
    (18, 0, 4),
    (19, 2, 7),
    (20, 1, 6),
    (22, 0, 5),
    (24, 0, 5),
    (25, 0, 4),
    (26, 0, 5),
    (27, 1, 1),
    (28, 0, 5),
    (29, 1, 3),
    (30, 1, 3),
    (31, 1, 3),
    (32, 1, 4),
    (33, 0, 2),
    (36, 0, 2),
    (37, 0, 3),
    (42, 0, 2),
    (44, 0, 1),
    (47, 0, 0),
    (50, 0, 0),
    (51, 0, 0),
    (55, 0, 2),
    (60, 0, 1),
    (61, 0, 0),
    (65, 0, 0),
    (66, 0, 2),
    (68, 0, 1),
    (69, 0, 1),
    (74, 0, 1),
    (75, 0, 0),
    (21, 0, 2),
    (23, 2, 4),
    (35, 1, 4),
    (48, 0, 1),
    (49, 0, 1),
    (64, 0, 0),
    (57, 0, 2),
    (80, 0, 0),
    (81, 0, 0),
    (82, 0, 0),
    (43, 0, 2),
    (45, 0, 1),
    (46, 0, 0),
];

fn declared_versions() -> impl Iterator<Item = (i16, i16)> {
    DECLARED.iter().flat_map(|&(key, low, high)| (low..=high).map(move |version| (key, version)))
}

/// Decodes `body` through the crate's one decoder table; on success returns how many bytes it
/// left unread.
fn decode_body(api_key: i16, version: i16, body: &[u8]) -> Result<usize, String> {
    let mut buf = Bytes::copy_from_slice(body);
    decode_request_body(api_key, version, &mut buf).map(|_| buf.remaining()).map_err(|error| error.to_string())
}

/// Decodes and returns (bytes left or error, largest single allocation while decoding).
fn decode_measured(api_key: i16, version: i16, body: &[u8]) -> (Result<usize, String>, usize) {
    let input = body.to_vec();
    LARGEST_ALLOCATION_BYTES.with(|largest| largest.set(0));
    let decoded = decode_body(api_key, version, &input);
    let largest = LARGEST_ALLOCATION_BYTES.with(Cell::get);
    (decoded, largest)
}

// ---------------------------------------------------------------------------------------------
// Sample requests. `nulls` picks null for every field that is nullable in that version.
// ---------------------------------------------------------------------------------------------

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic(name: &'static str) -> TopicName {
    TopicName(s(name))
}

fn group(name: &'static str) -> GroupId {
    GroupId(s(name))
}

fn bytes(data: &'static [u8]) -> Bytes {
    Bytes::from_static(data)
}

fn encode<M: Encodable>(message: &M, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    message.encode(&mut buf, version).unwrap_or_else(|error| panic!("encode v{version}: {error}"));
    buf.to_vec()
}

/// Stands in for a record batch: the validator treats records as opaque bytes.
const RECORDS: &[u8] = b"\0\0\0\0\0\0\0\0\0\0\0\x31\0\0\0\0\x02record batch bytes, opaque here";

fn sample(api_key: i16, version: i16, nulls: bool) -> Vec<u8> {
    let v = version;
    match api_key {
        0 => {
            use produce_request::{PartitionProduceData, TopicProduceData};
            let partition = |index, records| PartitionProduceData::default().with_index(index).with_records(records);
            let mut request = ProduceRequest::default()
                .with_transactional_id((!nulls).then(|| TransactionalId(s("txn-1"))))
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic("orders"))
                        .with_partition_data(vec![partition(0, Some(bytes(RECORDS))), partition(1, (!nulls).then(Bytes::new))]),
                    TopicProduceData::default().with_name(topic("payments")).with_partition_data(vec![partition(7, Some(bytes(RECORDS)))]),
                ]);
            if v >= 9 {
                request = request.with_unknown_tagged_field(7, bytes(b"future"));
            }
            encode(&request, v)
        }
        1 => {
            use fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
            let partition = |index| {
                let mut partition =
                    FetchPartition::default().with_partition(index).with_fetch_offset(1_000 + i64::from(index)).with_partition_max_bytes(1 << 20);
                if v >= 9 {
                    partition = partition.with_current_leader_epoch(3);
                }
                if v >= 12 {
                    partition = partition.with_last_fetched_epoch(2).with_unknown_tagged_field(9, bytes(b"\x01\x02"));
                }
                if v >= 5 {
                    partition = partition.with_log_start_offset(10);
                }
                partition
            };
            let mut request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(50 << 20)
                .with_isolation_level(1)
                .with_topics(vec![
                    FetchTopic::default().with_topic(topic("orders")).with_partitions(vec![partition(0), partition(1)]),
                    FetchTopic::default().with_topic(topic("payments")).with_partitions(vec![partition(2)]),
                ]);
            if v >= 7 {
                request = request.with_session_id(77).with_session_epoch(3).with_forgotten_topics_data(vec![
                    ForgottenTopic::default().with_topic(topic("old")).with_partitions(vec![1, 2, 3]),
                    ForgottenTopic::default().with_topic(topic("older")),
                ]);
            }
            if v >= 11 {
                request = request.with_rack_id(s("rack-a"));
            }
            if v >= 12 && !nulls {
                request = request.with_cluster_id(Some(s("cluster-one")));
            }
            encode(&request, v)
        }
        2 => {
            use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
            let partition = |index| {
                let partition = ListOffsetsPartition::default().with_partition_index(index).with_timestamp(-1);
                if v >= 4 {
                    partition.with_current_leader_epoch(5)
                } else {
                    partition
                }
            };
            let mut request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default().with_name(topic("orders")).with_partitions(vec![partition(0), partition(1)]),
                ListOffsetsTopic::default().with_name(topic("payments")),
            ]);
            if v >= 2 {
                request = request.with_isolation_level(1);
            }
            encode(&request, v)
        }
        3 => {
            use metadata_request::MetadataRequestTopic;
            let named = |name| MetadataRequestTopic::default().with_name(Some(topic(name)));
            let topics = if nulls && v >= 10 {
                Some(vec![named("orders"), MetadataRequestTopic::default().with_name(None)])
            } else if nulls && v >= 1 {
                None
            } else {
                Some(vec![named("orders"), named("payments")])
            };
            let mut request = MetadataRequest::default().with_topics(topics);
            if v >= 4 {
                request = request.with_allow_auto_topic_creation(false);
            }
            if (8..=10).contains(&v) {
                request = request.with_include_cluster_authorized_operations(true);
            }
            if v >= 8 {
                request = request.with_include_topic_authorized_operations(true);
            }
            encode(&request, v)
        }
        8 => {
            use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
            let partition = |index, metadata| {
                let partition = OffsetCommitRequestPartition::default().with_partition_index(index).with_committed_offset(42).with_committed_metadata(metadata);
                if v >= 6 {
                    partition.with_committed_leader_epoch(4)
                } else {
                    partition
                }
            };
            let metadata = (!nulls).then(|| s("meta"));
            let mut request =
                OffsetCommitRequest::default().with_group_id(group("group-1")).with_generation_id_or_member_epoch(9).with_member_id(s("member-1")).with_topics(
                    vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(topic("orders"))
                            .with_partitions(vec![partition(0, metadata.clone()), partition(1, Some(s("")))]),
                        OffsetCommitRequestTopic::default().with_name(topic("payments")).with_partitions(vec![partition(3, metadata)]),
                    ],
                );
            if v >= 7 && !nulls {
                request = request.with_group_instance_id(Some(s("instance-1")));
            }
            if v <= 4 {
                request = request.with_retention_time_ms(86_400_000);
            }
            encode(&request, v)
        }
        9 => {
            use offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
            let mut request = OffsetFetchRequest::default();
            if v <= 7 {
                let topics = vec![
                    OffsetFetchRequestTopic::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1, 2]),
                    OffsetFetchRequestTopic::default().with_name(topic("payments")),
                ];
                request = request.with_group_id(group("group-1")).with_topics((!(nulls && v >= 2)).then_some(topics));
            } else {
                let topics = vec![
                    OffsetFetchRequestTopics::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1]),
                    OffsetFetchRequestTopics::default().with_name(topic("payments")),
                ];
                request = request.with_groups(vec![
                    OffsetFetchRequestGroup::default().with_group_id(group("group-1")).with_topics((!nulls).then_some(topics)),
                    OffsetFetchRequestGroup::default().with_group_id(group("group-2")).with_topics(None),
                ]);
            }
            if v >= 7 {
                request = request.with_require_stable(true);
            }
            encode(&request, v)
        }
        10 => {
            let mut request = FindCoordinatorRequest::default();
            if v <= 3 {
                request = request.with_key(s("group-1"));
            }
            if v >= 1 {
                request = request.with_key_type(1);
            }
            if v >= 4 {
                request = request.with_coordinator_keys(vec![s("txn-1"), s("txn-2")]);
            }
            encode(&request, v)
        }
        11 => {
            use join_group_request::JoinGroupRequestProtocol;
            let mut request = JoinGroupRequest::default()
                .with_group_id(group("group-1"))
                .with_session_timeout_ms(45_000)
                .with_member_id(s(""))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(bytes(b"\0\x01\0\0\0\x01\0\x06orders")),
                    JoinGroupRequestProtocol::default().with_name(s("cooperative-sticky")).with_metadata(Bytes::new()),
                ]);
            if v >= 1 {
                request = request.with_rebalance_timeout_ms(300_000);
            }
            if v >= 5 && !nulls {
                request = request.with_group_instance_id(Some(s("instance-1")));
            }
            if v >= 8 && !nulls {
                request = request.with_reason(Some(s("rejoining")));
            }
            encode(&request, v)
        }
        12 => {
            let mut request = HeartbeatRequest::default().with_group_id(group("group-1")).with_generation_id(3).with_member_id(s("member-1"));
            if v >= 3 && !nulls {
                request = request.with_group_instance_id(Some(s("instance-1")));
            }
            encode(&request, v)
        }
        13 => {
            use leave_group_request::MemberIdentity;
            let mut request = LeaveGroupRequest::default().with_group_id(group("group-1"));
            if v <= 2 {
                request = request.with_member_id(s("member-1"));
            } else {
                let member = |id, reason| {
                    let member = MemberIdentity::default().with_member_id(s(id)).with_group_instance_id((!nulls).then(|| s("instance")));
                    if v >= 5 {
                        member.with_reason(reason)
                    } else {
                        member
                    }
                };
                request = request.with_members(vec![member("member-1", (!nulls).then(|| s("shutting down"))), member("member-2", None)]);
            }
            encode(&request, v)
        }
        14 => {
            use sync_group_request::SyncGroupRequestAssignment;
            let mut request =
                SyncGroupRequest::default().with_group_id(group("group-1")).with_generation_id(3).with_member_id(s("member-1")).with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s("member-1"))
                        .with_assignment(bytes(b"\0\x01\0\0\0\x01\0\x06orders\0\0\0\x01\0\0\0\0")),
                    SyncGroupRequestAssignment::default().with_member_id(s("member-2")).with_assignment(Bytes::new()),
                ]);
            if v >= 3 && !nulls {
                request = request.with_group_instance_id(Some(s("instance-1")));
            }
            if v >= 5 && !nulls {
                request = request.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
            }
            encode(&request, v)
        }
        15 => {
            let mut request = DescribeGroupsRequest::default().with_groups(vec![group("group-1"), group("group-2")]);
            if v >= 3 {
                request = request.with_include_authorized_operations(true);
            }
            encode(&request, v)
        }
        16 => {
            let mut request = ListGroupsRequest::default();
            if v >= 4 {
                request = request.with_states_filter(vec![s("Stable"), s("Empty")]);
            }
            if v >= 5 {
                request = request.with_types_filter(vec![s("classic"), s("consumer")]);
            }
            encode(&request, v)
        }
        17 => encode(&SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")), v),
        18 => {
            let mut request = ApiVersionsRequest::default();
            if v >= 3 {
                request = request.with_client_software_name(s("librdkafka")).with_client_software_version(s("2.0.2"));
            }
            encode(&request, v)
        }
        19 => {
            use create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
            let config = |name, value| CreatableTopicConfig::default().with_name(s(name)).with_value(value);
            let request = CreateTopicsRequest::default()
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(topic("orders"))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_assignments(vec![
                            CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                            CreatableReplicaAssignment::default().with_partition_index(1),
                        ])
                        .with_configs(vec![config("cleanup.policy", Some(s("compact"))), config("retention.ms", (!nulls).then(|| s("1000")))]),
                    CreatableTopic::default().with_name(topic("payments")).with_num_partitions(3).with_replication_factor(1),
                ])
                .with_timeout_ms(30_000)
                .with_validate_only(true);
            encode(&request, v)
        }
        20 => {
            use delete_topics_request::DeleteTopicState;
            let mut request = DeleteTopicsRequest::default().with_timeout_ms(30_000);
            if v >= 6 {
                request = request.with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic("orders"))),
                    DeleteTopicState::default().with_name((!nulls).then(|| topic("payments"))),
                ]);
            } else {
                request = request.with_topic_names(vec![topic("orders"), topic("payments")]);
            }
            encode(&request, v)
        }
        22 => {
            let mut request =
                InitProducerIdRequest::default().with_transactional_id((!nulls).then(|| TransactionalId(s("txn-1")))).with_transaction_timeout_ms(60_000);
            if v >= 3 {
                request = request.with_producer_id(ProducerId(1234)).with_producer_epoch(2);
            }
            encode(&request, v)
        }
        32 => {
            use describe_configs_request::DescribeConfigsResource;
            let keys = vec![s("retention.ms"), s("cleanup.policy")];
            let mut request = DescribeConfigsRequest::default()
                .with_resources(vec![
                    DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s("orders")).with_configuration_keys((!nulls).then_some(keys)),
                    DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("1")).with_configuration_keys(None),
                ])
                .with_include_synonyms(true);
            if v >= 3 {
                request = request.with_include_documentation(true);
            }
            encode(&request, v)
        }
        33 => {
            use alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let config = |name, value| AlterableConfig::default().with_name(s(name)).with_value(value);
            let request = AlterConfigsRequest::default()
                .with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("orders"))
                        .with_configs(vec![config("retention.ms", Some(s("1000"))), config("cleanup.policy", (!nulls).then(|| s("delete")))]),
                    AlterConfigsResource::default().with_resource_type(4).with_resource_name(s("1")),
                ])
                .with_validate_only(true);
            encode(&request, v)
        }
        36 => encode(&SaslAuthenticateRequest::default().with_auth_bytes(bytes(b"\0alice\0secret")), v),
        37 => {
            use create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
            let assignments = vec![
                CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(3)]),
            ];
            let request = CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default().with_name(topic("orders")).with_count(6).with_assignments((!nulls).then_some(assignments)),
                    CreatePartitionsTopic::default().with_name(topic("payments")).with_count(4).with_assignments(None),
                ])
                .with_timeout_ms(30_000)
                .with_validate_only(true);
            encode(&request, v)
        }
        42 => encode(&DeleteGroupsRequest::default().with_groups_names(vec![group("g-1"), group("g-2")]), v),
        44 => {
            use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
            let config = |name, operation, value| AlterableConfig::default().with_name(s(name)).with_config_operation(operation).with_value(value);
            let request = IncrementalAlterConfigsRequest::default()
                .with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("orders"))
                        .with_configs(vec![config("retention.ms", 0, Some(s("1000"))), config("cleanup.policy", 1, (!nulls).then(|| s("x")))]),
                    AlterConfigsResource::default().with_resource_type(4).with_resource_name(s("1")),
                ])
                .with_validate_only(false);
            encode(&request, v)
        }
        24 if v >= 4 => {
            use add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
            let transaction = |id: &'static str, verify_only| {
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s(id)))
                    .with_producer_id(ProducerId(77))
                    .with_producer_epoch(2)
                    .with_verify_only(verify_only)
                    .with_topics(vec![
                        AddPartitionsToTxnTopic::default().with_name(topic("orders")).with_partitions(vec![0, 1, 2]),
                        AddPartitionsToTxnTopic::default().with_name(topic("payments")),
                    ])
            };
            encode(&AddPartitionsToTxnRequest::default().with_transactions(vec![transaction("txn-1", true), transaction("txn-2", false)]), v)
        }
        24 => {
            use add_partitions_to_txn_request::AddPartitionsToTxnTopic;
            let request = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s("txn-1")))
                .with_v3_and_below_producer_id(ProducerId(77))
                .with_v3_and_below_producer_epoch(2)
                .with_v3_and_below_topics(vec![
                    AddPartitionsToTxnTopic::default().with_name(topic("orders")).with_partitions(vec![0, 1, 2]),
                    AddPartitionsToTxnTopic::default().with_name(topic("payments")),
                ]);
            encode(&request, v)
        }
        25 => encode(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("txn-1")))
                .with_producer_id(ProducerId(77))
                .with_producer_epoch(2)
                .with_group_id(group("group-1")),
            v,
        ),
        26 => encode(
            &EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s("txn-1")))
                .with_producer_id(ProducerId(77))
                .with_producer_epoch(2)
                .with_committed(true),
            v,
        ),
        28 => {
            use txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
            let partition = |index| {
                let mut p = TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(500)
                    .with_committed_metadata((!nulls).then(|| s("meta")));
                if v >= 2 {
                    p = p.with_committed_leader_epoch(4);
                }
                p
            };
            let mut request = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s("txn-1")))
                .with_group_id(group("group-1"))
                .with_producer_id(ProducerId(77))
                .with_producer_epoch(2)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_name(topic("orders")).with_partitions(vec![partition(0), partition(3)])]);
            if v >= 3 {
                request = request.with_generation_id(5).with_member_id(s("member-1")).with_group_instance_id((!nulls).then(|| s("instance-1")));
            }
            encode(&request, v)
        }
        29 => encode(
            &DescribeAclsRequest::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter((!nulls).then(|| s("orders")))
                .with_pattern_type_filter(3)
                .with_principal_filter((!nulls).then(|| s("User:alice")))
                .with_host_filter((!nulls).then(|| s("*")))
                .with_operation(3)
                .with_permission_type(3),
            v,
        ),
        30 => {
            use create_acls_request::AclCreation;
            let creation = |name| {
                AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(s(name))
                    .with_resource_pattern_type(4)
                    .with_principal(s("User:alice"))
                    .with_host(s("*"))
                    .with_operation(4)
                    .with_permission_type(3)
            };
            encode(&CreateAclsRequest::default().with_creations(vec![creation("orders"), creation("logs-")]), v)
        }
        31 => {
            use delete_acls_request::DeleteAclsFilter;
            let filter = DeleteAclsFilter::default()
                .with_resource_type_filter(1)
                .with_resource_name_filter((!nulls).then(|| s("orders")))
                .with_pattern_type_filter(2)
                .with_principal_filter((!nulls).then(|| s("User:alice")))
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1);
            encode(&DeleteAclsRequest::default().with_filters(vec![filter.clone(), filter]), v)
        }
        61 => {
            use describe_producers_request::TopicRequest;
            let request = DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1]),
                TopicRequest::default().with_name(topic("payments")),
            ]);
            encode(&request, v)
        }
        65 => encode(&DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("txn-1")), TransactionalId(s("txn-2"))]), v),
        66 => {
            let mut request =
                ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing")]).with_producer_id_filters(vec![ProducerId(77), ProducerId(78)]);
            if v >= 1 {
                request = request.with_duration_filter(60_000);
            }
            if v >= 2 {
                request = request.with_transactional_id_pattern((!nulls).then(|| s("txn-.*")));
            }
            encode(&request, v)
        }
        47 => {
            use offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
            let partition = |index| OffsetDeleteRequestPartition::default().with_partition_index(index);
            let request = OffsetDeleteRequest::default().with_group_id(group("group-1")).with_topics(vec![
                OffsetDeleteRequestTopic::default().with_name(topic("orders")).with_partitions(vec![partition(0), partition(1)]),
                OffsetDeleteRequestTopic::default().with_name(topic("payments")),
            ]);
            encode(&request, v)
        }
        50 => {
            use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
            let users = (!nulls).then(|| vec![UserName::default().with_name(s("alice")), UserName::default().with_name(s("bob"))]);
            encode(&kafka_protocol::messages::DescribeUserScramCredentialsRequest::default().with_users(users), v)
        }
        51 => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
            let request = kafka_protocol::messages::AlterUserScramCredentialsRequest::default()
                .with_deletions(vec![ScramCredentialDeletion::default().with_name(s("bob")).with_mechanism(2)])
                .with_upsertions(vec![ScramCredentialUpsertion::default()
                    .with_name(s("alice"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(bytes(b"salt"))
                    .with_salted_password(bytes(&[7u8; 32]))]);
            encode(&request, v)
        }
        55 => {
            use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
            let request = kafka_protocol::messages::DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(topic("__cluster_metadata"))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
            encode(&request, v)
        }
        80 => {
            use kafka_protocol::messages::add_raft_voter_request::Listener;
            let request = kafka_protocol::messages::AddRaftVoterRequest::default()
                .with_cluster_id((!nulls).then(|| s("MkU3OEVBNTcwNTJENDM2Qg")))
                .with_timeout_ms(30_000)
                .with_voter_id(4)
                .with_voter_directory_id(uuid::Uuid::from_u128(7))
                .with_listeners(vec![Listener::default().with_name(s("CONTROLLER")).with_host(s("127.0.0.1")).with_port(19093)]);
            encode(&request, v)
        }
        81 => {
            let request = kafka_protocol::messages::RemoveRaftVoterRequest::default()
                .with_cluster_id((!nulls).then(|| s("MkU3OEVBNTcwNTJENDM2Qg")))
                .with_voter_id(4)
                .with_voter_directory_id(uuid::Uuid::from_u128(7));
            encode(&request, v)
        }
        82 => {
            use kafka_protocol::messages::update_raft_voter_request::{KRaftVersionFeature, Listener};
            let request = kafka_protocol::messages::UpdateRaftVoterRequest::default()
                .with_cluster_id((!nulls).then(|| s("MkU3OEVBNTcwNTJENDM2Qg")))
                .with_current_leader_epoch(5)
                .with_voter_id(4)
                .with_voter_directory_id(uuid::Uuid::from_u128(7))
                .with_listeners(vec![Listener::default().with_name(s("CONTROLLER")).with_host(s("127.0.0.1")).with_port(19093)])
                .with_k_raft_version_feature(KRaftVersionFeature::default().with_min_supported_version(0).with_max_supported_version(1));
            encode(&request, v)
        }
        27 => {
            use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
            let marker = |commit| {
                WritableTxnMarker::default()
                    .with_producer_id(kafka_protocol::messages::ProducerId(7))
                    .with_producer_epoch(3)
                    .with_transaction_result(commit)
                    .with_topics(vec![
                        WritableTxnMarkerTopic::default().with_name(topic("orders")).with_partition_indexes(vec![0, 5]),
                        WritableTxnMarkerTopic::default().with_name(topic("__consumer_offsets")).with_partition_indexes(vec![2]),
                    ])
                    .with_coordinator_epoch(1)
            };
            encode(&kafka_protocol::messages::WriteTxnMarkersRequest::default().with_markers(vec![marker(true), marker(false)]), v)
        }
        60 => {
            let mut request = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
            if v >= 1 {
                request = request.with_endpoint_type(2);
            }
            encode(&request, v)
        }
        74 => {
            let types = if v >= 1 { vec![2, 4, 32] } else { Vec::new() };
            encode(&kafka_protocol::messages::ListConfigResourcesRequest::default().with_resource_types(types), v)
        }
        75 => {
            use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
            let topics = vec![TopicRequest::default().with_name(topic("orders")), TopicRequest::default().with_name(topic("payments"))];
            let cursor = (!nulls).then(|| Cursor::default().with_topic_name(topic("orders")).with_partition_index(3));
            encode(
                &kafka_protocol::messages::DescribeTopicPartitionsRequest::default().with_topics(topics).with_response_partition_limit(100).with_cursor(cursor),
                v,
            )
        }
        68 => {
            use consumer_group_heartbeat_request::TopicPartitions;
            let mut request = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group("group-1"))
                .with_member_id(s("member-1"))
                .with_member_epoch(3)
                .with_rebalance_timeout_ms(30_000);
            if !nulls {
                request = request
                    .with_instance_id(Some(s("instance-1")))
                    .with_rack_id(Some(s("rack-a")))
                    .with_subscribed_topic_names(Some(vec![topic("orders"), topic("payments")]))
                    .with_server_assignor(Some(s("uniform")))
                    .with_topic_partitions(Some(vec![
                        TopicPartitions::default().with_topic_id(uuid::Uuid::from_u128(7)).with_partitions(vec![0, 1]),
                        TopicPartitions::default().with_topic_id(uuid::Uuid::from_u128(9)),
                    ]));
                if v >= 1 {
                    request = request.with_subscribed_topic_regex(Some(s("orders.*")));
                }
            } else {
                request = request.with_subscribed_topic_names(None).with_topic_partitions(None);
            }
            encode(&request, v)
        }
        69 => {
            let request = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group("g1"), group("g2")]).with_include_authorized_operations(true);
            encode(&request, v)
        }
        21 => {
            use delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
            let partition = |index, offset| DeleteRecordsPartition::default().with_partition_index(index).with_offset(offset);
            let request = DeleteRecordsRequest::default()
                .with_topics(vec![
                    DeleteRecordsTopic::default().with_name(topic("orders")).with_partitions(vec![partition(0, 10), partition(1, -1)]),
                    DeleteRecordsTopic::default().with_name(topic("payments")),
                ])
                .with_timeout_ms(30_000);
            encode(&request, v)
        }
        23 => {
            use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
            let partition =
                |index, current, epoch| OffsetForLeaderPartition::default().with_partition(index).with_current_leader_epoch(current).with_leader_epoch(epoch);
            let request = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(if v >= 3 { 2 } else { -2 })).with_topics(vec![
                OffsetForLeaderTopic::default().with_topic(topic("orders")).with_partitions(vec![partition(0, 3, 2), partition(1, -1, 0)]),
                OffsetForLeaderTopic::default().with_topic(topic("payments")),
            ]);
            encode(&request, v)
        }
        35 => {
            use describe_log_dirs_request::DescribableLogDirTopic;
            let topics = vec![
                DescribableLogDirTopic::default().with_topic(topic("orders")).with_partitions(vec![0, 1]),
                DescribableLogDirTopic::default().with_topic(topic("payments")),
            ];
            encode(&DescribeLogDirsRequest::default().with_topics((!nulls).then_some(topics)), v)
        }
        48 => {
            use describe_client_quotas_request::ComponentData;
            let component = |t: &'static str, m: i8, name: Option<&'static str>| {
                ComponentData::default().with_entity_type(StrBytes::from_static_str(t)).with_match_type(m).with_match(name.map(StrBytes::from_static_str))
            };
            let components = if nulls { vec![component("user", 1, None)] } else { vec![component("user", 0, Some("alice")), component("client-id", 2, None)] };
            encode(&DescribeClientQuotasRequest::default().with_components(components).with_strict(true), v)
        }
        49 => {
            use alter_client_quotas_request::{EntityData, EntryData, OpData};
            let name = if nulls { None } else { Some(StrBytes::from_static_str("alice")) };
            let entity = vec![
                EntityData::default().with_entity_type(StrBytes::from_static_str("user")).with_entity_name(name),
                EntityData::default().with_entity_type(StrBytes::from_static_str("client-id")).with_entity_name(Some(StrBytes::from_static_str("app"))),
            ];
            let ops = vec![
                OpData::default().with_key(StrBytes::from_static_str("producer_byte_rate")).with_value(1024.0),
                OpData::default().with_key(StrBytes::from_static_str("consumer_byte_rate")).with_remove(true),
            ];
            encode(&AlterClientQuotasRequest::default().with_entries(vec![EntryData::default().with_entity(entity).with_ops(ops)]).with_validate_only(true), v)
        }
        64 => encode(&UnregisterBrokerRequest::default().with_broker_id(BrokerId(3)), v),
        57 => {
            use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
            let update = FeatureUpdateKey::default().with_feature(StrBytes::from_static_str("transaction.version")).with_max_version_level(2);
            let update = if v == 0 { update.with_allow_downgrade(false) } else { update.with_upgrade_type(1) };
            encode(
                &kafka_protocol::messages::UpdateFeaturesRequest::default()
                    .with_timeout_ms(60_000)
                    .with_feature_updates(vec![update])
                    .with_validate_only(v >= 1),
                v,
            )
        }
        43 => {
            use elect_leaders_request::TopicPartitions;
            let topics = vec![
                TopicPartitions::default().with_topic(topic("orders")).with_partitions(vec![0, 2]),
                TopicPartitions::default().with_topic(topic("payments")),
            ];
            encode(
                &ElectLeadersRequest::default().with_election_type(i8::from(v >= 1)).with_topic_partitions((!nulls).then_some(topics)).with_timeout_ms(30_000),
                v,
            )
        }
        45 => {
            use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
            let partitions = vec![
                ReassignablePartition::default().with_partition_index(0).with_replicas(Some(vec![BrokerId(4), BrokerId(2)])),
                ReassignablePartition::default().with_partition_index(1).with_replicas((!nulls).then(|| vec![BrokerId(3)])),
            ];
            let topics = vec![ReassignableTopic::default().with_name(topic("orders")).with_partitions(partitions)];
            encode(&AlterPartitionReassignmentsRequest::default().with_allow_replication_factor_change(v == 0 || nulls).with_topics(topics), v)
        }
        46 => {
            use list_partition_reassignments_request::ListPartitionReassignmentsTopics;
            let topics = vec![ListPartitionReassignmentsTopics::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1])];
            encode(&ListPartitionReassignmentsRequest::default().with_topics((!nulls).then_some(topics)), v)
        }
        _ => panic!("no sample for api key {api_key}"),
    }
}

/// Every sample for every declared version: (api key, version, body).
fn all_samples() -> Vec<(i16, i16, Vec<u8>)> {
    let mut samples = Vec::new();
    for (api_key, version) in declared_versions() {
        let plain = sample(api_key, version, false);
        let with_nulls = sample(api_key, version, true);
        if with_nulls != plain {
            samples.push((api_key, version, with_nulls));
        }
        samples.push((api_key, version, plain));
    }
    samples
}

// ---------------------------------------------------------------------------------------------
// 1. Real encodings
// ---------------------------------------------------------------------------------------------

#[test]
fn declared_versions_are_exactly_the_schemas() {
    for &(api_key, low, high) in DECLARED {
        for version in low - 1..=high + 1 {
            let declared = (low..=high).contains(&version);
            assert_eq!(has_schema(api_key, version), declared, "api {api_key} v{version}");
        }
    }
    for api_key in -1..=100 {
        if DECLARED.iter().all(|&(key, _, _)| key != api_key) {
            assert!(!has_schema(api_key, 0), "api {api_key}");
            assert_eq!(validate_request_body(api_key, 0, &[]), Err(ValidationError::UnknownApi(api_key)));
        }
    }
    assert_eq!(validate_request_body(1, 13, &[]), Err(ValidationError::UnknownVersion { api_key: 1, version: 13 }));
}

#[test]
fn encoded_requests_validate_and_decode_completely() {
    let samples = all_samples();
    for (api_key, version, body) in &samples {
        let (api_key, version) = (*api_key, *version);
        assert_eq!(validate_request_body(api_key, version, body), Ok(()), "api {api_key} v{version} body {body:02x?}");
        // The decoder reads every byte: the validator's schema cannot have hidden a field in
        // the trailing bytes it tolerates (the prefix test below would catch the opposite).
        assert_eq!(decode_body(api_key, version, body), Ok(0), "api {api_key} v{version}");
        // Trailing bytes are tolerated.
        let mut padded = body.clone();
        padded.extend_from_slice(&[0xff, 0x00, 0x7f]);
        assert_eq!(validate_request_body(api_key, version, &padded), Ok(()));
    }
    assert!(samples.len() >= 2 * DECLARED.len(), "{} samples", samples.len());
}

#[test]
fn every_strict_prefix_is_rejected() {
    // The decoder reads `body` to its last byte (checked above) and is deterministic, so it reads
    // a strict prefix the same way and runs out of bytes: no strict prefix is a complete body.
    // The validator must agree, and say the body is short (not that a value is invalid).
    let mut prefixes = 0;
    for (api_key, version, body) in all_samples() {
        for length in 0..body.len() {
            let prefix = &body[..length];
            let result = validate_request_body(api_key, version, prefix);
            assert!(
                matches!(result, Err(ValidationError::Truncated { .. } | ValidationError::CountTooLarge { .. })),
                "api {api_key} v{version}: prefix of {length}/{} bytes gave {result:?}",
                body.len()
            );
            assert!(decode_body(api_key, version, prefix).is_err());
            prefixes += 1;
        }
    }
    assert!(prefixes > 10_000, "{prefixes} prefixes");
}

// ---------------------------------------------------------------------------------------------
// 2. Hostile bodies
// ---------------------------------------------------------------------------------------------

fn too_large(result: Result<(), ValidationError>) -> (usize, &'static str, i64, usize) {
    match result {
        Err(ValidationError::CountTooLarge { offset, field, value, remaining }) => (offset, field, value, remaining),
        other => panic!("expected CountTooLarge, got {other:?}"),
    }
}

fn invalid(result: Result<(), ValidationError>) -> (usize, &'static str, i64) {
    match result {
        Err(ValidationError::Invalid { offset, field, value }) => (offset, field, value),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn huge_array_count_is_rejected() {
    // Metadata v1: topics count 0x7fffffff and nothing after it.
    assert_eq!(too_large(validate_request_body(3, 1, &[0x7f, 0xff, 0xff, 0xff])), (0, "MetadataRequest.Topics", 0x7fff_ffff, 0));
    // Produce v3: null transactional id, acks, timeout, then 2^31-1 topics in 8 bytes.
    let mut body = vec![0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x75, 0x30];
    body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    body.extend_from_slice(&[0; 8]);
    assert_eq!(too_large(validate_request_body(0, 3, &body)), (8, "ProduceRequest.TopicData", 0x7fff_ffff, 8));
    // CreateTopics v2: 10 topics, each at least 16 bytes, in 20 bytes.
    let mut body = vec![0, 0, 0, 10];
    body.extend_from_slice(&[0; 20]);
    assert_eq!(too_large(validate_request_body(19, 2, &body)), (0, "CreateTopicsRequest.Topics", 10, 20));
    // Fetch v4: a partition count that would fit if partitions were one byte each.
    let mut body = Vec::new();
    body.extend_from_slice(&[0xff; 4]); // replica id
    body.extend_from_slice(&[0; 12]); // max wait, min bytes, max bytes
    body.push(0); // isolation level
    body.extend_from_slice(&[0, 0, 0, 1]); // one topic
    body.extend_from_slice(&[0, 1, b't']); // topic name
    body.extend_from_slice(&[0, 0, 0, 40]); // 40 partitions of 16 bytes
    body.extend_from_slice(&[0; 100]);
    assert_eq!(too_large(validate_request_body(1, 4, &body)), (24, "FetchTopic.Partitions", 40, 100));
}

#[test]
fn huge_compact_count_is_rejected() {
    // Metadata v9: compact array length u32::MAX, so u32::MAX - 1 topics.
    assert_eq!(too_large(validate_request_body(3, 9, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0])), (0, "MetadataRequest.Topics", 0xffff_fffe, 3));
    // DeleteGroups v2: 2^28 group names in three bytes.
    assert_eq!(too_large(validate_request_body(42, 2, &[0x80, 0x80, 0x80, 0x01, 1, 1, 0])), (0, "DeleteGroupsRequest.GroupsNames", (1 << 21) - 1, 3));
    // ApiVersions v3: compact string length beyond the body.
    assert_eq!(too_large(validate_request_body(18, 3, &[0xff, 0xff, 0xff, 0xff, 0x0f, b'x'])), (0, "ApiVersionsRequest.ClientSoftwareName", 0xffff_fffe, 1));
}

#[test]
fn string_and_bytes_lengths_beyond_the_body_are_rejected() {
    // SaslHandshake: a 16-byte mechanism name with one byte present.
    assert_eq!(too_large(validate_request_body(17, 1, &[0x00, 0x10, b'P'])), (0, "SaslHandshakeRequest.Mechanism", 16, 1));
    // SaslAuthenticate v0: 1 GiB of auth bytes.
    assert_eq!(too_large(validate_request_body(36, 0, &[0x40, 0, 0, 0, 1, 2, 3])), (0, "SaslAuthenticateRequest.AuthBytes", 1 << 30, 3));
    // Produce v9: compact records length beyond the body.
    let body = [
        0x00, // null transactional id
        0x00, 0x01, 0x00, 0x00, 0x75, 0x30, // acks, timeout
        0x02, // one topic
        0x02, b't', // name
        0x02, // one partition
        0x00, 0x00, 0x00, 0x00, // index
        0xe8, 0x07, // records: 999 bytes
        0x00, 0x00, 0x00,
    ];
    assert_eq!(too_large(validate_request_body(0, 9, &body)), (15, "PartitionProduceData.Records", 999, 3));
}

#[test]
fn negative_and_null_lengths_are_checked_against_nullability() {
    // A string length below -1.
    assert_eq!(invalid(validate_request_body(17, 0, &[0xff, 0xfe])), (0, "SaslHandshakeRequest.Mechanism", -2));
    // Null where the field is not nullable.
    assert_eq!(invalid(validate_request_body(17, 0, &[0xff, 0xff])), (0, "SaslHandshakeRequest.Mechanism", -1));
    assert_eq!(invalid(validate_request_body(18, 3, &[0x00, 0x01, 0x00])), (0, "ApiVersionsRequest.ClientSoftwareName", -1));
    assert_eq!(invalid(validate_request_body(36, 1, &[0xff, 0xff, 0xff, 0xff])), (0, "SaslAuthenticateRequest.AuthBytes", -1));
    // Metadata topics: nullable from v1 only; never below -1.
    assert_eq!(invalid(validate_request_body(3, 0, &[0xff, 0xff, 0xff, 0xff])), (0, "MetadataRequest.Topics", -1));
    assert_eq!(validate_request_body(3, 1, &[0xff, 0xff, 0xff, 0xff]), Ok(()));
    assert_eq!(invalid(validate_request_body(3, 1, &[0xff, 0xff, 0xff, 0xfe])), (0, "MetadataRequest.Topics", -2));
    assert_eq!(invalid(validate_request_body(3, 1, &[0x80, 0, 0, 0])), (0, "MetadataRequest.Topics", i64::from(i32::MIN)));
    // Produce v3 records: null is fine, -7 is not.
    let records = |length: [u8; 4]| {
        let mut body = vec![0xff, 0xff, 0x00, 0x01, 0x00, 0x00, 0x75, 0x30];
        body.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 0]);
        body.extend_from_slice(&length);
        body
    };
    assert_eq!(validate_request_body(0, 3, &records([0xff; 4])), Ok(()));
    assert_eq!(invalid(validate_request_body(0, 3, &records([0xff, 0xff, 0xff, 0xf9]))), (23, "PartitionProduceData.Records", -7));
}

#[test]
fn overlong_varint_is_rejected() {
    // Five bytes, all with the continuation bit: the decoder would stop there, Java rejects it.
    assert_eq!(invalid(validate_request_body(3, 9, &[0x81, 0x80, 0x80, 0x80, 0x80, 0x00])), (0, "MetadataRequest.Topics", 1));
}

/// A Fetch v12 body with no topics, up to (not including) its tagged-field section.
fn fetch_v12_without_tagged_fields() -> Vec<u8> {
    let mut body = encode(&FetchRequest::default(), 12);
    assert_eq!(body.pop(), Some(0), "tagged-field count");
    body
}

#[test]
fn tagged_fields_are_bounded_and_known_ones_checked() {
    let base = fetch_v12_without_tagged_fields();
    let start = base.len();
    let with_tagged = |section: &[u8]| {
        let mut body = base.clone();
        body.extend_from_slice(section);
        body
    };
    // Unknown tags are skipped by their size.
    assert_eq!(validate_request_body(1, 12, &with_tagged(&[2, 9, 2, 0xaa, 0xbb, 40, 0])), Ok(()));
    // A huge tagged-field count.
    assert_eq!(too_large(validate_request_body(1, 12, &with_tagged(&[0xff, 0xff, 0xff, 0xff, 0x0f]))), (start, "tagged fields", 0xffff_ffff, 0));
    // An unknown tag whose size is beyond the body.
    assert_eq!(too_large(validate_request_body(1, 12, &with_tagged(&[1, 9, 0x7f, 1, 2]))), (start + 2, "tagged field size", 0x7f, 2));
    // Cluster id (tag 0): a compact string that fills exactly its size is fine...
    assert_eq!(validate_request_body(1, 12, &with_tagged(&[1, 0, 3, 3, b'i', b'd'])), Ok(()));
    assert_eq!(validate_request_body(1, 12, &with_tagged(&[1, 0, 1, 0])), Ok(()));
    // ...one that disagrees with its size is not: the decoder ignores the size.
    assert_eq!(invalid(validate_request_body(1, 12, &with_tagged(&[1, 0, 4, 3, b'i', b'd', 0]))), (start + 2, "FetchRequest.ClusterId", 4));
    assert!(matches!(validate_request_body(1, 12, &with_tagged(&[1, 0, 2, 3, b'i', b'd'])), Err(ValidationError::CountTooLarge { .. })));
    // Replica state (tag 1) exists from v15 only; the decoder rejects it in v12.
    assert_eq!(invalid(validate_request_body(1, 12, &with_tagged(&[1, 1, 0]))), (start + 1, "FetchRequest.ReplicaState", 1));
}

#[test]
fn unknown_tagged_fields_in_nested_structs_are_skipped() {
    let request = sample(1, 12, false);
    assert_eq!(validate_request_body(1, 12, &request), Ok(()));
    // The sample's partitions carry tag 9 with two bytes; grow the last one's size past the
    // bytes that follow it.
    let needle = [1, 9, 2, 1, 2];
    let at = request.windows(needle.len()).rposition(|w| w == needle).expect("tag 9 in sample");
    assert!(request.len() - at < 0x7f);
    let mut broken = request.clone();
    broken[at + 2] = 0x7f;
    assert!(matches!(validate_request_body(1, 12, &broken), Err(ValidationError::CountTooLarge { field: "tagged field size", .. })));
}

// ---------------------------------------------------------------------------------------------
// 3. Random mutations
// ---------------------------------------------------------------------------------------------

/// splitmix64: deterministic, no dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

const INTERESTING_BYTES: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x0f, 0x02];
const INTERESTING_WORDS: [[u8; 4]; 6] = [
    [0x7f, 0xff, 0xff, 0xff],
    [0x80, 0x00, 0x00, 0x00],
    [0xff, 0xff, 0xff, 0xff],
    [0xff, 0xff, 0xff, 0xfe],
    [0x00, 0x01, 0x00, 0x00],
    [0xff, 0xff, 0xff, 0x0f],
];

fn mutate(random: &mut Random, body: &mut Vec<u8>) {
    let position = random.below(body.len() + 1);
    let index = position.min(body.len().saturating_sub(1));
    match random.below(9) {
        0 if !body.is_empty() => body[index] ^= 1 << random.below(8),
        1 if !body.is_empty() => body[index] = random.next() as u8,
        2 if !body.is_empty() => {
            body[index] = INTERESTING_BYTES[random.below(8)];
        }
        3 => {
            let word = INTERESTING_WORDS[random.below(INTERESTING_WORDS.len())];
            for (offset, byte) in word.into_iter().enumerate() {
                if let Some(slot) = body.get_mut(position + offset) {
                    *slot = byte;
                }
            }
        }
        4 => body.truncate(position),
        5 => {
            for _ in 0..=random.below(4) {
                body.insert(position, random.next() as u8);
            }
        }
        6 => {
            let end = (position + 1 + random.below(8)).min(body.len());
            body.drain(position.min(end)..end);
        }
        7 => {
            let end = (position + 1 + random.below(16)).min(body.len());
            let copy = body[position.min(end)..end].to_vec();
            let at = random.below(body.len() + 1);
            body.splice(at..at, copy);
        }
        _ => {
            // A long varint.
            let at = position.min(body.len());
            body.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
        }
    }
}

#[test]
fn mutated_requests_that_validate_decode_without_panic_or_huge_allocation() {
    const ITERATIONS_PER_SAMPLE: usize = 1_500;
    let mut random = Random(0x5ead_1095_0bad_cafe);
    let (mut accepted, mut decoded, mut total) = (0usize, 0usize, 0usize);
    for (api_key, version, original) in all_samples() {
        for _ in 0..ITERATIONS_PER_SAMPLE {
            let mut body = original.clone();
            for _ in 0..=random.below(3) {
                mutate(&mut random, &mut body);
            }
            total += 1;
            if validate_request_body(api_key, version, &body).is_err() {
                continue;
            }
            accepted += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| decode_measured(api_key, version, &body)));
            let Ok((result, largest_allocation)) = outcome else {
                panic!("api {api_key} v{version}: decoder panicked on {body:02x?}");
            };
            decoded += usize::from(result.is_ok());
            let limit = ALLOCATION_BYTES_PER_BODY_BYTE * body.len() + ALLOCATION_BYTES_SLACK;
            assert!(largest_allocation <= limit, "api {api_key} v{version}: decoding {} bytes allocated {largest_allocation} at once: {body:02x?}", body.len());
        }
    }
    eprintln!("{total} mutations, {accepted} validated, {decoded} decoded");
    // The test means something only if many mutations get through to the decoder.
    assert!(accepted > total / 20, "only {accepted} of {total} validated");
    assert!(decoded > accepted / 4, "only {decoded} of {accepted} decoded");
}

#[test]
fn allocation_tracking_sees_what_the_decoder_would_allocate() {
    // Guard for the guard: a hostile count that the decoder trusts shows up in the tracker.
    // Metadata v1 with 100,000 topics in 4 + 2 bytes: the decoder reserves 100,000 slots first.
    let body = [0x00, 0x01, 0x86, 0xa0, 0x00, 0x01];
    assert!(validate_request_body(3, 1, &body).is_err());
    let (result, largest_allocation) = decode_measured(3, 1, &body);
    assert!(result.is_err());
    assert!(largest_allocation >= 100_000, "{largest_allocation}");
}

#[test]
fn nullable_struct_presence_byte_is_checked() {
    // DescribeTopicPartitions v0: an empty compact topic array, the partition limit, the
    // cursor's presence byte, then the body's empty tagged fields.
    let body = |presence: u8| {
        let mut b = vec![1u8];
        b.extend_from_slice(&100i32.to_be_bytes());
        b.push(presence);
        b.push(0);
        b
    };
    assert_eq!(validate_request_body(75, 0, &body(0xff)), Ok(()));
    assert_eq!(decode_body(75, 0, &body(0xff)), Ok(0));
    // Java reads 0x80 as null and 2 as present, kafka-protocol reads both as null.
    for presence in [0u8, 2, 0x80] {
        let result = validate_request_body(75, 0, &body(presence));
        assert!(matches!(result, Err(ValidationError::Invalid { field: "DescribeTopicPartitionsRequest.Cursor", .. })), "presence {presence}: {result:?}");
    }
}
