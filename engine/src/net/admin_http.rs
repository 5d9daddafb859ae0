//! The admin listener (`admin.listeners`, default 127.0.0.1:9644), on shard 0: plain HTTP/1.1,
//! one request per connection.
//!
//! - `GET /metrics`: Prometheus text exposition of every shard's probes.
//! - `GET /v1/health`: 200 `{"ready":true}`, or 503 with the reasons (a shard that does not
//!   answer, an offline partition).
//! - `GET /v1/status`: version, uptime, cluster, registered brokers, shards, partitions, disks, busiest partitions.
//! - `GET|PUT /v1/log-level`: read or replace the log filter (body or `?level=`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde_json::json;

use crate::shard::messages::Snapshot;
use crate::shard::probe::{self, ShardSnapshot};
use crate::shard::Shard;

/// Largest request head (request line and headers) accepted.
const REQUEST_HEAD_BYTES_MAX: usize = 16 << 10;
/// Largest request body accepted (log filters are short).
const REQUEST_BODY_BYTES_MAX: usize = 4 << 10;
/// A client that sends nothing for this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A shard that does not answer a snapshot request in this time is reported unhealthy.
const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Partitions listed in /v1/status as the busiest.
const TOP_PARTITIONS: usize = 10;

/// Binds without SO_REUSEPORT (glommio's `TcpListener::bind` sets it), so that a port another
/// socket holds, a Kafka listener included, is refused instead of shared.
fn bind_exclusive(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?; // a restart must not wait out TIME-WAIT connections
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    // SAFETY: the fd is a bound, listening TCP socket that nothing else owns.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// What the admin listener reports besides the shards: when the process started, and the
/// metadata quorum as this node sees it.
#[derive(Clone)]
pub struct Sources {
    pub started: Instant,
    pub quorum: Rc<crate::controller::quorum::Quorum>,
}

pub fn start(shard: &Rc<Shard>, sources: Sources) {
    let Some(addr) = shard.config.admin_listener else { return };
    let listener = match bind_exclusive(addr) {
        Ok(l) => l,
        Err(e) => {
            // Not fatal: the Kafka listeners are what clients need. Say so loudly.
            tracing::error!(%addr, error = %e, "cannot open the admin listener (admin.listeners); metrics and health are unavailable");
            return;
        }
    };
    tracing::info!(%addr, "admin listener ready (metrics, health, status, log level)");
    let shard = shard.clone();
    glommio::spawn_local(async move {
        while !shard.shutting_down.get() {
            match listener.accept().await {
                Ok(stream) => {
                    let shard = shard.clone();
                    let sources = sources.clone();
                    glommio::spawn_local(async move {
                        let served = futures_lite::future::or(
                            async {
                                serve(&shard, stream, &sources).await;
                                Some(())
                            },
                            async {
                                glommio::timer::sleep(REQUEST_TIMEOUT + SHARD_ANSWER_TIMEOUT).await;
                                None
                            },
                        )
                        .await;
                        if served.is_none() {
                            tracing::debug!("admin request timed out");
                        }
                    })
                    .detach();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .detach();
}

struct Request {
    method: String,
    path: String,
    query: Option<String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, (u16, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| (400, format!("read failed: {e}")))?;
        if n == 0 {
            return Err((400, String::from("connection closed before the request was complete")));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let method = parsed.method.unwrap_or("GET").to_string();
                let target = parsed.path.unwrap_or("/").to_string();
                let length = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if length > REQUEST_BODY_BYTES_MAX {
                    return Err((413, format!("request body of {length} bytes is over the {REQUEST_BODY_BYTES_MAX}-byte limit")));
                }
                let mut body = buf[head..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).await.map_err(|e| (400, format!("read failed: {e}")))?;
                    if n == 0 {
                        return Err((400, String::from("connection closed in the request body")));
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target, None),
                };
                return Ok(Request { method, path, query, body });
            }
            Ok(httparse::Status::Partial) if buf.len() < REQUEST_HEAD_BYTES_MAX => continue,
            Ok(httparse::Status::Partial) => return Err((431, String::from("request head too large"))),
            Err(e) => return Err((400, format!("malformed HTTP request: {e}"))),
        }
    }
}

async fn serve(shard: &Rc<Shard>, mut stream: TcpStream, sources: &Sources) {
    let (status, content_type, body) = match read_request(&mut stream).await {
        Err((status, message)) => (status, "text/plain", message + "\n"),
        Ok(request) => route(shard, request, sources).await,
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.close().await;
}

/// Snapshots of every shard; a shard that does not answer in time is left out and named.
async fn gather(shard: &Rc<Shard>) -> (Vec<ShardSnapshot>, Vec<usize>) {
    let calls = (0..shard.shard_count()).map(|id| {
        let shard = shard.clone();
        async move {
            let call = async { shard.call(id, Snapshot).await.ok() };
            let timeout = async {
                glommio::timer::sleep(SHARD_ANSWER_TIMEOUT).await;
                None
            };
            match futures_lite::future::or(call, timeout).await {
                Some(s) => (id, Some(*s)),
                None => (id, None),
            }
        }
    });
    let mut snapshots = Vec::new();
    let mut silent = Vec::new();
    for (id, s) in futures::future::join_all(calls).await {
        match s {
            Some(s) => snapshots.push(s),
            None => silent.push(id),
        }
    }
    (snapshots, silent)
}

fn resident_memory_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm").ok().and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok())).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    crate::storage::disk::filesystem_bytes(dir).map(|(_, free)| free)
}

async fn route(shard: &Rc<Shard>, request: Request, sources: &Sources) -> (u16, &'static str, String) {
    let listener = shard.config.listeners.first().map(|l| l.name.clone()).unwrap_or_default();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/metrics") => {
            let (snapshots, _) = gather(shard).await;
            (200, "text/plain; version=0.0.4", probe::render(&snapshots, &listener, sources.started.elapsed(), resident_memory_bytes()))
        }
        ("GET", "/v1/health") => {
            let (snapshots, silent) = gather(shard).await;
            let mut reasons: Vec<String> = silent.iter().map(|id| format!("shard {id} did not answer within {SHARD_ANSWER_TIMEOUT:?}")).collect();
            let failed_dirs: std::collections::BTreeMap<&str, &str> =
                snapshots.iter().flat_map(|s| s.failed_log_dirs.iter().map(|(d, why)| (d.as_str(), why.as_str()))).collect();
            for (dir, why) in &failed_dirs {
                reasons.push(format!("log directory {dir} is offline: {why}"));
            }
            for s in &snapshots {
                for p in s.partitions.iter().filter(|p| p.offline && !failed_dirs.contains_key(p.log_dir.as_str())) {
                    reasons.push(format!("partition {}-{} is offline after a storage error (log dir {})", p.topic, p.partition, p.log_dir));
                }
                for p in s.partitions.iter().filter(|p| p.disk_full) {
                    reasons.push(format!("partition {}-{} refuses writes: log directory {} is full", p.topic, p.partition, p.log_dir));
                }
            }
            let ready = reasons.is_empty();
            (if ready { 200 } else { 503 }, "application/json", json!({ "ready": ready, "reasons": reasons }).to_string() + "\n")
        }
        ("GET", "/v1/status") => (200, "application/json", status(shard, sources).await.to_string() + "\n"),
        ("GET", "/v1/log-level") => (200, "application/json", json!({ "filter": crate::logging::current_filter() }).to_string() + "\n"),
        ("PUT" | "POST", "/v1/log-level") => {
            let from_query = request.query.as_deref().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")).map(str::to_string));
            let directives = from_query.unwrap_or_else(|| String::from_utf8_lossy(&request.body).trim().to_string());
            match crate::logging::set_filter(&directives) {
                Ok(()) => (200, "application/json", json!({ "filter": directives }).to_string() + "\n"),
                Err(e) => (400, "text/plain", e + "\n"),
            }
        }
        (_, "/metrics" | "/v1/health" | "/v1/status" | "/v1/log-level") => (405, "text/plain", String::from("method not allowed\n")),
        _ => (404, "text/plain", String::from("not found: try /metrics, /v1/health, /v1/status or /v1/log-level\n")),
    }
}

fn quorum_json(status: &crate::controller::quorum::QuorumStatus, config: &crate::config::QuorumConfig) -> serde_json::Value {
    let voters: Vec<i32> = if config.voters.is_empty() { Vec::new() } else { config.voters.iter().map(|v| v.node_id).collect() };
    json!({
        "leader": status.leader,
        "term": status.term,
        "commit_index": status.commit_index,
        "applied_index": status.applied_index,
        "snapshot_index": status.snapshot_index,
        "voters": voters,
        "dropped_messages": status.dropped_messages,
        "voter_progress": status.voter_progress.iter().map(|(id, matched)| json!({"node_id": id, "log_end_index": matched})).collect::<Vec<_>>(),
    })
}

async fn status(shard: &Rc<Shard>, sources: &Sources) -> serde_json::Value {
    let (snapshots, silent) = gather(shard).await;
    let meta = shard.metadata.borrow().clone();
    let mut partitions: Vec<&probe::PartitionSnapshot> = snapshots.iter().flat_map(|s| s.partitions.iter()).collect();
    let shards: Vec<serde_json::Value> = snapshots
        .iter()
        .map(|s| {
            json!({
                "shard": s.shard,
                "core": shard.config.cores.get(s.shard),
                "partitions": s.partitions.len(),
                "connections": s.connections_open,
                "cpu_seconds": (s.cpu_user_us + s.cpu_system_us) as f64 / 1e6,
                "stalls": s.stalls,
                "cache_bytes": s.cache_bytes,
            })
        })
        .collect();
    let disks: Vec<serde_json::Value> = shard
        .config
        .log_dirs
        .iter()
        .map(|dir| {
            let name = dir.display().to_string();
            let in_dir: Vec<&&probe::PartitionSnapshot> = partitions.iter().filter(|p| std::path::Path::new(&p.log_dir) == dir.as_path()).collect();
            json!({
                "dir": name,
                "partitions": in_dir.len(),
                "size_bytes": in_dir.iter().map(|p| p.size_bytes).sum::<u64>(),
                "free_bytes": free_bytes(dir),
                "offline_partitions": in_dir.iter().filter(|p| p.offline).count(),
            })
        })
        .collect();
    partitions.sort_by_key(|p| std::cmp::Reverse(p.bytes_in + p.bytes_out));
    // Partitions with no traffic (an idle __consumer_offsets, say) would only crowd the busy ones out.
    let top: Vec<serde_json::Value> = partitions
        .iter()
        .filter(|p| p.bytes_in + p.bytes_out > 0)
        .take(TOP_PARTITIONS)
        .map(|p| {
            json!({
                "topic": p.topic, "partition": p.partition, "bytes_in": p.bytes_in, "bytes_out": p.bytes_out,
                "records_in": p.records_in, "records_out": p.records_out, "log_end_offset": p.log_end_offset,
            })
        })
        .collect();
    let roles: Vec<&str> =
        [("broker", shard.config.quorum.broker), ("controller", shard.config.quorum.controller)].iter().filter(|r| r.1).map(|r| r.0).collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": shard.config.node_id,
        // `process.roles`: a broker-only node observes the quorum rather than votes in it.
        "roles": roles,
        "cluster_id": meta.cluster_id,
        "uptime_seconds": sources.started.elapsed().as_secs(),
        "quorum": quorum_json(&sources.quorum.status(), &shard.config.quorum),
        "listeners": shard.config.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect::<Vec<_>>(),
        "shards": shards,
        "silent_shards": silent,
        "topics": meta.topics.len(),
        // The registered brokers as this node's metadata has them.
        "brokers": meta
            .brokers
            .values()
            .map(|b| json!({"node_id": b.node_id, "incarnation_id": b.incarnation_id.to_string(), "rack": b.rack, "fenced": b.fenced}))
            .collect::<Vec<_>>(),
        "partitions": partitions.len(),
        "disks": disks,
        "top_partitions": top,
    })
}
