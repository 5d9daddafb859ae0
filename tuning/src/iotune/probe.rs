//! The measurements of one directory. See the module above for what and why.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::properties::{DiskProperties, EngineSettings, IoProperties, Measured, QueueDepthBandwidth, IO_PROPERTIES_VERSION};
use crate::mountinfo::{block_disks, host_path, mount_for_path, parse_mountinfo};
use crate::sysfs::SysFs;

/// Largest test file. Enough to get past a device's write cache at the start of a run on most
/// disks, small enough to fit next to real data.
pub const TEST_FILE_BYTES_MAX: u64 = 256 << 20;
/// The test file takes at most this share of the free space.
const TEST_FILE_FREE_SPACE_DIVISOR: u64 = 4;
/// Below this the numbers mean little; the probe refuses.
const TEST_FILE_BYTES_MIN: u64 = 16 << 20;
/// Block size of the sequential phases: the engine's largest write buffer class.
const SEQ_BLOCK_BYTES: usize = 1 << 20;
/// Block size of random reads and fdatasync appends: a page.
const SMALL_BLOCK_BYTES: usize = 4096;
/// O_DIRECT wants buffers, offsets and lengths aligned to the logical block size; 4 KiB covers
/// both 512-byte and 4Kn devices.
const ALIGN_BYTES: usize = 4096;
const WRITE_QUEUE_DEPTHS: [u32; 4] = [1, 2, 4, 8];
const READ_SEQ_QUEUE_DEPTH: u32 = 4;
const READ_RANDOM_QUEUE_DEPTH: u32 = 16;
/// The fdatasync file is preallocated this large; the phase stops when it is full.
const SYNC_FILE_BYTES: u64 = 64 << 20;
/// Bound on latency samples kept (the file bound above is lower anyway: 16384 appends).
const SYNC_SAMPLES_MAX: usize = (SYNC_FILE_BYTES / SMALL_BLOCK_BYTES as u64) as usize;
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// How often the thread that draws it looks at the workers.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Shares of the time budget, in percent: writes (split over the queue depths), sequential
/// reads, random reads, fdatasync.
const BUDGET_PERCENT_WRITE: u32 = 40;
const BUDGET_PERCENT_READ_SEQ: u32 = 20;
const BUDGET_PERCENT_READ_RANDOM: u32 = 20;
const BUDGET_PERCENT_SYNC: u32 = 20;

#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Time budget per directory.
    pub duration: Duration,
    /// Test file size cap (never above [`TEST_FILE_BYTES_MAX`]).
    pub file_bytes_max: u64,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions { duration: Duration::from_secs(5), file_bytes_max: TEST_FILE_BYTES_MAX }
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuffer {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl AlignedBuffer {
    fn new(len: usize, seed: u64) -> AlignedBuffer {
        let layout = Layout::from_size_align(len, ALIGN_BYTES).expect("buffer sizes are small powers of two");
        assert!(len > 0);
        // SAFETY: the layout has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        let mut buffer = AlignedBuffer { ptr, layout };
        // Random bytes, not zeros: some devices and hypervisors compress or skip zero blocks.
        let mut state = seed | 1;
        for chunk in buffer.as_mut_slice().chunks_mut(8) {
            state = xorshift(state);
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        buffer
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to layout.size() bytes allocated in new(), initialised there, and
        // owned by self until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this same layout, and freed only here.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A test file that is deleted when dropped, whatever happened.
struct TestFile {
    path: PathBuf,
    file: File,
}

impl TestFile {
    fn create(path: PathBuf) -> Result<TestFile> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).custom_flags(libc::O_DIRECT).open(&path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EINVAL) {
                anyhow::anyhow!("{}: the filesystem does not support O_DIRECT, which the engine needs", path.display())
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
            }
        })?;
        Ok(TestFile { path, file })
    }

    /// Preallocates `bytes` (`keep_size`: without growing the file, as the engine does with
    /// segments). A filesystem without fallocate gets a sparse file instead.
    fn preallocate(&self, bytes: u64, keep_size: bool) -> Result<()> {
        let mode = if keep_size { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
        // SAFETY: fallocate on a descriptor we own; it reads no memory of ours.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, 0, bytes as libc::off_t) };
        if rc != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(error).with_context(|| format!("cannot preallocate {}", self.path.display()));
            }
            if !keep_size {
                self.file.set_len(bytes)?;
            }
        }
        Ok(())
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The progress line on stderr: redrawn in place on a terminal, one line per phase otherwise.
pub struct Progress {
    terminal: bool,
    silent: bool,
}

impl Progress {
    pub fn stderr() -> Progress {
        use std::io::IsTerminal;
        Progress { terminal: io::stderr().is_terminal(), silent: false }
    }

    /// Prints nothing (tests).
    pub fn quiet() -> Progress {
        Progress { terminal: false, silent: true }
    }

    fn update(&self, line: &str) {
        if self.terminal {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
        }
    }

    fn done(&self, line: &str) {
        if self.silent {
            return;
        }
        let mut err = io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err, "\r\x1b[K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

/// What one phase did.
struct PhaseResult {
    ops: u64,
    bytes: u64,
    elapsed: Duration,
}

impl PhaseResult {
    fn bytes_per_s(&self) -> u64 {
        (self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)) as u64
    }

    fn ops_per_s(&self) -> u64 {
        (self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)) as u64
    }
}

/// Runs `op` on `queue_depth` threads until `budget` is spent, each thread with its own aligned
/// buffer of `block_bytes`; `op(index, buffer)` does operation number `index` (counted over all
/// threads) and returns the bytes it moved. Redraws the progress line meanwhile.
fn run_parallel<F>(label: &str, queue_depth: u32, block_bytes: usize, budget: Duration, progress: &Progress, op: F) -> Result<PhaseResult>
where
    F: Fn(u64, &mut [u8]) -> io::Result<usize> + Sync,
{
    let next = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let ops = AtomicU64::new(0);
    let running = AtomicUsize::new(queue_depth as usize);
    // When the last worker finished, so the phase's time does not include the drawing thread's naps.
    let finished_ns = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<io::Error>> = Mutex::new(None);
    let start = Instant::now();
    let deadline = start + budget;
    std::thread::scope(|scope| {
        for worker in 0..queue_depth {
            let (next, bytes, ops, running, finished_ns, stop, failure, op) = (&next, &bytes, &ops, &running, &finished_ns, &stop, &failure, &op);
            scope.spawn(move || {
                let mut buffer = AlignedBuffer::new(block_bytes, 0x9e37_79b9_7f4a_7c15 ^ u64::from(worker));
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    match op(index, buffer.as_mut_slice()) {
                        Ok(moved) => {
                            bytes.fetch_add(moved as u64, Ordering::Relaxed);
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
                finished_ns.fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                running.fetch_sub(1, Ordering::Release);
            });
        }
        let mut last_draw = start;
        while running.load(Ordering::Acquire) > 0 {
            std::thread::sleep(POLL_INTERVAL);
            if last_draw.elapsed() >= PROGRESS_INTERVAL {
                last_draw = Instant::now();
                let elapsed = start.elapsed().as_secs_f64().max(1e-9);
                let moved = bytes.load(Ordering::Relaxed);
                progress.update(&format!(
                    "{label}: {} MiB, {:.0} MB/s, {:.1}/{:.1} s",
                    moved >> 20,
                    moved as f64 / elapsed / 1e6,
                    elapsed,
                    budget.as_secs_f64()
                ));
            }
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e).with_context(|| format!("{label} failed"));
    }
    Ok(PhaseResult { ops: ops.into_inner(), bytes: bytes.into_inner(), elapsed: Duration::from_nanos(finished_ns.into_inner()) })
}

/// A full write or read of `buffer` at `offset`, or an error: O_DIRECT transfers are whole.
fn whole(result: io::Result<usize>, expected: usize, what: &str) -> io::Result<usize> {
    match result {
        Ok(n) if n == expected => Ok(n),
        Ok(n) => Err(io::Error::other(format!("short {what}: {n} of {expected} bytes"))),
        Err(e) => Err(e),
    }
}

/// Nearest-rank percentile of sorted samples (`per_mille`: 500 is p50, 999 is p99.9).
pub fn percentile(sorted: &[u64], per_mille: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as u64 * per_mille).div_ceil(1000).max(1);
    sorted[(rank - 1) as usize]
}

fn free_bytes(dir: &Path) -> Result<u64> {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("directory name has a NUL byte")?;
    // SAFETY: statvfs is plain data; zeroed is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid C string and stat a valid out-pointer, both alive across the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("statvfs {}", dir.display()));
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// The test file size for a directory: the cap, or a quarter of the free space, in whole blocks.
fn test_file_bytes(free_bytes: u64, cap: u64) -> u64 {
    let bytes = cap.min(TEST_FILE_BYTES_MAX).min(free_bytes / TEST_FILE_FREE_SPACE_DIVISOR);
    bytes - bytes % SEQ_BLOCK_BYTES as u64
}

fn share(budget: Duration, percent: u32) -> Duration {
    budget * percent / 100
}

/// Measures one directory (created if missing) and derives its engine settings.
pub fn probe_dir(dir: &Path, options: &ProbeOptions, progress: &Progress) -> Result<DiskProperties> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let free = free_bytes(dir)?;
    let file_bytes = test_file_bytes(free, options.file_bytes_max);
    if file_bytes < TEST_FILE_BYTES_MIN {
        bail!("{}: {} MiB free is too little for a {} MiB test file", dir.display(), free >> 20, TEST_FILE_BYTES_MIN >> 20);
    }
    let name = format!(".shardlog-iotune-{}", std::process::id());
    let data = TestFile::create(dir.join(format!("{name}.data")))?;
    data.preallocate(file_bytes, false)?;
    let label = dir.display().to_string();

    // 1. Sequential writes; one cursor across depths, so each depth continues where the last stopped.
    let cursor = AtomicU64::new(0);
    let written_end = AtomicU64::new(0);
    let mut by_depth = Vec::new();
    let write_budget = share(options.duration, BUDGET_PERCENT_WRITE) / WRITE_QUEUE_DEPTHS.len() as u32;
    for depth in WRITE_QUEUE_DEPTHS {
        let result = run_parallel(&format!("{label}: write qd{depth}"), depth, SEQ_BLOCK_BYTES, write_budget, progress, |_, buffer| {
            let offset = cursor.fetch_add(SEQ_BLOCK_BYTES as u64, Ordering::Relaxed) % file_bytes;
            let n = whole(data.file.write_at(buffer, offset), buffer.len(), "write")?;
            written_end.fetch_max(offset + n as u64, Ordering::Relaxed);
            Ok(n)
        })?;
        by_depth.push(QueueDepthBandwidth { queue_depth: depth, bytes_per_s: result.bytes_per_s() });
    }
    let best_write = by_depth.iter().map(|q| q.bytes_per_s).max().unwrap_or(0);
    progress.done(&format!(
        "{label}: write {}",
        by_depth.iter().map(|q| format!("qd{} {:.0} MB/s", q.queue_depth, q.bytes_per_s as f64 / 1e6)).collect::<Vec<_>>().join(", ")
    ));

    // Reads cover only what was written: unwritten extents read as zeros without touching the disk.
    let readable = written_end.load(Ordering::Relaxed) / SEQ_BLOCK_BYTES as u64 * SEQ_BLOCK_BYTES as u64;
    if readable == 0 {
        bail!("{label}: no complete block was written within the time budget; give it more --duration-s");
    }

    // 2. Sequential reads.
    let read_seq = run_parallel(
        &format!("{label}: read"),
        READ_SEQ_QUEUE_DEPTH,
        SEQ_BLOCK_BYTES,
        share(options.duration, BUDGET_PERCENT_READ_SEQ),
        progress,
        |index, buffer| {
            let offset = index * SEQ_BLOCK_BYTES as u64 % readable;
            whole(data.file.read_at(buffer, offset), buffer.len(), "read")
        },
    )?;
    progress.done(&format!("{label}: read qd{READ_SEQ_QUEUE_DEPTH} {:.0} MB/s", read_seq.bytes_per_s() as f64 / 1e6));

    // 3. Random 4 KiB reads.
    let pages = readable / SMALL_BLOCK_BYTES as u64;
    let read_random = run_parallel(
        &format!("{label}: random read"),
        READ_RANDOM_QUEUE_DEPTH,
        SMALL_BLOCK_BYTES,
        share(options.duration, BUDGET_PERCENT_READ_RANDOM),
        progress,
        |index, buffer| {
            let offset = xorshift(index.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1) % pages * SMALL_BLOCK_BYTES as u64;
            whole(data.file.read_at(buffer, offset), buffer.len(), "read")
        },
    )?;
    progress.done(&format!("{label}: random 4 KiB read qd{READ_RANDOM_QUEUE_DEPTH} {} IOPS", read_random.ops_per_s()));
    drop(data);

    // 4. Appends with fdatasync.
    let sync = TestFile::create(dir.join(format!("{name}.sync")))?;
    sync.preallocate(SYNC_FILE_BYTES, true)?;
    let latencies_us = sync_latencies(&sync, share(options.duration, BUDGET_PERCENT_SYNC), &label, progress)?;
    drop(sync);
    let mut sorted = latencies_us;
    sorted.sort_unstable();
    let p50 = percentile(&sorted, 500);
    progress.done(&format!(
        "{label}: 4 KiB append + fdatasync p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms ({} samples)",
        p50 as f64 / 1e3,
        percentile(&sorted, 990) as f64 / 1e3,
        percentile(&sorted, 999) as f64 / 1e3,
        sorted.len()
    ));

    let measured = Measured {
        write_seq_bytes_per_s: best_write,
        write_seq_block_bytes: SEQ_BLOCK_BYTES as u64,
        read_seq_bytes_per_s: read_seq.bytes_per_s(),
        read_random_4k_iops: read_random.ops_per_s(),
        read_random_queue_depth: READ_RANDOM_QUEUE_DEPTH,
        fdatasync_latency_us_p50: p50,
        fdatasync_latency_us_p99: percentile(&sorted, 990),
        fdatasync_latency_us_p999: percentile(&sorted, 999),
        fdatasync_latency_us_max: sorted.last().copied().unwrap_or(0),
        fdatasync_samples: sorted.len() as u64,
        write_seq_by_queue_depth: by_depth.clone(),
    };
    let (device, filesystem) = describe_storage(dir);
    Ok(DiskProperties {
        dir: PathBuf::from(host_path(dir)),
        device,
        filesystem,
        test_file_bytes: file_bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        engine: EngineSettings::derive(&by_depth, p50),
        measured,
    })
}

/// 4 KiB O_DIRECT appends, each followed by fdatasync, until the budget or the preallocated
/// space runs out; the latency of each pair in µs. At least one sample is always taken.
fn sync_latencies(sync: &TestFile, budget: Duration, label: &str, progress: &Progress) -> Result<Vec<u64>> {
    let buffer = AlignedBuffer::new(SMALL_BLOCK_BYTES, 0x5eed);
    let start = Instant::now();
    let mut last_draw = start;
    let mut samples = Vec::new();
    while samples.is_empty() || (start.elapsed() < budget && samples.len() < SYNC_SAMPLES_MAX) {
        let offset = (samples.len() * SMALL_BLOCK_BYTES) as u64;
        let began = Instant::now();
        whole(sync.file.write_at(buffer.as_slice(), offset), SMALL_BLOCK_BYTES, "write").with_context(|| format!("append to {}", sync.path.display()))?;
        sync.file.sync_data().with_context(|| format!("fdatasync {}", sync.path.display()))?;
        samples.push(began.elapsed().as_micros() as u64);
        if last_draw.elapsed() >= PROGRESS_INTERVAL {
            last_draw = Instant::now();
            progress.update(&format!("{label}: fdatasync {} samples, {:.1}/{:.1} s", samples.len(), start.elapsed().as_secs_f64(), budget.as_secs_f64()));
        }
    }
    Ok(samples)
}

/// The whole disks and filesystem under a directory, from the host's mountinfo.
fn describe_storage(dir: &Path) -> (Option<String>, Option<String>) {
    let fs = SysFs::host();
    let Ok(text) = fs.read("/proc/self/mountinfo") else { return (None, None) };
    let mounts = parse_mountinfo(&text);
    let Some(mount) = mount_for_path(&mounts, &host_path(dir)) else { return (None, None) };
    let disks = block_disks(&fs, mount.major, mount.minor);
    (if disks.is_empty() { None } else { Some(disks.join(",")) }, Some(mount.fs_type.clone()))
}

/// Probes every directory in turn (disks of a JBOD are measured one at a time, so they do not
/// share the CPU or a controller during their runs) and collects the results.
pub fn probe_dirs(dirs: &[PathBuf], options: &ProbeOptions, progress: &Progress) -> Result<IoProperties> {
    let mut disks = Vec::new();
    for dir in dirs {
        disks.push(probe_dir(dir, options, progress)?);
    }
    Ok(IoProperties {
        version: IO_PROPERTIES_VERSION,
        generated_by: format!("shardlog tune iotune {}", env!("CARGO_PKG_VERSION")),
        generated_at_unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        disks,
    })
}

/// The summary `iotune` prints on stdout.
pub fn render_summary(properties: &IoProperties) -> String {
    let rows: Vec<Vec<String>> = properties
        .disks
        .iter()
        .map(|d| {
            let m = &d.measured;
            vec![
                d.dir.display().to_string(),
                d.device.clone().unwrap_or_default(),
                format!("{:.0}", m.write_seq_bytes_per_s as f64 / 1e6),
                format!("{:.0}", m.read_seq_bytes_per_s as f64 / 1e6),
                m.read_random_4k_iops.to_string(),
                format!(
                    "{:.2}/{:.2}/{:.2}",
                    m.fdatasync_latency_us_p50 as f64 / 1e3,
                    m.fdatasync_latency_us_p99 as f64 / 1e3,
                    m.fdatasync_latency_us_p999 as f64 / 1e3
                ),
                format!("{} KiB", d.engine.write_buffer_bytes >> 10),
                d.engine.writes_in_flight_max.to_string(),
                format!("{} us", d.engine.group_commit_window_us),
            ]
        })
        .collect();
    crate::table::render(
        &["DIR", "DEVICE", "WRITE-MB/S", "READ-MB/S", "4K-READ-IOPS", "FDATASYNC-MS-P50/P99/P99.9", "WRITE-BUFFER", "WRITES-IN-FLIGHT", "COMMIT-WINDOW"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 500), 500);
        assert_eq!(percentile(&samples, 990), 990);
        assert_eq!(percentile(&samples, 999), 999);
        assert_eq!(percentile(&[7], 999), 7);
        assert_eq!(percentile(&[1, 2, 3], 500), 2);
        assert_eq!(percentile(&[], 500), 0);
    }

    #[test]
    fn test_file_sizes() {
        assert_eq!(test_file_bytes(100 << 30, TEST_FILE_BYTES_MAX), TEST_FILE_BYTES_MAX);
        assert_eq!(test_file_bytes(100 << 30, 1 << 40), TEST_FILE_BYTES_MAX);
        assert_eq!(test_file_bytes(400 << 20, TEST_FILE_BYTES_MAX), 100 << 20);
        assert_eq!(test_file_bytes((400 << 20) + 12345, TEST_FILE_BYTES_MAX), 100 << 20);
    }

    #[test]
    fn aligned_buffers_are_aligned_and_not_zero() {
        let buffer = AlignedBuffer::new(SMALL_BLOCK_BYTES, 1);
        assert_eq!(buffer.as_slice().as_ptr() as usize % ALIGN_BYTES, 0);
        assert!(buffer.as_slice().iter().any(|&b| b != 0));
    }

    /// A short real run in a temporary directory (skipped where O_DIRECT is not supported, as on
    /// tmpfs before Linux 6.6).
    #[test]
    fn a_short_probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir_in(std::env::var_os("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from)).unwrap();
        let options = ProbeOptions { duration: Duration::from_millis(400), file_bytes_max: 16 << 20 };
        let disk = match probe_dir(dir.path(), &options, &Progress::quiet()) {
            Ok(disk) => disk,
            Err(e) if format!("{e:#}").contains("O_DIRECT") || format!("{e:#}").contains("too little") => return,
            Err(e) => panic!("{e:#}"),
        };
        assert!(disk.measured.write_seq_bytes_per_s > 0);
        assert!(disk.measured.fdatasync_samples >= 1);
        assert_eq!(disk.measured.write_seq_by_queue_depth.len(), WRITE_QUEUE_DEPTHS.len());
        assert_eq!(disk.test_file_bytes, 16 << 20);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "test files are deleted");
    }
}
