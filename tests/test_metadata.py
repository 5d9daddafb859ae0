"""Topic administration and metadata through two admin clients (librdkafka's AdminClient and
kafka-python's KafkaAdminClient), checked against each other and against raw Metadata."""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

import clients
import kafkawire


def kafka_python_admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)


def raw_metadata(port: int, topics: list[str] | None):
    with kafkawire.Connection(port) as conn:
        return kafkawire.parse_metadata_v1(conn.request(kafkawire.metadata_v1_request, topics))


def test_create_topic_with_8_partitions_kafka_python(broker):
    from kafka.admin import NewTopic as KpNewTopic

    admin = kafka_python_admin(broker.bootstrap)
    try:
        admin.create_topics([KpNewTopic(name="eight", num_partitions=8, replication_factor=1)])
        [described] = admin.describe_topics(["eight"])
    finally:
        admin.close()
    assert described["error_code"] == 0, described
    assert sorted(p["partition_index"] for p in described["partitions"]) == list(range(8))
    assert all(p["leader_id"] == 1 for p in described["partitions"]), described

    # librdkafka sees the same 8 partitions, all led by the one broker.
    md = AdminClient(clients.rdkafka(broker.bootstrap)).list_topics(timeout=30)
    assert sorted(md.topics["eight"].partitions) == list(range(8))
    assert [b.port for b in md.brokers.values()] == [broker.port]

    # And so does a hand-built Metadata v1 request.
    brokers, topics = raw_metadata(broker.port, ["eight"])
    assert brokers == [(1, "127.0.0.1", broker.port)]
    assert topics["eight"] == (0, list(range(8)))


def test_create_topic_with_8_partitions_librdkafka_then_grow_and_delete(broker):
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.create_topics([NewTopic("grow", num_partitions=8, replication_factor=1)])["grow"].result(timeout=60)
    clients.wait_for_partitions(broker.bootstrap, "grow", 8)
    assert sorted(admin.list_topics(timeout=30).topics["grow"].partitions) == list(range(8))

    # Creating it again is refused with TOPIC_ALREADY_EXISTS (36).
    with pytest.raises(KafkaException) as exc:
        admin.create_topics([NewTopic("grow", num_partitions=8, replication_factor=1)])["grow"].result(timeout=60)
    assert exc.value.args[0].code() == 36, exc.value

    admin.create_partitions([NewPartitions("grow", 12)])["grow"].result(timeout=60)
    clients.wait_for_partitions(broker.bootstrap, "grow", 12)

    # The new partitions take writes; the count survives a restart.
    # Without auto-creation: librdkafka refreshes the metadata of topics it knows after a
    # reconnect, which would otherwise create "grow" again after it is deleted below.
    producer = clients.confluent_producer(broker.bootstrap, **{"allow.auto.create.topics": False})
    for p in range(12):
        producer.produce("grow", value=f"p{p}".encode(), partition=p)
    assert producer.flush(30) == 0
    del producer
    broker.restart()
    assert raw_metadata(broker.port, ["grow"])[1]["grow"] == (0, list(range(12)))
    assert {p: hw for p, (_, hw) in clients.confluent_watermarks(broker.bootstrap, "grow", 12).items()} == {p: 1 for p in range(12)}

    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.delete_topics(["grow"])["grow"].result(timeout=60)
    deadline = time.monotonic() + 30
    while "grow" in raw_metadata(broker.port, None)[1]:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.1)
    # Gone for good: not back after a restart either.
    broker.restart()
    assert "grow" not in raw_metadata(broker.port, None)[1]


def test_auto_create_uses_num_partitions(broker_factory):
    broker = broker_factory(config={"num.partitions": 3, "auto.create.topics.enable": "true"})
    producer = clients.confluent_producer(broker.bootstrap)
    producer.produce("auto-created", value=b"x")
    assert producer.flush(30) == 0
    _, topics = raw_metadata(broker.port, ["auto-created"])
    assert topics["auto-created"] == (0, [0, 1, 2])


def test_auto_create_disabled_reports_unknown_topic(broker_factory):
    broker = broker_factory(config={"auto.create.topics.enable": "false"})
    _, topics = raw_metadata(broker.port, ["not-there"])
    assert topics["not-there"][0] == kafkawire.UNKNOWN_TOPIC_OR_PARTITION
    assert "not-there" not in raw_metadata(broker.port, None)[1]


def test_describe_cluster(broker):
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    cluster = admin.describe_cluster(request_timeout=30).result(timeout=60)
    assert cluster.cluster_id, "empty cluster id"
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", broker.port)]
    assert cluster.controller.id == 1
    # The cluster id is persisted: the same after a restart.
    broker.restart()
    admin = AdminClient(clients.rdkafka(broker.bootstrap))  # keep the client alive until the future completes
    again = admin.describe_cluster(request_timeout=30).result(timeout=60)
    assert again.cluster_id == cluster.cluster_id


def test_recreated_topic_starts_empty(broker):
    """Deleting a topic deletes its data: a new topic with the same name starts at offset 0 with
    nothing in it, also after a restart and after kill -9."""
    clients.create_topic(broker.bootstrap, "again", 2)
    producer = clients.confluent_producer(broker.bootstrap)
    for i in range(50):
        producer.produce("again", value=f"old-{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    admin.delete_topics(["again"])["again"].result(timeout=60)
    deadline = time.monotonic() + 30
    while True:
        try:
            clients.create_topic(broker.bootstrap, "again", 2)
            break
        except KafkaException as e:
            # The deletion may still be finishing: TOPIC_ALREADY_EXISTS, retried until the deadline.
            assert e.args[0].code() == 36 and time.monotonic() < deadline, e
            time.sleep(0.2)

    def check_empty():
        assert clients.confluent_watermarks(broker.bootstrap, "again", 2) == {0: (0, 0), 1: (0, 0)}

    check_empty()
    producer = clients.confluent_producer(broker.bootstrap)
    producer.produce("again", value=b"new", partition=0)
    assert producer.flush(30) == 0
    assert [r.value for r in clients.confluent_consume(broker.bootstrap, "again", {0: 1, 1: 0})] == [b"new"]
    broker.restart()
    assert [r.value for r in clients.confluent_consume(broker.bootstrap, "again", {0: 1, 1: 0})] == [b"new"]
    assert clients.confluent_watermarks(broker.bootstrap, "again", 2) == {0: (0, 1), 1: (0, 0)}
    broker.kill9()
    broker.start()
    assert clients.confluent_watermarks(broker.bootstrap, "again", 2) == {0: (0, 1), 1: (0, 0)}


def test_a_data_directory_from_before_the_metadata_log_starts_with_its_topics_and_records(broker):
    """Versions before the metadata quorum kept the whole image in cluster-metadata.json, with
    no replicas and no applied index, and had no quorum.log. Such a directory must start with
    every topic, partition placement and record, and its image is written to the new log."""
    import json

    clients.create_topic(broker.bootstrap, "kept", 4)
    producer = clients.confluent_producer(broker.bootstrap, acks="all")
    for i in range(200):
        producer.produce("kept", value=f"v{i}".encode(), partition=i % 4)
    assert producer.flush(30) == 0
    # Committed offsets, in the __consumer_offsets that the commit had created.
    offsets = [confluent_kafka.TopicPartition("kept", p, 10 + p) for p in range(4)]
    group = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "kept-group", "enable.auto.commit": False}))
    try:
        group.commit(offsets=offsets, asynchronous=False)
    finally:
        group.close()
    broker.stop()
    meta_dir = broker.data_dir / "__shardlog_meta"
    image = json.loads((meta_dir / "cluster-metadata.json").read_text())
    placement = [(p["shard"], p["log_dir"]) for p in image["topics"]["kept"]["partitions"]]
    offsets_placement = [(p["shard"], p["log_dir"]) for p in image["topics"]["__consumer_offsets"]["partitions"]]
    # Turn it into what the earlier version wrote.
    image.pop("applied_index")
    for topic in image["topics"].values():
        for p in topic["partitions"]:
            for key in ("hosted", "replicas", "isr", "leader", "leader_epoch", "partition_epoch"):
                p.pop(key)
    (meta_dir / "cluster-metadata.json").write_text(json.dumps(image))
    (meta_dir / "quorum.log").unlink()

    broker.start()
    after = json.loads((meta_dir / "cluster-metadata.json").read_text())
    assert after["cluster_id"] == image["cluster_id"]
    assert after["topics"]["kept"]["id"] == image["topics"]["kept"]["id"]
    assert [(p["shard"], p["log_dir"]) for p in after["topics"]["kept"]["partitions"]] == placement
    assert all(p["replicas"] == [1] and p["leader"] == 1 for p in after["topics"]["kept"]["partitions"])
    assert after["applied_index"] > 0
    records = clients.confluent_consume(broker.bootstrap, "kept", {p: 50 for p in range(4)})
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(200))
    # The internal topic stays where it was, with the group's offsets.
    assert [(p["shard"], p["log_dir"]) for p in after["topics"]["__consumer_offsets"]["partitions"]] == offsets_placement
    assert after["topics"]["__consumer_offsets"]["id"] == image["topics"]["__consumer_offsets"]["id"]
    group = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "kept-group", "enable.auto.commit": False}))
    try:
        committed = group.committed([confluent_kafka.TopicPartition("kept", p) for p in range(4)], timeout=30)
    finally:
        group.close()
    assert {tp.partition: tp.offset for tp in committed} == {p: 10 + p for p in range(4)}
    # And the new log alone rebuilds it: a second restart replays nothing twice.
    broker.restart()
    again = json.loads((meta_dir / "cluster-metadata.json").read_text())
    assert again["topics"] == after["topics"]
