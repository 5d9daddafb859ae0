"""Broker administration on three real nodes. ElectLeaders (`kafka-leader-election.sh`) gives
Kafka's answers: nothing to do where the preferred replica leads, no eligible leader where the
only replica is fenced. UnregisterBroker (`kafka-cluster.sh unregister --id N`): a stopped
broker's registration goes from the cluster metadata of every node, its partitions lose it as
leader, and it registers again when it comes back; a live broker unregistered registers again
at its next heartbeat, as with Kafka; an unknown id gets BROKER_ID_NOT_REGISTERED."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

import kafkawire as kw
from clients import wait_until
from cluster import create_topic, start_cluster, status, wait_brokers

BROKER_ID_NOT_REGISTERED = 102
PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE, ELECTION_NOT_NEEDED = 80, 83, 84
PREFERRED, UNCLEAN = 0, 1


def unregister(node, broker_id: int) -> tuple[int, str | None]:
    with kw.Connection(node.port) as conn:
        return kw.parse_unregister_broker_v0(conn.request(kw.unregister_broker_v0_request, broker_id))


def elect(node, election_type: int, partitions: dict[str, list[int]] | None):
    with kw.Connection(node.port) as conn:
        return kw.parse_elect_leaders_v2(conn.request(kw.elect_leaders_v2_request, election_type, partitions))


def registered(node) -> dict[int, bool]:
    """node id -> fenced, as this node's metadata has the registrations."""
    return {b["node_id"]: b["fenced"] for b in status(node)["brokers"]}


def leaders(node, topic: str) -> dict[int, int]:
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    return {p.id: p.leader for p in admin.list_topics(topic, timeout=10).topics[topic].partitions.values()}


def test_elections_and_unregistering_a_stopped_and_a_live_broker(broker_factory):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    first, second, third = nodes
    create_topic(first, "unreg", 6)
    wait_until(lambda: set(leaders(first, "unreg").values()) == {1, 2, 3}, "every broker to lead some of the topic's partitions")
    led_by_third = {p for p, leader in leaders(first, "unreg").items() if leader == 3}

    # Nothing to unregister under an id no broker has.
    assert unregister(second, 99) == (BROKER_ID_NOT_REGISTERED, "Broker ID 99 is not currently registered")

    # Every partition led by its preferred replica: nothing to elect, and for "every
    # partition" nothing is listed; a partition that is not there is named.
    assert elect(second, PREFERRED, {"unreg": [0, 1]}) == (kw.NONE, {("unreg", 0): (ELECTION_NOT_NEEDED, None), ("unreg", 1): (ELECTION_NOT_NEEDED, None)})
    assert elect(second, PREFERRED, None) == (kw.NONE, {})
    assert elect(second, PREFERRED, {"unreg": [6]})[1] == {("unreg", 6): (kw.UNKNOWN_TOPIC_OR_PARTITION, "No such partition as unreg-6")}

    third.stop()
    wait_until(lambda: registered(first).get(3) is True, "broker 3 to be fenced")
    # Its partitions have no leader, and their only replica cannot be one.
    wait_until(lambda: all(leaders(first, "unreg")[p] == -1 for p in led_by_third), "broker 3's partitions to lose their leader")
    orphans = {("unreg", p) for p in led_by_third}
    error, results = elect(first, PREFERRED, None)
    assert (error, set(results)) == (kw.NONE, orphans), results
    assert {code for code, _ in results.values()} == {PREFERRED_LEADER_NOT_AVAILABLE}
    error, results = elect(second, UNCLEAN, {"unreg": sorted(led_by_third)})
    assert {code for code, _ in results.values()} == {ELIGIBLE_LEADERS_NOT_AVAILABLE} and set(results) == orphans, results

    assert unregister(second, 3) == (kw.NONE, None)
    # Every running node applied it: the registration is gone, not merely fenced.
    for n in (first, second):
        wait_until(lambda n=n: 3 not in registered(n), f"node {n.node_id} to drop broker 3's registration")
    assert all(leaders(first, "unreg")[p] == -1 for p in led_by_third), leaders(first, "unreg")
    assert unregister(first, 3)[0] == BROKER_ID_NOT_REGISTERED, "unregistered twice"

    # Back, it registers again and leads its partitions again.
    third.launch()
    third.wait_ready()
    wait_until(lambda: registered(first).get(3) is False, "broker 3 to register again")
    wait_until(lambda: all(leaders(second, "unreg")[p] == 3 for p in led_by_third), "broker 3 to lead its partitions again")

    # A live broker told it is unregistered (at its next heartbeat) registers again.
    incarnation = {b["node_id"]: b["incarnation_id"] for b in status(first)["brokers"]}[2]
    assert unregister(first, 2) == (kw.NONE, None)
    # Told at its next heartbeat, it registers again (the controller logs each registration).
    wait_until(lambda: "registering with the controller again" in second.log_text(), "broker 2 to hear it is not registered")
    wait_until(lambda: registered(first).get(2) is False, "broker 2 to register again after it was unregistered")
    assert {b["node_id"]: b["incarnation_id"] for b in status(first)["brokers"]}[2] == incarnation, "the same process registered again"
    wait_until(lambda: set(leaders(third, "unreg").values()) == {1, 2, 3}, "every broker to lead again")
