//! Metric building blocks, and the Prometheus text rendering of a whole-broker snapshot.
//!
//! Each component keeps its own probe next to its code (`handlers::probe`, the partition's
//! counters in `storage::log`, the router's in `shard::router`, ...), built from the types
//! here. They are plain `Cell`s: a shard's probes are only touched by that shard's thread, so
//! the data path pays an add, never an atomic or a lock. A scrape asks every shard for a
//! snapshot over the mesh and renders the merged result here. (Prometheus client crates
//! assume shared, atomically updated registries, which is what thread-per-core avoids.)

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Histogram bucket upper bounds: powers of two from 1 µs to about 67 s.
pub const HISTOGRAM_BUCKETS: usize = 27;

#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.set(self.0.get().wrapping_add(n));
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A histogram of microsecond (or byte) values in power-of-two buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramData {
    pub buckets: [u64; HISTOGRAM_BUCKETS],
    /// Values above the last bucket.
    pub overflow: u64,
    pub count: u64,
    pub sum: u64,
}

impl HistogramData {
    pub fn record(&mut self, value: u64) {
        let index = if value <= 1 { 0 } else { (64 - (value - 1).leading_zeros()) as usize };
        match self.buckets.get_mut(index) {
            Some(b) => *b += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.sum = self.sum.wrapping_add(value);
    }

    pub fn merge(&mut self, other: &HistogramData) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.overflow += other.overflow;
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// Upper bound of bucket `i`.
    pub fn bound(i: usize) -> u64 {
        1u64 << i
    }
}

/// A histogram owned by one shard.
#[derive(Debug, Default)]
pub struct Histogram(std::cell::RefCell<HistogramData>);

impl Histogram {
    pub fn record(&self, value: u64) {
        self.0.borrow_mut().record(value);
    }
    pub fn snapshot(&self) -> HistogramData {
        self.0.borrow().clone()
    }
}

pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family of a snapshot.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// For counters and gauges.
    pub values: Vec<(Labels, f64)>,
    /// For histograms; `scale` turns recorded units into the metric's unit (1e-6 for µs -> s).
    pub histograms: Vec<(Labels, HistogramData)>,
    pub scale: f64,
}

/// Families of all shards, merged by name and labels.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<&'static str, Family>,
}

impl Exposition {
    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind, scale: f64) -> &mut Family {
        self.families.entry(name).or_insert_with(|| Family { name, help, kind, values: Vec::new(), histograms: Vec::new(), scale })
    }

    /// Adds to a counter or sets a gauge sample; samples with equal labels are summed.
    pub fn value(&mut self, name: &'static str, help: &'static str, kind: Kind, labels: Labels, value: f64) {
        let f = self.family(name, help, kind, 1.0);
        match f.values.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, v)) => *v += value,
            None => f.values.push((labels, value)),
        }
    }

    pub fn histogram(&mut self, name: &'static str, help: &'static str, labels: Labels, data: &HistogramData, scale: f64) {
        let f = self.family(name, help, Kind::Histogram, scale);
        match f.histograms.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, h)) => h.merge(data),
            None => f.histograms.push((labels, data.clone())),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in self.families.values() {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {kind}", f.name);
            for (labels, v) in &f.values {
                let _ = writeln!(out, "{}{} {}", f.name, render_labels(labels, None), format_value(*v));
            }
            for (labels, h) in &f.histograms {
                let mut cumulative = 0;
                for (i, b) in h.buckets.iter().enumerate() {
                    cumulative += b;
                    let le = format_value(HistogramData::bound(i) as f64 * f.scale);
                    let _ = writeln!(out, "{}_bucket{} {cumulative}", f.name, render_labels(labels, Some(&le)));
                }
                let _ = writeln!(out, "{}_bucket{} {}", f.name, render_labels(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{}_sum{} {}", f.name, render_labels(labels, None), format_value(h.sum as f64 * f.scale));
                let _ = writeln!(out, "{}_count{} {}", f.name, render_labels(labels, None), h.count);
            }
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let mut h = HistogramData::default();
        for v in [0, 1, 2, 3, 4, 5, 1 << 40] {
            h.record(v);
        }
        assert_eq!(h.buckets[0], 2); // 0 and 1
        assert_eq!(h.buckets[1], 1); // 2
        assert_eq!(h.buckets[2], 2); // 3, 4
        assert_eq!(h.buckets[3], 1); // 5
        assert_eq!(h.overflow, 1);
        assert_eq!(h.count, 7);
    }

    #[test]
    fn renders_prometheus_text_and_merges_shards() {
        let mut e = Exposition::default();
        e.value("shardlog_requests_total", "Requests handled.", Kind::Counter, vec![("api", "Produce".into())], 3.0);
        e.value("shardlog_requests_total", "Requests handled.", Kind::Counter, vec![("api", "Produce".into())], 2.0);
        let mut h = HistogramData::default();
        h.record(1500);
        e.histogram("shardlog_request_latency_seconds", "Request latency.", vec![("api", "Fetch".into())], &h, 1e-6);
        e.histogram("shardlog_request_latency_seconds", "Request latency.", vec![("api", "Fetch".into())], &h, 1e-6);
        let text = e.render();
        assert!(text.contains("# TYPE shardlog_requests_total counter\nshardlog_requests_total{api=\"Produce\"} 5\n"), "{text}");
        assert!(text.contains("shardlog_request_latency_seconds_count{api=\"Fetch\"} 2"), "{text}");
        assert!(text.contains("shardlog_request_latency_seconds_bucket{api=\"Fetch\",le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("le=\"0.002048\"} 2"), "{text}");
        assert_eq!(text.matches("# TYPE shardlog_request_latency_seconds").count(), 1);
        let mut quoted = Exposition::default();
        quoted.value("m", "h", Kind::Gauge, vec![("topic", "a\"b".into())], 1.0);
        assert!(quoted.render().contains("m{topic=\"a\\\"b\"} 1"));
    }
}
