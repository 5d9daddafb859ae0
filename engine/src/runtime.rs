//! The runtime: the one module above the storage flusher and `net/` that names glommio, the
//! thread-per-core io_uring executor shardlog runs on. Everything else spawns, sleeps, waits on
//! the blocking pool, builds executors and the shard mesh, and makes task queues through here,
//! so moving to another io_uring runtime touches this module, `storage/flusher.rs` (DMA file
//! writes) and `net/` (sockets), and nothing else.
//!
//! What it offers:
//! - tasks: [`spawn`] (a local task on this shard), [`spawn_into`] (in a task queue),
//!   [`yield_if_needed`]; task queues with shares ([`maintenance_queue`]);
//! - time: [`sleep`];
//! - the blocking pool, for system calls that may wait on the disk: [`spawn_blocking`];
//! - executors pinned to cores, each with its blocking pool ([`shard_executor`], [`Executor`],
//!   [`Placement`]), and the channel mesh between them ([`MeshBuilder`], [`Senders`],
//!   [`Receivers`]);
//! - shard-local synchronisation: [`Semaphore`] (tokio's, which is runtime-agnostic; see there);
//! - files: [`read_at`] (buffered reads through io_uring), [`remove_file`], and how the disk
//!   reports completed DMA writes ([`complete_disk_io_by_interrupt`]);
//! - TCP for the brokers' own links (the metadata quorum): [`TcpListener`], [`TcpStream`];
//! - the executor's own counters: [`tasks_executed`].

use std::future::Future;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};

pub use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
pub use glommio::net::{TcpListener, TcpStream};
pub use glommio::task::JoinHandle;
pub use glommio::timer::sleep;
pub use glommio::{yield_if_needed, LocalExecutorBuilder as Executor, Placement, Task, TaskQueueHandle};

/// A semaphore for a shard's tasks: waiters are served in arrival order, and one dropped after
/// it was handed its units (a request that timed out, a connection that closed) passes them to
/// the next. glommio's own does not: it wakes the first waiter without handing it the units, so
/// when that waiter is dropped before it runs, the units stay free while the waiters behind it
/// sleep until some later release (the controller's one-change-at-a-time section, a peer
/// broker's request turn: each would stall).
pub struct Semaphore(tokio::sync::Semaphore);

/// Units held from a [`Semaphore`]; dropping it gives them back.
pub type Permit<'a> = tokio::sync::SemaphorePermit<'a>;

impl Semaphore {
    pub fn new(units: usize) -> Semaphore {
        Semaphore(tokio::sync::Semaphore::new(units))
    }

    /// Waits for `units`, after every earlier waiter; fails only once the semaphore is closed.
    pub async fn acquire_permit(&self, units: u32) -> Result<Permit<'_>, tokio::sync::AcquireError> {
        self.0.acquire_many(units).await
    }
}

/// Threads in each shard's blocking pool, all on the shard's core (they mostly sleep in system
/// calls). More than one, so that one slow job does not hold back the others queued behind
/// it: a segment seal's fsyncs take tens of milliseconds at a busy disk's p99.9, and a new
/// segment takes no writes until its predecessor is sealed, while a cold read's sendfile waits
/// on the disk too. Each job is bounded by its caller (one seal, one step of a sendfile).
pub const BLOCKING_THREADS_PER_SHARD: usize = 4;

/// An executor pinned to `core`, with a blocking pool of [`BLOCKING_THREADS_PER_SHARD`] threads
/// on the same core.
pub fn shard_executor(core: usize, name: &str) -> std::io::Result<Executor> {
    let cpu = glommio::CpuSet::online().map_err(std::io::Error::from)?.filter(|l| l.cpu == core);
    let pool = glommio::PoolPlacement::Custom(vec![cpu; BLOCKING_THREADS_PER_SHARD]);
    Ok(Executor::new(Placement::Fixed(core)).name(name).blocking_thread_pool_placement(pool))
}

/// Spawns `future` as a task of this shard (never another thread).
pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(future)
}

/// Spawns `future` in task queue `queue` of this shard.
pub fn spawn_into<T: 'static>(future: impl Future<Output = T> + 'static, queue: TaskQueueHandle) -> std::io::Result<Task<T>> {
    glommio::spawn_local_into(future, queue).map_err(std::io::Error::from)
}

/// Runs `work` on the executor's blocking thread pool, so that a system call that may wait on
/// the disk (fsync, a cold pread, a directory sync) does not stall the shard.
pub async fn spawn_blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

/// A task queue for background work (retention, compaction, log-directory checks) with
/// `shares` of the CPU against the data path's default queue, and no latency requirement.
pub fn maintenance_queue(shares: usize, name: &str) -> TaskQueueHandle {
    glommio::executor().create_task_queue(glommio::Shares::Static(shares), glommio::Latency::NotImportant, name)
}

/// Reads up to `len` bytes of `file` from `position` through io_uring, into the page cache and
/// from it, fewer only at the end of the file. A page that is not cached makes this task wait
/// for the disk, not the shard. Buffered rather than O_DIRECT (glommio's DMA reads) on purpose:
/// the pages read here (batch headers, file bytes for TLS) are usually sent next by sendfile or
/// read again by another fetch, which then find them cached.
pub async fn read_at(file: &std::fs::File, position: u64, len: usize) -> std::io::Result<Vec<u8>> {
    // glommio's file owns and closes its descriptor: give it a duplicate, so that `file` (shared
    // with fetches on other shards) stays open whatever happens to this read.
    let descriptor = file.as_fd().try_clone_to_owned()?;
    // SAFETY: the descriptor is a fresh duplicate that nothing else owns; the BufferedFile takes
    // it over and closes it.
    let reader = unsafe { glommio::io::BufferedFile::from_raw_fd(descriptor.into_raw_fd()) };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let got = reader.read_at(position + out.len() as u64, len - out.len()).await.map_err(std::io::Error::from)?;
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    reader.close().await.map_err(std::io::Error::from)?;
    Ok(out)
}

/// How a shard learns that its DMA reads and writes on one device completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskCompletions {
    /// The device interrupts; the shard sleeps while its writes are in flight.
    Interrupt,
    /// The device has poll queues (`queue/io_poll` is 1), and glommio polls them.
    Polled,
}

/// Keeps this shard from busy-polling for the DMA writes it makes under `dir`, unless the
/// directory's device has poll queues.
///
/// glommio puts a DMA file's reads and writes on its polled ring (IORING_SETUP_IOPOLL) whenever
/// the kernel takes a polled read of the file, and the kernel takes one on any ext4 or XFS file,
/// also where the device has no poll queues and completes by interrupt anyway. While a write is
/// in flight on that ring the executor never sleeps: it turns, re-arming and cancelling a timer
/// each time, until the completion is reaped. Under a durable produce load there is a write in
/// flight all the time: on a virtio disk, 100,000 such turns a second and a quarter of the broker's
/// CPU went to reaping completions an interrupt had already delivered.
///
/// glommio probes each device once per thread, with a polled read of the first DMA file opened
/// on it, and polls nothing on that device once the kernel refuses one (EOPNOTSUPP). A FIFO in
/// `dir` lives on the same device and has no polled reads: opened as a DMA file before any
/// segment, it makes that first probe come out as "no polling". `tag` names the FIFO apart from
/// other shards' (it is removed at once; one left by a crash is replaced).
pub async fn complete_disk_io_by_interrupt(dir: &std::path::Path, tag: usize) -> std::io::Result<DiskCompletions> {
    use std::os::unix::ffi::OsStrExt;
    let probe = dir.join(format!(".shardlog-poll-probe-{tag}"));
    let (directory, fifo) = (dir.to_path_buf(), probe.clone());
    let polled = spawn_blocking(move || -> std::io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let device = std::fs::metadata(&directory)?.dev();
        let (major, minor) = (libc::major(device), libc::minor(device));
        // A partition's queue is its disk's.
        let queue = |at: &str| std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/{at}queue/io_poll"));
        if queue("").or_else(|_| queue("../")).is_ok_and(|v| v.trim() == "1") {
            return Ok(true);
        }
        match std::fs::remove_file(&fifo) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: `path` is a NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(false)
    })
    .await?;
    if polled {
        return Ok(DiskCompletions::Polled);
    }
    // Read and write: glommio's probe is a read, and opening a FIFO for both never waits for a peer.
    let opened = glommio::io::OpenOptions::new().read(true).write(true).dma_open(&probe).await.map_err(std::io::Error::from);
    let closed = match opened {
        Ok(file) => file.close().await.map_err(std::io::Error::from),
        Err(e) => Err(e),
    };
    let removed = remove_file(&probe).await;
    closed.and(removed).map(|()| DiskCompletions::Interrupt)
}

/// Removes a file through io_uring.
pub async fn remove_file(path: &std::path::Path) -> std::io::Result<()> {
    glommio::io::remove(path).await.map_err(std::io::Error::from)
}

/// Tasks this shard's executor has run.
pub fn tasks_executed() -> u64 {
    glommio::executor().executor_stats().tasks_executed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::{waker, ArcWake};
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    #[derive(Default)]
    struct Wakes(AtomicUsize);
    impl ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn dma_writes_complete_by_interrupt_where_the_device_has_no_poll_queues() {
        // Where /tmp is a disk: on tmpfs nothing is ever polled, and this passes either way.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (completions, polled_writes, main_writes, left) = shard_executor(0, "poll-probe")
            .unwrap()
            .spawn(move || async move {
                let completions = complete_disk_io_by_interrupt(&path, 0).await.unwrap();
                // Taking the counters resets them: only the segment's write is counted below.
                let _ = glommio::executor().io_stats();
                let file = glommio::io::OpenOptions::new().create(true).write(true).read(true).dma_open(path.join("segment")).await.unwrap();
                let mut buffer = file.alloc_dma_buffer(4096);
                buffer.as_bytes_mut().fill(7);
                file.write_at(buffer, 0).await.unwrap();
                file.close().await.unwrap();
                let stats = glommio::executor().io_stats();
                let left = std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
                (completions, stats.poll_ring.file_writes().0, stats.main_ring.file_writes().0, left)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(left, vec![std::ffi::OsString::from("segment")], "the probe's FIFO is gone");
        match completions {
            DiskCompletions::Interrupt => assert_eq!((polled_writes, main_writes), (0, 1), "the write went to the interrupt-driven ring"),
            DiskCompletions::Polled => assert_eq!(polled_writes, 1, "a device with poll queues is polled"),
        }
    }

    #[test]
    fn a_waiter_dropped_after_it_was_woken_passes_the_units_on() {
        let semaphore = Semaphore::new(1);
        let held = futures::executor::block_on(semaphore.acquire_permit(1)).unwrap();
        let (first_wakes, second_wakes) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        let (first_waker, second_waker) = (waker(first_wakes.clone()), waker(second_wakes.clone()));
        let mut first = Box::pin(semaphore.acquire_permit(1));
        let mut second = pin!(semaphore.acquire_permit(1));
        assert!(first.as_mut().poll(&mut Context::from_waker(&first_waker)).is_pending());
        assert!(second.as_mut().poll(&mut Context::from_waker(&second_waker)).is_pending());
        drop(held);
        assert_eq!(first_wakes.0.load(Ordering::SeqCst), 1, "the first in line is woken");
        assert_eq!(second_wakes.0.load(Ordering::SeqCst), 0);
        // It gives up before it runs (its request timed out): the next in line gets the units.
        drop(first);
        assert_eq!(second_wakes.0.load(Ordering::SeqCst), 1, "the next in line is woken");
        assert!(matches!(second.as_mut().poll(&mut Context::from_waker(&second_waker)), Poll::Ready(Ok(_))));
    }
}
