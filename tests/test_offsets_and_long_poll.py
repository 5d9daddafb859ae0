"""Long-polling fetches and ListOffsets (earliest, latest, by timestamp), through raw requests,
kafka-python, aiokafka and librdkafka.

No assertion here is about how long anything took. Where a test checks that a waiting fetch
has not been answered yet, the check is about content: an early answer would be an empty (or
too small) one, which a fetch with min_bytes must not give before its max_wait expires, and
max_wait is set far beyond the moment of the check.
"""

from __future__ import annotations

import asyncio

import confluent_kafka

import clients
import kafkawire

# Far longer than any check below waits. Kept under 30 s: shardlog caps max_wait_ms there.
LONG_WAIT_MS = 25_000
NOT_YET_CHECK_S = 1.0
# Bound on produce acknowledgements while a fetch is waiting: shorter than LONG_WAIT_MS, so a
# produce that is only acknowledged once the waiting fetch gives up fails the test. A bound that
# turns a stall into a failure, not a speed requirement: a healthy broker acks in milliseconds.
PRODUCE_BOUND_S = 15.0


def test_raw_fetch_long_poll_is_answered_by_a_later_produce(broker):
    topic = "long-poll"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kafkawire.Connection(broker.port, timeout_s=60) as conn:
        cid = conn.correlation_id()
        conn.send(kafkawire.fetch_v4_request(cid, topic, 0, 0, max_wait_ms=LONG_WAIT_MS, min_bytes=1))
        assert not conn.readable_within(NOT_YET_CHECK_S), "fetch with min_bytes=1 on an empty partition answered before any data arrived"

        # Another client implementation writes one record.
        producer = clients.kafka_python_producer(broker.bootstrap, acks=1, compression_type=None)
        producer.send(topic, key=b"wake", value=b"up").get(timeout=30)
        producer.close()

        got, body = conn.recv_frame(timeout_s=60)
        assert got == cid
        [fp] = kafkawire.parse_fetch_v4(body)
        assert fp.error_code == kafkawire.NONE
        assert fp.high_watermark == 1
        records = kafkawire.decode_uncompressed_records(fp.records)
        assert [(o, k, v) for o, _, k, v in records] == [(0, b"wake", b"up")]


def test_long_polls_that_timed_out_on_an_idle_partition_leave_no_waiter_behind(broker_factory):
    """A long poll that ends at its max_wait gives its place back: after more of them than
    `shardlog.fetch.long.poll.watchers.max` on a partition nobody writes to, the next long poll
    still waits for data (an early, empty answer here is what a leak of waiters gave: every fetch
    of the partition answered at once, and consumers spun)."""
    broker = broker_factory(config={"shardlog.fetch.long.poll.watchers.max": 4})
    topic = "idle-long-polls"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kafkawire.Connection(broker.port, timeout_s=60) as conn:
        for _ in range(12):
            [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, 0, 0, max_wait_ms=20, min_bytes=1))
            assert fp.error_code == kafkawire.NONE and fp.records in (None, b"")
        cid = conn.correlation_id()
        conn.send(kafkawire.fetch_v4_request(cid, topic, 0, 0, max_wait_ms=LONG_WAIT_MS, min_bytes=1))
        assert not conn.readable_within(NOT_YET_CHECK_S), "a long poll on an idle partition was answered before any data arrived"
        producer = confluent_kafka.Producer(clients.rdkafka(broker.bootstrap))
        producer.produce(topic, b"awake", partition=0)
        assert producer.flush(PRODUCE_BOUND_S) == 0
        got, body = conn.recv_frame(timeout_s=60)
        assert got == cid
        [fp] = kafkawire.parse_fetch_v4(body)
        assert [v for _, _, _, v in kafkawire.decode_uncompressed_records(fp.records)] == [b"awake"]


def test_raw_fetch_long_poll_waits_for_min_bytes(broker):
    topic = "long-poll-min-bytes"
    clients.create_topic(broker.bootstrap, topic, 1)
    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    # Several waiting fetches on several connections: the kernel spreads connections over the
    # shards, so some wait on the partition's owner shard and some on the other one.
    conns = [kafkawire.Connection(broker.port, timeout_s=60) for _ in range(6)]
    try:
        cids = []
        for conn in conns:
            cids.append(conn.correlation_id())
            conn.send(kafkawire.fetch_v4_request(cids[-1], topic, 0, 0, max_wait_ms=LONG_WAIT_MS, min_bytes=4000))
        producer.produce(topic, value=b"small")
        assert producer.flush(PRODUCE_BOUND_S) == 0, "acks=all produce not acknowledged while fetches wait for min_bytes on the partition"
        for conn in conns:
            assert not conn.readable_within(NOT_YET_CHECK_S / len(conns)), "fetch answered with fewer than min_bytes before max_wait"

        for i in range(10):
            producer.produce(topic, value=bytes([65 + i]) * 500)
            assert producer.flush(PRODUCE_BOUND_S) == 0, "acks=all produce not acknowledged while fetches wait for min_bytes on the partition"
        for conn, cid in zip(conns, cids):
            got, body = conn.recv_frame(timeout_s=60)
            assert got == cid
            [fp] = kafkawire.parse_fetch_v4(body)
            assert fp.error_code == kafkawire.NONE
            assert len(fp.records) >= 4000
            values = [v for _, _, _, v in kafkawire.decode_uncompressed_records(fp.records)]
            assert values[0] == b"small"
            assert values[1:] == [bytes([65 + i]) * 500 for i in range(len(values) - 1)]
    finally:
        for conn in conns:
            conn.close()


def test_raw_fetch_long_poll_counts_min_bytes_over_both_shards(broker_factory):
    """A fetch of partitions on two shards waits until their bytes together reach min_bytes (each
    shard alone has less), and its answer holds every partition's records, each in place."""
    # A fresh broker places a topic's two partitions on its two shards (least loaded first).
    broker = broker_factory()
    topic = "long-poll-two-shards"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = confluent_kafka.Producer(clients.rdkafka(broker.bootstrap, **{"linger.ms": 0}))
    with kafkawire.Connection(broker.port, timeout_s=60) as conn:
        cid = conn.correlation_id()
        conn.send(kafkawire.fetch_v4_request_partitions(cid, topic, {0: 0, 1: 0}, max_wait_ms=LONG_WAIT_MS, min_bytes=4000))
        producer.produce(topic, b"a" * 2500, partition=0)
        assert producer.flush(PRODUCE_BOUND_S) == 0
        assert not conn.readable_within(NOT_YET_CHECK_S), "answered with 2,500 of the 4,000 min_bytes before max_wait"
        producer.produce(topic, b"b" * 1000, partition=0)
        assert producer.flush(PRODUCE_BOUND_S) == 0
        assert not conn.readable_within(NOT_YET_CHECK_S), "answered with 3,500 of the 4,000 min_bytes before max_wait"
        producer.produce(topic, b"c" * 2500, partition=1)
        assert producer.flush(PRODUCE_BOUND_S) == 0
        got, body = conn.recv_frame(timeout_s=60)
        assert got == cid
        parts = {fp.partition: fp for fp in kafkawire.parse_fetch_v4(body)}
        assert sorted(parts) == [0, 1]
        assert all(fp.error_code == kafkawire.NONE for fp in parts.values())
        values = {p: [v for _, _, _, v in kafkawire.decode_uncompressed_records(fp.records)] for p, fp in parts.items()}
        assert values == {0: [b"a" * 2500, b"b" * 1000], 1: [b"c" * 2500]}
        assert (parts[0].high_watermark, parts[1].high_watermark) == (2, 1)


def test_aiokafka_consumer_waiting_at_the_end_receives_new_record(broker):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = "long-poll-aiokafka"
    clients.create_topic(broker.bootstrap, topic, 2)

    async def scenario():
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=LONG_WAIT_MS, request_timeout_ms=LONG_WAIT_MS + 30_000)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            assert [await consumer.position(tp) for tp in tps] == [0, 0]
            waiting = asyncio.ensure_future(consumer.getone())
            await asyncio.sleep(NOT_YET_CHECK_S)
            assert not waiting.done(), "consumer got a record although nothing was produced"

            producer = clients.confluent_producer(broker.bootstrap)
            producer.produce(topic, key=b"k", value=b"from librdkafka", partition=1)
            assert producer.flush(30) == 0
            record = await asyncio.wait_for(waiting, 90)
            assert (record.partition, record.offset, record.key, record.value) == (1, 0, b"k", b"from librdkafka")
        finally:
            await consumer.stop()

    asyncio.run(scenario())


BASE_TS = 1_600_000_000_000


def produce_timestamped(broker, topic: str) -> list[int]:
    """Offsets 0-9: one batch each, timestamps BASE_TS + 1000 * i.
    Offsets 10-14: one batch, timestamps BASE_TS + 20_000 + 1000 * j.
    Returns the timestamps by offset."""
    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    timestamps = []
    for i in range(10):
        ts = BASE_TS + 1000 * i
        producer.produce(topic, value=f"single-{i}".encode(), timestamp=ts)
        assert producer.flush(30) == 0
        timestamps.append(ts)
    batched = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 1000})
    clients.warm_producer(batched, topic)
    for j in range(5):
        ts = BASE_TS + 20_000 + 1000 * j
        batched.produce(topic, value=f"batched-{j}".encode(), timestamp=ts)
        timestamps.append(ts)
    assert batched.flush(30) == 0
    with kafkawire.Connection(broker.port) as conn:
        [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, 0, 10))
    assert [b.record_count for b in kafkawire.parse_batches(fp.records)] == [5], "the last five records should form one batch"
    return timestamps


def expected_offset(timestamps: list[int], target: int) -> int | None:
    """Kafka's answer: the first offset whose timestamp is >= target."""
    return next((o for o, ts in enumerate(timestamps) if ts >= target), None)


TARGETS = [0, BASE_TS, BASE_TS + 1, BASE_TS + 4000, BASE_TS + 4500, BASE_TS + 9000, BASE_TS + 9001, BASE_TS + 21_000, BASE_TS + 22_500, BASE_TS + 24_000, BASE_TS + 24_001]


def check_list_offsets(broker, topic: str, timestamps: list[int]) -> None:
    end = len(timestamps)

    # Raw ListOffsets v1.
    with kafkawire.Connection(broker.port) as conn:
        def lookup(ts):
            [(_, _, error, found_ts, offset)] = kafkawire.parse_list_offsets_v1(conn.request(kafkawire.list_offsets_v1_request, topic, 0, ts))
            assert error == kafkawire.NONE
            return found_ts, offset

        assert lookup(-2)[1] == 0
        assert lookup(-1)[1] == end
        for target in TARGETS:
            want = expected_offset(timestamps, target)
            found_ts, offset = lookup(target)
            if want is None:
                assert offset == -1, f"timestamp {target} is after every record, got offset {offset}"
            else:
                assert (offset, found_ts) == (want, timestamps[want]), f"raw ListOffsets for timestamp {target}"

    # kafka-python.
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topic, 0)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: end}
        for target in TARGETS:
            want = expected_offset(timestamps, target)
            got = consumer.offsets_for_times({tp: target})[tp]
            if want is None:
                assert got is None, f"kafka-python offsets_for_times({target}) = {got}"
            else:
                assert (got.offset, got.timestamp) == (want, timestamps[want]), f"kafka-python offsets_for_times({target})"
    finally:
        consumer.close()

    # librdkafka.
    consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "e2e-unused", "enable.auto.commit": False}))
    try:
        assert consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=30) == (0, end)
        for target in TARGETS:
            want = expected_offset(timestamps, target)
            [got] = consumer.offsets_for_times([confluent_kafka.TopicPartition(topic, 0, target)], timeout=30)
            assert got.error is None
            assert got.offset == (confluent_kafka.OFFSET_END if want is None else want), f"librdkafka offsets_for_times({target})"
    finally:
        consumer.close()


def test_list_offsets_earliest_latest_and_by_timestamp(broker):
    topic = "offsets"
    clients.create_topic(broker.bootstrap, topic, 1)
    timestamps = produce_timestamped(broker, topic)
    check_list_offsets(broker, topic, timestamps)
    # Same answers from indexes reloaded after a clean restart, and rebuilt after kill -9.
    broker.restart()
    check_list_offsets(broker, topic, timestamps)
    broker.kill9()
    broker.start()
    check_list_offsets(broker, topic, timestamps)


def test_list_offsets_by_timestamp_finds_the_record_inside_a_compressed_batch(broker):
    """As Kafka's searchForTimestamp: a compressed batch is opened, and the answer is its first
    record (in offset order; a producer's timestamps need not rise) at or after the timestamp,
    with that record's timestamp, not the batch's first offset and max timestamp."""
    from confluent_kafka.admin import AdminClient, OffsetSpec

    topic = "offsets-compressed"
    clients.create_topic(broker.bootstrap, topic, 1)
    timestamps = [BASE_TS + d for d in (0, 40, 10, 30, 20, 50, 60, 45)]
    producer = clients.confluent_producer(broker.bootstrap, **{"compression.type": "lz4", "linger.ms": 200, "max.in.flight.requests.per.connection": 1})
    clients.warm_producer(producer, topic)
    for i, ts in enumerate(timestamps):
        producer.produce(topic, value=b"v%d" % i + b"x" * 200, timestamp=ts)  # compressible: librdkafka sends uncompressed otherwise
    assert producer.flush(30) == 0
    with kafkawire.Connection(broker.port) as conn:
        [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, 0, 0))
    assert [(b.record_count, b.codec) for b in kafkawire.parse_batches(fp.records)] == [(len(timestamps), kafkawire.CODEC_IDS["lz4"])], "one lz4 batch"

    def lookup(target: int) -> tuple[int, int]:
        admin = AdminClient(clients.rdkafka(broker.bootstrap))
        tp = confluent_kafka.TopicPartition(topic, 0)
        info = admin.list_offsets({tp: OffsetSpec.for_timestamp(target)}, request_timeout=30)[tp].result(30)
        return info.offset, info.timestamp

    def check() -> None:
        for target in [BASE_TS - 1, BASE_TS, BASE_TS + 5, BASE_TS + 25, BASE_TS + 41, BASE_TS + 46, BASE_TS + 60, BASE_TS + 61]:
            want = expected_offset(timestamps, target)
            assert lookup(target) == ((-1, -1) if want is None else (want, timestamps[want])), f"timestamp {target}"

    check()  # from the batch cache
    broker.restart()
    check()  # from the segment file


def test_list_offsets_on_empty_partition(broker):
    topic = "offsets-empty"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kafkawire.Connection(broker.port) as conn:
        for ts, want in [(-2, 0), (-1, 0), (BASE_TS, -1)]:
            [(_, _, error, _, offset)] = kafkawire.parse_list_offsets_v1(conn.request(kafkawire.list_offsets_v1_request, topic, 0, ts))
            assert (error, offset) == (kafkawire.NONE, want), f"timestamp {ts}"
        [(_, _, error, _, _)] = kafkawire.parse_list_offsets_v1(conn.request(kafkawire.list_offsets_v1_request, topic, 7, -1))
        assert error == kafkawire.UNKNOWN_TOPIC_OR_PARTITION, "partition 7 of a 1-partition topic"


def test_log_append_time_replaces_create_time(broker_factory):
    broker = broker_factory(config={"log.message.timestamp.type": "LogAppendTime"})
    topic = "append-time"
    clients.create_topic(broker.bootstrap, topic, 1)
    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 0})
    reported = []
    for i in range(5):
        producer.produce(topic, value=f"v{i}".encode(), timestamp=1000 + i, on_delivery=lambda err, msg: reported.append((err, msg.offset(), msg.timestamp())))
        assert producer.flush(30) == 0
    assert all(err is None for err, _, _ in reported), reported

    consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "e2e-unused", "enable.auto.commit": False}))
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        got = []
        while len(got) < 5:
            m = consumer.poll(30)
            assert m is not None and not m.error(), f"consumer: {m and m.error()}"
            got.append((m.offset(), m.timestamp()))
    finally:
        consumer.close()
    for offset, (kind, ts) in got:
        assert kind == confluent_kafka.TIMESTAMP_LOG_APPEND_TIME, f"offset {offset}: timestamp type {kind}"
        assert ts > 1_000_000, f"offset {offset}: still carries the producer's create time {ts}"
    assert [ts for _, (_, ts) in got] == sorted(ts for _, (_, ts) in got), "append times go backwards"
    # The produce response told the producer the same append time the consumer sees.
    assert sorted((o, ts) for _, o, ts in reported) == got


def test_fetch_out_of_range_and_at_the_end(broker):
    topic = "out-of-range"
    clients.create_topic(broker.bootstrap, topic, 1)
    producer = clients.confluent_producer(broker.bootstrap)
    for i in range(5):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(30) == 0
    with kafkawire.Connection(broker.port) as conn:
        def fetch(offset):
            [fp] = kafkawire.parse_fetch_v4(conn.request(kafkawire.fetch_v4_request, topic, 0, offset, max_wait_ms=0))
            return fp

        at_end = fetch(5)
        assert (at_end.error_code, at_end.high_watermark, at_end.records) == (kafkawire.NONE, 5, b"")
        middle = fetch(3)
        assert middle.error_code == kafkawire.NONE
        # A fetch from inside a batch returns that batch; the records before the asked offset
        # are the client's to skip.
        assert [v for o, _, _, v in kafkawire.decode_uncompressed_records(middle.records) if o >= 3] == [b"v3", b"v4"]
        for offset in (6, 1000, -5):
            fp = fetch(offset)
            assert fp.error_code == 1, f"OFFSET_OUT_OF_RANGE (1) expected for offset {offset}, got {fp.error_code}"
            assert fp.records == b""


def test_raw_fetch_with_a_failing_partition_is_answered_without_waiting(broker):
    """A partition that fails (here: one that does not exist) answers the whole fetch at once,
    as in Kafka, even when another partition of it could long-poll on an empty log."""
    topic = "long-poll-error"
    clients.create_topic(broker.bootstrap, topic, 1)
    partitions = kafkawire.array([kafkawire.i32(p) + kafkawire.i64(0) + kafkawire.i32(1 << 20) for p in (0, 7)])
    body = kafkawire.i32(-1) + kafkawire.i32(LONG_WAIT_MS) + kafkawire.i32(1) + kafkawire.i32(50 << 20) + kafkawire.i8(0)
    body += kafkawire.array([kafkawire.string(topic) + partitions])
    with kafkawire.Connection(broker.port, timeout_s=60) as conn:
        cid = conn.correlation_id()
        conn.send(kafkawire.frame(kafkawire.request_header(kafkawire.FETCH, 4, cid) + body))
        # Bounded below max_wait: an answer only after the long poll expired fails here.
        got, response = conn.recv_frame(timeout_s=PRODUCE_BOUND_S)
        assert got == cid
        by_partition = {fp.partition: fp for fp in kafkawire.parse_fetch_v4(response)}
        assert by_partition[7].error_code == kafkawire.UNKNOWN_TOPIC_OR_PARTITION
        assert by_partition[0].error_code == kafkawire.NONE and not by_partition[0].records
