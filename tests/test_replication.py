"""Replication (issue #15) on real shardlog processes: partitions with three replicas, followers
that copy their leader with replica fetches, acks=all that waits for every in-sync replica,
min.insync.replicas, and leaders killed with SIGKILL while producers keep writing. Each test
checks the history: every acknowledged record is read back exactly once, in offset order."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw
import netns
from clients import wait_until
from cluster import start_cluster, wait_brokers
from test_cluster_faults import network  # noqa: F401  (the namespaces fixture)

NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
OFFSET_OUT_OF_RANGE = 1
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75

# Short timings, set in config rather than slept on: a follower that stops fetching leaves
# the ISR within about two seconds, and fetchers retry every 100 ms.
FAST = {
    "replica.lag.time.max.ms": 2000,
    "replica.fetch.wait.max.ms": 200,
    "replica.fetch.backoff.ms": 100,
}


def metric(node, line_start: str) -> float | None:
    """The value of the first /metrics sample that starts with `line_start` (name and labels)."""
    with urllib.request.urlopen(node.admin_url + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def admin_of(nodes) -> AdminClient:
    return AdminClient({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n.is_alive())})


def create_once_placeable(nodes, new_topic: NewTopic, not_yet: int, what: str) -> None:
    """Creates `new_topic` once the controller can place it: until enough brokers are
    registered and live, it answers `not_yet` (Kafka's code for what the request asks). Right
    after an election the new active controller answers NOT_CONTROLLER until it has written its
    first records; Kafka's admin client retries that, and so does this."""
    admin = admin_of(nodes)

    def created():
        futures = admin.create_topics([new_topic], operation_timeout=10)
        try:
            futures[new_topic.topic].result(timeout=30)
            return True
        except confluent_kafka.KafkaException as e:
            assert e.args[0].code() in (not_yet, confluent_kafka.KafkaError.NOT_CONTROLLER), e
            return False

    wait_until(created, what, timeout_s=60)


def create(nodes, topic: str, partitions: int, replicas: int, configs: dict | None = None) -> None:
    """Creates the topic, once the controller counts enough live brokers for its replicas
    (until then: INVALID_REPLICATION_FACTOR, as Kafka answers)."""
    new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=replicas, config=configs or {})
    create_once_placeable(nodes, new_topic, confluent_kafka.KafkaError.INVALID_REPLICATION_FACTOR, f"{topic} to be created with {replicas} replicas")


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


class KafkaPythonProducer:
    """kafka-python's idempotent producer with acks=all, behind the calls `produce` makes of a
    librdkafka one."""

    def __init__(self, nodes):
        from kafka import KafkaProducer
        self.p = KafkaProducer(
            bootstrap_servers=[n.bootstrap for n in nodes],
            acks="all",
            enable_idempotence=True,
            metadata_max_age_ms=500,
            retry_backoff_ms=50,
            request_timeout_ms=10_000,
            delivery_timeout_ms=120_000,
        )

    def produce(self, topic, value, partition, on_delivery):
        future = self.p.send(topic, value=value, partition=partition)
        future.add_callback(lambda md: on_delivery(None, _Delivered(md.partition, md.offset, value)))
        future.add_errback(lambda e: on_delivery(e, None))

    def poll(self, timeout):
        time.sleep(timeout)
        return 0

    def flush(self, timeout):
        self.p.flush(timeout)
        return 0

    def close(self):
        self.p.close(timeout=10)


class _Delivered:
    def __init__(self, partition, offset, value):
        self._p, self._o, self._v = partition, offset, value

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v


def produce(p, topic: str, values: list[bytes], partitions: int = 1, midway=None) -> list[tuple[int, int, bytes]]:
    """Produces `values` (round-robin over partitions) and answers what was acknowledged:
    (partition, offset, value). With `midway`, calls it once a third of them are acknowledged,
    while the rest are queued or in flight. `p` is a librdkafka producer or a
    KafkaPythonProducer."""
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


@pytest.mark.parametrize("client", ["librdkafka", "kafka-python"])
def test_acks_all_on_three_replicas_survives_killing_each_leader_20_times(broker_factory, client):
    nodes = start_cluster(broker_factory, extra_config=[FAST] * 3)
    wait_brokers(nodes)
    topic, partitions = "replicated", 2
    create(nodes, topic, partitions, 3, {"min.insync.replicas": "2"})
    leader, replicas, isr = partition_state(nodes, topic)
    assert replicas == [1, 2, 3] and isr == [1, 2, 3] and leader in replicas

    p = producer(nodes) if client == "librdkafka" else KafkaPythonProducer(nodes)
    acked = produce(p, topic, [b"r0-%d" % i for i in range(300)], partitions)
    assert len(acked) == 300
    # The leader of each partition in turn.
    rounds, per_round = 20, 600
    for round_ in range(1, rounds + 1):
        partition = round_ % partitions
        leader = partition_state(nodes, topic, partition)[0]
        victim = nodes[leader - 1]
        # Killed while a producer has records in flight to it.
        acked += produce(p, topic, [b"r%d-%d" % (round_, i) for i in range(per_round)], partitions, midway=victim.kill9)
        survivors = [n for n in nodes if n.is_alive()]
        wait_until(lambda: partition_state(survivors, topic, partition)[0] not in (leader, -1), "another replica to lead", timeout_s=60)
        victim.launch()
        victim.wait_ready()
        # The restarted broker copies what it missed and joins the ISR again.
        wait_isr(nodes, topic, [1, 2, 3], partitions)
    assert len(acked) == 300 + rounds * per_round
    check_history(acked, read_all(nodes, topic, partitions, len(acked)))
    if client != "librdkafka":
        p.close()

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
    nodes = start_cluster(broker_factory, count=4, roles=["controller", "broker", "broker", "broker"], extra_config=[FAST] * 4)
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
    # A replica's fetch in a leader epoch this broker has not seen, or beyond the leader's log
    # end, moves nothing either: UNKNOWN_LEADER_EPOCH and OFFSET_OUT_OF_RANGE, as Kafka answers.
    with kw.Connection(nodes[leader - 1].port) as conn:
        [fetched] = kw.parse_fetch_v9(conn.request(kw.fetch_v9_request, topic, 0, 0, current_leader_epoch=1, replica_id=follower))
        assert fetched.error_code == UNKNOWN_LEADER_EPOCH
        [fetched] = kw.parse_fetch_v9(conn.request(kw.fetch_v9_request, topic, 0, 10**9, current_leader_epoch=0, replica_id=follower))
        assert fetched.error_code == OFFSET_OUT_OF_RANGE
    # Nothing was disturbed: writes are still acknowledged by both replicas.
    acked = produce(producer(nodes), topic, [b"x-%d" % i for i in range(50)])
    check_history(acked, read_all(nodes, topic, 1, 50))

    # The follower takes over in epoch 1: a fetch from the old leader in epoch 0 is fenced.
    nodes[leader - 1].kill9()
    survivors = [n for n in nodes if n.is_alive()]
    wait_until(lambda: partition_state(survivors, topic)[0] == follower, "the follower to lead")
    with kw.Connection(nodes[follower - 1].port) as conn:
        [fetched] = kw.parse_fetch_v9(conn.request(kw.fetch_v9_request, topic, 0, 50, current_leader_epoch=0, replica_id=leader))
        assert fetched.error_code == FENCED_LEADER_EPOCH
        [fetched] = kw.parse_fetch_v9(conn.request(kw.fetch_v9_request, topic, 0, 0, current_leader_epoch=-1))
        assert fetched.error_code == 0 and fetched.high_watermark == 50


def test_a_follower_that_stops_fetching_leaves_the_isr_and_rejoins_after(broker_factory):
    # Sessions outlive the pause, so the follower is not fenced: only the leader's lag check
    # (replica.lag.time.max.ms) can take it out of the ISR.
    slow_fencing = {**FAST, "broker.session.timeout.ms": 60_000, "broker.heartbeat.interval.ms": 500}
    nodes = start_cluster(broker_factory, extra_config=[slow_fencing] * 3)
    wait_brokers(nodes)
    topic = "laggard"
    create(nodes, topic, 1, 3, {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3])
    p = producer(nodes)
    acked = produce(p, topic, [b"a-%d" % i for i in range(100)])
    leader = partition_state(nodes, topic)[0]
    follower = next(n for n in nodes if n.node_id != leader)
    os.kill(follower.pid, signal.SIGSTOP)
    try:
        # acks=all goes on: the leader drops the silent follower from the ISR (through the
        # controller) and the two left are enough for min.insync.replicas.
        acked += produce(p, topic, [b"b-%d" % i for i in range(100)])
        assert follower.node_id not in partition_state(nodes, topic)[2]
        labels = f'{{topic="{topic}",partition="0"}}'
        assert metric(nodes[leader - 1], "shardlog_partition_under_replicated" + labels) == 1
        assert metric(nodes[leader - 1], "shardlog_partition_isr_size" + labels) == 2
        assert metric(nodes[leader - 1], 'shardlog_isr_shrinks_total{shard="0"}') >= 1
    finally:
        os.kill(follower.pid, signal.SIGCONT)
    wait_isr(nodes, topic, [1, 2, 3])
    wait_until(lambda: metric(nodes[leader - 1], "shardlog_partition_under_replicated" + labels) == 0, "the leader to count the partition in sync", timeout_s=30)
    assert metric(nodes[leader - 1], 'shardlog_isr_expands_total{shard="0"}') >= 1
    acked += produce(p, topic, [b"c-%d" % i for i in range(100)])
    check_history(acked, read_all(nodes, topic, 1, 300))


def test_a_leader_cut_off_acknowledges_nothing_and_truncates_after_the_heal(broker_factory, network):
    hosts = [network.address(i + 1) for i in range(3)]
    nodes = start_cluster(broker_factory, hosts=hosts, netns=network.nodes, extra_config=[FAST] * 3)
    agents = network.agents
    topic = "partitioned"
    everyone = ",".join(n.bootstrap for n in nodes)

    def created():
        # Refused with INVALID_REPLICATION_FACTOR until the controller has all three brokers
        # registered and unfenced.
        try:
            return agents[0].call("create_topic", timeout_s=30, bootstrap=everyone, name=topic, partitions=1, replication_factor=3,
                                  configs={"min.insync.replicas": "2"}) == "created"
        except netns.AgentError as e:
            assert "INVALID_REPLICATION_FACTOR" in str(e), e
            return False

    wait_until(created, "the topic to be created on three brokers", timeout_s=60)

    def state(agent, bootstrap):
        try:
            return agent.call("partition", timeout_s=10, bootstrap=bootstrap, topic=topic, partition=0)
        except netns.AgentError:
            return None

    wait_until(lambda: (s := state(agents[0], everyone)) and s["isr"] == [1, 2, 3], "the ISR to be whole", timeout_s=60)
    before = agents[0].call("produce", timeout_s=30, bootstrap=everyone, topic=topic, partition=0, values=[f"before-{i}" for i in range(100)])
    assert len(before["acked"]) == 100, before["failed"]
    leader = state(agents[0], everyone)["leader"]
    majority = [i for i in (1, 2, 3) if i != leader]

    network.cut(leader)
    # The cut-off leader may still believe it leads, but its followers cannot copy anything,
    # so it acknowledges no acks=all write (it cannot shrink the ISR without the controller).
    # Not idempotent: an idempotent producer would first need a producer id, which only the
    # controller gives out, and would never send the records.
    isolated = agents[leader - 1].call("produce", timeout_s=6, bootstrap=nodes[leader - 1].bootstrap, topic=topic, partition=0,
                                       values=[f"isolated-{i}" for i in range(20)], idempotent=False)
    assert isolated["acked"] == {}, f"the cut-off leader acknowledged {isolated['acked']}"
    # The majority elects another leader and goes on.
    via, via_bootstrap = agents[majority[0] - 1], ",".join(nodes[i - 1].bootstrap for i in majority)
    wait_until(lambda: (s := state(via, via_bootstrap)) and s["leader"] in majority, "the majority to elect a leader", timeout_s=60)
    during = via.call("produce", timeout_s=60, bootstrap=via_bootstrap, topic=topic, partition=0, values=[f"during-{i}" for i in range(100)])
    assert len(during["acked"]) == 100, during["failed"]

    new_leader = state(via, via_bootstrap)["leader"]
    network.heal(leader)
    # The old leader learns the new epoch, truncates what it alone had, and catches up. Asked
    # of the majority only: the healed broker's own metadata is stale until it catches up.
    wait_until(lambda: (s := state(via, via_bootstrap)) and s == {"leader": new_leader, "isr": [1, 2, 3]}, "the healed broker to rejoin the ISR",
               timeout_s=60)
    read = via.call("read", timeout_s=60, bootstrap=via_bootstrap, topic=topic, partition=0, count=200)
    acked = {**before["acked"], **during["acked"]}
    assert [o for o, _ in read] == list(range(200)), "offsets contiguous from 0"
    assert {v: o for o, v in read} == acked, "every acknowledged write once, where it was acknowledged, and nothing else"
    assert any("follower truncated" in line for line in nodes[leader - 1].log_text().splitlines()), "the old leader truncated its divergent tail"
    for n in nodes:
        n.stop()
    logs = [b"".join(f.read_bytes() for f in sorted((n.data_dir / f"{topic}-0").glob("*.log"))) for n in nodes]
    assert logs[0] == logs[1] == logs[2], "the replicas' logs differ after the heal"


def test_a_follower_behind_the_leaders_log_start_starts_over_there(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[FAST] * 3)
    wait_brokers(nodes)
    topic = "moved-start"
    create(nodes, topic, 1, 3)
    wait_isr(nodes, topic, [1, 2, 3])
    p = producer(nodes)
    acked = produce(p, topic, [b"a-%d" % i for i in range(50)])
    leader = partition_state(nodes, topic)[0]
    follower = next(n for n in nodes if n.node_id != leader)
    follower.kill9()
    wait_isr(nodes, topic, [n.node_id for n in nodes if n is not follower])
    acked += produce(p, topic, [b"b-%d" % i for i in range(50)])
    # The leader's log now starts after everything the stopped follower holds.
    admin = admin_of(nodes)
    [deleted] = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 80)]).values()
    assert deleted.result(timeout=30).low_watermark == 80
    follower.launch()
    follower.wait_ready()
    wait_isr(nodes, topic, [1, 2, 3])
    assert any("its log starts over there" in line for line in follower.log_text().splitlines())
    acked += produce(p, topic, [b"c-%d" % i for i in range(20)])
    # What the follower holds: exactly the records from the leader's new log start on.
    for n in nodes:
        n.stop()
    held = b"".join(f.read_bytes() for f in sorted((follower.data_dir / f"{topic}-0").glob("*.log")))
    # It may hold the start of the batch that offset 80 is in; its log starts at 80 all the same.
    copied = [(offset, value) for offset, _, _, value in kw.decode_uncompressed_records(held) if offset >= 80]
    assert copied == [(o, v) for _, o, v in sorted(acked) if o >= 80]
    checkpoint = (follower.data_dir / f"{topic}-0" / "log-start-offset-checkpoint").read_text()
    assert f"{topic} 0 80" in checkpoint.splitlines(), checkpoint


def test_leadership_returns_to_preferred_replicas_after_a_broker_comes_back(broker_factory):
    # auto.leader.rebalance.enable (Kafka's default), checked every second instead of 300.
    nodes = start_cluster(broker_factory, extra_config=[{**FAST, "leader.imbalance.check.interval.seconds": 1}] * 3)
    wait_brokers(nodes)
    topic, partitions = "balanced", 3
    create(nodes, topic, partitions, 3)
    wait_isr(nodes, topic, [1, 2, 3], partitions)

    def leaders_and_preferred(live):
        md = admin_of(live).list_topics(topic, timeout=10).topics[topic].partitions
        return {p: (md[p].leader, md[p].replicas[0]) for p in range(partitions)}

    preferred = {p: pref for p, (_, pref) in leaders_and_preferred(nodes).items()}
    wait_until(lambda: all(leader == pref for leader, pref in leaders_and_preferred(nodes).values()), "every partition to be led by its preferred replica")
    assert sorted(preferred.values()) == [1, 2, 3]
    p = producer(nodes)
    acked = produce(p, topic, [b"a-%d" % i for i in range(300)], partitions)

    victim = nodes[preferred[0] - 1]
    victim.kill9()
    survivors = [n for n in nodes if n.is_alive()]
    wait_until(lambda: leaders_and_preferred(survivors)[0][0] not in (victim.node_id, -1), "another replica to lead partition 0")
    acked += produce(p, topic, [b"b-%d" % i for i in range(300)], partitions)
    victim.launch()
    victim.wait_ready()
    # Once it is back in every ISR, the controller hands its preferred partition back to it.
    wait_isr(nodes, topic, [1, 2, 3], partitions)
    wait_until(lambda: leaders_and_preferred(nodes) == {p: (pref, pref) for p, pref in preferred.items()}, "leadership to return to the preferred replicas")
    # The controller logs the move once its commit returns, which may be after the brokers that
    # answered the metadata above applied it.
    wait_until(lambda: any("leadership moved back to preferred replicas" in n.run_log() for n in nodes), "the controller to log the preferred-replica move")
    acked += produce(p, topic, [b"c-%d" % i for i in range(300)], partitions)
    check_history(acked, read_all(nodes, topic, partitions, len(acked)))
