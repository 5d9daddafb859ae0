"""Group requests that Kafka refuses, sent as raw frames (kafkawire.py), each answered with the
error code Kafka gives: a JoinGroup with another protocol type than the group's, or with no
protocols (INCONSISTENT_GROUP_PROTOCOL); a Heartbeat, SyncGroup or OffsetCommit with a
generation from the past (ILLEGAL_GENERATION); a SyncGroup, Heartbeat or OffsetCommit from a
non-member (UNKNOWN_MEMBER_ID); an OffsetCommit for a topic or partition that does not exist
(UNKNOWN_TOPIC_OR_PARTITION, per partition, while the rest of the request is committed).
After each case the broker must still be alive, the group's real member unharmed, and new
connections and a real client served.

Then two members that fail the protocol in time, driven step by step: one that heartbeats but
never rejoins is removed when the rebalance timeout runs out (the broker's side of
max.poll.interval.ms); a leader that never sends SyncGroup is expired after its session
timeout, and the follower waiting in SyncGroup is sent back to rejoin.
"""

from __future__ import annotations

import time

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

import clients
import kafkawire as kw

TOPIC = "errors-topic"
PARTITIONS = 2
DEADLINE_S = 60.0  # bounds a hang; never asserted on


@pytest.fixture
def broker(broker_factory):
    b = broker_factory(config={"group.initial.rebalance.delay.ms": 0})
    clients.create_topic(b.bootstrap, TOPIC, PARTITIONS)
    return b


# --- a group member made of raw requests ------------------------------------------------------

RANGE = [("range", kw.consumer_subscription([TOPIC]))]


def join(conn: kw.Connection, group: str, member_id: str = "", protocol_type: str = "consumer", protocols=RANGE, **timeouts_ms) -> kw.JoinGroupResponse:
    """timeouts_ms: session_timeout_ms, rebalance_timeout_ms (30 s each by default)."""
    return kw.parse_join_group_v5(conn.request(kw.join_group_v5_request, group, member_id, protocol_type, protocols, **timeouts_ms))


class RawMember:
    """Joins (going through MEMBER_ID_REQUIRED, as JoinGroup v4+ asks), syncs with an
    assignment of every partition to itself, and can force a new generation by rejoining."""

    def __init__(self, port: int, group: str, **timeouts_ms):
        self.conn = kw.Connection(port, timeout_s=120)
        self.group = group
        self.timeouts_ms = timeouts_ms
        first = join(self.conn, group, **timeouts_ms)
        assert first.error_code == kw.MEMBER_ID_REQUIRED, f"first JoinGroup v5 answered {first.error_code}, not MEMBER_ID_REQUIRED"
        assert first.member_id, "MEMBER_ID_REQUIRED came without a member id"
        self.member_id = first.member_id
        self.generation = -1
        self.rejoin()

    def rejoin(self) -> None:
        r = join(self.conn, self.group, self.member_id, **self.timeouts_ms)
        assert r.error_code == kw.NONE, f"JoinGroup answered {r.error_code}"
        assert r.member_id == self.member_id and r.leader == self.member_id, r
        assert r.generation > self.generation, f"generation {r.generation} after {self.generation}"
        self.generation = r.generation
        error, assignment = self.sync(self.generation, self.member_id, [(self.member_id, self.assignment())])
        assert error == kw.NONE, f"SyncGroup answered {error}"
        assert assignment == self.assignment()

    @staticmethod
    def assignment() -> bytes:
        return kw.consumer_assignment({TOPIC: list(range(PARTITIONS))})

    def sync(self, generation: int, member_id: str, assignments: list[tuple[str, bytes]]) -> tuple[int, bytes]:
        return kw.parse_sync_group_v3(self.conn.request(kw.sync_group_v3_request, self.group, generation, member_id, assignments))

    def heartbeat(self, generation: int, member_id: str | None = None) -> int:
        return kw.parse_heartbeat_v3(self.conn.request(kw.heartbeat_v3_request, self.group, generation, member_id if member_id is not None else self.member_id))

    def commit_v2(self, generation: int, offsets, member_id: str | None = None) -> dict:
        return kw.parse_offset_commit_v2(self.conn.request(kw.offset_commit_v2_request, self.group, generation, member_id if member_id is not None else self.member_id, offsets))

    def commit_v8(self, generation: int, offsets, member_id: str | None = None) -> dict:
        return kw.parse_offset_commit_v8(self.conn.request(kw.offset_commit_v8_request, self.group, generation, member_id if member_id is not None else self.member_id, offsets))

    def close(self) -> None:
        self.conn.close()


def committed(port: int, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    with kw.Connection(port) as conn:
        got = kw.parse_offset_fetch_v1(conn.request(kw.offset_fetch_v1_request, group, partitions))
    return {tp: offset for tp, (offset, _metadata, _error) in got.items()}


def assert_still_serving(broker, member: RawMember | None = None) -> None:
    """Alive; the group's member still in its generation; a new raw connection and a real
    client served."""
    broker.assert_alive()
    if member is not None:
        assert member.heartbeat(member.generation) == kw.NONE, "the group's real member lost its place"
    with kw.Connection(broker.port) as conn:
        assert conn.api_versions(0).error_code == kw.NONE
        _brokers, topics = kw.parse_metadata_v1(conn.request(kw.metadata_v1_request, [TOPIC]))
        assert topics[TOPIC] == (kw.NONE, list(range(PARTITIONS)))
    md = AdminClient(clients.rdkafka(broker.bootstrap)).list_topics(timeout=30)
    assert TOPIC in md.topics


# --- (a) INCONSISTENT_GROUP_PROTOCOL ----------------------------------------------------------

def test_join_with_other_protocol_type_or_no_protocols_is_inconsistent(broker):
    group = "errors-protocol-type"
    # A real librdkafka member makes the group, protocol type "consumer".
    consumer = confluent_kafka.Consumer(clients.rdkafka(broker.bootstrap, **{
        "group.id": group, "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "partition.assignment.strategy": "range",
    }))
    try:
        consumer.subscribe([TOPIC])
        deadline = time.monotonic() + DEADLINE_S
        while len(consumer.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, "the librdkafka member never got its partitions"
            consumer.poll(0.2)
        member_id = consumer.memberid()

        with kw.Connection(broker.port) as conn:
            cases = {
                "protocol type 'connect' into a 'consumer' group": join(conn, group, protocol_type="connect", protocols=[("default", b"\x00\x01")]),
                "an empty protocol list": join(conn, group, protocols=[]),
                "an empty protocol type": join(conn, group, protocol_type=""),
                "no protocol shared with the members": join(conn, group, protocols=[("no-such-assignor", kw.consumer_subscription([TOPIC]))]),
                "an empty protocol list, new group": join(conn, "errors-new-group", protocols=[]),
            }
        for what, r in cases.items():
            assert r.error_code == kw.INCONSISTENT_GROUP_PROTOCOL, f"JoinGroup with {what} answered {r.error_code}"
            assert r.generation == -1, f"JoinGroup with {what} gave generation {r.generation}"

        # The refused joins changed nothing: one member, stable, the same one.
        admin = AdminClient(clients.rdkafka(broker.bootstrap))  # kept referenced until the future is done
        desc = admin.describe_consumer_groups([group], request_timeout=30)[group].result(timeout=60)
        assert str(desc.state).endswith("STABLE"), desc.state
        assert [m.member_id for m in desc.members] == [member_id]
        assert str(desc.partition_assignor) == "range"
        for _ in range(5):
            m = consumer.poll(0.2)
            assert m is None or not m.error(), m.error()
        assert len(consumer.assignment()) == PARTITIONS and consumer.memberid() == member_id, "the real member was disturbed"
        assert_still_serving(broker)
    finally:
        consumer.close()


# --- (b) ILLEGAL_GENERATION -------------------------------------------------------------------

def test_generation_from_the_past_is_illegal(broker):
    member = RawMember(broker.port, "errors-generation")
    try:
        old = member.generation
        member.rejoin()  # the leader rejoins: a new generation
        assert member.generation > old
        tp = (TOPIC, 0)

        assert member.heartbeat(old) == kw.ILLEGAL_GENERATION
        assert_still_serving(broker, member)
        error, assignment = member.sync(old, member.member_id, [(member.member_id, member.assignment())])
        assert error == kw.ILLEGAL_GENERATION and assignment == b"", (error, assignment)
        assert_still_serving(broker, member)
        assert member.commit_v2(old, [(*tp, 7)]) == {tp: kw.ILLEGAL_GENERATION}
        assert member.commit_v8(old, [(*tp, 8)]) == {tp: kw.ILLEGAL_GENERATION}
        assert member.heartbeat(member.generation + 5) == kw.ILLEGAL_GENERATION, "a generation from the future"
        with kw.Connection(broker.port) as conn:
            # A generation for a group that does not exist: from a generation long gone.
            got = kw.parse_offset_commit_v2(conn.request(kw.offset_commit_v2_request, "errors-no-such-group", old, member.member_id, [(*tp, 7)]))
        assert got == {tp: kw.ILLEGAL_GENERATION}, got
        assert committed(broker.port, member.group, [tp]) == {tp: -1}, "a commit refused for its generation was stored"
        assert_still_serving(broker, member)

        # The current generation is accepted, by both versions.
        assert member.commit_v2(member.generation, [(*tp, 9)]) == {tp: kw.NONE}
        assert committed(broker.port, member.group, [tp]) == {tp: 9}
        assert member.commit_v8(member.generation, [(*tp, 10)]) == {tp: kw.NONE}
        assert committed(broker.port, member.group, [tp]) == {tp: 10}
    finally:
        member.close()


# --- (c) UNKNOWN_MEMBER_ID --------------------------------------------------------------------

def test_requests_from_a_non_member_are_unknown_member(broker):
    member = RawMember(broker.port, "errors-non-member")
    try:
        stranger = "stranger-00000000-0000-0000-0000-000000000000"
        tp = (TOPIC, 1)
        with kw.Connection(broker.port) as conn:
            for who in (stranger, ""):
                error, assignment = kw.parse_sync_group_v3(conn.request(kw.sync_group_v3_request, member.group, member.generation, who, [(who, member.assignment())]))
                assert error == kw.UNKNOWN_MEMBER_ID, f"SyncGroup from member {who!r} answered {error}"
                assert assignment == b""
                assert_still_serving(broker, member)
            error, _ = kw.parse_sync_group_v3(conn.request(kw.sync_group_v3_request, "errors-no-such-group", 1, stranger, []))
            assert error == kw.UNKNOWN_MEMBER_ID, f"SyncGroup to a group that does not exist answered {error}"
            assert kw.parse_heartbeat_v3(conn.request(kw.heartbeat_v3_request, member.group, member.generation, stranger)) == kw.UNKNOWN_MEMBER_ID
            assert kw.parse_offset_commit_v2(conn.request(kw.offset_commit_v2_request, member.group, member.generation, stranger, [(*tp, 3)])) == {tp: kw.UNKNOWN_MEMBER_ID}
            # A commit from outside any generation, into a group that has members.
            assert kw.parse_offset_commit_v2(conn.request(kw.offset_commit_v2_request, member.group, -1, "", [(*tp, 3)])) == {tp: kw.UNKNOWN_MEMBER_ID}
            # A member id the group never handed out cannot join under it either.
            assert join(conn, member.group, member_id=stranger).error_code == kw.UNKNOWN_MEMBER_ID
        assert committed(broker.port, member.group, [tp]) == {tp: -1}
        assert_still_serving(broker, member)

        # The member's own SyncGroup still gets its assignment.
        error, assignment = member.sync(member.generation, member.member_id, [])
        assert (error, assignment) == (kw.NONE, member.assignment())
    finally:
        member.close()


# --- (d) UNKNOWN_TOPIC_OR_PARTITION -----------------------------------------------------------

def test_offset_commit_for_unknown_topic_or_partition(broker):
    member = RawMember(broker.port, "errors-unknown-topic")
    try:
        good, no_topic, no_partition = (TOPIC, 0), ("errors-no-such-topic", 0), (TOPIC, PARTITIONS + 5)
        offsets = [(*good, 4), (*no_topic, 1), (*no_partition, 2)]
        want = {good: kw.NONE, no_topic: kw.UNKNOWN_TOPIC_OR_PARTITION, no_partition: kw.UNKNOWN_TOPIC_OR_PARTITION}

        assert member.commit_v2(member.generation, offsets) == want
        assert_still_serving(broker, member)
        assert committed(broker.port, member.group, [good]) == {good: 4}
        assert member.commit_v8(member.generation, [(t, p, o + 1) for t, p, o in offsets]) == want
        assert_still_serving(broker, member)
        assert committed(broker.port, member.group, [good]) == {good: 5}

        # The same from outside any generation (a "simple" commit: generation -1, no member).
        with kw.Connection(broker.port) as conn:
            got = kw.parse_offset_commit_v2(conn.request(kw.offset_commit_v2_request, "errors-simple-commit", -1, "", offsets))
        assert got == want
        assert committed(broker.port, "errors-simple-commit", [good]) == {good: 4}

        # Committing did not create the topic.
        with kw.Connection(broker.port) as conn:
            _brokers, topics = kw.parse_metadata_v1(conn.request(kw.metadata_v1_request, None))
        assert no_topic[0] not in topics, "an OffsetCommit created the topic it named"
        assert_still_serving(broker, member)
    finally:
        member.close()


# --- the rebalance timeout (the broker's side of max.poll.interval.ms) ------------------------

def test_member_that_does_not_rejoin_within_rebalance_timeout_is_removed(broker):
    """A member that keeps heartbeating but does not rejoin (a consumer stuck between polls) is
    removed when the rebalance timeout runs out; the rebalance completes without it."""
    group = "errors-rebalance-timeout"
    stuck = RawMember(broker.port, group, rebalance_timeout_ms=3_000)  # session timeout 30 s
    newcomer = kw.Connection(broker.port, timeout_s=120)
    log_mark = broker.log_size()
    try:
        first = join(newcomer, group, rebalance_timeout_ms=3_000)
        assert first.error_code == kw.MEMBER_ID_REQUIRED
        # The second JoinGroup waits for the rebalance: send it, and don't wait for the answer yet.
        cid = newcomer.correlation_id()
        newcomer.send(kw.join_group_v5_request(cid, group, first.member_id, "consumer", RANGE, rebalance_timeout_ms=3_000))
        heartbeats = []
        commit_during_rebalance = None
        deadline = time.monotonic() + 120
        while not newcomer.readable_within(0.5):
            assert time.monotonic() < deadline, f"the rebalance never completed; the stuck member's heartbeats said {heartbeats[-5:]}"
            heartbeats.append(stuck.heartbeat(stuck.generation))
            if heartbeats[-1] == kw.REBALANCE_IN_PROGRESS and commit_during_rebalance is None:
                # Eager clients commit in their revocation callback, while the group prepares
                # to rebalance: Kafka accepts that from the current generation.
                commit_during_rebalance = stuck.commit_v2(stuck.generation, [(TOPIC, 0, 3)])
        got, body = newcomer.recv_frame()
        assert got == cid
        r = kw.parse_join_group_v5(body)
        assert r.error_code == kw.NONE, f"the newcomer's JoinGroup answered {r.error_code}"
        assert r.generation == stuck.generation + 1
        assert r.leader == first.member_id and [m[0] for m in r.members] == [first.member_id], f"the stuck member is still in generation {r.generation}: {r.members}"
        # Its session was alive all along: the heartbeats said "rebalance in progress".
        assert heartbeats and set(heartbeats) == {kw.REBALANCE_IN_PROGRESS}, heartbeats
        assert commit_during_rebalance == {(TOPIC, 0): kw.NONE}, commit_during_rebalance
        assert committed(broker.port, group, [(TOPIC, 0)]) == {(TOPIC, 0): 3}
        assert broker.wait_for_log(f"member={stuck.member_id}.*did not rejoin|did not rejoin.*member={stuck.member_id}", since=log_mark)
        assert stuck.heartbeat(stuck.generation) == kw.UNKNOWN_MEMBER_ID
        assert join(stuck.conn, group, stuck.member_id).error_code == kw.UNKNOWN_MEMBER_ID
        assert_still_serving(broker)
    finally:
        stuck.close()
        newcomer.close()


def test_leader_that_never_syncs_is_expired_and_the_follower_moves_on(broker):
    """The leader dies between JoinGroup and SyncGroup. The follower's SyncGroup waits (its
    heartbeats say nothing is wrong, as Kafka answers in CompletingRebalance) until the leader's
    session times out; then it gets REBALANCE_IN_PROGRESS and, rejoining, leads the group alone."""
    group = "errors-leader-never-syncs"
    session_timeout_ms = 6_000  # the broker's minimum
    leader = RawMember(broker.port, group, session_timeout_ms=session_timeout_ms)  # alone in the group's first generation
    follower_conn, heartbeat_conn = (kw.Connection(broker.port, timeout_s=120) for _ in range(2))
    log_mark = broker.log_size()
    try:
        r = join(follower_conn, group, session_timeout_ms=session_timeout_ms)
        assert r.error_code == kw.MEMBER_ID_REQUIRED
        ids = {"leader": leader.member_id, "follower": r.member_id}
        # The follower's join starts a rebalance (the leader's heartbeat says so), the leader
        # rejoins, and both get the new generation.
        cids = {"follower": follower_conn.correlation_id()}
        follower_conn.send(kw.join_group_v5_request(cids["follower"], group, ids["follower"], "consumer", RANGE, session_timeout_ms=session_timeout_ms))
        deadline = time.monotonic() + DEADLINE_S
        while leader.heartbeat(leader.generation) != kw.REBALANCE_IN_PROGRESS:
            assert time.monotonic() < deadline, "the follower's JoinGroup did not start a rebalance"
            time.sleep(0.05)
        cids["leader"] = leader.conn.correlation_id()
        leader.conn.send(kw.join_group_v5_request(cids["leader"], group, ids["leader"], "consumer", RANGE, session_timeout_ms=session_timeout_ms))
        joined = {}
        for name, conn in (("follower", follower_conn), ("leader", leader.conn)):
            got, body = conn.recv_frame()
            assert got == cids[name]
            joined[name] = kw.parse_join_group_v5(body)
            assert joined[name].error_code == kw.NONE, (name, joined[name])
        generation = joined["follower"].generation
        assert generation == leader.generation + 1 and joined["leader"].generation == generation, joined
        assert joined["follower"].leader == ids["leader"], joined
        leader.close()  # it never syncs, never heartbeats again

        cid = follower_conn.correlation_id()
        follower_conn.send(kw.sync_group_v3_request(cid, group, generation, ids["follower"], []))
        heartbeats = []
        deadline = time.monotonic() + 120
        while not follower_conn.readable_within(0.5):
            assert time.monotonic() < deadline, f"the follower's SyncGroup never returned; heartbeats said {heartbeats[-5:]}"
            heartbeats.append(kw.parse_heartbeat_v3(heartbeat_conn.request(kw.heartbeat_v3_request, group, generation, ids["follower"])))
        got, body = follower_conn.recv_frame()
        assert got == cid
        error, assignment = kw.parse_sync_group_v3(body)
        assert (error, assignment) == (kw.REBALANCE_IN_PROGRESS, b""), f"the follower's SyncGroup answered {error}"
        assert heartbeats and set(heartbeats) <= {kw.NONE, kw.REBALANCE_IN_PROGRESS} and heartbeats[0] == kw.NONE, heartbeats
        assert broker.wait_for_log(f"session timeout expired.*member={ids['leader']}", since=log_mark), "the leader was not expired for its session timeout"

        r = kw.parse_join_group_v5(follower_conn.request(kw.join_group_v5_request, group, ids["follower"], "consumer", RANGE, session_timeout_ms=session_timeout_ms))
        assert r.error_code == kw.NONE and r.generation > generation
        assert r.leader == ids["follower"] and [m[0] for m in r.members] == [ids["follower"]], r
        assignment = kw.consumer_assignment({TOPIC: list(range(PARTITIONS))})
        error, got_assignment = kw.parse_sync_group_v3(follower_conn.request(kw.sync_group_v3_request, group, r.generation, ids["follower"], [(ids["follower"], assignment)]))
        assert (error, got_assignment) == (kw.NONE, assignment)
        assert_still_serving(broker)
    finally:
        for conn in (leader.conn, follower_conn, heartbeat_conn):
            conn.close()
