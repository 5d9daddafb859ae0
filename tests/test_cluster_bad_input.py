"""Bad input to a cluster, and rack-aware placement: real shardlog processes, each a broker and
a controller, with one shard and the short quorum timeouts of `cluster.make_cluster`.

- A second process that claims a voter's node id is refused at start: its controller listener
  is not where that voter's entry of controller.quorum.voters says.
- A node restarted after kill -9 registers under a new incarnation: the controller refuses it
  (DUPLICATE_BROKER_REGISTRATION) while the previous incarnation's session lives, and accepts
  it once that session lapses and the controller fences it. The active controller registering
  itself (a one-node broker restarted) is not held back.
- A node whose controller.quorum.voters differs from the quorum's is refused at the quorum hello,
  on both sides, and never gets the cluster's metadata; malformed hellos are refused too.
- With broker.rack set, a topic's partitions are placed as Kafka's rack-aware assignment does.
"""

from __future__ import annotations

import json
import socket
import struct

from confluent_kafka.admin import AdminClient

from clients import wait_until
from cluster import create_topic, leader_of, make_cluster, start_cluster, status, wait_brokers, wait_converged, write_config
from conftest import READY_LINE, free_port


def registered(node) -> dict[int, dict]:
    """The brokers registered in this node's metadata, by node id."""
    return {b["node_id"]: b for b in status(node)["brokers"]}


def quorum_view(node) -> tuple[int, int]:
    q = status(node)["quorum"]
    return q["term"], q["applied_index"]


def voters_of(node) -> str:
    for line in node.config_path.read_text().splitlines():
        if line.startswith("controller.quorum.voters="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no controller.quorum.voters in {node.config_path}")


def test_a_second_process_with_a_voters_node_id_is_refused_at_start_and_changes_nothing(broker_factory):
    nodes = start_cluster(broker_factory)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    wait_converged(nodes, 0)
    before = [(registered(n), quorum_view(n)) for n in nodes]
    assert sorted(before[0][0]) == [1, 2, 3]
    # Node 2's configuration (same node.id, same voters) on its own ports: its controller
    # listener is not where voter 2 is.
    twin = broker_factory(start=False, extra_listeners=["CONTROLLER"])
    twin.config_path.write_text(nodes[1].config_path.read_text())
    write_config(twin, {"admin.listeners": f"127.0.0.1:{twin.admin_port}"})
    twin.cores = nodes[1].cores
    twin.launch()
    wait_until(lambda: not twin.is_alive(), "the second node 2 to exit", timeout_s=30)
    assert twin.proc.returncode != 0
    log = twin.run_log()
    voter_entry = f"2@127.0.0.1:{nodes[1].extra_ports['CONTROLLER']}"
    twin_listener = f"127.0.0.1:{twin.extra_ports['CONTROLLER']}"
    assert voter_entry in log and twin_listener in log, log
    assert READY_LINE not in log
    # Nothing changed: the same brokers under the same incarnations, the same term and index.
    assert [(registered(n), quorum_view(n)) for n in nodes] == before
    assert all(n.is_alive() for n in nodes)


def test_a_restarted_node_is_refused_while_its_previous_session_lives_then_registers(broker_factory):
    # A session long enough that the restart certainly comes within it.
    session_ms = 8000
    nodes = start_cluster(broker_factory, extra_config=[{"broker.session.timeout.ms": session_ms}] * 3)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    controller = nodes[leader - 1]
    victim = next(i for i in (1, 2, 3) if i != leader)
    first = registered(controller)[victim]
    assert not first["fenced"]
    since = controller.log_size()
    nodes[victim - 1].kill9()
    victim_since = nodes[victim - 1].log_size()
    nodes[victim - 1].start()
    refused = controller.wait_for_log(rf"refused a broker registration \(DUPLICATE_BROKER_REGISTRATION\).*node {victim} is already registered", since, timeout_s=15)
    assert refused, f"the controller did not refuse node {victim}'s new incarnation"
    assert first["incarnation_id"] in refused[0]
    told = nodes[victim - 1].wait_for_log(r"the controller refused this node's registration \(DUPLICATE_BROKER_REGISTRATION", victim_since, timeout_s=15)
    assert told, "the restarted node did not log the refusal"
    # Refused: the metadata still has the previous incarnation.
    assert registered(controller)[victim]["incarnation_id"] == first["incarnation_id"]

    def accepted():
        b = registered(controller).get(victim)
        return b is not None and b["incarnation_id"] != first["incarnation_id"] and not b["fenced"]
    wait_until(accepted, f"node {victim} to register again once its previous session lapsed", timeout_s=session_ms / 1000 + 30)
    assert controller.wait_for_log(rf"node_id={victim}.*fenced|fenced.*node_id={victim}", since, timeout_s=1), "the previous incarnation was not fenced first"
    wait_converged(nodes, 0)
    assert {n: b["incarnation_id"] for n, b in registered(nodes[victim - 1]).items()} == {n: b["incarnation_id"] for n, b in registered(controller).items()}


def hello_frame(payload: bytes, kind: int = 1) -> bytes:
    return struct.pack(">IB", len(payload) + 1, kind) + payload


def send_hello(port: int, data: bytes) -> bytes:
    """Sends `data` to a controller listener; returns what came back before the close."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:  # closed with our bytes unread
                return received
            if not chunk:
                return received
            received += chunk


def test_a_node_whose_voter_list_differs_is_refused_and_gets_no_metadata(broker_factory):
    nodes = make_cluster(broker_factory)
    good, stranger = nodes[:2], nodes[2]
    # Node 3 names a fourth voter that the others do not.
    theirs = voters_of(good[0])
    extra = f"4@127.0.0.1:{free_port()}"
    write_config(stranger, {"controller.quorum.voters": f"{theirs},{extra}"})
    for n in good:
        n.launch()
    for n in good:
        n.wait_ready()
    leader = leader_of(good)
    wait_brokers(good)
    create_topic(good[leader - 1], "only-ours", 1)
    wait_converged(good, 1)
    before = [quorum_view(n) for n in good]
    offsets = [n.log_size() for n in good]
    stranger.launch()
    differs = "refused a metadata quorum connection from a node whose controller.quorum.voters differs"
    for n, since in zip(good, offsets):
        lines = n.wait_for_log(differs, since, timeout_s=15)
        assert lines, f"node {n.bootstrap} did not log the refusal"
        assert extra in lines[0] and theirs.split(",")[0] in lines[0], lines[0]
    # The stranger logs both sides: its hellos refused, and the others' hellos refused.
    assert stranger.wait_for_log("metadata quorum voter refused this node's connection: the voter lists differ", 0, timeout_s=15)
    assert stranger.wait_for_log(differs, 0, timeout_s=15)
    # It never joins: no leader, no metadata of ours, nothing of the topic.
    assert stranger.is_alive()
    assert READY_LINE not in stranger.run_log()
    assert not any(p.name.startswith("only-ours") for p in stranger.data_dir.glob("*")), list(stranger.data_dir.glob("*"))
    assert [quorum_view(n) for n in good] == before
    assert sorted(registered(good[0])) == [1, 2]

    # Hellos that are not hellos close the connection with a log line, and change nothing.
    port = good[0].extra_ports["CONTROLLER"]
    since = good[0].log_size()
    assert send_hello(port, struct.pack(">IB", 1 << 30, 1)) == b""
    assert send_hello(port, hello_frame(b"{not json")) == b""
    assert send_hello(port, hello_frame(json.dumps({"node_id": "two", "voters": 7}).encode())) == b""
    assert send_hello(port, hello_frame(b"\x00" * 8, kind=2)) == b""
    malformed = "refused a metadata quorum connection whose hello is malformed or too large"
    wait_until(lambda: len(good[0].wait_for_log(malformed, since, timeout_s=0)) == 4, "the four malformed hellos to be logged", timeout_s=15)
    # A well-formed hello with the right cluster and node id but another voter list is refused
    # with the receiver's list in the answer.
    hello = {"node_id": 2, "cluster_id": None, "voters": [[2, "127.0.0.1:1"]]}
    answer = send_hello(port, hello_frame(json.dumps(hello).encode()))
    assert answer[4] == 5, answer
    refusal = json.loads(answer[5:])
    assert sorted(tuple(v) for v in refusal["voters"]) == sorted((int(v.split("@")[0]), v.split("@")[1]) for v in theirs.split(","))
    assert "voter lists differ" in refusal["reason"]
    assert all(n.is_alive() for n in good)
    assert [quorum_view(n) for n in good] == before


def test_partitions_spread_over_racks_as_kafka_assigns_them(broker_factory):
    racks = {1: "a", 2: "a", 3: "b"}
    nodes = start_cluster(broker_factory, extra_config=[{"broker.rack": racks[i]} for i in (1, 2, 3)])
    leader = leader_of(nodes)
    wait_brokers(nodes)
    wait_until(lambda: {i: b["rack"] for i, b in registered(nodes[leader - 1]).items()} == racks, "every broker registered with its rack", timeout_s=30)
    create_topic(nodes[0], "racked", 12)
    wait_converged(nodes, 1)
    held = {i + 1: sorted(int(p.name.rsplit("-", 1)[1]) for p in n.data_dir.iterdir() if p.name.startswith("racked-")) for i, n in enumerate(nodes)}
    assert sorted(sum(held.values(), [])) == list(range(12)), held
    owner = {p: node for node, ps in held.items() for p in ps}
    # Balanced by broker: 4 each; so rack a (two brokers) holds 8 and rack b 4.
    assert {node: len(ps) for node, ps in held.items()} == {1: 4, 2: 4, 3: 4}, held
    per_rack = {"a": 0, "b": 0}
    for node, ps in held.items():
        per_rack[racks[node]] += len(ps)
    assert per_rack == {"a": 8, "b": 4}, held
    # Kafka's order: leaders rotate over the rack-alternated broker list [1 (a), 3 (b), 2 (a)].
    following = {1: 3, 3: 2, 2: 1}
    assert all(owner[p + 1] == following[owner[p]] for p in range(11)), owner
    md = AdminClient({"bootstrap.servers": nodes[1].bootstrap}).list_topics(topic="racked", timeout=10)
    assert {p: md.topics["racked"].partitions[p].leader for p in range(12)} == owner


def test_a_single_node_restarted_after_kill9_registers_again_at_once(broker_factory):
    # The active controller registering itself is not checked against its own previous
    # incarnation: a one-node broker must not wait out a session and then fence itself.
    node = broker_factory()
    wait_until(lambda: 1 in registered(node), "the node to register", timeout_s=30)
    first = registered(node)[1]["incarnation_id"]
    node.kill9()
    node.start()

    def again():
        b = registered(node).get(1)
        return b is not None and b["incarnation_id"] != first and not b["fenced"]
    wait_until(again, "the restarted node to register under a new incarnation", timeout_s=30)
    log = node.run_log()
    assert "DUPLICATE_BROKER_REGISTRATION" not in log and "fenced" not in log, log
