//! The CPU topology: which CPUs are online, which NUMA node, socket and physical core each
//! belongs to, and its SMT siblings. Read from
//! `/sys/devices/system/cpu/{online,cpuN/topology/*}` and `/sys/devices/system/node/nodeN/cpulist`.

use anyhow::{bail, Context, Result};

use crate::cpulist::{format_cpu_list, parse_cpu_list};
use crate::sysfs::SysFs;

const CPU_DIR: &str = "/sys/devices/system/cpu";
const NODE_DIR: &str = "/sys/devices/system/node";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub id: usize,
    /// NUMA node (0 on a kernel without NUMA).
    pub node: usize,
    /// `physical_package_id`: the socket.
    pub package: usize,
    /// `core_id`: the physical core within its socket.
    pub core: usize,
    /// `thread_siblings_list`: the hardware threads of the same physical core, this one included.
    pub siblings: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: usize,
    /// Online CPUs of the node.
    pub cpus: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    /// Online CPUs, by id.
    pub cpus: Vec<Cpu>,
    /// NUMA nodes with at least one online CPU, by id.
    pub nodes: Vec<Node>,
}

impl Topology {
    pub fn cpu_ids(&self) -> Vec<usize> {
        self.cpus.iter().map(|c| c.id).collect()
    }

    pub fn cpu(&self, id: usize) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// Whether any physical core runs more than one hardware thread.
    pub fn smt(&self) -> bool {
        self.cpus.iter().any(|c| c.siblings.len() > 1)
    }

    pub fn sockets(&self) -> usize {
        let mut packages: Vec<usize> = self.cpus.iter().map(|c| c.package).collect();
        packages.sort_unstable();
        packages.dedup();
        packages.len()
    }

    /// One line: `16 CPUs online, 2 NUMA nodes, 2 sockets, SMT on`.
    pub fn summary(&self) -> String {
        format!(
            "{} CPUs online ({}), {} NUMA node{}, {} socket{}, SMT {}",
            self.cpus.len(),
            format_cpu_list(&self.cpu_ids()),
            self.nodes.len(),
            if self.nodes.len() == 1 { "" } else { "s" },
            self.sockets(),
            if self.sockets() == 1 { "" } else { "s" },
            if self.smt() { "on" } else { "off" }
        )
    }
}

/// Reads the topology of the online CPUs. Attributes a kernel does not expose fall back to the
/// simplest truth: one node, one socket, every CPU its own core.
pub fn read_topology(fs: &SysFs) -> Result<Topology> {
    let online = match fs.read(&format!("{CPU_DIR}/online")) {
        Ok(text) => parse_cpu_list(&text).with_context(|| format!("{CPU_DIR}/online"))?,
        // Old or unusual kernels: every cpuN directory counts.
        Err(_) => fs
            .list(CPU_DIR)
            .with_context(|| format!("cannot list {CPU_DIR}"))?
            .iter()
            .filter_map(|name| name.strip_prefix("cpu").and_then(|n| n.parse().ok()))
            .collect(),
    };
    if online.is_empty() {
        bail!("no online CPU found under {}", fs.path(CPU_DIR).display());
    }

    let mut nodes = Vec::new();
    for name in fs.list(NODE_DIR).unwrap_or_default() {
        let Some(id) = name.strip_prefix("node").and_then(|n| n.parse::<usize>().ok()) else { continue };
        let path = format!("{NODE_DIR}/{name}/cpulist");
        let cpus: Vec<usize> = parse_cpu_list(&fs.read(&path).with_context(|| path.clone())?).with_context(|| path.clone())?;
        let cpus: Vec<usize> = cpus.into_iter().filter(|c| online.contains(c)).collect();
        if !cpus.is_empty() {
            nodes.push(Node { id, cpus });
        }
    }
    // A kernel without NUMA, or CPUs that no node lists: they make up (or join) node 0.
    let unlisted: Vec<usize> = online.iter().copied().filter(|c| !nodes.iter().any(|n| n.cpus.contains(c))).collect();
    if !unlisted.is_empty() {
        match nodes.iter_mut().find(|n| n.id == 0) {
            Some(node) => {
                node.cpus.extend(unlisted);
                node.cpus.sort_unstable();
            }
            None => nodes.insert(0, Node { id: 0, cpus: unlisted }),
        }
    }

    let mut cpus = Vec::with_capacity(online.len());
    for &id in &online {
        let topology = format!("{CPU_DIR}/cpu{id}/topology");
        let number = |attribute: &str| fs.read_value(&format!("{topology}/{attribute}")).ok().and_then(|v| v.parse::<usize>().ok());
        let siblings = fs
            .read(&format!("{topology}/thread_siblings_list"))
            .ok()
            .and_then(|text| parse_cpu_list(&text).ok())
            .map(|list| list.into_iter().filter(|c| online.contains(c)).collect::<Vec<_>>())
            .filter(|list| list.contains(&id))
            .unwrap_or_else(|| vec![id]);
        let node = nodes.iter().find(|n| n.cpus.contains(&id)).map_or(0, |n| n.id);
        cpus.push(Cpu { id, node, package: number("physical_package_id").unwrap_or(0), core: number("core_id").unwrap_or(id), siblings });
    }
    Ok(Topology { cpus, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &std::path::Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn falls_back_without_numa_or_topology_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sys/devices/system/cpu/online", "0-2\n");
        let t = read_topology(&SysFs::new(dir.path())).unwrap();
        assert_eq!(t.cpu_ids(), vec![0, 1, 2]);
        assert_eq!(t.nodes, vec![Node { id: 0, cpus: vec![0, 1, 2] }]);
        assert_eq!(t.cpus[2], Cpu { id: 2, node: 0, package: 0, core: 2, siblings: vec![2] });
        assert!(!t.smt());
    }

    #[test]
    fn offline_cpus_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sys/devices/system/cpu/online", "0-1,3\n");
        write(dir.path(), "sys/devices/system/node/node0/cpulist", "0-3\n");
        write(dir.path(), "sys/devices/system/cpu/cpu1/topology/thread_siblings_list", "1-2\n");
        let t = read_topology(&SysFs::new(dir.path())).unwrap();
        assert_eq!(t.cpu_ids(), vec![0, 1, 3]);
        assert_eq!(t.nodes[0].cpus, vec![0, 1, 3]);
        assert_eq!(t.cpu(1).unwrap().siblings, vec![1]);
    }

    #[test]
    fn no_cpus_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "sys/devices/system/cpu/online", "\n");
        assert!(read_topology(&SysFs::new(dir.path())).is_err());
    }
}
