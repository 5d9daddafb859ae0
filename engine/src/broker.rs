//! Boot: starts one shard per core and, on each, the layers in order from the bottom up: the
//! shard and its partition calls, the coordinators (groups, transactions, and the controller on
//! shard 0), then the network. This is the one module that knows every layer; each layer below
//! knows only the ones under it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::{self, Full, MeshBuilder};
use anyhow::{Context, Result};
use shardlog_protocol::error_code as ec;

use crate::budget::ByteBudget;
use crate::config::BrokerConfig;
use crate::controller::{Controller, CONTROLLER_SHARD};
use crate::groups::GroupCoordinator;
use crate::metadata::ClusterMetadata;
use crate::net::limits::ConnectionLimits;
use crate::notify::Notify;
use crate::shard::messages::{ApplyMetadata, Snapshot, TxnMarker};
use crate::shard::router::{self, Envelope, Router};
use crate::shard::{log_dirs, maintenance, meta_dir, partition_ops, probe, Shard, MESH_CHANNEL_CAPACITY};
use crate::storage::log::Partition;

/// Set by the signal handler; each shard polls it and shuts down cleanly.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Tells glibc's allocator to keep the memory the broker frees for its next allocations instead
/// of handing it back to the kernel.
///
/// Every request frame is one allocation of its whole size (a produce request is hundreds of KiB),
/// and its batches live on in the batch cache until evicted. With glibc's defaults such a frame
/// was mmapped or, once freed, trimmed off its arena's heap, so the next one faulted in fresh
/// zeroed pages as `recv` filled it: a page fault per 4 KiB received, 30% of the broker's CPU
/// at full produce rate (clear_page under recv in a profile). The budgets (`queued.max.request.bytes`,
/// the batch cache's, the dirty bytes') bound what is held at once, so keeping what was freed
/// bounds the process's memory at that high-water mark, as the JVM's heap bounds Kafka's.
/// Settings given through `GLIBC_TUNABLES` win.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        // The largest mmap threshold glibc accepts (half its 64 MiB arena heap): a larger
        // frame is still mapped on its own, and unmapped when freed.
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        // SAFETY: mallopt only changes the allocator's parameters; both values are in range.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX) == 1 };
        if !set {
            tracing::warn!("glibc refused the allocator settings that keep freed memory for reuse; produce will spend CPU on page faults");
        }
    }
}

/// Starts one executor per core in `config.cores` and blocks until they all stop.
pub fn run(config: BrokerConfig) -> Result<()> {
    keep_freed_memory();
    log_dirs::check_at_start(&config)?;
    let mut config = config;
    claim_listener_ports(&mut config)?;
    // One SCRAM store for every shard, read before any listener accepts.
    config.security.scram.load(&meta_dir(&config))?;
    let config = Arc::new(config);
    let mesh: MeshBuilder<Envelope, _> = MeshBuilder::full(config.cores.len(), MESH_CHANNEL_CAPACITY);
    let connection_limits = Arc::new(crate::net::limits::ConnectionLimits::new(&config));
    let mut handles = Vec::new();
    for &core in &config.cores {
        let mesh = mesh.clone();
        let config = config.clone();
        let connection_limits = connection_limits.clone();
        let mut builder = runtime::shard_executor(core, &format!("shard-{core}")).with_context(|| format!("cannot lay out the executor of core {core}"))?;
        if config.spin_before_park_us > 0 {
            builder = builder.spin_before_park(Duration::from_micros(config.spin_before_park_us));
        }
        let handle = builder
            .spawn(move || async move {
                if let Err(e) = run_shard((*config).clone(), mesh, connection_limits).await {
                    tracing::error!(error = %format!("{e:#}"), "shard failed");
                    SHUTDOWN.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Ok(())
            })
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "cannot start the shard executor on core {core} (glommio needs io_uring and about 512 KiB of locked memory per shard: check `ulimit -l`)"
                )
            })?;
        handles.push(handle);
    }
    let mut failed = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(anyhow::anyhow!("shard thread panicked: {e:?}")),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Shards bind their listeners with SO_REUSEPORT, which would also let a second broker process
/// share the port and steal half the connections. So first look for any socket already
/// listening on the port (as Kafka would fail to bind), and pin down the port if it was 0.
///
/// A test bind cannot do this: a bind without SO_REUSEPORT also collides with the previous
/// run's connections lingering in FIN-WAIT or TIME-WAIT, which must not block a restart.
fn claim_listener_ports(config: &mut BrokerConfig) -> Result<()> {
    for listener in &mut config.listeners {
        if listener.bind.port() == 0 {
            let probe = std::net::TcpListener::bind(listener.bind).with_context(|| format!("cannot listen on {} ({})", listener.bind, listener.name))?;
            let port = probe.local_addr()?.port();
            listener.bind.set_port(port);
            listener.advertised_port = port;
            continue;
        }
        // A socket of a broker that was just killed can linger in LISTEN for a few
        // milliseconds while the kernel tears down its io_uring; one that no live process owns
        // is waited out (bounded), one that a process owns is another broker.
        let deadline = std::time::Instant::now() + LINGERING_LISTENER_WAIT;
        while let Some((owner, inode)) = find_listening_socket(listener.bind) {
            if socket_has_owner(inode) || std::time::Instant::now() >= deadline {
                anyhow::bail!("cannot listen on {} ({}): {owner} is already listening there; is another broker running?", listener.bind, listener.name);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    Ok(())
}

/// How long to wait for the listening socket of a dead process to disappear.
const LINGERING_LISTENER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether any process has the socket with this inode open.
fn socket_has_owner(inode: u64) -> bool {
    let target = format!("socket:[{inode}]");
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    for p in procs.flatten() {
        if !p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return true;
            }
        }
    }
    false
}

/// A socket in LISTEN state that would share `addr`, from /proc/net/tcp and tcp6, with its inode.
fn find_listening_socket(addr: std::net::SocketAddr) -> Option<(String, u64)> {
    const TCP_LISTEN: &str = "0A";
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 4 || fields[3] != TCP_LISTEN {
                continue;
            }
            let Some((ip_hex, port_hex)) = fields[1].split_once(':') else { continue };
            if u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
                continue;
            }
            // The kernel prints addresses in network order, word by word; all zeros is the
            // wildcard, which overlaps every address of its family.
            let wildcard = ip_hex.chars().all(|c| c == '0');
            let same = match addr.ip() {
                std::net::IpAddr::V4(v4) => {
                    ip_hex.len() == 8 && u32::from_str_radix(ip_hex, 16).ok().map(|w| std::net::Ipv4Addr::from(u32::from_be(w))) == Some(v4)
                }
                std::net::IpAddr::V6(_) => false,
            };
            if wildcard || same || addr.ip().is_unspecified() {
                let inode = fields.get(9).and_then(|f| f.parse().ok()).unwrap_or(0);
                return Some((format!("a socket ({table} {})", fields[1]), inode));
            }
        }
    }
    None
}

async fn run_shard(config: BrokerConfig, mesh: MeshBuilder<Envelope, Full>, connection_limits: Arc<ConnectionLimits>) -> Result<()> {
    let started = std::time::Instant::now();
    let (senders, receivers) = mesh.join().await.map_err(|_| anyhow::anyhow!("joining the shard mesh failed"))?;
    let router = Rc::new(Router::new(senders));
    let id = router.shard_id;
    let is_controller = id == CONTROLLER_SHARD;
    let config = Rc::new(config);
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        metadata: RefCell::new(Rc::new(ClusterMetadata::new(String::new()))),
        metadata_changed: Notify::default(),
        partitions: RefCell::new(HashMap::new()),
        leaders: RefCell::new(HashMap::new()),
        router: router.clone(),
        shutting_down: Cell::new(false),
        txn_verifier: Default::default(),
        shard_probe: Default::default(),
        sendfile_calls: Cell::new(0),
        sendfile_bytes: Cell::new(0),
        log_dirs: log_dirs::LogDirHealth::new(&config.log_dirs),
        dirty_budget: ByteBudget::new(config.dirty_shard_bytes),
        batch_cache: crate::storage::cache::ShardCache::new(config.cache_bytes_per_shard()),
        request_budget: ByteBudget::new(config.queued_request_bytes_per_shard()),
        replication_quotas: Default::default(),
        hw_checkpoint: RefCell::new(HashMap::new()),
    });
    // Before the first segment is opened: glommio decides then, per device, whether to poll.
    for (i, dir) in config.log_dirs.iter().enumerate() {
        if shard.log_dirs.is_failed(i) {
            continue;
        }
        match runtime::complete_disk_io_by_interrupt(dir, id).await {
            Ok(how) => tracing::debug!(shard = id, dir = %dir.display(), completions = ?how, "segment writes complete"),
            Err(e) => tracing::warn!(
                shard = id,
                dir = %dir.display(),
                error = %e,
                "cannot keep this shard from busy-polling for its writes in this log directory (it needs to make and remove a FIFO there); produce will spend more CPU"
            ),
        }
    }
    // Read before the first metadata opens any partition.
    *shard.hw_checkpoint.borrow_mut() = crate::shard::hw_checkpoint::load(&config.log_dirs).await;
    // Every call this shard answers is registered before the mesh delivers the first one.
    partition_ops::serve(&shard);
    crate::shard::hw_checkpoint::serve(&shard);
    crate::quota::manager::serve(&shard.router);
    let groups = crate::groups::start(&shard, config.groups.clone());
    let txns = crate::txn::start(&shard, config.txn.clone());
    serve_composed_calls(&shard, &groups, &txns);
    router::spawn_receivers(router, receivers);

    let controller = if is_controller {
        // Controller::start registers its calls before its first await, so before any receiver
        // task spawned above has run: no controller call can find it missing.
        Some(Controller::start(&shard).await?)
    } else {
        // Wait for the controller's first metadata broadcast.
        while shard.metadata.borrow().cluster_id.is_empty() {
            shard.metadata_changed.notified().await;
        }
        None
    };
    groups.load(&shard);
    txns.load(&shard);
    probe::start_lag_probe(&shard);
    maintenance::start(&shard);
    crate::shard::hw_checkpoint::start(&shard);
    crate::replication::start(&shard);
    let listeners = crate::net::listen(&shard, connection_limits)?;
    tracing::info!(shard = id, partitions = shard.partitions.borrow().len(), "shard ready");
    if is_controller {
        let quorum = controller.as_ref().expect("shard 0 runs the controller").quorum_handle();
        crate::net::admin_http::start(&shard, crate::net::admin_http::Sources { started, quorum });
        let l: Vec<String> = config.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect();
        tracing::info!(listeners = ?l, shards = shard.shard_count(), log_dirs = ?config.log_dirs, "shardlog is ready");
    }
    while !SHUTDOWN.load(Ordering::SeqCst) {
        runtime::sleep(Duration::from_millis(100)).await;
    }
    shard.shutting_down.set(true);
    drop(listeners);
    let parts: Vec<Rc<Partition>> = shard.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
    for p in parts {
        if let Err(e) = p.close(true).await {
            tracing::error!(topic = %p.topic, partition = p.partition, error = %format!("{e:#}"), "clean close failed");
        }
    }
    tracing::info!(
        shard = id,
        sendfile_calls = shard.sendfile_calls.get(),
        sendfile_bytes = shard.sendfile_bytes.get(),
        cross_shard_calls = shard.router.calls.get(),
        "shard stopped"
    );
    // Give peers time to finish their replies to us before the mesh goes away.
    runtime::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The shard calls that reach the coordinators as well as the partitions: a transaction marker
/// on an offsets partition applies the offsets committed in that transaction; deleted topics'
/// committed offsets are forgotten; a snapshot carries the request and group metrics.
fn serve_composed_calls(shard: &Rc<Shard>, groups: &Rc<GroupCoordinator>, txns: &Rc<crate::txn::TxnCoordinator>) {
    let g = groups.clone();
    shard.serve(move |shard, marker: TxnMarker| {
        let groups = g.clone();
        async move {
            let code = partition_ops::write_marker(&shard, &marker).await;
            if code == ec::NONE && marker.topic == crate::groups::offsets::OFFSETS_TOPIC {
                groups.complete_txn(marker.partition, marker.producer_id, marker.commit);
            }
            code
        }
    });
    let g = groups.clone();
    let t = txns.clone();
    shard.serve(move |shard, ApplyMetadata(meta): ApplyMetadata| {
        let (groups, txns) = (g.clone(), t.clone());
        async move {
            let gone = partition_ops::apply_metadata(&shard, *meta).await;
            // The coordinators follow the leadership of their state partitions at once, before
            // any request sees the new metadata's leaders.
            groups.follow_leadership(&shard);
            txns.follow_leadership(&shard);
            if !gone.is_empty() {
                groups.forget_topics(&shard, &gone).await;
            }
        }
    });
    let g = groups.clone();
    shard.serve(move |shard, _: Snapshot| {
        let groups = g.clone();
        let mut snapshot = probe::snapshot(&shard);
        snapshot.requests = crate::handlers::probe::snapshot();
        snapshot.produce_order_violations = crate::handlers::probe::produce_order_violations();
        snapshot.quota_throttles = crate::quota::manager::with(|m| m.throttle_stats());
        snapshot.committed = groups.committed_offsets();
        async move { Box::new(snapshot) }
    });
}
