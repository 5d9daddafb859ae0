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
//! - files: [`read_at`] (buffered reads through io_uring), [`remove_file`];
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
