//! One client connection: a reader that turns frames into handler tasks, and a writer that sends
//! their responses in request order. Up to `queued.max.requests` requests run at once per
//! connection (clients pipeline produce requests, and group commit batches their fdatasyncs).
//!
//! Memory: every frame is counted against the shard's request budget (`queued.max.request.bytes`)
//! from before its body is read until it is answered; while that budget is spent the reader
//! waits, so an overloaded shard stops reading sockets instead of growing.
//!
//! Security: on an SSL or SASL_SSL listener the connection first completes a TLS handshake
//! (rustls); on a SASL listener only ApiVersions, SaslHandshake and SaslAuthenticate are served
//! until authentication succeeds, and any other request closes the connection, as in Kafka.
//! SASL requests are handled in the reader, one at a time and in order, because each one moves
//! the connection's authentication state. A connection that has not finished the handshake and
//! the authentication within `shardlog.authentication.timeout.ms` is closed.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::io::WriteHalf;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;
use kafka_protocol::messages::ApiKey;
use shardlog_protocol::frame::{request_length, FRAME_LENGTH_BYTES};
use shardlog_protocol::kafka_protocol;
use shardlog_protocol::request::peek_key_version_correlation;
use shardlog_protocol::response::Chunk;

use super::{sendfile, vectored};
use crate::handlers::{self, Response};
use crate::security::{principal, Session, ANONYMOUS};
use crate::shard::Shard;

/// Bytes read per step while receiving a frame through TLS: pages of the frame's buffer are touched only as
/// its bytes arrive, so a client that announces a large frame but sends little costs little.
const READ_STEP_BYTES: usize = 64 << 10;

type TlsStream = futures_rustls::server::TlsStream<TcpStream>;

/// The sending half of a connection: zero-copy capable on plaintext, encrypting on TLS.
enum Writer {
    Plain(TcpStream),
    Tls(WriteHalf<TlsStream>),
}

pub async fn serve(shard: Rc<Shard>, stream: TcpStream, listener: usize) {
    let peer = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
    }
    let security = &shard.config.security.listeners[listener];
    let listener_name = shard.config.listeners[listener].name.clone();
    let session = Rc::new(Session::new(listener, peer, ANONYMOUS.to_string(), security.sasl.is_none()));
    let tls_ready = Rc::new(Cell::new(security.tls.is_none()));
    // The deadline for the TLS handshake and SASL authentication; it shuts the socket down,
    // which ends the reader, the handshake, or both.
    let watchdog = (!tls_ready.get() || !session.is_authenticated()).then(|| {
        let (session, tls_ready, fd) = (session.clone(), tls_ready.clone(), stream.as_raw_fd());
        let timeout_ms = security.authentication_timeout_ms;
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
            if !tls_ready.get() || !session.is_authenticated() {
                tracing::warn!(peer = %session.peer, timeout_ms, tls_done = tls_ready.get(), "closing connection: not authenticated within shardlog.authentication.timeout.ms");
                // SAFETY: the connection task cancels this watchdog before its socket is closed,
                // so fd is still the connection's socket here.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        })
        .detach()
    });
    match &security.tls {
        None => serve_plaintext(&shard, stream, session).await,
        Some(tls) => {
            let acceptor = futures_rustls::TlsAcceptor::from(tls.config());
            match acceptor.accept(stream).await {
                Ok(stream) => {
                    tls_ready.set(true);
                    if let Some(cert) = stream.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                        match principal::subject_name(cert) {
                            Ok(subject) if security.sasl.is_none() => {
                                let principal = format!("User:{}", tls.settings.mapping.apply(&subject));
                                tracing::debug!(%peer, subject = %subject, principal = %principal, "TLS client authenticated by certificate");
                                session.set_principal(principal);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(%peer, error = %format!("{e:#}"), "closing connection: client certificate subject unreadable");
                                if let Some(w) = watchdog {
                                    w.cancel();
                                }
                                return;
                            }
                        }
                    }
                    tracing::debug!(%peer, listener = %listener_name, principal = %session.principal(), "TLS handshake done");
                    let fd = stream.get_ref().0.as_raw_fd();
                    let (reader, writer) = futures::io::AsyncReadExt::split(stream);
                    run(&shard, reader, Writer::Tls(writer), fd, None, session).await;
                }
                Err(e) => {
                    tracing::warn!(
                        %peer,
                        listener = %listener_name,
                        error = %e,
                        "closing connection: TLS handshake failed (a plaintext client on a TLS port, an untrusted or missing client certificate, or no common TLS version)"
                    );
                }
            }
        }
    }
    if let Some(w) = watchdog {
        w.cancel();
    }
}

async fn serve_plaintext(shard: &Rc<Shard>, stream: TcpStream, session: Rc<Session>) {
    let peer = session.peer;
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
    let fd = stream.as_raw_fd();
    run(shard, stream, Writer::Plain(writer), fd, Some(fd), session).await;
}

/// The reader loop; `fd` is the socket, shut down when the writer stops so the reader wakes.
/// `recv_fd` is set where the reader is the socket itself (plaintext), so a frame's bytes can be
/// received straight into its buffer (`read_body`).
async fn run<R: AsyncRead + Unpin>(shard: &Rc<Shard>, mut reader: R, writer: Writer, fd: i32, recv_fd: Option<i32>, session: Rc<Session>) {
    let peer = session.peer;
    let sasl = shard.config.security.listeners[session.listener].sasl.is_some();
    let (tx, rx) = local_channel::new_bounded::<JoinHandle<Response>>(shard.config.connection_requests_inflight_max);
    let writer_task = glommio::spawn_local(write_loop(shard.clone(), writer, rx, peer, fd)).detach();
    let max_authenticated = shard.config.socket_request_max_bytes;
    // Before authentication a frame may be no larger than a SASL token may be (Kafka bounds
    // unauthenticated receives by sasl.server.max.receive.size too), so an anonymous client
    // cannot make the broker hold a request of socket.request.max.bytes.
    let max_unauthenticated =
        shard.config.security.listeners[session.listener].sasl.as_ref().map_or(max_authenticated, |s| s.token_bytes_max.min(max_authenticated));
    tracing::debug!(%peer, shard = shard.id, "connection opened");
    let state = Rc::new(handlers::ConnectionState::default());
    loop {
        let max = if session.is_authenticated() { max_authenticated } else { max_unauthenticated };
        let mut prefix = [0u8; FRAME_LENGTH_BYTES];
        if let Err(e) = reader.read_exact(&mut prefix).await {
            tracing::debug!(%peer, error = %e, "connection closed");
            break;
        }
        let length = match request_length(prefix, max) {
            Ok(n) => n,
            Err(e) => {
                if session.is_authenticated() {
                    tracing::warn!(%peer, error = %e, "closing connection: bad frame length");
                } else {
                    tracing::warn!(%peer, error = %e, max, "closing connection: bad frame length before authentication (bounded by sasl.server.max.receive.size)");
                }
                break;
            }
        };
        // queued.max.request.bytes: while the shard holds its share of unanswered request
        // bytes, this connection reads nothing more (its socket buffer fills and TCP slows the
        // client down), as Kafka mutes a channel when its memory pool is spent.
        let permit = shard.request_budget.acquire(length).await;
        // Reserved whole, so the frame is never moved while it grows (the budget above bounds
        // it); pages are touched only as the bytes arrive, step by step.
        let mut frame = BytesMut::with_capacity(length);
        if let Err(e) = read_body(&mut reader, recv_fd, &mut frame, length).await {
            tracing::warn!(%peer, expected = length, received = frame.len(), error = %e, "connection closed in the middle of a request");
            break;
        }
        // A client over its quota is muted: nothing more of it is handled until the throttle
        // time has passed (KIP-219), and its socket buffer fills meanwhile.
        if let Some(left) = state.muted_for() {
            glommio::timer::sleep(left).await;
        }
        let api_key = peek_key_version_correlation(&frame).map(|(k, _, _)| k).unwrap_or(-1);
        let is_sasl_request = api_key == ApiKey::SaslHandshake as i16 || api_key == ApiKey::SaslAuthenticate as i16;
        if sasl && !is_sasl_request {
            if !session.is_authenticated() && api_key != ApiKey::ApiVersions as i16 {
                tracing::warn!(
                    %peer,
                    api_key,
                    "closing connection: request before SASL authentication finished (only ApiVersions, SaslHandshake and SaslAuthenticate are allowed until then)"
                );
                break;
            }
            if session.is_expired(Instant::now()) {
                tracing::info!(%peer, principal = %session.principal(), "closing connection: the SASL session expired without re-authentication (connections.max.reauth.ms)");
                break;
            }
        }
        let (task, close_after) = if is_sasl_request {
            // In order, before the next frame is read: the next request depends on the outcome.
            let response = handlers::handle(shard.clone(), frame.freeze(), session.clone(), state.clone(), state.next_request_seq(), 0).await;
            drop(permit);
            let close_after = matches!(response, Response::Close(_) | Response::FrameThenClose(..));
            (glommio::spawn_local(async move { response }).detach(), close_after)
        } else {
            let frame = frame.freeze();
            let produce_throttle_ms = handlers::admit(shard, &frame, &session, &state);
            let handled = handlers::handle(shard.clone(), frame, session.clone(), state.clone(), state.next_request_seq(), produce_throttle_ms);
            let task = glommio::spawn_local(async move {
                let response = handled.await;
                // The request's bytes are released once it is answered; a fetch response's
                // own bytes are bounded by the fetch's max_bytes, not by this budget.
                drop(permit);
                response
            });
            (task.detach(), false)
        };
        if tx.send(task).await.is_err() || close_after {
            break;
        }
    }
    drop(tx);
    let _ = writer_task.await;
    // SAFETY: fd is this connection's socket, still open (the reader owns it).
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Reads a request's body, `length` bytes, into `frame`.
///
/// With `recv_fd` (a plaintext socket), bytes that have arrived are received straight into the
/// buffer's spare capacity with a non-blocking recv(2), so the buffer is never zero-filled before
/// the kernel overwrites it (that memset was 3.5% of the broker's samples at full produce speed);
/// when nothing has arrived, one byte is awaited through glommio, which waits for the socket
/// through io_uring. Otherwise (TLS) the buffer grows by `READ_STEP_BYTES` at a time, so a client
/// that announces a large frame but sends little costs little.
async fn read_body<R: AsyncRead + Unpin>(reader: &mut R, recv_fd: Option<i32>, frame: &mut BytesMut, length: usize) -> std::io::Result<()> {
    while frame.len() < length {
        let start = frame.len();
        if let Some(fd) = recv_fd {
            let spare = &mut frame.spare_capacity_mut()[..length - start];
            // SAFETY: fd is the connection's open socket; the kernel writes at most spare.len()
            // bytes into the spare capacity, which `frame` owns and nothing else borrows.
            let received = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), spare.len(), libc::MSG_DONTWAIT) };
            if received > 0 {
                // SAFETY: the kernel initialized the first `received` bytes of the spare capacity.
                unsafe { frame.set_len(start + received as usize) };
                continue;
            }
            if received == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    frame.resize(start + 1, 0);
                    if let Err(e) = reader.read_exact(&mut frame[start..]).await {
                        frame.truncate(start);
                        return Err(e);
                    }
                    continue;
                }
                _ => return Err(error),
            }
        }
        let step = (length - start).min(READ_STEP_BYTES);
        frame.resize(start + step, 0);
        if let Err(e) = reader.read_exact(&mut frame[start..]).await {
            frame.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

async fn write_loop(shard: Rc<Shard>, mut writer: Writer, rx: local_channel::LocalReceiver<JoinHandle<Response>>, peer: SocketAddr, fd: i32) {
    while let Some(task) = rx.recv().await {
        let Some(response) = task.await else { break };
        let (chunks, close) = match response {
            Response::Nothing => continue,
            Response::Close(reason) => {
                tracing::debug!(%peer, %reason, "closing connection");
                break;
            }
            Response::Frame(chunks) => (chunks, None),
            Response::FrameThenClose(chunks, reason) => (chunks, Some(reason)),
        };
        if let Err(e) = write_chunks(&shard, &mut writer, chunks).await {
            tracing::debug!(%peer, error = %e, "write failed; closing connection");
            break;
        }
        if let Some(reason) = close {
            tracing::debug!(%peer, %reason, "closing connection");
            break;
        }
    }
    // Wake the reader: it sees end of stream and stops.
    match &mut writer {
        Writer::Plain(w) => {
            let _ = w.shutdown(std::net::Shutdown::Both).await;
        }
        Writer::Tls(w) => {
            // close_notify, then the socket itself, which the reader half still holds.
            let _ = w.close().await;
            // SAFETY: fd is this connection's socket, kept open by the reader half.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }
}

async fn write_chunks(shard: &Shard, writer: &mut Writer, chunks: Vec<Chunk<crate::storage::FileRange>>) -> std::io::Result<()> {
    sendfile::prefetch(
        chunks
            .iter()
            .filter_map(|c| match c {
                Chunk::External { len, source } => Some((source.clone(), *len)),
                Chunk::Bytes(_) => None,
            })
            .collect(),
    );
    match writer {
        Writer::Plain(w) => {
            // Runs of in-memory pieces go out gathered, segment ranges with sendfile.
            let mut run = Vec::new();
            for chunk in chunks {
                match chunk {
                    Chunk::Bytes(bytes) => run.push(bytes),
                    Chunk::External { len, source } => {
                        vectored::send_buffers(w, &run).await?;
                        run.clear();
                        sendfile::send_file_range(shard, w, &source, len).await?;
                    }
                }
            }
            vectored::send_buffers(w, &run).await?;
            w.flush().await
        }
        Writer::Tls(w) => {
            // No zero-copy through TLS: segment bytes are read and encrypted like any others.
            for chunk in chunks {
                match chunk {
                    Chunk::Bytes(bytes) => w.write_all(&bytes).await?,
                    Chunk::External { len, source } => sendfile::copy_file_range(w, &source, source.position, len).await?,
                }
            }
            w.flush().await
        }
    }
}
