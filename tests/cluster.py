"""Shared by the cluster tests: start real shardlog nodes (combined broker and controller by
default; broker-only or controller-only with `roles`) that name the controllers as voters,
and wait for what they agree on."""

from __future__ import annotations

import json
import os
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

import kafkawire as kw
from clients import wait_until

NOT_LEADER_OR_FOLLOWER = 6
COORDINATOR_NOT_AVAILABLE = 15
KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION = 0, 1

CLUSTER_ID = "c2hhcmRsb2ctdGVzdC0x"


def status(broker) -> dict:
    with urllib.request.urlopen(broker.admin_url + "/v1/status", timeout=5) as r:
        return json.load(r)


def make_cluster(
    broker_factory,
    count: int = 3,
    cluster_ids: list[str] | None = None,
    hosts: list[str] | None = None,
    netns: list[str] | None = None,
    extra_config: list[dict] | None = None,
    roles: list[str] | None = None,
    listeners: list[str] | None = None,
):
    """Makes (does not launch) `count` nodes (node ids 1..count); those with the controller
    role (all, by default: combined nodes) are the voters. `hosts` and `netns`: per node, the
    address it listens on and the network namespace it runs in (default: loopback, this
    namespace). `extra_config`: per node, properties added to (or replacing) the defaults
    below, e.g. `broker.rack`. `roles`: per node, its `process.roles`. `listeners`: client
    listeners every broker has besides PLAINTEXT (e.g. ["SSL"]). A broker-only node has
    no controller listener, and a controller-only node no Kafka listener, as in Kafka."""
    roles = roles or ["broker,controller"] * count
    nodes = [
        broker_factory(start=False, extra_listeners=(["CONTROLLER"] if "controller" in roles[i] else []) + (listeners or []) * ("broker" in roles[i]))
        for i in range(count)
    ]
    for i, n in enumerate(nodes):
        n.host = (hosts or [n.host] * count)[i]
        n.netns = (netns or [None] * count)[i]
        n.node_id = i + 1
        n.roles = roles[i]
        n.kafka_listener = "broker" in roles[i]
    voters = ",".join(f"{i + 1}@{n.host}:{n.extra_ports['CONTROLLER']}" for i, n in enumerate(nodes) if "controller" in roles[i])
    for i, n in enumerate(nodes):
        config = {
            "admin.listeners": f"{n.host}:{n.admin_port}",
            "node.id": i + 1,
            "process.roles": roles[i],
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "cluster.id": (cluster_ids or [CLUSTER_ID] * count)[i],
            "controller.quorum.fetch.timeout.ms": 600,
            "controller.quorum.election.timeout.ms": 400,
            "broker.heartbeat.interval.ms": 200,
            "broker.session.timeout.ms": 1500,
            "offsets.topic.num.partitions": 3,
            "transaction.state.log.num.partitions": 3,
            **((extra_config or [{}] * count)[i]),
        }
        n.config_path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
        n.cores = str(sorted(os.sched_getaffinity(0))[0])
    return nodes


def start_cluster(broker_factory, **kwargs):
    """make_cluster, with every node launched together (they wait for each other's quorum) and
    then waited for."""
    nodes = make_cluster(broker_factory, **kwargs)
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    return nodes


def restart_cluster(nodes, kill: bool = False) -> int:
    """Stops every node (SIGKILL with `kill`), starts them all again, and returns the leader
    they agree on."""
    for n in nodes:
        n.kill9() if kill else n.stop()
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    return leader_of(nodes)


def leader_of(nodes, other_than: int | None = None) -> int:
    """The node id every running node names as the quorum's leader (waits until they agree,
    and, with `other_than`, until they name another)."""
    def agreed():
        leaders = {status(n)["quorum"]["leader"] for n in nodes if n.is_alive()}
        leader = leaders.pop() if len(leaders) == 1 else None
        return leader if leader not in (None, other_than) else None
    return wait_until(agreed, "the nodes to agree on one quorum leader", timeout_s=30)


def create_topic(node, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=10)
    futures[name].result(timeout=30)


def wait_converged(nodes, topics: int) -> None:
    """Every running node has applied the same metadata, with `topics` topics."""
    def same():
        seen = [status(n) for n in nodes if n.is_alive()]
        return all(s["topics"] == topics for s in seen) and len({s["quorum"]["applied_index"] for s in seen}) == 1
    wait_until(same, f"every node to apply the same metadata with {topics} topics", timeout_s=30)


def write_config(node, changes: dict) -> None:
    """Sets (or replaces) properties in a node's configuration file, for its next start."""
    lines = [line for line in node.config_path.read_text().splitlines() if line.split("=", 1)[0] not in changes]
    lines += [f"{k}={v}" for k, v in changes.items()]
    node.config_path.write_text("".join(line + "\n" for line in lines))


def is_broker(node) -> bool:
    return "broker" in getattr(node, "roles", "broker")


def wait_brokers(nodes) -> None:
    """Every node with the broker role has registered: a client asking any running broker
    sees all of them."""
    want = {i + 1 for i, n in enumerate(nodes) if n.is_alive() and is_broker(n)}
    for n in nodes:
        if n.is_alive() and is_broker(n):
            admin = AdminClient({"bootstrap.servers": n.bootstrap})
            wait_until(lambda: set(admin.list_topics(timeout=10).brokers) >= want, f"node {n.bootstrap} to list brokers {want}", timeout_s=30)


def find_coordinator(port: int, key: str, key_type: int, timeout_s: float = 60) -> int:
    """The node id of the coordinator of `key` (a group id, or a transactional id with
    KEY_TYPE_TRANSACTION), asking the broker on `port` until it names one. The first request for
    a kind of coordinator has its internal topic created (`__consumer_offsets`,
    `__transaction_state`), spread over the registered brokers; until this broker has it the
    answer is COORDINATOR_NOT_AVAILABLE, which clients retry."""
    def request(correlation_id: int) -> bytes:
        return kw.frame(kw.request_header(10, 1, correlation_id) + kw.string(key) + kw.i8(key_type))

    deadline = time.monotonic() + timeout_s
    with kw.Connection(port) as conn:
        while True:
            r = kw.Reader(conn.request(request))
            r.i32()  # throttle time
            error, message, node_id = r.i16(), r.string(), r.i32()
            if error == 0:
                return node_id
            assert error == COORDINATOR_NOT_AVAILABLE, (error, message)
            assert time.monotonic() < deadline, f"no coordinator for {key}: {message}"
            time.sleep(0.1)
