//! The KIP-848 state machine driven by hand, on a fake clock: plain `now_ms` values.

use std::collections::{BTreeMap, BTreeSet};

use shardlog_protocol::error_code as ec;
use uuid::Uuid;

use super::*;

const SESSION_MS: i32 = 45_000;
const INTERVAL_MS: i32 = 5_000;
const REBALANCE_MS: i32 = 60_000;
const TIMEOUTS: GroupTimeouts = GroupTimeouts { session_timeout_ms: SESSION_MS, heartbeat_interval_ms: INTERVAL_MS };

/// Topic `i` of a harness (in the order given) has id `i + 1`.
fn topic_id(i: u128) -> Uuid {
    Uuid::from_u128(i + 1)
}

/// Partitions of the first topic.
fn parts(partitions: &[i32]) -> TopicAssignment {
    if partitions.is_empty() {
        return TopicAssignment::new();
    }
    TopicAssignment::from([(topic_id(0), partitions.iter().copied().collect::<BTreeSet<i32>>())])
}

struct Harness {
    group: ConsumerGroup,
    topics: BTreeMap<String, (Uuid, usize)>,
    timeouts: GroupTimeouts,
    fresh_next: u64,
}

/// What a member was told.
#[derive(Debug)]
struct Told {
    member_id: String,
    epoch: i32,
    assignment: Option<TopicAssignment>,
}

impl Harness {
    fn new(topics: &[(&str, usize)]) -> Harness {
        let topics = topics.iter().enumerate().map(|(i, (n, c))| (n.to_string(), (topic_id(i as u128), *c))).collect();
        Harness { group: ConsumerGroup::new(), topics, timeouts: TIMEOUTS, fresh_next: 0 }
    }

    fn request(&mut self, member_id: &str, member_epoch: i32) -> HeartbeatRequest {
        self.fresh_next += 1;
        HeartbeatRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            member_epoch,
            rebalance_timeout_ms: REBALANCE_MS,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            member_id_fresh: format!("fresh-{}", self.fresh_next),
            ..Default::default()
        }
    }

    fn send(&mut self, request: HeartbeatRequest, now: u64) -> HeartbeatOutcome {
        let outcome = self.group.heartbeat(&self.timeouts, &self.topics, request, now);
        self.group.check_invariants();
        outcome
    }

    fn told(answer: HeartbeatAnswer) -> Told {
        match answer {
            HeartbeatAnswer::Member { member_id, member_epoch, heartbeat_interval_ms, assignment } => {
                assert_eq!(heartbeat_interval_ms, INTERVAL_MS);
                Told { member_id, epoch: member_epoch, assignment }
            }
            HeartbeatAnswer::Error { code, message } => panic!("refused with {code}: {message}"),
        }
    }

    /// Joins (epoch 0) under `member_id` (empty: the group names it).
    fn join(&mut self, member_id: &str, topics: &[&str], now: u64) -> Told {
        let mut request = self.request(member_id, 0);
        request.subscribed_topic_names = Some(topics.iter().map(|t| t.to_string()).collect());
        Self::told(self.send(request, now).answer)
    }

    /// A heartbeat at `epoch` that reports `owned`.
    fn heartbeat(&mut self, member_id: &str, epoch: i32, owned: &TopicAssignment, now: u64) -> HeartbeatAnswer {
        let mut request = self.request(member_id, epoch);
        request.owned = Some(owned.clone());
        self.send(request, now).answer
    }

    fn tick(&mut self, now: u64) -> Vec<Note> {
        let notes = self.group.tick(&self.timeouts, &self.topics, now);
        self.group.check_invariants();
        notes
    }

    fn owned(&self, member_id: &str) -> TopicAssignment {
        self.group.member(member_id).expect("a member").assigned.clone()
    }
}

fn error_code(answer: &HeartbeatAnswer) -> i16 {
    match answer {
        HeartbeatAnswer::Error { code, .. } => *code,
        HeartbeatAnswer::Member { .. } => ec::NONE,
    }
}

#[test]
fn a_joining_member_gets_an_id_the_next_epoch_and_every_partition() {
    let mut h = Harness::new(&[("t", 3)]);
    let mut request = h.request("", 0);
    request.subscribed_topic_names = Some(vec!["t".into()]);
    let outcome = h.send(request, 1_000);
    assert_eq!(outcome.notes, vec![Note::MemberJoined { member_id: "fresh-1".into() }, Note::TargetAssignment { epoch: 1, members: 1 }]);
    let told = Harness::told(outcome.answer);
    assert_eq!((told.member_id.as_str(), told.epoch), ("fresh-1", 1));
    assert_eq!(told.assignment, Some(parts(&[0, 1, 2])));
    assert_eq!(h.group.state_name(), "Stable");
    assert_eq!((h.group.epoch(), h.group.assignment_epoch()), (1, 1));
}

#[test]
fn steady_heartbeats_keep_the_member_and_resend_nothing() {
    let mut h = Harness::new(&[("t", 2)]);
    let a = h.join("a", &["t"], 0);
    let owned = a.assignment.expect("first assignment");
    let mut now = 0;
    while now < 10 * SESSION_MS as u64 {
        now += INTERVAL_MS as u64;
        assert!(h.tick(now).is_empty(), "nothing expires while the member heartbeats");
        let told = Harness::told(h.heartbeat("a", 1, &owned, now));
        assert_eq!(told.epoch, 1);
        assert_eq!(told.assignment, None, "an unchanged assignment is not resent");
    }
    assert_eq!(h.group.epoch(), 1, "heartbeats alone do not rebalance");
    assert_eq!(h.group.next_deadline_ms(&h.timeouts), Some(now + SESSION_MS as u64 + 1));
}

#[test]
fn a_silent_member_is_fenced_once_its_session_expires() {
    let mut h = Harness::new(&[("t", 2)]);
    h.join("a", &["t"], 1_000);
    let deadline = 1_000 + SESSION_MS as u64 + 1;
    assert_eq!(h.group.next_deadline_ms(&h.timeouts), Some(deadline));
    let before = h.group.clone();
    assert!(h.tick(deadline - 1).is_empty());
    assert_eq!(h.group, before, "a tick before the deadline changes nothing");
    let notes = h.tick(deadline);
    assert_eq!(notes[0], Note::MemberRemoved { member_id: "a".into(), cause: RemovalCause::SessionTimeout });
    assert!(!h.group.has_members());
    assert_eq!((h.group.state_name(), h.group.epoch()), ("Empty", 2));
    assert_eq!(h.group.next_deadline_ms(&h.timeouts), None);
    // The fenced member learns it at its next heartbeat, and must rejoin.
    assert_eq!(error_code(&h.heartbeat("a", 1, &parts(&[0, 1]), deadline + 1)), ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn the_session_timeout_follows_the_group_config() {
    let mut h = Harness::new(&[("t", 1)]);
    h.join("a", &["t"], 0);
    h.timeouts = GroupTimeouts { session_timeout_ms: 10_000, heartbeat_interval_ms: 2_000 };
    assert_eq!(h.group.next_deadline_ms(&h.timeouts), Some(10_001));
    let answer = h.heartbeat("a", 1, &parts(&[0]), 5_000);
    assert!(
        matches!(answer, HeartbeatAnswer::Member { member_epoch: 1, heartbeat_interval_ms: 2_000, .. }),
        "members are told the group's interval: {answer:?}"
    );
    assert!(h.tick(15_000).is_empty());
    assert_eq!(h.tick(15_001).len(), 2, "removed, then a new target without it");
    assert!(!h.group.has_members());
}

#[test]
fn a_leaving_member_is_removed_and_answered_with_its_leave_epoch() {
    let mut h = Harness::new(&[("t", 4)]);
    h.join("a", &["t"], 0);
    h.join("b", &["t"], 0);
    let epoch = h.group.epoch();
    let request = h.request("a", LEAVE_EPOCH);
    let outcome = h.send(request, 10);
    assert_eq!(outcome.notes[0], Note::MemberLeft { member_id: "a".into() });
    let told = Harness::told(outcome.answer);
    assert_eq!((told.member_id.as_str(), told.epoch, told.assignment), ("a", LEAVE_EPOCH, None));
    assert!(h.group.member("a").is_none());
    assert_eq!(h.group.epoch(), epoch + 1, "a departure rebalances");
    assert_eq!(h.group.target("b"), Some(&parts(&[0, 1, 2, 3])), "the one left gets everything");
    // A static member's temporary leave is answered with -2; a leave from a stranger changes
    // nothing.
    let request = h.request("b", STATIC_LEAVE_EPOCH);
    let told = Harness::told(h.send(request, 20).answer);
    assert_eq!(told.epoch, STATIC_LEAVE_EPOCH);
    assert_eq!(h.group.epoch(), epoch + 2);
    let request = h.request("ghost", LEAVE_EPOCH);
    let outcome = h.send(request, 30);
    assert!(outcome.notes.is_empty());
    assert_eq!(h.group.epoch(), epoch + 2);
}

#[test]
fn a_partition_moves_only_after_its_owner_revokes_it() {
    let mut h = Harness::new(&[("t", 4)]);
    let a = h.join("a", &["t"], 0);
    assert_eq!((a.epoch, a.assignment), (1, Some(parts(&[0, 1, 2, 3]))));
    // b joins: epoch 2, but nothing for it while a still owns every partition.
    let b = h.join("b", &["t"], 100);
    assert_eq!((b.epoch, b.assignment), (2, Some(parts(&[]))));
    assert_eq!(h.group.state_name(), "Reconciling");
    let a_target = h.group.target("a").cloned().expect("a target");
    let b_target = h.group.target("b").cloned().expect("a target");
    assert_eq!((a_target.len(), a_target[&topic_id(0)].len(), b_target[&topic_id(0)].len()), (1, 2, 2));
    // a is told to revoke, and keeps its old epoch until it has.
    let a = Harness::told(h.heartbeat("a", 1, &parts(&[0, 1, 2, 3]), 200));
    assert_eq!((a.epoch, a.assignment.as_ref()), (1, Some(&a_target)));
    assert_eq!(h.owned("a"), parts(&[0, 1, 2, 3]), "still a's until it says it revoked");
    let b = Harness::told(h.heartbeat("b", 2, &parts(&[]), 300));
    assert_eq!(b.assignment, None, "nothing freed yet");
    assert!(h.owned("b").is_empty());
    // a reports the revocation: it moves to epoch 2, and b gets what a gave up.
    let a = Harness::told(h.heartbeat("a", 1, &a_target, 400));
    assert_eq!(a.epoch, 2);
    assert_eq!(h.owned("a"), a_target);
    let b = Harness::told(h.heartbeat("b", 2, &parts(&[]), 500));
    assert_eq!(b.assignment.as_ref(), Some(&b_target));
    assert!(b_target[&topic_id(0)].is_disjoint(&a_target[&topic_id(0)]));
    assert_eq!(h.group.state_name(), "Stable");
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let mut h = Harness::new(&[("t", 2)]);
    h.join("a", &["t"], 0);
    h.join("b", &["t"], 0);
    // a is asked to revoke at 1000 and keeps heartbeating without doing so.
    let a = Harness::told(h.heartbeat("a", 1, &parts(&[0, 1]), 1_000));
    assert_eq!(a.assignment, Some(parts(&[0])));
    let deadline = 1_000 + REBALANCE_MS as u64 + 1;
    let mut now = 1_000;
    while now + (INTERVAL_MS as u64) < deadline {
        now += INTERVAL_MS as u64;
        assert!(h.tick(now).is_empty());
        assert_eq!(Harness::told(h.heartbeat("a", 1, &parts(&[0, 1]), now)).epoch, 1);
        assert_eq!(Harness::told(h.heartbeat("b", 2, &parts(&[]), now)).assignment, None, "b waits for a");
    }
    assert_eq!(h.group.next_deadline_ms(&h.timeouts), Some(deadline));
    assert!(h.tick(deadline - 1).is_empty());
    let notes = h.tick(deadline);
    assert_eq!(notes[0], Note::MemberRemoved { member_id: "a".into(), cause: RemovalCause::RebalanceTimeout });
    assert_eq!(notes.len(), 2, "only a, then a new target without it");
    let b = Harness::told(h.heartbeat("b", 2, &parts(&[]), deadline));
    assert_eq!((b.epoch, b.assignment), (3, Some(parts(&[0, 1]))));
}

#[test]
fn a_stale_member_epoch_is_fenced_and_the_previous_one_accepted() {
    let mut h = Harness::new(&[("t", 1)]);
    h.join("a", &["t"], 0);
    h.join("b", &["t"], 0);
    // a keeps the one partition (first in member-id order); it moves to epoch 2, then 3.
    assert_eq!(Harness::told(h.heartbeat("a", 1, &parts(&[0]), 10)).epoch, 2);
    h.join("c", &["t"], 20);
    assert_eq!(Harness::told(h.heartbeat("a", 2, &parts(&[0]), 30)).epoch, 3);
    let fenced = h.heartbeat("a", 1, &parts(&[0]), 40);
    assert_eq!(error_code(&fenced), ec::FENCED_MEMBER_EPOCH);
    assert!(matches!(&fenced, HeartbeatAnswer::Error { message, .. } if message.contains("not the current epoch 3")));
    assert_eq!(error_code(&h.heartbeat("a", 4, &parts(&[0]), 40)), ec::FENCED_MEMBER_EPOCH, "nor an epoch from the future");
    // The previous epoch is still fine: its answer may have been lost.
    assert_eq!(Harness::told(h.heartbeat("a", 2, &parts(&[0]), 50)).epoch, 3);
}

#[test]
fn an_unknown_member_is_told_so() {
    let mut h = Harness::new(&[("t", 1)]);
    let answer = h.heartbeat("ghost", 3, &parts(&[]), 0);
    assert_eq!(error_code(&answer), ec::UNKNOWN_MEMBER_ID);
    assert!(matches!(&answer, HeartbeatAnswer::Error { message, .. } if message == "Member ghost is not a member of group g."));
    assert!(!h.group.has_members());
    assert_eq!(h.group.epoch(), 0);
}

#[test]
fn joining_needs_a_subscription_and_a_request_needs_a_group_and_a_known_assignor() {
    let mut h = Harness::new(&[("t", 1)]);
    let request = h.request("a", 0);
    assert_eq!(error_code(&h.send(request, 0).answer), ec::INVALID_REQUEST);
    assert!(!h.group.has_members());
    assert!(matches!(request_error("", None), Some(HeartbeatAnswer::Error { code: ec::INVALID_REQUEST, .. })));
    assert!(matches!(request_error("g", Some("sticky")), Some(HeartbeatAnswer::Error { code: ec::UNSUPPORTED_ASSIGNOR, .. })));
    assert_eq!(request_error("g", Some("range")), None);
    assert_eq!(request_error("g", None), None);
}

#[test]
fn a_static_member_rejoining_replaces_its_old_incarnation() {
    let mut h = Harness::new(&[("t", 2)]);
    let mut request = h.request("a", 0);
    request.subscribed_topic_names = Some(vec!["t".into()]);
    request.instance_id = Some("i1".into());
    h.send(request, 0);
    let mut request = h.request("", 0);
    request.subscribed_topic_names = Some(vec!["t".into()]);
    request.instance_id = Some("i1".into());
    let told = Harness::told(h.send(request, 10).answer);
    assert_ne!(told.member_id, "a");
    let ids: Vec<&str> = h.group.members().map(|m| m.member_id.as_str()).collect();
    assert_eq!(ids, vec![told.member_id.as_str()], "the old incarnation is gone");
    assert_eq!(told.assignment, Some(parts(&[0, 1])));
}

#[test]
fn more_partitions_or_a_new_subscription_rebalance_at_the_next_heartbeat() {
    let mut h = Harness::new(&[("t", 2), ("u", 1)]);
    h.join("a", &["t"], 0);
    h.topics.insert("t".into(), (topic_id(0), 3));
    let told = Harness::told(h.heartbeat("a", 1, &parts(&[0, 1]), 10));
    assert_eq!((told.epoch, told.assignment), (2, Some(parts(&[0, 1, 2]))));
    let mut request = h.request("a", 2);
    request.subscribed_topic_names = Some(vec!["t".into(), "u".into()]);
    let told = Harness::told(h.send(request, 20).answer);
    let mut expected = parts(&[0, 1, 2]);
    expected.insert(topic_id(1), BTreeSet::from([0]));
    assert_eq!((told.epoch, told.assignment), (3, Some(expected)));
    assert_eq!(h.group.subscribed_topic_names(), vec!["t".to_string(), "u".to_string()]);
}

#[test]
fn commits_are_checked_against_the_member_epoch() {
    let mut h = Harness::new(&[("t", 1)]);
    assert_eq!(h.group.commit_error("", -1), None, "an empty group takes commits from outside");
    h.join("a", &["t"], 0);
    assert_eq!(h.group.commit_error("", -1), Some(ec::UNKNOWN_MEMBER_ID));
    assert_eq!(h.group.commit_error("a", 1), None);
    assert_eq!(h.group.commit_error("a", 7), Some(ec::ILLEGAL_GENERATION));
    assert_eq!(h.group.commit_error("b", 1), Some(ec::UNKNOWN_MEMBER_ID));
}

fn member(id: &str, topics: &[&str]) -> ConsumerMember {
    ConsumerMember { member_id: id.into(), subscribed: topics.iter().map(|t| t.to_string()).collect(), ..Default::default() }
}

#[test]
fn uniform_spreads_evenly_and_is_sticky() {
    let topics: BTreeMap<String, (Uuid, usize)> = BTreeMap::from([("t".to_string(), (topic_id(0), 6))]);
    let mut members = BTreeMap::new();
    for id in ["a", "b", "c"] {
        members.insert(id.to_string(), member(id, &["t"]));
    }
    let target = uniform_assignment(&members, &[("t".into(), 6)], &topics);
    let id = topic_id(0);
    assert!(target.values().all(|a| a[&id].len() == 2));
    // b keeps what it has when a new member arrives.
    members.get_mut("b").unwrap().assigned = target["b"].clone();
    members.insert("d".into(), member("d", &["t"]));
    let next = uniform_assignment(&members, &[("t".into(), 6)], &topics);
    assert!(next["b"][&id].iter().all(|p| target["b"][&id].contains(p)));
    let total: usize = next.values().map(|a| a.get(&id).map_or(0, |s| s.len())).sum();
    assert_eq!(total, 6);
}

#[test]
fn a_static_member_that_left_rejoins_under_a_new_id_and_waits_for_what_others_hold() {
    let mut h = Harness::new(&[("t", 2)]);
    let join_static = |h: &mut Harness, member_id: &str, now: u64| {
        let mut request = h.request(member_id, 0);
        request.subscribed_topic_names = Some(vec!["t".into()]);
        request.instance_id = Some("i1".into());
        Harness::told(h.send(request, now).answer)
    };
    let a = join_static(&mut h, "a", 0);
    assert_eq!(a.assignment, Some(parts(&[0, 1])));
    h.join("b", &["t"], 0);
    // a leaves for now (epoch -2): as any leave here, it is removed and its partitions freed.
    let request = h.request("a", STATIC_LEAVE_EPOCH);
    assert_eq!(Harness::told(h.send(request, 10).answer).epoch, STATIC_LEAVE_EPOCH);
    assert!(h.group.member("a").is_none());
    let b = Harness::told(h.heartbeat("b", 2, &parts(&[]), 20));
    assert_eq!((b.epoch, b.assignment), (3, Some(parts(&[0, 1]))));
    // It comes back under its instance id with a new member id: a new epoch, and nothing until
    // b has revoked its share.
    let a2 = join_static(&mut h, "a2", 30);
    assert_eq!((a2.epoch, a2.assignment), (4, Some(parts(&[]))));
    let a2_target = h.group.target("a2").cloned().expect("a target");
    assert_eq!(a2_target[&topic_id(0)].len(), 1);
    let b = Harness::told(h.heartbeat("b", 3, &parts(&[0, 1]), 40));
    assert_eq!(b.epoch, 3, "b keeps its epoch while it revokes");
    let b_keeps = b.assignment.expect("a revocation");
    assert!(Harness::told(h.heartbeat("a2", 4, &parts(&[]), 50)).assignment.is_none(), "a2 waits for b");
    assert_eq!(Harness::told(h.heartbeat("b", 3, &b_keeps, 60)).epoch, 4);
    assert_eq!(Harness::told(h.heartbeat("a2", 4, &parts(&[]), 70)).assignment, Some(a2_target));
    assert_eq!(h.group.state_name(), "Stable");
    // A heartbeat of the old incarnation is refused.
    assert_eq!(error_code(&h.heartbeat("a", 1, &parts(&[]), 80)), ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn only_a_changed_subscription_bumps_the_group_epoch() {
    let mut h = Harness::new(&[("t", 2), ("u", 2)]);
    h.join("a", &["t"], 0);
    let mut request = h.request("a", 1);
    request.subscribed_topic_names = Some(vec!["t".into()]);
    assert_eq!(Harness::told(h.send(request, 10).answer).epoch, 1, "the same subscription again");
    assert_eq!(h.group.epoch(), 1);
    // A topic that does not exist counts once it does.
    let mut request = h.request("a", 1);
    request.subscribed_topic_names = Some(vec!["t".into(), "missing".into()]);
    assert_eq!(Harness::told(h.send(request, 20).answer).epoch, 2);
    assert_eq!(Harness::told(h.heartbeat("a", 2, &parts(&[0, 1]), 30)).epoch, 2);
    h.topics.insert("missing".into(), (topic_id(5), 1));
    let told = Harness::told(h.heartbeat("a", 2, &parts(&[0, 1]), 40));
    assert_eq!(told.epoch, 3);
    assert_eq!(told.assignment.expect("the new topic")[&topic_id(5)], BTreeSet::from([0]));
    // Dropping a topic: the member is told to give it up at once, at the new epoch.
    let mut request = h.request("a", 3);
    request.subscribed_topic_names = Some(vec!["missing".into()]);
    let told = Harness::told(h.send(request, 50).answer);
    assert_eq!(h.group.epoch(), 4);
    assert_eq!(told.epoch, 3, "still revoking");
    assert_eq!(told.assignment, Some(TopicAssignment::from([(topic_id(5), BTreeSet::from([0]))])));
    let told = Harness::told(h.heartbeat("a", 3, &TopicAssignment::from([(topic_id(5), BTreeSet::from([0]))]), 60));
    assert_eq!((told.epoch, told.assignment), (4, None));
}
