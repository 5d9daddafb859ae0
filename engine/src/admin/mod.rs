//! Admin command-line tools (`shardlog group ...`): a small blocking Kafka client that talks to
//! a running broker over its listener, like Kafka's own scripts do.
//!
//! - `client`: the blocking client (framing, headers, ApiVersions negotiation, timeouts, bounds).
//! - `group`: `group list` and `group describe`, split into the requests they send and pure
//!   functions that turn the answers into rows.
//! - `assignment`: the consumer protocol's assignment bytes, decoded defensively.
//! - `table`: aligned plain-text tables.
//! - `tune`: `shardlog tune ...`, the arguments of the host-tuning tools in `shardlog-tuning`.

pub mod assignment;
pub mod client;
pub mod group;
pub mod status;
pub mod table;
pub mod topic;
pub mod tune;

use std::io::{self, Write};

pub use group::GroupCommand;

/// Runs a `shardlog group ...` command and returns the process exit code: 0 on success, 1 on an
/// error (printed to stderr) or when the group does not exist.
pub fn run_group(command: GroupCommand) -> i32 {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let result = group::run(command, &mut out, &mut err).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // `shardlog group list | head -1`: the reader left, which is not an error.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => 0,
        Err(e) => {
            let _ = writeln!(err, "shardlog: {e:#}");
            1
        }
    }
}
