"""Committed offsets are durable once the commit is acknowledged, and go away with their topic.

A group member (librdkafka, or kafka-python) commits offsets with metadata synchronously; the
broker is restarted cleanly (SIGTERM), the member commits other offsets, and the broker is
killed with SIGKILL the moment that commit returns. After each restart both clients read the
committed offsets back (OffsetFetch), and a new member of the group resumes from them.
"""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

import clients

PARTITIONS = 4
PER_PARTITION = 100
DEADLINE_S = 60.0  # bounds a hang; never asserted on
FIRST = {0: 10, 1: 25, 2: PER_PARTITION, 3: 0}
SECOND = {0: 50, 1: 61, 2: 72, 3: 99}


def produce(bootstrap: str, topic: str) -> None:
    producer = clients.confluent_producer(bootstrap)
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(60) == 0


def metadata_for(round_name: str, p: int) -> str:
    return f"{round_name}/partition-{p}"


# --- committing as a group member -------------------------------------------------------------

class ConfluentMember:
    def __init__(self, bootstrap: str, topic: str, group: str, kip848: bool = False):
        self.topic = topic
        # Under KIP-848 session and heartbeat settings are the coordinator's; librdkafka refuses them.
        timeouts = {} if kip848 else {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        self.consumer = confluent_kafka.Consumer(clients.rdkafka(
            bootstrap,
            **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest", **timeouts},
            **({"group.protocol": "consumer"} if kip848 else {}),
        ))
        self.consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_S
        while len(self.consumer.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, f"the member got {self.consumer.assignment()}, not all {PARTITIONS} partitions"
            self.consumer.poll(0.2)

    def commit(self, offsets: dict[int, int], round_name: str) -> None:
        tps = [confluent_kafka.TopicPartition(self.topic, p, o, metadata_for(round_name, p)) for p, o in offsets.items()]
        result = self.consumer.commit(offsets=tps, asynchronous=False)
        assert all(tp.error is None for tp in result), [tp.error for tp in result]

    def close(self) -> None:
        self.consumer.close()


class KafkaPythonMember:
    def __init__(self, bootstrap: str, topic: str, group: str):
        from kafka import KafkaConsumer

        self.topic = topic
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        deadline = time.monotonic() + DEADLINE_S
        while len(self.consumer.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, f"the member got {self.consumer.assignment()}, not all {PARTITIONS} partitions"
            self.consumer.poll(timeout_ms=200)

    def commit(self, offsets: dict[int, int], round_name: str) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        # Synchronous: returns once the broker acknowledged the commit, raises otherwise.
        self.consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, metadata_for(round_name, p), -1) for p, o in offsets.items()})

    def close(self) -> None:
        self.consumer.close()


MEMBERS = {"confluent": ConfluentMember, "kafka-python": KafkaPythonMember}


# --- reading them back (OffsetFetch, from outside the group) ----------------------------------

def committed_confluent(bootstrap: str, topic: str, group: str) -> dict[int, tuple[int, str]]:
    c = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        tps = c.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    finally:
        c.close()
    for tp in tps:
        assert tp.error is None, tp.error
    return {tp.partition: (tp.offset, tp.metadata) for tp in tps}


def committed_kafka_python(bootstrap: str, topic: str, group: str) -> dict[int, tuple[int, str]]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        out = {}
        for p in range(PARTITIONS):
            om = c.committed(TopicPartition(topic, p), metadata=True)
            assert om is not None, f"kafka-python sees no committed offset for partition {p}"
            # confluent-kafka sends the C string's NUL terminator as part of the metadata (the
            # broker returns what it was sent; librdkafka's reader drops it again).
            out[p] = (om.offset, om.metadata.rstrip("\x00"))
        return out
    finally:
        c.close()


def assert_committed(bootstrap: str, topic: str, group: str, offsets: dict[int, int], round_name: str, when: str) -> None:
    want = {p: (o, metadata_for(round_name, p)) for p, o in offsets.items()}
    assert committed_confluent(bootstrap, topic, group) == want, f"librdkafka reads other committed offsets {when}"
    assert committed_kafka_python(bootstrap, topic, group) == want, f"kafka-python reads other committed offsets {when}"


def resume_reads(bootstrap: str, topic: str, group: str) -> dict[int, list[int]]:
    """A new member of the group reads from the committed offsets to the end: {partition: offsets}."""
    c = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    try:
        got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + DEADLINE_S
        quiet_polls = 0
        # Read until every partition reached its end and a few more polls bring nothing.
        while quiet_polls < 5 or not c.assignment():
            assert time.monotonic() < deadline, f"the resuming member read {got}"
            messages = c.consume(num_messages=1000, timeout=0.3)
            for m in messages:
                assert not m.error(), m.error()
                got[m.partition()].append(m.offset())
            done = all(not got[p] or got[p][-1] == PER_PARTITION - 1 for p in range(PARTITIONS))
            quiet_polls = quiet_polls + 1 if not messages and c.assignment() and done else 0
        return got
    finally:
        c.close()


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_committed_offsets_survive_restart_and_kill9(broker_factory, client):
    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    topic = f"durable-offsets-{client}"
    group = f"durable-{client}"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(broker.bootstrap, topic)

    member = MEMBERS[client](broker.bootstrap, topic, group)
    try:
        member.commit(FIRST, "first")
        assert_committed(broker.bootstrap, topic, group, FIRST, "first", "right after the commit")

        broker.restart()
        assert_committed(broker.bootstrap, topic, group, FIRST, "first", "after a clean restart")
    finally:
        member.close()

    # A new member (the old one's membership ended with the restart) commits other offsets, and
    # the broker dies the moment the commit is acknowledged.
    member = MEMBERS[client](broker.bootstrap, topic, group)
    try:
        member.commit(SECOND, "second")
        broker.kill9()
        broker.start()
        assert_committed(broker.bootstrap, topic, group, SECOND, "second", "after kill -9 right after the commit")
    finally:
        member.close()

    got = resume_reads(broker.bootstrap, topic, group)
    want = {p: list(range(SECOND[p], PER_PARTITION)) for p in range(PARTITIONS)}
    assert got == want, "a new member did not resume exactly from the committed offsets"


def test_deleting_a_topic_deletes_its_committed_offsets(broker_factory):
    """Kafka drops a group's committed offsets for the partitions of a deleted topic. If they
    stayed, a group would resume a re-created topic of the same name at the old offsets and
    silently skip the new topic's first records."""
    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    topic = "recreated"
    group = "recreated-reader"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(broker.bootstrap, topic)
    member = ConfluentMember(broker.bootstrap, topic, group)
    try:
        member.commit({p: PER_PARTITION for p in range(PARTITIONS)}, "old-topic")
    finally:
        member.close()
    assert {p: o for p, (o, _) in committed_confluent(broker.bootstrap, topic, group).items()} == {p: PER_PARTITION for p in range(PARTITIONS)}

    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.delete_topics([topic], operation_timeout=30)[topic].result(timeout=60)
    deadline = time.monotonic() + DEADLINE_S
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"topic {topic} still listed after DeleteTopics"
        time.sleep(0.1)
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(broker.bootstrap, topic)  # as many records as before, from offset 0 again

    none = {p: (confluent_kafka.OFFSET_INVALID, "") for p in range(PARTITIONS)}
    got = {p: (o, m or "") for p, (o, m) in committed_confluent(broker.bootstrap, topic, group).items()}
    assert got == none, f"committed offsets of the deleted topic apply to the new one: {got}"
    broker.restart()
    got = {p: (o, m or "") for p, (o, m) in committed_confluent(broker.bootstrap, topic, group).items()}
    assert got == none, f"after a restart, committed offsets of the deleted topic are back: {got}"
    assert resume_reads(broker.bootstrap, topic, group) == {p: list(range(PER_PARTITION)) for p in range(PARTITIONS)}, "the group skipped records of the re-created topic"


def test_offsets_expire_retention_after_the_group_becomes_empty(broker_factory):
    """offsets.retention.minutes, as Kafka applies it since KIP-211 (2.1): offsets of a
    standalone committer expire that long after their commit; a group with members (classic, or
    KIP-848) keeps its offsets however old they are, and once it becomes empty they expire that
    long after that moment, not after the commit. (One minute is the smallest retention there
    is, so this test takes a little over a minute.)"""
    retention_s = 60
    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0, "offsets.retention.minutes": retention_s // 60, "offsets.retention.check.interval.ms": 200})
    topic = "retention"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce(broker.bootstrap, topic)

    # The groups commit first, the standalone committer last: when its offsets expire, theirs
    # are older than the retention too.
    members = {"retention-classic": ConfluentMember(broker.bootstrap, topic, "retention-classic"), "retention-kip848": ConfluentMember(broker.bootstrap, topic, "retention-kip848", kip848=True)}
    open_members = dict(members)
    try:
        for group, member in members.items():
            member.commit(SECOND, group)
        want = {group: {p: (o, metadata_for(group, p)) for p, o in SECOND.items()} for group in members}
        standalone = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "retention-standalone", "enable.auto.commit": False}))
        standalone_committed_at = time.monotonic()  # just before: the broker stamps the commit later
        standalone.commit(offsets=[confluent_kafka.TopicPartition(topic, p, 5) for p in range(PARTITIONS)], asynchronous=False)
        standalone.close()
        assert {p: o for p, (o, _) in committed_confluent(broker.bootstrap, topic, "retention-standalone").items()} == {p: 5 for p in range(PARTITIONS)}

        # The standalone offsets expire, the live groups' stay: keep the members polling, with no
        # new commit, until the standalone offsets are gone (at least the retention after the
        # commit; the deadline only bounds a hang).
        deadline = standalone_committed_at + retention_s + DEADLINE_S
        while True:
            for member in members.values():
                member.consumer.poll(0.2)
            standalone_left = committed_confluent(broker.bootstrap, topic, "retention-standalone")
            if all(o == confluent_kafka.OFFSET_INVALID for o, _ in standalone_left.values()):
                break
            assert time.monotonic() < deadline, f"standalone offsets never expired: {standalone_left}"
        assert time.monotonic() - standalone_committed_at >= retention_s, "the standalone offsets expired before the retention time"
        # Both checks below run whatever the first finds, so that one run reports every case.
        problems = []
        for group in members:
            got = committed_confluent(broker.bootstrap, topic, group)
            if got != want[group]:
                problems.append(f"the offsets of {group}, a group with a live member, expired: {got}")

        # Now the groups become empty: their offsets, committed more than the retention ago, get
        # the retention from this moment on. Let many retention checks run.
        for group in members:
            open_members.pop(group).close()
        time.sleep(3)
        for group in members:
            got = committed_confluent(broker.bootstrap, topic, group)
            if got != want[group] and not any(group in p for p in problems):
                problems.append(f"the offsets of {group} expired as soon as it became empty (retention counted from the commit, not from then): {got}")
        assert not problems, "\n".join(problems)
    finally:
        for member in open_members.values():
            member.close()
