//! The cross-shard hop: a request to a partition owned by another shard travels over glommio's
//! channel mesh and its reply comes back the same way (`engine/src/shard/router.rs`).
//!
//! Two glommio executors, one thread each, joined by a full mesh of two peers. Peer 0 drives;
//! peer 1 answers. Three cases through the broker's own `Router` and `spawn_receivers` (a
//! pending-reply table, a oneshot per call, one task per request on the receiving side), with a
//! handler that answers at once, so that only the hop is measured:
//! - `Ping`, a call with no payload, answered at once (a small request; until 2026-12-03 this was
//!   `WaitForAppend`, then `Snapshot`, before calls became typed);
//! - `Produce` carrying a 16 KiB record batch as `Bytes` (moved, not copied), answered with a
//!   produce outcome;
//! - 64 small calls in flight at once (many connections' requests for the other shard at once).
//!
//! And as a baseline, the raw mesh with a `u64`: one in flight, and 64 in flight.
//!
//! The executors use `Placement::Unbound` (the kernel decides where they run) unless a case
//! says otherwise; the raw round trip is also measured pinned to CPUs 0 and 1, as the broker
//! runs, and pinned with `spin_before_park`. An idle executor parks in io_uring and is woken
//! through an eventfd: that wake-up is most of the hop's price when the peer has nothing else
//! to do, which the spinning case shows. Each criterion batch starts fresh executors (not
//! timed), so one batch never inherits another's queues. The pinned cases are skipped with
//! fewer than 2 CPUs.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::channel::mpsc;
use futures::StreamExt;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use shardlog_engine::shard::messages::{Produce, ProduceOutcome};
use shardlog_engine::shard::router::{spawn_receivers, Envelope, Router, ShardCall};

/// As the broker's mesh: room for many calls in flight per peer.
const MESH_CHANNEL_CAPACITY: usize = 1024;
/// Calls in flight at once in the pipelined cases; below the channel capacity, so that no send
/// waits for room.
const IN_FLIGHT: usize = 64;
const DRIVER: usize = 0;
const ANSWERER: usize = 1;
const BATCH_BYTES: usize = 16 * 1024;
/// Spin time of the spinning baseline: longer than a round trip, so neither side parks.
const SPIN: Duration = Duration::from_micros(500);

/// How the two executors of the raw-mesh baseline are placed.
#[derive(Clone, Copy)]
enum Setup {
    /// `Placement::Unbound`, as every other case here.
    Unbound,
    /// Pinned to CPUs 0 and 1, as the broker pins its shards (`--cores`).
    Pinned,
    /// Pinned, and spinning for `SPIN` before parking in io_uring, so that a message finds
    /// its peer awake (glommio spins only when pinned). The broker does not spin: it would burn
    /// cores it shares with interrupts and, on this machine, with everything else.
    PinnedSpinning,
}

impl Setup {
    fn name(self) -> String {
        match self {
            Setup::Unbound => String::from("unbound"),
            Setup::Pinned => String::from("pinned"),
            Setup::PinnedSpinning => format!("pinned_spin_before_park_{}us", SPIN.as_micros()),
        }
    }

    fn builder(self, cpu: usize) -> LocalExecutorBuilder {
        match self {
            Setup::Unbound => LocalExecutorBuilder::new(Placement::Unbound),
            Setup::Pinned => LocalExecutorBuilder::new(Placement::Fixed(cpu)),
            Setup::PinnedSpinning => LocalExecutorBuilder::new(Placement::Fixed(cpu)).spin_before_park(SPIN),
        }
    }
}

#[derive(Clone, Copy)]
enum Case {
    Small,
    Produce,
    Pipelined,
}

/// A call with no payload, answered at once.
struct Ping;
impl ShardCall for Ping {
    type Reply = ();
}

/// Stops the answering executor.
struct Stop;
impl ShardCall for Stop {
    type Reply = ();
}

fn produce(batch: &Bytes) -> Produce {
    Produce {
        partitions: vec![(String::from("bench"), 0, batch.clone())],
        request_bytes: batch.len(),
        acks: 1,
        timeout_ms: 30_000,
        transactional_id: None,
        transaction_abortable_known: true,
    }
}

/// The answering shard's services: they reply at once, without touching storage.
fn serve(router: &Router, stop: mpsc::UnboundedSender<()>) {
    router.serve(|_: Ping| async {});
    router.serve(|call: Produce| async move {
        call.partitions
            .iter()
            .map(|(_, _, records)| ProduceOutcome {
                error_code: 0,
                base_offset: records.len() as i64,
                log_append_time_ms: -1,
                log_start_offset: 0,
                error_message: None,
                duplicate: false,
                record_errors: Vec::new(),
            })
            .collect::<Vec<_>>()
    });
    router.serve(move |_: Stop| {
        let _ = stop.unbounded_send(());
        async {}
    });
}

/// Runs `iters` iterations of `case` through the Router on two fresh executors and returns the
/// time the driver spent in them.
fn router_run(case: Case, iters: u64) -> Duration {
    let mesh: MeshBuilder<Envelope, _> = MeshBuilder::full(2, MESH_CHANNEL_CAPACITY);
    let peers: Vec<_> = (0..2)
        .map(|_| {
            let mesh = mesh.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .spawn(move || async move {
                    let (senders, receivers) = mesh.join().await.expect("join the mesh");
                    let router = Rc::new(Router::new(senders));
                    let (stop_tx, mut stop_rx) = mpsc::unbounded();
                    serve(&router, stop_tx);
                    spawn_receivers(router.clone(), receivers);
                    if router.shard_id == ANSWERER {
                        stop_rx.next().await;
                        // The Stop reply is sent by the task that ran the service; let it
                        // finish before this executor goes away.
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                        return None;
                    }
                    let batch = Bytes::from(vec![b'v'; BATCH_BYTES]);
                    let started = Instant::now();
                    for _ in 0..iters {
                        match case {
                            Case::Small => router.call(ANSWERER, Ping).await.expect("reply"),
                            Case::Produce => {
                                let outcomes = router.call(ANSWERER, produce(&batch)).await.expect("reply");
                                debug_assert_eq!(outcomes.len(), 1);
                            }
                            Case::Pipelined => {
                                let calls = (0..IN_FLIGHT).map(|_| router.call(ANSWERER, Ping));
                                for reply in futures::future::join_all(calls).await {
                                    reply.expect("reply");
                                }
                            }
                        }
                    }
                    let elapsed = started.elapsed();
                    router.call(ANSWERER, Stop).await.expect("the answerer stops");
                    Some(elapsed)
                })
                .expect("executor (glommio needs io_uring and about 512 KiB of memlock)")
        })
        .collect();
    peers.into_iter().filter_map(|p| p.join().expect("executor thread")).next().expect("the driver's time")
}

/// The raw mesh: `u64`s echoed by the answerer; `u64::MAX` stops it. `in_flight` messages are
/// sent before the replies are read.
fn raw_run(in_flight: usize, setup: Setup, iters: u64) -> Duration {
    const STOP: u64 = u64::MAX;
    let mesh: MeshBuilder<u64, _> = MeshBuilder::full(2, MESH_CHANNEL_CAPACITY);
    let peers: Vec<_> = (0..2)
        .map(|cpu| {
            let mesh = mesh.clone();
            setup
                .builder(cpu)
                .spawn(move || async move {
                    let (senders, receivers) = mesh.join().await.expect("join the mesh");
                    if senders.peer_id() == ANSWERER {
                        while let Ok(Some(n)) = receivers.recv_from(DRIVER).await {
                            if n == STOP {
                                break;
                            }
                            senders.send_to(DRIVER, n).await.expect("echo");
                        }
                        return None;
                    }
                    let started = Instant::now();
                    for i in 0..iters {
                        for j in 0..in_flight as u64 {
                            senders.send_to(ANSWERER, i * in_flight as u64 + j).await.expect("send");
                        }
                        for j in 0..in_flight as u64 {
                            let n = receivers.recv_from(ANSWERER).await.expect("receive").expect("open");
                            debug_assert_eq!(n, i * in_flight as u64 + j);
                        }
                    }
                    let elapsed = started.elapsed();
                    senders.send_to(ANSWERER, STOP).await.expect("stop");
                    Some(elapsed)
                })
                .expect("executor (glommio needs io_uring and about 512 KiB of memlock)")
        })
        .collect();
    peers.into_iter().filter_map(|p| p.join().expect("executor thread")).next().expect("the driver's time")
}

fn cross_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_shard_router");
    group.throughput(Throughput::Elements(1));
    group.bench_function("round_trip/small", |b| b.iter_custom(|iters| router_run(Case::Small, iters)));
    group.bench_function(format!("round_trip/produce_{BATCH_BYTES}B"), |b| b.iter_custom(|iters| router_run(Case::Produce, iters)));
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function(format!("pipelined/{IN_FLIGHT}_in_flight"), |b| b.iter_custom(|iters| router_run(Case::Pipelined, iters)));
    group.finish();

    let mut group = c.benchmark_group("cross_shard_raw_mesh");
    group.throughput(Throughput::Elements(1));
    // The pinned cases need CPUs 0 and 1.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setups: &[Setup] = if cpus >= 2 { &[Setup::Unbound, Setup::Pinned, Setup::PinnedSpinning] } else { &[Setup::Unbound] };
    for &setup in setups {
        group.bench_function(format!("round_trip/u64/{}", setup.name()), |b| b.iter_custom(|iters| raw_run(1, setup, iters)));
    }
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function(format!("pipelined/{IN_FLIGHT}_in_flight/unbound"), |b| b.iter_custom(|iters| raw_run(IN_FLIGHT, Setup::Unbound, iters)));
    group.finish();
}

criterion_group!(benches, cross_shard);
criterion_main!(benches);
