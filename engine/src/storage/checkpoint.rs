//! Kafka's offset checkpoint files (`log-start-offset-checkpoint`, `cleaner-offset-checkpoint`):
//! a version line (0), a count line, then one `topic partition offset` line. Kafka keeps one per
//! log directory for all its partitions; here each partition directory has its own, written only
//! by the partition's owner shard, so no two writers ever meet.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::disk::sync_dir;

/// The offset recorded in `dir/file`, if the file is there and in the known format.
pub fn read(dir: &Path, file: &str) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" || lines.next()?.trim() != "1" {
        tracing::warn!(dir = %dir.display(), file, "ignoring a checkpoint in an unknown format");
        return None;
    }
    lines.next()?.split_whitespace().last()?.parse().ok()
}

/// Writes `dir/file` durably: a temporary file, fsync, rename, fsync of the directory.
/// Blocking: run it off the shard.
pub fn write(dir: &Path, file: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
    let path = dir.join(file);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(format!("0\n1\n{topic} {partition} {offset}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    sync_dir(dir)
}
