"""`shardlog group list` and `shardlog group describe` against a live broker and a live group:
two librdkafka members with some offsets committed, and a group with committed offsets but no
members. The rows must say what the clients know: state, protocol type, members, which member
owns each partition, the committed offset, the log end offset and LAG = LOG-END-OFFSET -
CURRENT-OFFSET. An unknown group, or no broker, is an error on stderr with a non-zero exit.
"""

from __future__ import annotations

import subprocess
import time

import confluent_kafka
import pytest

import clients
from conftest import broker_binary

TOPIC = "cli-topic"
PRODUCED = {0: 10, 1: 20, 2: 30}  # records per partition
LIVE_GROUP = "cli-live"
EMPTY_GROUP = "cli-empty"
DEADLINE_S = 60.0  # bounds a hang; never asserted on
NONE = "-"


def shardlog_group(*args: str, bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(broker_binary()), "group", *args, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60)


def table(lines: list[str]) -> list[dict[str, str]]:
    """Rows of a whitespace-aligned table (no cell holds a space) as {column: cell}."""
    header = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == len(header), f"row {line!r} does not match header {header}"
        rows.append(dict(zip(header, cells)))
    return rows


def produce(bootstrap: str, counts: dict[int, int]) -> None:
    producer = clients.confluent_producer(bootstrap)
    for p, n in counts.items():
        for i in range(n):
            producer.produce(TOPIC, value=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(60) == 0


@pytest.fixture
def live_group(broker_factory):
    """A broker with TOPIC, a live two-member group with offsets committed on partitions 0 and 1,
    and a memberless group with offsets committed on partitions 0 and 2."""
    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 1000})
    clients.create_topic(broker.bootstrap, TOPIC, len(PRODUCED))
    produce(broker.bootstrap, PRODUCED)

    members = {}
    for name in ("cli-a", "cli-b"):
        c = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{
            "group.id": LIVE_GROUP,
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
        }))
        c.subscribe([TOPIC])
        members[name] = c
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            for c in members.values():
                c.poll(0.1)
            owned = {name: {tp.partition for tp in c.assignment()} for name, c in members.items()}
            if all(owned.values()) and sorted(p for ps in owned.values() for p in ps) == sorted(PRODUCED):
                break
            assert time.monotonic() < deadline, f"the two members did not split the partitions: {owned}"
        committed = {0: 4, 1: PRODUCED[1]}  # partition 2: nothing committed
        for name, c in members.items():
            mine = [confluent_kafka.TopicPartition(TOPIC, p, o) for p, o in committed.items() if p in owned[name]]
            if mine:
                assert all(tp.error is None for tp in c.commit(offsets=mine, asynchronous=False))

        # A group that only ever committed (no subscription, no members).
        loner = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": EMPTY_GROUP, "enable.auto.commit": False}))
        loner.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, 7), confluent_kafka.TopicPartition(TOPIC, 2, 30)], asynchronous=False)
        loner.close()

        yield broker, members, owned, committed
    finally:
        for c in members.values():
            c.close()


def test_group_list_shows_state_and_protocol_type(live_group):
    broker, _members, _owned, _committed = live_group
    done = shardlog_group("list", bootstrap=broker.bootstrap)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "STATE", "PROTOCOL-TYPE"]
    rows = {r["GROUP"]: (r["STATE"], r["PROTOCOL-TYPE"]) for r in table(lines)}
    assert rows == {LIVE_GROUP: ("Stable", "consumer"), EMPTY_GROUP: ("Empty", NONE)}, done.stdout
    assert [r["GROUP"] for r in table(lines)] == sorted(rows), "rows are not sorted by group id"


def test_group_describe_shows_members_offsets_and_lag(live_group):
    broker, members, owned, committed = live_group

    def check(produced: dict[int, int]) -> None:
        done = shardlog_group("describe", LIVE_GROUP, bootstrap=broker.bootstrap)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == f"Group {LIVE_GROUP}: state Stable, protocol type consumer, protocol range, 2 members", lines[0]
        assert lines[1] == ""
        assert lines[2].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
        rows = table(lines[2:])
        assert [(r["TOPIC"], int(r["PARTITION"])) for r in rows] == [(TOPIC, p) for p in sorted(produced)], done.stdout
        for r in rows:
            p = int(r["PARTITION"])
            owner = next(name for name, ps in owned.items() if p in ps)
            assert r["GROUP"] == LIVE_GROUP
            assert r["LOG-END-OFFSET"] == str(produced[p]), r
            if p in committed:
                assert r["CURRENT-OFFSET"] == str(committed[p]), r
                assert int(r["LAG"]) == int(r["LOG-END-OFFSET"]) - int(r["CURRENT-OFFSET"]), r
                assert r["LAG"] == str(produced[p] - committed[p]), r
            else:
                assert (r["CURRENT-OFFSET"], r["LAG"]) == (NONE, NONE), f"partition {p} has no committed offset: {r}"
            assert r["CONSUMER-ID"] == members[owner].memberid(), r
            assert (r["HOST"], r["CLIENT-ID"]) == ("/127.0.0.1", owner), r

    check(PRODUCED)
    # The lag follows the log end.
    more = {0: 5, 1: 3}
    produce(broker.bootstrap, more)
    check({p: n + more.get(p, 0) for p, n in PRODUCED.items()})


def test_group_describe_of_a_group_without_members(live_group):
    broker, _members, _owned, _committed = live_group
    done = shardlog_group("describe", EMPTY_GROUP, bootstrap=broker.bootstrap)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Group {EMPTY_GROUP}: state Empty, protocol type {NONE}, protocol {NONE}, 0 members", lines[0]
    rows = table(lines[2:])
    got = [(int(r["PARTITION"]), r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"], r["CONSUMER-ID"], r["HOST"], r["CLIENT-ID"]) for r in rows]
    assert got == [(0, "7", "10", "3", NONE, NONE, NONE), (2, "30", "30", "0", NONE, NONE, NONE)], done.stdout


def test_unknown_group_and_no_broker_are_errors(live_group):
    broker, _members, _owned, _committed = live_group
    done = shardlog_group("describe", "cli-no-such-group", bootstrap=broker.bootstrap)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "cli-no-such-group" in done.stderr, done.stderr
    assert done.stdout == "", done.stdout
    broker.assert_alive()

    broker.stop()
    for args in (["list"], ["describe", LIVE_GROUP]):
        done = shardlog_group(*args, bootstrap=broker.bootstrap)
        assert done.returncode != 0, f"`group {' '.join(args)}` with no broker exited 0: {done.stdout}"
        assert broker.bootstrap in done.stderr, done.stderr
