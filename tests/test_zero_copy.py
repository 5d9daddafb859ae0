"""Reads from segment files go out with sendfile (zero copy).

The broker counts sendfile calls and bytes per shard and logs them in its `shard stopped` line
at clean shutdown. Data that is not in the in-memory tail cache must be served that way, so
reading a few MB back must show at least that many sendfile bytes.
"""

from __future__ import annotations

import os

import clients
from conftest import shard_cores, shard_stopped_totals

SHARDS = len(shard_cores().split(","))

PARTITIONS = 2
RECORDS = 6_000
VALUE_BYTES = 1_000  # random, so neither producer nor broker could shrink it
PAYLOAD_BYTES = RECORDS * VALUE_BYTES


def produce_payload(bootstrap: str, topic: str) -> dict[tuple[int, int], bytes]:
    producer = clients.confluent_producer(bootstrap, **{"compression.type": "none"})
    acked: dict[tuple[int, int], bytes] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[(msg.partition(), msg.offset())] = msg.value()

    for i in range(RECORDS):
        producer.produce(topic, key=str(i).encode(), value=os.urandom(VALUE_BYTES), on_delivery=on_delivery)
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    assert len(acked) == RECORDS
    return acked


def read_back(broker, topic: str, acked: dict[tuple[int, int], bytes]) -> int:
    end = {p: 1 + max(o for q, o in acked if q == p) for p in range(PARTITIONS)}
    records = clients.confluent_consume(broker.bootstrap, topic, end)
    got = {(r.partition, r.offset): r.value for r in records}
    assert len(records) == RECORDS and got == acked, "records read back differ from those acknowledged"
    return sum(len(v) for v in got.values())


def test_reads_without_tail_cache_use_sendfile(broker_factory):
    broker = broker_factory(config={"shardlog.cache.partition.bytes": 0})
    topic = "zero-copy"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    acked = produce_payload(broker.bootstrap, topic)
    consumed_bytes = read_back(broker, topic, acked)
    assert consumed_bytes == PAYLOAD_BYTES

    shards, calls, sent = shard_stopped_totals(broker.stop())
    assert shards == SHARDS, f"{shards} `shard stopped` lines for {SHARDS} shards at clean shutdown"
    assert calls > 0, "no sendfile call although every read had to come from a segment file"
    assert sent >= PAYLOAD_BYTES, f"sendfile sent {sent} bytes; the consumer read {consumed_bytes} bytes of values from segment files"


def test_catch_up_reads_after_restart_use_sendfile(broker):
    """Default cache: after a restart nothing is cached, so a consumer catching up from offset 0
    reads cold data, which must come from the segment files by sendfile."""
    topic = "zero-copy-catch-up"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    acked = produce_payload(broker.bootstrap, topic)
    broker.restart()
    read_back(broker, topic, acked)
    shards, calls, sent = shard_stopped_totals(broker.stop())
    assert shards == SHARDS, f"{shards} `shard stopped` lines for {SHARDS} shards at clean shutdown"
    assert calls > 0 and sent >= PAYLOAD_BYTES, f"catch-up read of {PAYLOAD_BYTES} bytes of cold data: sendfile calls={calls} bytes={sent}"
