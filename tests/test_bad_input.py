"""Bad input over raw sockets: garbage, oversized and truncated frames, lying array counts,
unknown APIs and versions, and record batches with a broken CRC.

For every case the broker must answer with a Kafka error or close that connection, write a log
line naming the peer, stay alive, and keep serving other connections: a connection opened
before the first case (the sentinel) and a fresh one after each case must both work, and so
must kcat.

One broker serves every case in this file, one after the other, so each case also checks
that the ones before it left the broker healthy.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable

import pytest

import clients
import kafkawire as kw
from conftest import Broker

REQUEST_MAX_BYTES = 1_048_576
ANSWER_TIMEOUT_S = 15.0  # bound on waiting for "answer or close"; a hang fails the case
RSS_MAX_BYTES = 1 << 30  # a request must not make the broker allocate what its counts claim


@pytest.fixture(scope="module")
def bad_input_broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("bad-input"), config={"socket.request.max.bytes": REQUEST_MAX_BYTES, "auto.create.topics.enable": "true"})
    b.start()
    yield b
    b.kill9()


@pytest.fixture(scope="module")
def sentinel(bad_input_broker):
    conn = kw.Connection(bad_input_broker.port)
    assert conn.api_versions(0).error_code == kw.NONE
    yield conn
    conn.close()


@pytest.fixture
def broker(request, bad_input_broker, sentinel):
    request.node._shardlog_brokers = [bad_input_broker]  # log tail on failure
    bad_input_broker.assert_alive()
    yield bad_input_broker
    # After every case: still alive, the old connection and new ones still served.
    bad_input_broker.assert_alive()
    assert_broker_serves(bad_input_broker, sentinel)


def assert_broker_serves(broker: Broker, sentinel: kw.Connection) -> None:
    av = sentinel.api_versions(0)
    assert av.error_code == kw.NONE and kw.METADATA in av.apis, "the sentinel connection no longer gets ApiVersions answers"
    with kw.Connection(broker.port) as fresh:
        assert fresh.api_versions(3).error_code == kw.NONE
        brokers, _ = kw.parse_metadata_v1(fresh.request(kw.metadata_v1_request, None))
        assert brokers == [(1, "127.0.0.1", broker.port)]
    done = clients.kcat("-b", broker.bootstrap, "-L", "-m", "30")
    assert done.returncode == 0 and f"broker 1 at {broker.bootstrap}" in done.stdout.decode(), done.stderr.decode()
    assert broker.rss_bytes() < RSS_MAX_BYTES, f"broker RSS grew to {broker.rss_bytes()} bytes"


# --- how a case ends --------------------------------------------------------------------------

CLOSED = "closed"


def send_and_read(conn: kw.Connection, data: bytes, half_close: bool = False):
    """Sends data; returns CLOSED if the broker closes the connection, or (correlation_id,
    body) if it answers. Fails if it does neither within ANSWER_TIMEOUT_S."""
    try:
        conn.send(data)
        if half_close:
            conn.sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        return CLOSED
    try:
        return conn.recv_frame(timeout_s=ANSWER_TIMEOUT_S)
    except kw.Closed:
        return CLOSED
    except TimeoutError:
        raise AssertionError(f"broker neither answered nor closed the connection within {ANSWER_TIMEOUT_S}s") from None


def assert_warned_about(broker: Broker, since: int, peer_port: int, pattern: str = r"\bWARN\b") -> str:
    """A log line at WARN (or matching `pattern`) that names our side of the connection."""
    lines = broker.wait_for_log(rf"{pattern}.*127\.0\.0\.1:{peer_port}\b", since)
    assert lines, f"no log line matching {pattern!r} names peer 127.0.0.1:{peer_port}; log since the case:\n{broker.log_since(since)}"
    return lines[0]


# Response checkers for cases where a Kafka error response is as good as a close: the response
# must parse and carry a non-zero error code.
def produce_error(body: bytes) -> bool:
    return any(error != kw.NONE for _, _, error, _ in kw.parse_produce_v3(body))


def metadata_error(body: bytes) -> bool:
    _, topics = kw.parse_metadata_v1(body)
    return bool(topics) and all(error != kw.NONE for error, _ in topics.values())


def fetch_error(body: bytes) -> bool:
    parts = kw.parse_fetch_v4(body)
    return bool(parts) and all(p.error_code != kw.NONE for p in parts)


@dataclass
class Case:
    name: str
    data: Callable[[], bytes]
    # None: the broker must close the connection. Otherwise a response is also acceptable if
    # this returns True for its body.
    error_response: Callable[[bytes], bool] | None = None
    half_close: bool = False


def header(api_key: int, version: int, cid: int = 7) -> bytes:
    return kw.request_header(api_key, version, cid)


HUGE = 0x7FFFFFFF

CASES = [
    # a. garbage
    Case("garbage-negative-length", lambda: b"\xff\xff\xff\xff" + os.urandom(60)),
    Case("garbage-http-request", lambda: b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Case("garbage-body-unknown-api-key", lambda: kw.frame(b"\x7f\x7f" + os.urandom(60))),
    Case("garbage-zero-length-frame", lambda: kw.i32(0)),
    # b. frame longer than socket.request.max.bytes: closed without reading the rest
    Case("frame-2000000-over-max", lambda: kw.i32(2_000_000) + os.urandom(1000)),
    Case("frame-one-byte-over-max", lambda: kw.i32(REQUEST_MAX_BYTES + 1) + header(kw.API_VERSIONS, 0)),
    # c. truncated: the client hangs up mid-frame; frames shorter than what they declare
    Case("announce-100-send-10-then-hang-up", lambda: kw.i32(100) + header(kw.API_VERSIONS, 0)[:10], half_close=True),
    Case("frame-shorter-than-request-header", lambda: kw.frame(kw.i16(kw.METADATA) + kw.i16(1))),
    Case("client-id-longer-than-frame", lambda: kw.frame(kw.i16(kw.METADATA) + kw.i16(1) + kw.i32(7) + kw.i16(500) + b"abc")),
    Case("metadata-topic-name-longer-than-frame", lambda: kw.frame(header(kw.METADATA, 1) + kw.i32(1) + kw.i16(100) + b"short"), metadata_error),
    Case(
        "produce-records-longer-than-frame",
        lambda: kw.frame(header(kw.PRODUCE, 3) + kw.string(None) + kw.i16(1) + kw.i32(1000) + kw.i32(1) + kw.string("t") + kw.i32(1) + kw.i32(0) + kw.i32(10_000) + b"x" * 20),
        produce_error,
    ),
    Case("produce-body-missing", lambda: kw.frame(header(kw.PRODUCE, 3)), produce_error),
    # d. array counts far beyond the frame
    Case("metadata-v1-topic-count-huge", lambda: kw.frame(header(kw.METADATA, 1) + kw.i32(HUGE)), metadata_error),
    Case("metadata-v1-topic-count-huge-with-one-name", lambda: kw.frame(header(kw.METADATA, 1) + kw.i32(HUGE) + kw.string("t")), metadata_error),
    Case(
        "metadata-v12-compact-topic-count-huge",
        lambda: kw.frame(kw.request_header(kw.METADATA, 12, 7, flexible=True) + kw.uvarint(0xFFFFFFFF) + b"\x01\x00" + kw.TAGGED_FIELDS_EMPTY),
        metadata_error,
    ),
    Case("produce-topic-count-huge", lambda: kw.frame(header(kw.PRODUCE, 3) + kw.string(None) + kw.i16(1) + kw.i32(1000) + kw.i32(HUGE)), produce_error),
    Case(
        "produce-partition-count-huge",
        lambda: kw.frame(header(kw.PRODUCE, 3) + kw.string(None) + kw.i16(1) + kw.i32(1000) + kw.i32(1) + kw.string("t") + kw.i32(HUGE)),
        produce_error,
    ),
    Case("fetch-topic-count-huge", lambda: kw.frame(header(kw.FETCH, 4) + kw.i32(-1) + kw.i32(0) + kw.i32(1) + kw.i32(1 << 20) + kw.i8(0) + kw.i32(HUGE)), fetch_error),
    Case("list-offsets-topic-count-huge", lambda: kw.frame(header(kw.LIST_OFFSETS, 1) + kw.i32(-1) + kw.i32(HUGE))),
    Case("create-topics-count-huge", lambda: kw.frame(header(kw.CREATE_TOPICS, 0) + kw.i32(HUGE))),
    Case("write-txn-markers-v1-marker-count-huge", lambda: kw.frame(kw.request_header(27, 1, 7, flexible=True) + kw.uvarint(0xFFFFFFFF) + kw.TAGGED_FIELDS_EMPTY)),
    # e. unknown API keys and unsupported versions
    Case("unknown-api-key-999", lambda: kw.frame(header(999, 0))),
    Case("metadata-v99", lambda: kw.frame(header(kw.METADATA, 99) + kw.i32(-1))),
    Case("produce-v2-below-min", lambda: kw.frame(header(kw.PRODUCE, 2) + kw.i16(1) + kw.i32(1000) + kw.i32(0))),
    Case("fetch-v13-above-max", lambda: kw.frame(kw.request_header(kw.FETCH, 13, 7, flexible=True) + b"\x00" * 40)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_is_refused_and_logged(broker, case):
    since = broker.log_size()
    with kw.Connection(broker.port) as conn:
        peer_port = conn.local_port
        outcome = send_and_read(conn, case.data(), half_close=case.half_close)
        if outcome != CLOSED:
            cid, body = outcome
            assert case.error_response is not None, f"broker answered (correlation id {cid}, {len(body)} bytes) instead of closing the connection"
            assert case.error_response(body), f"broker answered without an error code: {body[:200]!r}"
    assert_warned_about(broker, since, peer_port)


# Real Kafka API keys, most of them far from being served; the test uses the first one the
# broker does not advertise.
KAFKA_API_KEYS_NOT_YET_SERVED = [34, 38, 23, 4, 5, 6, 7]  # AlterReplicaLogDirs, delegation tokens, broker-to-broker APIs


def test_known_but_unserved_api_is_refused(broker):
    with kw.Connection(broker.port) as conn:
        advertised = conn.api_versions(0).apis
    key = next(k for k in KAFKA_API_KEYS_NOT_YET_SERVED if k not in advertised)
    since = broker.log_size()
    with kw.Connection(broker.port) as conn:
        peer_port = conn.local_port
        assert send_and_read(conn, kw.frame(header(key, 0) + kw.string("x") + kw.i32(0))) == CLOSED, f"api key {key} is not advertised, yet the broker answered"
    assert_warned_about(broker, since, peer_port)


def test_slow_partial_frame_does_not_block_others(broker, sentinel):
    """A client that announces a large (allowed) frame and sends almost nothing holds only its
    own connection: everyone else is served meanwhile. Hanging up mid-frame is logged."""
    since = broker.log_size()
    with kw.Connection(broker.port) as slow:
        peer_port = slow.local_port
        slow.send(kw.i32(REQUEST_MAX_BYTES - 10) + header(kw.PRODUCE, 3))
        for _ in range(3):
            assert_broker_serves(broker, sentinel)
        assert not slow.readable_within(0.2), "broker answered a request it has not fully received"
    assert_warned_about(broker, since, peer_port)


def test_api_versions_v99_gets_unsupported_version_and_the_list(broker):
    """Kafka answers an ApiVersions request it cannot parse with a v0 response: error 35
    (UNSUPPORTED_VERSION) and the versions it supports, so the client can retry on the same
    connection. That is routine for newer clients, so it is logged, but not as a warning."""
    since = broker.log_size()
    with kw.Connection(broker.port) as conn:
        peer_port = conn.local_port
        cid = conn.correlation_id()
        conn.send(kw.api_versions_request(99, cid))
        got, body = conn.recv_frame(timeout_s=ANSWER_TIMEOUT_S)
        assert got == cid
        response = kw.parse_api_versions(body, 0)
        assert response.error_code == kw.UNSUPPORTED_VERSION
        assert response.apis.get(kw.API_VERSIONS) == (0, 4), response.apis
        assert kw.PRODUCE in response.apis and kw.FETCH in response.apis
        # The client retries with a version the broker knows, on the same connection.
        retry = conn.api_versions(response.apis[kw.API_VERSIONS][1])
        assert retry.error_code == kw.NONE
        assert retry.apis == response.apis
    assert_warned_about(broker, since, peer_port, pattern=r"\b(INFO|WARN)\b.*ApiVersions")


# --- f. record batches with a broken CRC ----------------------------------------------------

CRC_TOPIC = "crc-checks"


def log_end_offset(conn: kw.Connection, topic: str) -> int:
    [(_, _, error, _, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, 0, -1))
    assert error == kw.NONE
    return offset


def produce_raw(conn: kw.Connection, topic: str, batch: bytes) -> tuple[int, int]:
    """Produce v3, acks=1. Returns (error_code, base_offset) of the one partition."""
    [(name, partition, error, base_offset)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, batch, acks=1))
    assert (name, partition) == (topic, 0)
    return error, base_offset


@pytest.fixture(scope="module")
def crc_topic(bad_input_broker):
    clients.create_topic(bad_input_broker.bootstrap, CRC_TOPIC, 1)
    return CRC_TOPIC


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


def with_field(data: bytes, at: int, fmt: str, value: int) -> bytes:
    return data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt):]


def test_hand_built_batch_is_accepted(broker, crc_topic):
    """The control case: the batch builder makes batches the broker accepts and serves back,
    so the corrupted variants below fail for the corruption alone."""
    with kw.Connection(broker.port) as conn:
        start = log_end_offset(conn, crc_topic)
        error, base = produce_raw(conn, crc_topic, kw.record_batch([(b"k1", b"v1"), (b"k2", b"v2"), (None, b"v3")]))
        assert (error, base) == (kw.NONE, start)
        assert log_end_offset(conn, crc_topic) == start + 3
        [fp] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, crc_topic, 0, start))
        records = kw.decode_uncompressed_records(fp.records)
        assert [(o, k, v) for o, _, k, v in records] == [(start, b"k1", b"v1"), (start + 1, b"k2", b"v2"), (start + 2, None, b"v3")]


def test_a_request_arriving_in_pieces_is_received_whole(broker, crc_topic):
    """A produce request that arrives in small pieces, with pauses (the broker waits for the
    socket in the middle of the length prefix, the header and the batch, and receives what has
    arrived straight into the frame's buffer), is appended byte for byte as sent, and the
    connection goes on to serve the next request."""
    with kw.Connection(broker.port) as conn:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = log_end_offset(conn, crc_topic)
        sent = [(b"k%d" % i, bytes([i]) * (300 + i)) for i in range(20)]
        cid = conn.correlation_id()
        request = kw.produce_v3_request(cid, crc_topic, 0, kw.record_batch(sent), acks=1)
        cuts = [0, 2, 5, 6, 40, 41, 300, 1000, 2500, len(request) - 1, len(request)]
        assert cuts == sorted(cuts) and len(request) > 2500
        for a, b in zip(cuts, cuts[1:]):
            conn.send(request[a:b])
            time.sleep(0.02)
        got, body = conn.recv_frame()
        assert got == cid, f"correlation id {got} answers request {cid}"
        [(_, _, error, base)] = kw.parse_produce_v3(body)
        assert (error, base) == (kw.NONE, start)
        [fp] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, crc_topic, 0, start))
        records = kw.decode_uncompressed_records(fp.records)
        assert [(o, k, v) for o, _, k, v in records] == [(start + i, k, v) for i, (k, v) in enumerate(sent)]


def corrupt_cases() -> list[tuple[str, Callable[[bytes], bytes], set[int]]]:
    """(name, corruption, acceptable error codes). A flipped CRC or body byte must be
    CORRUPT_MESSAGE (2); for structural damage Kafka also uses INVALID_RECORD (87) and
    UNSUPPORTED_FOR_MESSAGE_FORMAT (43)."""
    last = -1
    return [
        ("flipped-byte-in-records", lambda b: flip(b, len(b) + last), {kw.CORRUPT_MESSAGE}),
        ("flipped-byte-in-attributes", lambda b: flip(b, kw.BATCH_ATTRIBUTES_AT + 1), {kw.CORRUPT_MESSAGE}),
        ("flipped-byte-in-crc-field", lambda b: flip(b, kw.BATCH_CRC_AT), {kw.CORRUPT_MESSAGE}),
        ("batch-length-longer-than-data", lambda b: with_field(b, 8, ">i", struct.unpack_from(">i", b, 8)[0] + 100), {kw.CORRUPT_MESSAGE, 87}),
        ("batch-length-shorter-than-header", lambda b: with_field(b, 8, ">i", 20), {kw.CORRUPT_MESSAGE, 87}),
        ("magic-1", lambda b: with_field(b, 16, ">b", 1), {kw.CORRUPT_MESSAGE, 87, 43, kw.UNSUPPORTED_VERSION}),
        ("truncated-batch", lambda b: b[: len(b) - 7], {kw.CORRUPT_MESSAGE, 87}),
    ]


@pytest.mark.parametrize("name,corrupt,codes", corrupt_cases(), ids=[c[0] for c in corrupt_cases()])
def test_corrupt_batch_is_rejected_and_not_appended(broker, crc_topic, name, corrupt, codes):
    with kw.Connection(broker.port) as conn:
        end_before = log_end_offset(conn, crc_topic)
        since = broker.log_size()
        good = kw.record_batch([(b"key", b"value-%d" % i) for i in range(5)])
        error, _ = produce_raw(conn, crc_topic, corrupt(good))
        assert error in codes, f"{name}: error code {error}, expected one of {sorted(codes)}"
        assert log_end_offset(conn, crc_topic) == end_before, f"{name}: the corrupt batch moved the log end offset"
        lines = broker.wait_for_log(r"\bWARN\b", since)
        assert lines, f"{name}: no warning logged for a rejected batch; log since:\n{broker.log_since(since)}"
        # The same connection goes on: a good batch lands right at the old end.
        assert produce_raw(conn, crc_topic, good) == (kw.NONE, end_before)
        [fp] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, crc_topic, 0, end_before))
        values = [v for _, _, _, v in kw.decode_uncompressed_records(fp.records)]
        assert values == [b"value-%d" % i for i in range(5)]
