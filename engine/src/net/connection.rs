//! One client connection: a reader that turns frames into handler tasks, and a writer that sends
//! their responses in request order. Up to `queued.max.requests` requests run at once per
//! connection (clients pipeline produce requests, and group commit batches their fdatasyncs).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use shardlog_protocol::frame::{request_length, FRAME_LENGTH_BYTES};
use shardlog_protocol::response::Chunk;

use super::sendfile;
use crate::handlers::{self, Response};
use crate::shard::Shard;

/// Bytes read per step while receiving a frame: a client that announces a large frame but
/// sends little costs only what it actually sent.
const READ_STEP_BYTES: usize = 64 << 10;

pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
    }
    // A second handle on the same socket for the writer, so reading and writing never wait on
    // each other. SAFETY: dup returns a new descriptor that only the writer's stream owns.
    let writer_fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if writer_fd < 0 {
        tracing::error!(%peer, error = %std::io::Error::last_os_error(), "dup of a client socket failed; closing it");
        return;
    }
    // SAFETY: writer_fd is a fresh, valid socket descriptor owned by nothing else.
    let writer = unsafe { TcpStream::from_raw_fd(writer_fd) };
    sendfile::limit_blocking(writer_fd);
    let (tx, rx) = local_channel::new_bounded::<JoinHandle<Response>>(shard.config.connection_requests_inflight_max);
    let writer_task = glommio::spawn_local(write_loop(shard.clone(), writer, rx, peer)).detach();
    let mut reader = stream;
    let max = shard.config.socket_request_max_bytes;
    tracing::debug!(%peer, shard = shard.id, "connection opened");
    loop {
        let mut prefix = [0u8; FRAME_LENGTH_BYTES];
        if let Err(e) = reader.read_exact(&mut prefix).await {
            tracing::debug!(%peer, error = %e, "connection closed");
            break;
        }
        let length = match request_length(prefix, max) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing connection: bad frame length");
                break;
            }
        };
        let mut frame = BytesMut::with_capacity(length.min(READ_STEP_BYTES));
        let mut failed = false;
        while frame.len() < length {
            let step = (length - frame.len()).min(READ_STEP_BYTES);
            let start = frame.len();
            frame.resize(start + step, 0);
            if let Err(e) = reader.read_exact(&mut frame[start..]).await {
                tracing::warn!(%peer, expected = length, received_at_least = start, error = %e, "connection closed in the middle of a request");
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        let task = glommio::spawn_local(handlers::handle(shard.clone(), frame.freeze(), peer)).detach();
        if tx.send(task).await.is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
    let _ = reader.shutdown(std::net::Shutdown::Both).await;
}

async fn write_loop(shard: Rc<Shard>, mut writer: TcpStream, rx: local_channel::LocalReceiver<JoinHandle<Response>>, peer: SocketAddr) {
    while let Some(task) = rx.recv().await {
        let Some(response) = task.await else { break };
        match response {
            Response::Nothing => {}
            Response::Close(reason) => {
                tracing::debug!(%peer, %reason, "closing connection");
                break;
            }
            Response::Frame(chunks) => {
                if let Err(e) = write_chunks(&shard, &mut writer, chunks).await {
                    tracing::debug!(%peer, error = %e, "write failed; closing connection");
                    break;
                }
            }
        }
    }
    // Wake the reader: it sees end of stream and stops.
    let _ = writer.shutdown(std::net::Shutdown::Both).await;
}

async fn write_chunks(shard: &Shard, writer: &mut TcpStream, chunks: Vec<Chunk<super::FileRange>>) -> std::io::Result<()> {
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => writer.write_all(&bytes).await?,
            Chunk::External { len, source } => {
                writer.flush().await?;
                sendfile::send_file_range(shard, writer, &source, len).await?;
            }
        }
    }
    writer.flush().await
}
