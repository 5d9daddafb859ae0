//! `shardlog topic create|list|describe|alter-config|delete`: topics as `kafka-topics.sh` and
//! `kafka-configs.sh` manage them, over the Kafka protocol (CreateTopics, Metadata,
//! DescribeConfigs, IncrementalAlterConfigs, DeleteTopics).
//!
//! As in `group.rs`, each command gathers its answers from the broker first (the I/O half), then
//! pure functions turn them into text (unit-tested). The text is Kafka's: `describe` prints what
//! `kafka-topics.sh --describe` prints, `describe --configs` what `kafka-configs.sh --describe`
//! prints.

use std::io::{self, Write};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::error_name;
use shardlog_protocol::kafka_protocol;

use super::client::Client;
use super::group::ConnectionArgs;
use super::table::printable;

/// Kafka's `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's config source for a topic's own override.
const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// How long the broker may take to create or delete topics.
const TOPIC_OPERATION_TIMEOUT_MS: i32 = 30_000;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic (like `kafka-topics.sh --create`).
    Create {
        topic: String,
        /// Number of partitions; the broker's num.partitions when left out.
        #[arg(long, value_name = "N")]
        partitions: Option<i32>,
        /// Replicas of each partition; the broker's default.replication.factor when left out.
        #[arg(long, value_name = "N")]
        replication_factor: Option<i16>,
        /// A topic config, `name=value`; repeat for more.
        #[arg(long = "config", value_name = "NAME=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List topic names, one per line (like `kafka-topics.sh --list`).
    List {
        /// Leave out internal topics such as __consumer_offsets.
        #[arg(long)]
        exclude_internal: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Describe topics: partitions, leaders and config overrides (like `kafka-topics.sh
    /// --describe`); with --configs, every config with its value and source (like
    /// `kafka-configs.sh --describe --all`).
    Describe {
        /// Topics to describe; all of them when left out.
        topics: Vec<String>,
        /// Print every config of each topic instead of its partitions.
        #[arg(long)]
        configs: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Change a topic's configs (like `kafka-configs.sh --alter --entity-type topics`).
    AlterConfig {
        topic: String,
        /// Configs to set: `k1=v1,k2=[v1,v2]` (brackets around values that hold commas).
        #[arg(long, value_name = "CONFIGS")]
        add_config: Option<String>,
        /// Configs to return to their defaults: `k1,k2`.
        #[arg(long, value_name = "NAMES")]
        delete_config: Option<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Delete a topic and all its data (like `kafka-topics.sh --delete`).
    Delete {
        topic: String,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

/// Runs a `shardlog topic ...` command and returns the process exit code: 0 on success, 1 on an
/// error (printed to stderr, as Kafka's tools do).
pub fn run_topic(command: TopicCommand) -> i32 {
    let mut out = io::stdout().lock();
    let result = run(command, &mut out).and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "Error while executing topic command : {e:#}");
            1
        }
    }
}

pub fn run(command: TopicCommand, out: &mut dyn Write) -> Result<()> {
    match command {
        TopicCommand::Create { topic, partitions, replication_factor, configs, connection } => {
            let configs = configs.iter().map(|c| parse_assignment(c)).collect::<Result<Vec<_>>>()?;
            let mut client = connection.connect()?;
            create(&mut client, &topic, partitions.unwrap_or(-1), replication_factor.unwrap_or(-1), &configs)?;
            writeln!(out, "Created topic {}.", printable(&topic))?;
        }
        TopicCommand::List { exclude_internal, connection } => {
            let mut client = connection.connect()?;
            let metadata = metadata(&mut client, None)?;
            for name in list_lines(&metadata, exclude_internal) {
                writeln!(out, "{name}")?;
            }
        }
        TopicCommand::Describe { topics, configs, connection } => {
            let mut client = connection.connect()?;
            let metadata = metadata(&mut client, (!topics.is_empty()).then_some(&topics[..]))?;
            check_topics_exist(&metadata, &topics)?;
            let names: Vec<String> = if topics.is_empty() { list_lines(&metadata, false) } else { topics };
            let described = describe_configs(&mut client, &names)?;
            for (name, entries) in names.iter().zip(described) {
                let text = if configs { config_lines(name, &entries) } else { describe_lines(&metadata, name, &entries) };
                out.write_all(text.as_bytes())?;
            }
        }
        TopicCommand::AlterConfig { topic, add_config, delete_config, connection } => {
            let mut ops = Vec::new();
            for (name, value) in parse_config_list(add_config.as_deref().unwrap_or(""))? {
                ops.push((name, OP_SET, Some(value)));
            }
            for name in delete_config.as_deref().unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
                ops.push((name.to_string(), OP_DELETE, None));
            }
            if ops.is_empty() {
                bail!("nothing to change: give --add-config k=v[,k=v] and/or --delete-config k[,k]");
            }
            let mut client = connection.connect()?;
            alter_configs(&mut client, &topic, ops)?;
            writeln!(out, "Completed updating config for topic {}.", printable(&topic))?;
        }
        TopicCommand::Delete { topic, connection } => {
            let mut client = connection.connect()?;
            delete(&mut client, &topic)?;
            writeln!(out, "Deleted topic {}.", printable(&topic))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// I/O: the requests each command sends.

fn refused(what: &str, topic: &str, code: i16, message: Option<&StrBytes>) -> anyhow::Error {
    let detail = message.map(|m| format!(": {}", printable(m.as_str()))).unwrap_or_default();
    anyhow::anyhow!("{what} {} failed with {}{detail}", printable(topic), error_name(code))
}

fn create(client: &mut Client, topic: &str, partitions: i32, replication_factor: i16, configs: &[(String, String)]) -> Result<()> {
    let version = client.version(ApiKey::CreateTopics)?;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = replication_factor;
    for (name, value) in configs {
        let mut c = CreatableTopicConfig::default();
        c.name = StrBytes::from_string(name.clone());
        c.value = Some(StrBytes::from_string(value.clone()));
        t.configs.push(c);
    }
    let mut request = CreateTopicsRequest::default();
    request.topics.push(t);
    request.timeout_ms = TOPIC_OPERATION_TIMEOUT_MS;
    let response = client.send(&request, version)?;
    let result = response.topics.into_iter().find(|r| r.name.0.as_str() == topic).context("the CreateTopics response does not mention the topic")?;
    if result.error_code != 0 {
        return Err(refused("creating topic", topic, result.error_code, result.error_message.as_ref()));
    }
    Ok(())
}

fn metadata(client: &mut Client, topics: Option<&[String]>) -> Result<MetadataResponse> {
    let version = client.version(ApiKey::Metadata)?;
    let mut request = MetadataRequest::default();
    request.topics = topics.map(|names| {
        names
            .iter()
            .map(|n| {
                let mut t = MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(n.clone())));
                t
            })
            .collect()
    });
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    client.send(&request, version)
}

fn check_topics_exist(metadata: &MetadataResponse, topics: &[String]) -> Result<()> {
    for name in topics {
        match metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name)) {
            Some(t) if t.error_code == 0 => {}
            Some(t) => return Err(refused("describing topic", name, t.error_code, None)),
            None => bail!("Topic '{}' does not exist as expected", printable(name)),
        }
    }
    Ok(())
}

fn describe_configs(client: &mut Client, topics: &[String]) -> Result<Vec<Vec<DescribeConfigsResourceResult>>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let version = client.version(ApiKey::DescribeConfigs)?;
    let mut request = DescribeConfigsRequest::default();
    for name in topics {
        let mut r = DescribeConfigsResource::default();
        r.resource_type = RESOURCE_TOPIC;
        r.resource_name = StrBytes::from_string(name.clone());
        r.configuration_keys = None;
        request.resources.push(r);
    }
    let response = client.send(&request, version)?;
    topics
        .iter()
        .map(|name| {
            let result = response.results.iter().find(|r| r.resource_name.as_str() == name).context("the DescribeConfigs response does not mention a topic")?;
            if result.error_code != 0 {
                return Err(refused("describing the configs of topic", name, result.error_code, result.error_message.as_ref()));
            }
            Ok(result.configs.clone())
        })
        .collect()
}

fn alter_configs(client: &mut Client, topic: &str, ops: Vec<(String, i8, Option<String>)>) -> Result<()> {
    let version = client.version(ApiKey::IncrementalAlterConfigs)?;
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_string(topic.to_string());
    for (name, op, value) in ops {
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(name);
        c.config_operation = op;
        c.value = value.map(StrBytes::from_string);
        resource.configs.push(c);
    }
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources.push(resource);
    let response = client.send(&request, version)?;
    let result = response.responses.first().context("the IncrementalAlterConfigs response is empty")?;
    if result.error_code != 0 {
        return Err(refused("altering the configs of topic", topic, result.error_code, result.error_message.as_ref()));
    }
    Ok(())
}

fn delete(client: &mut Client, topic: &str) -> Result<()> {
    let version = client.version(ApiKey::DeleteTopics)?;
    let mut request = DeleteTopicsRequest::default();
    let name = TopicName(StrBytes::from_string(topic.to_string()));
    if version >= 6 {
        let mut state = DeleteTopicState::default();
        state.name = Some(name);
        request.topics.push(state);
    } else {
        request.topic_names.push(name);
    }
    request.timeout_ms = TOPIC_OPERATION_TIMEOUT_MS;
    let response = client.send(&request, version)?;
    let result = response.responses.first().context("the DeleteTopics response is empty")?;
    if result.error_code != 0 {
        return Err(refused("deleting topic", topic, result.error_code, result.error_message.as_ref()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pure: arguments in, text out.

/// `name=value`.
fn parse_assignment(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_string(), value.trim().to_string())),
        _ => bail!("config {text:?} is not NAME=VALUE"),
    }
}

/// kafka-configs.sh's `--add-config` syntax: `k1=v1,k2=[v1,v2]`.
fn parse_config_list(text: &str) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (name, value) = parse_assignment(item)?;
            let value = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).map(str::to_string).unwrap_or(value);
            Ok((name, value))
        })
        .collect()
}

fn topic_name_of(t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic) -> String {
    t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()
}

/// Topic names, sorted, as `kafka-topics.sh --list` prints them.
fn list_lines(metadata: &MetadataResponse, exclude_internal: bool) -> Vec<String> {
    let mut names: Vec<String> = metadata.topics.iter().filter(|t| t.error_code == 0 && !(exclude_internal && t.is_internal)).map(topic_name_of).collect();
    names.sort();
    names.into_iter().map(|n| printable(&n)).collect()
}

/// The topic's own overrides, `k=v,k=v`, as `kafka-topics.sh --describe` shows them.
fn overrides(entries: &[DescribeConfigsResourceResult]) -> String {
    entries
        .iter()
        .filter(|e| e.config_source == SOURCE_DYNAMIC_TOPIC_CONFIG)
        .map(|e| format!("{}={}", printable(e.name.as_str()), printable(e.value.as_ref().map(|v| v.as_str()).unwrap_or("null"))))
        .collect::<Vec<_>>()
        .join(",")
}

fn ids(brokers: &[kafka_protocol::messages::BrokerId]) -> String {
    brokers.iter().map(|b| b.0.to_string()).collect::<Vec<_>>().join(",")
}

/// `kafka-topics.sh --describe`: a summary line, then one line per partition.
fn describe_lines(metadata: &MetadataResponse, name: &str, entries: &[DescribeConfigsResourceResult]) -> String {
    let Some(topic) = metadata.topics.iter().find(|t| topic_name_of(t) == name) else { return String::new() };
    let mut partitions: Vec<_> = topic.partitions.iter().collect();
    partitions.sort_by_key(|p| p.partition_index);
    let replication = partitions.first().map(|p| p.replica_nodes.len()).unwrap_or(0);
    let id = crate::metadata::base64_uuid(topic.topic_id);
    let name = printable(name);
    let mut out =
        format!("Topic: {name}\tTopicId: {id}\tPartitionCount: {}\tReplicationFactor: {replication}\tConfigs: {}\n", partitions.len(), overrides(entries));
    for p in partitions {
        out.push_str(&format!(
            "\tTopic: {name}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\n",
            p.partition_index,
            if p.leader_id.0 < 0 { "none".to_string() } else { p.leader_id.0.to_string() },
            ids(&p.replica_nodes),
            ids(&p.isr_nodes)
        ));
    }
    out
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// `kafka-configs.sh --describe --all`: every config, its value, and where it comes from.
fn config_lines(name: &str, entries: &[DescribeConfigsResourceResult]) -> String {
    let mut out = format!("All configs for topic {} are:\n", printable(name));
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    for e in sorted {
        let value = printable(e.value.as_ref().map(|v| v.as_str()).unwrap_or("null"));
        out.push_str(&format!("  {}={value} sensitive={} synonyms={{}} source={}\n", printable(e.name.as_str()), e.is_sensitive, source_name(e.config_source)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};
    use kafka_protocol::messages::BrokerId;

    fn config(name: &str, value: &str, source: i8) -> DescribeConfigsResourceResult {
        let mut e = DescribeConfigsResourceResult::default();
        e.name = StrBytes::from_string(name.to_string());
        e.value = Some(StrBytes::from_string(value.to_string()));
        e.config_source = source;
        e
    }

    fn metadata() -> MetadataResponse {
        let mut topic = MetadataResponseTopic::default();
        topic.name = Some(TopicName(StrBytes::from_static_str("orders")));
        topic.topic_id = uuid::Uuid::nil();
        for i in [1, 0] {
            let mut p = MetadataResponsePartition::default();
            p.partition_index = i;
            p.leader_id = BrokerId(1);
            p.replica_nodes = vec![BrokerId(1)];
            p.isr_nodes = vec![BrokerId(1)];
            topic.partitions.push(p);
        }
        let mut internal = MetadataResponseTopic::default();
        internal.name = Some(TopicName(StrBytes::from_static_str("__consumer_offsets")));
        internal.is_internal = true;
        let mut m = MetadataResponse::default();
        m.topics = vec![topic, internal];
        m
    }

    #[test]
    fn describe_prints_what_kafka_topics_prints() {
        let entries = [config("retention.ms", "1000", 1), config("segment.bytes", "1073741824", 5)];
        assert_eq!(
            describe_lines(&metadata(), "orders", &entries),
            "Topic: orders\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: retention.ms=1000\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\n\
             \tTopic: orders\tPartition: 1\tLeader: 1\tReplicas: 1\tIsr: 1\n"
        );
    }

    #[test]
    fn list_sorts_and_can_leave_out_internal_topics() {
        assert_eq!(list_lines(&metadata(), false), ["__consumer_offsets", "orders"]);
        assert_eq!(list_lines(&metadata(), true), ["orders"]);
    }

    #[test]
    fn config_lists_use_kafka_configs_syntax() {
        assert_eq!(
            parse_config_list("retention.ms=1000, cleanup.policy=[compact,delete]").unwrap(),
            [("retention.ms".to_string(), "1000".to_string()), ("cleanup.policy".to_string(), "compact,delete".to_string())]
        );
        assert!(parse_config_list("retention.ms").is_err());
        assert!(parse_config_list("").unwrap().is_empty());
    }

    #[test]
    fn all_configs_with_sources() {
        let text = config_lines("orders", &[config("segment.bytes", "1073741824", 5), config("retention.ms", "1000", 1)]);
        assert_eq!(
            text,
            "All configs for topic orders are:\n  retention.ms=1000 sensitive=false synonyms={} source=DYNAMIC_TOPIC_CONFIG\n  \
             segment.bytes=1073741824 sensitive=false synonyms={} source=DEFAULT_CONFIG\n"
        );
    }
}
