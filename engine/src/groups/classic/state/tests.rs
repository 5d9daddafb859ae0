//! The classic state machine driven by hand, on a fake clock: plain `now_ms` values.

use bytes::Bytes;
use shardlog_protocol::error_code as ec;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

fn limits(initial_rebalance_delay_ms: u64) -> ClassicLimits {
    ClassicLimits { session_timeout_ms_min: 6_000, session_timeout_ms_max: 1_800_000, initial_rebalance_delay_ms, group_size_max: 10 }
}

/// A group and the names of the requests it was sent.
struct Harness {
    group: ClassicGroup,
    limits: ClassicLimits,
    waiter_next: Waiter,
}

impl Harness {
    fn new(initial_rebalance_delay_ms: u64) -> Harness {
        Harness { group: ClassicGroup::new(), limits: limits(initial_rebalance_delay_ms), waiter_next: 1 }
    }

    fn waiter(&mut self) -> Waiter {
        self.waiter_next += 1;
        self.waiter_next
    }

    fn join_request(&mut self, member_id: &str, instance_id: Option<&str>, protocols: &[&str]) -> JoinRequest {
        let waiter = self.waiter();
        JoinRequest {
            waiter,
            version: 5,
            member_id: member_id.to_string(),
            instance_id: instance_id.map(str::to_string),
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("{p}-metadata")))).collect(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            member_id_fresh: format!("member-{waiter}"),
        }
    }

    /// JoinGroup with the default protocol; returns its waiter and the effects.
    fn join(&mut self, member_id: &str, now: u64) -> (Waiter, Vec<Effect>) {
        self.join_with(member_id, None, &["range"], now)
    }

    /// JoinGroup v5. A new dynamic member is first told to come back with an id (KIP-394), and
    /// does: the waiter and effects returned are those of its second request.
    fn join_with(&mut self, member_id: &str, instance_id: Option<&str>, protocols: &[&str], now: u64) -> (Waiter, Vec<Effect>) {
        let request = self.join_request(member_id, instance_id, protocols);
        let waiter = request.waiter;
        let effects = self.group.join(&self.limits, request, now);
        self.group.check_invariants();
        if let Some(JoinAnswer::Error { code: ec::MEMBER_ID_REQUIRED, member_id: given }) = join_answer(&effects, waiter) {
            assert!(member_id.is_empty() && instance_id.is_none());
            let given = given.clone();
            return self.join_with(&given, instance_id, protocols, now);
        }
        (waiter, effects)
    }

    fn sync(&mut self, member_id: &str, generation: i32, assignments: &[(&str, &str)], now: u64) -> (Waiter, Vec<Effect>) {
        let waiter = self.waiter();
        let request = SyncRequest {
            waiter,
            version: 5,
            member_id: member_id.to_string(),
            instance_id: None,
            generation,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from(a.to_string()))).collect(),
        };
        let effects = self.group.sync(request, now);
        self.group.check_invariants();
        (waiter, effects)
    }

    fn tick(&mut self, now: u64) -> Vec<Effect> {
        let effects = self.group.tick(&self.limits, now);
        self.group.check_invariants();
        effects
    }

    /// A new member in the group, joined alone with no initial delay: its id.
    fn first_member(&mut self, now: u64) -> String {
        let (w, effects) = self.join("", now);
        joined(&effects, w).member_id
    }
}

fn join_answer(effects: &[Effect], waiter: Waiter) -> Option<&JoinAnswer> {
    effects.iter().find_map(|e| match e {
        Effect::AnswerJoin { waiter: w, answer } if *w == waiter => Some(answer),
        _ => None,
    })
}

fn sync_answer(effects: &[Effect], waiter: Waiter) -> Option<&SyncAnswer> {
    effects.iter().find_map(|e| match e {
        Effect::AnswerSync { waiter: w, answer } if *w == waiter => Some(answer),
        _ => None,
    })
}

fn joined(effects: &[Effect], waiter: Waiter) -> Joined {
    match join_answer(effects, waiter) {
        Some(JoinAnswer::Joined(j)) => j.clone(),
        other => panic!("waiter {waiter}: expected a generation, got {other:?} in {effects:?}"),
    }
}

fn join_error_code(effects: &[Effect], waiter: Waiter) -> i16 {
    match join_answer(effects, waiter) {
        Some(JoinAnswer::Error { code, .. }) => *code,
        other => panic!("waiter {waiter}: expected an error, got {other:?}"),
    }
}

fn assignment(effects: &[Effect], waiter: Waiter) -> Bytes {
    match sync_answer(effects, waiter) {
        Some(SyncAnswer::Assigned { assignment, .. }) => assignment.clone(),
        other => panic!("waiter {waiter}: expected an assignment, got {other:?} in {effects:?}"),
    }
}

fn sync_error_code(effects: &[Effect], waiter: Waiter) -> i16 {
    match sync_answer(effects, waiter) {
        Some(SyncAnswer::Error(code)) => *code,
        other => panic!("waiter {waiter}: expected an error, got {other:?}"),
    }
}

fn removed(effects: &[Effect], cause: RemovalCause) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Note(Note::MemberRemoved { member_id, cause: c }) if *c == cause => Some(member_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn join_then_sync_makes_the_group_stable() {
    let mut h = Harness::new(0);
    let (w, effects) = h.join("", 1_000);
    let j = joined(&effects, w);
    assert_eq!(j.generation, 1);
    assert_eq!(j.leader.as_deref(), Some(j.member_id.as_str()), "the only member leads");
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(j.members.len(), 1, "the leader sees every member");
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);

    let (s, effects) = h.sync(&j.member_id, 1, &[(&j.member_id, "mine")], 1_100);
    assert_eq!(assignment(&effects, s), Bytes::from("mine"));
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.heartbeat(1, &j.member_id, None, 1_200), ec::NONE);
}

#[test]
fn the_first_rebalance_waits_the_initial_delay() {
    let mut h = Harness::new(3_000);
    let (w, effects) = h.join("", 1_000);
    assert!(join_answer(&effects, w).is_none(), "the join waits for more members");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.next_deadline_ms(), Some(4_000));
    assert!(h.tick(3_999).is_empty(), "nothing happens before the deadline");
    let effects = h.tick(4_000);
    assert_eq!(joined(&effects, w).generation, 1);
}

#[test]
fn a_second_member_rebalances_and_both_get_the_new_generation() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    let (s, effects) = h.sync(&a, 1, &[(&a, "all")], 10);
    assert_eq!(assignment(&effects, s), Bytes::from("all"));

    let (wb, effects) = h.join("", 100);
    assert!(join_answer(&effects, wb).is_none(), "b waits for a to rejoin");
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.heartbeat(1, &a, None, 150), ec::REBALANCE_IN_PROGRESS, "a learns of the rebalance from its heartbeat");

    let (wa, effects) = h.join(&a, 200);
    let ja = joined(&effects, wa);
    let jb = joined(&effects, wb);
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader.as_deref(), Some(a.as_str()), "the leader stays");
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "only the leader gets the members");
    let b = jb.member_id;

    let (sb, effects) = h.sync(&b, 2, &[], 300);
    assert!(sync_answer(&effects, sb).is_none(), "a follower waits for the leader's assignment");
    let (sa, effects) = h.sync(&a, 2, &[(&a, "half-a"), (&b, "half-b")], 400);
    assert_eq!(assignment(&effects, sa), Bytes::from("half-a"));
    assert_eq!(assignment(&effects, sb), Bytes::from("half-b"));
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.generation(), 2);
}

#[test]
fn a_silent_member_is_evicted_at_its_session_timeout_and_the_rest_rebalance() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    let (wb, _) = h.join("", 0);
    let (wa, effects) = h.join(&a, 0);
    let b = joined(&effects, wb).member_id;
    assert_eq!(joined(&effects, wa).generation, 2);
    let (sb, _) = h.sync(&b, 2, &[], 0);
    let (_, effects) = h.sync(&a, 2, &[(&a, "x"), (&b, "y")], 0);
    assert_eq!(assignment(&effects, sb), Bytes::from("y"));

    // a heartbeats, b is silent.
    assert_eq!(h.group.heartbeat(2, &a, None, 6_000), ec::NONE);
    assert_eq!(h.group.next_deadline_ms(), Some(SESSION_MS as u64 + 1), "b's session ends first");
    assert!(h.tick(SESSION_MS as u64).is_empty(), "a session expires only once more than its timeout passed");
    let effects = h.tick(SESSION_MS as u64 + 1);
    assert_eq!(removed(&effects, RemovalCause::SessionTimeout), vec![b.clone()]);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.heartbeat(2, &b, None, 10_002), ec::UNKNOWN_MEMBER_ID);

    let (wa, effects) = h.join(&a, 10_100);
    let ja = joined(&effects, wa);
    assert_eq!(ja.generation, 3);
    assert_eq!(ja.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), vec![a.as_str()]);
}

#[test]
fn a_waiting_sync_is_answered_when_its_member_expires() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    let (wb, _) = h.join("", 0);
    let (_, effects) = h.join(&a, 0);
    let b = joined(&effects, wb).member_id;
    // b syncs and waits; the leader never does, and its session ends first.
    let (sb, effects) = h.sync(&b, 2, &[], 5_000);
    assert!(effects.is_empty());
    let effects = h.tick(SESSION_MS as u64 + 1);
    assert_eq!(removed(&effects, RemovalCause::SessionTimeout), vec![a.clone()]);
    assert_eq!(sync_error_code(&effects, sb), ec::REBALANCE_IN_PROGRESS, "the rebalance releases b's SyncGroup");
    assert_eq!(h.group.leader(), None);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn leaving_rebalances_the_rest_and_the_last_to_leave_empties_the_group() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    let (wb, _) = h.join("", 0);
    let (_, effects) = h.join(&a, 0);
    let b = joined(&effects, wb).member_id;
    let limits = h.limits.clone();

    let (codes, effects) = h.group.leave(&limits, &[(b.clone(), None), ("nobody".into(), None)], 100);
    h.group.check_invariants();
    assert_eq!(codes, vec![ec::NONE, ec::UNKNOWN_MEMBER_ID]);
    assert_eq!(removed(&effects, RemovalCause::Left), vec![b]);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);

    let generation = h.group.generation();
    let (codes, effects) = h.group.leave(&limits, &[(a.clone(), None)], 200);
    h.group.check_invariants();
    assert_eq!(codes, vec![ec::NONE]);
    assert!(effects.contains(&Effect::Note(Note::Empty)));
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.generation(), generation, "leaving during a rebalance does not number a generation");
    assert!(h.group.leader().is_none());
}

#[test]
fn a_heartbeat_with_a_stale_generation_is_illegal() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    h.sync(&a, 1, &[(&a, "x")], 0);
    assert_eq!(h.group.heartbeat(0, &a, None, 100), ec::ILLEGAL_GENERATION);
    assert_eq!(h.group.heartbeat(2, &a, None, 100), ec::ILLEGAL_GENERATION);
    assert_eq!(h.group.heartbeat(1, &a, None, 100), ec::NONE);
    let (s, effects) = h.sync(&a, 0, &[], 100);
    assert_eq!(sync_error_code(&effects, s), ec::ILLEGAL_GENERATION);
    assert_eq!(h.group.commit_error(0, &a, None, 100), Some(ec::ILLEGAL_GENERATION));
    assert_eq!(h.group.commit_error(1, &a, None, 100), None);
}

#[test]
fn an_unknown_member_is_refused_everywhere() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    assert_eq!(h.group.heartbeat(1, "ghost", None, 10), ec::UNKNOWN_MEMBER_ID);
    let (s, effects) = h.sync("ghost", 1, &[], 10);
    assert_eq!(sync_error_code(&effects, s), ec::UNKNOWN_MEMBER_ID);
    let (w, effects) = h.join("ghost", 10);
    assert_eq!(join_error_code(&effects, w), ec::UNKNOWN_MEMBER_ID);
    assert_eq!(h.group.commit_error(1, "ghost", None, 10), Some(ec::UNKNOWN_MEMBER_ID));
    assert!(h.group.member(&a).is_some(), "the real member is untouched");
    assert!(h.group.member("ghost").is_none());
}

#[test]
fn the_rebalance_timeout_completes_the_join_without_laggards() {
    let mut h = Harness::new(0);
    let a = h.first_member(0);
    let (wb, _) = h.join("", 0);
    let (_, effects) = h.join(&a, 0);
    let b = joined(&effects, wb).member_id;
    h.sync(&b, 2, &[], 0);
    h.sync(&a, 2, &[(&a, "x"), (&b, "y")], 0);
    assert_eq!(h.group.state(), GroupState::Stable);

    // c joins; a rejoins, b keeps heartbeating but never rejoins.
    let (wc, effects) = h.join("", 1_000);
    assert!(join_answer(&effects, wc).is_none());
    let (wa, effects) = h.join(&a, 2_000);
    assert!(join_answer(&effects, wa).is_none(), "b has not rejoined yet");
    for now in (3_000..=30_000).step_by(3_000) {
        assert_eq!(h.group.heartbeat(2, &b, None, now), ec::REBALANCE_IN_PROGRESS);
    }
    let deadline = 1_000 + REBALANCE_MS as u64;
    assert_eq!(h.group.next_deadline_ms(), Some(deadline));
    assert!(h.tick(deadline - 1).is_empty());
    let effects = h.tick(deadline);
    assert_eq!(removed(&effects, RemovalCause::RebalanceTimeout), vec![b.clone()]);
    let ja = joined(&effects, wa);
    let jc = joined(&effects, wc);
    assert_eq!((ja.generation, jc.generation), (3, 3));
    assert_eq!(ja.members.len(), 2, "the laggard is not in the new generation");
    assert!(ja.members.iter().all(|m| m.member_id != b));
    assert_eq!(h.group.heartbeat(3, &b, None, deadline), ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_new_member_must_come_back_with_its_id_from_version_4() {
    let mut h = Harness::new(0);
    let mut request = h.join_request("", None, &["range"]);
    request.version = 4;
    let fresh = request.member_id_fresh.clone();
    let w = request.waiter;
    let effects = h.group.join(&h.limits, request, 0);
    assert_eq!(join_answer(&effects, w), Some(&JoinAnswer::Error { code: ec::MEMBER_ID_REQUIRED, member_id: fresh.clone() }));
    assert_eq!(h.group.pending_member_count(), 1);
    assert_eq!(h.group.next_deadline_ms(), Some(SESSION_MS as u64));
    let (w, effects) = h.join(&fresh, 100);
    assert_eq!(joined(&effects, w).member_id, fresh);
    assert_eq!(h.group.pending_member_count(), 0);

    // An id not used within the session timeout is forgotten.
    let mut request = h.join_request("", None, &["range"]);
    request.version = 4;
    let late = request.member_id_fresh.clone();
    h.group.join(&h.limits, request, 1_000);
    h.tick(1_000 + SESSION_MS as u64);
    assert_eq!(h.group.pending_member_count(), 0);
    let (w, effects) = h.join(&late, 1_000 + SESSION_MS as u64);
    assert_eq!(join_error_code(&effects, w), ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_self() {
    let mut h = Harness::new(0);
    let (w, effects) = h.join_with("", Some("instance-1"), &["range"], 0);
    let old = joined(&effects, w).member_id;
    h.sync(&old, 1, &[(&old, "kept")], 0);
    assert_eq!(h.group.state(), GroupState::Stable);

    // The same instance restarts: a new member id, the same generation and assignment.
    let (w, effects) = h.join_with("", Some("instance-1"), &["range"], 5_000);
    let j = joined(&effects, w);
    assert_ne!(j.member_id, old);
    assert_eq!(j.generation, 1, "no rebalance");
    assert_eq!(j.leader.as_deref(), Some(j.member_id.as_str()), "the leadership moves to the new id");
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.static_member("instance-1"), Some(j.member_id.as_str()));
    let (s, effects) = h.sync(&j.member_id, 1, &[], 5_100);
    assert_eq!(assignment(&effects, s), Bytes::from("kept"));

    // The old incarnation is fenced out: whatever it sends under its instance id is answered
    // FENCED_INSTANCE_ID (fatal for the client), not UNKNOWN_MEMBER_ID, which would send it to
    // rejoin and take the slot back (librdkafka's test 0102).
    assert_eq!(h.group.heartbeat(1, &old, Some("instance-1"), 5_200), ec::FENCED_INSTANCE_ID);
    assert_eq!(h.group.commit_error(1, &old, Some("instance-1"), 5_200), Some(ec::FENCED_INSTANCE_ID));
    let (w, effects) = h.join_with(&old, Some("instance-1"), &["range"], 5_200);
    assert_eq!(join_error_code(&effects, w), ec::FENCED_INSTANCE_ID);
    let (codes, _) = h.group.leave(&h.limits, &[(old.clone(), Some(String::from("instance-1")))], 5_200);
    assert_eq!(codes, vec![ec::FENCED_INSTANCE_ID]);
    assert_eq!(h.group.static_member("instance-1"), Some(j.member_id.as_str()), "the fenced incarnation's requests change nothing");
    // Without an instance id it is just an unknown member; an instance id the group does not
    // know is one too (Kafka's validateMember).
    assert_eq!(h.group.heartbeat(1, &old, None, 5_200), ec::UNKNOWN_MEMBER_ID);
    assert_eq!(h.group.heartbeat(1, &j.member_id, Some("instance-2"), 5_200), ec::UNKNOWN_MEMBER_ID);
    let (w, effects) = h.join_with(&j.member_id, Some("instance-other"), &["range"], 5_300);
    assert_eq!(join_error_code(&effects, w), ec::UNKNOWN_MEMBER_ID);
    assert_eq!(h.group.heartbeat(1, &j.member_id, Some("instance-1"), 5_300), ec::NONE);

    // With other protocols, the rejoin rebalances.
    let (w, effects) = h.join_with("", Some("instance-1"), &["roundrobin", "range"], 6_000);
    assert_eq!(joined(&effects, w).generation, 2);
}

#[test]
fn a_static_member_waiting_in_join_is_fenced_by_its_new_incarnation() {
    let mut h = Harness::new(3_000);
    let (w_old, effects) = h.join_with("", Some("i"), &["range"], 0);
    assert!(effects.iter().all(|e| !matches!(e, Effect::AnswerJoin { .. })));
    // The first join waits the initial delay; the instance restarts meanwhile.
    let (w_new, effects) = h.join_with("", Some("i"), &["range"], 1_000);
    assert_eq!(join_error_code(&effects, w_old), ec::FENCED_INSTANCE_ID);
    // The replacement starts the rebalance over, and as the only member it has rejoined.
    let j = joined(&effects, w_new);
    assert_eq!(j.generation, 1);
    assert_eq!(h.group.static_member("i"), Some(j.member_id.as_str()));
    assert_eq!(h.group.members().count(), 1);
}

#[test]
fn a_rejoin_while_waiting_answers_the_earlier_join() {
    let mut h = Harness::new(3_000);
    let (w1, _) = h.join_with("", Some("i"), &["range"], 0);
    let id = h.group.static_member("i").expect("joined").to_string();
    let (w2, effects) = h.join_with(&id, Some("i"), &["range"], 500);
    assert_eq!(join_error_code(&effects, w1), ec::REBALANCE_IN_PROGRESS);
    assert_eq!(h.group.waiters().collect::<Vec<_>>(), vec![w2]);
}

#[test]
fn a_join_with_no_common_protocol_is_refused() {
    let mut h = Harness::new(0);
    h.first_member(0);
    let (w, effects) = h.join_with("", None, &["roundrobin"], 10);
    assert_eq!(join_error_code(&effects, w), ec::INCONSISTENT_GROUP_PROTOCOL);
    let mut request = h.join_request("", None, &["range"]);
    request.protocol_type = "connect".into();
    let w = request.waiter;
    let effects = h.group.join(&h.limits, request, 10);
    assert_eq!(join_error_code(&effects, w), ec::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.group.members().count(), 1);
}

#[test]
fn session_timeouts_outside_the_bounds_are_refused() {
    let l = limits(0);
    assert_eq!(session_timeout_error(&l, 5_999), Some(ec::INVALID_SESSION_TIMEOUT));
    assert_eq!(session_timeout_error(&l, 1_800_001), Some(ec::INVALID_SESSION_TIMEOUT));
    assert_eq!(session_timeout_error(&l, 6_000), None);
}

#[test]
fn the_group_size_is_bounded() {
    let mut h = Harness::new(3_000);
    for _ in 0..h.limits.group_size_max {
        h.join("", 0);
    }
    let (w, effects) = h.join("", 0);
    assert_eq!(join_error_code(&effects, w), ec::GROUP_MAX_SIZE_REACHED);
    assert_eq!(h.group.members().count(), h.limits.group_size_max);
}

#[test]
fn subscribed_topics_come_from_the_chosen_protocol() {
    let mut h = Harness::new(0);
    let mut request = h.join_request("", None, &["range"]);
    // Consumer protocol subscription v0: version, topics ["a", "b"], user data.
    let mut md = vec![0, 0, 0, 0, 0, 2, 0, 1, b'a', 0, 1, b'b'];
    md.extend_from_slice(&(-1i32).to_be_bytes());
    request.protocols = vec![("range".into(), Bytes::from(md))];
    request.version = 3;
    h.group.join(&h.limits, request, 0);
    assert_eq!(h.group.subscribed_topics(), vec!["a".to_string(), "b".to_string()]);
    assert_eq!(parse_subscription_topics(&[0, 0, 0, 0, 0, 5, 0]), Vec::<String>::new(), "a cut array ends the list");
}

#[test]
fn a_restored_group_keeps_its_members_generation_and_assignments() {
    let mut h = Harness::new(0);
    let (w, effects) = h.join("", 1_000);
    let j = joined(&effects, w);
    h.sync(&j.member_id, 1, &[(&j.member_id, "mine")], 1_100);
    let stored = h.group.to_stored(1_200);
    assert_eq!((stored.generation, stored.leader.as_deref(), stored.members.len()), (1, Some(j.member_id.as_str()), 1));
    assert_eq!(stored.members[0].subscription, Bytes::from("range-metadata"));

    // Another coordinator takes over at t=50_000: the member goes on without a rebalance.
    let mut restored = ClassicGroup::restore(&stored, 50_000);
    restored.check_invariants();
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.member(&j.member_id).map(|m| m.assignment.clone()), Some(Bytes::from("mine")));
    assert_eq!(restored.heartbeat(1, &j.member_id, None, 50_100), ec::NONE);
    assert_eq!(restored.subscribed_topics(), h.group.subscribed_topics());
    // A member that stops heartbeating expires one session after its last heartbeat.
    let effects = restored.tick(&h.limits, 50_100 + SESSION_MS as u64 + 1);
    assert_eq!(removed(&effects, RemovalCause::SessionTimeout), vec![j.member_id.clone()]);

    // An emptied group's record restores an Empty group at its generation.
    let empty = ClassicGroup::restore(&StoredGroup { members: Vec::new(), leader: None, protocol: None, ..stored }, 50_000);
    empty.check_invariants();
    assert_eq!((empty.state(), empty.generation()), (GroupState::Empty, 1));
}
