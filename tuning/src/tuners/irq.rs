//! Interrupts: keep NIC and disk interrupts off shard CPUs, and irqbalance from undoing it.
//!
//! All of a device's movable interrupts go to the housekeeping CPUs of the layout, those on the
//! device's NUMA node when it has any ("sq-split" in rpk's terms). At very high packet rates one
//! core per node may not keep up with a NIC; then give the layout more housekeeping CPUs with
//! `--cores`. NVMe I/O-queue interrupts are kernel-managed and stay where they are (see
//! [`is_managed_nvme_queue`]).

use super::Context;
use crate::cpulist::{format_cpu_list, parse_cpu_list};
use crate::interrupts::{is_managed_nvme_queue, parse_interrupts, Interrupt, IrqDevice};
use crate::report::{echo_into, Finding};
use crate::sysfs::SysFs;

/// Whether an irqbalance process is running (any `/proc/PID/comm` says so).
pub fn irqbalance_running(fs: &SysFs) -> Option<bool> {
    let pids = fs.list("/proc").ok()?;
    Some(
        pids.iter()
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .any(|pid| fs.read_value(&format!("/proc/{pid}/comm")).is_ok_and(|comm| comm == "irqbalance")),
    )
}

pub fn irqbalance(fs: &SysFs, ctx: &Context) -> Finding {
    let finding = Finding::about("irq.irqbalance", "-");
    let Some(running) = irqbalance_running(fs) else { return finding.unknown("not running", "cannot list /proc") };
    let current = if running { "running" } else { "not running" };
    if ctx.layout.housekeeping_cpus.is_empty() {
        return finding.ok(current, "either", "Every CPU runs a shard, so irqbalance spreading interrupts over them is as good as any fixed placement.");
    }
    let why = "irqbalance rewrites interrupt affinities every few seconds and would move NIC and disk interrupts back onto shard CPUs.";
    if running {
        finding.change(current, "not running", why, vec!["systemctl stop irqbalance".into(), "systemctl disable irqbalance".into()])
    } else {
        finding.ok(current, "not running", why)
    }
}

/// The NICs with a device behind them (not `lo`, bridges, veths), by name.
fn physical_nics(fs: &SysFs) -> Vec<IrqDevice> {
    let names = fs.list("/sys/class/net").unwrap_or_default();
    names.iter().filter_map(|nic| IrqDevice::from_link(fs, nic, &format!("/sys/class/net/{nic}/device"))).collect()
}

/// One finding per NIC and per disk under the log directories.
pub fn affinity(fs: &SysFs, ctx: &Context, log_disks: &[String]) -> Vec<Finding> {
    let interrupts = match fs.read("/proc/interrupts") {
        Ok(text) => parse_interrupts(&text),
        Err(e) => return vec![Finding::about("irq.affinity", "-").unknown("-", format!("cannot read /proc/interrupts: {e}"))],
    };
    let mut findings = Vec::new();
    for nic in physical_nics(fs) {
        findings.push(device_affinity(fs, ctx, &interrupts, &nic, "nic"));
    }
    for disk in log_disks {
        match IrqDevice::from_link(fs, disk, &format!("/sys/block/{disk}/device")) {
            Some(device) => findings.push(device_affinity(fs, ctx, &interrupts, &device, "disk")),
            None => findings.push(
                Finding::about("irq.affinity", format!("{disk} (disk)"))
                    .not_applicable("virtual", "A virtual block device (loop, zram, device-mapper) has no interrupts of its own."),
            ),
        }
    }
    findings
}

fn device_affinity(fs: &SysFs, ctx: &Context, all: &[Interrupt], device: &IrqDevice, kind: &str) -> Finding {
    let finding = Finding::about("irq.affinity", format!("{} ({kind})", device.name));
    let (managed, movable): (Vec<&Interrupt>, Vec<&Interrupt>) = device.interrupts(fs, all).into_iter().partition(|i| is_managed_nvme_queue(i));
    let managed_note = match managed.len() {
        0 => String::new(),
        1 => " (1 kernel-managed NVMe queue interrupt left alone)".to_string(),
        n => format!(" ({n} kernel-managed NVMe queue interrupts left alone)"),
    };
    if movable.is_empty() {
        return finding.not_applicable(
            format!("no movable interrupts{managed_note}"),
            "Nothing of this device's can be moved: it shares interrupts or the kernel places them.",
        );
    }
    let mut placements: Vec<(u32, Vec<usize>)> = Vec::new();
    for interrupt in &movable {
        let path = format!("/proc/irq/{}/smp_affinity_list", interrupt.irq);
        match fs.read(&path).map_err(|e| e.to_string()).and_then(|t| parse_cpu_list(&t).map_err(|e| e.to_string())) {
            Ok(cpus) => placements.push((interrupt.irq, cpus)),
            Err(e) => return finding.unknown("-", format!("cannot read {path}: {e}")),
        }
    }
    let current = describe(&placements) + &managed_note;
    if ctx.layout.housekeeping_cpus.is_empty() {
        return finding.not_applicable(current, "Every CPU runs a shard (see `tune layout`), so there is no interrupt-only CPU to move them to.");
    }
    let target = ctx.layout.housekeeping_near(&ctx.topology, device.numa_node);
    let target_list = format_cpu_list(&target);
    let why = format!(
        "An interrupt on a shard CPU preempts that shard at a random moment and shows up as tail latency; CPUs {target_list} are kept for them{}.",
        device.numa_node.map(|n| format!(" (NUMA node {n}, the device's)")).unwrap_or_default()
    );
    let misplaced: Vec<u32> = placements.iter().filter(|(_, cpus)| cpus.iter().any(|c| !target.contains(c))).map(|(irq, _)| *irq).collect();
    if misplaced.is_empty() {
        return finding.ok(current, format!("cpus {target_list}"), why);
    }
    let commands = misplaced.iter().map(|irq| echo_into(&target_list, &format!("/proc/irq/{irq}/smp_affinity_list"))).collect();
    finding.change(current, format!("cpus {target_list}"), why, commands)
}

/// `irq 38,39 on 0-1; irq 41 on 0`.
fn describe(placements: &[(u32, Vec<usize>)]) -> String {
    let mut groups: Vec<(Vec<usize>, Vec<u32>)> = Vec::new();
    for (irq, cpus) in placements {
        match groups.iter_mut().find(|(c, _)| c == cpus) {
            Some((_, irqs)) => irqs.push(*irq),
            None => groups.push((cpus.clone(), vec![*irq])),
        }
    }
    groups
        .iter()
        .map(|(cpus, irqs)| {
            let irqs: Vec<String> = irqs.iter().map(u32::to_string).collect();
            format!("irq {} on {}", irqs.join(","), format_cpu_list(cpus))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
