//! The tuners, the layout and the CLI flows over the fixture trees in `tuning/fixtures/`, which
//! stand in for `/sys` and `/proc` (see tuning/fixtures/README.md for what each models).

use std::path::{Path, PathBuf};

use shardlog_tuning::apply::Runner;
use shardlog_tuning::cli::{self, CheckOptions};
use shardlog_tuning::cpulist::format_cpu_list;
use shardlog_tuning::layout::format_layout;
use shardlog_tuning::{check_all, choose_layout, read_topology, Context, Finding, Fix, MemlockLimit, Status, SysFs};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn check(name: &str, log_dirs: &[&str], cores: Option<&[usize]>) -> (Context, Vec<Finding>) {
    let fs = SysFs::new(fixture(name));
    let ctx = Context::load(&fs, cores, log_dirs.iter().map(|d| d.to_string()).collect()).unwrap();
    let findings = check_all(&fs, &ctx);
    (ctx, findings)
}

fn find<'a>(findings: &'a [Finding], tuner: &str, target: &str) -> &'a Finding {
    findings.iter().find(|f| f.tuner == tuner && f.target == target).unwrap_or_else(|| panic!("no finding {tuner} {target} in {findings:#?}"))
}

fn commands(finding: &Finding) -> Vec<&str> {
    match &finding.fix {
        Fix::Commands(list) => list.iter().map(String::as_str).collect(),
        other => panic!("{} {}: expected commands, got {other:?}", finding.tuner, finding.target),
    }
}

fn manual(finding: &Finding) -> &str {
    match &finding.fix {
        Fix::Manual(what) => what,
        other => panic!("{} {}: expected a manual fix, got {other:?}", finding.tuner, finding.target),
    }
}

const METAL_LOG_DIRS: [&str; 3] = ["/mnt/shardlog/d0", "/mnt/shardlog/d1/kafka", "/mnt/shardlog/d2"];

#[test]
fn vm_2core_matches_the_development_machine() {
    let (ctx, findings) = check("vm-2core", &["/work/data"], None);
    assert_eq!(ctx.layout.shard_cpus, vec![0, 1]);
    assert!(ctx.layout.housekeeping_cpus.is_empty());
    assert_eq!(ctx.memlock, Some(MemlockLimit { soft_bytes: Some(8 << 20), hard_bytes: Some(8 << 20) }));

    let status = |tuner, target| find(&findings, tuner, target).status;
    assert_eq!(status("cpu.governor", "cpus 0-1"), Status::NotApplicable);
    let cstates = find(&findings, "cpu.cstates", "shard cpus 0-1");
    assert_eq!((cstates.status, cstates.current.as_str()), (Status::Ok, "deepest enabled haltpoll idle (1 us)"));
    assert_eq!(find(&findings, "irq.irqbalance", "-").current, "not running");
    assert_eq!(status("irq.irqbalance", "-"), Status::Ok);
    // Every CPU runs a shard, so interrupts have nowhere else to go.
    let nic = find(&findings, "irq.affinity", "eth0 (nic)");
    assert_eq!((nic.status, nic.current.as_str()), (Status::NotApplicable, "irq 37,38,39 on 0-1"));
    assert_eq!(find(&findings, "irq.affinity", "vda (disk)").current, "irq 35,36 on 0-1");
    assert!(!findings.iter().any(|f| f.target.starts_with("lo ")), "virtual NICs have no interrupts");

    let scheduler = find(&findings, "disk.scheduler", "vda (virtual)");
    assert_eq!((scheduler.current.as_str(), scheduler.recommended.as_str()), ("mq-deadline", "none"));
    assert_eq!(commands(scheduler), ["echo none > /sys/block/vda/queue/scheduler"]);
    assert_eq!(status("disk.nomerges", "vda"), Status::Ok);
    assert_eq!(commands(find(&findings, "disk.read_ahead_kb", "vda")), ["echo 512 > /sys/block/vda/queue/read_ahead_kb"]);
    assert_eq!(find(&findings, "disk.write_cache", "vda").current, "write back");

    let fs_type = find(&findings, "fs.type", "/");
    assert_eq!(fs_type.current, "ext4 on /dev/vda");
    assert!(manual(fs_type).contains("scripts/jbod-xfs"));
    assert_eq!(commands(find(&findings, "fs.noatime", "/")), ["mount -o remount,noatime /"]);
    assert!(!findings.iter().any(|f| f.tuner == "fs.xfs.allocsize"), "allocsize is XFS only");

    assert_eq!(commands(find(&findings, "fs.aio-max-nr", "-")), ["sysctl -w fs.aio-max-nr=1048576"]);
    assert_eq!(commands(find(&findings, "vm.swappiness", "-")), ["sysctl -w vm.swappiness=1"]);
    assert_eq!(status("net.core.somaxconn", "-"), Status::Ok);
    assert_eq!(status("vm.thp.enabled", "-"), Status::Ok);
    assert_eq!(status("vm.thp.defrag", "-"), Status::Ok);
    let memlock = find(&findings, "memlock", "2 shards");
    assert_eq!((memlock.status, memlock.current.as_str(), memlock.recommended.as_str()), (Status::Ok, "soft 8 MiB, hard 8 MiB", ">= 1 MiB (2 x 512 KiB)"));
    assert!(findings.iter().all(|f| f.status != Status::Unknown), "{findings:#?}");
}

#[test]
fn metal_16core_cpus_and_interrupts() {
    let (ctx, findings) = check("metal-16core", &METAL_LOG_DIRS, None);
    assert_eq!(format_cpu_list(&ctx.layout.housekeeping_cpus), "0,4,8,12");

    let governor = find(&findings, "cpu.governor", "cpus 0-15");
    assert_eq!(governor.current, "performance (0), powersave (1-15)");
    assert_eq!(commands(governor).len(), 15);
    assert_eq!(commands(governor)[0], "echo performance > /sys/devices/system/cpu/cpu1/cpufreq/scaling_governor");

    let cstates = find(&findings, "cpu.cstates", "shard cpus 1-3,5-7,9-11,13-15");
    assert_eq!(cstates.current, "deepest enabled C6 (133 us) (1-3,6-7,9-11,13-15), deepest enabled C1E (10 us) (5)");
    let disable = commands(cstates);
    assert_eq!(disable.len(), 11, "C6 on every shard CPU but 5, where it is off already");
    assert!(disable.contains(&"echo 1 > /sys/devices/system/cpu/cpu13/cpuidle/state3/disable"));
    assert!(!disable.iter().any(|c| c.contains("cpu0/") || c.contains("cpu4/")), "housekeeping CPUs keep their C-states");

    assert_eq!(commands(find(&findings, "irq.irqbalance", "-")), ["systemctl stop irqbalance", "systemctl disable irqbalance"]);

    // The NIC sits on NUMA node 1: its interrupts go to that node's housekeeping CPUs.
    let nic = find(&findings, "irq.affinity", "eth0 (nic)");
    assert_eq!(nic.current, "irq 100 on 4; irq 101 on 5; irq 102 on 0-15; irq 103 on 12");
    assert_eq!(nic.recommended, "cpus 4,12");
    assert_eq!(commands(nic), ["echo 4,12 > /proc/irq/101/smp_affinity_list", "echo 4,12 > /proc/irq/102/smp_affinity_list"]);
    assert!(!findings.iter().any(|f| f.target.starts_with("docker0") || f.target.starts_with("lo ")));

    // NVMe I/O queues are kernel-managed; only the admin queue moves.
    let nvme0 = find(&findings, "irq.affinity", "nvme0n1 (disk)");
    assert_eq!(nvme0.current, "irq 120 on 0-15 (4 kernel-managed NVMe queue interrupts left alone)");
    assert_eq!(commands(nvme0), ["echo 0,8 > /proc/irq/120/smp_affinity_list"]);
    let nvme1 = find(&findings, "irq.affinity", "nvme1n1 (disk)");
    assert_eq!((nvme1.status, nvme1.recommended.as_str()), (Status::Ok, "cpus 4,12"));
    // sdb, under the LVM volume of d2, interrupts through its AHCI controller.
    assert_eq!(commands(find(&findings, "irq.affinity", "sdb (disk)")), ["echo 0,8 > /proc/irq/140/smp_affinity_list"]);

    // irqbalance must be stopped before interrupts are moved, or it moves them back.
    let order: Vec<&str> = findings.iter().map(|f| f.tuner.as_str()).collect();
    assert!(order.iter().position(|t| *t == "irq.irqbalance") < order.iter().position(|t| *t == "irq.affinity"));
}

#[test]
fn metal_16core_disks_and_filesystems() {
    let (_, findings) = check("metal-16core", &METAL_LOG_DIRS, None);
    let disks: Vec<&str> = findings.iter().filter(|f| f.tuner == "disk.nomerges").map(|f| f.target.as_str()).collect();
    assert_eq!(disks, ["nvme0n1", "nvme1n1", "sdb"], "a partition resolves to its disk, an LVM volume to the disk under it");

    assert_eq!(find(&findings, "disk.scheduler", "nvme0n1 (NVMe)").status, Status::Ok);
    assert_eq!(commands(find(&findings, "disk.scheduler", "nvme1n1 (NVMe)")), ["echo none > /sys/block/nvme1n1/queue/scheduler"]);
    assert_eq!(commands(find(&findings, "disk.scheduler", "sdb (rotational)")), ["echo mq-deadline > /sys/block/sdb/queue/scheduler"]);
    assert_eq!(commands(find(&findings, "disk.nomerges", "nvme0n1")), ["echo 2 > /sys/block/nvme0n1/queue/nomerges"]);
    assert_eq!(find(&findings, "disk.nomerges", "nvme1n1").status, Status::Ok);
    assert_eq!(find(&findings, "disk.nomerges", "sdb").status, Status::Ok);
    assert_eq!(commands(find(&findings, "disk.read_ahead_kb", "nvme1n1")), ["echo 512 > /sys/block/nvme1n1/queue/read_ahead_kb"]);
    let write_through = find(&findings, "disk.write_cache", "nvme1n1");
    assert_eq!((write_through.status, write_through.current.as_str()), (Status::Ok, "write through"));

    assert_eq!(find(&findings, "fs.type", "/mnt/shardlog/d0").status, Status::Ok);
    assert_eq!(find(&findings, "fs.noatime", "/mnt/shardlog/d0").status, Status::Ok);
    assert_eq!(find(&findings, "fs.xfs.allocsize", "/mnt/shardlog/d0").current, "default (dynamic)");
    assert_eq!(commands(find(&findings, "fs.noatime", "/mnt/shardlog/d1")), ["mount -o remount,noatime /mnt/shardlog/d1"]);
    let small = find(&findings, "fs.xfs.allocsize", "/mnt/shardlog/d1");
    assert_eq!(small.current, "16k");
    assert!(manual(small).contains("/etc/fstab"));
    assert_eq!(find(&findings, "fs.xfs.allocsize", "/mnt/shardlog/d2").status, Status::Ok);
    assert!(!findings.iter().any(|f| f.target == "/"), "the OS disk holds no log directory");

    assert_eq!(find(&findings, "fs.aio-max-nr", "-").status, Status::Ok);
    assert_eq!(commands(find(&findings, "vm.thp.enabled", "-")), ["echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"]);
    assert_eq!(commands(find(&findings, "vm.thp.defrag", "-")), ["echo madvise > /sys/kernel/mm/transparent_hugepage/defrag"]);
    let memlock = find(&findings, "memlock", "12 shards");
    assert_eq!((memlock.current.as_str(), memlock.recommended.as_str()), ("soft 64 KiB, hard 64 KiB", ">= 6 MiB (12 x 512 KiB)"));
    assert!(manual(memlock).contains("limits.conf"), "the hard limit is too low too");
    assert!(findings.iter().all(|f| f.status != Status::Unknown), "{findings:#?}");
}

#[test]
fn cores_given_by_hand_change_what_is_judged() {
    // Every CPU a shard: nothing to move interrupts to, and irqbalance may stay.
    let all: Vec<usize> = (0..16).collect();
    let (_, findings) = check("metal-16core", &METAL_LOG_DIRS, Some(&all));
    assert_eq!(find(&findings, "irq.affinity", "eth0 (nic)").status, Status::NotApplicable);
    assert_eq!(find(&findings, "irq.irqbalance", "-").status, Status::Ok);
    assert_eq!(find(&findings, "memlock", "16 shards").recommended, ">= 8 MiB (16 x 512 KiB)");
    // Two shards on node 0: node 1 is all housekeeping, and takes the NIC's interrupts.
    let (_, findings) = check("metal-16core", &METAL_LOG_DIRS, Some(&[1, 2]));
    assert_eq!(find(&findings, "irq.affinity", "eth0 (nic)").recommended, "cpus 4-7,12-15");
    // irq 102 is on 0-15, which includes the shard CPUs.
    assert_eq!(commands(find(&findings, "irq.affinity", "eth0 (nic)")), ["echo 4-7,12-15 > /proc/irq/102/smp_affinity_list"]);
}

#[test]
fn layouts_of_the_fixture_topologies() {
    let vm = read_topology(&SysFs::new(fixture("vm-2core"))).unwrap();
    let layout = choose_layout(&vm, None).unwrap();
    assert_eq!((layout.shard_cpus.clone(), layout.housekeeping_cpus.clone()), (vec![0, 1], vec![]));
    let text = format_layout(&vm, &layout);
    assert!(text.contains("Topology: 2 CPUs online (0-1), 1 NUMA node, 1 socket, SMT off"), "{text}");
    assert!(text.contains("shardlog --cores 0-1"), "{text}");

    let metal = read_topology(&SysFs::new(fixture("metal-16core"))).unwrap();
    assert_eq!(metal.nodes.len(), 2);
    assert_eq!(metal.cpu(12).unwrap().siblings, vec![4, 12]);
    let layout = choose_layout(&metal, None).unwrap();
    assert_eq!(format_cpu_list(&layout.shard_cpus), "1-3,5-7,9-11,13-15");
    assert_eq!(format_cpu_list(&layout.housekeeping_cpus), "0,4,8,12");
}

struct Refuse;

impl Runner for Refuse {
    fn run(&mut self, command: &str) -> Result<(), String> {
        panic!("nothing may run against a fixture tree, yet {command:?} did");
    }
}

fn options(name: &str, log_dirs: &[&str]) -> CheckOptions {
    CheckOptions { root: fixture(name), log_dirs: log_dirs.iter().map(PathBuf::from).collect(), ..CheckOptions::default() }
}

#[test]
fn cli_check_prints_the_table() {
    let mut out = Vec::new();
    assert_eq!(cli::check(&options("vm-2core", &[]), false, &mut out).unwrap(), 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("Shard CPUs 0-1, interrupt CPUs none (automatic, see `shardlog tune layout`). Log dirs: /.\n\nTUNER"), "{text}");
    let swappiness = text.lines().find(|l| l.starts_with("vm.swappiness")).unwrap();
    assert_eq!(swappiness.split_whitespace().take(6).collect::<Vec<_>>(), ["vm.swappiness", "-", "needs", "change", "60", "1"]);
    assert!(text.ends_with("ok, 6 need a change, 3 not applicable, 0 unknown\n"), "{text}");

    let mut json = Vec::new();
    cli::check(&options("vm-2core", &[]), true, &mut json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let first = &value.as_array().unwrap()[0];
    assert_eq!(first["tuner"], "cpu.governor");
    assert_eq!(first["status"], "not_applicable");
}

#[test]
fn cli_apply_dry_run_prints_a_script_and_runs_nothing() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(cli::apply(&options("metal-16core", &METAL_LOG_DIRS), true, &mut Refuse, &mut out, &mut err).unwrap(), 0);
    let script = String::from_utf8(out).unwrap();
    assert_eq!(String::from_utf8(err).unwrap(), "dry run: nothing was changed\n");
    let lines: Vec<&str> = script.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let stop = lines.iter().position(|l| *l == "systemctl stop irqbalance").unwrap();
    let first_irq = lines.iter().position(|l| l.contains("/proc/irq/")).unwrap();
    assert!(stop < first_irq, "{script}");
    assert!(lines.contains(&"sysctl -w vm.swappiness=1"));
    assert!(lines.contains(&"mount -o remount,noatime /mnt/shardlog/d1"));
    assert!(script.contains("# - memlock 12 shards:"), "{script}");
}

#[test]
fn cli_apply_against_a_fixture_refuses_to_run() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(cli::apply(&options("vm-2core", &[]), false, &mut Refuse, &mut out, &mut err).unwrap(), 1);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Not changing anything: --root is not /"), "{text}");
    assert!(text.contains("  skipped: sysctl -w vm.swappiness=1"), "{text}");
}

#[test]
fn cli_layout_with_cores_outside_the_topology_fails() {
    let mut o = options("vm-2core", &[]);
    o.cores = Some("0-3".into());
    assert!(cli::layout(&o, &mut Vec::new()).is_err());
    o.cores = Some("1".into());
    let mut out = Vec::new();
    cli::layout(&o, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("interrupts and housekeeping (1): 0"), "{text}");
}

#[test]
fn cli_only_keeps_the_named_tuners() {
    let mut o = options("metal-16core", &METAL_LOG_DIRS);
    o.only = vec!["disk.".into(), "vm.swappiness".into()];
    let (_, findings) = cli::findings(&o).unwrap();
    assert_eq!(findings.len(), 13, "4 disk tuners on 3 disks, and swappiness: {findings:#?}");
    assert!(findings.iter().all(|f| f.tuner.starts_with("disk.") || f.tuner == "vm.swappiness"));
    o.only = vec!["nonsense".into()];
    assert!(cli::findings(&o).is_err());
}
