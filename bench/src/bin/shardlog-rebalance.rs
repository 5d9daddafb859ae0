//! Rebalance time of a classic consumer group with N members, against any Kafka-compatible
//! broker.
//!
//! Each member is a thread with its own connection that joins, syncs, heartbeats every
//! `--heartbeat-ms`, and rejoins when told to. The group forms first; then one more member
//! joins and the clock runs from its JoinGroup until every member (old and new) has synced at
//! the new generation. Run the broker with `group.initial.rebalance.delay.ms=0` (shardlog,
//! Kafka or Redpanda alike) so that only the rebalance itself is measured.
//!
//! `shardlog-rebalance --bootstrap-server 127.0.0.1:9092 --members 10,100,1000 --runs 3`

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use shardlog_engine::admin::client::{Client, ClientConfig};
use shardlog_protocol::error_code::{MEMBER_ID_REQUIRED, REBALANCE_IN_PROGRESS};
use shardlog_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use shardlog_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use shardlog_protocol::kafka_protocol::messages::{GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest};
use shardlog_protocol::kafka_protocol::protocol::StrBytes;

const JOIN_VERSION: i16 = 5;
const SYNC_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 3;
const LEAVE_VERSION: i16 = 2;
const SESSION_TIMEOUT_MS: i32 = 30_000;
const REBALANCE_TIMEOUT_MS: i32 = 60_000;

#[derive(Parser, Debug)]
#[command(about = "Measure consumer-group rebalance time for N members")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// Group sizes to measure, comma-separated.
    #[arg(long, default_value = "10,100,1000", value_delimiter = ',')]
    members: Vec<usize>,
    /// Runs per size; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Heartbeat interval of every member: a rebalance is noticed at the next heartbeat.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Give up on one rebalance after this long.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// What every member thread reports.
struct Shared {
    /// Generation each member last synced at, or -1.
    synced_generation: Vec<AtomicI32>,
    stop: AtomicBool,
    errors: AtomicUsize,
}

struct Member {
    client: Client,
    group: String,
    member_id: String,
    generation: i32,
}

impl Member {
    fn join_and_sync(&mut self) -> Result<()> {
        loop {
            let mut join = JoinGroupRequest::default();
            join.group_id = GroupId(s(&self.group));
            join.session_timeout_ms = SESSION_TIMEOUT_MS;
            join.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            join.member_id = s(&self.member_id);
            join.protocol_type = s("consumer");
            let mut protocol = JoinGroupRequestProtocol::default();
            protocol.name = s("range");
            protocol.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
            join.protocols = vec![protocol];
            let response = self.client.send(&join, JOIN_VERSION)?;
            self.member_id = response.member_id.to_string();
            match response.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => continue,
                code => bail!("JoinGroup failed with error {code}"),
            }
            self.generation = response.generation_id;
            let mut sync = SyncGroupRequest::default();
            sync.group_id = GroupId(s(&self.group));
            sync.generation_id = self.generation;
            sync.member_id = s(&self.member_id);
            if response.leader == response.member_id {
                sync.assignments = response
                    .members
                    .iter()
                    .map(|m| {
                        let mut a = SyncGroupRequestAssignment::default();
                        a.member_id = m.member_id.clone();
                        a.assignment = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
                        a
                    })
                    .collect();
            }
            match self.client.send(&sync, SYNC_VERSION)?.error_code {
                0 => return Ok(()),
                REBALANCE_IN_PROGRESS => continue,
                code => bail!("SyncGroup failed with error {code}"),
            }
        }
    }

    /// Heartbeats until stopped; rejoins whenever the coordinator says so.
    fn run(&mut self, index: usize, shared: &Shared, heartbeat: Duration) -> Result<()> {
        self.join_and_sync()?;
        shared.synced_generation[index].store(self.generation, Ordering::SeqCst);
        while !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(heartbeat);
            let mut hb = HeartbeatRequest::default();
            hb.group_id = GroupId(s(&self.group));
            hb.generation_id = self.generation;
            hb.member_id = s(&self.member_id);
            match self.client.send(&hb, HEARTBEAT_VERSION)?.error_code {
                0 => {}
                REBALANCE_IN_PROGRESS => {
                    self.join_and_sync()?;
                    shared.synced_generation[index].store(self.generation, Ordering::SeqCst);
                }
                code => bail!("Heartbeat failed with error {code}"),
            }
        }
        let mut leave = LeaveGroupRequest::default();
        leave.group_id = GroupId(s(&self.group));
        leave.member_id = s(&self.member_id);
        let _ = self.client.send(&leave, LEAVE_VERSION);
        Ok(())
    }
}

/// Forms a group of `n`, then times the rebalance caused by one more member.
fn measure(args: &Args, n: usize, run: usize) -> Result<(Duration, Duration)> {
    let group = format!("rebalance-bench-{n}-{run}-{}", std::process::id());
    let total = n + 1;
    let shared =
        Arc::new(Shared { synced_generation: (0..total).map(|_| AtomicI32::new(-1)).collect(), stop: AtomicBool::new(false), errors: AtomicUsize::new(0) });
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut threads = Vec::new();
    let config = ClientConfig { timeout: Duration::from_secs(args.timeout_s), ..ClientConfig::default() };
    let spawn_member = |index: usize, barrier: Option<Arc<Barrier>>| -> Result<std::thread::JoinHandle<()>> {
        let client = Client::connect(&args.bootstrap_server, config.clone()).with_context(|| format!("member {index}"))?;
        let shared = shared.clone();
        let heartbeat = Duration::from_millis(args.heartbeat_ms);
        let group = group.clone();
        Ok(std::thread::Builder::new().stack_size(256 << 10).spawn(move || {
            if let Some(b) = barrier {
                b.wait();
            }
            let mut member = Member { client, group, member_id: String::new(), generation: -1 };
            if let Err(e) = member.run(index, &shared, heartbeat) {
                eprintln!("member {index}: {e:#}");
                shared.errors.fetch_add(1, Ordering::SeqCst);
            }
        })?)
    };
    for i in 0..n {
        threads.push(spawn_member(i, Some(barrier.clone()))?);
    }
    let deadline = Duration::from_secs(args.timeout_s);
    let formed_at = Instant::now();
    barrier.wait();
    let wait_all = |members: usize, since: Instant| -> Result<(Duration, i32)> {
        loop {
            let generations: Vec<i32> = shared.synced_generation[..members].iter().map(|g| g.load(Ordering::SeqCst)).collect();
            let max = *generations.iter().max().unwrap_or(&-1);
            if max >= 0 && generations.iter().all(|g| *g == max) {
                return Ok((since.elapsed(), max));
            }
            if shared.errors.load(Ordering::SeqCst) > 0 {
                bail!("a member failed; see above");
            }
            if since.elapsed() > deadline {
                bail!("group of {members} did not settle within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let (formation, generation) = wait_all(n, formed_at)?;
    let trigger = Instant::now();
    threads.push(spawn_member(n, None)?);
    let rebalance = loop {
        let (elapsed, g) = wait_all(total, trigger)?;
        if g > generation {
            break elapsed;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    Ok((formation, rebalance))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!("members  runs  formation_ms(median)  rebalance_ms(median)  rebalance_ms(all)");
    for &n in &args.members {
        let mut formations = Vec::new();
        let mut rebalances = Vec::new();
        for run in 0..args.runs {
            eprint!("\r{n} members: run {}/{}   ", run + 1, args.runs);
            let (f, r) = measure(&args, n, run)?;
            formations.push(f);
            rebalances.push(r);
        }
        eprintln!();
        let all: Vec<String> = rebalances.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)).collect();
        println!(
            "{n:>7}  {:>4}  {:>20.1}  {:>20.1}  {}",
            args.runs,
            median(formations).as_secs_f64() * 1000.0,
            median(rebalances).as_secs_f64() * 1000.0,
            all.join(",")
        );
    }
    Ok(())
}
