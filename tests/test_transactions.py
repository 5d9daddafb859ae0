"""Transactions with real clients (confluent-kafka, that is librdkafka, and kafka-python).

- Committed transactions are visible to read_committed consumers; aborted ones are not;
  read_uncommitted consumers see both. Checked with two client implementations.
- A transactional consume-transform-produce loop (send_offsets_to_transaction) commits its
  input offsets only with its output.
- A producer killed in the middle of a transaction leaves nothing visible to read_committed
  consumers once the transaction times out, and a new producer with the same transactional id
  fences the old one (aborting what it left open).
- Broker kill -9 in the middle of a transaction: after the restart the transaction resolves
  whole, committed or aborted, never half.
- DescribeTransactions, ListTransactions and DescribeProducers report what happened.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import confluent_kafka
import pytest

import clients
import kafkawire as kw

DEADLINE_S = 120.0


def txn_producer(bootstrap: str, transactional_id: str, **overrides) -> confluent_kafka.Producer:
    config = clients.rdkafka(bootstrap, **{"transactional.id": transactional_id, "transaction.timeout.ms": 60_000, "linger.ms": 5})
    config.update(overrides)
    producer = confluent_kafka.Producer(config)
    producer.init_transactions(60)
    return producer


def consume_all(bootstrap: str, topic: str, partitions: int, isolation: str, group: str | None = None) -> list[tuple[int, int, bytes]]:
    """Every record up to the end offsets the consumer sees for its isolation level:
    [(partition, offset, value)]."""
    consumer = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{
        "group.id": group or "txn-reader",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "enable.partition.eof": True,
    }))
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(partitions)])
        out = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + DEADLINE_S
        while len(at_eof) < partitions:
            assert time.monotonic() < deadline, f"consumer ({isolation}) stuck; at eof: {at_eof}"
            for m in consumer.consume(num_messages=1000, timeout=1.0):
                if m.error():
                    if m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                at_eof.discard(m.partition())
                out.append((m.partition(), m.offset(), m.value()))
        return out
    finally:
        consumer.close()


def values(records) -> list[bytes]:
    return sorted(v for _, _, v in records)


def test_committed_visible_aborted_hidden(broker):
    topic = "txn-basic"
    clients.create_topic(broker.bootstrap, topic, 3)
    producer = txn_producer(broker.bootstrap, "txn-basic-1")
    committed, aborted = [], []
    for round_ in range(6):
        producer.begin_transaction()
        batch = [f"r{round_}-{i}".encode() for i in range(30)]
        for i, v in enumerate(batch):
            producer.produce(topic, key=str(i).encode(), value=v, partition=i % 3)
        if round_ % 2 == 0:
            producer.commit_transaction(60)
            committed += batch
        else:
            producer.flush(30)  # abort_transaction purges what is still queued in the client
            producer.abort_transaction(60)
            aborted += batch
    # A last open transaction, not ended: read_committed stops before it.
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"open-{i}".encode(), partition=0)
    producer.flush(30)

    seen_committed = values(consume_all(broker.bootstrap, topic, 3, "read_committed"))
    assert seen_committed == sorted(committed)
    seen_all = values(consume_all(broker.bootstrap, topic, 3, "read_uncommitted"))
    assert seen_all == sorted(committed + aborted + [f"open-{i}".encode() for i in range(5)])

    # The open transaction holds the LSO back; committing it moves it.
    producer.commit_transaction(60)
    seen_committed = values(consume_all(broker.bootstrap, topic, 3, "read_committed"))
    assert seen_committed == sorted(committed + [f"open-{i}".encode() for i in range(5)])

    # A second implementation reads the same committed records.
    from kafka import KafkaConsumer, TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, isolation_level="read_committed", enable_auto_commit=False,
                             consumer_timeout_ms=3000, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    got = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < len(seen_committed) and time.monotonic() < deadline:
        got += [r.value for r in consumer]
    consumer.close()
    assert sorted(got) == seen_committed


def test_kafka_python_transactional_producer(broker):
    """A second implementation on the producing side: kafka-python's transactional producer."""
    from kafka import KafkaProducer
    topic = "txn-kafka-python"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kp-1", enable_idempotence=True)
    producer.init_transactions()
    for round_ in range(4):
        producer.begin_transaction()
        for i in range(20):
            producer.send(topic, value=f"kp{round_}-{i}".encode(), partition=i % 2)
        producer.flush()
        if round_ % 2 == 0:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()
    committed = sorted(f"kp{r}-{i}".encode() for r in (0, 2) for i in range(20))
    assert values(consume_all(broker.bootstrap, topic, 2, "read_committed")) == committed
    assert len(consume_all(broker.bootstrap, topic, 2, "read_uncommitted")) == 80


def test_consume_transform_produce_commits_offsets_with_output(broker):
    source, sink, group = "txn-source", "txn-sink", "txn-pipeline"
    clients.create_topic(broker.bootstrap, source, 2)
    clients.create_topic(broker.bootstrap, sink, 2)
    plain = clients.confluent_producer(broker.bootstrap)
    for i in range(200):
        plain.produce(source, key=str(i).encode(), value=f"in-{i}".encode(), partition=i % 2)
    assert plain.flush(30) == 0

    def run_pipeline(limit_batches: int | None, abort_last: bool) -> int:
        consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        }))
        consumer.subscribe([source])
        producer = txn_producer(broker.bootstrap, "txn-pipeline-1")
        processed = 0
        batches = 0
        idle_since = time.monotonic()
        deadline = time.monotonic() + DEADLINE_S
        try:
            while time.monotonic() < deadline:
                msgs = [m for m in consumer.consume(num_messages=25, timeout=1.0) if not m.error()]
                if not msgs:
                    if processed and time.monotonic() - idle_since > 5:
                        break
                    continue
                idle_since = time.monotonic()
                producer.begin_transaction()
                for m in msgs:
                    producer.produce(sink, key=m.key(), value=m.value().replace(b"in-", b"out-"), partition=m.partition())
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 60)
                batches += 1
                if abort_last and limit_batches is not None and batches == limit_batches:
                    producer.flush(30)
                    producer.abort_transaction(60)
                    return processed
                producer.commit_transaction(60)
                processed += len(msgs)
                if limit_batches is not None and batches >= limit_batches:
                    return processed
            return processed
        finally:
            consumer.close()

    first = run_pipeline(limit_batches=3, abort_last=True)  # two committed batches, one aborted
    rest = run_pipeline(limit_batches=None, abort_last=False)
    assert first + rest == 200, (first, rest)
    out = consume_all(broker.bootstrap, sink, 2, "read_committed")
    assert sorted(v for _, _, v in out) == sorted(f"out-{i}".encode() for i in range(200)), "each input exactly once in the committed output"


def _produce_and_hang(bootstrap: str, topic: str, ready) -> None:
    producer = txn_producer(bootstrap, "txn-killed-1", **{"transaction.timeout.ms": 6000})
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, value=f"doomed-{i}".encode(), partition=0)
    producer.flush(30)
    ready.set()
    time.sleep(600)


def test_killed_producer_transaction_times_out(broker_factory):
    broker = broker_factory(config={"transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000})
    topic = "txn-killed"
    clients.create_topic(broker.bootstrap, topic, 1)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_produce_and_hang, args=(broker.bootstrap, topic, ready))
    child.start()
    try:
        assert ready.wait(60), "transactional producer did not start"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(10)
    # Committed data after the doomed transaction: visible only once the coordinator aborts it.
    plain = clients.confluent_producer(broker.bootstrap)
    plain.produce(topic, value=b"after", partition=0)
    assert plain.flush(30) == 0
    # read_committed consumers see nothing past the open transaction until the coordinator
    # aborts it (transaction.timeout.ms=6000); then only the later record.
    deadline = time.monotonic() + DEADLINE_S
    seen = []
    while not seen and time.monotonic() < deadline:
        seen = values(consume_all(broker.bootstrap, topic, 1, "read_committed"))
    assert seen == [b"after"], "the timed-out transaction's records must stay hidden"
    assert len(consume_all(broker.bootstrap, topic, 1, "read_uncommitted")) == 51
    assert "transaction timed out" in broker.log_text()


def test_new_producer_fences_old_and_aborts_its_transaction(broker):
    topic = "txn-fence"
    clients.create_topic(broker.bootstrap, topic, 1)
    old = txn_producer(broker.bootstrap, "txn-fence-1")
    old.begin_transaction()
    old.produce(topic, value=b"old-open", partition=0)
    old.flush(30)
    new = txn_producer(broker.bootstrap, "txn-fence-1")  # fences `old`, aborting its transaction
    new.begin_transaction()
    new.produce(topic, value=b"new", partition=0)
    new.commit_transaction(60)
    with pytest.raises(confluent_kafka.KafkaException) as fenced:
        old.produce(topic, value=b"old-late", partition=0)
        old.commit_transaction(30)
    assert fenced.value.args[0].fatal() or "fenced" in str(fenced.value).lower(), str(fenced.value)
    assert values(consume_all(broker.bootstrap, topic, 1, "read_committed")) == [b"new"]


def test_broker_kill9_mid_transaction_resolves_whole(broker):
    topic = "txn-crash"
    clients.create_topic(broker.bootstrap, topic, 3)
    producer = txn_producer(broker.bootstrap, "txn-crash-1")
    producer.begin_transaction()
    for i in range(60):
        producer.produce(topic, value=f"committed-{i}".encode(), partition=i % 3)
    producer.commit_transaction(60)
    producer.begin_transaction()
    for i in range(60):
        producer.produce(topic, value=f"open-{i}".encode(), partition=i % 3)
    producer.flush(30)
    del producer
    broker.kill9()
    broker.start()
    before_timeout = values(consume_all(broker.bootstrap, topic, 3, "read_committed"))
    assert before_timeout == sorted(f"committed-{i}".encode() for i in range(60))
    # A new producer with the id fences the old one and resolves the open transaction: aborted,
    # whole.
    again = txn_producer(broker.bootstrap, "txn-crash-1")
    again.begin_transaction()
    again.produce(topic, value=b"final", partition=0)
    again.commit_transaction(60)
    seen = values(consume_all(broker.bootstrap, topic, 3, "read_committed"))
    assert seen == sorted([f"committed-{i}".encode() for i in range(60)] + [b"final"])


def _commit_forever(bootstrap: str, topic: str, acked_path: str) -> None:
    """Transaction n writes n to each of three partitions and commits; after each commit
    returns, n is appended to acked_path."""
    producer = txn_producer(bootstrap, "txn-storm-1", **{"message.timeout.ms": 10_000, "transaction.timeout.ms": 10_000})
    with open(acked_path, "a") as acked:
        for n in range(1_000_000):
            producer.begin_transaction()
            for p in range(3):
                producer.produce(topic, value=str(n).encode(), partition=p)
            producer.commit_transaction(30)
            acked.write(f"{n}\n")
            acked.flush()


def test_broker_kill9_during_commits_resolves_every_transaction_whole(broker, tmp_path):
    """kill -9 while transactions commit back to back, so the crash can land between the
    coordinator's PrepareCommit and its markers: after the restart every transaction is
    visible on all three partitions or on none, and every acknowledged commit is visible."""
    topic = "txn-storm"
    clients.create_topic(broker.bootstrap, topic, 3)
    acked_path = tmp_path / "acked"
    acked_path.write_text("")
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_commit_forever, args=(broker.bootstrap, topic, str(acked_path)))
    child.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked_path.read_text().split()) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(acked_path.read_text().split()) >= 30, "the committing producer made no progress"
        broker.kill9()
    finally:
        child.kill()
        child.join(10)
    acked = {int(n) for n in acked_path.read_text().split()}
    broker.start()
    # A new producer with the id resolves whatever the old one left (fencing it).
    txn_producer(broker.bootstrap, "txn-storm-1").flush(10)
    by_txn: dict[int, set[int]] = {}
    for partition, _, value in consume_all(broker.bootstrap, topic, 3, "read_committed"):
        by_txn.setdefault(int(value), set()).add(partition)
    half = {n: parts for n, parts in by_txn.items() if parts != {0, 1, 2}}
    assert not half, f"transactions visible on only some partitions: {dict(list(half.items())[:5])}"
    assert acked <= set(by_txn), f"acknowledged commits missing after kill -9: {sorted(acked - set(by_txn))[:10]}"


def test_broker_kill9_after_commit_keeps_it_committed(broker):
    topic = "txn-crash-commit"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = txn_producer(broker.bootstrap, "txn-crash-commit-1")
    producer.begin_transaction()
    for i in range(40):
        producer.produce(topic, value=f"c-{i}".encode(), partition=i % 2)
    producer.commit_transaction(60)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, value=f"a-{i}".encode(), partition=i % 2)
    producer.flush(30)
    producer.abort_transaction(60)
    del producer
    broker.kill9()
    broker.start()
    assert values(consume_all(broker.bootstrap, topic, 2, "read_committed")) == sorted(f"c-{i}".encode() for i in range(40))
    assert len(consume_all(broker.bootstrap, topic, 2, "read_uncommitted")) == 50


# --- DescribeTransactions (65), ListTransactions (66), DescribeProducers (61): flexible v0 ---

def describe_transactions(conn: kw.Connection, ids: list[str]) -> dict[str, tuple[int, str, int, list[tuple[str, list[int]]]]]:
    """{id: (error, state, producer id, [(topic, partitions)])}"""
    def build(cid):
        return kw.frame(kw.request_header(65, 0, cid, flexible=True) + kw.compact_array([kw.compact_string(i) for i in ids]) + kw.TAGGED_FIELDS_EMPTY)
    r = kw.Reader(conn.request(build))
    r.skip_tagged_fields()
    r.i32()  # throttle
    out = {}
    for _ in range(r.uvarint() - 1):
        error, txn_id, state = r.i16(), r.compact_string(), r.compact_string()
        r.i32(), r.i64()  # timeout, start time
        producer_id, _epoch = r.i64(), r.i16()
        topics = []
        for _ in range(r.uvarint() - 1):
            topic = r.compact_string()
            topics.append((topic, [r.i32() for _ in range(r.uvarint() - 1)]))
            r.skip_tagged_fields()
        r.skip_tagged_fields()
        out[txn_id] = (error, state, producer_id, topics)
    return out


def list_transactions(conn: kw.Connection, states: list[str]) -> tuple[list[str], dict[str, str]]:
    """(unknown state filters, {id: state})"""
    def build(cid):
        return kw.frame(kw.request_header(66, 0, cid, flexible=True) + kw.compact_array([kw.compact_string(st) for st in states]) + kw.compact_array([]) + kw.TAGGED_FIELDS_EMPTY)
    r = kw.Reader(conn.request(build))
    r.skip_tagged_fields()
    r.i32()
    assert r.i16() == kw.NONE
    unknown = [r.compact_string() for _ in range(r.uvarint() - 1)]
    listed = {}
    for _ in range(r.uvarint() - 1):
        txn_id, _producer_id, state = r.compact_string(), r.i64(), r.compact_string()
        r.skip_tagged_fields()
        listed[txn_id] = state
    return unknown, listed


def describe_producers(conn: kw.Connection, topic: str, partition: int) -> tuple[int, list[tuple[int, int]]]:
    """(error, [(producer id, current transaction start offset)])"""
    def build(cid):
        t = kw.compact_string(topic) + kw.compact_array([kw.i32(partition)]) + kw.TAGGED_FIELDS_EMPTY
        return kw.frame(kw.request_header(61, 0, cid, flexible=True) + kw.compact_array([t]) + kw.TAGGED_FIELDS_EMPTY)
    r = kw.Reader(conn.request(build))
    r.skip_tagged_fields()
    r.i32()
    assert r.uvarint() - 1 == 1
    assert r.compact_string() == topic
    assert r.uvarint() - 1 == 1
    assert r.i32() == partition
    error = r.i16()
    r.compact_string()
    producers = []
    for _ in range(r.uvarint() - 1):
        producer_id, _epoch, _seq, _ts, _coordinator_epoch, txn_start = r.i64(), r.i32(), r.i32(), r.i64(), r.i32(), r.i64()
        r.skip_tagged_fields()
        producers.append((producer_id, txn_start))
    return error, producers


def test_transaction_admin_apis(broker):
    topic = "txn-admin"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = txn_producer(broker.bootstrap, "txn-admin-1")
    producer.begin_transaction()
    producer.produce(topic, value=b"x", partition=1)
    producer.flush(30)
    with kw.Connection(broker.port) as conn:
        described = describe_transactions(conn, ["txn-admin-1", "no-such-txn"])
        error, state, producer_id, topics = described["txn-admin-1"]
        assert (error, state, topics) == (kw.NONE, "Ongoing", [(topic, [1])])
        assert described["no-such-txn"][0] == 105  # TRANSACTIONAL_ID_NOT_FOUND
        unknown, listed = list_transactions(conn, ["Ongoing", "Bogus"])
        assert unknown == ["Bogus"] and listed == {"txn-admin-1": "Ongoing"}
        error, producers = describe_producers(conn, topic, 1)
        assert error == kw.NONE and producers == [(producer_id, 0)], producers
        producer.commit_transaction(60)
        assert describe_transactions(conn, ["txn-admin-1"])["txn-admin-1"][1] == "CompleteCommit"
        assert list_transactions(conn, ["Ongoing"])[1] == {}
        assert describe_producers(conn, topic, 1)[1] == [(producer_id, -1)]


def test_clients_cannot_write_control_batches(broker):
    topic = "txn-control"
    clients.create_topic(broker.bootstrap, topic, 1)
    batch = bytearray(kw.record_batch([(b"\0\0\0\1", b"\0\0\0\0\0\0")], producer_id=5, producer_epoch=0, base_sequence=-1))
    batch[21:23] = kw.i16(0x30)  # transactional | control
    batch[17:21] = kw.u32(kw.crc32c(bytes(batch[21:])))
    with kw.Connection(broker.port) as conn:
        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, bytes(batch)))
        assert error == 87  # INVALID_RECORD
    assert "control batches are written by the transaction coordinator" in broker.log_text()


def test_stray_transactional_batch_cannot_open_a_hanging_transaction(broker):
    """KIP-890: a transactional batch for a partition that is not in the producer's ongoing
    transaction (a late retry after the transaction ended, say) is refused, so it cannot hold
    the last stable offset back forever."""
    topic = "txn-stray"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = txn_producer(broker.bootstrap, "txn-stray-1")
    producer.begin_transaction()
    producer.produce(topic, value=b"ok", partition=0)
    producer.commit_transaction(60)
    with kw.Connection(broker.port) as conn:
        _, _, producer_id, _ = describe_transactions(conn, ["txn-stray-1"])["txn-stray-1"]
        epoch = 0
        batch = bytearray(kw.record_batch([(None, b"stray")], producer_id=producer_id, producer_epoch=epoch, base_sequence=0))
        batch[21:23] = kw.i16(0x10)  # transactional
        batch[17:21] = kw.u32(kw.crc32c(bytes(batch[21:])))

        def produce(cid, transactional_id):
            partitions = kw.array([kw.i32(1) + kw.kbytes(bytes(batch))])
            body = kw.string(transactional_id) + kw.i16(-1) + kw.i32(30_000) + kw.array([kw.string(topic) + partitions])
            return kw.frame(kw.request_header(0, 3, cid) + body)

        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(produce, "txn-stray-1"))
        assert error == 48, f"INVALID_TXN_STATE expected, got {error}"  # the partition is not in a transaction
        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(produce, None))
        assert error == 87, "a transactional batch without the transactional id is INVALID_RECORD"
    # Nothing was appended: read_committed consumers are not held back.
    assert values(consume_all(broker.bootstrap, topic, 2, "read_committed")) == [b"ok"]
    assert len(consume_all(broker.bootstrap, topic, 2, "read_uncommitted")) == 1
