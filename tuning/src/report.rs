//! Findings: what each tuner saw, what it recommends and why, and how to get there.

use serde::Serialize;

use crate::table;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    NeedsChange,
    NotApplicable,
    /// The setting could not be read (missing file, no permission, unexpected content).
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NeedsChange => "needs change",
            Status::NotApplicable => "n/a",
            Status::Unknown => "unknown",
        }
    }
}

/// How a finding that needs a change gets fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fix {
    /// Nothing to do.
    None,
    /// Shell commands that `tune apply` runs (or prints), in order. They change the running
    /// system only; the README says how to make each one persist across reboots.
    Commands(Vec<String>),
    /// Something `tune apply` cannot do safely by itself (reformat, remount with a new
    /// allocation size, raise another process's limit); what a person should do.
    Manual(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The tuner: `disk.scheduler`, `vm.swappiness`, ...
    pub tuner: String,
    /// What it looked at: a disk, a mount point, a NIC, CPUs; `-` for host-wide settings.
    pub target: String,
    pub status: Status,
    pub current: String,
    pub recommended: String,
    /// One sentence.
    pub why: String,
    pub fix: Fix,
}

impl Finding {
    /// Starts a finding of tuner `tuner` about `target`; an outcome method of the builder ends it.
    pub fn about(tuner: &str, target: impl Into<String>) -> FindingBuilder {
        FindingBuilder { tuner: tuner.to_string(), target: target.into() }
    }
}

/// `Finding::about("vm.swappiness", "-").ok(...)`: names first, then one of the outcomes.
pub struct FindingBuilder {
    tuner: String,
    target: String,
}

impl FindingBuilder {
    fn finish(self, status: Status, current: impl Into<String>, recommended: impl Into<String>, why: impl Into<String>, fix: Fix) -> Finding {
        Finding { tuner: self.tuner, target: self.target, status, current: current.into(), recommended: recommended.into(), why: why.into(), fix }
    }

    pub fn ok(self, current: impl Into<String>, recommended: impl Into<String>, why: impl Into<String>) -> Finding {
        self.finish(Status::Ok, current, recommended, why, Fix::None)
    }

    pub fn change(self, current: impl Into<String>, recommended: impl Into<String>, why: impl Into<String>, commands: Vec<String>) -> Finding {
        self.finish(Status::NeedsChange, current, recommended, why, Fix::Commands(commands))
    }

    pub fn manual(self, current: impl Into<String>, recommended: impl Into<String>, why: impl Into<String>, what: impl Into<String>) -> Finding {
        self.finish(Status::NeedsChange, current, recommended, why, Fix::Manual(what.into()))
    }

    pub fn not_applicable(self, current: impl Into<String>, why: impl Into<String>) -> Finding {
        self.finish(Status::NotApplicable, current, "-", why, Fix::None)
    }

    pub fn unknown(self, recommended: impl Into<String>, why: impl Into<String>) -> Finding {
        self.finish(Status::Unknown, "?", recommended, why, Fix::None)
    }
}

/// The table `tune check` prints, then a one-line count.
pub fn render_findings(findings: &[Finding]) -> String {
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| vec![f.tuner.clone(), f.target.clone(), f.status.as_str().to_string(), f.current.clone(), f.recommended.clone(), f.why.clone()])
        .collect();
    let mut out = table::render(&["TUNER", "TARGET", "STATUS", "CURRENT", "RECOMMENDED", "WHY"], &rows);
    let count = |status| findings.iter().filter(|f| f.status == status).count();
    out.push_str(&format!(
        "\n{} ok, {} need a change, {} not applicable, {} unknown\n",
        count(Status::Ok),
        count(Status::NeedsChange),
        count(Status::NotApplicable),
        count(Status::Unknown)
    ));
    out
}

/// Quotes `word` for sh when it needs it: `/mnt/my disk` becomes `'/mnt/my disk'`.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:,=@+%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `echo VALUE > PATH`, quoted for sh.
pub fn echo_into(value: &str, path: &str) -> String {
    format!("echo {} > {}", shell_quote(value), shell_quote(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/sys/block/vda/queue/scheduler"), "/sys/block/vda/queue/scheduler");
        assert_eq!(shell_quote("/mnt/my disk"), "'/mnt/my disk'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(echo_into("none", "/sys/block/nvme0n1/queue/scheduler"), "echo none > /sys/block/nvme0n1/queue/scheduler");
    }

    #[test]
    fn the_table_counts_statuses() {
        let findings = vec![
            Finding::about("vm.swappiness", "-").change("60", "1", "because", vec!["sysctl -w vm.swappiness=1".into()]),
            Finding::about("net.core.somaxconn", "-").ok("4096", ">= 4096", "because"),
        ];
        let text = render_findings(&findings);
        assert!(text.starts_with("TUNER               TARGET  STATUS        CURRENT  RECOMMENDED  WHY\n"), "{text}");
        assert!(text.ends_with("1 ok, 1 need a change, 0 not applicable, 0 unknown\n"), "{text}");
    }
}
