//! The classic consumer-group state machine (`engine/src/groups/classic/state.rs`), driven by
//! an arbitrary sequence of JoinGroup, SyncGroup, Heartbeat, LeaveGroup, commit checks and
//! ticks, at arbitrary (non-decreasing) times. The module has no I/O and depends only on std,
//! `bytes` and the protocol crate, so it is compiled into this target by path: the engine crate
//! around it would bring glommio, TLS and the rest into the instrumented build.
//!
//! After every event the target checks:
//! - the state machine's own invariants (`ClassicGroup::check_invariants`: a CompletingRebalance
//!   or Stable group has members and a leader that is one of them, an Empty group has neither,
//!   static members map back to themselves, ...);
//! - every waiting request is answered exactly once: each answer names a request that waits,
//!   and the requests the group still holds are exactly those not answered yet;
//! - every member of a CompletingRebalance or Stable group was last told the current
//!   generation (its JoinGroup answer), and the leader's answer lists every member;
//! - an assignment is handed out only by a Stable group;
//! - the generation never goes back;
//! - a tick before `next_deadline_ms` changes nothing and says nothing.
#![no_main]

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use shardlog_protocol::error_code as ec;

#[allow(dead_code)]
#[path = "../../engine/src/groups/classic/state.rs"]
mod state;

use state::{ClassicGroup, ClassicLimits, Effect, GroupState, JoinAnswer, JoinRequest, SyncAnswer, SyncRequest, Waiter};

/// Bounds that keep one execution short: a few members and events find every state.
const EVENTS_MAX: usize = 64;
const GROUP_SIZE_MAX: usize = 5;
const INSTANCES: &[&str] = &["i0", "i1", "i2"];
const PROTOCOLS: &[&str] = &["range", "roundrobin", "sticky"];
/// Small timeouts, so that a few steps of the clock reach every deadline.
const SESSION_TIMEOUT_MS_MIN: i32 = 6;
const SESSION_TIMEOUT_MS_MAX: i32 = 60;

/// What the target knows of the conversation so far.
struct Model {
    group: ClassicGroup,
    limits: ClassicLimits,
    now_ms: u64,
    waiter_next: Waiter,
    member_id_next: u64,
    /// Requests sent and not yet answered.
    waiting: HashSet<Waiter>,
    /// Member ids the target has heard of (answers, MEMBER_ID_REQUIRED), to send back.
    member_ids: Vec<String>,
    /// The generation each member was last told in a JoinGroup answer.
    told: HashMap<String, i32>,
    generation: i32,
}

impl Model {
    fn waiter(&mut self) -> Waiter {
        self.waiter_next += 1;
        self.waiting.insert(self.waiter_next);
        self.waiter_next
    }

    fn member_id(&self, u: &mut Unstructured) -> Result<String> {
        Ok(match u.int_in_range(0..=7u8)? {
            0..=2 => String::new(),
            3 => String::from("ghost"),
            _ if self.member_ids.is_empty() => String::new(),
            _ => u.choose(&self.member_ids)?.clone(),
        })
    }

    fn instance_id(u: &mut Unstructured) -> Result<Option<String>> {
        Ok(if u.ratio(1, 3)? { Some(u.choose(INSTANCES)?.to_string()) } else { None })
    }

    fn generation(&self, u: &mut Unstructured) -> Result<i32> {
        let g = self.group.generation();
        Ok(match u.int_in_range(0..=3u8)? {
            0 | 1 => g,
            2 => g - 1,
            _ => u.int_in_range(-1..=g + 1)?,
        })
    }

    fn protocols(u: &mut Unstructured) -> Result<Vec<(String, Bytes)>> {
        let count = u.int_in_range(0..=PROTOCOLS.len())?;
        let mut out: Vec<(String, Bytes)> = Vec::new();
        for _ in 0..count {
            let name = u.choose(PROTOCOLS)?.to_string();
            if out.iter().all(|(n, _)| *n != name) {
                let metadata = Bytes::from(vec![u.arbitrary::<u8>()?]);
                out.push((name, metadata));
            }
        }
        Ok(out)
    }

    fn step(&mut self, u: &mut Unstructured) -> Result<()> {
        self.now_ms += u64::from(u.int_in_range(0..=40u8)?);
        let now = self.now_ms;
        let effects = match u.int_in_range(0..=9u8)? {
            0..=2 => {
                let waiter = self.waiter();
                self.member_id_next += 1;
                let session_timeout_ms = u.int_in_range(SESSION_TIMEOUT_MS_MIN..=SESSION_TIMEOUT_MS_MAX)?;
                let request = JoinRequest {
                    waiter,
                    version: u.int_in_range(0..=9)?,
                    member_id: self.member_id(u)?,
                    instance_id: Self::instance_id(u)?,
                    protocol_type: if u.ratio(1, 16)? {
                        String::new()
                    } else if u.ratio(1, 16)? {
                        "connect".into()
                    } else {
                        "consumer".into()
                    },
                    protocols: Self::protocols(u)?,
                    session_timeout_ms,
                    rebalance_timeout_ms: u.int_in_range(-1..=120)?,
                    client_id: "client".into(),
                    client_host: "/127.0.0.1".into(),
                    member_id_fresh: format!("m{}", self.member_id_next),
                };
                assert!(state::session_timeout_error(&self.limits, session_timeout_ms).is_none());
                self.group.join(&self.limits, request, now)
            }
            3 | 4 => {
                let waiter = self.waiter();
                let member_id = self.member_id(u)?;
                let mut assignments = Vec::new();
                for m in self.group.members() {
                    if u.ratio(3, 4)? {
                        assignments.push((m.member_id.clone(), Bytes::from(format!("{}@{}", m.member_id, self.group.generation()))));
                    }
                }
                let request = SyncRequest {
                    waiter,
                    version: u.int_in_range(0..=5)?,
                    member_id,
                    instance_id: Self::instance_id(u)?,
                    generation: self.generation(u)?,
                    protocol_type: if u.ratio(1, 4)? { None } else { self.group.protocol_type().map(str::to_string) },
                    protocol_name: if u.ratio(1, 4)? { Some(u.choose(PROTOCOLS)?.to_string()) } else { self.group.protocol_name().map(str::to_string) },
                    assignments,
                };
                self.group.sync(request, now)
            }
            5 => {
                let member_id = self.member_id(u)?;
                let generation = self.generation(u)?;
                let instance_id = Self::instance_id(u)?;
                let code = self.group.heartbeat(generation, &member_id, instance_id.as_deref(), now);
                if code == ec::NONE {
                    assert!(matches!(self.group.state(), GroupState::Stable | GroupState::CompletingRebalance));
                    assert_eq!(generation, self.group.generation());
                }
                Vec::new()
            }
            6 => {
                let mut leaving = Vec::new();
                for _ in 0..u.int_in_range(1..=2u8)? {
                    leaving.push((self.member_id(u)?, Self::instance_id(u)?));
                }
                let (codes, effects) = self.group.leave(&self.limits, &leaving, now);
                assert_eq!(codes.len(), leaving.len());
                effects
            }
            7 => {
                let member_id = self.member_id(u)?;
                let generation = if u.ratio(1, 4)? { -1 } else { self.generation(u)? };
                let instance_id = Self::instance_id(u)?;
                let _ = self.group.commit_error(generation, &member_id, instance_id.as_deref(), now);
                Vec::new()
            }
            _ => {
                // Time passes: to just before the next deadline (nothing may happen), or past it.
                if let Some(deadline) = self.group.next_deadline_ms() {
                    if deadline > now + 1 {
                        let before = self.group.clone();
                        let effects = self.group.tick(&self.limits, deadline - 1);
                        assert!(effects.is_empty(), "a tick before the deadline did something: {effects:?}");
                        assert!(self.group == before, "a tick before the deadline changed the group");
                    }
                    self.now_ms = self.now_ms.max(deadline) + u64::from(u.int_in_range(0..=3u8)?);
                }
                self.group.tick(&self.limits, self.now_ms)
            }
        };
        self.check(&effects);
        Ok(())
    }

    fn check(&mut self, effects: &[Effect]) {
        self.group.check_invariants();
        for effect in effects {
            match effect {
                Effect::AnswerJoin { waiter, answer } => {
                    assert!(self.waiting.remove(waiter), "JoinGroup {waiter} answered twice, or never asked");
                    match answer {
                        JoinAnswer::Joined(j) => {
                            if j.leader.as_deref() == Some(j.member_id.as_str()) {
                                assert!(j.members.iter().any(|m| m.member_id == j.member_id), "the leader's answer lists the leader");
                            } else {
                                assert!(j.members.is_empty(), "only the leader gets the members");
                            }
                            self.told.insert(j.member_id.clone(), j.generation);
                            if !self.member_ids.contains(&j.member_id) {
                                self.member_ids.push(j.member_id.clone());
                            }
                        }
                        JoinAnswer::Error { code, member_id } => {
                            if *code == ec::MEMBER_ID_REQUIRED {
                                self.member_ids.push(member_id.clone());
                            }
                        }
                    }
                }
                Effect::AnswerSync { waiter, answer } => {
                    assert!(self.waiting.remove(waiter), "SyncGroup {waiter} answered twice, or never asked");
                    if matches!(answer, SyncAnswer::Assigned { .. }) {
                        assert_eq!(self.group.state(), GroupState::Stable, "only a Stable group hands out assignments");
                    }
                }
                Effect::Note(_) => {}
            }
        }
        let held: HashSet<Waiter> = self.group.waiters().collect();
        assert_eq!(held.len(), self.group.waiters().count(), "a request waits once");
        assert_eq!(held, self.waiting, "the group holds exactly the requests not answered yet");
        if matches!(self.group.state(), GroupState::CompletingRebalance | GroupState::Stable) {
            for m in self.group.members() {
                assert_eq!(self.told.get(&m.member_id), Some(&self.group.generation()), "member {} knows the current generation", m.member_id);
            }
        }
        assert!(self.group.generation() >= self.generation, "the generation never goes back");
        self.generation = self.group.generation();
        // Bound the ids the target remembers, as the group bounds its members.
        if self.member_ids.len() > 4 * GROUP_SIZE_MAX {
            self.member_ids.drain(..GROUP_SIZE_MAX);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(initial_rebalance_delay_ms) = u.int_in_range(0..=30u64) else { return };
    let Ok(group_size_max) = u.int_in_range(1..=GROUP_SIZE_MAX) else { return };
    let mut model = Model {
        group: ClassicGroup::new(),
        limits: ClassicLimits {
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX,
            initial_rebalance_delay_ms,
            group_size_max,
        },
        now_ms: 0,
        waiter_next: 0,
        member_id_next: 0,
        waiting: HashSet::new(),
        member_ids: Vec::new(),
        told: HashMap::new(),
        generation: 0,
    };
    for _ in 0..EVENTS_MAX {
        if u.is_empty() || model.step(&mut u).is_err() {
            break;
        }
    }
});
