"""A consumer-group member in its own process, and the test-side handle that drives it.

Why a process: a member must be killable with SIGKILL, so that it cannot leave its group and
the coordinator has to notice the missed session timeout; and kafka-python joins a group only
from inside poll(), so several kafka-python members in one thread would wait on each other.

Run as a script (`python group_member.py SPEC_JSON`), a member subscribes to one topic and
loops: poll, write what it read to its events file, then (if asked) commit the offsets it has
processed, synchronously; so what it wrote down as read is a superset of what it committed
(at least once). It writes one JSON object per line, each with one os.write to an O_APPEND
file, so a SIGKILL leaves only whole lines behind. Every event has "e" (its kind) and "t"
(time.time() when written):

    {"e": "started", "pid": 123}
    {"e": "member_id", "id": "..."}                  (once known)
    {"e": "assign", "partitions": [..]}              (what the rebalance callback was given:
    {"e": "revoke", "partitions": [..]}               everything if eager, the change if cooperative)
    {"e": "lost", "partitions": [..]}
    {"e": "assignment", "partitions": [..]}          (the whole assignment, whenever it changes)
    {"e": "records", "records": [[partition, offset, value], ..]}
    {"e": "committed", "offsets": {"partition": offset}}
    {"e": "commit_failed", "error": "..."}
    {"e": "assign_failed" | "revoke_failed" | "consume_error", "error": "..."}
    {"e": "closed"}

SIGTERM makes it close its consumer (leaving the group) and exit 0.

The test side (`MemberProcess`; `member_factory_fixture`, which test modules wrap as their
`member_factory` fixture) starts members, reads their events and kills them. Everything it
waits for is bounded by a deadline that only turns a hang into a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# The member process.

class Events:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def emit(self, event: str, **fields) -> None:
        os.write(self.fd, (json.dumps({"e": event, "t": time.time(), **fields}) + "\n").encode())


def run_confluent(spec: dict, events: Events, stopping) -> None:
    import confluent_kafka

    config = {
        "bootstrap.servers": spec["bootstrap"],
        "group.id": spec["group"],
        "client.id": spec.get("client_id", f"member-{spec['name']}"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        **spec.get("config", {}),
    }
    consumer = confluent_kafka.Consumer(config)

    # With a cooperative protocol the callbacks get only what changes, and the member applies it
    # itself with incremental_assign / incremental_unassign (which fail on a partition already
    # held, or not held). Otherwise confluent-kafka applies the whole new assignment on return.
    incremental = spec.get("incremental", False)

    def on_assign(c, partitions):
        events.emit("assign", partitions=sorted(p.partition for p in partitions))
        if incremental:
            try:
                c.incremental_assign(partitions)
            except confluent_kafka.KafkaException as e:
                events.emit("assign_failed", error=str(e))

    def on_revoke(c, partitions):
        events.emit("revoke", partitions=sorted(p.partition for p in partitions))
        if incremental:
            try:
                c.incremental_unassign(partitions)
            except confluent_kafka.KafkaException as e:
                events.emit("revoke_failed", error=str(e))

    def on_lost(c, partitions):
        events.emit("lost", partitions=sorted(p.partition for p in partitions))

    consumer.subscribe([spec["topic"]], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    assignment: list[int] | None = None
    member_id = None
    try:
        while not stopping():
            messages = consumer.consume(num_messages=500, timeout=0.2)
            records = []
            for m in messages:
                if m.error():
                    events.emit("consume_error", error=str(m.error()))
                    continue
                records.append([m.partition(), m.offset(), m.value().decode()])
            if records:
                events.emit("records", records=records)
            now = sorted(tp.partition for tp in consumer.assignment())
            if now != assignment:
                assignment = now
                events.emit("assignment", partitions=now)
            if member_id is None and consumer.memberid():
                member_id = consumer.memberid()
                events.emit("member_id", id=member_id)
            if records and spec.get("commit", True):
                processed: dict[int, int] = {}
                for p, o, _ in records:
                    processed[p] = max(processed.get(p, -1), o + 1)
                offsets = [confluent_kafka.TopicPartition(spec["topic"], p, o) for p, o in sorted(processed.items())]
                try:
                    result = consumer.commit(offsets=offsets, asynchronous=False)
                    failed = [str(tp.error) for tp in result or [] if tp.error]
                    if failed:
                        events.emit("commit_failed", error="; ".join(failed))
                    else:
                        events.emit("committed", offsets={str(p): o for p, o in processed.items()})
                except confluent_kafka.KafkaException as e:
                    events.emit("commit_failed", error=str(e))
    finally:
        consumer.close()
        events.emit("closed")


def run_kafka_python(spec: dict, events: Events, stopping) -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            events.emit("revoke", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            events.emit("assign", partitions=sorted(tp.partition for tp in assigned))

    config = {
        "bootstrap_servers": spec["bootstrap"],
        "group_id": spec["group"],
        "client_id": spec.get("client_id", f"member-{spec['name']}"),
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **spec.get("config", {}),
    }
    if "assignor" in spec:  # kafka-python takes assignor classes, which JSON cannot carry
        from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

        assignors = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor, "sticky": StickyPartitionAssignor, "cooperative-sticky": CooperativeStickyAssignor}
        config["partition_assignment_strategy"] = [assignors[spec["assignor"]]]
    consumer = KafkaConsumer(**config)
    consumer.subscribe([spec["topic"]], listener=Listener())
    assignment: list[int] | None = None
    member_id = None
    try:
        while not stopping():
            batches = consumer.poll(timeout_ms=200, max_records=500)
            records = [[r.partition, r.offset, r.value.decode()] for rs in batches.values() for r in rs]
            if records:
                events.emit("records", records=records)
            now = sorted(tp.partition for tp in consumer.assignment())
            if now != assignment:
                assignment = now
                events.emit("assignment", partitions=now)
            generation = consumer._coordinator.generation_if_stable()  # no public accessor
            if member_id is None and generation and generation.member_id:
                member_id = generation.member_id
                events.emit("member_id", id=member_id)
            if records and spec.get("commit", True):
                processed: dict[int, int] = {}
                for p, o, _ in records:
                    processed[p] = max(processed.get(p, -1), o + 1)
                try:
                    consumer.commit({TopicPartition(spec["topic"], p): OffsetAndMetadata(o, "", -1) for p, o in processed.items()})
                    events.emit("committed", offsets={str(p): o for p, o in processed.items()})
                except Exception as e:  # kafka-python raises several unrelated types here
                    events.emit("commit_failed", error=repr(e))
    finally:
        consumer.close()
        events.emit("closed")


def main() -> None:
    spec = json.loads(sys.argv[1])
    events = Events(spec["events"])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    events.emit("started", pid=os.getpid())
    run = {"confluent": run_confluent, "kafka-python": run_kafka_python}[spec["client"]]
    run(spec, events, lambda: bool(stop))


# ---------------------------------------------------------------------------------------------
# The test side.

MEMBER_DEADLINE_S = 60.0  # bounds a hang in a member's start or stop; never asserted on


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class MemberProcess:
    def __init__(self, workdir: Path, name: str, spec: dict):
        self.name = name
        self.events_path = workdir / f"member-{name}.events"
        self.log_path = workdir / f"member-{name}.log"
        self.spec = {**spec, "name": name, "events": str(self.events_path)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "group_member.py"), json.dumps(self.spec)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=workdir,
                preexec_fn=_die_with_parent,
            )

    # --- events ---------------------------------------------------------------------------

    def events(self) -> list[dict]:
        try:
            text = self.events_path.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def assignment(self) -> set[int] | None:
        """The member's whole assignment as it last reported it; None before its first report."""
        latest = None
        for ev in self.events():
            if ev["e"] == "assignment":
                latest = set(ev["partitions"])
        return latest

    def records(self, since: float = 0.0) -> list[tuple[int, int, str]]:
        """(partition, offset, value) of every record read, or of those read after time.time()
        was `since`."""
        return [tuple(r) for ev in self.events() if ev["e"] == "records" and ev["t"] > since for r in ev["records"]]

    def committed(self) -> dict[int, int]:
        """The latest acknowledged commit per partition."""
        out: dict[int, int] = {}
        for ev in self.events():
            if ev["e"] == "committed":
                out.update({int(p): o for p, o in ev["offsets"].items()})
        return out

    def member_id(self) -> str | None:
        ids = [ev["id"] for ev in self.events() if ev["e"] == "member_id"]
        return ids[-1] if ids else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            tail = []
        return f"--- member {self.name} (exit {self.proc.poll()}) log tail ---\n" + "\n".join(tail)

    # --- lifecycle ------------------------------------------------------------------------

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: the member cannot leave its group; only its session timeout removes it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=MEMBER_DEADLINE_S)

    def close(self) -> int:
        """SIGTERM: the member closes its consumer, leaving the group. Returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=MEMBER_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"member {self.name} did not close within {MEMBER_DEADLINE_S}s of SIGTERM\n{self.log_tail()}")


def wait_for(condition, what: str, timeout_s: float, members=(), poll_s: float = 0.2):
    """Calls condition() until it returns something truthy, which is returned. On the deadline
    (a bound on a hang, not an expectation of speed), fails with `what` and the members' logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        for m in members:
            assert m.is_alive(), f"member {m.name} exited with status {m.proc.returncode} while waiting for {what}\n{m.log_tail()}"
        if time.monotonic() > deadline:
            detail = "\n".join(f"member {m.name}: assignment {sorted(m.assignment() or [])}" for m in members)
            logs = "\n".join(m.log_tail(10) for m in members)
            raise AssertionError(f"gave up after {timeout_s}s waiting for {what}\n{detail}\n{logs}")
        time.sleep(poll_s)


def settled_assignment(members, partitions: int):
    """{name: set} once every member reports a non-empty assignment, and together they hold
    every partition exactly once (a completed rebalance); otherwise None."""
    current = {m.name: m.assignment() for m in members}
    if any(not a for a in current.values()):
        return None
    held = [p for a in current.values() for p in a]
    if sorted(held) != list(range(partitions)):
        return None
    return current


def produce_numbered(bootstrap: str, topic: str, partitions: int, count: int, first: int = 0) -> dict[tuple[int, int], str]:
    """Produces values v-<n> round-robin over the partitions; returns {(partition, offset): value}."""
    import clients

    producer = clients.confluent_producer(bootstrap)
    where: dict[tuple[int, int], str] = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            where[(msg.partition(), msg.offset())] = msg.value().decode()

    for n in range(first, first + count):
        producer.produce(topic, value=f"v-{n}".encode(), partition=n % partitions, on_delivery=on_delivery)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    return where


class BackgroundProducer:
    """Produces v-<n> round-robin over the partitions from a thread until stopped, so that
    records keep arriving while members die and rebalances run."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, per_round: int = 30, pause_s: float = 0.05):
        import clients

        self.partitions = partitions
        self.producer = clients.confluent_producer(bootstrap, **{"linger.ms": 2})
        self.topic = topic
        self.per_round = per_round
        self.pause_s = pause_s
        self.where: dict[tuple[int, int], str] = {}
        self.errors: list = []
        self.produced = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_delivery(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            self.where[(msg.partition(), msg.offset())] = msg.value().decode()

    def _run(self):
        n = 0
        while not self.stopping.is_set():
            for _ in range(self.per_round):
                self.producer.produce(self.topic, value=f"v-{n}".encode(), partition=n % self.partitions, on_delivery=self._on_delivery)
                n += 1
            self.produced = n
            self.producer.poll(self.pause_s)

    def stop(self) -> dict[tuple[int, int], str]:
        self.stopping.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "producer thread did not stop"
        assert self.producer.flush(60) == 0, "records without a delivery report"
        assert not self.errors, f"deliveries failed although the broker was up: {self.errors[:5]}"
        assert len(self.where) == self.produced
        return dict(self.where)


def assert_everything_read_once_or_more(members, where: dict[tuple[int, int], str], partitions: int, timeout_s: float, alive=()) -> dict[int, int]:
    """Waits until the members (dead ones included: what they wrote down before dying counts)
    have together read every produced record, then checks there is no gap: per partition the
    offsets read cover 0..end, each with the value produced there. Returns {partition: end}."""
    end = {p: 0 for p in range(partitions)}
    for p, o in where:
        end[p] = max(end[p], o + 1)
    assert set(where) == {(p, o) for p in range(partitions) for o in range(end[p])}, "the producer's acknowledged offsets have holes"

    def everything_read():
        read = {(p, o) for m in members for p, o, _ in m.records()}
        return read >= set(where)

    wait_for(everything_read, "the group to read every produced record", timeout_s, alive)
    values: dict[tuple[int, int], set[str]] = {}
    for m in members:
        for p, o, v in m.records():
            values.setdefault((p, o), set()).add(v)
    for p in range(partitions):
        offsets = {o for q, o in values if q == p}
        missing = sorted(set(range(end[p])) - offsets)
        assert not missing, f"partition {p}: offsets never consumed (a gap): {missing[:20]}"
        assert max(offsets) == end[p] - 1, f"partition {p}: read past the end {end[p]}"
    for key, vs in values.items():
        assert vs == {where[key]}, f"{key}: read {vs}, produced {where[key]!r}"
    return end


def member_factory_fixture(tmp_path):
    made: list[MemberProcess] = []

    def make(name: str, **spec) -> MemberProcess:
        m = MemberProcess(tmp_path, name, spec)
        made.append(m)
        return m

    yield make
    for m in made:
        m.kill9()


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
