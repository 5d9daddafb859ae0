"""Rack awareness in replication (KIP-392, issue #15) on real shardlog processes: with Kafka's
`replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector`, a partition's
leader sends a consumer whose `client.rack` names another replica's rack to fetch from that
follower, which serves it up to its high watermark; a consumer in the leader's rack, or with no
rack, reads from the leader. The history is checked whichever replica serves it."""

from __future__ import annotations

import confluent_kafka

from clients import wait_until
from cluster import start_cluster, wait_brokers
from test_replication import FAST, check_history, metric, produce, producer, wait_isr
from test_replication_reassignment import create_on

RACKS = ["rack-a", "rack-b", "rack-c"]
SELECTOR = {"replica.selector.class": "org.apache.kafka.common.replica.RackAwareReplicaSelector"}


def bytes_served(node, topic: str) -> float:
    """Record bytes the node sent to fetchers of the topic's partition 0 (0 before any)."""
    return metric(node, f'shardlog_partition_bytes_out_total{{topic="{topic}",partition="0"}}') or 0.0


def consume(nodes, topic: str, expected: int, rack: str | None) -> list[tuple[int, bytes]]:
    config = {"bootstrap.servers": ",".join(n.bootstrap for n in nodes), "group.id": f"racks-{rack}", "enable.auto.commit": False}
    if rack:
        config["client.rack"] = rack
    consumer = confluent_kafka.Consumer(config)
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes]] = []

    def enough():
        for m in consumer.consume(num_messages=500, timeout=0.5):
            if m.error() is None:
                got.append((m.offset(), m.value()))
        return len(got) >= expected

    wait_until(enough, f"a consumer in {rack} to read {expected} records", timeout_s=60)
    consumer.close()
    return got


def test_a_consumer_fetches_from_the_replica_in_its_rack(broker_factory):
    nodes = start_cluster(broker_factory, extra_config=[{**FAST, **SELECTOR, "broker.rack": rack} for rack in RACKS])
    wait_brokers(nodes)
    topic = "near"
    # Broker 1 (rack-a) leads; 2 and 3 follow.
    create_on(nodes, topic, [[1, 2, 3]])
    wait_isr(nodes, topic, [1, 2, 3])
    acked = produce(producer(nodes), topic, [b"r-%d" % i for i in range(300)])
    # Followers hold everything once they have fetched it; their high watermarks follow.
    wait_isr(nodes, topic, [1, 2, 3])

    # No rack, and the leader's rack: the leader serves.
    for rack in (None, "rack-a"):
        check_history(acked, {0: consume(nodes, topic, 300, rack)})
    assert bytes_served(nodes[1], topic) == 0 and bytes_served(nodes[2], topic) == 0, "a follower served a consumer not sent to it"

    # rack-b: the leader sends the consumer to broker 2, which serves every record.
    before = bytes_served(nodes[0], topic)
    check_history(acked, {0: consume(nodes, topic, 300, "rack-b")})
    assert bytes_served(nodes[1], topic) > 0, "the follower in the consumer's rack served nothing"
    assert bytes_served(nodes[2], topic) == 0
    assert bytes_served(nodes[0], topic) - before < 300 * 4, "the leader served the records itself"
