"""Kafka wire format by hand: just enough to send well-formed and deliberately broken requests
over a raw socket, and to read the answers.

Why by hand: the bad-input tests need frames no client library will produce (lying lengths,
huge array counts, corrupted CRCs), and the checks on ApiVersions and stored batch attributes
need to see the bytes exactly as the broker sent them. Every helper here is pure (bytes in,
bytes out) except the small `Connection` class at the end.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field

# API keys (Kafka's numbering).
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
JOIN_GROUP = 11
HEARTBEAT = 12
SYNC_GROUP = 14
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
OFFSET_FOR_LEADER_EPOCH = 23
CREATE_PARTITIONS = 37
DESCRIBE_CLUSTER = 60
UNREGISTER_BROKER = 64
ELECT_LEADERS = 43
DESCRIBE_TOPIC_PARTITIONS = 75

# Error codes used by the tests.
NONE = 0
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
NOT_LEADER_OR_FOLLOWER = 6
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75
MEMBER_ID_REQUIRED = 79

# Compression codec ids in RecordBatch attributes (bits 0-2).
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), as RecordBatch v2 uses. Table-driven; fast enough for test-sized batches.

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"


# ---------------------------------------------------------------------------------------------
# Primitive encoders.

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def kbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (64-bit), as Kafka records use."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


TAGGED_FIELDS_EMPTY = uvarint(0)


def request_header(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "e2e", flexible: bool = False) -> bytes:
    """Request header v1, or v2 (v1 plus empty tagged fields) for flexible versions."""
    h = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    return h + TAGGED_FIELDS_EMPTY if flexible else h


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


# ---------------------------------------------------------------------------------------------
# Requests.

def api_versions_request(version: int, correlation_id: int) -> bytes:
    if version >= 3:
        body = compact_string("shardlog-e2e") + compact_string("1.0") + TAGGED_FIELDS_EMPTY
        return frame(request_header(API_VERSIONS, version, correlation_id, flexible=True) + body)
    return frame(request_header(API_VERSIONS, version, correlation_id))


def metadata_v1_request(correlation_id: int, topics: list[str] | None) -> bytes:
    body = i32(-1) if topics is None else array([string(t) for t in topics])
    return frame(request_header(METADATA, 1, correlation_id) + body)


def produce_v3_request(correlation_id: int, topic: str, partition: int, records: bytes, acks: int = 1, timeout_ms: int = 30000,
                       transactional_id: str | None = None) -> bytes:
    partition_data = array([i32(partition) + kbytes(records)])
    topic_data = array([string(topic) + partition_data])
    body = string(transactional_id) + i16(acks) + i32(timeout_ms) + topic_data
    return frame(request_header(PRODUCE, 3, correlation_id) + body)


def fetch_v4_request(correlation_id: int, topic: str, partition: int, offset: int, max_wait_ms: int = 0, min_bytes: int = 1, max_bytes: int = 50 << 20,
                     partition_max_bytes: int = 10 << 20, replica_id: int = -1) -> bytes:
    """A consumer's fetch, or with `replica_id` a follower broker's."""
    return fetch_v4_request_partitions(correlation_id, topic, {partition: offset}, max_wait_ms, min_bytes, max_bytes, partition_max_bytes, replica_id)


def fetch_v4_request_partitions(correlation_id: int, topic: str, offsets: dict[int, int], max_wait_ms: int = 0, min_bytes: int = 1, max_bytes: int = 50 << 20,
                                partition_max_bytes: int = 10 << 20, replica_id: int = -1) -> bytes:
    """A fetch of several partitions of one topic, each from its offset in `offsets`."""
    partitions = array([i32(p) + i64(o) + i32(partition_max_bytes) for p, o in offsets.items()])
    topics = array([string(topic) + partitions])
    body = i32(replica_id) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0) + topics
    return frame(request_header(FETCH, 4, correlation_id) + body)


def fetch_v9_request(correlation_id: int, topic: str, partition: int, offset: int, current_leader_epoch: int, replica_id: int = -1,
                     partition_max_bytes: int = 1 << 20) -> bytes:
    """Fetch v9, which carries the fetcher's current leader epoch (KIP-320), with no session."""
    partitions = array([i32(partition) + i32(current_leader_epoch) + i64(offset) + i64(-1) + i32(partition_max_bytes)])
    topics = array([string(topic) + partitions])
    body = i32(replica_id) + i32(0) + i32(1) + i32(50 << 20) + i8(0) + i32(0) + i32(-1) + topics + array([])
    return frame(request_header(FETCH, 9, correlation_id) + body)


def parse_fetch_v9(body: bytes) -> list[FetchPartition]:
    r = Reader(body)
    r.i32()  # throttle time
    r.i16()  # error code
    r.i32()  # session id
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, error, hw, _lso, _log_start = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            for _ in range(max(r.i32(), 0)):
                r.i64()
                r.i64()
            records = r.kbytes() or b""
            out.append(FetchPartition(topic, partition, error, hw, records))
    return out


def list_offsets_v1_request(correlation_id: int, topic: str, partition: int, timestamp: int) -> bytes:
    """timestamp: -1 latest, -2 earliest, or a time in ms."""
    partitions = array([i32(partition) + i64(timestamp)])
    body = i32(-1) + array([string(topic) + partitions])
    return frame(request_header(LIST_OFFSETS, 1, correlation_id) + body)


def offset_for_leader_epoch_request(correlation_id: int, version: int, topics: list[tuple[str, list[tuple[int, int, int]]]], replica_id: int = -1) -> bytes:
    """OffsetForLeaderEpoch v2-v4; topics: [(topic, [(partition, current_leader_epoch,
    leader_epoch)])]. v3+ carries replica_id (-1 for a consumer); v4 is flexible."""
    flexible = version >= 4
    arr = compact_array if flexible else array
    tag = TAGGED_FIELDS_EMPTY if flexible else b""
    body = i32(replica_id) if version >= 3 else b""
    body += arr([
        (compact_string(t) if flexible else string(t)) + arr([i32(p) + i32(current) + i32(epoch) + tag for p, current, epoch in parts]) + tag
        for t, parts in topics
    ])
    return frame(request_header(OFFSET_FOR_LEADER_EPOCH, version, correlation_id, flexible=flexible) + body + tag)


def parse_offset_for_leader_epoch(body: bytes, version: int) -> dict[tuple[str, int], tuple[int, int, int]]:
    """{(topic, partition): (error code, leader epoch, end offset)}."""
    r = Reader(body)
    flexible = version >= 4
    if flexible:
        r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time

    def count() -> int:
        return r.uvarint() - 1 if flexible else r.i32()

    out = {}
    for _ in range(count()):
        topic = r.take(r.uvarint() - 1).decode() if flexible else r.string()
        for _ in range(count()):
            error, partition, epoch, end = r.i16(), r.i32(), r.i32(), r.i64()
            if flexible:
                r.skip_tagged_fields()
            out[(topic, partition)] = (error, epoch, end)
        if flexible:
            r.skip_tagged_fields()
    return out


def batch_leader_epochs(records: bytes) -> list[tuple[int, int]]:
    """[(base offset, partition leader epoch)] of the whole batches in a records field."""
    out = []
    pos = 0
    while pos + 61 <= len(records):
        base_offset, length, epoch = struct.unpack_from(">qii", records, pos)
        if pos + 12 + length > len(records):
            break
        out.append((base_offset, epoch))
        pos += 12 + length
    return out


def segment_batch_spans(data: bytes):
    """(position, batch length field) of each RecordBatch v2 in a segment file's bytes, up to the
    zeros after the last one (O_DIRECT padding, or the rest of the segment being written, which
    is preallocated with its size)."""
    position = 0
    while position + 61 <= len(data):
        (length,) = struct.unpack_from(">i", data, position + 8)
        if length <= 0 or data[position + 16] != 2:
            return
        yield position, length
        position += 12 + length


def init_producer_id_v0_request(correlation_id: int, transaction_timeout_ms: int = 60_000, transactional_id: str | None = None) -> bytes:
    """A producer asking for its id: an idempotent one (null transactional id), or a
    transactional one."""
    body = string(transactional_id) + i32(transaction_timeout_ms)
    return frame(request_header(INIT_PRODUCER_ID, 0, correlation_id) + body)


def join_group_v5_request(
    correlation_id: int,
    group: str,
    member_id: str,
    protocol_type: str,
    protocols: list[tuple[str, bytes]],
    session_timeout_ms: int = 30_000,
    rebalance_timeout_ms: int = 30_000,
    group_instance_id: str | None = None,
) -> bytes:
    body = (
        string(group)
        + i32(session_timeout_ms)
        + i32(rebalance_timeout_ms)
        + string(member_id)
        + string(group_instance_id)
        + string(protocol_type)
        + array([string(name) + kbytes(metadata) for name, metadata in protocols])
    )
    return frame(request_header(JOIN_GROUP, 5, correlation_id) + body)


def sync_group_v3_request(correlation_id: int, group: str, generation: int, member_id: str, assignments: list[tuple[str, bytes]], group_instance_id: str | None = None) -> bytes:
    body = string(group) + i32(generation) + string(member_id) + string(group_instance_id) + array([string(m) + kbytes(a) for m, a in assignments])
    return frame(request_header(SYNC_GROUP, 3, correlation_id) + body)


def heartbeat_v3_request(correlation_id: int, group: str, generation: int, member_id: str, group_instance_id: str | None = None) -> bytes:
    body = string(group) + i32(generation) + string(member_id) + string(group_instance_id)
    return frame(request_header(HEARTBEAT, 3, correlation_id) + body)


def offset_commit_v2_request(correlation_id: int, group: str, generation: int, member_id: str, offsets: list[tuple[str, int, int]], metadata: str | None = "") -> bytes:
    """offsets: [(topic, partition, offset)]; generation -1 and member "" for a commit from
    outside any group generation."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition, offset in offsets:
        by_topic.setdefault(topic, []).append(i32(partition) + i64(offset) + string(metadata))
    topics = array([string(t) + array(ps) for t, ps in by_topic.items()])
    body = string(group) + i32(generation) + string(member_id) + i64(-1) + topics  # retention -1: the broker's
    return frame(request_header(OFFSET_COMMIT, 2, correlation_id) + body)


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


def offset_commit_v8_request(correlation_id: int, group: str, generation: int, member_id: str, offsets: list[tuple[str, int, int]], metadata: str | None = "") -> bytes:
    """The flexible version (compact strings and arrays, tagged fields)."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition, offset in offsets:
        by_topic.setdefault(topic, []).append(i32(partition) + i64(offset) + i32(-1) + compact_string(metadata) + TAGGED_FIELDS_EMPTY)
    topics = compact_array([compact_string(t) + compact_array(ps) + TAGGED_FIELDS_EMPTY for t, ps in by_topic.items()])
    body = compact_string(group) + i32(generation) + compact_string(member_id) + compact_string(None) + topics + TAGGED_FIELDS_EMPTY
    return frame(request_header(OFFSET_COMMIT, 8, correlation_id, flexible=True) + body)


def offset_fetch_v1_request(correlation_id: int, group: str, partitions: list[tuple[str, int]]) -> bytes:
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(i32(partition))
    body = string(group) + array([string(t) + array(ps) for t, ps in by_topic.items()])
    return frame(request_header(OFFSET_FETCH, 1, correlation_id) + body)


def consumer_subscription(topics: list[str]) -> bytes:
    """The consumer protocol's subscription (version 0): JoinGroup metadata for protocol type
    "consumer"."""
    return i16(0) + array([string(t) for t in topics]) + kbytes(b"")


def consumer_assignment(partitions: dict[str, list[int]]) -> bytes:
    """The consumer protocol's assignment (version 0): SyncGroup assignment bytes."""
    return i16(0) + array([string(t) + array([i32(p) for p in ps]) for t, ps in partitions.items()]) + kbytes(b"")


# ---------------------------------------------------------------------------------------------
# RecordBatch v2.

def record(offset_delta: int, key: bytes | None, value: bytes | None, timestamp_delta: int = 0) -> bytes:
    body = i8(0) + varint(timestamp_delta) + varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(0)  # headers
    return varint(len(body)) + body


def record_batch(
    records: list[tuple[bytes | None, bytes | None]],
    base_timestamp: int = 1_700_000_000_000,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
) -> bytes:
    """A valid, uncompressed RecordBatch v2 with a correct CRC-32C. With a producer id, epoch
    and base sequence it is an idempotent producer's batch (and with `transactional`, part of
    its transaction)."""
    encoded = b"".join(record(i, k, v) for i, (k, v) in enumerate(records))
    after_crc = (
        i16(0x10 if transactional else 0)  # attributes: no compression, CreateTime
        + i32(len(records) - 1)  # last offset delta
        + i64(base_timestamp)
        + i64(base_timestamp)  # max timestamp
        + i64(producer_id)
        + i16(producer_epoch)
        + i32(base_sequence)
        + i32(len(records))
        + encoded
    )
    after_length = i32(0) + i8(2) + u32(crc32c(after_crc)) + after_crc  # leader epoch, magic, crc
    return i64(base_offset) + i32(len(after_length)) + after_length


# Byte positions inside a RecordBatch v2 header.
BATCH_CRC_AT = 17
BATCH_ATTRIBUTES_AT = 21
BATCH_RECORD_COUNT_AT = 57
BATCH_HEADER_BYTES = 61


@dataclass
class BatchInfo:
    base_offset: int
    length: int
    magic: int
    attributes: int
    last_offset_delta: int
    record_count: int
    crc_ok: bool

    @property
    def codec(self) -> int:
        return self.attributes & 0x7


def parse_batches(data: bytes) -> list[BatchInfo]:
    """Walks the record batches in a Fetch response's records field. A partial trailing batch
    (allowed by the protocol when it is cut at partition_max_bytes) is ignored."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        batch = data[pos:end]
        magic = batch[16]
        (crc,) = struct.unpack_from(">I", batch, BATCH_CRC_AT)
        (attributes,) = struct.unpack_from(">h", batch, BATCH_ATTRIBUTES_AT)
        (last_offset_delta,) = struct.unpack_from(">i", batch, 23)
        (count,) = struct.unpack_from(">i", batch, BATCH_RECORD_COUNT_AT)
        out.append(BatchInfo(base_offset, length, magic, attributes, last_offset_delta, count, crc32c(batch[BATCH_ATTRIBUTES_AT:]) == crc))
        pos = end
    return out


# ---------------------------------------------------------------------------------------------
# Response readers.

class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response too short: need {n} bytes at {self.pos}, have {len(self.data) - self.pos}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def uvarint(self) -> int:
        shift = 0
        value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    def string(self) -> str | None:
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def kbytes(self) -> bytes | None:
        n = self.i32()
        return None if n < 0 else self.take(n)

    def compact_string(self) -> str | None:
        """A flexible version's (nullable) string: its length plus one as a uvarint."""
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode()

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


@dataclass
class ApiVersionsResponse:
    error_code: int
    apis: dict[int, tuple[int, int]] = field(default_factory=dict)
    # v3+ (tagged fields): {feature: (min, max)}, the finalized features' epoch (-1 when the
    # response has none), and {feature: (min level, max level)}.
    supported_features: dict[str, tuple[int, int]] = field(default_factory=dict)
    finalized_features_epoch: int = -1
    finalized_features: dict[str, tuple[int, int]] = field(default_factory=dict)


def parse_api_versions(body: bytes, version: int) -> ApiVersionsResponse:
    """body: the response after the correlation id (ApiVersions responses always use header v0)."""
    r = Reader(body)
    error_code = r.i16()
    apis = {}
    count = r.uvarint() - 1 if version >= 3 else r.i32()
    for _ in range(max(count, 0)):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        if version >= 3:
            r.skip_tagged_fields()
        apis[key] = (lo, hi)
    response = ApiVersionsResponse(error_code, apis)
    if version < 3 or r.remaining() == 0:
        return response
    r.i32()  # throttle_time_ms
    for _ in range(r.uvarint()):
        tag, size = r.uvarint(), r.uvarint()
        field_bytes = Reader(r.take(size))
        if tag == 0:  # SupportedFeatures: [name, min_version, max_version]
            for _ in range(field_bytes.uvarint() - 1):
                name = field_bytes.take(field_bytes.uvarint() - 1).decode()
                response.supported_features[name] = (field_bytes.i16(), field_bytes.i16())
                field_bytes.skip_tagged_fields()
        elif tag == 1:  # FinalizedFeaturesEpoch
            response.finalized_features_epoch = field_bytes.i64()
        elif tag == 2:  # FinalizedFeatures: [name, max_version_level, min_version_level]
            for _ in range(field_bytes.uvarint() - 1):
                name = field_bytes.take(field_bytes.uvarint() - 1).decode()
                max_level, min_level = field_bytes.i16(), field_bytes.i16()
                response.finalized_features[name] = (min_level, max_level)
                field_bytes.skip_tagged_fields()
    return response


def parse_produce_v3(body: bytes) -> list[tuple[str, int, int, int]]:
    """[(topic, partition, error_code, base_offset)]"""
    r = Reader(body)
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, error, base_offset, _log_append_time = r.i32(), r.i16(), r.i64(), r.i64()
            out.append((topic, partition, error, base_offset))
    r.i32()  # throttle time
    return out


@dataclass
class JoinGroupResponse:
    error_code: int
    generation: int
    protocol_name: str | None
    leader: str
    member_id: str
    members: list[tuple[str, str | None, bytes]]  # (member id, group instance id, metadata)


def parse_join_group_v5(body: bytes) -> JoinGroupResponse:
    r = Reader(body)
    r.i32()  # throttle time
    error, generation, protocol_name, leader, member_id = r.i16(), r.i32(), r.string(), r.string(), r.string()
    members = [(r.string(), r.string(), r.kbytes() or b"") for _ in range(r.i32())]
    return JoinGroupResponse(error, generation, protocol_name, leader, member_id, members)


def parse_sync_group_v3(body: bytes) -> tuple[int, bytes]:
    """(error_code, assignment)"""
    r = Reader(body)
    r.i32()  # throttle time
    return r.i16(), r.kbytes() or b""


def parse_heartbeat_v3(body: bytes) -> int:
    r = Reader(body)
    r.i32()  # throttle time
    return r.i16()


def parse_offset_commit_v2(body: bytes) -> dict[tuple[str, int], int]:
    """{(topic, partition): error_code}"""
    r = Reader(body)
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition = r.i32()
            out[(topic, partition)] = r.i16()
    return out


def parse_offset_commit_v8(body: bytes) -> dict[tuple[str, int], int]:
    """{(topic, partition): error_code}; body starts with the response header's tagged fields."""
    r = Reader(body)
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time
    out = {}

    def compact_string() -> str:
        n = r.uvarint() - 1
        return r.take(n).decode()

    for _ in range(r.uvarint() - 1):
        topic = compact_string()
        for _ in range(r.uvarint() - 1):
            partition = r.i32()
            out[(topic, partition)] = r.i16()
            r.skip_tagged_fields()
        r.skip_tagged_fields()
    return out


def parse_offset_fetch_v1(body: bytes) -> dict[tuple[str, int], tuple[int, str | None, int]]:
    """{(topic, partition): (committed offset, metadata, error_code)}; offset -1 when none."""
    r = Reader(body)
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, offset, metadata, error = r.i32(), r.i64(), r.string(), r.i16()
            out[(topic, partition)] = (offset, metadata, error)
    return out


def parse_init_producer_id_v0(body: bytes) -> tuple[int, int, int]:
    """(error_code, producer_id, producer_epoch)"""
    r = Reader(body)
    r.i32()  # throttle time
    return r.i16(), r.i64(), r.i16()


@dataclass
class FetchPartition:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    records: bytes


def parse_fetch_v4(body: bytes) -> list[FetchPartition]:
    r = Reader(body)
    r.i32()  # throttle time
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition, error, hw, _lso = r.i32(), r.i16(), r.i64(), r.i64()
            aborted = r.i32()
            for _ in range(max(aborted, 0)):
                r.i64()
                r.i64()
            records = r.kbytes() or b""
            out.append(FetchPartition(topic, partition, error, hw, records))
    return out


def parse_list_offsets_v1(body: bytes) -> list[tuple[str, int, int, int, int]]:
    """[(topic, partition, error_code, timestamp, offset)]"""
    r = Reader(body)
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            out.append((topic, r.i32(), r.i16(), r.i64(), r.i64()))
    return out


def parse_metadata_v1(body: bytes) -> tuple[list[tuple[int, str, int]], dict[str, tuple[int, list[int]]]]:
    """(brokers [(node_id, host, port)], topics {name: (error_code, [partition ids])})"""
    r = Reader(body)
    brokers = []
    for _ in range(r.i32()):
        node, host, port, _rack = r.i32(), r.string(), r.i32(), r.string()
        brokers.append((node, host, port))
    r.i32()  # controller id
    topics = {}
    for _ in range(r.i32()):
        error, name, _internal = r.i16(), r.string(), r.i8()
        partitions = []
        for _ in range(r.i32()):
            _perr, pid, _leader = r.i16(), r.i32(), r.i32()
            for _ in range(r.i32()):
                r.i32()  # replicas
            for _ in range(r.i32()):
                r.i32()  # isr
            partitions.append(pid)
        topics[name] = (error, partitions)
    return brokers, topics


# ---------------------------------------------------------------------------------------------
# A raw connection.

def unregister_broker_v0_request(correlation_id: int, broker_id: int) -> bytes:
    return frame(request_header(UNREGISTER_BROKER, 0, correlation_id, flexible=True) + i32(broker_id) + TAGGED_FIELDS_EMPTY)


def parse_unregister_broker_v0(body: bytes) -> tuple[int, str | None]:
    """(error code, error message) of an UnregisterBroker v0 response (after the correlation id)."""
    r = Reader(body)
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time
    error = r.i16()
    n = r.uvarint()
    message = None if n == 0 else r.take(n - 1).decode()
    r.skip_tagged_fields()
    assert r.remaining() == 0, f"{r.remaining()} bytes after the response"
    return error, message


def elect_leaders_v2_request(correlation_id: int, election_type: int, partitions: dict[str, list[int]] | None) -> bytes:
    """ElectLeaders v2 (flexible); `partitions` None asks for every partition."""
    if partitions is None:
        topics = uvarint(0)
    else:
        topics = uvarint(len(partitions) + 1) + b"".join(
            compact_string(t) + uvarint(len(ps) + 1) + b"".join(i32(p) for p in ps) + TAGGED_FIELDS_EMPTY for t, ps in partitions.items())
    body = i8(election_type) + topics + i32(30_000) + TAGGED_FIELDS_EMPTY
    return frame(request_header(ELECT_LEADERS, 2, correlation_id, flexible=True) + body)


def parse_elect_leaders_v2(body: bytes) -> tuple[int, dict[tuple[str, int], tuple[int, str | None]]]:
    """(top-level error, {(topic, partition): (error, message)}) of an ElectLeaders v2 response."""
    r = Reader(body)
    r.skip_tagged_fields()  # response header v1

    def compact_str() -> str | None:
        n = r.uvarint()
        return None if n == 0 else r.take(n - 1).decode()

    r.i32()  # throttle time
    error = r.i16()
    results = {}
    for _ in range(r.uvarint() - 1):
        topic = compact_str()
        for _ in range(r.uvarint() - 1):
            partition, code, message = r.i32(), r.i16(), compact_str()
            r.skip_tagged_fields()
            results[(topic, partition)] = (code, message)
        r.skip_tagged_fields()
    r.skip_tagged_fields()
    assert r.remaining() == 0, f"{r.remaining()} bytes after the response"
    return error, results


def describe_topic_partitions_v0_request(correlation_id: int, topics: list[str], limit: int, cursor: tuple[str, int] | None = None,
                                         cursor_presence: int | None = None) -> bytes:
    """`cursor_presence` overrides the cursor's presence byte (1 present, -1 null), to send one
    no decoder agrees on."""
    body = compact_array([compact_string(t) + TAGGED_FIELDS_EMPTY for t in topics]) + i32(limit)
    if cursor is None:
        body += i8(-1 if cursor_presence is None else cursor_presence)
    else:
        body += i8(1 if cursor_presence is None else cursor_presence) + compact_string(cursor[0]) + i32(cursor[1]) + TAGGED_FIELDS_EMPTY
    body += TAGGED_FIELDS_EMPTY
    return frame(request_header(DESCRIBE_TOPIC_PARTITIONS, 0, correlation_id, flexible=True) + body)


@dataclass
class DescribedPartition:
    error_code: int
    index: int
    leader: int
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    offline: list[int]
    # KIP-966's eligible leader replicas and last known ELR: None where the wire says null.
    elr: list[int] | None = None
    last_known_elr: list[int] | None = None


@dataclass
class DescribedTopic:
    error_code: int
    name: str | None
    topic_id: bytes
    is_internal: bool
    partitions: list[DescribedPartition]
    authorized_operations: int


def parse_describe_topic_partitions_v0(body: bytes) -> tuple[list[DescribedTopic], tuple[str, int] | None]:
    """(topics, next cursor) of a DescribeTopicPartitions v0 response (after the correlation id)."""
    r = Reader(body)
    r.skip_tagged_fields()  # response header v1

    def compact_str() -> str | None:
        n = r.uvarint()
        return None if n == 0 else r.take(n - 1).decode()

    def int32s() -> list[int]:
        return nullable_int32s() or []

    def nullable_int32s() -> list[int] | None:
        n = r.uvarint()
        return None if n == 0 else [r.i32() for _ in range(n - 1)]

    r.i32()  # throttle time
    topics = []
    for _ in range(r.uvarint() - 1):
        error, name, topic_id, internal = r.i16(), compact_str(), r.take(16), r.i8() != 0
        partitions = []
        for _ in range(r.uvarint() - 1):
            p = DescribedPartition(r.i16(), r.i32(), r.i32(), r.i32(), int32s(), int32s(), [])
            p.elr = nullable_int32s()
            p.last_known_elr = nullable_int32s()
            p.offline = int32s()
            r.skip_tagged_fields()
            partitions.append(p)
        topics.append(DescribedTopic(error, name, topic_id, internal, partitions, r.i32()))
        r.skip_tagged_fields()
    cursor = None
    if r.i8() == 1:
        cursor = (compact_str(), r.i32())
        r.skip_tagged_fields()
    r.skip_tagged_fields()
    assert r.remaining() == 0, f"{r.remaining()} bytes after the response"
    return topics, cursor


class Closed(Exception):
    """The broker closed the connection (EOF or reset)."""


class Connection:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.timeout_s = timeout_s
        self.next_correlation_id = 1

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def correlation_id(self) -> int:
        cid = self.next_correlation_id
        self.next_correlation_id += 1
        return cid

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete response: got {len(buf)} of {n} bytes")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            except socket.timeout as e:
                raise TimeoutError(f"no complete response: got {len(buf)} of {n} bytes") from e
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self, timeout_s: float | None = None) -> tuple[int, bytes]:
        """Returns (correlation_id, rest of the response after the correlation id)."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        (size,) = struct.unpack(">i", self._recv_exact(4, deadline))
        payload = self._recv_exact(size, deadline)
        (cid,) = struct.unpack_from(">i", payload)
        return cid, payload[4:]

    def request(self, build, *args, **kwargs) -> bytes:
        """build(correlation_id, ...) -> frame; returns the response body after checking the
        correlation id."""
        cid = self.correlation_id()
        self.send(build(cid, *args, **kwargs))
        got, body = self.recv_frame()
        assert got == cid, f"correlation id {got} answers request {cid}"
        return body

    def api_versions(self, version: int = 0) -> ApiVersionsResponse:
        cid = self.correlation_id()
        self.send(api_versions_request(version, cid))
        got, body = self.recv_frame()
        assert got == cid, f"correlation id {got} answers request {cid}"
        return parse_api_versions(body, version if version <= 4 else 0)

    def readable_within(self, timeout_s: float) -> bool:
        """Whether the broker sent something (or closed) within timeout_s. Used only to check
        that nothing arrives early, never to measure how long something took."""
        readable, _, _ = select.select([self.sock], [], [], timeout_s)
        return bool(readable)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def decode_uncompressed_records(records_field: bytes) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """[(offset, timestamp, key, value)] of the complete, uncompressed batches in a Fetch
    response's records field."""

    def read_varint(r: Reader) -> int:
        v = r.uvarint()
        return (v >> 1) ^ -(v & 1)

    out = []
    pos = 0
    for b in parse_batches(records_field):
        assert b.codec == 0, "only uncompressed batches can be decoded here"
        r = Reader(records_field[pos:pos + 12 + b.length])
        pos += 12 + b.length
        r.take(27)  # base offset .. last offset delta
        base_timestamp = r.i64()
        r.take(8 + 8 + 2 + 4)  # max timestamp, producer id, producer epoch, base sequence
        for _ in range(r.i32()):
            read_varint(r)  # record length
            r.i8()  # attributes
            timestamp_delta = read_varint(r)
            offset_delta = read_varint(r)
            key_length = read_varint(r)
            key = None if key_length < 0 else r.take(key_length)
            value_length = read_varint(r)
            value = None if value_length < 0 else r.take(value_length)
            for _ in range(read_varint(r)):
                r.take(read_varint(r))
                n = read_varint(r)
                if n > 0:
                    r.take(n)
            out.append((b.base_offset + offset_delta, base_timestamp + timestamp_delta, key, value))
    return out
