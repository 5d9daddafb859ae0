//! Workload files: what to run, as a flat TOML table (see `bench/README.md` for the format).
//!
//! Parsing is by hand over a `toml::Table` rather than through serde's derive, so that every
//! error names the field, says what was expected and what was found, and unknown fields (a typo
//! such as `partition = 16`) are refused instead of silently ignored.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Bytes at the start of every record value that carry the run id, producer, partition,
/// sequence, intended send time and a checksum (see `record.rs`).
pub const VALUE_HEADER_BYTES: usize = 32;
/// Kafka's default `message.max.bytes` is about 1 MiB; a single record above it would never be
/// accepted, so a workload asking for one is a mistake.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// Bounds that keep a typo (an extra zero) from starting a run that cannot work.
pub const PARTITIONS_MAX: u32 = 100_000;
pub const PRODUCERS_MAX: u32 = 1_000;
pub const CONSUMERS_MAX: u32 = 100;
pub const KEYS_MAX: u64 = 100_000_000;
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
pub const LINGER_MS_MAX: u64 = 60_000;
pub const DURATION_S_MAX: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDistribution {
    /// No key: records go to partitions with a sticky partitioner (one batch per partition in
    /// turn), as Kafka's default partitioner does for keyless records.
    None,
    /// A random 16-byte key per record, partitioned by murmur2 hash like the Java client.
    Random,
    /// `keys` distinct keys used in turn, partitioned by murmur2 hash.
    RoundRobin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    /// Random bytes: incompressible, the conservative choice.
    Random,
    /// Random lowercase words: compresses roughly like text or JSON, for compression workloads.
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec number in the RecordBatch attributes.
    pub fn attribute(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rate {
    /// As fast as the broker acknowledges: a closed loop with `max_in_flight` requests
    /// outstanding per connection.
    Max,
    /// A fixed total rate over all producers, in records per second; latency counts from each
    /// record's intended send time.
    PerSecond(u64),
}

/// One workload, with every field filled (defaults applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub description: String,
    /// Topic name prefix; a run adds a random suffix so that runs do not read each other's data,
    /// unless `--topic` names the topic.
    pub topic_prefix: String,
    pub partitions: u32,
    pub replication_factor: i16,
    pub record_bytes: usize,
    pub key_distribution: KeyDistribution,
    /// Distinct keys for `round-robin`.
    pub keys: u64,
    pub payload: Payload,
    pub producers: u32,
    /// Independent readers, each reading every partition (like one consumer group each).
    pub consumers: u32,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    pub compression: Compression,
    pub linger_ms: u64,
    pub batch_bytes: usize,
    /// Largest produce request, like the Java client's `max.request.size`.
    pub request_bytes_max: usize,
    /// Produce requests outstanding per connection, like `max.in.flight.requests.per.connection`.
    pub max_in_flight: u32,
    /// Records buffered in a producer before it stops generating, like `buffer.memory`.
    pub buffer_bytes: usize,
    pub rate: Rate,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// Catch-up: when above 0, produce this many records first (at max rate), then the
    /// consumers read them from the earliest offset and the read throughput is measured.
    pub backlog_records: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: String::new(),
            description: String::new(),
            topic_prefix: "shardlog-bench".to_string(),
            partitions: 16,
            replication_factor: 1,
            record_bytes: 1024,
            key_distribution: KeyDistribution::None,
            keys: 0,
            payload: Payload::Random,
            producers: 1,
            consumers: 1,
            acks: -1,
            compression: Compression::None,
            linger_ms: 5,
            batch_bytes: 128 * 1024,
            request_bytes_max: 1024 * 1024,
            max_in_flight: 5,
            buffer_bytes: 32 * 1024 * 1024,
            rate: Rate::Max,
            warmup_s: 5,
            duration_s: 60,
            backlog_records: 0,
        }
    }
}

impl Workload {
    pub fn is_catchup(&self) -> bool {
        self.backlog_records > 0
    }

    pub fn acks_name(&self) -> &'static str {
        match self.acks {
            0 => "0",
            1 => "1",
            _ => "all",
        }
    }

    pub fn from_file(path: &Path) -> Result<Workload> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read workload file {}", path.display()))?;
        let fallback = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Workload::parse(&text, &fallback).with_context(|| format!("workload file {}", path.display()))
    }

    /// Parses a workload from TOML text; `fallback_name` names it when the file has no `name`.
    pub fn parse(text: &str, fallback_name: &str) -> Result<Workload> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow::anyhow!("not valid TOML: {}", e.message()))?;
        let mut w = Workload { name: fallback_name.to_string(), ..Workload::default() };
        for (key, value) in &table {
            let field = Field { key, value };
            match key.as_str() {
                "name" => w.name = field.string()?,
                "description" => w.description = field.string()?,
                "topic_prefix" => w.topic_prefix = field.string()?,
                "partitions" => w.partitions = field.integer(1, PARTITIONS_MAX as i64)? as u32,
                "replication_factor" => w.replication_factor = field.integer(1, i16::MAX as i64)? as i16,
                "record_bytes" => w.record_bytes = field.integer(VALUE_HEADER_BYTES as i64, RECORD_BYTES_MAX as i64)? as usize,
                "key_distribution" => {
                    w.key_distribution = match field.string()?.as_str() {
                        "none" => KeyDistribution::None,
                        "random" => KeyDistribution::Random,
                        "round-robin" => KeyDistribution::RoundRobin,
                        other => return field.fail(&format!("\"none\", \"random\" or \"round-robin\", found \"{other}\"")),
                    }
                }
                "keys" => w.keys = field.integer(1, KEYS_MAX as i64)? as u64,
                "payload" => {
                    w.payload = match field.string()?.as_str() {
                        "random" => Payload::Random,
                        "text" => Payload::Text,
                        other => return field.fail(&format!("\"random\" or \"text\", found \"{other}\"")),
                    }
                }
                "producers" => w.producers = field.integer(0, PRODUCERS_MAX as i64)? as u32,
                "consumers" => w.consumers = field.integer(0, CONSUMERS_MAX as i64)? as u32,
                "acks" => w.acks = field.acks()?,
                "compression" => {
                    w.compression = match field.string()?.as_str() {
                        "none" => Compression::None,
                        "gzip" => Compression::Gzip,
                        "snappy" => Compression::Snappy,
                        "lz4" => Compression::Lz4,
                        "zstd" => Compression::Zstd,
                        other => return field.fail(&format!("one of none, gzip, snappy, lz4, zstd, found \"{other}\"")),
                    }
                }
                "linger_ms" => w.linger_ms = field.integer(0, LINGER_MS_MAX as i64)? as u64,
                "batch_bytes" => w.batch_bytes = field.integer(VALUE_HEADER_BYTES as i64, BATCH_BYTES_MAX as i64)? as usize,
                "request_bytes_max" => w.request_bytes_max = field.integer(1024, 100 * 1024 * 1024)? as usize,
                "max_in_flight" => w.max_in_flight = field.integer(1, 1000)? as u32,
                "buffer_bytes" => w.buffer_bytes = field.integer(64 * 1024, 16 * 1024 * 1024 * 1024)? as usize,
                "rate" => w.rate = field.rate()?,
                "warmup_s" => w.warmup_s = field.integer(0, DURATION_S_MAX as i64)? as u64,
                "duration_s" => w.duration_s = field.integer(1, DURATION_S_MAX as i64)? as u64,
                "backlog_records" => w.backlog_records = field.integer(0, i64::MAX)? as u64,
                other => bail!("unknown field `{other}`; the fields are: {}", FIELDS.join(", ")),
            }
        }
        w.check()?;
        Ok(w)
    }

    /// Checks between fields, after each field was checked alone.
    pub fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            bail!("field `name` is empty");
        }
        if self.topic_prefix.is_empty() || !self.topic_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            bail!("field `topic_prefix`: expected a non-empty Kafka topic name (letters, digits, '.', '_', '-'), found \"{}\"", self.topic_prefix);
        }
        if self.key_distribution == KeyDistribution::RoundRobin && self.keys == 0 {
            bail!("field `keys`: key_distribution = \"round-robin\" needs `keys`, the number of distinct keys");
        }
        if self.producers == 0 && self.consumers == 0 {
            bail!("fields `producers` and `consumers` are both 0: nothing to run");
        }
        if self.producers == 0 {
            bail!("field `producers` is 0: the consumers check records that this run's producers wrote, so a run needs at least one");
        }
        if self.record_bytes + 64 > self.request_bytes_max {
            bail!("field `record_bytes` ({}) does not fit in `request_bytes_max` ({})", self.record_bytes, self.request_bytes_max);
        }
        if self.batch_bytes > self.request_bytes_max {
            bail!("field `batch_bytes` ({}) is above `request_bytes_max` ({}): no batch could be sent", self.batch_bytes, self.request_bytes_max);
        }
        if let Rate::PerSecond(rate) = self.rate {
            if rate < self.producers as u64 {
                bail!("field `rate` ({rate} records/s) is below one record per second per producer ({} producers)", self.producers);
            }
        }
        if self.is_catchup() && self.consumers == 0 {
            bail!("field `backlog_records` makes this a catch-up run, which measures consumers: `consumers` must be at least 1");
        }
        Ok(())
    }
}

const FIELDS: &[&str] = &[
    "name",
    "description",
    "topic_prefix",
    "partitions",
    "replication_factor",
    "record_bytes",
    "key_distribution",
    "keys",
    "payload",
    "producers",
    "consumers",
    "acks",
    "compression",
    "linger_ms",
    "batch_bytes",
    "request_bytes_max",
    "max_in_flight",
    "buffer_bytes",
    "rate",
    "warmup_s",
    "duration_s",
    "backlog_records",
];

struct Field<'a> {
    key: &'a str,
    value: &'a toml::Value,
}

impl Field<'_> {
    fn fail<T>(&self, expected: &str) -> Result<T> {
        bail!("field `{}`: expected {expected}", self.key)
    }

    fn found(&self) -> String {
        match self.value {
            toml::Value::String(s) => format!("the string \"{s}\""),
            other => format!("{} {other}", other.type_str()),
        }
    }

    fn string(&self) -> Result<String> {
        match self.value {
            toml::Value::String(s) => Ok(s.clone()),
            _ => self.fail(&format!("a string, found {}", self.found())),
        }
    }

    fn integer(&self, min: i64, max: i64) -> Result<i64> {
        match self.value {
            toml::Value::Integer(n) if (min..=max).contains(n) => Ok(*n),
            toml::Value::Integer(n) => self.fail(&format!("an integer from {min} to {max}, found {n}")),
            _ => self.fail(&format!("an integer, found {}", self.found())),
        }
    }

    fn acks(&self) -> Result<i16> {
        match self.value {
            toml::Value::Integer(n @ -1..=1) => Ok(*n as i16),
            toml::Value::String(s) if s == "all" || s == "-1" => Ok(-1),
            toml::Value::String(s) if s == "0" || s == "1" => Ok(s.parse().expect("checked")),
            _ => self.fail(&format!("0, 1 or \"all\", found {}", self.found())),
        }
    }

    fn rate(&self) -> Result<Rate> {
        match self.value {
            toml::Value::String(s) if s == "max" => Ok(Rate::Max),
            toml::Value::Integer(n) if *n > 0 => Ok(Rate::PerSecond(*n as u64)),
            _ => self.fail(&format!("\"max\" or a positive number of records per second, found {}", self.found())),
        }
    }
}

/// `--rate` on the command line: "max" or records per second.
pub fn parse_rate(text: &str) -> Result<Rate> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.replace('_', "").parse::<u64>() {
        Ok(n) if n > 0 => Ok(Rate::PerSecond(n)),
        _ => bail!("--rate: expected \"max\" or a positive number of records per second, found \"{text}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let w = Workload::parse(
            r#"
            name = "t"
            description = "d"
            topic_prefix = "bench-t"
            partitions = 1000
            record_bytes = 100
            key_distribution = "round-robin"
            keys = 10
            payload = "text"
            producers = 2
            consumers = 4
            acks = 1
            compression = "zstd"
            linger_ms = 1
            batch_bytes = 16384
            rate = 50000
            warmup_s = 0
            duration_s = 10
            "#,
            "fallback",
        )
        .unwrap();
        assert_eq!(w.name, "t");
        assert_eq!(w.partitions, 1000);
        assert_eq!(w.key_distribution, KeyDistribution::RoundRobin);
        assert_eq!(w.keys, 10);
        assert_eq!(w.payload, Payload::Text);
        assert_eq!(w.acks, 1);
        assert_eq!(w.compression, Compression::Zstd);
        assert_eq!(w.rate, Rate::PerSecond(50_000));
        assert_eq!(w.backlog_records, 0);
        assert!(!w.is_catchup());
    }

    #[test]
    fn defaults_fill_missing_fields_and_name_falls_back_to_the_file() {
        let w = Workload::parse("acks = \"all\"\nrate = \"max\"\n", "from-file").unwrap();
        assert_eq!(w.name, "from-file");
        assert_eq!(w.acks, -1);
        assert_eq!(w.rate, Rate::Max);
        assert_eq!(w.record_bytes, 1024);
    }

    fn error(text: &str) -> String {
        format!("{:#}", Workload::parse(text, "x").unwrap_err())
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error("partitions = 0").contains("field `partitions`: expected an integer from 1"), "{}", error("partitions = 0"));
        assert!(error("partitions = \"16\"").contains("field `partitions`: expected an integer, found the string \"16\""));
        assert!(error("record_bytes = 10").contains("field `record_bytes`"));
        assert!(error("acks = 2").contains("field `acks`: expected 0, 1 or \"all\""));
        assert!(error("rate = \"fast\"").contains("field `rate`"));
        assert!(error("rate = 0").contains("field `rate`"));
        assert!(error("compression = \"brotli\"").contains("field `compression`: expected one of none"));
        assert!(error("key_distribution = \"round-robin\"").contains("field `keys`"));
        assert!(error("partition = 3").contains("unknown field `partition`"));
        assert!(error("topic_prefix = \"a b\"").contains("field `topic_prefix`"));
        assert!(error("producers = 0").contains("field `producers`"));
        assert!(error("batch_bytes = 2000000").contains("field `batch_bytes`"));
        assert!(error("name = [").contains("not valid TOML"));
    }

    #[test]
    fn shipped_workloads_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let w = Workload::from_file(&path).unwrap_or_else(|e| panic!("{e:#}"));
                names.push(w.name);
            }
        }
        names.sort();
        assert_eq!(names, ["catchup", "compacted-keys", "fanout-4", "half-1k-acks-all", "many-partitions-1000", "max-1k-acks-all", "small-100b"]);
    }

    #[test]
    fn rate_flag_parses() {
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("10_000").unwrap(), Rate::PerSecond(10_000));
        assert!(parse_rate("0").is_err());
    }
}
