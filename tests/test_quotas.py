"""Client quotas: AlterClientQuotas and DescribeClientQuotas with Kafka's entities, keys, filter
semantics and errors; quotas kept across a restart; and a producer and a consumer over their
byte-rate quota throttled (throttle_time_ms reported to librdkafka, everything still delivered)
while a client without a quota is not; and controller_mutation_rate (KIP-599): topics past an
empty bucket refused with THROTTLING_QUOTA_EXCEEDED by the strict versions of CreateTopics,
DeleteTopics and CreatePartitions, only throttled by the older ones.

Requests are kafka-python's own protocol classes (its admin client has no quota methods), sent
over a plain socket so that every field of the answer can be checked."""

from __future__ import annotations

import re
import struct
import threading
import time
import urllib.request

import confluent_kafka
import pytest
from kafka.protocol.admin import AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse

import clients
import kafkawire as kw

NONE = 0
INVALID_REQUEST = 42
UNSUPPORTED_VERSION = 35
MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2

# Short windows so that a throttled client is held back within seconds: 3 samples of 1 s.
QUOTA_CONFIG = {"quota.window.num": 3, "quota.window.size.seconds": 1}


class Quotas:
    """AlterClientQuotas and DescribeClientQuotas over one connection."""

    def __init__(self, port: int, version: int = 1):
        self.conn = kw.Connection(port)
        self.version = version

    def _call(self, request_class, response_class, **fields):
        request = request_class[self.version](**fields)
        cid = self.conn.correlation_id()
        request.with_header(correlation_id=cid, client_id="e2e-quotas")
        self.conn.send(bytes(request.encode(version=self.version, header=True, framed=True)))
        got, body = self.conn.recv_frame()
        assert got == cid
        return response_class.decode(struct.pack(">i", cid) + body, version=self.version, header=True)

    def alter(self, entries: list[tuple[dict[str, str | None], dict[str, float | None]]], validate_only: bool = False) -> list[tuple[dict, int, str | None]]:
        """entries: (entity {type: name or None for the default}, {key: value, or None to remove})."""
        R = AlterClientQuotasRequest[self.version]
        wire = [
            R.EntryData(
                entity=[R.EntryData.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
                ops=[R.EntryData.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None) for k, v in ops.items()],
            )
            for entity, ops in entries
        ]
        r = self._call(AlterClientQuotasRequest, AlterClientQuotasResponse, entries=wire, validate_only=validate_only)
        return [({e.entity_type: e.entity_name for e in x.entity}, x.error_code, x.error_message) for x in r.entries]

    def describe(self, components: list[tuple[str, int, str | None]] = (), strict: bool = False):
        """(error code, message, {frozenset(entity items): {key: value}})."""
        R = DescribeClientQuotasRequest[self.version]
        wire = [R.ComponentData(entity_type=t, match_type=m, match=n) for t, m, n in components]
        r = self._call(DescribeClientQuotasRequest, DescribeClientQuotasResponse, components=wire, strict=strict)
        found = {frozenset((e.entity_type, e.entity_name) for e in x.entity): {v.key: v.value for v in x.values} for x in (r.entries or [])}
        return r.error_code, r.error_message, found

    def close(self):
        self.conn.close()


def entity(**components: str | None) -> dict[str, str | None]:
    return {k.replace("_", "-"): v for k, v in components.items()}


def key(**components: str | None) -> frozenset:
    return frozenset(entity(**components).items())


@pytest.fixture
def quotas(broker):
    q = Quotas(broker.port)
    yield q
    q.close()


def test_alter_then_describe_with_exact_default_and_any_name_filters(broker, quotas):
    results = quotas.alter([
        (entity(user="alice"), {"producer_byte_rate": 1024, "consumer_byte_rate": 2048}),
        (entity(user=None), {"producer_byte_rate": 500}),
        (entity(user="alice", client_id=None), {"request_percentage": 12.5}),
        (entity(client_id="app"), {"consumer_byte_rate": 4096, "controller_mutation_rate": 3.5}),
        (entity(ip=None), {"connection_creation_rate": 10}),
        (entity(ip="10.0.0.1"), {"connection_creation_rate": 20}),
    ])
    assert [code for _, code, _ in results] == [NONE] * 6, results
    # The response names each entity as the request did.
    assert results[2][0] == {"user": "alice", "client-id": None}

    code, _, everything = quotas.describe()
    assert code == NONE
    assert everything == {
        key(user="alice"): {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0},
        key(user=None): {"producer_byte_rate": 500.0},
        key(user="alice", client_id=None): {"request_percentage": 12.5},
        key(client_id="app"): {"consumer_byte_rate": 4096.0, "controller_mutation_rate": 3.5},
        key(ip=None): {"connection_creation_rate": 10.0},
        key(ip="10.0.0.1"): {"connection_creation_rate": 20.0},
    }
    # Exact name: every entity with that user, whatever else it has, unless strict.
    assert set(quotas.describe([("user", MATCH_EXACT, "alice")])[2]) == {key(user="alice"), key(user="alice", client_id=None)}
    assert set(quotas.describe([("user", MATCH_EXACT, "alice")], strict=True)[2]) == {key(user="alice")}
    # Default: the entity whose user is <default>.
    assert set(quotas.describe([("user", MATCH_DEFAULT, None)])[2]) == {key(user=None)}
    # Any name of a type, the default included.
    assert set(quotas.describe([("user", MATCH_SPECIFIED, None)])[2]) == {key(user="alice"), key(user=None), key(user="alice", client_id=None)}
    assert set(quotas.describe([("user", MATCH_SPECIFIED, None), ("client-id", MATCH_SPECIFIED, None)])[2]) == {key(user="alice", client_id=None)}
    assert set(quotas.describe([("ip", MATCH_SPECIFIED, None)], strict=True)[2]) == {key(ip=None), key(ip="10.0.0.1")}
    assert quotas.describe([("client-id", MATCH_EXACT, "nobody")])[2] == {}

    # Removing a key keeps the others; removing the last one removes the entity.
    assert [c for _, c, _ in quotas.alter([(entity(user="alice"), {"producer_byte_rate": None})])] == [NONE]
    assert quotas.describe([("user", MATCH_EXACT, "alice")], strict=True)[2] == {key(user="alice"): {"consumer_byte_rate": 2048.0}}
    assert [c for _, c, _ in quotas.alter([(entity(user="alice"), {"consumer_byte_rate": None})])] == [NONE]
    assert quotas.describe([("user", MATCH_EXACT, "alice")], strict=True)[2] == {}

    # validate_only checks and stores nothing.
    assert [c for _, c, _ in quotas.alter([(entity(user="bob"), {"producer_byte_rate": 1})], validate_only=True)] == [NONE]
    assert quotas.describe([("user", MATCH_EXACT, "bob")])[2] == {}


def test_bad_alterations_and_filters_get_kafkas_errors(broker, quotas):
    results = quotas.alter([
        (entity(user="a"), {"no_such_key": 1}),
        (entity(user="a"), {"producer_byte_rate": 10.5}),
        (entity(user="a"), {"producer_byte_rate": -5}),
        (entity(user="a"), {"connection_creation_rate": 5}),
        (entity(ip="10.0.0.2", user="a"), {"connection_creation_rate": 5}),
        (entity(ip="not-an-address"), {"connection_creation_rate": 5}),
        ({"group": "g"}, {"producer_byte_rate": 5}),
        ({}, {"producer_byte_rate": 5}),
        (entity(user=""), {"producer_byte_rate": 5}),
        (entity(user="good"), {"producer_byte_rate": 5}),
    ])
    codes = [code for _, code, _ in results]
    assert codes == [INVALID_REQUEST] * 9 + [NONE], results
    assert all(message for _, code, message in results if code != NONE), "every refusal says why"
    assert "fractional" in results[1][2]
    assert "combination" in results[4][2]
    # Only the valid entry was kept.
    assert quotas.describe()[2] == {key(user="good"): {"producer_byte_rate": 5.0}}

    for components, want in [
        ([("user", MATCH_EXACT, None)], INVALID_REQUEST),
        ([("user", MATCH_DEFAULT, "x")], INVALID_REQUEST),
        ([("user", MATCH_SPECIFIED, None), ("user", MATCH_DEFAULT, None)], INVALID_REQUEST),
        ([("ip", MATCH_SPECIFIED, None), ("user", MATCH_SPECIFIED, None)], INVALID_REQUEST),
        ([("", MATCH_SPECIFIED, None)], INVALID_REQUEST),
        ([("group", MATCH_SPECIFIED, None)], UNSUPPORTED_VERSION),
        ([("user", 9, None)], UNSUPPORTED_VERSION),
    ]:
        code, message, entries = quotas.describe(components)
        assert (code, bool(message), entries) == (want, True, {}), components
    broker.assert_alive()


def test_both_versions_are_served(broker):
    for version in (0, 1):
        q = Quotas(broker.port, version)
        try:
            assert [c for _, c, _ in q.alter([(entity(client_id=f"v{version}"), {"producer_byte_rate": 100})])] == [NONE]
            assert q.describe([("client-id", MATCH_EXACT, f"v{version}")])[2] == {key(client_id=f"v{version}"): {"producer_byte_rate": 100.0}}
        finally:
            q.close()


def test_quotas_survive_a_restart(broker):
    q = Quotas(broker.port)
    try:
        assert [c for _, c, _ in q.alter([(entity(user="kept", client_id="app"), {"producer_byte_rate": 777})])] == [NONE]
    finally:
        q.close()
    broker.restart()
    q = Quotas(broker.port)
    try:
        assert q.describe()[2] == {key(user="kept", client_id="app"): {"producer_byte_rate": 777.0}}
    finally:
        q.close()


# --- enforcement ------------------------------------------------------------------------------

RECORDS = 300
VALUE = b"x" * 1000
# The byte rate of the throttled clients: well below what any client does on a loaded machine.
QUOTA_BYTES = 25_000


def metric_samples(url: str, name: str) -> dict[tuple, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m:
            out[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1))))] = float(m.group(2))
    return out


def produce_all(bootstrap: str, topic: str, client_id: str) -> list[int]:
    """Produces RECORDS records; every throttle time librdkafka was told of."""
    throttles: list[int] = []
    failures: list[str] = []
    p = clients.confluent_producer(bootstrap, **{"client.id": client_id, "linger.ms": 20, "batch.size": 16_384, "throttle_cb": lambda e: throttles.append(e.throttle_time)})
    delivered = 0

    def report(err, _msg):
        nonlocal delivered
        if err:
            failures.append(str(err))
        else:
            delivered += 1

    for i in range(RECORDS):
        while True:
            try:
                p.produce(topic, key=str(i).encode(), value=VALUE, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(120) == 0, "records left undelivered"
    p.poll(0)
    assert failures == [] and delivered == RECORDS, failures
    return throttles


def test_a_producer_over_its_quota_is_throttled_and_delivers_everything(broker_factory):
    broker = broker_factory(config=QUOTA_CONFIG)
    topic = "quota-produce"
    clients.create_topic(broker.bootstrap, topic, 1)
    q = Quotas(broker.port)
    try:
        # 25 KB/s: the 300 KB produced is far more than the windows hold at that rate (two
        # windows' worth, 50 KB), so the client is throttled unless it cannot even send 25 KB/s.
        assert [c for _, c, _ in q.alter([(entity(client_id="slow-producer"), {"producer_byte_rate": QUOTA_BYTES})])] == [NONE]
    finally:
        q.close()
    unthrottled = produce_all(broker.bootstrap, topic, "free-producer")
    throttled = produce_all(broker.bootstrap, topic, "slow-producer")
    # librdkafka reports each non-zero throttle time, and a zero once it is over.
    assert not any(t > 0 for t in unthrottled), "a client without a quota must not be throttled"
    assert any(t > 0 for t in throttled), throttled
    # Everything of both is in the log.
    assert clients.confluent_watermarks(broker.bootstrap, topic, 1)[0][1] == 2 * RECORDS
    # The throttle time is reported per quota entity (client-id quota: no user tag).
    produced = metric_samples(broker.admin_url, "shardlog_quota_throttle_time_ms_total")
    assert produced.get((("client_id", "slow-producer"), ("quota", "produce"), ("user", "")), 0) > 0, produced
    assert not any(("client_id", "free-producer") in labels for labels in produced), produced


def consume_all(bootstrap: str, topic: str, client_id: str, end: int) -> tuple[int, list[int]]:
    throttles: list[int] = []
    consumer = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{
        "group.id": f"{client_id}-group",
        "client.id": client_id,
        "enable.auto.commit": False,
        # Small fetches, so that the quota is measured in steps finer than its windows.
        "max.partition.fetch.bytes": 16_384,
        "throttle_cb": lambda e: throttles.append(e.throttle_time),
    }))
    got = 0
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        deadline = time.monotonic() + 120
        while got < end:
            assert time.monotonic() < deadline, f"{client_id} stuck at {got} of {end}"
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                assert not m.error(), m.error()
                got += 1
    finally:
        consumer.close()
    return got, throttles


def test_a_consumer_over_its_quota_is_throttled_and_reads_everything(broker_factory):
    broker = broker_factory(config=QUOTA_CONFIG)
    topic = "quota-fetch"
    clients.create_topic(broker.bootstrap, topic, 1)
    produce_all(broker.bootstrap, topic, "loader")
    q = Quotas(broker.port)
    try:
        # The default user with this client id: each user's "slow-consumer" is measured apart
        # (the anonymous user here); other client ids have no quota.
        assert [c for _, c, _ in q.alter([(entity(user=None, client_id="slow-consumer"), {"consumer_byte_rate": QUOTA_BYTES})])] == [NONE]
    finally:
        q.close()
    results = {}

    def run(client_id):
        results[client_id] = consume_all(broker.bootstrap, topic, client_id, RECORDS)

    threads = [threading.Thread(target=run, args=(c,)) for c in ("slow-consumer", "free-consumer")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slow_got, slow_throttles = results["slow-consumer"]
    free_got, free_throttles = results["free-consumer"]
    assert (slow_got, free_got) == (RECORDS, RECORDS)
    assert any(t > 0 for t in slow_throttles), slow_throttles
    assert not any(t > 0 for t in free_throttles), free_throttles
    fetched = metric_samples(broker.admin_url, "shardlog_quota_throttled_responses_total")
    assert fetched.get((("client_id", "slow-consumer"), ("quota", "fetch"), ("user", "ANONYMOUS")), 0) > 0, fetched


# --- Kafka's own CLI --------------------------------------------------------------------------


def kafka_configs() -> str:
    import os
    from pathlib import Path

    home = os.environ.get("KAFKA_HOME")
    tool = Path(home) / "bin" / "kafka-configs.sh" if home else None
    if tool is None or not tool.is_file():
        pytest.skip("no Kafka distribution: set KAFKA_HOME to one (bin/kafka-configs.sh) to run Kafka's own kafka-configs.sh against shardlog")
    return str(tool)


def test_kafka_configs_sets_and_describes_user_and_client_quotas(broker):
    import subprocess

    tool = kafka_configs()

    def run(*args: str) -> str:
        done = subprocess.run([tool, "--bootstrap-server", broker.bootstrap, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("--alter", "--entity-type", "users", "--entity-name", "alice", "--add-config", "producer_byte_rate=1024,consumer_byte_rate=2048")
    run("--alter", "--entity-type", "clients", "--entity-default", "--add-config", "request_percentage=50")
    assert "producer_byte_rate=1024.0" in run("--describe", "--entity-type", "users", "--entity-name", "alice")
    assert "request_percentage=50.0" in run("--describe", "--entity-type", "clients", "--entity-default")
    q = Quotas(broker.port)
    try:
        assert q.describe()[2] == {
            key(user="alice"): {"producer_byte_rate": 1024.0, "consumer_byte_rate": 2048.0},
            key(client_id=None): {"request_percentage": 50.0},
        }
    finally:
        q.close()


def api_versions_answered(port: int, source: str) -> bool:
    """Connects from `source`, sends ApiVersions v0: True when answered, False when the broker
    closes the connection instead."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(kw.api_versions_request(0, 1))
        try:
            return len(s.recv(4)) == 4
        except ConnectionResetError:
            return False


def test_connection_creation_rate_closes_new_connections_of_an_address_over_its_quota(broker_factory):
    broker = broker_factory(config=QUOTA_CONFIG)
    q = Quotas(broker.port)
    try:
        # 2 connections/s over windows spanning 2 s: 4 at once fit, then about one each 0.5 s.
        assert [c for _, c, _ in q.alter([(entity(ip="127.0.0.1"), {"connection_creation_rate": 2})])] == [NONE]
    finally:
        q.close()
    answered = [api_versions_answered(broker.port, "127.0.0.1") for _ in range(4)]
    assert answered == [True] * 4
    # Connecting faster than 2/s from then on is refused soon (each attempt takes milliseconds;
    # the bound only keeps a broken broker from looping forever).
    for attempt in range(40):
        if not api_versions_answered(broker.port, "127.0.0.1"):
            break
    else:
        raise AssertionError("40 connections in a row from 127.0.0.1 were served over a quota of 2 per second")
    # Another address has no quota (the ip entity is 127.0.0.1's alone).
    assert all(api_versions_answered(broker.port, "127.0.0.2") for _ in range(8))
    broker.assert_alive()


# --- controller_mutation_rate (KIP-599) -------------------------------------------------------

CREATE_TOPICS, DELETE_TOPICS, CREATE_PARTITIONS = 19, 20, 37
THROTTLING_QUOTA_EXCEEDED = 89


def _flexible_call(port: int, api_key: int, version: int, client_id: str, body: bytes) -> kw.Reader:
    """One request on a connection of its own (a throttled connection is muted for the throttle
    time); the response body after its header."""
    with kw.Connection(port) as conn:
        raw = conn.request(lambda cid: kw.frame(kw.request_header(api_key, version, cid, client_id=client_id, flexible=True) + body + kw.TAGGED_FIELDS_EMPTY))
    r = kw.Reader(raw)
    r.skip_tagged_fields()
    return r


def create_topics_v7(port: int, client_id: str, topics: dict[str, int]) -> tuple[int, dict[str, tuple[int, str | None]]]:
    """CreateTopics v7 (strict): (throttle_time_ms, {topic: (error code, message)})."""
    body = kw.uvarint(len(topics) + 1)
    for name, partitions in topics.items():
        body += kw.compact_string(name) + kw.i32(partitions) + kw.i16(-1) + kw.uvarint(1) + kw.uvarint(1) + kw.TAGGED_FIELDS_EMPTY
    r = _flexible_call(port, CREATE_TOPICS, 7, client_id, body + kw.i32(30_000) + kw.i8(0))
    throttle, results = r.i32(), {}
    for _ in range(r.uvarint() - 1):
        name = r.compact_string()
        r.take(16)  # topic id
        code, message = r.i16(), r.compact_string()
        r.i32(), r.i16()  # partitions, replication factor
        configs = r.uvarint() - 1
        for _ in range(max(configs, 0)):
            r.compact_string(), r.compact_string(), r.i8(), r.i8(), r.i8()
            r.skip_tagged_fields()
        r.skip_tagged_fields()
        results[name] = (code, message)
    return throttle, results


def create_topics_v4(port: int, client_id: str, name: str, partitions: int) -> tuple[int, int]:
    """CreateTopics v4 (permissive, not flexible): (throttle_time_ms, error code)."""
    body = kw.array([kw.string(name) + kw.i32(partitions) + kw.i16(-1) + kw.i32(0) + kw.i32(0)]) + kw.i32(30_000) + kw.i8(0)
    with kw.Connection(port) as conn:
        r = kw.Reader(conn.request(lambda cid: kw.frame(kw.request_header(CREATE_TOPICS, 4, cid, client_id=client_id) + body)))
    throttle = r.i32()
    assert r.i32() == 1 and r.string() == name
    return throttle, r.i16()


def delete_topics_v6(port: int, client_id: str, name: str) -> tuple[int, int, str | None]:
    """DeleteTopics v6 (strict): (throttle_time_ms, error code, message)."""
    body = kw.uvarint(2) + kw.compact_string(name) + bytes(16) + kw.TAGGED_FIELDS_EMPTY + kw.i32(30_000)
    r = _flexible_call(port, DELETE_TOPICS, 6, client_id, body)
    throttle = r.i32()
    assert r.uvarint() == 2 and r.compact_string() == name
    r.take(16)
    return throttle, r.i16(), r.compact_string()


def create_partitions_v3(port: int, client_id: str, name: str, count: int) -> tuple[int, int, str | None]:
    """CreatePartitions v3 (strict): (throttle_time_ms, error code, message)."""
    body = kw.uvarint(2) + kw.compact_string(name) + kw.i32(count) + kw.uvarint(0) + kw.TAGGED_FIELDS_EMPTY + kw.i32(30_000) + kw.i8(0)
    r = _flexible_call(port, CREATE_PARTITIONS, 3, client_id, body)
    throttle = r.i32()
    assert r.uvarint() == 2 and r.compact_string() == name
    return throttle, r.i16(), r.compact_string()


def partition_counts(bootstrap: str) -> dict[str, int]:
    md = confluent_kafka.admin.AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in md.topics.items()}


def test_controller_mutation_rate_refuses_topics_past_an_empty_bucket_and_throttles(broker, quotas):
    # 0.1 partitions/s over 11 windows of 1 s: a bucket of 1.1 partitions, which a topic of 10
    # takes to -8.9, about 89 s from empty.
    for client in ("mutator", "mutator-old"):
        assert quotas.alter([(entity(client_id=client), {"controller_mutation_rate": 0.1})])[0][1] == NONE

    # Strict (CreateTopics v7): the first topic finds the bucket full and is created, taking it
    # below zero; the ones after it are refused with Kafka's error and message.
    throttle, results = create_topics_v7(broker.port, "mutator", {"mq-big": 10, "mq-small": 1, "mq-later": 1})
    assert results["mq-big"] == (NONE, None), results
    assert results["mq-small"] == results["mq-later"] == (THROTTLING_QUOTA_EXCEEDED, "The throttling quota has been exceeded."), results
    assert 0 < throttle <= 89_000, throttle
    counts = partition_counts(broker.bootstrap)
    assert counts.get("mq-big") == 10 and "mq-small" not in counts and "mq-later" not in counts, counts

    # While the bucket is below zero the client can neither delete nor add partitions.
    throttle, code, message = delete_topics_v6(broker.port, "mutator", "mq-big")
    assert (code, message) == (THROTTLING_QUOTA_EXCEEDED, "The throttling quota has been exceeded.") and throttle > 0
    throttle, code, _ = create_partitions_v3(broker.port, "mutator", "mq-big", 12)
    assert code == THROTTLING_QUOTA_EXCEEDED and throttle > 0
    assert partition_counts(broker.bootstrap).get("mq-big") == 10

    # A client without the quota is not held back.
    throttle, results = create_topics_v7(broker.port, "free", {"mq-free": 10})
    assert (throttle, results["mq-free"]) == (0, (NONE, None))

    # Permissive (CreateTopics v4, before Kafka made it strict): created, and throttled.
    throttle, code = create_topics_v4(broker.port, "mutator-old", "mq-old", 5)
    assert code == NONE and throttle > 0
    assert partition_counts(broker.bootstrap).get("mq-old") == 5

    # With the quota raised, the bucket refills at the new rate and the deletion goes through.
    assert quotas.alter([(entity(client_id="mutator"), {"controller_mutation_rate": 1000})])[0][1] == NONE
    clients.wait_until(lambda: delete_topics_v6(broker.port, "mutator", "mq-big")[1] == NONE, "the deletion to be let through", timeout_s=30)
    clients.wait_until(lambda: "mq-big" not in partition_counts(broker.bootstrap), "the topic to be deleted")


LIST_GROUPS = 16


def list_groups_throttles(port: int, client_id: str, count: int) -> list[int]:
    """throttle_time_ms of `count` ListGroups v2 requests sent one after the other on one
    connection (a throttled connection is muted before its next request is read)."""
    out = []
    with kw.Connection(port) as conn:
        for _ in range(count):
            raw = conn.request(lambda cid: kw.frame(kw.request_header(LIST_GROUPS, 2, cid, client_id=client_id)))
            out.append(struct.unpack_from(">i", raw)[0])
    return out


def test_request_percentage_throttles_a_client_whose_requests_take_more_than_its_share(broker, quotas):
    # A millionth of a shard's thread: one microsecond of handling a second, less than any
    # request takes, so the client is over it from its first request on.
    assert quotas.alter([(entity(client_id="busy"), {"request_percentage": 0.0001})])[0][1] == NONE
    throttles = list_groups_throttles(broker.port, "busy", 4)
    assert any(t > 0 for t in throttles), throttles
    # As Kafka does, a request-time throttle is bounded by one quota window (1 s by default).
    assert max(throttles) <= 1000, throttles
    # A Produce response carries it too (its throttle time is the last field of the body).
    clients.create_topic(broker.bootstrap, "request-quota", 1)
    batch = kw.record_batch([(None, b"v")])
    produce_throttles = []
    with kw.Connection(broker.port) as conn:
        for _ in range(3):
            body = kw.string(None) + kw.i16(1) + kw.i32(30_000) + kw.array([kw.string("request-quota") + kw.array([kw.i32(0) + kw.kbytes(batch)])])
            raw = conn.request(lambda cid: kw.frame(kw.request_header(0, 3, cid, client_id="busy") + body))
            assert [error for _, _, error, _ in kw.parse_produce_v3(raw)] == [NONE]
            produce_throttles.append(struct.unpack_from(">i", raw, len(raw) - 4)[0])
    assert any(0 < t <= 1000 for t in produce_throttles), produce_throttles
    # A client without the quota, on the same broker, is not held back.
    assert list_groups_throttles(broker.port, "unlimited", 20) == [0] * 20
    throttled = metric_samples(broker.admin_url, "shardlog_quota_throttled_responses_total")
    counted = {dict(k).get("client_id"): v for k, v in throttled.items() if dict(k).get("quota") == "request"}
    assert counted.get("busy", 0) >= 1 and "unlimited" not in counted, throttled
