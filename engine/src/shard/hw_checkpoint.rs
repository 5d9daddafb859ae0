//! Kafka's `replication-offset-checkpoint`: the high watermark of each replicated partition in
//! a log directory, written every `replica.high.watermark.checkpoint.interval.ms` in Kafka's
//! text format (version 0, the count, then `topic partition offset` lines). A broker that
//! restarts starts each replicated partition's high watermark there (never past its log end)
//! instead of at the log start, so consumers and ListOffsets see what was committed before the
//! restart at once, not only once the followers have fetched again.
//!
//! Shard 0 gathers the high watermarks from every shard and writes the files off the shards,
//! each through a temporary file and a rename. A checkpoint that is lost or behind is safe: a
//! lower high watermark only holds back what consumers may read until the ISR has fetched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::{Shard, TopicPartition};
use crate::runtime;
use crate::shard::router::ShardCall;

pub const FILE: &str = "replication-offset-checkpoint";

/// The replicated partitions a shard holds: (log directory index, topic, partition, high watermark).
#[derive(Debug)]
pub struct HighWatermarks;

impl ShardCall for HighWatermarks {
    type Reply = Vec<(usize, String, i32, i64)>;
}

/// The high watermarks this shard's replicated partitions have now.
fn collect(shard: &Shard) -> Vec<(usize, String, i32, i64)> {
    let meta = shard.metadata.borrow();
    let partitions = shard.partitions.borrow();
    let mut out = Vec::new();
    for ((topic, partition), p) in partitions.iter() {
        let Some(placement) = meta.placement(topic, *partition) else { continue };
        if placement.replicas.len() > 1 {
            out.push((placement.log_dir, topic.clone(), *partition, p.log.borrow().high_watermark()));
        }
    }
    out
}

/// Kafka's format of the file.
pub fn render(entries: &[(String, i32, i64)]) -> String {
    let mut text = format!("0\n{}\n", entries.len());
    for (topic, partition, offset) in entries {
        text.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    text
}

/// The entries of a file in Kafka's format; None if it is not one (then none are used).
pub fn parse(text: &str) -> Option<HashMap<TopicPartition, i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = HashMap::new();
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let (topic, partition, offset) = (fields.next()?, fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
        out.insert((topic.to_string(), partition), offset);
    }
    (out.len() == count).then_some(out)
}

/// Every log directory's checkpoint, read off the shard: what a starting shard's replicated
/// partitions begin with. A missing or damaged file gives nothing (with a warning).
pub async fn load(log_dirs: &[PathBuf]) -> HashMap<TopicPartition, i64> {
    let dirs = log_dirs.to_vec();
    runtime::spawn_blocking(move || {
        let mut all = HashMap::new();
        for dir in dirs {
            let path = dir.join(FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse(&text) {
                    Some(entries) => all.extend(entries),
                    None => tracing::warn!(file = %path.display(), "high watermark checkpoint is not in Kafka's format; replicated partitions start at their log start"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read the high watermark checkpoint"),
            }
        }
        all
    })
    .await
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// On shard 0: gathers every shard's high watermarks and writes each log directory's file,
/// every `replica.high.watermark.checkpoint.interval.ms`, until shutdown.
pub fn start(shard: &Rc<Shard>) {
    if shard.id != 0 {
        return;
    }
    let shard = shard.clone();
    runtime::spawn(async move {
        let interval = Duration::from_millis(shard.config.replication.high_watermark_checkpoint_interval_ms.max(1));
        let mut last: Vec<String> = Vec::new();
        while !shard.shutting_down.get() {
            runtime::sleep(interval).await;
            let mut per_dir: Vec<Vec<(String, i32, i64)>> = vec![Vec::new(); shard.config.log_dirs.len()];
            for id in 0..shard.shard_count() {
                match shard.call(id, HighWatermarks).await {
                    Ok(entries) => {
                        for (dir, topic, partition, hw) in entries {
                            if let Some(d) = per_dir.get_mut(dir) {
                                d.push((topic, partition, hw));
                            }
                        }
                    }
                    // Not written this round: the file keeps what it had for that shard's partitions.
                    Err(e) => {
                        tracing::debug!(shard = id, error = %e, "high watermarks not gathered; checkpoint skipped this round");
                        per_dir.clear();
                        break;
                    }
                }
            }
            if per_dir.is_empty() {
                continue;
            }
            let texts: Vec<String> = per_dir
                .iter_mut()
                .map(|entries| {
                    entries.sort();
                    render(entries)
                })
                .collect();
            if texts == last {
                continue;
            }
            let paths: Vec<(usize, PathBuf)> = shard.config.log_dirs.iter().enumerate().map(|(i, d)| (i, d.join(FILE))).collect();
            let failed: Vec<usize> = shard.log_dirs.failed().into_iter().map(|(i, _)| i).collect();
            let (written, to_write) = (texts.clone(), texts);
            let errors = runtime::spawn_blocking(move || {
                paths
                    .into_iter()
                    .filter(|(i, _)| !failed.contains(i))
                    .filter_map(|(i, path)| write(&path, &to_write[i]).err().map(|e| format!("{}: {e}", path.display())))
                    .collect::<Vec<_>>()
            })
            .await;
            if errors.is_empty() {
                last = written;
            } else {
                tracing::warn!(errors = ?errors, "writing the high watermark checkpoint failed; trying again at the next interval");
            }
        }
    })
    .detach();
}

/// Registers [`HighWatermarks`] on this shard.
pub fn serve(shard: &Rc<Shard>) {
    shard.serve(|shard, _: HighWatermarks| {
        let reply = collect(&shard);
        async move { reply }
    });
}

#[cfg(test)]
mod tests {
    use super::{parse, render};

    #[test]
    fn kafkas_format_round_trips_and_anything_else_is_refused() {
        let entries = vec![("orders".to_string(), 0, 42), ("orders".to_string(), 3, 7)];
        let text = render(&entries);
        assert_eq!(text, "0\n2\norders 0 42\norders 3 7\n");
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed[&("orders".to_string(), 3)], 7);
        assert_eq!(parse("0\n0\n").unwrap().len(), 0);
        for bad in ["", "1\n0\n", "0\n2\norders 0 42\n", "0\n1\norders x 42\n", "0\nmany\n"] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
