//! The HTML report: one self-contained page (inline SVG and CSS, no script, nothing fetched)
//! with the summary, throughput over time, p99 over time, and the latency-by-percentile plot.

use std::fmt::Write;

use super::result::RunResult;
use super::stats::LatencySummary;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 30.0;
const MARGIN_BOTTOM: f64 = 45.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy)]
enum Scale {
    Linear,
    /// Log10; values at or below 0 are left out.
    Log,
}

/// About five round steps (1, 2 or 5 times a power of ten) from 0 to `max`.
fn linear_ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 || !max.is_finite() {
        return vec![0.0, 1.0];
    }
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power);
    let mut ticks = vec![0.0];
    while *ticks.last().expect("non-empty") < max {
        ticks.push(ticks.len() as f64 * step);
    }
    ticks
}

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Value to y pixel (None: not drawable, such as 0 on a log axis).
type YMap = Box<dyn Fn(f64) -> Option<f64>>;

/// A line chart. `x_ticks` replaces the numeric x labels (for the percentile axis).
fn chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
    y_scale: Scale,
    x_ticks: Option<&[(f64, &str)]>,
    shade_until_x: Option<f64>,
) -> String {
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_max = xs.fold(0.0f64, f64::max).max(1e-9);
    let ys: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite()).collect();
    let (y_ticks, to_y): (Vec<(f64, String)>, YMap) = match y_scale {
        Scale::Linear => {
            let ticks = linear_ticks(ys.iter().cloned().fold(0.0, f64::max));
            let top = *ticks.last().expect("non-empty");
            (ticks.iter().map(|&t| (t, number(t))).collect(), Box::new(move |y: f64| Some(MARGIN_TOP + plot_h * (1.0 - y / top))))
        }
        Scale::Log => {
            let positive: Vec<f64> = ys.iter().cloned().filter(|&y| y > 0.0).collect();
            let low = positive.iter().cloned().fold(f64::INFINITY, f64::min);
            let high = positive.iter().cloned().fold(0.0, f64::max);
            let (lo, hi) =
                if positive.is_empty() { (0, 1) } else { (low.log10().floor() as i32, (high.log10().ceil() as i32).max(low.log10().floor() as i32 + 1)) };
            let ticks = (lo..=hi).map(|e| (10f64.powi(e), number(10f64.powi(e)))).collect();
            let (lo, hi) = (lo as f64, hi as f64);
            (ticks, Box::new(move |y: f64| (y > 0.0).then(|| MARGIN_TOP + plot_h * (1.0 - (y.log10() - lo) / (hi - lo)))))
        }
    };
    let to_x = |x: f64| MARGIN_LEFT + plot_w * x / x_max;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<text x="{}" y="18" font-size="14" font-weight="bold">{}</text>"#, MARGIN_LEFT, escape(title));
    if let Some(until) = shade_until_x.filter(|&u| u > 0.0) {
        let _ = write!(
            svg,
            r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{:.1}" height="{plot_h}" fill="#eeeeee"/><text x="{:.1}" y="{:.1}" fill="#888">warm-up</text>"##,
            to_x(until.min(x_max)) - MARGIN_LEFT,
            MARGIN_LEFT + 4.0,
            HEIGHT - MARGIN_BOTTOM - 6.0
        );
    }
    for (value, label) in &y_ticks {
        if let Some(y) = to_y(*value) {
            let _ = write!(
                svg,
                r##"<line x1="{MARGIN_LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - MARGIN_RIGHT,
                MARGIN_LEFT - 6.0,
                y + 4.0,
                escape(label)
            );
        }
    }
    let numeric_x: Vec<(f64, String)>;
    let x_tick_list: Vec<(f64, String)> = match x_ticks {
        Some(t) => t.iter().filter(|(x, _)| *x <= x_max + 1e-9).map(|(x, l)| (*x, l.to_string())).collect(),
        None => {
            numeric_x = linear_ticks(x_max).into_iter().filter(|&x| x <= x_max + 1e-9).map(|x| (x, number(x))).collect();
            numeric_x
        }
    };
    let bottom = HEIGHT - MARGIN_BOTTOM;
    for (value, label) in &x_tick_list {
        let x = to_x(*value);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{MARGIN_TOP}" y2="{bottom}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="translate(16,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        MARGIN_LEFT + plot_w / 2.0,
        HEIGHT - 8.0,
        escape(x_label),
        MARGIN_TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s.points.iter().filter_map(|&(x, y)| to_y(y).map(|y| format!("{:.1},{y:.1}", to_x(x)))).collect();
        if !points.is_empty() {
            let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#, points.join(" "));
        }
        let lx = MARGIN_LEFT + 10.0 + i as f64 * 190.0;
        let _ = write!(
            svg,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="3" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            MARGIN_TOP + 8.0,
            lx + 16.0,
            MARGIN_TOP + 13.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Percentile p as "nines": 90% -> 1, 99% -> 2, 99.9% -> 3.
fn nines(percentile: f64) -> f64 {
    let rest = (100.0 - percentile) / 100.0;
    if rest <= 0.0 {
        f64::NAN
    } else {
        -rest.log10()
    }
}

fn percentile_series<'a>(name: &'a str, summary: &LatencySummary) -> Series<'a> {
    let mut points: Vec<(f64, f64)> = summary.curve.iter().filter(|p| p.percentile < 100.0).map(|p| (nines(p.percentile), p.ms)).collect();
    // The max sits one step beyond the last percentile the samples resolve.
    if let Some(&(last, _)) = points.last() {
        points.push((last + 0.3, summary.max_ms));
    }
    Series { name, points }
}

fn latency_row(name: &str, l: &LatencySummary) -> String {
    if l.count == 0 {
        return format!("<tr><th>{}</th><td colspan=\"7\">none recorded</td></tr>", escape(name));
    }
    format!(
        "<tr><th>{}</th><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
        escape(name),
        l.count,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.p9999_ms,
        l.max_ms
    )
}

/// The whole page.
pub fn render(r: &RunResult) -> String {
    let w = &r.workload;
    let t = &r.throughput;
    let c = &r.counts;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>shardlog-bench: {}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:920px;color:#222}} table{{border-collapse:collapse;margin:0.5em 0 1.5em}} \
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} th{{text-align:left;background:#f6f6f6}} \
         .ok{{color:#2a7a2a;font-weight:bold}} .bad{{color:#b00;font-weight:bold}} pre{{background:#f6f6f6;padding:8px;overflow:auto}}\
         </style></head><body>",
        escape(&w.name)
    );
    let _ = write!(
        html,
        "<h1>{}</h1><p>{}</p><p>Broker {}{}, topic <code>{}</code>, {} partitions; {}. Run on {} ({} CPUs, {}, kernel {}).</p>",
        escape(&w.name),
        escape(&w.description),
        escape(&r.bootstrap_server),
        if r.dry_run { " (dry run: in-process null broker)" } else { "" },
        escape(&r.topic),
        w.partitions,
        escape(&r.api_versions.join(", ")),
        escape(&r.machine.hostname),
        r.machine.cpus,
        escape(&r.machine.cpu_model),
        escape(&r.machine.kernel)
    );
    let books = if r.books.ok {
        "<span class=\"ok\">books balance</span>".to_string()
    } else {
        format!(
            "<span class=\"bad\">BOOKS DO NOT BALANCE</span><ul>{}</ul>",
            r.books.problems.iter().map(|p| format!("<li>{}</li>", escape(p))).collect::<String>()
        )
    };
    let warnings: String = r.books.warnings.iter().map(|p| format!("<li>{}</li>", escape(p))).collect();
    let _ = write!(
        html,
        "<h2>Summary</h2><table><tr><th></th><th>records/s</th><th>MB/s</th><th>window s</th></tr>\
         <tr><th>produce (acknowledged)</th><td>{:.0}</td><td>{:.2}</td><td>{:.1}</td></tr>\
         <tr><th>consume (all readers)</th><td>{:.0}</td><td>{:.2}</td><td>{:.1}</td></tr></table>\
         <table><tr><th>latency, ms</th><th>samples</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>{}{}</table>\
         <p>Records: sent {} = acknowledged {} + failed {}. {}</p>{}",
        t.produce_records_per_s,
        t.produce_mb_per_s,
        t.produce_window_s,
        t.consume_records_per_s,
        t.consume_mb_per_s,
        t.consume_window_s,
        latency_row("produce (intended send to ack)", &r.produce_latency),
        latency_row("end to end (intended send to read)", &r.e2e_latency),
        c.sent_records,
        c.acked_records,
        c.failed_records,
        books,
        if warnings.is_empty() { String::new() } else { format!("<ul>{warnings}</ul>") }
    );
    let g = &r.generator;
    let _ = write!(
        html,
        "<p>Generator cost: {:.2} s CPU in {:.1} s wall, {:.2} cores busy ({:.0}% of the machine), {:.3} CPU ms per MB moved.</p>",
        g.cpu_user_s + g.cpu_system_s,
        g.wall_s,
        g.cores_busy,
        g.machine_fraction * 100.0,
        g.cpu_ms_per_mb
    );
    let warmup = if w.is_catchup() { None } else { Some(w.warmup_s as f64) };
    let mb = [
        Series { name: "produce MB/s", points: r.series.iter().map(|s| (s.t_s, s.produce_mb_per_s)).collect() },
        Series { name: "consume MB/s", points: r.series.iter().map(|s| (s.t_s, s.consume_mb_per_s)).collect() },
    ];
    html += "<h2>Throughput over time</h2>";
    html += &chart("Throughput", "seconds since start", "MB/s", &mb, Scale::Linear, None, warmup);
    let records = [
        Series { name: "produce records/s", points: r.series.iter().map(|s| (s.t_s, s.produce_records_per_s)).collect() },
        Series { name: "consume records/s", points: r.series.iter().map(|s| (s.t_s, s.consume_records_per_s)).collect() },
    ];
    html += &chart("Records per second", "seconds since start", "records/s", &records, Scale::Linear, None, warmup);
    let p99 = [
        Series { name: "produce p99", points: r.series.iter().filter(|s| s.produce_p99_ms > 0.0).map(|s| (s.t_s, s.produce_p99_ms)).collect() },
        Series { name: "end-to-end p99", points: r.series.iter().filter(|s| s.e2e_p99_ms > 0.0).map(|s| (s.t_s, s.e2e_p99_ms)).collect() },
    ];
    html += "<h2>Latency</h2>";
    html += &chart("p99 latency of each second", "seconds since start", "ms (log)", &p99, Scale::Log, None, warmup);
    let ticks: [(f64, &str); 7] = [(0.0, "0%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%"), (4.0, "99.99%"), (5.0, "99.999%"), (6.0, "99.9999%")];
    let curves = [percentile_series("produce", &r.produce_latency), percentile_series("end to end", &r.e2e_latency)];
    html += &chart("Latency by percentile (whole measurement window)", "percentile", "ms (log)", &curves, Scale::Log, Some(&ticks), None);
    let _ = write!(
        html,
        "<h2>Workload</h2><pre>{}</pre><p>Command: <code>{}</code></p><p>shardlog-bench {}; started {} ms after the Unix epoch.</p></body></html>",
        escape(&serde_json::to_string_pretty(&r.workload).unwrap_or_default()),
        escape(&r.command_line),
        escape(&r.tool_version),
        r.started_unix_ms
    );
    html.push('\n');
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::result::tests::sample_result;

    #[test]
    fn the_report_is_self_contained_and_has_the_plots() {
        let mut r = sample_result("max-1k-acks-all", 100.0, 7.0);
        r.workload.description = "<script>alert(1)</script>".to_string();
        let html = render(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(!html.contains("<script"), "descriptions are escaped and no script is used");
        assert!(!html.contains("http://") || html.matches("http://").count() == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
        assert!(!html.contains("https://"));
        assert!(html.contains("99.9%"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(linear_ticks(9.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(linear_ticks(430.0), [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }
}
