"""Compaction (cleanup.policy=compact): the sealed segments keep only the latest record of each
key, tombstones go after delete.retention.ms, offsets never change, and the result survives a
restart. The active segment is never compacted, as in Kafka.

Nothing here asserts on wall-clock time: the test waits (with a generous bound) until the
sealed part of the log has one record per key, then asserts on what it holds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
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


def segment_batches(broker, topic: str) -> list[tuple[int, int, int]]:
    """(base offset, attributes, records count) of every batch in the partition's segment
    files, read straight from disk (RecordBatch v2 headers)."""
    out = []
    for path in sorted((Path(broker.data_dir) / f"{topic}-0").glob("*.log")):
        data = path.read_bytes()
        for position, _ in kw.segment_batch_spans(data):
            base = int.from_bytes(data[position:position + 8], "big", signed=True)
            attributes = int.from_bytes(data[position + 21:position + 23], "big")
            count = int.from_bytes(data[position + 57:position + 61], "big", signed=True)
            out.append((base, attributes, count))
    return out


CODECS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_batches_are_compacted_and_keep_their_codec(broker_factory, codec):
    """librdkafka compresses whole batches; the cleaner opens them, keeps the latest record of
    each key, and writes them back with the same codec."""
    broker = broker_factory(config={"log.retention.check.interval.ms": "200"})
    topic = f"compacted-{codec}"
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    config = {"cleanup.policy": "compact", "segment.bytes": "2048", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(timeout=60)
    clients.wait_for_partitions(broker.bootstrap, topic, 1)

    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0, "compression.type": codec})
    expected: dict[bytes, bytes] = {}
    for round in range(ROUNDS):
        for k in range(KEYS):
            key, value = f"k{k}".encode(), (f"value {round} of key {k}; " * 8).encode()
            producer.produce(topic, key=key, value=value)
            expected[key] = value
        producer.flush(60)
    assert producer.flush(60) == 0
    end = latest(broker.port, topic)
    produced_batches = segment_batches(broker, topic)
    assert produced_batches and all(attributes & 7 == CODECS[codec] for _, attributes, _ in produced_batches), "the producer compressed"

    def compacted():
        records = clients.confluent_consume(broker.bootstrap, topic, {0: end})
        sealed_keys = [r.key for r in records if r.offset < active_segment_base(broker, topic)]
        return records if sealed_keys and len(sealed_keys) == len(set(sealed_keys)) else None

    deadline = time.monotonic() + WAIT_S
    while (records := compacted()) is None:
        assert time.monotonic() < deadline, "the sealed compressed segments were not compacted"
        time.sleep(0.5)

    assert latest(broker.port, topic) == end
    assert len(records) < end
    offsets = [r.offset for r in records]
    assert offsets == sorted(set(offsets))
    assert {r.key: r.value for r in records} == expected
    # Every batch left, rewritten or not, is still compressed with the producer's codec.
    batches = segment_batches(broker, topic)
    assert all(attributes & 7 == CODECS[codec] for _, attributes, _ in batches)
    assert sum(count for _, _, count in batches) < sum(count for _, _, count in produced_batches)
    # A second client library decodes the rewritten batches too.
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    got = [(m.offset, m.key, m.value) for m in consumer]
    consumer.close()
    assert got == [(r.offset, r.key, r.value) for r in records]


def test_aborted_transactions_disappear_after_cleaning(broker_factory):
    """Records of aborted transactions are removed by the cleaner, so even read_uncommitted
    consumers stop seeing them; committed ones compact to the latest per key, and the markers
    go once delete.retention.ms (0 here) has passed."""
    from test_transactions import consume_all, txn_producer

    # The cleaner starts off (log.cleaner.enable=false), so the aborted records are surely there
    # to be seen first; a restart turns it on.
    broker = broker_factory(config={"log.retention.check.interval.ms": "200", "log.cleaner.enable": "false"})
    topic = "compacted-txn"
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    config = {"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(timeout=60)
    clients.wait_for_partitions(broker.bootstrap, topic, 1)

    producer = txn_producer(broker.bootstrap, "compacted-txn-1")
    expected: dict[bytes, bytes] = {}
    for round in range(8):
        producer.begin_transaction()
        for k in range(KEYS):
            producer.produce(topic, key=f"k{k}".encode(), value=f"{'aborted' if round % 2 else 'committed'} {round}".encode(), partition=0)
        if round % 2:
            producer.flush(30)  # abort_transaction purges what is still queued in the client
            producer.abort_transaction(60)
        else:
            producer.commit_transaction(60)
            expected.update({f"k{k}".encode(): f"committed {round}".encode() for k in range(KEYS)})
    # Plain records after the transactions seal the segments that hold them.
    plain = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    for i in range(40):
        plain.produce(topic, key=f"filler{i % 4}".encode(), value=b"x" * 100, partition=0)
        plain.flush(30)
    before = consume_all(broker.bootstrap, topic, 1, "read_uncommitted")
    assert any(v.startswith(b"aborted") for _, _, v in before)
    last_txn_offset = max(o for _, o, v in before if v.startswith(b"committed"))
    assert last_txn_offset < active_segment_base(broker, topic)
    from test_retention import metric

    assert metric(broker, "shardlog_partition_records_compacted_total", topic) == 0, "log.cleaner.enable=false compacts nothing"
    broker.config_path.write_text("log.retention.check.interval.ms=200\nlog.cleaner.enable=true\n")
    broker.restart()

    def cleaned():
        seen = consume_all(broker.bootstrap, topic, 1, "read_uncommitted")
        return seen if not any(v.startswith(b"aborted") for _, _, v in seen) else None

    deadline = time.monotonic() + WAIT_S
    while (seen := cleaned()) is None:
        assert time.monotonic() < deadline, "the aborted records were not cleaned away"
        time.sleep(0.5)
    committed = consume_all(broker.bootstrap, topic, 1, "read_committed")
    txn_values = [v for _, _, v in committed if v.startswith(b"committed")]
    assert sorted(txn_values) == sorted(expected.values()), "the latest committed value of each key, once"
    assert [v for _, _, v in seen if v.startswith(b"committed")] == [v for _, _, v in committed if v.startswith(b"committed")]
    # The abort and commit markers of the emptied transactions went too: few batches are
    # control batches now (the last commit's marker keeps its records company).
    markers = [b for b in segment_batches(broker, topic) if b[1] & 0x20]
    assert len(markers) < 8
    broker.restart()
    assert consume_all(broker.bootstrap, topic, 1, "read_uncommitted") == seen


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_a_compacted_topic_refuses_records_without_a_key(broker, codec):
    """Compaction keeps the latest record per key, so Kafka refuses a keyless record in a
    compacted topic with INVALID_RECORD (librdkafka's test 0011); keyed records and tombstones
    are appended, and nothing of the refused batch is."""
    import confluent_kafka

    topic = f"compacted-keys-{codec}"
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.create_topics([NewTopic(topic, 1, config={"cleanup.policy": "compact"})])[topic].result(30)
    producer = confluent_kafka.Producer(clients.rdkafka(broker.bootstrap, **{"compression.type": codec, "linger.ms": 0, "acks": "all"}))
    results = []

    def send(key, value):
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: results.append((key, err)))
        producer.flush(30)

    send(b"k1", b"v1")
    send(None, b"no key")
    send(b"k1", None)
    assert [k for k, err in results if err is None] == [b"k1", b"k1"], results
    [(key, err)] = [(k, e) for k, e in results if e is not None]
    assert key is None and err.code() == confluent_kafka.KafkaError.INVALID_RECORD, err
    assert latest(broker.port, topic) == 2, "the keyless record was appended"
    assert broker.wait_for_log(r"produce to a compacted topic refused.*without key", since=0)
