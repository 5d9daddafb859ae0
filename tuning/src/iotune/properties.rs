//! The io-properties file: what `shardlog tune iotune` measured per log directory, and the
//! engine settings derived from it. TOML, because the broker's configuration already reads TOML
//! and the crate is already in the workspace (Seastar's equivalent is YAML).
//!
//! ```toml
//! version = 1
//! generated_by = "shardlog tune iotune 0.1.0"
//! generated_at_unix_s = 1763920000
//!
//! [[disks]]
//! dir = "/mnt/shardlog/d0"          # the log directory measured
//! device = "nvme0n1"                # whole disk(s) under it, when known
//! filesystem = "xfs"
//! test_file_bytes = 268435456
//! duration_ms = 5012
//!
//! [disks.measured]
//! write_seq_bytes_per_s = 1260000000     # best of the queue depths below, 1 MiB O_DIRECT writes
//! write_seq_block_bytes = 1048576
//! read_seq_bytes_per_s = 1900000000      # 1 MiB O_DIRECT reads at queue depth 4
//! read_random_4k_iops = 52000            # 4 KiB O_DIRECT reads at queue depth 16
//! read_random_queue_depth = 16
//! fdatasync_latency_us_p50 = 3600        # 4 KiB append + fdatasync into a preallocated file
//! fdatasync_latency_us_p99 = 8600
//! fdatasync_latency_us_p999 = 32000
//! fdatasync_latency_us_max = 41000
//! fdatasync_samples = 700
//! [[disks.measured.write_seq_by_queue_depth]]
//! queue_depth = 1
//! bytes_per_s = 800000000
//! # ... one table per queue depth tried
//!
//! [disks.engine]
//! write_buffer_bytes = 1048576        # size of one DMA write buffer
//! writes_in_flight_max = 4            # concurrent writes per disk
//! group_commit_window_us = 1800       # how long a commit waits for company before fdatasync
//! ```
//!
//! The engine reads it with [`read_io_properties`] and picks its disk's entry with
//! [`IoProperties::disk_for`]. Everything in `[disks.engine]` is checked on read to lie within
//! the bounds below, so a reader may use the values as they are.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The format version this crate writes and reads.
pub const IO_PROPERTIES_VERSION: u32 = 1;

/// Largest io-properties file read.
const FILE_BYTES_MAX: u64 = 1 << 20;
/// Most disks in one file.
pub const DISKS_MAX: usize = 256;

/// Bounds of the derived settings, checked on read and applied when deriving.
pub const WRITE_BUFFER_BYTES_MIN: u64 = 128 << 10;
pub const WRITE_BUFFER_BYTES_MAX: u64 = 4 << 20;
pub const WRITES_IN_FLIGHT_MAX: u32 = 64;
pub const GROUP_COMMIT_WINDOW_US_MIN: u64 = 100;
pub const GROUP_COMMIT_WINDOW_US_MAX: u64 = 5_000;

/// A write buffer is sized to take about this long to write at the measured bandwidth: long
/// enough that per-I/O costs (a syscall, a completion, a flash program) are amortized, short enough
/// that a commit never waits on a half-full buffer for long.
pub const WRITE_BUFFER_FILL_TARGET_US: u64 = 1_000;

/// The queue depth chosen for writes is the smallest one that reaches this share of the best
/// bandwidth: more writes in flight past the knee only add queueing latency.
pub const WRITE_QUEUE_DEPTH_KNEE_PERCENT: u64 = 90;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoProperties {
    pub version: u32,
    /// The tool and version that wrote the file.
    pub generated_by: String,
    pub generated_at_unix_s: u64,
    pub disks: Vec<DiskProperties>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskProperties {
    /// The log directory that was measured.
    pub dir: PathBuf,
    /// The whole disk(s) under it (`nvme0n1`, `vda`; `md0` members joined with `,`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// Size of the test file used.
    pub test_file_bytes: u64,
    /// How long the probe of this directory ran.
    pub duration_ms: u64,
    pub measured: Measured,
    pub engine: EngineSettings,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// Best sequential O_DIRECT write bandwidth over the queue depths tried.
    pub write_seq_bytes_per_s: u64,
    /// Block size of the sequential reads and writes.
    pub write_seq_block_bytes: u64,
    pub read_seq_bytes_per_s: u64,
    pub read_random_4k_iops: u64,
    pub read_random_queue_depth: u32,
    /// Latency of a 4 KiB O_DIRECT append plus fdatasync into a preallocated file (the engine's
    /// commit path), by percentile. p99.9 needs 1000 samples or more to mean much; see
    /// `fdatasync_samples`.
    pub fdatasync_latency_us_p50: u64,
    pub fdatasync_latency_us_p99: u64,
    pub fdatasync_latency_us_p999: u64,
    pub fdatasync_latency_us_max: u64,
    pub fdatasync_samples: u64,
    /// Sequential write bandwidth by queue depth, as measured.
    #[serde(default)]
    pub write_seq_by_queue_depth: Vec<QueueDepthBandwidth>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepthBandwidth {
    pub queue_depth: u32,
    pub bytes_per_s: u64,
}

/// What the engine should use for a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSettings {
    /// Bytes per DMA write buffer: a power of two, [`WRITE_BUFFER_BYTES_MIN`] to [`WRITE_BUFFER_BYTES_MAX`].
    pub write_buffer_bytes: u64,
    /// Writes in flight per disk: 1 to [`WRITES_IN_FLIGHT_MAX`].
    pub writes_in_flight_max: u32,
    /// How long a commit waits for more writes before its fdatasync:
    /// [`GROUP_COMMIT_WINDOW_US_MIN`] to [`GROUP_COMMIT_WINDOW_US_MAX`].
    pub group_commit_window_us: u64,
}

impl EngineSettings {
    /// Derives the settings from measurements:
    /// - `write_buffer_bytes`: what the best measured bandwidth writes in
    ///   [`WRITE_BUFFER_FILL_TARGET_US`], rounded down to a power of two, within bounds;
    /// - `writes_in_flight_max`: the smallest queue depth within [`WRITE_QUEUE_DEPTH_KNEE_PERCENT`]
    ///   of the best bandwidth;
    /// - `group_commit_window_us`: half the median fdatasync, within bounds. A lone commit waits at
    ///   most half a sync for company; under load syncs run back to back and each one covers
    ///   everything that arrived during the previous one anyway.
    pub fn derive(write_by_queue_depth: &[QueueDepthBandwidth], fdatasync_latency_us_p50: u64) -> EngineSettings {
        let best = write_by_queue_depth.iter().map(|q| q.bytes_per_s).max().unwrap_or(0);
        let fill_bytes = (best as u128 * WRITE_BUFFER_FILL_TARGET_US as u128 / 1_000_000) as u64;
        let write_buffer_bytes = prev_power_of_two(fill_bytes).clamp(WRITE_BUFFER_BYTES_MIN, WRITE_BUFFER_BYTES_MAX);
        let knee = best as u128 * WRITE_QUEUE_DEPTH_KNEE_PERCENT as u128 / 100;
        let writes_in_flight_max =
            write_by_queue_depth.iter().filter(|q| q.bytes_per_s as u128 >= knee).map(|q| q.queue_depth).min().unwrap_or(1).clamp(1, WRITES_IN_FLIGHT_MAX);
        let group_commit_window_us = (fdatasync_latency_us_p50 / 2).clamp(GROUP_COMMIT_WINDOW_US_MIN, GROUP_COMMIT_WINDOW_US_MAX);
        EngineSettings { write_buffer_bytes, writes_in_flight_max, group_commit_window_us }
    }

    fn validate(&self) -> Result<()> {
        ensure!(
            self.write_buffer_bytes.is_power_of_two() && (WRITE_BUFFER_BYTES_MIN..=WRITE_BUFFER_BYTES_MAX).contains(&self.write_buffer_bytes),
            "write_buffer_bytes = {} is not a power of two from {WRITE_BUFFER_BYTES_MIN} to {WRITE_BUFFER_BYTES_MAX}",
            self.write_buffer_bytes
        );
        ensure!(
            (1..=WRITES_IN_FLIGHT_MAX).contains(&self.writes_in_flight_max),
            "writes_in_flight_max = {} is not from 1 to {WRITES_IN_FLIGHT_MAX}",
            self.writes_in_flight_max
        );
        ensure!(
            (GROUP_COMMIT_WINDOW_US_MIN..=GROUP_COMMIT_WINDOW_US_MAX).contains(&self.group_commit_window_us),
            "group_commit_window_us = {} is not from {GROUP_COMMIT_WINDOW_US_MIN} to {GROUP_COMMIT_WINDOW_US_MAX}",
            self.group_commit_window_us
        );
        Ok(())
    }
}

fn prev_power_of_two(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        1 << (63 - n.leading_zeros())
    }
}

impl IoProperties {
    /// Parses and validates io-properties text.
    pub fn parse(text: &str) -> Result<IoProperties> {
        let properties: IoProperties = toml::from_str(text).context("not a valid io-properties file")?;
        properties.validate()?;
        Ok(properties)
    }

    fn validate(&self) -> Result<()> {
        ensure!(self.version == IO_PROPERTIES_VERSION, "io-properties version {} is not the supported version {IO_PROPERTIES_VERSION}", self.version);
        ensure!(!self.disks.is_empty(), "io-properties lists no disk");
        ensure!(self.disks.len() <= DISKS_MAX, "io-properties lists {} disks, more than {DISKS_MAX}", self.disks.len());
        for (i, disk) in self.disks.iter().enumerate() {
            ensure!(disk.dir.is_absolute(), "disk {i}: dir {:?} is not an absolute path", disk.dir);
            if self.disks[..i].iter().any(|d| d.dir == disk.dir) {
                bail!("disk {i}: dir {:?} is listed twice", disk.dir);
            }
            disk.engine.validate().with_context(|| format!("disk {i} ({})", disk.dir.display()))?;
        }
        Ok(())
    }

    /// The entry for log directory `dir`: the same path, or, failing that, the same directory
    /// after resolving symlinks (the engine may have been given `./data`).
    pub fn disk_for(&self, dir: &Path) -> Option<&DiskProperties> {
        if let Some(disk) = self.disks.iter().find(|d| d.dir == dir) {
            return Some(disk);
        }
        let real = std::fs::canonicalize(dir).ok()?;
        self.disks.iter().find(|d| std::fs::canonicalize(&d.dir).is_ok_and(|p| p == real))
    }

    /// The file's text: a comment on what it is, then TOML.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).context("cannot serialize io-properties")?;
        Ok(format!(
            "# shardlog io-properties: disk measurements and the engine settings derived from them.\n\
             # Written by `shardlog tune iotune`; the format is described in tuning/README.md.\n\n{body}"
        ))
    }
}

/// Reads and validates an io-properties file.
pub fn read_io_properties(path: impl AsRef<Path>) -> Result<IoProperties> {
    use std::io::Read;
    let path = path.as_ref();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open io-properties file {}", path.display()))?;
    let mut text = String::new();
    file.take(FILE_BYTES_MAX + 1).read_to_string(&mut text).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(text.len() as u64 <= FILE_BYTES_MAX, "{} is larger than {FILE_BYTES_MAX} bytes", path.display());
    IoProperties::parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Writes an io-properties file (through a temporary file and a rename, so a reader never sees
/// half of one).
pub fn write_io_properties(path: impl AsRef<Path>, properties: &IoProperties) -> Result<()> {
    let path = path.as_ref();
    properties.validate()?;
    let text = properties.to_toml()?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("cannot rename {} to {}", temporary.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qd(queue_depth: u32, mb_per_s: u64) -> QueueDepthBandwidth {
        QueueDepthBandwidth { queue_depth, bytes_per_s: mb_per_s * 1_000_000 }
    }

    fn sample() -> IoProperties {
        let by_qd = vec![qd(1, 800), qd(2, 1100), qd(4, 1260), qd(8, 1250)];
        IoProperties {
            version: IO_PROPERTIES_VERSION,
            generated_by: "test".into(),
            generated_at_unix_s: 1,
            disks: vec![DiskProperties {
                dir: "/mnt/shardlog/d0".into(),
                device: Some("nvme0n1".into()),
                filesystem: Some("xfs".into()),
                test_file_bytes: 256 << 20,
                duration_ms: 5000,
                measured: Measured {
                    write_seq_bytes_per_s: 1_260_000_000,
                    write_seq_block_bytes: 1 << 20,
                    read_seq_bytes_per_s: 1_900_000_000,
                    read_random_4k_iops: 52_000,
                    read_random_queue_depth: 16,
                    fdatasync_latency_us_p50: 3600,
                    fdatasync_latency_us_p99: 8600,
                    fdatasync_latency_us_p999: 32000,
                    fdatasync_latency_us_max: 41000,
                    fdatasync_samples: 700,
                    write_seq_by_queue_depth: by_qd.clone(),
                },
                engine: EngineSettings::derive(&by_qd, 3600),
            }],
        }
    }

    #[test]
    fn derives_settings_from_the_development_machine_numbers() {
        let settings = sample().disks[0].engine;
        // 1.26 GB/s for 1 ms is 1.26 MB: 1 MiB. QD4 is within 90% of the best; QD2 (87%) is not.
        assert_eq!(settings, EngineSettings { write_buffer_bytes: 1 << 20, writes_in_flight_max: 4, group_commit_window_us: 1800 });
    }

    #[test]
    fn derived_settings_stay_in_bounds() {
        let slow = EngineSettings::derive(&[qd(1, 50)], 20);
        assert_eq!(
            slow,
            EngineSettings { write_buffer_bytes: WRITE_BUFFER_BYTES_MIN, writes_in_flight_max: 1, group_commit_window_us: GROUP_COMMIT_WINDOW_US_MIN }
        );
        let fast = EngineSettings::derive(&[qd(1, 1000), qd(64, 20_000)], 1_000_000);
        assert_eq!(
            fast,
            EngineSettings { write_buffer_bytes: WRITE_BUFFER_BYTES_MAX, writes_in_flight_max: 64, group_commit_window_us: GROUP_COMMIT_WINDOW_US_MAX }
        );
        let nothing = EngineSettings::derive(&[], 0);
        assert!(nothing.validate().is_ok());
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("io-properties.toml");
        write_io_properties(&path, &sample()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# shardlog io-properties"), "{text}");
        assert!(text.contains("[disks.engine]\nwrite_buffer_bytes = 1048576\n"), "{text}");
        assert_eq!(read_io_properties(&path).unwrap(), sample());
        assert!(!dir.path().join("io-properties.toml.tmp").exists());
    }

    #[test]
    fn parses_the_documented_minimal_file() {
        let text = r#"
version = 1
generated_by = "hand"
generated_at_unix_s = 0
[[disks]]
dir = "/data"
test_file_bytes = 1
duration_ms = 1
[disks.measured]
write_seq_bytes_per_s = 1
write_seq_block_bytes = 1048576
read_seq_bytes_per_s = 1
read_random_4k_iops = 1
read_random_queue_depth = 1
fdatasync_latency_us_p50 = 1
fdatasync_latency_us_p99 = 1
fdatasync_latency_us_p999 = 1
fdatasync_latency_us_max = 1
fdatasync_samples = 1
[disks.engine]
write_buffer_bytes = 262144
writes_in_flight_max = 2
group_commit_window_us = 500
future_field = "ignored"
"#;
        let properties = IoProperties::parse(text).unwrap();
        assert_eq!(properties.disks[0].device, None);
        assert!(properties.disks[0].measured.write_seq_by_queue_depth.is_empty());
        assert_eq!(properties.disk_for(Path::new("/data")).unwrap().engine.writes_in_flight_max, 2);
        assert!(properties.disk_for(Path::new("/elsewhere")).is_none());
    }

    #[test]
    fn refuses_what_the_engine_must_not_use() {
        let text = sample().to_toml().unwrap();
        let bad = |from: &str, to: &str| IoProperties::parse(&text.replace(from, to)).unwrap_err().to_string();
        assert!(format!("{:#}", IoProperties::parse(&text.replace("version = 1", "version = 2")).unwrap_err()).contains("version 2"));
        assert!(bad("write_buffer_bytes = 1048576", "write_buffer_bytes = 1000000").contains("disk 0"));
        let chain = format!("{:#}", IoProperties::parse(&text.replace("writes_in_flight_max = 4", "writes_in_flight_max = 0")).unwrap_err());
        assert!(chain.contains("writes_in_flight_max = 0"), "{chain}");
        assert!(IoProperties::parse(&text.replace("group_commit_window_us = 1800", "group_commit_window_us = 9999999")).is_err());
        assert!(IoProperties::parse(&text.replace("dir = \"/mnt/shardlog/d0\"", "dir = \"relative\"")).is_err());
        assert!(IoProperties::parse("version = 1\n").is_err());
        assert!(IoProperties::parse("not toml [").is_err());
        let mut twice = sample();
        twice.disks.push(twice.disks[0].clone());
        assert!(IoProperties::parse(&twice.to_toml().unwrap()).unwrap_err().to_string().contains("listed twice"));
    }

    #[test]
    fn a_missing_file_says_which() {
        let error = format!("{:#}", read_io_properties("/nonexistent/io-properties.toml").unwrap_err());
        assert!(error.contains("/nonexistent/io-properties.toml"), "{error}");
    }
}
