"""Fetch byte limits with raw requests over several partitions: the first batch comes back even
when it is larger than `max_bytes` and `partition_max_bytes` (Kafka's rule since KIP-74, so a
consumer always makes progress), and after it both limits hold, in whole batches. Also the refusal
of incremental fetch sessions (KIP-227): a Fetch v7+ naming a session id gets
FETCH_SESSION_ID_NOT_FOUND, and a request for a new session gets session id 0 (no session)."""

from __future__ import annotations

import clients
import kafkawire
from kafkawire import array, frame, i8, i32, i64, request_header, string

PARTITIONS = 3
SMALL_BATCHES = 10
SMALL_VALUE_BYTES = 250
FETCH_SESSION_ID_NOT_FOUND = 70


def fetch_v4_partitions(correlation_id: int, topic: str, partitions: list[int], max_bytes: int, partition_max_bytes: int) -> bytes:
    """Fetch v4 for several partitions of one topic, each from offset 0, in the order given."""
    parts = array([i32(p) + i64(0) + i32(partition_max_bytes) for p in partitions])
    body = i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(0) + array([string(topic) + parts])
    return frame(request_header(kafkawire.FETCH, 4, correlation_id) + body)


def fetch_v7_request(correlation_id: int, topic: str, session_id: int, session_epoch: int) -> bytes:
    """Fetch v7 of partition 0 from offset 0, with the given session id and epoch."""
    parts = array([i32(0) + i64(0) + i64(-1) + i32(1 << 20)])  # partition, fetch offset, log start offset, partition max bytes
    body = i32(-1) + i32(0) + i32(1) + i32(1 << 20) + i8(0) + i32(session_id) + i32(session_epoch) + array([string(topic) + parts]) + array([])
    return frame(request_header(kafkawire.FETCH, 7, correlation_id) + body)


def produce(conn: kafkawire.Connection, topic: str, partition: int, batch: bytes) -> None:
    [(_, _, error, _)] = kafkawire.parse_produce_v3(conn.request(kafkawire.produce_v3_request, topic, partition, batch))
    assert error == kafkawire.NONE, f"produce to {topic}-{partition} failed with error {error}"


def small_batch(i: int) -> bytes:
    return kafkawire.record_batch([(None, bytes([i]) * SMALL_VALUE_BYTES)])


def fetch(conn: kafkawire.Connection, topic: str, partitions: list[int], max_bytes: int, partition_max_bytes: int) -> dict[int, kafkawire.FetchPartition]:
    got = kafkawire.parse_fetch_v4(conn.request(fetch_v4_partitions, topic, partitions, max_bytes, partition_max_bytes))
    assert [fp.partition for fp in got] == partitions
    assert all(fp.error_code == kafkawire.NONE for fp in got), got
    return {fp.partition: fp for fp in got}


def whole_batches(fp: kafkawire.FetchPartition) -> list[kafkawire.BatchInfo]:
    batches = kafkawire.parse_batches(fp.records)
    assert sum(12 + b.length for b in batches) == len(fp.records), f"partition {fp.partition}: a partial batch came back"
    assert all(b.crc_ok for b in batches)
    return batches


def test_fetch_byte_limits_over_several_partitions(broker):
    topic = "fetch-limits"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    big = kafkawire.record_batch([(None, b"B" * 5000)])
    small = len(small_batch(0))
    with kafkawire.Connection(broker.port) as conn:
        # Partition 0 starts with one batch larger than every limit below; partitions 1 and 2 hold small batches only.
        produce(conn, topic, 0, big)
        for p in range(PARTITIONS):
            for i in range(SMALL_BATCHES):
                produce(conn, topic, p, small_batch(i))

        # The oversized first batch comes back whole, alone: nothing else fits after it.
        got = fetch(conn, topic, [0, 1, 2], max_bytes=1000, partition_max_bytes=500)
        [first] = whole_batches(got[0])
        assert (first.base_offset, 12 + first.length) == (0, len(big))
        assert got[1].records == b"" and got[2].records == b"", "partitions after an oversized first batch exceed max_bytes"

        # Small batches: partition_max_bytes holds for each partition, max_bytes for the response.
        per_partition = 3 * small + small // 2  # room for 3 whole batches
        got = fetch(conn, topic, [1, 2, 0], max_bytes=2 * per_partition, partition_max_bytes=per_partition)
        assert [len(whole_batches(got[p])) for p in (1, 2)] == [3, 3]
        assert [b.base_offset for b in whole_batches(got[1])] == [0, 1, 2]
        assert got[0].records == b"", "the response went over max_bytes"
        assert sum(len(fp.records) for fp in got.values()) <= 2 * per_partition

        # A response limit smaller than the partition limit binds too: as many whole batches as fit in it.
        got = fetch(conn, topic, [1, 2], max_bytes=per_partition, partition_max_bytes=1 << 20)
        assert len(whole_batches(got[1])) == 3, "a partition read past the response's max_bytes"
        assert got[2].records == b""

        # Generous limits: everything, in order.
        got = fetch(conn, topic, [0, 1, 2], max_bytes=1 << 20, partition_max_bytes=1 << 20)
        assert [len(whole_batches(got[p])) for p in (0, 1, 2)] == [SMALL_BATCHES + 1, SMALL_BATCHES, SMALL_BATCHES]
    broker.assert_alive()


def test_fetch_sessions_are_refused(broker):
    topic = "fetch-sessions"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kafkawire.Connection(broker.port) as conn:
        produce(conn, topic, 0, small_batch(1))
        # A request naming a session the broker never created: FETCH_SESSION_ID_NOT_FOUND, no data.
        r = kafkawire.Reader(conn.request(fetch_v7_request, topic, 12345, 1))
        r.i32()  # throttle time
        assert r.i16() == FETCH_SESSION_ID_NOT_FOUND
        assert r.i32() == 0  # session id
        assert r.i32() == 0, "a refused session fetch returned partitions"
        # A request for a new session (id 0, epoch 0): served as a full fetch, with session id 0 = no session kept.
        r = kafkawire.Reader(conn.request(fetch_v7_request, topic, 0, 0))
        r.i32()
        assert r.i16() == kafkawire.NONE
        assert r.i32() == 0, "the broker handed out a fetch session id it does not keep"
        assert r.i32() == 1 and r.string() == topic and r.i32() == 1
        partition, error, high_watermark = r.i32(), r.i16(), r.i64()
        assert (partition, error, high_watermark) == (0, kafkawire.NONE, 1)
    broker.assert_alive()

