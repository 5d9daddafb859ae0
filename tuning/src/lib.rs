//! shardlog-tuning: the host side of running shardlog well. It owns the checks and changes of
//! operating-system settings behind `shardlog tune check` and `shardlog tune apply` (in the
//! spirit of `rpk redpanda tune`), the disk probe behind `shardlog tune iotune` (in the spirit of
//! Seastar's iotune) together with the io-properties file it writes and the engine reads, and the
//! core layout behind `shardlog tune layout` (which cores run shards, which take interrupts).
//!
//! Everything that inspects the host reads it through [`SysFs`], a read-only view of `/sys` and
//! `/proc` rooted at a configurable directory, so every tuner is a pure function that unit tests
//! run over the fixture trees in `tuning/fixtures/` without root. Only [`apply`] (running the
//! commands a check produced) and [`iotune`] (writing test files into a log directory) change
//! anything, and only when asked to.
//!
//! - `sysfs`: the rooted, bounded, read-only view of `/sys` and `/proc`.
//! - `cpulist`: the kernel's CPU list syntax (`0-3,8`).
//! - `topology`, `layout`: the NUMA/SMT topology and the choice of shard and housekeeping cores.
//! - `mountinfo`: from a log directory to its mount, filesystem and block devices.
//! - `interrupts`: `/proc/interrupts` and which IRQs belong to which NIC or disk.
//! - `tuners`: one module per group of settings; each returns [`Finding`]s.
//! - `report`: findings, their status, and the table `tune check` prints.
//! - `apply`: turns findings into shell commands, then prints or runs them.
//! - `iotune`: the disk probe, and the io-properties file format ([`read_io_properties`]).
//! - `cli`: the flows of the `shardlog tune` subcommands, over plain options and writers.

pub mod apply;
pub mod cli;
pub mod cpulist;
pub mod interrupts;
pub mod iotune;
pub mod layout;
pub mod mountinfo;
pub mod report;
pub mod sysfs;
pub mod table;
pub mod topology;
pub mod tuners;

pub use iotune::properties::{read_io_properties, write_io_properties, DiskProperties, EngineSettings, IoProperties, Measured};
pub use layout::{choose_layout, Layout};
pub use report::{Finding, Fix, Status};
pub use sysfs::SysFs;
pub use topology::{read_topology, Topology};
pub use tuners::{check_all, Context, MemlockLimit};
