//! The driver of the KIP-848 consumer group protocol (`group.protocol=consumer`): members
//! heartbeat with ConsumerGroupHeartbeat, and the coordinator computes the assignment itself.
//! The protocol lives in [`state`], which has no I/O; this module reads the clock and the
//! cluster metadata, resolves each group's configs, turns requests into the state machine's
//! events, and logs its notes. Wire responses are built in `responses`. The shard's ticker
//! (in `classic`) applies the state machine's deadlines.

pub mod state;

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use shardlog_protocol::error_code as ec;
use shardlog_protocol::kafka_protocol;
use uuid::Uuid;

use super::classic::GroupCoordinator;
use super::responses;
use crate::metadata::ClusterMetadata;
use crate::storage::log::now_ms;
pub use state::{ConsumerGroup, ConsumerMember, GroupTimeouts, TopicAssignment, Topics, ASSIGNOR_NAME};
use state::{HeartbeatAnswer, HeartbeatRequest, Note, RemovalCause};

impl Topics for ClusterMetadata {
    fn topic(&self, name: &str) -> Option<(Uuid, usize)> {
        self.topics.get(name).map(|t| (t.id, t.partitions.len()))
    }
}

impl GroupCoordinator {
    /// The group's configs in effect now: read at every event, so that a changed group config
    /// reaches members at once.
    pub(in crate::groups) fn consumer_timeouts(&self, meta: &ClusterMetadata, group_id: &str) -> GroupTimeouts {
        let (session_timeout_ms, heartbeat_interval_ms) = super::configs::effective(&self.config, meta.group_configs.get(group_id));
        GroupTimeouts { session_timeout_ms, heartbeat_interval_ms }
    }

    pub fn consumer_heartbeat(
        &self,
        meta: &ClusterMetadata,
        request: ConsumerGroupHeartbeatRequest,
        client_id: String,
        client_host: String,
    ) -> ConsumerGroupHeartbeatResponse {
        let group_id = request.group_id.0.to_string();
        if let Some(refused) = state::request_error(&group_id, request.server_assignor.as_deref()) {
            return responses::consumer_heartbeat(refused);
        }
        let now = now_ms();
        let timeouts = self.consumer_timeouts(meta, &group_id);
        let mut groups = self.groups.borrow_mut();
        let group = groups.entry(group_id.clone()).or_insert_with(super::classic::Group::new);
        if group.consumer.is_none() {
            if group.is_classic_in_use() {
                return responses::consumer_heartbeat(HeartbeatAnswer::Error {
                    code: ec::GROUP_ID_NOT_FOUND,
                    message: format!("Group {group_id} is a classic group with members, not a consumer group."),
                });
            }
            group.consumer = Some(ConsumerGroup::new());
        }
        let cg = group.consumer.as_mut().expect("set above");
        let event = HeartbeatRequest {
            group_id: group_id.clone(),
            member_id: request.member_id.to_string(),
            member_epoch: request.member_epoch,
            instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
            rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topic_names: request.subscribed_topic_names.as_ref().map(|names| names.iter().map(|t| t.0.to_string()).collect()),
            owned: request.topic_partitions.as_ref().map(|owned| owned.iter().map(|t| (t.topic_id, t.partitions.iter().copied().collect())).collect()),
            client_id,
            client_host,
            // Drawn only for a join without an id, the one heartbeat that uses it.
            member_id_fresh: if request.member_epoch == 0 && request.member_id.is_empty() { Uuid::new_v4().to_string() } else { String::new() },
        };
        let outcome = cg.heartbeat(&timeouts, meta, event, now);
        drop(groups);
        log_notes(&group_id, outcome.notes);
        responses::consumer_heartbeat(outcome.answer)
    }

    pub fn consumer_describe(&self, meta: &ClusterMetadata, group_id: &str) -> DescribedGroup {
        let groups = self.groups.borrow();
        responses::consumer_describe(meta, group_id, groups.get(group_id).and_then(|g| g.consumer.as_ref()))
    }
}

pub(in crate::groups) fn log_notes(group_id: &str, notes: Vec<Note>) {
    for note in notes {
        match note {
            Note::MemberJoined { member_id } => tracing::info!(group = group_id, member = %member_id, "consumer group member joined"),
            Note::MemberLeft { member_id } => tracing::info!(group = group_id, member = %member_id, "consumer group member left"),
            Note::MemberRemoved { member_id, cause: RemovalCause::SessionTimeout } => {
                tracing::info!(group = group_id, member = %member_id, "consumer group member removed: session timeout expired")
            }
            Note::MemberRemoved { member_id, cause: RemovalCause::RebalanceTimeout } => {
                tracing::info!(group = group_id, member = %member_id, "consumer group member fenced: it did not revoke within its rebalance timeout")
            }
            Note::TargetAssignment { epoch, members } => tracing::info!(group = group_id, epoch, members, "consumer group: new target assignment"),
        }
    }
}
