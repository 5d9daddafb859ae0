//! The group coordinator's wire responses, built from what the state machines answer: the
//! version rules of each message live here and nowhere else, so that the state machines deal
//! in plain data.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::messages::consumer_group_describe_response as consumer_describe;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatResponse, DescribeGroupsResponse, GroupId, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse, TopicName,
};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::strings::str_bytes;
use uuid::Uuid;

use super::classic::state::{GroupState, JoinAnswer, SyncAnswer};
use super::classic::Group;
use super::consumer::state::{ConsumerGroup, HeartbeatAnswer, TopicAssignment, ASSIGNOR_NAME};
use super::ListedGroupInfo;
use crate::metadata::ClusterMetadata;

pub fn join_error(code: i16, member_id: &str) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = code;
    r.generation_id = -1;
    r.member_id = str_bytes(member_id);
    r
}

pub fn join(answer: JoinAnswer) -> JoinGroupResponse {
    let joined = match answer {
        JoinAnswer::Error { code, member_id } => return join_error(code, &member_id),
        JoinAnswer::Joined(joined) => joined,
    };
    let version = joined.version;
    let mut r = JoinGroupResponse::default();
    r.generation_id = joined.generation;
    r.protocol_name = joined.protocol_name.as_deref().map(str_bytes);
    if version >= 7 {
        r.protocol_type = joined.protocol_type.as_deref().map(str_bytes);
    }
    r.leader = str_bytes(joined.leader.as_deref().unwrap_or(""));
    r.member_id = str_bytes(&joined.member_id);
    r.members = joined
        .members
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = str_bytes(&m.member_id);
            if version >= 5 {
                jm.group_instance_id = m.instance_id.as_deref().map(str_bytes);
            }
            jm.metadata = m.metadata;
            jm
        })
        .collect();
    r
}

pub fn sync_error(code: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = code;
    r
}

pub fn sync(answer: SyncAnswer) -> SyncGroupResponse {
    match answer {
        SyncAnswer::Error(code) => sync_error(code),
        SyncAnswer::Assigned { version, protocol_type, protocol_name, assignment } => {
            let mut r = SyncGroupResponse::default();
            if version >= 5 {
                r.protocol_type = protocol_type.as_deref().map(str_bytes);
                r.protocol_name = protocol_name.as_deref().map(str_bytes);
            }
            r.assignment = assignment;
            r
        }
    }
}

/// LeaveGroup: from version 3 one entry per member asked to leave (as the request named it);
/// before, the one member's code at the top.
pub fn leave(version: i16, leaving: &[(String, Option<String>)], codes: &[i16]) -> LeaveGroupResponse {
    assert_eq!(leaving.len(), codes.len(), "one code per member");
    let mut r = LeaveGroupResponse::default();
    for ((member_id, instance), &code) in leaving.iter().zip(codes) {
        if version >= 3 {
            let mut mr = MemberResponse::default();
            mr.member_id = str_bytes(member_id);
            mr.group_instance_id = instance.as_deref().map(str_bytes);
            mr.error_code = code;
            r.members.push(mr);
        } else {
            r.error_code = code;
        }
    }
    r
}

pub fn leave_error(code: i16) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    r.error_code = code;
    r
}

/// DescribeGroups for one group (None: it does not exist, which Kafka reports as Dead).
pub(in crate::groups) fn describe(meta: &ClusterMetadata, group_id: &str, group: Option<&Group>) -> DescribeGroupsResponse {
    let mut d = DescribedGroup::default();
    d.group_id = GroupId(str_bytes(group_id));
    d.authorized_operations = i32::MIN;
    match group {
        None => {
            d.group_state = str_bytes("Dead");
        }
        Some(g) if g.consumer.is_some() => {
            // A KIP-848 group, shown the classic way so that classic tools can read it.
            let cg = g.consumer.as_ref().expect("checked");
            d.group_state = str_bytes(cg.state_name());
            d.protocol_type = str_bytes("consumer");
            d.protocol_data = str_bytes(ASSIGNOR_NAME);
            d.members = cg
                .members()
                .map(|m| {
                    let mut dm = described_member(&m.member_id, m.instance_id.as_deref(), &m.client_id, &m.client_host);
                    dm.member_assignment = encode_consumer_protocol_assignment(&m.assigned, meta);
                    dm
                })
                .collect();
        }
        Some(g) => {
            let c = &g.classic;
            d.group_state = str_bytes(c.state().name());
            d.protocol_type = str_bytes(c.protocol_type().unwrap_or(""));
            d.protocol_data = str_bytes(if c.state() == GroupState::Stable { c.protocol_name().unwrap_or("") } else { "" });
            let chosen = c.protocol_name().unwrap_or_default();
            d.members = c
                .members()
                .map(|m| {
                    let mut dm = described_member(&m.member_id, m.instance_id.as_deref(), &m.client_id, &m.client_host);
                    dm.member_metadata = m.metadata_for(chosen);
                    dm.member_assignment = m.assignment.clone();
                    dm
                })
                .collect();
        }
    }
    let mut r = DescribeGroupsResponse::default();
    r.groups = vec![d];
    r
}

/// A DescribeGroups member with the fields both kinds of group share.
fn described_member(member_id: &str, instance_id: Option<&str>, client_id: &str, client_host: &str) -> DescribedGroupMember {
    let mut dm = DescribedGroupMember::default();
    dm.member_id = str_bytes(member_id);
    dm.group_instance_id = instance_id.map(str_bytes);
    dm.client_id = str_bytes(client_id);
    dm.client_host = str_bytes(client_host);
    dm
}

/// ListGroups' entry for one group.
pub(in crate::groups) fn listed(group_id: &str, group: &Group) -> ListedGroupInfo {
    match &group.consumer {
        Some(cg) => ListedGroupInfo {
            group_id: group_id.to_string(),
            protocol_type: String::from("consumer"),
            state: cg.state_name().to_string(),
            group_type: "consumer",
        },
        None => ListedGroupInfo {
            group_id: group_id.to_string(),
            protocol_type: group.classic.protocol_type().unwrap_or_default().to_string(),
            state: group.classic.state().name().to_string(),
            group_type: "classic",
        },
    }
}

/// ConsumerGroupHeartbeat. An error carries member epoch -1 and no member id, as Kafka's does.
pub fn consumer_heartbeat(answer: HeartbeatAnswer) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    match answer {
        HeartbeatAnswer::Error { code, message } => {
            r.error_code = code;
            r.error_message = Some(str_bytes(&message));
            r.member_epoch = -1;
        }
        HeartbeatAnswer::Member { member_id, member_epoch, heartbeat_interval_ms, assignment } => {
            r.member_id = Some(str_bytes(&member_id));
            r.member_epoch = member_epoch;
            r.heartbeat_interval_ms = heartbeat_interval_ms;
            r.assignment = assignment.as_ref().map(heartbeat_assignment);
        }
    }
    r
}

fn heartbeat_assignment(assignment: &TopicAssignment) -> Assignment {
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

/// ConsumerGroupDescribe for one group (None: not a consumer group, or none at all).
pub(in crate::groups) fn consumer_describe(meta: &ClusterMetadata, group_id: &str, group: Option<&ConsumerGroup>) -> consumer_describe::DescribedGroup {
    let mut d = consumer_describe::DescribedGroup::default();
    d.group_id = GroupId(str_bytes(group_id));
    d.authorized_operations = i32::MIN;
    let Some(cg) = group else {
        d.error_code = shardlog_protocol::error_code::GROUP_ID_NOT_FOUND;
        d.error_message = Some(str_bytes(&format!("Group {group_id} not found.")));
        d.group_state = str_bytes("Dead");
        return d;
    };
    let names: HashMap<Uuid, &String> = meta.topics.iter().map(|(n, t)| (t.id, n)).collect();
    let wire = |a: &TopicAssignment| {
        let mut out = consumer_describe::Assignment::default();
        out.topic_partitions = a
            .iter()
            .map(|(id, ps)| {
                let mut tp = consumer_describe::TopicPartitions::default();
                tp.topic_id = *id;
                tp.topic_name = TopicName(str_bytes(names.get(id).map(|s| s.as_str()).unwrap_or("")));
                tp.partitions = ps.iter().copied().collect();
                tp
            })
            .collect();
        out
    };
    d.group_state = str_bytes(cg.state_name());
    d.group_epoch = cg.epoch();
    d.assignment_epoch = cg.assignment_epoch();
    d.assignor_name = str_bytes(ASSIGNOR_NAME);
    d.members = cg
        .members()
        .map(|m| {
            let mut dm = consumer_describe::Member::default();
            dm.member_id = str_bytes(&m.member_id);
            dm.instance_id = m.instance_id.as_deref().map(str_bytes);
            dm.rack_id = m.rack_id.as_deref().map(str_bytes);
            dm.member_epoch = m.epoch;
            dm.client_id = str_bytes(&m.client_id);
            dm.client_host = str_bytes(&m.client_host);
            dm.subscribed_topic_names = m.subscribed.iter().map(|t| TopicName(str_bytes(t))).collect();
            dm.assignment = wire(&m.assigned);
            dm.target_assignment = wire(cg.target(&m.member_id).unwrap_or(&TopicAssignment::new()));
            dm
        })
        .collect();
    d
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
    use bytes::Bytes;
    use shardlog_protocol::error_code as ec;

    use super::*;
    use crate::groups::classic::state::{Joined, JoinedMember};

    fn joined(version: i16) -> JoinAnswer {
        JoinAnswer::Joined(Joined {
            version,
            generation: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: Some("a".into()),
            member_id: "a".into(),
            members: vec![JoinedMember { member_id: "a".into(), instance_id: Some("i".into()), metadata: Bytes::from_static(b"md") }],
        })
    }

    #[test]
    fn join_fields_follow_the_version() {
        let old = join(joined(4));
        assert_eq!(old.generation_id, 3);
        assert!(old.protocol_type.is_none(), "protocol type is a v7 field");
        assert!(old.members[0].group_instance_id.is_none(), "instance id is a v5 field");
        let new = join(joined(7));
        assert_eq!(new.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(new.members[0].group_instance_id.as_deref(), Some("i"));
        assert_eq!(new.members[0].metadata, Bytes::from_static(b"md"));
        let err = join(JoinAnswer::Error { code: ec::UNKNOWN_MEMBER_ID, member_id: "x".into() });
        assert_eq!((err.error_code, err.generation_id, err.member_id.as_str()), (ec::UNKNOWN_MEMBER_ID, -1, "x"));
    }

    #[test]
    fn sync_and_leave_fields_follow_the_version() {
        let answer = |version| SyncAnswer::Assigned {
            version,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"x"),
        };
        assert!(sync(answer(4)).protocol_name.is_none());
        assert_eq!(sync(answer(5)).protocol_name.as_deref(), Some("range"));
        assert_eq!(sync(SyncAnswer::Error(ec::REBALANCE_IN_PROGRESS)).error_code, ec::REBALANCE_IN_PROGRESS);
        let leaving = vec![("a".to_string(), None), ("".to_string(), Some("i".to_string()))];
        let v3 = leave(3, &leaving, &[ec::NONE, ec::UNKNOWN_MEMBER_ID]);
        assert_eq!(v3.members.len(), 2);
        assert_eq!(v3.members[1].error_code, ec::UNKNOWN_MEMBER_ID);
        let v0 = leave(0, &leaving[..1], &[ec::UNKNOWN_MEMBER_ID]);
        assert_eq!((v0.error_code, v0.members.len()), (ec::UNKNOWN_MEMBER_ID, 0));
    }

    #[test]
    fn consumer_heartbeat_answers_carry_kafkas_fields() {
        let refused = consumer_heartbeat(HeartbeatAnswer::Error { code: ec::FENCED_MEMBER_EPOCH, message: "stale".into() });
        assert_eq!((refused.error_code, refused.member_epoch), (ec::FENCED_MEMBER_EPOCH, -1));
        assert_eq!((refused.member_id.as_deref(), refused.error_message.as_deref()), (None, Some("stale")));
        let topic = Uuid::from_u128(7);
        let assignment = TopicAssignment::from([(topic, BTreeSet::from([2, 0]))]);
        let answer = |assignment| HeartbeatAnswer::Member { member_id: "m".into(), member_epoch: 4, heartbeat_interval_ms: 5000, assignment };
        let r = consumer_heartbeat(answer(Some(assignment)));
        assert_eq!((r.error_code, r.member_id.as_deref(), r.member_epoch, r.heartbeat_interval_ms), (ec::NONE, Some("m"), 4, 5000));
        let sent = r.assignment.expect("an assignment");
        assert_eq!((sent.topic_partitions[0].topic_id, sent.topic_partitions[0].partitions.clone()), (topic, vec![0, 2]));
        assert!(consumer_heartbeat(answer(None)).assignment.is_none(), "an unchanged assignment is not sent");
    }
}
