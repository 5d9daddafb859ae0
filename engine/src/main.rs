//! `shardlog`: the broker binary. See the README for the command-line contract.
//!
//! With no subcommand it runs the broker; `shardlog group ...` runs an admin command against a
//! running broker instead (see `shardlog_engine::admin`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::{Parser, Subcommand};
use shardlog_engine::admin;
use shardlog_engine::broker;
use shardlog_engine::config::{BrokerConfig, Overrides};

/// A Kafka-compatible streaming broker: thread-per-core, io_uring storage.
#[derive(Parser, Debug)]
// With no subcommand the flags below run the broker (a stable contract, see the README). The
// broker flags and the subcommands do not mix: `shardlog --data-dir d group list` is an error
// rather than a silently ignored flag.
#[command(name = "shardlog", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Data directory (sets `log.dirs`). Default: ./data
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listeners, Kafka syntax: PLAINTEXT://127.0.0.1:9092[,...]. Default: PLAINTEXT://127.0.0.1:9092
    #[arg(long, value_name = "LISTENERS")]
    listeners: Option<String>,
    /// Cores that run shards, one shard per core: "0,1", "0-3", or "auto" (the layout `shardlog tune layout`
    /// prints). Default: `shardlog.cores` from the config file, else every core this process may use.
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// Configuration file: Java properties, or TOML if it ends in .toml. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr. The level comes from SHARDLOG_LOG (default info) and can be
    /// changed at run time through the admin listener.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: shardlog_engine::logging::LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Consumer groups of a running broker: list them, describe one.
    #[command(subcommand)]
    Group(admin::GroupCommand),
    /// Kafka ACLs of a running broker: add, list, remove (as kafka-acls.sh).
    #[command(subcommand)]
    Acl(admin::AclCommand),
    /// The broker's cluster, shards, disks and busiest partitions, from its admin listener.
    Status(admin::status::StatusArgs),
    /// Host tuning: check and apply OS settings, probe disks (iotune), show the core layout.
    #[command(subcommand)]
    Tune(admin::tune::TuneCommand),
    /// SCRAM users of a running broker: create (password from stdin or --password-file), delete, list.
    #[command(subcommand)]
    User(admin::user::UserCommand),
    /// Topics of a running broker: create, list, describe, alter-config, delete.
    #[command(subcommand)]
    Topic(admin::topic::TopicCommand),
    /// Names the first voters of a dynamic quorum (`controller.quorum.bootstrap.servers`) in a
    /// controller's metadata directory, as `kafka-storage.sh format` does; run before its first start.
    Format(FormatArgs),
}

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("voters").args(["standalone", "initial_controllers", "no_initial_controllers"]))]
struct FormatArgs {
    /// The node's configuration file (as given to the broker).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (sets `log.dirs`), as given to the broker.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listeners, as given to the broker: the controller listener is this node's quorum address.
    #[arg(long, value_name = "LISTENERS")]
    listeners: Option<String>,
    /// This controller is the quorum's only voter.
    #[arg(long)]
    standalone: bool,
    /// The quorum's first voters, this node among them: ID@HOST:PORT[:DIRECTORY_ID],...
    #[arg(long, value_name = "LIST")]
    initial_controllers: Option<String>,
    /// This controller joins a running quorum: it observes the log until it is added as a voter.
    #[arg(long)]
    no_initial_controllers: bool,
    /// A directory that is already formatted is left as it is, and that is no error.
    #[arg(long)]
    ignore_formatted: bool,
}

fn format(args: FormatArgs) -> Result<String> {
    use shardlog_engine::controller::quorum::bootstrap;
    let overrides = Overrides { data_dir: args.data_dir, listeners: args.listeners, config_file: args.config, ..Default::default() };
    let config = BrokerConfig::load(&overrides)?;
    let mode = match (args.standalone, args.initial_controllers, args.no_initial_controllers) {
        (true, _, _) => Some(bootstrap::FormatMode::Standalone),
        (_, Some(list), _) => Some(bootstrap::FormatMode::InitialControllers(bootstrap::parse_initial_controllers(&list)?)),
        (_, _, true) => Some(bootstrap::FormatMode::NoInitialControllers),
        _ => None,
    };
    bootstrap::format(&config, &shardlog_engine::shard::meta_dir(&config), mode, args.ignore_formatted)
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Group(command)) => std::process::exit(admin::run_group(command)),
        Some(Command::Acl(command)) => std::process::exit(admin::run_acl(command)),
        Some(Command::Status(args)) => std::process::exit(admin::status::run(args)),
        Some(Command::Tune(command)) => std::process::exit(admin::tune::run(command)),
        Some(Command::User(command)) => std::process::exit(admin::run_user(command)),
        Some(Command::Topic(command)) => std::process::exit(admin::topic::run_topic(command)),
        Some(Command::Format(args)) => match format(args) {
            Ok(said) => {
                println!("{said}");
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("shardlog format: {e:#}");
                std::process::exit(1)
            }
        },
        None => {}
    }
    shardlog_engine::logging::init(cli.log_format);
    if let Err(e) = run(cli) {
        tracing::error!("{e:#}");
        eprintln!("shardlog: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let overrides = Overrides { data_dir: cli.data_dir, listeners: cli.listeners, cores: cli.cores, config_file: cli.config };
    let _ = cli.log_format;
    let config = BrokerConfig::load(&overrides)?;
    tracing::info!(cores = ?config.cores, log_dirs = ?config.log_dirs, "starting shardlog {}", env!("CARGO_PKG_VERSION"));
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "shutting down cleanly");
            broker::SHUTDOWN.store(true, Ordering::SeqCst);
        }
    })?;
    broker::run(config)
}
