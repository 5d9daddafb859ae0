//! The result of a run, as written to the JSON file and read back by `report` and `compare`;
//! the machine it ran on; the generator's own CPU cost; and the check of the books.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::stats::LatencySummary;
use super::workload::Workload;

/// Written into every result; `report` and `compare` refuse other formats.
pub const RESULT_FORMAT: &str = "shardlog-bench-result/1";
/// MB in this tool: 10^6 bytes (as fio and disk vendors count).
pub const BYTES_PER_MB: f64 = 1_000_000.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub format: String,
    pub tool_version: String,
    pub command_line: String,
    pub workload: Workload,
    pub bootstrap_server: String,
    pub topic: String,
    /// The brokers Metadata listed, as "id=host:port".
    pub brokers: Vec<String>,
    /// Negotiated versions: "Produce v9", ...
    pub api_versions: Vec<String>,
    /// True when the run went to the in-process null broker (`--dry-run`).
    pub dry_run: bool,
    pub machine: Machine,
    pub started_unix_ms: u64,
    pub finished_unix_ms: u64,
    pub throughput: Throughput,
    pub produce_latency: LatencySummary,
    pub e2e_latency: LatencySummary,
    pub counts: Counts,
    pub books: Books,
    pub generator: GeneratorCost,
    pub series: Vec<SecondSample>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// The measurement window: from the end of the warm-up to the end of the run (or, for
    /// catch-up, from the start of the read to the last consumer's end).
    pub produce_window_s: f64,
    pub consume_window_s: f64,
    /// Acknowledged records (key + value bytes) per second in the window.
    pub produce_records_per_s: f64,
    pub produce_mb_per_s: f64,
    /// Batch bytes sent per second (after compression, with batch headers).
    pub produce_wire_mb_per_s: f64,
    /// Valid records read per second, summed over all consumers.
    pub consume_records_per_s: f64,
    pub consume_mb_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub sent_records: u64,
    pub acked_records: u64,
    pub failed_records: u64,
    pub produce_requests: u64,
    pub failed_requests: u64,
    pub behind_schedule_records: u64,
    pub first_produce_error: Option<String>,
    pub consumers: Vec<ConsumerCounts>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConsumerCounts {
    pub valid_records: u64,
    pub duplicate_or_reordered: u64,
    pub gap_records: u64,
    pub corrupt_records: u64,
    pub foreign_records: u64,
    pub fetch_errors: u64,
    pub caught_up: bool,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Books {
    /// False when a record is unaccounted for, corrupt, duplicated, or acknowledged and lost.
    pub ok: bool,
    pub problems: Vec<String>,
    /// Worth knowing, but not a broken count: failed records, records lost with acks=0, a
    /// producer behind schedule.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Machine {
    pub hostname: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GeneratorCost {
    pub wall_s: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// CPU time over wall time: how many cores the generator kept busy on average.
    pub cores_busy: f64,
    /// Of the machine's cores.
    pub machine_fraction: f64,
    /// CPU milliseconds per MB acknowledged plus MB consumed: what it costs the generator to move
    /// a megabyte, so the headroom can be judged against the machine.
    pub cpu_ms_per_mb: f64,
    pub max_rss_mb: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the start, at the end of this sample.
    pub t_s: f64,
    pub phase: String,
    pub produce_records_per_s: f64,
    pub produce_mb_per_s: f64,
    pub consume_records_per_s: f64,
    pub consume_mb_per_s: f64,
    pub failed_records: u64,
    /// p99 of the latencies recorded in this second (0 when none).
    pub produce_p99_ms: f64,
    pub e2e_p99_ms: f64,
}

impl RunResult {
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<RunResult> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(RESULT_FORMAT) => {}
            Some(other) => bail!("{} has result format {other:?}; this tool reads {RESULT_FORMAT:?}", path.display()),
            None => bail!("{} is not a shardlog-bench result (no \"format\" field)", path.display()),
        }
        serde_json::from_value(value).with_context(|| format!("{} is not a valid {RESULT_FORMAT} result", path.display()))
    }

    /// A short label: the workload name and the file's stem when they differ.
    pub fn label(&self, path: &Path) -> String {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if stem.is_empty() || stem == self.workload.name {
            self.workload.name.clone()
        } else {
            format!("{} ({stem})", self.workload.name)
        }
    }
}

/// Checks that every record is accounted for. `catchup` runs read a backlog that is complete
/// before the consumers start.
pub fn check_books(counts: &Counts, acks: i16) -> Books {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let accounted = counts.acked_records + counts.failed_records;
    if counts.sent_records != accounted {
        problems.push(format!(
            "records sent ({}) != acknowledged ({}) + failed ({}): {} unaccounted",
            counts.sent_records,
            counts.acked_records,
            counts.failed_records,
            counts.sent_records as i128 - accounted as i128
        ));
    }
    if counts.failed_records > 0 {
        warnings.push(format!(
            "{} records failed in {} requests; first error: {}",
            counts.failed_records,
            counts.failed_requests,
            counts.first_produce_error.as_deref().unwrap_or("?")
        ));
    }
    if counts.behind_schedule_records > 0 {
        warnings.push(format!(
            "the producers fell {} records behind the schedule (their buffers stayed full): the broker did not sustain the rate",
            counts.behind_schedule_records
        ));
    }
    for (i, c) in counts.consumers.iter().enumerate() {
        let who = format!("consumer {i}");
        if c.corrupt_records > 0 {
            problems.push(format!("{who} read {} corrupt records (first: {})", c.corrupt_records, c.first_error.as_deref().unwrap_or("?")));
        }
        if c.duplicate_or_reordered > 0 {
            problems.push(format!("{who} read {} duplicate or out-of-order records", c.duplicate_or_reordered));
        }
        if c.foreign_records > 0 {
            warnings.push(format!("{who} skipped {} records of another run (a reused topic)", c.foreign_records));
        }
        if !c.caught_up {
            problems.push(format!(
                "{who} did not read up to the end of the topic before the drain deadline ({} valid records read; {} fetch errors{})",
                c.valid_records,
                c.fetch_errors,
                c.first_error.as_ref().map(|e| format!("; first: {e}")).unwrap_or_default()
            ));
        }
        if acks == 0 {
            // Nothing was acknowledged as stored: losing records is allowed, inventing them is not.
            if c.valid_records > counts.sent_records {
                problems.push(format!("{who} read {} valid records, more than the {} sent", c.valid_records, counts.sent_records));
            } else if c.valid_records < counts.sent_records {
                warnings.push(format!("{who} read {} of {} records sent with acks=0", c.valid_records, counts.sent_records));
            }
            continue;
        }
        if c.valid_records < counts.acked_records {
            problems.push(format!(
                "{who} read {} valid records, fewer than the {} acknowledged: acknowledged records were lost ({} sequence gaps)",
                c.valid_records, counts.acked_records, c.gap_records
            ));
        } else if c.valid_records > counts.acked_records + counts.failed_records {
            problems.push(format!(
                "{who} read {} valid records, more than were sent ({} acknowledged + {} failed)",
                c.valid_records, counts.acked_records, counts.failed_records
            ));
        } else if c.valid_records > counts.acked_records {
            warnings.push(format!("{who} read {} records whose produce request failed (timed out, but written)", c.valid_records - counts.acked_records));
        }
        if c.gap_records > counts.failed_records {
            problems.push(format!("{who} found {} records missing from sequences, more than the {} that failed", c.gap_records, counts.failed_records));
        }
    }
    Books { ok: problems.is_empty(), problems, warnings }
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpuinfo = read_proc("/proc/cpuinfo");
    let cpu_model =
        cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_string()).unwrap_or_default();
    let memory_total_bytes = read_proc("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    Machine {
        hostname: read_proc("/proc/sys/kernel/hostname"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: read_proc("/proc/sys/kernel/osrelease"),
        memory_total_bytes,
    }
}

/// This process's CPU time so far: (user seconds, system seconds, max RSS in MB).
pub fn cpu_time() -> (f64, f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points at
    // writable memory of that type; on failure it writes nothing and the zeroed value stays.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_utime), seconds(usage.ru_stime), usage.ru_maxrss as f64 / 1024.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::loadgen::stats::{new_histogram, summarize};

    pub fn sample_result(name: &str, mb_per_s: f64, p99_ms: f64) -> RunResult {
        let mut h = new_histogram();
        h.record_n(1000, 980).unwrap();
        h.record_n((p99_ms * 1000.0) as u64, 20).unwrap();
        RunResult {
            format: RESULT_FORMAT.to_string(),
            tool_version: "0.1.0".to_string(),
            command_line: "shardlog-bench run x.toml".to_string(),
            workload: Workload { name: name.to_string(), ..Workload::default() },
            bootstrap_server: "127.0.0.1:9092".to_string(),
            topic: "t".to_string(),
            brokers: vec!["1=127.0.0.1:9092".to_string()],
            api_versions: vec!["Produce v9".to_string()],
            dry_run: false,
            machine: machine(),
            started_unix_ms: 1,
            finished_unix_ms: 2,
            throughput: Throughput { produce_mb_per_s: mb_per_s, produce_records_per_s: mb_per_s * 1000.0, ..Throughput::default() },
            produce_latency: summarize(&h),
            e2e_latency: summarize(&h),
            counts: Counts { sent_records: 10, acked_records: 10, ..Counts::default() },
            books: Books { ok: true, ..Books::default() },
            generator: GeneratorCost::default(),
            series: vec![SecondSample { t_s: 1.0, phase: "measure".to_string(), produce_mb_per_s: mb_per_s, ..SecondSample::default() }],
        }
    }

    #[test]
    fn json_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let result = sample_result("max-1k-acks-all", 123.5, 7.0);
        result.write(&path).unwrap();
        assert_eq!(RunResult::read(&path).unwrap(), result);
        std::fs::write(&path, r#"{"format": "other/2"}"#).unwrap();
        assert!(format!("{:#}", RunResult::read(&path).unwrap_err()).contains("result format \"other/2\""));
        std::fs::write(&path, "{}").unwrap();
        assert!(format!("{:#}", RunResult::read(&path).unwrap_err()).contains("not a shardlog-bench result"));
    }

    fn consumer(valid: u64) -> ConsumerCounts {
        ConsumerCounts { valid_records: valid, caught_up: true, ..ConsumerCounts::default() }
    }

    #[test]
    fn books_balance_or_say_why_not() {
        let good = Counts { sent_records: 100, acked_records: 100, consumers: vec![consumer(100), consumer(100)], ..Counts::default() };
        assert!(check_books(&good, -1).ok);

        let unaccounted = Counts { sent_records: 101, ..good.clone() };
        let books = check_books(&unaccounted, -1);
        assert!(!books.ok && books.problems[0].contains("1 unaccounted"), "{books:?}");

        let lost = Counts { consumers: vec![consumer(100), ConsumerCounts { gap_records: 2, ..consumer(98) }], ..good.clone() };
        let books = check_books(&lost, -1);
        assert!(!books.ok && books.problems.iter().any(|p| p.contains("consumer 1") && p.contains("were lost")), "{books:?}");

        let duplicated = Counts { consumers: vec![ConsumerCounts { duplicate_or_reordered: 1, ..consumer(100) }], ..good.clone() };
        assert!(!check_books(&duplicated, -1).ok);
        let corrupt = Counts { consumers: vec![ConsumerCounts { corrupt_records: 1, ..consumer(100) }], ..good.clone() };
        assert!(!check_books(&corrupt, -1).ok);
        let behind = Counts { consumers: vec![ConsumerCounts { caught_up: false, ..consumer(100) }], ..good.clone() };
        assert!(!check_books(&behind, -1).ok);

        // Failures are warnings, and a failed request's records may or may not be read.
        let failed = Counts { sent_records: 100, acked_records: 90, failed_records: 10, consumers: vec![consumer(95)], ..Counts::default() };
        let books = check_books(&failed, 1);
        assert!(books.ok, "{books:?}");
        assert_eq!(books.warnings.len(), 2);

        // acks=0: fewer is allowed, more is not.
        let fire_and_forget = Counts { sent_records: 100, acked_records: 100, consumers: vec![consumer(97)], ..Counts::default() };
        assert!(check_books(&fire_and_forget, 0).ok);
        let invented = Counts { consumers: vec![consumer(101)], ..fire_and_forget };
        assert!(!check_books(&invented, 0).ok);
    }

    #[test]
    fn machine_info_comes_from_proc() {
        let m = machine();
        assert!(m.cpus >= 1);
        assert!(!m.kernel.is_empty());
        let (user, system, rss) = cpu_time();
        assert!(user + system > 0.0 && rss > 0.0);
    }
}
