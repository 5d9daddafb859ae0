//! Transparent hugepages and the memlock limit.

use super::{format_bytes, Context};
use crate::report::{echo_into, Finding};
use crate::sysfs::SysFs;

/// Locked memory one shard needs: glommio's io_uring rings and registered buffers (measured on
/// the development machines; see DESIGN.md).
pub const MEMLOCK_BYTES_PER_SHARD: u64 = 512 << 10;

const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// `always [madvise] never` is `madvise`.
fn bracketed(text: &str) -> Option<String> {
    text.split_whitespace().find(|s| s.starts_with('[')).map(|s| s.trim_matches(['[', ']']).to_string())
}

pub fn thp_enabled(fs: &SysFs) -> Finding {
    let finding = Finding::about("vm.thp.enabled", "-");
    let path = format!("{THP_DIR}/enabled");
    let why = "With `always` any page fault may stop to compact memory for a huge page, a millisecond stall on a shard; shardlog's buffers are few, long-lived and gain little from huge pages.";
    match fs.read(&path).ok().and_then(|t| bracketed(&t)) {
        Some(mode) if mode == "madvise" || mode == "never" => finding.ok(mode, "madvise", why),
        Some(mode) => finding.change(mode, "madvise", why, vec![echo_into("madvise", &path)]),
        None if !fs.exists(&path) => finding.not_applicable("no THP", "The kernel is built without transparent hugepages."),
        None => finding.unknown("madvise", format!("cannot read {path}")),
    }
}

pub fn thp_defrag(fs: &SysFs) -> Finding {
    let finding = Finding::about("vm.thp.defrag", "-");
    let path = format!("{THP_DIR}/defrag");
    let why = "With `always` a page fault that wants a huge page compacts memory synchronously, stalling the shard; the other modes leave compaction to the background.";
    match fs.read(&path).ok().and_then(|t| bracketed(&t)) {
        Some(mode) if mode != "always" => finding.ok(mode, "madvise", why),
        Some(mode) => finding.change(mode, "madvise", why, vec![echo_into("madvise", &path)]),
        None if !fs.exists(&path) => finding.not_applicable("no THP", "The kernel is built without transparent hugepages."),
        None => finding.unknown("madvise", format!("cannot read {path}")),
    }
}

/// RLIMIT_MEMLOCK: `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemlockLimit {
    pub soft_bytes: Option<u64>,
    pub hard_bytes: Option<u64>,
}

impl MemlockLimit {
    /// This process's limit, from getrlimit.
    pub fn from_getrlimit() -> Option<MemlockLimit> {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into the struct we pass, which lives across the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
            return None;
        }
        // rlim_t is u64 on 64-bit Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        let bytes = |value: libc::rlim_t| if value == libc::RLIM_INFINITY { None } else { Some(value as u64) };
        Some(MemlockLimit { soft_bytes: bytes(limit.rlim_cur), hard_bytes: bytes(limit.rlim_max) })
    }

    /// From `/proc/PID/limits`: `Max locked memory  8388608  8388608  bytes`.
    pub fn from_proc_limits(text: &str) -> Option<MemlockLimit> {
        let line = text.lines().find(|l| l.starts_with("Max locked memory"))?;
        let fields: Vec<&str> = line["Max locked memory".len()..].split_whitespace().collect();
        let value = |field: &str| -> Option<Option<u64>> {
            match field {
                "unlimited" => Some(None),
                number => number.parse().ok().map(Some),
            }
        };
        Some(MemlockLimit { soft_bytes: value(fields.first()?)?, hard_bytes: value(fields.get(1)?)? })
    }
}

fn limit_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "unlimited".to_string(), format_bytes)
}

pub fn memlock(ctx: &Context) -> Finding {
    let shards = ctx.layout.shard_cpus.len() as u64;
    let needed = shards * MEMLOCK_BYTES_PER_SHARD;
    let finding = Finding::about("memlock", format!("{shards} shards"));
    let recommended = format!(">= {} ({shards} x {})", format_bytes(needed), format_bytes(MEMLOCK_BYTES_PER_SHARD));
    let why = "glommio locks about 512 KiB per shard for its io_uring rings and buffers and a shard fails to start below that; this is the limit of this shell, and a systemd unit sets its own with LimitMEMLOCK.";
    let Some(limit) = ctx.memlock else { return finding.unknown(recommended, "cannot read RLIMIT_MEMLOCK") };
    let current = format!("soft {}, hard {}", limit_text(limit.soft_bytes), limit_text(limit.hard_bytes));
    if unlimited_or_at_least(limit.soft_bytes, needed) {
        return finding.ok(current, recommended, why);
    }
    let what = if unlimited_or_at_least(limit.hard_bytes, needed) {
        format!("raise the soft limit where the broker starts: `ulimit -l {}` (KiB), or LimitMEMLOCK={needed} in its systemd unit", needed.div_ceil(1024))
    } else {
        format!(
            "raise the hard limit: `* - memlock {}` in /etc/security/limits.conf (KiB), or LimitMEMLOCK={needed} in the broker's systemd unit",
            needed.div_ceil(1024)
        )
    };
    finding.manual(current, recommended, why, what)
}

/// An RLIMIT value that is unlimited, or at least `bytes`.
fn unlimited_or_at_least(limit: Option<u64>, bytes: u64) -> bool {
    match limit {
        None => true,
        Some(limit) => limit >= bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\nMax locked memory         8388608              unlimited            bytes\n";
        assert_eq!(MemlockLimit::from_proc_limits(text), Some(MemlockLimit { soft_bytes: Some(8 << 20), hard_bytes: None }));
        assert_eq!(MemlockLimit::from_proc_limits("nothing\n"), None);
    }

    #[test]
    fn getrlimit_reads_something() {
        assert!(MemlockLimit::from_getrlimit().is_some());
    }

    #[test]
    fn bracketed_mode() {
        assert_eq!(bracketed("always [madvise] never\n").as_deref(), Some("madvise"));
        assert_eq!(bracketed("always madvise never"), None);
    }
}
