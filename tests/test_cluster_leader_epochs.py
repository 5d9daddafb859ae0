"""Leader epochs across a leader change (issue #15, first step), on three real nodes: the
broker that leads a partition is stopped (the controller fences it: the partition has no
leader, in a new epoch) and started again (it leads again, in another new epoch). Batches
appended after that carry the new epoch, the partition's `leader-epoch-checkpoint` records
where it starts, OffsetForLeaderEpoch answers end offsets per epoch and fences askers with a
stale epoch, and a librdkafka consumer reading across the change (it validates its position
with OffsetForLeaderEpoch when the epoch moves) reads every record once."""

from __future__ import annotations

import json

import confluent_kafka
from confluent_kafka.admin import AdminClient

import kafkawire as kw
from clients import wait_until
from cluster import create_topic, start_cluster, wait_brokers

TOPIC = "epochs"


def placement(node) -> dict:
    image = json.loads((node.data_dir / "__shardlog_meta" / "cluster-metadata.json").read_text())
    return image["topics"][TOPIC]["partitions"][0]


def produce(nodes, values: list[bytes]) -> None:
    p = confluent_kafka.Producer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes if n.is_alive()), "acks": "all", "enable.idempotence": True})
    errors = []
    for v in values:
        p.produce(TOPIC, v, partition=0, on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert p.flush(30) == 0 and not errors, errors


def ask(port: int, version: int, partitions: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(error, epoch, end offset) for each (current_leader_epoch, leader_epoch) asked, one
    request each."""
    out = []
    with kw.Connection(port) as conn:
        for current, epoch in partitions:
            body = conn.request(kw.offset_for_leader_epoch_request, version, [(TOPIC, [(0, current, epoch)])])
            out.append(kw.parse_offset_for_leader_epoch(body, version)[(TOPIC, 0)])
    return out


def test_a_leader_change_starts_a_new_epoch_in_batches_checkpoint_and_offset_for_leader_epoch(broker_factory):
    nodes = start_cluster(broker_factory)
    wait_brokers(nodes)
    create_topic(nodes[0], TOPIC, 1)
    admin = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
    leader_id = wait_until(lambda: admin.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions[0].leader, "the partition to have a leader", timeout_s=30)
    leader = nodes[leader_id - 1]
    others = [n for n in nodes if n is not leader]

    produce(nodes, [b"before-%d" % i for i in range(10)])
    consumer = confluent_kafka.Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes), "group.id": "epochs", "enable.auto.commit": False,
                                         "topic.metadata.refresh.interval.ms": 500})
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    read: list[tuple[int, bytes]] = []

    def read_until(count: int) -> bool:
        for m in consumer.consume(num_messages=100, timeout=0.5):
            assert m.error() is None, m.error()
            read.append((m.offset(), m.value()))
        return len(read) >= count

    wait_until(lambda: read_until(10), "the consumer to read the first 10 records", timeout_s=60)

    leader.stop()
    fenced = wait_until(lambda: placement(others[0]) if placement(others[0])["leader"] == -1 else None, "the stopped leader to be fenced", timeout_s=30)
    leader.launch()
    leader.wait_ready()

    def leads_again(node):
        p = placement(node)
        return p if p["leader"] == leader_id and p["leader_epoch"] > fenced["leader_epoch"] else None

    # Its own image before the restart still names it leader, in the old epoch: wait for the new.
    epoch = wait_until(lambda: leads_again(others[0]), "the restarted broker to lead again", timeout_s=30)["leader_epoch"]
    assert wait_until(lambda: leads_again(leader), "the restarted broker to apply its leadership", timeout_s=30)["leader_epoch"] == epoch
    assert epoch > fenced["leader_epoch"] > 0

    produce(nodes, [b"after-%d" % i for i in range(5)])
    wait_until(lambda: read_until(15), "the consumer to read across the leader change", timeout_s=60)
    consumer.close()
    assert read == [(i, b"before-%d" % i) for i in range(10)] + [(10 + i, b"after-%d" % i) for i in range(5)], "every record once, in order"

    # Kafka's checkpoint format, with the epoch that wrote from offset 10 on.
    assert (leader.data_dir / f"{TOPIC}-0" / "leader-epoch-checkpoint").read_text() == f"0\n2\n0 0\n{epoch} 10\n"
    with kw.Connection(leader.port) as conn:
        [fetched] = kw.parse_fetch_v4(conn.request(kw.fetch_v4_request, TOPIC, 0, 0))
    assert {e for offset, e in kw.batch_leader_epochs(fetched.records) if offset < 10} == {0}
    assert {e for offset, e in kw.batch_leader_epochs(fetched.records) if offset >= 10} == {epoch}

    for version in (2, 3, 4):
        got = ask(leader.port, version, [(-1, 0), (-1, epoch - 1), (epoch, epoch), (-1, epoch + 1), (epoch - 1, epoch), (epoch + 1, epoch)])
        assert got == [
            (kw.NONE, 0, 10),  # epoch 0 ended where the next one started
            (kw.NONE, 0, 10),  # the fenced epoch wrote nothing: the largest epoch below it
            (kw.NONE, epoch, 15),  # the current epoch ends at the log end
            (kw.NONE, -1, -1),  # an epoch the log does not know
            (kw.FENCED_LEADER_EPOCH, -1, -1),  # the asker's view is stale
            (kw.UNKNOWN_LEADER_EPOCH, -1, -1),  # the asker is ahead of this broker
        ], f"v{version}"
        # A broker that does not lead the partition sends the asker to the leader.
        assert ask(others[0].port, version, [(-1, 0)]) == [(kw.NOT_LEADER_OR_FOLLOWER, -1, -1)]

    # Metadata v7+ reports the real epoch (librdkafka's metadata carries it).
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse

    from test_api_versions import Client

    c = Client(leader.port)
    try:
        R = MetadataRequest[9]
        r = c.call(MetadataRequest, MetadataResponse, 9, topics=[R.MetadataRequestTopic(name=TOPIC)], allow_auto_topic_creation=False,
                   include_cluster_authorized_operations=False, include_topic_authorized_operations=False)
        [p] = [p for t in r.topics for p in t.partitions]
        assert (p.leader_id, p.leader_epoch) == (leader_id, epoch), r
    finally:
        c.close()
