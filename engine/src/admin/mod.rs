//! Admin command-line tools (`shardlog group ...`): a small blocking Kafka client that talks to
//! a running broker over its listener, like Kafka's own scripts do.
//!
//! - `client`: the blocking client: the socket, timeouts and messages around the protocol core it
//!   shares with the load generator (`shardlog_protocol::client`: framing, headers, ApiVersions
//!   negotiation, correlation ids, checked decoding).
//! - `group`: `group list` and `group describe`, split into the requests they send and pure
//!   functions that turn the answers into rows.
//! - `assignment`: the consumer protocol's assignment bytes, decoded defensively.
//! - `table`: aligned plain-text tables.
//! - `tune`: `shardlog tune ...`, the arguments of the host-tuning tools in `shardlog-tuning`.

pub mod acl;
pub mod assignment;
pub mod client;
pub mod group;
pub mod status;
pub mod table;
pub mod topic;
pub mod tune;
pub mod user;

use std::io::{self, Write};

pub use acl::AclCommand;
pub use group::GroupCommand;

/// Runs a command that prints to stdout, and turns its outcome into the process exit code: its
/// own code, or 1 after printing the error to stderr. A reader that left early (`shardlog group
/// list | head -1`) is not an error.
fn exit_code(run: impl FnOnce(&mut dyn Write, &mut dyn Write) -> anyhow::Result<i32>) -> i32 {
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    let result = run(&mut out, &mut err).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => 0,
        Err(e) => {
            let _ = writeln!(err, "shardlog: {e:#}");
            1
        }
    }
}

/// Runs a `shardlog acl ...` command and returns the process exit code.
pub fn run_acl(command: AclCommand) -> i32 {
    exit_code(|out, _| acl::run(command, out))
}

/// Runs a `shardlog group ...` command and returns the process exit code: 0 on success, 1 on an
/// error (printed to stderr) or when the group does not exist.
pub fn run_group(command: GroupCommand) -> i32 {
    exit_code(|out, err| group::run(command, out, err))
}

/// Runs a `shardlog user ...` command and returns the process exit code.
pub fn run_user(command: user::UserCommand) -> i32 {
    exit_code(|out, _| user::run(command, out))
}
