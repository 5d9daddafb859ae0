"""Transactions v2 (KIP-890 part 2) on the wire, as a Kafka 4 producer speaks it once the
cluster finalized `transaction.version` 2: no AddPartitionsToTxn and no AddOffsetsToTxn (a
transactional Produce v12 and a TxnOffsetCommit v5 add their partitions on the server side), and
EndTxn v5, whose answer carries the producer epoch bumped at every transaction end.

The Python clients do not speak transactions v2, so these tests build the requests by hand
(kafkawire) and read the results with a read_committed consumer (confluent-kafka).

- A v2 transaction commits: records and offsets visible together; the epoch is bumped.
- The old epoch is fenced everywhere (Produce, AddPartitionsToTxn, TxnOffsetCommit, EndTxn), but
  a late retry of the EndTxn that bumped it is recognised and answered as it was.
- An abort hides its records; kill -9 keeps the bumped epoch and the retry recognition.
- The versions gate it: EndTxn v4 and Produce v11 keep transactions v1 on the same cluster, and
  a cluster from before transaction.version (finalized 0) keeps v1 for every version.
"""

from __future__ import annotations

import json

import clients
import kafkawire as kw
from test_features import features as finalized_features
from test_transactions import consume_all, values

PRODUCE, OFFSET_FETCH, INIT_PRODUCER_ID, ADD_PARTITIONS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT, DESCRIBE_TRANSACTIONS = 0, 9, 22, 24, 26, 28, 65
INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE, PRODUCER_FENCED, TRANSACTION_ABORTABLE = 47, 48, 90, 120
ATTRIBUTE_TRANSACTIONAL = 0x10


def _flexible(api_key: int, version: int, cid: int, body: bytes) -> bytes:
    return kw.frame(kw.request_header(api_key, version, cid, flexible=True) + body + kw.TAGGED_FIELDS_EMPTY)


def transactional_batch(producer_id: int, epoch: int, sequence: int, values_: list[bytes]) -> bytes:
    batch = bytearray(kw.record_batch([(None, v) for v in values_], producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence))
    batch[kw.BATCH_ATTRIBUTES_AT:kw.BATCH_ATTRIBUTES_AT + 2] = kw.i16(ATTRIBUTE_TRANSACTIONAL)
    batch[kw.BATCH_CRC_AT:kw.BATCH_CRC_AT + 4] = kw.u32(kw.crc32c(bytes(batch[kw.BATCH_ATTRIBUTES_AT:])))
    return bytes(batch)


def init_producer_id(conn: kw.Connection, txn_id: str, producer_id: int = -1, epoch: int = -1) -> tuple[int, int, int]:
    """InitProducerId v4: (error, producer id, epoch)."""
    body = kw.compact_string(txn_id) + kw.i32(60_000) + kw.i64(producer_id) + kw.i16(epoch)
    r = kw.Reader(conn.request(lambda cid: _flexible(INIT_PRODUCER_ID, 4, cid, body)))
    r.skip_tagged_fields()
    r.i32()
    return r.i16(), r.i64(), r.i16()


def produce(conn: kw.Connection, version: int, txn_id: str, topic: str, partition: int, batch: bytes) -> int:
    """One transactional batch in Produce v9+ (flexible); its partition's error code."""
    partition_data = kw.compact_array([kw.i32(partition) + kw.uvarint(len(batch) + 1) + batch + kw.TAGGED_FIELDS_EMPTY])
    topic_data = kw.compact_array([kw.compact_string(topic) + partition_data + kw.TAGGED_FIELDS_EMPTY])
    body = kw.compact_string(txn_id) + kw.i16(-1) + kw.i32(30_000) + topic_data
    r = kw.Reader(conn.request(lambda cid: _flexible(PRODUCE, version, cid, body)))
    r.skip_tagged_fields()
    assert r.uvarint() - 1 == 1 and r.compact_string() == topic
    assert r.uvarint() - 1 == 1 and r.i32() == partition
    return r.i16()


def produce_many(conn: kw.Connection, version: int, txn_id: str, topic: str, batches: dict[int, bytes]) -> dict[int, int]:
    """Transactional batches for several partitions in one Produce v9+ request, as a Kafka
    producer sends them: {partition: error code}."""
    partition_data = kw.compact_array([kw.i32(p) + kw.uvarint(len(b) + 1) + b + kw.TAGGED_FIELDS_EMPTY for p, b in batches.items()])
    topic_data = kw.compact_array([kw.compact_string(topic) + partition_data + kw.TAGGED_FIELDS_EMPTY])
    body = kw.compact_string(txn_id) + kw.i16(-1) + kw.i32(30_000) + topic_data
    r = kw.Reader(conn.request(lambda cid: _flexible(PRODUCE, version, cid, body)))
    r.skip_tagged_fields()
    assert r.uvarint() - 1 == 1 and r.compact_string() == topic
    errors = {}
    for _ in range(r.uvarint() - 1):
        partition, error = r.i32(), r.i16()
        errors[partition] = error
        r.i64(), r.i64(), r.i64()  # base offset, log append time, log start offset
        for _ in range(r.uvarint() - 1):  # record errors
            r.i32(), r.compact_string(), r.skip_tagged_fields()
        r.compact_string()  # error message
        r.skip_tagged_fields()
    return errors


def txn_offset_commit(conn: kw.Connection, version: int, txn_id: str, group: str, producer_id: int, epoch: int, topic: str, partition: int, offset: int) -> int:
    """TxnOffsetCommit v3+ (flexible), one offset, outside any generation; its error code."""
    partitions = kw.compact_array([kw.i32(partition) + kw.i64(offset) + kw.i32(-1) + kw.compact_string("") + kw.TAGGED_FIELDS_EMPTY])
    topics = kw.compact_array([kw.compact_string(topic) + partitions + kw.TAGGED_FIELDS_EMPTY])
    body = (kw.compact_string(txn_id) + kw.compact_string(group) + kw.i64(producer_id) + kw.i16(epoch)
            + kw.i32(-1) + kw.compact_string("") + kw.compact_string(None) + topics)
    r = kw.Reader(conn.request(lambda cid: _flexible(TXN_OFFSET_COMMIT, version, cid, body)))
    r.skip_tagged_fields()
    r.i32()
    assert r.uvarint() - 1 == 1 and r.compact_string() == topic
    assert r.uvarint() - 1 == 1 and r.i32() == partition
    return r.i16()


def add_partitions(conn: kw.Connection, txn_id: str, producer_id: int, epoch: int, topic: str, partition: int) -> int:
    """AddPartitionsToTxn v3, the last client version; the partition's error code."""
    topics = kw.compact_array([kw.compact_string(topic) + kw.compact_array([kw.i32(partition)]) + kw.TAGGED_FIELDS_EMPTY])
    body = kw.compact_string(txn_id) + kw.i64(producer_id) + kw.i16(epoch) + topics
    r = kw.Reader(conn.request(lambda cid: _flexible(ADD_PARTITIONS_TO_TXN, 3, cid, body)))
    r.skip_tagged_fields()
    r.i32()
    assert r.uvarint() - 1 == 1 and r.compact_string() == topic
    assert r.uvarint() - 1 == 1 and r.i32() == partition
    return r.i16()


def end_txn(conn: kw.Connection, version: int, txn_id: str, producer_id: int, epoch: int, commit: bool) -> tuple[int, int, int]:
    """EndTxn v3+ (flexible): (error, producer id, epoch); v3 and v4 answer no id (-1, -1)."""
    body = kw.compact_string(txn_id) + kw.i64(producer_id) + kw.i16(epoch) + kw.i8(1 if commit else 0)
    r = kw.Reader(conn.request(lambda cid: _flexible(END_TXN, version, cid, body)))
    r.skip_tagged_fields()
    r.i32()
    error = r.i16()
    if version < 5:
        return error, -1, -1
    return error, r.i64(), r.i16()


def describe(conn: kw.Connection, txn_id: str) -> tuple[str, int, int, dict[str, list[int]]]:
    """DescribeTransactions v0: (state, producer id, epoch, {topic: partitions})."""
    r = kw.Reader(conn.request(lambda cid: _flexible(DESCRIBE_TRANSACTIONS, 0, cid, kw.compact_array([kw.compact_string(txn_id)]))))
    r.skip_tagged_fields()
    r.i32()
    assert r.uvarint() - 1 == 1
    error, _id, state = r.i16(), r.compact_string(), r.compact_string()
    assert error == kw.NONE, f"DescribeTransactions {txn_id}: error {error}"
    r.i32(), r.i64()
    producer_id, epoch = r.i64(), r.i16()
    topics = {}
    for _ in range(r.uvarint() - 1):
        topic = r.compact_string()
        topics[topic] = sorted(r.i32() for _ in range(r.uvarint() - 1))
        r.skip_tagged_fields()
    return state, producer_id, epoch, topics


def committed_offset(conn: kw.Connection, group: str, topic: str, partition: int) -> int:
    return kw.parse_offset_fetch_v1(conn.request(kw.offset_fetch_v1_request, group, [(topic, partition)]))[(topic, partition)][0]


def test_api_versions_serve_the_transactions_v2_versions(broker):
    with kw.Connection(broker.port) as conn:
        apis = conn.api_versions(3).apis
    assert apis[PRODUCE][1] >= 12 and apis[END_TXN][1] >= 5 and apis[TXN_OFFSET_COMMIT][1] >= 5 and apis[ADD_PARTITIONS_TO_TXN][1] >= 5, apis


def test_a_v2_transaction_commits_bumps_the_epoch_and_fences_the_old_one(broker):
    topic, txn, group = "tv2-commit", "tv2-commit-1", "tv2-group"
    clients.create_topic(broker.bootstrap, topic, 3)
    clients.create_topic(broker.bootstrap, "tv2-input", 1)
    with kw.Connection(broker.port) as conn:
        error, pid, epoch = init_producer_id(conn, txn)
        assert error == kw.NONE
        # No AddPartitionsToTxn: each Produce v12 adds its partition on the server side.
        for p in (0, 1):
            assert produce(conn, 12, txn, topic, p, transactional_batch(pid, epoch, 0, [f"c{p}".encode()])) == kw.NONE
        state, _, _, partitions = describe(conn, txn)
        assert (state, partitions) == ("Ongoing", {topic: [0, 1]})
        # No AddOffsetsToTxn either: TxnOffsetCommit v5 adds the group's offsets partition.
        assert txn_offset_commit(conn, 5, txn, group, pid, epoch, "tv2-input", 0, 42) == kw.NONE
        _, _, _, partitions = describe(conn, txn)
        assert "__consumer_offsets" in partitions and partitions[topic] == [0, 1], partitions

        error, new_pid, new_epoch = end_txn(conn, 5, txn, pid, epoch, commit=True)
        assert (error, new_pid, new_epoch) == (kw.NONE, pid, epoch + 1), "EndTxn v5 bumps the epoch and answers it"
        assert describe(conn, txn)[:3] == ("CompleteCommit", pid, epoch + 1)
        assert committed_offset(conn, group, "tv2-input", 0) == 42

        # The old epoch is a zombie's now: fenced wherever it writes. A partition that has the
        # commit marker knows the new epoch itself; one the transaction never touched learns it
        # from the coordinator.
        assert produce(conn, 12, txn, topic, 0, transactional_batch(pid, epoch, 1, [b"zombie"])) == INVALID_PRODUCER_EPOCH
        assert produce(conn, 12, txn, topic, 2, transactional_batch(pid, epoch, 0, [b"zombie"])) == INVALID_PRODUCER_EPOCH
        assert txn_offset_commit(conn, 5, txn, group, pid, epoch, "tv2-input", 0, 99) == INVALID_PRODUCER_EPOCH
        assert add_partitions(conn, txn, pid, epoch, topic, 2) == PRODUCER_FENCED
        # A late retry of the EndTxn that bumped the epoch is recognised: the same answer...
        assert end_txn(conn, 5, txn, pid, epoch, commit=True) == (kw.NONE, pid, epoch + 1)
        # ...but the old epoch cannot turn it into an abort.
        assert end_txn(conn, 5, txn, pid, epoch, commit=False)[0] == INVALID_TXN_STATE
        assert committed_offset(conn, group, "tv2-input", 0) == 42

        # The next transaction runs at the new epoch, its sequences from 0 again: on a partition
        # whose commit marker carried that epoch too.
        epoch += 1
        assert produce(conn, 12, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"c0-again"])) == kw.NONE
        assert produce(conn, 12, txn, topic, 2, transactional_batch(pid, epoch, 0, [b"c2"])) == kw.NONE
        assert end_txn(conn, 5, txn, pid, epoch, commit=True) == (kw.NONE, pid, epoch + 1)
        # Two epochs behind is no retry: fenced.
        assert end_txn(conn, 5, txn, pid, epoch - 1, commit=True)[0] == PRODUCER_FENCED
    assert values(consume_all(broker.bootstrap, topic, 3, "read_committed")) == [b"c0", b"c0-again", b"c1", b"c2"]


def test_a_v2_produce_to_many_partitions_adds_them_all_at_once(broker):
    # A Kafka 4 producer's first Produce of a transaction carries a batch for every partition it
    # wrote to meanwhile; the broker adds them to the transaction together. Added one by one,
    # they found each other in progress and all but one got CONCURRENT_TRANSACTIONS (a retry and
    # a backoff on every transaction).
    topic, txn = "tv2-many", "tv2-many-1"
    clients.create_topic(broker.bootstrap, topic, 6)
    with kw.Connection(broker.port) as conn:
        error, pid, epoch = init_producer_id(conn, txn)
        assert error == kw.NONE
        for round_ in range(3):
            batches = {p: transactional_batch(pid, epoch, 0, [f"r{round_}p{p}".encode()]) for p in range(6)}
            assert produce_many(conn, 12, txn, topic, batches) == {p: kw.NONE for p in range(6)}, f"round {round_}"
            state, _, _, partitions = describe(conn, txn)
            assert (state, partitions) == ("Ongoing", {topic: list(range(6))})
            error, _, new_epoch = end_txn(conn, 5, txn, pid, epoch, commit=round_ != 1)
            assert (error, new_epoch) == (kw.NONE, epoch + 1)
            epoch = new_epoch
    read = sorted(values(consume_all(broker.bootstrap, topic, 6, "read_committed")))
    assert read == sorted(f"r{r}p{p}".encode() for r in (0, 2) for p in range(6)), read


def test_a_v2_abort_hides_its_records_and_kill9_keeps_the_bumped_epoch(broker):
    topic, txn = "tv2-abort", "tv2-abort-1"
    clients.create_topic(broker.bootstrap, topic, 2)
    with kw.Connection(broker.port) as conn:
        _, pid, epoch = init_producer_id(conn, txn)
        assert produce(conn, 12, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"kept"])) == kw.NONE
        assert end_txn(conn, 5, txn, pid, epoch, commit=True) == (kw.NONE, pid, epoch + 1)
        epoch += 1
        for p in (0, 1):
            assert produce(conn, 12, txn, topic, p, transactional_batch(pid, epoch, 0, [f"aborted-{p}".encode()])) == kw.NONE
        assert end_txn(conn, 5, txn, pid, epoch, commit=False) == (kw.NONE, pid, epoch + 1)
    assert values(consume_all(broker.bootstrap, topic, 2, "read_committed")) == [b"kept"]
    assert values(consume_all(broker.bootstrap, topic, 2, "read_uncommitted")) == [b"aborted-0", b"aborted-1", b"kept"]

    broker.kill9()
    broker.start()
    with kw.Connection(broker.port) as conn:
        # The transaction state log kept the bumped epoch, and that the client spoke v2: the
        # retry of the abort is still recognised, and the old epoch still fenced.
        assert describe(conn, txn)[:3] == ("CompleteAbort", pid, epoch + 1)
        assert end_txn(conn, 5, txn, pid, epoch, commit=False) == (kw.NONE, pid, epoch + 1)
        assert produce(conn, 12, txn, topic, 1, transactional_batch(pid, epoch, 1, [b"zombie"])) == INVALID_PRODUCER_EPOCH
        # A producer restarting with the id gets the next epoch.
        assert init_producer_id(conn, txn, pid, epoch + 1) == (kw.NONE, pid, epoch + 2)
    assert values(consume_all(broker.bootstrap, topic, 2, "read_committed")) == [b"kept"]


def test_older_request_versions_keep_transactions_v1(broker):
    """The request version is the client's word that it speaks v2: EndTxn v4 does not bump the
    epoch, and a Produce v11 transactional batch must be in the transaction already."""
    topic, txn = "tv2-v1", "tv2-v1-1"
    clients.create_topic(broker.bootstrap, topic, 1)
    with kw.Connection(broker.port) as conn:
        _, pid, epoch = init_producer_id(conn, txn)
        # Not in the transaction: Produce v11 knows TRANSACTION_ABORTABLE (KIP-890), an older
        # version is answered INVALID_TXN_STATE in its place, as Kafka does.
        assert produce(conn, 11, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"x"])) == TRANSACTION_ABORTABLE
        assert produce(conn, 10, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"x"])) == INVALID_TXN_STATE
        assert add_partitions(conn, txn, pid, epoch, topic, 0) == kw.NONE
        assert produce(conn, 11, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"v1"])) == kw.NONE
        assert end_txn(conn, 4, txn, pid, epoch, commit=True)[0] == kw.NONE
        assert describe(conn, txn)[:3] == ("CompleteCommit", pid, epoch)
        # v1 recognises a retry by the same epoch.
        assert end_txn(conn, 4, txn, pid, epoch, commit=True)[0] == kw.NONE
    assert values(consume_all(broker.bootstrap, topic, 1, "read_committed")) == [b"v1"]


def test_a_cluster_from_before_transaction_version_keeps_transactions_v1(broker):
    """A cluster whose metadata has no transaction.version (created by an older shardlog) stays
    at 0 across the upgrade: EndTxn v5 answers the unchanged epoch, and Produce v12 adds no
    partition."""
    assert finalized_features(broker.port).finalized_features.get("transaction.version") == (2, 2), "a new cluster runs v2"
    broker.stop()
    [image_path] = list(broker.data_dir.rglob("cluster-metadata.json"))
    image = json.loads(image_path.read_text())
    del image["finalized_features"]["transaction.version"]
    image_path.write_text(json.dumps(image))
    broker.start()
    topic, txn = "tv2-old-cluster", "tv2-old-cluster-1"
    clients.create_topic(broker.bootstrap, topic, 1)
    assert "transaction.version" not in finalized_features(broker.port).finalized_features
    with kw.Connection(broker.port) as conn:
        _, pid, epoch = init_producer_id(conn, txn)
        # Not added: the partition is not in the transaction (TRANSACTION_ABORTABLE, which a
        # Produce v12 client knows).
        assert produce(conn, 12, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"x"])) == TRANSACTION_ABORTABLE
        assert add_partitions(conn, txn, pid, epoch, topic, 0) == kw.NONE
        assert produce(conn, 12, txn, topic, 0, transactional_batch(pid, epoch, 0, [b"old"])) == kw.NONE
        assert end_txn(conn, 5, txn, pid, epoch, commit=True) == (kw.NONE, pid, epoch)
    assert values(consume_all(broker.bootstrap, topic, 1, "read_committed")) == [b"old"]
