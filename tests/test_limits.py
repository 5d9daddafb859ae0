"""Configured limits: small segments (many rolls, reads across segment boundaries, recovery of
many segments) and message.max.bytes."""

from __future__ import annotations

import clients
import kafkawire as kw

SEGMENT_BYTES = 64 << 10


def test_many_small_segments_read_back_across_restart_and_kill9(broker_factory):
    broker = broker_factory(config={"log.segment.bytes": SEGMENT_BYTES})
    topic = "small-segments"
    clients.create_topic(broker.bootstrap, topic, 2)
    producer = clients.confluent_producer(broker.bootstrap, **{"linger.ms": 2, "batch.size": 16_384, "compression.type": "none"})
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[(msg.partition(), msg.offset())] = (msg.value(), msg.timestamp()[1])

    base_ts = 1_650_000_000_000
    for i in range(6_000):
        producer.produce(topic, key=str(i % 50).encode(), value=b"%06d" % i + b"." * 500, timestamp=base_ts + i, on_delivery=on_delivery)
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    assert len(acked) == 6_000
    end = {p: 1 + max(o for q, o in acked if q == p) for p in range(2)}

    # The data spans many segment files, named by base offset as in Kafka.
    segments = sorted((broker.data_dir).rglob(f"{topic}-0/*.log"))
    assert len(segments) >= 10, f"only {len(segments)} segments for {end[0]} records with log.segment.bytes={SEGMENT_BYTES}"

    def check():
        records = clients.confluent_consume(broker.bootstrap, topic, end)
        assert {(r.partition, r.offset): (r.value, r.timestamp) for r in records} == acked
        # Timestamp lookups land in the right segment.
        with kw.Connection(broker.port) as conn:
            for p in range(2):
                by_ts = sorted((ts, o) for (q, o), (_, ts) in acked.items() if q == p)
                for ts, want in by_ts[:: max(1, len(by_ts) // 25)]:
                    [(_, _, error, found_ts, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, p, ts))
                    assert (error, offset, found_ts) == (kw.NONE, want, ts), f"partition {p} timestamp {ts}"

    check()
    broker.restart()
    check()
    broker.kill9()
    broker.start()
    check()


def test_batch_over_message_max_bytes_is_rejected(broker_factory):
    broker = broker_factory(config={"message.max.bytes": 10_000})
    topic = "max-bytes"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kw.Connection(broker.port) as conn:
        small = kw.record_batch([(b"k", b"x" * 1000)])
        big = kw.record_batch([(b"k", b"x" * 20_000)])
        [(_, _, error, base)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, small))
        assert (error, base) == (kw.NONE, 0)
        [(_, _, error, _)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, topic, 0, big))
        assert error == 10, f"MESSAGE_TOO_LARGE (10) expected for a {len(big)}-byte batch, got {error}"
        [(_, _, error, _, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, topic, 0, -1))
        assert (error, offset) == (kw.NONE, 1), "the rejected batch moved the log end offset"
    # librdkafka sees the same limit as a delivery error, not a hang.
    producer = clients.confluent_producer(broker.bootstrap, **{"message.max.bytes": 1_000_000, "compression.type": "none"})
    errors = []
    producer.produce(topic, value=b"y" * 50_000, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(60) == 0
    assert len(errors) == 1 and errors[0] is not None and errors[0].code() == 10, errors
