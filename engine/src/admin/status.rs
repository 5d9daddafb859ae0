//! `shardlog status`: the cluster, shards, disks and busiest partitions of a running broker,
//! read from its admin listener's `/v1/status`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::table::render as render_table;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The broker's admin listener (`admin.listeners`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9644")]
    pub admin_address: String,
    /// Connect and read timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Print the raw JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Largest status document accepted.
const RESPONSE_BYTES_MAX: u64 = 16 << 20;

pub fn fetch(address: &str, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {address:?} (--admin-address wants HOST:PORT)"))?
        .next()
        .with_context(|| format!("{address:?} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to the admin listener at {address}; is the broker running, and is admin.listeners set?"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut response).with_context(|| format!("reading {path} from {address}"))?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("{address} did not answer with HTTP"))?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("{address} sent a malformed status line"))?;
    Ok((status, body.to_string()))
}

pub fn run(args: StatusArgs) -> i32 {
    match run_inner(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shardlog: {e:#}");
            1
        }
    }
}

fn run_inner(args: &StatusArgs) -> Result<()> {
    let (status, body) = fetch(&args.admin_address, "/v1/status", Duration::from_millis(args.timeout_ms))?;
    if status != 200 {
        bail!("the admin listener answered {status}: {}", body.trim());
    }
    if args.json {
        println!("{}", body.trim());
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("the status document is not JSON")?;
    print!("{}", format_status(&v));
    Ok(())
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::from("-"),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The status document as text: a summary line, then shards, disks and top partitions.
pub fn format_status(v: &serde_json::Value) -> String {
    let mut out = format!(
        "shardlog {} node {}{} cluster {}: up {} s, {} topics, {} partitions, listeners {}\n",
        s(&v["version"]),
        s(&v["node_id"]),
        v["roles"].as_array().map(|r| format!(" ({})", r.iter().map(s).collect::<Vec<_>>().join(","))).unwrap_or_default(),
        s(&v["cluster_id"]),
        s(&v["uptime_seconds"]),
        s(&v["topics"]),
        s(&v["partitions"]),
        v["listeners"].as_array().map(|l| l.iter().map(s).collect::<Vec<_>>().join(",")).unwrap_or_default()
    );
    let q = &v["quorum"];
    if q.is_object() {
        let voters = q["voters"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| String::from("this node alone"));
        out += &format!(
            "metadata quorum: leader {}, term {}, committed {}, applied {}, snapshot {}, voters {}\n",
            s(&q["leader"]),
            s(&q["term"]),
            s(&q["commit_index"]),
            s(&q["applied_index"]),
            s(&q["snapshot_index"]),
            voters
        );
        if let Some(progress) = q["voter_progress"].as_array().filter(|a| !a.is_empty()) {
            let rows: Vec<Vec<String>> = progress.iter().map(|p| vec![s(&p["node_id"]), s(&p["log_end_index"])]).collect();
            out += &render_table(&["VOTER", "LOG-END-INDEX"], &rows);
        }
    }
    let empty = Vec::new();
    let rows: Vec<Vec<String>> = v["shards"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|sh| {
            vec![s(&sh["shard"]), s(&sh["core"]), s(&sh["partitions"]), s(&sh["connections"]), s(&sh["cpu_seconds"]), s(&sh["stalls"]), s(&sh["cache_bytes"])]
        })
        .collect();
    out += "\n";
    out += &render_table(&["SHARD", "CORE", "PARTITIONS", "CONNECTIONS", "CPU-SECONDS", "STALLS", "CACHE-BYTES"], &rows);
    if let Some(silent) = v["silent_shards"].as_array().filter(|a| !a.is_empty()) {
        out += &format!("shards not answering: {}\n", silent.iter().map(s).collect::<Vec<_>>().join(","));
    }
    let rows: Vec<Vec<String>> = v["disks"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|d| vec![s(&d["dir"]), s(&d["partitions"]), s(&d["size_bytes"]), s(&d["free_bytes"]), s(&d["offline_partitions"])])
        .collect();
    out += "\n";
    out += &render_table(&["LOG-DIR", "PARTITIONS", "SIZE-BYTES", "FREE-BYTES", "OFFLINE"], &rows);
    let rows: Vec<Vec<String>> = top_partitions(v)
        .into_iter()
        .map(|p| {
            vec![s(&p["topic"]), s(&p["partition"]), s(&p["bytes_in"]), s(&p["bytes_out"]), s(&p["records_in"]), s(&p["records_out"]), s(&p["log_end_offset"])]
        })
        .collect();
    out += "\ntop partitions by bytes in and out\n";
    out += &render_table(&["TOPIC", "PARTITION", "BYTES-IN", "BYTES-OUT", "RECORDS-IN", "RECORDS-OUT", "LOG-END-OFFSET"], &rows);
    out
}

/// Bytes in plus bytes out of one `top_partitions` entry.
fn traffic_bytes(p: &serde_json::Value) -> u64 {
    p["bytes_in"].as_u64().unwrap_or(0).saturating_add(p["bytes_out"].as_u64().unwrap_or(0))
}

/// The partitions worth showing, busiest first: those with no bytes in or out are left out, because a
/// broker (an older one included) may list idle partitions such as an unused `__consumer_offsets`.
fn top_partitions(v: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut top: Vec<&serde_json::Value> = v["top_partitions"].as_array().map(|a| a.iter().filter(|p| traffic_bytes(p) > 0).collect()).unwrap_or_default();
    top.sort_by_key(|p| std::cmp::Reverse(traffic_bytes(p)));
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_a_status_document() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"version":"0.1.0","node_id":1,"cluster_id":"c","uptime_seconds":5,"topics":2,"partitions":3,"listeners":["PLAINTEXT://127.0.0.1:9092"],
            "shards":[{"shard":0,"core":0,"partitions":3,"connections":1,"cpu_seconds":0.5,"stalls":0,"cache_bytes":10}],"silent_shards":[],
            "disks":[{"dir":"/d","partitions":3,"size_bytes":100,"free_bytes":null,"offline_partitions":0}],
            "top_partitions":[{"topic":"t","partition":0,"bytes_in":50,"bytes_out":20,"records_in":5,"records_out":2,"log_end_offset":5}]}"#,
        )
        .unwrap();
        let text = format_status(&v);
        assert!(text.starts_with("shardlog 0.1.0 node 1 cluster c: up 5 s, 2 topics, 3 partitions"), "{text}");
        assert!(text.contains("/d"), "{text}");
        assert!(text.contains("TOPIC"), "{text}");
        assert!(text.lines().any(|l| l.starts_with('t') && l.contains("50")), "{text}");
    }

    #[test]
    fn top_partitions_are_ranked_by_traffic_and_idle_ones_left_out() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"top_partitions":[
            {"topic":"__consumer_offsets","partition":0,"bytes_in":0,"bytes_out":0,"records_in":0,"records_out":0,"log_end_offset":0},
            {"topic":"quiet","partition":1,"bytes_in":10,"bytes_out":0,"records_in":1,"records_out":0,"log_end_offset":1},
            {"topic":"busy","partition":2,"bytes_in":500,"bytes_out":700,"records_in":9,"records_out":9,"log_end_offset":9}]}"#,
        )
        .unwrap();
        let text = format_status(&v);
        assert!(!text.contains("__consumer_offsets"), "{text}");
        let busy = text.find("busy").expect("busy is listed");
        let quiet = text.find("quiet").expect("quiet is listed");
        assert!(busy < quiet, "the busiest partition comes first: {text}");
    }
}
