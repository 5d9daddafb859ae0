//! The core layout: which CPUs run shards (one pinned executor each) and which are kept for
//! interrupts and housekeeping (NIC and disk interrupts, the kernel's own threads, ssh).
//!
//! A shard is a busy-polling executor that owns its partitions. Every interrupt that lands on its
//! core steals time from it at random moments, which shows up as tail latency. On a machine large
//! enough, giving up one physical core per NUMA node to interrupts buys back more than it costs;
//! on a small one it does not, and every CPU runs a shard.

use anyhow::{bail, Result};

use crate::cpulist::format_cpu_list;
use crate::table;
use crate::topology::Topology;

/// From this many online CPUs on, the automatic layout keeps one physical core per NUMA node for
/// interrupts. Below it, a reserved core would be a large share of the machine (a quarter of a
/// 4-CPU VM) for interrupts that a few shards generate little of.
pub const HOUSEKEEPING_CPUS_MIN_TOTAL: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// CPUs that run shards, one each: what the broker's `--cores` gets.
    pub shard_cpus: Vec<usize>,
    /// CPUs kept for interrupts and housekeeping; may be empty.
    pub housekeeping_cpus: Vec<usize>,
    /// True when chosen automatically, false when given with `--cores`.
    pub automatic: bool,
    /// Why this layout, in one sentence.
    pub reason: String,
}

impl Layout {
    /// The housekeeping CPUs on NUMA node `node`, or all of them when the node has none (or the
    /// node is unknown): an interrupt is best handled near its device, but anywhere but a shard
    /// core beats a shard core.
    pub fn housekeeping_near(&self, topology: &Topology, node: Option<usize>) -> Vec<usize> {
        if let Some(node) = node {
            let near: Vec<usize> = self.housekeeping_cpus.iter().copied().filter(|&c| topology.cpu(c).is_some_and(|cpu| cpu.node == node)).collect();
            if !near.is_empty() {
                return near;
            }
        }
        self.housekeeping_cpus.clone()
    }
}

/// Chooses the layout. With `requested` (`--cores`), those CPUs run shards and every other online
/// CPU is housekeeping. Without it, on a machine with at least [`HOUSEKEEPING_CPUS_MIN_TOTAL`]
/// online CPUs, the first CPU of each NUMA node and its SMT siblings (one physical core per node)
/// are kept for interrupts and the rest run shards; on a smaller machine every CPU runs a shard.
pub fn choose_layout(topology: &Topology, requested: Option<&[usize]>) -> Result<Layout> {
    let online = topology.cpu_ids();
    if let Some(requested) = requested {
        if requested.is_empty() {
            bail!("--cores names no CPU");
        }
        if let Some(bad) = requested.iter().find(|c| !online.contains(c)) {
            bail!("--cores names CPU {bad}, which is not online (online: {})", format_cpu_list(&online));
        }
        let mut shard_cpus = requested.to_vec();
        shard_cpus.sort_unstable();
        shard_cpus.dedup();
        let housekeeping_cpus: Vec<usize> = online.iter().copied().filter(|c| !shard_cpus.contains(c)).collect();
        return Ok(Layout {
            shard_cpus,
            housekeeping_cpus,
            automatic: false,
            reason: "given with --cores; every other online CPU is kept for interrupts".into(),
        });
    }
    if online.len() < HOUSEKEEPING_CPUS_MIN_TOTAL {
        return Ok(Layout {
            shard_cpus: online.clone(),
            housekeeping_cpus: Vec::new(),
            automatic: true,
            reason: format!("{} CPUs is fewer than {HOUSEKEEPING_CPUS_MIN_TOTAL}, so every CPU runs a shard and interrupts share them", online.len()),
        });
    }
    let mut housekeeping_cpus = Vec::new();
    for node in &topology.nodes {
        let Some(&first) = node.cpus.iter().min() else { continue };
        let siblings = topology.cpu(first).map_or_else(|| vec![first], |cpu| cpu.siblings.clone());
        housekeeping_cpus.extend(siblings);
    }
    housekeeping_cpus.sort_unstable();
    housekeeping_cpus.dedup();
    let shard_cpus: Vec<usize> = online.iter().copied().filter(|c| !housekeeping_cpus.contains(c)).collect();
    // A topology where one core per node is everything (8 single-CPU nodes): keep them all for shards.
    if shard_cpus.is_empty() {
        return Ok(Layout {
            shard_cpus: online,
            housekeeping_cpus: Vec::new(),
            automatic: true,
            reason: "every core is alone on its NUMA node, so every CPU runs a shard".into(),
        });
    }
    Ok(Layout {
        shard_cpus,
        housekeeping_cpus,
        automatic: true,
        reason: format!(
            "{} CPUs (at least {HOUSEKEEPING_CPUS_MIN_TOTAL}): the first physical core of each of the {} NUMA node{}, with its SMT siblings, is kept for interrupts and housekeeping",
            online.len(),
            topology.nodes.len(),
            if topology.nodes.len() == 1 { "" } else { "s" }
        ),
    })
}

/// What `shardlog tune layout` prints: the topology, a table of CPUs with their role, and the
/// layout with the flag that starts the broker on it.
pub fn format_layout(topology: &Topology, layout: &Layout) -> String {
    let mut out = String::new();
    out.push_str(&format!("Topology: {}\n\n", topology.summary()));
    let nodes: Vec<Vec<String>> = topology
        .nodes
        .iter()
        .map(|node| {
            let shards = node.cpus.iter().filter(|c| layout.shard_cpus.contains(c)).count();
            vec![node.id.to_string(), format_cpu_list(&node.cpus), shards.to_string()]
        })
        .collect();
    out.push_str(&table::render(&["NODE", "CPUS", "SHARDS"], &nodes));
    out.push('\n');
    let cpus: Vec<Vec<String>> = topology
        .cpus
        .iter()
        .map(|cpu| {
            let role = if layout.shard_cpus.contains(&cpu.id) {
                "shard"
            } else if layout.housekeeping_cpus.contains(&cpu.id) {
                "interrupts+housekeeping"
            } else {
                "unused"
            };
            vec![cpu.id.to_string(), cpu.node.to_string(), cpu.package.to_string(), cpu.core.to_string(), format_cpu_list(&cpu.siblings), role.to_string()]
        })
        .collect();
    out.push_str(&table::render(&["CPU", "NODE", "SOCKET", "CORE", "SIBLINGS", "ROLE"], &cpus));
    out.push('\n');
    out.push_str(&format!("Layout ({}): {}.\n", if layout.automatic { "automatic" } else { "--cores" }, layout.reason));
    out.push_str(&format!("  shards ({}): {}\n", layout.shard_cpus.len(), format_cpu_list(&layout.shard_cpus)));
    if layout.housekeeping_cpus.is_empty() {
        out.push_str("  interrupts and housekeeping: none reserved\n");
    } else {
        out.push_str(&format!("  interrupts and housekeeping ({}): {}\n", layout.housekeeping_cpus.len(), format_cpu_list(&layout.housekeeping_cpus)));
    }
    out.push_str(&format!("\nStart the broker with: shardlog --cores {}\n", format_cpu_list(&layout.shard_cpus)));
    if !layout.housekeeping_cpus.is_empty() {
        out.push_str(&format!(
            "`shardlog tune apply --cores {}` moves NIC and disk interrupts to {}.\n",
            format_cpu_list(&layout.shard_cpus),
            format_cpu_list(&layout.housekeeping_cpus)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Cpu, Node};

    /// `sockets` sockets of `cores` physical cores, `threads` threads each, numbered the way
    /// Linux numbers them on x86: first thread of every core, then the second threads.
    fn topology(sockets: usize, cores: usize, threads: usize) -> Topology {
        let per_thread = sockets * cores;
        let mut cpus = Vec::new();
        for thread in 0..threads {
            for socket in 0..sockets {
                for core in 0..cores {
                    let id = thread * per_thread + socket * cores + core;
                    let siblings = (0..threads).map(|t| t * per_thread + socket * cores + core).collect();
                    cpus.push(Cpu { id, node: socket, package: socket, core, siblings });
                }
            }
        }
        cpus.sort_by_key(|c| c.id);
        let nodes = (0..sockets).map(|s| Node { id: s, cpus: cpus.iter().filter(|c| c.node == s).map(|c| c.id).collect() }).collect();
        Topology { cpus, nodes }
    }

    #[test]
    fn a_small_vm_runs_shards_everywhere() {
        let layout = choose_layout(&topology(1, 2, 1), None).unwrap();
        assert_eq!(layout.shard_cpus, vec![0, 1]);
        assert!(layout.housekeeping_cpus.is_empty());
        assert!(layout.automatic);
    }

    #[test]
    fn two_sockets_with_smt_keep_one_core_per_node() {
        let t = topology(2, 4, 2);
        assert_eq!(t.nodes[0].cpus, vec![0, 1, 2, 3, 8, 9, 10, 11]);
        let layout = choose_layout(&t, None).unwrap();
        assert_eq!(layout.housekeeping_cpus, vec![0, 4, 8, 12]);
        assert_eq!(format_cpu_list(&layout.shard_cpus), "1-3,5-7,9-11,13-15");
        assert_eq!(layout.housekeeping_near(&t, Some(1)), vec![4, 12]);
        assert_eq!(layout.housekeeping_near(&t, None), vec![0, 4, 8, 12]);
    }

    #[test]
    fn eight_cpus_without_smt_keep_one_cpu() {
        let layout = choose_layout(&topology(1, 8, 1), None).unwrap();
        assert_eq!(layout.housekeeping_cpus, vec![0]);
        assert_eq!(layout.shard_cpus, vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn cores_given_on_the_command_line_win() {
        let t = topology(1, 2, 1);
        let layout = choose_layout(&t, Some(&[1])).unwrap();
        assert_eq!((layout.shard_cpus.clone(), layout.housekeeping_cpus.clone(), layout.automatic), (vec![1], vec![0], false));
        assert!(choose_layout(&t, Some(&[5])).is_err());
        assert!(choose_layout(&t, Some(&[])).is_err());
    }

    #[test]
    fn single_cpu_nodes_keep_every_cpu_for_shards() {
        let cpus: Vec<Cpu> = (0..8).map(|id| Cpu { id, node: id, package: id, core: 0, siblings: vec![id] }).collect();
        let nodes = (0..8).map(|id| Node { id, cpus: vec![id] }).collect();
        let layout = choose_layout(&Topology { cpus, nodes }, None).unwrap();
        assert_eq!(layout.shard_cpus.len(), 8);
    }

    #[test]
    fn the_printout_names_the_roles_and_the_flag() {
        let t = topology(2, 4, 2);
        let text = format_layout(&t, &choose_layout(&t, None).unwrap());
        assert!(text.contains("16 CPUs online (0-15), 2 NUMA nodes, 2 sockets, SMT on"), "{text}");
        assert!(text.contains("shardlog --cores 1-3,5-7,9-11,13-15"), "{text}");
        assert!(text.contains("interrupts and housekeeping (4): 0,4,8,12"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["12", "1", "1", "0", "4,12", "interrupts+housekeeping"]), "{text}");
    }
}
