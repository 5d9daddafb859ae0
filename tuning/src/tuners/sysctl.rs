//! Kernel parameters under `/proc/sys`, changed with `sysctl -w` (which lasts until reboot; the
//! README says how to persist them).

use crate::report::Finding;
use crate::sysfs::SysFs;

/// rpk and Seastar ask for this many; the kernel default is 65536.
pub const AIO_MAX_NR_MIN: u64 = 1_048_576;
/// At or below this the kernel swaps only to avoid running out of memory.
pub const SWAPPINESS_MAX: u64 = 1;
/// Accept-queue length; the kernel default since 5.4.
pub const SOMAXCONN_MIN: u64 = 4096;

/// `name` is the sysctl name (`vm.swappiness`); its file is `/proc/sys/vm/swappiness`.
fn sysctl(fs: &SysFs, name: &str, why: &str, ok: impl Fn(u64) -> bool, recommended_value: u64, recommended: &str) -> Finding {
    let finding = Finding::about(name, "-");
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    match fs.read_u64(&path) {
        Ok(value) if ok(value) => finding.ok(value.to_string(), recommended, why),
        Ok(value) => finding.change(value.to_string(), recommended, why, vec![format!("sysctl -w {name}={recommended_value}")]),
        Err(e) => finding.unknown(recommended, format!("cannot read {path}: {e}")),
    }
}

pub fn aio_max_nr(fs: &SysFs) -> Finding {
    sysctl(
        fs,
        "fs.aio-max-nr",
        "The host-wide cap on Linux AIO events: glommio itself uses io_uring, but Seastar-based engines, fio and databases on the same host draw from it and fail to start when it runs out.",
        |v| v >= AIO_MAX_NR_MIN,
        AIO_MAX_NR_MIN,
        &format!(">= {AIO_MAX_NR_MIN}"),
    )
}

pub fn swappiness(fs: &SysFs) -> Finding {
    sysctl(
        fs,
        "vm.swappiness",
        "With it low the kernel drops page cache before it swaps out process memory, and a swapped-out page of a shard would stall its whole core on the next touch.",
        |v| v <= SWAPPINESS_MAX,
        SWAPPINESS_MAX,
        &SWAPPINESS_MAX.to_string(),
    )
}

pub fn somaxconn(fs: &SysFs) -> Finding {
    sysctl(
        fs,
        "net.core.somaxconn",
        "It caps the accept queue of each listener, and a burst of client reconnects (a rolling restart of consumers) beyond it gets dropped SYNs and second-long retries.",
        |v| v >= SOMAXCONN_MIN,
        SOMAXCONN_MIN,
        &format!(">= {SOMAXCONN_MIN}"),
    )
}
