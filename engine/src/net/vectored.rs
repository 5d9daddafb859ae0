//! Sends a response's in-memory pieces with gathering sendmsg(2) calls: a fetch answered from
//! the batch cache goes out as the cache's own buffers, which the kernel gathers into the socket,
//! instead of being copied into one response buffer first.
//!
//! Each sendmsg uses MSG_DONTWAIT, as glommio's own sends do, so the shard never blocks on a
//! full socket (the descriptor itself is in blocking mode for sendfile's sake, see `sendfile`).
//! When the socket is full, the next few KiB are written through glommio, which waits for room
//! through io_uring, and gathering resumes after them.

use std::os::fd::AsRawFd;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use super::sendfile::ROOM_WAIT_BYTES;

/// Buffers per sendmsg call (Linux takes up to IOV_MAX, 1024).
const IOVECS_PER_CALL: usize = 64;

/// Writes every byte of `buffers`, in order, to `writer`.
pub async fn send_buffers(writer: &mut TcpStream, buffers: &[Bytes]) -> std::io::Result<()> {
    let fd = writer.as_raw_fd();
    // Where the next unsent byte is: buffer `index`, byte `offset` of it.
    let (mut index, mut offset) = (0usize, 0usize);
    advance(buffers, &mut index, &mut offset, 0);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(buffers.len().min(IOVECS_PER_CALL));
    while index < buffers.len() {
        iov.clear();
        for (i, buffer) in buffers[index..].iter().take(IOVECS_PER_CALL).enumerate() {
            let piece = if i == 0 { &buffer[offset..] } else { &buffer[..] };
            iov.push(libc::iovec { iov_base: piece.as_ptr() as *mut libc::c_void, iov_len: piece.len() });
        }
        // SAFETY: an all-zero msghdr is a valid one with no address and no control data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: fd is the writer's open socket; every iovec points into a buffer of `buffers`,
        // borrowed for the whole call, and the kernel only reads them.
        let sent = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if sent > 0 {
            advance(buffers, &mut index, &mut offset, sent as usize);
            continue;
        }
        if sent == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "the socket took none of a response's bytes"));
        }
        let error = std::io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN) => {
                let piece = &buffers[index][offset..];
                let n = piece.len().min(ROOM_WAIT_BYTES);
                writer.write_all(&piece[..n]).await?;
                advance(buffers, &mut index, &mut offset, n);
            }
            _ => return Err(error),
        }
    }
    Ok(())
}

/// Moves the position `n` bytes on, past any buffers it finishes and any empty ones after.
fn advance(buffers: &[Bytes], index: &mut usize, offset: &mut usize, n: usize) {
    *offset += n;
    while *index < buffers.len() && *offset >= buffers[*index].len() {
        *offset -= buffers[*index].len();
        *index += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn every_byte_goes_out_once_in_order_through_a_socket_that_fills_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Pieces of many sizes (empty ones too) adding up to far more than a socket buffer,
        // more of them than one sendmsg takes.
        let buffers: Vec<Bytes> = (0..600u32).map(|i| Bytes::from((0..(i * 97) % 70_000).map(|j| ((i + j) % 251) as u8).collect::<Vec<u8>>())).collect();
        let expected: Vec<u8> = buffers.iter().flat_map(|b| b.iter().copied()).collect();
        let reader = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            // Not reading at first: the sender finds the socket full and must wait for room.
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mut got = Vec::new();
            socket.read_to_end(&mut got).unwrap();
            got
        });
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                send_buffers(&mut stream, &buffers).await.unwrap();
                stream.close().await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "every byte once, in order");
    }

    #[test]
    fn advance_skips_finished_and_empty_buffers() {
        let buffers = [Bytes::from_static(b"ab"), Bytes::new(), Bytes::from_static(b"c"), Bytes::new()];
        let (mut index, mut offset) = (0, 0);
        advance(&buffers, &mut index, &mut offset, 1);
        assert_eq!((index, offset), (0, 1));
        advance(&buffers, &mut index, &mut offset, 1);
        assert_eq!((index, offset), (2, 0), "past the empty buffer");
        advance(&buffers, &mut index, &mut offset, 1);
        assert_eq!(index, buffers.len(), "past the trailing empty buffer: done");
    }
}
