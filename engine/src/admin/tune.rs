//! `shardlog tune ...`: host tuning, from the `shardlog-tuning` crate. This file only parses the
//! arguments; the checks, the probe and the layout live in that crate (see tuning/README.md).
//!
//! - `tune check`: a table of every tuner: current value, recommended value, status, why.
//! - `tune apply`: makes the changes that `check` recommends (as root), or prints them.
//! - `tune iotune`: measures the disks under log directories and writes an io-properties file.
//! - `tune layout`: the NUMA topology and which CPUs run shards and which take interrupts.

use std::io::{self, Write};
use std::path::PathBuf;

use shardlog_tuning::apply::ShellRunner;
use shardlog_tuning::cli::{self, CheckOptions, IotuneOptions};

#[derive(clap::Subcommand, Debug)]
pub enum TuneCommand {
    /// Report every OS setting that matters to shardlog: current, recommended, and why. Changes nothing.
    Check {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the findings as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change what `check` reports as needing a change (root only), or print the commands.
    Apply {
        #[command(flatten)]
        target: TargetArgs,
        /// Print the exact shell commands instead of running them (a script for `sudo sh`).
        #[arg(long, visible_alias = "print-commands")]
        dry_run: bool,
    },
    /// Measure the disks under log directories (O_DIRECT bandwidth, 4 KiB IOPS, fdatasync
    /// latency) and write an io-properties file with the engine settings derived from them.
    Iotune {
        /// A log directory to measure (repeat for a JBOD); created if missing. A test file of at
        /// most 256 MiB is written there and deleted.
        #[arg(long = "dir", value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the io-properties file (TOML).
        #[arg(long, value_name = "FILE", default_value = "io-properties.toml")]
        out: PathBuf,
        /// Time budget per directory, in seconds.
        #[arg(long, value_name = "N", default_value_t = 5)]
        duration_s: u64,
    },
    /// Print the NUMA topology and the core layout: shard CPUs and interrupt CPUs.
    Layout {
        /// Where /sys is: `/` (this host) or a fixture tree.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// CPUs that run shards, as for the broker; default: chosen automatically.
        #[arg(long, value_name = "LIST")]
        cores: Option<String>,
    },
}

/// What `check` and `apply` look at.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// Where /sys and /proc are: `/` (this host) or a fixture tree that stands in for one.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// The broker's log directories (repeat for a JBOD). Default: ./data, the broker's default.
    #[arg(long = "log-dir", value_name = "DIR")]
    log_dirs: Vec<PathBuf>,
    /// CPUs that run shards, as for the broker; the others take interrupts. Default: chosen
    /// automatically (see `shardlog tune layout`).
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// Only the tuners whose name starts with this (`disk.`, `vm.swappiness`); repeatable.
    #[arg(long, value_name = "TUNER")]
    only: Vec<String>,
}

impl TargetArgs {
    fn options(self) -> CheckOptions {
        CheckOptions { root: self.root, log_dirs: self.log_dirs, cores: self.cores, only: self.only }
    }
}

/// Runs a `shardlog tune ...` command and returns the process exit code.
pub fn run(command: TuneCommand) -> i32 {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let result = match command {
        TuneCommand::Check { target, json } => cli::check(&target.options(), json, &mut out),
        TuneCommand::Apply { target, dry_run } => cli::apply(&target.options(), dry_run, &mut ShellRunner, &mut out, &mut err),
        TuneCommand::Iotune { dirs, out: file, duration_s } => {
            cli::iotune(&IotuneOptions { dirs, out: file, duration_s, ..IotuneOptions::default() }, &mut out)
        }
        TuneCommand::Layout { root, cores } => cli::layout(&CheckOptions { root, cores, ..CheckOptions::default() }, &mut out),
    };
    match result.and_then(|code| {
        out.flush()?;
        Ok(code)
    }) {
        Ok(code) => code,
        // `shardlog tune check | head`: the reader left, which is not an error.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => 0,
        Err(e) => {
            let _ = writeln!(err, "shardlog: {e:#}");
            1
        }
    }
}
