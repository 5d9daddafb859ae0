//! The classic group protocol's state machine for one group, with no I/O: no runtime, no
//! clock, no channels, no storage. Each event (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, an
//! offset commit's member check, the passing of time) comes in with the time it happens at,
//! `now_ms`, and what the driver must do about it comes back as [`Effect`]s: answer a request
//! that waits, or write a line to the log. Timers are deadlines: [`ClassicGroup::tick`] applies
//! the ones that passed, and [`ClassicGroup::next_deadline_ms`] says when the next one falls, so
//! that the driver knows when to come back.
//!
//! States, as Kafka's GroupCoordinator has them: Empty, PreparingRebalance,
//! CompletingRebalance, Stable (and Dead, which this coordinator never enters: a deleted group
//! is dropped instead).
//!
//! A rebalance starts when a member joins, changes its protocols, leaves, or misses its session
//! timeout. It completes when every known member has rejoined, or when the rebalance timeout
//! (the members' `max.poll.interval.ms`) runs out, and the members that did not rejoin are
//! removed. The leader then sends the assignment in SyncGroup. Static members
//! (`group.instance.id`) keep their place across restarts: a rejoin under the same instance id
//! replaces the old member without a rebalance when nothing else changed.
//!
//! A request that must wait (JoinGroup until the join phase completes, SyncGroup until the
//! leader's assignment arrives) is named by a [`Waiter`] the driver chooses; the state machine
//! keeps the name and answers it exactly once, in an effect, possibly during a later event.
//!
//! This file depends on nothing of the engine (only std, `bytes` and the protocol crate's error
//! codes): the fuzz target `group_state` compiles it on its own.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use shardlog_protocol::error_code as ec;

use crate::groups::offsets::{StoredGroup, StoredMember};

/// The driver's name for a request that waits for its answer; unique among those waiting.
pub type Waiter = u64;

/// The group settings the state machine needs, with Kafka's names (see `GroupConfig`).
#[derive(Debug, Clone)]
pub struct ClassicLimits {
    /// `group.min.session.timeout.ms`
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`
    pub group_size_max: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A member as DescribeGroups and the leader's JoinGroup answer show it. The fields are public
/// to read; only the state machine holds a `&mut Member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat_ms: u64,
    /// The JoinGroup this member waits in. A member that waits is alive: its session does not
    /// expire, and it counts as rejoined for the rebalance.
    join_waiter: Option<Waiter>,
    /// The version of the JoinGroup that waits, to build its answer with.
    join_version: i16,
    sync_waiter: Option<Waiter>,
}

impl Member {
    /// The metadata of the member's entry for `protocol`, empty when it has none.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, md)| md.clone()).unwrap_or_default()
    }
}

/// A JoinGroup, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub waiter: Waiter,
    pub version: i16,
    /// Empty for a member that joins for the first time.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session_timeout_ms: i32,
    /// Ignored before version 1, which has none: the session timeout stands in.
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    /// The id this join hands out if it must hand one out. The driver makes it (Kafka's ids
    /// carry a random UUID), so that the state machine has no source of randomness.
    pub member_id_fresh: String,
}

/// A SyncGroup, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub waiter: Waiter,
    pub version: i16,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// (member id, assignment): only the leader's are used.
    pub assignments: Vec<(String, Bytes)>,
}

/// What a JoinGroup is answered with; `responses::join` turns it into the wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinAnswer {
    Error { code: i16, member_id: String },
    Joined(Joined),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The version of the request answered: it decides which fields the response carries.
    pub version: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol: for the leader only, which
    /// computes the assignment.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a SyncGroup is answered with; `responses::sync` turns it into the wire message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAnswer {
    Error(i16),
    Assigned {
        /// The version to build the response with. When the leader's SyncGroup completes the
        /// others', theirs are built with the leader's version, as they always were here.
        version: i16,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        assignment: Bytes,
    },
}

/// Why a member left the group without asking to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovalCause {
    Left,
    SessionTimeout,
    /// It did not rejoin before the rebalance timeout.
    RebalanceTimeout,
}

/// What happened, for the log: the state machine has no logger, the driver writes these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    StaticMemberRejoined { instance_id: String, member_id: String },
    PreparingRebalance { generation: i32, members: usize },
    JoinComplete { generation: i32, members: usize, protocol_name: Option<String> },
    Stable { generation: i32 },
    MemberRemoved { member_id: String, cause: RemovalCause },
    Empty,
}

/// What the driver must do after an event, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    AnswerJoin { waiter: Waiter, answer: JoinAnswer },
    AnswerSync { waiter: Waiter, answer: SyncAnswer },
    Note(Note),
}

/// Why a JoinGroup's session timeout is refused, if it is: checked before the group is looked
/// up, so that a refused request leaves no trace.
pub fn session_timeout_error(limits: &ClassicLimits, session_timeout_ms: i32) -> Option<i16> {
    if session_timeout_ms < limits.session_timeout_ms_min || session_timeout_ms > limits.session_timeout_ms_max {
        Some(ec::INVALID_SESSION_TIMEOUT)
    } else {
        None
    }
}

fn join_error(waiter: Waiter, code: i16, member_id: &str) -> Effect {
    Effect::AnswerJoin { waiter, answer: JoinAnswer::Error { code, member_id: member_id.to_string() } }
}

fn sync_error(waiter: Waiter, code: i16) -> Effect {
    Effect::AnswerSync { waiter, answer: SyncAnswer::Error(code) }
}

/// One group's classic membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicGroup {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the time they must join by.
    pending_members: HashMap<String, u64>,
    /// When the current rebalance completes even if not everyone has rejoined.
    rebalance_deadline_ms: u64,
    /// The first rebalance of an empty group waits this long for more members.
    initial_delay_until_ms: Option<u64>,
}

impl Default for ClassicGroup {
    fn default() -> Self {
        ClassicGroup::new()
    }
}

impl ClassicGroup {
    pub fn new() -> ClassicGroup {
        ClassicGroup {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: None,
        }
    }

    /// The group's membership as its GroupMetadata record keeps it: the members with the
    /// chosen protocol's subscription and their assignment (none while it rebalances, as Kafka
    /// writes it only once a rebalance completed, or the group emptied).
    pub fn to_stored(&self, now_ms: u64) -> StoredGroup {
        let protocol = self.protocol_name.clone();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: now_ms as i64,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: i32::try_from(m.rebalance_timeout_ms).unwrap_or(i32::MAX),
                    session_timeout_ms: i32::try_from(m.session_timeout_ms).unwrap_or(i32::MAX),
                    subscription: protocol.as_deref().map(|p| m.metadata_for(p)).unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// The group a GroupMetadata record describes, as a coordinator that takes its partition
    /// over finds it: Stable with those members (each with a full session from `now_ms`, so a
    /// member that is gone expires and a rebalance follows), or Empty at that generation. A
    /// record that names no usable leader or protocol gives an Empty group.
    pub fn restore(stored: &StoredGroup, now_ms: u64) -> ClassicGroup {
        let mut g = ClassicGroup::new();
        g.generation = stored.generation.max(0);
        g.protocol_type = Some(stored.protocol_type.clone()).filter(|t| !t.is_empty());
        let usable = g.generation > 0
            && !stored.members.is_empty()
            && stored.protocol.is_some()
            && stored.leader.as_ref().is_some_and(|l| stored.members.iter().any(|m| &m.member_id == l));
        if !usable {
            return g;
        }
        for m in &stored.members {
            if let Some(instance) = &m.instance_id {
                g.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms.max(0) as u64,
                rebalance_timeout_ms: m.rebalance_timeout_ms.max(0) as u64,
                protocol_type: stored.protocol_type.clone(),
                protocols: vec![(stored.protocol.clone().unwrap_or_default(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                last_heartbeat_ms: now_ms,
                join_waiter: None,
                join_version: 0,
                sync_waiter: None,
            };
            g.members.insert(m.member_id.clone(), member);
        }
        g.protocol_name = stored.protocol.clone();
        g.leader = stored.leader.clone();
        g.state = GroupState::Stable;
        g
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Members in member-id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The member id a static member's instance id maps to.
    pub fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// Kafka's check of a request from `member_id` that names `instance_id`: an instance id now
    /// held by another member id means a newer incarnation took the slot, and this one is
    /// fenced (FENCED_INSTANCE_ID, fatal for the client). Checked before the member id itself,
    /// so that a replaced static member is told it was fenced rather than UNKNOWN_MEMBER_ID,
    /// which would send it to rejoin and take the slot back.
    fn member_error(&self, member_id: &str, instance_id: Option<&str>) -> Option<i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Some(ec::UNKNOWN_MEMBER_ID),
                Some(holder) if holder != member_id => return Some(ec::FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        (!self.members.contains_key(member_id)).then_some(ec::UNKNOWN_MEMBER_ID)
    }

    /// Ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub fn pending_member_count(&self) -> usize {
        self.pending_members.len()
    }

    /// The waiters this group holds, joins then syncs, for checks of the answer-once rule.
    pub fn waiters(&self) -> impl Iterator<Item = Waiter> + '_ {
        self.members.values().filter_map(|m| m.join_waiter).chain(self.members.values().filter_map(|m| m.sync_waiter))
    }

    /// Topics the members subscribe to, for a group of the consumer protocol type: what
    /// OffsetDelete refuses to delete.
    pub fn subscribed_topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        if self.protocol_type.as_deref() != Some("consumer") {
            return topics;
        }
        for m in self.members.values() {
            let chosen = self.protocol_name.as_deref();
            if let Some((_, metadata)) = m.protocols.iter().find(|(n, _)| Some(n.as_str()) == chosen).or(m.protocols.first()) {
                for t in parse_subscription_topics(metadata) {
                    if !topics.contains(&t) {
                        topics.push(t);
                    }
                }
            }
        }
        topics
    }

    /// JoinGroup. The request's answer is among the effects, or comes in the effects of a later
    /// event (when the join phase completes). The session timeout must have passed
    /// [`session_timeout_error`].
    pub fn join(&mut self, limits: &ClassicLimits, request: JoinRequest, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.join_into(limits, request, now_ms, &mut effects);
        effects
    }

    fn join_into(&mut self, limits: &ClassicLimits, request: JoinRequest, now: u64, effects: &mut Vec<Effect>) {
        let JoinRequest {
            waiter,
            version,
            member_id,
            instance_id,
            protocol_type,
            protocols,
            session_timeout_ms,
            rebalance_timeout_ms,
            client_id,
            client_host,
            member_id_fresh,
        } = request;
        debug_assert!(session_timeout_error(limits, session_timeout_ms).is_none());
        // The timeouts are positive once the check above passed; a negative rebalance timeout
        // (a broken client) counts as none.
        let session_timeout_ms = session_timeout_ms.max(0) as u64;
        let rebalance_timeout_ms = if version >= 1 { rebalance_timeout_ms.max(0) as u64 } else { session_timeout_ms };
        if self.state == GroupState::Dead {
            effects.push(join_error(waiter, ec::COORDINATOR_NOT_AVAILABLE, &member_id));
            return;
        }
        // The protocol type must match the group's, and the group must share a protocol.
        if protocol_type.is_empty() || protocols.is_empty() {
            effects.push(join_error(waiter, ec::INCONSISTENT_GROUP_PROTOCOL, &member_id));
            return;
        }
        if !self.members.is_empty() {
            if self.protocol_type.as_deref() != Some(protocol_type.as_str()) {
                effects.push(join_error(waiter, ec::INCONSISTENT_GROUP_PROTOCOL, &member_id));
                return;
            }
            let shared = protocols
                .iter()
                .any(|(name, _)| self.members.values().filter(|m| m.member_id != member_id).all(|m| m.protocols.iter().any(|(n, _)| n == name)));
            let others = self.members.values().filter(|m| m.member_id != member_id).count();
            if others > 0 && !shared {
                effects.push(join_error(waiter, ec::INCONSISTENT_GROUP_PROTOCOL, &member_id));
                return;
            }
        }
        let mut member_id = member_id;
        if member_id.is_empty() {
            // A static member rejoining under a known instance id replaces its old self.
            if let Some(instance) = &instance_id {
                if let Some(old_id) = self.static_members.get(instance).cloned() {
                    let new_id = member_id_fresh;
                    let mut old = self.members.remove(&old_id).expect("a static member is a member");
                    if let Some(w) = old.join_waiter.take() {
                        effects.push(join_error(w, ec::FENCED_INSTANCE_ID, &old_id));
                    }
                    if let Some(w) = old.sync_waiter.take() {
                        effects.push(sync_error(w, ec::FENCED_INSTANCE_ID));
                    }
                    let unchanged = old.protocols == protocols;
                    old.member_id = new_id.clone();
                    old.protocols = protocols;
                    old.client_id = client_id;
                    old.client_host = client_host;
                    old.session_timeout_ms = session_timeout_ms;
                    old.rebalance_timeout_ms = rebalance_timeout_ms;
                    old.last_heartbeat_ms = now;
                    if self.leader.as_deref() == Some(old_id.as_str()) {
                        self.leader = Some(new_id.clone());
                    }
                    self.static_members.insert(instance.clone(), new_id.clone());
                    self.members.insert(new_id.clone(), old);
                    effects.push(Effect::Note(Note::StaticMemberRejoined { instance_id: instance.clone(), member_id: new_id.clone() }));
                    if unchanged && self.state == GroupState::Stable {
                        // No rebalance: hand back the current generation; the member gets its
                        // assignment from SyncGroup.
                        effects.push(Effect::AnswerJoin { waiter, answer: self.joined(&new_id, version) });
                        return;
                    }
                    let m = self.members.get_mut(&new_id).expect("just inserted");
                    m.join_waiter = Some(waiter);
                    m.join_version = version;
                    self.prepare_rebalance(limits, now, effects);
                    self.maybe_complete_join(now, effects);
                    return;
                }
            }
            if self.members.len() >= limits.group_size_max {
                effects.push(join_error(waiter, ec::GROUP_MAX_SIZE_REACHED, ""));
                return;
            }
            let new_id = member_id_fresh;
            if version >= 4 && instance_id.is_none() {
                // KIP-394: the client must come back with this id.
                self.pending_members.insert(new_id.clone(), now + session_timeout_ms);
                effects.push(join_error(waiter, ec::MEMBER_ID_REQUIRED, &new_id));
                return;
            }
            member_id = new_id;
        } else if self.pending_members.contains_key(&member_id) && !self.members.contains_key(&member_id) {
            self.pending_members.remove(&member_id);
        } else if let Some(code) = self.member_error(&member_id, instance_id.as_deref()) {
            effects.push(join_error(waiter, code, &member_id));
            return;
        }
        let is_new = !self.members.contains_key(&member_id);
        if is_new && self.members.len() >= limits.group_size_max {
            effects.push(join_error(waiter, ec::GROUP_MAX_SIZE_REACHED, &member_id));
            return;
        }
        let changed = match self.members.get_mut(&member_id) {
            Some(m) => {
                let changed = m.protocols != protocols;
                m.protocols = protocols;
                m.session_timeout_ms = session_timeout_ms;
                m.rebalance_timeout_ms = rebalance_timeout_ms;
                m.last_heartbeat_ms = now;
                m.client_id = client_id;
                m.client_host = client_host;
                changed
            }
            None => {
                if self.members.is_empty() {
                    self.protocol_type = Some(protocol_type.clone());
                }
                if let Some(instance) = &instance_id {
                    self.static_members.insert(instance.clone(), member_id.clone());
                }
                self.members.insert(
                    member_id.clone(),
                    Member {
                        member_id: member_id.clone(),
                        instance_id: instance_id.clone(),
                        client_id,
                        client_host,
                        session_timeout_ms,
                        rebalance_timeout_ms,
                        protocol_type,
                        protocols,
                        assignment: Bytes::new(),
                        last_heartbeat_ms: now,
                        join_waiter: None,
                        join_version: version,
                        sync_waiter: None,
                    },
                );
                true
            }
        };
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        if !changed && !is_leader && matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance) {
            // A follower rejoining with nothing new: answer with the current generation.
            effects.push(Effect::AnswerJoin { waiter, answer: self.joined(&member_id, version) });
            return;
        }
        let m = self.members.get_mut(&member_id).expect("member exists");
        if let Some(old) = m.join_waiter.replace(waiter) {
            effects.push(join_error(old, ec::REBALANCE_IN_PROGRESS, &member_id));
        }
        m.join_version = version;
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(limits, now, effects);
        } else if let Some(until) = self.initial_delay_until_ms {
            // Each new member of a forming group extends the wait, up to the rebalance timeout.
            let extended = (now + limits.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms);
            self.initial_delay_until_ms = Some(until.max(extended));
        }
        self.maybe_complete_join(now, effects);
    }

    fn prepare_rebalance(&mut self, limits: &ClassicLimits, now: u64, effects: &mut Vec<Effect>) {
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        // A group forming from empty waits group.initial.rebalance.delay.ms for more members.
        self.initial_delay_until_ms =
            if self.state == GroupState::Empty && limits.initial_rebalance_delay_ms > 0 { Some(now + limits.initial_rebalance_delay_ms) } else { None };
        self.rebalance_deadline_ms = now + timeout.max(limits.initial_rebalance_delay_ms);
        self.state = GroupState::PreparingRebalance;
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                effects.push(sync_error(w, ec::REBALANCE_IN_PROGRESS));
            }
        }
        effects.push(Effect::Note(Note::PreparingRebalance { generation: self.generation, members: self.members.len() }));
    }

    /// Completes the join phase when everyone has rejoined (and any initial delay is over), or
    /// when the deadline has passed.
    fn maybe_complete_join(&mut self, now: u64, effects: &mut Vec<Effect>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = self.initial_delay_until_ms.is_none_or(|t| now >= t);
        if !(all_joined && delay_over) && now < self.rebalance_deadline_ms {
            return;
        }
        // Members that did not rejoin in time are out.
        let gone: Vec<String> = self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.member_id.clone()).collect();
        for id in gone {
            effects.push(Effect::Note(Note::MemberRemoved { member_id: id.clone(), cause: RemovalCause::RebalanceTimeout }));
            self.remove_member(&id, effects);
        }
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            return;
        }
        self.protocol_name = select_protocol(&self.members);
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
        }
        let answers: Vec<(Waiter, JoinAnswer)> =
            self.members.values().filter_map(|m| m.join_waiter.map(|w| (w, self.joined(&m.member_id, m.join_version)))).collect();
        for m in self.members.values_mut() {
            m.join_waiter = None;
        }
        for (waiter, answer) in answers {
            effects.push(Effect::AnswerJoin { waiter, answer });
        }
        effects.push(Effect::Note(Note::JoinComplete { generation: self.generation, members: self.members.len(), protocol_name: self.protocol_name.clone() }));
    }

    /// The current generation as `member_id` sees it.
    fn joined(&self, member_id: &str, version: i16) -> JoinAnswer {
        let members = if self.leader.as_deref() == Some(member_id) {
            let chosen = self.protocol_name.clone().unwrap_or_default();
            self.members
                .values()
                .map(|m| JoinedMember { member_id: m.member_id.clone(), instance_id: m.instance_id.clone(), metadata: m.metadata_for(&chosen) })
                .collect()
        } else {
            Vec::new()
        };
        JoinAnswer::Joined(Joined {
            version,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            member_id: member_id.to_string(),
            members,
        })
    }

    fn remove_member(&mut self, member_id: &str, effects: &mut Vec<Effect>) {
        if let Some(m) = self.members.remove(member_id) {
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(w) = m.join_waiter {
                effects.push(join_error(w, ec::UNKNOWN_MEMBER_ID, member_id));
            }
            if let Some(w) = m.sync_waiter {
                effects.push(sync_error(w, ec::UNKNOWN_MEMBER_ID));
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// SyncGroup. The request's answer is among the effects, or comes with the leader's
    /// SyncGroup (or the rebalance that interrupts the wait).
    pub fn sync(&mut self, request: SyncRequest, now_ms: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.sync_into(request, now_ms, &mut effects);
        effects
    }

    fn sync_into(&mut self, request: SyncRequest, now: u64, effects: &mut Vec<Effect>) {
        let SyncRequest { waiter, version, member_id, instance_id, generation, protocol_type, protocol_name, assignments } = request;
        if let Some(code) = self.member_error(&member_id, instance_id.as_deref()) {
            effects.push(sync_error(waiter, code));
            return;
        }
        if generation != self.generation {
            effects.push(sync_error(waiter, ec::ILLEGAL_GENERATION));
            return;
        }
        if version >= 5 {
            let type_ok = protocol_type.as_ref().is_none_or(|t| Some(t.as_str()) == self.protocol_type.as_deref());
            let name_ok = protocol_name.as_ref().is_none_or(|n| Some(n.as_str()) == self.protocol_name.as_deref());
            if !type_ok || !name_ok {
                effects.push(sync_error(waiter, ec::INCONSISTENT_GROUP_PROTOCOL));
                return;
            }
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => {
                effects.push(sync_error(waiter, ec::UNKNOWN_MEMBER_ID));
                return;
            }
            GroupState::PreparingRebalance => {
                effects.push(sync_error(waiter, ec::REBALANCE_IN_PROGRESS));
                return;
            }
            GroupState::Stable => {
                effects.push(Effect::AnswerSync { waiter, answer: self.assigned(&member_id, version) });
                return;
            }
            GroupState::CompletingRebalance => {}
        }
        let m = self.members.get_mut(&member_id).expect("checked above");
        m.last_heartbeat_ms = now;
        if let Some(old) = m.sync_waiter.replace(waiter) {
            effects.push(sync_error(old, ec::REBALANCE_IN_PROGRESS));
        }
        if self.leader.as_deref() == Some(member_id.as_str()) {
            for (id, assignment) in assignments {
                if let Some(m) = self.members.get_mut(&id) {
                    m.assignment = assignment;
                }
            }
            self.state = GroupState::Stable;
            effects.push(Effect::Note(Note::Stable { generation: self.generation }));
            let answers: Vec<(Waiter, SyncAnswer)> =
                self.members.values().filter_map(|m| m.sync_waiter.map(|w| (w, self.assigned(&m.member_id, version)))).collect();
            for m in self.members.values_mut() {
                m.sync_waiter = None;
            }
            for (waiter, answer) in answers {
                effects.push(Effect::AnswerSync { waiter, answer });
            }
        }
    }

    fn assigned(&self, member_id: &str, version: i16) -> SyncAnswer {
        SyncAnswer::Assigned {
            version,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Heartbeat: its error code (NONE when all is well).
    pub fn heartbeat(&mut self, generation: i32, member_id: &str, instance_id: Option<&str>, now_ms: u64) -> i16 {
        if let Some(code) = self.member_error(member_id, instance_id) {
            return code;
        }
        let member = self.members.get_mut(member_id).expect("member_error checked it is a member");
        if generation != self.generation {
            return ec::ILLEGAL_GENERATION;
        }
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => ec::REBALANCE_IN_PROGRESS,
            GroupState::Empty | GroupState::Dead => ec::UNKNOWN_MEMBER_ID,
            _ => ec::NONE,
        }
    }

    /// LeaveGroup for `leaving` (member id, group.instance.id): one error code each, and what
    /// the departures set off.
    pub fn leave(&mut self, limits: &ClassicLimits, leaving: &[(String, Option<String>)], now_ms: u64) -> (Vec<i16>, Vec<Effect>) {
        let mut effects = Vec::new();
        let mut codes = Vec::with_capacity(leaving.len());
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            // A static member may leave by instance id alone.
            let id = match (instance, member_id.is_empty()) {
                (Some(i), true) => self.static_members.get(i).cloned().unwrap_or_default(),
                _ => member_id.clone(),
            };
            let code = match self.member_error(&id, instance.as_deref()) {
                Some(code) => code,
                None => {
                    self.remove_member(&id, &mut effects);
                    removed_any = true;
                    effects.push(Effect::Note(Note::MemberRemoved { member_id: id, cause: RemovalCause::Left }));
                    ec::NONE
                }
            };
            codes.push(code);
        }
        if removed_any {
            self.after_membership_change(limits, now_ms, &mut effects);
        }
        (codes, effects)
    }

    /// After a member left or expired: rebalance the rest, or go Empty.
    fn after_membership_change(&mut self, limits: &ClassicLimits, now: u64, effects: &mut Vec<Effect>) {
        if self.members.is_empty() {
            if self.state != GroupState::PreparingRebalance {
                self.generation += 1;
            }
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.initial_delay_until_ms = None;
            effects.push(Effect::Note(Note::Empty));
        } else if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now, effects);
        } else {
            self.prepare_rebalance(limits, now, effects);
        }
    }

    /// Why `member_id` may not commit offsets for this group now, if it may not; a commit
    /// counts as a heartbeat. `generation < 0` with no member id is a commit from outside the
    /// group (an admin tool, a consumer without a group membership).
    pub fn commit_error(&mut self, generation: i32, member_id: &str, instance_id: Option<&str>, now_ms: u64) -> Option<i16> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() { None } else { Some(ec::UNKNOWN_MEMBER_ID) };
        }
        if let Some(code) = self.member_error(member_id, instance_id) {
            return Some(code);
        }
        match self.members.get_mut(member_id) {
            None => Some(ec::UNKNOWN_MEMBER_ID),
            Some(_) if generation != self.generation => Some(ec::ILLEGAL_GENERATION),
            Some(_) if self.state == GroupState::CompletingRebalance => Some(ec::REBALANCE_IN_PROGRESS),
            Some(m) => {
                m.last_heartbeat_ms = now_ms;
                None
            }
        }
    }

    /// The earliest time at which [`ClassicGroup::tick`] has something to do; None when no
    /// timer runs. Before it, a tick changes nothing.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let pending = self.pending_members.values().copied().min();
        // A session expires once more than its timeout has passed since the last heartbeat.
        let session =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.last_heartbeat_ms.saturating_add(m.session_timeout_ms).saturating_add(1)).min();
        let rebalance = if self.state == GroupState::PreparingRebalance {
            let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
            let joined_at = if all_joined { Some(self.initial_delay_until_ms.unwrap_or(0)) } else { None };
            Some(joined_at.map_or(self.rebalance_deadline_ms, |t| t.min(self.rebalance_deadline_ms)))
        } else {
            None
        };
        [pending, session, rebalance].into_iter().flatten().min()
    }

    /// The passing of time: forgets member ids handed out but not used in time, expires
    /// sessions, and completes the join phase whose deadline passed.
    pub fn tick(&mut self, limits: &ClassicLimits, now_ms: u64) -> Vec<Effect> {
        let now = now_ms;
        let mut effects = Vec::new();
        self.pending_members.retain(|_, deadline| *deadline > now);
        // A member waiting in JoinGroup is alive: only check the others.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && now.saturating_sub(m.last_heartbeat_ms) > m.session_timeout_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for id in &expired {
            effects.push(Effect::Note(Note::MemberRemoved { member_id: id.clone(), cause: RemovalCause::SessionTimeout }));
            self.remove_member(id, &mut effects);
        }
        if !expired.is_empty() {
            self.after_membership_change(limits, now, &mut effects);
        }
        self.maybe_complete_join(now, &mut effects);
        effects
    }

    /// Checks the invariants that hold between events; a broken one is a programmer error.
    /// Cheap enough for tests and the fuzz target, too dear for every request.
    pub fn check_invariants(&self) {
        assert!(self.state != GroupState::Dead, "this coordinator never enters Dead");
        if let Some(l) = &self.leader {
            assert!(self.members.contains_key(l), "the leader {l} is a member");
        }
        match self.state {
            GroupState::Empty => {
                assert!(self.members.is_empty(), "an Empty group has no members");
                assert!(self.leader.is_none(), "an Empty group has no leader");
                assert!(self.protocol_name.is_none(), "an Empty group has no protocol");
            }
            GroupState::PreparingRebalance => {
                assert!(self.members.values().all(|m| m.sync_waiter.is_none()), "a rebalance answers every waiting SyncGroup");
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                assert!(!self.members.is_empty(), "a {:?} group has members", self.state);
                assert!(self.leader.is_some(), "a {:?} group has a leader", self.state);
                assert!(self.generation > 0, "a completed join phase numbers its generation");
                assert!(self.protocol_name.is_some(), "a completed join phase chose a protocol");
                assert!(self.members.values().all(|m| m.join_waiter.is_none()), "a completed join phase answered every JoinGroup");
            }
            GroupState::Dead => {}
        }
        if self.state == GroupState::Stable {
            assert!(self.members.values().all(|m| m.sync_waiter.is_none()), "a Stable group answered every SyncGroup");
        }
        if let Some(t) = self.initial_delay_until_ms {
            assert_eq!(self.state, GroupState::PreparingRebalance, "only a forming group waits for more members");
            assert!(t <= self.rebalance_deadline_ms, "the initial delay ends by the rebalance deadline");
        }
        for (instance, id) in &self.static_members {
            let m = self.members.get(id).unwrap_or_else(|| panic!("static member {instance} maps to member {id}"));
            assert_eq!(m.instance_id.as_deref(), Some(instance.as_str()), "a static member's instance id maps back to it");
        }
        for m in self.members.values() {
            assert!(!self.pending_members.contains_key(&m.member_id), "a member id is pending only until it joins");
        }
        if let Some(t) = self.protocol_type.as_deref() {
            assert!(!t.is_empty(), "a group's protocol type is never empty");
        }
    }
}

/// The protocol the members agree on: among those every member supports, each member votes for
/// its most preferred; ties go to the first member's order.
fn select_protocol(members: &BTreeMap<String, Member>) -> Option<String> {
    let first = members.values().next()?;
    let candidates: Vec<&String> =
        first.protocols.iter().map(|(n, _)| n).filter(|n| members.values().all(|m| m.protocols.iter().any(|(x, _)| x == *n))).collect();
    let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0usize, *c)).collect();
    for m in members.values() {
        if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
            if let Some(v) = votes.iter_mut().find(|(_, c)| *c == name) {
                v.0 += 1;
            }
        }
    }
    let best = votes.iter().map(|(n, _)| *n).max()?;
    votes.iter().find(|(n, _)| *n == best).map(|(_, c)| (*c).clone())
}

/// Topics of a consumer-protocol subscription: version i16, then an array of strings.
pub fn parse_subscription_topics(mut metadata: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if metadata.len() < 6 {
        return out;
    }
    metadata = &metadata[2..];
    let count = i32::from_be_bytes(metadata[0..4].try_into().expect("4 bytes"));
    metadata = &metadata[4..];
    for _ in 0..count.max(0) {
        if metadata.len() < 2 {
            break;
        }
        let len = i16::from_be_bytes([metadata[0], metadata[1]]);
        metadata = &metadata[2..];
        if len < 0 || len as usize > metadata.len() {
            break;
        }
        out.push(String::from_utf8_lossy(&metadata[..len as usize]).into_owned());
        metadata = &metadata[len as usize..];
    }
    out
}

// By path, so that tools which reach this file through the fuzz target's `#[path]` (rustfmt)
// find the tests where rustc does.
#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
