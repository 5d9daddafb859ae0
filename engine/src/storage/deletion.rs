//! Removing a deleted partition's directory without blocking the shard, and without a late
//! removal ever touching a partition recreated at once under the same name (the same
//! directory name). As Kafka does, the directory is first renamed to a unique
//! `<topic>-<partition>.<uuid>-delete` name (one rename, on the blocking pool, awaited by the
//! caller before it considers the partition gone), then its files are removed on the blocking
//! pool in the background. A removal cut short (the broker stopped) leaves a `-delete`
//! directory, which [`remove_leftovers`] removes at the next start.

use std::path::{Path, PathBuf};

use crate::runtime;

/// The suffix of a deleted partition's directory awaiting removal (Kafka's).
pub const DELETED_DIR_SUFFIX: &str = "-delete";

/// The unique name `dir` takes while it awaits removal. It ends in [`DELETED_DIR_SUFFIX`], not
/// in a partition number, so it can never be taken for a partition's directory.
fn doomed_name(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.with_file_name(format!("{name}.{}{DELETED_DIR_SUFFIX}", uuid::Uuid::new_v4().simple()))
}

/// Renames the directory of a deleted partition out of the way (on the blocking pool), then
/// removes it in the background. Once this returns, `dir` is free for a recreated partition,
/// whatever the background removal does. A directory that is not there is already gone.
pub async fn remove_partition_dir(dir: PathBuf) -> std::io::Result<()> {
    let doomed = doomed_name(&dir);
    let renamed = {
        let (from, to) = (dir.clone(), doomed.clone());
        runtime::spawn_blocking(move || std::fs::rename(from, to)).await
    };
    match renamed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    // Detached: nothing waits on the files going, and the partition's name is already free.
    runtime::spawn(async move {
        let path = doomed.clone();
        if let Err(e) = runtime::spawn_blocking(move || std::fs::remove_dir_all(path)).await {
            tracing::error!(dir = %doomed.display(), error = %e, "removing a deleted partition's directory failed; it goes at the next start");
        }
    })
    .detach();
    Ok(())
}

/// Removes the `-delete` directories a previous run left in `log_dir` (it stopped before their
/// removal ended). Run at start, before the shards.
pub fn remove_leftovers(log_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(log_dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(DELETED_DIR_SUFFIX)) && path.is_dir() {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::error!(dir = %path.display(), error = %e, "removing a deleted partition's directory left by the previous run failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{remove_leftovers, remove_partition_dir, DELETED_DIR_SUFFIX};

    fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound).spawn(move || async move { f().await }).expect("executor").join().expect("test body");
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_partition_recreated_at_once_keeps_its_new_files() {
        let root = tempfile::tempdir().unwrap();
        let root_path = root.path().to_path_buf();
        run(move || async move {
            let dir = root_path.join("t-0");
            // Many deletions of the same name, each followed at once by the recreation, while
            // the removals run late on the blocking pool.
            for round in 0..20 {
                std::fs::create_dir(&dir).unwrap();
                for segment in 0..20 {
                    std::fs::write(dir.join(format!("{segment:020}.log")), format!("round {round}")).unwrap();
                }
                remove_partition_dir(dir.clone()).await.unwrap();
                assert!(!dir.exists(), "the name is free once the removal returns");
            }
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("00000000000000000000.log"), b"new").unwrap();
            for _ in 0..500 {
                if names(&root_path) == ["t-0"] {
                    break;
                }
                crate::runtime::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(names(&root_path), ["t-0"], "the renamed directories went, the new one stays");
            assert_eq!(std::fs::read(dir.join("00000000000000000000.log")).unwrap(), b"new");
            // A directory already gone is no error.
            std::fs::remove_dir_all(&dir).unwrap();
            remove_partition_dir(dir.clone()).await.unwrap();
        });
    }

    #[test]
    fn leftovers_of_an_interrupted_removal_go_at_start_and_partitions_stay() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("t-0")).unwrap();
        std::fs::create_dir(root.path().join("__shardlog_meta")).unwrap();
        let left = root.path().join(format!("t-1.0123456789abcdef0123456789abcdef{DELETED_DIR_SUFFIX}"));
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("00000000000000000000.log"), b"old").unwrap();
        remove_leftovers(root.path());
        assert_eq!(names(root.path()), ["__shardlog_meta", "t-0"]);
    }
}
