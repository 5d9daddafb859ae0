//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): members heartbeat with
//! ConsumerGroupHeartbeat, and the coordinator computes the assignment itself.
//!
//! - Every change of membership, subscription or partition count bumps the group epoch and
//!   recomputes the target assignment (the "uniform" server assignor below: per topic, an even
//!   share for each subscriber, keeping partitions where they are whenever the share allows).
//! - Each member reconciles towards its target one heartbeat at a time. It is first told to
//!   revoke what it must give up (its epoch stays), and only once it reports those revoked does
//!   it move to the new epoch and receive new partitions, and then only partitions that no other
//!   member still owns. So a partition never has two owners.
//! - A member that misses its group's `consumer.session.timeout.ms` (by default the broker's
//!   `group.consumer.session.timeout.ms`) is removed; one that does not revoke within its
//!   rebalance timeout is fenced. Members are told to heartbeat at the group's
//!   `consumer.heartbeat.interval.ms` (by default `group.consumer.heartbeat.interval.ms`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::strings::str_bytes;
use uuid::Uuid;

use super::classic::GroupCoordinator;
use crate::metadata::ClusterMetadata;
use crate::storage::log::now_ms;

const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;
pub const ASSIGNOR_NAME: &str = "uniform";
const ASSIGNORS: &[&str] = &["uniform", "range"];

type TopicAssignment = BTreeMap<Uuid, BTreeSet<i32>>;

#[derive(Debug, Default)]
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

#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    pub target: HashMap<String, TopicAssignment>,
    /// (topic, partition count) for every subscribed topic when the target was computed.
    topics_seen: Vec<(String, usize)>,
}

impl ConsumerGroup {
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

    fn subscribed_topics(&self, meta: &ClusterMetadata) -> Vec<(String, usize)> {
        let names: BTreeSet<&String> = self.members.values().flat_map(|m| m.subscribed.iter()).collect();
        names.into_iter().filter_map(|n| meta.topics.get(n).map(|t| (n.clone(), t.partitions.len()))).collect()
    }

    /// Bumps the epoch and recomputes the target assignment.
    fn rebalance(&mut self, meta: &ClusterMetadata) {
        self.epoch += 1;
        self.topics_seen = self.subscribed_topics(meta);
        self.target = uniform_assignment(&self.members, &self.topics_seen, meta);
        self.assignment_epoch = self.epoch;
        tracing::info!(epoch = self.epoch, members = self.members.len(), "consumer group: new target assignment");
    }

    fn owner_of(&self, topic: &Uuid, partition: i32, except: &str) -> Option<&str> {
        self.members.values().find(|m| m.member_id != except && m.assigned.get(topic).is_some_and(|p| p.contains(&partition))).map(|m| m.member_id.as_str())
    }

    pub fn remove_member(&mut self, member_id: &str, meta: &ClusterMetadata) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.rebalance(meta);
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
}

/// Per topic, an even share of its partitions for each member subscribed to it; partitions stay
/// with their current owner while that owner is under its share.
fn uniform_assignment(members: &BTreeMap<String, ConsumerMember>, topics: &[(String, usize)], meta: &ClusterMetadata) -> HashMap<String, TopicAssignment> {
    let mut target: HashMap<String, TopicAssignment> = members.keys().map(|m| (m.clone(), TopicAssignment::new())).collect();
    for (name, count) in topics {
        let Some(id) = meta.topics.get(name).map(|t| t.id) else { continue };
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

fn to_wire(assignment: &TopicAssignment) -> Assignment {
    let mut a = Assignment::default();
    a.topic_partitions = assignment
        .iter()
        .map(|(id, ps)| {
            let mut tp = TopicPartitions::default();
            tp.topic_id = *id;
            tp.partitions = ps.iter().copied().collect();
            tp
        })
        .collect();
    a
}

fn heartbeat_error(code: i16, message: &str) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = code;
    r.error_message = Some(str_bytes(message));
    r.member_epoch = -1;
    r
}

impl GroupCoordinator {
    pub fn consumer_heartbeat(
        &self,
        meta: &ClusterMetadata,
        request: ConsumerGroupHeartbeatRequest,
        client_id: String,
        client_host: String,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = request.group_id.0.to_string();
        if group_id.is_empty() {
            return heartbeat_error(ec::INVALID_REQUEST, "GroupId can't be empty.");
        }
        if let Some(assignor) = &request.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return heartbeat_error(ec::UNSUPPORTED_ASSIGNOR, &format!("server assignor {assignor} is not supported; use one of {ASSIGNORS:?}"));
            }
        }
        let now = now_ms();
        // Read at every heartbeat, so that a changed group config reaches members at once.
        let (_, heartbeat_interval_ms) = super::configs::effective(&self.config, meta.group_configs.get(&group_id));
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.clone()).or_insert_with(super::classic::Group::new);
        if group.consumer.is_none() {
            if group.is_classic_in_use() {
                return heartbeat_error(ec::GROUP_ID_NOT_FOUND, &format!("Group {group_id} is a classic group with members, not a consumer group."));
            }
            group.consumer = Some(ConsumerGroup::default());
        }
        let cg = group.consumer.as_mut().expect("set above");
        let epoch = request.member_epoch;
        let mut member_id = request.member_id.to_string();
        match epoch {
            0 => {
                let Some(subscribed) = &request.subscribed_topic_names else {
                    return heartbeat_error(ec::INVALID_REQUEST, "SubscribedTopicNames must be set when joining.");
                };
                if member_id.is_empty() {
                    member_id = Uuid::new_v4().to_string();
                }
                if let Some(instance) = &request.instance_id {
                    // A static member's new incarnation replaces the old one.
                    let old: Vec<String> = cg
                        .members
                        .values()
                        .filter(|m| m.instance_id.as_deref() == Some(instance.as_str()) && m.member_id != member_id)
                        .map(|m| m.member_id.clone())
                        .collect();
                    for id in old {
                        cg.members.remove(&id);
                    }
                }
                cg.members.remove(&member_id);
                cg.members.insert(
                    member_id.clone(),
                    ConsumerMember {
                        member_id: member_id.clone(),
                        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
                        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
                        client_id,
                        client_host,
                        rebalance_timeout_ms: request.rebalance_timeout_ms.max(0) as u64,
                        subscribed: subscribed.iter().map(|t| t.0.to_string()).collect(),
                        last_heartbeat_ms: now,
                        ..Default::default()
                    },
                );
                tracing::info!(group = %group_id, member = %member_id, "consumer group member joined");
                cg.rebalance(meta);
            }
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                if cg.members.contains_key(&member_id) {
                    tracing::info!(group = %group_id, member = %member_id, "consumer group member left");
                    cg.remove_member(&member_id, meta);
                }
                let mut r = ConsumerGroupHeartbeatResponse::default();
                r.member_id = Some(str_bytes(&member_id));
                r.member_epoch = epoch;
                r.heartbeat_interval_ms = heartbeat_interval_ms;
                return r;
            }
            _ => {
                let Some(member) = cg.members.get_mut(&member_id) else {
                    return heartbeat_error(ec::UNKNOWN_MEMBER_ID, &format!("Member {member_id} is not a member of group {group_id}."));
                };
                if epoch != member.epoch && epoch != member.previous_epoch {
                    return heartbeat_error(ec::FENCED_MEMBER_EPOCH, &format!("Member epoch {epoch} is not the current epoch {}.", member.epoch));
                }
                member.last_heartbeat_ms = now;
                if request.rebalance_timeout_ms > 0 {
                    member.rebalance_timeout_ms = request.rebalance_timeout_ms as u64;
                }
                // The client reports what it owns: partitions it has revoked are released.
                if let Some(owned) = &request.topic_partitions {
                    let reported: TopicAssignment = owned.iter().map(|t| (t.topic_id, t.partitions.iter().copied().collect())).collect();
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
                if let Some(subscribed) = &request.subscribed_topic_names {
                    let names: Vec<String> = subscribed.iter().map(|t| t.0.to_string()).collect();
                    if names != member.subscribed {
                        member.subscribed = names;
                        resubscribe = true;
                    }
                }
                if resubscribe || cg.subscribed_topics(meta) != cg.topics_seen {
                    cg.rebalance(meta);
                }
            }
        }
        let assignment = cg.reconcile(&member_id, now);
        let member = &cg.members[&member_id];
        let mut r = ConsumerGroupHeartbeatResponse::default();
        r.member_id = Some(str_bytes(&member_id));
        r.member_epoch = member.epoch;
        r.heartbeat_interval_ms = heartbeat_interval_ms;
        r.assignment = assignment.as_ref().map(to_wire);
        r
    }

    /// Session and rebalance timeouts of consumer-group members.
    pub(super) fn tick_consumer_groups(&self, meta: &ClusterMetadata) {
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        for (group_id, group) in groups.iter_mut() {
            let Some(cg) = group.consumer.as_mut() else { continue };
            let (session_timeout_ms, _) = super::configs::effective(&self.config, meta.group_configs.get(group_id));
            let session_timeout_ms = session_timeout_ms.max(1) as u64;
            let expired: Vec<String> = cg
                .members
                .values()
                .filter(|m| {
                    now.saturating_sub(m.last_heartbeat_ms) > session_timeout_ms
                        || m.revoking_since_ms.is_some_and(|t| now.saturating_sub(t) > m.rebalance_timeout_ms.max(1))
                })
                .map(|m| m.member_id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group_id, member = %id, "consumer group member removed: session or rebalance timeout expired");
                cg.remove_member(&id, meta);
            }
        }
    }

    pub fn consumer_describe(&self, meta: &ClusterMetadata, group_id: &str) -> DescribedGroup {
        let groups = self.groups.borrow();
        let mut d = DescribedGroup::default();
        d.group_id = GroupId(str_bytes(group_id));
        d.authorized_operations = i32::MIN;
        let Some(cg) = groups.get(group_id).and_then(|g| g.consumer.as_ref()) else {
            d.error_code = ec::GROUP_ID_NOT_FOUND;
            d.error_message = Some(str_bytes(&format!("Group {group_id} not found.")));
            d.group_state = str_bytes("Dead");
            return d;
        };
        let names: HashMap<Uuid, &String> = meta.topics.iter().map(|(n, t)| (t.id, n)).collect();
        let wire = |a: &TopicAssignment| {
            let mut out = describe::Assignment::default();
            out.topic_partitions = a
                .iter()
                .map(|(id, ps)| {
                    let mut tp = describe::TopicPartitions::default();
                    tp.topic_id = *id;
                    tp.topic_name = TopicName(str_bytes(names.get(id).map(|s| s.as_str()).unwrap_or("")));
                    tp.partitions = ps.iter().copied().collect();
                    tp
                })
                .collect();
            out
        };
        d.group_state = str_bytes(cg.state_name());
        d.group_epoch = cg.epoch;
        d.assignment_epoch = cg.assignment_epoch;
        d.assignor_name = str_bytes(ASSIGNOR_NAME);
        d.members = cg
            .members
            .values()
            .map(|m| {
                let mut dm = describe::Member::default();
                dm.member_id = str_bytes(&m.member_id);
                dm.instance_id = m.instance_id.as_deref().map(str_bytes);
                dm.rack_id = m.rack_id.as_deref().map(str_bytes);
                dm.member_epoch = m.epoch;
                dm.client_id = str_bytes(&m.client_id);
                dm.client_host = str_bytes(&m.client_host);
                dm.subscribed_topic_names = m.subscribed.iter().map(|t| TopicName(str_bytes(t))).collect();
                dm.assignment = wire(&m.assigned);
                dm.target_assignment = wire(cg.target.get(&m.member_id).unwrap_or(&TopicAssignment::new()));
                dm
            })
            .collect();
        d
    }

    /// Checks an offset commit from a consumer-group member: the epoch stands in for the
    /// classic generation.
    pub(super) fn consumer_commit_error(cg: &ConsumerGroup, member_id: &str, epoch: i32) -> Option<i16> {
        if member_id.is_empty() && epoch < 0 {
            return if cg.members.is_empty() { None } else { Some(ec::UNKNOWN_MEMBER_ID) };
        }
        match cg.members.get(member_id) {
            None => Some(ec::UNKNOWN_MEMBER_ID),
            Some(m) if epoch != m.epoch && epoch != m.previous_epoch => Some(ec::ILLEGAL_GENERATION),
            Some(_) => None,
        }
    }
}

/// A consumer-protocol assignment (version 0) for DescribeGroups of a consumer group, so that
/// classic tools can show it.
pub fn encode_consumer_protocol_assignment(assignment: &TopicAssignment, meta: &ClusterMetadata) -> bytes::Bytes {
    let names: HashMap<Uuid, &String> = meta.topics.iter().map(|(n, t)| (t.id, n)).collect();
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    let topics: Vec<(&String, &BTreeSet<i32>)> = assignment.iter().filter_map(|(id, ps)| names.get(id).map(|n| (*n, ps))).collect();
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (name, ps) in topics {
        out.extend_from_slice(&(name.len() as i16).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes());
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionPlacement, TopicMetadata};

    fn meta_with(topics: &[(&str, usize)]) -> ClusterMetadata {
        let mut meta = ClusterMetadata::new("c".into());
        for (i, (name, count)) in topics.iter().enumerate() {
            let partitions = vec![PartitionPlacement::local(0, 0); *count];
            meta.topics.insert(name.to_string(), TopicMetadata { id: Uuid::from_u128(i as u128 + 1), partitions, configs: Default::default() });
        }
        meta
    }

    fn member(id: &str, topics: &[&str]) -> ConsumerMember {
        ConsumerMember { member_id: id.into(), subscribed: topics.iter().map(|t| t.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn uniform_spreads_evenly_and_is_sticky() {
        let meta = meta_with(&[("t", 6)]);
        let mut members = BTreeMap::new();
        for id in ["a", "b", "c"] {
            members.insert(id.to_string(), member(id, &["t"]));
        }
        let target = uniform_assignment(&members, &[("t".into(), 6)], &meta);
        let id = Uuid::from_u128(1);
        assert!(target.values().all(|a| a[&id].len() == 2));
        // b keeps what it has when a new member arrives.
        members.get_mut("b").unwrap().assigned = target["b"].clone();
        members.insert("d".into(), member("d", &["t"]));
        let next = uniform_assignment(&members, &[("t".into(), 6)], &meta);
        assert!(next["b"][&id].iter().all(|p| target["b"][&id].contains(p)));
        let total: usize = next.values().map(|a| a.get(&id).map_or(0, |s| s.len())).sum();
        assert_eq!(total, 6);
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_revokes_it() {
        let meta = meta_with(&[("t", 2)]);
        let mut cg = ConsumerGroup::default();
        cg.members.insert("a".into(), member("a", &["t"]));
        cg.rebalance(&meta);
        let first = cg.reconcile("a", 0).expect("initial assignment");
        assert_eq!(first[&Uuid::from_u128(1)].len(), 2);
        cg.members.insert("b".into(), member("b", &["t"]));
        cg.rebalance(&meta);
        // b cannot get anything while a still owns both partitions.
        let b_first = cg.reconcile("b", 0).unwrap_or_default();
        assert!(b_first.values().all(|s| s.is_empty()));
        // a is told to revoke one partition, and keeps its old epoch until it has.
        let a_revoke = cg.reconcile("a", 0).expect("revocation");
        assert_eq!(a_revoke[&Uuid::from_u128(1)].len(), 1);
        assert_ne!(cg.members["a"].epoch, cg.assignment_epoch);
        // a reports that it revoked; now b gets the freed partition.
        cg.members.get_mut("a").unwrap().assigned = a_revoke.clone();
        cg.reconcile("a", 0);
        assert_eq!(cg.members["a"].epoch, cg.assignment_epoch);
        let b_next = cg.reconcile("b", 0).expect("b's partition");
        assert_eq!(b_next[&Uuid::from_u128(1)].len(), 1);
        assert!(b_next[&Uuid::from_u128(1)].is_disjoint(&a_revoke[&Uuid::from_u128(1)]));
    }
}
