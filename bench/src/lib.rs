//! shardlog-bench: the load generator (`shardlog-bench`, in [`loadgen`]) and benchmarks.
//! `cargo bench -p shardlog-bench` runs the criterion micro-benchmarks in `benches/` (record-batch
//! header parsing, CRC-32C, segment append). Results with their commands and machine are recorded
//! in `bench/results/`; workloads for the load generator are in `bench/workloads/`.
pub mod loadgen;
