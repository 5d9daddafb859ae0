//! `tune apply`: the commands that findings carry, printed as a script or run one by one.
//!
//! Only findings with [`Status::NeedsChange`] and [`Fix::Commands`] produce commands, in the
//! order of the findings (see [`crate::check_all`]). What is printed is exactly what is run: each
//! command goes to `sh -c` as it is printed.

use std::io::{self, Write};
use std::process::Command;

use crate::report::{Finding, Fix, Status};

/// Runs one shell command.
pub trait Runner {
    fn run(&mut self, command: &str) -> Result<(), String>;
}

/// Runs commands with `sh -c`, capturing what they print on failure.
pub struct ShellRunner;

impl Runner for ShellRunner {
    fn run(&mut self, command: &str) -> Result<(), String> {
        let output = Command::new("sh").arg("-c").arg(command).output().map_err(|e| format!("cannot start sh: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr.trim();
        Err(if message.is_empty() { format!("exited with {}", output.status) } else { message.lines().last().unwrap_or(message).to_string() })
    }
}

/// The findings that `apply` acts on.
struct Changes<'a> {
    /// Commands to run, by finding.
    commands: Vec<(&'a Finding, &'a [String])>,
    /// Things only a person can do, by finding.
    manual: Vec<(&'a Finding, &'a str)>,
}

fn changes(findings: &[Finding]) -> Changes<'_> {
    let mut commands = Vec::new();
    let mut manual = Vec::new();
    for finding in findings.iter().filter(|f| f.status == Status::NeedsChange) {
        match &finding.fix {
            Fix::Commands(list) if !list.is_empty() => commands.push((finding, list.as_slice())),
            Fix::Manual(what) => manual.push((finding, what.as_str())),
            _ => {}
        }
    }
    Changes { commands, manual }
}

/// `disk.scheduler vda: mq-deadline -> none`; host-wide settings (target `-`) without a target.
fn heading(finding: &Finding) -> String {
    let target = if finding.target == "-" { String::new() } else { format!(" {}", finding.target) };
    format!("{}{target}: {} -> {}", finding.tuner, finding.current, finding.recommended)
}

/// What `--print-commands` and `--dry-run` print: a script for `sh`, one block per change, with
/// the changes `apply` cannot make as comments.
pub fn script(findings: &[Finding]) -> String {
    let Changes { commands, manual } = changes(findings);
    let mut out = String::from("#!/bin/sh\n");
    out.push_str(&format!("# shardlog tune apply: {} change{} to run as root", commands.len(), if commands.len() == 1 { "" } else { "s" }));
    out.push_str(" (for example: shardlog tune apply --print-commands | sudo sh).\n");
    out.push_str("# They last until reboot; tuning/README.md says how to make them persist.\n");
    for (finding, list) in &commands {
        out.push_str(&format!("\n# {}\n", heading(finding)));
        for command in *list {
            out.push_str(command);
            out.push('\n');
        }
    }
    if !manual.is_empty() {
        out.push_str("\n# Not done by apply; for a person to do:\n");
        for (finding, what) in &manual {
            out.push_str(&format!("# - {}: {what}\n", heading(finding)));
        }
    }
    out
}

/// What `apply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub ran: Vec<String>,
    /// Command, and why it failed.
    pub failed: Vec<(String, String)>,
    /// Commands not attempted, because the caller may not run them (not root).
    pub skipped: Vec<String>,
    pub manual: usize,
}

impl Outcome {
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// Runs the commands of every finding that needs a change, reporting each on `out`. With
/// `cannot_run` set (the reason: not root, a fixture root), nothing runs and every command is
/// listed as skipped with that reason. A failed command does not stop the others: the changes are
/// independent, and the report says which ones did not happen.
pub fn apply(findings: &[Finding], runner: &mut dyn Runner, cannot_run: Option<&str>, out: &mut dyn Write) -> io::Result<Outcome> {
    let Changes { commands, manual } = changes(findings);
    let mut outcome = Outcome { manual: manual.len(), ..Outcome::default() };
    if commands.is_empty() {
        writeln!(out, "Nothing to change.")?;
    }
    if let Some(reason) = cannot_run {
        writeln!(out, "Not changing anything: {reason}. These commands were not run:")?;
    }
    for (finding, list) in &commands {
        writeln!(out, "{}", heading(finding))?;
        for command in *list {
            if cannot_run.is_some() {
                writeln!(out, "  skipped: {command}")?;
                outcome.skipped.push(command.clone());
                continue;
            }
            match runner.run(command) {
                Ok(()) => {
                    writeln!(out, "  done:    {command}")?;
                    outcome.ran.push(command.clone());
                }
                Err(e) => {
                    writeln!(out, "  FAILED:  {command}: {e}")?;
                    outcome.failed.push((command.clone(), e));
                }
            }
        }
    }
    if !manual.is_empty() {
        writeln!(out, "\nNot done by apply; for a person to do:")?;
        for (finding, what) in &manual {
            writeln!(out, "- {}: {what}", heading(finding))?;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder {
        ran: Vec<String>,
        fail: &'static str,
    }

    impl Runner for Recorder {
        fn run(&mut self, command: &str) -> Result<(), String> {
            self.ran.push(command.to_string());
            if command.contains(self.fail) {
                Err("Permission denied".into())
            } else {
                Ok(())
            }
        }
    }

    fn findings() -> Vec<Finding> {
        vec![
            Finding::about("vm.swappiness", "-").change("60", "1", "w", vec!["sysctl -w vm.swappiness=1".into()]),
            Finding::about("net.core.somaxconn", "-").ok("4096", ">= 4096", "w"),
            Finding::about("disk.scheduler", "vda").change("mq-deadline", "none", "w", vec!["echo none > /sys/block/vda/queue/scheduler".into()]),
            Finding::about("fs.type", "/").manual("ext4 on /dev/vda", "xfs", "w", "see scripts/jbod-xfs"),
        ]
    }

    #[test]
    fn the_script_lists_commands_in_order_and_manual_steps_as_comments() {
        let text = script(&findings());
        let commands: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert_eq!(commands, ["sysctl -w vm.swappiness=1", "echo none > /sys/block/vda/queue/scheduler"]);
        assert!(text.contains("# - fs.type /: ext4 on /dev/vda -> xfs: see scripts/jbod-xfs"), "{text}");
        assert!(text.starts_with("#!/bin/sh\n# shardlog tune apply: 2 changes"), "{text}");
    }

    #[test]
    fn apply_runs_only_what_needs_a_change_and_reports_failures() {
        let mut runner = Recorder { ran: Vec::new(), fail: "scheduler" };
        let mut out = Vec::new();
        let outcome = apply(&findings(), &mut runner, None, &mut out).unwrap();
        assert_eq!(runner.ran, ["sysctl -w vm.swappiness=1", "echo none > /sys/block/vda/queue/scheduler"]);
        assert_eq!(outcome.ran, ["sysctl -w vm.swappiness=1"]);
        assert_eq!(outcome.failed.len(), 1);
        assert_eq!(outcome.manual, 1);
        assert!(!outcome.complete());
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("FAILED:  echo none > /sys/block/vda/queue/scheduler: Permission denied"), "{text}");
    }

    #[test]
    fn without_permission_nothing_runs_and_everything_is_listed() {
        let mut runner = Recorder { ran: Vec::new(), fail: "" };
        let mut out = Vec::new();
        let outcome = apply(&findings(), &mut runner, Some("not running as root"), &mut out).unwrap();
        assert!(runner.ran.is_empty());
        assert_eq!(outcome.skipped.len(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Not changing anything: not running as root. These commands were not run:\n"), "{text}");
    }

    #[test]
    fn the_shell_runner_reports_errors() {
        assert!(ShellRunner.run("true").is_ok());
        assert_eq!(ShellRunner.run("echo oops >&2; exit 3").unwrap_err(), "oops");
    }
}
