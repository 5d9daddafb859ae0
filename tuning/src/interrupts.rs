//! `/proc/interrupts`, and which interrupts belong to a NIC or a disk.
//!
//! A device's interrupts are found three ways, because drivers name them differently: the PCI
//! function's `msi_irqs/` directory; the interrupt chip name, which on current kernels carries the
//! PCI address (`PCI-MSIX-0000:00:03.0`); and the action names, which carry the interface
//! (`eth0-TxRx-0`), the virtio device (`virtio2-input.0`) or the NVMe controller (`nvme0q3`).

use crate::sysfs::{basename, parent, SysFs};

/// One numbered line of `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interrupt {
    pub irq: u32,
    /// The interrupt chip and hardware IRQ columns, as printed (`PCI-MSIX-0000:00:03.0 1-edge`).
    pub chip: String,
    /// The handlers' names (`virtio2-input.0`; several for a shared line).
    pub actions: Vec<String>,
}

/// Parses the numbered lines of `/proc/interrupts`; the named ones (NMI, LOC, ...) are per-CPU
/// and cannot be moved, so they are left out.
pub fn parse_interrupts(text: &str) -> Vec<Interrupt> {
    let mut lines = text.lines();
    let cpus = lines.next().map_or(0, |header| header.split_whitespace().count());
    lines.filter_map(|line| parse_line(line, cpus)).collect()
}

fn parse_line(line: &str, cpus: usize) -> Option<Interrupt> {
    let (irq, rest) = line.trim_start().split_once(':')?;
    let irq: u32 = irq.parse().ok()?;
    let tokens: Vec<&str> = rest.split_whitespace().collect();
    let counts = tokens.iter().take(cpus).take_while(|t| t.parse::<u64>().is_ok()).count();
    let tokens = &tokens[counts..];
    // The trigger type ends the chip columns: `5-edge` on x86, `Level`/`Edge` on ARM GIC.
    let trigger = tokens.iter().rposition(|t| {
        let t = t.to_ascii_lowercase();
        t.ends_with("edge") || t.ends_with("level") || t.ends_with("fasteoi")
    });
    let (chip, actions) = match trigger {
        Some(i) => (tokens[..=i].join(" "), tokens[i + 1..].join(" ")),
        None if tokens.len() > 1 => (tokens[..tokens.len() - 1].join(" "), tokens[tokens.len() - 1].to_string()),
        None => (String::new(), tokens.join(" ")),
    };
    let actions = actions.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    Some(Interrupt { irq, chip, actions })
}

/// Whether a sysfs directory name is a PCI function address (`0000:3b:00.0`).
fn is_pci_address(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.' && name.chars().enumerate().all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// How far above a device directory its PCI function may be: a virtio device sits one level
/// under it, an NVMe controller two, a SATA disk five (`ata1/host0/target0:0:0/0:0:0:0`).
const PCI_FUNCTION_DEPTH_MAX: usize = 6;

/// The PCI function a device directory belongs to: itself, or the nearest ancestor.
pub fn pci_function(device_dir: &str) -> Option<&str> {
    let mut dir = device_dir;
    for _ in 0..PCI_FUNCTION_DEPTH_MAX {
        if is_pci_address(basename(dir)) {
            return Some(dir);
        }
        if dir == "/" {
            break;
        }
        dir = parent(dir);
    }
    None
}

/// A device whose interrupts a tuner places.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrqDevice {
    /// `eth0`, `nvme0n1`.
    pub name: String,
    /// The resolved sysfs device directory (`/sys/devices/pci0000:00/0000:00:03.0/virtio2`).
    pub device_dir: String,
    /// Prefixes of action names that belong to it (`eth0`, `virtio2`, `nvme0`).
    pub action_prefixes: Vec<String>,
    /// NUMA node of its PCI function, when the kernel knows it.
    pub numa_node: Option<usize>,
}

impl IrqDevice {
    /// The device behind `/sys/class/net/IFACE/device` or `/sys/block/DISK/device`. `None` for
    /// virtual devices, which have no interrupts of their own.
    pub fn from_link(fs: &SysFs, name: &str, device_link: &str) -> Option<IrqDevice> {
        let device_dir = fs.resolve(device_link).ok()?;
        let mut action_prefixes = vec![name.to_string()];
        let leaf = basename(&device_dir).to_string();
        if !is_pci_address(&leaf) {
            action_prefixes.push(leaf);
        }
        // An NVMe namespace's `device` is its controller (`nvme0`), which names the queues.
        if let Some(controller) = nvme_controller(name) {
            action_prefixes.push(controller);
        }
        action_prefixes.sort();
        action_prefixes.dedup();
        let numa_node = pci_function(&device_dir)
            .and_then(|pci| fs.read_value(&format!("{pci}/numa_node")).ok())
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|n| usize::try_from(n).ok());
        Some(IrqDevice { name: name.to_string(), device_dir, action_prefixes, numa_node })
    }

    /// The interrupts among `all` that belong to this device.
    pub fn interrupts<'a>(&self, fs: &SysFs, all: &'a [Interrupt]) -> Vec<&'a Interrupt> {
        let pci = pci_function(&self.device_dir);
        let msi: Vec<u32> =
            pci.map(|pci| fs.list(&format!("{pci}/msi_irqs")).unwrap_or_default().iter().filter_map(|n| n.parse().ok()).collect()).unwrap_or_default();
        let pci_address = pci.map(basename);
        all.iter()
            .filter(|interrupt| {
                msi.contains(&interrupt.irq)
                    || pci_address.is_some_and(|address| interrupt.chip.contains(address) || interrupt.actions.iter().any(|a| a.contains(address)))
                    || interrupt.actions.iter().any(|action| self.action_prefixes.iter().any(|prefix| action_belongs(action, prefix)))
            })
            .collect()
    }
}

/// `eth0-TxRx-3`, `eth0`, `virtio2-input.0`, `nvme0q1` belong to `eth0`, `virtio2`, `nvme0`;
/// `eth01` does not belong to `eth0`, nor `nvme10q1` to `nvme1`.
fn action_belongs(action: &str, prefix: &str) -> bool {
    match action.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => {
            rest.starts_with(['-', '@', '_']) || (prefix.starts_with("nvme") && rest.starts_with('q') && rest[1..].chars().all(|c| c.is_ascii_digit()))
        }
        None => false,
    }
}

/// `nvme0n1` is a namespace of controller `nvme0`; `nvme0c1n1` (multipath) too.
pub fn nvme_controller(disk: &str) -> Option<String> {
    let rest = disk.strip_prefix("nvme")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    Some(format!("nvme{digits}"))
}

/// NVMe I/O-queue interrupts (`nvme0q1` and up) are "managed": the kernel spreads them over
/// the CPUs, one queue per group of CPUs that submit on it, and refuses to move them. That is
/// what io_uring wants (a completion lands on the CPU that submitted), so they are left alone.
/// The admin queue (`nvme0q0`) is an ordinary interrupt.
pub fn is_managed_nvme_queue(interrupt: &Interrupt) -> bool {
    !interrupt.actions.is_empty()
        && interrupt.actions.iter().all(|action| {
            action.starts_with("nvme")
                && action.rsplit_once('q').is_some_and(|(controller, queue)| {
                    controller.len() > 4 && controller[4..].chars().all(|c| c.is_ascii_digit()) && queue.parse::<u32>().is_ok_and(|q| q >= 1)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "\
           CPU0       CPU1
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 36:          0     747838 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 38:          0       5108 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 50:          3          0  IR-PCI-MSIX-0000:01:00.0    0-edge      nvme0q0
 51:        100          0  IR-PCI-MSIX-0000:01:00.0    1-edge      nvme0q1
 60:          5          5  IR-PCI-MSI 1048576-edge      eth0-TxRx-0
 61:          5          5  IR-PCI-MSI 1048577-edge      eth01
 70:          1          1  GICv3  27 Level     arch_timer
 71:          0          0  IO-APIC  16-fasteoi   ehci_hcd:usb1, nvme1q0
NMI:          0          0   Non-maskable interrupts
LOC:    1158864    1103110   Local timer interrupts
ERR:          0
";

    #[test]
    fn parses_numbered_lines_only() {
        let irqs = parse_interrupts(INTERRUPTS);
        assert_eq!(irqs.len(), 9);
        assert_eq!(irqs[1], Interrupt { irq: 36, chip: "PCI-MSIX-0000:00:02.0 1-edge".into(), actions: vec!["virtio1-req.0".into()] });
        assert_eq!(irqs[5].chip, "IR-PCI-MSI 1048576-edge");
        assert_eq!(irqs[7].chip, "GICv3 27 Level");
        assert_eq!(irqs[7].actions, vec!["arch_timer"]);
        assert_eq!(irqs[8].actions, vec!["ehci_hcd:usb1", "nvme1q0"]);
    }

    #[test]
    fn action_names_match_whole_devices() {
        assert!(action_belongs("eth0-TxRx-0", "eth0"));
        assert!(action_belongs("eth0", "eth0"));
        assert!(!action_belongs("eth01", "eth0"));
        assert!(action_belongs("virtio2-input.0", "virtio2"));
        assert!(!action_belongs("virtio21-input.0", "virtio2"));
        assert!(action_belongs("nvme1q3", "nvme1"));
        assert!(!action_belongs("nvme10q3", "nvme1"));
        assert!(action_belongs("mlx5_comp0@pci:0000:3b:00.0", "mlx5_comp0"));
    }

    #[test]
    fn pci_addresses_and_nvme_names() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(!is_pci_address("virtio2"));
        assert_eq!(pci_function("/sys/devices/pci0000:00/0000:00:03.0/virtio2"), Some("/sys/devices/pci0000:00/0000:00:03.0"));
        assert_eq!(pci_function("/sys/devices/virtual/net/lo"), None);
        assert_eq!(nvme_controller("nvme0n1").as_deref(), Some("nvme0"));
        assert_eq!(nvme_controller("nvme12c1n1").as_deref(), Some("nvme12"));
        assert_eq!(nvme_controller("vda"), None);
    }

    #[test]
    fn io_queues_are_managed_admin_queues_are_not() {
        let irqs = parse_interrupts(INTERRUPTS);
        let by_irq = |n| irqs.iter().find(|i| i.irq == n).unwrap();
        assert!(!is_managed_nvme_queue(by_irq(50)));
        assert!(is_managed_nvme_queue(by_irq(51)));
        assert!(!is_managed_nvme_queue(by_irq(36)));
        assert!(!is_managed_nvme_queue(by_irq(71)));
    }
}
