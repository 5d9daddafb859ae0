"""Partition reassignment (KIP-455, issue #15) on real shardlog processes: AlterPartition-
Reassignments moves a partition to other brokers while an idempotent acks=all producer keeps
writing; the new replica catches up as a follower, the old one leaves only once the new one is
in sync and then deletes its copy; ListPartitionReassignments shows what is in progress, and a
cancel takes the added replica out again. Each test checks the history: every acknowledged
record read back exactly once, in offset order."""

from __future__ import annotations

import os
import signal

import confluent_kafka
import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors

import kafkawire as kw
from clients import wait_until
from cluster import start_cluster, wait_brokers
from test_replication import FAST, admin_of, check_history, create_once_placeable, partition_state, produce, producer, read_all, wait_isr

# Three combined nodes (the quorum) and a fourth, broker-only node to move partitions to.
ROLES = ["broker,controller"] * 3 + ["broker"]


def kafka_admin(nodes) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=[n.bootstrap for n in nodes if n.is_alive()], request_timeout_ms=30_000)


def create_on(nodes, topic: str, assignment: list[list[int]], configs: dict | None = None) -> None:
    """Creates the topic with an explicit replica assignment, once every named broker is
    registered and live."""
    new_topic = NewTopic(topic, num_partitions=len(assignment), replica_assignment=assignment, config=configs or {})
    create_once_placeable(nodes, new_topic, confluent_kafka.KafkaError.INVALID_REPLICA_ASSIGNMENT, f"{topic} to be created on {assignment}")


def ongoing(admin: KafkaAdminClient, topic: str) -> dict:
    """The reassignments in progress of `topic`'s partitions, by partition."""
    return {tp.partition: r for tp, r in admin.list_partition_reassignments().items() if tp.topic == topic}


def test_a_partition_moves_off_its_leader_while_producers_keep_writing(broker_factory):
    nodes = start_cluster(broker_factory, count=4, roles=ROLES, extra_config=[FAST] * 4)
    wait_brokers(nodes)
    topic = "moving"
    create_on(nodes, topic, [[1, 2, 3]], {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3])
    assert partition_state(nodes, topic)[0] == 1
    p = producer(nodes)
    admin = kafka_admin(nodes)

    def move():
        # Broker 4 takes the place of broker 1, the leader: 4 is added and catches up, then 1
        # leaves and another in-sync replica leads.
        assert admin.alter_partition_reassignments({TopicPartition(topic, 0): [4, 2, 3]}) == {TopicPartition(topic, 0): None}

    # Started while records are in flight.
    acked = produce(p, topic, [b"before-%d" % i for i in range(3000)], midway=move)
    round_ = 0

    def moved():
        nonlocal acked, round_
        round_ += 1
        acked += produce(p, topic, [b"during-%d-%d" % (round_, i) for i in range(200)])
        return partition_state(nodes, topic)[1:] == ([2, 3, 4], [2, 3, 4]) and not ongoing(admin, topic)

    wait_until(moved, "the partition to move to brokers 2, 3 and 4", timeout_s=90)
    assert partition_state(nodes, topic)[0] in (2, 3, 4)
    # The broker taken out deletes its copy.
    wait_until(lambda: not (nodes[0].data_dir / f"{topic}-0").exists(), "broker 1 to delete its copy of the partition", timeout_s=30)
    acked += produce(p, topic, [b"after-%d" % i for i in range(500)])
    check_history(acked, read_all(nodes, topic, 1, len(acked)))
    admin.close()

    # The new replica copied the leader's batches as they are.
    for n in nodes:
        n.stop()
    logs = [b"".join(f.read_bytes() for f in sorted((n.data_dir / f"{topic}-0").glob("*.log"))) for n in nodes[1:]]
    assert len(logs[0]) > 0 and logs[0] == logs[1] == logs[2], "the replicas' logs differ"


def test_a_reassignment_in_progress_is_listed_and_a_cancel_takes_the_added_replica_out(broker_factory):
    nodes = start_cluster(broker_factory, count=4, roles=ROLES, extra_config=[FAST] * 4)
    wait_brokers(nodes)
    topic = "stuck"
    create_on(nodes, topic, [[1, 2, 3], [2, 3, 1]], {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3], partitions=2)
    p = producer(nodes)
    acked = produce(p, topic, [b"a-%d" % i for i in range(200)], partitions=2)
    admin = kafka_admin(nodes[:3])

    # Kafka's answers to what cannot be done.
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    refused = admin.alter_partition_reassignments({
        TopicPartition("no-such-topic", 0): [1, 2, 3],
        tp0: [1, 2, 9],
        tp1: None,
    })
    assert refused[TopicPartition("no-such-topic", 0)] is kafka_errors.UnknownTopicOrPartitionError
    assert refused[tp0] is kafka_errors.InvalidReplicationAssignmentError, "broker 9 is not registered"
    assert refused[tp1] is kafka_errors.NoReassignmentInProgressError
    assert partition_state(nodes, topic, 0)[1:] == ([1, 2, 3], [1, 2, 3]), "nothing changed"

    # Broker 4 cannot catch up while it is stopped: the reassignment stays in progress, with
    # broker 1 kept as a replica, and writes go on with the ISR as it was.
    broker4 = nodes[3]
    # kafka-python sends these to the broker a Metadata answer named controller (in KRaft, any
    # broker, which forwards to the active controller), asked of its least loaded node, which
    # may have been broker 4: one of the others is named, since broker 4 is stopped below.
    if admin._controller_id not in (1, 2, 3):
        admin._controller_id = 1
    os.kill(broker4.pid, signal.SIGSTOP)
    try:
        assert admin.alter_partition_reassignments({tp0: [4, 2, 3]}) == {tp0: None}
        wait_until(lambda: ongoing(admin, topic) == {0: {"replicas": [4, 2, 3, 1], "adding_replicas": [4], "removing_replicas": [1]}},
                   "the reassignment to be listed")
        assert partition_state(nodes, topic, 0)[1:] == ([1, 2, 3, 4], [1, 2, 3])
        acked += produce(p, topic, [b"b-%d" % i for i in range(200)], partitions=2)
        assert ongoing(admin, topic)[0]["adding_replicas"] == [4], "4 cannot be in sync while stopped"
        # Cancelled: the replica being added goes, the others stay as they were.
        assert admin.alter_partition_reassignments({tp0: None}) == {tp0: None}
        wait_until(lambda: not ongoing(admin, topic), "the reassignment to be cancelled")
        assert partition_state(nodes, topic, 0)[1:] == ([1, 2, 3], [1, 2, 3])
    finally:
        os.kill(broker4.pid, signal.SIGCONT)
    wait_brokers(nodes)
    acked += produce(p, topic, [b"c-%d" % i for i in range(200)], partitions=2)
    wait_until(lambda: not (broker4.data_dir / f"{topic}-0").exists(), "broker 4 to hold no copy of the partition", timeout_s=30)
    check_history(acked, read_all(nodes, topic, 2, len(acked)))
    admin.close()


def alter_configs(nodes, resource_type, name: str, changes: dict[str, str | None]) -> None:
    """IncrementalAlterConfigs: SET each value, DELETE each None."""
    entries = [ConfigEntry(k, v or "", incremental_operation=AlterConfigOpType.SET if v is not None else AlterConfigOpType.DELETE)
               for k, v in changes.items()]
    admin = admin_of(nodes)  # kept until the answer: a client destroyed meanwhile drops it
    [future] = admin.incremental_alter_configs([ConfigResource(resource_type, name, incremental_configs=entries)]).values()
    future.result(timeout=30)


def batch_bytes(segment) -> int:
    """Bytes of the whole batches at the start of a segment file: the file of the segment being
    written is preallocated with its size, so its length says nothing of what was copied."""
    data = segment.read_bytes()
    return sum(12 + length for position, length in kw.segment_batch_spans(data) if position + 12 + length <= len(data))


@pytest.mark.parametrize("side", ["leader", "follower"])
def test_a_throttled_replica_being_added_waits_for_its_quota_and_in_sync_ones_do_not(broker_factory, side):
    nodes = start_cluster(broker_factory, count=4, roles=ROLES, extra_config=[FAST] * 4)
    wait_brokers(nodes)
    topic = "throttled"
    create_on(nodes, topic, [[1, 2, 3]], {"min.insync.replicas": "2"})
    wait_isr(nodes, topic, [1, 2, 3])
    p = producer(nodes)
    # Several fetches' worth (replica.fetch.max.bytes is 1 MiB a partition).
    acked = produce(p, topic, [b"%06d" % i + b"x" * 4000 for i in range(1000)])
    # One byte a second, as kafka-reassign-partitions.sh --throttle sets it: on the leader
    # (broker 1) for its replica, or on the follower being added (broker 4) for its own.
    throttled_broker = 1 if side == "leader" else 4
    alter_configs(nodes, ResourceType.BROKER, str(throttled_broker), {f"{side}.replication.throttled.rate": "1"})
    alter_configs(nodes, ResourceType.TOPIC, topic, {f"{side}.replication.throttled.replicas": f"0:{throttled_broker}"})

    admin = kafka_admin(nodes)
    assert admin.alter_partition_reassignments({TopicPartition(topic, 0): [1, 2, 3, 4]}) == {TopicPartition(topic, 0): None}
    wait_until(lambda: partition_state(nodes, topic)[1] == [1, 2, 3, 4], "broker 4 to be added")
    wait_until(lambda: (nodes[3].data_dir / f"{topic}-0").exists(), "broker 4 to start its copy")
    # The in-sync followers are not held back: acks=all goes on at full speed meanwhile.
    acked += produce(p, topic, [b"during-%d" % i for i in range(500)])
    # The first fetch is let through (the quota is measured after it), the rest wait: broker 4
    # holds at most one fetch's worth of the 4 MB, and is not in the ISR.
    copied = sum(batch_bytes(f) for f in (nodes[3].data_dir / f"{topic}-0").glob("*.log"))
    assert copied <= (1 << 20) + 8192, f"broker 4 copied {copied} bytes past a quota of 1 byte a second"
    assert ongoing(admin, topic) == {0: {"replicas": [1, 2, 3, 4], "adding_replicas": [4], "removing_replicas": []}}
    assert partition_state(nodes, topic)[2] == [1, 2, 3]

    # The throttle lifted (as --verify does once done), broker 4 catches up and the move ends.
    alter_configs(nodes, ResourceType.BROKER, str(throttled_broker), {f"{side}.replication.throttled.rate": None})
    wait_until(lambda: not ongoing(admin, topic) and partition_state(nodes, topic)[2] == [1, 2, 3, 4], "the reassignment to complete")
    check_history(acked, read_all(nodes, topic, 1, len(acked)))
    admin.close()
