//! Shard-level metrics (connections, scheduling lag and stalls, CPU time, memory) and the
//! snapshot each shard sends to the admin listener, which merges them into one exposition.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::metrics::{Counter, Exposition, Histogram, HistogramData, Kind};
use crate::runtime;
use crate::shard::Shard;

/// The scheduling-lag probe sleeps this long and measures how late it wakes.
const LAG_PROBE_INTERVAL_MS: u64 = 10;
/// A wake-up later than this counts as a stall: some task held the shard's thread.
const STALL_THRESHOLD_MS: u64 = 10;

#[derive(Debug, Default)]
pub struct ShardProbe {
    pub connections_open: Cell<i64>,
    pub connections_accepted: Counter,
    /// Connections closed at once for being over max.connections.per.ip (or its override).
    pub connections_refused: Counter,
    pub authentication_failures: Counter,
    pub scheduling_lag_us: Histogram,
    pub stalls: Counter,
    /// ISR changes of the partitions this shard leads, committed by the controller.
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
}

/// Measures how late timers fire on this shard: a task that holds the thread without yielding
/// shows up as lag here (and as a stall above the threshold).
pub fn start_lag_probe(shard: &Rc<Shard>) {
    let shard = shard.clone();
    runtime::spawn(async move {
        let interval = Duration::from_millis(LAG_PROBE_INTERVAL_MS);
        while !shard.shutting_down.get() {
            let started = Instant::now();
            runtime::sleep(interval).await;
            let late = started.elapsed().saturating_sub(interval);
            shard.shard_probe.scheduling_lag_us.record(late.as_micros() as u64);
            if late > Duration::from_millis(STALL_THRESHOLD_MS) {
                shard.shard_probe.stalls.inc();
            }
        }
    })
    .detach();
}

#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub log_dir: String,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub size_bytes: u64,
    pub offline: bool,
    /// Its log directory is full: appends are refused until space is freed.
    pub disk_full: bool,
    pub fsync_us: HistogramData,
    pub commit_bytes: HistogramData,
    pub segments_deleted: u64,
    pub records_compacted: u64,
    pub compaction_batches_kept_whole: u64,
    /// For a partition this broker leads with other replicas: what it knows of them.
    pub replication: Option<ReplicationSnapshot>,
}

/// A led partition's replicas, as its leader sees them.
#[derive(Debug, Clone, Default)]
pub struct ReplicationSnapshot {
    pub replicas: usize,
    pub isr: usize,
    pub min_insync_replicas: usize,
    /// (follower, offsets behind the leader's log end), None before its first fetch.
    pub follower_lags: Vec<(i32, Option<i64>)>,
}

/// Everything one shard reports; `Send`, so it can cross the mesh.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub requests: Vec<(i16, u64, HistogramData)>,
    pub partitions: Vec<PartitionSnapshot>,
    pub committed: Vec<(String, String, i32, i64)>,
    /// Pipelined produces found appended out of order (a bug; filled in by the handlers).
    pub produce_order_violations: u64,
    pub cross_shard_calls: u64,
    pub cross_shard_latency_us: HistogramData,
    pub connections_open: i64,
    pub connections_accepted: u64,
    pub authentication_failures: u64,
    pub scheduling_lag_us: HistogramData,
    pub stalls: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub tasks_executed: u64,
    pub cpu_user_us: u64,
    pub cpu_system_us: u64,
    pub cache_bytes: u64,
    /// `shardlog.cache.shard.bytes` as this shard applies it.
    pub cache_bytes_max: u64,
    /// Batches the shard's cache dropped to stay within that budget.
    pub cache_evicted_batches: u64,
    pub pending_write_bytes: u64,
    pub sendfile_calls: u64,
    pub sendfile_bytes: u64,
    /// Log directories this shard knows failed: (path, why).
    pub failed_log_dirs: Vec<(String, String)>,
    pub connections_refused: u64,
    /// Appended bytes not yet durable (`shardlog.dirty.shard.bytes`).
    pub dirty_budget: BudgetSnapshot,
    /// Request bytes read and not yet answered (`queued.max.request.bytes`).
    pub request_budget: BudgetSnapshot,
    /// Client quota entities this shard throttled, with their totals (filled in by the
    /// handlers' quota manager).
    pub quota_throttles: Vec<crate::quota::manager::ThrottleStats>,
}

/// One of a shard's byte budgets (`crate::budget`).
#[derive(Debug, Clone, Default)]
pub struct BudgetSnapshot {
    pub used_bytes: u64,
    pub bytes_max: u64,
    pub used_bytes_peak: u64,
    pub waits: u64,
}

impl BudgetSnapshot {
    fn of(budget: &crate::budget::ByteBudget) -> BudgetSnapshot {
        BudgetSnapshot {
            used_bytes: budget.used_bytes() as u64,
            bytes_max: budget.bytes_max().min(u64::MAX as usize) as u64,
            used_bytes_peak: budget.used_bytes_peak() as u64,
            waits: budget.waits(),
        }
    }
}

fn thread_cpu_us() -> (u64, u64) {
    // SAFETY: rusage is plain data, filled in by getrusage for the calling thread.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return (0, 0);
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(usage.ru_utime), us(usage.ru_stime))
}

/// Taken on the shard's own thread (CPU time is per thread). The layers above fill in what
/// they own: `requests` (the handlers) and `committed` (the group coordinator).
pub fn snapshot(shard: &Shard) -> ShardSnapshot {
    let mut partitions = Vec::new();
    let mut pending_write_bytes = 0u64;
    let leaders = shard.leaders.borrow();
    for (key, p) in shard.partitions.borrow().iter() {
        let log = p.log.borrow();
        let replication = leaders.get(key).map(|l| ReplicationSnapshot {
            replicas: l.replicas.len(),
            isr: l.isr.len(),
            min_insync_replicas: l.min_insync_replicas,
            follower_lags: l.follower_lags(log.log_end_offset()),
        });
        pending_write_bytes += log.pending_bytes() as u64;
        partitions.push(PartitionSnapshot {
            topic: p.topic.clone(),
            partition: p.partition,
            log_dir: log.dir.parent().map(|d| d.display().to_string()).unwrap_or_default(),
            bytes_in: p.probe.bytes_in.get(),
            records_in: p.probe.records_in.get(),
            bytes_out: p.probe.bytes_out.get(),
            records_out: p.probe.records_out.get(),
            log_end_offset: log.log_end_offset(),
            high_watermark: log.high_watermark(),
            log_start_offset: log.log_start_offset(),
            size_bytes: log.size_bytes(),
            offline: log.failed().is_some(),
            disk_full: log.disk_full().is_some(),
            fsync_us: p.probe.fsync_us.snapshot(),
            commit_bytes: p.probe.commit_bytes.snapshot(),
            segments_deleted: p.probe.segments_deleted.get(),
            records_compacted: p.probe.records_compacted.get(),
            compaction_batches_kept_whole: p.probe.compaction_batches_kept_whole.get(),
            replication,
        });
    }
    let (cpu_user_us, cpu_system_us) = thread_cpu_us();
    ShardSnapshot {
        shard: shard.id,
        requests: Vec::new(),
        partitions,
        committed: Vec::new(),
        produce_order_violations: 0,
        cross_shard_calls: shard.router.calls.get(),
        cross_shard_latency_us: shard.router.call_latency_us.snapshot(),
        connections_open: shard.shard_probe.connections_open.get(),
        connections_accepted: shard.shard_probe.connections_accepted.get(),
        authentication_failures: shard.shard_probe.authentication_failures.get(),
        scheduling_lag_us: shard.shard_probe.scheduling_lag_us.snapshot(),
        stalls: shard.shard_probe.stalls.get(),
        isr_shrinks: shard.shard_probe.isr_shrinks.get(),
        isr_expands: shard.shard_probe.isr_expands.get(),
        tasks_executed: runtime::tasks_executed(),
        cpu_user_us,
        cpu_system_us,
        // The shard's own count: every log it opens counts its cached batches there.
        cache_bytes: shard.batch_cache.bytes() as u64,
        cache_bytes_max: shard.batch_cache.bytes_max() as u64,
        cache_evicted_batches: shard.batch_cache.evicted_batches(),
        pending_write_bytes,
        sendfile_calls: shard.sendfile_calls.get(),
        sendfile_bytes: shard.sendfile_bytes.get(),
        failed_log_dirs: shard.log_dirs.failed().into_iter().map(|(i, why)| (shard.config.log_dirs[i].display().to_string(), why)).collect(),
        connections_refused: shard.shard_probe.connections_refused.get(),
        dirty_budget: BudgetSnapshot::of(&shard.dirty_budget),
        request_budget: BudgetSnapshot::of(&shard.request_budget),
        quota_throttles: Vec::new(),
    }
}

fn api_name(key: i16) -> String {
    kafka_protocol_name(key).unwrap_or_else(|| format!("api_{key}"))
}

fn kafka_protocol_name(key: i16) -> Option<String> {
    shardlog_protocol::kafka_protocol::messages::ApiKey::try_from(key).ok().map(|k| format!("{k:?}"))
}

/// Renders every shard's snapshot as one Prometheus exposition.
pub fn render(snapshots: &[ShardSnapshot], listener: &str, uptime: Duration, rss_bytes: u64) -> String {
    let mut e = Exposition::default();
    let shard_label = |s: &ShardSnapshot| vec![("shard", s.shard.to_string())];
    e.value("shardlog_build_info", "Build information.", Kind::Gauge, vec![("version", env!("CARGO_PKG_VERSION").to_string())], 1.0);
    e.value("shardlog_uptime_seconds", "Seconds since the broker started.", Kind::Gauge, vec![], uptime.as_secs_f64());
    e.value("shardlog_process_resident_memory_bytes", "Resident memory of the broker process.", Kind::Gauge, vec![], rss_bytes as f64);
    let mut log_end = std::collections::HashMap::new();
    for s in snapshots {
        for (key, count, latency) in &s.requests {
            let labels = vec![("api", api_name(*key))];
            e.value("shardlog_requests_total", "Kafka requests handled, per API.", Kind::Counter, labels.clone(), *count as f64);
            e.histogram("shardlog_request_latency_seconds", "Time from a request's arrival to its response, per API.", labels, latency, 1e-6);
        }
        for p in &s.partitions {
            let labels = vec![("topic", p.topic.clone()), ("partition", p.partition.to_string())];
            e.value("shardlog_partition_bytes_in_total", "Record-batch bytes appended.", Kind::Counter, labels.clone(), p.bytes_in as f64);
            e.value("shardlog_partition_records_in_total", "Records appended.", Kind::Counter, labels.clone(), p.records_in as f64);
            e.value("shardlog_partition_bytes_out_total", "Record-batch bytes sent to fetchers.", Kind::Counter, labels.clone(), p.bytes_out as f64);
            e.value("shardlog_partition_records_out_total", "Records sent to fetchers.", Kind::Counter, labels.clone(), p.records_out as f64);
            e.value("shardlog_partition_log_end_offset", "Offset of the next record to be appended.", Kind::Gauge, labels.clone(), p.log_end_offset as f64);
            e.value("shardlog_partition_high_watermark", "Highest offset consumers may read, plus one.", Kind::Gauge, labels.clone(), p.high_watermark as f64);
            e.value("shardlog_partition_log_start_offset", "First offset still in the log.", Kind::Gauge, labels.clone(), p.log_start_offset as f64);
            e.value("shardlog_partition_size_bytes", "Bytes in the partition's segments.", Kind::Gauge, labels.clone(), p.size_bytes as f64);
            e.value("shardlog_partition_segments_deleted_total", "Segments deleted by retention.", Kind::Counter, labels.clone(), p.segments_deleted as f64);
            e.value("shardlog_partition_records_compacted_total", "Records removed by compaction.", Kind::Counter, labels.clone(), p.records_compacted as f64);
            e.value(
                "shardlog_partition_compaction_batches_kept_whole_total",
                "Batches compaction kept whole because it could not open them (malformed, or too large decompressed), per pass.",
                Kind::Counter,
                labels.clone(),
                p.compaction_batches_kept_whole as f64,
            );
            e.value(
                "shardlog_partition_offline",
                "1 if the partition is offline after a storage error.",
                Kind::Gauge,
                labels,
                if p.offline { 1.0 } else { 0.0 },
            );
            e.value(
                "shardlog_partition_disk_full",
                "1 while the partition's log directory is full and appends are refused.",
                Kind::Gauge,
                vec![("topic", p.topic.clone()), ("partition", p.partition.to_string())],
                if p.disk_full { 1.0 } else { 0.0 },
            );
            let disk = vec![("log_dir", p.log_dir.clone())];
            e.histogram(
                "shardlog_fsync_latency_seconds",
                "Time for a group commit's O_DSYNC segment writes to be durable, per log directory.",
                disk.clone(),
                &p.fsync_us,
                1e-6,
            );
            e.histogram("shardlog_group_commit_bytes", "Bytes made durable by one group commit, per log directory.", disk, &p.commit_bytes, 1.0);
            if let Some(r) = &p.replication {
                let labels = vec![("topic", p.topic.clone()), ("partition", p.partition.to_string())];
                e.value(
                    "shardlog_partition_under_replicated",
                    "1 if this broker leads the partition and its ISR is smaller than its replicas (Kafka's UnderReplicatedPartitions).",
                    Kind::Gauge,
                    labels.clone(),
                    if r.isr < r.replicas { 1.0 } else { 0.0 },
                );
                e.value(
                    "shardlog_partition_under_min_isr",
                    "1 if this broker leads the partition and its ISR is smaller than min.insync.replicas: acks=all is refused.",
                    Kind::Gauge,
                    labels.clone(),
                    if r.isr < r.min_insync_replicas { 1.0 } else { 0.0 },
                );
                e.value("shardlog_partition_isr_size", "In-sync replicas of a partition this broker leads.", Kind::Gauge, labels.clone(), r.isr as f64);
                for (follower, lag) in &r.follower_lags {
                    let mut labels = labels.clone();
                    labels.push(("follower", follower.to_string()));
                    // A follower not heard from under this leadership has no known lag.
                    if let Some(lag) = lag {
                        e.value(
                            "shardlog_replica_lag_records",
                            "Offsets a follower is behind its leader's log end, as of its last fetch.",
                            Kind::Gauge,
                            labels,
                            *lag as f64,
                        );
                    }
                }
            }
            log_end.insert((p.topic.clone(), p.partition), p.log_end_offset);
        }
        e.value("shardlog_cross_shard_calls_total", "Requests this shard sent to other shards.", Kind::Counter, shard_label(s), s.cross_shard_calls as f64);
        e.histogram("shardlog_cross_shard_latency_seconds", "Round trip of a cross-shard call.", shard_label(s), &s.cross_shard_latency_us, 1e-6);
        let conn = vec![("listener", listener.to_string()), ("shard", s.shard.to_string())];
        e.value("shardlog_connections", "Open client connections.", Kind::Gauge, conn.clone(), s.connections_open as f64);
        e.value("shardlog_connections_accepted_total", "Client connections accepted.", Kind::Counter, conn.clone(), s.connections_accepted as f64);
        e.value("shardlog_authentication_failures_total", "Failed client authentications.", Kind::Counter, conn, s.authentication_failures as f64);
        e.value(
            "shardlog_connections_refused_total",
            "New connections closed for being over max.connections.per.ip (or its override), or over their address's connection_creation_rate quota.",
            Kind::Counter,
            shard_label(s),
            s.connections_refused as f64,
        );
        e.value(
            "shardlog_produce_order_violations_total",
            "Pipelined produce requests of one connection found appended to a partition out of the order they were sent. Always 0 unless the broker has a bug.",
            Kind::Counter,
            shard_label(s),
            s.produce_order_violations as f64,
        );
        for (name, b) in [("dirty", &s.dirty_budget), ("queued_requests", &s.request_budget)] {
            let labels = vec![("shard", s.shard.to_string()), ("budget", name.to_string())];
            let help = "A shard's byte budget: dirty (appended, not yet durable; shardlog.dirty.shard.bytes) or queued_requests (read, not yet answered; queued.max.request.bytes).";
            e.value("shardlog_shard_budget_used_bytes", help, Kind::Gauge, labels.clone(), b.used_bytes as f64);
            e.value("shardlog_shard_budget_limit_bytes", help, Kind::Gauge, labels.clone(), b.bytes_max as f64);
            e.value("shardlog_shard_budget_used_bytes_peak", help, Kind::Gauge, labels.clone(), b.used_bytes_peak as f64);
            e.value(
                "shardlog_shard_budget_waits_total",
                "Times work waited for room in a shard's byte budget (back-pressure).",
                Kind::Counter,
                labels,
                b.waits as f64,
            );
        }
        e.histogram(
            "shardlog_shard_scheduling_lag_seconds",
            "How late a 10 ms timer fires on the shard: time the task queue made it wait.",
            shard_label(s),
            &s.scheduling_lag_us,
            1e-6,
        );
        e.value("shardlog_shard_stalls_total", "Times a shard's timer fired more than 10 ms late.", Kind::Counter, shard_label(s), s.stalls as f64);
        e.value(
            "shardlog_isr_shrinks_total",
            "ISR shrinks of the partitions this shard leads, asked of the controller and committed.",
            Kind::Counter,
            shard_label(s),
            s.isr_shrinks as f64,
        );
        e.value(
            "shardlog_isr_expands_total",
            "ISR expansions of the partitions this shard leads, asked of the controller and committed.",
            Kind::Counter,
            shard_label(s),
            s.isr_expands as f64,
        );
        e.value("shardlog_shard_tasks_executed_total", "Tasks the shard's executor ran.", Kind::Counter, shard_label(s), s.tasks_executed as f64);
        let mut cpu = shard_label(s);
        cpu.push(("mode", "user".into()));
        e.value("shardlog_shard_cpu_seconds_total", "CPU time of the shard's thread.", Kind::Counter, cpu.clone(), s.cpu_user_us as f64 / 1e6);
        cpu[1].1 = "system".into();
        e.value("shardlog_shard_cpu_seconds_total", "CPU time of the shard's thread.", Kind::Counter, cpu, s.cpu_system_us as f64 / 1e6);
        let mut mem = shard_label(s);
        mem.push(("kind", "batch_cache".into()));
        let help = "Memory held by the shard's batch caches; pending_writes is the part queued for the flushers (the same buffers, not held twice).";
        e.value("shardlog_shard_memory_bytes", help, Kind::Gauge, mem.clone(), s.cache_bytes as f64);
        mem[1].1 = "pending_writes".into();
        e.value("shardlog_shard_memory_bytes", help, Kind::Gauge, mem, s.pending_write_bytes as f64);
        e.value(
            "shardlog_shard_cache_limit_bytes",
            "The shard's batch cache budget (shardlog.cache.shard.bytes): past it, the batch cached longest ago is dropped once durable.",
            Kind::Gauge,
            shard_label(s),
            s.cache_bytes_max as f64,
        );
        e.value(
            "shardlog_shard_cache_evicted_batches_total",
            "Batches the shard's batch cache dropped to stay within shardlog.cache.shard.bytes.",
            Kind::Counter,
            shard_label(s),
            s.cache_evicted_batches as f64,
        );
        e.value("shardlog_sendfile_calls_total", "sendfile(2) calls for zero-copy reads.", Kind::Counter, shard_label(s), s.sendfile_calls as f64);
        e.value("shardlog_sendfile_bytes_total", "Bytes sent with sendfile(2).", Kind::Counter, shard_label(s), s.sendfile_bytes as f64);
        for t in &s.quota_throttles {
            // Kafka's quota metric tags: the user and client id the quota is measured under
            // (empty where the quota is not of that component).
            let labels = vec![("quota", t.quota_type.name().to_string()), ("user", t.user.clone()), ("client_id", t.client_id.clone())];
            e.value(
                "shardlog_quota_throttle_time_ms_total",
                "Throttle time given to clients over a client quota, per quota type and entity (entities tracked now).",
                Kind::Counter,
                labels.clone(),
                t.throttle_ms_total as f64,
            );
            e.value(
                "shardlog_quota_throttled_responses_total",
                "Responses that carried a throttle time, per quota type and entity (entities tracked now).",
                Kind::Counter,
                labels,
                t.throttled as f64,
            );
        }
    }
    for s in snapshots {
        for (group, topic, partition, committed) in &s.committed {
            let labels = vec![("group", group.clone()), ("topic", topic.clone()), ("partition", partition.to_string())];
            e.value("shardlog_group_committed_offset", "Offset a consumer group committed.", Kind::Gauge, labels.clone(), *committed as f64);
            if let Some(end) = log_end.get(&(topic.clone(), *partition)) {
                e.value("shardlog_group_lag", "Log end offset minus the group's committed offset.", Kind::Gauge, labels, (*end - *committed).max(0) as f64);
            }
        }
    }
    e.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_joins_committed_offsets_with_log_ends_from_any_shard() {
        let empty = ShardSnapshot {
            shard: 0,
            requests: vec![(0, 3, HistogramData::default())],
            partitions: vec![],
            committed: vec![("g".into(), "t".into(), 0, 40)],
            cross_shard_calls: 0,
            cross_shard_latency_us: HistogramData::default(),
            connections_open: 1,
            connections_accepted: 2,
            authentication_failures: 0,
            scheduling_lag_us: HistogramData::default(),
            stalls: 0,
            isr_shrinks: 2,
            isr_expands: 1,
            tasks_executed: 0,
            cpu_user_us: 1_500_000,
            cpu_system_us: 0,
            cache_bytes: 0,
            cache_bytes_max: 1 << 30,
            cache_evicted_batches: 0,
            pending_write_bytes: 0,
            sendfile_calls: 0,
            sendfile_bytes: 0,
            failed_log_dirs: Vec::new(),
            connections_refused: 0,
            produce_order_violations: 0,
            dirty_budget: BudgetSnapshot { used_bytes: 7, bytes_max: 100, used_bytes_peak: 9, waits: 2 },
            request_budget: BudgetSnapshot::default(),
            quota_throttles: vec![crate::quota::manager::ThrottleStats {
                quota_type: crate::quota::manager::QuotaType::Produce,
                user: "alice".into(),
                client_id: String::new(),
                throttle_ms_total: 1200,
                throttled: 3,
            }],
        };
        let mut other = empty.clone();
        other.shard = 1;
        other.committed.clear();
        other.requests.clear();
        other.partitions.push(PartitionSnapshot {
            topic: "t".into(),
            partition: 0,
            log_dir: "/d".into(),
            bytes_in: 10,
            records_in: 2,
            bytes_out: 0,
            records_out: 0,
            log_end_offset: 100,
            high_watermark: 100,
            log_start_offset: 0,
            size_bytes: 10,
            offline: false,
            disk_full: false,
            fsync_us: HistogramData::default(),
            commit_bytes: HistogramData::default(),
            segments_deleted: 4,
            records_compacted: 0,
            compaction_batches_kept_whole: 3,
            replication: Some(ReplicationSnapshot { replicas: 3, isr: 1, min_insync_replicas: 2, follower_lags: vec![(2, Some(40)), (3, None)] }),
        });
        let text = render(&[empty, other], "PLAINTEXT", Duration::from_secs(5), 0);
        assert!(text.contains("shardlog_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 60"), "{text}");
        assert!(text.contains("shardlog_requests_total{api=\"Produce\"} 3"), "{text}");
        assert!(text.contains("shardlog_shard_cpu_seconds_total{shard=\"0\",mode=\"user\"} 1.5"), "{text}");
        assert!(text.contains("shardlog_partition_records_in_total{topic=\"t\",partition=\"0\"} 2"), "{text}");
        assert!(text.contains("shardlog_partition_compaction_batches_kept_whole_total{topic=\"t\",partition=\"0\"} 3"), "{text}");
        assert!(text.contains("shardlog_partition_segments_deleted_total{topic=\"t\",partition=\"0\"} 4"), "{text}");
        assert!(text.contains("shardlog_shard_budget_waits_total{shard=\"0\",budget=\"dirty\"} 2"), "{text}");
        assert!(text.contains("shardlog_shard_budget_used_bytes_peak{shard=\"0\",budget=\"dirty\"} 9"), "{text}");
        assert!(text.contains("shardlog_partition_under_replicated{topic=\"t\",partition=\"0\"} 1"), "{text}");
        assert!(text.contains("shardlog_partition_under_min_isr{topic=\"t\",partition=\"0\"} 1"), "{text}");
        assert!(text.contains("shardlog_replica_lag_records{topic=\"t\",partition=\"0\",follower=\"2\"} 40"), "{text}");
        assert!(!text.contains("follower=\"3\""), "no lag before a follower's first fetch: {text}");
        assert!(text.contains("shardlog_isr_shrinks_total{shard=\"1\"} 2"), "{text}");
        // Each shard's throttling of one entity adds up.
        assert!(text.contains("shardlog_quota_throttle_time_ms_total{quota=\"produce\",user=\"alice\",client_id=\"\"} 2400"), "{text}");
    }
}
