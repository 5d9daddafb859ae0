//! The filesystems under the log directories: their size and free space, for placing new
//! partitions, DescribeLogDirs and the admin listener's status.

use std::path::Path;

/// (total bytes, bytes available to the broker) of the filesystem holding `path`, or None if
/// it cannot be asked (the directory is gone, say).
pub fn filesystem_bytes(path: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some((stat.f_blocks.saturating_mul(stat.f_frsize), stat.f_bavail.saturating_mul(stat.f_frsize)))
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
