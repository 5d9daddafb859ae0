//! One producer: generates records on schedule, batches them per partition like the Java
//! client's accumulator (`batch_bytes`, `linger_ms`, a sticky partitioner for keyless records),
//! and keeps up to `max_in_flight` produce requests outstanding per broker connection.
//!
//! The books: every record generated is counted as sent when its request is first queued, then
//! as acknowledged or failed exactly once when the answer (or the error, or the timeout) comes.
//! A batch the broker says it did not append for a retriable reason (NOT_LEADER_OR_FOLLOWER
//! after a leadership move, NOT_ENOUGH_REPLICAS: [`produce_retriable`]) is sent again with the
//! [`super::retry`] backoff, to the leader a fresh Metadata names, and counts as acknowledged
//! only then, its latency running from its intended send time across the retries. Its partition
//! sends nothing else until the batches in flight before it have answered, so a retry does not
//! overtake them. Nothing else is retried: a timeout or a lost connection may have appended the
//! batch, and sending it again would write duplicates, which the consumers would (rightly)
//! report.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::{self, error_name};
use shardlog_protocol::kafka_protocol;

use super::cluster::{refresh_layout, TopicLayout};
use super::net::Connection;
use super::record::{partition_for_key, payload_source, write_value, BatchBuilder, Rng, ValueHeader};
use super::retry::{needs_metadata, produce_retriable, Retry, DEFAULT_POLICY, RETRY_BOUND};
use super::schedule::Schedule;
use super::stats::{add, note_error, LatencyRecorder, ProducerCounters};
use super::workload::{KeyDistribution, Rate, Workload};

/// How long a produce request may stay unanswered before its records count as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The `timeout_ms` the broker is given for acks=all.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// The longest the loop sleeps, so that it notices a stop request.
const IDLE_WAKE: Duration = Duration::from_millis(50);
/// Key bytes: random keys are 16 hex digits, round-robin keys `key-` and 12 digits.
const KEY_BYTES: usize = 16;

/// The run's shared clock: one start instant, and the wall-clock time at that instant, so that
/// intended send times can be written into records as Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub start: Instant,
    pub start_unix_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock { start: Instant::now(), start_unix_ns: unix_now_ns() }
    }
    pub fn elapsed_ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }
    pub fn instant(&self, elapsed_ns: u64) -> Instant {
        self.start + Duration::from_nanos(elapsed_ns)
    }
}

pub fn unix_now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// What a producer is asked to do.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Produce from the start until `end_ns` (at the workload's rate); latencies of records
    /// intended before `warmup_end_ns` are not recorded.
    Timed { warmup_end_ns: u64, end_ns: u64 },
    /// Produce exactly `records` as fast as possible (the catch-up backlog).
    Count { records: u64 },
}

struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    intended_ns: Vec<u64>,
    payload_bytes: u64,
}

struct ClosedBatch {
    /// Its place in the partition's order, so that a batch sent again goes back where it was.
    number: u64,
    bytes: Bytes,
    intended_ns: Vec<u64>,
    payload_bytes: u64,
    uncompressed_bytes: usize,
    /// Set at its first retriable failure.
    retry: Option<Retry>,
}

struct PartitionState {
    index: i32,
    /// Position in `brokers`.
    broker: usize,
    next_sequence: u64,
    next_batch_number: u64,
    open: Option<OpenBatch>,
    closed: VecDeque<ClosedBatch>,
    /// Batches of this partition in requests not yet answered.
    in_flight: usize,
    /// A batch waits to be sent again: nothing goes out for the partition before this instant,
    /// nor while batches sent before the failed one are still in flight.
    retry_at: Option<Instant>,
}

struct BrokerState {
    address: String,
    connection: Option<Arc<Connection>>,
    in_flight: usize,
    partitions: Vec<usize>,
    /// Where the next drain starts in `partitions`, so that no partition waits behind others.
    drain_from: usize,
}

/// A batch in a request: for the books when the answer comes, and to send it again.
struct SentBatch {
    partition: i32,
    batch: ClosedBatch,
}

struct Completion {
    broker: usize,
    batches: Vec<SentBatch>,
    answer: Result<Option<ProduceResponse>>,
}

type InFlight = FuturesUnordered<Pin<Box<dyn Future<Output = Completion> + Send>>>;

pub struct Producer {
    id: u32,
    run_id: u32,
    workload: Arc<Workload>,
    topic: TopicName,
    clock: Clock,
    plan: Plan,
    schedule: Option<Schedule>,
    partitions: Vec<PartitionState>,
    brokers: Vec<BrokerState>,
    sticky: usize,
    rng: Rng,
    source: Arc<Vec<u8>>,
    generated: u64,
    buffered_bytes: usize,
    counters: Arc<ProducerCounters>,
    latency: Arc<LatencyRecorder>,
    stop: Arc<AtomicBool>,
    /// A broker said it does not lead a partition: ask Metadata before sending again.
    refresh_leaders: bool,
}

impl Producer {
    /// Connects to every leader of the topic.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        id: u32,
        run_id: u32,
        workload: Arc<Workload>,
        layout: &TopicLayout,
        plan: Plan,
        counters: Arc<ProducerCounters>,
        latency: Arc<LatencyRecorder>,
        stop: Arc<AtomicBool>,
    ) -> Result<Producer> {
        let mut brokers: Vec<BrokerState> = Vec::new();
        let mut partitions = Vec::new();
        for (leader, indexes) in layout.by_leader() {
            let address = layout.address(leader)?.to_string();
            let connection = Arc::new(Connection::connect(&address).await?);
            connection.version(ApiKey::Produce)?;
            let broker = brokers.len();
            brokers.push(BrokerState { address, connection: Some(connection), in_flight: 0, partitions: Vec::new(), drain_from: 0 });
            for index in indexes {
                brokers[broker].partitions.push(index as usize);
                partitions.push((index, broker));
            }
        }
        partitions.sort_unstable();
        let partitions: Vec<PartitionState> = partitions
            .into_iter()
            .map(|(index, broker)| PartitionState {
                index,
                broker,
                next_sequence: 0,
                next_batch_number: 0,
                open: None,
                closed: VecDeque::new(),
                in_flight: 0,
                retry_at: None,
            })
            .collect();
        let schedule = match (plan, workload.rate) {
            (Plan::Timed { .. }, Rate::PerSecond(rate)) => Some(Schedule::new(rate, workload.producers, id)),
            _ => None,
        };
        let seed = (run_id as u64) << 32 | id as u64;
        let source = Arc::new(payload_source(workload.payload, workload.record_bytes, seed));
        let sticky = (id as usize * 7919) % partitions.len();
        Ok(Producer {
            id,
            run_id,
            topic: TopicName(StrBytes::from_string(layout.topic.clone())),
            clock: Clock::now(),
            plan,
            schedule,
            partitions,
            brokers,
            sticky,
            rng: Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            source,
            generated: 0,
            buffered_bytes: 0,
            counters,
            latency,
            stop,
            workload,
            refresh_leaders: false,
        })
    }

    /// Runs the plan from `clock`'s start; returns when every record is acknowledged or failed.
    pub async fn run(mut self, clock: Clock) {
        self.clock = clock;
        let mut in_flight: InFlight = FuturesUnordered::new();
        let max_in_flight = self.workload.max_in_flight as usize;
        loop {
            let now = Instant::now();
            let generating = self.generate(now, max_in_flight);
            let flushing = !generating;
            for broker in 0..self.brokers.len() {
                while self.brokers[broker].in_flight < max_in_flight && self.broker_ready(broker, now, flushing) {
                    match self.send(broker).await {
                        Some(future) => {
                            self.brokers[broker].in_flight += 1;
                            in_flight.push(future);
                        }
                        None => break,
                    }
                }
            }
            if !generating && in_flight.is_empty() && self.buffered_bytes == 0 {
                break;
            }
            let wake = self.next_wake(now, generating);
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => self.complete(done),
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            // Take every answer that is already there before generating more.
            while let Some(Some(done)) = futures::FutureExt::now_or_never(in_flight.next()) {
                self.complete(done);
            }
            if self.refresh_leaders {
                self.refresh_leaders().await;
            }
        }
        if let (Plan::Timed { end_ns, .. }, Some(schedule)) = (self.plan, self.schedule) {
            let due = schedule.due_count(end_ns.saturating_sub(1));
            add(&self.counters.behind_schedule_records, due.saturating_sub(self.generated));
        }
    }

    /// Generates the records that are due; returns false once the plan has no more to generate.
    fn generate(&mut self, now: Instant, max_in_flight: usize) -> bool {
        let elapsed_ns = self.clock.elapsed_ns(now);
        let stopped = self.stop.load(Ordering::Relaxed);
        match (self.plan, self.schedule) {
            (Plan::Timed { end_ns, .. }, Some(schedule)) => {
                let due = schedule.due_count(elapsed_ns.min(end_ns.saturating_sub(1)));
                // Past the buffer limit the producer stops generating, as the Java client blocks;
                // the records it owes keep their intended times, so the stall counts in latency.
                while self.generated < due && self.buffered_bytes < self.workload.buffer_bytes {
                    let intended = schedule.intended_ns(self.generated);
                    self.push_record(intended);
                }
                !stopped && elapsed_ns < end_ns
            }
            (Plan::Timed { end_ns, .. }, None) => {
                if stopped || elapsed_ns >= end_ns {
                    return false;
                }
                self.fill_closed_loop(elapsed_ns, max_in_flight, u64::MAX);
                true
            }
            (Plan::Count { records }, _) => {
                if stopped || self.generated >= records {
                    return false;
                }
                self.fill_closed_loop(elapsed_ns, max_in_flight, records);
                self.generated < records
            }
        }
    }

    /// Max rate: keep one request's worth of records ready for each free request slot, no more,
    /// so that a record waits for a slot, not in a deep queue (its latency is send to ack).
    fn fill_closed_loop(&mut self, elapsed_ns: u64, max_in_flight: usize, limit: u64) {
        let free_slots: usize = self.brokers.iter().map(|b| max_in_flight.saturating_sub(b.in_flight)).sum();
        let target = (free_slots * self.workload.request_bytes_max).min(self.workload.buffer_bytes);
        while self.buffered_bytes < target && self.generated < limit {
            self.push_record(elapsed_ns);
        }
    }

    fn push_record(&mut self, intended_ns: u64) {
        let record_bytes = self.workload.record_bytes;
        let mut key_buffer = [0u8; KEY_BYTES];
        let key: Option<&[u8]> = match self.workload.key_distribution {
            KeyDistribution::None => None,
            KeyDistribution::Random => {
                random_key(&mut key_buffer, self.rng.next_u64());
                Some(&key_buffer)
            }
            KeyDistribution::RoundRobin => {
                round_robin_key(&mut key_buffer, self.generated % self.workload.keys);
                Some(&key_buffer)
            }
        };
        let record_size_max = record_bytes + KEY_BYTES + 24;
        let mut partition = match key {
            Some(k) => partition_for_key(k, self.partitions.len() as u32) as usize,
            None => self.sticky,
        };
        if self.partitions[partition].open.as_ref().is_some_and(|b| b.builder.size_bytes() + record_size_max > self.workload.batch_bytes) {
            self.close_open_batch(partition);
            if key.is_none() {
                self.sticky = (self.sticky + 1) % self.partitions.len();
                partition = self.sticky;
            }
        }
        let unix_ns = self.clock.start_unix_ns + intended_ns;
        let header = ValueHeader { run_id: self.run_id, producer: self.id, partition: partition as u32, sequence: 0, intended_unix_ns: unix_ns };
        let state = &mut self.partitions[partition];
        let header = ValueHeader { sequence: state.next_sequence, ..header };
        state.next_sequence += 1;
        let batch_bytes = self.workload.batch_bytes;
        let open = state.open.get_or_insert_with(|| OpenBatch {
            builder: BatchBuilder::new(batch_bytes.min(1024 * 1024)),
            created: Instant::now(),
            intended_ns: Vec::new(),
            payload_bytes: 0,
        });
        let before = open.builder.body_bytes();
        let source = &self.source;
        let source_offset = (header.sequence as usize).wrapping_mul(4099) ^ (self.id as usize * 131);
        open.builder.push((unix_ns / 1_000_000) as i64, key, record_bytes, |out| write_value(out, &header, source, source_offset));
        open.intended_ns.push(intended_ns);
        open.payload_bytes += (record_bytes + key.map_or(0, <[u8]>::len)) as u64;
        self.buffered_bytes += open.builder.body_bytes() - before;
        self.generated += 1;
    }

    fn close_open_batch(&mut self, partition: usize) {
        let Some(open) = self.partitions[partition].open.take() else { return };
        // What `buffered_bytes` counted for this batch: its records, not its header.
        let uncompressed_bytes = open.builder.body_bytes();
        let bytes = match open.builder.finish(self.workload.compression) {
            Ok(bytes) => bytes,
            Err(e) => {
                // A codec failure is a bug in this tool, but the books still balance: the records
                // were generated and are counted as sent and failed.
                let n = open.intended_ns.len() as u64;
                add(&self.counters.sent_records, n);
                add(&self.counters.failed_records, n);
                note_error(&self.counters.first_error, || format!("cannot compress a batch: {e:#}"));
                self.buffered_bytes -= uncompressed_bytes;
                return;
            }
        };
        let state = &mut self.partitions[partition];
        let number = state.next_batch_number;
        state.next_batch_number += 1;
        state.closed.push_back(ClosedBatch {
            number,
            bytes,
            intended_ns: open.intended_ns,
            payload_bytes: open.payload_bytes,
            uncompressed_bytes,
            retry: None,
        });
    }

    fn broker_ready(&self, broker: usize, now: Instant, flushing: bool) -> bool {
        let linger = Duration::from_millis(self.workload.linger_ms);
        let closed_loop = self.schedule.is_none();
        self.brokers[broker].partitions.iter().any(|&p| {
            let state = &self.partitions[p];
            if state.held(now) {
                return false;
            }
            !state.closed.is_empty()
                || state.open.as_ref().is_some_and(|b| b.builder.records() > 0 && (flushing || closed_loop || now.duration_since(b.created) >= linger))
        })
    }

    /// Drains batches of `broker`'s partitions into one produce request and queues it; returns
    /// the future of its answer, or None if nothing was sent.
    async fn send(&mut self, broker: usize) -> Option<Pin<Box<dyn Future<Output = Completion> + Send>>> {
        let connection = match self.connection(broker).await {
            Ok(c) => c,
            Err(e) => {
                self.fail_buffered(broker, &format!("{e:#}"));
                return None;
            }
        };
        // Like the Java client, a ready broker gets every partition's batches, not just the ready
        // ones, up to the request size.
        let request_bytes_max = self.workload.request_bytes_max;
        let mut request_bytes = 0;
        let mut data = Vec::new();
        let mut batches = Vec::new();
        let count = self.brokers[broker].partitions.len();
        let start = self.brokers[broker].drain_from;
        let mut sticky_drained = false;
        let now = Instant::now();
        let mut first_sends = 0;
        for k in 0..count {
            let p = self.brokers[broker].partitions[(start + k) % count];
            if self.partitions[p].held(now) {
                continue;
            }
            self.partitions[p].retry_at = None;
            if self.partitions[p].closed.is_empty() && self.partitions[p].open.as_ref().is_some_and(|b| b.builder.records() > 0) {
                self.close_open_batch(p);
                sticky_drained |= p == self.sticky;
            }
            let state = &mut self.partitions[p];
            // One batch per partition per request: the next one may need the answer to this one
            // (a NOT_LEADER), and it keeps requests fair across partitions.
            let Some(front) = state.closed.front() else { continue };
            if request_bytes > 0 && request_bytes + front.bytes.len() > request_bytes_max {
                break;
            }
            let batch = state.closed.pop_front().expect("front exists");
            request_bytes += batch.bytes.len();
            self.buffered_bytes -= batch.uncompressed_bytes;
            state.in_flight += 1;
            if batch.retry.is_none() {
                first_sends += batch.intended_ns.len() as u64;
            }
            let mut partition_data = PartitionProduceData::default();
            partition_data.index = state.index;
            partition_data.records = Some(batch.bytes.clone());
            data.push(partition_data);
            batches.push(SentBatch { partition: state.index, batch });
            self.brokers[broker].drain_from = (start + k + 1) % count;
        }
        if sticky_drained && self.workload.key_distribution == KeyDistribution::None {
            self.sticky = (self.sticky + 1) % self.partitions.len();
        }
        if batches.is_empty() {
            return None;
        }
        add(&self.counters.sent_records, first_sends);
        add(&self.counters.requests, 1);
        add(&self.counters.sent_batch_bytes, request_bytes as u64);
        let mut topic_data = TopicProduceData::default();
        topic_data.name = self.topic.clone();
        topic_data.partition_data = data;
        let mut request = ProduceRequest::default();
        request.acks = self.workload.acks;
        request.timeout_ms = PRODUCE_TIMEOUT_MS;
        request.topic_data = vec![topic_data];
        let version = connection.version(ApiKey::Produce).expect("checked at connect");
        let answer: Pin<Box<dyn Future<Output = Result<Option<ProduceResponse>>> + Send>> = if self.workload.acks == 0 {
            match connection.send_no_response(&request, version) {
                Ok(f) => Box::pin(async move { f.await.map(|()| None) }),
                Err(e) => Box::pin(async move { Err(e) }),
            }
        } else {
            match connection.send(&request, version) {
                Ok(f) => Box::pin(async move { f.await.map(Some) }),
                Err(e) => Box::pin(async move { Err(e) }),
            }
        };
        Some(Box::pin(async move {
            let answer = match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
                Ok(answer) => answer,
                Err(_) => Err(anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
            };
            Completion { broker, batches, answer }
        }))
    }

    async fn connection(&mut self, broker: usize) -> Result<Arc<Connection>> {
        let state = &mut self.brokers[broker];
        if let Some(c) = &state.connection {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        state.connection = None;
        let connection = Arc::new(Connection::connect(&state.address).await?);
        connection.version(ApiKey::Produce)?;
        state.connection = Some(connection.clone());
        Ok(connection)
    }

    /// The broker cannot be reached: every record buffered for it is sent and failed (those
    /// waiting for a retry were counted as sent the first time).
    fn fail_buffered(&mut self, broker: usize, why: &str) {
        let partitions = self.brokers[broker].partitions.clone();
        let mut failed = 0;
        let mut never_sent = 0;
        for p in partitions {
            self.close_open_batch(p);
            self.partitions[p].retry_at = None;
            for batch in self.partitions[p].closed.drain(..) {
                let n = batch.intended_ns.len() as u64;
                failed += n;
                if batch.retry.is_none() {
                    never_sent += n;
                }
                self.buffered_bytes -= batch.uncompressed_bytes;
            }
        }
        add(&self.counters.sent_records, never_sent);
        add(&self.counters.failed_records, failed);
        add(&self.counters.failed_requests, 1);
        note_error(&self.counters.first_error, || why.to_string());
    }

    fn complete(&mut self, done: Completion) {
        self.brokers[done.broker].in_flight -= 1;
        for sent in &done.batches {
            if let Some(p) = self.partition_position(sent.partition) {
                self.partitions[p].in_flight -= 1;
            }
        }
        let now = Instant::now();
        let now_ns = self.clock.elapsed_ns(now);
        let warmup_end_ns = match self.plan {
            Plan::Timed { warmup_end_ns, .. } => warmup_end_ns,
            Plan::Count { .. } => 0,
        };
        let mut acked_records = 0;
        let mut acked_bytes = 0;
        let mut failed_records = 0;
        let mut latencies_us = Vec::new();
        let mut request_failed = false;
        match &done.answer {
            Err(e) => {
                failed_records = done.batches.iter().map(|b| b.batch.intended_ns.len() as u64).sum();
                request_failed = true;
                note_error(&self.counters.first_error, || format!("produce to {}: {e:#}", self.brokers[done.broker].address));
            }
            Ok(answer) => {
                let address = self.brokers[done.broker].address.clone();
                for SentBatch { partition, mut batch } in done.batches {
                    let error = match answer {
                        None => None, // acks=0: written is all there is to know
                        Some(response) => match partition_error(response, &self.topic, partition) {
                            Some(error_code::NONE) => None,
                            Some(code) if produce_retriable(code) => match self.retry_later(&address, partition, code, &mut batch, now) {
                                Ok(()) => {
                                    self.requeue(partition, batch);
                                    continue;
                                }
                                Err(why) => Some(why),
                            },
                            Some(code) => Some(format!("produce to {}-{} at {address}: {}", self.topic.0, partition, error_name(code))),
                            None => Some(format!("produce to {}-{} at {address}: the answer does not mention this partition", self.topic.0, partition)),
                        },
                    };
                    match error {
                        None => {
                            acked_records += batch.intended_ns.len() as u64;
                            acked_bytes += batch.payload_bytes;
                            latencies_us.extend(batch.intended_ns.iter().filter(|&&t| t >= warmup_end_ns).map(|&t| now_ns.saturating_sub(t) / 1000));
                        }
                        Some(why) => {
                            failed_records += batch.intended_ns.len() as u64;
                            request_failed = true;
                            note_error(&self.counters.first_error, || why);
                        }
                    }
                }
            }
        }
        if !latencies_us.is_empty() {
            self.latency.record_all(latencies_us);
        }
        add(&self.counters.acked_records, acked_records);
        add(&self.counters.acked_bytes, acked_bytes);
        add(&self.counters.failed_records, failed_records);
        if request_failed {
            add(&self.counters.failed_requests, 1);
        }
    }

    fn partition_position(&self, index: i32) -> Option<usize> {
        self.partitions.binary_search_by_key(&index, |p| p.index).ok()
    }

    /// After a retriable produce error at `now`: whether `batch` may be sent again (its retry
    /// bound not spent), noting why on stderr; else the error that fails it, naming the broker,
    /// the request, the partition and the error.
    fn retry_later(&mut self, address: &str, partition: i32, code: i16, batch: &mut ClosedBatch, now: Instant) -> Result<(), String> {
        let what = format!("produce to {}-{partition} at {address}: {}", self.topic.0, error_name(code));
        let retry = batch.retry.get_or_insert_with(|| Retry::new(DEFAULT_POLICY, now));
        let Some(delay) = retry.next_delay(now) else {
            return Err(format!("{what}, still after {} retries over {RETRY_BOUND:?}", retry.attempts()));
        };
        let p = self.partition_position(partition).expect("a partition this producer sent");
        let state = &mut self.partitions[p];
        // One note per partition and burst: the batches pipelined behind the first failed too.
        if state.retry_at.is_none() {
            let refresh = if needs_metadata(code) { "after a Metadata refresh, " } else { "" };
            eprintln!("note: {what} (retriable); sending again {refresh}in {delay:?} (retry {})", retry.attempts());
        }
        let at = now + delay;
        state.retry_at = Some(state.retry_at.map_or(at, |t| t.max(at)));
        self.refresh_leaders |= needs_metadata(code);
        Ok(())
    }

    /// Puts a batch to send again back in its partition's queue, in its place.
    fn requeue(&mut self, partition: i32, batch: ClosedBatch) {
        let p = self.partition_position(partition).expect("a partition this producer sent");
        self.buffered_bytes += batch.uncompressed_bytes;
        let closed = &mut self.partitions[p].closed;
        let at = closed.partition_point(|b| b.number < batch.number);
        closed.insert(at, batch);
    }

    /// Asks Metadata (at any broker this producer knows) who leads each partition now, and moves
    /// partitions whose leader changed to that broker, connecting to it when first used.
    async fn refresh_leaders(&mut self) {
        self.refresh_leaders = false;
        let mut failures = Vec::new();
        let mut layout = None;
        for broker in 0..self.brokers.len() {
            let connection = match self.connection(broker).await {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{e:#}"));
                    continue;
                }
            };
            match refresh_layout(&connection, &self.topic.0).await {
                Ok(Ok(l)) => {
                    layout = Some(l);
                    break;
                }
                Ok(Err(missing)) => failures.push(missing),
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        // Without a fresh layout the partitions stay where they were; their retries fail again
        // and ask again, until their bound.
        let Some(layout) = layout else {
            eprintln!("note: Metadata refresh for {} did not name every leader ({}); retrying where they were", self.topic.0, failures.join("; "));
            return;
        };
        for p in 0..self.partitions.len() {
            let index = self.partitions[p].index;
            let Some(address) = layout.leaders.get(index as usize).and_then(|&leader| layout.address(leader).ok()) else { continue };
            let old = self.partitions[p].broker;
            if self.brokers[old].address == address {
                continue;
            }
            let new = match self.brokers.iter().position(|b| b.address == address) {
                Some(b) => b,
                None => {
                    self.brokers.push(BrokerState { address: address.to_string(), connection: None, in_flight: 0, partitions: Vec::new(), drain_from: 0 });
                    self.brokers.len() - 1
                }
            };
            eprintln!("note: {}-{index} moved from {} to {address}", self.topic.0, self.brokers[old].address);
            let old_state = &mut self.brokers[old];
            old_state.partitions.retain(|&q| q != p);
            old_state.drain_from = old_state.drain_from.checked_rem(old_state.partitions.len()).unwrap_or(0);
            self.brokers[new].partitions.push(p);
            self.partitions[p].broker = new;
        }
    }

    fn next_wake(&self, now: Instant, generating: bool) -> Instant {
        let mut wake = now + IDLE_WAKE;
        // A partition's retry is due (if nothing it sent before is still in flight).
        for state in &self.partitions {
            if let (Some(at), 0) = (state.retry_at, state.in_flight) {
                wake = wake.min(at);
            }
        }
        if let (true, Some(schedule)) = (generating, self.schedule) {
            if self.buffered_bytes < self.workload.buffer_bytes {
                wake = wake.min(self.clock.instant(schedule.intended_ns(self.generated)));
            }
        }
        // A lingering batch matters only where a request could go out now; otherwise the next
        // answer wakes the loop.
        let linger = Duration::from_millis(self.workload.linger_ms);
        for state in &self.partitions {
            if let Some(open) = &state.open {
                if self.brokers[state.broker].in_flight < self.workload.max_in_flight as usize {
                    wake = wake.min(open.created + linger);
                }
            }
        }
        wake.max(now)
    }
}

impl PartitionState {
    /// Whether a retry keeps this partition from sending now.
    fn held(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at || self.in_flight > 0)
    }
}

fn random_key(out: &mut [u8; KEY_BYTES], value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// `key-000000000042`: 12 decimal digits, enough for `KEYS_MAX`.
fn round_robin_key(out: &mut [u8; KEY_BYTES], mut index: u64) {
    out[..4].copy_from_slice(b"key-");
    for byte in out[4..].iter_mut().rev() {
        *byte = b'0' + (index % 10) as u8;
        index /= 10;
    }
}

fn partition_error(response: &ProduceResponse, topic: &TopicName, partition: i32) -> Option<i16> {
    response.responses.iter().filter(|t| t.name == *topic).flat_map(|t| t.partition_responses.iter()).find(|p| p.index == partition).map(|p| p.error_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_a_fixed_width() {
        let mut key = [0u8; KEY_BYTES];
        random_key(&mut key, 0x0123_4567_89ab_cdef);
        assert_eq!(&key, b"0123456789abcdef");
        round_robin_key(&mut key, 42);
        assert_eq!(&key, b"key-000000000042");
    }
}
