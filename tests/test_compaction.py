"""Compaction (cleanup.policy=compact): the sealed segments keep only the latest record of each
key, tombstones go after delete.retention.ms, offsets never change, and the result survives a
restart. The active segment is never compacted, as in Kafka.

Nothing here asserts on wall-clock time: the test waits (with a generous bound) until the
sealed part of the log has one record per key, then asserts on what it holds."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

import clients
import kafkawire as kw

WAIT_S = 90.0
KEYS = 10
ROUNDS = 20
TOMBSTONE_ROUND = 5  # k0 is deleted in this round and never written again


def latest(port: int, topic: str) -> int:
    with kw.Connection(port) as conn:
        [(_, _, error, _, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, 0, -1))
    assert error == 0
    return offset


def active_segment_base(broker, topic: str) -> int:
    return max(int(p.name.removesuffix(".log")) for p in (Path(broker.data_dir) / f"{topic}-0").glob("*.log"))


def test_compaction_keeps_the_latest_record_of_each_key(broker_factory):
    broker = broker_factory(config={"log.retention.check.interval.ms": "200"})
    topic = "compacted"
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    config = {"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(timeout=60)
    clients.wait_for_partitions(broker.bootstrap, topic, 1)

    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0, "batch.size": 1000})
    expected: dict[bytes, bytes | None] = {}
    for round in range(ROUNDS):
        for k in range(KEYS):
            key = f"k{k}".encode()
            if k == 0 and round > TOMBSTONE_ROUND:
                continue
            value = None if (k == 0 and round == TOMBSTONE_ROUND) else f"v{round}-{k}".encode()
            producer.produce(topic, key=key, value=value)
            expected[key] = value
        producer.flush(60)
    assert producer.flush(60) == 0
    end = latest(broker.port, topic)
    produced = end

    def compacted():
        records = clients.confluent_consume(broker.bootstrap, topic, {0: end})
        sealed_keys = [r.key for r in records if r.offset < active_segment_base(broker, topic)]
        done = len(sealed_keys) == len(set(sealed_keys)) and b"k0" not in sealed_keys
        return records if done else None

    deadline = time.monotonic() + WAIT_S
    while (records := compacted()) is None:
        assert time.monotonic() < deadline, "the sealed segments were not compacted"
        time.sleep(0.5)

    # Offsets never change: the log still ends where it did, and what is left is in order.
    assert latest(broker.port, topic) == end
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert len(records) < produced
    from test_retention import metric

    assert metric(broker, "shardlog_partition_records_compacted_total", topic) >= produced - len(records)
    # Reading the whole log still gives every key's latest value, and k0 stays deleted.
    final: dict[bytes, bytes | None] = {}
    for r in records:
        final[r.key] = r.value
    assert {k: v for k, v in final.items() if v is not None} == {k: v for k, v in expected.items() if v is not None}
    assert b"k0" not in final

    broker.restart()
    assert clients.confluent_consume(broker.bootstrap, topic, {0: end}) == records
