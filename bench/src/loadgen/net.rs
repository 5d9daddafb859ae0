//! An async Kafka connection that pipelines requests.
//!
//! The protocol (ApiVersions negotiation, correlation ids, the requests in flight, framing,
//! response headers, checked decoding) is `shardlog_protocol::client`, shared with the admin CLI;
//! this file owns the socket and the tasks. A request is encoded when it is made, outside any
//! lock, then numbered and tracked by the connection's [`ClientCore`] and queued under one lock,
//! so requests go out in the order they were made (the order matters: two produce requests for
//! one partition must reach the broker in order) and the core expects their answers in that
//! order. A writer task writes queued frames, several per flush when they pile up; a reader task
//! feeds what it reads to a [`FrameReader`] and hands each whole frame to the core, which matches
//! it to its request (Kafka answers a connection's requests in order). A produce with acks=0 gets
//! no answer, so it is complete once written.
//!
//! How many requests are outstanding is up to the caller (the producer's `max_in_flight`), within
//! [`IN_FLIGHT_MAX`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::{Encodable, Request};
use shardlog_protocol::client::{self as core, ClientCore, ClientError, FrameReader, Negotiation, RequestFrame, ResponseFrame, Versions};
use shardlog_protocol::error_code::error_name;
use shardlog_protocol::kafka_protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
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
pub const RESPONSE_BYTES_MAX: usize = core::RESPONSE_BYTES_MAX_DEFAULT;
/// Requests in flight on one connection: above the workload's `max_in_flight` bound (1000).
pub const IN_FLIGHT_MAX: usize = core::IN_FLIGHT_MAX_DEFAULT;
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

/// Where a request's answer goes: the frame matched to it, or why it will not come.
type Reply = oneshot::Sender<Result<ResponseFrame>>;

struct Outgoing {
    frame: Bytes,
    /// For a request with no response (acks=0 produce): told when the frame is written.
    written: Option<oneshot::Sender<Result<()>>>,
}

/// What the caller's tasks, the writer and the reader share, under one lock.
struct Shared {
    core: ClientCore<Reply>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

pub struct Connection {
    address: String,
    shared: Arc<Mutex<Shared>>,
    /// Set (under the lock) when the reader or the writer fails: no request is tracked after.
    closed: Arc<AtomicBool>,
    versions: Option<Versions>,
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
        let core = ClientCore::new(core::ClientConfig {
            client_id: CLIENT_ID.to_string(),
            software_name: CLIENT_ID,
            software_version: env!("CARGO_PKG_VERSION"),
            versions: CLIENT_VERSIONS,
            in_flight_max: IN_FLIGHT_MAX,
            response_bytes_max: RESPONSE_BYTES_MAX,
        });
        let shared = Arc::new(Mutex::new(Shared { core, outgoing: tx }));
        tokio::spawn(write_loop(BufWriter::with_capacity(SOCKET_BUFFER_BYTES, write), rx, shared.clone(), closed.clone()));
        tokio::spawn(read_loop(read, shared.clone(), closed.clone(), address.to_string()));
        let mut connection = Connection { address: address.to_string(), shared, closed, versions: None };
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
        match self.versions.as_ref().map(|versions| versions.version(key)) {
            Some(Ok(v)) => Ok(v),
            _ => {
                let (min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key).map_or((0, 0), |&(_, a, b)| (a, b));
                bail!("the broker at {} serves no version of {key:?} in {min}..={max}", self.address)
            }
        }
    }

    async fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = self.lock().core.api_versions_version_first();
        loop {
            let (reply, answer) = oneshot::channel();
            let queued = {
                let mut shared = self.lock();
                let frame = shared.core.request_api_versions(version, reply).map_err(|e| anyhow!("{e}"))?;
                shared.outgoing.send(Outgoing { frame, written: None }).is_ok()
            };
            if !queued {
                bail!("the connection to {} is closed", self.address);
            }
            let response = answer
                .await
                .map_err(|_| anyhow!("the connection to {} closed before the ApiVersions answer came", self.address))??
                .decode::<ApiVersionsRequest>()
                .map_err(|e| anyhow!("cannot decode ApiVersions from {}: {e}; is it a Kafka broker?", self.address))?;
            let outcome = {
                let mut shared = self.shared.lock().expect("connection lock");
                let outcome = shared.core.receive_api_versions(&response, version);
                self.versions = shared.core.versions().cloned();
                outcome
            };
            match outcome {
                Ok(Negotiation::Done) => return Ok(()),
                Ok(Negotiation::Retry(v)) => version = v,
                Err(ClientError::ApiVersionsRefused { error_code, .. }) => bail!("{} refused ApiVersions: {}", self.address, error_name(error_code)),
                Err(_) => bail!("{} and this tool have no ApiVersions version in common", self.address),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("connection lock")
    }

    /// Encodes and queues `request` now; the returned future resolves to the decoded answer.
    pub fn send<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<impl Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Send + 'static,
    {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
        let frame = RequestFrame::encode(request, version, CLIENT_ID).map_err(|e| anyhow!("{e}"))?;
        let (reply, answer) = oneshot::channel();
        let queued = self.queue(frame, Some(reply), None);
        let address = self.address.clone();
        Ok(async move {
            queued?;
            let response = answer.await.map_err(|_| anyhow!("the connection to {address} closed before the {key:?} answer came"))??;
            response.decode::<R>().map_err(|e| match e {
                ClientError::TrailingBytes { count, .. } => anyhow!("the {key:?} v{version} answer from {address} has {count} bytes left over"),
                e => anyhow!("cannot decode the {key:?} v{version} answer from {address}: {e}"),
            })
        })
    }

    /// Queues a request that the broker does not answer (a produce with acks=0); the future
    /// resolves once it is written.
    pub fn send_no_response<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<impl Future<Output = Result<()>> + Send + 'static> {
        let key = ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))?;
        let frame = RequestFrame::encode(request, version, CLIENT_ID).map_err(|e| anyhow!("{e}"))?;
        let (written, done) = oneshot::channel();
        let queued = self.queue(frame, None, Some(written));
        let address = self.address.clone();
        Ok(async move {
            queued?;
            done.await.map_err(|_| anyhow!("the connection to {address} closed before the {key:?} request was written"))?
        })
    }

    /// Sends one request and waits for its answer: for the setup steps.
    pub async fn call<R: Request + Encodable>(&self, request: &R, version: i16) -> Result<R::Response>
    where
        R::Response: Send + 'static,
    {
        self.send(request, version)?.await
    }

    /// Numbers `frame`, tracks it when an answer is expected, and queues it for the writer, all
    /// under the lock, so that frames are written in the order the core expects their answers.
    fn queue(&self, frame: RequestFrame, reply: Option<Reply>, written: Option<oneshot::Sender<Result<()>>>) -> Result<()> {
        let mut shared = self.lock();
        if self.is_closed() {
            bail!("the connection to {} is closed", self.address);
        }
        let frame = match reply {
            Some(reply) => shared.core.start(frame, reply).map_err(|(e, _)| anyhow!("{e}"))?,
            None => shared.core.start_without_response(frame),
        };
        if shared.outgoing.send(Outgoing { frame, written }).is_err() {
            bail!("the connection to {} is closed", self.address);
        }
        Ok(())
    }
}

/// Marks the connection closed and fails every request in flight with `why`.
fn fail_in_flight(shared: &Mutex<Shared>, closed: &AtomicBool, why: &str) {
    let replies: Vec<Reply> = {
        let mut shared = shared.lock().expect("connection lock");
        closed.store(true, Ordering::Relaxed);
        shared.core.drain().collect()
    };
    for reply in replies {
        let _ = reply.send(Err(anyhow!("{why}")));
    }
}

async fn write_loop(mut socket: BufWriter<BoxedWrite>, mut rx: mpsc::UnboundedReceiver<Outgoing>, shared: Arc<Mutex<Shared>>, closed: Arc<AtomicBool>) {
    let mut written_waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut result = Ok(());
        // Write every frame that is queued, then flush once: one syscall for a burst.
        while let Some(outgoing) = next.take() {
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
            for w in written_waiters.drain(..) {
                let _ = w.send(Err(anyhow!("write failed: {e}")));
            }
            fail_in_flight(&shared, &closed, &format!("write failed: {e}"));
            return;
        }
        for w in written_waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
    }
}

async fn read_loop(mut socket: BoxedRead, shared: Arc<Mutex<Shared>>, closed: Arc<AtomicBool>, address: String) {
    let mut frames = FrameReader::with_read_bytes_min(RESPONSE_BYTES_MAX, SOCKET_BUFFER_BYTES);
    let why = 'read: loop {
        loop {
            let frame = match frames.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(ClientError::FrameLength { length, max }) => {
                    break 'read format!("{address} sent a response frame of {length} bytes, outside 4..={max}");
                }
                Err(e) => break 'read format!("{address}: {e}"),
            };
            let received = shared.lock().expect("connection lock").core.receive(frame);
            match received {
                Ok((response, reply)) => {
                    let _ = reply.send(Ok(response));
                }
                Err(e) => break 'read format!("{address}: {e}"),
            }
        }
        match socket.read_buf(frames.read_buffer()).await {
            Ok(0) => break format!("{address} closed the connection"),
            Ok(_) => {}
            Err(e) => break format!("reading from {address}: {e}"),
        }
    };
    fail_in_flight(&shared, &closed, &why);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_version_has_a_response_schema() {
        for &(key, min, max) in CLIENT_VERSIONS {
            for version in min..=max {
                assert!(shardlog_protocol::validate::has_response_schema(key as i16, version), "{key:?} v{version}");
            }
        }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        let broker = vec![(ApiKey::Produce as i16, 0, 9), (ApiKey::Fetch as i16, 4, 17), (ApiKey::ListOffsets as i16, 10, 12)];
        let versions = Versions::new(CLIENT_VERSIONS, broker);
        assert_eq!(versions.version(ApiKey::Produce).ok(), Some(9));
        assert_eq!(versions.version(ApiKey::Fetch).ok(), Some(12));
        assert!(versions.version(ApiKey::ListOffsets).is_err());
        assert!(versions.version(ApiKey::Metadata).is_err());
    }
}
