//! The flows behind `shardlog tune check|apply|iotune|layout`. The argument parsing lives with the
//! binary (`engine/src/admin/tune.rs`); these functions take plain options and writers, so the
//! whole flow runs in tests against fixture trees.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::apply::{self, Runner};
use crate::cpulist::{format_cpu_list, parse_cpu_list};
use crate::iotune::probe::{probe_dirs, render_summary, Progress};
use crate::iotune::{write_io_properties, ProbeOptions, TEST_FILE_BYTES_MAX};
use crate::layout::format_layout;
use crate::mountinfo::host_path;
use crate::report::render_findings;
use crate::sysfs::SysFs;
use crate::tuners::{check_all, Context};
use crate::Finding;

/// The broker's default `log.dirs`.
pub const DEFAULT_LOG_DIR: &str = "./data";

/// Longest `iotune --duration-s`: the probe is meant to be a quick look, not a soak test.
pub const IOTUNE_DURATION_S_MAX: u64 = 600;

#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Where `/sys` and `/proc` are: `/`, or a fixture tree.
    pub root: PathBuf,
    /// The broker's log directories; empty means [`DEFAULT_LOG_DIR`] on the host, `/` in a fixture.
    pub log_dirs: Vec<PathBuf>,
    /// `--cores`: the shard CPUs; `None` chooses automatically (see `tune layout`).
    pub cores: Option<String>,
    /// `--only`: keep the findings whose tuner name starts with one of these (`disk.`,
    /// `vm.swappiness`); empty keeps all.
    pub only: Vec<String>,
}

impl CheckOptions {
    fn sysfs(&self) -> SysFs {
        SysFs::new(if self.root.as_os_str().is_empty() { PathBuf::from("/") } else { self.root.clone() })
    }

    /// Log directories as absolute host paths. On the host they are resolved like the broker
    /// would see them; in a fixture tree they are taken as written (relative to `/`).
    fn log_dirs(&self, fs: &SysFs) -> Vec<String> {
        let given: Vec<PathBuf> =
            if self.log_dirs.is_empty() { vec![PathBuf::from(if fs.is_host() { DEFAULT_LOG_DIR } else { "/" })] } else { self.log_dirs.clone() };
        given.iter().map(|dir| if fs.is_host() { host_path(dir) } else { Path::new("/").join(dir).to_string_lossy().into_owned() }).collect()
    }

    fn context(&self, fs: &SysFs) -> Result<Context> {
        let cores = self.cores.as_deref().map(parse_cpu_list).transpose().context("--cores")?;
        Context::load(fs, cores.as_deref(), self.log_dirs(fs))
    }
}

fn preamble(ctx: &Context) -> String {
    let layout = &ctx.layout;
    let housekeeping = if layout.housekeeping_cpus.is_empty() { "none".to_string() } else { format_cpu_list(&layout.housekeeping_cpus) };
    format!(
        "Shard CPUs {}, interrupt CPUs {} ({}). Log dirs: {}.\n\n",
        format_cpu_list(&layout.shard_cpus),
        housekeeping,
        if layout.automatic { "automatic, see `shardlog tune layout`" } else { "--cores" },
        ctx.log_dirs.join(", ")
    )
}

/// The findings for the options, and the context they were judged in.
pub fn findings(options: &CheckOptions) -> Result<(Context, Vec<Finding>)> {
    let fs = options.sysfs();
    let ctx = options.context(&fs)?;
    let mut findings = check_all(&fs, &ctx);
    if !options.only.is_empty() {
        findings.retain(|f| options.only.iter().any(|prefix| f.tuner.starts_with(prefix.as_str())));
        if findings.is_empty() {
            bail!("--only {} matches no tuner", options.only.join(","));
        }
    }
    Ok((ctx, findings))
}

/// `tune check`: the table, or JSON. Changes nothing. Exit code 0.
pub fn check(options: &CheckOptions, json: bool, out: &mut dyn Write) -> Result<i32> {
    let (ctx, findings) = findings(options)?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &findings)?;
        writeln!(out)?;
    } else {
        write!(out, "{}{}", preamble(&ctx), render_findings(&findings))?;
    }
    Ok(0)
}

/// `tune apply`. With `dry_run`, prints the script and changes nothing. Otherwise runs the
/// commands (only as root, only on the host), then checks again. Exit code 0 when every change
/// was made, 1 when some were not.
pub fn apply(options: &CheckOptions, dry_run: bool, runner: &mut dyn Runner, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let fs = options.sysfs();
    let (ctx, findings) = findings(options)?;
    if dry_run {
        write!(out, "{}", apply::script(&findings))?;
        writeln!(err, "dry run: nothing was changed")?;
        return Ok(0);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let cannot_run = if !fs.is_host() {
        Some("--root is not /, and the commands name the host's own files".to_string())
    } else if !root {
        Some("not running as root; run `shardlog tune apply --print-commands | sudo sh`, or apply as root".to_string())
    } else {
        None
    };
    write!(out, "{}", preamble(&ctx))?;
    let outcome = apply::apply(&findings, runner, cannot_run.as_deref(), out)?;
    if cannot_run.is_none() && !outcome.ran.is_empty() {
        let (_, after) = self::findings(options)?;
        writeln!(out, "\nAfter apply:\n")?;
        write!(out, "{}", render_findings(&after))?;
        writeln!(out, "\nThese changes last until reboot; tuning/README.md says how to make them persist.")?;
    }
    Ok(if outcome.complete() { 0 } else { 1 })
}

#[derive(Clone, Debug)]
pub struct IotuneOptions {
    pub dirs: Vec<PathBuf>,
    pub out: PathBuf,
    pub duration_s: u64,
    pub file_bytes_max: u64,
}

impl Default for IotuneOptions {
    fn default() -> Self {
        IotuneOptions { dirs: Vec::new(), out: PathBuf::from("io-properties.toml"), duration_s: 5, file_bytes_max: TEST_FILE_BYTES_MAX }
    }
}

/// `tune iotune`: probes each directory, writes the io-properties file, prints a summary.
pub fn iotune(options: &IotuneOptions, out: &mut dyn Write) -> Result<i32> {
    if options.dirs.is_empty() {
        bail!("give at least one --dir");
    }
    if !(1..=IOTUNE_DURATION_S_MAX).contains(&options.duration_s) {
        bail!("--duration-s must be from 1 to {IOTUNE_DURATION_S_MAX}");
    }
    let probe = ProbeOptions { duration: Duration::from_secs(options.duration_s), file_bytes_max: options.file_bytes_max };
    let properties = probe_dirs(&options.dirs, &probe, &Progress::stderr())?;
    write_io_properties(&options.out, &properties)?;
    write!(out, "{}", render_summary(&properties))?;
    writeln!(out, "\nWrote {}.", options.out.display())?;
    Ok(0)
}

/// The CPUs this process may run on, when on the host.
fn process_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; zeroed is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into set.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET reads the set filled above, for indexes below CPU_SETSIZE.
    Some((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// `tune layout`: the topology and the chosen layout.
pub fn layout(options: &CheckOptions, out: &mut dyn Write) -> Result<i32> {
    let fs = options.sysfs();
    let ctx = options.context(&fs)?;
    write!(out, "{}", format_layout(&ctx.topology, &ctx.layout))?;
    if fs.is_host() {
        if let Some(allowed) = process_cpus() {
            let outside: Vec<usize> = ctx.layout.shard_cpus.iter().copied().filter(|c| !allowed.contains(c)).collect();
            if !outside.is_empty() {
                writeln!(
                    out,
                    "\nWarning: this process may only run on CPUs {} (cgroup or taskset), not on {}.",
                    format_cpu_list(&allowed),
                    format_cpu_list(&outside)
                )?;
            }
        }
    }
    Ok(0)
}
