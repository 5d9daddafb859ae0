//! One run of a workload: set up the topic, start consumers then producers, print the progress
//! line, take the measurement window, drain, and check the books.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use kafka_protocol::messages::ApiKey;
use shardlog_protocol::kafka_protocol;

use super::cluster::{connect_bootstrap, prepare_topic, TopicLayout};
use super::consumer::{self, BrokerReader, StopSignal};
use super::producer::{unix_now_ns, Clock, Plan, Producer};
use super::record::Rng;
use super::result::{check_books, cpu_time, machine, ConsumerCounts, Counts, GeneratorCost, RunResult, SecondSample, Throughput, BYTES_PER_MB, RESULT_FORMAT};
use super::stats::{load, new_histogram, summarize, ConsumerCounters, LatencyRecorder, ProducerCounters};
use super::workload::Workload;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bootstrap: String,
    /// Use this topic instead of a fresh `{topic_prefix}-{run id}`.
    pub topic: Option<String>,
    /// How long consumers may take, after the producers finish, to read everything.
    pub drain_timeout: Duration,
    pub progress: bool,
    pub dry_run: bool,
    pub command_line: String,
}

/// Counter values at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    at: Option<Instant>,
    acked_records: u64,
    acked_bytes: u64,
    sent_batch_bytes: u64,
    failed_records: u64,
    consumed_records: u64,
    consumed_bytes: u64,
}

struct Meters {
    producers: Arc<ProducerCounters>,
    consumers: Vec<Arc<ConsumerCounters>>,
    produce_latency: Vec<Arc<LatencyRecorder>>,
    e2e_latency: Vec<Arc<LatencyRecorder>>,
    phase: Mutex<&'static str>,
}

impl Meters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            at: Some(Instant::now()),
            acked_records: load(&self.producers.acked_records),
            acked_bytes: load(&self.producers.acked_bytes),
            sent_batch_bytes: load(&self.producers.sent_batch_bytes),
            failed_records: load(&self.producers.failed_records),
            consumed_records: self.consumers.iter().map(|c| load(&c.valid_records)).sum(),
            consumed_bytes: self.consumers.iter().map(|c| load(&c.valid_bytes)).sum(),
        }
    }

    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().expect("phase lock") = phase;
    }

    fn errors(&self) -> u64 {
        load(&self.producers.failed_records)
            + self.consumers.iter().map(|c| load(&c.corrupt_records) + load(&c.duplicate_or_reordered) + load(&c.fetch_errors)).sum::<u64>()
    }
}

fn p99(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(0.99) as f64 / 1000.0
    }
}

/// Once a second: a sample for the series, and the progress line on stderr.
/// Stops at `done`, after one last (partial-second) sample.
async fn report_every_second(meters: Arc<Meters>, clock: Clock, done: Arc<tokio::sync::Notify>, progress: bool) -> Vec<SecondSample> {
    let mut series = Vec::new();
    let mut last = meters.snapshot();
    let mut last_at = clock.start;
    let mut produce_total = new_histogram();
    let mut e2e_total = new_histogram();
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at((clock.start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    loop {
        let last_sample = tokio::select! {
            _ = tick.tick() => false,
            _ = done.notified() => true,
        };
        let now = meters.snapshot();
        let at = now.at.expect("set");
        let seconds = at.duration_since(last_at).as_secs_f64().max(1e-3);
        let mut produce = new_histogram();
        for r in &meters.produce_latency {
            r.drain_interval(&mut produce);
        }
        let mut e2e = new_histogram();
        for r in &meters.e2e_latency {
            r.drain_interval(&mut e2e);
        }
        produce_total.add(&produce).expect("same bounds");
        e2e_total.add(&e2e).expect("same bounds");
        let phase = *meters.phase.lock().expect("phase lock");
        let sample = SecondSample {
            t_s: at.duration_since(clock.start).as_secs_f64(),
            phase: phase.to_string(),
            produce_records_per_s: (now.acked_records - last.acked_records) as f64 / seconds,
            produce_mb_per_s: (now.acked_bytes - last.acked_bytes) as f64 / seconds / BYTES_PER_MB,
            consume_records_per_s: (now.consumed_records - last.consumed_records) as f64 / seconds,
            consume_mb_per_s: (now.consumed_bytes - last.consumed_bytes) as f64 / seconds / BYTES_PER_MB,
            failed_records: now.failed_records - last.failed_records,
            produce_p99_ms: p99(&produce),
            e2e_p99_ms: p99(&e2e),
        };
        if progress {
            let line = format!(
                "{:>5.0}s {:<8} produce {:>9.0} rec/s {:>7.1} MB/s | consume {:>9.0} rec/s | p99 so far: produce {:>8.2} ms, e2e {:>8.2} ms | errors {}",
                sample.t_s,
                phase,
                sample.produce_records_per_s,
                sample.produce_mb_per_s,
                sample.consume_records_per_s,
                p99(&produce_total),
                p99(&e2e_total),
                meters.errors()
            );
            let mut stderr = std::io::stderr().lock();
            let _ = if tty { write!(stderr, "\r{line}\x1b[K") } else { writeln!(stderr, "{line}") };
        }
        series.push(sample);
        last = now;
        last_at = at;
        if last_sample {
            break;
        }
    }
    if progress && tty {
        eprintln!();
    }
    series
}

fn new_run_id() -> u32 {
    let mut rng = Rng::new(unix_now_ns() ^ ((std::process::id() as u64) << 40));
    rng.next_u64() as u32
}

/// Runs `workload` and returns its result (the books are checked; the caller decides what a
/// failed check means for the exit code).
pub async fn run(workload: Workload, options: RunOptions) -> Result<RunResult> {
    let started_unix_ms = unix_now_ns() / 1_000_000;
    let (user_start, system_start, _) = cpu_time();
    let wall_start = Instant::now();
    let run_id = new_run_id();
    let workload = Arc::new(workload);
    let bootstrap = connect_bootstrap(&options.bootstrap).await?;
    let topic = options.topic.clone().unwrap_or_else(|| format!("{}-{run_id:08x}", workload.topic_prefix));
    let layout = prepare_topic(&bootstrap, &topic, workload.partitions, workload.replication_factor).await?;
    let api_versions: Vec<String> = [ApiKey::Metadata, ApiKey::Produce, ApiKey::Fetch, ApiKey::ListOffsets]
        .iter()
        .filter_map(|&key| bootstrap.version(key).ok().map(|v| format!("{key:?} v{v}")))
        .collect();
    if options.progress {
        eprintln!(
            "shardlog-bench: workload {} against {} ({}), topic {topic} with {} partitions, run id {run_id:08x}",
            workload.name,
            options.bootstrap,
            api_versions.join(", "),
            layout.partitions()
        );
    }

    let producer_counters = Arc::new(ProducerCounters::default());
    let consumer_counters: Vec<Arc<ConsumerCounters>> = (0..workload.consumers).map(|_| Arc::default()).collect();
    let meters = Arc::new(Meters {
        producers: producer_counters.clone(),
        consumers: consumer_counters.clone(),
        produce_latency: (0..workload.producers).map(|_| Arc::default()).collect(),
        e2e_latency: (0..workload.consumers).map(|_| Arc::default()).collect(),
        phase: Mutex::new(if workload.is_catchup() { "backlog" } else { "warmup" }),
    });
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(StopSignal::default());
    {
        let stop_producing = stop_producing.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nshardlog-bench: interrupted; finishing what is in flight and writing the result");
                stop_producing.store(true, Ordering::Relaxed);
            }
        });
    }

    let warmup_ns = workload.warmup_s * 1_000_000_000;
    let end_ns = warmup_ns + workload.duration_s * 1_000_000_000;
    let per_producer =
        |p: u32| workload.backlog_records / workload.producers as u64 + u64::from((p as u64) < workload.backlog_records % workload.producers as u64);
    let plan = |p: u32| if workload.is_catchup() { Plan::Count { records: per_producer(p) } } else { Plan::Timed { warmup_end_ns: warmup_ns, end_ns } };

    // Consumers first, at the end of each partition, so they see everything the producers write.
    let mut readers: Vec<Vec<BrokerReader>> = Vec::new();
    if !workload.is_catchup() {
        for (counters, latency) in consumer_counters.iter().zip(&meters.e2e_latency) {
            let start = consumer::Start::Latest;
            readers.push(consumer::connect(run_id, &layout, workload.producers, workload.record_bytes, start, counters.clone(), latency.clone()).await?);
        }
    }
    let mut producers = Vec::new();
    for p in 0..workload.producers {
        producers.push(
            Producer::connect(
                p,
                run_id,
                workload.clone(),
                &layout,
                plan(p),
                producer_counters.clone(),
                meters.produce_latency[p as usize].clone(),
                stop_producing.clone(),
            )
            .await?,
        );
    }

    let clock = Clock::now();
    let reporting_done = Arc::new(tokio::sync::Notify::new());
    let reporter = tokio::spawn(report_every_second(meters.clone(), clock, reporting_done.clone(), options.progress));
    let mut reader_tasks = Vec::new();
    for consumer_readers in readers {
        for mut reader in consumer_readers {
            reader.record_e2e_from(clock.start_unix_ns + warmup_ns);
            reader_tasks.push(tokio::spawn(reader.run(stop_consuming.clone())));
        }
    }
    let producer_tasks: Vec<_> = producers.into_iter().map(|p| tokio::spawn(p.run(clock))).collect();

    let (produce_window, consume_window);
    let mut caught_up = vec![true; workload.consumers as usize];
    if workload.is_catchup() {
        for t in producer_tasks {
            t.await?;
        }
        let backlog_end = meters.snapshot();
        let backlog_start = Snapshot { at: Some(clock.start), ..Snapshot::default() };
        meters.set_phase("catch-up");
        stop_consuming.producers_done.store(true, Ordering::Relaxed);
        let mut tasks = Vec::new();
        for (c, (counters, latency)) in consumer_counters.iter().zip(&meters.e2e_latency).enumerate() {
            let start = consumer::Start::Earliest;
            tasks.push((c, consumer::connect(run_id, &layout, workload.producers, workload.record_bytes, start, counters.clone(), latency.clone()).await?));
        }
        let read_start = meters.snapshot();
        let mut handles = Vec::new();
        for (c, readers) in tasks {
            for reader in readers {
                handles.push((c, tokio::spawn(reader.run(stop_consuming.clone()))));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(workload.duration_s);
        let abandon = {
            let stop = stop_consuming.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline.into()).await;
                stop.abandon.store(true, Ordering::Relaxed);
            })
        };
        for (c, handle) in handles {
            caught_up[c] &= handle.await?;
        }
        abandon.abort();
        let read_end = meters.snapshot();
        produce_window = (backlog_start, backlog_end);
        consume_window = (read_start, read_end);
    } else {
        tokio::time::sleep_until(clock.instant(warmup_ns).into()).await;
        let measure_start = meters.snapshot();
        meters.set_phase("measure");
        tokio::time::sleep_until(clock.instant(end_ns).into()).await;
        let measure_end = meters.snapshot();
        meters.set_phase("drain");
        stop_producing.store(true, Ordering::Relaxed);
        for t in producer_tasks {
            t.await?;
        }
        stop_consuming.producers_done.store(true, Ordering::Relaxed);
        let abandon = {
            let stop = stop_consuming.clone();
            let timeout = options.drain_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                stop.abandon.store(true, Ordering::Relaxed);
            })
        };
        let readers_per_consumer = layout.by_leader().len();
        for (i, handle) in reader_tasks.into_iter().enumerate() {
            caught_up[i / readers_per_consumer] &= handle.await?;
        }
        abandon.abort();
        produce_window = (measure_start, measure_end);
        consume_window = (measure_start, measure_end);
    }
    // notify_one keeps a permit if the reporter is not waiting at this moment.
    reporting_done.notify_one();
    let series = reporter.await?;

    let mut produce_histogram = new_histogram();
    for r in &meters.produce_latency {
        r.add_total(&mut produce_histogram);
    }
    let mut e2e_histogram = new_histogram();
    if !workload.is_catchup() {
        for r in &meters.e2e_latency {
            r.add_total(&mut e2e_histogram);
        }
    }
    let throughput = throughput(produce_window, consume_window);
    let counts = Counts {
        sent_records: load(&producer_counters.sent_records),
        acked_records: load(&producer_counters.acked_records),
        failed_records: load(&producer_counters.failed_records),
        produce_requests: load(&producer_counters.requests),
        failed_requests: load(&producer_counters.failed_requests),
        behind_schedule_records: load(&producer_counters.behind_schedule_records),
        first_produce_error: producer_counters.first_error.lock().expect("error slot").clone(),
        consumers: consumer_counters
            .iter()
            .zip(&caught_up)
            .map(|(c, &caught_up)| ConsumerCounts {
                valid_records: load(&c.valid_records),
                duplicate_or_reordered: load(&c.duplicate_or_reordered),
                gap_records: load(&c.gap_records),
                corrupt_records: load(&c.corrupt_records),
                foreign_records: load(&c.foreign_records),
                fetch_errors: load(&c.fetch_errors),
                caught_up,
                first_error: c.first_error.lock().expect("error slot").clone(),
            })
            .collect(),
    };
    let books = check_books(&counts, workload.acks);
    let (user_end, system_end, max_rss_mb) = cpu_time();
    let machine = machine();
    let wall_s = wall_start.elapsed().as_secs_f64();
    let cpu_s = (user_end - user_start) + (system_end - system_start);
    let moved_mb = (load(&producer_counters.acked_bytes) + consumer_counters.iter().map(|c| load(&c.valid_bytes)).sum::<u64>()) as f64 / BYTES_PER_MB;
    let generator = GeneratorCost {
        wall_s,
        cpu_user_s: user_end - user_start,
        cpu_system_s: system_end - system_start,
        cores_busy: cpu_s / wall_s,
        machine_fraction: cpu_s / wall_s / machine.cpus as f64,
        cpu_ms_per_mb: if moved_mb > 0.0 { cpu_s * 1000.0 / moved_mb } else { 0.0 },
        max_rss_mb,
    };
    Ok(RunResult {
        format: RESULT_FORMAT.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: options.command_line,
        workload: (*workload).clone(),
        bootstrap_server: options.bootstrap,
        topic,
        brokers: brokers(&layout),
        api_versions,
        dry_run: options.dry_run,
        machine,
        started_unix_ms,
        finished_unix_ms: unix_now_ns() / 1_000_000,
        throughput,
        produce_latency: summarize(&produce_histogram),
        e2e_latency: summarize(&e2e_histogram),
        counts,
        books,
        generator,
        series,
    })
}

fn brokers(layout: &TopicLayout) -> Vec<String> {
    layout.brokers.iter().map(|(id, address)| format!("{id}={address}")).collect()
}

fn throughput(produce: (Snapshot, Snapshot), consume: (Snapshot, Snapshot)) -> Throughput {
    let seconds = |(a, b): (Snapshot, Snapshot)| match (a.at, b.at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(1e-6),
        _ => 1e-6,
    };
    let produce_s = seconds(produce);
    let consume_s = seconds(consume);
    let (p0, p1) = produce;
    let (c0, c1) = consume;
    Throughput {
        produce_window_s: produce_s,
        consume_window_s: consume_s,
        produce_records_per_s: (p1.acked_records - p0.acked_records) as f64 / produce_s,
        produce_mb_per_s: (p1.acked_bytes - p0.acked_bytes) as f64 / produce_s / BYTES_PER_MB,
        produce_wire_mb_per_s: (p1.sent_batch_bytes - p0.sent_batch_bytes) as f64 / produce_s / BYTES_PER_MB,
        consume_records_per_s: (c1.consumed_records - c0.consumed_records) as f64 / consume_s,
        consume_mb_per_s: (c1.consumed_bytes - c0.consumed_bytes) as f64 / consume_s / BYTES_PER_MB,
    }
}

/// The end-of-run summary printed to stdout.
pub fn summary_text(r: &RunResult) -> String {
    let mut out = String::new();
    let t = &r.throughput;
    let w = &r.workload;
    out += &format!(
        "workload {} against {}{} (topic {}, {} partitions, acks={}, {} B records, {} producers, {} consumers)\n",
        w.name,
        r.bootstrap_server,
        if r.dry_run { " [dry run: null broker]" } else { "" },
        r.topic,
        w.partitions,
        w.acks_name(),
        w.record_bytes,
        w.producers,
        w.consumers
    );
    out += &format!(
        "produce: {:.0} records/s, {:.2} MB/s ({:.2} MB/s on the wire) over {:.1} s\n",
        t.produce_records_per_s, t.produce_mb_per_s, t.produce_wire_mb_per_s, t.produce_window_s
    );
    out += &format!("consume: {:.0} records/s, {:.2} MB/s (all consumers) over {:.1} s\n", t.consume_records_per_s, t.consume_mb_per_s, t.consume_window_s);
    for (name, l) in [("produce latency", &r.produce_latency), ("end-to-end latency", &r.e2e_latency)] {
        if l.count == 0 {
            continue;
        }
        out += &format!(
            "{name} (ms, {} samples): p50 {:.3}  p99 {:.3}  p99.9 {:.3}  p99.99 {:.3}  max {:.3}\n",
            l.count, l.p50_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
        );
    }
    let c = &r.counts;
    out += &format!(
        "records: sent {} = acknowledged {} + failed {}{}\n",
        c.sent_records,
        c.acked_records,
        c.failed_records,
        if c.sent_records == c.acked_records + c.failed_records { "" } else { "  MISMATCH" }
    );
    for (i, k) in c.consumers.iter().enumerate() {
        out += &format!(
            "consumer {i}: read {} valid, {} duplicate/out-of-order, {} missing from sequences, {} corrupt{}\n",
            k.valid_records,
            k.duplicate_or_reordered,
            k.gap_records,
            k.corrupt_records,
            if k.caught_up { "" } else { ", did not catch up" }
        );
    }
    let g = &r.generator;
    out += &format!(
        "generator: {:.2} s CPU ({:.2} user + {:.2} system) in {:.1} s wall = {:.2} cores busy ({:.0}% of {} CPUs), {:.3} CPU ms per MB moved, {:.0} MB max RSS\n",
        g.cpu_user_s + g.cpu_system_s,
        g.cpu_user_s,
        g.cpu_system_s,
        g.wall_s,
        g.cores_busy,
        g.machine_fraction * 100.0,
        r.machine.cpus,
        g.cpu_ms_per_mb,
        g.max_rss_mb
    );
    for warning in &r.books.warnings {
        out += &format!("warning: {warning}\n");
    }
    if r.books.ok {
        out += "books: OK (every record accounted for; every record read was intact and in order)\n";
    } else {
        for problem in &r.books.problems {
            out += &format!("BOOKS DO NOT BALANCE: {problem}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The load generator against the in-memory null broker: the books balance when the broker
    //! is honest, and do not when it loses or corrupts acknowledged records.
    use super::*;
    use crate::loadgen::null_broker::{Faults, NullBroker};
    use crate::loadgen::workload::{Compression, KeyDistribution, Rate};

    fn small() -> Workload {
        Workload {
            name: "test".to_string(),
            partitions: 4,
            record_bytes: 200,
            producers: 2,
            consumers: 2,
            acks: 1,
            rate: Rate::PerSecond(3000),
            warmup_s: 0,
            duration_s: 1,
            linger_ms: 2,
            batch_bytes: 16 * 1024,
            ..Workload::default()
        }
    }

    fn run_against(faults: Faults, workload: Workload) -> RunResult {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let broker = NullBroker::start(true, faults).await.unwrap();
            let options = RunOptions {
                bootstrap: broker.address.to_string(),
                topic: None,
                drain_timeout: Duration::from_secs(10),
                progress: false,
                dry_run: false,
                command_line: "test".to_string(),
            };
            run(workload, options).await.unwrap()
        })
    }

    #[test]
    fn counts_are_honest_against_a_broker_that_keeps_everything() {
        let r = run_against(Faults::default(), small());
        assert!(r.books.ok, "{:?}", r.books);
        let c = &r.counts;
        // The constant-rate schedule asks for exactly rate x duration records.
        assert_eq!(c.sent_records, 3000, "{c:?}");
        assert_eq!(c.acked_records, 3000);
        assert_eq!(c.failed_records, 0);
        assert_eq!(c.behind_schedule_records, 0);
        assert_eq!(c.consumers.len(), 2);
        for consumer in &c.consumers {
            assert_eq!((consumer.valid_records, consumer.gap_records, consumer.corrupt_records, consumer.duplicate_or_reordered), (3000, 0, 0, 0));
            assert!(consumer.caught_up);
        }
        assert_eq!(r.produce_latency.count, 3000);
        assert_eq!(r.e2e_latency.count, 6000);
        assert!(r.produce_latency.p50_ms > 0.0 && r.produce_latency.max_ms < 5000.0);
        assert!(!r.series.is_empty());
        assert!(r.generator.cpu_user_s + r.generator.cpu_system_s > 0.0);
    }

    #[test]
    fn the_books_catch_a_broker_that_loses_acknowledged_records() {
        let r = run_against(Faults { lose_every_nth_batch: 5, ..Faults::default() }, small());
        assert!(!r.books.ok);
        assert_eq!(r.counts.sent_records, r.counts.acked_records, "the broker acknowledged everything");
        assert!(r.counts.consumers.iter().all(|c| c.valid_records < r.counts.acked_records && c.gap_records > 0), "{:?}", r.counts);
        assert!(r.books.problems.iter().any(|p| p.contains("acknowledged records were lost")), "{:?}", r.books);
    }

    #[test]
    fn the_books_catch_a_broker_that_corrupts_records() {
        let r = run_against(Faults { corrupt_every_nth_batch: 3, ..Faults::default() }, small());
        assert!(!r.books.ok);
        assert!(r.counts.consumers.iter().all(|c| c.corrupt_records > 0), "{:?}", r.counts);
        assert!(r.books.problems.iter().any(|p| p.contains("corrupt")), "{:?}", r.books);
    }

    #[test]
    fn counts_are_honest_when_produce_requests_fail() {
        // Every 7th produce request is refused with an error code, every 10th loses its
        // connection (the producer reconnects); both fail their records, and nothing is stored.
        let faults = Faults { refuse_every_nth_produce: 7, drop_connection_every_nth_produce: 10, ..Faults::default() };
        let r = run_against(faults, small());
        let c = &r.counts;
        assert_eq!(c.sent_records, 3000, "{c:?}");
        assert_eq!(c.sent_records, c.acked_records + c.failed_records, "{c:?}");
        assert!(c.failed_records > 0 && c.acked_records > 0, "{c:?}");
        assert!(c.failed_requests >= 2, "{c:?}");
        let first_error = c.first_produce_error.as_deref().unwrap_or_default();
        assert!(first_error.contains("KAFKA_STORAGE_ERROR") || first_error.contains("closed"), "{first_error}");
        // What failed was not stored, so the readers see exactly what was acknowledged.
        for consumer in &c.consumers {
            assert_eq!((consumer.valid_records, consumer.corrupt_records, consumer.duplicate_or_reordered), (c.acked_records, 0, 0), "{c:?}");
            assert!(consumer.gap_records <= c.failed_records, "{c:?}");
            assert!(consumer.caught_up);
        }
        assert!(r.books.ok, "{:?}", r.books);
        assert!(r.books.warnings.iter().any(|w| w.contains("records failed")), "{:?}", r.books);
        assert_eq!(r.produce_latency.count, c.acked_records, "only acknowledged records have a produce latency");
    }

    #[test]
    fn batches_refused_as_not_leader_are_sent_again_and_all_acknowledged() {
        // One request in flight, so that the refused batch has nothing behind it to overtake.
        let faults = Faults { not_leader_every_nth_produce: 5, ..Faults::default() };
        let r = run_against(faults, Workload { max_in_flight: 1, ..small() });
        let c = &r.counts;
        assert_eq!((c.sent_records, c.acked_records, c.failed_records, c.failed_requests), (3000, 3000, 0, 0), "{c:?}");
        for consumer in &c.consumers {
            assert_eq!((consumer.valid_records, consumer.gap_records, consumer.duplicate_or_reordered), (3000, 0, 0), "{c:?}");
            assert!(consumer.caught_up);
        }
        assert!(r.books.ok, "{:?}", r.books);
        assert_eq!(r.produce_latency.count, 3000);
    }

    #[test]
    fn keyed_compressed_max_rate_runs_balance() {
        let workload = Workload {
            key_distribution: KeyDistribution::RoundRobin,
            keys: 10,
            compression: Compression::Zstd,
            acks: -1,
            rate: Rate::Max,
            consumers: 1,
            request_bytes_max: 64 * 1024,
            ..small()
        };
        let r = run_against(Faults::default(), workload);
        assert!(r.books.ok, "{:?}", r.books);
        assert!(r.counts.acked_records > 1000, "{:?}", r.counts);
        assert_eq!(r.counts.consumers[0].valid_records, r.counts.acked_records);
    }

    #[test]
    fn catchup_reads_the_whole_backlog() {
        let workload = Workload { backlog_records: 5000, consumers: 1, duration_s: 30, ..small() };
        let r = run_against(Faults::default(), workload);
        assert!(r.books.ok, "{:?}", r.books);
        assert_eq!(r.counts.sent_records, 5000);
        assert_eq!(r.counts.consumers[0].valid_records, 5000);
        assert!(r.throughput.consume_records_per_s > 0.0);
        assert_eq!(r.e2e_latency.count, 0, "a backlog's age is not an end-to-end latency");
    }

    #[test]
    fn acks_zero_is_counted_when_written() {
        let r = run_against(Faults::default(), Workload { acks: 0, ..small() });
        assert!(r.books.ok, "{:?}", r.books);
        assert_eq!(r.counts.acked_records, 3000);
        assert_eq!(r.counts.consumers[0].valid_records, 3000);
    }
}
