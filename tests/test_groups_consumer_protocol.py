"""The consumer group protocol of KIP-848 (`group.protocol=consumer`, ConsumerGroupHeartbeat) with
librdkafka members, each in its own process (group_member.py): the coordinator's assignor gives
three members two partitions each; when one closes, the other two take over all six and
resume from its commits, with no gap in what the group read while records kept coming.
ConsumerGroupDescribe (through the confluent AdminClient) and `shardlog group describe` show
the same assignment as the members.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient

import clients
import group_member
from conftest import broker_binary
from group_member import BackgroundProducer, assert_everything_read_once_or_more, settled_assignment, wait_for

PARTITIONS = 6
DEADLINE_S = 90.0  # bounds a hang; never asserted on
# Heartbeat interval, session timeout and assignor are the coordinator's business under this
# protocol; librdkafka refuses the classic settings for them.
MEMBER_CONFIG = {"group.protocol": "consumer"}


@pytest.fixture
def member_factory(tmp_path):
    yield from group_member.member_factory_fixture(tmp_path)


def describe(admin: AdminClient, group: str):
    return admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)


def described_assignment(desc) -> dict[str, set[int]]:
    """{member name: partitions} from a ConsumerGroupDescription (client ids are member-<name>)."""
    return {m.client_id.removeprefix("member-"): {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}


def settled_and_described(admin: AdminClient, group: str, members):
    """(assignment, description) once the members together hold every partition exactly once
    and ConsumerGroupDescribe shows the group Stable with exactly that assignment."""
    settled = settled_assignment(members, PARTITIONS)
    if not settled:
        return None
    desc = describe(admin, group)
    if desc.state != ConsumerGroupState.STABLE or described_assignment(desc) != settled:
        return None
    return settled, desc


def cli_describe_owners(bootstrap: str, group: str, topic: str) -> dict[int, str]:
    """{partition: CLIENT-ID} from `shardlog group describe`."""
    done = subprocess.run([str(broker_binary()), "group", "describe", group, "--bootstrap-server", bootstrap], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Group {group}: state Stable, protocol type consumer"), lines[0]
    header = lines[2].split()
    owners = {}
    for line in lines[3:]:
        row = dict(zip(header, line.split()))
        if row["TOPIC"] == topic:
            owners[int(row["PARTITION"])] = row["CLIENT-ID"]
    return owners


def test_consumer_protocol_group_splits_and_takes_over(broker_factory, member_factory):
    broker = broker_factory()
    topic = "kip848"
    group = "kip848"
    clients.create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = AdminClient(clients.rdkafka(broker.bootstrap))
    members = [member_factory(name, client="confluent", bootstrap=broker.bootstrap, topic=topic, group=group, config=MEMBER_CONFIG, incremental=True) for name in "abc"]
    a, b, c = members
    producer = BackgroundProducer(broker.bootstrap, topic, PARTITIONS)
    try:
        # ConsumerGroupDescribe (the coordinator's view) agrees with what the members hold.
        before, desc = wait_for(lambda: settled_and_described(admin, group, members), "three members to split the partitions", DEADLINE_S, members)
        assert sorted(len(p) for p in before.values()) == [2, 2, 2], f"uneven assignment {before}"
        assert desc.type == ConsumerGroupType.CONSUMER, desc.type
        assert {m.member_id for m in desc.members} == {m.member_id() for m in members}

        wait_for(lambda: set(b.committed()) >= before["b"], "member b to commit in its partitions", DEADLINE_S, members)
        mark = len(b.events())
        closed_at = time.time()
        assert b.close() == 0, b.log_tail()
        b_read = b.records()
        b_committed = b.committed()
        b_events = b.events()
        revoked = {p for ev in b_events[mark:] if ev["e"] == "revoke" for p in ev["partitions"]}
        assert revoked == before["b"], f"closing, b revoked {revoked}, it held {before['b']}"
        assert b_events[-1]["e"] == "closed"

        survivors = [a, c]
        after, desc = wait_for(lambda: settled_and_described(admin, group, survivors), "the other two to take over every partition", DEADLINE_S, survivors)
        assert sorted(len(p) for p in after.values()) == [3, 3], f"uneven assignment after b left: {after}"
        assert len(desc.members) == 2
        for m in survivors:
            assert before[m.name] <= after[m.name], f"member {m.name} lost {before[m.name] - after[m.name]} although it stayed"
        owners = cli_describe_owners(broker.bootstrap, group, topic)
        assert owners == {p: f"member-{name}" for name, parts in after.items() for p in parts}, f"shardlog group describe shows {owners}"
        listed = subprocess.run([str(broker_binary()), "group", "list", "--bootstrap-server", broker.bootstrap], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert [group, "Stable", "consumer"] in [line.split() for line in listed.stdout.splitlines()], listed.stdout

        def survivors_read_new():
            return before["b"] <= {p for m in survivors for p, _, _ in m.records(since=closed_at)}

        wait_for(survivors_read_new, "the survivors to read b's partitions", DEADLINE_S, survivors)
    finally:
        where = producer.stop()

    assert_everything_read_once_or_more(members, where, PARTITIONS, DEADLINE_S, survivors)
    for p in before["b"]:
        first = min(o for m in survivors for q, o, _ in m.records(since=closed_at) if q == p)
        last_read = max(o for q, o, _ in b_read if q == p)
        assert b_committed[p] <= first <= last_read + 1, f"partition {p}: resumed at {first}; b committed {b_committed[p]} and read up to {last_read}"
    for m in members:
        bad = [ev for ev in m.events() if ev["e"] in ("lost", "assign_failed", "revoke_failed", "consume_error")]
        assert not bad, f"member {m.name}: {bad}"
    for m in survivors:
        assert m.close() == 0, m.log_tail()
