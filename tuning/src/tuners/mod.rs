//! The tuners. Each is a pure function from a [`SysFs`] view and a [`Context`] (the layout, the
//! log directories, the memlock limit) to [`Finding`]s; none of them changes anything.
//!
//! - `cpu`: the frequency governor, and deep C-states on shard CPUs.
//! - `irq`: irqbalance, and the affinity of NIC and disk interrupts.
//! - `disk`: the block queues of the disks under the log directories.
//! - `filesystem`: the filesystem and mount options of the log directories.
//! - `sysctl`: `fs.aio-max-nr`, `vm.swappiness`, `net.core.somaxconn`.
//! - `memory`: transparent hugepages and the memlock limit.

pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod irq;
pub mod memory;
pub mod sysctl;

use anyhow::Result;

use crate::layout::{choose_layout, Layout};
use crate::mountinfo::{block_disks, mount_for_path, parse_mountinfo, Mount};
use crate::report::Finding;
use crate::sysfs::SysFs;
use crate::topology::{read_topology, Topology};

pub use memory::MemlockLimit;

/// What the tuners judge against.
#[derive(Clone, Debug)]
pub struct Context {
    pub topology: Topology,
    pub layout: Layout,
    /// The broker's log directories, as absolute host paths.
    pub log_dirs: Vec<String>,
    /// RLIMIT_MEMLOCK of this process (what a broker started from the same shell inherits);
    /// `None` when it could not be read.
    pub memlock: Option<MemlockLimit>,
}

impl Context {
    /// Reads the topology, chooses the layout (`--cores`, or automatic) and the memlock limit:
    /// getrlimit on the host, `/proc/self/limits` in a fixture tree.
    pub fn load(fs: &SysFs, requested_cores: Option<&[usize]>, log_dirs: Vec<String>) -> Result<Context> {
        let topology = read_topology(fs)?;
        let layout = choose_layout(&topology, requested_cores)?;
        let memlock =
            if fs.is_host() { MemlockLimit::from_getrlimit() } else { fs.read("/proc/self/limits").ok().and_then(|t| MemlockLimit::from_proc_limits(&t)) };
        Ok(Context { topology, layout, log_dirs, memlock })
    }
}

/// A filesystem that holds log directories, and the whole disks under it.
#[derive(Clone, Debug)]
pub struct LogStorage {
    pub mount: Mount,
    pub log_dirs: Vec<String>,
    pub disks: Vec<String>,
}

/// Groups the log directories by the mount that holds them. `Err` when mountinfo is unreadable.
pub fn log_storage(fs: &SysFs, log_dirs: &[String]) -> std::result::Result<Vec<LogStorage>, String> {
    let text = fs.read("/proc/self/mountinfo").map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mounts = parse_mountinfo(&text);
    let mut storages: Vec<LogStorage> = Vec::new();
    for dir in log_dirs {
        let Some(mount) = mount_for_path(&mounts, dir) else { continue };
        match storages.iter_mut().find(|s| s.mount.mount_point == mount.mount_point) {
            Some(storage) => storage.log_dirs.push(dir.clone()),
            None => storages.push(LogStorage { mount: mount.clone(), log_dirs: vec![dir.clone()], disks: block_disks(fs, mount.major, mount.minor) }),
        }
    }
    Ok(storages)
}

/// The disks under all log directories, each once, in order of first appearance.
pub fn log_disks(storages: &[LogStorage]) -> Vec<String> {
    let mut disks: Vec<String> = Vec::new();
    for disk in storages.iter().flat_map(|s| &s.disks) {
        if !disks.contains(disk) {
            disks.push(disk.clone());
        }
    }
    disks
}

/// Every tuner, in the order `apply` should run their commands: irqbalance is stopped before
/// interrupts are moved, or it would move them back.
pub fn check_all(fs: &SysFs, ctx: &Context) -> Vec<Finding> {
    let mut findings = vec![cpu::governor(fs, ctx), cpu::cstates(fs, ctx), irq::irqbalance(fs, ctx)];
    let storages = log_storage(fs, &ctx.log_dirs);
    let disks = storages.as_ref().map(|s| log_disks(s)).unwrap_or_default();
    findings.extend(irq::affinity(fs, ctx, &disks));
    match &storages {
        Ok(storages) => {
            for disk in &disks {
                findings.extend(disk::check(fs, disk));
            }
            for storage in storages {
                findings.extend(filesystem::check(storage));
            }
        }
        Err(e) => findings.push(Finding::about("fs.type", ctx.log_dirs.join(",")).unknown("xfs", e.clone())),
    }
    findings.extend([sysctl::aio_max_nr(fs), sysctl::swappiness(fs), sysctl::somaxconn(fs)]);
    findings.extend([memory::thp_enabled(fs), memory::thp_defrag(fs), memory::memlock(ctx)]);
    findings
}

/// `1536 KiB`, `8 MiB`, `2 GiB`: the largest binary unit that divides evenly, else bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_print_in_whole_units() {
        assert_eq!(format_bytes(512 << 10), "512 KiB");
        assert_eq!(format_bytes(8 << 20), "8 MiB");
        assert_eq!(format_bytes(1536 << 10), "1536 KiB");
        assert_eq!(format_bytes(100), "100 B");
    }
}
