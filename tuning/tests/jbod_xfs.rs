//! `scripts/jbod-xfs`: syntax, the dry-run script it prints, and argument errors. Only dry runs
//! are exercised (the tests may run as root), and with stand-ins for every command that could
//! change the machine first on PATH, which record it if they are ever called.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/jbod-xfs")
}

/// Stand-ins for the commands that change things; each appends its name to `called`.
fn stand_ins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let called = dir.join("called");
    for name in ["mkfs.xfs", "mount", "umount", "losetup", "truncate", "wipefs"] {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho {name} >> '{}'\n", called.display())).unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }
    bin
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let path = format!("{}:{}", stand_ins(dir).display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash").arg(script()).args(args).env("PATH", path).stdin(std::process::Stdio::null()).output().unwrap();
    assert!(!dir.join("called").exists(), "a dry run called {}", std::fs::read_to_string(dir.join("called")).unwrap());
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn commands(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn the_script_parses() {
    let output = Command::new("bash").arg("-n").arg(script()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn help_prints_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["--help"]);
    assert!(output.status.success());
    assert!(stdout(&output).contains("--loop N"), "{}", stdout(&output));
}

#[test]
fn dry_run_over_devices_prints_mkfs_mount_and_log_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnt");
    let output = run(dir.path(), &["--dry-run", "--base", base.to_str().unwrap(), "/dev/fake-a", "/dev/fake-b"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    let b = base.display();
    assert_eq!(
        commands(&text),
        [
            "mkfs.xfs -q /dev/fake-a".to_string(),
            format!("mkdir -p {b}/d0"),
            format!("mount -o noatime /dev/fake-a {b}/d0"),
            "mkfs.xfs -q /dev/fake-b".to_string(),
            format!("mkdir -p {b}/d1"),
            format!("mount -o noatime /dev/fake-b {b}/d1"),
        ]
    );
    assert_eq!(text.lines().last().unwrap(), format!("# log.dirs={b}/d0,{b}/d1"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("warning: /dev/fake-a is not a block device"));
    assert!(!base.exists(), "a dry run creates nothing");
}

#[test]
fn dry_run_with_loops_prints_a_runnable_script_and_warns_about_one_disk() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnt");
    let loops = dir.path().join("loops");
    let output = run(dir.path(), &["--dry-run", "--loop", "2", "--size", "1G", "--base", base.to_str().unwrap(), "--loop-dir", loops.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = stdout(&output);
    let l = loops.display();
    let lines = commands(&text);
    assert!(lines.contains(&format!("LOOP0=$(losetup --find --show --direct-io=on {l}/disk0.img)").as_str()), "{text}");
    assert!(lines.contains(&format!("truncate -s 1G {l}/disk1.img").as_str()), "{text}");
    assert!(lines.contains(&"mkfs.xfs -q -f $LOOP1"), "{text}");
    assert!(lines.contains(&format!("mount -o noatime $LOOP1 {}/d1", base.display()).as_str()), "{text}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("files on ONE disk"));
    assert!(!loops.exists() && !base.exists(), "a dry run creates nothing");
    let syntax = Command::new("bash").arg("-n").arg("-c").arg(&text).output().unwrap();
    assert!(syntax.status.success(), "the printed script is shell: {}", String::from_utf8_lossy(&syntax.stderr));
}

#[test]
fn dry_run_teardown_lists_what_it_would_undo() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnt");
    let loops = dir.path().join("loops");
    std::fs::create_dir_all(base.join("d0")).unwrap();
    std::fs::create_dir_all(&loops).unwrap();
    std::fs::write(loops.join("disk0.img"), "").unwrap();
    let output = run(dir.path(), &["--dry-run", "--teardown", "--base", base.to_str().unwrap(), "--loop-dir", loops.to_str().unwrap()]);
    assert!(output.status.success());
    let text = stdout(&output);
    let lines = commands(&text);
    assert!(lines.contains(&format!("umount {}/d0", base.display()).as_str()), "{text}");
    assert!(lines.contains(&format!("rm -f {}/disk0.img", loops.display()).as_str()), "{text}");
    assert!(loops.join("disk0.img").exists() && base.join("d0").exists());
}

#[test]
fn bad_arguments_are_refused_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[][..],
        &["--loop", "2"],
        &["--loop", "0", "--size", "1G"],
        &["--loop", "99", "--size", "1G"],
        &["--loop", "1", "--size", "1G", "/dev/x"],
        &["--bogus"],
    ] {
        let output = run(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let output = run(dir.path(), &["--dry-run", "/dev/x", "/dev/x"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("named twice"));
}
