//! One consumer: reads every partition of the topic with Fetch (manual assignment, no group),
//! one fetch in flight per leader broker, like the Java consumer. Each record is checked: its
//! checksum, that it belongs to this run and partition, and that each producer's sequence in the
//! partition moves forward (duplicates, reordering and gaps are counted). End-to-end latency is
//! the consumer's clock minus the intended send time the record carries.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::{self, error_name};
use shardlog_protocol::kafka_protocol;

use super::cluster::{list_offsets, TopicLayout};
use super::net::Connection;
use super::producer::unix_now_ns;
use super::record::{read_batches, read_value, ReadRecord};
use super::retry::{Retry, DEFAULT_POLICY, RETRY_BOUND};
use super::stats::{add, note_error, ConsumerCounters, LatencyRecorder};

/// Long-poll wait: short enough to notice the end of a run quickly.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// The Java consumer's defaults: `fetch.max.bytes` 50 MiB, `max.partition.fetch.bytes` 1 MiB.
const FETCH_BYTES_MAX: i32 = 50 * 1024 * 1024;
const FETCH_PARTITION_BYTES_MAX: i32 = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// After this many fetch failures in a row (lost connections, timeouts, errors Kafka does not
/// call retriable) a broker's reader gives up; retriable errors are asked again within the
/// [`super::retry`] bound instead.
const FETCH_FAILURES_MAX: u32 = 10;

/// Where a consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The end of each partition when the consumer connects: it reads what is produced after.
    Latest,
    /// The beginning: the catch-up read.
    Earliest,
}

/// When the consumers may stop: once `producers_done` is set, a reader stops when it has read
/// up to the high watermark it sees after that (nothing more is coming), or at the deadline.
#[derive(Debug, Default)]
pub struct StopSignal {
    pub producers_done: AtomicBool,
    /// Stop now, caught up or not (the drain deadline passed, or the user pressed Ctrl-C).
    pub abandon: AtomicBool,
}

struct PartitionReader {
    index: i32,
    fetch_offset: i64,
    high_watermark: i64,
    /// Next expected sequence of each producer in this partition.
    next_sequence: Vec<u64>,
    /// A corrupt batch stopped the reading of this partition.
    dead: bool,
    /// Since its first retriable error in a row: the partition is left out of fetches until
    /// `retry_at`.
    retry: Option<Retry>,
    retry_at: Option<Instant>,
    /// Its retriable error outlasted the retry bound: it is no longer read, and not caught up.
    gave_up: bool,
}

/// The reader of one consumer for the partitions that one broker leads.
pub struct BrokerReader {
    run_id: u32,
    topic: TopicName,
    record_bytes: usize,
    connection: Connection,
    partitions: Vec<PartitionReader>,
    counters: Arc<ConsumerCounters>,
    latency: Arc<LatencyRecorder>,
    /// Unix time before which e2e latencies are not recorded (the warm-up); u64::MAX records none.
    record_e2e_from_unix_ns: u64,
}

/// Connects one consumer to every leader and finds its start offsets.
pub async fn connect(
    run_id: u32,
    layout: &TopicLayout,
    producers: u32,
    record_bytes: usize,
    start: Start,
    counters: Arc<ConsumerCounters>,
    latency: Arc<LatencyRecorder>,
) -> Result<Vec<BrokerReader>> {
    let mut readers = Vec::new();
    for (leader, indexes) in layout.by_leader() {
        let connection = Connection::connect(layout.address(leader)?).await?;
        connection.version(ApiKey::Fetch)?;
        let timestamp = match start {
            Start::Latest => super::cluster::OFFSET_LATEST,
            Start::Earliest => super::cluster::OFFSET_EARLIEST,
        };
        let offsets: BTreeMap<i32, i64> = list_offsets(&connection, &layout.topic, &indexes, timestamp).await?;
        let partitions = indexes
            .iter()
            .map(|&index| PartitionReader {
                index,
                fetch_offset: offsets[&index],
                high_watermark: -1,
                next_sequence: vec![0; producers as usize],
                dead: false,
                retry: None,
                retry_at: None,
                gave_up: false,
            })
            .collect();
        readers.push(BrokerReader {
            run_id,
            topic: TopicName(StrBytes::from_string(layout.topic.clone())),
            record_bytes,
            connection,
            partitions,
            counters: counters.clone(),
            latency: latency.clone(),
            record_e2e_from_unix_ns: u64::MAX,
        });
    }
    Ok(readers)
}

impl BrokerReader {
    /// Records e2e latency for records intended at or after `unix_ns`.
    pub fn record_e2e_from(&mut self, unix_ns: u64) {
        self.record_e2e_from_unix_ns = unix_ns;
    }

    /// Fetches until stopped (see [`StopSignal`]); returns whether it caught up.
    pub async fn run(mut self, stop: Arc<StopSignal>) -> bool {
        let version = self.connection.version(ApiKey::Fetch).expect("checked at connect");
        let mut failures = 0;
        let mut retry: Option<Retry> = None;
        loop {
            if stop.abandon.load(Ordering::Relaxed) || self.partitions.iter().all(|p| p.dead || p.gave_up) {
                return false;
            }
            // Read the flag before the fetch: a high watermark in an answer to a fetch sent after
            // the producers finished covers everything they wrote.
            let final_round = stop.producers_done.load(Ordering::Relaxed);
            let now = Instant::now();
            let request = self.fetch_request(now);
            if request.topics[0].partitions.is_empty() {
                // Every partition still readable waits for its retry.
                let at = self.partitions.iter().filter_map(|p| p.retry_at).min().unwrap_or(now);
                tokio::time::sleep_until(at.into()).await;
                continue;
            }
            let sent = Instant::now();
            let answer = match self.connection.send(&request, version) {
                Ok(f) => tokio::time::timeout(FETCH_TIMEOUT, f).await.unwrap_or_else(|_| Err(anyhow!("no answer within {FETCH_TIMEOUT:?}"))),
                Err(e) => Err(e),
            };
            let response = match answer {
                Ok(r) if r.error_code == error_code::NONE => r,
                Ok(r) if error_code::is_retriable(r.error_code) => {
                    let what = format!("Fetch from {}: {}", self.connection.address(), error_name(r.error_code));
                    let retry = retry.get_or_insert_with(|| Retry::new(DEFAULT_POLICY, Instant::now()));
                    let Some(delay) = retry.next_delay(Instant::now()) else {
                        self.fetch_failed(&format!("{what}, still after {} retries over {RETRY_BOUND:?}", retry.attempts()));
                        return false;
                    };
                    eprintln!("note: {what} (retriable); asking again in {delay:?} (retry {})", retry.attempts());
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Ok(r) => {
                    self.fetch_failed(&format!("Fetch: {}", error_name(r.error_code)));
                    failures += 1;
                    if failures >= FETCH_FAILURES_MAX {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => {
                    self.fetch_failed(&format!("Fetch from {}: {e:#}", self.connection.address()));
                    failures += 1;
                    if failures >= FETCH_FAILURES_MAX || self.connection.is_closed() {
                        return false;
                    }
                    continue;
                }
            };
            failures = 0;
            retry = None;
            let now_unix_ns = unix_now_ns();
            for topic in &response.responses {
                if topic.topic != self.topic {
                    continue;
                }
                for p in &topic.partitions {
                    self.partition_answer(p, now_unix_ns);
                }
            }
            if final_round && self.partitions.iter().all(|p| p.dead || p.gave_up || (p.high_watermark >= 0 && p.fetch_offset >= p.high_watermark)) {
                return !self.partitions.iter().any(|p| p.gave_up);
            }
            // A broker that answers an empty fetch at once (no long polling) is not hammered.
            if sent.elapsed() < Duration::from_millis(1)
                && response.responses.iter().all(|t| t.partitions.iter().all(|p| p.records.as_ref().is_none_or(|r| r.is_empty())))
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    fn fetch_failed(&self, why: &str) {
        add(&self.counters.fetch_errors, 1);
        note_error(&self.counters.first_error, || why.to_string());
    }

    fn fetch_request(&self, now: Instant) -> FetchRequest {
        let mut topic = FetchTopic::default();
        topic.topic = self.topic.clone();
        topic.partitions = self
            .partitions
            .iter()
            .filter(|p| !p.dead && !p.gave_up && p.retry_at.is_none_or(|at| at <= now))
            .map(|p| {
                let mut f = FetchPartition::default();
                f.partition = p.index;
                f.fetch_offset = p.fetch_offset;
                f.partition_max_bytes = FETCH_PARTITION_BYTES_MAX;
                f
            })
            .collect();
        let mut request = FetchRequest::default();
        request.max_wait_ms = FETCH_MAX_WAIT_MS;
        request.min_bytes = 1;
        request.max_bytes = FETCH_BYTES_MAX;
        request.topics = vec![topic];
        request
    }

    fn partition_answer(&mut self, answer: &kafka_protocol::messages::fetch_response::PartitionData, now_unix_ns: u64) {
        let Some(position) = self.partitions.iter().position(|p| p.index == answer.partition_index) else { return };
        if answer.error_code != error_code::NONE {
            let what = format!("Fetch {}-{} at {}: {}", self.topic.0, answer.partition_index, self.connection.address(), error_name(answer.error_code));
            if !error_code::is_retriable(answer.error_code) {
                self.fetch_failed(&what);
                return;
            }
            let now = Instant::now();
            let reader = &mut self.partitions[position];
            let retry = reader.retry.get_or_insert_with(|| Retry::new(DEFAULT_POLICY, now));
            match retry.next_delay(now) {
                Some(delay) => {
                    eprintln!("note: {what} (retriable); asking again in {delay:?} (retry {})", retry.attempts());
                    reader.retry_at = Some(now + delay);
                }
                None => {
                    let why = format!("{what}, still after {} retries over {RETRY_BOUND:?}", retry.attempts());
                    reader.gave_up = true;
                    self.fetch_failed(&why);
                }
            }
            return;
        }
        let run_id = self.run_id;
        let record_bytes = self.record_bytes;
        let from_unix_ns = self.record_e2e_from_unix_ns;
        let counters = &self.counters;
        let reader = &mut self.partitions[position];
        reader.retry = None;
        reader.retry_at = None;
        reader.high_watermark = answer.high_watermark;
        let Some(records) = &answer.records else { return };
        let mut tally = Tally::default();
        let mut latencies_us = Vec::new();
        let result = read_batches(records, reader.fetch_offset, |record| {
            check_record(record, run_id, reader.index as u32, record_bytes, &mut reader.next_sequence, &mut tally, |intended| {
                if intended >= from_unix_ns {
                    latencies_us.push(now_unix_ns.saturating_sub(intended) / 1000);
                }
            })
        });
        match result {
            Ok(summary) => {
                reader.fetch_offset = summary.next_offset;
                add(&counters.batch_bytes, summary.batch_bytes);
            }
            Err(e) => {
                // A batch that fails its checks cannot be read past safely: count it (as one
                // corrupt record: its record count cannot be trusted) and stop reading the partition.
                add(&counters.corrupt_records, 1);
                note_error(&counters.first_error, || format!("{}-{} at offset {}: {e}", self.topic.0, reader.index, reader.fetch_offset));
                reader.dead = true;
            }
        }
        tally.add_to(counters);
        if !latencies_us.is_empty() {
            self.latency.record_all(latencies_us);
        }
    }
}

/// Counts from one fetch answer, added to the shared counters once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub valid_records: u64,
    pub valid_bytes: u64,
    pub duplicate_or_reordered: u64,
    pub gap_records: u64,
    pub corrupt_records: u64,
    pub foreign_records: u64,
}

impl Tally {
    fn add_to(&self, counters: &ConsumerCounters) {
        add(&counters.valid_records, self.valid_records);
        add(&counters.valid_bytes, self.valid_bytes);
        add(&counters.duplicate_or_reordered, self.duplicate_or_reordered);
        add(&counters.gap_records, self.gap_records);
        add(&counters.corrupt_records, self.corrupt_records);
        add(&counters.foreign_records, self.foreign_records);
    }
}

/// Checks one record read from `partition` and counts it; calls `on_valid` with its intended
/// send time (Unix ns) when it is a valid record of this run that moves its sequence forward.
pub fn check_record(
    record: ReadRecord<'_>,
    run_id: u32,
    partition: u32,
    record_bytes: usize,
    next_sequence: &mut [u64],
    tally: &mut Tally,
    on_valid: impl FnOnce(u64),
) {
    let Some(value) = record.value else {
        tally.corrupt_records += 1;
        return;
    };
    let header = match read_value(value) {
        Ok(h) => h,
        Err(_) => {
            tally.corrupt_records += 1;
            return;
        }
    };
    if header.run_id != run_id {
        tally.foreign_records += 1;
        return;
    }
    if header.partition != partition || value.len() != record_bytes || header.producer as usize >= next_sequence.len() {
        tally.corrupt_records += 1;
        return;
    }
    let next = &mut next_sequence[header.producer as usize];
    if header.sequence < *next {
        tally.duplicate_or_reordered += 1;
        return;
    }
    tally.gap_records += header.sequence - *next;
    *next = header.sequence + 1;
    tally.valid_records += 1;
    tally.valid_bytes += (value.len() + record.key.map_or(0, <[u8]>::len)) as u64;
    on_valid(header.intended_unix_ns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::record::{payload_source, write_value, ValueHeader};
    use crate::loadgen::workload::Payload;

    fn value(run_id: u32, producer: u32, partition: u32, sequence: u64) -> Vec<u8> {
        let source = payload_source(Payload::Random, 64, 1);
        let mut v = vec![0u8; 64];
        write_value(&mut v, &ValueHeader { run_id, producer, partition, sequence, intended_unix_ns: 1000 + sequence }, &source, sequence as usize);
        v
    }

    fn check(v: &[u8], next: &mut [u64], tally: &mut Tally) -> Option<u64> {
        let mut seen = None;
        check_record(ReadRecord { offset: 0, key: None, value: Some(v) }, 9, 3, 64, next, tally, |t| seen = Some(t));
        seen
    }

    #[test]
    fn the_content_check_counts_every_kind_of_problem() {
        let mut next = vec![0u64; 2];
        let mut tally = Tally::default();
        assert_eq!(check(&value(9, 0, 3, 0), &mut next, &mut tally), Some(1000));
        assert_eq!(check(&value(9, 1, 3, 0), &mut next, &mut tally), Some(1000));
        assert_eq!(check(&value(9, 0, 3, 1), &mut next, &mut tally), Some(1001));
        // A duplicate, then a gap of two, then an old one (reordered).
        assert_eq!(check(&value(9, 0, 3, 1), &mut next, &mut tally), None);
        assert_eq!(check(&value(9, 0, 3, 4), &mut next, &mut tally), Some(1004));
        assert_eq!(check(&value(9, 0, 3, 2), &mut next, &mut tally), None);
        // Another run, another partition, an unknown producer, a flipped bit, a wrong size.
        assert_eq!(check(&value(8, 0, 3, 5), &mut next, &mut tally), None);
        assert_eq!(check(&value(9, 0, 4, 5), &mut next, &mut tally), None);
        assert_eq!(check(&value(9, 2, 3, 0), &mut next, &mut tally), None);
        let mut bad = value(9, 0, 3, 5);
        bad[40] ^= 1;
        assert_eq!(check(&bad, &mut next, &mut tally), None);
        assert_eq!(check(&value(9, 0, 3, 5)[..60], &mut next, &mut tally), None);
        assert_eq!(tally, Tally { valid_records: 4, valid_bytes: 4 * 64, duplicate_or_reordered: 2, gap_records: 2, corrupt_records: 4, foreign_records: 1 });
        assert_eq!(next, [5, 1]);
    }
}
