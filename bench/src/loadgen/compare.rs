//! `shardlog-bench compare a.json b.json ...`: result files side by side in one table.

use std::path::PathBuf;

use super::result::RunResult;

/// One row: a label and how to get the cell from a result.
type Row = (&'static str, fn(&RunResult) -> String);

fn ms(v: f64, count: u64) -> String {
    if count == 0 {
        "-".to_string()
    } else if v < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

const ROWS: &[Row] = &[
    ("broker", |r| if r.dry_run { "null broker (dry run)".to_string() } else { r.bootstrap_server.clone() }),
    ("partitions / record bytes", |r| format!("{} / {}", r.workload.partitions, r.workload.record_bytes)),
    ("producers / consumers", |r| format!("{} / {}", r.workload.producers, r.workload.consumers)),
    ("acks / compression", |r| format!("{} / {:?}", r.workload.acks_name(), r.workload.compression).to_lowercase()),
    ("rate", |r| match r.workload.rate {
        super::workload::Rate::Max => "max".to_string(),
        super::workload::Rate::PerSecond(n) => format!("{n}/s"),
    }),
    ("produce MB/s", |r| format!("{:.2}", r.throughput.produce_mb_per_s)),
    ("produce records/s", |r| format!("{:.0}", r.throughput.produce_records_per_s)),
    ("consume MB/s (all readers)", |r| format!("{:.2}", r.throughput.consume_mb_per_s)),
    ("consume records/s", |r| format!("{:.0}", r.throughput.consume_records_per_s)),
    ("produce p50 ms", |r| ms(r.produce_latency.p50_ms, r.produce_latency.count)),
    ("produce p99 ms", |r| ms(r.produce_latency.p99_ms, r.produce_latency.count)),
    ("produce p99.9 ms", |r| ms(r.produce_latency.p999_ms, r.produce_latency.count)),
    ("produce p99.99 ms", |r| ms(r.produce_latency.p9999_ms, r.produce_latency.count)),
    ("produce max ms", |r| ms(r.produce_latency.max_ms, r.produce_latency.count)),
    ("e2e p50 ms", |r| ms(r.e2e_latency.p50_ms, r.e2e_latency.count)),
    ("e2e p99 ms", |r| ms(r.e2e_latency.p99_ms, r.e2e_latency.count)),
    ("e2e p99.9 ms", |r| ms(r.e2e_latency.p999_ms, r.e2e_latency.count)),
    ("e2e p99.99 ms", |r| ms(r.e2e_latency.p9999_ms, r.e2e_latency.count)),
    ("e2e max ms", |r| ms(r.e2e_latency.max_ms, r.e2e_latency.count)),
    ("failed records", |r| r.counts.failed_records.to_string()),
    ("books", |r| if r.books.ok { "ok".to_string() } else { format!("{} problems", r.books.problems.len()) }),
    ("generator cores busy", |r| format!("{:.2} of {}", r.generator.cores_busy, r.machine.cpus)),
];

/// The table, one column per result, in the order given.
pub fn render(results: &[(PathBuf, RunResult)]) -> String {
    let mut columns: Vec<Vec<String>> = Vec::new();
    let mut labels = vec!["".to_string()];
    labels.extend(ROWS.iter().map(|(label, _)| label.to_string()));
    columns.push(labels);
    for (path, result) in results {
        let mut column = vec![result.label(path)];
        column.extend(ROWS.iter().map(|(_, cell)| cell(result)));
        columns.push(column);
    }
    let widths: Vec<usize> = columns.iter().map(|c| c.iter().map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in 0..=ROWS.len() {
        let mut line = String::new();
        for (i, column) in columns.iter().enumerate() {
            let cell = &column[row];
            if i == 0 {
                line += &format!("{cell:<width$}", width = widths[i]);
            } else {
                line += &format!(" | {cell:>width$}", width = widths[i]);
            }
        }
        out += line.trim_end();
        out.push('\n');
        if row == 0 {
            // The same shape as a row: "-" for each character, "-+-" for each " | ".
            out += &widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("-+-");
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::result::tests::sample_result;

    #[test]
    fn the_table_puts_results_side_by_side() {
        let a = sample_result("max-1k-acks-all", 412.25, 7.0);
        let mut b = sample_result("max-1k-acks-all", 95.5, 31.0);
        b.bootstrap_server = "127.0.0.1:9093".to_string();
        let table = render(&[(PathBuf::from("shardlog.json"), a), (PathBuf::from("kafka.json"), b)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("max-1k-acks-all (shardlog)") && lines[0].contains("max-1k-acks-all (kafka)"), "{table}");
        let row = |label: &str| lines.iter().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no row {label} in\n{table}")).to_string();
        assert!(row("produce MB/s").contains("412.25") && row("produce MB/s").contains("95.50"));
        assert!(row("produce p99 ms").contains(" 7.0") && row("produce p99 ms").contains(" 31.0"), "{table}");
        assert!(row("broker").contains("127.0.0.1:9092") && row("broker").contains("127.0.0.1:9093"));
        // Every line has the same column separators at the same places.
        let bars: Vec<Vec<usize>> = lines.iter().filter(|l| l.contains(" | ")).map(|l| l.match_indices(" | ").map(|(i, _)| i).collect()).collect();
        assert!(bars.windows(2).all(|w| w[0] == w[1]), "{table}");
        assert_eq!(lines.len(), ROWS.len() + 2);
    }
}
