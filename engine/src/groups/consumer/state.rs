//! The KIP-848 consumer group protocol's state machine for one group, with no I/O: no runtime,
//! no clock, no randomness, no Kafka message structs. A ConsumerGroupHeartbeat comes in as a
//! [`HeartbeatRequest`] with the time it arrives at, `now_ms`, and goes out as a
//! [`HeartbeatAnswer`] (plain data; `responses` builds the wire message) with [`Note`]s for the
//! log. Timers are deadlines: [`ConsumerGroup::tick`] applies the ones that passed and
//! [`ConsumerGroup::next_deadline_ms`] says when the next one falls. Nothing is persisted: the
//! membership lives in memory only, as it always has here.
//!
//! - Every change of membership, subscription or partition count bumps the group epoch and
//!   recomputes the target assignment (the "uniform" server assignor below: per topic, an even
//!   share for each subscriber, keeping partitions where they are whenever the share allows).
//! - Each member reconciles towards its target one heartbeat at a time. It is first told to
//!   revoke what it must give up (its epoch stays), and only once it reports those revoked does
//!   it move to the new epoch and receive new partitions, and then only partitions that no other
//!   member still owns. So a partition never has two owners.
//! - A member that misses its group's `consumer.session.timeout.ms` is removed; one that does
//!   not revoke within its rebalance timeout is fenced. The driver resolves the group's configs
//!   (its own or the broker's `group.consumer.*`) into [`GroupTimeouts`] at every event, so that
//!   a changed config applies at once.
//!
//! This file depends on nothing of the engine (only std, `uuid` and the protocol crate's error
//! codes): the fuzz target `consumer_group_state` compiles it on its own.

use std::collections::{BTreeMap, BTreeSet};

use shardlog_protocol::error_code as ec;
use uuid::Uuid;

/// The member epoch a member leaves with; a static member's temporary leave uses -2.
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// The assignor the coordinator runs, whatever a member asks for among [`ASSIGNORS`].
pub const ASSIGNOR_NAME: &str = "uniform";
/// The server assignors a member may name; both run the uniform assignor.
pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// Partitions by topic id.
pub type TopicAssignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the state machine needs of the cluster's topics: the driver answers from its metadata.
pub trait Topics {
    /// The topic's id and partition count, None when it does not exist.
    fn topic(&self, name: &str) -> Option<(Uuid, usize)>;
}

/// A fixed set of topics (tests and the fuzz target).
impl Topics for BTreeMap<String, (Uuid, usize)> {
    fn topic(&self, name: &str) -> Option<(Uuid, usize)> {
        self.get(name).copied()
    }
}

/// The group's configs in effect at this event: `consumer.session.timeout.ms` and
/// `consumer.heartbeat.interval.ms`, the group's own or the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupTimeouts {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
}

/// A member as ConsumerGroupDescribe shows it. The fields are public to read; only the state
/// machine holds a `&mut ConsumerMember`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: u64,
    pub subscribed: Vec<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// Partitions the member owns, as far as the coordinator knows (given and not yet revoked).
    pub assigned: TopicAssignment,
    /// The assignment last sent, so that unchanged assignments are not resent.
    last_sent: Option<TopicAssignment>,
    pub last_heartbeat_ms: u64,
    /// When the member was first asked to revoke partitions it still holds.
    revoking_since_ms: Option<u64>,
}

/// A ConsumerGroupHeartbeat, as the state machine needs it.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    /// For error messages only: the state machine is one group's already.
    pub group_id: String,
    /// Empty for a member that joins without an id.
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat (required when joining).
    pub subscribed_topic_names: Option<Vec<String>>,
    /// The partitions the client owns; None: unchanged since the last heartbeat.
    pub owned: Option<TopicAssignment>,
    pub client_id: String,
    pub client_host: String,
    /// The id a member that joins without one gets. The driver makes it (Kafka's ids are random
    /// UUIDs), so that the state machine has no source of randomness.
    pub member_id_fresh: String,
}

/// What a ConsumerGroupHeartbeat is answered with; `responses::consumer_heartbeat` turns it into
/// the wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatAnswer {
    /// Answered with member epoch -1 and no member id, as Kafka does.
    Error { code: i16, message: String },
    Member {
        member_id: String,
        member_epoch: i32,
        heartbeat_interval_ms: i32,
        /// None when unchanged since the last one sent.
        assignment: Option<TopicAssignment>,
    },
}

fn error(code: i16, message: String) -> HeartbeatAnswer {
    HeartbeatAnswer::Error { code, message }
}

/// Why a member left the group without asking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    SessionTimeout,
    /// It did not revoke within its rebalance timeout.
    RebalanceTimeout,
}

/// What happened, for the log: the state machine has no logger, the driver writes these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    MemberJoined { member_id: String },
    MemberLeft { member_id: String },
    MemberRemoved { member_id: String, cause: RemovalCause },
    TargetAssignment { epoch: i32, members: usize },
}

/// A heartbeat's answer and what happened on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    pub answer: HeartbeatAnswer,
    pub notes: Vec<Note>,
}

/// Why a heartbeat is refused before its group is looked up, if it is: so that a refused
/// request creates no group.
pub fn request_error(group_id: &str, server_assignor: Option<&str>) -> Option<HeartbeatAnswer> {
    if group_id.is_empty() {
        return Some(error(ec::INVALID_REQUEST, "GroupId can't be empty.".into()));
    }
    match server_assignor {
        Some(a) if !ASSIGNORS.contains(&a) => Some(error(ec::UNSUPPORTED_ASSIGNOR, format!("server assignor {a} is not supported; use one of {ASSIGNORS:?}"))),
        _ => None,
    }
}

/// One group's KIP-848 membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerGroup {
    epoch: i32,
    assignment_epoch: i32,
    members: BTreeMap<String, ConsumerMember>,
    /// Every member's target assignment (an entry for each member, possibly empty).
    target: BTreeMap<String, TopicAssignment>,
    /// (topic, partition count) for every subscribed topic when the target was computed.
    topics_seen: Vec<(String, usize)>,
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup::default()
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn assignment_epoch(&self) -> i32 {
        self.assignment_epoch
    }

    /// Members in member-id order.
    pub fn members(&self) -> impl Iterator<Item = &ConsumerMember> {
        self.members.values()
    }

    pub fn member(&self, member_id: &str) -> Option<&ConsumerMember> {
        self.members.get(member_id)
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The member's target assignment (empty for one not known).
    pub fn target(&self, member_id: &str) -> Option<&TopicAssignment> {
        self.target.get(member_id)
    }

    /// Kafka's state names: Empty, Assigning (a new group epoch without its target yet, which
    /// this coordinator never shows: it computes the target at once), Reconciling (some member
    /// not yet at its target), Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self.members.values().any(|m| m.epoch != self.assignment_epoch || Some(&m.assigned) != self.target.get(&m.member_id)) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Topics the members subscribe to, each once, in first-subscribed order: what OffsetDelete
    /// refuses to delete.
    pub fn subscribed_topic_names(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for m in self.members.values() {
            for t in &m.subscribed {
                if !topics.contains(t) {
                    topics.push(t.clone());
                }
            }
        }
        topics
    }

    /// ConsumerGroupHeartbeat: join (epoch 0), leave (epoch -1 or -2), or heartbeat at the
    /// member's epoch. The request must have passed [`request_error`].
    pub fn heartbeat(&mut self, timeouts: &GroupTimeouts, topics: &impl Topics, request: HeartbeatRequest, now_ms: u64) -> HeartbeatOutcome {
        let mut notes = Vec::new();
        let answer = self.heartbeat_into(timeouts, topics, request, now_ms, &mut notes);
        HeartbeatOutcome { answer, notes }
    }

    fn heartbeat_into(
        &mut self,
        timeouts: &GroupTimeouts,
        topics: &impl Topics,
        request: HeartbeatRequest,
        now: u64,
        notes: &mut Vec<Note>,
    ) -> HeartbeatAnswer {
        debug_assert!(request_error(&request.group_id, None).is_none());
        let epoch = request.member_epoch;
        let mut member_id = request.member_id;
        match epoch {
            0 => {
                let Some(subscribed) = request.subscribed_topic_names else {
                    return error(ec::INVALID_REQUEST, "SubscribedTopicNames must be set when joining.".into());
                };
                if member_id.is_empty() {
                    member_id = request.member_id_fresh;
                }
                if let Some(instance) = &request.instance_id {
                    // A static member's new incarnation replaces the old one; the rebalance
                    // below recomputes the target without it.
                    self.members.retain(|id, m| m.instance_id.as_deref() != Some(instance.as_str()) || *id == member_id);
                }
                self.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        member_id: member_id.clone(),
                        instance_id: request.instance_id,
                        rack_id: request.rack_id,
                        client_id: request.client_id,
                        client_host: request.client_host,
                        rebalance_timeout_ms: request.rebalance_timeout_ms.max(0) as u64,
                        subscribed,
                        last_heartbeat_ms: now,
                        ..Default::default()
                    },
                );
                notes.push(Note::MemberJoined { member_id: member_id.clone() });
                self.rebalance(topics, notes);
            }
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                if self.members.contains_key(&member_id) {
                    notes.push(Note::MemberLeft { member_id: member_id.clone() });
                    self.remove_member(&member_id, topics, notes);
                }
                return HeartbeatAnswer::Member { member_id, member_epoch: epoch, heartbeat_interval_ms: timeouts.heartbeat_interval_ms, assignment: None };
            }
            _ => {
                let Some(member) = self.members.get_mut(&member_id) else {
                    return error(ec::UNKNOWN_MEMBER_ID, format!("Member {member_id} is not a member of group {}.", request.group_id));
                };
                if epoch != member.epoch && epoch != member.previous_epoch {
                    return error(ec::FENCED_MEMBER_EPOCH, format!("Member epoch {epoch} is not the current epoch {}.", member.epoch));
                }
                member.last_heartbeat_ms = now;
                if request.rebalance_timeout_ms > 0 {
                    member.rebalance_timeout_ms = request.rebalance_timeout_ms as u64;
                }
                // The client reports what it owns: partitions it has revoked are released.
                if let Some(reported) = &request.owned {
                    member.assigned = member
                        .assigned
                        .iter()
                        .map(|(t, ps)| (*t, ps.iter().filter(|p| reported.get(t).is_some_and(|r| r.contains(p))).copied().collect::<BTreeSet<i32>>()))
                        .filter(|(_, ps)| !ps.is_empty())
                        .collect();
                    if member.last_sent.as_ref() != Some(&member.assigned) && epoch == member.epoch {
                        // Resend if the client's view differs from what we last told it.
                        member.last_sent = None;
                    }
                }
                let mut resubscribe = false;
                if let Some(names) = request.subscribed_topic_names {
                    if names != member.subscribed {
                        member.subscribed = names;
                        resubscribe = true;
                    }
                }
                if resubscribe || self.subscribed_topics(topics) != self.topics_seen {
                    self.rebalance(topics, notes);
                }
            }
        }
        let assignment = self.reconcile(&member_id, now);
        let member_epoch = self.members[&member_id].epoch;
        HeartbeatAnswer::Member { member_id, member_epoch, heartbeat_interval_ms: timeouts.heartbeat_interval_ms, assignment }
    }

    /// When the next member's session or rebalance timeout runs out, if any member has one.
    pub fn next_deadline_ms(&self, timeouts: &GroupTimeouts) -> Option<u64> {
        let session_timeout_ms = session_timeout_ms(timeouts);
        // A timeout runs out once more than it has passed.
        self.members
            .values()
            .flat_map(|m| {
                let session = m.last_heartbeat_ms.saturating_add(session_timeout_ms).saturating_add(1);
                let revocation = m.revoking_since_ms.map(|t| t.saturating_add(m.rebalance_timeout_ms.max(1)).saturating_add(1));
                [Some(session), revocation]
            })
            .flatten()
            .min()
    }

    /// The passing of time: removes the members whose session or rebalance timeout ran out.
    pub fn tick(&mut self, timeouts: &GroupTimeouts, topics: &impl Topics, now_ms: u64) -> Vec<Note> {
        let now = now_ms;
        let session_timeout_ms = session_timeout_ms(timeouts);
        let expired: Vec<(String, RemovalCause)> = self
            .members
            .values()
            .filter_map(|m| {
                if now.saturating_sub(m.last_heartbeat_ms) > session_timeout_ms {
                    Some((m.member_id.clone(), RemovalCause::SessionTimeout))
                } else if m.revoking_since_ms.is_some_and(|t| now.saturating_sub(t) > m.rebalance_timeout_ms.max(1)) {
                    Some((m.member_id.clone(), RemovalCause::RebalanceTimeout))
                } else {
                    None
                }
            })
            .collect();
        let mut notes = Vec::new();
        for (member_id, cause) in expired {
            notes.push(Note::MemberRemoved { member_id: member_id.clone(), cause });
            self.remove_member(&member_id, topics, &mut notes);
        }
        notes
    }

    /// Checks an offset commit from a member: the member epoch stands in for the classic
    /// generation. A commit from outside the group (no member id, no epoch) is accepted while
    /// the group has no members, as for a classic group.
    pub fn commit_error(&self, member_id: &str, epoch: i32) -> Option<i16> {
        if member_id.is_empty() && epoch < 0 {
            return if self.members.is_empty() { None } else { Some(ec::UNKNOWN_MEMBER_ID) };
        }
        match self.members.get(member_id) {
            None => Some(ec::UNKNOWN_MEMBER_ID),
            Some(m) if epoch != m.epoch && epoch != m.previous_epoch => Some(ec::ILLEGAL_GENERATION),
            Some(_) => None,
        }
    }

    fn subscribed_topics(&self, topics: &impl Topics) -> Vec<(String, usize)> {
        let names: BTreeSet<&String> = self.members.values().flat_map(|m| m.subscribed.iter()).collect();
        names.into_iter().filter_map(|n| topics.topic(n).map(|(_, count)| (n.clone(), count))).collect()
    }

    /// Bumps the epoch and recomputes the target assignment.
    fn rebalance(&mut self, topics: &impl Topics, notes: &mut Vec<Note>) {
        self.epoch += 1;
        self.topics_seen = self.subscribed_topics(topics);
        self.target = uniform_assignment(&self.members, &self.topics_seen, topics);
        self.assignment_epoch = self.epoch;
        notes.push(Note::TargetAssignment { epoch: self.epoch, members: self.members.len() });
    }

    fn owner_of(&self, topic: &Uuid, partition: i32, except: &str) -> Option<&str> {
        self.members.values().find(|m| m.member_id != except && m.assigned.get(topic).is_some_and(|p| p.contains(&partition))).map(|m| m.member_id.as_str())
    }

    fn remove_member(&mut self, member_id: &str, topics: &impl Topics, notes: &mut Vec<Note>) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.rebalance(topics, notes);
        }
    }

    /// Moves one member towards its target; returns the assignment to send, if it changed.
    fn reconcile(&mut self, member_id: &str, now: u64) -> Option<TopicAssignment> {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned = self.members[member_id].assigned.clone();
        let keep: TopicAssignment = owned
            .iter()
            .map(|(t, ps)| (*t, ps.iter().filter(|p| target.get(t).is_some_and(|tp| tp.contains(p))).copied().collect::<BTreeSet<i32>>()))
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        let must_revoke = keep != owned;
        let mut assignment = keep.clone();
        if !must_revoke {
            // Add what the target gives, as far as no other member still holds it.
            for (topic, partitions) in &target {
                for p in partitions {
                    if self.owner_of(topic, *p, member_id).is_none() {
                        assignment.entry(*topic).or_default().insert(*p);
                    }
                }
            }
        }
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("member exists");
        if must_revoke {
            member.revoking_since_ms.get_or_insert(now);
        } else {
            member.revoking_since_ms = None;
            member.assigned = assignment.clone();
            if member.epoch != assignment_epoch {
                member.previous_epoch = member.epoch;
                member.epoch = assignment_epoch;
            }
        }
        if member.last_sent.as_ref() != Some(&assignment) {
            member.last_sent = Some(assignment.clone());
            Some(assignment)
        } else {
            None
        }
    }

    /// Checks the invariants that hold between events; a broken one is a programmer error.
    /// Cheap enough for tests and the fuzz target, too dear for every request.
    pub fn check_invariants(&self) {
        assert!(self.assignment_epoch <= self.epoch, "the target is never ahead of the group epoch");
        assert!(self.target.keys().eq(self.members.keys()), "every member, and only members, has a target");
        let mut owners: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
        for m in self.members.values() {
            assert!(m.epoch <= self.epoch, "member {} is not ahead of the group epoch", m.member_id);
            assert!(m.previous_epoch <= m.epoch, "member {}'s previous epoch is behind its epoch", m.member_id);
            for (topic, partitions) in &m.assigned {
                assert!(!partitions.is_empty(), "member {} owns no empty topic entry", m.member_id);
                for p in partitions {
                    if let Some(other) = owners.insert((*topic, *p), &m.member_id) {
                        panic!("partition {topic}-{p} has two owners: {other} and {}", m.member_id);
                    }
                }
            }
        }
        let mut targeted: BTreeSet<(Uuid, i32)> = BTreeSet::new();
        for (member_id, assignment) in &self.target {
            for (topic, partitions) in assignment {
                for p in partitions {
                    assert!(targeted.insert((*topic, *p)), "partition {topic}-{p} is in two targets, one of them {member_id}'s");
                }
            }
        }
    }
}

fn session_timeout_ms(timeouts: &GroupTimeouts) -> u64 {
    timeouts.session_timeout_ms.max(1) as u64
}

/// Per topic, an even share of its partitions for each member subscribed to it; partitions stay
/// with their current owner while that owner is under its share.
fn uniform_assignment(members: &BTreeMap<String, ConsumerMember>, seen: &[(String, usize)], topics: &impl Topics) -> BTreeMap<String, TopicAssignment> {
    let mut target: BTreeMap<String, TopicAssignment> = members.keys().map(|m| (m.clone(), TopicAssignment::new())).collect();
    for (name, count) in seen {
        let Some((id, _)) = topics.topic(name) else { continue };
        let subscribers: Vec<&String> = members.values().filter(|m| m.subscribed.contains(name)).map(|m| &m.member_id).collect();
        if subscribers.is_empty() {
            continue;
        }
        let base = count / subscribers.len();
        let extra = count % subscribers.len();
        // The first `extra` subscribers (in member-id order) get one more.
        let quota = |i: usize| base + usize::from(i < extra);
        let mut given: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); subscribers.len()];
        let mut taken = BTreeSet::new();
        for (i, m) in subscribers.iter().enumerate() {
            if let Some(current) = members[*m].assigned.get(&id) {
                for p in current.iter().filter(|p| (**p as usize) < *count) {
                    if given[i].len() < quota(i) && taken.insert(*p) {
                        given[i].insert(*p);
                    }
                }
            }
        }
        let mut free = (0..*count as i32).filter(|p| !taken.contains(p));
        for (i, set) in given.iter_mut().enumerate() {
            while set.len() < quota(i) {
                match free.next() {
                    Some(p) => {
                        set.insert(p);
                    }
                    None => break,
                }
            }
        }
        for (i, set) in given.into_iter().enumerate() {
            if !set.is_empty() {
                target.get_mut(subscribers[i]).expect("member").insert(id, set);
            }
        }
    }
    target
}

// By path, so that tools which reach this file through the fuzz target's `#[path]` (rustfmt)
// find the tests where rustc does.
#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
