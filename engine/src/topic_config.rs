//! Topic and broker configs with Kafka's names, defaults, validation and sources.
//!
//! A topic config's value comes from the first of these that has it (Kafka's order):
//! the topic's own override (DYNAMIC_TOPIC_CONFIG), a dynamic config of this broker
//! (DYNAMIC_BROKER_CONFIG), the cluster-wide dynamic broker default
//! (DYNAMIC_DEFAULT_BROKER_CONFIG), the broker's properties file (STATIC_BROKER_CONFIG), and
//! Kafka's default (DEFAULT_CONFIG). At each broker level a topic config is set through its
//! broker synonyms (`retention.ms` through `log.retention.ms`, `log.retention.minutes` or
//! `log.retention.hours`, in that order).
//!
//! Topic overrides and dynamic broker configs live in the cluster metadata, so they persist and
//! reach every shard with it; `resolve` turns them into the values the storage engine uses.

use std::collections::BTreeMap;

use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;
use crate::topic_config_table::check;
// The table lives in a leaf module that `config` uses too; its names stay reachable from here.
pub use crate::topic_config_table::{
    broker_synonym, topic_def, validate_broker_static, validate_topic_config, validate_topic_configs, ConfigType, Kind, TopicConfigDef, CLEANUP_COMPACT,
    CLEANUP_DELETE, CONFIG_VALUE_BYTES_MAX, TOPIC_CONFIGS,
};

/// Kafka's `ConfigResource.Type` values on the wire.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
pub const RESOURCE_CLIENT_METRICS: i8 = 16;
pub const RESOURCE_GROUP: i8 = 32;

/// Kafka's `DescribeConfigsResponse.ConfigSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
    /// A group's own config (DYNAMIC_GROUP_CONFIG).
    Group = 8,
}

/// Broker configs that DescribeConfigs reports and AlterConfigs refuses to change (they need a
/// restart), besides the read-only synonyms of topic configs.
const BROKER_STATIC_NAMES: &[&str] = &[
    "node.id",
    "broker.id",
    "log.dirs",
    "num.partitions",
    "auto.create.topics.enable",
    "socket.request.max.bytes",
    "log.retention.check.interval.ms",
    "log.flush.interval.ms",
    "offsets.topic.num.partitions",
];

/// Broker configs that Kafka 4 changes at run time (its `DynamicBrokerConfig.AllDynamicConfigs`,
/// less the topic configs' synonyms above and the listeners themselves) and shardlog has no
/// use for: AlterConfigs stores them and DescribeConfigs reports them, as Kafka's tools and
/// clients expect, but they change nothing here. The listener ones may also carry a
/// `listener.name.<listener>.` prefix, and the keystore and truststore ones must (as in Kafka).
const KAFKA_DYNAMIC_BROKER_CONFIGS_UNUSED: &[&str] = &[
    // The log cleaner and thread pools.
    "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
    "num.io.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "background.threads",
    "metric.reporters",
    "config.providers",
    // Connections.
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    // Producer state.
    "producer.id.expiration.ms",
    "transaction.partition.verification.enable",
    // Tiered storage.
    "remote.log.index.file.cache.total.size.bytes",
    "remote.fetch.max.wait.ms",
    "remote.log.manager.copy.max.bytes.per.second",
    "remote.log.manager.fetch.max.bytes.per.second",
    "remote.list.offsets.request.timeout.ms",
    "remote.log.manager.copier.thread.pool.size",
    "remote.log.manager.expiration.thread.pool.size",
    "remote.log.reader.threads",
    // Moving replicas between a broker's log directories (AlterReplicaLogDirs).
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// Kafka's replication quotas (KIP-73): bytes per second, per broker, set dynamically on one
/// broker (as `kafka-reassign-partitions.sh --throttle` does); see
/// `shard::replication_quota`. Unset, or Long.MAX_VALUE (Kafka's default), bounds nothing.
pub const REPLICATION_THROTTLED_RATES: &[(&str, &str)] = &[
    (
        "leader.replication.throttled.rate",
        "Bytes per second this broker sends, as a leader, to followers of the replicas its topics' leader.replication.throttled.replicas name, while they are out of the ISR.",
    ),
    (
        "follower.replication.throttled.rate",
        "Bytes per second this broker fetches, as a follower, for the replicas its topics' follower.replication.throttled.replicas name, while they are out of the ISR.",
    ),
];

/// Kafka's dynamic listener configs (`DynamicListenerConfig`), with or without a listener prefix.
const KAFKA_DYNAMIC_LISTENER_CONFIGS_UNUSED: &[&str] = &[
    "principal.builder.class",
    "ssl.protocol",
    "ssl.provider",
    "ssl.cipher.suites",
    "ssl.enabled.protocols",
    "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm",
    "ssl.endpoint.identification.algorithm",
    "ssl.secure.random.implementation",
    "ssl.client.auth",
    "ssl.engine.factory.class",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.jaas.config",
    "sasl.enabled.mechanisms",
    "sasl.kerberos.service.name",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.ticket.renew.window.factor",
    "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal.to.local.rules",
    "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter",
    "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.buffer.seconds",
    "max.connections",
    "max.connection.creation.rate",
    "num.network.threads",
];

/// Kafka's keystore and truststore configs, dynamic only with a listener prefix.
const KAFKA_DYNAMIC_LISTENER_ONLY_CONFIGS_UNUSED: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.keystore.key",
    "ssl.keystore.certificate.chain",
    "ssl.truststore.certificates",
];

/// What DescribeConfigs says of the configs in the tables above.
const UNUSED_BROKER_CONFIG_DOC: &str =
    "Accepted and stored for compatibility with Kafka; it has no effect on shardlog, which reads its listener, TLS and SASL settings from its properties file at start.";

/// Whether `name` is a dynamic broker config of Kafka's that shardlog stores without using it.
pub fn broker_config_without_effect(name: &str) -> bool {
    if KAFKA_DYNAMIC_BROKER_CONFIGS_UNUSED.contains(&name) || KAFKA_DYNAMIC_LISTENER_CONFIGS_UNUSED.contains(&name) {
        return true;
    }
    // listener.name.<listener>.<config>, or .<mechanism>.<config> for the SASL login ones.
    let Some(rest) = name.strip_prefix("listener.name.") else { return false };
    let Some((listener, key)) = rest.split_once('.') else { return false };
    let key = match key.split_once('.') {
        Some((mechanism, k)) if mechanism.starts_with("scram-") || ["plain", "gssapi", "oauthbearer"].contains(&mechanism) => k,
        _ => key,
    };
    !listener.is_empty() && (KAFKA_DYNAMIC_LISTENER_CONFIGS_UNUSED.contains(&key) || KAFKA_DYNAMIC_LISTENER_ONLY_CONFIGS_UNUSED.contains(&key))
}

/// Defaults of `BROKER_STATIC_NAMES`, as `BrokerConfig::default()` has them.
fn static_default(name: &str) -> Option<String> {
    let d = BrokerConfig::default();
    Some(match name {
        "node.id" | "broker.id" => d.node_id.to_string(),
        "log.dirs" => String::from("./data"),
        "num.partitions" => d.num_partitions.to_string(),
        "auto.create.topics.enable" => d.auto_create_topics_enable.to_string(),
        "socket.request.max.bytes" => d.socket_request_max_bytes.to_string(),
        "log.retention.check.interval.ms" => RETENTION_CHECK_INTERVAL_MS_DEFAULT.to_string(),
        "log.flush.interval.ms" => d.log_flush_interval_ms.to_string(),
        "offsets.topic.num.partitions" => d.offsets_topic_partitions.to_string(),
        _ => return None,
    })
}

/// `log.retention.check.interval.ms`: Kafka's default is 5 minutes.
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 300_000;

/// Whether AlterConfigs may change this broker config at run time.
/// As in Kafka, only a topic config's first synonym is (`DynamicLogConfig`), and none that
/// shardlog reads only at start.
pub fn broker_dynamic(name: &str) -> bool {
    REPLICATION_THROTTLED_RATES.iter().any(|(n, _)| *n == name)
        || (!BROKER_STATIC_NAMES.contains(&name) && broker_synonym(name).is_some_and(|(def, _)| def.synonyms[0].0 == name))
}

/// Validates a broker config for a dynamic change: unknown and read-only names are refused
/// with INVALID_REQUEST's message, bad values with INVALID_CONFIG's.
pub fn validate_broker_dynamic(name: &str, value: &str) -> Result<(), (bool, String)> {
    if BROKER_STATIC_NAMES.contains(&name) {
        return Err((true, format!("Cannot update these configs dynamically: Set({name})")));
    }
    if KAFKA_DYNAMIC_LISTENER_ONLY_CONFIGS_UNUSED.contains(&name) {
        return Err((true, format!("These security configs can be dynamically updated only per-listener using the listener prefix: Set({name})")));
    }
    if REPLICATION_THROTTLED_RATES.iter().any(|(n, _)| *n == name) {
        return match value.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(()),
            _ => Err((false, format!("Invalid value {value} for configuration {name}: a number of bytes per second, at least 0, is expected"))),
        };
    }
    if broker_config_without_effect(name) {
        if value.trim().len() > CONFIG_VALUE_BYTES_MAX {
            return Err((
                false,
                format!("Invalid value for configuration {name}: {} bytes is longer than the {CONFIG_VALUE_BYTES_MAX} accepted", value.trim().len()),
            ));
        }
        return Ok(());
    }
    let Some((def, factor)) = broker_synonym(name) else {
        if static_default(name).is_some() {
            return Err((true, format!("Cannot update these configs dynamically: Set({name})")));
        }
        return Err((false, format!("Unknown broker config name: {name}: Kafka defines no dynamic broker config by that name")));
    };
    if !broker_dynamic(name) {
        return Err((true, format!("Cannot update these configs dynamically: Set({name})")));
    }
    check(name, value, def.kind, factor).map_err(|m| (false, m))
}

/// One config with its value, where it came from, and (for DescribeConfigs with synonyms) every
/// level that sets it, most specific first.
#[derive(Debug, Clone, PartialEq)]
pub struct DescribedConfig {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub config_type: ConfigType,
    pub doc: &'static str,
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// The broker levels, most specific first: (source, properties).
fn broker_levels<'a>(config: &'a BrokerConfig, meta: &'a ClusterMetadata) -> [(ConfigSource, &'a BTreeMap<String, String>); 3] {
    [
        (ConfigSource::DynamicBroker, &meta.broker_configs),
        (ConfigSource::DynamicDefaultBroker, &meta.broker_default_configs),
        (ConfigSource::StaticBroker, &config.properties),
    ]
}

/// Every broker level that sets `def`, as (synonym name, value in the synonym's unit, source,
/// value in the topic config's unit), most specific first; then the default.
fn broker_chain(def: &TopicConfigDef, config: &BrokerConfig, meta: &ClusterMetadata) -> Vec<(String, String, ConfigSource, String)> {
    let mut out = Vec::new();
    for (source, props) in broker_levels(config, meta) {
        for &(synonym, factor) in def.synonyms {
            if let Some(v) = props.get(synonym) {
                out.push((synonym.to_string(), v.trim().to_string(), source, scale(v.trim(), factor)));
            }
        }
    }
    let (default_name, default_value) = match def.synonyms.last() {
        Some(&(synonym, factor)) if factor > 1 => (synonym.to_string(), scale_down(def.default, factor)),
        Some(&(synonym, _)) => (synonym.to_string(), def.default.to_string()),
        None => (def.name.to_string(), def.default.to_string()),
    };
    out.push((default_name, default_value, ConfigSource::Default, def.default.to_string()));
    out
}

fn scale(value: &str, factor: i64) -> String {
    if factor == 1 {
        return value.to_string();
    }
    value.parse::<i64>().map(|v| v.saturating_mul(factor).to_string()).unwrap_or_else(|_| value.to_string())
}

fn scale_down(value: &str, factor: i64) -> String {
    value.parse::<i64>().map(|v| (v / factor).to_string()).unwrap_or_else(|_| value.to_string())
}

/// The effective value of every topic config of `topic`, for DescribeConfigs.
pub fn describe_topic(config: &BrokerConfig, meta: &ClusterMetadata, overrides: &BTreeMap<String, String>) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            let chain = broker_chain(def, config, meta);
            synonyms.extend(chain.iter().map(|(n, v, s, _)| (n.clone(), v.clone(), *s)));
            let (value, source) = match overrides.get(def.name) {
                Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                None => (chain[0].3.clone(), chain[0].2),
            };
            DescribedConfig {
                name: def.name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                config_type: def.kind.config_type(),
                doc: def.doc,
                synonyms,
            }
        })
        .collect()
}

/// The broker's configs, for DescribeConfigs on a BROKER resource: the synonyms of topic
/// configs (dynamic where Kafka makes them dynamic), then a few static ones.
pub fn describe_broker(config: &BrokerConfig, meta: &ClusterMetadata) -> Vec<DescribedConfig> {
    let mut out = Vec::new();
    // A synonym that is also a static broker config is described once, as the static one.
    let mut seen: std::collections::BTreeSet<&str> = BROKER_STATIC_NAMES.iter().copied().collect();
    for def in TOPIC_CONFIGS {
        for &(synonym, factor) in def.synonyms {
            if !seen.insert(synonym) {
                continue;
            }
            let mut synonyms: Vec<(String, String, ConfigSource)> = Vec::new();
            for (source, props) in broker_levels(config, meta) {
                if let Some(v) = props.get(synonym) {
                    synonyms.push((synonym.to_string(), v.trim().to_string(), source));
                }
            }
            let default = if factor > 1 { scale_down(def.default, factor) } else { def.default.to_string() };
            synonyms.push((synonym.to_string(), default, ConfigSource::Default));
            let (_, value, source) = synonyms[0].clone();
            out.push(DescribedConfig {
                name: synonym.to_string(),
                value: Some(value),
                source,
                read_only: !broker_dynamic(synonym),
                config_type: if factor > 1 { ConfigType::Int } else { def.kind.config_type() },
                doc: def.doc,
                synonyms,
            });
        }
    }
    for &(name, doc) in REPLICATION_THROTTLED_RATES {
        // Set per broker only, as Kafka reads it.
        let mut synonyms: Vec<(String, String, ConfigSource)> = Vec::new();
        if let Some((source, props)) = broker_levels(config, meta).into_iter().next() {
            if let Some(v) = props.get(name) {
                synonyms.push((name.to_string(), v.trim().to_string(), source));
            }
        }
        synonyms.push((name.to_string(), i64::MAX.to_string(), ConfigSource::Default));
        let (_, value, source) = synonyms[0].clone();
        out.push(DescribedConfig { name: name.to_string(), value: Some(value), source, read_only: false, config_type: ConfigType::Long, doc, synonyms });
    }
    // Kafka's dynamic configs that are stored here without effect, where one is set.
    let mut unused: BTreeMap<&str, Vec<(String, String, ConfigSource)>> = BTreeMap::new();
    for (source, props) in broker_levels(config, meta).into_iter().take(2) {
        for (k, v) in props.iter().filter(|(k, _)| broker_config_without_effect(k)) {
            unused.entry(k.as_str()).or_default().push((k.clone(), v.clone(), source));
        }
    }
    for (name, synonyms) in unused {
        let (_, value, source) = synonyms[0].clone();
        out.push(DescribedConfig {
            name: name.to_string(),
            value: Some(value),
            source,
            read_only: false,
            config_type: ConfigType::String,
            doc: UNUSED_BROKER_CONFIG_DOC,
            synonyms,
        });
    }
    for &name in BROKER_STATIC_NAMES {
        let (value, source) = match config.properties.get(name) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (static_default(name).unwrap_or_default(), ConfigSource::Default),
        };
        let value = match name {
            "node.id" | "broker.id" => config.node_id.to_string(),
            "log.dirs" => config.log_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","),
            _ => value,
        };
        out.push(DescribedConfig {
            name: name.to_string(),
            synonyms: vec![(name.to_string(), value.clone(), source)],
            value: Some(value),
            source,
            read_only: true,
            config_type: ConfigType::String,
            doc: "",
        });
    }
    out
}

/// The values the storage engine uses for one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub cleanup_delete: bool,
    pub cleanup_compact: bool,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub index_interval_bytes: u64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub max_compaction_lag_ms: i64,
    /// `min.insync.replicas`: an acks=all produce to a partition whose ISR is smaller is
    /// refused with NOT_ENOUGH_REPLICAS.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: the controller may elect a replica outside the ISR
    /// when no ISR member is live.
    pub unclean_leader_election_enable: bool,
}

/// The effective value of one topic config, as a string.
fn effective(def: &TopicConfigDef, config: &BrokerConfig, meta: &ClusterMetadata, overrides: &BTreeMap<String, String>) -> String {
    match overrides.get(def.name) {
        Some(v) => v.trim().to_string(),
        None => broker_chain(def, config, meta).swap_remove(0).3,
    }
}

/// Resolves a topic's configs. Values were validated when they were set; should one still not
/// parse (a hand-edited metadata file), Kafka's default is used and a warning logged.
pub fn resolve(config: &BrokerConfig, meta: &ClusterMetadata, overrides: &BTreeMap<String, String>) -> ResolvedTopicConfig {
    let get = |name: &str| -> String {
        let def = topic_def(name).expect("known config");
        let value = effective(def, config, meta, overrides);
        match check(name, &value, def.kind, 1) {
            Ok(()) => value,
            Err(why) => {
                tracing::warn!(config = name, error = %why, "using Kafka's default instead");
                def.default.to_string()
            }
        }
    };
    let long = |name: &str| get(name).parse::<i64>().unwrap_or(0);
    let policy = get("cleanup.policy");
    ResolvedTopicConfig {
        retention_ms: long("retention.ms"),
        retention_bytes: long("retention.bytes"),
        segment_bytes: long("segment.bytes").max(14) as u64,
        segment_ms: long("segment.ms").max(1) as u64,
        cleanup_delete: policy.split(',').any(|p| p.trim() == CLEANUP_DELETE),
        cleanup_compact: policy.split(',').any(|p| p.trim() == CLEANUP_COMPACT),
        max_message_bytes: long("max.message.bytes").max(0) as usize,
        log_append_time: get("message.timestamp.type") == "LogAppendTime",
        index_interval_bytes: long("index.interval.bytes").max(0) as u64,
        delete_retention_ms: long("delete.retention.ms"),
        min_compaction_lag_ms: long("min.compaction.lag.ms"),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
        max_compaction_lag_ms: long("max.compaction.lag.ms"),
        min_insync_replicas: i32::try_from(long("min.insync.replicas")).unwrap_or(i32::MAX).max(1),
        unclean_leader_election_enable: get("unclean.leader.election.enable") == "true",
    }
}

/// `log.retention.check.interval.ms` from the properties file.
pub fn retention_check_interval_ms(config: &BrokerConfig) -> u64 {
    config.properties.get("log.retention.check.interval.ms").and_then(|v| v.trim().parse().ok()).unwrap_or(RETENTION_CHECK_INTERVAL_MS_DEFAULT)
}

/// IncrementalAlterConfigs operations.
pub const OP_SET: i8 = 0;
pub const OP_DELETE: i8 = 1;
pub const OP_APPEND: i8 = 2;
pub const OP_SUBTRACT: i8 = 3;

/// Applies IncrementalAlterConfigs operations to `current`. APPEND and SUBTRACT work on list
/// configs only, as in Kafka; the errors are INVALID_CONFIG (false) or INVALID_REQUEST (true).
pub fn apply_incremental(
    current: &mut BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
    kind_of: impl Fn(&str) -> Option<Kind>,
) -> Result<(), (bool, String)> {
    for (name, op, value) in ops {
        if *op != OP_DELETE && value.is_none() {
            return Err((true, format!("Null value not supported for : {name}")));
        }
        match *op {
            OP_SET => {
                current.insert(name.clone(), value.clone().expect("checked above"));
            }
            OP_DELETE => {
                current.remove(name);
            }
            OP_APPEND | OP_SUBTRACT => {
                let Some(Kind::List(_)) = kind_of(name) else {
                    return Err((true, format!("Config value append/subtract is not allowed for config key {name} which is not a list")));
                };
                let value = value.clone().expect("checked above");
                let default = topic_def(name).or_else(|| broker_synonym(name).map(|(d, _)| d)).map(|d| d.default).unwrap_or("");
                let base = current.get(name).cloned().unwrap_or_else(|| default.to_string());
                let mut items: Vec<String> = base.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                for v in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == OP_APPEND {
                        if !items.iter().any(|i| i == v) {
                            items.push(v.to_string());
                        }
                    } else {
                        items.retain(|i| i != v);
                    }
                }
                current.insert(name.clone(), items.join(","));
            }
            other => return Err((true, format!("Unknown config operation {other} for {name}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_config_table::HOUR_MS;

    fn broker(props: &[(&str, &str)]) -> BrokerConfig {
        let map: BTreeMap<String, String> = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BrokerConfig::from_properties(&map).unwrap()
    }

    #[test]
    fn validation_follows_kafka() {
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        assert_eq!(validate_topic_config("retention.ms", "-2").unwrap_err(), "Invalid value -2 for configuration retention.ms: Value must be at least -1");
        assert!(validate_topic_config("retention.ms", "abc").is_err());
        assert!(validate_topic_config("segment.bytes", "13").is_err());
        assert!(validate_topic_config("segment.bytes", "3000000000").is_err(), "INT overflow");
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("cleanup.policy", "delete,delete").is_err());
        assert!(validate_topic_config("retention.ms", &format!("{}1", "0".repeat(CONFIG_VALUE_BYTES_MAX))).is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert_eq!(validate_topic_config("no.such", "1").unwrap_err(), "Unknown topic config name: no.such");
        let conflict = BTreeMap::from([("min.compaction.lag.ms".to_string(), "10".to_string()), ("max.compaction.lag.ms".to_string(), "5".to_string())]);
        assert!(validate_topic_configs(&conflict).is_err());
    }

    #[test]
    fn sources_in_kafkas_order() {
        let config = broker(&[("log.retention.hours", "24"), ("log.segment.bytes", "1048576")]);
        let mut meta = ClusterMetadata::new("c".into());
        let none = BTreeMap::new();
        let r = resolve(&config, &meta, &none);
        assert_eq!(r.retention_ms, 24 * HOUR_MS);
        assert_eq!(r.segment_bytes, 1 << 20);
        let d = describe_topic(&config, &meta, &none);
        let retention = d.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!((retention.value.as_deref(), retention.source), (Some("86400000"), ConfigSource::StaticBroker));
        assert_eq!(retention.synonyms.last().unwrap(), &("log.retention.hours".to_string(), "168".to_string(), ConfigSource::Default));

        meta.broker_default_configs.insert("log.retention.ms".into(), "5000".into());
        assert_eq!(resolve(&config, &meta, &none).retention_ms, 5000);
        meta.broker_configs.insert("log.retention.ms".into(), "6000".into());
        assert_eq!(resolve(&config, &meta, &none).retention_ms, 6000);
        let topic = BTreeMap::from([("retention.ms".to_string(), "7000".to_string())]);
        assert_eq!(resolve(&config, &meta, &topic).retention_ms, 7000);
        let d = describe_topic(&config, &meta, &topic);
        let retention = d.iter().find(|c| c.name == "retention.ms").unwrap();
        let sources: Vec<ConfigSource> = retention.synonyms.iter().map(|s| s.2).collect();
        assert_eq!(
            sources,
            [ConfigSource::DynamicTopic, ConfigSource::DynamicBroker, ConfigSource::DynamicDefaultBroker, ConfigSource::StaticBroker, ConfigSource::Default]
        );
        let unset = d.iter().find(|c| c.name == "delete.retention.ms").unwrap();
        assert_eq!((unset.value.as_deref(), unset.source), (Some("86400000"), ConfigSource::Default));
    }

    #[test]
    fn min_insync_replicas_resolves_from_the_topic_then_the_broker_levels() {
        let none = BTreeMap::new();
        let mut meta = ClusterMetadata::new("c".into());
        assert_eq!(resolve(&broker(&[]), &meta, &none).min_insync_replicas, 1, "Kafka's default");
        let config = broker(&[("min.insync.replicas", "2")]);
        assert_eq!(resolve(&config, &meta, &none).min_insync_replicas, 2);
        meta.broker_default_configs.insert("min.insync.replicas".into(), "3".into());
        assert_eq!(resolve(&config, &meta, &none).min_insync_replicas, 3);
        let topic = BTreeMap::from([("min.insync.replicas".to_string(), "1".to_string())]);
        assert_eq!(resolve(&config, &meta, &topic).min_insync_replicas, 1);
        assert!(topic_def("min.insync.replicas").unwrap().applied);
        assert!(validate_topic_config("min.insync.replicas", "0").is_err());
    }

    #[test]
    fn broker_dynamic_configs() {
        assert!(validate_broker_dynamic("log.retention.ms", "1000").is_ok());
        assert!(!validate_broker_dynamic("log.retention.ms", "-5").unwrap_err().0);
        assert!(validate_broker_dynamic("log.retention.hours", "1").unwrap_err().0);
        assert!(validate_broker_dynamic("log.dirs", "/x").unwrap_err().0);
        assert!(validate_broker_static("log.retention.hours", "x").is_err());
    }

    #[test]
    fn synonyms_are_kafkas() {
        // Kafka's ServerTopicConfigSynonyms, for the topic configs shardlog knows.
        let kafka: &[(&str, &[&str])] = &[
            ("cleanup.policy", &["log.cleanup.policy"]),
            ("compression.type", &["compression.type"]),
            ("delete.retention.ms", &["log.cleaner.delete.retention.ms"]),
            ("flush.messages", &["log.flush.interval.messages"]),
            ("flush.ms", &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"]),
            ("index.interval.bytes", &["log.index.interval.bytes"]),
            ("max.compaction.lag.ms", &["log.cleaner.max.compaction.lag.ms"]),
            ("max.message.bytes", &["message.max.bytes"]),
            ("message.timestamp.type", &["log.message.timestamp.type"]),
            ("min.cleanable.dirty.ratio", &["log.cleaner.min.cleanable.ratio"]),
            ("min.compaction.lag.ms", &["log.cleaner.min.compaction.lag.ms"]),
            ("min.insync.replicas", &["min.insync.replicas"]),
            ("retention.bytes", &["log.retention.bytes"]),
            ("retention.ms", &["log.retention.ms", "log.retention.minutes", "log.retention.hours"]),
            ("segment.bytes", &["log.segment.bytes"]),
            ("segment.index.bytes", &["log.index.size.max.bytes"]),
            ("segment.ms", &["log.roll.ms", "log.roll.hours"]),
            ("unclean.leader.election.enable", &["unclean.leader.election.enable"]),
        ];
        for (name, synonyms) in kafka {
            let ours: Vec<&str> = topic_def(name).unwrap().synonyms.iter().map(|s| s.0).collect();
            assert_eq!(&ours, synonyms, "{name}");
        }
        // flush.ms falls back to log.flush.interval.ms from the properties file, as in Kafka.
        let config = broker(&[("log.flush.interval.ms", "7")]);
        let meta = ClusterMetadata::new("c".into());
        let d = describe_topic(&config, &meta, &BTreeMap::new());
        let flush = d.iter().find(|c| c.name == "flush.ms").unwrap();
        assert_eq!((flush.value.as_deref(), flush.source), (Some("7"), ConfigSource::StaticBroker));
        assert_eq!(flush.synonyms[0], ("log.flush.interval.ms".to_string(), "7".to_string(), ConfigSource::StaticBroker));
        // Only a first synonym changes at run time; log.flush.interval.ms is read at start here.
        assert!(validate_broker_dynamic("log.flush.interval.ms", "5").unwrap_err().0);
        assert!(validate_broker_dynamic("log.flush.scheduler.interval.ms", "5").unwrap_err().0);
        let b = describe_broker(&config, &meta);
        assert_eq!(b.iter().filter(|c| c.name == "log.flush.interval.ms").count(), 1, "described once");
    }

    #[test]
    fn kafkas_other_configs_are_accepted_without_effect_and_unknown_ones_refused() {
        assert!(validate_topic_config("file.delete.delay.ms", "1000").is_ok());
        assert!(validate_topic_config("file.delete.delay.ms", "-1").is_err());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "0:1,1:2").is_ok());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "*").is_ok());
        assert!(validate_topic_config("leader.replication.throttled.replicas", "zero").is_err());
        assert!(!topic_def("file.delete.delay.ms").unwrap().applied);
        for name in [
            "sasl.kerberos.min.time.before.relogin",
            "listener.name.sasl_ssl.ssl.client.auth",
            "listener.name.l.scram-sha-256.sasl.jaas.config",
            "num.io.threads",
        ] {
            assert!(validate_broker_dynamic(name, "60000").is_ok(), "{name}");
        }
        // As Kafka: keystores change only per listener; configs read at start are refused as such.
        assert!(validate_broker_dynamic("ssl.keystore.location", "/k").unwrap_err().0);
        assert!(validate_broker_dynamic("listener.name.ssl.ssl.keystore.location", "/k").is_ok());
        let (request, message) = validate_broker_dynamic("no.such.broker.config", "1").unwrap_err();
        assert!(!request && message.contains("no.such.broker.config"), "{message}");

        let config = broker(&[]);
        let mut meta = ClusterMetadata::new("c".into());
        meta.broker_configs.insert("sasl.kerberos.min.time.before.relogin".into(), "60000".into());
        let described = describe_broker(&config, &meta);
        let stored = described.iter().find(|c| c.name == "sasl.kerberos.min.time.before.relogin").unwrap();
        assert_eq!((stored.value.as_deref(), stored.source), (Some("60000"), ConfigSource::DynamicBroker));
        assert!(stored.doc.contains("no effect"));
    }

    #[test]
    fn incremental_operations() {
        let mut current = BTreeMap::from([("retention.ms".to_string(), "1".to_string())]);
        let kind = |n: &str| topic_def(n).map(|d| d.kind);
        apply_incremental(&mut current, &[("cleanup.policy".into(), OP_APPEND, Some("compact".into()))], kind).unwrap();
        assert_eq!(current["cleanup.policy"], "delete,compact");
        apply_incremental(&mut current, &[("cleanup.policy".into(), OP_SUBTRACT, Some("delete".into()))], kind).unwrap();
        assert_eq!(current["cleanup.policy"], "compact");
        apply_incremental(&mut current, &[("retention.ms".into(), OP_DELETE, None)], kind).unwrap();
        assert!(!current.contains_key("retention.ms"));
        assert!(apply_incremental(&mut current, &[("retention.ms".into(), OP_APPEND, Some("5".into()))], kind).is_err());
        assert!(apply_incremental(&mut current, &[("retention.ms".into(), OP_SET, None)], kind).is_err());
    }
}
