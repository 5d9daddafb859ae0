//! An async Kafka connection that pipelines requests.
//!
//! A request is encoded and queued when it is made, so requests go out in the order they were
//! made (the order matters: two produce requests for one partition must reach the broker in
//! order). A writer task writes queued frames, several per flush when they pile up; a reader task
//! reads response frames and hands each to the request at the head of the pending queue, after
//! checking the correlation id (Kafka answers a connection's requests in order). A produce with
//! acks=0 gets no answer, so it is complete once written.
//!
//! How many requests are outstanding is up to the caller (the producer's `max_in_flight`).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use shardlog_protocol::error_code::{error_name, UNSUPPORTED_VERSION};
use shardlog_protocol::kafka_protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

pub const CLIENT_ID: &str = "shardlog-bench";

/// Set by `--tls-ca`: every connection then speaks TLS, trusting that CA.
static TLS: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();

/// Makes every later connection use TLS, verifying the broker against the CA certificates in
/// the PEM file `ca`.
pub fn enable_tls(ca: &std::path::Path) -> Result<()> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).with_context(|| format!("cannot read the CA file {}", ca.display()))? {
        roots.add(cert.with_context(|| format!("{}: certificate PEM does not parse", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_no_client_auth();
    TLS.set(Arc::new(config)).map_err(|_| anyhow!("TLS is already configured"))
}

type BoxedRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type BoxedWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The two halves of a connection, through TLS when `enable_tls` was called.
async fn open(address: &str, stream: TcpStream) -> Result<(BoxedRead, BoxedWrite)> {
    let Some(config) = TLS.get() else {
        let (read, write) = stream.into_split();
        return Ok((Box::new(read), Box::new(write)));
    };
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).with_context(|| format!("{host} is not a valid TLS server name"))?;
    let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, stream).await.with_context(|| format!("TLS handshake with {address} failed"))?;
    let (read, write) = tokio::io::split(tls);
    Ok((Box::new(read), Box::new(write)))
}
/// Connect and first-exchange timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response frame accepted: the default `socket.request.max.bytes`. A larger length
/// prefix means a confused peer, not an answer.
pub const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const SOCKET_BUFFER_BYTES: usize = 256 * 1024;

/// The versions this client speaks: (key, min, max). The tops stop where Kafka starts naming
/// topics by id only (Produce v13, Fetch v13), which the generator does not track.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
];

/// For each API the client speaks, the highest version both sides speak, or None.
pub fn negotiate(broker: &[(i16, i16, i16)]) -> Vec<(ApiKey, Option<i16>)> {
    CLIENT_VERSIONS
        .iter()
        .map(|&(key, client_min, client_max)| {
            let version = broker.iter().find(|(k, _, _)| *k == key as i16).and_then(|&(_, broker_min, broker_max)| {
                let v = client_max.min(broker_max);
                (v >= client_min.max(broker_min)).then_some(v)
            });
            (key, version)
        })
        .collect()
}

struct Outgoing {
    frame: Bytes,
    pending: Option<Pending>,
    /// For a request with no response (acks=0 produce): told when the frame is written.
    written: Option<oneshot::Sender<Result<Bytes>>>,
}

struct Pending {
    correlation_id: i32,
    header_version: i16,
    reply: oneshot::Sender<Result<Bytes>>,
}

type PendingQueue = Arc<Mutex<VecDeque<Pending>>>;

pub struct Connection {
    address: String,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    correlation_id: AtomicI32,
    closed: Arc<AtomicBool>,
    versions: Vec<(ApiKey, Option<i16>)>,
}

impl Connection {
    /// Connects, starts the reader and writer tasks, and negotiates API versions.
    pub async fn connect(address: &str) -> Result<Connection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| anyhow!("timed out connecting to {address}"))?
            .with_context(|| format!("cannot connect to {address}; is the broker running?"))?;
        stream.set_nodelay(true)?;
        let (read, write) =
            tokio::time::timeout(CONNECT_TIMEOUT, open(address, stream)).await.map_err(|_| anyhow!("TLS handshake with {address} timed out"))??;
        let (tx, rx) = mpsc::unbounded_channel();
        let closed = Arc::new(AtomicBool::new(false));
        let pending: PendingQueue = Arc::default();
        tokio::spawn(write_loop(BufWriter::with_capacity(SOCKET_BUFFER_BYTES, write), rx, pending.clone(), closed.clone()));
        tokio::spawn(read_loop(BufReader::with_capacity(SOCKET_BUFFER_BYTES, read), pending, closed.clone(), address.to_string()));
        let mut connection = Connection { address: address.to_string(), outgoing: tx, correlation_id: AtomicI32::new(0), closed, versions: Vec::new() };
        tokio::time::timeout(CONNECT_TIMEOUT, connection.negotiate_versions())
            .await
            .map_err(|_| anyhow!("{address} did not answer ApiVersions within {CONNECT_TIMEOUT:?}; is it a Kafka broker?"))??;
        Ok(connection)
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The negotiated version of `key`.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        match self.versions.iter().find(|(k, _)| *k == key) {
            Some((_, Some(v))) => Ok(*v),
            _ => {
                let (min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key).map_or((0, 0), |&(_, a, b)| (a, b));
                bail!("the broker at {} serves no version of {key:?} in {min}..={max}", self.address)
            }
        }
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = 3;
        for _ in 0..2 {
            let mut request = ApiVersionsRequest::default();
            if version >= 3 {
                request.client_software_name = StrBytes::from_static_str(CLIENT_ID);
                request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let mut body = self.send_frame(ApiKey::ApiVersions, version, &request, true)?.await?;
            // A broker that does not know `version` answers with a v0 body.
            let decode_version = if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION { 0 } else { version };
            let response = ApiVersionsResponse::decode(&mut body, decode_version)
                .map_err(|e| anyhow!("cannot decode ApiVersions from {}: {e:#}; is it a Kafka broker?", self.address))?;
            let broker: Vec<(i16, i16, i16)> = response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
            self.versions = negotiate(&broker);
            match response.error_code {
                0 => return Ok(()),
                UNSUPPORTED_VERSION => version = self.version(ApiKey::ApiVersions)?,
                code => bail!("{} refused ApiVersions: {}", self.address, error_name(code)),
            }
        }
        bail!("{} and this tool have no ApiVersions version in common", self.address)
    }

    /// Encodes and queues `request` now; the returned future resolves to the decoded answer.
    pub fn send<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<impl Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
        let body = self.send_frame(key, version, request, true)?;
        let address = self.address.clone();
        Ok(async move {
            let mut body = body.await?;
            let response = R::Response::decode(&mut body, version).map_err(|e| anyhow!("cannot decode the {key:?} v{version} answer from {address}: {e:#}"))?;
            if body.has_remaining() {
                bail!("the {key:?} v{version} answer from {address} has {} bytes left over", body.remaining());
            }
            Ok(response)
        })
    }

    /// Queues a request that the broker does not answer (a produce with acks=0); the future
    /// resolves once it is written.
    pub fn send_no_response<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
        let written = self.send_frame(key, version, request, false)?;
        Ok(async move { written.await.map(|_| ()) })
    }

    /// Sends one request and waits for its answer: for the setup steps.
    pub async fn call<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.send(request, version)?.await
    }

    fn send_frame<T: Encodable>(
        &self,
        key: ApiKey,
        version: i16,
        body: &T,
        expects_response: bool,
    ) -> Result<impl Future<Output = Result<Bytes>> + Send + 'static> {
        let correlation_id = self.correlation_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let frame = encode_request(key, version, correlation_id, body)?;
        let (tx, rx) = oneshot::channel();
        let outgoing = if expects_response {
            Outgoing { frame, pending: Some(Pending { correlation_id, header_version: key.response_header_version(version), reply: tx }), written: None }
        } else {
            Outgoing { frame, pending: None, written: Some(tx) }
        };
        let queued = !self.is_closed() && self.outgoing.send(outgoing).is_ok();
        let address = self.address.clone();
        Ok(async move {
            if !queued {
                bail!("the connection to {address} is closed");
            }
            rx.await.map_err(|_| anyhow!("the connection to {address} closed before the {key:?} answer came"))?
        })
    }
}

/// One request frame: 4-byte length, header (v1 or v2 as the API and version want), body.
pub fn encode_request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
    let mut frame = BytesMut::with_capacity(64);
    frame.extend_from_slice(&[0; 4]);
    header.encode(&mut frame, key.request_header_version(version)).map_err(|e| anyhow!("cannot encode the {key:?} v{version} header: {e:#}"))?;
    body.encode(&mut frame, version).map_err(|e| anyhow!("cannot encode the {key:?} v{version} request: {e:#}"))?;
    let length = i32::try_from(frame.len() - 4).context("request above 2 GiB")?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame.freeze())
}

async fn write_loop(mut socket: BufWriter<BoxedWrite>, mut rx: mpsc::UnboundedReceiver<Outgoing>, pending: PendingQueue, closed: Arc<AtomicBool>) {
    let mut written_waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut result = Ok(());
        // Write every frame that is queued, then flush once: one syscall for a burst.
        while let Some(outgoing) = next.take() {
            if let Some(p) = outgoing.pending {
                // Checked under the lock the reader closes under, so no request is queued after
                // the reader has failed the queue (it would wait forever).
                let refused = {
                    let mut queue = pending.lock().expect("pending lock");
                    if closed.load(Ordering::Relaxed) {
                        Some(p)
                    } else {
                        queue.push_back(p);
                        None
                    }
                };
                if let Some(p) = refused {
                    let _ = p.reply.send(Err(anyhow!("the connection is closed")));
                    next = rx.try_recv().ok();
                    continue;
                }
            }
            if let Some(w) = outgoing.written {
                written_waiters.push(w);
            }
            result = socket.write_all(&outgoing.frame).await;
            if result.is_err() {
                break;
            }
            next = rx.try_recv().ok();
        }
        if result.is_ok() {
            result = socket.flush().await;
        }
        if let Err(e) = result {
            closed.store(true, Ordering::Relaxed);
            for w in written_waiters.drain(..) {
                let _ = w.send(Err(anyhow!("write failed: {e}")));
            }
            fail_pending(&pending, &format!("write failed: {e}"));
            return;
        }
        for w in written_waiters.drain(..) {
            let _ = w.send(Ok(Bytes::new()));
        }
    }
}

fn fail_pending(pending: &PendingQueue, why: &str) {
    let drained: Vec<Pending> = pending.lock().expect("pending lock").drain(..).collect();
    for p in drained {
        let _ = p.reply.send(Err(anyhow!("{why}")));
    }
}

async fn read_loop(mut socket: BufReader<BoxedRead>, pending: PendingQueue, closed: Arc<AtomicBool>, address: String) {
    let why = loop {
        let length = match socket.read_i32().await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break format!("{address} closed the connection"),
            Err(e) => break format!("reading from {address}: {e}"),
        };
        if length < 4 || length as usize > RESPONSE_BYTES_MAX {
            break format!("{address} sent a response frame of {length} bytes, outside 4..={RESPONSE_BYTES_MAX}");
        }
        let mut frame = BytesMut::zeroed(length as usize);
        if let Err(e) = socket.read_exact(&mut frame).await {
            break format!("reading from {address}: {e}");
        }
        let mut frame = frame.freeze();
        let Some(p) = pending.lock().expect("pending lock").pop_front() else {
            break format!("{address} sent a response to no request");
        };
        match ResponseHeader::decode(&mut frame, p.header_version) {
            Ok(header) if header.correlation_id == p.correlation_id => {
                let _ = p.reply.send(Ok(frame));
            }
            Ok(header) => {
                let why = format!("{address} answered correlation id {} where {} was next", header.correlation_id, p.correlation_id);
                let _ = p.reply.send(Err(anyhow!("{why}")));
                break why;
            }
            Err(e) => {
                let why = format!("cannot decode a response header from {address}: {e:#}");
                let _ = p.reply.send(Err(anyhow!("{why}")));
                break why;
            }
        }
    };
    let drained: Vec<Pending> = {
        let mut queue = pending.lock().expect("pending lock");
        closed.store(true, Ordering::Relaxed);
        queue.drain(..).collect()
    };
    for p in drained {
        let _ = p.reply.send(Err(anyhow!("{why}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let broker = [(ApiKey::Produce as i16, 0, 9), (ApiKey::Fetch as i16, 4, 17), (ApiKey::ListOffsets as i16, 10, 12)];
        let n = negotiate(&broker);
        let get = |key| n.iter().find(|(k, _)| *k == key).unwrap().1;
        assert_eq!(get(ApiKey::Produce), Some(9));
        assert_eq!(get(ApiKey::Fetch), Some(12));
        assert_eq!(get(ApiKey::ListOffsets), None);
        assert_eq!(get(ApiKey::Metadata), None);
    }
}
