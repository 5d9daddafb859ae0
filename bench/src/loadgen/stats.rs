//! Latency histograms (HdrHistogram, microseconds) and the counters the books are kept in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The largest latency recorded exactly: an hour. Larger values are clamped to it, so that a
/// stuck broker shows up as a huge max instead of a lost sample.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Three significant digits: 0.1% error, Gil Tene's usual choice.
const SIGNIFICANT_DIGITS: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// One point of a latency-by-percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// What a histogram says, in milliseconds.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub p9999_ms: f64,
    pub max_ms: f64,
    /// The curve for the percentile plot: percentiles 0, 90, 99, 99.9, ... with points between,
    /// up to the resolution the count supports, and 100.
    pub curve: Vec<PercentilePoint>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let at = |percentile: f64| ms(h.value_at_quantile(percentile / 100.0));
    // Points at 1 - 10^-x for x = 0, 0.1, ..., as far as the samples reach: past
    // 1 - 1/count, a percentile is just the max.
    let nines_max = (h.len() as f64).log10();
    let mut curve = Vec::new();
    let mut tenths = 0;
    loop {
        let nines = tenths as f64 / 10.0;
        if nines > nines_max || tenths > 70 {
            break;
        }
        let percentile = 100.0 * (1.0 - 10f64.powf(-nines));
        curve.push(PercentilePoint { percentile, ms: at(percentile) });
        tenths += 1;
    }
    curve.push(PercentilePoint { percentile: 100.0, ms: ms(h.max()) });
    LatencySummary {
        count: h.len(),
        min_ms: ms(h.min()),
        mean_ms: h.mean() / 1000.0,
        p50_ms: at(50.0),
        p90_ms: at(90.0),
        p99_ms: at(99.0),
        p999_ms: at(99.9),
        p9999_ms: at(99.99),
        max_ms: ms(h.max()),
        curve,
    }
}

/// A histogram for the whole run and one for the current second, behind one lock that a task
/// takes once per response (not per record).
pub struct LatencyRecorder {
    inner: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder { inner: Mutex::new((new_histogram(), new_histogram())) }
    }
}

impl LatencyRecorder {
    /// Records each value (microseconds) in both histograms.
    pub fn record_all(&self, values_us: impl IntoIterator<Item = u64>) {
        let mut guard = self.inner.lock().expect("latency lock");
        let (total, interval) = &mut *guard;
        for us in values_us {
            total.saturating_record(us.max(1));
            interval.saturating_record(us.max(1));
        }
    }

    /// Adds this recorder's interval histogram to `into` and starts a new interval.
    pub fn drain_interval(&self, into: &mut Histogram<u64>) {
        let mut guard = self.inner.lock().expect("latency lock");
        into.add(&guard.1).expect("same bounds");
        guard.1.reset();
    }

    pub fn add_total(&self, into: &mut Histogram<u64>) {
        into.add(&self.inner.lock().expect("latency lock").0).expect("same bounds");
    }
}

/// Counters shared by all producers.
#[derive(Debug, Default)]
pub struct ProducerCounters {
    /// Records handed to a produce request that was written (or tried) to a connection.
    pub sent_records: AtomicU64,
    pub acked_records: AtomicU64,
    /// Key and value bytes of acknowledged records: the payload the user cares about.
    pub acked_bytes: AtomicU64,
    pub failed_records: AtomicU64,
    /// Produce requests answered with an error for at least one partition, or not answered.
    pub failed_requests: AtomicU64,
    pub requests: AtomicU64,
    /// Batch bytes sent (after compression): what went over the wire.
    pub sent_batch_bytes: AtomicU64,
    /// Constant rate only: records the schedule asked for by the end that were never generated,
    /// because the producer's buffer stayed full (the broker could not keep up).
    pub behind_schedule_records: AtomicU64,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
}

/// Counters of one consumer (each consumer reads everything, so each keeps its own books).
#[derive(Debug, Default)]
pub struct ConsumerCounters {
    /// Records read with a valid checksum, from this run, in sequence or after a gap.
    pub valid_records: AtomicU64,
    pub valid_bytes: AtomicU64,
    /// Records whose sequence did not move forward: duplicates, or out of order.
    pub duplicate_or_reordered: AtomicU64,
    /// Sequence numbers skipped (records missing between two that were read).
    pub gap_records: AtomicU64,
    /// Records with a bad checksum, size, or partition, or in a batch that fails its CRC.
    pub corrupt_records: AtomicU64,
    /// Records that belong to another run (a reused topic).
    pub foreign_records: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub batch_bytes: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

pub fn note_error(slot: &Mutex<Option<String>>, error: impl FnOnce() -> String) {
    let mut slot = slot.lock().expect("error slot");
    if slot.is_none() {
        *slot = Some(error());
    }
}

pub fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_known_distribution() {
        let mut h = new_histogram();
        // 1..=10000 microseconds, once each.
        for us in 1..=10_000 {
            h.record(us).unwrap();
        }
        let s = summarize(&h);
        assert_eq!(s.count, 10_000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.min_ms, 0.001), "{}", s.min_ms);
        assert!(close(s.p50_ms, 5.0), "{}", s.p50_ms);
        assert!(close(s.p90_ms, 9.0), "{}", s.p90_ms);
        assert!(close(s.p99_ms, 9.9), "{}", s.p99_ms);
        assert!(close(s.p999_ms, 9.99), "{}", s.p999_ms);
        assert!(close(s.p9999_ms, 9.999), "{}", s.p9999_ms);
        assert!(close(s.max_ms, 10.0), "{}", s.max_ms);
        assert!(close(s.mean_ms, 5.0005), "{}", s.mean_ms);
        // The curve rises, starts at 0 and ends at 100, and stops at 4 nines for 10^4 samples.
        assert_eq!(s.curve.first().unwrap().percentile, 0.0);
        assert_eq!(s.curve.last().unwrap().percentile, 100.0);
        assert!(s.curve.windows(2).all(|w| w[0].percentile < w[1].percentile && w[0].ms <= w[1].ms));
        assert_eq!(s.curve.len(), 41 + 1);
    }

    #[test]
    fn one_slow_sample_in_many_shows_in_the_tail_only() {
        let mut h = new_histogram();
        h.record_n(1_000, 99_999).unwrap();
        h.record(2_000_000).unwrap();
        let s = summarize(&h);
        assert!((s.p99_ms - 1.0).abs() < 0.01);
        assert!((s.p9999_ms - 1.0).abs() < 0.01);
        assert!((s.max_ms - 2000.0).abs() < 2.0);
    }

    #[test]
    fn empty_histogram_summarizes_to_zeros() {
        assert_eq!(summarize(&new_histogram()), LatencySummary::default());
    }

    #[test]
    fn recorder_keeps_total_and_interval() {
        let r = LatencyRecorder::default();
        r.record_all([10, 20, 30]);
        let mut interval = new_histogram();
        r.drain_interval(&mut interval);
        assert_eq!(interval.len(), 3);
        r.record_all([0, LATENCY_US_MAX * 10]);
        let mut interval = new_histogram();
        r.drain_interval(&mut interval);
        assert_eq!(interval.len(), 2);
        assert_eq!(interval.min(), 1);
        let mut total = new_histogram();
        r.add_total(&mut total);
        assert_eq!(total.len(), 5);
        assert!(total.max() >= LATENCY_US_MAX);
    }
}
