//! The KIP-848 consumer group state machine (`engine/src/groups/consumer/state.rs`), driven by
//! an arbitrary sequence of ConsumerGroupHeartbeats (joins, leaves, heartbeats at right and
//! wrong epochs, changed subscriptions, reports of owned partitions), ticks, new partitions and
//! changed group configs, at arbitrary (non-decreasing) times. Like `group_state`, the module is
//! compiled into this target by path: it depends only on std, `uuid` and the protocol crate's
//! error codes, so the engine crate and its runtime stay out of the build.
//!
//! The target plays the clients too. A client holds what it was last told (it revokes at once
//! and reports honestly, or reports less, or adds partitions it never had: the coordinator must
//! not believe those). An answer may be lost on the way. After every event the target checks:
//! - the state machine's own invariants (`ConsumerGroup::check_invariants`: no partition owned
//!   by two members, targets disjoint, no member ahead of the group epoch, ...);
//! - no partition is held by two clients whose members are in the group: a client is never told
//!   a partition before its previous owner has reported it revoked;
//! - what a client is told is a part of what the coordinator counts it as owning;
//! - the group epoch never goes back, a member's epoch never goes back while it stays in the
//!   group (unless it rejoined), and the epochs one client is told never go back;
//! - an answer carries the member's epoch in the group and the group's heartbeat interval;
//! - a tick before `next_deadline_ms` changes nothing and says nothing; after a tick the next
//!   deadline lies ahead.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::error_code as ec;
use uuid::Uuid;

#[allow(dead_code)]
#[path = "../../engine/src/groups/consumer/state.rs"]
mod state;

use state::{ConsumerGroup, GroupTimeouts, HeartbeatAnswer, HeartbeatRequest, TopicAssignment, LEAVE_EPOCH, STATIC_LEAVE_EPOCH};

/// Bounds that keep one execution short: a few members, topics and events find every state.
const EVENTS_MAX: usize = 96;
const FIXED_MEMBER_IDS: &[&str] = &["a", "b", "c"];
const INSTANCES: &[&str] = &["i0", "i1"];
/// Topics the members may name; "t2" exists only once an event creates it, "zz" never does.
const TOPIC_NAMES: &[&str] = &["t0", "t1", "t2", "zz"];
const PARTITIONS_MAX: usize = 6;
/// Small timeouts, so that a few steps of the clock reach every deadline.
const SESSION_TIMEOUT_MS_MAX: i32 = 60;
const REBALANCE_TIMEOUT_MS_MAX: i32 = 80;

/// One client: the member id it heartbeats with and what it believes.
#[derive(Debug, Default, Clone)]
struct Client {
    /// The partitions it holds: what it was last told, less what it gave up on its own.
    held: TopicAssignment,
    /// The last epoch it was told, while it is a member.
    epoch: Option<i32>,
}

struct Model {
    group: ConsumerGroup,
    topics: BTreeMap<String, (Uuid, usize)>,
    timeouts: GroupTimeouts,
    now_ms: u64,
    fresh_next: u64,
    /// Member ids the target has heard of, with their clients.
    clients: BTreeMap<String, Client>,
    group_epoch: i32,
}

impl Model {
    fn member_id(&self, u: &mut Unstructured) -> Result<String> {
        Ok(match u.int_in_range(0..=9u8)? {
            0 | 1 => String::new(),
            2 => String::from("ghost"),
            3 | 4 => u.choose(FIXED_MEMBER_IDS)?.to_string(),
            _ if self.clients.is_empty() => String::new(),
            _ => {
                let ids: Vec<&String> = self.clients.keys().collect();
                (*u.choose(&ids)?).clone()
            }
        })
    }

    fn subscription(u: &mut Unstructured) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for name in TOPIC_NAMES {
            if u.ratio(1, 2)? {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    /// Any partitions of any topic id (known or not): what a dishonest report adds.
    fn garbage(&self, u: &mut Unstructured) -> Result<TopicAssignment> {
        let mut out = TopicAssignment::new();
        for _ in 0..u.int_in_range(0..=3u8)? {
            let id = if u.ratio(1, 4)? { Uuid::from_u128(99) } else { Uuid::from_u128(u.int_in_range(1..=3u128)?) };
            out.entry(id).or_default().insert(u.int_in_range(-1..=PARTITIONS_MAX as i32)?);
        }
        Ok(out)
    }

    fn epoch(&self, u: &mut Unstructured, member_id: &str) -> Result<i32> {
        let told = self.clients.get(member_id).and_then(|c| c.epoch);
        let in_group = self.group.member(member_id).map(|m| (m.epoch, m.previous_epoch));
        Ok(match u.int_in_range(0..=11u8)? {
            0 | 1 => 0,
            2 => LEAVE_EPOCH,
            3 => STATIC_LEAVE_EPOCH,
            4..=7 if told.is_some() => told.expect("checked"),
            8 if in_group.is_some() => in_group.expect("checked").1,
            9 if in_group.is_some() => in_group.expect("checked").0,
            _ => u.int_in_range(-3..=self.group.epoch() + 1)?,
        })
    }

    fn heartbeat(&mut self, u: &mut Unstructured) -> Result<()> {
        let member_id = self.member_id(u)?;
        let member_epoch = self.epoch(u, &member_id)?;
        self.fresh_next += 1;
        let mut request = HeartbeatRequest {
            group_id: "g".into(),
            member_id: member_id.clone(),
            member_epoch,
            instance_id: if u.ratio(1, 3)? { Some(u.choose(INSTANCES)?.to_string()) } else { None },
            rack_id: None,
            rebalance_timeout_ms: u.int_in_range(-1..=REBALANCE_TIMEOUT_MS_MAX)?,
            subscribed_topic_names: None,
            owned: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            member_id_fresh: format!("m{}", self.fresh_next),
        };
        if member_epoch == 0 || u.ratio(1, 6)? {
            request.subscribed_topic_names = if member_epoch == 0 && u.ratio(1, 16)? { None } else { Some(Self::subscription(u)?) };
        }
        // The client's side: a join starts from nothing; a heartbeat reports what it holds,
        // perhaps less (it gave partitions up on its own), perhaps with partitions it never had.
        let mut client = self.clients.get(&member_id).cloned().unwrap_or_default();
        if member_epoch == 0 {
            client = Client::default();
        } else if member_epoch > 0 && u.ratio(3, 4)? {
            let mut kept = TopicAssignment::new();
            for (topic, partitions) in &client.held {
                for p in partitions {
                    if u.ratio(7, 8)? {
                        kept.entry(*topic).or_default().insert(*p);
                    }
                }
            }
            let mut reported = kept.clone();
            if u.ratio(1, 8)? {
                for (topic, partitions) in self.garbage(u)? {
                    reported.entry(topic).or_default().extend(partitions);
                }
            }
            client.held = kept;
            request.owned = Some(reported);
        }
        let lost = u.ratio(1, 10)?;

        let before = self.group.clone();
        let outcome = self.group.heartbeat(&self.timeouts, &self.topics, request, self.now_ms);
        match outcome.answer {
            HeartbeatAnswer::Error { code, .. } => {
                assert!([ec::INVALID_REQUEST, ec::UNKNOWN_MEMBER_ID, ec::FENCED_MEMBER_EPOCH].contains(&code), "unexpected error {code}");
                if code == ec::INVALID_REQUEST {
                    assert_eq!(member_epoch, 0, "only a join without a subscription is invalid");
                } else {
                    assert!(member_epoch > 0 || member_epoch < STATIC_LEAVE_EPOCH, "epoch {member_epoch} refused with {code}");
                }
                assert!(self.group == before, "a refused heartbeat changed the group");
                // The client gives up everything and must rejoin.
                self.clients.insert(member_id.clone(), Client::default());
            }
            HeartbeatAnswer::Member { member_id: answered_id, member_epoch: answered_epoch, heartbeat_interval_ms, assignment } => {
                assert_eq!(heartbeat_interval_ms, self.timeouts.heartbeat_interval_ms);
                if member_epoch == LEAVE_EPOCH || member_epoch == STATIC_LEAVE_EPOCH {
                    assert_eq!((answered_id.as_str(), answered_epoch), (member_id.as_str(), member_epoch));
                    assert!(assignment.is_none());
                    assert!(self.group.member(&member_id).is_none(), "a member that left is gone");
                    self.clients.insert(member_id.clone(), Client::default());
                } else {
                    if member_id.is_empty() {
                        assert!(answered_id.starts_with('m'), "a member without an id gets the fresh one");
                    } else {
                        assert_eq!(answered_id, member_id);
                    }
                    let member = self.group.member(&answered_id).expect("an answered member is in the group");
                    assert_eq!(answered_epoch, member.epoch, "the answer carries the member's epoch");
                    if let Some(told) = client.epoch {
                        assert!(answered_epoch >= told, "member {answered_id} was told epoch {told}, then {answered_epoch}");
                    }
                    if let Some(sent) = &assignment {
                        assert!(is_part_of(sent, &member.assigned), "{answered_id} told {sent:?}, but it owns {:?}", member.assigned);
                    }
                    if !lost {
                        client.epoch = Some(answered_epoch);
                        if let Some(sent) = assignment {
                            client.held = sent;
                        }
                    }
                    self.clients.insert(answered_id, client);
                }
            }
        }
        // Epochs of members that stayed, and did not rejoin, never go back.
        for m in before.members() {
            if let Some(after) = self.group.member(&m.member_id) {
                if !(member_epoch == 0 && m.member_id == member_id) {
                    assert!(after.epoch >= m.epoch, "member {}'s epoch went from {} to {}", m.member_id, m.epoch, after.epoch);
                }
            }
        }
        Ok(())
    }

    fn tick(&mut self, u: &mut Unstructured) -> Result<()> {
        // Time passes: to just before the next deadline (nothing may happen), or past it.
        if let Some(deadline) = self.group.next_deadline_ms(&self.timeouts) {
            if deadline > self.now_ms + 1 {
                let before = self.group.clone();
                let notes = self.group.tick(&self.timeouts, &self.topics, deadline - 1);
                assert!(notes.is_empty(), "a tick before the deadline did something: {notes:?}");
                assert!(self.group == before, "a tick before the deadline changed the group");
            }
            self.now_ms = self.now_ms.max(deadline) + u64::from(u.int_in_range(0..=3u8)?);
        }
        let before = self.group.clone();
        self.group.tick(&self.timeouts, &self.topics, self.now_ms);
        if let Some(next) = self.group.next_deadline_ms(&self.timeouts) {
            assert!(next > self.now_ms, "after a tick at {}, a deadline at {next} is still due", self.now_ms);
        }
        for m in before.members() {
            if let Some(after) = self.group.member(&m.member_id) {
                assert!(after.epoch >= m.epoch, "a tick moved member {}'s epoch back", m.member_id);
            }
        }
        Ok(())
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        self.now_ms += u64::from(u.int_in_range(0..=20u8)?);
        match u.int_in_range(0..=15u8)? {
            0..=10 => self.heartbeat(u)?,
            11 | 12 => self.tick(u)?,
            13 => {
                // A topic gets more partitions, or "t2" is created.
                let name = u.choose(&TOPIC_NAMES[..3])?.to_string();
                let id = Uuid::from_u128(TOPIC_NAMES.iter().position(|n| *n == name).expect("listed") as u128 + 1);
                let count = self.topics.get(&name).map_or(0, |t| t.1);
                if count < PARTITIONS_MAX {
                    self.topics.insert(name, (id, u.int_in_range(count + 1..=PARTITIONS_MAX)?));
                }
            }
            14 => self.timeouts = timeouts(u)?,
            _ => {
                // Only the checks below: a commit from anyone.
                let member_id = self.member_id(u)?;
                let epoch = u.int_in_range(-1..=self.group.epoch() + 1)?;
                let code = self.group.commit_error(&member_id, epoch);
                if let Some(m) = self.group.member(&member_id) {
                    assert_eq!(code.is_none(), epoch == m.epoch || epoch == m.previous_epoch);
                }
            }
        }
        self.check();
        Ok(())
    }

    fn check(&mut self) {
        self.group.check_invariants();
        assert!(self.group.epoch() >= self.group_epoch, "the group epoch never goes back");
        self.group_epoch = self.group.epoch();
        // A client whose member is no longer in the group is a zombie until its next heartbeat
        // tells it so: only the members' clients count.
        let mut holders: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for (member_id, client) in &self.clients {
            let Some(member) = self.group.member(member_id) else { continue };
            assert!(is_part_of(&client.held, &member.assigned), "client {member_id} holds {:?}, the coordinator counts {:?}", client.held, member.assigned);
            for (topic, partitions) in &client.held {
                for p in partitions {
                    if let Some(other) = holders.insert((*topic, *p), member_id) {
                        panic!("partition {topic}-{p} is held by clients {other} and {member_id}");
                    }
                }
            }
        }
        // Bound what the target remembers, as a group is bounded by its events.
        if self.clients.len() > 32 {
            let gone: Vec<String> = self.clients.keys().filter(|id| self.group.member(id).is_none()).cloned().collect();
            for id in gone {
                self.clients.remove(&id);
            }
        }
    }
}

fn is_part_of(small: &TopicAssignment, big: &TopicAssignment) -> bool {
    small.iter().all(|(topic, partitions)| partitions.is_empty() || big.get(topic).is_some_and(|b| partitions.is_subset(b)))
}

fn timeouts(u: &mut Unstructured) -> Result<GroupTimeouts> {
    let session_timeout_ms = u.int_in_range(1..=SESSION_TIMEOUT_MS_MAX)?;
    Ok(GroupTimeouts { session_timeout_ms, heartbeat_interval_ms: u.int_in_range(1..=session_timeout_ms)? })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(timeouts) = timeouts(&mut u) else { return };
    let Ok(t0) = u.int_in_range(1..=PARTITIONS_MAX) else { return };
    let Ok(t1) = u.int_in_range(1..=PARTITIONS_MAX) else { return };
    let topics = BTreeMap::from([("t0".to_string(), (Uuid::from_u128(1), t0)), ("t1".to_string(), (Uuid::from_u128(2), t1))]);
    let mut model = Model { group: ConsumerGroup::new(), topics, timeouts, now_ms: 0, fresh_next: 0, clients: BTreeMap::new(), group_epoch: 0 };
    for _ in 0..EVENTS_MAX {
        if u.is_empty() || model.step(&mut u).is_err() {
            break;
        }
    }
});
