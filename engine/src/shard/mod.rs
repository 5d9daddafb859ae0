//! Shards: one pinned glommio executor per core. A shard owns the partitions the placement table
//! gives it, serves the connections the kernel hands it (SO_REUSEPORT), and forwards work for
//! other shards' partitions over the channel mesh.

pub mod config_ops;
pub mod controller;
pub mod log_dirs;
pub mod maintenance;
pub mod messages;
pub mod partition_ops;
pub mod probe;
pub mod router;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};

use crate::budget::ByteBudget;
use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;
use crate::notify::Notify;
use crate::storage::log::Partition;
use messages::{Envelope, ShardReply, ShardRequest};
use router::Router;

/// Messages buffered per shard pair before a sender waits.
pub const MESH_CHANNEL_CAPACITY: usize = 1024;
/// The shard that owns metadata changes.
pub const CONTROLLER_SHARD: usize = 0;

pub type TopicPartition = (String, i32);

pub struct Shard {
    pub id: usize,
    pub config: Rc<BrokerConfig>,
    pub metadata: RefCell<Rc<ClusterMetadata>>,
    pub metadata_changed: Notify,
    pub partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    pub router: Rc<Router>,
    pub controller: Option<controller::Controller>,
    /// Coordinator of the consumer groups whose offsets partition this shard owns.
    pub groups: Rc<crate::groups::GroupCoordinator>,
    /// Coordinator of the transactional ids whose `__transaction_state` partition this shard owns.
    pub txns: Rc<crate::txn::TxnCoordinator>,
    pub shutting_down: Cell<bool>,
    /// Requests served by this shard's connections, per API.
    pub request_probe: crate::handlers::probe::RequestProbe,
    /// Connections, scheduling lag and stalls of this shard.
    pub shard_probe: probe::ShardProbe,
    /// Zero-copy sends from this shard (a probe: sendfile calls and bytes).
    pub sendfile_calls: Cell<u64>,
    pub sendfile_bytes: Cell<u64>,
    /// Which log directories failed, as this shard knows.
    pub log_dirs: log_dirs::LogDirHealth,
    /// Bytes appended to this shard's partitions and not yet durable
    /// (`shardlog.dirty.shard.bytes`): a produce waits while it is spent.
    pub dirty_budget: Rc<ByteBudget>,
    /// Request bytes read by this shard's connections and not yet answered (its share of
    /// `queued.max.request.bytes`): connections stop reading while it is spent.
    pub request_budget: Rc<ByteBudget>,
    /// `max.connections` and `max.connections.per.ip`, counted over every shard.
    pub connection_limits: Arc<crate::net::limits::ConnectionLimits>,
}

impl Shard {
    pub fn shard_count(&self) -> usize {
        self.router.shard_count()
    }

    pub fn meta_dir(&self) -> PathBuf {
        meta_dir(&self.config)
    }

    /// The owner shard of a partition, or None if the topic or partition does not exist.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        self.metadata.borrow().placement(topic, partition).map(|p| p.shard)
    }

    /// The error for a partition this shard does not hold: KAFKA_STORAGE_ERROR if the metadata
    /// places it here (its log could not be opened, e.g. in a failed log directory), otherwise
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn absent_partition_error(&self, topic: &str, partition: i32) -> i16 {
        use shardlog_protocol::error_code as ec;
        if self.owner(topic, partition) == Some(self.id) {
            ec::KAFKA_STORAGE_ERROR
        } else {
            ec::UNKNOWN_TOPIC_OR_PARTITION
        }
    }

    pub fn local_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    /// Runs `request` on the shard that owns it: here, or over the mesh.
    pub async fn dispatch(self: &Rc<Self>, owner: usize, request: ShardRequest) -> ShardReply {
        if owner == self.id {
            partition_ops::handle(self.clone(), request).await
        } else {
            match self.router.call(owner, request).await {
                Ok(reply) => reply,
                Err(e) => {
                    tracing::error!(shard = owner, error = %e, "cross-shard call failed");
                    ShardReply::Controller(vec![(String::new(), shardlog_protocol::error_code::UNKNOWN_SERVER_ERROR, Some(e.to_string()))])
                }
            }
        }
    }
}

pub fn meta_dir(config: &BrokerConfig) -> PathBuf {
    config.log_dirs[0].join("__shardlog_meta")
}

/// Set by the signal handler; each shard polls it and shuts down cleanly.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Starts one executor per core in `config.cores` and blocks until they all stop.
pub fn run(config: BrokerConfig) -> Result<()> {
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
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(core)).name(&format!("shard-{core}"));
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

async fn run_shard(
    config: BrokerConfig,
    mesh: MeshBuilder<Envelope, glommio::channels::channel_mesh::Full>,
    connection_limits: Arc<crate::net::limits::ConnectionLimits>,
) -> Result<()> {
    let started = std::time::Instant::now();
    let (senders, receivers) = mesh.join().await.map_err(|_| anyhow::anyhow!("joining the shard mesh failed"))?;
    let router = Rc::new(Router::new(senders));
    let id = router.shard_id;
    let is_controller = id == CONTROLLER_SHARD;
    let config = Rc::new(config);
    let controller = if is_controller { Some(controller::Controller::new()) } else { None };
    let shard = Rc::new(Shard {
        id,
        config: config.clone(),
        metadata: RefCell::new(Rc::new(ClusterMetadata::new(String::new()))),
        metadata_changed: Notify::default(),
        partitions: RefCell::new(HashMap::new()),
        router: router.clone(),
        controller,
        groups: Rc::new(crate::groups::GroupCoordinator::new(config.groups.clone())),
        txns: Rc::new(crate::txn::TxnCoordinator::new(config.txn.clone())),
        shutting_down: Cell::new(false),
        request_probe: Default::default(),
        shard_probe: Default::default(),
        sendfile_calls: Cell::new(0),
        sendfile_bytes: Cell::new(0),
        log_dirs: log_dirs::LogDirHealth::new(&config.log_dirs),
        dirty_budget: ByteBudget::new(config.dirty_shard_bytes),
        request_budget: ByteBudget::new(config.queued_request_bytes_per_shard()),
        connection_limits,
    });
    let handler_shard = shard.clone();
    router::spawn_receivers(router, receivers, move |request| partition_ops::handle(handler_shard.clone(), request));

    if is_controller {
        controller::bootstrap(&shard).await?;
    } else {
        // Wait for the controller's first metadata broadcast.
        while shard.metadata.borrow().cluster_id.is_empty() {
            shard.metadata_changed.notified().await;
        }
    }
    shard.groups.load(&shard);
    shard.txns.load(&shard);
    probe::start_lag_probe(&shard);
    maintenance::start(&shard);
    let listeners = crate::net::listen(&shard)?;
    tracing::info!(shard = id, partitions = shard.partitions.borrow().len(), "shard ready");
    if is_controller {
        crate::net::admin_http::start(&shard, started);
        let l: Vec<String> = config.listeners.iter().map(|l| format!("{}://{}", l.name, l.bind)).collect();
        tracing::info!(listeners = ?l, shards = shard.shard_count(), log_dirs = ?config.log_dirs, "shardlog is ready");
    }
    while !SHUTDOWN.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(100)).await;
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
    glommio::timer::sleep(Duration::from_millis(200)).await;
    Ok(())
}
