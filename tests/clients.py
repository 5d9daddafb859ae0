"""Thin wrappers over the three client implementations the tests use: librdkafka (through
confluent-kafka and the kcat CLI), kafka-python, and aiokafka.

Consumers here assign partitions by hand and start at explicit offsets, so what they read does
not depend on group rebalances (test_groups.py covers groups). Producers run with idempotence
off unless a test is about idempotence, so that delivery reports map one-to-one to appends.

All loops are bounded by a deadline so that a broker that stops answering fails the test
instead of hanging it. The deadlines are generous and never part of what is asserted.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from dataclasses import dataclass

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

CONSUME_DEADLINE_S = 240.0


@dataclass(frozen=True, order=True)
class Rec:
    """A consumed record, comparable across clients and broker restarts."""
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def wait_until(condition, what: str, timeout_s: float = 90.0):
    """Calls condition() every 0.2 s until it returns something true, and returns that; fails the
    test after timeout_s, a generous bound that is never what a test asserts."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# --- librdkafka (confluent-kafka) -----------------------------------------------------------

# librdkafka logs through Python logging, so pytest captures its lines with the test that made
# them (and shows them only on failure) instead of printing reconnect noise after a broker stops.
RDKAFKA_LOGGER = logging.getLogger("librdkafka")


def rdkafka(bootstrap: str, **extra) -> dict:
    """Base librdkafka configuration."""
    return {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOGGER, **extra}


def confluent_producer(bootstrap: str, **overrides) -> confluent_kafka.Producer:
    config = rdkafka(
        bootstrap,
        **{
            "enable.idempotence": False,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "message.timeout.ms": 60_000,
        },
    )
    config.update(overrides)
    return confluent_kafka.Producer(config)


def warm_producer(producer: confluent_kafka.Producer, topic: str, partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Makes the producer learn the topic's partitions and leaders before its first produce().

    Without it, librdkafka parks messages as unassigned until its first metadata answer and then
    moves them to their partition one by one; a flush() under way sends whatever has moved, so a
    test that needs its records in one batch sees that batch split (one CI run got 1 + 7)."""
    wait_for_leaders(producer, topic, partitions, timeout_s)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient(rdkafka(bootstrap))
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=30)
    futures[topic].result(timeout=60)
    wait_for_partitions(bootstrap, topic, partitions)


def wait_for_partitions(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Metadata converges right after CreateTopics; wait until every partition has a leader."""
    wait_for_leaders(AdminClient(rdkafka(bootstrap)), topic, partitions, timeout_s)


def wait_for_leaders(client, topic: str, partitions: int, timeout_s: float) -> None:
    """Until `client`'s (an admin client's or a producer's) metadata names `partitions` partitions
    of `topic`, each with a leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        md = client.list_topics(topic=topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions and all(p.leader >= 0 for p in md.partitions.values()):
            return
        assert time.monotonic() < deadline, f"topic {topic} did not get {partitions} partitions with leaders: {md}"
        time.sleep(0.1)


def confluent_consume(bootstrap: str, topic: str, end_offsets: dict[int, int], **extra) -> list[Rec]:
    """Reads every partition from offset 0 up to end_offsets[partition]."""
    consumer = confluent_kafka.Consumer(rdkafka(
        bootstrap,
        **{
            "group.id": "e2e-unused",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.max.bytes": 8 << 20,
            **extra,
        },
    ))
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in end_offsets])
        out: list[Rec] = []
        position = {p: 0 for p in end_offsets}
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while any(position[p] < end for p, end in end_offsets.items()):
            assert time.monotonic() < deadline, f"confluent consumer stuck at {position}, want {end_offsets}"
            for m in consumer.consume(num_messages=10_000, timeout=1.0):
                if m.error():
                    raise AssertionError(f"consumer error: {m.error()}")
                if m.offset() >= end_offsets[m.partition()]:
                    continue
                out.append(Rec(m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1]))
                position[m.partition()] = m.offset() + 1
        return out
    finally:
        consumer.close()


def confluent_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    consumer = confluent_kafka.Consumer(rdkafka(bootstrap, **{"group.id": "e2e-unused", "enable.auto.commit": False}))
    try:
        return {p: consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=30) for p in range(partitions)}
    finally:
        consumer.close()


# --- kafka-python ---------------------------------------------------------------------------

def kafka_python_consume(bootstrap: str, topic: str, partitions: int) -> list[Rec]:
    """Reads every partition from the beginning to its end offset (asked for first)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=8 << 20,
        max_partition_fetch_bytes=4 << 20,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        position = {p: 0 for p in range(partitions)}
        out: list[Rec] = []
        deadline = time.monotonic() + CONSUME_DEADLINE_S
        while any(position[p] < end[p] for p in end):
            assert time.monotonic() < deadline, f"kafka-python consumer stuck at {position}, want {end}"
            for tp, records in consumer.poll(timeout_ms=1000, max_records=50_000).items():
                for r in records:
                    out.append(Rec(r.partition, r.offset, r.key, r.value, r.timestamp))
                    position[r.partition] = r.offset + 1
        return out
    finally:
        consumer.close()


def kafka_python_producer(bootstrap: str, **overrides):
    from kafka import KafkaProducer

    # kafka-python 3 turns idempotence on by default, like the Java client; off here, as for
    # librdkafka (see the module docstring).
    config = {"bootstrap_servers": bootstrap, "acks": "all", "linger_ms": 5, "enable_idempotence": False}
    config.update(overrides)
    return KafkaProducer(**config)


# --- aiokafka -------------------------------------------------------------------------------

async def _aiokafka_consume(bootstrap: str, topic: str, partitions: int) -> list[Rec]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=8 << 20,
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        position = {p: 0 for p in range(partitions)}
        out: list[Rec] = []
        while any(position[p] < end[p] for p in end):
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).items():
                for r in records:
                    out.append(Rec(r.partition, r.offset, r.key, r.value, r.timestamp))
                    position[r.partition] = r.offset + 1
        return out
    finally:
        await consumer.stop()


def aiokafka_consume(bootstrap: str, topic: str, partitions: int) -> list[Rec]:
    return asyncio.run(asyncio.wait_for(_aiokafka_consume(bootstrap, topic, partitions), CONSUME_DEADLINE_S))


# --- kcat -----------------------------------------------------------------------------------

def kcat(*args: str, stdin: bytes | None = None, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=timeout_s)
