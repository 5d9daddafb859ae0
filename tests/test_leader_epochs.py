"""Leader epochs on one broker (issue #15, first step): every batch the broker appends carries
the partition's leader epoch, the partition directory keeps Kafka's `leader-epoch-checkpoint`
(rebuilt from the batches when it is missing, as in a data directory from before epochs were
kept, or damaged), and OffsetForLeaderEpoch answers with Kafka's end offsets and error codes.
The epoch changes across brokers are in test_cluster_leader_epochs.py."""

from __future__ import annotations

import kafkawire as kw
from cluster import create_topic

TOPIC = "epochs"


def produce_raw(port: int, batches: list[bytes]) -> None:
    with kw.Connection(port) as conn:
        for batch in batches:
            [(_, _, error, _)] = kw.parse_produce_v3(conn.request(kw.produce_v3_request, TOPIC, 0, batch, acks=-1))
            assert error == kw.NONE


def with_leader_epoch(batch: bytes, epoch: int) -> bytes:
    """The batch as a producer with a stale idea of the epoch would send it (the field is
    outside the CRC, so the batch stays valid)."""
    return batch[:12] + kw.i32(epoch) + batch[16:]


def ask(port: int, version: int, topics, replica_id: int = -1) -> dict:
    with kw.Connection(port) as conn:
        body = conn.request(kw.offset_for_leader_epoch_request, version, topics, replica_id=replica_id)
    return kw.parse_offset_for_leader_epoch(body, version)


def checkpoint(broker) -> str:
    return (broker.data_dir / f"{TOPIC}-0" / "leader-epoch-checkpoint").read_text()


def test_batches_carry_the_leader_epoch_and_offset_for_leader_epoch_answers(broker):
    create_topic(broker, TOPIC, 1)
    # A producer's value in the field (7 here, -1 from real clients) is replaced by the epoch
    # the leader appends in: 0, the partition's first.
    produce_raw(broker.port, [with_leader_epoch(kw.record_batch([(b"k", b"v%d" % i)] * 2), 7) for i in range(3)])
    with kw.Connection(broker.port) as conn:
        [fetched] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, TOPIC, 0, 0))
    assert kw.batch_leader_epochs(fetched.records) == [(0, 0), (2, 0), (4, 0)]
    assert all(b.crc_ok for b in kw.parse_batches(fetched.records)), "the stamped batches keep a valid CRC"
    assert checkpoint(broker) == "0\n1\n0 0\n", "Kafka's LeaderEpochCheckpointFile: version, count, `epoch startOffset`"

    for version in (2, 3, 4):
        got = ask(broker.port, version, [(TOPIC, [(0, -1, 0)]), ("no-such-topic", [(0, -1, 0)])])
        assert got[(TOPIC, 0)] == (kw.NONE, 0, 6), f"v{version}: the current epoch ends at the log end"
        assert got[("no-such-topic", 0)] == (kw.UNKNOWN_TOPIC_OR_PARTITION, -1, -1)
    # An epoch the log never had; the asker's view of the current epoch checked as Kafka does.
    assert ask(broker.port, 4, [(TOPIC, [(0, -1, 3)])])[(TOPIC, 0)] == (kw.NONE, -1, -1), "an unknown epoch: NONE with no epoch and no offset"
    assert ask(broker.port, 4, [(TOPIC, [(0, 1, 0)])])[(TOPIC, 0)] == (kw.UNKNOWN_LEADER_EPOCH, -1, -1), "an asker ahead of the broker"
    assert ask(broker.port, 3, [(TOPIC, [(0, 0, 0)])], replica_id=5)[(TOPIC, 0)] == (kw.NONE, 0, 6)

    # Fetch and ListOffsets check the asker's epoch too.
    from kafka.protocol.consumer import ListOffsetsRequest, ListOffsetsResponse

    from test_api_versions import Client

    c = Client(broker.port)
    try:
        for current, error in ((0, kw.NONE), (1, kw.UNKNOWN_LEADER_EPOCH)):
            R = ListOffsetsRequest[4]
            r = c.call(ListOffsetsRequest, ListOffsetsResponse, 4, replica_id=-1, isolation_level=0,
                       topics=[R.ListOffsetsTopic(name=TOPIC, partitions=[R.ListOffsetsTopic.ListOffsetsPartition(partition_index=0, current_leader_epoch=current, timestamp=-1)])])
            [p] = [p for t in r.topics for p in t.partitions]
            assert p.error_code == error, r
            if error == kw.NONE:
                assert (p.offset, p.leader_epoch) == (6, 0), r
    finally:
        c.close()


def test_offset_for_leader_epoch_with_a_hostile_partition_count_closes_the_connection(broker):
    create_topic(broker, TOPIC, 1)
    produce_raw(broker.port, [kw.record_batch([(b"k", b"v")])])
    # Two billion partitions announced, none sent.
    hostile = kw.i32(1) + kw.string(TOPIC) + kw.i32(2_000_000_000)
    with kw.Connection(broker.port) as conn:
        conn.send(kw.frame(kw.request_header(kw.OFFSET_FOR_LEADER_EPOCH, 2, 1) + hostile))
        try:
            conn.recv_frame(timeout_s=10)
            raise AssertionError("a hostile OffsetForLeaderEpoch was answered")
        except kw.Closed:
            pass
    assert "closing connection: malformed request" in broker.run_log()
    # Many partitions that are all there get one answer each.
    many = [(TOPIC, [(i, -1, 0) for i in range(5000)])]
    got = ask(broker.port, 2, many)
    assert len(got) == 5000 and got[(TOPIC, 0)] == (kw.NONE, 0, 1)
    assert {got[(TOPIC, i)][0] for i in range(1, 5000)} == {kw.UNKNOWN_TOPIC_OR_PARTITION}
    assert broker.is_alive()


def test_a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches(broker):
    create_topic(broker, TOPIC, 1)
    produce_raw(broker.port, [kw.record_batch([(b"k", b"v")] * 3) for _ in range(2)])
    assert checkpoint(broker) == "0\n1\n0 0\n"
    path = broker.data_dir / f"{TOPIC}-0" / "leader-epoch-checkpoint"
    for damage in (None, "0\n3\n0 0\n"):
        broker.stop()
        if damage is None:
            path.unlink()  # a data directory written before leader epochs were kept
        else:
            path.write_text(damage)
        broker.start()
        assert checkpoint(broker) == "0\n1\n0 0\n"
        assert ask(broker.port, 2, [(TOPIC, [(0, -1, 0)])])[(TOPIC, 0)] == (kw.NONE, 0, 6)
    assert "leader-epoch-checkpoint is damaged" in broker.run_log()
