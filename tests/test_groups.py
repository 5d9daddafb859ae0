"""Consumer groups (classic protocol) with real clients: subscribe, partition assignment across
members, committed offsets that survive a restart, and one client reading what another
committed."""

from __future__ import annotations

import asyncio
import time

import confluent_kafka
from confluent_kafka.admin import AdminClient

import clients

GROUP_DEADLINE_S = 120.0  # joins and rebalances take a few seconds; this only bounds a hang
PARTITIONS = 4


def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> dict[bytes, tuple[int, int]]:
    producer = clients.confluent_producer(bootstrap)
    where: dict[bytes, tuple[int, int]] = {}

    def on_delivery(err, msg):
        assert err is None, err
        where[msg.value()] = (msg.partition(), msg.offset())

    for v in values:
        producer.produce(topic, key=v, value=v, on_delivery=on_delivery)
    assert producer.flush(60) == 0
    assert len(where) == len(values)
    return where


def end_offsets(where: dict[bytes, tuple[int, int]]) -> dict[int, int]:
    ends = {p: 0 for p in range(PARTITIONS)}
    for p, o in where.values():
        ends[p] = max(ends[p], o + 1)
    return ends


def kafka_python_group_consumer(bootstrap: str, topic: str, group: str):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    return consumer


def poll_until(consumer, want: int) -> list:
    got = []
    deadline = time.monotonic() + GROUP_DEADLINE_S
    while len(got) < want:
        assert time.monotonic() < deadline, f"group consumer got {len(got)} of {want} records"
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def test_group_commit_resume_after_restart_kafka_python(broker):
    from kafka import TopicPartition

    topic = "groups-resume"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    first = produce_values(broker.bootstrap, topic, [f"first-{i}".encode() for i in range(400)])

    consumer = kafka_python_group_consumer(broker.bootstrap, topic, "resume")
    got = poll_until(consumer, len(first))
    assert sorted(r.value for r in got) == sorted(first), "the group consumer did not read each record once"
    assert {r.value: (r.partition, r.offset) for r in got} == first
    consumer.commit()
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    assert {tp.partition: consumer.committed(tp) for tp in tps} == end_offsets(first)
    consumer.close()

    # Committed offsets are durable: a restart keeps them.
    broker.restart()
    second = produce_values(broker.bootstrap, topic, [f"second-{i}".encode() for i in range(100)])
    consumer = kafka_python_group_consumer(broker.bootstrap, topic, "resume")
    got = poll_until(consumer, len(second))
    # Let a few more polls show nothing old comes back.
    for _ in range(3):
        for records in consumer.poll(timeout_ms=300).values():
            got.extend(records)
    consumer.close()
    assert sorted(r.value for r in got) == sorted(second), "after a restart the group resumed somewhere else than its committed offsets"


def test_two_confluent_members_split_partitions(broker):
    topic = "groups-split"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    where = produce_values(broker.bootstrap, topic, [f"v-{i}".encode() for i in range(800)])

    def member():
        c = confluent_kafka.Consumer(clients.rdkafka(
            broker.bootstrap,
            **{
                "group.id": "split",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 500,
            },
        ))
        c.subscribe([topic])
        return c

    a, b = member(), member()
    try:
        got: dict[str, list] = {"a": [], "b": []}
        deadline = time.monotonic() + GROUP_DEADLINE_S
        # Poll both until both hold partitions and together they read every record.
        while True:
            for name, c in (("a", a), ("b", b)):
                for m in c.consume(num_messages=500, timeout=0.2):
                    assert not m.error(), m.error()
                    got[name].append((m.partition(), m.offset(), m.value()))
            assigned_a = {tp.partition for tp in a.assignment()}
            assigned_b = {tp.partition for tp in b.assignment()}
            if assigned_a and assigned_b and len(got["a"]) + len(got["b"]) >= len(where):
                # Hold still for a moment in case a record arrived twice.
                if all(not c.consume(num_messages=500, timeout=0.3) for c in (a, b)):
                    break
            assert time.monotonic() < deadline, f"group did not settle: a={sorted(assigned_a)} b={sorted(assigned_b)} read {len(got['a'])}+{len(got['b'])}"
        assert not assigned_a & assigned_b, f"partitions assigned to both members: {assigned_a & assigned_b}"
        assert assigned_a | assigned_b == set(range(PARTITIONS))
        # A member may have read a partition before a rebalance moved it; without commits the
        # next owner reads it again from the start. What each member holds now it read in full.
        by_value = {}
        for name in ("a", "b"):
            for p, o, v in got[name]:
                assert where[v] == (p, o), f"{v!r} read at {(p, o)}, produced at {where[v]}"
                by_value.setdefault(v, set()).add(name)
        assert set(by_value) == set(where), f"{len(set(where) - set(by_value))} records never read by the group"
    finally:
        a.close()
        b.close()


def test_offsets_committed_by_aiokafka_are_seen_by_librdkafka_and_admin(broker):
    from aiokafka import AIOKafkaConsumer

    topic = "groups-cross-client"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    where = produce_values(broker.bootstrap, topic, [f"x-{i}".encode() for i in range(200)])
    ends = end_offsets(where)

    async def consume_and_commit():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="cross", enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            seen = []
            while len(seen) < len(where):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen.extend(records)
            await consumer.commit()
            return seen
        finally:
            await consumer.stop()

    seen = asyncio.run(asyncio.wait_for(consume_and_commit(), GROUP_DEADLINE_S))
    assert sorted(r.value for r in seen) == sorted(where)

    consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "cross", "enable.auto.commit": False}))
    try:
        committed = consumer.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    finally:
        consumer.close()
    assert {tp.partition: tp.offset for tp in committed} == ends

    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    groups = admin.list_consumer_groups(request_timeout=30).result(timeout=60)
    assert "cross" in {g.group_id for g in groups.valid}, groups.valid
