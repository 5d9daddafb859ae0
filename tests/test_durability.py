"""acks=all survives kill -9.

A librdkafka producer (acks=all, no idempotence) writes keyed records without pause; once some
thousands are acknowledged the broker gets SIGKILL in the middle of the stream. Every record
whose delivery report said "acknowledged at (partition, offset)" must, after a restart, be
there exactly once, at that offset, with its value. Records whose delivery failed may or may
not be there, but never at an acknowledged record's offset.
"""

from __future__ import annotations

import clients
from clients import Rec

PARTITIONS = 4
ACKED_BEFORE_KILL = 5_000
PRODUCED_AFTER_KILL = 2_000
ROUNDS = 2


def produce_then_kill(broker, topic: str, first_seq: int) -> tuple[dict[tuple[int, int], bytes], int, int]:
    """Produces until ACKED_BEFORE_KILL records are acknowledged, kills the broker, keeps
    producing a little, then waits for every delivery report. Returns ({(partition, offset):
    value} for acknowledged records, number failed, next sequence number)."""
    producer = clients.confluent_producer(
        broker.bootstrap,
        **{
            "linger.ms": 1,
            "batch.size": 16_384,  # many small requests in flight, so the kill lands mid-request
            "message.timeout.ms": 8_000,  # records the dead broker never answers fail soon
            "reconnect.backoff.max.ms": 500,
        },
    )
    acked: dict[tuple[int, int], bytes] = {}
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
            return
        where = (msg.partition(), msg.offset())
        assert where not in acked, f"two records acknowledged at {where}"
        acked[where] = msg.value()

    seq = first_seq
    in_flight_at_kill = None
    after_kill = 0
    while after_kill < PRODUCED_AFTER_KILL:
        try:
            producer.produce(topic, key=f"key-{seq % 97}".encode(), value=f"value-{seq:09d}".encode(), on_delivery=on_delivery)
        except BufferError:
            producer.poll(0.05)
            continue
        seq += 1
        producer.poll(0)
        if in_flight_at_kill is None:
            # Kill at a moment when records are in flight: a broker that acknowledges as fast
            # as this loop produces often leaves the queue empty between two records.
            if len(acked) >= ACKED_BEFORE_KILL and len(producer) > 0:
                in_flight_at_kill = len(producer)
                broker.kill9()
        else:
            after_kill += 1
    remaining = producer.flush(60)
    assert remaining == 0, f"{remaining} records still without a delivery report"
    assert in_flight_at_kill, "nothing was in flight when the broker was killed: the test did not kill mid-stream"
    assert failed, "no delivery failed although the broker was dead while records were produced"
    return acked, len(failed), seq


def read_everything(broker, topic: str) -> list[Rec]:
    watermarks = clients.confluent_watermarks(broker.bootstrap, topic, PARTITIONS)
    return clients.confluent_consume(broker.bootstrap, topic, {p: hw for p, (_, hw) in watermarks.items()})


def check_acknowledged_present(records: list[Rec], acked: dict[tuple[int, int], bytes]) -> None:
    at: dict[tuple[int, int], Rec] = {}
    where_is_value: dict[bytes, list[tuple[int, int]]] = {}
    for r in records:
        assert (r.partition, r.offset) not in at, f"offset {r.offset} of partition {r.partition} read twice"
        at[(r.partition, r.offset)] = r
        where_is_value.setdefault(r.value, []).append((r.partition, r.offset))
    lost = [w for w in acked if w not in at]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged records lost after kill -9, e.g. {sorted(lost)[:5]}"
    replaced = [(w, v, at[w].value) for w, v in acked.items() if at[w].value != v]
    assert not replaced, f"{len(replaced)} acknowledged offsets hold another record, e.g. (where, acked, found) {replaced[:3]}"
    duplicated = {v: ws for v, ws in where_is_value.items() if len(ws) > 1 and v in set(acked.values())}
    assert not duplicated, f"{len(duplicated)} acknowledged records stored more than once, e.g. {next(iter(duplicated.items()))}"


def test_acknowledged_records_survive_kill9_mid_stream(broker):
    topic = "durable"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    all_acked: dict[tuple[int, int], bytes] = {}
    seq = 0
    for _ in range(ROUNDS):
        acked, _failed, seq = produce_then_kill(broker, topic, seq)
        assert len(acked) >= ACKED_BEFORE_KILL
        assert not acked.keys() & all_acked.keys(), "a new acknowledgement reuses an offset acknowledged before the crash"
        all_acked.update(acked)
        broker.start()
        broker.assert_alive()
        records = read_everything(broker, topic)
        check_acknowledged_present(records, all_acked)

    # The log is still sound for a clean restart after two crash recoveries.
    broker.restart()
    assert sorted(read_everything(broker, topic)) == sorted(records)


def test_idempotent_producer_across_kill9_has_no_loss_and_no_duplicates(broker):
    """With enable.idempotence=true the producer retries what was in flight when the broker
    died, once it is back. Producer state (ids and sequence numbers) is recovered from disk, so
    the retries are deduplicated: every record ends up in the log exactly once, in order."""
    topic = "durable-idempotent"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    producer = clients.confluent_producer(
        broker.bootstrap,
        **{
            "enable.idempotence": True,
            "linger.ms": 1,
            "batch.size": 16_384,
            "message.timeout.ms": 120_000,  # long enough to outlive the broker's restart
            "reconnect.backoff.max.ms": 500,
        },
    )
    acked: dict[bytes, tuple[int, int]] = {}
    failed = []

    def on_delivery(err, msg):
        if err is not None:
            failed.append(err)
        else:
            acked[msg.value()] = (msg.partition(), msg.offset())

    produced = []
    killed = False
    seq = 0
    after_kill = 0
    while after_kill < PRODUCED_AFTER_KILL:
        value = f"value-{seq:09d}".encode()
        while True:
            try:
                producer.produce(topic, key=f"key-{seq % 97}".encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        produced.append(value)
        seq += 1
        producer.poll(0)
        if killed:
            after_kill += 1
        elif len(acked) >= ACKED_BEFORE_KILL:
            assert len(producer) > 0, "nothing in flight at the kill"
            broker.kill9()
            killed = True
            broker.start()
    assert producer.flush(120) == 0, "records still unacknowledged long after the broker came back"
    assert not failed, f"{len(failed)} records failed with an idempotent producer, first: {failed[0]}"
    assert len(acked) == len(produced)

    records = read_everything(broker, topic)
    values = [r.value for r in records]
    duplicates = len(values) - len(set(values))
    assert duplicates == 0, f"{duplicates} records stored twice despite idempotence"
    assert set(values) == set(produced), f"{len(set(produced) - set(values))} records lost"
    assert {r.value: (r.partition, r.offset) for r in records} == acked, "records not at their acknowledged offsets"
    # Idempotence also keeps order: within a partition, sequence numbers rise with offsets.
    for p in range(PARTITIONS):
        seqs = [int(r.value.split(b"-")[1]) for r in sorted(records) if r.partition == p]
        assert seqs == sorted(seqs), f"partition {p} out of order after retries"
