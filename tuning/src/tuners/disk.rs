//! Block queues of the disks under the log directories: I/O scheduler, merges, read-ahead, and
//! (reported, never changed) the write-cache mode.

use crate::interrupts::nvme_controller;
use crate::report::{echo_into, Finding};
use crate::sysfs::SysFs;

/// Read-ahead is fine in this range, and set to [`READ_AHEAD_KB`] outside it. Catch-up fetches
/// read segments sequentially through the page cache (sendfile), which read-ahead helps; beyond a
/// few MiB it only fills the page cache with data no one asked for when many partitions are read.
pub const READ_AHEAD_KB_MIN: u64 = 128;
pub const READ_AHEAD_KB_MAX: u64 = 1024;
pub const READ_AHEAD_KB: u64 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskKind {
    Nvme,
    /// Non-rotational, not NVMe: SATA/SAS SSDs.
    Ssd,
    /// virtio, Xen, loop, zram, nbd: the real queue is somewhere else.
    Virtual,
    Rotational,
}

impl DiskKind {
    pub fn of(fs: &SysFs, disk: &str) -> DiskKind {
        if nvme_controller(disk).is_some() {
            return DiskKind::Nvme;
        }
        let virtual_name = ["vd", "xvd", "loop", "zram", "nbd", "ram", "rbd"].iter().any(|p| disk.starts_with(p));
        let virtio = fs.resolve(&format!("/sys/block/{disk}/device")).is_ok_and(|d| d.contains("/virtio"));
        if virtual_name || virtio {
            return DiskKind::Virtual;
        }
        if fs.read_value(&format!("/sys/block/{disk}/queue/rotational")).is_ok_and(|v| v == "1") {
            DiskKind::Rotational
        } else {
            DiskKind::Ssd
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            DiskKind::Nvme => "NVMe",
            DiskKind::Ssd => "SSD",
            DiskKind::Virtual => "virtual",
            DiskKind::Rotational => "rotational",
        }
    }
}

/// `none [mq-deadline] kyber bfq` is (`mq-deadline`, all four).
pub fn parse_scheduler(text: &str) -> Option<(String, Vec<String>)> {
    let available: Vec<String> = text.split_whitespace().map(|s| s.trim_matches(['[', ']']).to_string()).collect();
    let current = text.split_whitespace().find(|s| s.starts_with('['))?.trim_matches(['[', ']']).to_string();
    Some((current, available))
}

pub fn check(fs: &SysFs, disk: &str) -> Vec<Finding> {
    let kind = DiskKind::of(fs, disk);
    vec![scheduler(fs, disk, kind), nomerges(fs, disk, kind), read_ahead(fs, disk), write_cache(fs, disk)]
}

fn queue(disk: &str, attribute: &str) -> String {
    format!("/sys/block/{disk}/queue/{attribute}")
}

fn scheduler(fs: &SysFs, disk: &str, kind: DiskKind) -> Finding {
    let finding = Finding::about("disk.scheduler", format!("{disk} ({})", kind.as_str()));
    let path = queue(disk, "scheduler");
    let text = match fs.read(&path) {
        Ok(text) => text,
        Err(e) => return finding.unknown("none", format!("cannot read {path}: {e}")),
    };
    let Some((current, available)) = parse_scheduler(&text) else {
        return finding.not_applicable("no scheduler", "The device takes I/O without a request queue scheduler (bio-based), so there is nothing to set.");
    };
    let (wanted, why) = match kind {
        DiskKind::Rotational => (vec!["mq-deadline", "deadline"], "On a spinning disk, deadline ordering cuts seeks while bounding how long a request waits."),
        DiskKind::Nvme => (vec!["none", "noop"], "NVMe queues reorder and parallelize in hardware; a software scheduler only adds CPU and a lock per request."),
        DiskKind::Ssd => (vec!["none", "noop"], "An SSD has no seek cost to optimize; a software scheduler only adds CPU and a lock per request."),
        DiskKind::Virtual => (vec!["none", "noop"], "The host's queue schedules the real disk; scheduling again in the guest only adds CPU and latency."),
    };
    if wanted.contains(&current.as_str()) {
        return finding.ok(current, wanted[0], why);
    }
    match wanted.iter().find(|w| available.iter().any(|a| a == *w)) {
        Some(target) => finding.change(current, *target, why, vec![echo_into(target, &path)]),
        None => finding.manual(current, wanted[0], why, format!("the kernel offers only {}; load the {} scheduler module", available.join(", "), wanted[0])),
    }
}

fn nomerges(fs: &SysFs, disk: &str, kind: DiskKind) -> Finding {
    let finding = Finding::about("disk.nomerges", disk);
    let path = queue(disk, "nomerges");
    let current = match fs.read_value(&path) {
        Ok(v) => v,
        Err(e) => return finding.unknown("-", format!("cannot read {path}: {e}")),
    };
    let (wanted, why) = match kind {
        DiskKind::Nvme | DiskKind::Ssd => {
            ("2", "The engine already writes large aligned buffers, so looking for requests to merge only costs CPU on a fast device.")
        }
        DiskKind::Virtual | DiskKind::Rotational => {
            ("0", "Merging adjacent requests saves seeks on a spinning disk and round trips to the host on a virtual one.")
        }
    };
    if current == wanted {
        finding.ok(current, wanted, why)
    } else {
        finding.change(current, wanted, why, vec![echo_into(wanted, &path)])
    }
}

fn read_ahead(fs: &SysFs, disk: &str) -> Finding {
    let finding = Finding::about("disk.read_ahead_kb", disk);
    let path = queue(disk, "read_ahead_kb");
    let recommended = format!("{READ_AHEAD_KB_MIN}-{READ_AHEAD_KB_MAX}");
    let why = "Catch-up fetches read segments sequentially through the page cache, which read-ahead helps, but several MiB per read fills the cache with data no one asked for when many partitions are read.";
    match fs.read_u64(&path) {
        Ok(kb) if (READ_AHEAD_KB_MIN..=READ_AHEAD_KB_MAX).contains(&kb) => finding.ok(kb.to_string(), recommended, why),
        Ok(kb) => finding.change(kb.to_string(), READ_AHEAD_KB.to_string(), why, vec![echo_into(&READ_AHEAD_KB.to_string(), &path)]),
        Err(e) => finding.unknown(recommended, format!("cannot read {path}: {e}")),
    }
}

/// Reported, never changed: `write through` on a device with a volatile cache would make
/// fdatasync skip the cache flush, and an acknowledged `acks=all` write could vanish on power loss.
fn write_cache(fs: &SysFs, disk: &str) -> Finding {
    let finding = Finding::about("disk.write_cache", disk);
    let path = queue(disk, "write_cache");
    match fs.read_value(&path) {
        Ok(mode) => {
            let why = if mode == "write back" {
                "The device reports a volatile cache, so fdatasync flushes it: acks=all is durable; this is never changed, because claiming write through would skip those flushes."
            } else {
                "The device reports no volatile cache (or power-loss protection), so fdatasync needs no cache flush; this is never changed."
            };
            finding.ok(mode.clone(), mode, why)
        }
        Err(e) => finding.unknown("as the hardware reports", format!("cannot read {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scheduler_list() {
        assert_eq!(
            parse_scheduler("none [mq-deadline] kyber bfq \n"),
            Some(("mq-deadline".into(), vec!["none".into(), "mq-deadline".into(), "kyber".into(), "bfq".into()]))
        );
        assert_eq!(parse_scheduler("[none] mq-deadline").unwrap().0, "none");
        assert_eq!(parse_scheduler("none\n"), None);
        assert_eq!(parse_scheduler(""), None);
    }
}
