//! CPU frequency and idle states.

use super::Context;
use crate::cpulist::format_cpu_list;
use crate::report::{echo_into, Finding};
use crate::sysfs::SysFs;

const CPU_DIR: &str = "/sys/devices/system/cpu";

/// Idle states that take longer than this to leave are disabled on shard CPUs. C1 and C1E (1 to
/// 10 µs on current x86) keep most of the power saving; C6 and deeper (around 100 µs) add their
/// exit latency to the first request after every pause.
pub const CSTATE_EXIT_LATENCY_US_MAX: u64 = 20;

/// Groups CPUs by a value: `performance (0-7), powersave (8-15)`, or just `performance` when all
/// agree.
fn grouped(values: &[(usize, String)]) -> String {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (cpu, value) in values {
        match groups.iter_mut().find(|(v, _)| v == value) {
            Some((_, cpus)) => cpus.push(*cpu),
            None => groups.push((value.clone(), vec![*cpu])),
        }
    }
    if groups.len() == 1 {
        return groups.remove(0).0;
    }
    groups.iter().map(|(value, cpus)| format!("{value} ({})", format_cpu_list(cpus))).collect::<Vec<_>>().join(", ")
}

/// `scaling_governor` on every online CPU: recommended `performance`.
pub fn governor(fs: &SysFs, ctx: &Context) -> Finding {
    let cpus = ctx.topology.cpu_ids();
    let finding = Finding::about("cpu.governor", format!("cpus {}", format_cpu_list(&cpus)));
    let why = "A shard alternates bursts of work with short polls; a power-saving governor lowers the clock in between and every burst starts slow.";
    let values: Vec<(usize, String)> =
        cpus.iter().filter_map(|&cpu| fs.read_value(&format!("{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor")).ok().map(|v| (cpu, v))).collect();
    if values.is_empty() {
        return finding
            .not_applicable("no cpufreq", "The kernel exposes no frequency scaling here (a VM, or firmware in control), so there is nothing to set.");
    }
    let current = grouped(&values);
    let slow: Vec<usize> = values.iter().filter(|(_, v)| v != "performance").map(|(cpu, _)| *cpu).collect();
    if slow.is_empty() {
        return finding.ok(current, "performance", why);
    }
    let available = fs.read_value(&format!("{CPU_DIR}/cpu{}/cpufreq/scaling_available_governors", slow[0])).unwrap_or_default();
    if !available.split_whitespace().any(|g| g == "performance") {
        return finding.manual(current, "performance", why, format!("the cpufreq driver offers only {available:?}; set a performance profile in the firmware"));
    }
    let commands = slow.iter().map(|cpu| echo_into("performance", &format!("{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor"))).collect();
    finding.change(current, "performance", why, commands)
}

/// An idle state of one CPU.
struct IdleState {
    cpu: usize,
    index: String,
    name: String,
    latency_us: u64,
    disabled: bool,
}

fn idle_states(fs: &SysFs, cpu: usize) -> Vec<IdleState> {
    let dir = format!("{CPU_DIR}/cpu{cpu}/cpuidle");
    let mut states = Vec::new();
    for index in fs.list(&dir).unwrap_or_default().into_iter().filter(|n| n.starts_with("state")) {
        let path = |attribute: &str| format!("{dir}/{index}/{attribute}");
        let Ok(latency_us) = fs.read_u64(&path("latency")) else { continue };
        let name = fs.read_value(&path("name")).unwrap_or_else(|_| index.clone());
        let disabled = fs.read_value(&path("disable")).is_ok_and(|v| v != "0");
        states.push(IdleState { cpu, index, name, latency_us, disabled });
    }
    states
}

/// Idle states on shard CPUs: those with an exit latency above [`CSTATE_EXIT_LATENCY_US_MAX`]
/// should be disabled.
pub fn cstates(fs: &SysFs, ctx: &Context) -> Finding {
    let shard_cpus = &ctx.layout.shard_cpus;
    let finding = Finding::about("cpu.cstates", format!("shard cpus {}", format_cpu_list(shard_cpus)));
    let recommended = format!("none deeper than {CSTATE_EXIT_LATENCY_US_MAX} us enabled");
    let why = "Leaving a deep idle state costs its exit latency (C6: about 100 us) on the first request after every pause, while shallow states keep most of the power saving.";
    let states: Vec<IdleState> = shard_cpus.iter().flat_map(|&cpu| idle_states(fs, cpu)).collect();
    if states.is_empty() {
        return finding.not_applicable("no cpuidle", "The kernel exposes no idle states for these CPUs, so there is nothing to set.");
    }
    // Per CPU, its deepest enabled state; then grouped over CPUs.
    let mut deepest: Vec<(usize, String)> = Vec::new();
    for &cpu in shard_cpus {
        let enabled = states.iter().filter(|s| s.cpu == cpu && !s.disabled).max_by_key(|s| s.latency_us);
        if let Some(state) = enabled {
            deepest.push((cpu, format!("deepest enabled {} ({} us)", state.name, state.latency_us)));
        }
    }
    let current = if deepest.is_empty() { "all disabled".to_string() } else { grouped(&deepest) };
    let deep: Vec<&IdleState> = states.iter().filter(|s| !s.disabled && s.latency_us > CSTATE_EXIT_LATENCY_US_MAX).collect();
    if deep.is_empty() {
        return finding.ok(current, recommended, why);
    }
    let commands = deep.iter().map(|s| echo_into("1", &format!("{CPU_DIR}/cpu{}/cpuidle/{}/disable", s.cpu, s.index))).collect();
    finding.change(current, recommended, why, commands)
}
