//! Setup against any Kafka-compatible cluster: find the brokers and the partition leaders with
//! Metadata, create the topic if it is missing, and read partition end offsets with ListOffsets.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, BrokerId, CreateTopicsRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::{self, error_name};
use shardlog_protocol::kafka_protocol;

use super::net::Connection;
use super::retry::{Retry, DEFAULT_POLICY, RETRY_BOUND};

const CREATE_TOPICS_TIMEOUT_MS: i32 = 30_000;

/// LATEST_TIMESTAMP and EARLIEST_TIMESTAMP in ListOffsets.
pub const OFFSET_LATEST: i64 = -1;
pub const OFFSET_EARLIEST: i64 = -2;

#[derive(Debug, Clone)]
pub struct TopicLayout {
    pub topic: String,
    /// Broker id -> "host:port", as Metadata advertises them.
    pub brokers: BTreeMap<i32, String>,
    /// Leader broker id of each partition, by partition index.
    pub leaders: Vec<i32>,
}

impl TopicLayout {
    pub fn partitions(&self) -> u32 {
        self.leaders.len() as u32
    }

    /// Partitions by leader: broker id -> partition indexes.
    pub fn by_leader(&self) -> BTreeMap<i32, Vec<i32>> {
        let mut out: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (partition, &leader) in self.leaders.iter().enumerate() {
            out.entry(leader).or_default().push(partition as i32);
        }
        out
    }

    pub fn address(&self, broker: i32) -> Result<&str> {
        self.brokers.get(&broker).map(String::as_str).ok_or_else(|| anyhow!("broker {broker} leads a partition but is not in the Metadata broker list"))
    }
}

/// Connects to the first bootstrap server (comma-separated HOST:PORT) that answers.
pub async fn connect_bootstrap(bootstrap: &str) -> Result<Connection> {
    let mut failures = Vec::new();
    for server in bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match Connection::connect(server).await {
            Ok(c) => return Ok(c),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        bail!("--bootstrap-server is empty: give HOST:PORT[,HOST:PORT...]");
    }
    bail!("no bootstrap server answered: {}", failures.join("; "))
}

async fn metadata(connection: &Connection, topic: &str) -> Result<MetadataResponse> {
    let version = connection.version(ApiKey::Metadata)?;
    let mut request = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(topic.to_string())));
    request.topics = Some(vec![t]);
    if version >= 4 {
        // The generator creates the topic itself, with the partitions the workload asks for.
        request.allow_auto_topic_creation = false;
    }
    connection.call(&request, version).await
}

/// Makes sure `topic` exists (creating it with `partitions` if it does not) and that every
/// partition has a leader; returns where each partition lives. While the topic is missing or a
/// partition has no leader (a new topic's leadership propagating, a retriable CreateTopics
/// error), it asks again with the [`super::retry`] backoff, within its bound.
pub async fn prepare_topic(connection: &Connection, topic: &str, partitions: u32, replication_factor: i16) -> Result<TopicLayout> {
    let mut retry = Retry::new(DEFAULT_POLICY, Instant::now());
    let mut created = false;
    loop {
        let response = metadata(connection, topic).await?;
        let t = response.topics.first().ok_or_else(|| anyhow!("Metadata from {} has no entry for topic {topic}", connection.address()))?;
        // What is still missing, said for the note and for the error at the bound.
        let waiting = match t.error_code {
            error_code::NONE => match layout_of(&response, topic)? {
                Ok(layout) => {
                    if layout.leaders.len() != partitions as usize {
                        eprintln!(
                            "note: topic {topic} exists with {} partitions; the workload asks for {partitions}; using {}",
                            layout.leaders.len(),
                            layout.leaders.len()
                        );
                    }
                    return Ok(layout);
                }
                Err(waiting) => waiting,
            },
            error_code::UNKNOWN_TOPIC_OR_PARTITION if !created => {
                match create_topic(connection, &response, topic, partitions, replication_factor).await? {
                    Ok(()) => {
                        created = true;
                        // Metadata may lag the creation on this broker: ask again at once.
                        continue;
                    }
                    Err(why) => why,
                }
            }
            code if error_code::is_retriable(code) => format!("Metadata at {} for topic {topic}: {}", connection.address(), error_name(code)),
            code => bail!("Metadata at {} for topic {topic}: {}", connection.address(), error_name(code)),
        };
        let Some(delay) = retry.next_delay(Instant::now()) else {
            bail!("gave up after {} retries over {RETRY_BOUND:?}: {waiting}", retry.attempts());
        };
        if retry.attempts() > 1 {
            eprintln!("note: {waiting}; asking again in {delay:?} (retry {})", retry.attempts());
        }
        tokio::time::sleep(delay).await;
    }
}

/// The topic's layout from a Metadata answer that has no topic-level error, or what is missing:
/// a partition without a leader, or whose leader is not in the broker list.
fn layout_of(response: &MetadataResponse, topic: &str) -> Result<Result<TopicLayout, String>> {
    let brokers: BTreeMap<i32, String> = response.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port))).collect();
    let t = &response.topics[0];
    if t.partitions.is_empty() {
        return Ok(Err(format!("Metadata lists no partitions of topic {topic}")));
    }
    let mut leaders = vec![-1; t.partitions.len()];
    let mut missing = None;
    for p in &t.partitions {
        let index = p.partition_index as usize;
        if index >= leaders.len() {
            bail!("Metadata lists partition {index} of {topic}, which has {} partitions", leaders.len());
        }
        if p.error_code != error_code::NONE {
            missing.get_or_insert_with(|| format!("Metadata for partition {topic}-{index}: {}", error_name(p.error_code)));
        } else if p.leader_id.0 < 0 {
            missing.get_or_insert_with(|| format!("partition {topic}-{index} has no leader yet"));
        } else if !brokers.contains_key(&p.leader_id.0) {
            missing.get_or_insert_with(|| format!("partition {topic}-{index} is led by broker {}, which Metadata does not list", p.leader_id.0));
        }
        leaders[index] = p.leader_id.0;
    }
    Ok(match missing {
        Some(why) => Err(why),
        None => Ok(TopicLayout { topic: topic.to_string(), brokers, leaders }),
    })
}

/// The partition leaders as the broker behind `connection` sees them now, for a producer that
/// was told NOT_LEADER_OR_FOLLOWER; what is missing when a partition has no leader.
pub async fn refresh_layout(connection: &Connection, topic: &str) -> Result<Result<TopicLayout, String>> {
    let response = metadata(connection, topic).await?;
    let t = response.topics.first().ok_or_else(|| anyhow!("Metadata from {} has no entry for topic {topic}", connection.address()))?;
    if t.error_code != error_code::NONE {
        return Ok(Err(format!("Metadata at {} for topic {topic}: {}", connection.address(), error_name(t.error_code))));
    }
    layout_of(&response, topic)
}

/// CreateTopics at the controller when it can be reached, else at `bootstrap`; a retriable error
/// comes back as what to say about it, for the caller to ask again.
async fn create_topic(
    bootstrap: &Connection,
    metadata: &MetadataResponse,
    topic: &str,
    partitions: u32,
    replication_factor: i16,
) -> Result<Result<(), String>> {
    // Old brokers take CreateTopics only at the controller; newer ones forward it from any broker.
    let controller = metadata.brokers.iter().find(|b| b.node_id == metadata.controller_id).map(|b| format!("{}:{}", b.host, b.port));
    let other;
    let connection = match controller {
        Some(address) if address != bootstrap.address() => match Connection::connect(&address).await {
            Ok(c) => {
                other = c;
                &other
            }
            Err(_) => bootstrap,
        },
        _ => bootstrap,
    };
    let version = connection.version(ApiKey::CreateTopics)?;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = partitions as i32;
    t.replication_factor = replication_factor;
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![t];
    request.timeout_ms = CREATE_TOPICS_TIMEOUT_MS;
    let response = connection.call(&request, version).await?;
    for result in &response.topics {
        match result.error_code {
            error_code::NONE | error_code::TOPIC_ALREADY_EXISTS => {}
            code if error_code::is_retriable(code) => {
                return Ok(Err(format!("CreateTopics {topic} at {}: {}", connection.address(), error_name(code))));
            }
            code => bail!(
                "CreateTopics {topic} ({partitions} partitions, replication factor {replication_factor}) at {}: {}{}",
                connection.address(),
                error_name(code),
                result.error_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        }
    }
    Ok(Ok(()))
}

/// Offsets of `partitions` (all led by the broker behind `connection`) at `timestamp`
/// ([`OFFSET_LATEST`] or [`OFFSET_EARLIEST`]), by partition index. A retriable error (a broker
/// that has not taken up the leadership Metadata already reports, as Kafka right after
/// CreateTopics answers NOT_LEADER_OR_FOLLOWER) is asked again with the [`super::retry`] backoff.
pub async fn list_offsets(connection: &Connection, topic: &str, partitions: &[i32], timestamp: i64) -> Result<BTreeMap<i32, i64>> {
    let mut retry = Retry::new(DEFAULT_POLICY, Instant::now());
    loop {
        let (partition, code) = match list_offsets_once(connection, topic, partitions, timestamp).await? {
            Ok(offsets) => return Ok(offsets),
            Err(failure) => failure,
        };
        let what = format!("ListOffsets {topic}-{partition} at {}: {}", connection.address(), error_name(code));
        if !error_code::is_retriable(code) {
            bail!("{what}");
        }
        let Some(delay) = retry.next_delay(Instant::now()) else {
            bail!("{what}, still after {} retries over {RETRY_BOUND:?}", retry.attempts());
        };
        eprintln!("note: {what} (retriable); asking again in {delay:?} (retry {})", retry.attempts());
        tokio::time::sleep(delay).await;
    }
}

/// One ListOffsets round: the offsets, or the first partition's error (partition, code).
async fn list_offsets_once(connection: &Connection, topic: &str, partitions: &[i32], timestamp: i64) -> Result<Result<BTreeMap<i32, i64>, (i32, i16)>> {
    let version = connection.version(ApiKey::ListOffsets)?;
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.partitions = partitions
        .iter()
        .map(|&index| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = index;
            p.timestamp = timestamp;
            p
        })
        .collect();
    request.topics = vec![t];
    let response = connection.call(&request, version).await?;
    let mut out = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            if p.error_code != error_code::NONE {
                return Ok(Err((p.partition_index, p.error_code)));
            }
            out.insert(p.partition_index, p.offset);
        }
    }
    for index in partitions {
        if !out.contains_key(index) {
            bail!("ListOffsets at {} left out partition {topic}-{index}", connection.address());
        }
    }
    Ok(Ok(out))
}
