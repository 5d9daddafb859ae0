//! The load generator behind `shardlog-bench`: it speaks the Kafka protocol itself (through
//! `shardlog-protocol`), so the same workload file runs against shardlog, Apache Kafka or
//! Redpanda.
//!
//! The path of a record: [`producer`] generates it on the [`schedule`] with its identity and
//! checksum in the value ([`record`]), batches it, and sends it over a pipelined [`net`]
//! connection to the leader that [`cluster`] found; [`consumer`] reads it back and checks it;
//! [`stats`] keeps the histograms and counters; [`run`] drives one workload ([`workload`]) and
//! checks the books; [`retry`] says when to ask a broker again; [`result`] is the JSON file, [`report`] the HTML page, [`compare`] the
//! side-by-side table; [`null_broker`] is an in-memory broker for `--dry-run` and the tests.
pub mod cluster;
pub mod compare;
pub mod consumer;
pub mod net;
pub mod null_broker;
pub mod producer;
pub mod record;
pub mod report;
pub mod result;
pub mod retry;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod workload;
