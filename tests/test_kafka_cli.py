"""Apache Kafka 4's own command-line tools (`kafka-topics.sh`, `kafka-configs.sh`,
`kafka-get-offsets.sh`, `kafka-dump-log.sh`, ...) against real shardlog brokers: one node, and a
three-node cluster. The tools come from a Kafka 4.x binary distribution named by `KAFKA_HOME`;
without one (or without `java`) every test here is skipped, with the reason.

These cover what the tools do right today; what they still find answered differently from Kafka
(ListOffsets v8+ for `--time -4/-5`, ...) is not asserted here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import clients
from cluster import CLUSTER_ID, leader_of, start_cluster, wait_brokers

KAFKA_HOME = os.environ.get("KAFKA_HOME", "")


def _missing_tools() -> str | None:
    if not KAFKA_HOME:
        return "KAFKA_HOME is not set: point it at a Kafka 4.x binary distribution to run Kafka's own tools"
    if not (Path(KAFKA_HOME) / "bin" / "kafka-topics.sh").is_file():
        return f"no Kafka tools in KAFKA_HOME={KAFKA_HOME} (bin/kafka-topics.sh is missing)"
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        return "Kafka's tools need java, and neither java on PATH nor JAVA_HOME is set"
    return None


_reason = _missing_tools()
if _reason:
    pytest.skip(_reason, allow_module_level=True)

# Bounds that only turn a hang into a failure; no test asserts on how long a tool took.
TOOL_TIMEOUT_S = 180
CONSUMER_TIMEOUT_MS = 60_000


def kafka_tool(tool: str, *args: str, stdin: str | None = None, tmp_path: Path | None = None) -> subprocess.CompletedProcess:
    """Runs `$KAFKA_HOME/bin/<tool>.sh args...` and returns it finished, stdout and stderr
    together (the tools print errors on either). A small heap and the client compiler only:
    the tools are short-lived, and the machine runs the brokers too."""
    env = dict(os.environ)
    env["KAFKA_HEAP_OPTS"] = "-Xmx256m"
    env["KAFKA_OPTS"] = "-XX:TieredStopAtLevel=1"
    if tmp_path is not None:
        # kafka-run-class.sh makes $LOG_DIR (default: $KAFKA_HOME/logs); keep it out of KAFKA_HOME.
        env["LOG_DIR"] = str(tmp_path / "kafka-tool-logs")
    return subprocess.run(
        [str(Path(KAFKA_HOME) / "bin" / f"{tool}.sh"), *args],
        input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TOOL_TIMEOUT_S, env=env,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    """The output of a tool that must have succeeded, with no Java exception in it."""
    assert r.returncode == 0, f"{r.args} exited {r.returncode}:\n{r.stdout}"
    assert "Exception" not in r.stdout, f"{r.args}:\n{r.stdout}"
    return r.stdout


def fields(line: str) -> dict[str, str]:
    """`Key: value<TAB>Key: value...` (kafka-topics.sh --describe, kafka-features.sh) as a dict."""
    return dict(f.split(": ", 1) for f in line.strip().split("\t") if ": " in f)


def describe_topic(bootstrap: str, topic: str, tmp_path: Path) -> tuple[dict[str, str], list[dict[str, str]]]:
    lines = ok(kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic, tmp_path=tmp_path)).splitlines()
    summary = fields(lines[0])
    partitions = [fields(line) for line in lines[1:] if line.strip().startswith("Topic:")]
    return summary, partitions


def get_offsets(bootstrap: str, topic: str, time_spec: str, tmp_path: Path, partitions: str | None = None) -> dict[int, int]:
    """kafka-get-offsets.sh: `topic:partition:offset` lines as {partition: offset}."""
    which = ["--partitions", partitions] if partitions else []
    out = ok(kafka_tool("kafka-get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, *which, "--time", time_spec, tmp_path=tmp_path))
    result = {}
    for line in out.splitlines():
        m = re.fullmatch(rf"{re.escape(topic)}:(\d+):(-?\d+)", line.strip())
        if m:
            result[int(m.group(1))] = int(m.group(2))
    return result


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes, int | None]], **overrides) -> None:
    """(partition, key, value, timestamp or None) in order, each acknowledged."""
    producer = clients.confluent_producer(bootstrap, **overrides)
    errors = []
    for partition, key, value, ts in records:
        kwargs = {"timestamp": ts} if ts is not None else {}
        producer.produce(topic, key=key, value=value, partition=partition, on_delivery=lambda err, _m: errors.append(err) if err else None, **kwargs)
    assert producer.flush(60) == 0 and not errors, errors


def features(bootstrap: str, tmp_path: Path) -> dict[str, dict[str, str]]:
    out = ok(kafka_tool("kafka-features", "--bootstrap-server", bootstrap, "describe", tmp_path=tmp_path))
    table = {}
    for line in out.splitlines():
        if line.startswith("Feature: "):
            f = fields(line)
            table[f["Feature"]] = f
    return table


# Kafka 4.0's features as shardlog claims them (README, "Feature versions").
EXPECTED_FEATURES = {
    "metadata.version": ("4.0-IV0", "4.0-IV0", "4.0-IV0"),
    # Supported up to 1 (KIP-853's dynamic quorum); finalized 0 with a static voter list.
    "kraft.version": ("0", "1", "0"),
    "group.version": ("1", "1", "1"),
    # Transactions v2 (KIP-890 part 2), finalized in a new cluster as in Kafka 4.
    "transaction.version": ("0", "2", "2"),
    "eligible.leader.replicas.version": ("0", "0", "0"),
}


def assert_features(table: dict[str, dict[str, str]]) -> None:
    got = {name: (f["SupportedMinVersion"], f["SupportedMaxVersion"], f["FinalizedVersionLevel"]) for name, f in table.items()}
    assert got == EXPECTED_FEATURES
    # Every feature carries the same epoch: the metadata log index that finalized them.
    assert len({f["Epoch"] for f in table.values()}) == 1 and int(next(iter(table.values()))["Epoch"]) >= 0, table


# --- one node -------------------------------------------------------------------------------

def test_kafka_topics_create_describe_alter_delete(broker, tmp_path):
    b = broker.bootstrap
    r = ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "cli-t", "--partitions", "3", "--config", "retention.ms=3600000", tmp_path=tmp_path))
    assert r.strip() == "Created topic cli-t."
    clients.wait_for_partitions(b, "cli-t", 3)

    summary, partitions = describe_topic(b, "cli-t", tmp_path)
    assert summary["Topic"] == "cli-t"
    assert summary["PartitionCount"] == "3"
    assert summary["ReplicationFactor"] == "1"
    assert summary["Configs"] == "retention.ms=3600000"
    assert len(summary["TopicId"]) == 22
    assert [p["Partition"] for p in partitions] == ["0", "1", "2"]
    assert all(p["Leader"] == "1" and p["Replicas"] == "1" and p["Isr"] == "1" for p in partitions), partitions

    # A healthy node has no under-replicated and no unavailable partition.
    for flag in ("--under-replicated-partitions", "--unavailable-partitions"):
        out = ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--describe", flag, tmp_path=tmp_path))
        assert "Partition:" not in out, (flag, out)

    ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--alter", "--topic", "cli-t", "--partitions", "5", tmp_path=tmp_path))
    clients.wait_for_partitions(b, "cli-t", 5)
    summary, partitions = describe_topic(b, "cli-t", tmp_path)
    assert summary["PartitionCount"] == "5"
    assert [p["Partition"] for p in partitions] == ["0", "1", "2", "3", "4"]

    r = kafka_tool("kafka-topics", "--bootstrap-server", b, "--create", "--topic", "cli-t", "--partitions", "1", tmp_path=tmp_path)
    assert r.returncode != 0 and "TopicExistsException" in r.stdout, r.stdout

    assert "cli-t" in ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--list", tmp_path=tmp_path)).split()
    ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--delete", "--topic", "cli-t", tmp_path=tmp_path))
    admin = AdminClient(clients.rdkafka(b))
    clients.wait_until(lambda: "cli-t" not in admin.list_topics(timeout=10).topics, "cli-t to be deleted", timeout_s=30)
    assert "cli-t" not in ok(kafka_tool("kafka-topics", "--bootstrap-server", b, "--list", tmp_path=tmp_path)).split()


def test_kafka_get_offsets_latest_earliest_max_timestamp_and_delete_records(broker, tmp_path):
    b = broker.bootstrap
    clients.create_topic(b, "offs", 2)
    base = 1_700_000_000_000
    # Partition 0: the largest timestamp is the fifth record's, and a later record repeats it:
    # -3 (max timestamp) names the first record that has it, as Kafka does.
    deltas = [10, 20, 30, 40, 90, 50, 60, 90, 70, 80]
    produce(b, "offs", [(0, None, b"p0-%d" % i, base + d) for i, d in enumerate(deltas)], **{"max.in.flight.requests.per.connection": 1, "linger.ms": 0})
    produce(b, "offs", [(1, None, b"p1-%d" % i, base + i) for i in range(3)])

    assert get_offsets(b, "offs", "-1", tmp_path) == {0: 10, 1: 3}
    assert get_offsets(b, "offs", "-2", tmp_path) == {0: 0, 1: 0}
    assert get_offsets(b, "offs", "-3", tmp_path) == {0: 4, 1: 2}
    # By timestamp: the first record at or after it.
    assert get_offsets(b, "offs", str(base + 55), tmp_path, partitions="0") == {0: 4}
    assert get_offsets(b, "offs", str(base + 1), tmp_path, partitions="1") == {1: 1}

    spec = tmp_path / "delete-records.json"
    spec.write_text('{"version":1,"partitions":[{"topic":"offs","partition":0,"offset":6}]}')
    out = ok(kafka_tool("kafka-delete-records", "--bootstrap-server", b, "--offset-json-file", str(spec), tmp_path=tmp_path))
    assert re.search(r"partition: offs-0\s+low_watermark: 6", out), out
    assert get_offsets(b, "offs", "-2", tmp_path) == {0: 6, 1: 0}
    assert get_offsets(b, "offs", "-1", tmp_path) == {0: 10, 1: 3}


BATCH_LINE = re.compile(r"baseOffset: (\d+) lastOffset: (\d+) count: (\d+) .* position: (\d+) CreateTime: (\d+) size: \d+ magic: 2 compresscodec: (\w+) crc: \d+ isvalid: (\w+)")


def test_kafka_dump_log_reads_segments_offset_and_time_indexes(broker_factory, tmp_path):
    """kafka-dump-log.sh reads what shardlog wrote: every batch valid and in order across the
    segments, the records' payloads, the commit marker of a transaction, and index entries that
    point at batches of their segment (after a clean shutdown, which seals the active segment)."""
    broker = broker_factory()
    b = broker.bootstrap
    admin = AdminClient(clients.rdkafka(b))
    # Small segments and a small index interval: several segments, each with index entries.
    admin.create_topics([NewTopic("dump", 1, 1, config={"segment.bytes": "16384", "index.interval.bytes": "1024"})])["dump"].result(60)
    clients.wait_for_partitions(b, "dump", 1)
    base = 1_700_000_000_000
    records = 400
    # Twenty records a flush, so batches stay small, with timestamps that grow.
    for start in range(0, records, 20):
        produce(b, "dump", [(0, b"k%04d" % i, b"value-%04d-" % i + b"x" * 60, base + i) for i in range(start, start + 20)],
                **{"compression.type": "none"})
    # A transaction of three records, then its commit marker.
    txn = Producer(clients.rdkafka(b, **{"transactional.id": "dump-txn"}))
    txn.init_transactions(60)
    txn.begin_transaction()
    for i in range(3):
        txn.produce("dump", key=b"t%d" % i, value=b"txn-%d" % i, partition=0)
    txn.commit_transaction(60)
    total = records + 3 + 1
    broker.stop()

    part = broker.data_dir / "dump-0"
    logs = sorted(part.glob("*.log"))
    indexes = sorted(part.glob("*.index"))
    timeindexes = sorted(part.glob("*.timeindex"))
    assert len(logs) >= 3, logs
    assert [p.stem for p in indexes] == [p.stem for p in logs] == [p.stem for p in timeindexes]

    out = ok(kafka_tool("kafka-dump-log", "--files", ",".join(str(p) for p in logs + indexes + timeindexes), tmp_path=tmp_path))
    assert "not found" not in out and "Mismatches" not in out, out

    # Split the output per file: "Dumping <path>" starts each.
    sections: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("Dumping "):
            current = Path(line[len("Dumping "):].strip()).name
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    assert set(sections) == {p.name for p in logs + indexes + timeindexes}, sections.keys()

    batches: dict[str, list[tuple[int, int, int, int]]] = {}  # segment stem -> (base, last, position, max timestamp)
    next_offset = 0
    for log in logs:
        lines = sections[log.name]
        assert lines[0] == f"Log starting offset: {int(log.stem)}", lines[:2]
        segment = []
        for line in lines[1:]:
            m = BATCH_LINE.search(line)
            assert m, f"{log.name}: unexpected line {line!r}"
            first, last, count, position, ts, codec, valid = m.groups()
            assert valid == "true", line
            assert int(first) == next_offset, f"{log.name}: batch at {first}, expected {next_offset}"
            assert int(last) - int(first) + 1 == int(count)
            next_offset = int(last) + 1
            segment.append((int(first), int(last), int(position), int(ts)))
        assert segment and segment[0][0] == int(log.stem), log.name
        batches[log.stem] = segment
    assert next_offset == total

    def batch_holding(stem: str, offset: int):
        return next((bt for bt in batches[stem] if bt[0] <= offset <= bt[1]), None)

    for index in indexes:
        entries = [re.fullmatch(r"offset: (\d+) position: (\d+)", line) for line in sections[index.name] if line.startswith("offset:")]
        assert all(entries), (index.name, sections[index.name])
        # Every full segment has entries; the last one (the transaction, under
        # index.interval.bytes) may have none, as with Kafka.
        assert entries or (index == indexes[-1] and sections[index.name] == [f"{index} is empty."]), (index.name, sections[index.name])
        positions = {bt[2]: bt for bt in batches[index.stem]}
        for e in entries:
            offset, position = int(e.group(1)), int(e.group(2))
            # The entry points at the start of a batch of its segment and names that batch's
            # last offset, as Kafka writes them (kafka-dump-log reports any other as a mismatch).
            assert position in positions, (index.name, offset, position)
            assert positions[position][1] == offset, (index.name, offset, positions[position])
    for timeindex in timeindexes:
        entries = [re.fullmatch(r"timestamp: (\d+) offset: (\d+)", line) for line in sections[timeindex.name] if line.startswith("timestamp:")]
        assert entries and all(entries), (timeindex.name, sections[timeindex.name])
        previous = -1
        for e in entries:
            ts, offset = int(e.group(1)), int(e.group(2))
            batch = batch_holding(timeindex.stem, offset)
            assert batch is not None, (timeindex.name, offset)
            assert ts == batch[3], (timeindex.name, ts, batch)
            assert ts > previous
            previous = ts
        assert not any("timestamp mismatch" in line or "out of order" in line for line in sections[timeindex.name])

    # The records themselves, and the transaction's marker, in the last segment.
    deep = ok(kafka_tool("kafka-dump-log", "--files", str(logs[0]), "--deep-iteration", "--print-data-log", tmp_path=tmp_path))
    assert "| offset: 0 CreateTime: %d keySize: 5 valueSize: 71" % base in deep, deep[:2000]
    assert "key: k0000 payload: value-0000-" in deep
    last = ok(kafka_tool("kafka-dump-log", "--files", str(logs[-1]), "--print-data-log", tmp_path=tmp_path))
    assert "payload: txn-2" in last
    assert re.search(rf"\| offset: {total - 1} .* endTxnMarker: COMMIT", last), last[-2000:]
    assert "isTransactional: true isControl: true" in last


def test_kafka_features_and_metadata_quorum_on_one_node(broker, tmp_path):
    b = broker.bootstrap
    assert_features(features(b, tmp_path))
    # kafka-features.sh downgrade / upgrade move transaction.version (UpdateFeatures); an
    # upgrade past what the broker supports is refused with Kafka's reason.
    ok(kafka_tool("kafka-features", "--bootstrap-server", b, "downgrade", "--feature", "transaction.version=1", tmp_path=tmp_path))
    assert features(b, tmp_path)["transaction.version"]["FinalizedVersionLevel"] == "1"
    refused = kafka_tool("kafka-features", "--bootstrap-server", b, "upgrade", "--feature", "transaction.version=3", tmp_path=tmp_path)
    assert refused.returncode != 0 and "only supports versions 0-2" in refused.stdout, refused.stdout
    ok(kafka_tool("kafka-features", "--bootstrap-server", b, "upgrade", "--feature", "transaction.version=2", tmp_path=tmp_path))
    assert_features(features(b, tmp_path))

    status = ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", b, "describe", "--status", tmp_path=tmp_path))
    st = dict(re.split(r":\s+", line.strip(), maxsplit=1) for line in status.splitlines() if re.match(r"^\w+:\s", line))
    assert st["LeaderId"] == "1"
    assert int(st["HighWatermark"]) >= 1
    assert '"id": 1' in st["CurrentVoters"] and st["CurrentObservers"] == "[]"

    cluster_id = ok(kafka_tool("kafka-cluster", "cluster-id", "--bootstrap-server", b, tmp_path=tmp_path)).strip()
    assert cluster_id == f"Cluster ID: {st['ClusterId']}"
    assert len(st["ClusterId"]) == 22
    # kafka-leader-election.sh: every partition already led by its preferred replica, so
    # nothing is elected (and, for every partition, nothing is listed, as with Kafka).
    clients.create_topic(b, "elect", 2)
    elected = ok(kafka_tool("kafka-leader-election", "--bootstrap-server", b, "--election-type", "unclean", "--topic", "elect", "--partition", "1", tmp_path=tmp_path))
    assert elected.strip() == "Valid replica already elected for partitions elect-1", elected
    assert ok(kafka_tool("kafka-leader-election", "--bootstrap-server", b, "--election-type", "preferred", "--all-topic-partitions", tmp_path=tmp_path)).strip() == ""

    # kafka-cluster.sh unregister: an unknown id is refused with Kafka's error; the broker
    # itself, unregistered while it runs, registers again at its next heartbeat.
    refused = kafka_tool("kafka-cluster", "unregister", "--bootstrap-server", b, "--id", "7", tmp_path=tmp_path)
    assert refused.returncode != 0 and "BrokerIdNotRegisteredException" in refused.stdout, refused.stdout
    assert ok(kafka_tool("kafka-cluster", "unregister", "--bootstrap-server", b, "--id", "1", tmp_path=tmp_path)).strip() == "Broker 1 is no longer registered."
    clients.wait_until(lambda: "registering with the controller again" in broker.log_text(), "the broker to register again")

    replication = ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", b, "describe", "--replication", tmp_path=tmp_path)).splitlines()
    assert replication[0].split() == ["NodeId", "DirectoryId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"]
    rows = [line.split() for line in replication[1:] if line.strip()]
    assert len(rows) == 1 and rows[0][0] == "1" and rows[0][3] == "0" and rows[0][-1] == "Leader", rows
    assert int(rows[0][2]) >= 1


def test_kafka_console_round_trip_transactions_and_perf_tools(broker, tmp_path):
    b = broker.bootstrap
    clients.create_topic(b, "console", 2)
    lines = [f"key-{i}:value-{i}" for i in range(20)]
    ok(kafka_tool("kafka-console-producer", "--bootstrap-server", b, "--topic", "console", "--compression-codec", "zstd",
                  "--property", "parse.key=true", "--property", "key.separator=:", stdin="\n".join(lines) + "\n", tmp_path=tmp_path))
    out = ok(kafka_tool("kafka-console-consumer", "--bootstrap-server", b, "--topic", "console", "--from-beginning", "--max-messages", "20",
                        "--timeout-ms", str(CONSUMER_TIMEOUT_MS), "--property", "print.key=true", "--property", "key.separator=:", tmp_path=tmp_path))
    got = [line for line in out.splitlines() if line.startswith("key-")]
    assert sorted(got) == sorted(lines)
    assert "Processed a total of 20 messages" in out
    # Keys keep their order within a partition, and both partitions hold some.
    assert sum(get_offsets(b, "console", "-1", tmp_path).values()) == 20

    out = ok(kafka_tool("kafka-producer-perf-test", "--topic", "console", "--num-records", "500", "--record-size", "100", "--throughput", "-1",
                        "--transactional-id", "perf-txn", "--transaction-duration-ms", "100", "--producer-props", f"bootstrap.servers={b}", tmp_path=tmp_path))
    assert re.search(r"^500 records sent", out, re.M), out
    listing = ok(kafka_tool("kafka-transactions", "--bootstrap-server", b, "list", tmp_path=tmp_path)).splitlines()
    assert listing[0].split() == ["TransactionalId", "Coordinator", "ProducerId", "TransactionState"]
    rows = {line.split()[0]: line.split() for line in listing[1:] if line.strip()}
    assert rows["perf-txn"][1] == "1" and rows["perf-txn"][3] == "CompleteCommit", rows
    described = ok(kafka_tool("kafka-transactions", "--bootstrap-server", b, "describe", "--transactional-id", "perf-txn", tmp_path=tmp_path)).splitlines()
    row = dict(zip(described[0].split(), described[1].split()))
    assert row["TransactionalId"] == "perf-txn" and row["TransactionState"] == "CompleteCommit" and row["ProducerId"] == rows["perf-txn"][2], described

    latest = get_offsets(b, "console", "-1", tmp_path)
    # 20 records, 500 more, and a commit marker per transaction in each partition it wrote to.
    assert sum(latest.values()) > 520
    out = ok(kafka_tool("kafka-consumer-perf-test", "--bootstrap-server", b, "--topic", "console", "--messages", "520", "--timeout", "60000",
                        "--group", "perf-group", tmp_path=tmp_path))
    row = out.strip().splitlines()[-1].split(", ")
    assert int(row[4]) >= 520, out  # data.consumed.in.nMsg


def test_kafka_java_transactional_producers_commit_abort_and_fence_with_transactions_v2_finalized(broker, tmp_path):
    """Kafka's Java producer (through kafka-producer-perf-test) on a cluster that finalized
    transaction.version 2. The client picks the protocol: the KAFKA_HOME build may still speak
    transactions v1 (AddPartitionsToTxn, EndTxn v4), which the finalized level must not break;
    test_transactions_v2.py covers the v2 protocol itself. A second producer with the same
    transactional id fences the first in the middle of its transaction, whose records are
    aborted."""
    import time
    from test_transactions import consume_all

    b = broker.bootstrap
    assert features(b, tmp_path)["transaction.version"]["FinalizedVersionLevel"] == "2"
    clients.create_topic(b, "java-txn", 2)
    env = dict(os.environ, KAFKA_HEAP_OPTS="-Xmx256m", KAFKA_OPTS="-XX:TieredStopAtLevel=1", LOG_DIR=str(tmp_path / "kafka-tool-logs"))
    # The zombie: one transaction of a minute, 200 records a second for 15 s.
    zombie = subprocess.Popen(
        [str(Path(KAFKA_HOME) / "bin" / "kafka-producer-perf-test.sh"), "--topic", "java-txn", "--num-records", "3000", "--record-size", "50",
         "--throughput", "200", "--transactional-id", "java-txn-1", "--transaction-duration-ms", "60000", "--producer-props", f"bootstrap.servers={b}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(get_offsets(b, "java-txn", "-1", tmp_path).values()) == 0:
            assert time.monotonic() < deadline and zombie.poll() is None, "the first producer never wrote"
            time.sleep(1)
        out = ok(kafka_tool("kafka-producer-perf-test", "--topic", "java-txn", "--num-records", "300", "--record-size", "50", "--throughput", "-1",
                            "--transactional-id", "java-txn-1", "--transaction-duration-ms", "100", "--producer-props", f"bootstrap.servers={b}",
                            tmp_path=tmp_path))
        assert re.search(r"^300 records sent", out, re.M), out
        zombie_out, _ = zombie.communicate(timeout=TOOL_TIMEOUT_S)
    finally:
        if zombie.poll() is None:
            zombie.kill()
            zombie.wait()
    assert re.search(r"ProducerFencedException|InvalidProducerEpochException", zombie_out), zombie_out[-3000:]
    # Only the second producer's records are committed; the zombie's were aborted when it was
    # fenced (they are still in the log, hidden from read_committed).
    committed = consume_all(b, "java-txn", 2, "read_committed")
    assert len(committed) == 300
    assert len(consume_all(b, "java-txn", 2, "read_uncommitted")) > 300
    described = ok(kafka_tool("kafka-transactions", "--bootstrap-server", b, "describe", "--transactional-id", "java-txn-1", tmp_path=tmp_path)).splitlines()
    assert dict(zip(described[0].split(), described[1].split()))["TransactionState"] == "CompleteCommit", described


def test_kafka_consumer_groups_list_type_describe_and_reset(broker, tmp_path):
    b = broker.bootstrap
    clients.create_topic(b, "grp", 2)
    produce(b, "grp", [(i % 2, None, b"v%d" % i, None) for i in range(30)])
    consume = ["kafka-console-consumer", "--bootstrap-server", b, "--topic", "grp", "--from-beginning", "--max-messages", "30",
               "--timeout-ms", str(CONSUMER_TIMEOUT_MS)]
    ok(kafka_tool(*consume, "--group", "classic-g", tmp_path=tmp_path))
    ok(kafka_tool(*consume, "--group", "modern-g", "--consumer-property", "group.protocol=consumer", tmp_path=tmp_path))

    def table(*args: str) -> list[list[str]]:
        out = ok(kafka_tool("kafka-consumer-groups", "--bootstrap-server", b, *args, tmp_path=tmp_path))
        return [line.split() for line in out.splitlines() if line.strip()]

    assert sorted(r[0] for r in table("--list")) == ["classic-g", "modern-g"]
    typed = table("--list", "--type")
    assert typed[0] == ["GROUP", "TYPE"]
    assert sorted(typed[1:]) == [["classic-g", "Classic"], ["modern-g", "Consumer"]]
    assert table("--list", "--type", "consumer")[1:] == [["modern-g", "Consumer"]]
    assert table("--list", "--type", "classic")[1:] == [["classic-g", "Classic"]]

    def committed(group: str) -> dict[int, tuple[str, str]]:
        rows = table("--describe", "--group", group)
        header = next(r for r in rows if r[0] == "GROUP")
        assert header[:6] == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"], rows
        return {int(r[2]): (r[3], r[4]) for r in rows if r[0] == group and r[1] == "grp"}

    # Everything read: each partition's committed offset is its log end (15 records each).
    assert committed("classic-g") == {0: ("15", "15"), 1: ("15", "15")}
    assert committed("modern-g") == {0: ("15", "15"), 1: ("15", "15")}

    out = table("--group", "classic-g", "--reset-offsets", "--to-earliest", "--topic", "grp", "--execute")
    assert sorted((r[2], r[3]) for r in out if r[0] == "classic-g") == [("0", "0"), ("1", "0")]
    out = table("--group", "modern-g", "--reset-offsets", "--to-offset", "7", "--topic", "grp:1", "--execute")
    assert [(r[2], r[3]) for r in out if r[0] == "modern-g"] == [("1", "7")]
    assert committed("classic-g") == {0: ("0", "15"), 1: ("0", "15")}
    assert committed("modern-g") == {0: ("15", "15"), 1: ("7", "15")}


def test_kafka_configs_topics_brokers_and_groups(broker, tmp_path):
    b = broker.bootstrap
    clients.create_topic(b, "cfg", 1)

    def configs(*args: str) -> subprocess.CompletedProcess:
        return kafka_tool("kafka-configs", "--bootstrap-server", b, *args, tmp_path=tmp_path)

    def described(*args: str) -> dict[str, str]:
        """`  name=value sensitive=... synonyms={SOURCE:name=value, ...}` lines: {name: that line}."""
        out = ok(configs(*args, "--describe"))
        return {m.group(1): line for line in out.splitlines() if (m := re.match(r"^\s+([\w.]+)=", line))}

    ok(configs("--entity-type", "topics", "--entity-name", "cfg", "--alter", "--add-config", "retention.ms=86400000,cleanup.policy=[compact,delete]"))
    topic = described("--entity-type", "topics", "--entity-name", "cfg")
    assert set(topic) == {"retention.ms", "cleanup.policy"}, topic
    assert "retention.ms=86400000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=86400000" in topic["retention.ms"]
    assert "cleanup.policy=compact,delete sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact,delete" in topic["cleanup.policy"]
    ok(configs("--entity-type", "topics", "--entity-name", "cfg", "--alter", "--delete-config", "cleanup.policy"))
    assert set(described("--entity-type", "topics", "--entity-name", "cfg")) == {"retention.ms"}
    every = described("--entity-type", "topics", "--entity-name", "cfg", "--all")
    assert "cleanup.policy=delete sensitive=false synonyms={DEFAULT_CONFIG:log.cleanup.policy=delete}" in every["cleanup.policy"]
    assert len(every) > 20, every.keys()

    r = configs("--entity-type", "topics", "--entity-name", "cfg", "--alter", "--add-config", "no.such.config=1")
    assert r.returncode != 0 and "InvalidConfigurationException" in r.stdout, r.stdout

    # Brokers: this broker's dynamic config, the cluster-wide default, and one that needs a restart.
    ok(configs("--entity-type", "brokers", "--entity-name", "1", "--alter", "--add-config", "log.cleaner.threads=3"))
    ok(configs("--entity-type", "brokers", "--entity-default", "--alter", "--add-config", "log.cleaner.threads=2"))
    assert "synonyms={DYNAMIC_BROKER_CONFIG:log.cleaner.threads=3, DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.threads=2" in \
        described("--entity-type", "brokers", "--entity-name", "1")["log.cleaner.threads"]
    assert "log.cleaner.threads=2 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.cleaner.threads=2}" in \
        described("--entity-type", "brokers", "--entity-default")["log.cleaner.threads"]
    static = described("--entity-type", "brokers", "--entity-name", "1", "--all")
    assert f"log.dirs={broker.data_dir} sensitive=false synonyms={{STATIC_BROKER_CONFIG:log.dirs={broker.data_dir}}}" in static["log.dirs"]
    r = configs("--entity-type", "brokers", "--entity-name", "1", "--alter", "--add-config", "log.retention.hours=1")
    assert r.returncode != 0 and "Cannot update these configs dynamically: Set(log.retention.hours)" in r.stdout, r.stdout

    # Groups (KIP-848 group configs), before the group exists.
    ok(configs("--entity-type", "groups", "--entity-name", "g-cfg", "--alter", "--add-config", "consumer.session.timeout.ms=50000"))
    group = described("--entity-type", "groups", "--entity-name", "g-cfg")
    assert set(group) == {"consumer.session.timeout.ms"}
    assert "consumer.session.timeout.ms=50000 sensitive=false synonyms={DYNAMIC_GROUP_CONFIG:consumer.session.timeout.ms=50000" in group["consumer.session.timeout.ms"]
    assert "consumer.heartbeat.interval.ms" in described("--entity-type", "groups", "--entity-name", "g-cfg", "--all")


def test_kafka_acls_without_and_with_an_authorizer(broker_factory, tmp_path):
    plain = broker_factory()
    r = kafka_tool("kafka-acls", "--bootstrap-server", plain.bootstrap, "--list", tmp_path=tmp_path)
    assert r.returncode == 1
    assert "SecurityDisabledException: No Authorizer is configured" in r.stdout, r.stdout

    # README: any authorizer.class.name turns ACLs on; the PLAINTEXT principal is ANONYMOUS.
    secured = broker_factory(config={"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"})
    s = secured.bootstrap
    ok(kafka_tool("kafka-acls", "--bootstrap-server", s, "--add", "--allow-principal", "User:alice", "--operation", "Read", "--operation", "Describe",
                  "--topic", "orders-", "--resource-pattern-type", "prefixed", tmp_path=tmp_path))
    ok(kafka_tool("kafka-acls", "--bootstrap-server", s, "--add", "--allow-principal", "User:bob", "--producer", "--topic", "out",
                  "--transactional-id", "tx1", "--idempotent", tmp_path=tmp_path))

    def acls(*args: str) -> set[tuple[str, str]]:
        out = ok(kafka_tool("kafka-acls", "--bootstrap-server", s, "--list", *args, tmp_path=tmp_path))
        found, resource = set(), None
        for line in out.splitlines():
            if m := re.match(r"Current ACLs for resource `ResourcePattern\((.*)\)`:", line):
                resource = m.group(1)
            elif m := re.match(r"\s+\(principal=(User:\w+), host=\*, operation=(\w+), permissionType=ALLOW\)", line):
                found.add((resource, f"{m.group(1)} {m.group(2)}"))
        return found

    alice = "resourceType=TOPIC, name=orders-, patternType=PREFIXED"
    assert acls("--principal", "User:alice") == {(alice, "User:alice READ"), (alice, "User:alice DESCRIBE")}
    bob = acls("--principal", "User:bob")
    assert bob == {
        ("resourceType=TOPIC, name=out, patternType=LITERAL", "User:bob WRITE"),
        ("resourceType=TOPIC, name=out, patternType=LITERAL", "User:bob DESCRIBE"),
        ("resourceType=TOPIC, name=out, patternType=LITERAL", "User:bob CREATE"),
        ("resourceType=TRANSACTIONAL_ID, name=tx1, patternType=LITERAL", "User:bob WRITE"),
        ("resourceType=TRANSACTIONAL_ID, name=tx1, patternType=LITERAL", "User:bob DESCRIBE"),
        ("resourceType=CLUSTER, name=kafka-cluster, patternType=LITERAL", "User:bob IDEMPOTENT_WRITE"),
    }
    # A MATCH filter finds the prefixed ACL for a topic it covers.
    assert acls("--topic", "orders-eu", "--resource-pattern-type", "match") == {(alice, "User:alice READ"), (alice, "User:alice DESCRIBE")}
    ok(kafka_tool("kafka-acls", "--bootstrap-server", s, "--remove", "--allow-principal", "User:bob", "--producer", "--topic", "out",
                  "--transactional-id", "tx1", "--idempotent", "--force", tmp_path=tmp_path))
    assert acls() == {(alice, "User:alice READ"), (alice, "User:alice DESCRIBE")}


# --- three nodes ----------------------------------------------------------------------------

def test_kafka_tools_against_a_three_node_cluster(broker_factory, tmp_path):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    leader = leader_of(nodes)
    first, second, third = (n.bootstrap for n in nodes)

    ok(kafka_tool("kafka-topics", "--bootstrap-server", first, "--create", "--topic", "spread", "--partitions", "6", tmp_path=tmp_path))
    clients.wait_for_partitions(third, "spread", 6)
    summary, partitions = describe_topic(third, "spread", tmp_path)
    assert summary["PartitionCount"] == "6" and summary["ReplicationFactor"] == "1"
    assert all(p["Leader"] == p["Replicas"] == p["Isr"] for p in partitions), partitions
    assert {p["Leader"] for p in partitions} == {"1", "2", "3"}, partitions

    status = ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", second, "describe", "--status", tmp_path=tmp_path))
    st = dict(re.split(r":\s+", line.strip(), maxsplit=1) for line in status.splitlines() if re.match(r"^\w+:\s", line))
    assert st["LeaderId"] == str(leader)
    assert st["ClusterId"] == CLUSTER_ID
    assert sorted(int(v) for v in re.findall(r'"id": (\d+)', st["CurrentVoters"])) == [1, 2, 3]
    replication = ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", third, "describe", "--replication", tmp_path=tmp_path)).splitlines()
    rows = {line.split()[0]: line.split() for line in replication[1:] if line.strip()}
    assert set(rows) == {"1", "2", "3"}, replication
    assert rows[str(leader)][-1] == "Leader"
    assert sorted(r[-1] for node, r in rows.items() if node != str(leader)) == ["Follower", "Follower"]

    assert_features(features(second, tmp_path))

    # Records in through one node, out through another; the tools follow each partition's leader.
    lines = [f"k{i}:v{i}" for i in range(30)]
    ok(kafka_tool("kafka-console-producer", "--bootstrap-server", first, "--topic", "spread", "--property", "parse.key=true",
                  "--property", "key.separator=:", stdin="\n".join(lines) + "\n", tmp_path=tmp_path))
    out = ok(kafka_tool("kafka-console-consumer", "--bootstrap-server", third, "--topic", "spread", "--from-beginning", "--max-messages", "30",
                        "--group", "spread-g", "--timeout-ms", str(CONSUMER_TIMEOUT_MS), "--property", "print.key=true", "--property", "key.separator=:",
                        tmp_path=tmp_path))
    assert sorted(line for line in out.splitlines() if line.startswith("k")) == sorted(lines)
    latest = get_offsets(second, "spread", "-1", tmp_path)
    assert set(latest) == set(range(6)) and sum(latest.values()) == 30
    assert get_offsets(second, "spread", "-2", tmp_path) == {p: 0 for p in range(6)}
    max_ts = get_offsets(first, "spread", "-3", tmp_path)
    assert all(0 <= max_ts[p] < latest[p] for p in latest if latest[p] > 0), (max_ts, latest)

    groups = ok(kafka_tool("kafka-consumer-groups", "--bootstrap-server", second, "--list", "--type", tmp_path=tmp_path)).splitlines()
    assert [line.split() for line in groups[1:] if line.strip()] == [["spread-g", "Classic"]]


def test_kafka_topics_lists_under_replicated_unavailable_and_at_min_isr_partitions(broker_factory, tmp_path):
    # A controller of its own, so that a broker killed leaves the quorum up to fence it.
    nodes = start_cluster(broker_factory, count=4, roles=["controller", "broker", "broker", "broker"])
    wait_brokers(nodes)
    brokers = nodes[1:]
    bootstrap = brokers[0].bootstrap

    def listed(kind: str) -> list[dict[str, str]]:
        """kafka-topics.sh --describe --<kind>-partitions: one dict per partition line."""
        out = ok(kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--describe", f"--{kind}-partitions", tmp_path=tmp_path))
        return sorted((fields(line) for line in out.splitlines() if line.strip().startswith("Topic:")), key=lambda p: (p["Topic"], p["Partition"]))

    ok(kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", "three", "--partitions", "3", "--replication-factor", "3",
                  "--config", "min.insync.replicas=2", tmp_path=tmp_path))
    # One replica each, on brokers 2, 3 and 4: the one on the killed broker has no leader left.
    ok(kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", "single", "--replica-assignment", "2,3,4", tmp_path=tmp_path))
    clients.wait_for_partitions(bootstrap, "three", 3)
    clients.wait_until(lambda: all(sorted(p["Isr"].split(",")) == ["2", "3", "4"] for p in describe_topic(bootstrap, "three", tmp_path)[1]),
                       "every partition of 'three' to have its full ISR")
    assert listed("under-replicated") == [] and listed("unavailable") == []
    # One in-sync replica where min.insync.replicas is 1 is at the minimum too, as Kafka's tool counts.
    assert {(p["Topic"], p["Partition"]) for p in listed("at-min-isr")} == {("single", "0"), ("single", "1"), ("single", "2")}

    nodes[3].kill9()  # broker 4
    clients.wait_until(lambda: len(listed("under-replicated")) == 3, "the three partitions of 'three' to be under-replicated")
    under = listed("under-replicated")
    assert [p["Topic"] for p in under] == ["three"] * 3 and all(sorted(p["Isr"].split(",")) == ["2", "3"] for p in under), under
    # ISR of two with min.insync.replicas=2: at the minimum.
    assert {("three", "0"), ("three", "1"), ("three", "2")} <= {(p["Topic"], p["Partition"]) for p in listed("at-min-isr")}
    [unavailable] = listed("unavailable")
    assert (unavailable["Topic"], unavailable["Partition"], unavailable["Leader"], unavailable["Replicas"]) == ("single", "2", "none", "4"), unavailable

    nodes[3].launch()
    nodes[3].wait_ready()
    clients.wait_until(lambda: listed("under-replicated") == [] and listed("unavailable") == [], "the restarted broker to catch up and lead again")


def test_kafka_reassign_partitions_moves_partitions_with_a_throttle_and_verifies(broker_factory, tmp_path):
    # Three combined nodes and a fourth broker, which takes over replicas.
    nodes = start_cluster(broker_factory, count=4, roles=["broker,controller"] * 3 + ["broker"])
    wait_brokers(nodes)
    bootstrap = nodes[0].bootstrap
    ok(kafka_tool("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", "moved", "--replica-assignment", "1:2,2:3", tmp_path=tmp_path))
    clients.wait_for_partitions(bootstrap, "moved", 2)
    produce(bootstrap, "moved", [(i % 2, None, b"v%d" % i, None) for i in range(100)], acks="all")

    # --generate proposes moves onto the brokers named, from the cluster's own description.
    topics_file = tmp_path / "topics.json"
    topics_file.write_text('{"version": 1, "topics": [{"topic": "moved"}]}')
    out = ok(kafka_tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--generate", "--topics-to-move-json-file", str(topics_file),
                        "--broker-list", "2,3,4", tmp_path=tmp_path))
    assert "Current partition replica assignment" in out and "Proposed partition reassignment configuration" in out, out

    plan = tmp_path / "plan.json"
    plan.write_text('{"version": 1, "partitions": [{"topic": "moved", "partition": 0, "replicas": [4, 2]},'
                    ' {"topic": "moved", "partition": 1, "replicas": [3, 4]}]}')
    out = ok(kafka_tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--execute", "--reassignment-json-file", str(plan),
                        "--throttle", "50000000", tmp_path=tmp_path))
    assert "Successfully started partition reassignments for moved-0,moved-1" in out, out

    def verified() -> bool:
        out = ok(kafka_tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--verify", "--reassignment-json-file", str(plan),
                            tmp_path=tmp_path))
        return "Reassignment of partition moved-0 is completed." in out and "Reassignment of partition moved-1 is completed." in out and out

    out = clients.wait_until(verified, "kafka-reassign-partitions.sh --verify to report both moves completed")
    # --verify clears the throttle it set once everything is done.
    assert "Clearing broker-level throttles on brokers" in out and "Clearing topic-level throttles on topic moved" in out, out
    replicas = {p["Partition"]: p["Replicas"] for p in describe_topic(bootstrap, "moved", tmp_path)[1]}
    assert replicas == {"0": "4,2", "1": "3,4"}, replicas
    assert "No partition reassignments found." in ok(kafka_tool("kafka-reassign-partitions", "--bootstrap-server", bootstrap, "--list", tmp_path=tmp_path))
    configs = ok(kafka_tool("kafka-configs", "--bootstrap-server", bootstrap, "--describe", "--entity-type", "topics", "--entity-name", "moved",
                            tmp_path=tmp_path))
    assert "throttled" not in configs, configs


def test_kafka_metadata_quorum_adds_describes_and_removes_a_controller_by_its_directory_id(broker_factory, tmp_path):
    """KIP-853 with Kafka's own tool: add-controller reads the new controller's directory id
    from the meta.properties in its first log directory (as it does for a Kafka controller),
    describe --replication lists each replica's directory id, and remove-controller needs the
    right one."""
    from test_cluster_dynamic_quorum import format_ok, dynamic_cluster, meta_properties
    first, second = dynamic_cluster(broker_factory, 2, bootstrap=[1])
    format_ok(first, "--standalone")
    format_ok(second, "--no-initial-controllers")
    for n in (first, second):
        n.launch()
    for n in (first, second):
        n.wait_ready()
    # The new controller's properties as add-controller reads them (listeners and log.dirs are
    # on shardlog's command line in these tests; a Kafka config names them in the file).
    controller_props = tmp_path / "controller-2.properties"
    controller_props.write_text(
        second.config_path.read_text()
        + f"log.dirs={second.data_dir}\nlisteners=PLAINTEXT://{second.bootstrap},CONTROLLER://{second.host}:{second.extra_ports['CONTROLLER']}\n"
    )
    directory_id = meta_properties(second)["directory.id"]

    def added():
        r = kafka_tool("kafka-metadata-quorum", "--bootstrap-server", first.bootstrap, "--command-config", str(controller_props),
                       "add-controller", tmp_path=tmp_path)
        return r.stdout if r.returncode == 0 else None
    out = clients.wait_until(added, "add-controller to succeed (the new controller catches up first)", timeout_s=60)
    assert f"Added controller 2 with directory id {directory_id}" in out, out

    replication = ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", first.bootstrap, "describe", "--replication", tmp_path=tmp_path))
    rows = {line.split()[0]: line.split() for line in replication.splitlines()[1:] if line.strip()}
    assert rows["2"][1] == directory_id and rows["1"][1] == meta_properties(first)["directory.id"], replication
    assert {rows["1"][-1], rows["2"][-1]} == {"Leader", "Follower"}, replication

    wrong = kafka_tool("kafka-metadata-quorum", "--bootstrap-server", first.bootstrap, "remove-controller",
                       "--controller-id", "2", "--controller-directory-id", "AAAAAAAAAAAAAAAAAAAAAQ", tmp_path=tmp_path)
    assert wrong.returncode != 0 and "VoterNotFoundException" in wrong.stdout, wrong.stdout
    ok(kafka_tool("kafka-metadata-quorum", "--bootstrap-server", first.bootstrap, "remove-controller",
                  "--controller-id", "2", "--controller-directory-id", directory_id, tmp_path=tmp_path))
    # A removed controller follows the log as an observer from its next start (it does not turn
    # into one while it runs: see the README's known gaps).
    second.restart()

    def described():
        r = kafka_tool("kafka-metadata-quorum", "--bootstrap-server", first.bootstrap, "describe", "--status", tmp_path=tmp_path)
        return r.stdout if r.returncode == 0 and '"id": 2' in r.stdout.split("CurrentObservers:")[-1] else None
    status = clients.wait_until(described, "the removed controller to be listed as an observer", timeout_s=60)
    assert re.search(r'CurrentVoters:\s+\[\{"id": 1, "directoryId": "' + re.escape(meta_properties(first)["directory.id"]), status), status
