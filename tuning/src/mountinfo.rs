//! From a log directory to what holds it: its mount (`/proc/self/mountinfo`), its filesystem and
//! mount options, and the whole block devices under it (`/sys/dev/block/MAJ:MIN`, through
//! partitions and device-mapper or md layers down to the disks whose queues can be tuned).

use crate::sysfs::{basename, parent, SysFs};

/// Device-mapper over md over partitions is deep already; a longer chain is a loop in a fixture.
const STACK_DEPTH_MAX: usize = 8;

/// One line of `/proc/self/mountinfo` (see proc(5)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mount_point: String,
    /// Per-mount options (`rw,noatime`).
    pub options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (`rw,attr2,inode64,allocsize=64k`).
    pub super_options: Vec<String>,
}

impl Mount {
    pub fn has_option(&self, name: &str) -> bool {
        self.options.iter().chain(&self.super_options).any(|o| o == name)
    }

    /// The value of `name=value` among the mount or superblock options.
    pub fn option_value(&self, name: &str) -> Option<&str> {
        self.options.iter().chain(&self.super_options).find_map(|o| o.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
    }

    /// How access times are updated: `noatime`, `relatime`, `strictatime` (the kernel always
    /// lists one of them; `relatime` when none was asked for).
    pub fn atime_mode(&self) -> &str {
        ["noatime", "strictatime", "relatime"].into_iter().find(|mode| self.options.iter().any(|o| o == mode)).unwrap_or("relatime")
    }
}

/// Parses mountinfo, skipping lines that do not have its shape.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let tail: Vec<&str> = tail.split(' ').collect();
    if head.len() < 6 || tail.len() < 3 {
        return None;
    }
    let (major, minor) = head[2].split_once(':')?;
    Some(Mount {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        mount_point: unescape(head[4]),
        options: head[5].split(',').map(String::from).collect(),
        fs_type: tail[0].to_string(),
        source: unescape(tail[1]),
        super_options: tail[2].split(',').map(String::from).collect(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds absolute path `path`: the longest mount point that is a whole-component
/// prefix of it; of equal ones the last listed, which is the one on top.
pub fn mount_for_path<'a>(mounts: &'a [Mount], path: &str) -> Option<&'a Mount> {
    let mut best: Option<&Mount> = None;
    for mount in mounts {
        let point = mount.mount_point.trim_end_matches('/');
        let holds = point.is_empty() || path == point || path.strip_prefix(point).is_some_and(|rest| rest.starts_with('/'));
        let deeper = match best {
            Some(b) => point.len() >= b.mount_point.trim_end_matches('/').len(),
            None => true,
        };
        if holds && deeper {
            best = Some(mount);
        }
    }
    best
}

/// The whole disks (names under `/sys/block`) that hold block device `major:minor`: the disk
/// itself, the disk of a partition, or the disks under a device-mapper or md device. Empty for
/// filesystems without a block device (tmpfs, overlay, NFS: major 0).
pub fn block_disks(fs: &SysFs, major: u32, minor: u32) -> Vec<String> {
    if major == 0 {
        return Vec::new();
    }
    let Ok(device) = fs.resolve(&format!("/sys/dev/block/{major}:{minor}")) else { return Vec::new() };
    let mut disks = Vec::new();
    collect_disks(fs, &device, 0, &mut disks);
    disks.sort();
    disks.dedup();
    disks
}

fn collect_disks(fs: &SysFs, device: &str, depth: usize, disks: &mut Vec<String>) {
    if depth > STACK_DEPTH_MAX {
        return;
    }
    // A partition's directory sits inside its disk's and has a `partition` attribute.
    let disk = if fs.exists(&format!("{device}/partition")) { parent(device) } else { device };
    let slaves = fs.list(&format!("{disk}/slaves")).unwrap_or_default();
    if slaves.is_empty() {
        disks.push(basename(disk).to_string());
        return;
    }
    for slave in slaves {
        if let Ok(below) = fs.resolve(&format!("{disk}/slaves/{slave}")) {
            collect_disks(fs, &below, depth + 1, disks);
        }
    }
}

/// An absolute host path for `dir` as a user typed it: made absolute and, where it exists,
/// canonical; a directory that does not exist yet is taken at its nearest existing ancestor (it
/// will be created on that filesystem). Only meaningful for the running host.
pub fn host_path(dir: &std::path::Path) -> String {
    let absolute = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().map(|cwd| cwd.join(dir)).unwrap_or_else(|_| dir.to_path_buf()) };
    let mut probe = absolute.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(probe) {
            let rest = absolute.strip_prefix(probe).unwrap_or(std::path::Path::new(""));
            let joined = if rest.as_os_str().is_empty() { real } else { real.join(rest) };
            let text = joined.to_string_lossy();
            let trimmed = text.trim_end_matches('/');
            return if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() };
        }
        match probe.parent() {
            Some(up) => probe = up,
            None => return absolute.to_string_lossy().into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
40 27 259:0 / /mnt/shardlog/d0 rw,noatime - xfs /dev/nvme0n1 rw,attr2,inode64,logbufs=8,noquota
41 27 259:2 / /mnt/shardlog/d1 rw,relatime shared:5 - xfs /dev/nvme1n1p1 rw,attr2,inode64,allocsize=16384k
42 27 0:40 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
garbage line
";

    #[test]
    fn parses_fields_optional_tags_and_escapes() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        let d1 = &mounts[3];
        assert_eq!((d1.major, d1.minor), (259, 2));
        assert_eq!(d1.mount_point, "/mnt/shardlog/d1");
        assert_eq!(d1.fs_type, "xfs");
        assert_eq!(d1.source, "/dev/nvme1n1p1");
        assert_eq!(d1.option_value("allocsize"), Some("16384k"));
        assert_eq!(d1.atime_mode(), "relatime");
        assert_eq!(mounts[2].atime_mode(), "noatime");
        assert_eq!(mounts[4].mount_point, "/mnt/with space");
    }

    #[test]
    fn finds_the_deepest_mount_by_whole_components() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mount_for_path(&mounts, "/mnt/shardlog/d0/topic-0").unwrap().mount_point, "/mnt/shardlog/d0");
        assert_eq!(mount_for_path(&mounts, "/mnt/shardlog/d0").unwrap().mount_point, "/mnt/shardlog/d0");
        // "/mnt/shardlog/d00" is not under "/mnt/shardlog/d0".
        assert_eq!(mount_for_path(&mounts, "/mnt/shardlog/d00").unwrap().mount_point, "/");
        assert_eq!(mount_for_path(&mounts, "/").unwrap().mount_point, "/");
    }

    #[test]
    fn the_mount_on_top_wins() {
        let text = "1 0 8:1 / /data rw - ext4 /dev/sda1 rw\n2 0 8:17 / /data rw - xfs /dev/sdb1 rw\n";
        assert_eq!(mount_for_path(&parse_mountinfo(text), "/data/x").unwrap().fs_type, "xfs");
    }

    #[test]
    fn unescapes_only_octal_triples() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9b"), "a\\9b");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn host_paths_of_missing_dirs_use_the_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(host_path(&dir.path().join("not/yet")), format!("{}/not/yet", real.display()));
        assert_eq!(host_path(dir.path()), real.to_string_lossy());
        assert_eq!(host_path(std::path::Path::new("/")), "/");
    }
}
