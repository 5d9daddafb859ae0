"""The group and transaction coordinators move with the leadership of their internal partitions
(issue #15), on real shardlog processes.

`__consumer_offsets` and `__transaction_state` get Kafka's default of three replicas. When the
broker that leads a state partition dies, an in-sync follower becomes its leader, and the
coordinator of the shard that holds it there replays the partition's log before it answers for
any group or transactional id of it. A coordinator acknowledges a write only once every in-sync
replica holds it, so what a client was told is committed survives the kill.
"""

from __future__ import annotations

import time

import confluent_kafka
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw
from clients import wait_until
from cluster import KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, find_coordinator, start_cluster, wait_brokers
from test_cluster_transactions import coordinator_partition, leaders
from test_replication import FAST, create, partition_state, producer, produce
from test_transactions import consume_all, txn_producer

OFFSETS, TXN_STATE = "__consumer_offsets", "__transaction_state"
INTERNAL_PARTITIONS = 3  # cluster.make_cluster's offsets.topic.num.partitions and transaction.state.log.num.partitions
# Bounds that turn a hang into a failure; nothing asserts how fast anything was.
DEADLINE_S = 120
CONFIG = {**FAST, "group.initial.rebalance.delay.ms": 0}
NOT_ENOUGH_REPLICAS = 19


def survivors(nodes) -> str:
    return ",".join(n.bootstrap for n in nodes if n.is_alive())


def live_port(nodes) -> int:
    return next(n.port for n in nodes if n.is_alive())


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets, as a fresh client reads them (OffsetFetch to the group's
    coordinator, wherever it is now)."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=60)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def commit_until_done(consumer: confluent_kafka.Consumer, offsets: list[TopicPartition] | None = None) -> None:
    """Commits synchronously, retrying while the coordinator moves (a commit of the same offsets
    again is harmless)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=False) if offsets else consumer.commit(asynchronous=False)
            return
        except confluent_kafka.KafkaException as e:
            assert time.monotonic() < deadline, f"commit never succeeded: {e}"
            time.sleep(0.2)


def test_consumer_group_keeps_its_committed_offsets_across_the_kill_of_its_coordinator(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[CONFIG] * 3)
    wait_brokers(nodes)
    topic, partitions, total = "cg-failover", 3, 900
    create(nodes, topic, partitions, 3, {"min.insync.replicas": 2})
    acked = produce(producer(nodes), topic, [f"r{i}".encode() for i in range(total)], partitions=partitions)
    assert len(acked) == total

    group = "cg-failover-group"
    coordinator = find_coordinator(nodes[0].port, group, KEY_TYPE_GROUP)
    # Kafka's default: every broker holds a copy of each offsets partition.
    assert partition_state(nodes, OFFSETS, coordinator_partition(group, INTERNAL_PARTITIONS))[1] == [1, 2, 3]

    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": ",".join(n.bootstrap for n in nodes),
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "topic.metadata.refresh.interval.ms": 500,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })
    rebalances: list[str] = []
    consumer.subscribe([topic], on_assign=lambda c, ps: rebalances.append("assign"), on_revoke=lambda c, ps: rebalances.append("revoke"),
                       on_lost=lambda c, ps: rebalances.append("lost"))
    before: list[tuple[int, int]] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(before) < total // 3:
        assert time.monotonic() < deadline, f"read {len(before)} records before the kill"
        before += [(m.partition(), m.offset()) for m in consumer.consume(num_messages=50, timeout=1.0) if not m.error()]
    commit_until_done(consumer)
    positions = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in range(partitions)])}
    assert committed(survivors(nodes), group, topic, partitions) == positions

    nodes[coordinator - 1].kill9()
    # The acknowledged commit survives: the new coordinator replayed it from its copy.
    # (Once the controller fenced the dead broker, a survivor leads the group's partition.)
    wait_until(lambda: find_coordinator(live_port(nodes), group, KEY_TYPE_GROUP) != coordinator, "a surviving broker to coordinate the group")
    assert committed(survivors(nodes), group, topic, partitions) == positions

    # The member carries on from where it committed, in the same generation: the new
    # coordinator restored the group's membership from the log (Kafka's GroupMetadata record),
    # so there is no rebalance, and every record is read exactly once.
    assert rebalances == ["assign"]
    after: list[tuple[int, int]] = []
    while len(before) + len(after) < total:
        assert time.monotonic() < deadline + DEADLINE_S, f"read {len(before) + len(after)} of {total} records"
        batch = [(m.partition(), m.offset()) for m in consumer.consume(num_messages=100, timeout=1.0) if not m.error()]
        after += batch
        if batch:
            commit_until_done(consumer)
    consumer.close()
    assert sorted(before + after) == sorted(set(before + after)), "a record was read twice"
    assert rebalances == ["assign", "revoke"], "the member rebalanced after its coordinator moved"
    assert committed(survivors(nodes), group, topic, partitions) == {p: total // partitions for p in range(partitions)}


def test_transactional_pipeline_is_exactly_once_across_the_kill_of_its_coordinators(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[CONFIG] * 3)
    wait_brokers(nodes)
    source, sink, partitions, total = "ctp-in", "ctp-out", 3, 600
    for topic in (source, sink):
        create(nodes, topic, partitions, 3, {"min.insync.replicas": 2})
    acked = produce(producer(nodes), source, [f"in-{i}".encode() for i in range(total)], partitions=partitions)
    assert len(acked) == total

    # The transactional id's coordinator and the group's are on one broker, which is killed.
    bootstrap = ",".join(n.bootstrap for n in nodes)
    transactional_id = "ctp-failover"
    txn = txn_producer(bootstrap, transactional_id, **{"transaction.timeout.ms": 30_000, "topic.metadata.refresh.interval.ms": 500})
    doomed = find_coordinator(nodes[0].port, transactional_id, KEY_TYPE_TRANSACTION)
    find_coordinator(nodes[0].port, "any-group", KEY_TYPE_GROUP)  # creates __consumer_offsets
    offsets_leaders = leaders(nodes[0].bootstrap, OFFSETS)
    group = next(g for g in (f"ctp-group-{i}" for i in range(1000)) if offsets_leaders[coordinator_partition(g, INTERNAL_PARTITIONS)] == doomed)
    assert partition_state(nodes, TXN_STATE, coordinator_partition(transactional_id, INTERNAL_PARTITIONS))[1] == [1, 2, 3]

    # A statically assigned pipeline: no rebalance to handle, the group only keeps the offsets.
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "topic.metadata.refresh.interval.ms": 500,
    })
    assignment = [TopicPartition(source, p) for p in range(partitions)]
    consumer.assign([TopicPartition(source, p, confluent_kafka.OFFSET_STORED) for p in range(partitions)])

    def rewind() -> None:
        """Back to the group's committed offsets, after an aborted transaction."""
        got = consumer.committed(assignment, timeout=60)
        for tp in got:
            consumer.seek(TopicPartition(source, tp.partition, tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_BEGINNING))

    committed_records, aborts, killed = 0, 0, False
    deadline = time.monotonic() + 2 * DEADLINE_S
    while committed_records < total:
        assert time.monotonic() < deadline, f"the pipeline committed {committed_records} of {total} records ({aborts} aborts)"
        msgs = [m for m in consumer.consume(num_messages=50, timeout=1.0) if not m.error()]
        if not msgs:
            continue
        try:
            txn.begin_transaction()
            for m in msgs:
                txn.produce(sink, value=m.value().replace(b"in-", b"out-"), partition=m.partition())
            txn.send_offsets_to_transaction(consumer.position(assignment), consumer.consumer_group_metadata(), 60)
            if not killed and committed_records >= total // 3:
                # Mid-transaction: its records and offsets are in, its commit not asked yet.
                nodes[doomed - 1].kill9()
                killed = True
            while True:
                try:
                    txn.commit_transaction(60)
                    break
                except confluent_kafka.KafkaException as e:
                    if not e.args[0].retriable():
                        raise
                    assert time.monotonic() < deadline, f"the commit was still retriable at the deadline: {e}"
            committed_records += len(msgs)
        except confluent_kafka.KafkaException as e:
            assert e.args[0].txn_requires_abort(), f"a fatal transaction error: {e}"
            aborts += 1
            txn.abort_transaction(60)
            rewind()
    assert killed
    consumer.close()

    survivors_bootstrap = survivors(nodes)
    out = consume_all(survivors_bootstrap, sink, partitions, "read_committed")
    assert sorted(v for _, _, v in out) == sorted(f"out-{i}".encode() for i in range(total)), "each input exactly once in the committed output"
    assert committed(survivors_bootstrap, group, source, partitions) == {p: total // partitions for p in range(partitions)}
    # The new coordinators are the survivors'.
    assert find_coordinator(live_port(nodes), transactional_id, KEY_TYPE_TRANSACTION) != doomed
    assert find_coordinator(live_port(nodes), group, KEY_TYPE_GROUP) != doomed
    wait_until(lambda: all(partition_state(nodes, TXN_STATE, p)[0] not in (-1, doomed) for p in range(INTERNAL_PARTITIONS)),
               "the transaction state partitions to have live leaders")


def test_a_transactional_produce_whose_coordinator_cannot_answer_is_retried_by_the_client(broker_factory):
    """Before it takes a producer's first batch of a transaction, a partition leader asks the
    transaction coordinator whether the partition is in that transaction (KIP-890). When the
    coordinator cannot answer (its broker was just killed), the produce is answered
    NOT_ENOUGH_REPLICAS, as Kafka's ReplicaManager answers it, which clients retry without a
    metadata refresh. Passed through, COORDINATOR_NOT_AVAILABLE made librdkafka wait for a new
    leader of the partition, which never came (the leader had not changed), and its
    transaction hung."""
    # One replica of each __transaction_state partition; node 2 alone is the metadata quorum,
    # so it carries on when node 1 dies.
    config = {**CONFIG, "transaction.state.log.replication.factor": 1}
    nodes = start_cluster(broker_factory, count=2, roles=["broker", "broker,controller"], extra_config=[config] * 2)
    wait_brokers(nodes)
    topic = "verified-on-2"
    admin = AdminClient({"bootstrap.servers": nodes[1].bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[2]])])[topic].result(60)
    find_coordinator(nodes[1].port, "any", KEY_TYPE_TRANSACTION)  # creates __transaction_state
    wait_until(lambda: -1 not in leaders(nodes[1].bootstrap, TXN_STATE).values(), "__transaction_state to have its leaders")
    txn_leaders = leaders(nodes[1].bootstrap, TXN_STATE)
    transactional_id = next(t for t in (f"verify-{i}" for i in range(1000)) if txn_leaders[coordinator_partition(t, INTERNAL_PARTITIONS)] == 1)
    assert find_coordinator(nodes[0].port, transactional_id, KEY_TYPE_TRANSACTION) == 1
    with kw.Connection(nodes[0].port) as conn:
        error, producer_id, epoch = kw.parse_init_producer_id_v0(conn.request(lambda c: kw.init_producer_id_v0_request(c, transactional_id=transactional_id)))
    assert error == 0 and producer_id >= 0

    nodes[0].kill9()
    batch = kw.record_batch([(None, b"in a transaction")], producer_id=producer_id, producer_epoch=epoch, base_sequence=0, transactional=True)
    with kw.Connection(nodes[1].port) as conn:
        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(lambda c: kw.produce_v3_request(c, topic, 0, batch, transactional_id=transactional_id)))
    assert error == NOT_ENOUGH_REPLICAS, f"a produce its coordinator could not verify was answered {error}, not NOT_ENOUGH_REPLICAS"
    assert nodes[1].is_alive()
