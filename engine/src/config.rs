//! Broker configuration, with Kafka's property names.
//!
//! Sources, lowest precedence first: built-in defaults, the `--config` file (Java properties or
//! TOML), then command-line flags.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use crate::security::listeners::{parse_listener, parse_listeners, parse_listeners_with_map, Listener};

/// Engine settings for one disk, from `shardlog tune iotune`'s measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSettings {
    pub write_bytes_max: usize,
    pub group_commit_window_us: u64,
    pub writes_in_flight_max: u32,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`: the broker id given to clients.
    pub node_id: i32,
    /// `cluster.id`; generated and persisted on first start when not set.
    pub cluster_id: Option<String>,
    /// `log.dirs`: one directory per disk; partitions are spread over them.
    pub log_dirs: Vec<PathBuf>,
    pub listeners: Vec<Listener>,
    /// `num.partitions`: partitions of an auto-created topic, and the CreateTopics default.
    pub num_partitions: i32,
    /// `default.replication.factor`: replicas of each partition of an auto-created topic, and
    /// the CreateTopics default (replication factor -1).
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor` and `transaction.state.log.replication.factor`:
    /// replicas of each partition of `__consumer_offsets` and `__transaction_state`, fixed at
    /// their creation (a cluster with fewer live brokers then gets one replica per live
    /// broker, where Kafka would refuse to create them). Kafka's default, 3: the coordinators
    /// move with their partitions' leaders.
    pub offsets_topic_replication_factor: i16,
    pub transaction_state_log_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `max.request.partition.size.limit`: the most partitions one DescribeTopicPartitions
    /// answer describes (the client pages through the rest).
    pub max_request_partition_size_limit: i32,
    /// `log.segment.bytes`.
    pub log_segment_bytes: u64,
    /// `log.roll.ms` (or `log.roll.hours`): roll a segment this old even if it is not full.
    pub log_roll_ms: u64,
    /// `log.index.interval.bytes`: bytes between two offset-index entries.
    pub log_index_interval_bytes: u64,
    /// `message.max.bytes`: the largest record batch a partition accepts.
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`: the largest request frame; longer ones close the connection.
    pub socket_request_max_bytes: usize,
    /// `log.message.timestamp.type`: CreateTime or LogAppendTime.
    pub log_append_time: bool,
    /// `log.flush.interval.ms`: how long acks=0/1 data may sit in memory before the group-commit
    /// flusher writes and fdatasyncs it. acks=all always waits for the fdatasync.
    pub log_flush_interval_ms: u64,
    /// `shardlog.cache.partition.bytes`: one partition's own bound on the recent batches it
    /// keeps in memory (`usize::MAX`, -1 in the file: only the shard's bound).
    pub cache_partition_bytes: usize,
    /// `shardlog.cache.shard.bytes`: recent batches kept in memory by all of one shard's
    /// partitions together, the oldest dropped first; None (-1, the default) is a share of
    /// the machine's memory ([`BrokerConfig::cache_bytes_per_shard`]).
    pub cache_shard_bytes: Option<usize>,
    /// `shardlog.fetch.long.poll.watchers.max`: bound on waiting fetches per partition.
    pub fetch_watchers_max: usize,
    /// `queued.max.requests`: requests in flight per connection (pipelining bound).
    pub connection_requests_inflight_max: usize,
    /// `queued.max.request.bytes`: request bytes read and not yet answered, for the whole
    /// broker (each shard gets an equal share); None (-1) is no bound, as in Kafka.
    pub queued_max_request_bytes: Option<usize>,
    /// `shardlog.dirty.shard.bytes`: bytes appended to one shard's partitions and not yet
    /// durable. A produce that would pass it waits for the flushers (back-pressure).
    pub dirty_shard_bytes: usize,
    /// `max.connections`: open client connections, all listeners and shards together. At the
    /// limit, new connections wait in the listen backlog until one closes, as in Kafka.
    pub max_connections: usize,
    /// `max.connections.per.ip` and `max.connections.per.ip.overrides`: a connection past its
    /// address's limit is closed at once, as in Kafka.
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// `--cores`: the CPUs that run shards, one shard each.
    pub cores: Vec<usize>,
    /// `shardlog.cores` from the config file (a CPU list, or `auto`); `--cores` overrides it.
    pub cores_spec: Option<String>,
    /// `shardlog.io.properties.file`: disk limits measured by `shardlog tune iotune`. Without
    /// it, `io-properties.toml` in the first log directory is used if present.
    pub io_properties_file: Option<PathBuf>,
    /// Per log directory (same order as `log_dirs`): settings taken from the io-properties
    /// file, or None for the defaults.
    pub disk_settings: Vec<Option<DiskSettings>>,
    /// `admin.listeners`: the HTTP admin listener (metrics, health, status, log level);
    /// None disables it.
    pub admin_listener: Option<SocketAddr>,
    /// `shardlog.metrics.enabled`: counts on the produce and fetch paths.
    pub metrics_enabled: bool,
    /// `shardlog.spin.before.park.us`: how long an idle shard keeps polling before it sleeps
    /// in io_uring (0: sleeps at once). Spinning trades idle CPU for the ~0.1 ms it takes to
    /// wake a sleeping shard (a cross-shard hop to an idle shard; bench/results criterion).
    pub spin_before_park_us: u64,
    /// Consumer-group settings (`group.*`, `offsets.*`).
    pub groups: GroupConfig,
    /// Transaction coordinator settings (`transaction.*`).
    pub txn: TxnConfig,
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::authorizer::AuthorizerConfig,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`, fixed at its creation.
    pub offsets_topic_partitions: i32,
    /// TLS and SASL per listener, and the SCRAM credential store (`ssl.*`, `sasl.*`,
    /// `listener.name.<l>.*`; see `security::settings`).
    pub security: crate::security::SecurityConfig,
    /// When the inter-broker listener is SSL: the TLS client config this broker reaches the
    /// others with (see [`crate::security::tls::build_inter_broker_client_config`]).
    pub inter_broker_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// When the inter-broker listener is SASL_PLAINTEXT or SASL_SSL: how this broker logs in to
    /// the others (`sasl.mechanism.inter.broker.protocol` and its JAAS `username`/`password`).
    pub inter_broker_sasl: Option<crate::security::sasl::ClientLogin>,
    /// Every property as the configuration file (and flags) gave it: the STATIC_BROKER_CONFIG
    /// level of DescribeConfigs, and the broker defaults of topic configs (`topic_config` reads
    /// them; this module checks them against `topic_config_table`, a leaf, not `topic_config`).
    pub properties: BTreeMap<String, String>,
    /// `log.cleaner.enable`: compaction of `cleanup.policy=compact` topics runs (Kafka's default,
    /// true). Off, compacted topics keep every record.
    pub log_cleaner_enable: bool,
    /// `inter.broker.listener.name`: the listener this broker reaches other brokers on
    /// (transaction markers). None: the first client listener (see [`Self::inter_broker_listener`]).
    pub inter_broker_listener_name: Option<String>,
    /// `log.cleaner.io.max.bytes.per.second`: the cleaner's reads plus writes, all partitions
    /// together. Kafka's default, Double.MaxValue, is no bound; so is anything from 1e15 up.
    pub log_cleaner_io_max_bytes_per_second: f64,
    /// The metadata quorum: `process.roles`, `controller.quorum.*`, `controller.listener.names`.
    pub quorum: QuorumConfig,
    /// How followers copy their leaders' logs (Kafka's `replica.*` settings).
    pub replication: ReplicationConfig,
    /// `broker.rack`: the rack (or zone) this broker is in, carried in its registration so that
    /// the controller spreads a topic's partitions and replicas over racks. None: no rack.
    pub broker_rack: Option<String>,
    /// `quota.window.num` and `quota.window.size.seconds`: client quotas are measured over
    /// this many samples of this long each.
    pub quota_window: crate::quota::manager::WindowConfig,
}

/// The `replica.selector.class` values shardlog has: Kafka's two selectors (KIP-392).
pub const RACK_AWARE_REPLICA_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";
pub const LEADER_SELECTOR: &str = "org.apache.kafka.common.replica.LeaderSelector";

/// Bounds on `quota.window.num` and `quota.window.size.seconds` (Kafka has none): each
/// measured client keeps one sample per window, and a window beyond a day measures nothing.
pub const QUOTA_WINDOW_NUM_MAX: u64 = 1000;
pub const QUOTA_WINDOW_SECONDS_MAX: u64 = 86_400;

/// The longest `broker.rack`: it travels in every registration record.
pub const BROKER_RACK_BYTES_MAX: usize = 255;

/// One voter of the metadata quorum, as `controller.quorum.voters` names it (`id@host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    /// Where its controller listener is (host:port).
    pub address: String,
    /// The id of its metadata directory (KIP-853's replica key), where the quorum recorded it:
    /// a dynamic quorum's voters have one; `controller.quorum.voters` names none.
    pub directory_id: Option<uuid::Uuid>,
}

impl QuorumVoter {
    /// Whether this voter is the node `node_id` whose metadata directory is `directory_id`: a
    /// node that comes back under a voter's id with another directory (a replaced disk) is not
    /// that voter. A voter recorded without an id is matched by node id alone.
    pub fn is(&self, node_id: i32, directory_id: uuid::Uuid) -> bool {
        self.node_id == node_id && self.directory_id.is_none_or(|d| d == directory_id)
    }

    /// Voters from a list of (node id, controller listener), as records and hellos carry
    /// them, and the directory ids recorded beside it.
    pub fn joined(list: &[(i32, String)], directory_ids: &BTreeMap<i32, uuid::Uuid>) -> Vec<QuorumVoter> {
        list.iter()
            .map(|(node_id, address)| QuorumVoter { node_id: *node_id, address: address.clone(), directory_id: directory_ids.get(node_id).copied() })
            .collect()
    }

    /// The directory ids `voters` record, by node id (the other half of [`QuorumVoter::joined`]).
    pub fn directory_ids(voters: &[QuorumVoter]) -> BTreeMap<i32, uuid::Uuid> {
        voters.iter().filter_map(|v| Some((v.node_id, v.directory_id?))).collect()
    }
}

/// The KRaft settings shardlog honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// `process.roles` includes `broker`: this node serves clients and holds partitions.
    pub broker: bool,
    /// `process.roles` includes `controller`: this node is a voter of the metadata quorum.
    pub controller: bool,
    /// `controller.quorum.voters`. Empty: a quorum of this node alone (the embedded default, a
    /// one-node cluster), which needs no controller listener, or a dynamic quorum found
    /// through `bootstrap_servers`.
    pub voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers` (KIP-853): controller listeners (`host:port`) to
    /// ask for the quorum's voters when `controller.quorum.voters` is not set. The voter set
    /// then lives in the metadata log (Kafka's kraft.version 1), not in the configuration.
    pub bootstrap_servers: Vec<String>,
    /// Set at start, not by configuration: `voters` were found (in the metadata log, from
    /// `shardlog format`, or through the bootstrap servers) for a dynamic quorum.
    pub voters_found: bool,
    /// Set at start, not by configuration: this node's metadata directory id (the first log
    /// directory's meta.properties).
    pub directory_id: Option<uuid::Uuid>,
    /// `controller.listener.names`: listeners that carry the quorum's traffic, not clients'.
    pub controller_listener_names: Vec<String>,
    /// `controller.quorum.fetch.timeout.ms`: how long a voter goes without hearing from the
    /// leader before it stands for election.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`: the spread of the random wait before standing
    /// (so that voters rarely stand at once, and a split vote is retried after it).
    pub election_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`: how often a broker tells the active controller it lives.
    pub broker_heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`: a broker not heard from for this long is fenced (it leads
    /// nothing and is not listed to clients) until it heartbeats again.
    pub broker_session_timeout_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`: once this many bytes were appended
    /// to the metadata log since its last snapshot, the log is compacted into a new one.
    pub snapshot_bytes: u64,
    /// Set when the controller listener is SSL (`listener.security.protocol.map`): every quorum
    /// link, to it and from it, is TLS.
    pub tls: Option<QuorumTls>,
}

/// TLS on the quorum's links, as Kafka's controllers and brokers use the controller listener's
/// own settings (`listener.name.<name>.ssl.*`, then `ssl.*`) both to listen and to connect.
#[derive(Clone)]
pub struct QuorumTls {
    /// The controller listener's name, for log lines.
    pub listener: String,
    /// How this node connects to controller listeners (voters, bootstrap servers): the
    /// truststore verifies the controller's certificate and host, and the keystore is presented.
    pub client: std::sync::Arc<rustls::ClientConfig>,
    /// Where this node's own controller listener's acceptor is: the listeners' security (one
    /// entry per listener, in `BrokerConfig::listeners` order) and the entry's position. None
    /// on a broker-only node, which does not listen for the quorum. The acceptor is the one
    /// every TLS listener has, so it reloads replaced certificates alike.
    server: Option<(std::sync::Arc<Vec<crate::security::ListenerSecurity>>, usize)>,
}

impl QuorumTls {
    /// The controller listener's TLS acceptor, on a node that has that listener.
    pub fn acceptor(&self) -> Option<&crate::security::tls::TlsAcceptor> {
        let (listeners, position) = self.server.as_ref()?;
        listeners.get(*position)?.tls.as_ref()
    }
}

impl std::fmt::Debug for QuorumTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The configs hold keys: the listener's name says enough.
        f.debug_struct("QuorumTls").field("listener", &self.listener).field("listens", &self.server.is_some()).finish_non_exhaustive()
    }
}

impl PartialEq for QuorumTls {
    fn eq(&self, other: &Self) -> bool {
        self.listener == other.listener && std::sync::Arc::ptr_eq(&self.client, &other.client) && self.server.is_some() == other.server.is_some()
    }
}

impl Eq for QuorumTls {}

/// How followers copy their leaders' logs, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.fetch.wait.max.ms`: how long a leader holds a follower's fetch for new data.
    pub fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes asked per partition in one fetch (a larger batch still
    /// comes whole).
    pub fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`: bytes asked per fetch in all.
    pub fetch_response_max_bytes: usize,
    /// `replica.fetch.backoff.ms`: the pause after a failed fetch.
    pub fetch_backoff_ms: u64,
    /// `replica.lag.time.max.ms`: a follower that has not caught up for this long leaves the ISR.
    pub lag_time_max_ms: u64,
    /// `auto.leader.rebalance.enable`: the active controller moves leadership back to each
    /// partition's preferred replica once it is live and in sync again.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often it looks.
    pub leader_imbalance_check_interval_s: u64,
    /// `replication.quota.window.num` and `replication.quota.window.size.seconds`: replication
    /// quotas (`*.replication.throttled.rate`) are measured over this many windows of this
    /// length (Kafka's defaults: 11 of 1 s).
    pub quota_window: crate::quota::manager::WindowConfig,
    /// `replica.selector.class` is Kafka's RackAwareReplicaSelector: a leader sends a consumer
    /// whose `client.rack` names another replica's rack to fetch from that replica (KIP-392).
    pub rack_aware_replica_selector: bool,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the high watermarks are
    /// written to each log directory's `replication-offset-checkpoint`.
    pub high_watermark_checkpoint_interval_ms: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            fetch_wait_max_ms: 500,
            fetch_max_bytes: 1 << 20,
            fetch_response_max_bytes: 10 << 20,
            fetch_backoff_ms: 1000,
            lag_time_max_ms: 30_000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_s: 300,
            quota_window: crate::quota::manager::WindowConfig { samples: 11, window_ms: 1000 },
            rack_aware_replica_selector: false,
            high_watermark_checkpoint_interval_ms: 5000,
        }
    }
}

impl QuorumConfig {
    /// Whether the voter set is dynamic (KIP-853): named by no configuration, but found
    /// through `controller.quorum.bootstrap.servers` and kept in the metadata log. As in
    /// Kafka, `controller.quorum.voters` wins when both are set.
    pub fn dynamic(&self) -> bool {
        self.voters_found || (self.voters.is_empty() && !self.bootstrap_servers.is_empty())
    }
}

impl Default for QuorumConfig {
    fn default() -> Self {
        // Kafka's defaults.
        QuorumConfig {
            broker: true,
            controller: true,
            voters: Vec::new(),
            bootstrap_servers: Vec::new(),
            voters_found: false,
            directory_id: None,
            controller_listener_names: Vec::new(),
            fetch_timeout_ms: 2000,
            election_timeout_ms: 1000,
            broker_heartbeat_interval_ms: 2000,
            broker_session_timeout_ms: 9000,
            snapshot_bytes: 20 << 20,
            tls: None,
        }
    }
}

/// Parses `controller.quorum.voters`: `1@host:port,2@host:port`.
pub fn parse_quorum_voters(value: &str) -> Result<Vec<QuorumVoter>> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) = item.split_once('@').with_context(|| format!("controller.quorum.voters entry {item:?} must be ID@HOST:PORT"))?;
        let node_id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .with_context(|| format!("controller.quorum.voters entry {item:?}: {id:?} is not a node id (0 or more)"))?;
        let (host, port) = address.rsplit_once(':').with_context(|| format!("controller.quorum.voters entry {item:?} has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            bail!("controller.quorum.voters entry {item:?}: {address:?} is not HOST:PORT");
        }
        if voters.iter().any(|v| v.node_id == node_id) {
            bail!("controller.quorum.voters names node {node_id} twice");
        }
        voters.push(QuorumVoter { node_id, address: address.to_string(), directory_id: None });
    }
    Ok(voters)
}

/// Parses `controller.quorum.bootstrap.servers`: `host:port,host:port`.
pub fn parse_bootstrap_servers(value: &str) -> Result<Vec<String>> {
    let mut servers: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (host, port) = item.rsplit_once(':').with_context(|| format!("controller.quorum.bootstrap.servers entry {item:?} must be HOST:PORT"))?;
        if host.is_empty() || host.contains('@') || port.parse::<u16>().is_err() {
            bail!(
                "controller.quorum.bootstrap.servers entry {item:?} is not HOST:PORT (node ids are not named here: the voters are found through these servers)"
            );
        }
        if !servers.iter().any(|s| s == item) {
            servers.push(item.to_string());
        }
    }
    Ok(servers)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 1,
            cluster_id: None,
            log_dirs: vec![PathBuf::from("./data")],
            listeners: vec![parse_listener("PLAINTEXT://127.0.0.1:9092", None).expect("default listener")],
            num_partitions: 1,
            default_replication_factor: 1,
            offsets_topic_replication_factor: 3,
            transaction_state_log_replication_factor: 3,
            auto_create_topics_enable: true,
            max_request_partition_size_limit: 2000,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * 24 * 3600 * 1000,
            log_index_interval_bytes: 4096,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            log_append_time: false,
            log_flush_interval_ms: 5,
            cache_partition_bytes: usize::MAX,
            cache_shard_bytes: None,
            fetch_watchers_max: 4096,
            connection_requests_inflight_max: 16,
            quota_window: Default::default(),
            queued_max_request_bytes: Some(QUEUED_MAX_REQUEST_BYTES_DEFAULT),
            dirty_shard_bytes: DIRTY_SHARD_BYTES_DEFAULT,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            cores: Vec::new(),
            cores_spec: None,
            io_properties_file: None,
            disk_settings: Vec::new(),
            admin_listener: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            metrics_enabled: true,
            spin_before_park_us: 0,
            groups: GroupConfig::default(),
            txn: TxnConfig::default(),
            authorizer: crate::authorizer::AuthorizerConfig::default(),
            offsets_topic_partitions: 50,
            security: crate::security::SecurityConfig::default(),
            inter_broker_tls: None,
            inter_broker_sasl: None,
            properties: BTreeMap::new(),
            log_cleaner_enable: true,
            inter_broker_listener_name: None,
            log_cleaner_io_max_bytes_per_second: f64::MAX,
            quorum: QuorumConfig::default(),
            replication: ReplicationConfig::default(),
            broker_rack: None,
        }
    }
}

/// Command-line overrides; `None` leaves the file's or default value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listeners: Option<String>,
    pub cores: Option<String>,
    pub config_file: Option<PathBuf>,
}

impl BrokerConfig {
    pub fn load(overrides: &Overrides) -> Result<BrokerConfig> {
        let mut properties = BTreeMap::new();
        if let Some(path) = &overrides.config_file {
            properties = read_config_file(path)?;
        }
        if let Some(dir) = &overrides.data_dir {
            properties.insert("log.dirs".into(), dir.display().to_string());
        }
        if let Some(listeners) = &overrides.listeners {
            properties.insert("listeners".into(), listeners.clone());
        }
        let mut config = BrokerConfig::from_properties(&properties)?;
        config.cores = match overrides.cores.as_deref().or(config.cores_spec.as_deref()) {
            Some("auto") => automatic_cores()?,
            Some(list) => parse_core_list(list)?,
            None => available_cores()?,
        };
        config.load_io_properties()?;
        config.check_admin_listener()?;
        Ok(config)
    }

    /// The Kafka listeners bind with SO_REUSEPORT, so an admin listener on one of their
    /// addresses would silently take a share of the Kafka connections.
    fn check_admin_listener(&self) -> Result<()> {
        let Some(admin) = self.admin_listener else { return Ok(()) };
        for l in &self.listeners {
            let overlaps = l.bind.ip() == admin.ip() || l.bind.ip().is_unspecified() || admin.ip().is_unspecified();
            if admin.port() != 0 && l.bind.port() == admin.port() && overlaps {
                bail!("admin.listeners={admin} overlaps the Kafka listener {}://{}: give the admin listener its own port", l.name, l.bind);
            }
        }
        Ok(())
    }

    /// Reads the io-properties file, if there is one, and logs what each log directory gets.
    fn load_io_properties(&mut self) -> Result<()> {
        let path = match &self.io_properties_file {
            Some(p) => p.clone(),
            None => {
                let default = self.log_dirs[0].join("io-properties.toml");
                if !default.exists() {
                    self.disk_settings = vec![None; self.log_dirs.len()];
                    return Ok(());
                }
                default
            }
        };
        let props = shardlog_tuning::read_io_properties(&path)
            .with_context(|| format!("reading the io-properties file {} (made by `shardlog tune iotune`)", path.display()))?;
        self.disk_settings = self
            .log_dirs
            .iter()
            .map(|dir| {
                let disk = props.disk_for(dir);
                match disk {
                    Some(d) => {
                        let s = DiskSettings {
                            write_bytes_max: d.engine.write_buffer_bytes as usize,
                            group_commit_window_us: d.engine.group_commit_window_us,
                            writes_in_flight_max: d.engine.writes_in_flight_max,
                        };
                        tracing::info!(
                            log_dir = %dir.display(),
                            io_properties = %path.display(),
                            write_bytes_max = s.write_bytes_max,
                            group_commit_window_us = s.group_commit_window_us,
                            writes_in_flight_max = s.writes_in_flight_max,
                            "disk settings from iotune: DMA writes of up to write_bytes_max, acks=0/1 flush window of group_commit_window_us \
                             (replacing log.flush.interval.ms), and up to writes_in_flight_max DMA writes at once per flush"
                        );
                        Some(s)
                    }
                    None => {
                        tracing::warn!(log_dir = %dir.display(), io_properties = %path.display(), "no measurements for this log directory in the io-properties file; using defaults (run `shardlog tune iotune --dir` for it)");
                        None
                    }
                }
            })
            .collect();
        Ok(())
    }

    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<BrokerConfig> {
        let mut c = BrokerConfig::default();
        let mut advertised = None;
        for (key, value) in properties {
            let value = value.trim();
            let context = || format!("invalid value {value:?} for {key}");
            match key.as_str() {
                "node.id" | "broker.id" => c.node_id = value.parse().with_context(context)?,
                "cluster.id" => c.cluster_id = Some(value.to_string()),
                "process.roles" => {
                    let roles: Vec<&str> = value.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
                    if let Some(bad) = roles.iter().find(|r| !matches!(**r, "broker" | "controller")) {
                        bail!("process.roles={value}: {bad:?} is not a role; give broker, controller, or both");
                    }
                    if roles.is_empty() {
                        bail!("process.roles is empty: give broker, controller, or both");
                    }
                    c.quorum.broker = roles.contains(&"broker");
                    c.quorum.controller = roles.contains(&"controller");
                }
                "controller.quorum.voters" => c.quorum.voters = parse_quorum_voters(value)?,
                "controller.quorum.bootstrap.servers" => c.quorum.bootstrap_servers = parse_bootstrap_servers(value)?,
                "controller.listener.names" => c.quorum.controller_listener_names = value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect(),
                "controller.quorum.fetch.timeout.ms" => c.quorum.fetch_timeout_ms = positive(value, key)? as u64,
                "controller.quorum.election.timeout.ms" => c.quorum.election_timeout_ms = positive(value, key)? as u64,
                "broker.heartbeat.interval.ms" => c.quorum.broker_heartbeat_interval_ms = positive(value, key)? as u64,
                "broker.session.timeout.ms" => c.quorum.broker_session_timeout_ms = positive(value, key)? as u64,
                "metadata.log.max.record.bytes.between.snapshots" => c.quorum.snapshot_bytes = at_least(value, key, 1)?,
                "replica.fetch.wait.max.ms" => c.replication.fetch_wait_max_ms = at_least(value, key, 0)?,
                "replica.fetch.max.bytes" => c.replication.fetch_max_bytes = at_least(value, key, 1)? as usize,
                "replica.fetch.response.max.bytes" => c.replication.fetch_response_max_bytes = at_least(value, key, 1)? as usize,
                "replica.fetch.backoff.ms" => c.replication.fetch_backoff_ms = at_least(value, key, 0)?,
                "replica.lag.time.max.ms" => c.replication.lag_time_max_ms = at_least(value, key, 1)?,
                "auto.leader.rebalance.enable" => c.replication.auto_leader_rebalance_enable = value.parse().with_context(context)?,
                "leader.imbalance.check.interval.seconds" => c.replication.leader_imbalance_check_interval_s = at_least(value, key, 1)?,
                "replica.high.watermark.checkpoint.interval.ms" => c.replication.high_watermark_checkpoint_interval_ms = at_least(value, key, 1)?,
                "replica.selector.class" => {
                    c.replication.rack_aware_replica_selector = match value.trim() {
                        RACK_AWARE_REPLICA_SELECTOR => true,
                        "" | LEADER_SELECTOR => false,
                        other => bail!("replica.selector.class {other:?} is not available: use {RACK_AWARE_REPLICA_SELECTOR} (consumers fetch from a replica in their client.rack) or {LEADER_SELECTOR} (from the leader, the default)"),
                    }
                }
                "replication.quota.window.num" => c.replication.quota_window.samples = at_least(value, key, 1)?.min(QUOTA_WINDOW_NUM_MAX) as usize,
                "replication.quota.window.size.seconds" => {
                    c.replication.quota_window.window_ms = at_least(value, key, 1)?.min(QUOTA_WINDOW_SECONDS_MAX) * 1000
                }
                "broker.rack" => {
                    if value.len() > BROKER_RACK_BYTES_MAX {
                        bail!("broker.rack is {} bytes; give a rack name of at most {BROKER_RACK_BYTES_MAX}", value.len());
                    }
                    // As in Kafka, an empty value is no rack.
                    c.broker_rack = Some(value.to_string()).filter(|r| !r.is_empty());
                }
                "log.dirs" | "log.dir" => {
                    c.log_dirs = value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(PathBuf::from).collect();
                    if c.log_dirs.is_empty() {
                        bail!("log.dirs is empty: give at least one directory");
                    }
                }
                "listeners" => {} // parsed below, once advertised.listeners is known
                "advertised.listeners" => advertised = Some(value.to_string()),
                "num.partitions" => c.num_partitions = positive(value, key)?,
                "auto.create.topics.enable" => c.auto_create_topics_enable = value.parse().with_context(context)?,
                "max.request.partition.size.limit" => c.max_request_partition_size_limit = positive(value, key)?,
                "log.segment.bytes" => c.log_segment_bytes = at_least(value, key, 14)?,
                "log.roll.ms" => c.log_roll_ms = at_least(value, key, 1)?,
                "log.roll.hours" => {
                    if !properties.contains_key("log.roll.ms") {
                        c.log_roll_ms = at_least(value, key, 1)? * 3600 * 1000
                    }
                }
                "log.index.interval.bytes" => c.log_index_interval_bytes = at_least(value, key, 0)?,
                "message.max.bytes" => c.message_max_bytes = at_least(value, key, 0)? as usize,
                "socket.request.max.bytes" => c.socket_request_max_bytes = at_least(value, key, 1)? as usize,
                "log.message.timestamp.type" => {
                    c.log_append_time = match value {
                        "CreateTime" => false,
                        "LogAppendTime" => true,
                        _ => bail!("log.message.timestamp.type must be CreateTime or LogAppendTime, not {value:?}"),
                    }
                }
                "log.flush.interval.ms" => c.log_flush_interval_ms = at_least(value, key, 0)?,
                "shardlog.cache.partition.bytes" => c.cache_partition_bytes = bytes_or_none(value, key)?.unwrap_or(usize::MAX),
                "shardlog.cache.shard.bytes" => c.cache_shard_bytes = bytes_or_none(value, key)?,
                "shardlog.fetch.long.poll.watchers.max" => c.fetch_watchers_max = at_least(value, key, 1)? as usize,
                "queued.max.requests" => c.connection_requests_inflight_max = at_least(value, key, 1)? as usize,
                "quota.window.num" => c.quota_window.samples = at_least(value, key, 1)?.min(QUOTA_WINDOW_NUM_MAX) as usize,
                "quota.window.size.seconds" => c.quota_window.window_ms = at_least(value, key, 1)?.min(QUOTA_WINDOW_SECONDS_MAX) * 1000,
                "queued.max.request.bytes" => {
                    c.queued_max_request_bytes = match value.parse::<i64>() {
                        Ok(-1) => None,
                        Ok(n) if n > 0 => Some(n as usize),
                        _ => bail!("{key} must be a positive number of bytes, or -1 for no bound, not {value:?}"),
                    }
                }
                "shardlog.dirty.shard.bytes" => c.dirty_shard_bytes = at_least(value, key, 1)? as usize,
                "max.connections" => c.max_connections = at_least(value, key, 1)? as usize,
                "max.connections.per.ip" => c.max_connections_per_ip = at_least(value, key, 1)? as usize,
                "max.connections.per.ip.overrides" => c.max_connections_per_ip_overrides = parse_connection_overrides(value)?,
                "group.min.session.timeout.ms" => c.groups.session_timeout_ms_min = positive(value, key)?,
                "group.max.session.timeout.ms" => c.groups.session_timeout_ms_max = positive(value, key)?,
                "group.consumer.session.timeout.ms" => c.groups.consumer_session_timeout_ms = positive(value, key)?,
                "group.consumer.min.session.timeout.ms" => c.groups.consumer_session_timeout_ms_min = positive(value, key)?,
                "group.consumer.max.session.timeout.ms" => c.groups.consumer_session_timeout_ms_max = positive(value, key)?,
                "group.consumer.heartbeat.interval.ms" => c.groups.consumer_heartbeat_interval_ms = positive(value, key)?,
                "group.consumer.min.heartbeat.interval.ms" => c.groups.consumer_heartbeat_interval_ms_min = positive(value, key)?,
                "group.consumer.max.heartbeat.interval.ms" => c.groups.consumer_heartbeat_interval_ms_max = positive(value, key)?,
                "group.initial.rebalance.delay.ms" => c.groups.initial_rebalance_delay_ms = at_least(value, key, 0)?,
                "group.max.size" => c.groups.group_size_max = at_least(value, key, 1)? as usize,
                "offsets.retention.minutes" => c.groups.offsets_retention_ms = (at_least(value, key, 1)? * 60_000) as i64,
                "offsets.retention.check.interval.ms" => c.groups.offsets_retention_check_interval_ms = at_least(value, key, 1)?,
                "offset.metadata.max.bytes" => c.groups.offset_metadata_bytes_max = at_least(value, key, 0)? as usize,
                "shardlog.io.properties.file" => c.io_properties_file = Some(PathBuf::from(value)),
                "shardlog.cores" => c.cores_spec = Some(value.trim().to_string()),
                "admin.listeners" => c.admin_listener = parse_admin_listener(value)?,
                "shardlog.metrics.enabled" => c.metrics_enabled = value.parse().with_context(context)?,
                "shardlog.spin.before.park.us" => {
                    c.spin_before_park_us = at_least(value, key, 0)?;
                    if c.spin_before_park_us > SPIN_BEFORE_PARK_US_MAX {
                        bail!("{key} must be at most {SPIN_BEFORE_PARK_US_MAX} (µs), not {value}: past that a shard only burns CPU");
                    }
                }
                "offsets.topic.num.partitions" => c.offsets_topic_partitions = positive(value, key)?,
                // Any authorizer class turns ACL enforcement on (Kafka's AclAuthorizer and
                // StandardAuthorizer have the same semantics); empty turns it off.
                "authorizer.class.name" => c.authorizer.enabled = !value.trim().is_empty(),
                "super.users" => c.authorizer.super_users = crate::authorizer::AuthorizerConfig::parse_super_users(value),
                "allow.everyone.if.no.acl.found" => c.authorizer.allow_everyone_if_no_acl_found = value.parse().with_context(context)?,
                "transaction.max.timeout.ms" => c.txn.timeout_ms_max = positive(value, key)?,
                "transaction.abort.timed.out.transaction.cleanup.interval.ms" => c.txn.abort_check_interval_ms = positive(value, key)? as u64,
                "transaction.state.log.num.partitions" => c.txn.state_partitions = positive(value, key)?,
                "default.replication.factor" => c.default_replication_factor = replication_factor(value, key)?,
                "offsets.topic.replication.factor" => c.offsets_topic_replication_factor = replication_factor(value, key)?,
                "transaction.state.log.replication.factor" => c.transaction_state_log_replication_factor = replication_factor(value, key)?,
                k if crate::security::settings::is_security_property(k) => {} // per listener, below
                "log.retention.check.interval.ms" => drop(at_least(value, key, 1)?),
                "inter.broker.listener.name" => c.inter_broker_listener_name = Some(value.trim().to_string()),
                "log.cleaner.enable" => c.log_cleaner_enable = value.parse().with_context(context)?,
                "log.cleaner.io.max.bytes.per.second" => {
                    c.log_cleaner_io_max_bytes_per_second = match value.trim().parse::<f64>() {
                        Ok(rate) if rate >= 1.0 => rate,
                        _ => bail!("log.cleaner.io.max.bytes.per.second={value}: give a number of bytes per second, at least 1 (1.7976931348623157E308, the default, is no bound)"),
                    }
                }
                k if crate::topic_config_table::broker_synonym(k).is_some() => crate::topic_config_table::validate_broker_static(k, value).map_err(anyhow::Error::msg)?,
                other => tracing::warn!(property = other, "ignoring unknown configuration property"),
            }
        }
        let mut map = crate::security::settings::parse_protocol_map(properties.get("listener.security.protocol.map").map(String::as_str))?;
        // As in Kafka, a controller listener missing from the map is PLAINTEXT.
        for name in &c.quorum.controller_listener_names {
            map.entry(name.clone()).or_insert(crate::security::SecurityProtocol::Plaintext);
        }
        if !c.quorum.voters.is_empty() || !c.quorum.bootstrap_servers.is_empty() {
            // Before the listeners' SASL settings are read, which would fail on their own terms.
            if let Some(name) = c.quorum.controller_listener_names.first() {
                refuse_sasl_on_controller_listener(name, map[name])?;
            }
        }
        if let Some(listeners) = properties.get("listeners") {
            c.listeners = parse_listeners_with_map(listeners, advertised.as_deref(), &map)?;
        }
        c.security = crate::security::SecurityConfig::from_properties(properties, &c.listeners, &c.quorum.controller_listener_names)?;
        c.groups.check_consumer_bounds()?;
        c.properties = properties.clone();
        c.check_quorum()?;
        if let (Some(name), None) = (&c.inter_broker_listener_name, c.inter_broker_listener()) {
            bail!("inter.broker.listener.name={name}, but listeners has no client listener of that name");
        }
        c.inter_broker_tls = c.build_inter_broker_tls()?;
        c.inter_broker_sasl = c.build_inter_broker_sasl(properties)?;
        c.quorum.tls = c.build_quorum_tls(properties, &map)?;
        Ok(c)
    }
}

impl BrokerConfig {
    /// The quorum settings must agree with each other and with the listeners.
    fn check_quorum(&self) -> Result<()> {
        let q = &self.quorum;
        if self.node_id < 0 {
            bail!("node.id={} is negative: give each node an id of 0 or more, unique in the cluster", self.node_id);
        }
        if q.broker_session_timeout_ms <= q.broker_heartbeat_interval_ms {
            bail!(
                "broker.session.timeout.ms={} must be longer than broker.heartbeat.interval.ms={}, or every broker is fenced between two heartbeats",
                q.broker_session_timeout_ms,
                q.broker_heartbeat_interval_ms
            );
        }
        if !q.broker && !q.controller {
            bail!("process.roles names no role: give broker, controller, or both");
        }
        if q.voters.is_empty() && q.bootstrap_servers.is_empty() {
            if !(q.broker && q.controller) {
                let role = if q.broker { "broker" } else { "controller" };
                bail!(
                    "process.roles={role} needs controller.quorum.voters or controller.quorum.bootstrap.servers: a {role}-only node \
                     belongs to a quorum of controllers (name them, e.g. 1@host:9093, or give controllers to ask, e.g. host:9093); \
                     without either a node is its own one-node cluster and must be broker,controller"
                );
            }
            return Ok(());
        }
        let dynamic = q.dynamic();
        let ids: Vec<i32> = q.voters.iter().map(|v| v.node_id).collect();
        let is_voter = ids.contains(&self.node_id);
        let quorum_key = if dynamic { "controller.quorum.bootstrap.servers" } else { "controller.quorum.voters" };
        // Kafka's rules (KafkaConfig.validateValues): a controller is a voter and listens on
        // the controller listener; a broker-only node is neither, and reaches the quorum on
        // the voters' controller listener, named so that it knows which of their listeners
        // that is. With a dynamic quorum, whether a controller is a voter is the metadata
        // log's business (see `shardlog format`), not the configuration's.
        let Some(name) = q.controller_listener_names.first() else {
            bail!(
                "{quorum_key} is set but controller.listener.names is not: name the listener the quorum uses (e.g. CONTROLLER{})",
                if q.controller { ", listed in listeners" } else { ", as the controllers name it" }
            );
        };
        let listens_on_it = self.listeners.iter().any(|l| &l.name == name);
        if !q.controller {
            if is_voter {
                bail!(
                    "node.id={} is among controller.quorum.voters {ids:?}, but process.roles=broker: a broker-only node is not a voter; \
                     give it a node.id of its own, or make it process.roles=broker,controller",
                    self.node_id
                );
            }
            if listens_on_it {
                bail!(
                    "controller.listener.names={name} appears in listeners, but process.roles=broker: a broker-only node does not listen \
                     for the quorum; remove {name} from listeners"
                );
            }
            if self.client_listeners().next().is_none() {
                bail!("process.roles=broker, but listeners has no listener for clients: add one (e.g. PLAINTEXT://:9092)");
            }
            return Ok(());
        }
        if !is_voter && !dynamic {
            bail!("node.id={} is not among controller.quorum.voters {ids:?}: a controller must be a voter (check node.id and the voter list)", self.node_id);
        }
        if !listens_on_it {
            bail!("controller.listener.names={name}, but listeners has no listener of that name: a controller listens for the quorum there");
        }
        if !q.broker {
            if let Some(other) = self.client_listeners().next() {
                bail!(
                    "listeners has {} ({}), but process.roles=controller: a controller-only node serves no clients, so its listeners \
                     may only be the controller listener {name}; remove {}, or make the node process.roles=broker,controller",
                    other.name,
                    other.bind,
                    other.name
                );
            }
        } else if self.client_listeners().next().is_none() {
            bail!("every listener is a controller listener: add one for clients (e.g. PLAINTEXT://:9092)");
        }
        self.check_own_voter_entry()
    }

    /// A voter's controller listener must be where its own entry of controller.quorum.voters
    /// says: the other voters reach node.id there. This is also what keeps a second process
    /// from taking a running voter's node id: it would have to listen on the same address,
    /// which the listener-port check at start refuses.
    fn check_own_voter_entry(&self) -> Result<()> {
        let Some(own) = self.quorum.voters.iter().find(|v| v.node_id == self.node_id) else { return Ok(()) };
        let Some(listener) = self.controller_listener() else { return Ok(()) };
        let (host, port) = own.address.rsplit_once(':').expect("parse_quorum_voters checked HOST:PORT");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port_matches = port.parse::<u16>().is_ok_and(|p| p == listener.bind.port());
        // A host name is not resolved here; an IP address must be the listener's, unless the
        // listener binds every address.
        let host_matches = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => listener.bind.ip().is_unspecified() || listener.bind.ip() == ip,
            Err(_) => true,
        };
        if !(port_matches && host_matches) {
            bail!(
                "node.id={} is voter {}@{} in controller.quorum.voters, but its controller listener {} binds {}: they must agree \
                 (is node.id right? another node may already be node {})",
                self.node_id,
                own.node_id,
                own.address,
                listener.name,
                listener.bind,
                self.node_id
            );
        }
        Ok(())
    }

    /// The listeners that serve Kafka clients (all but the controller listeners).
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter().filter(|l| !self.quorum.controller_listener_names.contains(&l.name))
    }

    /// The listener other brokers are reached on: `inter.broker.listener.name`, or else the
    /// first client listener, which every broker registers first (Kafka's default is the
    /// PLAINTEXT listener, through `security.inter.broker.protocol`). Brokers of one cluster
    /// name their listeners alike, so this broker's listener of that name says how to reach
    /// the others' (its security protocol, too).
    pub fn inter_broker_listener(&self) -> Option<&Listener> {
        match &self.inter_broker_listener_name {
            Some(name) => self.client_listeners().find(|l| &l.name == name),
            None => self.client_listeners().next(),
        }
    }

    /// The TLS client config for an SSL or SASL_SSL inter-broker listener.
    fn build_inter_broker_tls(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        let Some(listener) = self.inter_broker_listener() else { return Ok(None) };
        if !listener.security_protocol.uses_tls() {
            return Ok(None);
        }
        // One security entry per listener, in the listeners' order.
        let position = self.listeners.iter().position(|l| l.name == listener.name);
        let Some(settings) = position.and_then(|i| self.security.listeners.get(i)?.tls.as_ref()).map(|t| &t.settings) else {
            return Ok(None);
        };
        if settings.truststore.is_none() {
            // A broker alone needs none: the first replica fetch says what is missing.
            return Ok(None);
        }
        let config = crate::security::tls::build_inter_broker_client_config(settings, &listener.name)
            .with_context(|| format!("inter-broker listener {}", listener.name))?;
        Ok(Some(std::sync::Arc::new(config)))
    }

    /// How this broker logs in to the others over a SASL inter-broker listener, as Kafka's
    /// does: `sasl.mechanism.inter.broker.protocol` (Kafka's default, GSSAPI, is not supported:
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 must be named), and the `username` and `password`
    /// of that mechanism's JAAS config, `listener.name.<listener>.<mechanism>.sasl.jaas.config`
    /// (or `<mechanism>.sasl.jaas.config`, or `sasl.jaas.config`).
    fn build_inter_broker_sasl(&self, properties: &BTreeMap<String, String>) -> Result<Option<crate::security::sasl::ClientLogin>> {
        use crate::security::sasl::{ClientLogin, Mechanism};
        let Some(listener) = self.inter_broker_listener() else { return Ok(None) };
        if !listener.security_protocol.uses_sasl() {
            return Ok(None);
        }
        let name = properties.get("sasl.mechanism.inter.broker.protocol").map(|v| v.trim()).filter(|v| !v.is_empty()).unwrap_or("GSSAPI");
        let mechanism = match Mechanism::parse(name) {
            Some(m @ (Mechanism::Plain | Mechanism::ScramSha256 | Mechanism::ScramSha512)) => m,
            _ => bail!(
                "the inter-broker listener {} is {:?}, and sasl.mechanism.inter.broker.protocol is {name}: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 \
                 (GSSAPI, Kafka's default, and OAUTHBEARER are not supported between brokers)",
                listener.name,
                listener.security_protocol
            ),
        };
        let key = format!("{}.sasl.jaas.config", name.to_lowercase());
        let prefixed = format!("listener.name.{}.{key}", listener.name.to_lowercase());
        let Some((used, jaas)) = [prefixed.as_str(), key.as_str(), "sasl.jaas.config"].into_iter().find_map(|k| properties.get(k).map(|v| (k, v))) else {
            bail!(
                "the inter-broker listener {} uses SASL ({name}), but no JAAS config gives this broker a login: set {prefixed} with username=\"...\" password=\"...\"",
                listener.name
            );
        };
        let login = ClientLogin::from_jaas(mechanism, jaas).with_context(|| format!("{used}, for the inter-broker listener {}", listener.name))?;
        Ok(Some(login))
    }

    /// TLS for the quorum's links when the controller listener is SSL (see [`QuorumTls`]). `map`: `listener.security.protocol.map`, with the controller
    /// listeners in it, which is how a broker-only node knows the controllers' protocol.
    fn build_quorum_tls(&self, properties: &BTreeMap<String, String>, map: &BTreeMap<String, crate::security::SecurityProtocol>) -> Result<Option<QuorumTls>> {
        use crate::security::SecurityProtocol;
        let q = &self.quorum;
        if q.voters.is_empty() && q.bootstrap_servers.is_empty() {
            return Ok(None);
        }
        let Some(name) = q.controller_listener_names.first() else { return Ok(None) };
        let protocol = map.get(name).copied().unwrap_or(SecurityProtocol::Plaintext);
        if protocol != SecurityProtocol::Ssl {
            // PLAINTEXT; SASL was refused with the listeners.
            return Ok(None);
        }
        let position = self.listeners.iter().position(|l| &l.name == name);
        let server = position.map(|i| (self.security.listeners.clone(), i));
        let own = server.as_ref().and_then(|(listeners, i)| listeners.get(*i)?.tls.as_ref()).map(|t| t.settings.clone());
        let settings = match own {
            Some(settings) => settings,
            // A broker-only node: the settings its controller listener would have.
            None => crate::security::settings::listener_tls_settings(properties, name, protocol)
                .with_context(|| format!("controller listener {name} is SSL: this node connects to the controllers with its settings"))?,
        };
        let client = crate::security::tls::build_client_config(&settings, &format!("controller listener {name}"))
            .with_context(|| format!("controller listener {name}: the TLS client config this node reaches the controllers with"))?;
        Ok(Some(QuorumTls { listener: name.clone(), client: std::sync::Arc::new(client), server }))
    }

    /// This node's controller listener, when it is part of a quorum of several.
    pub fn controller_listener(&self) -> Option<&Listener> {
        let name = self.quorum.controller_listener_names.first()?;
        self.listeners.iter().find(|l| &l.name == name).filter(|_| !self.quorum.voters.is_empty() || self.quorum.dynamic())
    }
}

/// Kafka lets the controller listener be SASL too; shardlog's quorum links speak no SASL.
fn refuse_sasl_on_controller_listener(name: &str, protocol: crate::security::SecurityProtocol) -> Result<()> {
    use crate::security::SecurityProtocol;
    let sasl = match protocol {
        SecurityProtocol::Plaintext | SecurityProtocol::Ssl => return Ok(()),
        SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
        SecurityProtocol::SaslSsl => "SASL_SSL",
    };
    bail!(
        "controller listener {name} is {sasl} in listener.security.protocol.map, but SASL on the controller listener is not supported: \
         map it to SSL (with ssl.client.auth=required, controllers and brokers authenticate each other by certificate) or to PLAINTEXT"
    )
}

/// Default `queued.max.request.bytes`. Kafka's is -1 (no bound); shardlog bounds every queue,
/// and this is several full produce requests per shard on a small machine.
pub const QUEUED_MAX_REQUEST_BYTES_DEFAULT: usize = 512 << 20;
/// Default `shardlog.dirty.shard.bytes`: far more than a disk writes between two group commits
/// (a fast NVMe disk takes this in about a tenth of a second), so it binds only when the disk
/// falls behind the network.
pub const DIRTY_SHARD_BYTES_DEFAULT: usize = 128 << 20;
/// Default `max.connections`. Kafka's is 2^31-1; shardlog bounds it so that a connection storm
/// cannot exhaust file descriptors and memory (each connection holds buffers and a task).
pub const MAX_CONNECTIONS_DEFAULT: usize = 10_000;

/// The share of the memory this process may use that the batch caches take by default, all
/// shards together (`shardlog.cache.shard.bytes` = -1). What Kafka leaves to the page cache for
/// reading back recent data, shardlog holds here (its segments are written with O_DIRECT);
/// the rest stays for the request and dirty budgets, connections, and the OS.
pub const CACHE_MEMORY_SHARE: f64 = 0.2;
/// The least one shard's default batch cache takes, however many shards share a small machine.
pub const CACHE_SHARD_BYTES_MIN: usize = 32 << 20;

/// The memory this process may use: the machine's, or its cgroup's limit (v2 `memory.max`, v1
/// `memory.limit_in_bytes`) where that is lower.
pub fn usable_memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    let physical = (pages.max(0) as u64).saturating_mul(page.max(0) as u64);
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| text.lines().find_map(|line| line.strip_prefix("0::").map(|path| format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/')))));
    let limits = [own_cgroup, Some("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string())];
    limits.into_iter().flatten().filter_map(|path| std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok()).fold(physical, u64::min)
}

impl BrokerConfig {
    /// One shard's batch cache budget: `shardlog.cache.shard.bytes`, or by default
    /// [`CACHE_MEMORY_SHARE`] of the usable memory split between the shards.
    pub fn cache_bytes_per_shard(&self) -> usize {
        self.cache_shard_bytes.unwrap_or_else(|| {
            let share = (usable_memory_bytes() as f64 * CACHE_MEMORY_SHARE) as u64 / self.cores.len().max(1) as u64;
            (share as usize).max(CACHE_SHARD_BYTES_MIN)
        })
    }

    /// One shard's share of `queued.max.request.bytes` (usize::MAX when unbounded).
    pub fn queued_request_bytes_per_shard(&self) -> usize {
        match self.queued_max_request_bytes {
            None => usize::MAX,
            Some(total) => (total / self.cores.len().max(1)).max(1),
        }
    }
}

/// `max.connections.per.ip.overrides`: `host:count` pairs, comma-separated, as in Kafka. Hosts
/// are resolved once, at start.
fn parse_connection_overrides(value: &str) -> Result<BTreeMap<std::net::IpAddr, usize>> {
    let mut out = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, count)) = entry.rsplit_once(':') else {
            bail!("max.connections.per.ip.overrides entry {entry:?} is not HOST:COUNT");
        };
        let count: usize = count.trim().parse().with_context(|| format!("max.connections.per.ip.overrides entry {entry:?}: the count is not a number"))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let ips: Vec<std::net::IpAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (host, 0)
                .to_socket_addrs()
                .with_context(|| format!("max.connections.per.ip.overrides: cannot resolve host {host:?}"))?
                .map(|a| a.ip())
                .collect(),
        };
        for ip in ips {
            out.insert(ip, count);
        }
    }
    Ok(out)
}

/// `127.0.0.1:9644` or `http://127.0.0.1:9644`; empty disables the admin listener.
fn parse_admin_listener(value: &str) -> Result<Option<SocketAddr>> {
    let value = value.trim().trim_start_matches("http://");
    if value.is_empty() {
        return Ok(None);
    }
    let addr = value
        .to_socket_addrs()
        .with_context(|| format!("admin.listeners {value:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("admin.listeners {value:?} has no address"))?;
    Ok(Some(addr))
}

fn positive(value: &str, key: &str) -> Result<i32> {
    match value.parse::<i32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{key} must be a positive integer, not {value:?}"),
    }
}

/// A replication factor: a partition's replicas are counted in Kafka's INT16 field.
fn replication_factor(value: &str, key: &str) -> Result<i16> {
    match value.trim().parse::<i16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{key} must be a positive integer of at most {}, not {value:?}", i16::MAX),
    }
}

/// A number of bytes, or -1 for none (the default's meaning, which the key's doc says).
fn bytes_or_none(value: &str, key: &str) -> Result<Option<usize>> {
    match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(n) if n >= 0 => Ok(Some(n as usize)),
        _ => bail!("{key} must be a number of bytes (at least 0), or -1, not {value:?}"),
    }
}

fn at_least(value: &str, key: &str, min: u64) -> Result<u64> {
    match value.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => bail!("{key} must be an integer of at least {min}, not {value:?}"),
    }
}

/// Reads a Java properties file, or TOML when the name ends in `.toml`. TOML tables are
/// flattened with dots, so `[log] dirs = [...]` and `"log.dirs" = [...]` mean the same.
pub fn read_config_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "toml") {
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        let mut out = BTreeMap::new();
        flatten_toml("", &toml::Value::Table(table), &mut out);
        Ok(out)
    } else {
        Ok(parse_properties(&text))
    }
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten_toml(&key, v, out);
            }
        }
        toml::Value::Array(items) => {
            let joined: Vec<String> = items.iter().map(scalar_to_string).collect();
            out.insert(prefix.to_string(), joined.join(","));
        }
        scalar => {
            out.insert(prefix.to_string(), scalar_to_string(scalar));
        }
    }
}

fn scalar_to_string(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Java properties: `key=value` or `key: value`, `#` and `!` comments. Line continuations and
/// escapes are not needed for broker configs and are not supported.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let split = line.find(['=', ':']).unwrap_or(line.len());
        let (key, value) = line.split_at(split);
        let value = value.get(1..).unwrap_or("");
        out.insert(key.trim().to_string(), value.trim().to_string());
    }
    out
}

/// `0,1`, `0-3`, `0-3,8-11`.
pub fn parse_core_list(text: &str) -> Result<Vec<usize>> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) =
                (a.trim().parse().with_context(|| format!("bad core range {part:?}"))?, b.trim().parse().with_context(|| format!("bad core range {part:?}"))?);
            if a > b {
                bail!("core range {part:?} runs backwards");
            }
            cores.extend(a..=b);
        } else {
            cores.push(part.parse().with_context(|| format!("bad core number {part:?} in --cores"))?);
        }
    }
    cores.sort_unstable();
    cores.dedup();
    if cores.is_empty() {
        bail!("--cores {text:?} names no core");
    }
    let allowed = available_cores()?;
    if let Some(bad) = cores.iter().find(|c| !allowed.contains(c)) {
        bail!("--cores names core {bad}, but this process may only run on {allowed:?}");
    }
    Ok(cores)
}

/// The CPUs this process may run on (its affinity mask).
/// `--cores auto`: the layout `shardlog tune layout` prints (on a machine of 8 CPUs or more, one
/// physical core per NUMA node is left to interrupts and housekeeping), within the CPUs this
/// process may run on.
/// Bound on `shardlog.spin.before.park.us`: past a few milliseconds spinning only burns CPU.
pub const SPIN_BEFORE_PARK_US_MAX: u64 = 10_000;

pub fn automatic_cores() -> Result<Vec<usize>> {
    let allowed = available_cores()?;
    let topology = shardlog_tuning::topology::read_topology(&shardlog_tuning::sysfs::SysFs::host()).context("reading the CPU topology for --cores auto")?;
    let layout = shardlog_tuning::layout::choose_layout(&topology, None)?;
    let cores: Vec<usize> = layout.shard_cpus.iter().copied().filter(|c| allowed.contains(c)).collect();
    if cores.is_empty() {
        tracing::warn!(layout = ?layout.shard_cpus, allowed = ?allowed, "--cores auto: none of the layout's shard CPUs is in this process's affinity mask; using every allowed CPU");
        return Ok(allowed);
    }
    tracing::info!(shard_cpus = ?cores, housekeeping_cpus = ?layout.housekeeping_cpus, reason = %layout.reason, "--cores auto");
    Ok(cores)
}

pub fn available_cores() -> Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most size_of::<cpu_set_t>() bytes.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        bail!("sched_getaffinity failed: {}", std::io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set initialised above, for indexes below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Group settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`
    pub session_timeout_ms_max: i32,
    /// `group.consumer.session.timeout.ms`: when a silent KIP-848 member is fenced, unless its
    /// group sets `consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.min.session.timeout.ms` / `group.consumer.max.session.timeout.ms`: the
    /// bounds of a group's `consumer.session.timeout.ms`.
    pub consumer_session_timeout_ms_min: i32,
    pub consumer_session_timeout_ms_max: i32,
    /// `group.consumer.heartbeat.interval.ms`: the interval ConsumerGroupHeartbeat asks members
    /// to heartbeat at, unless the group sets `consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.min.heartbeat.interval.ms` / `group.consumer.max.heartbeat.interval.ms`
    pub consumer_heartbeat_interval_ms_min: i32,
    pub consumer_heartbeat_interval_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`
    pub group_size_max: usize,
    /// `offsets.retention.minutes`, in ms: offsets of an empty group expire this long after
    /// their last commit.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_bytes_max: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            consumer_session_timeout_ms: 45_000,
            consumer_session_timeout_ms_min: 45_000,
            consumer_session_timeout_ms_max: 60_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_heartbeat_interval_ms_min: 5_000,
            consumer_heartbeat_interval_ms_max: 15_000,
            initial_rebalance_delay_ms: 3_000,
            group_size_max: 10_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_bytes_max: 4096,
        }
    }
}

impl GroupConfig {
    /// The KIP-848 defaults must lie within their bounds, and members must be told to heartbeat
    /// more often than they are fenced for silence (Kafka refuses such a config at start too).
    fn check_consumer_bounds(&self) -> Result<()> {
        let checks = [
            ("group.consumer.session.timeout.ms", self.consumer_session_timeout_ms, self.consumer_session_timeout_ms_min, self.consumer_session_timeout_ms_max),
            (
                "group.consumer.heartbeat.interval.ms",
                self.consumer_heartbeat_interval_ms,
                self.consumer_heartbeat_interval_ms_min,
                self.consumer_heartbeat_interval_ms_max,
            ),
        ];
        for (key, value, min, max) in checks {
            let (min_key, max_key) = (key.replacen("consumer.", "consumer.min.", 1), key.replacen("consumer.", "consumer.max.", 1));
            if min > max {
                bail!("{min_key}={min} is above {max_key}={max}: give a minimum no larger than the maximum");
            }
            if value < min || value > max {
                bail!("{key}={value} must lie within {min_key}={min} and {max_key}={max}");
            }
        }
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms {
            bail!(
                "group.consumer.heartbeat.interval.ms={} must be below group.consumer.session.timeout.ms={}, or members are fenced between heartbeats",
                self.consumer_heartbeat_interval_ms,
                self.consumer_session_timeout_ms
            );
        }
        Ok(())
    }
}

/// The transaction coordinator's settings.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
    pub timeout_ms_max: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_check_interval_ms: u64,
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`, fixed at its
    /// creation.
    pub state_partitions: i32,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig { timeout_ms_max: 900_000, abort_check_interval_ms: 10_000, state_partitions: 50 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_and_overrides() {
        let props = parse_properties("# comment\nlog.dirs = /a, /b\nnum.partitions=8\nauto.create.topics.enable: false\n");
        let c = BrokerConfig::from_properties(&props).unwrap();
        assert_eq!(c.log_dirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.num_partitions, 8);
        assert!(!c.auto_create_topics_enable);
    }

    #[test]
    fn replication_factors_take_positive_values() {
        let c = BrokerConfig::from_properties(&BTreeMap::new()).unwrap();
        assert_eq!((c.default_replication_factor, c.offsets_topic_replication_factor, c.transaction_state_log_replication_factor), (1, 3, 3));
        let props = parse_properties("default.replication.factor=3\noffsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=2\n");
        let c = BrokerConfig::from_properties(&props).unwrap();
        assert_eq!((c.default_replication_factor, c.offsets_topic_replication_factor, c.transaction_state_log_replication_factor), (3, 1, 2));
        for bad in [
            "default.replication.factor=0\n",
            "offsets.topic.replication.factor=-1\n",
            "offsets.topic.replication.factor=0\n",
            "transaction.state.log.replication.factor=40000\n",
        ] {
            assert!(BrokerConfig::from_properties(&parse_properties(bad)).is_err(), "{bad}");
        }
        // A broker-level default of a topic config, checked as the topic config is.
        assert!(BrokerConfig::from_properties(&parse_properties("min.insync.replicas=2\n")).is_ok());
        assert!(BrokerConfig::from_properties(&parse_properties("min.insync.replicas=0\n")).is_err());
    }

    #[test]
    fn kip848_group_defaults_must_lie_within_their_bounds() {
        let c = BrokerConfig::from_properties(&parse_properties("group.consumer.heartbeat.interval.ms=7000\ngroup.consumer.max.session.timeout.ms=90000\n"))
            .unwrap();
        assert_eq!((c.groups.consumer_heartbeat_interval_ms, c.groups.consumer_session_timeout_ms_max), (7000, 90_000));
        for bad in [
            "group.consumer.heartbeat.interval.ms=20000\n",
            "group.consumer.session.timeout.ms=1000\n",
            "group.consumer.min.session.timeout.ms=70000\n",
            "group.consumer.min.heartbeat.interval.ms=1000\ngroup.consumer.min.session.timeout.ms=1000\ngroup.consumer.heartbeat.interval.ms=3000\ngroup.consumer.session.timeout.ms=3000\n",
        ] {
            assert!(BrokerConfig::from_properties(&parse_properties(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_and_connection_bounds_take_kafkas_names_and_split_over_shards() {
        let props = parse_properties(
            "queued.max.request.bytes=1000\nshardlog.dirty.shard.bytes=4096\nmax.connections=7\nmax.connections.per.ip=3\nmax.connections.per.ip.overrides=127.0.0.1:5,[::1]:9\n",
        );
        let mut c = BrokerConfig::from_properties(&props).unwrap();
        c.cores = vec![0, 1, 2, 3];
        assert_eq!(c.queued_request_bytes_per_shard(), 250, "Kafka's broker-wide bound, an equal share per shard");
        assert_eq!((c.dirty_shard_bytes, c.max_connections, c.max_connections_per_ip), (4096, 7, 3));
        assert_eq!(c.max_connections_per_ip_overrides.get(&"127.0.0.1".parse().unwrap()), Some(&5));
        assert_eq!(c.max_connections_per_ip_overrides.get(&"::1".parse().unwrap()), Some(&9));
        let unbounded = BrokerConfig::from_properties(&parse_properties("queued.max.request.bytes=-1\n")).unwrap();
        assert_eq!(unbounded.queued_request_bytes_per_shard(), usize::MAX, "-1 is no bound, as in Kafka");
        assert!(BrokerConfig::from_properties(&parse_properties("queued.max.request.bytes=0\n")).is_err());
        assert!(BrokerConfig::from_properties(&parse_properties("max.connections.per.ip.overrides=nocount\n")).is_err());
        let defaults = BrokerConfig::default();
        assert!(defaults.queued_max_request_bytes.is_some() && defaults.dirty_shard_bytes > 0, "bounded by default");
    }

    #[test]
    fn the_batch_cache_is_bounded_per_shard_by_default_by_a_share_of_memory() {
        let c = BrokerConfig { cores: vec![0, 1], ..Default::default() };
        let memory = usable_memory_bytes() as usize;
        assert!(memory > 0);
        let share = ((memory as f64 * CACHE_MEMORY_SHARE) as usize / 2).max(CACHE_SHARD_BYTES_MIN);
        assert_eq!(c.cache_bytes_per_shard(), share, "a fifth of the memory, split between the two shards");
        assert_eq!(c.cache_partition_bytes, usize::MAX, "no partition bound of its own by default");
        let set = BrokerConfig::from_properties(&parse_properties("shardlog.cache.shard.bytes=1048576\nshardlog.cache.partition.bytes=0\n")).unwrap();
        assert_eq!((set.cache_bytes_per_shard(), set.cache_partition_bytes), (1 << 20, 0));
        let none = BrokerConfig::from_properties(&parse_properties("shardlog.cache.partition.bytes=-1\n")).unwrap();
        assert_eq!(none.cache_partition_bytes, usize::MAX, "-1: only the shard's bound");
        for bad in ["shardlog.cache.shard.bytes=-2\n", "shardlog.cache.partition.bytes=lots\n"] {
            assert!(BrokerConfig::from_properties(&parse_properties(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cores_from_the_file_auto_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.properties");
        let first = available_cores().unwrap()[0];
        std::fs::write(&file, format!("shardlog.cores={first}\nadmin.listeners=\n")).unwrap();
        let load = |cores: Option<&str>| {
            BrokerConfig::load(&Overrides { data_dir: None, listeners: None, cores: cores.map(String::from), config_file: Some(file.clone()) }).unwrap().cores
        };
        assert_eq!(load(None), vec![first]);
        // The flag wins over the file.
        assert_eq!(load(Some("auto")), automatic_cores().unwrap());
        let auto = automatic_cores().unwrap();
        assert!(!auto.is_empty() && auto.iter().all(|c| available_cores().unwrap().contains(c)), "{auto:?}");
    }

    #[test]
    fn toml_tables_flatten_to_kafka_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(&path, "\"num.partitions\" = 3\n[log]\ndirs = [\"/x\", \"/y\"]\n[log.segment]\nbytes = 1048576\n").unwrap();
        let c = BrokerConfig::from_properties(&read_config_file(&path).unwrap()).unwrap();
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.log_dirs.len(), 2);
        assert_eq!(c.log_segment_bytes, 1 << 20);
    }

    #[test]
    fn quorum_settings_parse_and_contradictions_are_refused() {
        let base = "listeners=PLAINTEXT://:19092,CONTROLLER://:19093\ncontroller.listener.names=CONTROLLER\n";
        let c = BrokerConfig::from_properties(&parse_properties(&format!(
            "{base}node.id=2\nprocess.roles=broker,controller\ncontroller.quorum.voters=1@a:9093, 2@b:19093,3@c:9093\ncontroller.quorum.fetch.timeout.ms=500\n"
        )))
        .unwrap();
        assert_eq!(c.quorum.voters.iter().map(|v| (v.node_id, v.address.as_str())).collect::<Vec<_>>(), vec![(1, "a:9093"), (2, "b:19093"), (3, "c:9093")]);
        assert_eq!(c.quorum.fetch_timeout_ms, 500);
        assert_eq!(c.client_listeners().map(|l| l.name.as_str()).collect::<Vec<_>>(), vec!["PLAINTEXT"]);
        assert_eq!(c.controller_listener().map(|l| l.bind.port()), Some(19093));
        assert_eq!(c.broker_rack, None);
        // The own entry may name the host by name, or by the IP the listener binds.
        for ok in ["2@b:19093", "2@127.0.0.1:19093"] {
            let text = format!("{base}node.id=2\nbroker.rack=rack-a\ncontroller.quorum.voters=1@a:9093,{ok}\n");
            let c = BrokerConfig::from_properties(&parse_properties(&text)).unwrap();
            assert_eq!(c.broker_rack.as_deref(), Some("rack-a"));
        }
        assert_eq!(BrokerConfig::from_properties(&parse_properties("broker.rack=\n")).unwrap().broker_rack, None);
        // The defaults: a quorum of this node alone, with no controller listener.
        let d = BrokerConfig::from_properties(&parse_properties("")).unwrap();
        assert!(d.quorum.voters.is_empty() && d.quorum.broker && d.quorum.controller && d.controller_listener().is_none());
        for bad in [
            format!("{base}node.id=4\ncontroller.quorum.voters=1@a:9093,2@b:9093\n"),
            "listeners=PLAINTEXT://:19092\nnode.id=1\ncontroller.quorum.voters=1@a:9093\n".to_string(),
            format!("{base}node.id=1\ncontroller.quorum.voters=1@a:9093,1@b:9093\n"),
            format!("{base}node.id=1\ncontroller.quorum.voters=1@a\n"),
            format!("{base}process.roles=broker,admin\n"),
            String::from("node.id=-1\n"),
            String::from("broker.heartbeat.interval.ms=5000\nbroker.session.timeout.ms=5000\n"),
            // This node's own voter entry names another port, or another IP, than its
            // controller listener binds.
            format!("{base}node.id=1\ncontroller.quorum.voters=1@127.0.0.1:9093,2@127.0.0.1:19093\n"),
            "listeners=PLAINTEXT://:19092,CONTROLLER://127.0.0.2:19093\ncontroller.listener.names=CONTROLLER\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:19093\n".to_string(),
            format!("broker.rack={}\n", "r".repeat(BROKER_RACK_BYTES_MAX + 1)),
        ] {
            assert!(BrokerConfig::from_properties(&parse_properties(&bad)).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn the_controller_listener_may_be_ssl_but_not_sasl() {
        let parse = |text: &str| BrokerConfig::from_properties(&parse_properties(text));
        let voters = "controller.quorum.voters=1@127.0.0.1:19093\ncontroller.listener.names=CONTROLLER\n";
        for (protocol, roles) in [("SASL_SSL", "broker,controller"), ("SASL_PLAINTEXT", "broker,controller"), ("SASL_SSL", "broker")] {
            let listeners = if roles == "broker" { "PLAINTEXT://:19092" } else { "PLAINTEXT://:19092,CONTROLLER://:19093" };
            let text = format!(
                "{voters}process.roles={roles}\nnode.id={}\nlisteners={listeners}\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:{protocol}\n",
                if roles == "broker" { 4 } else { 1 }
            );
            let error = format!("{:#}", parse(&text).expect_err("SASL on the controller listener"));
            assert!(error.contains(&format!("controller listener CONTROLLER is {protocol}")) && error.contains("map it to SSL"), "{error}");
        }
        // A broker-only node learns the controllers' protocol from the map, and connects with
        // the controller listener's settings: without a truststore it could verify no one.
        let text = format!(
            "{voters}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL\n\
             listener.name.controller.ssl.keystore.location=/nonexistent/k.pem\n"
        );
        let error = format!("{:#}", parse(&text).expect_err("no truststore"));
        assert!(error.contains("controller listener CONTROLLER uses TLS but has no truststore"), "{error}");
        let text =
            text.replace("ssl.keystore.location=/nonexistent/k.pem", "ssl.keystore.location=/nonexistent/k.pem\nssl.truststore.location=/nonexistent/ca.pem");
        let error = format!("{:#}", parse(&text).expect_err("no truststore file"));
        assert!(error.contains("cannot read ssl.truststore.location /nonexistent/ca.pem"), "{error}");
        // PLAINTEXT, named or not, is no TLS.
        let plain = parse(&format!("{voters}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092\n")).unwrap();
        assert!(plain.quorum.tls.is_none());
    }

    #[test]
    fn broker_only_and_controller_only_nodes_follow_kafkas_rules() {
        let parse = |text: &str| BrokerConfig::from_properties(&parse_properties(text));
        let voters = "controller.quorum.voters=1@127.0.0.1:19093\ncontroller.listener.names=CONTROLLER\n";
        // A broker-only node: not a voter, and without the controller listener it reaches the
        // voters on.
        let broker = parse(&format!("{voters}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092\n")).unwrap();
        assert!(broker.quorum.broker && !broker.quorum.controller);
        assert!(broker.controller_listener().is_none());
        assert_eq!(broker.client_listeners().map(|l| l.name.as_str()).collect::<Vec<_>>(), vec!["PLAINTEXT"]);
        // A controller-only node: a voter whose only listener is the controller listener.
        let controller = parse(&format!("{voters}process.roles=controller\nnode.id=1\nlisteners=CONTROLLER://127.0.0.1:19093\n")).unwrap();
        assert!(!controller.quorum.broker && controller.quorum.controller);
        assert_eq!(controller.controller_listener().map(|l| l.bind.port()), Some(19093));
        assert_eq!(controller.client_listeners().count(), 0);
        for (bad, says) in [
            (format!("{voters}process.roles=broker\nnode.id=1\nlisteners=PLAINTEXT://:19092\n"), "a broker-only node is not a voter"),
            (format!("{voters}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092,CONTROLLER://:19094\n"), "does not listen"),
            (String::from("controller.quorum.voters=1@127.0.0.1:19093\nprocess.roles=broker\nnode.id=4\n"), "controller.listener.names is not"),
            (String::from("process.roles=broker\nnode.id=4\n"), "needs controller.quorum.voters"),
            (String::from("process.roles=controller\nnode.id=1\n"), "needs controller.quorum.voters"),
            (format!("{voters}process.roles=controller\nnode.id=2\nlisteners=CONTROLLER://127.0.0.1:19093\n"), "a controller must be a voter"),
            (format!("{voters}process.roles=controller\nnode.id=1\nlisteners=PLAINTEXT://:19092\n"), "no listener of that name"),
            (format!("{voters}process.roles=controller\nnode.id=1\nlisteners=PLAINTEXT://:19092,CONTROLLER://127.0.0.1:19093\n"), "serves no clients"),
        ] {
            let err = format!("{:#}", parse(&bad).expect_err(&bad));
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn bootstrap_servers_name_a_dynamic_quorum_with_kafkas_rules() {
        let parse = |text: &str| BrokerConfig::from_properties(&parse_properties(text));
        let dynamic = "controller.quorum.bootstrap.servers=127.0.0.1:19093, 127.0.0.1:19094\ncontroller.listener.names=CONTROLLER\n";
        // A controller of a dynamic quorum need not be named anywhere: the log says who votes.
        let controller = parse(&format!("{dynamic}process.roles=controller\nnode.id=7\nlisteners=CONTROLLER://127.0.0.1:19095\n")).unwrap();
        assert_eq!(controller.quorum.bootstrap_servers, vec!["127.0.0.1:19093", "127.0.0.1:19094"]);
        assert!(controller.quorum.dynamic() && controller.controller_listener().is_some());
        let broker = parse(&format!("{dynamic}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092\n")).unwrap();
        assert!(broker.quorum.dynamic() && broker.controller_listener().is_none());
        // As in Kafka, static voters win when both are set.
        let both =
            parse(&format!("{dynamic}controller.quorum.voters=1@127.0.0.1:19093\nprocess.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092\n")).unwrap();
        assert!(!both.quorum.dynamic());
        for (bad, says) in [
            (String::from("controller.quorum.bootstrap.servers=127.0.0.1:19093\nprocess.roles=broker\nnode.id=4\n"), "controller.listener.names is not"),
            (String::from("controller.quorum.bootstrap.servers=1@127.0.0.1:19093\n"), "is not HOST:PORT"),
            (String::from("controller.quorum.bootstrap.servers=127.0.0.1\n"), "must be HOST:PORT"),
            (format!("{dynamic}process.roles=controller\nnode.id=1\nlisteners=PLAINTEXT://:19092\n"), "no listener of that name"),
            (format!("{dynamic}process.roles=broker\nnode.id=4\nlisteners=PLAINTEXT://:19092,CONTROLLER://:19096\n"), "does not listen"),
        ] {
            let err = format!("{:#}", parse(&bad).expect_err(&bad));
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn listeners_parse_and_reject_unsupported() {
        let l = parse_listeners("PLAINTEXT://:19092", Some("PLAINTEXT://broker.example:29092")).unwrap();
        assert_eq!(l[0].bind.port(), 19092);
        assert_eq!(l[0].advertised_host, "broker.example");
        assert_eq!(l[0].advertised_port, 29092);
        assert!(parse_listeners("CLIENT://:9093", None).is_err());
        assert!(parse_listeners("PLAINTEXT://:9093,PLAINTEXT://:9094", None).is_err());
        let c = BrokerConfig::from_properties(&parse_properties(
            "listeners=PLAINTEXT://:19092,CLIENT://:19093\nlistener.security.protocol.map=CLIENT:SASL_PLAINTEXT\n\
             listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256\nconnections.max.reauth.ms=5000",
        ))
        .unwrap();
        assert_eq!(c.listeners[1].security_protocol, crate::security::SecurityProtocol::SaslPlaintext);
        assert_eq!(c.security.listeners[1].sasl.as_ref().unwrap().reauth_ms, 5000);
        assert!(c.security.listeners[0].sasl.is_none());
        // A SASL listener without mechanisms, and an SSL listener without a keystore, are errors.
        assert!(BrokerConfig::from_properties(&parse_properties("listeners=SASL_PLAINTEXT://:19093")).is_err());
        assert!(BrokerConfig::from_properties(&parse_properties("listeners=SSL://:19093")).is_err());
        assert!(BrokerConfig::from_properties(&parse_properties("num.partitions=0")).is_err());
    }

    #[test]
    fn admin_listener_must_not_share_a_kafka_port() {
        let c = BrokerConfig::from_properties(&parse_properties("listeners=PLAINTEXT://127.0.0.1:19092\nadmin.listeners=127.0.0.1:19092")).unwrap();
        let err = c.check_admin_listener().unwrap_err().to_string();
        assert!(err.contains("overlaps the Kafka listener"), "{err}");
        let c = BrokerConfig::from_properties(&parse_properties("listeners=PLAINTEXT://:19092\nadmin.listeners=127.0.0.1:19092")).unwrap();
        assert!(c.check_admin_listener().is_err());
        let c = BrokerConfig::from_properties(&parse_properties("listeners=PLAINTEXT://127.0.0.1:19092\nadmin.listeners=127.0.0.1:19644")).unwrap();
        c.check_admin_listener().unwrap();
    }

    #[test]
    fn core_lists() {
        let first = available_cores().unwrap()[0];
        assert_eq!(parse_core_list(&format!("{first}")).unwrap(), vec![first]);
        assert!(parse_core_list("100000").is_err());
        assert!(parse_core_list("3-1").is_err());
    }

    /// An io-properties file as `shardlog tune iotune` writes it, measuring only `dir`.
    fn iotune_file(path: &Path, dir: &Path, engine: shardlog_tuning::EngineSettings) {
        let measured = shardlog_tuning::Measured {
            write_seq_bytes_per_s: 1_000_000_000,
            write_seq_block_bytes: 1 << 20,
            read_seq_bytes_per_s: 2_000_000_000,
            read_random_4k_iops: 50_000,
            read_random_queue_depth: 16,
            fdatasync_latency_us_p50: 1_000,
            fdatasync_latency_us_p99: 3_000,
            fdatasync_latency_us_p999: 7_000,
            fdatasync_latency_us_max: 9_000,
            fdatasync_samples: 1_000,
            write_seq_by_queue_depth: Vec::new(),
        };
        let disk = shardlog_tuning::DiskProperties {
            dir: dir.to_path_buf(),
            device: None,
            filesystem: None,
            test_file_bytes: 64 << 20,
            duration_ms: 1_000,
            measured,
            engine,
        };
        let props = shardlog_tuning::IoProperties { version: 1, generated_by: "test".into(), generated_at_unix_s: 1, disks: vec![disk] };
        shardlog_tuning::write_io_properties(path, &props).unwrap();
    }

    #[test]
    fn iotune_settings_are_read_back_per_log_dir() {
        let root = tempfile::tempdir().unwrap();
        let (d0, d1) = (root.path().join("d0"), root.path().join("d1"));
        std::fs::create_dir_all(&d0).unwrap();
        std::fs::create_dir_all(&d1).unwrap();
        let engine = shardlog_tuning::EngineSettings { write_buffer_bytes: 256 << 10, writes_in_flight_max: 4, group_commit_window_us: 700 };
        let want = Some(DiskSettings { write_bytes_max: 256 << 10, group_commit_window_us: 700, writes_in_flight_max: 4 });
        let log_dirs = format!("log.dirs={},{}", d0.display(), d1.display());

        // No file: no settings.
        let mut c = BrokerConfig::from_properties(&parse_properties(&log_dirs)).unwrap();
        c.load_io_properties().unwrap();
        assert_eq!(c.disk_settings, vec![None, None]);

        // The default place, io-properties.toml in the first log dir; a log dir it does not measure gets defaults.
        iotune_file(&d0.join("io-properties.toml"), &d0, engine);
        let mut c = BrokerConfig::from_properties(&parse_properties(&log_dirs)).unwrap();
        c.load_io_properties().unwrap();
        assert_eq!(c.disk_settings, vec![want, None]);

        // shardlog.io.properties.file names another file, which wins over the default one.
        let elsewhere = root.path().join("measured.toml");
        iotune_file(&elsewhere, &d1, engine);
        let mut c = BrokerConfig::from_properties(&parse_properties(&format!("{log_dirs}\nshardlog.io.properties.file={}", elsewhere.display()))).unwrap();
        c.load_io_properties().unwrap();
        assert_eq!(c.disk_settings, vec![None, want]);

        // A damaged file is an error that names it.
        std::fs::write(&elsewhere, "version = 1\n").unwrap();
        let mut c = BrokerConfig::from_properties(&parse_properties(&format!("{log_dirs}\nshardlog.io.properties.file={}", elsewhere.display()))).unwrap();
        let err = format!("{:#}", c.load_io_properties().unwrap_err());
        assert!(err.contains("measured.toml") && err.contains("shardlog tune iotune"), "{err}");
    }

    #[test]
    fn inter_broker_listener_is_named_or_the_first_client_listener() {
        let base = "listeners=CONTROLLER://:19093,INTERNAL://:19094,EXTERNAL://:19092\ncontroller.listener.names=CONTROLLER\n\
                    listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT\n";
        let c = BrokerConfig::from_properties(&parse_properties(base)).unwrap();
        assert_eq!(c.inter_broker_listener().map(|l| l.name.as_str()), Some("INTERNAL"));
        let c = BrokerConfig::from_properties(&parse_properties(&format!("{base}inter.broker.listener.name=EXTERNAL\n"))).unwrap();
        assert_eq!(c.inter_broker_listener().map(|l| l.name.as_str()), Some("EXTERNAL"));
        // The controller listener is not a broker's, and a name no listener has is refused.
        for name in ["CONTROLLER", "NOPE"] {
            let err = BrokerConfig::from_properties(&parse_properties(&format!("{base}inter.broker.listener.name={name}\n"))).unwrap_err();
            assert!(format!("{err:#}").contains("inter.broker.listener.name"), "{err:#}");
        }
    }

    #[test]
    fn a_sasl_inter_broker_listener_needs_a_supported_mechanism_and_a_login() {
        let base = "listeners=INTERNAL://:19094,EXTERNAL://:19092\nlistener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,EXTERNAL:PLAINTEXT\n\
                    inter.broker.listener.name=INTERNAL\nlistener.name.internal.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512\n";
        let refused = |extra: &str| format!("{:#}", BrokerConfig::from_properties(&parse_properties(&format!("{base}{extra}"))).unwrap_err());
        // Kafka's default mechanism, GSSAPI, is not served here: the error says what to set.
        let e = refused("");
        assert!(e.contains("sasl.mechanism.inter.broker.protocol") && e.contains("GSSAPI"), "{e}");
        let e = refused("sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n");
        assert!(e.contains("listener.name.internal.scram-sha-512.sasl.jaas.config"), "{e}");
        let e = refused("sasl.mechanism.inter.broker.protocol=PLAIN\nlistener.name.internal.plain.sasl.jaas.config=x required user_a=\"b\";\n");
        assert!(e.contains("username"), "{e}");
        let jaas = "listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"broker\" password=\"p\\\"w\";\n";
        let c = BrokerConfig::from_properties(&parse_properties(&format!("{base}sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512\n{jaas}"))).unwrap();
        let login = c.inter_broker_sasl.expect("a login");
        assert_eq!((login.mechanism, login.username.as_str(), login.password.as_str()), (crate::security::sasl::Mechanism::ScramSha512, "broker", "p\"w"));
        // Not a SASL inter-broker listener: no login wanted.
        let c = BrokerConfig::from_properties(&parse_properties(&base.replace("inter.broker.listener.name=INTERNAL", "inter.broker.listener.name=EXTERNAL")))
            .unwrap();
        assert!(c.inter_broker_sasl.is_none());
    }

    #[test]
    fn log_cleaner_properties() {
        let c = BrokerConfig::from_properties(&BTreeMap::new()).unwrap();
        assert!(c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_io_max_bytes_per_second, f64::MAX);
        let props = parse_properties("log.cleaner.enable=false\nlog.cleaner.io.max.bytes.per.second=1048576\n");
        let c = BrokerConfig::from_properties(&props).unwrap();
        assert!(!c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_io_max_bytes_per_second, 1048576.0);
        let kafka_default = parse_properties("log.cleaner.io.max.bytes.per.second=1.7976931348623157E308\n");
        assert_eq!(BrokerConfig::from_properties(&kafka_default).unwrap().log_cleaner_io_max_bytes_per_second, f64::MAX);
        for bad in ["0", "-5", "fast", "NaN"] {
            let props = parse_properties(&format!("log.cleaner.io.max.bytes.per.second={bad}\n"));
            let e = BrokerConfig::from_properties(&props).unwrap_err().to_string();
            assert!(e.contains("at least 1"), "{bad}: {e}");
        }
    }
}
