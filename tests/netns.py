"""Network namespaces for the cluster fault tests: each node in a namespace of its own, joined to
a hub namespace's bridge by a veth pair, so that a test can cut one node off (its link down)
and heal it again, with the kernel dropping what crosses the cut as a real network would.

Addresses live only inside these namespaces (10.201.0.0/24; every run's namespaces are its
own, so runs side by side do not meet). This process stays outside them and cannot reach
them: it talks to a node through an `Agent`, a small Python process started with
`ip netns exec` in that node's namespace that runs client calls for it (this file, run as a
script, is that agent). Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
import uuid

SUBNET = "10.201.0"
HUB_ADDRESS = f"{SUBNET}.254"

# Bound on one agent call beyond its own timeout (Python start, client set-up); it only turns
# a hung agent into a failure.
AGENT_SLACK_S = 30.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Network:
    """A hub namespace with a bridge, and `count` node namespaces each joined to it by a veth
    pair (`v<i>` in the node, `h<i>` on the bridge). Node i (1-based) has address
    10.201.0.<i>; the hub has .254."""

    def __init__(self, count: int):
        run = uuid.uuid4().hex[:8]
        self.hub = f"slf-{run}-hub"
        self.nodes = [f"slf-{run}-n{i + 1}" for i in range(count)]
        self.made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.delete()
            raise

    def _build(self) -> None:
        for ns in [self.hub, *self.nodes]:
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "addr", "add", f"{HUB_ADDRESS}/24", "dev", "br0")
        ip("-n", self.hub, "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes, start=1):
            # Made in the hub with its peer put straight into the node's namespace, so no
            # interface ever appears in the namespace this test runs in.
            ip("-n", self.hub, "link", "add", f"h{i}", "type", "veth", "peer", "name", f"v{i}", "netns", ns)
            ip("-n", self.hub, "link", "set", f"h{i}", "master", "br0")
            ip("-n", self.hub, "link", "set", f"h{i}", "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", f"v{i}")
            ip("-n", ns, "link", "set", f"v{i}", "up")

    def address(self, node: int) -> str:
        return f"{SUBNET}.{node}"

    def cut(self, node: int) -> None:
        """Node `node` loses its link: nothing reaches it or leaves it (its own address still
        answers inside its namespace)."""
        ip("-n", self.hub, "link", "set", f"h{node}", "down")

    def heal(self, node: int) -> None:
        ip("-n", self.hub, "link", "set", f"h{node}", "up")

    def delete(self) -> None:
        """Deletes every namespace made (their veth pairs go with them). Processes still in a
        namespace keep it alive until they exit; the broker fixture kills them."""
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made.clear()


def can_make_namespaces() -> str | None:
    """None if this process may make network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"slf-probe-{uuid.uuid4().hex[:8]}"
    try:
        ip("netns", "add", probe)
    except FileNotFoundError:
        return "iproute2 (`ip`) is not installed; scripts/install-deps installs it"
    except subprocess.CalledProcessError as e:
        return f"`ip netns add` failed: {e.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


class AgentError(Exception):
    pass


class Agent:
    """A Python process in namespace `ns` that runs client calls (see `serve`) for the test,
    one at a time, over its stdin and stdout (JSON lines)."""

    def __init__(self, ns: str, log_path):
        self.ns = ns
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        self.buffer = b""

    def call(self, op: str, timeout_s: float, **args):
        """Runs `op` in the namespace; returns its result, or raises AgentError with the
        error it met (a refused connection, a Kafka error, a timeout)."""
        assert self.proc.poll() is None, f"the agent in {self.ns} exited with status {self.proc.returncode}"
        self.proc.stdin.write((json.dumps({"op": op, "timeout_s": timeout_s, **args}) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout_s + AGENT_SLACK_S
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                assert left > 0, f"the agent in {self.ns} did not answer {op} {args}"
                if sel.select(left):
                    chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                    assert chunk, f"the agent in {self.ns} exited (status {self.proc.wait(5)})"
                    self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer = json.loads(line)
        if "error" in answer:
            raise AgentError(answer["error"])
        return answer["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log.close()


# --- the agent, inside a namespace ----------------------------------------------------------

def _status(admin_url: str, timeout_s: float) -> dict:
    import urllib.request
    with urllib.request.urlopen(admin_url + "/v1/status", timeout=timeout_s) as r:
        return json.load(r)


def _admin(bootstrap: str, timeout_s: float):
    from confluent_kafka.admin import AdminClient
    import logging
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout_s * 1000), "logger": logging.getLogger("librdkafka")})


def _create_topic(bootstrap: str, name: str, partitions: int, timeout_s: float, replication_factor: int = 1, configs: dict | None = None) -> str:
    from confluent_kafka.admin import NewTopic
    admin = _admin(bootstrap, timeout_s)
    topic = NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=configs or {})
    futures = admin.create_topics([topic], request_timeout=timeout_s, operation_timeout=timeout_s)
    futures[name].result(timeout=timeout_s)
    return "created"


def _metadata(bootstrap: str, timeout_s: float) -> dict:
    md = _admin(bootstrap, timeout_s).list_topics(timeout=timeout_s)
    return {"brokers": {str(b.id): f"{b.host}:{b.port}" for b in md.brokers.values()}, "topics": {t.topic: len(t.partitions) for t in md.topics.values()}}


def _partition(bootstrap: str, topic: str, partition: int, timeout_s: float) -> dict | None:
    """The partition's leader and ISR as the broker's Metadata answer has them."""
    md = _admin(bootstrap, timeout_s).list_topics(topic, timeout=timeout_s).topics[topic].partitions.get(partition)
    return {"leader": md.leader, "isr": sorted(md.isrs)} if md else None


def _produce(bootstrap: str, topic: str, partition: int, values: list[str], timeout_s: float, idempotent: bool = True) -> dict:
    """acks=all (idempotent by default); what was acknowledged (value -> offset) and what failed."""
    import confluent_kafka
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": idempotent,
                                         "message.timeout.ms": int(timeout_s * 1000), "topic.metadata.refresh.interval.ms": 500})
    acked, failed = {}, {}

    def report(err, msg):
        if err is None:
            acked[msg.value().decode()] = msg.offset()
        else:
            failed[msg.value().decode()] = str(err)

    for v in values:
        producer.produce(topic, v.encode(), partition=partition, on_delivery=report)
    producer.flush(timeout_s + 5)
    return {"acked": acked, "failed": failed}


def _read(bootstrap: str, topic: str, partition: int, count: int, timeout_s: float) -> list:
    """[offset, value] of the first `count` records of the partition."""
    import confluent_kafka
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "netns-reader", "enable.auto.commit": False})
    consumer.assign([confluent_kafka.TopicPartition(topic, partition, 0)])
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                got.append([m.offset(), m.value().decode()])
    consumer.close()
    return got


def serve() -> None:
    ops = {"status": _status, "create_topic": _create_topic, "metadata": _metadata, "partition": _partition, "produce": _produce, "read": _read}
    for line in sys.stdin:
        request = json.loads(line)
        op = ops[request.pop("op")]
        try:
            answer = {"result": op(**request)}
        except Exception as e:  # every failure goes back to the test, which judges it
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
