//! shardlog-bench: the load generator. It runs a workload file against any Kafka-compatible
//! bootstrap address and writes a JSON result; `report` turns a result into an HTML page and
//! `compare` puts results side by side. See bench/README.md.
//!
//! Exit status: 0 when the run's books balance, 1 when they do not (a record unaccounted for,
//! lost after its acknowledgement, corrupt, duplicated or reordered), 2 on any other error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shardlog_bench::loadgen::null_broker::{Faults, NullBroker};
use shardlog_bench::loadgen::result::RunResult;
use shardlog_bench::loadgen::run::{run, summary_text, RunOptions};
use shardlog_bench::loadgen::workload::{parse_rate, Workload};
use shardlog_bench::loadgen::{compare, report};

#[derive(Parser, Debug)]
#[command(name = "shardlog-bench", version, about = "Kafka-protocol load generator: throughput and tail latency of any Kafka-compatible broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a workload file against a broker.
    Run(RunArgs),
    /// Write the HTML report of a result file.
    Report {
        result: PathBuf,
        /// The HTML file to write (default: the result's name with .html).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print result files side by side in one table.
    Compare {
        #[arg(required = true, num_args = 1..)]
        results: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The workload file (TOML; see bench/workloads/).
    workload: PathBuf,
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    /// Use this topic (created if missing) instead of a fresh `<topic_prefix>-<run id>`.
    #[arg(long)]
    topic: Option<String>,
    /// Override the workload's rate: records per second, or "max".
    #[arg(long)]
    rate: Option<String>,
    #[arg(long)]
    duration_s: Option<u64>,
    #[arg(long)]
    warmup_s: Option<u64>,
    #[arg(long)]
    producers: Option<u32>,
    #[arg(long)]
    consumers: Option<u32>,
    #[arg(long)]
    partitions: Option<u32>,
    /// Override the catch-up backlog (records produced before the read).
    #[arg(long)]
    backlog_records: Option<u64>,
    /// Write the JSON result here.
    #[arg(long, short = 'o')]
    out: Option<PathBuf>,
    /// Also write the HTML report next to the JSON result (same name, .html).
    #[arg(long, requires = "out")]
    html: bool,
    /// How long consumers may take, after the producers stop, to read everything.
    #[arg(long, default_value_t = 30)]
    drain_timeout_s: u64,
    /// Run against an in-process null broker that acknowledges and discards (consumers are
    /// turned off): measures what the generator alone can push.
    #[arg(long)]
    dry_run: bool,
    /// Worker threads of the generator's runtime (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Connect with TLS (an SSL listener), trusting the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shardlog-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Report { result, output } => {
            let r = RunResult::read(&result)?;
            let output = output.unwrap_or_else(|| result.with_extension("html"));
            std::fs::write(&output, report::render(&r)).with_context(|| format!("cannot write {}", output.display()))?;
            println!("wrote {}", output.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { results } => {
            let loaded = results.iter().map(|p| RunResult::read(p).map(|r| (p.clone(), r))).collect::<Result<Vec<_>>>()?;
            print!("{}", compare::render(&loaded));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_command(args: RunArgs) -> Result<ExitCode> {
    let mut workload = Workload::from_file(&args.workload)?;
    if let Some(ca) = &args.tls_ca {
        shardlog_bench::loadgen::net::enable_tls(ca)?;
    }
    if let Some(rate) = &args.rate {
        workload.rate = parse_rate(rate)?;
    }
    if let Some(v) = args.duration_s {
        workload.duration_s = v;
    }
    if let Some(v) = args.warmup_s {
        workload.warmup_s = v;
    }
    if let Some(v) = args.producers {
        workload.producers = v;
    }
    if let Some(v) = args.consumers {
        workload.consumers = v;
    }
    if let Some(v) = args.partitions {
        workload.partitions = v;
    }
    if let Some(v) = args.backlog_records {
        workload.backlog_records = v;
    }
    if args.dry_run {
        if workload.is_catchup() {
            bail!("--dry-run measures producing; a catch-up workload measures reading, which needs a broker that stores");
        }
        if workload.consumers > 0 {
            eprintln!("shardlog-bench: --dry-run: the null broker keeps nothing, so the {} consumers are turned off", workload.consumers);
            workload.consumers = 0;
        }
    }
    workload.check().context("after the command-line overrides")?;

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.build()?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    let result = runtime.block_on(async {
        let bootstrap = if args.dry_run { NullBroker::start(false, Faults::default()).await?.address.to_string() } else { args.bootstrap_server.clone() };
        let options = RunOptions {
            bootstrap,
            topic: args.topic.clone(),
            drain_timeout: Duration::from_secs(args.drain_timeout_s),
            progress: !args.quiet,
            dry_run: args.dry_run,
            command_line,
        };
        run(workload, options).await
    })?;
    // The reader and writer tasks of closed connections may still be parked; do not wait.
    runtime.shutdown_timeout(Duration::from_millis(100));
    print!("{}", summary_text(&result));
    if let Some(out) = &args.out {
        result.write(out)?;
        println!("result: {}", out.display());
        if args.html {
            let html_path = out.with_extension("html");
            write_html(&result, &html_path)?;
            println!("report: {}", html_path.display());
        }
    }
    Ok(if result.books.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn write_html(result: &RunResult, path: &Path) -> Result<()> {
    std::fs::write(path, report::render(result)).with_context(|| format!("cannot write {}", path.display()))
}
