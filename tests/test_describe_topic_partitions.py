"""DescribeTopicPartitions (API 75, KIP-966), which Kafka 4's admin client prefers for
describing topics: topics sorted by name, pages of at most ResponsePartitionLimit partitions
with a cursor to the next page, Kafka's errors, and offline replicas once a broker is fenced.
No Python client sends it, so the requests go over a raw socket (kafkawire)."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw
from clients import wait_until
from cluster import start_cluster, wait_brokers


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()], operation_timeout=10)
    for f in futures.values():
        f.result(timeout=30)


def describe(port: int, topics: list[str], limit: int, cursor: tuple[str, int] | None = None):
    with kw.Connection(port) as conn:
        return kw.parse_describe_topic_partitions_v0(conn.request(kw.describe_topic_partitions_v0_request, topics, limit, cursor))


def pages(port: int, topics: list[str], limit: int) -> list[list[tuple[str, list[int]]]]:
    """Every page until the cursor runs out, as [(topic, partition indexes)] per page."""
    out, cursor = [], None
    while True:
        described, cursor = describe(port, topics, limit, cursor)
        assert all(t.error_code == kw.NONE for t in described), described
        out.append([(t.name, [p.index for p in t.partitions]) for t in described])
        if cursor is None:
            return out
        assert len(out) < 20, "the cursor does not advance"


def test_topics_come_sorted_and_paged_by_the_partition_limit(broker):
    create_topics(broker.bootstrap, {"dtp-b": 3, "dtp-a": 2, "dtp-c": 1})
    names = ["dtp-c", "dtp-a", "dtp-b"]

    described, cursor = describe(broker.port, names, 2000)
    assert cursor is None
    assert [(t.name, [p.index for p in t.partitions]) for t in described] == [("dtp-a", [0, 1]), ("dtp-b", [0, 1, 2]), ("dtp-c", [0])]
    for t in described:
        assert t.topic_id != bytes(16) and not t.is_internal
        assert t.authorized_operations > 0, "topic authorized operations are always computed in this API"
        for p in t.partitions:
            assert (p.error_code, p.leader, p.replicas, p.isr, p.offline) == (kw.NONE, 1, [1], [1], []), p
            # Empty, not null, as Kafka answers: Kafka's admin client (kafka-topics.sh
            # --describe) streams over both without a null check.
            assert (p.elr, p.last_known_elr) == ([], []), p

    # A page ends inside a topic (the cursor names its next partition) or at a topic's end (the
    # cursor names the next topic's partition 0); together the pages are the whole answer.
    assert pages(broker.port, names, 4) == [[("dtp-a", [0, 1]), ("dtp-b", [0, 1])], [("dtp-b", [2]), ("dtp-c", [0])]]
    assert pages(broker.port, names, 2) == [[("dtp-a", [0, 1])], [("dtp-b", [0, 1])], [("dtp-b", [2]), ("dtp-c", [0])]]
    assert describe(broker.port, names, 2)[1] == ("dtp-b", 0)
    assert pages(broker.port, names, 1) == [[("dtp-a", [0])], [("dtp-a", [1])], [("dtp-b", [0])], [("dtp-b", [1])], [("dtp-b", [2])], [("dtp-c", [0])]]

    # No topics named: every topic, sorted, from the cursor on.
    described, _ = describe(broker.port, [], 2000, ("dtp-b", 1))
    assert [(t.name, [p.index for p in t.partitions]) for t in described][:2] == [("dtp-b", [1, 2]), ("dtp-c", [0])]
    assert all(t.name >= "dtp-b" for t in described)


def test_unknown_topics_and_bad_cursors_get_kafkas_errors(broker):
    create_topics(broker.bootstrap, {"dtp-known": 2})
    described, cursor = describe(broker.port, ["dtp-known", "dtp-missing", "bad/name"], 2000)
    assert cursor is None
    codes = {t.name: t.error_code for t in described}
    assert codes == {"dtp-known": kw.NONE, "dtp-missing": kw.UNKNOWN_TOPIC_OR_PARTITION, "bad/name": kw.INVALID_TOPIC_EXCEPTION}
    missing = next(t for t in described if t.name == "dtp-missing")
    assert missing.topic_id == bytes(16) and missing.partitions == []

    # The cursor's topic must be among those named.
    described, cursor = describe(broker.port, ["dtp-known"], 2000, ("dtp-other", 0))
    assert [(t.name, t.error_code) for t in described] == [("dtp-known", kw.INVALID_REQUEST)] and cursor is None
    # A cursor past the topic's last partition describes nothing of it.
    described, cursor = describe(broker.port, ["dtp-known"], 2000, ("dtp-known", 5))
    assert [(t.name, t.partitions) for t in described] == [("dtp-known", [])] and cursor is None


@pytest.mark.parametrize("presence", [0, 2])
def test_a_cursor_presence_byte_no_decoder_agrees_on_closes_the_connection(broker, presence):
    since = len(broker.log_text())
    with kw.Connection(broker.port) as conn:
        conn.send(kw.describe_topic_partitions_v0_request(conn.correlation_id(), [], 10, ("t", 0), cursor_presence=presence))
        with pytest.raises((kw.Closed, ConnectionResetError)):
            conn.recv_frame()
    broker.wait_for_log(r"malformed request", since)
    # The broker goes on serving.
    described, cursor = describe(broker.port, [], 2000)
    assert cursor is None and all(t.error_code == kw.NONE for t in described)


def test_a_fenced_brokers_replicas_are_offline(broker_factory):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    create_topics(nodes[0].bootstrap, {"dtp-spread": 6})

    def all_led():
        # Committed by the controller when answered; node 0 applies it a moment later.
        described, _ = describe(nodes[0].port, ["dtp-spread"], 2000)
        partitions = described[0].partitions
        return described if len(partitions) == 6 and all(p.leader >= 0 for p in partitions) else None

    described = wait_until(all_led, "node 0 to describe dtp-spread's 6 partitions with leaders", timeout_s=30)
    owners = {p.index: p.replicas[0] for p in described[0].partitions}
    assert set(owners.values()) == {1, 2, 3}, owners
    assert all(p.offline == [] and p.leader == owners[p.index] for p in described[0].partitions)

    victim = next(n for n in nodes[1:] if n.node_id in owners.values())
    victim.kill9()

    def victim_offline():
        described, _ = describe(nodes[0].port, ["dtp-spread"], 2000)
        theirs = [p for p in described[0].partitions if owners[p.index] == victim.node_id]
        return theirs if all(p.offline == [victim.node_id] and p.leader == -1 for p in theirs) else None

    theirs = wait_until(victim_offline, f"node {victim.node_id}'s replicas to show offline", timeout_s=60)
    assert theirs
    described, _ = describe(nodes[0].port, ["dtp-spread"], 2000)
    for p in described[0].partitions:
        if owners[p.index] != victim.node_id:
            assert p.offline == [] and p.leader == owners[p.index], p
