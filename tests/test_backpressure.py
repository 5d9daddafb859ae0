"""Bounded memory under overload: a disk far slower than the network slows producers down
instead of growing the broker, and connection limits hold.

- A log directory on a loop device whose writes the kernel throttles (a blkio cgroup write-bps
  limit that the broker process joins; skipped, saying why, where the machine cannot do it):
  producers with acks=1 offer many times the broker's memory budgets at full speed. The broker's
  dirty and request budgets never pass their limits, its resident memory stays under its
  configured budgets plus a fixed overhead, producers are held back (their local queues fill)
  but see no error, and every acknowledged record reads back exactly once, in order.
- `max.connections.per.ip`: a connection past the limit is closed at once; closing one lets a
  new one in. `max.connections`: a connection past the limit waits unserved until one closes.

Clients: librdkafka (confluent-kafka) produces and consumes with CRC checks; raw sockets for the
connection limits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import confluent_kafka
import pytest

import kafkawire as kw
from clients import confluent_consume, confluent_watermarks, create_topic, rdkafka, wait_until

MIB = 1 << 20
PARTITIONS = 4
RECORD_BYTES = 1024
# The broker's budgets, small so that a short run overflows them many times over.
DIRTY_SHARD_BYTES = 4 * MIB
QUEUED_MAX_REQUEST_BYTES = 8 * MIB
CACHE_SHARD_BYTES = 2 * MIB
# The throttled disk takes this many bytes per second; the producers offer as fast as they can.
DISK_WRITE_BPS = 8 * MIB
# What the producers send in all: several times the memory bound below, so that a broker
# without back-pressure would pass it.
PRODUCE_BYTES = 160 * MIB
# Fixed overhead past the budgets: the allocator, task stacks, connection buffers.
SLACK_BYTES = 32 * MIB


def shard_count() -> int:
    return len(sorted(os.sched_getaffinity(0))[:2])


def memory_bound_bytes() -> int:
    shards = shard_count()
    dirty = shards * DIRTY_SHARD_BYTES
    # Dirty bytes are held three times at most: as cached batches, in a flusher's contiguous
    # copy of what it writes next, and in the DMA buffers being written (a flush writes only
    # dirty bytes, so its buffers are bounded by them too). Past those, each shard's partitions
    # together keep up to its cache limit of durable batches.
    return 3 * dirty + QUEUED_MAX_REQUEST_BYTES + shards * CACHE_SHARD_BYTES + SLACK_BYTES


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def metric_samples(broker, name: str) -> dict[str, float]:
    """{labels: value} of one of the shardlog_shard_* metrics, per shard (and budget or kind)."""
    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    assert out, f"metric {name} missing"
    return out


# --- a disk slower than the network -------------------------------------------------------------


def blkio_cgroup_dir() -> Path | None:
    """A cgroup v1 blkio hierarchy with write throttling, or None."""
    base = Path("/sys/fs/cgroup/blkio")
    return base if (base / "blkio.throttle.write_bps_device").exists() else None


@pytest.fixture
def throttled_dir(tmp_path):
    """(mount point, cgroup.procs path): a filesystem on a loop device whose writes are limited
    to DISK_WRITE_BPS for processes in the cgroup."""
    if os.geteuid() != 0:
        pytest.skip("the throttled-disk test needs root for loop devices, mounts and cgroups")
    mkfs = shutil.which("mkfs.xfs") or shutil.which("mkfs.ext4")
    if mkfs is None or shutil.which("losetup") is None:
        pytest.skip("the throttled-disk test needs losetup and mkfs.xfs or mkfs.ext4 (Debian: util-linux, xfsprogs)")
    cgroups = blkio_cgroup_dir()
    if cgroups is None:
        pytest.skip("no cgroup v1 blkio hierarchy with blkio.throttle.write_bps_device at /sys/fs/cgroup/blkio")
    image, mount = tmp_path / "slow.img", tmp_path / "slow"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(1 << 30)
    made = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(image)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"this machine cannot make a loop device: {made.stderr.strip()}")
    device = made.stdout.strip()
    cgroup = cgroups / f"shardlog-e2e-{os.getpid()}"
    try:
        subprocess.run([mkfs, "-q", device] if mkfs.endswith("xfs") else [mkfs, "-q", "-F", device], check=True, capture_output=True)
        mounted = subprocess.run(["mount", device, str(mount)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a filesystem here: {mounted.stderr.strip()}")
        rdev = os.stat(device).st_rdev
        cgroup.mkdir(exist_ok=True)
        (cgroup / "blkio.throttle.write_bps_device").write_text(f"{os.major(rdev)}:{os.minor(rdev)} {DISK_WRITE_BPS}\n")
        yield mount / "data", cgroup / "cgroup.procs"
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        subprocess.run(["losetup", "-d", device], capture_output=True)
        if cgroup.exists():
            try:
                cgroup.rmdir()
            except OSError:
                pass


def test_slow_disk_slows_producers_down_and_memory_stays_bounded(throttled_dir, broker_factory):
    data_dir, cgroup_procs = throttled_dir
    broker = broker_factory(
        config={
            "shardlog.dirty.shard.bytes": DIRTY_SHARD_BYTES,
            "queued.max.request.bytes": QUEUED_MAX_REQUEST_BYTES,
            "shardlog.cache.shard.bytes": CACHE_SHARD_BYTES,
            "log.segment.bytes": 16 * MIB,
        },
        start=False,
    )
    broker.data_dir = data_dir
    broker.cgroup_procs = cgroup_procs
    broker.start()
    assert str(broker.pid) in cgroup_procs.read_text().split(), "the broker runs in the throttled cgroup"
    topic = "slow-disk"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    baseline_rss = rss_bytes(broker.pid)

    peak_rss = [baseline_rss]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.is_set():
            try:
                peak_rss[0] = max(peak_rss[0], rss_bytes(broker.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()

    acked: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    errors: list[str] = []
    held_back = 0

    def report(err, msg):
        if err is not None:
            errors.append(f"{msg.partition()}: {err}")
        else:
            acked[msg.partition()].append((msg.offset(), msg.value()))

    # acks=1 is what a broker without a bound would take into memory as fast as it arrives:
    # each write is acknowledged once appended, long before the disk has it.
    producer = confluent_kafka.Producer(rdkafka(
        broker.bootstrap,
        **{
            "acks": 1,
            "enable.idempotence": False,
            "linger.ms": 5,
            "batch.size": 512 * 1024,
            "queue.buffering.max.kbytes": 16 * 1024,
            "message.timeout.ms": 300_000,
            "request.timeout.ms": 120_000,
        },
    ))
    count = PRODUCE_BYTES // RECORD_BYTES
    for i in range(count):
        p = i % PARTITIONS
        head = f"{p}:{i}:".encode()
        value = head + b"x" * (RECORD_BYTES - len(head))
        while True:
            try:
                producer.produce(topic, value, partition=p, on_delivery=report)
                break
            except BufferError:
                held_back += 1
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(300) == 0, "producer did not drain"
    sampling.set()
    sampler.join()
    hwm_rss = rss_bytes(broker.pid, "VmHWM")

    assert not errors, f"producers must be slowed down, not refused: {errors[:5]} ({len(errors)} errors)"
    assert held_back > 0, "the producer was never held back: the disk did not bind, the test shows nothing"
    dirty_peak = metric_samples(broker, "shardlog_shard_budget_used_bytes_peak")
    waits = metric_samples(broker, "shardlog_shard_budget_waits_total")
    dirty_waits = sum(v for k, v in waits.items() if 'budget="dirty"' in k)
    assert dirty_waits > 0, f"produces never waited for the dirty budget: {waits}"
    for labels, peak in dirty_peak.items():
        limit = DIRTY_SHARD_BYTES if 'budget="dirty"' in labels else QUEUED_MAX_REQUEST_BYTES // shard_count()
        # One request larger than the whole budget is let in when nothing else holds any; the
        # producer's requests here are smaller than every budget, so the limit holds exactly.
        assert peak <= limit, f"budget {labels} peaked at {peak} bytes, over its limit of {limit}"
    evicted = metric_samples(broker, "shardlog_shard_cache_evicted_batches_total")
    assert sum(evicted.values()) > 0, f"the shards' batch caches never passed their limit, the test shows nothing: {evicted}"
    cache_limits = metric_samples(broker, "shardlog_shard_cache_limit_bytes")
    assert set(cache_limits.values()) == {CACHE_SHARD_BYTES}, f"shardlog.cache.shard.bytes not applied: {cache_limits}"
    memory = metric_samples(broker, "shardlog_shard_memory_bytes")
    for labels, held in memory.items():
        # Past its limit, a shard's cache holds only what is not yet durable, which the dirty
        # budget bounds.
        limit = CACHE_SHARD_BYTES + DIRTY_SHARD_BYTES
        assert 'kind="pending_writes"' in labels or held <= limit, f"{labels}: the batch cache holds {held} bytes, over {limit}"
    bound = baseline_rss + memory_bound_bytes()
    peak = max(peak_rss[0], hwm_rss)
    print(f"resident memory: {baseline_rss / MIB:.1f} MiB at start, peak {peak / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB; "
          f"dirty peaks {dirty_peak}; producer held back {held_back} times")
    assert peak <= bound, (
        f"broker resident memory peaked at {peak / MIB:.0f} MiB, over its budgets plus overhead "
        f"({bound / MIB:.0f} MiB: {baseline_rss / MIB:.0f} MiB at start + {memory_bound_bytes() / MIB:.0f} MiB); "
        f"the producers offered {PRODUCE_BYTES / MIB:.0f} MiB"
    )

    # Every acknowledged record is in the log at its offset, exactly once, in send order.
    ends = {p: e for p, (_, e) in confluent_watermarks(broker.bootstrap, topic, PARTITIONS).items()}
    assert sum(ends.values()) == count, f"log end offsets {ends} for {count} records sent and acknowledged"
    records = confluent_consume(broker.bootstrap, topic, ends, **{"check.crcs": True})
    by_partition: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for r in records:
        by_partition[r.partition].append((r.offset, r.value))
    for p in range(PARTITIONS):
        got = sorted(by_partition[p])
        assert got == sorted(acked[p]), f"partition {p}: the log differs from what was acknowledged"
        sent_order = [int(v.split(b":")[1]) for _, v in got]
        assert sent_order == sorted(sent_order), f"partition {p}: records out of send order"


# --- connection limits --------------------------------------------------------------------------


def served(conn: kw.Connection) -> bool:
    try:
        conn.api_versions(0)
        return True
    except (kw.Closed, ConnectionError, OSError):
        return False


def no_connections_open(broker) -> None:
    """Waits until the broker counts no client connection: the readiness check's counts until
    the broker has seen it close, as Kafka counts a connection until it processes the close."""
    wait_until(lambda: sum(metric_samples(broker, "shardlog_connections").values()) == 0, "the readiness check's connection to be closed")


def test_max_connections_per_ip_closes_the_connection_over_the_limit(broker_factory):
    broker = broker_factory(config={"max.connections.per.ip": 3})
    no_connections_open(broker)
    conns = [kw.Connection(broker.port) for _ in range(3)]
    try:
        assert all(served(c) for c in conns), "three connections are within max.connections.per.ip=3"
        extra = kw.Connection(broker.port)
        assert not served(extra), "the fourth connection from one address must be closed"
        extra.close()
        conns.pop().close()
        # The broker counts the close when it notices it; a new connection gets in then.
        wait_until(lambda: served(kw.Connection(broker.port)), "a new connection after one closed")
    finally:
        for c in conns:
            c.close()
    assert "over max.connections.per.ip" in broker.run_log()


def test_max_connections_leaves_a_connection_waiting_until_one_closes(broker_factory):
    broker = broker_factory(config={"max.connections": 2})
    no_connections_open(broker)
    first, second = kw.Connection(broker.port), kw.Connection(broker.port)
    try:
        assert served(first) and served(second)
        waiting = kw.Connection(broker.port)  # the kernel completes the handshake; the broker does not accept it yet
        cid = waiting.correlation_id()
        waiting.send(kw.api_versions_request(0, cid))
        # The broker cannot serve it while two connections are open: whenever this looks,
        # nothing has come back (this checks an order of events, not a speed).
        assert not waiting.readable_within(1.0), "a connection past max.connections was served"
        first.close()
        got, _ = waiting.recv_frame(timeout_s=60)
        assert got == cid, "the waiting connection is served once another closed"
    finally:
        first.close()
        second.close()
    assert "max.connections reached" in broker.run_log()
