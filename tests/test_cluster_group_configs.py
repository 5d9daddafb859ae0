"""Group configs in a cluster: set through one broker, they are replicated by the controller
quorum, so every broker describes them and the group's coordinator, wherever it is, tells its
members the group's heartbeat interval, also after the whole cluster restarts."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from clients import wait_until
from cluster import KEY_TYPE_GROUP, create_topic, find_coordinator, restart_cluster, start_cluster, wait_brokers
from test_group_configs import BROKER_CONFIG, join_and_read_interval


def described_interval(node, group: str) -> str:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    [future] = admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]).values()
    return future.result(timeout=30)["consumer.heartbeat.interval.ms"].value


def test_group_configs_reach_every_broker_and_the_coordinator(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[BROKER_CONFIG] * 3)
    wait_brokers(nodes)
    topic, group = "gcfg-cluster", "gcfg-cluster-group"
    create_topic(nodes[0], topic, 1)
    coordinator = nodes[find_coordinator(nodes[0].port, group, KEY_TYPE_GROUP) - 1]
    # Altered through a broker that does not coordinate the group.
    via = next(n for n in nodes if n is not coordinator)
    admin = AdminClient({"bootstrap.servers": via.bootstrap})
    entry = ConfigEntry("consumer.heartbeat.interval.ms", "12000", incremental_operation=AlterConfigOpType.SET)
    [future] = admin.incremental_alter_configs([ConfigResource(ResourceType.GROUP, group, incremental_configs=[entry])]).values()
    future.result(timeout=30)

    for n in nodes:
        wait_until(lambda: described_interval(n, group) == "12000", f"{n.bootstrap} to describe the group's interval", timeout_s=30)
    assert join_and_read_interval(coordinator.port, group, topic) == 12000

    restart_cluster(nodes)
    wait_brokers(nodes)
    coordinator = nodes[find_coordinator(nodes[0].port, group, KEY_TYPE_GROUP) - 1]
    assert all(described_interval(n, group) == "12000" for n in nodes)
    assert join_and_read_interval(coordinator.port, group, topic) == 12000
