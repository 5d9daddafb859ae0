"""ApiVersions advertises exactly what shardlog serves, and every advertised version of the
core APIs is served.

The second test sends each advertised (core API, version) a real request, encoded by kafka-python's
schema-driven protocol classes (generated from Kafka's own JSON message definitions), and
checks that the response decodes at that version, re-encodes to the very same bytes (nothing
missing, nothing extra), and reports success.
"""

from __future__ import annotations

import struct

import clients
import kafkawire as kw

# The core APIs, from the oldest versions Kafka 4 still accepts (KIP-896 removed CreateTopics
# v0-1 and DeleteTopics v0) to the newest ones implemented. Every version of these is exercised
# by test_every_advertised_version_is_served.
CORE_APIS = {
    kw.PRODUCE: (3, 12),  # 12: transactions v2 (test_transactions_v2.py)
    kw.FETCH: (4, 12),
    kw.LIST_OFFSETS: (1, 10),
    kw.METADATA: (0, 12),
    kw.API_VERSIONS: (0, 4),
    kw.CREATE_TOPICS: (2, 7),
    kw.DELETE_TOPICS: (1, 6),
    kw.CREATE_PARTITIONS: (0, 3),
    kw.DESCRIBE_CLUSTER: (0, 1),
}

# Consumer groups (classic protocol) and committed offsets.
GROUP_APIS = {
    8: (2, 8),  # OffsetCommit
    9: (1, 8),  # OffsetFetch
    10: (0, 4),  # FindCoordinator
    11: (0, 9),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 5),  # ListGroups
    42: (0, 2),  # DeleteGroups
    47: (0, 0),  # OffsetDelete
    68: (0, 1),  # ConsumerGroupHeartbeat (KIP-848)
    69: (0, 1),  # ConsumerGroupDescribe (KIP-848)
}

PRODUCER_APIS = {
    22: (0, 5),  # InitProducerId (idempotent and transactional producers; v5: TRANSACTION_ABORTABLE known)
    24: (0, 5),  # AddPartitionsToTxn (4+ is the broker-to-broker form: test_cluster_transactions.py)
    25: (0, 4),  # AddOffsetsToTxn
    26: (0, 5),  # EndTxn (5: transactions v2, test_transactions_v2.py)
    28: (0, 5),  # TxnOffsetCommit (5: transactions v2)
    61: (0, 0),  # DescribeProducers
    65: (0, 0),  # DescribeTransactions
    66: (0, 2),  # ListTransactions
}

SECURITY_APIS = {
    29: (1, 3),  # DescribeAcls
    30: (1, 3),  # CreateAcls
    31: (1, 3),  # DeleteAcls
    17: (0, 1),  # SaslHandshake
    36: (0, 2),  # SaslAuthenticate (v1+: session lifetime, KIP-368)
    50: (0, 0),  # DescribeUserScramCredentials
    51: (0, 0),  # AlterUserScramCredentials
}

CONFIG_APIS = {
    32: (1, 4),  # DescribeConfigs
    33: (0, 2),  # AlterConfigs
    44: (0, 1),  # IncrementalAlterConfigs
    74: (0, 1),  # ListConfigResources (KIP-1142; every version in test_group_configs.py)
    21: (0, 2),  # DeleteRecords
    35: (1, 4),  # DescribeLogDirs
    48: (0, 1),  # DescribeClientQuotas
    49: (0, 1),  # AlterClientQuotas
}

CLUSTER_APIS = {
    55: (0, 2),  # DescribeQuorum (served and checked in test_cluster_quorum.py)
    27: (1, 1),  # WriteTxnMarkers, broker to broker (v0 left Kafka 4.0; test_cluster_transactions.py)
    75: (0, 0),  # DescribeTopicPartitions (test_describe_topic_partitions.py)
    23: (2, 4),  # OffsetForLeaderEpoch (v0-1 left Kafka 4.0; every version in test_leader_epochs.py)
    64: (0, 0),  # UnregisterBroker (test_cluster_broker_admin.py)
    57: (0, 2),  # UpdateFeatures (test_features.py)
    43: (0, 2),  # ElectLeaders (test_cluster_broker_admin.py)
    45: (0, 1),  # AlterPartitionReassignments (test_replication_reassignment.py)
    46: (0, 0),  # ListPartitionReassignments (test_replication_reassignment.py)
    80: (0, 0),  # AddRaftVoter (KIP-853; test_cluster_dynamic_quorum.py)
    81: (0, 0),  # RemoveRaftVoter (KIP-853; test_cluster_dynamic_quorum.py)
    82: (0, 0),  # UpdateRaftVoter (KIP-853; test_cluster_dynamic_quorum.py)
}

# Everything shardlog advertises.
EXPECTED_APIS = {**CORE_APIS, **GROUP_APIS, **PRODUCER_APIS, **SECURITY_APIS, **CONFIG_APIS, **CLUSTER_APIS}


def test_api_versions_advertises_exactly_the_served_set(broker):
    """Every ApiVersions version returns the same list, and it is exactly EXPECTED_APIS. When an
    API lands, add it here (and exercise its versions in the test below)."""
    with kw.Connection(broker.port) as conn:
        for version in range(0, 5):
            response = conn.api_versions(version)
            assert response.error_code == kw.NONE, f"ApiVersions v{version}"
            extra = {k: v for k, v in response.apis.items() if k not in EXPECTED_APIS}
            missing = {k: v for k, v in EXPECTED_APIS.items() if k not in response.apis}
            changed = {k: (EXPECTED_APIS[k], v) for k, v in response.apis.items() if k in EXPECTED_APIS and v != EXPECTED_APIS[k]}
            assert not (extra or missing or changed), (
                f"ApiVersions v{version} differs from EXPECTED_APIS: advertised but not expected {extra}, "
                f"expected but not advertised {missing}, version ranges (expected, advertised) {changed}"
            )


class Client:
    """Sends kafka-python protocol objects over a raw connection."""

    def __init__(self, port: int):
        self.conn = kw.Connection(port)

    def call(self, request_class, response_class, version: int, **fields):
        request = request_class[version](**fields)
        cid = self.conn.correlation_id()
        request.with_header(correlation_id=cid, client_id="e2e-versions")
        self.conn.send(bytes(request.encode(version=version, header=True, framed=True)))
        try:
            got, body = self.conn.recv_frame()
        except kw.Closed:
            raise AssertionError(f"{request_class.__name__} v{version} is advertised, but the broker closed the connection") from None
        assert got == cid
        raw = struct.pack(">i", cid) + body
        response = response_class.decode(raw, version=version, header=True)
        assert bytes(response.encode(header=True)) == raw, f"{response_class.__name__} v{version} does not match Kafka's schema for that version: {response}"
        return response

    def close(self):
        self.conn.close()


def test_every_advertised_version_is_served(broker):
    from kafka.protocol.admin import (
        CreatePartitionsRequest,
        CreatePartitionsResponse,
        CreateTopicsRequest,
        CreateTopicsResponse,
        DeleteTopicsRequest,
        DeleteTopicsResponse,
        DescribeClusterRequest,
        DescribeClusterResponse,
    )
    from kafka.protocol.consumer import FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse
    from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse
    from kafka.protocol.producer import ProduceRequest, ProduceResponse

    c = Client(broker.port)
    try:
        advertised = c.conn.api_versions(3).apis
        # The exact list is test_api_versions_advertises_exactly_the_served_set's job; here every
        # version of the core APIs is exercised.
        assert {k: advertised.get(k) for k in CORE_APIS} == CORE_APIS
        versions = lambda key: range(advertised[key][0], advertised[key][1] + 1)  # noqa: E731

        for v in versions(kw.API_VERSIONS):
            extra = {"client_software_name": "e2e", "client_software_version": "1.0"} if v >= 3 else {}
            r = c.call(ApiVersionsRequest, ApiVersionsResponse, v, **extra)
            assert r.error_code == 0
            assert {a.api_key: (a.min_version, a.max_version) for a in r.api_keys} == advertised

        # CreateTopics: one topic per version.
        created = []
        for v in versions(kw.CREATE_TOPICS):
            R = CreateTopicsRequest[v]
            name = f"versions-create-v{v}"
            topic = R.CreatableTopic(name=name, num_partitions=1, replication_factor=1, assignments=[], configs=[])
            r = c.call(CreateTopicsRequest, CreateTopicsResponse, v, topics=[topic], timeout_ms=30_000, validate_only=False)
            assert [(t.name, t.error_code) for t in r.topics] == [(name, 0)], r
            created.append(name)

        for v in versions(kw.METADATA):
            R = MetadataRequest[v]
            r = c.call(MetadataRequest, MetadataResponse, v, topics=[R.MetadataRequestTopic(name=created[0])], allow_auto_topic_creation=False)
            assert [(b.node_id, b.port) for b in r.brokers] == [(1, broker.port)]
            assert [(t.name, t.error_code, len(t.partitions)) for t in r.topics] == [(created[0], 0, 1)], r

        # CreatePartitions: the first topic grows by one partition per version.
        partitions = 1
        for v in versions(kw.CREATE_PARTITIONS):
            R = CreatePartitionsRequest[v]
            partitions += 1
            r = c.call(CreatePartitionsRequest, CreatePartitionsResponse, v, topics=[R.CreatePartitionsTopic(name=created[0], count=partitions, assignments=None)], timeout_ms=30_000, validate_only=False)
            assert [(t.name, t.error_code) for t in r.results] == [(created[0], 0)], r

        # Produce: one batch per version, at consecutive offsets.
        topic = created[0]
        produced = []
        for v in versions(kw.PRODUCE):
            R = ProduceRequest[v]
            value = f"produced with v{v}".encode()
            data = R.TopicProduceData(name=topic, partition_data=[R.TopicProduceData.PartitionProduceData(index=0, records=kw.record_batch([(b"k", value)]))])
            r = c.call(ProduceRequest, ProduceResponse, v, transactional_id=None, acks=-1, timeout_ms=30_000, topic_data=[data])
            [pr] = [p for t in r.responses for p in t.partition_responses]
            assert (pr.error_code, pr.base_offset) == (0, len(produced)), r
            produced.append(value)

        for v in versions(kw.FETCH):
            R = FetchRequest[v]
            part = R.FetchTopic.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20, current_leader_epoch=-1, log_start_offset=-1, last_fetched_epoch=-1)
            r = c.call(FetchRequest, FetchResponse, v, replica_id=-1, max_wait_ms=0, min_bytes=1, max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1, topics=[R.FetchTopic(topic=topic, partitions=[part])], forgotten_topics_data=[], rack_id="")
            [pd] = [p for t in r.responses for p in t.partitions]
            assert (pd.error_code, pd.high_watermark) == (0, len(produced)), r
            values = [val for _, _, _, val in kw.decode_uncompressed_records(bytes(pd.records))]
            assert values == produced

        for v in versions(kw.LIST_OFFSETS):
            R = ListOffsetsRequest[v]
            parts = [R.ListOffsetsTopic.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1)]
            r = c.call(ListOffsetsRequest, ListOffsetsResponse, v, replica_id=-1, isolation_level=0, topics=[R.ListOffsetsTopic(name=topic, partitions=parts)])
            [pr] = [p for t in r.topics for p in t.partitions]
            assert (pr.error_code, pr.offset) == (0, len(produced)), r

        for v in versions(kw.DESCRIBE_CLUSTER):
            r = c.call(DescribeClusterRequest, DescribeClusterResponse, v, include_cluster_authorized_operations=False, endpoint_type=1)
            assert r.error_code == 0
            assert [(b.broker_id, b.port) for b in r.brokers] == [(1, broker.port)]

        # DeleteTopics: one topic per version (v6 names topics in a struct, older ones by name).
        for v, name in zip(versions(kw.DELETE_TOPICS), created):
            R = DeleteTopicsRequest[v]
            fields = {"topics": [R.DeleteTopicState(name=name, topic_id=None)]} if v >= 6 else {"topic_names": [name]}
            r = c.call(DeleteTopicsRequest, DeleteTopicsResponse, v, timeout_ms=30_000, **fields)
            assert [(t.name, t.error_code) for t in r.responses] == [(name, 0)], r
    finally:
        c.close()


def test_pipelined_requests_are_answered_in_order(broker):
    """Clients pipeline requests. 300 mixed requests sent without waiting get their answers in
    request order; acks=0 produces get none, and the ones after them still match up."""
    topic = "pipelined"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kw.Connection(broker.port) as conn:
        expected = []  # (correlation id, kind, detail)
        payload = bytearray()
        produced = 0
        for i in range(300):
            cid = conn.correlation_id()
            kind = ("api_versions", "produce", "produce_acks0", "metadata", "list_offsets")[i % 5]
            if kind == "api_versions":
                payload += kw.api_versions_request(3, cid)
            elif kind == "metadata":
                payload += kw.metadata_v1_request(cid, [topic])
            elif kind == "list_offsets":
                payload += kw.list_offsets_v1_request(cid, topic, 0, -2)
            else:
                acks = 0 if kind == "produce_acks0" else 1
                payload += kw.produce_v3_request(cid, topic, 0, kw.record_batch([(None, b"%d" % i)]), acks=acks)
                produced += 1
            if kind != "produce_acks0":
                expected.append((cid, kind))
        conn.send(bytes(payload))
        last_base = -1
        for cid, kind in expected:
            got, body = conn.recv_frame()
            assert got == cid, f"response {got} arrived where {cid} ({kind}) was due"
            if kind == "produce":
                [(_, _, error, base)] = kw.parse_produce_v3(body)
                assert error == kw.NONE and base > last_base, f"produce {cid}: error {error}, base offset {base} after {last_base}"
                last_base = base
            elif kind == "api_versions":
                assert kw.parse_api_versions(body, 3).error_code == kw.NONE
        assert not conn.readable_within(0.5), "a response nobody asked for (acks=0 produce answered?)"
        [(_, _, error, _, end)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, 0, -1))
        assert (error, end) == (kw.NONE, produced)
