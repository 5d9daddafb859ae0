"""Coordinators spread over a cluster, and topics placed by explicit replica assignments.

`__consumer_offsets` and `__transaction_state` are created as Kafka creates them: when a
coordinator is first looked for, by the active controller, with their partitions spread over
the brokers registered by then. A group's coordinator is the broker that leads its offsets
partition (Kafka's `abs(javaStringHashCode(group_id)) % offsets.topic.num.partitions`), and a
transactional id's the broker that leads its `__transaction_state` partition, so with three
brokers every broker coordinates some groups and transactions. The tests pick ids by their
partition to put coordinators where they want them, and place data partitions with explicit
replica assignments (CreateTopics `assignments`, as kafka-reassign-partitions and librdkafka's
NewTopic(replica_assignment=...) send them).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import kafkawire as kw
from clients import wait_until
from cluster import KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, find_coordinator, leader_of, restart_cluster, start_cluster, wait_brokers
from test_cluster_transactions import coordinator_partition, leaders
from test_transactions import consume_all, describe_transactions, txn_producer

OFFSETS = "__consumer_offsets"
TXN_STATE = "__transaction_state"
INTERNAL_PARTITIONS = 3  # cluster.make_cluster's offsets.topic.num.partitions and transaction.state.log.num.partitions
INVALID_REQUEST = 42
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
# Bounds that turn a hang into a failure; nothing asserts how fast anything was.
DEADLINE_S = 60
# Groups rebalance at once: the tests join one group after another.
FAST_GROUPS = {"group.initial.rebalance.delay.ms": 0}


def topic_names(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def hosts(nodes, topic: str, partition: int) -> list[int]:
    """The node ids whose data directory holds the partition."""
    return [i + 1 for i, n in enumerate(nodes) if (n.data_dir / f"{topic}-{partition}").is_dir()]


def key_with(prefix: str, want: callable) -> str:
    """The first `prefix-N` whose coordinator partition satisfies `want`."""
    return next(k for k in (f"{prefix}-{i}" for i in range(1000)) if want(coordinator_partition(k, INTERNAL_PARTITIONS)))


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([confluent_kafka.TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def consume_and_commit(bootstrap: str, group: str, topic: str, count: int) -> None:
    """Joins `group`, reads `count` records of `topic` from the start, and commits them."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + DEADLINE_S
        while seen < count:
            assert time.monotonic() < deadline, f"group {group} read {seen} of {count} records"
            for m in consumer.consume(num_messages=100, timeout=1.0):
                assert not m.error(), m.error()
                seen += 1
        assert seen == count
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()


def produce(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for p, n in per_partition.items():
        for i in range(n):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(30) == 0


def test_group_coordinators_on_every_broker_keep_offsets_over_a_cluster_restart(broker_factory):
    # One copy of each offsets partition, so that the data directories show where each
    # coordinator is (test_replication_coordinators covers Kafka's default of three).
    nodes = start_cluster(broker_factory, extra_config=[{**FAST_GROUPS, "offsets.topic.replication.factor": 1}] * 3)
    leader_of(nodes)
    wait_brokers(nodes)
    bootstrap = nodes[0].bootstrap
    # Nothing has needed a coordinator yet, so there is no internal topic to list.
    assert not topic_names(bootstrap) & {OFFSETS, TXN_STATE}

    topic, partitions = "orders", 6
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=30)
    produce(bootstrap, topic, {p: 5 for p in range(partitions)})

    # One group per offsets partition, each looked up through another broker at once: the
    # first lookups create the topic, once, spread over the three registered brokers.
    groups = [key_with("group", lambda p, want=want: p == want) for want in range(INTERNAL_PARTITIONS)]
    with ThreadPoolExecutor(len(groups)) as pool:
        found = pool.map(lambda ig: find_coordinator(nodes[ig[0]].port, ig[1], KEY_TYPE_GROUP), enumerate(groups))
        coordinators = dict(zip(groups, found))
    assert sum(n.run_log().count(f"creating topic topic={OFFSETS}") for n in nodes) == 1
    offsets_leaders = leaders(bootstrap, OFFSETS)
    assert sorted(offsets_leaders.values()) == [1, 2, 3], offsets_leaders
    assert coordinators == {g: offsets_leaders[coordinator_partition(g, INTERNAL_PARTITIONS)] for g in groups}
    # Every broker answers the same, and the data directories show the placement.
    assert all(find_coordinator(n.port, g, KEY_TYPE_GROUP) == coordinators[g] for n in nodes for g in groups)
    assert {p: hosts(nodes, OFFSETS, p) for p in range(INTERNAL_PARTITIONS)} == {p: [leader] for p, leader in offsets_leaders.items()}
    # Only what was needed was created.
    assert TXN_STATE not in topic_names(bootstrap)

    # Each group joins, consumes and commits through its own coordinator.
    for g in groups:
        consume_and_commit(bootstrap, g, topic, 5 * partitions)
    everything = {p: 5 for p in range(partitions)}
    assert {g: committed(bootstrap, g, topic, partitions) for g in groups} == {g: everything for g in groups}

    restart_cluster(nodes)
    wait_brokers(nodes)
    # The coordinators stay where they were, and their offsets with them.
    assert leaders(nodes[2].bootstrap, OFFSETS) == offsets_leaders
    assert {g: committed(nodes[2].bootstrap, g, topic, partitions) for g in groups} == {g: everything for g in groups}


def test_transaction_coordinator_commits_offsets_of_a_group_coordinated_elsewhere(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[FAST_GROUPS] * 3)
    leader_of(nodes)
    wait_brokers(nodes)
    bootstrap = nodes[0].bootstrap
    # Both internal topics created by a first lookup; then ids are picked by where their
    # partitions landed.
    find_coordinator(nodes[0].port, "probe", KEY_TYPE_TRANSACTION)
    find_coordinator(nodes[0].port, "probe", KEY_TYPE_GROUP)
    txn_leaders, offsets_leaders = leaders(bootstrap, TXN_STATE), leaders(bootstrap, OFFSETS)
    assert sorted(txn_leaders.values()) == [1, 2, 3] and sorted(offsets_leaders.values()) == [1, 2, 3]
    # Kafka's default transaction.state.log.replication.factor, 3: a copy on every broker.
    assert {p: hosts(nodes, TXN_STATE, p) for p in range(INTERNAL_PARTITIONS)} == {p: [1, 2, 3] for p in txn_leaders}
    transactional_id = key_with("producer", lambda p: True)
    c = txn_leaders[coordinator_partition(transactional_id, INTERNAL_PARTITIONS)]
    group = key_with("group", lambda p: offsets_leaders[p] != c)
    b = offsets_leaders[coordinator_partition(group, INTERNAL_PARTITIONS)]
    [d] = {1, 2, 3} - {b, c}
    assert find_coordinator(nodes[d - 1].port, transactional_id, KEY_TYPE_TRANSACTION) == c

    # The data partitions are led by B and D, never by the transaction coordinator C: every
    # marker, the offsets' one included, goes to another broker.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(t, num_partitions=2, replica_assignment=[[b], [d]]) for t in ("in", "out")])
    for f in futures.values():
        f.result(timeout=30)
    assert leaders(bootstrap, "in") == leaders(bootstrap, "out") == {0: b, 1: d}
    produce(bootstrap, "in", {0: 10, 1: 10})

    producer = txn_producer(bootstrap, transactional_id)
    group_consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    committed_values: list[bytes] = []
    try:
        for round_, (per_partition, offset, commit) in enumerate([(5, 3, True), (2, 7, False), (4, 10, True)]):
            producer.begin_transaction()
            values = []
            for p in (0, 1):
                for i in range(per_partition):
                    values.append(f"r{round_}-p{p}-{i}".encode())
                    producer.produce("out", value=values[-1], partition=p)
            offsets = [confluent_kafka.TopicPartition("in", p, offset) for p in (0, 1)]
            producer.send_offsets_to_transaction(offsets, group_consumer.consumer_group_metadata(), 60)
            if commit:
                producer.commit_transaction(60)
                committed_values += values
            else:
                producer.flush(30)  # abort_transaction purges what is still queued in the client
                producer.abort_transaction(60)
    finally:
        group_consumer.close()

    # Through the broker that took no part: exactly the committed records, once each.
    reader = nodes[d - 1].bootstrap
    seen = consume_all(reader, "out", 2, "read_committed", group="reader")
    assert sorted(v for _, _, v in seen) == sorted(committed_values)
    assert len(consume_all(reader, "out", 2, "read_uncommitted", group="reader")) == len(committed_values) + 4
    # The group has the offsets of the last committed transaction, not the aborted one's.
    assert committed(reader, group, "in", 2) == {0: 10, 1: 10}
    with kw.Connection(nodes[c - 1].port) as conn:
        _, state, _, _ = describe_transactions(conn, [transactional_id])[transactional_id]
    assert state == "CompleteCommit"


def create_topics_v4_request(correlation_id: int, name: str, partitions: int, replication_factor: int, assignments: list[tuple[int, list[int]]]) -> bytes:
    assigned = [kw.i32(p) + kw.array([kw.i32(b) for b in brokers]) for p, brokers in assignments]
    topic = kw.string(name) + kw.i32(partitions) + kw.i16(replication_factor) + kw.array(assigned) + kw.array([])
    return kw.frame(kw.request_header(19, 4, correlation_id) + kw.array([topic]) + kw.i32(30_000) + kw.i8(0))


def create_topic_raw(port: int, name: str, partitions: int, replication_factor: int, assignments: list[tuple[int, list[int]]]) -> tuple[int, str | None]:
    """CreateTopics v4 for one topic: (error code, message)."""
    with kw.Connection(port) as conn:
        r = kw.Reader(conn.request(create_topics_v4_request, name, partitions, replication_factor, assignments))
    r.i32()  # throttle time
    assert r.i32() == 1
    assert r.string() == name
    return r.i16(), r.string()


def test_explicit_replica_assignments_place_partitions_on_the_named_brokers(broker_factory):
    nodes = start_cluster(broker_factory)
    leader_of(nodes)
    wait_brokers(nodes)
    bootstrap = nodes[1].bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})

    admin.create_topics([NewTopic("placed", num_partitions=4, replica_assignment=[[3], [1], [3], [2]])])["placed"].result(timeout=30)
    # Committed by the controller when answered; the broker asked applies it a moment later.
    wait_until(lambda: leaders(bootstrap, "placed") == {0: 3, 1: 1, 2: 3, 3: 2}, f"{bootstrap} to list placed's leaders", timeout_s=30)
    wait_until(
        lambda: {p: hosts(nodes, "placed", p) for p in range(4)} == {0: [3], 1: [1], 2: [3], 3: [2]},
        "the named brokers to hold placed's partitions",
        timeout_s=30,
    )
    # The named brokers serve them.
    produce(bootstrap, "placed", {p: 2 for p in range(4)})
    assert len(consume_all(nodes[0].bootstrap, "placed", 4, "read_uncommitted", group="placed-reader")) == 8

    # New partitions on chosen brokers too.
    admin.create_partitions([NewPartitions("placed", 6, replica_assignment=[[2], [1]])])["placed"].result(timeout=30)
    # Committed by the controller when answered; each broker applies it a moment later.
    want = {0: 3, 1: 1, 2: 3, 3: 2, 4: 2, 5: 1}
    wait_until(lambda: leaders(bootstrap, "placed") == want, f"{bootstrap} to list the new partitions' leaders {want}", timeout_s=30)
    wait_until(lambda: hosts(nodes, "placed", 4) == [2] and hosts(nodes, "placed", 5) == [1], "brokers 2 and 1 to hold the new partitions", timeout_s=30)

    def refused(future) -> tuple[int, str]:
        try:
            future.result(timeout=30)
        except confluent_kafka.KafkaException as e:
            return e.args[0].code(), e.args[0].str()
        raise AssertionError("the request succeeded")

    code, message = refused(admin.create_topics([NewTopic("unknown-broker", num_partitions=2, replica_assignment=[[1], [7]])])["unknown-broker"])
    assert code == INVALID_REPLICA_ASSIGNMENT and "broker 7" in message, message
    # Several replicas a partition: the first leads, and every replica's broker holds it.
    admin.create_topics([NewTopic("replicated", num_partitions=1, replica_assignment=[[1, 2]])])["replicated"].result(timeout=30)
    wait_until(lambda: leaders(bootstrap, "replicated") == {0: 1}, f"{bootstrap} to list replicated-0's leader, broker 1", timeout_s=30)
    wait_until(lambda: hosts(nodes, "replicated", 0) == [1, 2], "both replicas' brokers hold replicated-0", timeout_s=30)
    code, message = refused(admin.create_partitions([NewPartitions("placed", 8, replica_assignment=[[1]])])["placed"])
    assert code == INVALID_REPLICA_ASSIGNMENT and "2 additional partition(s)" in message, message

    # What the admin client cannot express, on the wire.
    port = nodes[0].port
    code, message = create_topic_raw(port, "gap", -1, -1, [(0, [1]), (2, [2])])
    assert code == INVALID_REPLICA_ASSIGNMENT and "consecutive" in message, message
    code, message = create_topic_raw(port, "twice", -1, -1, [(0, [1]), (1, [2]), (0, [3])])
    assert code == INVALID_REPLICA_ASSIGNMENT and "partition 0" in message, message
    code, message = create_topic_raw(port, "both", 2, -1, [(0, [1]), (1, [2])])
    assert code == INVALID_REQUEST and "numPartitions" in message, message
    code, message = create_topic_raw(port, "both-rf", -1, 1, [(0, [1])])
    assert code == INVALID_REQUEST and "replication factor" in message, message
    code, message = create_topic_raw(port, "same-broker-twice", -1, -1, [(0, [2, 2])])
    assert code == INVALID_REPLICA_ASSIGNMENT and "more than once" in message, message
    code, message = create_topic_raw(port, "too-many", 1, 4, [])
    assert code == INVALID_REPLICATION_FACTOR and "only 3 broker(s) are registered" in message, message
    # Nothing refused was created, and the placed topic is as it was.
    assert not topic_names(bootstrap) & {"unknown-broker", "gap", "twice", "both", "both-rf", "same-broker-twice", "too-many"}
    assert len(leaders(bootstrap, "placed")) == 6
