"""A dynamic metadata quorum (KIP-853): nodes name `controller.quorum.bootstrap.servers`
instead of `controller.quorum.voters`, controllers are formatted with `shardlog format`
(kafka-storage.sh's --standalone / --initial-controllers / --no-initial-controllers), and the
voter set is kept in the metadata log (kraft.version 1).

Real shardlog processes, one shard each, short quorum timeouts.
"""

from __future__ import annotations

import subprocess

import kafkawire
from conftest import broker_binary
from cluster import create_topic, leader_of, make_cluster, restart_cluster, status, wait_converged
from test_cluster_quorum import describe_quorum


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
