//! shardlog-tuning: operating-system tuning for shardlog hosts (planned: `shardlog tune check`
//! and `apply`, the disk probe, and core layouts). Nothing is implemented here yet; the crate
//! holds the place in the workspace layout so the tools have a home.
