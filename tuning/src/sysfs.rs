//! A read-only view of the host's `/sys` and `/proc`, rooted at a directory.
//!
//! The tuners never open a host path directly: they ask a [`SysFs`] for `/sys/block/vda/queue/scheduler`
//! and it reads `<root>/sys/block/vda/queue/scheduler`. With the root `/` that is the host; with
//! `tuning/fixtures/metal-16core` it is a fixture tree that stands in for one, so the tuners are
//! tested without root and without the hardware. Paths handed out (by [`SysFs::resolve`]) are
//! host-style, with the root stripped again, so findings read the same either way.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest file read. Attributes in /sys are one page; /proc/interrupts on a large host (hundreds
/// of CPUs, thousands of IRQs) is a few MiB. Anything bigger is not what we think it is.
const FILE_BYTES_MAX: u64 = 16 << 20;

/// Most entries listed from one directory (/proc has one per process).
const DIR_ENTRIES_MAX: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct SysFs {
    root: PathBuf,
}

impl SysFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysFs { root: root.into() }
    }

    /// The running host: root `/`.
    pub fn host() -> Self {
        Self::new("/")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this view is the running host (and not a fixture tree).
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The real path of host path `path` (absolute, like `/sys/block`).
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The contents of a file, at most [`FILE_BYTES_MAX`] bytes of it.
    pub fn read(&self, path: &str) -> io::Result<String> {
        let file = File::open(self.path(path))?;
        let mut text = String::new();
        file.take(FILE_BYTES_MAX).read_to_string(&mut text)?;
        Ok(text)
    }

    /// A one-value attribute, trimmed: `/proc/sys/vm/swappiness` reads as `60`.
    pub fn read_value(&self, path: &str) -> io::Result<String> {
        Ok(self.read(path)?.trim().to_string())
    }

    /// A number attribute.
    pub fn read_u64(&self, path: &str) -> io::Result<u64> {
        let value = self.read_value(path)?;
        value.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {value:?} is not a number")))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    /// The names in a directory, sorted the way people count (`cpu2` before `cpu10`).
    pub fn list(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.path(path))?.take(DIR_ENTRIES_MAX) {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort_by_key(|name| natural_key(name));
        Ok(names)
    }

    /// Host path `path` with every symlink resolved (`/sys/dev/block/254:0` becomes
    /// `/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda`). Fails if the link leads out
    /// of the root, which in a fixture tree is a broken fixture.
    pub fn resolve(&self, path: &str) -> io::Result<String> {
        let real = std::fs::canonicalize(self.path(path))?;
        let root = std::fs::canonicalize(&self.root)?;
        let inside = real.strip_prefix(&root).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{path} resolves outside {}", root.display())))?;
        Ok(format!("/{}", inside.to_string_lossy()))
    }
}

/// A sort key that orders the digits in a name by value: `cpu2` < `cpu10`, `state1` < `state2`.
fn natural_key(name: &str) -> (String, u64, String) {
    let start = name.find(|c: char| c.is_ascii_digit()).unwrap_or(name.len());
    let digits: String = name[start..].chars().take_while(char::is_ascii_digit).collect();
    let number = digits.parse().unwrap_or(0);
    (name[..start].to_string(), number, name[start + digits.len()..].to_string())
}

/// The last component of a host-style path.
pub fn basename(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or(path)
}

/// A host-style path without its last component (`/` stays `/`).
pub fn parent(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &trimmed[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_under_the_root_and_resolves_back_to_host_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/devices/x/block/vda")).unwrap();
        std::fs::write(dir.path().join("sys/devices/x/block/vda/size"), "42\n").unwrap();
        std::fs::create_dir_all(dir.path().join("sys/dev/block")).unwrap();
        std::os::unix::fs::symlink("../../devices/x/block/vda", dir.path().join("sys/dev/block/254:0")).unwrap();
        let fs = SysFs::new(dir.path());
        assert!(!fs.is_host());
        assert_eq!(fs.read_u64("/sys/dev/block/254:0/size").unwrap(), 42);
        assert_eq!(fs.resolve("/sys/dev/block/254:0").unwrap(), "/sys/devices/x/block/vda");
        assert!(fs.read("/sys/nothing").is_err());
    }

    #[test]
    fn links_that_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("escape")).unwrap();
        assert!(SysFs::new(dir.path()).resolve("/escape").is_err());
    }

    #[test]
    fn names_sort_by_number() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["cpu10", "cpu2", "cpu1", "cpufreq", "online"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(SysFs::new(dir.path()).list("/").unwrap(), ["cpu1", "cpu2", "cpu10", "cpufreq", "online"]);
    }

    #[test]
    fn path_pieces() {
        assert_eq!(basename("/sys/block/vda"), "vda");
        assert_eq!(parent("/sys/block/vda"), "/sys/block");
        assert_eq!(parent("/vda"), "/");
    }
}
