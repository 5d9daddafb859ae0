"""Transactions across a cluster: three real shardlog nodes, each leading some partitions.

The transaction coordinator of a transactional id lives on the broker that leads its
`__transaction_state` partition; the partitions of a transaction, and the `__consumer_offsets`
partition of the group whose offsets it commits, are led by any broker. The coordinator writes
the markers of the partitions it leads itself and sends the others to their leaders in
WriteTxnMarkers requests (Kafka's inter-broker API, key 27). Without them a read_committed
consumer of a partition led elsewhere would stall at the transaction's start forever. The
leader of a partition verifies a producer's first transactional batch with the producer's
coordinator (KIP-890), on another broker in AddPartitionsToTxn v4 with verifyOnly.
"""

from __future__ import annotations

import confluent_kafka
from confluent_kafka.admin import AdminClient

import kafkawire as kw
from cluster import KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, NOT_LEADER_OR_FOLLOWER, create_topic, find_coordinator, leader_of, start_cluster, wait_brokers, wait_converged
from test_transactions import consume_all, describe_transactions, txn_producer

ADD_PARTITIONS_TO_TXN = 24
WRITE_TXN_MARKERS = 27
INVALID_TXN_STATE = 48
UNKNOWN_TOPIC_OR_PARTITION = 3
CLUSTER_AUTHORIZATION_FAILED = 31
PARTITIONS = 6


def java_hash(s: str) -> int:
    h = 0
    for c in s:  # the keys here are ASCII: one UTF-16 unit per character, as Java hashes them
        h = (31 * h + ord(c)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_partition(key: str, partitions: int) -> int:
    """Kafka's mapping of a group id or transactional id to its internal-topic partition."""
    h = java_hash(key)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return {p: md.topics[topic].partitions[p].leader for p in md.topics[topic].partitions}


def write_txn_markers_request(correlation_id: int, producer_id: int, epoch: int, commit: bool, partitions: dict[str, list[int]]) -> bytes:
    topics = [kw.compact_string(t) + kw.uvarint(len(ps) + 1) + b"".join(kw.i32(p) for p in ps) + kw.TAGGED_FIELDS_EMPTY for t, ps in partitions.items()]
    marker = kw.i64(producer_id) + kw.i16(epoch) + kw.i8(1 if commit else 0) + kw.compact_array(topics) + kw.i32(0) + kw.TAGGED_FIELDS_EMPTY
    body = kw.compact_array([marker]) + kw.TAGGED_FIELDS_EMPTY
    return kw.frame(kw.request_header(WRITE_TXN_MARKERS, 1, correlation_id, flexible=True) + body)


def parse_write_txn_markers(body: bytes) -> dict[tuple[str, int], int]:
    """{(topic, partition): error code} of a WriteTxnMarkers v1 response."""
    r = kw.Reader(body)
    r.skip_tagged_fields()  # response header v1
    out = {}
    for _ in range(r.uvarint() - 1):
        r.i64()  # producer id
        for _ in range(r.uvarint() - 1):
            name = r.take(r.uvarint() - 1).decode()
            for _ in range(r.uvarint() - 1):
                partition, code = r.i32(), r.i16()
                r.skip_tagged_fields()
                out[(name, partition)] = code
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    r.skip_tagged_fields()
    assert r.remaining() == 0
    return out


def write_txn_markers(port: int, partitions: dict[str, list[int]]) -> dict[tuple[str, int], int]:
    with kw.Connection(port) as conn:
        return parse_write_txn_markers(conn.request(write_txn_markers_request, 4242, 0, False, partitions))


def verify_only_request(correlation_id: int, transactional_id: str, producer_id: int, epoch: int, topic: str, partitions: list[int]) -> bytes:
    """AddPartitionsToTxn v4 with verifyOnly, as a partition leader sends it to a coordinator."""
    topics = [kw.compact_string(topic) + kw.uvarint(len(partitions) + 1) + b"".join(kw.i32(p) for p in partitions) + kw.TAGGED_FIELDS_EMPTY]
    transaction = kw.compact_string(transactional_id) + kw.i64(producer_id) + kw.i16(epoch) + kw.i8(1) + kw.compact_array(topics) + kw.TAGGED_FIELDS_EMPTY
    body = kw.compact_array([transaction]) + kw.TAGGED_FIELDS_EMPTY
    return kw.frame(kw.request_header(ADD_PARTITIONS_TO_TXN, 4, correlation_id, flexible=True) + body)


def top_level_error_v4(body: bytes) -> int:
    r = kw.Reader(body)
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time
    return r.i16()


def stray_produce(conn: kw.Connection, topic: str, partition: int, transactional_id: str, producer_id: int) -> int:
    """A transactional batch for a partition the producer did not add to a transaction; its
    error code."""
    batch = bytearray(kw.record_batch([(None, b"stray")], producer_id=producer_id, producer_epoch=0, base_sequence=0))
    batch[21:23] = kw.i16(0x10)  # transactional
    batch[17:21] = kw.u32(kw.crc32c(bytes(batch[21:])))

    def produce(cid):
        partitions = kw.array([kw.i32(partition) + kw.kbytes(bytes(batch))])
        body = kw.string(transactional_id) + kw.i16(-1) + kw.i32(30_000) + kw.array([kw.string(topic) + partitions])
        return kw.frame(kw.request_header(0, 3, cid) + body)

    [(_, _, error, _)] = kw.parse_produce_v3(conn.request(produce))
    return error


def test_transactions_over_partitions_led_by_every_broker(broker_factory):
    nodes = start_cluster(broker_factory)
    leader_of(nodes)
    wait_brokers(nodes)
    topic = "txn-spread"
    create_topic(nodes[0], topic, PARTITIONS)
    wait_converged(nodes, 1)
    bootstrap = nodes[0].bootstrap
    partition_leaders = leaders(bootstrap, topic)
    assert set(partition_leaders.values()) == {1, 2, 3}, f"the partitions should be spread over every broker: {partition_leaders}"

    # A group whose offsets partition another broker leads than the transaction coordinator,
    # so that the offsets' marker crosses brokers too. The internal topics are created by the
    # first lookups, spread over the three brokers.
    transactional_id = "spread-producer"
    txn_leader = find_coordinator(nodes[0].port, transactional_id, KEY_TYPE_TRANSACTION)
    assert txn_leader == leaders(bootstrap, "__transaction_state")[coordinator_partition(transactional_id, 3)]
    find_coordinator(nodes[0].port, "spread-group", KEY_TYPE_GROUP)
    offsets_leaders = leaders(bootstrap, "__consumer_offsets")
    groups = [f"spread-group-{i}" for i in range(20)]
    group = next(g for g in groups if offsets_leaders[coordinator_partition(g, 3)] != txn_leader)

    producer = txn_producer(bootstrap, transactional_id)
    committed: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    aborted: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    def send(round_: str, per_partition: int, into: dict[int, list[bytes]]) -> None:
        for p in range(PARTITIONS):
            for i in range(per_partition):
                value = f"{round_}-p{p}-{i}".encode()
                producer.produce(topic, value=value, partition=p)
                into[p].append(value)

    producer.begin_transaction()
    send("first", 5, committed)
    producer.commit_transaction(60)

    producer.begin_transaction()
    send("aborted", 3, aborted)
    producer.flush(30)  # abort_transaction purges what is still queued in the client
    producer.abort_transaction(60)

    sent_offsets = [confluent_kafka.TopicPartition(topic, p, 100 + p) for p in range(PARTITIONS)]
    group_consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        producer.begin_transaction()
        send("third", 4, committed)
        producer.send_offsets_to_transaction(sent_offsets, group_consumer.consumer_group_metadata(), 60)
        producer.commit_transaction(60)

        # Through another broker's address: every partition's committed records, in order,
        # exactly once, and none of the aborted ones.
        reader = nodes[2].bootstrap
        seen = consume_all(reader, topic, PARTITIONS, "read_committed", group="spread-reader")
        by_partition = {p: [v for q, _, v in sorted(seen) if q == p] for p in range(PARTITIONS)}
        assert by_partition == committed
        # The aborted records are in every log (so their abort markers mattered).
        everything = consume_all(reader, topic, PARTITIONS, "read_uncommitted", group="spread-reader")
        assert sorted(v for _, _, v in everything) == sorted(sum(committed.values(), []) + sum(aborted.values(), []))

        # The group's offsets are the ones the committed transaction sent.
        got = group_consumer.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        assert {(tp.partition, tp.offset) for tp in got} == {(p, 100 + p) for p in range(PARTITIONS)}
    finally:
        group_consumer.close()

    # A broker answers WriteTxnMarkers only for the partitions it leads.
    led_elsewhere = [p for p, leader in partition_leaders.items() if leader != 1]
    codes = write_txn_markers(nodes[0].port, {topic: led_elsewhere, "no-such-topic": [0]})
    assert codes == {**{(topic, p): NOT_LEADER_OR_FOLLOWER for p in led_elsewhere}, ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION}

    # KIP-890 across brokers: a stray transactional batch sent to the leader of a partition,
    # on another broker than the producer's coordinator, is verified there (AddPartitionsToTxn
    # v4, verifyOnly) and refused, so it cannot open a transaction no marker would close.
    with kw.Connection(nodes[txn_leader - 1].port) as conn:
        _, state, producer_id, _ = describe_transactions(conn, [transactional_id])[transactional_id]
    assert state == "CompleteCommit"
    stray_partition = next(p for p, leader in partition_leaders.items() if leader != txn_leader)
    with kw.Connection(nodes[partition_leaders[stray_partition] - 1].port) as conn:
        assert stray_produce(conn, topic, stray_partition, transactional_id, producer_id) == INVALID_TXN_STATE
    # Nothing was appended.
    assert len(consume_all(reader, topic, PARTITIONS, "read_uncommitted", group="spread-reader")) == len(everything)


def test_broker_to_broker_apis_need_cluster_action(broker_factory):
    """With an authorizer, a client without CLUSTER_ACTION on the cluster writes no marker and
    verifies no transaction."""
    broker = broker_factory(config={"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:admin"})
    # A PLAINTEXT client is User:ANONYMOUS, and no ACL lets it in.
    codes = write_txn_markers(broker.port, {"__consumer_offsets": [0, 1]})
    assert codes == {("__consumer_offsets", 0): CLUSTER_AUTHORIZATION_FAILED, ("__consumer_offsets", 1): CLUSTER_AUTHORIZATION_FAILED}
    with kw.Connection(broker.port) as conn:
        assert top_level_error_v4(conn.request(verify_only_request, "some-txn", 1, 0, "t", [0])) == CLUSTER_AUTHORIZATION_FAILED
    assert "CLUSTER_ACTION" in broker.run_log()


def test_transactions_v2_across_brokers(broker_factory):
    """Transactions v2 (KIP-890 part 2) when the partitions, the group's offsets partition and
    the producer's coordinator are on different brokers: each leader adds its partition through
    the coordinator (AddPartitionsToTxn v5 without verifyOnly), the markers carry the bumped
    epoch to every leader, and the old epoch is fenced there, by the marker or by the
    coordinator."""
    import test_transactions_v2 as v2

    nodes = start_cluster(broker_factory)
    leader_of(nodes)
    wait_brokers(nodes)
    topic, other = "txn2-spread", "txn2-other"
    create_topic(nodes[0], topic, PARTITIONS)
    create_topic(nodes[0], other, PARTITIONS)
    wait_converged(nodes, 2)
    bootstrap = nodes[0].bootstrap
    partition_leaders = leaders(bootstrap, topic)
    assert set(partition_leaders.values()) == {1, 2, 3}, f"the partitions should be spread over every broker: {partition_leaders}"
    transactional_id = "spread-v2"
    txn_leader = find_coordinator(nodes[0].port, transactional_id, KEY_TYPE_TRANSACTION)
    find_coordinator(nodes[0].port, "spread-v2-group", KEY_TYPE_GROUP)
    offsets_leaders = leaders(bootstrap, "__consumer_offsets")
    group = next(g for g in (f"spread-v2-group-{i}" for i in range(20)) if offsets_leaders[coordinator_partition(g, 3)] != txn_leader)
    group_leader = offsets_leaders[coordinator_partition(group, 3)]

    with kw.Connection(nodes[txn_leader - 1].port) as coordinator:
        error, producer_id, epoch = v2.init_producer_id(coordinator, transactional_id)
        assert error == kw.NONE
    for p, leader in partition_leaders.items():
        with kw.Connection(nodes[leader - 1].port) as conn:
            assert v2.produce(conn, 12, transactional_id, topic, p, v2.transactional_batch(producer_id, epoch, 0, [f"v2-{p}".encode()])) == kw.NONE
    with kw.Connection(nodes[group_leader - 1].port) as conn:
        assert v2.txn_offset_commit(conn, 5, transactional_id, group, producer_id, epoch, topic, 0, 7) == kw.NONE
    with kw.Connection(nodes[txn_leader - 1].port) as coordinator:
        state, _, _, partitions = v2.describe(coordinator, transactional_id)
        assert state == "Ongoing" and partitions[topic] == list(range(PARTITIONS)) and "__consumer_offsets" in partitions, partitions
        assert v2.end_txn(coordinator, 5, transactional_id, producer_id, epoch, commit=True) == (kw.NONE, producer_id, epoch + 1)

    reader = nodes[2].bootstrap
    seen = consume_all(reader, topic, PARTITIONS, "read_committed", group="spread-v2-reader")
    assert sorted(v for _, _, v in seen) == sorted(f"v2-{p}".encode() for p in range(PARTITIONS))
    with kw.Connection(nodes[group_leader - 1].port) as conn:
        assert v2.committed_offset(conn, group, topic, 0) == 7

    # The old epoch, on leaders other than the coordinator: fenced by the marker in a partition
    # of the transaction, and by the coordinator in one it never touched.
    marked = next(p for p, leader in partition_leaders.items() if leader != txn_leader)
    with kw.Connection(nodes[partition_leaders[marked] - 1].port) as conn:
        assert v2.produce(conn, 12, transactional_id, topic, marked, v2.transactional_batch(producer_id, epoch, 1, [b"zombie"])) == v2.INVALID_PRODUCER_EPOCH
    other_leaders = leaders(bootstrap, other)
    untouched = next(p for p, leader in other_leaders.items() if leader != txn_leader)
    with kw.Connection(nodes[other_leaders[untouched] - 1].port) as conn:
        assert v2.produce(conn, 12, transactional_id, other, untouched, v2.transactional_batch(producer_id, epoch, 0, [b"zombie"])) == v2.INVALID_PRODUCER_EPOCH
    assert len(consume_all(reader, other, PARTITIONS, "read_uncommitted", group="spread-v2-reader")) == 0
