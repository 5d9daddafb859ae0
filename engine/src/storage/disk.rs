//! The filesystems under the log directories: their size and free space, for placing new
//! partitions, DescribeLogDirs and the admin listener's status; and the helpers that make small
//! files and directory entries durable.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// (total bytes, bytes available to the broker) of the filesystem holding `path`, or None if
/// it cannot be asked (the directory is gone, say).
pub fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some((stat.f_blocks.saturating_mul(stat.f_frsize), stat.f_bavail.saturating_mul(stat.f_frsize)))
}

/// Writes `path` with `bytes` and fsyncs it. Blocking: run it off the shard.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Fsyncs a directory, so that the files created, renamed or removed in it stay so after a
/// crash. Blocking: run it off the shard.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("fsync of directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_the_filesystem_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (total, free) = super::filesystem_bytes(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
        assert!(super::filesystem_bytes(&dir.path().join("missing")).is_none());
    }
}
