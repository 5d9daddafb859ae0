"""KRaft's roles: broker-only nodes (`process.roles=broker`), which observe the metadata log
without voting, and controller-only nodes (`process.roles=controller`), which vote but hold no
partitions and serve no clients. Real processes, one shard each, short quorum timeouts."""

from __future__ import annotations

import json
import re
import socket
import struct

import pytest
from confluent_kafka.admin import AdminClient

import clients
from clients import wait_until
from cluster import CLUSTER_ID, create_topic, find_coordinator, leader_of, start_cluster, status, wait_brokers, wait_converged
from test_cluster_quorum import describe_quorum


def held_partitions(node, topic: str) -> list[int]:
    return sorted(int(p.name.rsplit("-", 1)[1]) for p in node.data_dir.iterdir() if p.name.startswith(f"{topic}-"))


def topics_seen_by(node) -> set[str]:
    return set(AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10).topics)


def test_a_broker_only_node_serves_partitions_follows_leader_changes_and_catches_up_after_a_restart(broker_factory):
    nodes = start_cluster(broker_factory, count=4, roles=["broker,controller"] * 3 + ["broker"])
    observer = nodes[3]
    assert status(observer)["roles"] == ["broker"]
    leader = leader_of(nodes)
    assert leader in (1, 2, 3), "a broker-only node never leads the quorum"
    wait_brokers(nodes)
    # Created through the broker-only node: it forwards the request to the active controller.
    create_topic(observer, "orders", 12)
    wait_converged(nodes, 1)
    held = {n.node_id: held_partitions(n, "orders") for n in nodes}
    assert sorted(len(v) for v in held.values()) == [3, 3, 3, 3], held
    md = AdminClient({"bootstrap.servers": observer.bootstrap}).list_topics(topic="orders", timeout=10)
    assert set(md.brokers) == {1, 2, 3, 4}
    assert {p: md.topics["orders"].partitions[p].leader for p in range(12)} == {p: node for node, ps in held.items() for p in ps}
    # DescribeQuorum through it: three voters, and it as the observer.
    d = describe_quorum(observer, 2)
    assert (d["error_code"], d["leader"]) == (0, leader), d
    assert sorted(v[0] for v in d["voters"]) == [1, 2, 3] and [o[0] for o in d["observers"]] == [4], d

    # Real clients through the broker-only node's address alone.
    producer = clients.confluent_producer(observer.bootstrap, acks="all")
    for i in range(1200):
        producer.produce("orders", key=f"k{i}".encode(), value=f"value-{i}".encode(), partition=i % 12)
    assert producer.flush(60) == 0
    consumed = clients.kafka_python_consume(observer.bootstrap, "orders", 12)
    assert sorted(r.value for r in consumed) == sorted(f"value-{i}".encode() for i in range(1200))
    # Its own partitions' records are in its own data directory.
    for p in held[4]:
        log = (observer.data_dir / f"orders-{p}" / "00000000000000000000.log").read_bytes()
        missing = [i for i in range(p, 1200, 12) if f"value-{i}".encode() not in log]
        assert not missing, f"records of partition {p} missing from the broker-only node's log: {missing[:5]}"

    # The active controller dies: the broker-only node follows the new one, and a topic
    # created through it after the failover exists everywhere.
    nodes[leader - 1].kill9()
    second = leader_of(nodes, other_than=leader)
    assert status(observer)["quorum"]["leader"] == second
    create_topic(observer, "after-failover", 4)
    wait_converged(nodes, 2)
    assert "after-failover" in topics_seen_by(observer)

    # Restarted, it fetches only what is new from its applied index, including a topic
    # created while it was down.
    applied = status(observer)["quorum"]["applied_index"]
    observer.stop()
    create_topic(nodes[second - 1], "while-down", 2)
    since = observer.log_size()
    observer.start()
    [line] = observer.wait_for_log("observing the metadata log", since)
    from_index = int(re.search(r"from_index=(\d+)", line).group(1))
    assert from_index > 1 and from_index <= applied + 1, line
    wait_converged(nodes, 3)
    wait_until(lambda: "while-down" in topics_seen_by(observer), "the restarted broker-only node to list the topic created while it was down", timeout_s=30)
    # It registers again and still serves its partitions.
    wait_brokers(nodes)
    producer = clients.confluent_producer(observer.bootstrap, acks="all")
    for p in held[4]:
        producer.produce("orders", value=b"after the restart", partition=p)
    assert producer.flush(30) == 0


def test_a_broker_only_node_behind_the_compacted_log_is_sent_a_snapshot(broker_factory):
    snapshots = {"metadata.log.max.record.bytes.between.snapshots": 2048}
    nodes = start_cluster(broker_factory, count=4, roles=["broker,controller"] * 3 + ["broker"], extra_config=[snapshots] * 4)
    observer = nodes[3]
    leader = leader_of(nodes)
    wait_brokers(nodes)
    create_topic(nodes[leader - 1], "doomed", 8)
    wait_converged(nodes, 1)
    assert held_partitions(observer, "doomed"), "8 partitions over 4 brokers: 2 are on each"
    observer.kill9()
    admin = AdminClient({"bootstrap.servers": nodes[leader - 1].bootstrap})
    admin.delete_topics(["doomed"])["doomed"].result(timeout=30)
    left_at = status(nodes[leader - 1])["quorum"]["applied_index"]
    for i in range(8):
        create_topic(nodes[leader - 1], f"snap-{i}", 3)
    wait_until(lambda: status(nodes[leader - 1])["quorum"]["snapshot_index"] >= left_at, "the leader to compact its metadata log past the stopped observer", timeout_s=30)
    since = observer.log_size()
    observer.start()
    assert observer.wait_for_log("installing a metadata snapshot from the quorum", since, timeout_s=30)
    wait_converged(nodes, 8)
    wait_until(lambda: not held_partitions(observer, "doomed"), "the deleted topic's partitions to leave the broker-only node's disk", timeout_s=30)
    assert {f"snap-{i}" for i in range(8)} <= topics_seen_by(observer)


def test_a_large_snapshot_reaches_a_voter_and_a_broker_only_node(broker_factory):
    """An image of over 8 MiB (ten thousand ACLs with long resource names) travels whole to a
    lagging voter (a raft snapshot) and a lagging broker-only node (a fetch answer). (Images over
    one 64 MiB link frame go in parts: the transport's unit tests.)"""
    from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    config = {"metadata.log.max.record.bytes.between.snapshots": 2048,
              "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"}
    nodes = start_cluster(broker_factory, count=4, roles=["broker,controller"] * 3 + ["broker"], extra_config=[config] * 4)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    voter = next(n for n in nodes[:3] if n.node_id != leader)
    observer = nodes[3]
    voter.kill9()
    observer.kill9()
    admin = AdminClient({"bootstrap.servers": nodes[leader - 1].bootstrap})
    # Every ACL entry is past what the stopped nodes can have.
    left_at = status(nodes[leader - 1])["quorum"]["applied_index"] + 1
    acls = [AclBinding(ResourceType.TOPIC, f"{i:05d}-" + "t" * 1000, ResourcePatternType.LITERAL, "User:someone", "*", AclOperation.READ, AclPermissionType.DENY)
            for i in range(10_000)]
    for at in range(0, len(acls), 1000):
        for future in admin.create_acls(acls[at:at + 1000]).values():
            assert future.result(30) is None
    create_topic(nodes[leader - 1], "after-acls", 3)
    wait_until(lambda: status(nodes[leader - 1])["quorum"]["snapshot_index"] >= left_at, "the leader to compact its metadata log past the stopped nodes", timeout_s=30)
    since = {n.node_id: n.log_size() for n in (voter, observer)}
    voter.start()
    observer.start()
    for node, line in ((voter, "installing a metadata snapshot from the active controller"), (observer, "installing a metadata snapshot from the quorum")):
        [installed] = node.wait_for_log(line, since[node.node_id], timeout_s=60)[:1]
        size = int(re.search(r"bytes=(\d+)", installed).group(1))
        assert size > 8 << 20, installed
    wait_converged(nodes, 1)
    for node in (voter, observer):
        installed = re.findall(r"metadata snapshot installed index=\d+ records=(\d+)", node.log_since(since[node.node_id]))
        # A node still behind after one snapshot may be sent another: that one changes little.
        assert installed and max(map(int, installed)) >= len(acls), installed
        # Each node answers for the first and the last ACL from what it installed (one filter
        # each: describing all ten thousand at once crashed confluent-kafka's Python client).
        node_admin = AdminClient({"bootstrap.servers": node.bootstrap})
        for acl in (acls[0], acls[-1]):
            one = AclBindingFilter(ResourceType.TOPIC, acl.name, ResourcePatternType.LITERAL, None, None, AclOperation.ANY, AclPermissionType.ANY)
            assert [b.name for b in node_admin.describe_acls(one).result(timeout=30)] == [acl.name], node.node_id


def test_a_controller_only_node_votes_but_holds_no_partitions_and_is_no_broker(broker_factory):
    nodes = start_cluster(broker_factory, count=3, roles=["controller", "broker", "broker"])
    controller, brokers = nodes[0], nodes[1:]
    assert leader_of(nodes) == 1
    wait_brokers(nodes)
    create_topic(brokers[0], "spread", 12)
    # The first coordinator lookup has the active controller (the controller-only node) create
    # the offsets topic: over the brokers too.
    assert find_coordinator(brokers[0].port, "a-group", 0) in (2, 3)
    wait_converged(nodes, 2)
    held = {n.node_id: held_partitions(n, "spread") for n in nodes}
    assert held[1] == [] and sorted(len(held[b]) for b in (2, 3)) == [6, 6], held
    offsets = {n.node_id: held_partitions(n, "__consumer_offsets") for n in nodes}
    assert offsets[1] == [] and offsets[2] and offsets[3], offsets
    # Nothing at all on the controller's disk: neither the topic nor the internal topics.
    assert not [p.name for p in controller.data_dir.iterdir() if re.fullmatch(r".+-\d+", p.name)]
    for b in brokers:
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10)
        assert set(md.brokers) == {2, 3}, md.brokers
        leaders = {pm.leader for t in md.topics.values() for pm in t.partitions.values()}
        assert leaders <= {2, 3}, leaders
        d = describe_quorum(b, 2)
        assert (d["error_code"], d["partition_error"], d["leader"]) == (0, 0, 1), d
        assert [v[0] for v in d["voters"]] == [1], d
        # The broker-only nodes are the quorum's observers, as in Kafka.
        assert sorted(o[0] for o in d["observers"]) == [2, 3], d
    assert [b["node_id"] for b in status(controller)["brokers"]] == [2, 3]
    assert status(controller)["roles"] == ["controller"]
    # Kafka clients never reach it: it has no Kafka listener.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((controller.host, controller.port), timeout=2).close()
    producer = clients.confluent_producer(brokers[1].bootstrap, acks="all")
    for i in range(120):
        producer.produce("spread", value=f"v{i}".encode(), partition=i % 12)
    assert producer.flush(30) == 0
    consumed = clients.kafka_python_consume(brokers[0].bootstrap, "spread", 12)
    assert sorted(r.value for r in consumed) == sorted(f"v{i}".encode() for i in range(120))


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def read_frame(s: socket.socket) -> tuple[int, bytes] | None:
    """One quorum frame, or None once the voter closed the link."""
    def exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = s.recv(n - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data
    head = exactly(5)
    if head is None:
        return None
    length, kind = struct.unpack(">IB", head)
    return kind, exactly(length - 1)


FRAME_HELLO, FRAME_RAFT, FRAME_REFUSED, FRAME_FETCH, FRAME_FETCH_REPLY = 1, 2, 5, 6, 7


def test_an_observer_link_answers_bounded_fetches_and_closes_on_hostile_frames(broker_factory):
    nodes = start_cluster(broker_factory, count=2, roles=["controller", "broker"])
    controller = nodes[0]
    wait_brokers(nodes)
    wait_converged(nodes, 0)
    port = controller.extra_ports["CONTROLLER"]
    voters = [[1, f"{controller.host}:{port}"]]

    def link(node_id: int) -> socket.socket:
        s = socket.create_connection((controller.host, port), timeout=10)
        hello = {"node_id": node_id, "cluster_id": CLUSTER_ID, "voters": voters, "observer": True}
        s.sendall(frame(FRAME_HELLO, json.dumps(hello).encode()))
        return s

    before = status(controller)["quorum"]
    since = controller.log_size()
    # A fetch of at most one byte still gets one entry (the bound never stalls the log), from
    # the index asked for, with the leader named.
    with link(9) as s:
        # Entry 1 is the leader's empty first entry; the cluster's first records follow.
        s.sendall(frame(FRAME_FETCH, struct.pack(">Q", 77) + json.dumps({"from_index": 2, "wait_ms": 0, "bytes_max": 1}).encode()))
        kind, payload = read_frame(s)
        assert kind == FRAME_FETCH_REPLY and struct.unpack(">Q", payload[:8])[0] == 77
        reply = json.loads(payload[8:])
        assert reply["leader"] == 1 and reply["commit_index"] >= before["applied_index"], reply
        assert [e["index"] for e in reply["entries"]] == [2], reply
        assert reply["entries"][0]["records"][0] == {"type": "ClusterId", "cluster_id": CLUSTER_ID}, reply
    # Hostile frames close the link with a log line; the controller carries on.
    with link(9) as s:
        s.sendall(frame(FRAME_FETCH, struct.pack(">Q", 1) + b"{not json"))
        assert read_frame(s) is None
    with link(9) as s:
        s.sendall(frame(FRAME_RAFT, b"\x00" * 16))
        assert read_frame(s) is None
    with link(9) as s:
        s.sendall(frame(FRAME_FETCH, b"\x01\x02"))
        assert read_frame(s) is None
    assert controller.wait_for_log("broker-only node 9 sent a metadata fetch that does not decode", since)
    assert controller.wait_for_log("broker-only node 9 sent a frame of kind 2", since)
    assert controller.wait_for_log("broker-only node 9 sent a frame of 2 bytes, shorter than its id", since)
    # An observer claiming a voter's node id is refused at its hello.
    with link(1) as s:
        kind, payload = read_frame(s)
        assert kind == FRAME_REFUSED and "it is a voter" in json.loads(payload)["reason"], payload
    assert controller.is_alive() and nodes[1].is_alive()
    after = status(controller)["quorum"]
    assert (after["leader"], after["term"]) == (before["leader"], before["term"])
    # The real broker-only node's link was never disturbed: it still follows the log.
    create_topic(nodes[1], "still-following", 1)
    wait_converged(nodes, 1)
