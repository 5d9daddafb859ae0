"""JBOD log directories: partitions spread over several `log.dirs`, and a directory that fails
takes only its own partitions offline.

- A directory that vanishes (here: renamed away, as after an unmount) fails whole: produce to its
  partitions gets KAFKA_STORAGE_ERROR, DescribeLogDirs reports it, the other directories keep
  serving; a restart without it keeps its partitions offline rather than empty. Runs anywhere.
- On three XFS filesystems on loop devices (skipped, saying why, where the machine cannot make
  them): one filled to ENOSPC refuses produce to its partitions only, corrupts nothing, loses no
  acknowledged record, and serves again once space is freed; one shut down by XFS (every I/O then
  fails with EIO) goes offline while the others serve on.

Clients: librdkafka (confluent-kafka) produces and consumes with CRC checks; kafka-python's admin
client reads DescribeLogDirs.
"""

from __future__ import annotations

import errno
import json
import os
import urllib.error
import urllib.request
import shutil
import subprocess
import time
from pathlib import Path

import confluent_kafka
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from clients import confluent_consume, rdkafka, wait_for_partitions, wait_until

REPO = Path(__file__).resolve().parent.parent
JBOD_SCRIPT = REPO / "scripts" / "jbod-xfs"
PARTITIONS = 6
RECORD_BYTES = 1024
# Generous bounds for the broker to notice a failure or a freed disk; never asserted on.
WAIT_S = 60.0


def create_topic(bootstrap: str, topic: str, config: dict[str, str] | None = None) -> None:
    admin = AdminClient(rdkafka(bootstrap))
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1, config=config or {})], operation_timeout=30)
    futures[topic].result(timeout=60)
    wait_for_partitions(bootstrap, topic, PARTITIONS)


def placement(log_dirs: list[Path], topic: str) -> dict[int, int]:
    """Partition -> index of the log directory that holds it, from the directories on disk."""
    found = {}
    for i, d in enumerate(log_dirs):
        for p in range(PARTITIONS):
            if (d / f"{topic}-{p}").is_dir():
                found[p] = i
    assert sorted(found) == list(range(PARTITIONS)), f"partition directories of {topic}: {found}"
    return found


def value(phase: str, partition: int, i: int) -> bytes:
    head = f"{phase}:{partition}:{i}:".encode()
    return head + b"x" * (RECORD_BYTES - len(head))


class Produced:
    """What one producer run sent, and what the broker acknowledged or refused."""

    def __init__(self) -> None:
        self.sent: set[bytes] = set()
        self.acked: dict[int, dict[int, bytes]] = {}  # partition -> offset -> value
        self.errors: dict[int, list[int]] = {}  # partition -> error codes

    def add(self, other: "Produced") -> None:
        self.sent |= other.sent
        for p, offsets in other.acked.items():
            self.acked.setdefault(p, {}).update(offsets)


def produce(bootstrap: str, topic: str, phase: str, per_partition: int, partitions: list[int], **overrides) -> Produced:
    out = Produced()

    def report(err, msg):
        p = msg.partition()
        if err is None:
            out.acked.setdefault(p, {})[msg.offset()] = msg.value()
        else:
            out.errors.setdefault(p, []).append(err.code())

    config = {"enable.idempotence": False, "acks": "all", "linger.ms": 5, "batch.size": 256 * 1024, "message.timeout.ms": 30_000, **overrides}
    producer = confluent_kafka.Producer(rdkafka(bootstrap, **config))
    for i in range(per_partition):
        for p in partitions:
            v = value(phase, p, i)
            out.sent.add(v)
            while True:
                try:
                    producer.produce(topic, v, key=f"k{i}".encode(), partition=p, on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "producer did not drain"
    return out


def assert_isolated(produced: Produced, offline: list[int], serving: list[int], per_partition: int) -> None:
    """Every write to an offline partition failed with KAFKA_STORAGE_ERROR, every write to the
    serving ones was acknowledged."""
    for p in offline:
        assert p not in produced.acked, f"partition {p} in the failed directory acknowledged a write"
        assert set(produced.errors[p]) == {KafkaError.KAFKA_STORAGE_ERROR}, (p, produced.errors[p])
    for p in serving:
        assert p not in produced.errors and len(produced.acked[p]) == per_partition, (p, produced.errors.get(p))


def verify(bootstrap: str, topic: str, produced: Produced, partitions: list[int]) -> list:
    """Every acknowledged record is in the log at its acknowledged offset, exactly once, and the
    log holds nothing that was not sent (CRCs checked by librdkafka)."""
    consumer = confluent_kafka.Consumer(rdkafka(bootstrap, **{"group.id": "e2e-unused", "enable.auto.commit": False}))
    try:
        ends = {p: consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    finally:
        consumer.close()
    records = confluent_consume(bootstrap, topic, ends, **{"check.crcs": True})
    by_offset = {(r.partition, r.offset): r.value for r in records}
    for p in partitions:
        for offset, v in produced.acked.get(p, {}).items():
            assert by_offset.get((p, offset)) == v, f"acknowledged record {p}@{offset} missing or changed"
    stray = [r for r in records if r.value not in produced.sent]
    assert not stray, f"{len(stray)} records in the log were never sent (corruption?): {stray[:3]}"
    values = [r.value for r in records]
    acked_values = {v for offsets in produced.acked.values() for v in offsets.values()}
    duplicated = {v for v in acked_values if values.count(v) > 1}
    assert not duplicated, f"acknowledged records stored twice: {list(duplicated)[:3]}"
    return sorted(records)


def describe_log_dirs(bootstrap: str) -> dict[str, int]:
    """log dir path -> error code, through kafka-python's admin client."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        [per_broker] = admin.describe_log_dirs()
    finally:
        admin.close()
    return {d["log_dir"]: d["error_code"] for d in per_broker["log_dirs"]}


def health(broker) -> tuple[int, dict]:
    """GET /v1/health on the admin listener: (HTTP status, body)."""
    try:
        with urllib.request.urlopen(f"{broker.admin_url}/v1/health", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_vanished_log_dir_takes_only_its_partitions_offline(broker_factory, tmp_path):
    dirs = [tmp_path / f"d{i}" for i in range(3)]
    broker = broker_factory(start=False)
    broker.log_dirs = dirs
    broker.start()
    topic = "jbod-vanish"
    create_topic(broker.bootstrap, topic)
    where = placement(dirs, topic)
    assert set(where.values()) == {0, 1, 2}, f"6 partitions should spread over 3 directories: {where}"

    everything = produce(broker.bootstrap, topic, "before", 50, list(range(PARTITIONS)))
    assert not everything.errors and all(len(everything.acked[p]) == 50 for p in range(PARTITIONS))

    # The metadata lives in the first directory; fail another one.
    lost = [p for p, d in where.items() if d == 2]
    kept = [p for p, d in where.items() if d != 2]
    since = broker.log_size()
    os.rename(dirs[2], tmp_path / "d2.gone")
    assert broker.wait_for_log(r"log directory failed", since, timeout_s=WAIT_S), broker.log_tail()

    during = produce(broker.bootstrap, topic, "during", 20, list(range(PARTITIONS)), retries=0, **{"message.timeout.ms": 10_000})
    assert_isolated(during, lost, kept, 20)
    everything.add(during)

    errors = describe_log_dirs(broker.bootstrap)
    assert errors[str(dirs[2].resolve())] == KafkaError.KAFKA_STORAGE_ERROR, errors
    assert errors[str(dirs[0].resolve())] == 0 and errors[str(dirs[1].resolve())] == 0, errors
    verify(broker.bootstrap, topic, everything, kept)
    status, body = health(broker)
    assert status == 503 and any(f"log directory {dirs[2]} is offline" in r for r in body["reasons"]), (status, body)
    broker.assert_alive()

    # A restart without the directory (an empty mount point) keeps its partitions offline
    # instead of serving them as empty logs.
    broker.kill9()
    broker.start()
    assert "log directory starts offline" in broker.run_log(), broker.log_tail()
    restarted = produce(broker.bootstrap, topic, "restarted", 5, list(range(PARTITIONS)), retries=0, **{"message.timeout.ms": 10_000})
    assert_isolated(restarted, lost, kept, 5)
    everything.add(restarted)
    assert not any(dirs[2].iterdir()), "nothing is written into the stand-in directory"

    # Put the directory back and restart: every acknowledged record of every partition is there.
    broker.kill9()
    dirs[2].rmdir()
    os.rename(tmp_path / "d2.gone", dirs[2])
    broker.start()
    verify(broker.bootstrap, topic, everything, list(range(PARTITIONS)))


# --- XFS on loop devices ----------------------------------------------------------------------


@pytest.fixture
def xfs_dirs(tmp_path):
    """Three XFS filesystems on loop devices, made by scripts/jbod-xfs; skipped where the machine
    cannot make them (not root, no loop devices, no mkfs.xfs, a container without mount)."""
    if os.geteuid() != 0:
        pytest.skip("JBOD XFS test needs root to create loop devices and mount XFS filesystems")
    for tool in ("mkfs.xfs", "losetup", "xfs_io"):
        if shutil.which(tool) is None:
            pytest.skip(f"JBOD XFS test needs {tool} (Debian: xfsprogs, util-linux); scripts/install-deps installs them")
    base, images = tmp_path / "mnt", tmp_path / "img"
    made = subprocess.run([str(JBOD_SCRIPT), "--loop", "3", "--size", "320M", "--base", str(base), "--loop-dir", str(images), "--yes"], capture_output=True, text=True)
    dirs = [base / f"d{i}" for i in range(3)]
    try:
        if made.returncode != 0 or not all(os.path.ismount(d) for d in dirs):
            pytest.skip(f"this machine cannot make XFS filesystems on loop devices (scripts/jbod-xfs exit {made.returncode}): {made.stderr.strip()[-400:]}")
        yield dirs
    finally:
        subprocess.run([str(JBOD_SCRIPT), "--teardown", "--base", str(base), "--loop-dir", str(images), "--yes"], capture_output=True, text=True)


def fill(directory: Path) -> Path:
    """Writes a file until the filesystem says ENOSPC."""
    filler = directory / "filler"
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        try:
            os.fsync(f.fileno())
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


def test_full_and_failed_xfs_dirs_isolate_their_partitions(broker_factory, xfs_dirs):
    dirs = xfs_dirs
    broker = broker_factory(start=False)
    broker.log_dirs = dirs
    broker.start()
    topic = "jbod-xfs"
    # Small segments: every megabyte a new segment is created and preallocated, so a full
    # filesystem shows at once.
    create_topic(broker.bootstrap, topic, {"segment.bytes": str(1 << 20)})
    where = placement(dirs, topic)
    assert set(where.values()) == {0, 1, 2}, f"6 partitions should spread over 3 filesystems: {where}"
    everything = produce(broker.bootstrap, topic, "before", 200, list(range(PARTITIONS)))
    assert not everything.errors

    # d1 fills up: its partitions refuse writes, the others keep taking them.
    full = [p for p, d in where.items() if d == 1]
    others = [p for p, d in where.items() if d != 1]
    filler = fill(dirs[1])
    since = broker.log_size()
    during = produce(broker.bootstrap, topic, "full", 3000, list(range(PARTITIONS)), retries=0, **{"message.timeout.ms": 20_000})
    everything.add(during)
    for p in full:
        assert KafkaError.KAFKA_STORAGE_ERROR in during.errors.get(p, []), f"partition {p} on the full filesystem: {during.errors.get(p)}"
        assert set(during.errors[p]) == {KafkaError.KAFKA_STORAGE_ERROR}, during.errors[p]
    for p in others:
        assert p not in during.errors and len(during.acked[p]) == 3000, (p, during.errors.get(p))
    assert broker.wait_for_log(r"log directory is full", since, timeout_s=WAIT_S)
    status, body = health(broker)
    assert status == 503 and any("is full" in r for r in body["reasons"]), (status, body)
    broker.assert_alive()

    # Space freed: the full partitions write again, by themselves.
    filler.unlink()
    since = broker.log_size()
    assert broker.wait_for_log(r"space was freed", since, timeout_s=WAIT_S), broker.log_tail()
    after = produce(broker.bootstrap, topic, "after", 100, list(range(PARTITIONS)))
    assert not after.errors, after.errors
    everything.add(after)
    assert health(broker) == (200, {"ready": True, "reasons": []})
    records = verify(broker.bootstrap, topic, everything, list(range(PARTITIONS)))

    # Nothing on disk is corrupt: a restart recovers exactly the same log.
    broker.restart()
    assert verify(broker.bootstrap, topic, everything, list(range(PARTITIONS))) == records

    # d2 fails with EIO (XFS shut down): its partitions go offline, d0 and d1 serve on.
    failing = [p for p, d in where.items() if d == 2]
    serving = [p for p, d in where.items() if d != 2]
    since = broker.log_size()
    subprocess.run(["xfs_io", "-x", "-c", "shutdown", str(dirs[2])], check=True)
    eio = produce(broker.bootstrap, topic, "eio", 20, list(range(PARTITIONS)), retries=0, **{"message.timeout.ms": 10_000})
    assert_isolated(eio, failing, serving, 20)
    everything.add(eio)
    assert broker.wait_for_log(r"log directory failed", since, timeout_s=WAIT_S)
    errors = wait_until(lambda: (e := describe_log_dirs(broker.bootstrap)) and e.get(str(dirs[2])) == KafkaError.KAFKA_STORAGE_ERROR and e, "DescribeLogDirs to report the failed directory")
    assert errors[str(dirs[0])] == 0 and errors[str(dirs[1])] == 0, errors
    verify(broker.bootstrap, topic, everything, serving)
    broker.assert_alive()
    broker.kill9()
