//! Kafka's topic configs as a table: names, defaults, validators and broker synonyms, and the
//! checks of a value against them.
//!
//! A leaf: it depends on no other module of the crate, so that `config` (which validates the
//! broker-level synonyms in the properties file) and `topic_config` (which resolves a topic's
//! values from the broker's config and the cluster metadata) both use it without depending on
//! each other.

use std::collections::BTreeMap;

/// Kafka's `ConfigDef.Type`, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// How a value is checked (Kafka's validators for the same keys).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    Double {
        min: f64,
        max: f64,
    },
    Boolean,
    Choice(&'static [&'static str]),
    /// A comma-separated list of these values.
    List(&'static [&'static str]),
    /// Replicas to throttle: `*`, or a comma-separated list of `partition:broker`.
    ReplicaList,
}

impl Kind {
    pub fn config_type(self) -> ConfigType {
        match self {
            Kind::Long { .. } => ConfigType::Long,
            Kind::Int { .. } => ConfigType::Int,
            Kind::Double { .. } => ConfigType::Double,
            Kind::Boolean => ConfigType::Boolean,
            Kind::Choice(_) => ConfigType::String,
            Kind::List(_) | Kind::ReplicaList => ConfigType::List,
        }
    }
}

/// One topic config: its Kafka default, validator, and broker synonyms with the factor that
/// turns the synonym's unit into the topic config's (hours to milliseconds: 3 600 000).
#[derive(Debug)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: Kind,
    /// Most specific first. Only a synonym with factor 1 may be changed dynamically (Kafka
    /// makes `log.retention.ms` dynamic, not `log.retention.hours`).
    pub synonyms: &'static [(&'static str, i64)],
    /// Whether the storage engine acts on it today; the others are accepted, stored and
    /// described, as Kafka clients expect, but have no effect on shardlog.
    pub applied: bool,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
pub(crate) const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

pub const CLEANUP_DELETE: &str = "delete";
pub const CLEANUP_COMPACT: &str = "compact";

/// The topic configs this broker knows, with Kafka's defaults.
pub static TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        default: "delete",
        kind: Kind::List(&[CLEANUP_DELETE, CLEANUP_COMPACT]),
        synonyms: &[("log.cleanup.policy", 1)],
        applied: true,
        doc: "delete: drop old segments by retention.ms and retention.bytes; compact: keep the latest record per key.",
    },
    TopicConfigDef {
        name: "compression.gzip.level",
        default: "-1",
        kind: Kind::Int { min: -1 },
        synonyms: &[("compression.gzip.level", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: batches are stored as the producer compressed them.",
    },
    TopicConfigDef {
        name: "compression.lz4.level",
        default: "9",
        kind: Kind::Int { min: 1 },
        synonyms: &[("compression.lz4.level", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: batches are stored as the producer compressed them.",
    },
    TopicConfigDef {
        name: "compression.type",
        default: "producer",
        kind: Kind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        synonyms: &[("compression.type", 1)],
        applied: false,
        doc: "Batches are stored as the producer compressed them; shardlog does not recompress.",
    },
    TopicConfigDef {
        name: "compression.zstd.level",
        default: "3",
        kind: Kind::Int { min: -131072 },
        synonyms: &[("compression.zstd.level", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: batches are stored as the producer compressed them.",
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.cleaner.delete.retention.ms", 1)],
        applied: true,
        doc: "How long tombstones are kept in compacted topics.",
    },
    TopicConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.segment.delete.delay.ms", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: a deleted segment's file is removed once no read holds it.",
    },
    TopicConfigDef {
        name: "flush.messages",
        default: LONG_MAX,
        kind: Kind::Long { min: 1 },
        synonyms: &[("log.flush.interval.messages", 1)],
        applied: false,
        doc: "shardlog's group commit fdatasyncs within log.flush.interval.ms, whatever this says.",
    },
    TopicConfigDef {
        name: "flush.ms",
        default: LONG_MAX,
        kind: Kind::Long { min: 0 },
        // Kafka's synonyms; shardlog reads log.flush.interval.ms at start only (its group
        // commit interval), so it stays read-only here (see `broker_dynamic`).
        synonyms: &[("log.flush.interval.ms", 1), ("log.flush.scheduler.interval.ms", 1)],
        applied: false,
        doc: "shardlog's group commit fdatasyncs within log.flush.interval.ms, whatever this says.",
    },
    TopicConfigDef {
        name: "follower.replication.throttled.replicas",
        default: "",
        kind: Kind::ReplicaList,
        synonyms: &[],
        applied: true,
        doc: "The replicas (partition:broker, or * for all) whose replication is throttled on the follower side: while out of the ISR, they share the bytes per second the broker fetches, as a follower, within its follower.replication.throttled.rate.",
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        default: "4096",
        kind: Kind::Int { min: 0 },
        synonyms: &[("log.index.interval.bytes", 1)],
        applied: true,
        doc: "Bytes of log between two offset-index entries.",
    },
    TopicConfigDef {
        name: "leader.replication.throttled.replicas",
        default: "",
        kind: Kind::ReplicaList,
        synonyms: &[],
        applied: true,
        doc: "The replicas (partition:broker, or * for all) whose replication is throttled on the leader side: while out of the ISR, they share the bytes per second the broker sends, as a leader, within its leader.replication.throttled.rate.",
    },
    TopicConfigDef {
        name: "local.retention.bytes",
        default: "-2",
        kind: Kind::Long { min: -2 },
        synonyms: &[("log.local.retention.bytes", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: there is no tiered storage, so retention.bytes applies.",
    },
    TopicConfigDef {
        name: "local.retention.ms",
        default: "-2",
        kind: Kind::Long { min: -2 },
        synonyms: &[("log.local.retention.ms", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: there is no tiered storage, so retention.ms applies.",
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        default: LONG_MAX,
        kind: Kind::Long { min: 1 },
        synonyms: &[("log.cleaner.max.compaction.lag.ms", 1)],
        applied: true,
        doc: "The longest a record may stay uncompacted.",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        kind: Kind::Int { min: 0 },
        synonyms: &[("message.max.bytes", 1)],
        applied: true,
        doc: "The largest record batch the topic accepts.",
    },
    TopicConfigDef {
        name: "message.timestamp.after.max.ms",
        default: LONG_MAX,
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.message.timestamp.after.max.ms", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: timestamps are not checked against the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.before.max.ms",
        default: LONG_MAX,
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.message.timestamp.before.max.ms", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: timestamps are not checked against the broker's clock.",
    },
    TopicConfigDef {
        name: "message.timestamp.difference.max.ms",
        default: LONG_MAX,
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.message.timestamp.difference.max.ms", 1)],
        applied: false,
        doc: "Deprecated in Kafka; accepted and not enforced.",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: Kind::Choice(&["CreateTime", "LogAppendTime"]),
        synonyms: &[("log.message.timestamp.type", 1)],
        applied: true,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's clock.",
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        kind: Kind::Double { min: 0.0, max: 1.0 },
        synonyms: &[("log.cleaner.min.cleanable.ratio", 1)],
        applied: true,
        doc: "The share of uncompacted log that starts a compaction.",
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.cleaner.min.compaction.lag.ms", 1)],
        applied: true,
        doc: "The shortest time a record stays uncompacted.",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        default: "1",
        kind: Kind::Int { min: 1 },
        synonyms: &[("min.insync.replicas", 1)],
        applied: true,
        doc: "The fewest in-sync replicas (the leader included) a partition needs to take an acks=all produce: with fewer, it is refused with NOT_ENOUGH_REPLICAS.",
    },
    TopicConfigDef {
        name: "preallocate",
        default: "false",
        kind: Kind::Boolean,
        synonyms: &[("log.preallocate", 1)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog, which always preallocates the segment being written in 32 MiB steps, its file size included, and cuts the file to its data when the segment is sealed.",
    },
    TopicConfigDef {
        name: "remote.log.copy.disable",
        default: "false",
        kind: Kind::Boolean,
        synonyms: &[],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: there is no tiered storage.",
    },
    TopicConfigDef {
        name: "remote.log.delete.on.disable",
        default: "false",
        kind: Kind::Boolean,
        synonyms: &[],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: there is no tiered storage.",
    },
    TopicConfigDef {
        name: "remote.storage.enable",
        default: "false",
        kind: Kind::Boolean,
        synonyms: &[],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: there is no tiered storage.",
    },
    TopicConfigDef {
        name: "retention.bytes",
        default: "-1",
        kind: Kind::Long { min: i64::MIN },
        synonyms: &[("log.retention.bytes", 1)],
        applied: true,
        doc: "Largest size of a partition before its oldest segments are deleted; -1: no limit.",
    },
    TopicConfigDef {
        name: "retention.ms",
        default: "604800000",
        kind: Kind::Long { min: -1 },
        synonyms: &[("log.retention.ms", 1), ("log.retention.minutes", MINUTE_MS), ("log.retention.hours", HOUR_MS)],
        applied: true,
        doc: "How long a segment is kept after its newest record; -1: forever.",
    },
    TopicConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        kind: Kind::Int { min: 14 },
        synonyms: &[("log.segment.bytes", 1)],
        applied: true,
        doc: "The size at which a segment is rolled.",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        default: "10485760",
        kind: Kind::Int { min: 4 },
        synonyms: &[("log.index.size.max.bytes", 1)],
        applied: false,
        doc: "Indexes grow as needed here; accepted for compatibility.",
    },
    TopicConfigDef {
        name: "segment.jitter.ms",
        default: "0",
        kind: Kind::Long { min: 0 },
        synonyms: &[("log.roll.jitter.ms", 1), ("log.roll.jitter.hours", HOUR_MS)],
        applied: false,
        doc: "Accepted and reported for compatibility with Kafka; it has no effect on shardlog: segments roll at segment.ms exactly.",
    },
    TopicConfigDef {
        name: "segment.ms",
        default: "604800000",
        kind: Kind::Long { min: 1 },
        synonyms: &[("log.roll.ms", 1), ("log.roll.hours", HOUR_MS)],
        applied: true,
        doc: "The age at which a segment is rolled even if it is not full.",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: Kind::Boolean,
        synonyms: &[("unclean.leader.election.enable", 1)],
        applied: true,
        doc: "Whether the controller may elect a live replica outside the ISR when no ISR member is live, at the cost of the records only the ISR had; an unclean election may also be asked for with ElectLeaders (election type unclean).",
    },
];

pub fn topic_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// The topic config a broker property sets, with the synonym's unit factor.
pub fn broker_synonym(name: &str) -> Option<(&'static TopicConfigDef, i64)> {
    TOPIC_CONFIGS.iter().find_map(|d| d.synonyms.iter().find(|(s, _)| *s == name).map(|&(_, factor)| (d, factor)))
}

/// Kafka's message for a value its validator rejects.
fn invalid(value: &str, name: &str, why: &str) -> String {
    format!("Invalid value {value} for configuration {name}: {why}")
}

/// The longest config value accepted: every known config is a number, a name or a short list,
/// and values are kept in the cluster metadata that every change rewrites and broadcasts.
pub const CONFIG_VALUE_BYTES_MAX: usize = 256;

/// Checks `value` against `kind`; `factor` scales a minimum given in the topic config's unit
/// to a synonym's unit.
pub fn check(name: &str, value: &str, kind: Kind, factor: i64) -> Result<(), String> {
    let value = value.trim();
    if value.len() > CONFIG_VALUE_BYTES_MAX {
        return Err(format!("Invalid value for configuration {name}: {} bytes is longer than the {CONFIG_VALUE_BYTES_MAX} accepted", value.len()));
    }
    match kind {
        Kind::Long { min } | Kind::Int { min } => {
            let parsed: i64 = value.parse().map_err(|_| invalid(value, name, "Not a number of type LONG or INT"))?;
            if matches!(kind, Kind::Int { .. }) && i32::try_from(parsed).is_err() {
                return Err(invalid(value, name, "Not a number of type INT"));
            }
            let min = if min == i64::MIN || min <= 0 { min } else { (min + factor - 1) / factor };
            if parsed < min {
                return Err(invalid(value, name, &format!("Value must be at least {min}")));
            }
        }
        Kind::Double { min, max } => {
            let parsed: f64 = value.parse().map_err(|_| invalid(value, name, "Not a number of type DOUBLE"))?;
            if !(min..=max).contains(&parsed) {
                return Err(invalid(value, name, &format!("Value must be between {min} and {max}")));
            }
        }
        Kind::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(invalid(value, name, "Expected value to be either true or false"));
            }
        }
        Kind::Choice(options) => {
            if !options.contains(&value) {
                return Err(invalid(value, name, &format!("String must be one of: {}", options.join(", "))));
            }
        }
        Kind::ReplicaList => {
            let is_replica = |item: &str| item.split_once(':').is_some_and(|(p, b)| p.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok());
            if !value.is_empty() && value != "*" && !value.split(',').all(is_replica) {
                return Err(invalid(
                    value,
                    name,
                    "must be the literal '*' or a list of replicas in the following format: [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                ));
            }
        }
        Kind::List(options) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if let Some(bad) = items.iter().find(|i| !options.contains(i)) {
                return Err(invalid(value, name, &format!("Invalid value {bad:?}; each item must be one of: {}", options.join(", "))));
            }
            if let Some((_, dup)) = items.iter().enumerate().find(|(i, item)| items[..*i].contains(item)) {
                return Err(invalid(value, name, &format!("Configuration '{name}' values must not be duplicated ({dup})")));
            }
        }
    }
    Ok(())
}

/// Validates one topic config override (CreateTopics, AlterConfigs).
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let def = topic_def(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    check(name, value, def.kind, 1)
}

/// Validates a whole set of topic overrides, including the checks that span two configs.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in configs {
        validate_topic_config(k, v)?;
    }
    if let (Some(min), Some(max)) = (configs.get("min.compaction.lag.ms"), configs.get("max.compaction.lag.ms")) {
        let (min, max): (i64, i64) = (min.trim().parse().unwrap_or(0), max.trim().parse().unwrap_or(i64::MAX));
        if min > max {
            return Err(format!("conflict topic config setting min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"));
        }
    }
    Ok(())
}

/// Validates a broker property from the properties file, if it is a topic config's synonym.
pub fn validate_broker_static(name: &str, value: &str) -> Result<(), String> {
    match broker_synonym(name) {
        Some((def, factor)) => check(name, value, def.kind, factor),
        None => Ok(()),
    }
}
