//! The disk probe behind `shardlog tune iotune`, in the spirit of Seastar's iotune: per log
//! directory it measures what the engine's I/O depends on, and derives the engine's disk settings.
//!
//! Per directory, within a bounded time (`--duration-s`, split over the phases below) and with a
//! bounded test file ([`TEST_FILE_BYTES_MAX`], less on a fuller disk), all with O_DIRECT from
//! aligned buffers so the page cache is out of the picture:
//! 1. sequential 1 MiB writes at queue depths 1, 2, 4 and 8 (one thread per write in flight),
//!    into a preallocated file: bandwidth per depth, and the best;
//! 2. sequential 1 MiB reads at queue depth 4 over what was written;
//! 3. random 4 KiB reads at queue depth 16 over what was written: IOPS;
//! 4. 4 KiB appends, each followed by fdatasync, into a file preallocated with
//!    `FALLOC_FL_KEEP_SIZE` (exactly the engine's commit path): latency percentiles.
//!
//! Then [`EngineSettings::derive`] turns them into a write buffer size, writes in flight per
//! disk, and a group-commit window. The test files are deleted, also on error.
//!
//! Caveat for VMs and loop devices: "the disk" may be a host page cache, and reads in particular
//! can come out faster than any real disk.

pub mod probe;
pub mod properties;

pub use probe::{probe_dir, ProbeOptions, TEST_FILE_BYTES_MAX};
pub use properties::{read_io_properties, write_io_properties, DiskProperties, EngineSettings, IoProperties, Measured, QueueDepthBandwidth};
