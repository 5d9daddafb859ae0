//! The filesystems that hold the log directories: XFS, `noatime`, and XFS's `allocsize`.

use super::LogStorage;
use crate::report::{shell_quote, Finding};

/// A fixed `allocsize` below this fragments the buffered index files that grow a few KiB at a
/// time; the XFS default (dynamic speculative preallocation) adapts by itself.
pub const XFS_ALLOCSIZE_BYTES_MIN: u64 = 64 << 10;

pub fn check(storage: &LogStorage) -> Vec<Finding> {
    let mut findings = vec![filesystem_type(storage), atime(storage)];
    if storage.mount.fs_type == "xfs" {
        findings.push(allocsize(storage));
    }
    findings
}

fn target(storage: &LogStorage) -> String {
    storage.mount.mount_point.clone()
}

fn filesystem_type(storage: &LogStorage) -> Finding {
    let finding = Finding::about("fs.type", target(storage));
    let fs_type = &storage.mount.fs_type;
    let current = format!("{fs_type} on {}", storage.mount.source);
    let why = "XFS is what thread-per-core engines are built and tested on (ScyllaDB and Redpanda require it): it allocates in parallel across allocation groups and takes concurrent O_DIRECT writes to preallocated files without serializing them.";
    if fs_type == "xfs" {
        return finding.ok(current, "xfs", why);
    }
    finding.manual(
        current,
        "xfs",
        why,
        format!("put the log directories ({}) on XFS filesystems, one per disk: see scripts/jbod-xfs", storage.log_dirs.join(", ")),
    )
}

fn atime(storage: &LogStorage) -> Finding {
    let finding = Finding::about("fs.noatime", target(storage));
    let mode = storage.mount.atime_mode();
    let why = "With relatime the first read of a segment after each append rewrites its inode (atime older than mtime), a metadata write on the hot path that nothing in shardlog reads.";
    if mode == "noatime" {
        return finding.ok(mode, "noatime", why);
    }
    finding.change(mode, "noatime", why, vec![format!("mount -o remount,noatime {}", shell_quote(&storage.mount.mount_point))])
}

/// `64k`, `16m`, `1g`, or plain bytes, as XFS prints and accepts them.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' => (&text[..text.len() - 1], 10),
        b'm' => (&text[..text.len() - 1], 20),
        b'g' => (&text[..text.len() - 1], 30),
        _ => (&text[..], 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn allocsize(storage: &LogStorage) -> Finding {
    let finding = Finding::about("fs.xfs.allocsize", target(storage));
    let recommended = format!("default, or >= {}", super::format_bytes(XFS_ALLOCSIZE_BYTES_MIN));
    let why = "Segments are written with O_DIRECT into fallocate'd space, which allocsize does not touch; it only shapes buffered index files, where the dynamic default or a large fixed size both avoid fragmentation.";
    let Some(value) = storage.mount.option_value("allocsize") else { return finding.ok("default (dynamic)", recommended, why) };
    match parse_size(value) {
        Some(bytes) if bytes >= XFS_ALLOCSIZE_BYTES_MIN => finding.ok(value, recommended, why),
        Some(_) => finding.manual(
            value,
            recommended,
            why,
            format!(
                "XFS cannot change allocsize on remount: drop allocsize from the options of {} in /etc/fstab, then unmount and mount it",
                storage.mount.mount_point
            ),
        ),
        None => finding.unknown(recommended, format!("allocsize={value} is not a size")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("16384K"), Some(16 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("k"), None);
        assert_eq!(parse_size(""), None);
    }
}
