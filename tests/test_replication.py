"""Replication (issue #15) on real shardlog processes: partitions with three replicas, followers
that copy their leader with replica fetches, acks=all that waits for every in-sync replica,
min.insync.replicas, and leaders killed with SIGKILL while producers keep writing. Each test
checks the history: every acknowledged record is read back exactly once, in offset order."""

from __future__ import annotations

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw
from clients import wait_until
from cluster import make_cluster, start_cluster, wait_brokers

NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19

# Short timings, set in config rather than slept on: a follower that stops fetching leaves
# the ISR within about two seconds, and fetchers retry every 100 ms.
FAST = {
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
}


def admin_of(nodes) -> AdminClient:
    return AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n.is_alive())})


def create(nodes, topic: str, partitions: int, replicas: int, configs: dict | None = None) -> None:
    admin = admin_of(nodes)
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replicas, config=configs or {})], operation_timeout=10)
    futures[topic].result(timeout=30)


def partition_state(nodes, topic: str, partition: int = 0):
    """(leader, replicas, isr) as a live broker's Metadata answer has them ((-1, [], []) while
    it does not know the partition yet)."""
    md = admin_of(nodes).list_topics(topic, timeout=10).topics[topic].partitions.get(partition)
    return (md.leader, sorted(md.replicas), sorted(md.isrs)) if md else (-1, [], [])


def wait_isr(nodes, topic: str, isr: list[int], partitions: int = 1) -> None:
    for p in range(partitions):
        wait_until(lambda: partition_state(nodes, topic, p)[2] == sorted(isr), f"{topic}-{p}'s ISR to be {isr}", timeout_s=60)


def producer(nodes) -> confluent_kafka.Producer:
    return confluent_kafka.Producer({
        "bootstrap.servers": ",".join(n.bootstrap for n in nodes),
        "acks": "all",
        "enable.idempotence": True,
        "topic.metadata.refresh.interval.ms": 500,
        "retry.backoff.ms": 50,
        "message.timeout.ms": 120_000,
    })


def produce(p: confluent_kafka.Producer, topic: str, values: list[bytes], partitions: int = 1, midway=None) -> list[tuple[int, int, bytes]]:
    """Produces `values` (round-robin over partitions) and answers what was acknowledged:
    (partition, offset, value). With `midway`, calls it once a third of them are acknowledged,
    while the rest are queued or in flight."""
    acked: list[tuple[int, int, bytes]] = []
    errors = []

    def delivered(err, msg):
        if err:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value()))

    for i, v in enumerate(values):
        if midway and i == len(values) // 3:
            # Some of the first third may still be in flight; the rest is sent after it.
            wait_until(lambda: p.poll(0.05) is not None and len(acked) >= i // 2, "records to be acknowledged", timeout_s=60)
            midway()
        p.produce(topic, v, partition=i % partitions, on_delivery=delivered)
        p.poll(0)
    assert p.flush(120) == 0
    assert not errors, errors
    return acked


def read_all(nodes, topic: str, partitions: int, expected: int) -> dict[int, list[tuple[int, bytes]]]:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n.is_alive()), "group.id": "history",
                                         "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 500})
    consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}

    def enough():
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                got[m.partition()].append((m.offset(), m.value()))
        return sum(len(v) for v in got.values()) >= expected

    wait_until(enough, f"a consumer to read {expected} records", timeout_s=120)
    consumer.close()
    return got


def check_history(acked: list[tuple[int, int, bytes]], got: dict[int, list[tuple[int, bytes]]]) -> None:
    """Every acknowledged record read exactly once, at the offset it was acknowledged at, and
    each partition's offsets contiguous from 0."""
    for partition, records in got.items():
        offsets = [o for o, _ in records]
        assert offsets == list(range(len(offsets))), f"partition {partition}: offsets not contiguous from 0"
        values = [v for _, v in records]
        assert len(values) == len(set(values)), f"partition {partition}: a record was read twice"
    read = {(p, o): v for p, records in got.items() for o, v in records}
    for partition, offset, value in acked:
        assert read.get((partition, offset)) == value, f"acknowledged {value!r} at {partition}/{offset} but read {read.get((partition, offset))!r}"


def test_acks_all_on_three_replicas_survives_killing_each_leader(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[FAST] * 3)
    wait_brokers(nodes)
    topic, partitions = "replicated", 2
    create(nodes, topic, partitions, 3, {"min.insync.replicas": "2"})
    leader, replicas, isr = partition_state(nodes, topic)
    assert replicas == [1, 2, 3] and isr == [1, 2, 3] and leader in replicas

    p = producer(nodes)
    acked = produce(p, topic, [b"r0-%d" % i for i in range(300)], partitions)
    assert len(acked) == 300
    rounds = 6
    for round_ in range(1, rounds + 1):
        partition = round_ % partitions
        leader = partition_state(nodes, topic, partition)[0]
        victim = nodes[leader - 1]
        # Killed while a producer has records in flight to it.
        acked += produce(p, topic, [b"r%d-%d" % (round_, i) for i in range(3000)], partitions, midway=victim.kill9)
        survivors = [n for n in nodes if n.is_alive()]
        wait_until(lambda: partition_state(survivors, topic, partition)[0] not in (leader, -1), "another replica to lead", timeout_s=60)
        victim.launch()
        victim.wait_ready()
        # The restarted broker copies what it missed and joins the ISR again.
        wait_isr(nodes, topic, [1, 2, 3], partitions)
    assert len(acked) == 300 + rounds * 3000
    check_history(acked, read_all(nodes, topic, partitions, len(acked)))

    # Followers copy the leader's batches as they are: once all are in sync, every replica's
    # log holds the same bytes.
    for n in nodes:
        n.stop()
    for partition in range(partitions):
        logs = [b"".join(f.read_bytes() for f in sorted((n.data_dir / f"{topic}-{partition}").glob("*.log"))) for n in nodes]
        assert len(logs[0]) > 0 and logs[0] == logs[1] == logs[2], f"partition {partition}: the replicas' logs differ"


def test_min_insync_replicas_refuses_acks_all_and_the_isr_recovers(broker_factory):
    # A controller of its own, so that killing two of the three brokers leaves the quorum up
    # to fence them and shrink the ISR.
    nodes = make_cluster(broker_factory, count=4, roles=["controller", "broker", "broker", "broker"], extra_config=[FAST] * 4)
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    brokers = nodes[1:]
    wait_brokers(nodes)
    topic = "guarded"
    create(brokers, topic, 1, 3, {"min.insync.replicas": "2"})
    wait_isr(brokers, topic, [2, 3, 4])
    p = producer(brokers)
    acked = produce(p, topic, [b"a-%d" % i for i in range(100)])

    leader = partition_state(brokers, topic)[0]
    for n in brokers:
        if n.node_id != leader:
            n.kill9()
    wait_isr(brokers, topic, [leader])

    # acks=all is refused while the ISR is smaller than min.insync.replicas; acks=1 is not.
    batch = kw.record_batch([(None, b"refused")])
    with kw.Connection(nodes[leader - 1].port) as conn:
        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, batch, acks=-1))
        assert error == NOT_ENOUGH_REPLICAS
        [(_, _, error, offset)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, kw.record_batch([(None, b"one")]), acks=1))
        assert error == 0 and offset == 100
    acked.append((0, 100, b"one"))

    for n in brokers:
        if not n.is_alive():
            n.launch()
    for n in brokers:
        n.wait_ready()
    wait_isr(brokers, topic, [2, 3, 4])
    acked += produce(p, topic, [b"b-%d" % i for i in range(100)])
    check_history(acked, read_all(brokers, topic, 1, 201))


def test_a_replica_fetch_from_a_broker_that_is_not_a_replica_moves_nothing(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[FAST] * 3)
    wait_brokers(nodes)
    topic = "two-of-three"
    create(nodes, topic, 1, 2)
    leader, replicas, _ = partition_state(nodes, topic)
    outsider = ({1, 2, 3} - set(replicas)).pop()
    with kw.Connection(nodes[leader - 1].port) as conn:
        body = conn.request(kw.fetch_v4_request, topic, 0, 0, replica_id=outsider)
        [fetched] = kw.parse_fetch_v4(body)
        assert fetched.error_code == NOT_LEADER_OR_FOLLOWER
        # A consumer's fetch from a follower is sent to the leader too.
        follower = [r for r in replicas if r != leader][0]
    with kw.Connection(nodes[follower - 1].port) as conn:
        [fetched] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, topic, 0, 0))
        assert fetched.error_code == NOT_LEADER_OR_FOLLOWER
    # Nothing was disturbed: writes are still acknowledged by both replicas.
    acked = produce(producer(nodes), topic, [b"x-%d" % i for i in range(50)])
    check_history(acked, read_all(nodes, topic, 1, 50))
