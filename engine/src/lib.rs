//! shardlog-engine: the broker.
//!
//! It owns the shards (one pinned glommio executor per core, see `shard`), the network loops
//! (`net`), one handler per Kafka API (`handlers`), cluster metadata and the placement table
//! (`metadata`), and the storage engine (`storage`: segments, indexes, batch cache and group
//! commit). The data path reads top to bottom: socket (`net::connection`), frame and request
//! (`shardlog_protocol`), handler (`handlers::*`), owner shard (`shard::router`), partition log
//! (`storage::log`), segment (`storage::segment`), disk. `security` holds what a listener needs
//! before the first request: TLS, SASL, SCRAM credentials and the connection's principal.
//! `inter_broker` is the client one broker uses to send requests to another (transaction
//! markers, replica fetches), below the coordinators and `replication` (followers' fetchers,
//! leaders' ISR changes) that use it.
pub mod admin;
pub mod authorizer;
pub mod broker;
pub mod budget;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod groups;
pub mod handlers;
pub mod inter_broker;
pub mod internal_log;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod quota;
pub mod replication;
pub mod runtime;
pub mod security;
pub mod shard;
pub mod storage;
pub mod topic_config;
pub mod topic_config_table;
pub mod txn;
