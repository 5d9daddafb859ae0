//! Log directory health (JBOD). A directory fails when a partition in it hits a storage error
//! (EIO and the like) or when the directory vanishes or is replaced (deleted, renamed, its
//! filesystem unmounted). Then every partition in it goes offline, on this shard and, through
//! the mesh, on the others: produce, fetch and ListOffsets get KAFKA_STORAGE_ERROR, and
//! DescribeLogDirs reports the directory with that error. The other directories keep serving.
//! An offline directory stays offline until a restart, as with Kafka.
//!
//! A full directory is not a failure: its partitions refuse appends until space is freed, and
//! then resume on their own (see the flusher in storage/log.rs).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;
use crate::runtime;

use super::messages::LogDirFailed;
use super::Shard;

/// How often each shard checks that its log directories are still the ones it opened.
pub const LOG_DIR_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Directories found unusable before the shards started, by [`check_at_start`].
static OFFLINE_AT_START: OnceLock<Vec<(usize, String)>> = OnceLock::new();

/// Creates the log directories, and finds those that start offline: one that cannot be created,
/// or one where the metadata places partitions but none of their directories is there (an empty
/// mount point: the disk is not mounted). Serving those as empty logs would hide the data; Kafka
/// starts such a directory offline too. The first directory holds the cluster metadata, so it
/// must work. Also removes what deleted partitions left (their removal runs in the background,
/// which a stop cuts short).
pub fn check_at_start(config: &BrokerConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let placed = ClusterMetadata::load(&super::meta_dir(config)).ok().flatten();
    let mut offline = Vec::new();
    for (i, dir) in config.log_dirs.iter().enumerate() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            if i == 0 {
                return Err(e).with_context(|| format!("cannot create log directory {} (it holds the cluster metadata)", dir.display()));
            }
            offline.push((i, format!("cannot create it: {e}")));
            continue;
        }
        crate::storage::deletion::remove_leftovers(dir);
        let Some(meta) = &placed else { continue };
        let mut expected = 0usize;
        let mut found = 0usize;
        for (name, topic) in &meta.topics {
            for (p, placement) in topic.partitions.iter().enumerate() {
                if placement.hosted && placement.log_dir == i {
                    expected += 1;
                    found += usize::from(dir.join(format!("{name}-{p}")).is_dir());
                }
            }
        }
        if i > 0 && expected > 0 && found == 0 {
            offline.push((i, format!("none of the {expected} partitions placed here is in it (is its filesystem mounted?)")));
        }
    }
    for (i, why) in &offline {
        tracing::error!(log_dir = %config.log_dirs[*i].display(), error = %why, "log directory starts offline: its partitions answer KAFKA_STORAGE_ERROR; fix it and restart");
    }
    let _ = OFFLINE_AT_START.set(offline);
    Ok(())
}

/// What a shard knows of its log directories: their identity when it started, and the failed.
pub struct LogDirHealth {
    /// (device, inode) of each directory in `log.dirs` order, as found at start.
    identity: Vec<Option<(u64, u64)>>,
    failed: RefCell<BTreeMap<usize, String>>,
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

impl LogDirHealth {
    /// A directory that cannot be read now starts failed.
    pub fn new(dirs: &[std::path::PathBuf]) -> LogDirHealth {
        let identity: Vec<Option<(u64, u64)>> = dirs.iter().map(|d| identity(d)).collect();
        let mut failed: BTreeMap<usize, String> =
            identity.iter().enumerate().filter(|(_, id)| id.is_none()).map(|(i, _)| (i, String::from("the directory could not be read at start"))).collect();
        failed.extend(OFFLINE_AT_START.get().into_iter().flatten().cloned());
        LogDirHealth { identity, failed: RefCell::new(failed) }
    }

    /// The failed directories (by index in `log.dirs`) and why.
    pub fn failed(&self) -> Vec<(usize, String)> {
        self.failed.borrow().iter().map(|(i, why)| (*i, why.clone())).collect()
    }

    pub fn is_failed(&self, dir: usize) -> bool {
        self.failed.borrow().contains_key(&dir)
    }
}

/// Starts the check: every [`LOG_DIR_CHECK_INTERVAL`], a directory that is gone or replaced, or
/// that holds a partition whose writes failed, fails whole.
pub fn start(shard: &Rc<Shard>, queue: runtime::TaskQueueHandle) {
    let shard = shard.clone();
    let task = runtime::spawn_into(
        async move {
            while !shard.shutting_down.get() {
                runtime::sleep(LOG_DIR_CHECK_INTERVAL).await;
                check(&shard).await;
            }
        },
        queue,
    );
    match task {
        Ok(t) => drop(t.detach()),
        Err(e) => tracing::error!(error = %e, "cannot start the log directory check; a failed directory is only noticed by its own partitions"),
    }
}

async fn check(shard: &Rc<Shard>) {
    let dirs = &shard.config.log_dirs;
    for (i, dir) in dirs.iter().enumerate() {
        if shard.log_dirs.is_failed(i) {
            continue;
        }
        let now = identity(dir);
        if now != shard.log_dirs.identity[i] {
            let why = match now {
                None => String::from("the directory is gone (deleted, renamed or unmounted)"),
                Some(_) => String::from("the directory was replaced (another directory or filesystem is at its path now)"),
            };
            fail(shard, i, &why, true).await;
        }
    }
    let meta = shard.metadata.borrow().clone();
    let broken: Vec<(usize, String)> = shard
        .partitions
        .borrow()
        .iter()
        .filter_map(|((topic, partition), p)| {
            let why = p.log.borrow().failed()?.to_string();
            let dir = meta.placement(topic, *partition)?.log_dir;
            Some((dir, format!("partition {topic}-{partition} failed: {why}")))
        })
        .collect();
    for (dir, why) in broken {
        if !shard.log_dirs.is_failed(dir) {
            fail(shard, dir, &why, true).await;
        }
    }
}

/// Takes log directory `dir` offline on this shard, and on every other one if `tell_others`.
pub async fn fail(shard: &Rc<Shard>, dir: usize, why: &str, tell_others: bool) {
    if dir >= shard.config.log_dirs.len() || shard.log_dirs.is_failed(dir) {
        return;
    }
    let path = shard.config.log_dirs[dir].display().to_string();
    shard.log_dirs.failed.borrow_mut().insert(dir, why.to_string());
    let meta = shard.metadata.borrow().clone();
    let offline: Vec<_> = shard
        .partitions
        .borrow()
        .iter()
        .filter(|((topic, partition), _)| meta.placement(topic, *partition).is_some_and(|pl| pl.log_dir == dir))
        .map(|(_, p)| p.clone())
        .collect();
    tracing::error!(
        shard = shard.id,
        log_dir = %path,
        error = %why,
        partitions = offline.len(),
        "log directory failed: its partitions are offline (KAFKA_STORAGE_ERROR) until a restart; the other directories keep serving. Check the disk (dmesg), then restart"
    );
    let reason = format!("log directory {path} is offline: {why}");
    for p in offline {
        p.take_offline(&reason);
    }
    if tell_others {
        for other in (0..shard.shard_count()).filter(|&s| s != shard.id) {
            if shard.router.call(other, LogDirFailed { dir, why: why.to_string() }).await.is_ok() {
                continue;
            }
            tracing::warn!(shard = other, log_dir = %path, "a shard did not confirm the failed log directory; it finds out on its own check");
        }
    }
}
