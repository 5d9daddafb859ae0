//! The group coordinator of one shard: the driver of the classic group protocol's state machine
//! ([`state`], which has no I/O), and the owner of every group this shard coordinates.
//!
//! The driver reads the clock, turns requests into the state machine's events, and carries out
//! the effects that come back: a JoinGroup or SyncGroup that must wait holds a oneshot receiver
//! under a [`Waiter`] name until an effect answers it, and one ticker task per shard brings
//! every group whose next deadline passed up to date (session and rebalance timeouts, of the
//! classic groups and of the KIP-848 groups of `consumer`; offset expiry rides the same
//! ticker). Committed offsets are in `offset_store`, wire responses in `responses`.

pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use kafka_protocol::messages::{
    DescribeGroupsResponse, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;

use super::offsets::CommittedOffset;
use super::responses;
use super::ListedGroupInfo;
use crate::metadata::ClusterMetadata;
use crate::runtime;
use crate::shard::Shard;
use crate::storage::log::now_ms;
pub use state::{parse_subscription_topics, ClassicGroup, ClassicLimits, GroupState, Waiter};
use state::{Effect, JoinRequest, Note, RemovalCause, SyncRequest};

/// How often the ticker runs at the least: the offset-retention check has no deadline of its
/// own, a request may set a deadline while the ticker sleeps, and a changed group config moves
/// the KIP-848 groups' deadlines without waking it.
const TICK_MS: u64 = 100;

/// How soon the ticker runs at the most: a deadline that falls sooner waits this long, so that
/// a group whose deadline keeps falling due cannot spin the shard.
const TICK_MS_MIN: u64 = 10;

pub use crate::config::GroupConfig;

impl GroupConfig {
    /// What the classic state machine needs of the settings.
    pub fn classic_limits(&self) -> ClassicLimits {
        ClassicLimits {
            session_timeout_ms_min: self.session_timeout_ms_min,
            session_timeout_ms_max: self.session_timeout_ms_max,
            initial_rebalance_delay_ms: self.initial_rebalance_delay_ms,
            group_size_max: self.group_size_max,
        }
    }
}

/// Everything the coordinator holds for one group id: its classic membership, or its KIP-848
/// one, and its committed offsets.
pub(in crate::groups) struct Group {
    pub(in crate::groups) classic: ClassicGroup,
    /// Set for groups of the KIP-848 consumer protocol; their membership lives there.
    pub(in crate::groups) consumer: Option<super::consumer::ConsumerGroup>,
    pub(in crate::groups) offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Since when the group has had no members (classic or KIP-848), in ms; None while it has
    /// some. Offsets expire `offsets.retention.minutes` after the later of this and their commit
    /// (KIP-211: a group's offsets live as long as it has members).
    pub(in crate::groups) empty_since_ms: Option<u64>,
}

impl Group {
    pub(in crate::groups) fn new() -> Group {
        Group { classic: ClassicGroup::new(), consumer: None, offsets: BTreeMap::new(), empty_since_ms: Some(now_ms()) }
    }

    pub(in crate::groups) fn has_members(&self) -> bool {
        self.classic.has_members() || self.consumer.as_ref().is_some_and(|c| c.has_members())
    }

    /// A classic group that has members (so a KIP-848 member may not take the id over).
    pub(in crate::groups) fn is_classic_in_use(&self) -> bool {
        self.classic.has_members()
    }

    /// Topics the members subscribe to (consumer protocol), for OffsetDelete and lag.
    pub(in crate::groups) fn subscribed_topics(&self) -> Vec<String> {
        match &self.consumer {
            Some(cg) => cg.subscribed_topic_names(),
            None => self.classic.subscribed_topics(),
        }
    }
}

/// The requests that wait for the state machine's answer, by the name it knows them by.
#[derive(Default)]
struct Waiters {
    next: Cell<Waiter>,
    joins: RefCell<HashMap<Waiter, oneshot::Sender<JoinGroupResponse>>>,
    syncs: RefCell<HashMap<Waiter, oneshot::Sender<SyncGroupResponse>>>,
}

impl Waiters {
    fn name(&self) -> Waiter {
        let w = self.next.get();
        self.next.set(w + 1);
        w
    }

    fn join(&self) -> (Waiter, oneshot::Receiver<JoinGroupResponse>) {
        let (tx, rx) = oneshot::channel();
        let w = self.name();
        self.joins.borrow_mut().insert(w, tx);
        (w, rx)
    }

    fn sync(&self) -> (Waiter, oneshot::Receiver<SyncGroupResponse>) {
        let (tx, rx) = oneshot::channel();
        let w = self.name();
        self.syncs.borrow_mut().insert(w, tx);
        (w, rx)
    }
}

pub struct GroupCoordinator {
    pub(in crate::groups) groups: RefCell<HashMap<String, Group>>,
    /// Offsets committed inside open transactions, by (offsets partition, producer id): the
    /// commit marker applies them, the abort marker drops them.
    pub(in crate::groups) txn_offsets: RefCell<HashMap<(i32, i64), Vec<super::offset_store::PendingTxnOffset>>>,
    waiters: Waiters,
    /// Groups whose membership changed (a rebalance completed, or they emptied) since the
    /// writer last stored it: at most one entry per group.
    membership_changed: RefCell<std::collections::BTreeSet<String>>,
    membership_written: crate::notify::Notify,
    /// The `__consumer_offsets` partitions whose groups this shard coordinates now.
    pub(in crate::groups) loaded: crate::coordinator::LoadedPartitions,
    next_member: Cell<u64>,
    pub config: GroupConfig,
    limits: ClassicLimits,
    ticker_started: Cell<bool>,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            groups: RefCell::new(HashMap::new()),
            txn_offsets: RefCell::new(HashMap::new()),
            waiters: Waiters::default(),
            loaded: Default::default(),
            membership_changed: Default::default(),
            membership_written: Default::default(),
            next_member: Cell::new(1),
            limits: config.classic_limits(),
            config,
            ticker_started: Cell::new(false),
        }
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.next_member.get();
        self.next_member.set(n + 1);
        // Kafka prefixes member ids with the client id; keep only printable characters of it, so
        // that ids are safe to log and to print in tools.
        let prefix: String = client_id.chars().filter(|c| c.is_ascii_graphic()).take(100).collect();
        format!("{prefix}-{}-{n}", uuid::Uuid::new_v4())
    }

    /// Loads the `__consumer_offsets` partitions this shard coordinates, and starts the
    /// ticker. Called once the shard has its partitions.
    pub fn load(self: &Rc<Self>, shard: &Rc<Shard>) {
        self.follow_leadership(shard);
        if !self.ticker_started.replace(true) {
            let (coordinator, on) = (self.clone(), shard.clone());
            runtime::spawn(async move { ticker(coordinator, on).await }).detach();
            let (coordinator, on) = (self.clone(), shard.clone());
            runtime::spawn(async move { membership_writer(coordinator, on).await }).detach();
        }
    }

    /// Stores the membership of each group in `membership_changed` (its GroupMetadata record),
    /// in the state it has when its turn comes. Best effort, as a write after the clients were
    /// answered: a membership that is not stored costs a rebalance if the coordinator moves.
    async fn store_memberships(&self, shard: &Rc<Shard>) {
        let groups: Vec<String> = std::mem::take(&mut *self.membership_changed.borrow_mut()).into_iter().collect();
        for group_id in groups {
            let partition_count = shard.metadata.borrow().topics.get(super::offsets::OFFSETS_TOPIC).map_or(0, |t| t.partitions.len());
            let partition = crate::coordinator::partition_for(&group_id, partition_count);
            if !self.loaded.owns(partition) {
                continue;
            }
            let stored = match self.groups.borrow().get(&group_id) {
                Some(g) if matches!(g.classic.state(), GroupState::Stable | GroupState::Empty) => g.classic.to_stored(now_ms()),
                _ => continue,
            };
            let kv = [(super::offsets::encode_group_key(&group_id), Some(super::offsets::encode_group_value(&stored)))];
            if let Err(code) = self.append_durably(shard, &group_id, &kv).await {
                tracing::debug!(group = %group_id, code, "group membership not stored; its members rejoin if the coordinator moves");
            }
        }
    }

    /// Keeps the groups in step with the leadership of their `__consumer_offsets` partitions:
    /// forgets the groups of a partition this broker stopped leading (answering their waiting
    /// JoinGroup and SyncGroup requests NOT_COORDINATOR, so that their members find the new
    /// coordinator), and replays a partition it started leading. Called after every metadata
    /// change, with no await, so no request sees a partition half loaded.
    pub fn follow_leadership(&self, shard: &Rc<Shard>) {
        let changes = self.loaded.changes(shard, super::COORDINATOR);
        let partition_count = shard.metadata.borrow().topics.get(super::offsets::OFFSETS_TOPIC).map_or(0, |t| t.partitions.len());
        let reloaded: Vec<i32> = changes.load.iter().map(|p| p.partition).collect();
        for partition in changes.unload.iter().chain(&reloaded) {
            self.forget_partition(*partition, partition_count);
        }
        if !changes.unload.is_empty() {
            tracing::info!(shard = shard.id, partitions = ?changes.unload, "no longer coordinating the groups of these __consumer_offsets partitions");
        }
        for p in changes.load {
            self.replay_offsets(shard, &p);
        }
    }

    /// Drops every group of one `__consumer_offsets` partition, and its pending transactional
    /// offsets.
    fn forget_partition(&self, partition: i32, partition_count: usize) {
        let gone: Vec<(String, Group)> = {
            let mut groups = self.groups.borrow_mut();
            let ids: Vec<String> =
                groups.keys().filter(|id| partition_count == 0 || crate::coordinator::partition_for(id, partition_count) == partition).cloned().collect();
            ids.into_iter().filter_map(|id| groups.remove(&id).map(|g| (id, g))).collect()
        };
        for (_, group) in &gone {
            for waiter in group.classic.waiters() {
                if let Some(tx) = self.waiters.joins.borrow_mut().remove(&waiter) {
                    let _ = tx.send(responses::join_error(ec::NOT_COORDINATOR, ""));
                }
                if let Some(tx) = self.waiters.syncs.borrow_mut().remove(&waiter) {
                    let _ = tx.send(responses::sync_error(ec::NOT_COORDINATOR));
                }
            }
        }
        self.txn_offsets.borrow_mut().retain(|(p, _), _| *p != partition);
    }

    pub(in crate::groups) async fn join(&self, request: JoinGroupRequest, version: i16, client_id: String, client_host: String) -> JoinGroupResponse {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        if group_id.is_empty() {
            return responses::join_error(ec::INVALID_GROUP_ID, &member_id);
        }
        if let Some(code) = state::session_timeout_error(&self.limits, request.session_timeout_ms) {
            return responses::join_error(code, &member_id);
        }
        let (waiter, rx) = self.waiters.join();
        let event = JoinRequest {
            waiter,
            version,
            member_id: member_id.clone(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            protocol_type: request.protocol_type.to_string(),
            protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            member_id_fresh: self.new_member_id(&client_id),
            client_id,
            client_host,
        };
        let effects = {
            let mut groups = self.groups.borrow_mut();
            let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if group.consumer.as_ref().is_some_and(|cg| cg.has_members()) {
                // A KIP-848 consumer group: classic members cannot join it.
                self.waiters.joins.borrow_mut().remove(&waiter);
                return responses::join_error(ec::INCONSISTENT_GROUP_PROTOCOL, &member_id);
            }
            group.classic.join(&self.limits, event, now_ms())
        };
        self.execute(&group_id, effects);
        rx.await.unwrap_or_else(|_| responses::join_error(ec::UNKNOWN_MEMBER_ID, &member_id))
    }

    pub(in crate::groups) async fn sync(&self, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let group_id = request.group_id.0.to_string();
        let (waiter, rx) = self.waiters.sync();
        let event = SyncRequest {
            waiter,
            version,
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: request.generation_id,
            protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
            protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.clone())).collect(),
        };
        let effects = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else {
                self.waiters.syncs.borrow_mut().remove(&waiter);
                return responses::sync_error(ec::UNKNOWN_MEMBER_ID);
            };
            group.classic.sync(event, now_ms())
        };
        self.execute(&group_id, effects);
        rx.await.unwrap_or_else(|_| responses::sync_error(ec::REBALANCE_IN_PROGRESS))
    }

    pub(in crate::groups) fn heartbeat(&self, request: &HeartbeatRequest) -> i16 {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(request.group_id.0.as_str()) else { return ec::UNKNOWN_MEMBER_ID };
        group.classic.heartbeat(request.generation_id, &request.member_id, request.group_instance_id.as_deref(), now_ms())
    }

    pub(in crate::groups) fn leave(&self, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = request.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            request.members.iter().map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string()))).collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let (codes, effects) = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(&group_id) else { return responses::leave_error(ec::UNKNOWN_MEMBER_ID) };
            group.classic.leave(&self.limits, &leaving, now_ms())
        };
        self.execute(&group_id, effects);
        responses::leave(version, &leaving, &codes)
    }

    /// Carries out the state machine's effects, in order.
    fn execute(&self, group_id: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::AnswerJoin { waiter, answer } => {
                    let tx = self.waiters.joins.borrow_mut().remove(&waiter);
                    let tx = tx.unwrap_or_else(|| panic!("JoinGroup waiter {waiter} answered twice, or never registered"));
                    // The requester may have hung up; its member stays until its timeouts say.
                    let _ = tx.send(responses::join(answer));
                }
                Effect::AnswerSync { waiter, answer } => {
                    let tx = self.waiters.syncs.borrow_mut().remove(&waiter);
                    let tx = tx.unwrap_or_else(|| panic!("SyncGroup waiter {waiter} answered twice, or never registered"));
                    let _ = tx.send(responses::sync(answer));
                }
                Effect::Note(note) => {
                    if matches!(note, Note::Stable { .. } | Note::Empty) {
                        // Kafka stores a group's membership when a rebalance completes and when
                        // the group empties: a coordinator taking the partition over knows it.
                        self.membership_changed.borrow_mut().insert(group_id.to_string());
                        self.membership_written.notify_all();
                    }
                    log_note(group_id, note)
                }
            }
        }
    }

    pub(in crate::groups) fn describe(&self, meta: &ClusterMetadata, group_id: &str) -> DescribeGroupsResponse {
        let groups = self.groups.borrow();
        responses::describe(meta, group_id, groups.get(group_id))
    }

    pub(in crate::groups) fn list(&self) -> Vec<ListedGroupInfo> {
        self.groups.borrow().iter().filter(|(_, g)| g.classic.state() != GroupState::Dead).map(|(id, g)| responses::listed(id, g)).collect()
    }

    /// Brings every group whose deadline passed up to date, classic and KIP-848; returns the
    /// next deadline, if any.
    fn tick(&self, meta: &ClusterMetadata, now: u64) -> Option<u64> {
        let mut due: Vec<(String, Vec<Effect>)> = Vec::new();
        let mut notes: Vec<(String, Vec<super::consumer::state::Note>)> = Vec::new();
        let mut next: Option<u64> = None;
        {
            let mut groups = self.groups.borrow_mut();
            for (group_id, group) in groups.iter_mut() {
                match (group.has_members(), group.empty_since_ms) {
                    (true, Some(_)) => group.empty_since_ms = None,
                    (false, None) => group.empty_since_ms = Some(now),
                    _ => {}
                }
                if group.classic.next_deadline_ms().is_some_and(|d| d <= now) {
                    let effects = group.classic.tick(&self.limits, now);
                    if !effects.is_empty() {
                        due.push((group_id.clone(), effects));
                    }
                }
                let mut consumer_deadline = None;
                if let Some(cg) = group.consumer.as_mut() {
                    // Resolved at every tick, so that a changed group config applies at once.
                    let timeouts = self.consumer_timeouts(meta, group_id);
                    if cg.next_deadline_ms(&timeouts).is_some_and(|d| d <= now) {
                        let removed = cg.tick(&timeouts, meta, now);
                        if !removed.is_empty() {
                            notes.push((group_id.clone(), removed));
                        }
                    }
                    consumer_deadline = cg.next_deadline_ms(&timeouts);
                }
                for d in [group.classic.next_deadline_ms(), consumer_deadline].into_iter().flatten() {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        for (group_id, effects) in due {
            self.execute(&group_id, effects);
        }
        for (group_id, notes) in notes {
            super::consumer::log_notes(&group_id, notes);
        }
        next
    }
}

fn log_note(group_id: &str, note: Note) {
    match note {
        Note::StaticMemberRejoined { instance_id, member_id } => {
            tracing::info!(group = group_id, instance = %instance_id, member = %member_id, "static member rejoined")
        }
        Note::PreparingRebalance { generation, members } => tracing::info!(group = group_id, generation, members, "preparing to rebalance"),
        Note::JoinComplete { generation, members, protocol_name } => {
            tracing::info!(group = group_id, generation, members, protocol = ?protocol_name, "rebalance: join complete")
        }
        Note::Stable { generation } => tracing::info!(group = group_id, generation, "rebalance: assignment received; group stable"),
        Note::MemberRemoved { member_id, cause: RemovalCause::Left } => tracing::info!(group = group_id, member = %member_id, "member left the group"),
        Note::MemberRemoved { member_id, cause: RemovalCause::SessionTimeout } => {
            tracing::info!(group = group_id, member = %member_id, "member removed: session timeout expired")
        }
        Note::MemberRemoved { member_id, cause: RemovalCause::RebalanceTimeout } => {
            tracing::info!(group = group_id, member = %member_id, "member removed: it did not rejoin within the rebalance timeout")
        }
        Note::Empty => tracing::info!(group = group_id, "group is empty"),
    }
}

async fn membership_writer(groups: Rc<GroupCoordinator>, shard: Rc<Shard>) {
    while !shard.shutting_down.get() {
        if groups.membership_changed.borrow().is_empty() {
            let written = groups.membership_written.notified();
            futures::select! {
                _ = futures::FutureExt::fuse(written) => {}
                _ = futures::FutureExt::fuse(runtime::sleep(Duration::from_millis(TICK_MS))) => {}
            }
            continue;
        }
        groups.store_memberships(&shard).await;
    }
}

async fn ticker(groups: Rc<GroupCoordinator>, shard: Rc<Shard>) {
    let mut since_retention_check_ms = 0u64;
    while !shard.shutting_down.get() {
        let meta = shard.metadata.borrow().clone();
        let before = now_ms();
        let next = groups.tick(&meta, before);
        // Wake for the next deadline, or TICK_MS from now, whichever is sooner.
        let sleep_ms = next.map_or(TICK_MS, |d| d.saturating_sub(before)).clamp(TICK_MS_MIN, TICK_MS);
        runtime::sleep(Duration::from_millis(sleep_ms)).await;
        since_retention_check_ms += sleep_ms;
        if since_retention_check_ms >= groups.config.offsets_retention_check_interval_ms {
            since_retention_check_ms = 0;
            groups.expire_offsets(&shard).await;
        }
    }
}
