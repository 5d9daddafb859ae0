//! Structured logs through `tracing`: human-readable text by default, JSON with
//! `--log-format json`. The level filter (`SHARDLOG_LOG`, default `info`) can be changed while the
//! broker runs, through the admin listener (`PUT /v1/log-level`).

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SHARDLOG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).init(),
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))).init()
        }
    }
    let _ = FILTER.set(handle);
}

/// Replaces the level filter, e.g. `debug` or `info,shardlog_engine::groups=trace`.
pub fn set_filter(directives: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(directives).map_err(|e| format!("invalid log filter {directives:?}: {e}"))?;
    let handle = FILTER.get().ok_or_else(|| String::from("logging is not initialised"))?;
    handle.reload(filter).map_err(|e| format!("cannot change the log filter: {e}"))?;
    tracing::info!(filter = directives, "log filter changed");
    Ok(())
}

/// The current filter, as text.
pub fn current_filter() -> String {
    FILTER.get().and_then(|h| h.with_current(|f| f.to_string()).ok()).unwrap_or_default()
}
