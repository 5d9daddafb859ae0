//! Zero-copy sends of segment data: sendfile(2) from the segment file to the socket.
//!
//! glommio has no sendfile, so this calls it directly on the socket descriptor. The socket stays
//! in blocking mode (glommio's io_uring sends do not care), but with a 1 ms SO_SNDTIMEO, so a
//! sendfile to a client whose socket buffer is full returns within a millisecond instead of
//! stalling the shard. Whatever sendfile could not send is then read and written the ordinary
//! way, through glommio, which waits for the socket without blocking anyone; its file reads run
//! on the blocking pool. (sendfile itself still reads the file on the shard's thread: a page
//! that is not cached makes it wait for the disk.)

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use futures_lite::{AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::shard::Shard;
use crate::storage::FileRange;

/// How long one sendfile may block on a full socket buffer.
const SENDFILE_BLOCK_US_MAX: libc::suseconds_t = 1000;
/// Bytes per fallback read when the socket cannot take more at once.
const FALLBACK_CHUNK_BYTES: usize = 256 << 10;

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
        tracing::warn!(error = %std::io::Error::last_os_error(), "SO_SNDTIMEO not set; sendfile may block on slow clients");
    }
}

pub async fn send_file_range(shard: &Shard, writer: &mut TcpStream, range: &FileRange, len: usize) -> std::io::Result<()> {
    let socket = writer.as_raw_fd();
    let mut offset = range.position as libc::off_t;
    let end = range.position + len as u64;
    while (offset as u64) < end {
        let remaining = (end - offset as u64) as usize;
        // SAFETY: both descriptors are open for the duration of the call; `offset` is a valid
        // pointer that sendfile advances by the bytes it sent.
        let sent = unsafe { libc::sendfile(socket, range.file.as_raw_fd(), &mut offset, remaining) };
        shard.sendfile_calls.set(shard.sendfile_calls.get() + 1);
        if sent > 0 {
            shard.sendfile_bytes.set(shard.sendfile_bytes.get() + sent as u64);
            continue;
        }
        let error = std::io::Error::last_os_error();
        if sent == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment file shorter than the range to send"));
        }
        match error.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => break,
            _ => return Err(error),
        }
    }
    // The socket is full: send the rest through glommio, which waits for room.
    let position = offset as u64;
    copy_file_range(writer, range, position, (end - position) as usize).await
}

/// Reads `len` bytes of the segment file from `position` and writes them: the path for
/// sockets that cannot take sendfile (TLS, or a full socket buffer).
pub async fn copy_file_range<W: AsyncWrite + Unpin>(writer: &mut W, range: &FileRange, position: u64, len: usize) -> std::io::Result<()> {
    let end = position + len as u64;
    let mut position = position;
    let mut buffer = vec![0u8; FALLBACK_CHUNK_BYTES.min(len)];
    while position < end {
        let n = ((end - position) as usize).min(buffer.len());
        // The read goes to the blocking pool: segment pages written with O_DIRECT are not in
        // the page cache, so it may wait for the disk, which must not stall the shard.
        let file = range.file.clone();
        buffer = glommio::executor()
            .spawn_blocking(move || {
                let mut buffer = buffer;
                file.read_exact_at(&mut buffer[..n], position).map(|()| buffer)
            })
            .await?;
        writer.write_all(&buffer[..n]).await?;
        position += n as u64;
    }
    Ok(())
}
