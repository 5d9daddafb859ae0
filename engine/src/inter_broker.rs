//! The client one broker uses to send Kafka requests to another: the transaction
//! coordinator's WriteTxnMarkers to the leaders of the partitions it does not lead, a
//! partition leader's KIP-890 verification (AddPartitionsToTxn v4+) to a producer's
//! coordinator, and a follower's replica Fetch and OffsetForLeaderEpoch to its leader (each
//! replica fetcher with a client of its own, since its long polls would hold the connection).
//!
//! It sits below the coordinators and knows nothing of them, of the handlers or of the
//! metadata: the caller names the broker (its node id) and the address to reach it at. The
//! protocol (ApiVersions negotiation, correlation ids, framing, checked decoding) is
//! `shardlog_protocol::client`, which the admin CLI and the load generator share; this module
//! owns the sockets, through `crate::runtime`.
//!
//! One connection per target broker per shard, opened on first use and negotiated once, with one
//! request on it at a time: the requests are rare (one per transaction and broker) and small,
//! so pipelining would buy nothing and cost a reader task per connection. Every bound is named:
//! [`CONNECTIONS_MAX`] brokers per shard, [`REQUESTS_WAITING_MAX`] requests waiting for one
//! broker, [`REQUEST_TIMEOUT`] for the connect, the negotiation and the round trip together,
//! [`RESPONSE_BYTES_MAX`] per answer. A request that fails or times out closes its connection
//! (the stream may be out of step), and the next request opens a new one: the caller retries.
//! PLAINTEXT or TLS (an SSL inter-broker listener, with the client config the caller gives),
//! and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on a SASL_PLAINTEXT or SASL_SSL one: after
//! the ApiVersions negotiation, SaslHandshake v1 and SaslAuthenticate, as Kafka's clients do,
//! with rsasl running the mechanism (a SCRAM server's final signature is checked).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::Request;
use shardlog_protocol::client::{self as core, ClientCore, ClientError, FrameReader, Negotiation};
use shardlog_protocol::kafka_protocol;

use crate::runtime::{self, Semaphore, TcpStream};

/// Brokers one shard keeps a connection to. A cluster larger than this would need a pool that
/// closes idle connections; until then a request to one more broker fails (and is retried).
pub const CONNECTIONS_MAX: usize = 64;
/// Requests waiting for their turn on one broker's connection. The transaction coordinator
/// sends at most one per transaction being completed, so more means the broker is stuck.
pub const REQUESTS_WAITING_MAX: usize = 128;
/// The connect, the ApiVersions negotiation (on a new connection) and the round trip, together.
/// A marker waits for the leader's fdatasync, which takes milliseconds; this is far above that
/// and below the transaction timeouts clients use.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer accepted. A WriteTxnMarkers answer is a few bytes per partition.
pub const RESPONSE_BYTES_MAX: usize = 8 << 20;
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// The client id in every request header; the other broker logs it.
pub const CLIENT_ID: &str = "shardlog-inter-broker";

/// The APIs this client speaks: (key, min, max).
/// Replica fetches are Fetch v12 (topics by name, the replica id in the body, the follower's
/// last fetched epoch) and OffsetForLeaderEpoch v3+ (with the replica id): what every shardlog
/// broker serves.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::AddPartitionsToTxn, 4, 5),
    (ApiKey::Fetch, 12, 12),
    (ApiKey::OffsetForLeaderEpoch, 3, 4),
    // v1: the SASL tokens go in SaslAuthenticate requests (v0 sent them unframed).
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// SaslAuthenticate round trips one login may take (SCRAM takes two, PLAIN one).
const SASL_ROUND_TRIPS_MAX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum InterBrokerError {
    #[error("this shard already has connections to {CONNECTIONS_MAX} brokers")]
    TooManyConnections,
    #[error("{REQUESTS_WAITING_MAX} requests are already waiting for broker {0}")]
    TooManyWaiting(i32),
    #[error("no answer within {REQUEST_TIMEOUT:?}")]
    TimedOut,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("{0}")]
    Protocol(#[from] ClientError),
    #[error("SASL login failed: {0}")]
    Sasl(String),
}

/// Where to reach another broker: its inter-broker listener's `host:port`, and the TLS client
/// config when that listener is SSL.
#[derive(Clone)]
pub struct BrokerAddress {
    pub address: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The login on a SASL inter-broker listener.
    pub sasl: Option<Arc<crate::security::sasl::ClientLogin>>,
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)?;
        if self.tls.is_some() {
            f.write_str(" (TLS)")?;
        }
        if let Some(login) = &self.sasl {
            write!(f, " (SASL {login:?})")?;
        }
        Ok(())
    }
}

/// A connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.write_all(bytes).await,
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                // TLS records are buffered until flushed.
                s.flush().await
            }
        }
    }

    async fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buffer).await,
            Stream::Tls(s) => s.read(buffer).await,
        }
    }
}

/// An open, negotiated connection.
struct Connection {
    stream: Stream,
    /// host:port it was opened to: a broker that moves gets a new connection.
    address: String,
    core: ClientCore<()>,
    frames: FrameReader,
}

/// What this shard keeps for one broker.
struct Peer {
    /// One request at a time on the connection.
    turn: Semaphore,
    waiting: Cell<usize>,
    /// None until the first request, and after a failed one.
    connection: RefCell<Option<Connection>>,
}

/// Decrements a count when dropped, however the request ends.
struct Waiting<'a>(&'a Cell<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// One shard's connections to the other brokers.
pub struct InterBrokerClient {
    peers: RefCell<HashMap<i32, Rc<Peer>>>,
    response_bytes_max: usize,
}

impl Default for InterBrokerClient {
    fn default() -> Self {
        InterBrokerClient::new()
    }
}

impl InterBrokerClient {
    pub fn new() -> InterBrokerClient {
        InterBrokerClient::with_response_bytes_max(RESPONSE_BYTES_MAX)
    }

    /// A client whose answers may be up to `response_bytes_max` bytes (a replica fetcher's,
    /// sized by `replica.fetch.response.max.bytes`).
    pub fn with_response_bytes_max(response_bytes_max: usize) -> InterBrokerClient {
        InterBrokerClient { peers: RefCell::new(HashMap::new()), response_bytes_max }
    }

    fn peer(&self, node_id: i32) -> Result<Rc<Peer>, InterBrokerError> {
        let mut peers = self.peers.borrow_mut();
        if let Some(peer) = peers.get(&node_id) {
            return Ok(peer.clone());
        }
        if peers.len() >= CONNECTIONS_MAX {
            return Err(InterBrokerError::TooManyConnections);
        }
        let peer = Rc::new(Peer { turn: Semaphore::new(1), waiting: Cell::new(0), connection: RefCell::new(None) });
        peers.insert(node_id, peer.clone());
        Ok(peer)
    }

    /// Sends `request` to broker `node_id` at `address` at the version negotiated with it, and
    /// decodes its answer.
    pub async fn send<R: Request>(&self, node_id: i32, address: &BrokerAddress, request: &R) -> Result<R::Response, InterBrokerError> {
        let peer = self.peer(node_id)?;
        if peer.waiting.get() >= REQUESTS_WAITING_MAX {
            return Err(InterBrokerError::TooManyWaiting(node_id));
        }
        peer.waiting.set(peer.waiting.get() + 1);
        let _waiting = Waiting(&peer.waiting);
        let _turn = peer.turn.acquire_permit(1).await.expect("the semaphore is never closed");
        // Taken out for the round trip and put back only after a whole answer: a request that
        // fails, times out or is dropped half way leaves no stream behind that is out of step.
        let kept = peer.connection.borrow_mut().take().filter(|c| c.address == address.address);
        let exchange = async {
            let mut connection = match kept {
                Some(c) => c,
                None => connect(node_id, address, self.response_bytes_max).await?,
            };
            let response = round_trip::<R>(&mut connection, request).await?;
            Ok::<_, InterBrokerError>((connection, response))
        };
        match within(REQUEST_TIMEOUT, exchange).await {
            Some(Ok((connection, response))) => {
                *peer.connection.borrow_mut() = Some(connection);
                Ok(response)
            }
            Some(Err(e)) => Err(e),
            None => Err(InterBrokerError::TimedOut),
        }
    }
}

/// `work`, or None if it takes longer than `limit` (it is then dropped).
async fn within<T>(limit: Duration, work: impl Future<Output = T>) -> Option<T> {
    let work = std::pin::pin!(work);
    let timer = std::pin::pin!(runtime::sleep(limit));
    match futures::future::select(work, timer).await {
        futures::future::Either::Left((out, _)) => Some(out),
        futures::future::Either::Right(_) => None,
    }
}

async fn connect(node_id: i32, target: &BrokerAddress, response_bytes_max: usize) -> Result<Connection, InterBrokerError> {
    let address = target.address.as_str();
    let tcp = TcpStream::connect(address).await.map_err(std::io::Error::from)?;
    // Small requests that wait for their answer: Nagle would only delay them.
    let _ = tcp.set_nodelay(true);
    let stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            // The certificate must name the host (or IP address) the broker registered.
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host} is not a host name or IP address for TLS: {e}")))?;
            let tls = futures_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
            Stream::Tls(Box::new(tls))
        }
    };
    let core = ClientCore::new(core::ClientConfig {
        client_id: CLIENT_ID.to_string(),
        software_name: CLIENT_ID,
        software_version: env!("CARGO_PKG_VERSION"),
        versions: CLIENT_VERSIONS,
        in_flight_max: 1,
        response_bytes_max,
    });
    let mut connection =
        Connection { stream, address: address.to_string(), core, frames: FrameReader::with_read_bytes_min(response_bytes_max, READ_CHUNK_BYTES) };
    let mut version = connection.core.api_versions_version_first();
    loop {
        let frame = connection.core.request_api_versions(version, ())?;
        let response = exchange(&mut connection, frame).await?.decode::<ApiVersionsRequest>()?;
        match connection.core.receive_api_versions(&response, version)? {
            Negotiation::Done => break,
            Negotiation::Retry(v) => version = v,
        }
    }
    if let Some(login) = &target.sasl {
        authenticate(&mut connection, login).await?;
    }
    tracing::debug!(node_id, address, "connected to broker");
    Ok(connection)
}

/// Logs in as `login`: SaslHandshake v1 for the mechanism, then SaslAuthenticate round trips
/// until rsasl's client has what it needs (for SCRAM, the server's signature, checked).
async fn authenticate(connection: &mut Connection, login: &crate::security::sasl::ClientLogin) -> Result<(), InterBrokerError> {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    let mechanism = login.mechanism.name();
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = kafka_protocol::protocol::StrBytes::from_static_str(mechanism);
    let answer = round_trip(connection, &handshake).await?;
    if answer.error_code != 0 {
        let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(InterBrokerError::Sasl(format!(
            "the broker does not take {mechanism} on this listener (error {}; it takes {offered:?}): check sasl.mechanism.inter.broker.protocol against its sasl.enabled.mechanisms",
            answer.error_code
        )));
    }
    let mut session = login.start().map_err(|e| InterBrokerError::Sasl(format!("{e:#}")))?;
    let mut input: Option<Bytes> = None;
    for _ in 0..SASL_ROUND_TRIPS_MAX {
        let mut token = Vec::new();
        let state = session.step(input.as_deref(), &mut token).map_err(|e| InterBrokerError::Sasl(format!("{mechanism} as {}: {e}", login.username)))?;
        if state.has_sent_message() {
            let mut request = SaslAuthenticateRequest::default();
            request.auth_bytes = Bytes::from(token);
            let answer = round_trip(connection, &request).await?;
            if answer.error_code != 0 {
                let message = answer.error_message.as_ref().map_or("", |m| m.as_str());
                return Err(InterBrokerError::Sasl(format!(
                    "{mechanism} as {} refused (error {}: {message}): check the username and password in this broker's JAAS config for the inter-broker listener",
                    login.username, answer.error_code
                )));
            }
            input = Some(answer.auth_bytes);
        }
        if state.is_finished() {
            return Ok(());
        }
    }
    Err(InterBrokerError::Sasl(format!("{mechanism} did not finish within {SASL_ROUND_TRIPS_MAX} round trips")))
}

async fn round_trip<R: Request>(connection: &mut Connection, request: &R) -> Result<R::Response, InterBrokerError> {
    let frame = connection.core.request_negotiated(request, ())?;
    Ok(exchange(connection, frame).await?.decode::<R>()?)
}

/// Writes one request frame and reads the answer matched to it.
async fn exchange(connection: &mut Connection, frame: Bytes) -> Result<core::ResponseFrame, InterBrokerError> {
    connection.stream.write_all(&frame).await?;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        if let Some(frame) = connection.frames.next_frame()? {
            return Ok(connection.core.receive(frame)?.0);
        }
        let read = connection.stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(InterBrokerError::Closed);
        }
        connection.frames.push(&chunk[..read]);
    }
}
