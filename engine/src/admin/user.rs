//! `shardlog user create|delete|list`: SCRAM users, through AlterUserScramCredentials and
//! DescribeUserScramCredentials, as `kafka-configs.sh --alter --add-config 'SCRAM-SHA-256=[...]'
//! --entity-type users` does.
//!
//! The password never leaves this process: like Kafka's tools, the command salts and hashes it
//! (PBKDF2 with a random salt) and sends only the salted password, from which the broker derives
//! and keeps the stored and server keys. The password is read from `--password-file` or, when
//! that is not given, from the first line of standard input, so it appears in no process list
//! and no shell history.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::alter_user_scram_credentials_request::{ScramCredentialDeletion, ScramCredentialUpsertion};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest};
use kafka_protocol::protocol::StrBytes;
use shardlog_protocol::error_code::error_name;
use shardlog_protocol::kafka_protocol;

use super::group::ConnectionArgs;
use super::table::{self, printable};
use crate::security::scram::{ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};

/// Salt: 26 random base-36 characters (about 134 bits), the form Kafka's ScramFormatter uses,
/// so that credentials made here look like those made by Kafka's tools.
const SALT_CHARS: usize = 26;
/// Longest password accepted from a file or standard input.
const PASSWORD_BYTES_MAX: usize = 4096;

pub const LIST_HEADER: &[&str] = &["USER", "MECHANISM", "ITERATIONS"];

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a SCRAM user, or replace its credential for the given mechanisms.
    Create {
        /// The user name (the principal is User:<name>).
        name: String,
        /// SCRAM-SHA-256, SCRAM-SHA-512, or both (repeat the flag or separate with commas).
        #[arg(long, value_delimiter = ',', default_value = "SCRAM-SHA-256,SCRAM-SHA-512")]
        mechanism: Vec<String>,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = ITERATIONS_MIN as u32)]
        iterations: u32,
        /// A file whose first line is the password. Without it, the first line of stdin.
        #[arg(long, value_name = "FILE")]
        password_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Delete a user's SCRAM credentials (all mechanisms unless --mechanism is given).
    Delete {
        name: String,
        #[arg(long, value_delimiter = ',')]
        mechanism: Vec<String>,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// List SCRAM users: USER, MECHANISM, ITERATIONS.
    List {
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

pub fn run(command: UserCommand, out: &mut dyn Write) -> Result<i32> {
    match command {
        UserCommand::Create { name, mechanism, iterations, password_file, connection } => {
            let mechanisms = parse_mechanisms(&mechanism)?;
            if !(ITERATIONS_MIN as u32..=ITERATIONS_MAX as u32).contains(&iterations) {
                bail!("--iterations must be between {ITERATIONS_MIN} and {ITERATIONS_MAX}");
            }
            let password = read_password(password_file.as_deref())?;
            let mut request = AlterUserScramCredentialsRequest::default();
            for m in &mechanisms {
                let salt = random_salt()?;
                let mut u = ScramCredentialUpsertion::default();
                u.name = StrBytes::from_string(name.clone());
                u.mechanism = m.wire();
                u.iterations = iterations as i32;
                u.salted_password = m.salted_password(password.as_bytes(), &salt, iterations).into();
                u.salt = salt.into();
                request.upsertions.push(u);
            }
            alter(&connection, request, out, "created")
        }
        UserCommand::Delete { name, mechanism, connection } => {
            let mut client = connection.connect_client()?;
            let mechanisms = if mechanism.is_empty() {
                // Every mechanism the user has.
                let version = client.version(ApiKey::DescribeUserScramCredentials)?;
                let mut d = DescribeUserScramCredentialsRequest::default();
                let mut u = UserName::default();
                u.name = StrBytes::from_string(name.clone());
                d.users = Some(vec![u]);
                let response = client.send(&d, version)?;
                let result = response.results.into_iter().next().context("empty DescribeUserScramCredentials response")?;
                if result.error_code != 0 {
                    bail!("user {}: {}", printable(&name), error_name(result.error_code));
                }
                result.credential_infos.iter().filter_map(|c| ScramMechanism::from_wire(c.mechanism)).collect()
            } else {
                parse_mechanisms(&mechanism)?
            };
            let mut request = AlterUserScramCredentialsRequest::default();
            for m in mechanisms {
                let mut d = ScramCredentialDeletion::default();
                d.name = StrBytes::from_string(name.clone());
                d.mechanism = m.wire();
                request.deletions.push(d);
            }
            alter(&connection, request, out, "deleted")
        }
        UserCommand::List { connection } => {
            let mut client = connection.connect_client()?;
            let version = client.version(ApiKey::DescribeUserScramCredentials)?;
            let mut request = DescribeUserScramCredentialsRequest::default();
            request.users = None;
            let response = client.send(&request, version)?;
            if response.error_code != 0 {
                bail!("the broker refused to list users: {}", error_name(response.error_code));
            }
            let mut rows = Vec::new();
            for r in response.results {
                for c in r.credential_infos {
                    let mechanism = ScramMechanism::from_wire(c.mechanism).map_or_else(|| format!("unknown ({})", c.mechanism), |m| m.name().to_string());
                    rows.push(vec![printable(r.user.as_str()), mechanism, c.iterations.to_string()]);
                }
            }
            rows.sort();
            out.write_all(table::render(LIST_HEADER, &rows).as_bytes())?;
            Ok(0)
        }
    }
}

fn alter(connection: &ConnectionArgs, request: AlterUserScramCredentialsRequest, out: &mut dyn Write, done: &str) -> Result<i32> {
    let mut client = connection.connect_client()?;
    let version = client.version(ApiKey::AlterUserScramCredentials)?;
    let response = client.send(&request, version)?;
    let mut failed = false;
    for r in response.results {
        if r.error_code == 0 {
            writeln!(out, "user {}: {done}", printable(r.user.as_str()))?;
        } else {
            failed = true;
            let message = r.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
            writeln!(out, "user {}: {} {}", printable(r.user.as_str()), error_name(r.error_code), printable(&message))?;
        }
    }
    Ok(i32::from(failed))
}

fn parse_mechanisms(names: &[String]) -> Result<Vec<ScramMechanism>> {
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let m = ScramMechanism::parse(n).with_context(|| format!("--mechanism {n}: use SCRAM-SHA-256 or SCRAM-SHA-512"))?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        bail!("--mechanism names no mechanism");
    }
    Ok(out)
}

fn read_password(file: Option<&std::path::Path>) -> Result<String> {
    let mut line = String::new();
    match file {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("cannot read --password-file {}", path.display()))?;
            std::io::BufReader::new(f).take(PASSWORD_BYTES_MAX as u64 + 1).read_line(&mut line)?;
        }
        None => {
            std::io::stdin().lock().take(PASSWORD_BYTES_MAX as u64 + 1).read_line(&mut line)?;
        }
    }
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password: give --password-file, or the password as the first line of standard input");
    }
    if password.len() > PASSWORD_BYTES_MAX {
        bail!("the password is longer than {PASSWORD_BYTES_MAX} bytes");
    }
    Ok(password)
}

fn random_salt() -> Result<Vec<u8>> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut salt = Vec::with_capacity(SALT_CHARS);
    let mut byte = [0u8; 1];
    let random = ring::rand::SystemRandom::new();
    while salt.len() < SALT_CHARS {
        random.fill(&mut byte).map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
        // Rejection sampling keeps the characters uniform: 252 = 7 * 36.
        if byte[0] < 252 {
            salt.push(ALPHABET[(byte[0] % 36) as usize]);
        }
    }
    Ok(salt)
}

use std::io::Read as _;
