"""The metadata quorum: three real shardlog processes, each a broker and a controller
(`process.roles=broker,controller`), replicate their metadata through Raft.

Each node runs one shard and short quorum timeouts from its configuration, so that elections
take a second, not the defaults' several.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

import clients
import kafkawire
from clients import wait_until
from cluster import CLUSTER_ID, NOT_LEADER_OR_FOLLOWER, create_topic, leader_of, make_cluster, restart_cluster, start_cluster, status, wait_brokers, wait_converged


def test_three_nodes_spread_a_topic_and_two_clients_round_trip_through_one_address(broker_factory):
    nodes = start_cluster(broker_factory)
    leader = leader_of(nodes)
    assert leader in (1, 2, 3)
    terms = {status(n)["quorum"]["term"] for n in nodes}
    assert len(terms) == 1, f"nodes disagree on the term: {terms}"
    assert {status(n)["cluster_id"] for n in nodes} == {CLUSTER_ID}
    wait_brokers(nodes)
    # Created through a node that is not the active controller: it forwards the request.
    follower = next(n for i, n in enumerate(nodes) if i + 1 != leader)
    create_topic(follower, "orders", 12)
    wait_converged(nodes, 1)
    progress = status(nodes[leader - 1])["quorum"]["voter_progress"]
    assert sorted(p["node_id"] for p in progress) == [1, 2, 3]
    # One replica per partition (until replication): 4 partitions on each broker, and the data
    # directories say so.
    held = {i + 1: sorted(int(p.name.rsplit("-", 1)[1]) for p in n.data_dir.iterdir() if p.name.startswith("orders-")) for i, n in enumerate(nodes)}
    assert sorted(len(v) for v in held.values()) == [4, 4, 4], held
    assert sorted(sum(held.values(), [])) == list(range(12))
    md = AdminClient({"bootstrap.servers": follower.bootstrap}).list_topics(topic="orders", timeout=10)
    assert {p: md.topics["orders"].partitions[p].leader for p in range(12)} == {p: node for node, ps in held.items() for p in ps}

    # Two independent clients, each given one node's address only.
    bootstrap = nodes[0].bootstrap
    producer = clients.confluent_producer(bootstrap, **{"enable.idempotence": True, "acks": "all"})
    for i in range(1200):
        producer.produce("orders", key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 12)
    assert producer.flush(60) == 0
    kafka_python = clients.kafka_python_consume(nodes[2].bootstrap, "orders", 12)
    assert sorted(r.value for r in kafka_python) == sorted(f"v{i}".encode() for i in range(1200))
    librdkafka = clients.confluent_consume(bootstrap, "orders", {p: 100 for p in range(12)})
    assert sorted((r.partition, r.offset) for r in librdkafka) == sorted((p, o) for p in range(12) for o in range(100))
    # A produce sent to a broker that does not lead the partition is told so.
    not_leader = next(i + 1 for i in range(3) if 0 not in held[i + 1])
    with kafkawire.Connection(nodes[not_leader - 1].port) as conn:
        body = conn.request(kafkawire.produce_v3_request, "orders", 0, kafkawire.record_batch([(None, b"x")]), acks=1)
    [(_, _, code, _)] = kafkawire.parse_produce_v3(body)
    assert code == NOT_LEADER_OR_FOLLOWER


DESCRIBE_QUORUM = 55


def describe_quorum(node, version: int) -> dict:
    """DescribeQuorum for __cluster_metadata-0 on the wire (flexible from v0), as
    kafka-metadata-quorum.sh sends it; returns the partition's fields."""
    body = (
        kafkawire.uvarint(2)  # one topic (compact array: length + 1)
        + kafkawire.compact_string("__cluster_metadata")
        + kafkawire.uvarint(2)  # one partition
        + kafkawire.i32(0)
        + kafkawire.TAGGED_FIELDS_EMPTY
        + kafkawire.TAGGED_FIELDS_EMPTY
        + kafkawire.TAGGED_FIELDS_EMPTY
    )
    with kafkawire.Connection(node.port) as conn:
        raw = conn.request(lambda cid: kafkawire.frame(kafkawire.request_header(DESCRIBE_QUORUM, version, cid, flexible=True) + body))
    r = kafkawire.Reader(raw)
    r.skip_tagged_fields()  # response header v1
    out = {"error_code": r.i16()}
    if version >= 2:
        length = r.uvarint()
        if length > 0:
            r.take(length - 1)  # error message
    assert r.uvarint() == 2, "one topic"
    name_length = r.uvarint()
    assert r.take(name_length - 1) == b"__cluster_metadata"
    assert r.uvarint() == 2, "one partition"
    out["partition"] = r.i32()
    out["partition_error"] = r.i16()
    if version >= 2:
        length = r.uvarint()
        if length > 0:
            r.take(length - 1)
    out["leader"], out["epoch"], out["high_watermark"] = r.i32(), r.i32(), r.i64()
    times = {}

    def replicas(directory_ids: dict) -> list[tuple[int, int]]:
        out = []
        for _ in range(r.uvarint() - 1):
            replica = r.i32()
            if version >= 2:
                directory_ids[replica] = kafka_uuid(r.take(16))
            log_end = r.i64()
            if version >= 1:
                times[replica] = (r.i64(), r.i64())  # last fetch, last caught up
            r.skip_tagged_fields()
            out.append((replica, log_end))
        return out
    out["directory_ids"], out["observer_directory_ids"] = {}, {}
    out["voters"] = replicas(out["directory_ids"])
    out["voter_times"] = dict(times)
    out["observers"] = replicas(out["observer_directory_ids"])
    if version >= 2:
        r.skip_tagged_fields()  # the partition's
        r.skip_tagged_fields()  # the topic's
        nodes = {}
        for _ in range(r.uvarint() - 1):
            node_id = r.i32()
            listeners = []
            for _ in range(r.uvarint() - 1):
                name = r.take(r.uvarint() - 1).decode()
                host = r.take(r.uvarint() - 1).decode()
                port = int.from_bytes(r.take(2), "big")
                r.skip_tagged_fields()
                listeners.append((name, host, port))
            r.skip_tagged_fields()
            nodes[node_id] = listeners
        out["nodes"] = nodes
    return out


def kafka_uuid(raw: bytes) -> str | None:
    """A Uuid as Kafka prints it (URL-safe base64, no padding); None for the zero Uuid."""
    import base64
    return None if raw == bytes(16) else base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_describe_quorum_names_the_active_controller_from_any_node(broker_factory):
    nodes = start_cluster(broker_factory)
    leader = leader_of(nodes)
    wait_converged(nodes, 0)
    for n in nodes:
        for version in (0, 1, 2):
            d = describe_quorum(n, version)
            assert (d["error_code"], d["partition_error"]) == (0, 0), d
            assert d["leader"] == leader and d["epoch"] == status(n)["quorum"]["term"], d
            assert sorted(v[0] for v in d["voters"]) == [1, 2, 3], d
            assert d["high_watermark"] >= 1 and dict(d["voters"])[leader] >= d["high_watermark"], d
    # From v1, when each voter last fetched (answered the leader) and last had its whole log:
    # known for every voter once the followers answered this leader (-1 is "unknown").
    def all_timed():
        times = describe_quorum(nodes[0], 1)["voter_times"]
        return sorted(times) == [1, 2, 3] and all(fetched > 0 and caught_up > 0 for fetched, caught_up in times.values())
    wait_until(all_timed, "every voter's last fetch and caught-up times to be known")
    # Static voters (kraft.version 0) are not changed at run time, as Kafka refuses it.
    from test_cluster_dynamic_quorum import ADD_RAFT_VOTER, REMOVE_RAFT_VOTER, raft_voter_call
    UNSUPPORTED_VERSION = 35
    assert raft_voter_call(nodes[0], ADD_RAFT_VOTER, 7, ("127.0.0.1", 1))[0] == UNSUPPORTED_VERSION
    assert raft_voter_call(nodes[1], REMOVE_RAFT_VOTER, leader)[0] == UNSUPPORTED_VERSION


def test_killing_the_active_controller_elects_another_that_loses_no_topic(broker_factory):
    nodes = start_cluster(broker_factory)
    first = leader_of(nodes)
    create_topic(nodes[first - 1], "before-kill", 2)
    wait_converged(nodes, 1)
    nodes[first - 1].kill9()
    second = leader_of(nodes, other_than=first)
    create_topic(nodes[second - 1], "after-kill", 2)
    wait_converged(nodes, 2)
    # The killed node comes back as a follower and catches up on what it missed.
    nodes[first - 1].start()
    wait_converged(nodes, 2)
    assert leader_of(nodes) == second
    # A whole-cluster restart keeps every topic.
    restart_cluster(nodes)
    wait_converged(nodes, 2)


def test_a_node_of_another_cluster_is_refused_and_changes_nothing(broker_factory):
    nodes = make_cluster(broker_factory, cluster_ids=[CLUSTER_ID, CLUSTER_ID, "b3RoZXItY2x1c3Rlcg"])
    good, stranger = nodes[:2], nodes[2]
    offsets = [n.log_size() for n in good]
    for n in nodes:
        n.launch()
    for n in good:
        n.wait_ready()
    leader = leader_of(good)
    create_topic(good[leader - 1], "only-ours", 1)
    wait_converged(good, 1)
    refused = [n.wait_for_log("refused a metadata quorum connection from a node of another cluster", since, timeout_s=15) for n, since in zip(good, offsets)]
    assert all(refused), "each node of the cluster must log the refusal"
    # The stranger never joins: it has no leader and no cluster metadata of ours.
    assert stranger.is_alive()
    assert "shardlog is ready" not in stranger.run_log()
    assert {status(n)["quorum"]["term"] for n in good} == {status(good[0])["quorum"]["term"]}


def test_a_silent_broker_is_fenced_leads_nothing_and_returns_when_it_heartbeats(broker_factory):
    nodes = start_cluster(broker_factory)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    create_topic(nodes[leader - 1], "fenced", 6)
    wait_converged(nodes, 1)
    victim = next(i + 1 for i in range(3) if i + 1 != leader)
    admin = AdminClient({"bootstrap.servers": nodes[leader - 1].bootstrap})
    led = sorted(p for p, pm in admin.list_topics(topic="fenced", timeout=10).topics["fenced"].partitions.items() if pm.leader == victim)
    assert len(led) == 2, led
    nodes[victim - 1].kill9()

    def fenced():
        md = admin.list_topics(topic="fenced", timeout=10)
        partitions = md.topics["fenced"].partitions
        return victim not in md.brokers and all(partitions[p].leader == -1 for p in led)
    wait_until(fenced, f"node {victim} to be fenced and its partitions {led} left without a leader", timeout_s=30)
    # The others still lead theirs.
    partitions = admin.list_topics(topic="fenced", timeout=10).topics["fenced"].partitions
    assert all(pm.leader in (1, 2, 3) for p, pm in partitions.items() if p not in led)
    nodes[victim - 1].start()

    def back():
        md = admin.list_topics(topic="fenced", timeout=10)
        return victim in md.brokers and all(md.topics["fenced"].partitions[p].leader == victim for p in led)
    wait_until(back, f"node {victim} to register again and lead {led}", timeout_s=30)
    producer = clients.confluent_producer(nodes[leader - 1].bootstrap)
    for p in led:
        producer.produce("fenced", value=b"after", partition=p)
    assert producer.flush(30) == 0


def test_a_voter_behind_the_compacted_metadata_log_catches_up_from_a_snapshot(broker_factory):
    """With a tiny snapshot threshold the leader compacts its metadata log while a voter is
    down; on its return that voter is sent a snapshot, which creates what it missed and deletes
    what was deleted meanwhile. Every node then restarts from its compacted log."""
    nodes = start_cluster(broker_factory, extra_config=[{"metadata.log.max.record.bytes.between.snapshots": 2048}] * 3)
    leader = leader_of(nodes)
    wait_brokers(nodes)
    create_topic(nodes[leader - 1], "doomed", 6)
    wait_converged(nodes, 1)
    lagging = next(i + 1 for i in range(3) if i + 1 != leader)
    behind = nodes[lagging - 1]
    assert any(p.name.startswith("doomed-") for p in behind.data_dir.iterdir()), "6 partitions over 3 nodes: 2 are on each"
    behind.kill9()
    admin = AdminClient({"bootstrap.servers": nodes[leader - 1].bootstrap})
    admin.delete_topics(["doomed"])["doomed"].result(timeout=30)
    # The deletion's record follows every entry the stopped voter can have: a snapshot at or
    # past it is one that voter must be sent.
    left_at = status(nodes[leader - 1])["quorum"]["applied_index"]
    for i in range(8):
        create_topic(nodes[leader - 1], f"snap-{i}", 3)
    wait_until(lambda: status(nodes[leader - 1])["quorum"]["snapshot_index"] >= left_at, "the leader to compact its metadata log past the stopped voter", timeout_s=30)
    since = behind.log_size()
    behind.start()
    assert behind.wait_for_log("installing a metadata snapshot from the active controller", since, timeout_s=30)
    wait_converged(nodes, 8)
    assert status(behind)["quorum"]["snapshot_index"] >= left_at
    # What the snapshot brought is real on disk: the deleted topic's partitions are gone, and
    # the new topics' partitions this node leads exist.
    wait_until(lambda: not any(p.name.startswith("doomed-") for p in behind.data_dir.iterdir()), "the deleted topic's partitions to leave the returning node's disk", timeout_s=30)
    md = AdminClient({"bootstrap.servers": behind.bootstrap}).list_topics(timeout=10)
    led = sorted((t, p) for t in md.topics if t.startswith("snap-") for p, pm in md.topics[t].partitions.items() if pm.leader == lagging)
    assert led, "the returning node leads some of the new partitions"
    producer = clients.confluent_producer(behind.bootstrap, acks="all")
    for t, p in led:
        producer.produce(t, value=b"after the snapshot", partition=p)
    assert producer.flush(30) == 0
    held = {p.name for p in behind.data_dir.iterdir()}
    assert all(f"{t}-{p}" in held for t, p in led), (led, held)
    # Every node starts again from its compacted log.
    restart_cluster(nodes)
    wait_converged(nodes, 8)
