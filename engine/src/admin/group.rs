//! `shardlog group list` and `shardlog group describe`: consumer groups as
//! `kafka-consumer-groups.sh --list` and `--describe` show them.
//!
//! Each command gathers what it needs from the broker (the I/O half, at the top), then hands it to
//! pure functions that build the rows (the bottom half, unit-tested). shardlog is a single node,
//! so the bootstrap broker is also every group's coordinator and every partition's leader: all
//! requests go over the one connection.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeGroupsRequest, GroupId, ListGroupsRequest, ListOffsetsRequest, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::{error_name, is_retriable, GROUP_ID_NOT_FOUND};
use shardlog_protocol::kafka_protocol;

use super::assignment::decode_assignment;
use super::client::{Client, ClientConfig};
use super::table::{self, cell, printable};

/// ListOffsets timestamp that asks for the log end offset.
const LATEST_TIMESTAMP: i64 = -1;

/// The protocol type of groups whose assignments use the consumer protocol's layout.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A group request that fails with a retriable error (the coordinator is still loading its
/// offsets after a restart, say) is sent again, at most this many times...
const GROUP_RETRIES_MAX: u32 = 8;
/// ...waiting twice as long each time, from this, up to the command's timeout in all.
const RETRY_BACKOFF_MS_INITIAL: u64 = 100;
const RETRY_BACKOFF_MS_MAX: u64 = 1_000;

/// (topic, partition).
pub type TopicPartition = (String, i32);
/// An offset per partition: committed offsets, or log end offsets.
pub type Offsets = BTreeMap<TopicPartition, i64>;

pub const LIST_HEADER: &[&str] = &["GROUP", "STATE", "PROTOCOL-TYPE"];
pub const DESCRIBE_HEADER: &[&str] = &["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"];

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List the consumer groups: GROUP, STATE, PROTOCOL-TYPE, sorted by group id.
    List {
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Describe one group: its state and members, and per partition the committed offset, the
    /// log end offset, the lag and the consumer that owns it.
    Describe {
        /// The group id.
        group: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectionArgs {
    /// The broker to ask: HOST:PORT, or a comma-separated list tried in turn.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Bound on connecting and on each request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout_ms: u64,
}

impl ConnectionArgs {
    pub fn connect_client(&self) -> Result<Client> {
        self.connect()
    }

    pub fn connect(&self) -> Result<Client> {
        let config = ClientConfig { timeout: Duration::from_millis(self.timeout_ms), ..ClientConfig::default() };
        Client::connect(&self.bootstrap_server, config)
    }
}

/// Runs `command`, printing the result to `out` and warnings to `err`; returns the exit code.
pub fn run(command: GroupCommand, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    match command {
        GroupCommand::List { connection } => {
            let mut client = connection.connect()?;
            let groups = list_groups(&mut client)?;
            out.write_all(table::render(LIST_HEADER, &list_rows(groups)).as_bytes())?;
            Ok(0)
        }
        GroupCommand::Describe { group, connection } => {
            let mut client = connection.connect()?;
            describe(&mut client, &group, out, err)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// I/O: what each command asks the broker.

fn list_groups(client: &mut Client) -> Result<Vec<ListedGroup>> {
    let version = client.version(ApiKey::ListGroups)?;
    let request = ListGroupsRequest::default();
    let response = with_retries(client.timeout(), "ListGroups", || {
        let response = client.send(&request, version)?;
        Ok(if response.error_code != 0 { Err(response.error_code) } else { Ok(response) })
    })?;
    let mut groups: Vec<ListedGroup> = response
        .groups
        .into_iter()
        .map(|g| ListedGroup {
            group_id: g.group_id.0.to_string(),
            state: (version >= 4).then(|| g.group_state.to_string()),
            protocol_type: g.protocol_type.to_string(),
        })
        .collect();
    // ListGroups before v4 has no state: ask DescribeGroups for it, all groups in one request.
    if version < 4 && !groups.is_empty() && client.version(ApiKey::DescribeGroups).is_ok() {
        let ids: Vec<String> = groups.iter().map(|g| g.group_id.clone()).collect();
        let described = describe_groups(client, &ids)?;
        for g in &mut groups {
            g.state = described.iter().find(|d| d.group_id.0.as_str() == g.group_id && d.error_code == 0).map(|d| d.group_state.to_string());
        }
    }
    Ok(groups)
}

fn describe(client: &mut Client, group: &str, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let described = describe_groups(client, &[group.to_string()])?;
    let described = described
        .into_iter()
        .find(|d| d.group_id.0.as_str() == group)
        .ok_or_else(|| anyhow!("the DescribeGroups response from {} does not mention group {}", client.server(), printable(group)))?;
    let summary = match described.error_code {
        0 => Some(GroupSummary::from(&described)),
        GROUP_ID_NOT_FOUND => None,
        code => bail!("the broker refused to describe group {}: {}", printable(group), error_name(code)),
    };
    let (committed, mut warnings) = fetch_committed_offsets(client, group)?;

    let is_dead = match &summary {
        Some(s) => s.state.eq_ignore_ascii_case("dead"),
        None => true,
    };
    if is_dead && committed.is_empty() {
        writeln!(err, "shardlog: consumer group {} does not exist (no members, no committed offsets)", printable(group))?;
        return Ok(1);
    }
    let summary = summary.unwrap_or_else(|| GroupSummary { group_id: group.to_string(), state: "Dead".to_string(), ..GroupSummary::default() });
    let (members, assignment_warnings) = members_of(&described);
    warnings.extend(assignment_warnings);

    let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
    partitions.extend(members.iter().flat_map(|m| m.partitions.iter().cloned()));
    let (log_end, log_end_warnings) = log_end_offsets(client, &partitions)?;
    warnings.extend(log_end_warnings);

    for w in &warnings {
        writeln!(err, "warning: {w}")?;
    }
    let rows = describe_rows(&members, &committed, &log_end);
    writeln!(out, "{}", summary_line(&summary, members.len()))?;
    writeln!(out)?;
    out.write_all(table::render(DESCRIBE_HEADER, &describe_table(&summary.group_id, &rows)).as_bytes())?;
    Ok(0)
}

fn describe_groups(client: &mut Client, groups: &[String]) -> Result<Vec<DescribedGroup>> {
    let version = client.version(ApiKey::DescribeGroups)?;
    let mut request = DescribeGroupsRequest::default();
    request.groups = groups.iter().map(|g| GroupId(StrBytes::from_string(g.clone()))).collect();
    with_retries(client.timeout(), "DescribeGroups", || {
        let response = client.send(&request, version)?;
        // Retry while any group's coordinator is not ready; other errors are the caller's.
        Ok(match response.groups.iter().map(|g| g.error_code).find(|&code| is_retriable(code)) {
            Some(code) => Err(code),
            None => Ok(response.groups),
        })
    })
}

/// All committed offsets of `group` (offsets of -1, "none", are left out), and warnings for
/// partitions the broker could not answer for.
fn fetch_committed_offsets(client: &mut Client, group: &str) -> Result<(Offsets, Vec<String>)> {
    let version = client.version(ApiKey::OffsetFetch)?;
    let request = offset_fetch_request(version, group);
    let response = with_retries(client.timeout(), "OffsetFetch", || {
        let response = client.send(&request, version)?;
        Ok(match offset_fetch_group_error(&response, version, group) {
            0 | GROUP_ID_NOT_FOUND => Ok(response),
            code => Err(code),
        })
    })?;
    Ok(committed_offsets(&response, version, group))
}

/// Log end offsets of `partitions`, and warnings for those the broker could not answer for.
fn log_end_offsets(client: &mut Client, partitions: &BTreeSet<TopicPartition>) -> Result<(Offsets, Vec<String>)> {
    if partitions.is_empty() {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    let version = client.version(ApiKey::ListOffsets)?;
    let timeout_ms = i32::try_from(client.timeout().as_millis()).unwrap_or(i32::MAX);
    let request = list_offsets_request(version, partitions, timeout_ms);
    let response = client.send(&request, version)?;
    let mut offsets = BTreeMap::new();
    let mut warnings = Vec::new();
    for t in &response.topics {
        for p in &t.partitions {
            let key = (t.name.0.to_string(), p.partition_index);
            if p.error_code != 0 {
                warnings.push(format!("cannot read the log end offset of {}-{}: {}", printable(&key.0), key.1, error_name(p.error_code)));
            } else if p.offset >= 0 {
                offsets.insert(key, p.offset);
            }
        }
    }
    Ok((offsets, warnings))
}

/// Calls `attempt` until it returns something other than a retriable Kafka error code, sleeping
/// between tries; gives up after [`GROUP_RETRIES_MAX`] retries or `timeout`, whichever is first.
fn with_retries<T>(timeout: Duration, what: &str, mut attempt: impl FnMut() -> Result<Result<T, i16>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut backoff_ms = RETRY_BACKOFF_MS_INITIAL;
    let mut retries = 0;
    loop {
        let code = match attempt()? {
            Ok(value) => return Ok(value),
            Err(code) => code,
        };
        let backoff = Duration::from_millis(backoff_ms);
        if !is_retriable(code) {
            bail!("{what} failed: {}", error_name(code));
        }
        if retries >= GROUP_RETRIES_MAX || Instant::now() + backoff > deadline {
            bail!("{what} still failed after {} tries: {}; try again later", retries + 1, error_name(code));
        }
        std::thread::sleep(backoff);
        backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MS_MAX);
        retries += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: only fields that exist in the version being sent are set.

pub fn offset_fetch_request(version: i16, group: &str) -> OffsetFetchRequest {
    let mut request = OffsetFetchRequest::default();
    if version >= 8 {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(StrBytes::from_string(group.to_string()));
        g.topics = None; // null: every partition with a committed offset
        request.groups = vec![g];
    } else {
        request.group_id = GroupId(StrBytes::from_string(group.to_string()));
        request.topics = None;
    }
    request
}

pub fn list_offsets_request(version: i16, partitions: &BTreeSet<TopicPartition>, timeout_ms: i32) -> ListOffsetsRequest {
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1); // a consumer, not a follower
    if version >= 10 {
        request.timeout_ms = timeout_ms;
    }
    for (topic, partition) in partitions {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = *partition;
        p.timestamp = LATEST_TIMESTAMP;
        match request.topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => {
                let mut t = ListOffsetsTopic::default();
                t.name = TopicName(StrBytes::from_string(topic.clone()));
                t.partitions.push(p);
                request.topics.push(t);
            }
        }
    }
    request
}

// ---------------------------------------------------------------------------------------------
// Pure: from responses to rows.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// None when the broker did not say (ListGroups before v4, and DescribeGroups failed).
    pub state: Option<String>,
    pub protocol_type: String,
}

/// `group list` rows, sorted by group id.
pub fn list_rows(mut groups: Vec<ListedGroup>) -> Vec<Vec<String>> {
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups.into_iter().map(|g| vec![g.group_id, cell(g.state), g.protocol_type]).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
}

impl From<&DescribedGroup> for GroupSummary {
    fn from(g: &DescribedGroup) -> Self {
        GroupSummary {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// The partitions assigned to this member: (topic, partition).
    pub partitions: Vec<TopicPartition>,
}

/// The members of a described group with their decoded assignments, and a warning for each
/// assignment that could not be decoded (that member is then shown without partitions).
pub fn members_of(group: &DescribedGroup) -> (Vec<Member>, Vec<String>) {
    let mut warnings = Vec::new();
    let decode = group.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
    let members = group
        .members
        .iter()
        .map(|m| {
            let partitions = if !decode {
                Vec::new()
            } else {
                match decode_assignment(&m.member_assignment) {
                    Ok(a) => a.partitions,
                    Err(e) => {
                        warnings.push(format!("member {}: cannot decode its assignment ({e}); it is shown without partitions", printable(&m.member_id)));
                        Vec::new()
                    }
                }
            };
            Member { member_id: m.member_id.to_string(), client_id: m.client_id.to_string(), host: m.client_host.to_string(), partitions }
        })
        .collect();
    (members, warnings)
}

/// The offsets in an OffsetFetch response for `group` (offsets below 0 mean "none" and are left
/// out), and a warning for each partition that carries an error.
pub fn committed_offsets(response: &OffsetFetchResponse, version: i16, group: &str) -> (Offsets, Vec<String>) {
    let mut offsets = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut add = |topic: &str, partition: i32, offset: i64, error_code: i16| {
        if error_code != 0 {
            warnings.push(format!("cannot read the committed offset of {}-{partition}: {}", printable(topic), error_name(error_code)));
        } else if offset >= 0 {
            offsets.insert((topic.to_string(), partition), offset);
        }
    };
    if version >= 8 {
        for g in response.groups.iter().filter(|g| g.group_id.0.as_str() == group) {
            for t in &g.topics {
                for p in &t.partitions {
                    add(t.name.0.as_str(), p.partition_index, p.committed_offset, p.error_code);
                }
            }
        }
    } else {
        for t in &response.topics {
            for p in &t.partitions {
                add(t.name.0.as_str(), p.partition_index, p.committed_offset, p.error_code);
            }
        }
    }
    (offsets, warnings)
}

/// The group-level error of an OffsetFetch response (0 when none).
pub fn offset_fetch_group_error(response: &OffsetFetchResponse, version: i16, group: &str) -> i16 {
    if version >= 8 {
        response.groups.iter().find(|g| g.group_id.0.as_str() == group).map_or(0, |g| g.error_code)
    } else {
        response.error_code
    }
}

/// Lag as Kafka computes it: log end offset minus committed offset, unknown when either is.
/// Not clamped: a negative lag (committed past the end, after a truncation) is worth seeing.
pub fn lag(current_offset: Option<i64>, log_end_offset: Option<i64>) -> Option<i64> {
    Some(log_end_offset? - current_offset?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// None for a member that has no partitions.
    pub topic_partition: Option<TopicPartition>,
    pub current_offset: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub lag: Option<i64>,
    /// (member id, host, client id); None for a partition no member owns.
    pub consumer: Option<(String, String, String)>,
}

/// One row per assigned partition, one per committed but unassigned partition, and one per member
/// with no partitions; sorted by topic and partition, partition-less members last.
pub fn describe_rows(members: &[Member], committed: &Offsets, log_end: &Offsets) -> Vec<PartitionRow> {
    let row = |tp: &TopicPartition, consumer: Option<(String, String, String)>| {
        let current_offset = committed.get(tp).copied();
        let log_end_offset = log_end.get(tp).copied();
        PartitionRow { topic_partition: Some(tp.clone()), current_offset, log_end_offset, lag: lag(current_offset, log_end_offset), consumer }
    };
    let mut rows = Vec::new();
    let mut assigned = BTreeSet::new();
    for m in members {
        let consumer = (m.member_id.clone(), m.host.clone(), m.client_id.clone());
        if m.partitions.is_empty() {
            rows.push(PartitionRow { topic_partition: None, current_offset: None, log_end_offset: None, lag: None, consumer: Some(consumer) });
            continue;
        }
        for tp in &m.partitions {
            // A (buggy or hostile) assignment may list a partition twice; show it once per member.
            if assigned.insert((tp.clone(), m.member_id.clone())) {
                rows.push(row(tp, Some(consumer.clone())));
            }
        }
    }
    let assigned: BTreeSet<&TopicPartition> = assigned.iter().map(|(tp, _)| tp).collect();
    for tp in committed.keys().filter(|tp| !assigned.contains(tp)) {
        rows.push(row(tp, None));
    }
    rows.sort_by(|a, b| match (&a.topic_partition, &b.topic_partition) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.consumer.cmp(&b.consumer)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.consumer.cmp(&b.consumer),
    });
    rows
}

/// The table cells of `rows`, in [`DESCRIBE_HEADER`] order.
pub fn describe_table(group_id: &str, rows: &[PartitionRow]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let (member_id, host, client_id) = match &r.consumer {
                Some((m, h, c)) => (m.clone(), h.clone(), c.clone()),
                None => (table::NONE.to_string(), table::NONE.to_string(), table::NONE.to_string()),
            };
            vec![
                group_id.to_string(),
                cell(r.topic_partition.as_ref().map(|(t, _)| t)),
                cell(r.topic_partition.as_ref().map(|(_, p)| p)),
                cell(r.current_offset),
                cell(r.log_end_offset),
                cell(r.lag),
                member_id,
                host,
                client_id,
            ]
        })
        .collect()
}

/// The line above the table: `Group g: state Stable, protocol type consumer, protocol range, 2 members`.
pub fn summary_line(summary: &GroupSummary, member_count: usize) -> String {
    let or_none = |s: &str| if s.is_empty() { table::NONE.to_string() } else { printable(s) };
    format!(
        "Group {}: state {}, protocol type {}, protocol {}, {member_count} member{}",
        or_none(&summary.group_id),
        or_none(&summary.state),
        or_none(&summary.protocol_type),
        or_none(&summary.protocol),
        if member_count == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_groups_response::DescribedGroupMember;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
    };
    use kafka_protocol::protocol::Encodable;

    use shardlog_protocol::client::encode_request;

    use super::super::client::CLIENT_VERSIONS;
    use super::*;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn member(id: &str, partitions: &[(&str, i32)]) -> Member {
        Member {
            member_id: id.to_string(),
            client_id: format!("client-{id}"),
            host: "/127.0.0.1".to_string(),
            partitions: partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    fn offsets(entries: &[(&str, i32, i64)]) -> Offsets {
        entries.iter().map(|(t, p, o)| ((t.to_string(), *p), *o)).collect()
    }

    fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (_, min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key).copied().unwrap();
        min..=max
    }

    #[test]
    fn lag_is_log_end_minus_committed() {
        assert_eq!(lag(Some(40), Some(100)), Some(60));
        assert_eq!(lag(Some(100), Some(100)), Some(0));
        assert_eq!(lag(None, Some(100)), None);
        assert_eq!(lag(Some(5), None), None);
        assert_eq!(lag(Some(7), Some(3)), Some(-4));
    }

    #[test]
    fn list_rows_are_sorted_and_complete() {
        let groups = vec![
            ListedGroup { group_id: "zeta".into(), state: Some("Empty".into()), protocol_type: "consumer".into() },
            ListedGroup { group_id: "alpha".into(), state: None, protocol_type: "".into() },
        ];
        let out = table::render(LIST_HEADER, &list_rows(groups));
        assert_eq!(out, "GROUP  STATE  PROTOCOL-TYPE\nalpha  -      -\nzeta   Empty  consumer\n");
    }

    #[test]
    fn rows_join_assignments_offsets_and_log_ends() {
        let members = vec![member("m2", &[("orders", 1)]), member("m1", &[("orders", 0), ("orders", 2)]), member("idle", &[])];
        let committed = offsets(&[("orders", 0, 30), ("orders", 2, 10), ("audit", 0, 5)]);
        let log_end = offsets(&[("orders", 0, 34), ("orders", 1, 33), ("orders", 2, 33), ("audit", 0, 9)]);
        let rows = describe_rows(&members, &committed, &log_end);
        let table = describe_table("g", &rows);
        let expected: Vec<Vec<&str>> = vec![
            vec!["g", "audit", "0", "5", "9", "4", "-", "-", "-"],
            vec!["g", "orders", "0", "30", "34", "4", "m1", "/127.0.0.1", "client-m1"],
            vec!["g", "orders", "1", "-", "33", "-", "m2", "/127.0.0.1", "client-m2"],
            vec!["g", "orders", "2", "10", "33", "23", "m1", "/127.0.0.1", "client-m1"],
            vec!["g", "-", "-", "-", "-", "-", "idle", "/127.0.0.1", "client-idle"],
        ];
        assert_eq!(table, expected.iter().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>());
    }

    #[test]
    fn a_partition_listed_twice_by_one_member_shows_once() {
        let members = vec![member("m", &[("t", 0), ("t", 0)])];
        let rows = describe_rows(&members, &BTreeMap::new(), &BTreeMap::new());
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].log_end_offset, None);
        assert_eq!(rows[0].lag, None);
    }

    #[test]
    fn the_rendered_describe_table_aligns() {
        let rows = describe_rows(&[member("m", &[("t", 0)])], &offsets(&[("t", 0, 1), ("t", 1, 2)]), &offsets(&[("t", 0, 3), ("t", 1, 2)]));
        let out = table::render(DESCRIBE_HEADER, &describe_table("g", &rows));
        assert_eq!(
            out,
            "GROUP  TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST        CLIENT-ID\n\
             g      t      0          1               3               2    m            /127.0.0.1  client-m\n\
             g      t      1          2               2               0    -            -           -\n"
        );
    }

    #[test]
    fn summary_line_reads_well() {
        let summary = GroupSummary { group_id: "g".into(), state: "Stable".into(), protocol_type: "consumer".into(), protocol: "range".into() };
        assert_eq!(summary_line(&summary, 2), "Group g: state Stable, protocol type consumer, protocol range, 2 members");
        let summary = GroupSummary { group_id: "g".into(), state: "Empty".into(), ..GroupSummary::default() };
        assert_eq!(summary_line(&summary, 1), "Group g: state Empty, protocol type -, protocol -, 1 member");
    }

    #[test]
    fn members_decode_consumer_assignments_and_survive_bad_ones() {
        let mut good = Vec::new();
        good.extend_from_slice(&0i16.to_be_bytes());
        good.extend_from_slice(&1i32.to_be_bytes());
        good.extend_from_slice(&1i16.to_be_bytes());
        good.push(b't');
        good.extend_from_slice(&1i32.to_be_bytes());
        good.extend_from_slice(&3i32.to_be_bytes());
        good.extend_from_slice(&(-1i32).to_be_bytes());
        let mut group = DescribedGroup::default();
        group.protocol_type = s("consumer");
        for (id, bytes) in [("a", good.clone()), ("b", good[..9].to_vec())] {
            let mut m = DescribedGroupMember::default();
            m.member_id = s(id);
            m.member_assignment = bytes.into();
            group.members.push(m);
        }
        let (members, warnings) = members_of(&group);
        assert_eq!(members[0].partitions, vec![("t".to_string(), 3)]);
        assert!(members[1].partitions.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("member b: cannot decode its assignment (topics count 1 at byte 2"), "{}", warnings[0]);

        // Another protocol type: the bytes are not the consumer layout, so they are not decoded.
        group.protocol_type = s("connect");
        let (members, warnings) = members_of(&group);
        assert!(members[0].partitions.is_empty() && warnings.is_empty());
    }

    #[test]
    fn committed_offsets_from_old_and_new_responses() {
        let mut p = OffsetFetchResponsePartition::default();
        p.partition_index = 0;
        p.committed_offset = 12;
        let mut none = OffsetFetchResponsePartition::default();
        none.partition_index = 1;
        none.committed_offset = -1;
        let mut failed = OffsetFetchResponsePartition::default();
        failed.partition_index = 2;
        failed.error_code = 3;
        let mut t = OffsetFetchResponseTopic::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p, none, failed];
        let mut old = OffsetFetchResponse::default();
        old.topics = vec![t];
        let (offsets_old, warnings) = committed_offsets(&old, 7, "g");
        assert_eq!(offsets_old, offsets(&[("t", 0, 12)]));
        assert_eq!(warnings, vec!["cannot read the committed offset of t-2: UNKNOWN_TOPIC_OR_PARTITION (3)".to_string()]);

        let mut p = OffsetFetchResponsePartitions::default();
        p.partition_index = 4;
        p.committed_offset = 99;
        let mut t = OffsetFetchResponseTopics::default();
        t.name = TopicName(s("t"));
        t.partitions = vec![p];
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = GroupId(s("g"));
        g.topics = vec![t];
        let mut other = g.clone();
        other.group_id = GroupId(s("other"));
        other.error_code = 15;
        let mut new = OffsetFetchResponse::default();
        new.groups = vec![other, g];
        assert_eq!(committed_offsets(&new, 8, "g").0, offsets(&[("t", 4, 99)]));
        assert_eq!(offset_fetch_group_error(&new, 8, "g"), 0);
        assert_eq!(offset_fetch_group_error(&new, 8, "other"), 15);
    }

    #[test]
    fn every_request_encodes_at_every_version_the_client_speaks() {
        for v in versions(ApiKey::OffsetFetch) {
            encode_request(&offset_fetch_request(v, "g"), v, 1, "c").unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e:#}"));
        }
        let partitions: BTreeSet<TopicPartition> = [("a".to_string(), 0), ("a".to_string(), 1), ("b".to_string(), 0)].into();
        for v in versions(ApiKey::ListOffsets) {
            let request = list_offsets_request(v, &partitions, 5000);
            assert_eq!(request.topics.len(), 2);
            encode_request(&request, v, 1, "c").unwrap_or_else(|e| panic!("ListOffsets v{v}: {e:#}"));
        }
        for v in versions(ApiKey::ListGroups) {
            encode_request(&ListGroupsRequest::default(), v, 1, "c").unwrap();
        }
        for v in versions(ApiKey::DescribeGroups) {
            let mut request = DescribeGroupsRequest::default();
            request.groups = vec![GroupId(s("g"))];
            encode_request(&request, v, 1, "c").unwrap();
        }
    }

    #[test]
    fn offset_fetch_asks_for_every_partition() {
        use kafka_protocol::protocol::Decodable;
        for v in versions(ApiKey::OffsetFetch) {
            let request = offset_fetch_request(v, "g");
            let mut bytes = Vec::new();
            request.encode(&mut bytes, v).unwrap();
            let decoded = OffsetFetchRequest::decode(&mut bytes::Bytes::from(bytes), v).unwrap();
            if v >= 8 {
                assert_eq!(decoded.groups[0].group_id.0.as_str(), "g");
                assert!(decoded.groups[0].topics.is_none(), "v{v}");
            } else {
                assert_eq!(decoded.group_id.0.as_str(), "g");
                assert!(decoded.topics.is_none(), "v{v}");
            }
        }
    }

    #[test]
    fn retries_stop_at_non_retriable_errors_and_after_the_bound() {
        let mut calls = 0;
        let e = with_retries(Duration::from_secs(5), "X", || {
            calls += 1;
            Ok::<Result<(), i16>, anyhow::Error>(Err(69))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(e.to_string(), "X failed: GROUP_ID_NOT_FOUND (69)");

        let mut calls = 0;
        let e = with_retries(Duration::from_millis(350), "X", || {
            calls += 1;
            Ok::<Result<(), i16>, anyhow::Error>(Err(14))
        })
        .unwrap_err();
        assert!((2..=3).contains(&calls), "{calls}");
        assert!(e.to_string().contains("COORDINATOR_LOAD_IN_PROGRESS (14); try again later"), "{e}");

        let mut calls = 0;
        let value = with_retries(Duration::from_secs(5), "X", || {
            calls += 1;
            Ok::<Result<i32, i16>, anyhow::Error>(if calls < 3 { Err(15) } else { Ok(7) })
        })
        .unwrap();
        assert_eq!((value, calls), (7, 3));
    }
}
