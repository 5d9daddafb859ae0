"""The load generator (shardlog-bench) against a real three-node cluster: it routes each
partition to its own leader, and it waits out a partition without a leader (retrying with its
backoff) instead of aborting. Real broker processes, one shard each."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from clients import wait_until
from cluster import create_topic, start_cluster, wait_brokers

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "bench" / "workloads" / "small-100b.toml"
RECORDS_PER_S = 2000
DURATION_S = 2


def bench_binary() -> Path:
    """SHARDLOG_BENCH_BIN, else shardlog-bench beside SHARDLOG_BIN, else target/release's."""
    if os.environ.get("SHARDLOG_BENCH_BIN"):
        return Path(os.environ["SHARDLOG_BENCH_BIN"])
    beside = Path(os.environ["SHARDLOG_BIN"]).with_name("shardlog-bench") if os.environ.get("SHARDLOG_BIN") else None
    path = beside if beside and beside.exists() else REPO / "target" / "release" / "shardlog-bench"
    if not path.exists():
        pytest.skip(f"no shardlog-bench at {path}: `cargo build --release -p shardlog-bench`, or point SHARDLOG_BENCH_BIN at one")
    return path


def start_bench(bootstrap: str, out: Path, topic: str | None = None, partitions: int = 6) -> subprocess.Popen:
    """A short constant-rate run (a fixed record count: rate x duration, no warm-up)."""
    command = [
        str(bench_binary()), "run", str(WORKLOAD), "-b", bootstrap, "-q", "-o", str(out),
        "--partitions", str(partitions), "--rate", str(RECORDS_PER_S), "--duration-s", str(DURATION_S), "--warmup-s", "0",
        "--producers", "2", "--consumers", "1", "--drain-timeout-s", "60", "--threads", "2",
    ]
    if topic:
        command += ["--topic", topic]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_everything_read_back(result: dict) -> None:
    counts = result["counts"]
    expected = RECORDS_PER_S * DURATION_S
    assert (counts["sent_records"], counts["acked_records"], counts["failed_records"]) == (expected, expected, 0), counts
    [consumer] = counts["consumers"]
    assert (consumer["valid_records"], consumer["gap_records"], consumer["duplicate_or_reordered"], consumer["corrupt_records"]) == (expected, 0, 0, 0), consumer
    assert consumer["caught_up"], consumer
    assert result["books"]["ok"], result["books"]


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition -> leader's node id, -1 where there is none or it is not a listed broker."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: p.leader if p.leader in metadata.brokers else -1 for p in metadata.topics[topic].partitions.values()}


def test_the_load_generator_produces_to_each_partitions_leader_and_reads_everything_back(broker_factory, tmp_path):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    out = tmp_path / "result.json"
    bench = start_bench(nodes[0].bootstrap, out)
    stdout, stderr = bench.communicate(timeout=120)
    assert bench.returncode == 0, f"{stdout}\n{stderr}"
    result = json.loads(out.read_text())
    assert_everything_read_back(result)
    assert len(result["brokers"]) == 3, result["brokers"]
    # The bench created the topic through node 1, which does not lead all of it: the records of
    # the partitions led elsewhere went to (and came back from) the other brokers.
    led_by = leaders(nodes[0].bootstrap, result["topic"])
    assert len(led_by) == 6 and len(set(led_by.values())) > 1, led_by


def test_the_load_generator_waits_for_a_partition_leader_to_come_back(broker_factory, tmp_path):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    topic = "bench-leaderless"
    create_topic(nodes[0], topic, 6)
    led_by = wait_until(lambda: (lambda l: l if len(l) == 6 and all(v > 0 for v in l.values()) else None)(leaders(nodes[0].bootstrap, topic)),
                        "every partition to have a leader", timeout_s=30)
    away = next(n for n in nodes[1:] if n.node_id in led_by.values())
    away.stop()
    # Once the broker is fenced its partitions (one replica each) have no leader to produce to.
    wait_until(lambda: any(v < 0 for v in leaders(nodes[0].bootstrap, topic).values()) or None,
               f"the partitions of node {away.node_id} to lose their leader", timeout_s=30)

    out = tmp_path / "result.json"
    bench = start_bench(nodes[0].bootstrap, out, topic=topic)
    # The bench says what it waits for, and keeps waiting, until the broker is back.
    notes: list[str] = []
    waiting = threading.Event()

    def read_stderr() -> None:
        for line in bench.stderr:
            notes.append(line)
            if line.startswith("note: ") and "asking again" in line:
                waiting.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert waiting.wait(timeout=60), f"the bench did not say it waits for a leader: {''.join(notes)}"
    assert bench.poll() is None, "the bench gave up instead of retrying"
    away.launch()
    away.wait_ready()
    stdout = bench.stdout.read()
    bench.wait(timeout=120)
    reader.join(timeout=10)
    assert bench.returncode == 0, f"{stdout}\n{''.join(notes)}"
    assert_everything_read_back(json.loads(out.read_text()))
