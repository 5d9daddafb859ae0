"""The kcat CLI (librdkafka) as a user would run it: produce keyed records with compression,
read them back, list metadata, and start from relative and timestamp offsets."""

from __future__ import annotations

import pytest

import clients
import kafkawire
from clients import kcat


def kcat_consume(bootstrap: str, topic: str, *extra: str) -> list[tuple[int, int, str, str]]:
    """Reads to the current end (-e) and returns [(partition, offset, key, value)]."""
    done = kcat("-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-f", "%p|%o|%k|%s\\n", *extra)
    assert done.returncode == 0, f"kcat -C failed: {done.stderr.decode()}"
    out = []
    for line in done.stdout.decode().splitlines():
        p, o, k, v = line.split("|", 3)
        out.append((int(p), int(o), k, v))
    return out


# Only zstd: kcat here links Debian's librdkafka 2.0.2, whose feature detection ties gzip and
# snappy to Produce v2 / Fetch v2 (MsgVer1) and lz4 to FindCoordinator. shardlog, like Kafka 4,
# serves Produce v3+ and Fetch v4+ only, so that librdkafka sends those codecs uncompressed.
# The codec tests cover gzip, snappy and lz4 with newer clients.
@pytest.mark.parametrize("codec", ["zstd"])
def test_kcat_produce_and_consume_compressed(broker, codec):
    topic = f"kcat-{codec}"
    clients.create_topic(broker.bootstrap, topic, 3)
    lines = [f"k{i % 20}:value {i} of the kcat test" for i in range(3000)]
    done = kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K:", "-z", codec, "-X", "linger.ms=20", stdin=("\n".join(lines) + "\n").encode())
    assert done.returncode == 0, f"kcat -P failed: {done.stderr.decode()}"
    assert b"ERROR" not in done.stderr, done.stderr.decode()

    got = kcat_consume(broker.bootstrap, topic)
    assert sorted(f"{k}:{v}" for _, _, k, v in got) == sorted(lines)
    # Per partition: dense offsets from 0, and each key's values in the order they were sent.
    for p in {p for p, *_ in got}:
        offsets = [o for q, o, _, _ in got if q == p]
        assert offsets == list(range(len(offsets))), f"partition {p} offsets are not 0..n-1"
    for key in {k for _, _, k, _ in got}:
        sent = [line for line in lines if line.startswith(key + ":")]
        received = [f"{k}:{v}" for _, _, k, v in sorted(got) if k == key]
        assert received == sent, f"key {key} out of order"
        assert len({p for p, _, k, _ in got if k == key}) == 1, f"key {key} spread over partitions"

    # The batches are stored compressed with kcat's codec.
    codecs = set()
    with kafkawire.Connection(broker.port) as conn:
        for p in range(3):
            [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, p, 0))
            codecs |= {b.codec for b in kafkawire.parse_batches(fp.records) if b.record_count > 1}
    assert codecs == {kafkawire.CODEC_IDS[codec]}


def test_kcat_metadata_lists_topic_and_broker(broker):
    clients.create_topic(broker.bootstrap, "kcat-meta", 5)
    done = kcat("-b", broker.bootstrap, "-L", "-t", "kcat-meta")
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert f"broker 1 at {broker.bootstrap}" in out, out
    assert 'topic "kcat-meta" with 5 partitions' in out, out
    for p in range(5):
        assert f"partition {p}, leader 1" in out, out


def test_kcat_relative_and_timestamp_offsets(broker):
    topic = "kcat-offsets"
    clients.create_topic(broker.bootstrap, topic, 1)
    producer = clients.confluent_producer(broker.bootstrap)
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"v{i}".encode(), timestamp=1_600_000_000_000 + i * 1000)
        producer.flush(30)  # one batch per record, so the time index has something to search
    assert producer.flush(30) == 0

    assert [v for *_, v in kcat_consume(broker.bootstrap, topic, "-o", "-3")] == ["v7", "v8", "v9"]
    assert [v for *_, v in kcat_consume(broker.bootstrap, topic, "-o", "beginning", "-c", "2")] == ["v0", "v1"]
    # First record with timestamp >= t: v4 is at +4000 ms; +3500 ms also lands on v4.
    assert [v for *_, v in kcat_consume(broker.bootstrap, topic, "-o", "s@1600000003500")][0] == "v4"
    assert [v for *_, v in kcat_consume(broker.bootstrap, topic, "-o", "s@1600000004000")][0] == "v4"
