"""Group administration with real admin clients: DeleteGroups (confluent-kafka's
`delete_consumer_groups`, kafka-python's `delete_groups`) removes an empty group and its committed
offsets, and refuses a live one with NON_EMPTY_GROUP; OffsetDelete (kafka-python's
`delete_group_offsets`) removes one partition's committed offset, and refuses a topic a live group
subscribes to with GROUP_SUBSCRIBED_TO_TOPIC. What is deleted stays deleted across a restart."""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

import clients

GROUP_DEADLINE_S = 120.0  # a join takes a few seconds; this only bounds a hang
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69


def commit_standalone(bootstrap: str, group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commits offsets for a group without joining it (a "simple" consumer), so the group is Empty."""
    consumer = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[confluent_kafka.TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets as librdkafka reads them (OffsetFetch); -1001 is none."""
    consumer = confluent_kafka.Consumer(clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        got = consumer.committed([confluent_kafka.TopicPartition(t, p) for t, p in partitions], timeout=30)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in got}


def live_member(bootstrap: str, group: str, topic: str) -> confluent_kafka.Consumer:
    """A librdkafka member subscribed to `topic`, returned once it holds its partitions."""
    consumer = confluent_kafka.Consumer(
        clients.rdkafka(bootstrap, **{"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500})
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + GROUP_DEADLINE_S
    while not consumer.assignment():
        assert time.monotonic() < deadline, f"the member of {group} got no assignment"
        consumer.poll(0.2)
    return consumer


def listed_groups(admin: AdminClient) -> set[str]:
    return {g.group_id for g in admin.list_consumer_groups(request_timeout=30).result(timeout=60).valid}


def test_delete_groups_removes_an_empty_group_and_refuses_a_live_one(broker_factory):
    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    topic = "admin-delete-groups"
    clients.create_topic(broker.bootstrap, topic, 2)
    partitions = [(topic, 0), (topic, 1)]
    commit_standalone(broker.bootstrap, "idle", {(topic, 0): 5, (topic, 1): 7})
    commit_standalone(broker.bootstrap, "idle-too", {(topic, 0): 3})
    assert committed(broker.bootstrap, "idle", partitions) == {(topic, 0): 5, (topic, 1): 7}
    member = live_member(broker.bootstrap, "live", topic)
    try:
        admin = AdminClient(clients.rdkafka(broker.bootstrap))
        assert {"idle", "idle-too", "live"} <= listed_groups(admin)

        futures = admin.delete_consumer_groups(["idle", "live"], request_timeout=30)
        assert futures["idle"].result(timeout=60) is None
        with pytest.raises(confluent_kafka.KafkaException) as refused:
            futures["live"].result(timeout=60)
        assert refused.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP, refused.value

        groups = listed_groups(admin)
        assert "idle" not in groups and {"idle-too", "live"} <= groups, groups
        idle = admin.describe_consumer_groups(["idle"], request_timeout=30)["idle"].result(timeout=60)
        assert idle.state == confluent_kafka.ConsumerGroupState.DEAD and not idle.members, idle
        live = admin.describe_consumer_groups(["live"], request_timeout=30)["live"].result(timeout=60)
        assert live.state == confluent_kafka.ConsumerGroupState.STABLE and len(live.members) == 1, live
        assert committed(broker.bootstrap, "idle", partitions) == {(topic, 0): -1001, (topic, 1): -1001}
        assert committed(broker.bootstrap, "idle-too", [(topic, 0)]) == {(topic, 0): 3}

        # kafka-python's admin client: a deleted (or never seen) group is GROUP_ID_NOT_FOUND; the live one still NON_EMPTY_GROUP.
        from kafka import KafkaAdminClient

        kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            results = dict(kadmin.delete_groups(["idle", "live", "idle-too"]))
        finally:
            kadmin.close()
        assert results == {"idle": "GroupIdNotFoundError", "live": "NonEmptyGroupError", "idle-too": "OK"}, results
    finally:
        member.close()

    # The deletions were written to __consumer_offsets: a restart does not bring the offsets back.
    broker.restart()
    assert committed(broker.bootstrap, "idle", partitions) == {(topic, 0): -1001, (topic, 1): -1001}
    assert committed(broker.bootstrap, "idle-too", [(topic, 0)]) == {(topic, 0): -1001}
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    assert not {"idle", "idle-too"} & listed_groups(admin)
    broker.assert_alive()


def test_offset_delete_removes_one_partition_and_refuses_a_subscribed_topic(broker_factory):
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.errors import GroupSubscribedToTopicError, NoError

    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    subscribed, other = "admin-offset-delete", "admin-offset-delete-other"
    clients.create_topic(broker.bootstrap, subscribed, 2)
    clients.create_topic(broker.bootstrap, other, 1)
    commit_standalone(broker.bootstrap, "simple", {(subscribed, 0): 4, (subscribed, 1): 6})

    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    member = live_member(broker.bootstrap, "subscriber", subscribed)
    try:
        # An empty group: one partition's offset goes, the other stays.
        result = kadmin.delete_group_offsets("simple", [TopicPartition(subscribed, 0)])
        assert result == {TopicPartition(subscribed, 0): NoError}, result
        assert committed(broker.bootstrap, "simple", [(subscribed, 0), (subscribed, 1)]) == {(subscribed, 0): -1001, (subscribed, 1): 6}

        # A live group: its subscribed topic is refused per partition, a topic it does not subscribe to is not.
        member.commit(offsets=[confluent_kafka.TopicPartition(subscribed, 0, 2), confluent_kafka.TopicPartition(other, 0, 9)], asynchronous=False)
        result = kadmin.delete_group_offsets("subscriber", [TopicPartition(subscribed, 0), TopicPartition(other, 0)])
        assert result == {TopicPartition(subscribed, 0): GroupSubscribedToTopicError, TopicPartition(other, 0): NoError}, result
        assert committed(broker.bootstrap, "subscriber", [(subscribed, 0), (other, 0)]) == {(subscribed, 0): 2, (other, 0): -1001}
    finally:
        member.close()
        kadmin.close()

    broker.restart()
    assert committed(broker.bootstrap, "simple", [(subscribed, 0), (subscribed, 1)]) == {(subscribed, 0): -1001, (subscribed, 1): 6}
    assert committed(broker.bootstrap, "subscriber", [(subscribed, 0), (other, 0)]) == {(subscribed, 0): 2, (other, 0): -1001}
    broker.assert_alive()


def test_list_groups_by_type_tells_classic_from_consumer_groups(broker_factory):
    """ListGroups v5 (KIP-848): each group's type, and the types filter that
    `kafka-consumer-groups.sh --list --type` sends."""
    from confluent_kafka import ConsumerGroupType

    broker = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    topic = "admin-group-types"
    clients.create_topic(broker.bootstrap, topic, 2)
    classic = live_member(broker.bootstrap, "typed-classic", topic)
    modern = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": "typed-consumer", "group.protocol": "consumer", "auto.offset.reset": "earliest"}))
    modern.subscribe([topic])
    try:
        deadline = time.monotonic() + GROUP_DEADLINE_S
        while not modern.assignment():
            assert time.monotonic() < deadline, "the KIP-848 member got no assignment"
            modern.poll(0.2)
        admin = AdminClient(clients.rdkafka(broker.bootstrap))

        def listed(**filters):
            groups = admin.list_consumer_groups(request_timeout=30, **filters).result(timeout=60).valid
            return {g.group_id: g.type for g in groups if g.group_id.startswith("typed-")}

        assert listed() == {"typed-classic": ConsumerGroupType.CLASSIC, "typed-consumer": ConsumerGroupType.CONSUMER}
        assert listed(types={ConsumerGroupType.CLASSIC}) == {"typed-classic": ConsumerGroupType.CLASSIC}
        assert listed(types={ConsumerGroupType.CONSUMER}) == {"typed-consumer": ConsumerGroupType.CONSUMER}
    finally:
        classic.close()
        modern.close()
