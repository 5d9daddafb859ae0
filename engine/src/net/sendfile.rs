//! Zero-copy sends of segment data: sendfile(2) from the segment file to the socket.
//!
//! glommio has no sendfile (nor splice), so it is called directly, on the blocking pool: the
//! segment pages were written with O_DIRECT and are usually not cached, so a sendfile waits for
//! the disk, which on the shard's thread would stall every partition and connection of the
//! shard. How that stays safe with the reactor:
//! - The job gets its own duplicate of the socket descriptor and its own handle on the file, so
//!   both stay open until it ends, even if the connection's task is dropped meanwhile (the
//!   descriptor number can then not be reused under it for another file).
//! - Only the connection's writer task writes to the socket, one response after the other, and
//!   it waits for the job: no other bytes can come between the ones the job sends. The reader
//!   task only reads, which does not interfere.
//! - The socket stays in blocking mode (glommio's own sends use MSG_DONTWAIT and do not care),
//!   with a 1 ms SO_SNDTIMEO: a job blocks at most that long on a full socket buffer, then hands
//!   back what it sent. The writer then waits for room the way glommio does, through io_uring,
//!   by writing the next few KiB the ordinary way, and goes back to sendfile. A slow client
//!   therefore costs a pool thread at most a millisecond at a time, and only a small share of
//!   the bytes loses zero copy.
//! - Partial sends are the normal case: sendfile advances the file offset by what it sent, the
//!   job loops until its step is sent, and the next job starts where the last one stopped.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use futures_lite::{AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::runtime;
use crate::shard::Shard;
use crate::storage::FileRange;

/// How long one sendfile may block on a full socket buffer.
const SENDFILE_BLOCK_US_MAX: libc::suseconds_t = 1000;
/// Bytes one blocking-pool job sends at most: the pool is shared with other connections and
/// with segment seals, which queue behind a job, so a large range is sent in several.
const SENDFILE_JOB_BYTES_MAX: u64 = 1 << 20;
/// Bytes written the ordinary way, through glommio, when the socket was full (for a sendfile or
/// a gathering sendmsg, `vectored`), to wait for room without blocking a thread.
pub(super) const ROOM_WAIT_BYTES: usize = 16 << 10;
/// Bytes per read when a range is copied rather than sent with sendfile (TLS).
const COPY_CHUNK_BYTES: usize = 256 << 10;

pub fn limit_blocking(fd: i32) {
    let timeout = libc::timeval { tv_sec: 0, tv_usec: SENDFILE_BLOCK_US_MAX };
    // SAFETY: fd is a socket we own; the option value is a valid timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &timeout as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "SO_SNDTIMEO not set; sendfile may block a pool thread on slow clients");
    }
}

/// What one blocking-pool job did.
struct JobOutcome {
    /// The socket descriptor, handed back for the next job.
    socket: OwnedFd,
    sent_bytes: u64,
    calls: u64,
    end: JobEnd,
}

enum JobEnd {
    /// Everything the job was given went out.
    Sent,
    /// The socket buffer stayed full for SENDFILE_BLOCK_US_MAX.
    SocketFull,
    Failed(std::io::Error),
}

/// Sends `file` bytes `position..end` to `socket` with sendfile, blocking this (pool) thread.
fn send_blocking(socket: OwnedFd, file: &std::fs::File, position: u64, end: u64) -> JobOutcome {
    let mut offset = position as libc::off_t;
    let mut outcome = JobOutcome { socket, sent_bytes: 0, calls: 0, end: JobEnd::Sent };
    while (offset as u64) < end {
        let remaining = (end - offset as u64) as usize;
        // SAFETY: both descriptors are open for the duration of the call (the job owns them);
        // `offset` is a valid pointer that sendfile advances by the bytes it sent.
        let sent = unsafe { libc::sendfile(outcome.socket.as_raw_fd(), file.as_raw_fd(), &mut offset, remaining) };
        outcome.calls += 1;
        if sent > 0 {
            outcome.sent_bytes += sent as u64;
            continue;
        }
        if sent == 0 {
            let short = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than the range to send");
            outcome.end = JobEnd::Failed(short);
            return outcome;
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => outcome.end = JobEnd::SocketFull,
            _ => outcome.end = JobEnd::Failed(error),
        }
        return outcome;
    }
    outcome
}

/// Starts reading `ranges` (segment byte ranges, with their lengths) into the page cache, all at
/// once, and returns without waiting: the kernel reads them while the response's first bytes go
/// out. Without it each range's sendfile waits for the disk in turn, and the kernel's own
/// readahead, which a fetch's header reads at both ends of each range keep from ramping up, reads
/// a range in small steps. Advice only: a failure changes nothing but speed (logged at debug).
pub fn prefetch(ranges: Vec<(FileRange, usize)>) {
    if ranges.is_empty() {
        return;
    }
    // posix_fadvise queues the reads without waiting for them, but may wait for memory or a
    // full device queue: on the blocking pool, not the shard.
    let advise = runtime::spawn_blocking(move || {
        for (range, len) in &ranges {
            // SAFETY: the descriptor is open for the call (the FileRange holds its file).
            let rc = unsafe { libc::posix_fadvise(range.file.as_raw_fd(), range.position as libc::off_t, *len as libc::off_t, libc::POSIX_FADV_WILLNEED) };
            if rc != 0 {
                tracing::debug!(error = %std::io::Error::from_raw_os_error(rc), "readahead advice for a segment range refused");
            }
        }
    });
    runtime::spawn(advise).detach();
}

pub async fn send_file_range(shard: &Shard, writer: &mut TcpStream, range: &FileRange, len: usize) -> std::io::Result<()> {
    // SAFETY: the writer's descriptor is open while `writer` is borrowed, which outlasts this
    // borrow; the jobs get a duplicate of their own.
    let mut socket = unsafe { BorrowedFd::borrow_raw(writer.as_raw_fd()) }.try_clone_to_owned()?;
    let end = range.position + len as u64;
    let mut position = range.position;
    while position < end {
        let (file, step_end) = (Arc::clone(&range.file), end.min(position + SENDFILE_JOB_BYTES_MAX));
        let job = runtime::spawn_blocking(move || send_blocking(socket, &file, position, step_end)).await;
        socket = job.socket;
        position += job.sent_bytes;
        shard.sendfile_calls.set(shard.sendfile_calls.get() + job.calls);
        shard.sendfile_bytes.set(shard.sendfile_bytes.get() + job.sent_bytes);
        match job.end {
            JobEnd::Sent => {}
            JobEnd::Failed(error) => return Err(error),
            JobEnd::SocketFull => {
                // The socket is full: wait for room through glommio, which polls for it.
                let n = ((end - position) as usize).min(ROOM_WAIT_BYTES);
                copy_file_range(writer, range, position, n).await?;
                position += n as u64;
            }
        }
    }
    Ok(())
}

/// Reads `len` bytes of the segment file from `position` and writes them: the path for
/// sockets that cannot take sendfile (TLS), and for waiting until a full socket has room.
pub async fn copy_file_range<W: AsyncWrite + Unpin>(writer: &mut W, range: &FileRange, position: u64, len: usize) -> std::io::Result<()> {
    let end = position + len as u64;
    let mut position = position;
    while position < end {
        let n = ((end - position) as usize).min(COPY_CHUNK_BYTES);
        // Through io_uring: segment pages written with O_DIRECT are not in the page cache, so
        // the read may wait for the disk, which must not stall the shard.
        let bytes = runtime::read_at(&range.file, position, n).await?;
        if bytes.len() < n {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than the range to send"));
        }
        writer.write_all(&bytes).await?;
        position += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Which of the pages of `file` in `range` are in the page cache (mincore).
    fn resident_pages(file: &std::fs::File, len: usize, range: std::ops::Range<usize>) -> usize {
        let page = 4096;
        // SAFETY: a read-only shared mapping of `len` bytes of an open file, unmapped below;
        // mincore writes one byte per page into a vector of that many.
        unsafe {
            let map = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
            assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
            let mut vec = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0, "mincore: {}", std::io::Error::last_os_error());
            libc::munmap(map, len);
            vec[range.start / page..range.end / page].iter().filter(|v| *v & 1 == 1).count()
        }
    }

    #[test]
    fn prefetch_brings_each_range_into_the_page_cache() {
        let len = 8 << 20;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_all().unwrap();
        // Clean pages are dropped on request (where the page cache is the only copy, as on
        // tmpfs, they stay and the test proves less).
        // SAFETY: an open descriptor, a range inside the file.
        assert_eq!(unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len as libc::off_t, libc::POSIX_FADV_DONTNEED) }, 0);
        let file = Arc::new(file);
        let ranges = [(1usize << 20, 1usize << 20), (5 << 20, 512 << 10)];
        let sent: Vec<_> = ranges.iter().map(|&(position, len)| (FileRange { file: Arc::clone(&file), position: position as u64 }, len)).collect();
        crate::runtime::Executor::new(crate::runtime::Placement::Unbound)
            .spawn(move || async move {
                prefetch(sent);
                // The advice runs on the blocking pool, detached: wait here, in the executor,
                // until the kernel has read the ranges (a generous bound, not a timing).
                for (position, range_len) in ranges {
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while resident_pages(&file, len, position..position + range_len) < range_len / 4096 {
                        assert!(std::time::Instant::now() < deadline, "bytes {position}..+{range_len} never reached the page cache");
                        crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_job_stops_at_a_full_socket_with_what_it_sent_and_the_next_goes_on_from_there() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        limit_blocking(sender.as_raw_fd());
        let data: Vec<u8> = (0..32u32 << 20).map(|i| (i.wrapping_mul(7) % 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let (start, end) = (100u64, data.len() as u64);

        // Nobody reads yet: the job fills the socket's buffers, waits its millisecond and stops.
        let first = send_blocking(sender.into(), &file, start, end);
        assert!(matches!(first.end, JobEnd::SocketFull), "32 MiB do not fit in a loopback socket's buffers");
        assert!(first.sent_bytes > 0 && first.sent_bytes < end - start, "sent {} bytes", first.sent_bytes);

        let expected = data[start as usize..].to_vec();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).unwrap();
            got
        });
        let (mut socket, mut position) = (first.socket, start + first.sent_bytes);
        while position < end {
            let job = send_blocking(socket, &file, position, end);
            assert!(!matches!(job.end, JobEnd::Failed(_)), "no error while the peer reads");
            (socket, position) = (job.socket, position + job.sent_bytes);
        }
        drop(socket);
        assert!(reader.join().unwrap() == expected, "every byte once, in order");
    }
}
