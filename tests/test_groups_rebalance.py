"""Rebalances of classic consumer groups, with every member in its own process
(group_member.py): three members split six partitions two each (librdkafka and kafka-python,
every client-side assignor); a member killed with SIGKILL while records are produced loses its
partitions to the survivors after its session timeout, and with commits of processed offsets
nothing is skipped; a cooperative-sticky group revokes only the partitions that move; a static
member restarted in time gets its partitions back without a rebalance.

An assignment counts as settled once the members together hold every partition exactly once
and the coordinator's DescribeGroups shows the group Stable with that same assignment.

No assertion is about speed: every wait is bounded by a generous deadline that only turns a
hang into a failure.
"""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

import clients
import group_member
from group_member import BackgroundProducer, assert_everything_read_once_or_more, produce_numbered, settled_assignment, wait_for

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6_000  # the broker's group.min.session.timeout.ms
REBALANCE_DEADLINE_S = 90.0
BROKER_CONFIG = {"group.initial.rebalance.delay.ms": 500}

CONFLUENT_MEMBER = {
    "session.timeout.ms": SESSION_TIMEOUT_MS,
    "heartbeat.interval.ms": 500,
    "partition.assignment.strategy": "range",
}
KAFKA_PYTHON_MEMBER = {
    "session_timeout_ms": SESSION_TIMEOUT_MS,
    "heartbeat_interval_ms": 500,
}


@pytest.fixture
def member_factory(tmp_path):
    yield from group_member.member_factory_fixture(tmp_path)


def describe_classic_group(bootstrap: str, group: str):
    admin = AdminClient(clients.rdkafka(bootstrap))
    return admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)


def broker_view_matches(bootstrap: str, group: str, want: dict[str, set[int]]) -> bool:
    """The coordinator's DescribeGroups says Stable and gives each member (by client id
    member-<name>) the partitions in `want`."""
    desc = describe_classic_group(bootstrap, group)
    by_client = {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}
    return str(desc.state).endswith("STABLE") and by_client == {f"member-{name}": parts for name, parts in want.items()}


def settled_and_stable(bootstrap: str, group: str, members) -> dict[str, set[int]] | None:
    """The members' assignment once they together hold every partition exactly once and the
    coordinator agrees (so it is one completed generation, not reports from two)."""
    settled = settled_assignment(members, PARTITIONS)
    return settled if settled and broker_view_matches(bootstrap, group, settled) else None


# Every client-side assignor each client has (librdkafka has no eager "sticky").
@pytest.mark.parametrize(
    "client,assignor",
    [
        ("confluent", "range"),
        ("confluent", "roundrobin"),
        ("confluent", "cooperative-sticky"),
        ("kafka-python", "range"),
        ("kafka-python", "roundrobin"),
        ("kafka-python", "sticky"),
        ("kafka-python", "cooperative-sticky"),
    ],
)
def test_three_members_get_two_partitions_each(broker_factory, member_factory, client, assignor):
    broker = broker_factory(config=BROKER_CONFIG)
    topic = f"rebalance-three-{client}-{assignor}"
    group = f"three-{client}-{assignor}"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    where = produce_numbered(broker.bootstrap, topic, PARTITIONS, 600)

    if client == "confluent":
        spec = {"config": {**CONFLUENT_MEMBER, "partition.assignment.strategy": assignor}, "incremental": assignor == "cooperative-sticky"}
    else:
        spec = {"config": KAFKA_PYTHON_MEMBER, "assignor": assignor}
    members = [member_factory(name, client=client, bootstrap=broker.bootstrap, topic=topic, group=group, **spec) for name in "abc"]
    settled = wait_for(lambda: settled_and_stable(broker.bootstrap, group, members), "three members to split the partitions", REBALANCE_DEADLINE_S, members)

    assert sorted(len(parts) for parts in settled.values()) == [2, 2, 2], f"uneven assignment {settled}"
    desc = describe_classic_group(broker.bootstrap, group)
    assert desc.partition_assignor == assignor, f"the group chose protocol {desc.partition_assignor}"

    # The group reads everything, each record with the value produced at its offset.
    def all_read():
        seen = {}
        for m in members:
            for p, o, v in m.records():
                seen[(p, o)] = v
        return seen if set(seen) >= set(where) else None

    seen = wait_for(all_read, "the group to read every record", REBALANCE_DEADLINE_S, members)
    assert {k: seen[k] for k in where} == where, "a record was read with another value than produced"
    assert set(seen) == set(where), f"records read that were never produced: {sorted(set(seen) - set(where))[:10]}"
    for m in members:
        assert m.assignment() == settled[m.name], f"member {m.name} moved from {settled[m.name]} to {m.assignment()} with no membership change"
    for m in members:
        assert m.close() == 0, m.log_tail()


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_killed_member_partitions_taken_over_with_no_gap(broker_factory, member_factory, client):
    """Three members commit what they read while records keep coming; one is SIGKILLed. The
    coordinator expires it after its session timeout, the two others split its partitions and
    resume them from its last acknowledged commit, and together the group read every record."""
    broker = broker_factory(config=BROKER_CONFIG)
    topic = f"rebalance-kill-{client}"
    group = f"kill-{client}"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    config = CONFLUENT_MEMBER if client == "confluent" else KAFKA_PYTHON_MEMBER
    members = [member_factory(name, client=client, bootstrap=broker.bootstrap, topic=topic, group=group, config=config) for name in "abc"]
    producer = BackgroundProducer(broker.bootstrap, topic, PARTITIONS)
    try:
        before = wait_for(lambda: settled_and_stable(broker.bootstrap, group, members), "three members to split the partitions", REBALANCE_DEADLINE_S, members)
        assert sorted(len(p) for p in before.values()) == [2, 2, 2], before
        victim = members[1]
        survivors = [members[0], members[2]]
        victim_partitions = before[victim.name]
        # Kill only once the victim has read and committed in each of its partitions, so that
        # the takeover has a committed offset to resume from.
        wait_for(lambda: set(victim.committed()) >= victim_partitions, "the victim to commit in all its partitions", REBALANCE_DEADLINE_S, members)
        victim_id = victim.member_id()
        assert victim_id, "the victim never reported its member id"
        log_mark = broker.log_size()
        killed_at = time.time()
        victim.kill9()
        victim_read = victim.records()
        victim_committed = victim.committed()

        after = wait_for(lambda: settled_and_stable(broker.bootstrap, group, survivors), "the survivors to take over every partition", REBALANCE_DEADLINE_S, survivors)
        assert sorted(len(p) for p in after.values()) == [3, 3], f"uneven assignment after the takeover: {after}"
        # The coordinator removed the victim for its missed session timeout: it never left.
        removed = broker.wait_for_log(rf"session timeout expired.*member={victim_id}", since=log_mark)
        assert removed, f"the broker log does not say that {victim_id} was removed for its session timeout"

        # Keep producing until the survivors have read some records the victim never saw.
        def survivors_read_new():
            return victim_partitions <= {p for m in survivors for p, _, _ in m.records(since=killed_at)}

        wait_for(survivors_read_new, "the survivors to read the victim's partitions", REBALANCE_DEADLINE_S, survivors)
    finally:
        where = producer.stop()

    end = assert_everything_read_once_or_more(members, where, PARTITIONS, REBALANCE_DEADLINE_S, survivors)

    # The survivors resumed each of the victim's partitions from its last acknowledged commit:
    # not before it (the commit would have been lost) and not after what the victim had read.
    for p in victim_partitions:
        first = min(o for m in survivors for q, o, _ in m.records(since=killed_at) if q == p)
        last_read_by_victim = max(o for q, o, _ in victim_read if q == p)
        assert victim_committed[p] <= first <= last_read_by_victim + 1, (
            f"partition {p}: survivors resumed at {first}; the victim's last acknowledged commit was {victim_committed[p]}, its last read {last_read_by_victim}"
        )

    # Everything the survivors read they committed: the group's offsets reach the log end.
    def committed_everything():
        c = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{"group.id": group, "enable.auto.commit": False}))
        try:
            got = {tp.partition: tp.offset for tp in c.committed([confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)}
        finally:
            c.close()
        return got if got == end else None

    wait_for(committed_everything, f"the group's committed offsets to reach {end}", REBALANCE_DEADLINE_S, survivors, poll_s=1.0)
    for m in survivors:
        assert m.close() == 0, m.log_tail()


def test_cooperative_sticky_revokes_only_partitions_that_move(broker_factory, member_factory):
    """Two members hold three partitions each; a third joins: each of the two gives up one
    partition (revoked, then assigned to the newcomer) and keeps the others throughout. Then the
    third leaves and the two only gain."""
    broker = broker_factory(config=BROKER_CONFIG)
    topic = "rebalance-cooperative"
    group = "cooperative"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_numbered(broker.bootstrap, topic, PARTITIONS, 300)
    config = {**CONFLUENT_MEMBER, "partition.assignment.strategy": "cooperative-sticky"}

    def member(name):
        return member_factory(name, client="confluent", bootstrap=broker.bootstrap, topic=topic, group=group, config=config, incremental=True)

    a, b = member("a"), member("b")
    start = wait_for(lambda: settled_and_stable(broker.bootstrap, group, [a, b]), "two members to split the partitions", REBALANCE_DEADLINE_S, [a, b])
    assert sorted(len(p) for p in start.values()) == [3, 3], start
    marks = {m.name: len(m.events()) for m in (a, b)}

    c = member("c")
    members = [a, b, c]
    final = wait_for(lambda: settled_and_stable(broker.bootstrap, group, members), "three members to split the partitions", REBALANCE_DEADLINE_S, members)
    assert sorted(len(p) for p in final.values()) == [2, 2, 2], f"not balanced: {final}"

    for m in (a, b):
        later = m.events()[marks[m.name]:]
        revoked = {p for ev in later if ev["e"] == "revoke" for p in ev["partitions"]}
        assigned = {p for ev in later if ev["e"] == "assign" for p in ev["partitions"]}
        moved = start[m.name] - final[m.name]
        stayed = start[m.name] & final[m.name]
        assert final[m.name] <= start[m.name], f"member {m.name} gained {final[m.name] - start[m.name]} when a member joined"
        assert revoked == moved, f"member {m.name}: revoked {sorted(revoked)}, but only {sorted(moved)} moved (kept {sorted(stayed)})"
        assert not assigned, f"member {m.name} was assigned {sorted(assigned)} again: cooperative assignment hands out only what changes"
        # Not even for a moment did it stop holding what stays.
        for ev in later:
            if ev["e"] == "assignment":
                assert stayed <= set(ev["partitions"]), f"member {m.name} held only {ev['partitions']} during the rebalance, not {sorted(stayed)}"
    c_assigned = {p for ev in c.events() if ev["e"] == "assign" for p in ev["partitions"]}
    assert c_assigned == final["c"], f"the new member was assigned {sorted(c_assigned)} in its callbacks, holds {sorted(final['c'])}"
    assert final["c"] == (start["a"] - final["a"]) | (start["b"] - final["b"]), "the new member got other partitions than those revoked"

    # The other way: c leaves, and a and b only gain its partitions.
    marks = {m.name: len(m.events()) for m in (a, b)}
    assert c.close() == 0, c.log_tail()
    after_leave = wait_for(lambda: settled_and_stable(broker.bootstrap, group, [a, b]), "the two remaining members to take c's partitions", REBALANCE_DEADLINE_S, [a, b])
    assert sorted(len(p) for p in after_leave.values()) == [3, 3], f"not balanced: {after_leave}"
    for m in (a, b):
        later = m.events()[marks[m.name]:]
        revoked = {p for ev in later if ev["e"] == "revoke" for p in ev["partitions"]}
        assigned = {p for ev in later if ev["e"] == "assign" for p in ev["partitions"]}
        assert not revoked, f"member {m.name} had {sorted(revoked)} revoked when another member left"
        assert final[m.name] <= after_leave[m.name] and assigned == after_leave[m.name] - final[m.name], (m.name, final[m.name], assigned, after_leave[m.name])

    for m in members:
        bad = [ev for ev in m.events() if ev["e"] in ("lost", "assign_failed", "revoke_failed", "consume_error")]
        assert not bad, f"member {m.name}: {bad}"
    for m in (a, b):
        assert m.close() == 0, m.log_tail()



def test_static_member_restarted_within_session_timeout_keeps_its_partitions(broker_factory, member_factory):
    """group.instance.id: a static member killed with SIGKILL and started again under the same
    instance id before its session timeout takes its old place: same partitions, no rebalance,
    nothing revoked from the other member."""
    broker = broker_factory(config=BROKER_CONFIG)
    topic = "rebalance-static"
    group = "static"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_numbered(broker.bootstrap, topic, PARTITIONS, 300)
    # Long enough that the restarted process is back well within it; it bounds nothing else.
    config = {**CONFLUENT_MEMBER, "session.timeout.ms": 30_000}

    def member(name, instance):
        return member_factory(name, client="confluent", bootstrap=broker.bootstrap, topic=topic, group=group, client_id=f"member-{instance}",
                              config={**config, "group.instance.id": f"instance-{instance}"})

    a, b = member("a", "a"), member("b", "b")
    start = wait_for(lambda: settled_and_stable(broker.bootstrap, group, [a, b]), "two static members to split the partitions", REBALANCE_DEADLINE_S, [a, b])
    b_mark = len(b.events())
    log_mark = broker.log_size()

    a.kill9()
    a2 = member("a2", "a")
    got = wait_for(lambda: a2.assignment(), "the restarted static member to get partitions", REBALANCE_DEADLINE_S, [a2, b])
    assert got == start["a"], f"the restarted static member got {sorted(got)}, it held {sorted(start['a'])}"
    rejoined = broker.wait_for_log(r"static member rejoined.*instance=instance-a", since=log_mark)
    assert rejoined, "the broker did not log the static member's rejoin"
    assert not broker.wait_for_log(r"preparing to rebalance", since=log_mark, timeout_s=0), "a static member's restart caused a rebalance"
    later = b.events()[b_mark:]
    assert not [ev for ev in later if ev["e"] in ("revoke", "assign", "lost")], f"the other member went through a rebalance: {later}"
    assert b.assignment() == start["b"]
    assert broker_view_matches(broker.bootstrap, group, {"a": start["a"], "b": start["b"]})
    for m in (a2, b):
        assert m.close() == 0, m.log_tail()


def test_a_second_static_member_with_the_same_instance_id_fences_the_first(broker_factory, member_factory):
    """Two live consumers under one group.instance.id (librdkafka's test 0102): the one that
    joins second takes the slot, and the first is told FENCED_INSTANCE_ID, a fatal error, rather
    than UNKNOWN_MEMBER_ID, which would send it to rejoin and take the slot back, the two
    evicting each other in turn."""
    broker = broker_factory(config=BROKER_CONFIG)
    topic = "rebalance-static-fenced"
    group = "static-fenced"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    config = {**CONFLUENT_MEMBER, "group.instance.id": "instance-x"}

    def member(name):
        return member_factory(name, client="confluent", bootstrap=broker.bootstrap, topic=topic, group=group, client_id=f"member-{name}", config=config)

    first = member("first")
    wait_for(lambda: settled_and_stable(broker.bootstrap, group, [first]), "the first static member to hold every partition", REBALANCE_DEADLINE_S, [first])
    log_mark = broker.log_size()

    second = member("second")

    def fenced():
        errors = [ev["error"] for ev in first.events() if ev["e"] == "consume_error"]
        return [e for e in errors if "fenced" in e.lower() or "FENCED_INSTANCE_ID" in e] or None

    got = wait_for(fenced, "the first member to be told it was fenced", REBALANCE_DEADLINE_S, [first, second])
    assert "fatal" in got[0].lower(), f"the fencing error is not fatal for librdkafka: {got[0]}"
    wait_for(lambda: settled_and_stable(broker.bootstrap, group, [second]), "the second member to hold every partition", REBALANCE_DEADLINE_S, [first, second])
    # The slot changed hands once: the fenced member never came back for it.
    rejoins = broker.wait_for_log(r"static member rejoined.*instance=instance-x", since=log_mark, timeout_s=0)
    assert len(rejoins) == 1, f"the slot changed hands {len(rejoins)} times: {rejoins}"
    assert second.member_id() and second.member_id() in rejoins[0], f"the slot went to another member than the second: {rejoins[0]}"
    desc = describe_classic_group(broker.bootstrap, group)
    assert [(m.client_id, m.group_instance_id) for m in desc.members] == [("member-second", "instance-x")], desc.members
    assert second.close() == 0, second.log_tail()
