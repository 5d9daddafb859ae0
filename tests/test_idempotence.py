"""Idempotent produce at the protocol level, with hand-built requests: a producer id from a real
InitProducerId, RecordBatch v2 with producer id, epoch and base sequence (and a correct
CRC-32C), sent as Produce v3 with acks=all.

- The same request sent twice is appended once; both answers give the same base offset.
- A retry of an earlier batch (one of the last five) gets that batch's offsets back.
- A sequence gap is OUT_OF_ORDER_SEQUENCE_NUMBER and appends nothing; the producer can go on
  from the right sequence.
- After a newer epoch, the older one is INVALID_PRODUCER_EPOCH, retries included.
- Sequences are per partition.
- All of it holds after kill -9 and a restart (producer state replayed from the log): the
  retry of a batch acknowledged just before the kill is still recognised; after a clean
  restart (producer state from its snapshot); and after kill -9 with batches both in the
  snapshot and in the log tail after it.

"Appended once" is checked by ListOffsets (latest) and by fetching and decoding the log.
"""

from __future__ import annotations

import kafkawire as kw
import clients

TOPIC = "idempotence"
PARTITIONS = 2


def init_producer_id(conn: kw.Connection) -> tuple[int, int]:
    error, producer_id, epoch = kw.parse_init_producer_id_v0(conn.request(kw.init_producer_id_v0_request))
    assert error == kw.NONE, f"InitProducerId answered {error}"
    assert producer_id >= 0 and epoch == 0, (producer_id, epoch)
    return producer_id, epoch


def batch(producer_id: int, epoch: int, sequence: int, values: list[str]) -> bytes:
    return kw.record_batch([(v.encode(), v.encode()) for v in values], producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)


def produce(conn: kw.Connection, records: bytes, partition: int = 0) -> tuple[int, int]:
    """(error_code, base_offset) of one Produce v3 with acks=all."""
    [(topic, p, error, base_offset)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, TOPIC, partition, records, acks=-1))
    assert (topic, p) == (TOPIC, partition)
    return error, base_offset


def log_end_offset(conn: kw.Connection, partition: int = 0) -> int:
    [(_t, _p, error, _ts, offset)] = kw.parse_list_offsets_v1(conn.request(kw.list_offsets_v1_request, TOPIC, partition, -1))
    assert error == kw.NONE
    return offset


def log_values(conn: kw.Connection, partition: int = 0) -> list[tuple[int, str]]:
    """[(offset, value)] of the whole partition."""
    [fp] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, TOPIC, partition, 0))
    assert fp.error_code == kw.NONE
    return [(offset, value.decode()) for offset, _ts, _key, value in kw.decode_uncompressed_records(fp.records)]


def assert_log(conn: kw.Connection, want: list[str], partition: int = 0, when: str = "") -> None:
    assert log_end_offset(conn, partition) == len(want), f"log end offset {when}"
    got = log_values(conn, partition)
    assert got == list(enumerate(want)), f"partition {partition} {when}: {got}, want each record once: {want}"


def test_retried_batch_is_appended_once_and_gaps_and_old_epochs_are_refused(broker_factory):
    broker = broker_factory()
    clients.create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    conn = kw.Connection(broker.port)
    try:
        pid, epoch = init_producer_id(conn)
        other_pid, _ = init_producer_id(conn)
        assert other_pid != pid, "two InitProducerId calls gave the same producer id"
        log: list[str] = []

        # The same request twice: one append, the same base offset both times.
        first = batch(pid, epoch, 0, ["a0", "a1", "a2"])
        assert produce(conn, first) == (kw.NONE, 0)
        assert produce(conn, first) == (kw.NONE, 0), "the retried batch did not get its original offset"
        log += ["a0", "a1", "a2"]
        assert_log(conn, log, when="after a batch was sent twice")

        second = batch(pid, epoch, 3, ["b3", "b4"])
        assert produce(conn, second) == (kw.NONE, 3)
        log += ["b3", "b4"]
        # A retry of an older batch (still one of the last five) gets that batch's offsets.
        assert produce(conn, first) == (kw.NONE, 0)
        assert produce(conn, second) == (kw.NONE, 3)
        # The same retry on a fresh connection, as a producer that reconnected sends it.
        with kw.Connection(broker.port) as fresh:
            assert produce(fresh, second) == (kw.NONE, 3)
        assert_log(conn, log, when="after retries of older batches")

        # A gap: refused, nothing appended, and the producer goes on from the right sequence.
        error, _ = produce(conn, batch(pid, epoch, 9, ["gap"]))
        assert error == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, f"a sequence gap answered {error}"
        assert_log(conn, log, when="after a sequence gap")
        assert produce(conn, batch(pid, epoch, 5, ["c5"])) == (kw.NONE, 5)
        log += ["c5"]

        # Sequences are per partition: sequence 0 is this producer's first on partition 1.
        assert produce(conn, batch(pid, epoch, 0, ["p1-0"]), partition=1) == (kw.NONE, 0)
        error, _ = produce(conn, batch(pid, epoch, 2, ["p1-gap"]), partition=1)
        assert error == kw.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert_log(conn, ["p1-0"], partition=1)

        # A newer epoch starts again at sequence 0; the older epoch is fenced from then on, even
        # for what would have been its next batch or a retry of an old one.
        assert produce(conn, batch(pid, epoch + 1, 0, ["e1-0"])) == (kw.NONE, 6)
        log += ["e1-0"]
        for what, stale in {"next batch": batch(pid, epoch, 6, ["stale"]), "retry": first}.items():
            error, _ = produce(conn, stale)
            assert error == kw.INVALID_PRODUCER_EPOCH, f"old epoch's {what} answered {error}"
        assert_log(conn, log, when="after batches of an older epoch")

        # Another producer id has its own sequences on the same partition.
        assert produce(conn, batch(other_pid, 0, 0, ["o0"])) == (kw.NONE, 7)
        log += ["o0"]

        # Acknowledged, then kill -9: the retry after the restart is still recognised.
        last = batch(pid, epoch + 1, 1, ["e1-1", "e1-2"])
        assert produce(conn, last) == (kw.NONE, 8)
        log += ["e1-1", "e1-2"]
        conn.close()
        broker.kill9()
        broker.start()
        conn = kw.Connection(broker.port)
        assert produce(conn, last) == (kw.NONE, 8), "after kill -9 the retried batch was not recognised"
        assert produce(conn, batch(other_pid, 0, 0, ["o0"])) == (kw.NONE, 7)
        assert_log(conn, log, when="after kill -9, a restart and retries")
        error, _ = produce(conn, first)
        assert error == kw.INVALID_PRODUCER_EPOCH, f"after the restart the old epoch answered {error}"
        error, _ = produce(conn, batch(pid, epoch + 1, 7, ["gap"]))
        assert error == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, f"after the restart a gap answered {error}"
        assert produce(conn, batch(pid, epoch + 1, 3, ["e1-3"])) == (kw.NONE, 10)
        log += ["e1-3"]
        assert_log(conn, log, when="after the restart")

        # A clean restart (producer state from its snapshot, not a replay) recognises it too.
        last = batch(pid, epoch + 1, 4, ["e1-4"])
        assert produce(conn, last) == (kw.NONE, 11)
        log += ["e1-4"]
        conn.close()
        broker.restart()
        conn = kw.Connection(broker.port)
        assert produce(conn, last) == (kw.NONE, 11), "after a clean restart the retried batch was not recognised"
        error, _ = produce(conn, first)
        assert error == kw.INVALID_PRODUCER_EPOCH, f"after a clean restart the old epoch answered {error}"

        # Snapshot plus log tail: batches after the snapshot, then kill -9. Retries from before
        # and after the snapshot are both recognised, and the sequence goes on.
        tail = [batch(pid, epoch + 1, 5, ["e1-5"]), batch(pid, epoch + 1, 6, ["e1-6", "e1-7"])]
        assert produce(conn, tail[0]) == (kw.NONE, 12)
        assert produce(conn, tail[1]) == (kw.NONE, 13)
        log += ["e1-5", "e1-6", "e1-7"]
        conn.close()
        broker.kill9()
        broker.start()
        conn = kw.Connection(broker.port)
        assert produce(conn, last) == (kw.NONE, 11), "a batch from before the snapshot was not recognised after kill -9"
        assert produce(conn, tail[0]) == (kw.NONE, 12), "a batch from after the snapshot was not recognised after kill -9"
        assert produce(conn, tail[1]) == (kw.NONE, 13), "a batch from after the snapshot was not recognised after kill -9"
        error, _ = produce(conn, batch(pid, epoch + 1, 7, ["overlap"]))
        assert error == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, f"a batch overlapping the last one answered {error}"
        assert produce(conn, batch(pid, epoch + 1, 8, ["e1-8"])) == (kw.NONE, 15)
        log += ["e1-8"]
        assert_log(conn, log, when="at the end")
        assert_log(conn, ["p1-0"], partition=1, when="at the end")
    finally:
        conn.close()


def test_only_the_last_five_batches_are_remembered(broker_factory):
    """Kafka keeps five batches per producer and partition (max.in.flight.requests.per.connection
    is at most 5 with idempotence): a retry of any of them gets its offsets back; a batch older
    than that is out of sequence, never appended a second time."""
    broker = broker_factory()
    clients.create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    with kw.Connection(broker.port) as conn:
        pid, epoch = init_producer_id(conn)
        batches = [batch(pid, epoch, seq, [f"s{seq}"]) for seq in range(7)]
        for seq, b in enumerate(batches):
            assert produce(conn, b) == (kw.NONE, seq)
        log = [f"s{seq}" for seq in range(7)]
        for seq in range(2, 7):
            assert produce(conn, batches[seq]) == (kw.NONE, seq), f"retry of batch {seq} (one of the last five)"
        for seq in (0, 1):
            error, _ = produce(conn, batches[seq])
            assert error == kw.OUT_OF_ORDER_SEQUENCE_NUMBER, f"retry of batch {seq}, older than the last five, answered {error}"
        assert_log(conn, log, when="after retries of old batches")
