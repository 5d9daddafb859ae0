"""Faults in a three-node metadata quorum (issue #14): real `shardlog` processes, each a broker
and a controller with one shard and the short quorum timeouts of `cluster.make_cluster`.

- the active controller is killed (SIGKILL) while a client keeps creating topics: every
  acknowledged topic is on every node, once, with one id, and the killed node catches up;
- the active controller is cut off from the others (network namespaces, its link down): the
  majority elects a leader and goes on, the cut-off node changes nothing and never leads a
  quorum in a term another node leads, and after the link heals all three converge;
- the whole cluster restarts (clean stop, then SIGKILL on all three): topics, topic and broker
  configs, ACLs, committed offsets and records are all there, records once and in order.

Nothing sleeps to let time pass: every wait is for a condition, bounded by a deadline that only
turns a hang into a failure.
"""

from __future__ import annotations

import json
import re
import threading

import confluent_kafka
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ConfigSource, NewTopic, ResourcePatternType, ResourceType)

import clients
import netns
from clients import wait_until
from cluster import leader_of, make_cluster, restart_cluster, start_cluster, status, wait_brokers, wait_converged

INTERNAL = {"__consumer_offsets", "__transaction_state"}


def image(node) -> dict:
    """The metadata image the node last applied and persisted (written whole and renamed into
    place, so a read never sees half of one)."""
    return json.loads((node.data_dir / "__shardlog_meta" / "cluster-metadata.json").read_text())


def replication(topic: dict) -> tuple:
    """What every node must agree on about a topic: its id and, per partition, the replicas,
    the leader and the epochs (where a replica lives on a node's disks is that node's own)."""
    return (topic["id"], tuple((tuple(p["replicas"]), p["leader"], p["leader_epoch"], p["partition_epoch"]) for p in topic["partitions"]))


def wait_settled(nodes) -> list[dict]:
    """Waits until every running node has applied, and persisted, the same metadata (the same
    applied index, in its status and in its image, and the same topics), and returns the
    images."""
    def settled():
        alive = [n for n in nodes if n.is_alive()]
        indexes = {status(n)["quorum"]["applied_index"] for n in alive}
        images = [image(n) for n in alive]
        if len(indexes) != 1 or {i["applied_index"] for i in images} != indexes:
            return None
        if len({json.dumps({t: replication(m) for t, m in i["topics"].items()}, sort_keys=True) for i in images}) != 1:
            return None
        return images
    return wait_until(settled, "every running node to apply the same metadata", timeout_s=60)


ROLE_CHANGE = re.compile(r"metadata quorum role changed leader=Some\((\d+)\) role=(\w+) term=(\d+)")


def assert_one_leader_per_term(nodes, seen: set[tuple[int, int]] = frozenset()) -> dict[int, set[int]]:
    """No split brain: across every role change each node logged (and the `seen` (term, leader)
    pairs a test observed), no term has two leaders. Returns {term: leaders}."""
    leaders: dict[int, set[int]] = {}
    for n in nodes:
        for leader, _, term in ROLE_CHANGE.findall(n.log_text()):
            leaders.setdefault(int(term), set()).add(int(leader))
    for term, leader in seen:
        leaders.setdefault(term, set()).add(leader)
    split = {term: ls for term, ls in leaders.items() if len(ls) > 1}
    assert not split, f"two leaders in one term (split brain): {split}; all: {leaders}"
    return leaders


FENCED = re.compile(r"fenced, its partitions have no leader until it returns node_id=(\d+)")


def fenced_in_logs(nodes) -> set[int]:
    """The brokers any node, as active controller, ever fenced."""
    return {int(node_id) for n in nodes for node_id in FENCED.findall(n.log_text())}


def partition_dirs(nodes, topic: str) -> list[int]:
    """The partitions of `topic` that have a directory on some node's disk, one entry per
    directory."""
    return sorted(int(d.name.rsplit("-", 1)[1]) for n in nodes for d in n.data_dir.iterdir() if d.is_dir() and d.name.rsplit("-", 1)[0] == topic)


# --- 1. kill -9 the active controller while topics are created --------------------------------

CREATE_PARTITIONS = 3


class TopicCreator(threading.Thread):
    """Creates topics c0000, c0001, ... one after another, as an admin tool would: through the
    first node of `nodes` (not the active controller: it forwards), and when a creation fails
    or gets no answer, again through the next node, until one answers.

    `acked`: the names the cluster acknowledged: created, or TOPIC_ALREADY_EXISTS for a retry
    (an earlier try was applied but its answer lost; the names are used once, so it can only
    be ours). `attempted`: every name sent. `unexpected`: answers that must never come."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.admins = [AdminClient(clients.rdkafka(n.bootstrap, **{"socket.timeout.ms": 10_000})) for n in nodes]
        self.halt = threading.Event()
        self.acked: list[str] = []
        self.acked_on_retry: list[str] = []
        self.attempted: list[str] = []
        self.failed_tries: list[tuple[str, int, str]] = []
        self.unexpected: list[tuple[str, str]] = []

    def run(self) -> None:
        current = 0
        for i in range(100_000):
            if self.halt.is_set():
                return
            name = f"c{i:04d}"
            self.attempted.append(name)
            tries = 0
            while not self.halt.is_set():
                try:
                    future = self.admins[current].create_topics([NewTopic(name, num_partitions=CREATE_PARTITIONS, replication_factor=1)],
                                                                request_timeout=10, operation_timeout=10)[name]
                    future.result(timeout=30)
                    self.acked.append(name)
                    break
                except KafkaException as e:
                    error = e.args[0]
                    if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        if tries == 0:
                            self.unexpected.append((name, str(error)))
                        else:
                            self.acked.append(name)
                            self.acked_on_retry.append(name)
                        break
                    self.failed_tries.append((name, current, str(error)))
                except Exception as e:  # a client-side timeout of the future
                    self.failed_tries.append((name, current, repr(e)))
                tries += 1
                current = (current + 1) % len(self.admins)
                # A client's retry backoff, not a wait for the cluster.
                self.halt.wait(0.1)

    def stop(self) -> None:
        self.halt.set()
        self.join(120)
        assert not self.is_alive(), "the topic creator did not stop"


def check_created_topics(images: list[dict], creator: TopicCreator) -> dict[str, str]:
    """Every acknowledged topic is in every image, each topic in it was asked for, and all
    images agree on each topic's id and replicas. Returns {topic: id}."""
    names = [set(i["topics"]) - INTERNAL for i in images]
    assert all(n == names[0] for n in names), "nodes disagree on the topics"
    missing = set(creator.acked) - names[0]
    assert not missing, f"acknowledged topics lost: {sorted(missing)}"
    stray = names[0] - set(creator.attempted)
    assert not stray, f"topics nobody asked for: {sorted(stray)}"
    for i in images:
        for name in names[0]:
            assert len(i["topics"][name]["partitions"]) == CREATE_PARTITIONS, (name, i["topics"][name])
            assert replication(i["topics"][name]) == replication(images[0]["topics"][name]), name
    return {name: images[0]["topics"][name]["id"] for name in names[0]}


def test_killing_the_active_controller_while_topics_are_created_loses_no_acknowledged_topic(broker_factory):
    nodes = start_cluster(broker_factory)
    first = leader_of(nodes)
    wait_brokers(nodes)
    # Through the two other nodes first; the active controller last.
    order = [n for i, n in enumerate(nodes) if i + 1 != first] + [nodes[first - 1]]
    creator = TopicCreator(order)
    creator.start()
    try:
        wait_until(lambda: len(creator.acked) >= 10, "ten topics created before the kill", timeout_s=120)
        nodes[first - 1].kill9()
        acked_at_kill = len(creator.acked)
        # What the killed node had applied when it died: its image on disk.
        applied_by_killed = image(nodes[first - 1])
        second = leader_of(nodes, other_than=first)
        wait_until(lambda: len(creator.acked) >= acked_at_kill + 10, "ten more topics created after the kill", timeout_s=180)
    finally:
        creator.stop()
    # The new active controller fences the dead broker, and only it: the survivors' heartbeats,
    # not held by a forward to the dead controller, reach the new one in time.
    wait_until(lambda: first in fenced_in_logs(nodes), f"node {first} to be fenced", timeout_s=60)
    assert fenced_in_logs(nodes) == {first}, "a live broker was fenced after the failover (its partitions lost their leader)"
    assert not creator.unexpected, f"a first try was answered TOPIC_ALREADY_EXISTS: {creator.unexpected}"
    assert second != first
    print(f"killed node {first}, node {second} leads; {len(creator.acked)} topics acknowledged ({acked_at_kill} before the kill, "
          f"{len(creator.acked_on_retry)} as TOPIC_ALREADY_EXISTS on a retry), {len(creator.attempted)} attempted, "
          f"{len(creator.failed_tries)} failed tries: {creator.failed_tries[:5]}")

    survivors = [n for n in nodes if n.is_alive()]
    images = wait_settled(survivors)
    ids = check_created_topics(images, creator)
    # Applied once: a topic the killed node had applied is the same topic (same id) now, not
    # one created again.
    for name, topic in applied_by_killed["topics"].items():
        if name not in INTERNAL:
            assert ids.get(name) == topic["id"], f"{name} changed from {topic['id']} to {ids.get(name)}"

    # The killed node comes back, catches up, and serves metadata that lists every broker.
    nodes[first - 1].start()
    images = wait_settled(nodes)
    assert check_created_topics(images, creator) == ids
    assert len(images) == 3 and {s["topics"] for s in (status(n) for n in nodes)} == {len(ids)}
    assert leader_of(nodes) == second
    terms = assert_one_leader_per_term(nodes)
    assert {first, second} <= set().union(*terms.values()), terms
    wait_brokers(nodes)
    md = AdminClient(clients.rdkafka(nodes[first - 1].bootstrap)).list_topics(timeout=30)
    assert set(md.brokers) == {1, 2, 3}
    assert set(creator.acked) <= set(md.topics)
    # Each partition of each topic has one directory, on one node: placed once.
    for name in ids:
        wait_until(lambda: partition_dirs(nodes, name) == list(range(CREATE_PARTITIONS)), f"the partitions of {name} to be on disk once each", timeout_s=30)


# --- 2. cut the active controller off, then heal ----------------------------------------------

@pytest.fixture
def network(tmp_path):
    """Three node namespaces on a hub bridge, and an agent in each node's namespace; deleted
    (and the agents killed) whatever the test did. The brokers in them are killed by
    broker_factory's teardown (and die with this process in any case)."""
    why_not = netns.can_make_namespaces()
    if why_not:
        pytest.skip(why_not)
    net = netns.Network(3)
    net.agents = []
    try:
        net.agents = [netns.Agent(ns, tmp_path / f"agent-n{i + 1}.log") for i, ns in enumerate(net.nodes)]
        yield net
    finally:
        for agent in net.agents:
            agent.close()
        net.delete()


class Observer:
    """Every (term, leader) a node reported, in its status, across the test."""

    def __init__(self, nodes, agents):
        self.nodes, self.agents = nodes, agents
        self.seen: set[tuple[int, int, int]] = set()  # (reporting node, term, leader)

    def status(self, i: int) -> dict | None:
        """Node i's status through the agent in its namespace (None if it does not answer)."""
        try:
            s = self.agents[i - 1].call("status", timeout_s=5, admin_url=self.nodes[i - 1].admin_url)
        except netns.AgentError:
            return None
        if s["quorum"]["leader"] is not None:
            self.seen.add((i, s["quorum"]["term"], s["quorum"]["leader"]))
        return s

    def statuses(self) -> dict[int, dict]:
        return {i: s for i in range(1, len(self.nodes) + 1) if (s := self.status(i)) is not None}

    def leader(self, among: list[int], other_than: int | None = None) -> int:
        """The leader the nodes `among` all name (other than `other_than`)."""
        def agreed():
            statuses = self.statuses()
            leaders = {statuses[i]["quorum"]["leader"] for i in among if i in statuses}
            if len(leaders) != 1 or any(i not in statuses for i in among):
                return None
            leader = leaders.pop()
            return leader if leader not in (None, other_than) else None
        return wait_until(agreed, f"nodes {among} to agree on a leader other than {other_than}", timeout_s=60)

    def converged(self, topics: int) -> dict[int, dict]:
        def same():
            statuses = self.statuses()
            ok = len(statuses) == len(self.nodes) and {s["topics"] for s in statuses.values()} == {topics}
            return statuses if ok and len({s["quorum"]["applied_index"] for s in statuses.values()}) == 1 else None
        return wait_until(same, f"all nodes to apply the same metadata with {topics} topics", timeout_s=60)



def refused_creation(agent: netns.Agent, node, name: str) -> str:
    """Asks `node` (through the agent in its namespace) to create a topic, which must fail: a
    Kafka error or no answer within the client's timeout. Returns the error."""
    try:
        result = agent.call("create_topic", timeout_s=8, bootstrap=node.bootstrap, name=name, partitions=1)
    except netns.AgentError as e:
        error = str(e)
        # Not some failure of the agent itself: the client's own errors only.
        assert error.startswith(("KafkaException:", "TimeoutError:")), error
        return error
    pytest.fail(f"the cut-off node acknowledged a metadata change: {result}")


def test_a_cut_off_active_controller_changes_nothing_and_the_majority_goes_on(broker_factory, network):
    hosts = [network.address(i + 1) for i in range(3)]
    nodes = make_cluster(broker_factory, hosts=hosts, netns=network.nodes)
    for n in nodes:
        n.launch()
    for n in nodes:
        n.wait_ready()
    seen = Observer(nodes, network.agents)
    first = seen.leader([1, 2, 3])
    seen.converged(0)
    majority = [i for i in (1, 2, 3) if i != first]
    via = network.agents[majority[0] - 1]
    assert via.call("create_topic", timeout_s=30, bootstrap=nodes[majority[0] - 1].bootstrap, name="before-cut", partitions=3) == "created"
    seen.converged(1)
    # The node to be cut off is a registered broker (the majority fences it later only then).
    wait_until(lambda: set(via.call("metadata", timeout_s=30, bootstrap=nodes[majority[0] - 1].bootstrap)["brokers"]) == {"1", "2", "3"},
               "every broker to be registered", timeout_s=30)

    network.cut(first)
    isolated = network.agents[first - 1]
    # At once, while it may still believe it leads: a metadata change sent to it must fail.
    refused = [refused_creation(isolated, nodes[first - 1], "on-the-cut-off-node")]
    second = seen.leader(majority, other_than=first)
    assert second in majority
    # The majority goes on changing metadata.
    for name in ("during-cut-a", "during-cut-b"):
        assert via.call("create_topic", timeout_s=30, bootstrap=nodes[majority[0] - 1].bootstrap, name=name, partitions=3) == "created"
    # Once the others lead without it, too, a change sent to it fails, and it does not lead.
    refused.append(refused_creation(isolated, nodes[first - 1], "on-the-cut-off-node-later"))
    print(f"node {first} cut off, node {second} leads; the cut-off node answered: {refused}")
    cut_off = seen.status(first)
    assert cut_off is not None, "the cut-off node's status is still readable inside its namespace"
    assert cut_off["quorum"]["leader"] != first, f"the cut-off node still claims to lead: {cut_off['quorum']}"
    assert cut_off["topics"] == 1, "the cut-off node applied a change it could not have had committed"
    majority_status = seen.statuses()
    assert all(majority_status[i]["topics"] == 3 for i in majority)

    # The new active controller fences the cut-off broker once its session lapses; healed
    # sooner, the broker would heartbeat in time and never be fenced.
    majority_nodes = [nodes[i - 1] for i in majority]
    wait_until(lambda: first in fenced_in_logs(majority_nodes), f"node {first} to be fenced by the majority", timeout_s=60)
    network.heal(first)
    statuses = seen.converged(3)
    assert {s["quorum"]["leader"] for s in statuses.values()} == {second}
    for i in (1, 2, 3):
        md = network.agents[i - 1].call("metadata", timeout_s=30, bootstrap=nodes[i - 1].bootstrap)
        topics = set(md["topics"]) - INTERNAL
        assert topics == {"before-cut", "during-cut-a", "during-cut-b"}, f"node {i}: {topics}"
    # The same ids and placements everywhere.
    images = [image(n) for n in nodes]
    assert len({json.dumps({t: replication(m) for t, m in i["topics"].items()}, sort_keys=True) for i in images}) == 1
    # The new active controller fenced the cut-off broker, and no other.
    assert fenced_in_logs(majority_nodes) == {first}, "a broker of the majority was fenced"
    terms = assert_one_leader_per_term(nodes, {(term, leader) for _, term, leader in seen.seen})
    assert any(second in ls for ls in terms.values()) and len(terms) >= 2, terms
    # The healed node serves clients again: all three brokers listed by it.
    wait_until(lambda: set(network.agents[first - 1].call("metadata", timeout_s=30, bootstrap=nodes[first - 1].bootstrap)["brokers"]) == {"1", "2", "3"},
               "the healed node to list every broker", timeout_s=60)


# --- 3. restart the whole cluster --------------------------------------------------------------

RESTART_PARTITIONS = 12
# "events", "quiet", and the __consumer_offsets that the groups' first commits had created.
RESTART_TOPICS = 3
GROUPS = ("restart-g1", "restart-g2")


def produce(bootstrap: str, topic: str, start: int, count: int) -> list[tuple[int, int, bytes]]:
    """`count` records over every partition, idempotent and acks=all; the (partition, offset,
    value) of each, as its delivery report says."""
    producer = clients.confluent_producer(bootstrap, **{"enable.idempotence": True})
    delivered: list[tuple[int, int, bytes]] = []
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset(), msg.value()))

    for i in range(start, start + count):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % RESTART_PARTITIONS, on_delivery=report)
    assert producer.flush(120) == 0
    assert not errors, errors
    return delivered


def commit(bootstrap: str, group: str, offsets: dict[int, int]) -> None:
    consumer = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        committed = consumer.commit(offsets=[confluent_kafka.TopicPartition("events", p, o) for p, o in offsets.items()], asynchronous=False)
        assert all(tp.error is None for tp in committed), committed
    finally:
        consumer.close()


def restart_acls() -> list[AclBinding]:
    return [
        AclBinding(ResourceType.TOPIC, "events", ResourcePatternType.LITERAL, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, "ev", ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.GROUP, "restart-", ResourcePatternType.PREFIXED, "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW),
    ]


def acl_key(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def check_everything(nodes, delivered: list[tuple[int, int, bytes]], offsets: dict[str, dict[int, int]], acls: list[AclBinding]) -> None:
    """What the restart must keep, asked of every node."""
    for i, n in enumerate(nodes, start=1):
        admin = AdminClient(clients.rdkafka(n.bootstrap))
        md = admin.list_topics(timeout=30)
        assert {"events", "quiet"} <= set(md.topics), (i, sorted(md.topics))
        assert len(md.topics["events"].partitions) == RESTART_PARTITIONS
        [described] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "events")]).values()
        configs = described.result(timeout=60)
        assert (configs["retention.ms"].value, configs["retention.ms"].source) == ("86400000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value), (i, configs["retention.ms"])
        assert configs["max.message.bytes"].value == "500000", (i, configs["max.message.bytes"])
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY, AclPermissionType.ANY)
        assert {acl_key(b) for b in admin.describe_acls(everything).result(30)} == {acl_key(b) for b in acls}, i
    for i, n in enumerate(nodes, start=1):
        admin = AdminClient(clients.rdkafka(n.bootstrap))
        [described] = admin.describe_configs([ConfigResource(ResourceType.BROKER, str(i))]).values()
        configs = described.result(timeout=60)
        assert (configs["log.retention.ms"].value, configs["log.retention.ms"].source) == (str(3_600_000 * i), ConfigSource.DYNAMIC_BROKER_CONFIG.value), (i, configs["log.retention.ms"])
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient(clients.rdkafka(bootstrap))
    for group, want in offsets.items():
        [future] = admin.list_consumer_group_offsets([confluent_kafka.ConsumerGroupTopicPartitions(group)]).values()
        listed = future.result(timeout=60)
        assert {tp.partition: tp.offset for tp in listed.topic_partitions if tp.topic == "events"} == want, group
        consumer = confluent_kafka.Consumer(clients.rdkafka(nodes[-1].bootstrap, **{"group.id": group, "enable.auto.commit": False}))
        try:
            committed = consumer.committed([confluent_kafka.TopicPartition("events", p) for p in range(RESTART_PARTITIONS)], timeout=30)
        finally:
            consumer.close()
        assert {tp.partition: tp.offset for tp in committed if tp.offset >= 0} == want, group
    # Every acknowledged record once, at its offset, in order; nothing else.
    ends = {p: 0 for p in range(RESTART_PARTITIONS)}
    for p, o, _ in delivered:
        ends[p] = max(ends[p], o + 1)
    read = clients.confluent_consume(nodes[0].bootstrap, "events", ends)
    by_partition: dict[int, list[int]] = {}
    for r in read:
        by_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offsets_read == list(range(ends[p])) for p, offsets_read in by_partition.items()), "records out of order, missing or repeated"
    assert sorted((r.partition, r.offset, r.value) for r in read) == sorted(delivered)
    assert clients.confluent_watermarks(bootstrap, "events", RESTART_PARTITIONS) == {p: (0, ends[p]) for p in range(RESTART_PARTITIONS)}


def restart_all(nodes, kill: bool) -> None:
    restart_cluster(nodes, kill)
    wait_converged(nodes, RESTART_TOPICS)
    wait_brokers(nodes)


def test_a_whole_cluster_restart_keeps_topics_configs_acls_offsets_and_records(broker_factory):
    # ACLs are kept only with an authorizer; the anonymous clients here are super users.
    authorizer = {"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "super.users": "User:ANONYMOUS"}
    nodes = start_cluster(broker_factory, extra_config=[authorizer] * 3)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    follower = next(n for i, n in enumerate(nodes) if i + 1 != leader)
    bootstrap = ",".join(n.bootstrap for n in nodes)
    admin = AdminClient(clients.rdkafka(follower.bootstrap))
    for name, partitions in (("events", RESTART_PARTITIONS), ("quiet", 1)):
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(timeout=60)
        clients.wait_for_partitions(bootstrap, name, partitions)
    # The partitions spread over all three brokers.
    leaders = {p.leader for p in admin.list_topics(topic="events", timeout=30).topics["events"].partitions.values()}
    assert leaders == {1, 2, 3}, leaders

    topic_changes = [ConfigEntry("retention.ms", "86400000", incremental_operation=AlterConfigOpType.SET),
                     ConfigEntry("max.message.bytes", "500000", incremental_operation=AlterConfigOpType.SET)]
    [future] = admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, "events", incremental_configs=topic_changes)]).values()
    future.result(timeout=60)
    # Each broker's own dynamic config, set through (and sent by the client to) that broker.
    everywhere = AdminClient(clients.rdkafka(bootstrap))
    for i in (1, 2, 3):
        change = [ConfigEntry("log.retention.ms", str(3_600_000 * i), incremental_operation=AlterConfigOpType.SET)]
        [future] = everywhere.incremental_alter_configs([ConfigResource(ResourceType.BROKER, str(i), incremental_configs=change)]).values()
        future.result(timeout=60)
    acls = restart_acls()
    for future in admin.create_acls(acls).values():
        assert future.result(30) is None

    delivered = produce(bootstrap, "events", 0, 1200)
    offsets = {GROUPS[0]: {p: 10 + p for p in range(RESTART_PARTITIONS)}, GROUPS[1]: {p: 50 for p in range(0, RESTART_PARTITIONS, 2)}}
    for group, want in offsets.items():
        commit(bootstrap, group, want)
    check_everything(nodes, delivered, offsets, acls)

    restart_all(nodes, kill=False)
    check_everything(nodes, delivered, offsets, acls)

    # More of everything after the clean restart, then SIGKILL on all three.
    delivered += produce(bootstrap, "events", 1200, 1200)
    offsets[GROUPS[0]] = {p: 100 + p for p in range(RESTART_PARTITIONS)}
    commit(bootstrap, GROUPS[0], offsets[GROUPS[0]])
    extra = AclBinding(ResourceType.TOPIC, "quiet", ResourcePatternType.LITERAL, "User:carol", "*", AclOperation.DESCRIBE, AclPermissionType.ALLOW)
    admin = AdminClient(clients.rdkafka(bootstrap))
    for future in admin.create_acls([extra]).values():
        assert future.result(30) is None
    acls.append(extra)
    restart_all(nodes, kill=True)
    check_everything(nodes, delivered, offsets, acls)
