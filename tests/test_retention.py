"""Retention by time and by size, whole segments at a time; the log start offset that moves with
it (ListOffsets earliest, OFFSET_OUT_OF_RANGE below it) and persists; DeleteRecords through
librdkafka and kafka-python; DescribeLogDirs sizes.

Nothing here asserts on wall-clock time: each test waits (with a generous bound) until the
condition holds, then asserts on offsets, files and sizes."""

from __future__ import annotations

import time
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import clients
from clients import wait_until
import kafkawire as kw

OFFSET_OUT_OF_RANGE = 1
# Retention passes every 200 ms, so the tests do not wait for Kafka's 5 minutes.
FAST_RETENTION = {"log.retention.check.interval.ms": "200"}


def create(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    admin = AdminClient(clients.rdkafka(bootstrap))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1, config=config)])[topic].result(timeout=60)
    clients.wait_for_partitions(bootstrap, topic, 1)


def produce(bootstrap: str, topic: str, count: int, size: int = 300) -> None:
    # Small batches, so that a small segment.bytes rolls many segments.
    producer = clients.confluent_producer(bootstrap, **{"linger.ms": 0, "batch.size": 1000})
    for i in range(count):
        producer.produce(topic, key=str(i).encode(), value=bytes([i % 251]) * size)
        if i % 10 == 9:
            producer.flush(60)
    assert producer.flush(60) == 0


def list_offset(port: int, topic: str, timestamp: int) -> int:
    with kw.Connection(port) as conn:
        [(_, _, error, _, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, 0, timestamp))
    assert error == 0
    return offset


def earliest(port: int, topic: str) -> int:
    return list_offset(port, topic, -2)


def latest(port: int, topic: str) -> int:
    return list_offset(port, topic, -1)


def fetch_error(port: int, topic: str, offset: int) -> int:
    with kw.Connection(port) as conn:
        [fp] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, topic, 0, offset))
    return fp.error_code


def segment_files(broker, topic: str) -> list[str]:
    return sorted(p.name for p in (Path(broker.data_dir) / f"{topic}-0").glob("*.log"))


def metric(broker, name: str, topic: str) -> float:
    """The value of a per-partition metric of partition 0 of `topic`, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    line = f'{name}{{topic="{topic}",partition="0"}} '
    [value] = [float(l.removeprefix(line)) for l in text.splitlines() if l.startswith(line)]
    return value


def test_time_retention_drops_old_segments_and_moves_earliest(broker_factory):
    broker = broker_factory(config=FAST_RETENTION)
    topic = "by-time"
    create(broker.bootstrap, topic, {"segment.bytes": "4096"})
    produce(broker.bootstrap, topic, 200)
    end = latest(broker.port, topic)
    assert end == 200
    before = segment_files(broker, topic)
    assert len(before) > 5, before
    assert earliest(broker.port, topic) == 0

    # Retention is a topic config: shrink it on the live topic.
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    [f] = admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])]
    ).values()
    f.result(timeout=60)

    # Segments expire one by one as each one's newest record passes retention.ms; in the end
    # every sealed segment goes, and the active one stays.
    wait_until(lambda: segment_files(broker, topic) == before[-1:], "every sealed segment to be deleted")
    after = segment_files(broker, topic)
    start = earliest(broker.port, topic)
    assert start == int(after[0].removesuffix(".log"))
    assert 0 < start < end
    assert metric(broker, "shardlog_partition_segments_deleted_total", topic) == len(before) - 1
    assert metric(broker, "shardlog_partition_log_start_offset", topic) == start
    assert latest(broker.port, topic) == end
    assert fetch_error(broker.port, topic, 0) == OFFSET_OUT_OF_RANGE
    assert fetch_error(broker.port, topic, start) == 0
    records = clients.confluent_consume(broker.bootstrap, topic, {0: end})
    assert [r.offset for r in records] == list(range(start, end))

    # The log start offset survives a restart.
    broker.restart()
    assert earliest(broker.port, topic) == start
    assert fetch_error(broker.port, topic, start - 1) == OFFSET_OUT_OF_RANGE


def test_size_retention_keeps_the_log_under_retention_bytes(broker_factory):
    broker = broker_factory(config=FAST_RETENTION)
    topic = "by-size"
    create(broker.bootstrap, topic, {"segment.bytes": "4096", "retention.bytes": "10000", "retention.ms": "-1"})
    produce(broker.bootstrap, topic, 300)

    def partition_size() -> int:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
        try:
            [per_broker] = admin.describe_log_dirs()
        finally:
            admin.close()
        [log_dir] = per_broker["log_dirs"]
        assert log_dir["error_code"] == 0
        assert Path(log_dir["log_dir"]) == Path(broker.data_dir).resolve()
        sizes = {(t["name"], p["partition_index"]): p["partition_size"] for t in log_dir["topics"] for p in t["partitions"]}
        return sizes[(topic, 0)]

    wait_until(lambda: earliest(broker.port, topic) > 0 and partition_size() <= 10000 + 4096, "size retention")

    # DescribeLogDirs reports the log's bytes; the file of the active segment may end in the
    # zero padding of its last O_DIRECT page. A segment leaves the log first and its files are
    # unlinked after, off the shard (as Kafka deletes them asynchronously), so the files on
    # disk come down to the log's size a moment later.
    # A pass that ran while the last batches were still arriving left a segment that a later
    # pass (every 200 ms) removes: the settled state is what is checked.
    def on_disk_matches_the_log():
        files = segment_files(broker, topic)
        try:
            on_disk = sum((Path(broker.data_dir) / f"{topic}-0" / f).stat().st_size for f in files)
            oldest = (Path(broker.data_dir) / f"{topic}-0" / files[0]).stat().st_size
        except FileNotFoundError:
            return None  # unlinked between the listing and its size: look again
        size = partition_size()
        # Whole segments only, and every one retention may take: without its oldest segment the
        # log would be under retention.bytes.
        return (files, size) if size <= on_disk < size + 4096 and size - oldest < 10000 else None

    files, size = wait_until(on_disk_matches_the_log, "retention to settle, the files of removed segments unlinked")
    # Retention never takes the log below retention.bytes: a segment goes only if what is left
    # is at least that.
    assert size >= 10000, (size, files)
    assert earliest(broker.port, topic) == int(files[0].removesuffix(".log"))


def test_delete_records_confluent_moves_earliest_and_persists(broker):
    topic = "delete-records"
    create(broker.bootstrap, topic, {"segment.bytes": "4096"})
    produce(broker.bootstrap, topic, 100)
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    [future] = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 42)]).values()
    deleted = future.result(timeout=60)
    assert deleted.low_watermark == 42
    assert earliest(broker.port, topic) == 42
    assert fetch_error(broker.port, topic, 41) == OFFSET_OUT_OF_RANGE
    assert clients.confluent_watermarks(broker.bootstrap, topic, 1)[0] == (42, 100)
    # Whole segments below the new start go (just after the answer); the one holding 42 stays.
    def bases() -> list[int]:
        return [int(f.removesuffix(".log")) for f in segment_files(broker, topic)]

    # The files go one by one after the answer: wait for the last of them, not the first.
    wait_until(lambda: len(bases()) == 1 or bases()[1] > 42, "the segments below offset 42 to be deleted")
    assert bases()[0] <= 42, f"the segment holding offset 42 was deleted too: {bases()}"

    # Past the high watermark: OFFSET_OUT_OF_RANGE, and nothing moves.
    [future] = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 1000)]).values()
    try:
        future.result(timeout=60)
        raise AssertionError("DeleteRecords past the high watermark succeeded")
    except confluent_kafka.KafkaException as e:
        assert e.args[0].code() == confluent_kafka.KafkaError.OFFSET_OUT_OF_RANGE, e
    assert earliest(broker.port, topic) == 42

    broker.restart()
    assert earliest(broker.port, topic) == 42
    records = clients.confluent_consume(broker.bootstrap, topic, {0: 100})
    assert [r.offset for r in records] == list(range(42, 100))


def test_delete_records_kafka_python(broker):
    from kafka import KafkaAdminClient, TopicPartition

    topic = "delete-records-kp"
    create(broker.bootstrap, topic, {})
    produce(broker.bootstrap, topic, 20, size=10)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        result = admin.delete_records({TopicPartition(topic, 0): 15})
    finally:
        admin.close()
    assert result[TopicPartition(topic, 0)]["low_watermark"] == 15, result
    assert earliest(broker.port, topic) == 15
    assert latest(broker.port, topic) == 20


def test_delete_records_refuses_internal_topics(broker):
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    # The offsets topic exists once a group coordinator has been looked for, as in Kafka.
    [group] = admin.describe_consumer_groups(["some-group"]).values()
    group.result(timeout=60)
    [future] = admin.delete_records([confluent_kafka.TopicPartition("__consumer_offsets", 0, 0)]).values()
    try:
        future.result(timeout=60)
        raise AssertionError("DeleteRecords on __consumer_offsets succeeded")
    except confluent_kafka.KafkaException as e:
        # INVALID_TOPIC_EXCEPTION, as Kafka answers for its internal topics.
        assert e.args[0].code() == confluent_kafka.KafkaError.TOPIC_EXCEPTION, e
