"""A dynamic metadata quorum (KIP-853): nodes name `controller.quorum.bootstrap.servers`
instead of `controller.quorum.voters`, controllers are formatted with `shardlog format`
(kafka-storage.sh's --standalone / --initial-controllers / --no-initial-controllers), and the
voter set is kept in the metadata log (kraft.version 1).

Real shardlog processes, one shard each, short quorum timeouts.
"""

from __future__ import annotations

import subprocess

import kafkawire
from clients import wait_until
from conftest import broker_binary
from cluster import CLUSTER_ID, create_topic, leader_of, make_cluster, restart_cluster, status, wait_converged
from test_cluster_quorum import describe_quorum

ADD_RAFT_VOTER, REMOVE_RAFT_VOTER = 80, 81
REQUEST_TIMED_OUT, NOT_CONTROLLER, INVALID_REQUEST, INCONSISTENT_CLUSTER_ID, DUPLICATE_VOTER, VOTER_NOT_FOUND = 7, 41, 42, 104, 126, 127


def dynamic_cluster(broker_factory, count: int, bootstrap: list[int], roles: list[str] | None = None):
    """make_cluster's nodes, with `controller.quorum.voters` replaced by
    `controller.quorum.bootstrap.servers` naming the controller listeners of nodes `bootstrap`
    (node ids)."""
    nodes = make_cluster(broker_factory, count=count, roles=roles)
    servers = ",".join(f"{nodes[i - 1].host}:{nodes[i - 1].extra_ports['CONTROLLER']}" for i in bootstrap)
    for n in nodes:
        lines = [line for line in n.config_path.read_text().splitlines() if not line.startswith("controller.quorum.voters=")]
        n.config_path.write_text("".join(line + "\n" for line in lines + [f"controller.quorum.bootstrap.servers={servers}"]))
    return nodes


def shardlog_format(node, *flags: str) -> subprocess.CompletedProcess:
    """`shardlog format` on the node's configuration and data directory."""
    kafka = [f"PLAINTEXT://{node.bootstrap}"] if node.kafka_listener else []
    listeners = ",".join(kafka + [f"{name}://{node.host}:{port}" for name, port in node.extra_ports.items()])
    cmd = [str(broker_binary()), "format", "--config", str(node.config_path), "--data-dir", str(node.data_dir), "--listeners", listeners, *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def format_ok(node, *flags: str) -> None:
    done = shardlog_format(node, *flags)
    assert done.returncode == 0, done.stderr


def controller_address(node) -> str:
    return f"{node.host}:{node.extra_ports['CONTROLLER']}"


def finalized_kraft_version(node) -> int | None:
    """kraft.version's finalized level in ApiVersions v3 (None: not finalized, i.e. 0), once
    the node answers with finalized features."""
    def answered():
        with kafkawire.Connection(node.port) as conn:
            response = conn.api_versions(3)
        return response if response.finalized_features_epoch >= 0 else None
    response = kafkawire_wait(answered)
    level = response.finalized_features.get("kraft.version")
    return level[1] if level else None


def kafkawire_wait(probe):
    from clients import wait_until
    return wait_until(probe, "ApiVersions to carry finalized features", timeout_s=30)


def test_a_standalone_controller_and_a_broker_find_each_other_through_bootstrap_servers_and_keep_the_voter_set_in_the_log(broker_factory):
    controller, broker = dynamic_cluster(broker_factory, 2, bootstrap=[1], roles=["broker,controller", "broker"])
    format_ok(controller, "--standalone")
    # A broker-only node needs no format step: it asks the bootstrap servers.
    assert "nothing to format" in shardlog_format(broker).stdout
    for n in (controller, broker):
        n.launch()
    for n in (controller, broker):
        n.wait_ready()
    assert leader_of([controller, broker]) == 1
    create_topic(broker, "dynamic", 4)
    wait_converged([controller, broker], 1)
    d = describe_quorum(broker, 2)
    assert (d["error_code"], d["partition_error"], d["leader"]) == (0, 0, 1), d
    assert [v[0] for v in d["voters"]] == [1] and 2 in [o[0] for o in d["observers"]], d
    assert finalized_kraft_version(broker) == 1
    assert "found the metadata quorum through controller.quorum.bootstrap.servers" in broker.run_log()

    # The voter set is in the metadata log: without what format wrote, the controller still
    # knows it is the voter, and nothing is lost.
    (controller.data_dir / "__shardlog_meta" / "quorum-bootstrap.json").unlink()
    assert restart_cluster([controller, broker]) == 1
    wait_converged([controller, broker], 1)
    assert [v[0] for v in describe_quorum(controller, 2)["voters"]] == [1]
    assert finalized_kraft_version(controller) == 1


def test_initial_controllers_elect_a_leader_survive_its_kill_and_a_joining_controller_observes(broker_factory):
    nodes = dynamic_cluster(broker_factory, 4, bootstrap=[1, 2], roles=["broker,controller"] * 3 + ["controller"])
    voters, joining = nodes[:3], nodes[3]
    initial = ",".join(f"{i + 1}@{controller_address(n)}" for i, n in enumerate(voters))
    for n in voters:
        format_ok(n, "--initial-controllers", initial)
    format_ok(joining, "--no-initial-controllers")
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    first = leader_of(nodes)
    assert first in (1, 2, 3)
    create_topic(voters[0], "before-kill", 3)
    wait_converged(nodes, 1)
    d = describe_quorum(voters[0], 2)
    assert sorted(v[0] for v in d["voters"]) == [1, 2, 3], d
    # Formatted to join, node 4 observes the log until it is added as a voter.
    assert 4 in [o[0] for o in d["observers"]], d
    assert "observes the metadata log until it is added as one" in joining.run_log()

    nodes[first - 1].kill9()
    second = leader_of(nodes, other_than=first)
    survivor = next(n for i, n in enumerate(voters) if i + 1 != first)
    create_topic(survivor, "after-kill", 3)
    wait_converged(nodes, 2)
    assert status(joining)["topics"] == 2
    nodes[first - 1].start()
    wait_converged(nodes, 2)
    assert leader_of(nodes) == second


def test_format_and_start_refuse_what_kafka_refuses(broker_factory):
    controller, broker = dynamic_cluster(broker_factory, 2, bootstrap=[1], roles=["broker,controller", "broker"])
    # A controller of a dynamic quorum must be told its first voters before it starts.
    done = shardlog_format(controller)
    assert done.returncode != 0 and "--standalone" in done.stderr, done.stderr
    controller.launch()
    controller.proc.wait(timeout=30)
    assert controller.proc.returncode != 0
    assert "was not formatted: run `shardlog format" in controller.run_log()
    # Flags that name voters are for controllers only.
    done = shardlog_format(broker, "--standalone")
    assert done.returncode != 0 and "only format controllers" in done.stderr, done.stderr
    # A controller that is not among --initial-controllers is told how to join instead.
    done = shardlog_format(controller, "--initial-controllers", "7@127.0.0.1:1")
    assert done.returncode != 0 and "--no-initial-controllers" in done.stderr, done.stderr
    # Formatted once; a second format is refused unless told to leave it.
    format_ok(controller, "--standalone")
    done = shardlog_format(controller, "--no-initial-controllers")
    assert done.returncode != 0 and "already formatted" in done.stderr, done.stderr
    format_ok(controller, "--no-initial-controllers", "--ignore-formatted")
    # Static voters leave nothing to format.
    static = controller.config_path.read_text() + f"controller.quorum.voters=1@{controller_address(controller)}\n"
    controller.config_path.write_text(static)
    done = shardlog_format(controller, "--standalone")
    assert done.returncode != 0 and "controller.quorum.voters is set" in done.stderr, done.stderr
    # A bootstrap server is HOST:PORT, with no node id.
    lines = [line for line in broker.config_path.read_text().splitlines() if not line.startswith("controller.quorum.bootstrap.servers=")]
    broker.config_path.write_text("".join(line + "\n" for line in lines + ["controller.quorum.bootstrap.servers=1@127.0.0.1:9093"]))
    done = shardlog_format(broker)
    assert done.returncode != 0 and "is not HOST:PORT" in done.stderr, done.stderr


def raft_voter_call(node, api_key: int, voter_id: int, listener: tuple[str, int] | None = None, timeout_ms: int = 10_000,
                    cluster_id: str | None = CLUSTER_ID, directory_id: str | None = None) -> tuple[int, str | None]:
    """AddRaftVoter v0 (with `listener`, the new voter's controller listener) or RemoveRaftVoter
    v0 on the wire, as kafka-metadata-quorum.sh add-controller / remove-controller send them,
    with the voter's directory id (Kafka's base64 text; None: the zero Uuid, none named);
    returns (error code, error message)."""
    body = kafkawire.compact_string(cluster_id)
    if api_key == ADD_RAFT_VOTER:
        body += kafkawire.i32(timeout_ms)
    body += kafkawire.i32(voter_id) + uuid_bytes(directory_id)
    if api_key == ADD_RAFT_VOTER:
        host, port = listener
        body += kafkawire.uvarint(2) + kafkawire.compact_string("CONTROLLER") + kafkawire.compact_string(host)
        body += port.to_bytes(2, "big") + kafkawire.TAGGED_FIELDS_EMPTY
    body += kafkawire.TAGGED_FIELDS_EMPTY
    with kafkawire.Connection(node.port) as conn:
        raw = conn.request(lambda cid: kafkawire.frame(kafkawire.request_header(api_key, 0, cid, flexible=True) + body))
    r = kafkawire.Reader(raw)
    r.skip_tagged_fields()  # response header v1
    r.i32()  # throttle time
    code = r.i16()
    length = r.uvarint()
    message = r.take(length - 1).decode() if length else None
    r.skip_tagged_fields()
    assert r.remaining() == 0
    return code, message


def uuid_bytes(text: str | None) -> bytes:
    import base64
    return bytes(16) if text is None else base64.urlsafe_b64decode(text + "==")


def meta_properties(node) -> dict[str, str]:
    """The node's first log directory's meta.properties (Kafka's format)."""
    text = (node.data_dir / "meta.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def add_voter(via, voter) -> None:
    """Adds `voter` through node `via`, retrying while the quorum says to (REQUEST_TIMED_OUT:
    the new voter is not caught up yet, or a change is still committing; NOT_CONTROLLER: `via`
    does not know the leader at the moment), as Kafka's admin client does."""
    listener = (voter.host, voter.extra_ports["CONTROLLER"])
    retried = []
    def added():
        code, message = raft_voter_call(via, ADD_RAFT_VOTER, voter.node_id, listener)
        # An attempt whose answer was lost (the leader changed under it) may have gone in.
        if code == DUPLICATE_VOTER and retried:
            return True
        assert code in (0, REQUEST_TIMED_OUT, NOT_CONTROLLER), (code, message)
        retried.append(code)
        return code == 0
    wait_until(added, f"node {voter.node_id} to be added as a voter", timeout_s=60)


def voters_and_observers(node) -> tuple[list[int], list[int]]:
    d = describe_quorum(node, 2)
    assert (d["error_code"], d["partition_error"]) == (0, 0), d
    return sorted(v[0] for v in d["voters"]), sorted(o[0] for o in d["observers"])


def test_controllers_are_added_and_removed_as_voters_through_raft_and_the_set_survives_a_restart(broker_factory):
    nodes = dynamic_cluster(broker_factory, 3, bootstrap=[1], roles=["broker,controller", "broker,controller", "controller"])
    first, second, third = nodes
    format_ok(first, "--standalone")
    for n in (second, third):
        format_ok(n, "--no-initial-controllers")
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    assert leader_of(nodes) == 1
    wait_until(lambda: voters_and_observers(first) == ([1], [2, 3]), "nodes 2 and 3 to observe the log", timeout_s=30)

    # Added through the active controller, then through a node that forwards to it.
    add_voter(first, second)
    assert voters_and_observers(first) == ([1, 2], [3])
    add_voter(second, third)
    assert voters_and_observers(second)[0] == [1, 2, 3]
    wait_until(lambda: "joins raft" in third.run_log(), "node 3 to learn it was added")
    # What Kafka refuses, it refuses with Kafka's errors.
    code, message = raft_voter_call(first, ADD_RAFT_VOTER, 2, (second.host, second.extra_ports["CONTROLLER"]))
    assert code == DUPLICATE_VOTER, message
    assert raft_voter_call(first, REMOVE_RAFT_VOTER, 9)[0] == VOTER_NOT_FOUND
    assert raft_voter_call(first, REMOVE_RAFT_VOTER, 3, cluster_id="c29tZS1vdGhlci1jbHVzdGVy")[0] == INCONSISTENT_CLUSTER_ID
    assert raft_voter_call(first, ADD_RAFT_VOTER, 9, ("", 0))[0] == INVALID_REQUEST
    code, message = raft_voter_call(first, ADD_RAFT_VOTER, 9, ("127.0.0.1", 1), timeout_ms=500)
    assert code == REQUEST_TIMED_OUT and "does not fetch" in message, message

    # The added voters vote: with node 1 gone, they elect one of themselves and take changes.
    first.kill9()
    leader = leader_of(nodes, other_than=1)
    assert leader in (2, 3)
    create_topic(second, "after-kill", 2)
    first.start()
    wait_converged(nodes, 1)

    # The voter that does not lead is removed; the quorum goes on with the other two.
    gone = 5 - leader
    code, message = raft_voter_call(first, REMOVE_RAFT_VOTER, gone)
    assert code == 0, message
    assert voters_and_observers(first)[0] == sorted({1, 2, 3} - {gone})
    create_topic(first, "after-remove", 2)

    # The voter set is in the metadata log: after every node is killed and started again, it is
    # the same, and the removed controller follows the log as an observer.
    restart_cluster(nodes, kill=True)
    wait_converged(nodes, 2)
    assert voters_and_observers(first)[0] == sorted({1, 2, 3} - {gone})
    wait_until(lambda: gone in voters_and_observers(first)[1], f"node {gone} to fetch from the leader as an observer")


def started_dynamic_quorum(broker_factory, roles: list[str]):
    """Node 1 formatted standalone, the other controllers formatted to join, all launched; every
    other controller added as a voter in turn. Returns the nodes."""
    nodes = dynamic_cluster(broker_factory, len(roles), bootstrap=[1], roles=roles)
    format_ok(nodes[0], "--standalone")
    for n in nodes[1:]:
        if "controller" in n.roles:
            format_ok(n, "--no-initial-controllers")
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    for n in nodes[1:]:
        if "controller" in n.roles:
            add_voter(nodes[0], n)
    return nodes


def test_voters_and_observers_are_named_by_their_metadata_directory_as_kafkas_meta_properties_says(broker_factory):
    nodes = started_dynamic_quorum(broker_factory, ["broker,controller", "broker,controller", "broker"])
    # Every node's log directory carries Kafka's meta.properties (version 1), with this
    # cluster's id once the node knows it, and a directory id of its own.
    props = {n.node_id: meta_properties(n) for n in nodes}
    for node_id, p in props.items():
        assert (p["version"], p["node.id"], p["cluster.id"]) == ("1", str(node_id), CLUSTER_ID), p
        assert len(p["directory.id"]) == 22, p
    assert len({p["directory.id"] for p in props.values()}) == 3
    # DescribeQuorum v2 names each voter and observer with its directory id; node 2 was added
    # without one named, so the quorum took the one it fetches with.
    def described():
        d = describe_quorum(nodes[2], 2)
        return d if d["observer_directory_ids"] else None
    d = wait_until(described, "the observer's directory id to be known")
    assert d["directory_ids"] == {i: props[i]["directory.id"] for i in (1, 2)}, d
    assert d["observer_directory_ids"] == {3: props[3]["directory.id"]}, d
    assert sorted(v[0] for v in d["voters"]) == [1, 2] and [o[0] for o in d["observers"]] == [3], d
    # A voter is removed only under its own directory id.
    other = "AAAAAAAAAAAAAAAAAAAAAQ"
    code, message = raft_voter_call(nodes[0], REMOVE_RAFT_VOTER, 2, directory_id=other)
    assert code == VOTER_NOT_FOUND and other in message, message
    assert raft_voter_call(nodes[0], REMOVE_RAFT_VOTER, 2, directory_id=props[2]["directory.id"])[0] == 0
    assert voters_and_observers(nodes[0])[0] == [1]
    # The directory id survives restarts: meta.properties is read, not written anew.
    nodes[1].restart()
    assert meta_properties(nodes[1]) == props[2]


def test_a_voter_back_with_another_metadata_directory_observes_until_it_is_removed_and_added_again(broker_factory):
    nodes = started_dynamic_quorum(broker_factory, ["broker,controller"] * 3)
    leader = leader_of(nodes)
    lost = next(n for n in nodes if n.node_id != leader)
    old_id = meta_properties(lost)["directory.id"]
    # Its disk is replaced: a new, empty data directory, formatted to join, under the same id.
    lost.kill9()
    import shutil
    shutil.rmtree(lost.data_dir)
    format_ok(lost, "--no-initial-controllers")
    new_id = meta_properties(lost)["directory.id"]
    assert new_id != old_id
    lost.start()
    # It does not vote with its empty log: it says why and observes, and the set still names
    # the old directory.
    wait_until(lambda: "with another metadata directory" in lost.run_log(), "the replaced voter to say it observes")
    def observing():
        d = describe_quorum(nodes[0], 2)
        return d if lost.node_id in [o[0] for o in d["observers"]] else None
    d = wait_until(observing, "the replaced node to fetch as an observer")
    assert sorted(v[0] for v in d["voters"]) == [1, 2, 3] and d["directory_ids"][lost.node_id] == old_id, d
    assert d["observer_directory_ids"][lost.node_id] == new_id, d
    create_topic(nodes[leader - 1], "while-replaced", 2)
    # The operator removes the old voter by its directory and adds the node back with its new one.
    code, message = raft_voter_call(nodes[0], REMOVE_RAFT_VOTER, lost.node_id, directory_id=old_id)
    assert code == 0, message
    add_voter(nodes[0], lost)
    d = describe_quorum(nodes[0], 2)
    assert sorted(v[0] for v in d["voters"]) == [1, 2, 3] and d["directory_ids"][lost.node_id] == new_id, d
    wait_until(lambda: "joins raft" in lost.run_log(), "the node to join raft again")
    wait_converged(nodes, 1)


def test_a_voter_whose_controller_listener_moved_has_it_recorded_and_is_reached_there(broker_factory):
    from conftest import free_port
    nodes = started_dynamic_quorum(broker_factory, ["broker,controller"] * 3)
    leader = leader_of(nodes)
    moved = next(n for n in nodes if n.node_id != leader)
    moved.stop()
    moved.extra_ports["CONTROLLER"] = free_port()
    moved.start()
    # It asks the active controller to record its new listener (UpdateRaftVoter); every node
    # then links to it there, and DescribeQuorum lists it there.
    def recorded():
        d = describe_quorum(nodes[leader - 1], 2)
        return d if d["nodes"].get(moved.node_id) == [("CONTROLLER", moved.host, moved.extra_ports["CONTROLLER"])] else None
    wait_until(recorded, "the moved voter's new controller listener to be recorded", timeout_s=30)
    assert "controller listener moved" in moved.run_log()
    # It votes and applies from there: a topic created now reaches it, and with the leader
    # killed the other two elect one of themselves.
    create_topic(nodes[leader - 1], "after-move", 2)
    wait_converged(nodes, 1)
    nodes[leader - 1].kill9()
    survivors = [n for n in nodes if n.node_id != leader]
    assert leader_of(survivors, other_than=leader) in [n.node_id for n in survivors]
    create_topic(moved, "after-leader-kill", 2)


def test_update_raft_voter_on_the_wire_checks_the_voter_and_its_listener(broker_factory):
    nodes = started_dynamic_quorum(broker_factory, ["broker,controller", "broker,controller"])
    own = meta_properties(nodes[1])["directory.id"]

    def update(voter_id: int, directory_id: str | None, listener: tuple[str, int]) -> int:
        host, port = listener
        body = kafkawire.compact_string(CLUSTER_ID) + kafkawire.i32(-1) + kafkawire.i32(voter_id) + uuid_bytes(directory_id)
        body += kafkawire.uvarint(2) + kafkawire.compact_string("CONTROLLER") + kafkawire.compact_string(host)
        body += port.to_bytes(2, "big") + kafkawire.TAGGED_FIELDS_EMPTY
        body += kafkawire.i16(0) + kafkawire.i16(1) + kafkawire.TAGGED_FIELDS_EMPTY  # KRaftVersionFeature
        body += kafkawire.TAGGED_FIELDS_EMPTY
        with kafkawire.Connection(nodes[0].port) as conn:
            raw = conn.request(lambda cid: kafkawire.frame(kafkawire.request_header(82, 0, cid, flexible=True) + body))
        r = kafkawire.Reader(raw)
        r.skip_tagged_fields()
        r.i32()
        return r.i16()

    assert update(2, "AAAAAAAAAAAAAAAAAAAAAQ", (nodes[1].host, 1)) == VOTER_NOT_FOUND
    assert update(9, None, (nodes[1].host, 1)) == VOTER_NOT_FOUND
    assert update(2, own, ("", 0)) == INVALID_REQUEST
    # The voter's own listener, named again: nothing changes, and that is no error.
    assert update(2, own, (nodes[1].host, nodes[1].extra_ports["CONTROLLER"])) == 0
    d = describe_quorum(nodes[0], 2)
    assert d["nodes"][2] == [("CONTROLLER", nodes[1].host, nodes[1].extra_ports["CONTROLLER"])], d


def test_a_removed_voter_observes_at_once_and_votes_again_when_added_back(broker_factory):
    nodes = started_dynamic_quorum(broker_factory, ["broker,controller"] * 3)
    leader = leader_of(nodes)
    via = nodes[leader - 1]
    down, live = [n for n in nodes if n.node_id != leader]

    # Removed while it is down: its log does not have the removal, so it starts as a voter, and
    # the leader never writes to it again. Hearing from no leader, it asks the other voters,
    # learns it was removed and observes the log, which brings it the removal and what came
    # after.
    down.kill9()
    code, message = raft_voter_call(via, REMOVE_RAFT_VOTER, down.node_id)
    assert code == 0, message
    create_topic(via, "while-down", 2)
    down.start()
    wait_until(lambda: "no longer names it as a voter" in down.run_log(), "the restarted voter to find out it was removed", timeout_s=30)
    wait_until(lambda: down.node_id in voters_and_observers(via)[1], "the removed voter to fetch as an observer", timeout_s=30)

    # Removed while it runs: it applies its own removal and observes at once, with no restart.
    code, message = raft_voter_call(via, REMOVE_RAFT_VOTER, live.node_id)
    assert code == 0, message
    wait_until(lambda: "stops voting and observes" in live.run_log(), "the removed voter to observe")
    wait_until(lambda: voters_and_observers(via) == ([leader], sorted([down.node_id, live.node_id])), "both removed voters to observe", timeout_s=30)
    create_topic(via, "after-removals", 2)
    wait_converged(nodes, 2)
    assert all(n.is_alive() for n in nodes)

    # Added back under the same metadata directory, each joins raft again (its old log was
    # emptied when it left, so the leader fills it) and votes: with the leader killed, the two
    # elect one of themselves and take changes.
    for n, joined_before in ((live, 1), (down, 0)):
        add_voter(via, n)
        wait_until(lambda n=n, j=joined_before: n.run_log().count("joins raft") == j + 1, f"node {n.node_id} to join raft again")
    assert voters_and_observers(via)[0] == [1, 2, 3]
    create_topic(live, "after-rejoin", 2)
    wait_converged(nodes, 3)
    via.kill9()
    assert leader_of([down, live], other_than=leader) in (down.node_id, live.node_id)
    create_topic(down, "after-leader-kill", 2)
    wait_converged([down, live], 4)
