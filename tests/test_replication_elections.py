"""Leadership and the high watermark across failures (issue #15) on real shardlog processes.
Unclean leader election: a partition whose every
in-sync replica is down stays without a leader, unless its topic sets
`unclean.leader.election.enable=true`; then the controller elects a live replica from outside
the ISR by itself, as Kafka's does, and what only the old ISR held is lost (the trade the
setting makes). The old leader, back, truncates what the new one does not have. And Kafka's
`replication-offset-checkpoint`: a restarted replica starts at the high watermark it
checkpointed, not at its log start."""

from __future__ import annotations

import os
import signal

from clients import wait_until
from cluster import start_cluster, wait_brokers
from test_replication import FAST, check_history, metric, partition_state, produce, producer, read_all, wait_isr
from test_replication_reassignment import create_on


def test_only_a_topic_that_allows_it_gets_a_leader_from_outside_the_isr(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[FAST] * 3)
    wait_brokers(nodes)
    # Two replicas each, on brokers 2 (leader) and 3; broker 1 keeps the quorum's majority.
    create_on(nodes, "unclean", [[2, 3]], {"unclean.leader.election.enable": "true"})
    create_on(nodes, "clean", [[2, 3]])
    for topic in ("unclean", "clean"):
        wait_isr(nodes, topic, [2, 3])
    p = producer(nodes)
    acked = {topic: produce(p, topic, [b"%s-a-%d" % (topic.encode(), i) for i in range(100)]) for topic in ("unclean", "clean")}

    # Broker 3 goes: the ISR shrinks to broker 2, which acknowledges more on its own.
    nodes[2].kill9()
    for topic in ("unclean", "clean"):
        wait_isr(nodes, topic, [2])
        produce(p, topic, [b"%s-b-%d" % (topic.encode(), i) for i in range(100)])
    # Broker 2 goes too: nothing in sync is live. Broker 3 comes back, out of sync.
    nodes[1].kill9()
    nodes[2].launch()
    nodes[2].wait_ready()
    survivors = [nodes[0], nodes[2]]
    wait_until(lambda: partition_state(survivors, "unclean")[0] == 3, "broker 3 to be elected, uncleanly")
    assert partition_state(survivors, "unclean")[2] == [3], "the unclean leader is the whole ISR"
    assert partition_state(survivors, "clean")[0] == -1, "a topic that does not allow it stays without a leader"
    assert any("leaders elected outside the ISR" in n.log_text() for n in survivors), "the controller says what it did"

    # The new leader has what it had: the first 100; the 100 only broker 2 held are gone.
    acked["unclean"] += produce(producer(survivors), "unclean", [b"unclean-c-%d" % i for i in range(50)])
    got = read_all(survivors, "unclean", 1, 150)
    assert [v for _, v in got[0][:100]] == [v for _, _, v in acked["unclean"][:100]]
    check_history(acked["unclean"], got)

    # Broker 2 back: it truncates its divergent tail and follows; the clean topic gets its
    # leader (broker 2, its ISR) back with everything.
    nodes[1].launch()
    nodes[1].wait_ready()
    wait_isr(nodes, "unclean", [2, 3])
    wait_until(lambda: partition_state(nodes, "clean")[0] == 2, "the clean topic's ISR member to lead again")
    check_history(acked["unclean"], read_all(nodes, "unclean", 1, 150))
    assert len(read_all(nodes, "clean", 1, 200)[0]) == 200


def test_a_restarted_replica_starts_at_its_checkpointed_high_watermark(broker_factory):
    # Sessions and lag times outlive the test, so a paused leader stays leader and in the ISR.
    slow = {**FAST, "broker.session.timeout.ms": 60_000, "broker.heartbeat.interval.ms": 500, "replica.lag.time.max.ms": 60_000,
            "replica.high.watermark.checkpoint.interval.ms": 200}
    nodes = start_cluster(broker_factory, count=4, roles=["controller", "broker", "broker", "broker"], extra_config=[slow] * 4)
    wait_brokers(nodes)
    brokers = nodes[1:]
    topic = "checkpointed"
    create_on(brokers, topic, [[2, 3]])
    wait_isr(brokers, topic, [2, 3])
    acked = produce(producer(brokers), topic, [b"r-%d" % i for i in range(100)])
    follower = nodes[2]  # broker 3
    checkpoint = follower.data_dir / "replication-offset-checkpoint"
    # Kafka's format: version 0, the count, then "topic partition high-watermark" lines.
    wait_until(lambda: checkpoint.exists() and f"{topic} 0 100" in checkpoint.read_text().splitlines(), "broker 3 to checkpoint the high watermark")
    assert checkpoint.read_text().splitlines()[0] == "0"

    # The leader paused, broker 3 restarts: it cannot hear the high watermark from the leader,
    # and starts at the one it checkpointed instead of its log start.
    leader = nodes[1]
    os.kill(leader.pid, signal.SIGSTOP)
    try:
        follower.kill9()
        follower.launch()
        follower.wait_ready()
        labels = f'{{topic="{topic}",partition="0"}}'
        wait_until(lambda: metric(follower, "shardlog_partition_log_end_offset" + labels) == 100, "broker 3 to open its copy")
        assert metric(follower, "shardlog_partition_high_watermark" + labels) == 100
    finally:
        os.kill(leader.pid, signal.SIGCONT)
    wait_isr(brokers, topic, [2, 3])
    check_history(acked, read_all(brokers, topic, 1, 100))
