//! A small blocking Kafka client: one `std::net::TcpStream`, one request in flight at a time.
//!
//! It is all the admin commands need: they send a handful of requests and print the answers, so
//! an async runtime would only add weight. The protocol itself (ApiVersions negotiation, framing,
//! correlation ids, response headers, checked decoding) is `shardlog_protocol::client`, shared
//! with the load generator; this file owns the socket. On connect it asks the broker for its
//! ApiVersions and, for each API in [`CLIENT_VERSIONS`], picks the highest version both sides
//! speak. Every wait is bounded by one timeout (the connect, and each request from its write to
//! the last byte of its response), and every response by [`ClientConfig::response_bytes_max`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::Request;
use shardlog_protocol::client::{self as core, ClientCore, ClientError, FrameReader, Negotiation, ResponseFrame};
use shardlog_protocol::error_code::error_name;
use shardlog_protocol::kafka_protocol;

/// How long a connect, a write or a read may take before the command gives up.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The largest response accepted: the broker's own `socket.request.max.bytes` default. An admin
/// response (a few groups, a few thousand partitions) is far smaller; a larger length prefix
/// means a confused peer (not Kafka, or a desynchronised stream), not a real answer.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = core::RESPONSE_BYTES_MAX_DEFAULT;

/// The client id sent in every request header; brokers log it.
pub const CLIENT_ID: &str = "shardlog-admin";

/// Requests in flight: the commands wait for each answer before sending the next request.
const IN_FLIGHT_MAX: usize = 1;

/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The versions this client speaks, per API: (key, min, max). The code that builds each request
/// and reads each response handles every version in its range; a unit test encodes every request
/// at every version listed here, and one checks that each version has a response schema.
///
/// - OffsetFetch starts at 2 because v1 cannot ask for all of a group's offsets (null topics),
///   and stops at 9 because v10 names topics by id only.
/// - DescribeGroups v6 answers GROUP_ID_NOT_FOUND for an unknown group; the caller handles it.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::OffsetFetch, 2, 9),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // `shardlog topic`
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
];

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bounds the TCP connect, and each request from sending it to reading all of its response.
    pub timeout: Duration,
    pub response_bytes_max: usize,
    pub client_id: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig { timeout: TIMEOUT_DEFAULT, response_bytes_max: RESPONSE_BYTES_MAX_DEFAULT, client_id: CLIENT_ID.to_string() }
    }
}

pub struct Client {
    stream: TcpStream,
    /// The server as the user named it, for messages.
    server: String,
    config: ClientConfig,
    core: ClientCore<()>,
    frames: FrameReader,
    read_chunk: Vec<u8>,
}

impl Client {
    /// Connects to the first server of `bootstrap` (a comma-separated list of HOST:PORT) that
    /// accepts, and negotiates API versions with it.
    pub fn connect(bootstrap: &str, config: ClientConfig) -> Result<Client> {
        let servers: Vec<&str> = bootstrap.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if servers.is_empty() {
            bail!("no server to connect to: --bootstrap-server wants HOST:PORT[,HOST:PORT...]");
        }
        let mut failures = Vec::new();
        for server in servers {
            match connect_one(server, config.timeout) {
                Ok(stream) => {
                    let core = ClientCore::new(core::ClientConfig {
                        client_id: config.client_id.clone(),
                        software_name: CLIENT_ID,
                        software_version: env!("CARGO_PKG_VERSION"),
                        versions: CLIENT_VERSIONS,
                        in_flight_max: IN_FLIGHT_MAX,
                        response_bytes_max: config.response_bytes_max,
                    });
                    let frames = FrameReader::new(config.response_bytes_max);
                    let mut client = Client { stream, server: server.to_string(), config, core, frames, read_chunk: vec![0; READ_CHUNK_BYTES] };
                    client.negotiate_versions()?;
                    return Ok(client);
                }
                Err(e) => failures.push(e),
            }
        }
        // Point at the broker only when a name resolved but nothing answered there.
        let hint = if failures.iter().any(|f| matches!(f, ConnectFailure::Connect(_))) { "; is the broker running? (--bootstrap-server)" } else { "" };
        let failures: Vec<&str> = failures
            .iter()
            .map(|f| match f {
                ConnectFailure::Resolve(text) | ConnectFailure::Connect(text) => text.as_str(),
            })
            .collect();
        bail!("{}{hint}", failures.join("; "))
    }

    /// The server this client talks to, as given on the command line.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The version to use for `key`, or an error that says why there is none.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        self.core.version(key).map_err(|e| match e {
            ClientError::NoCommonVersion { api, broker_min, broker_max, client_min, client_max } => anyhow!(
                "the broker at {} serves {api:?} versions {broker_min}-{broker_max}, and this tool speaks {client_min}-{client_max}: no version in common",
                self.server
            ),
            ClientError::NotServed { api } => anyhow!("the broker at {} does not serve {api:?} (it is not in its ApiVersions answer)", self.server),
            ClientError::NotSpoken { .. } => anyhow!("this tool does not speak {key:?} (programming error: it is missing from CLIENT_VERSIONS)"),
            other => anyhow!("{other}"),
        })
    }

    /// The versions (min, max) the broker advertised for `key`, for any API, including those
    /// outside [`CLIENT_VERSIONS`].
    pub fn broker_versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.core.versions().and_then(|versions| versions.broker_versions(key))
    }

    /// Sends `request` encoded at `version` and decodes the answer at the same version. The
    /// version is not checked against the negotiation: take it from [`Client::version`], or fix it
    /// where the caller knows the broker (a benchmark against shardlog, say).
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let key = api_key::<R>()?;
        let frame = self.core.request(request, version, ()).map_err(|e| anyhow!("{e}"))?;
        let response = self.round_trip(key, version, frame)?;
        response.decode::<R>().map_err(|e| self.decode_error(e, key, version))
    }

    /// Asks the broker which versions it serves, and keeps the best version of each API.
    fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = self.core.api_versions_version_first();
        // At most `API_VERSIONS_TRIES_MAX` tries: the first answer, even a refusal, lists the
        // versions the broker serves.
        loop {
            let frame = self.core.request_api_versions(version, ()).map_err(|e| anyhow!("{e}"))?;
            let response = self
                .round_trip(ApiKey::ApiVersions, version, frame)?
                .decode::<ApiVersionsRequest>()
                .map_err(|e| anyhow!("cannot decode the ApiVersions response from {}: {e}; is it a Kafka broker?", self.server))?;
            match self.core.receive_api_versions(&response, version) {
                Ok(Negotiation::Done) => return Ok(()),
                Ok(Negotiation::Retry(v)) => version = v,
                Err(ClientError::ApiVersionsRefused { version, error_code }) => {
                    bail!("the broker at {} refused ApiVersions v{version}: {}", self.server, error_name(error_code))
                }
                Err(_) => bail!("the broker at {} and this tool have no ApiVersions version in common; is it a Kafka broker?", self.server),
            }
        }
    }

    /// Writes one request frame and reads its response frame, matched to the request.
    fn round_trip(&mut self, key: ApiKey, version: i16, frame: Bytes) -> Result<ResponseFrame> {
        let result = self.write_and_read(key, version, frame);
        if result.is_err() {
            // The stream is out of step (or gone): forget the request, so that a later one is not
            // matched against it.
            self.core.drain().for_each(drop);
        }
        result
    }

    fn write_and_read(&mut self, key: ApiKey, version: i16, frame: Bytes) -> Result<ResponseFrame> {
        // One deadline for the whole exchange, so that a peer that trickles bytes cannot stretch
        // the per-read timeout into an endless wait.
        let deadline = Instant::now() + self.config.timeout;
        self.stream.set_write_timeout(Some(self.config.timeout)).map_err(|e| self.io_error(e, key, version, "sending"))?;
        self.stream.write_all(&frame).map_err(|e| self.io_error(e, key, version, "sending"))?;
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => {
                    let (response, ()) = self.core.receive(frame).map_err(|e| anyhow!("the {key:?} v{version} response from {}: {e}", self.server))?;
                    return Ok(response);
                }
                Ok(None) => {}
                Err(ClientError::FrameLength { length, max }) => {
                    bail!("the {key:?} v{version} response from {} claims {length} bytes, outside 4..={max}: is it a Kafka broker?", self.server)
                }
                Err(e) => bail!("the {key:?} v{version} response from {}: {e}", self.server),
            }
            let read = read_some_by(&mut self.stream, &mut self.read_chunk, deadline).map_err(|e| self.io_error(e, key, version, "reading the response to"))?;
            self.frames.push(&self.read_chunk[..read]);
        }
    }

    fn decode_error(&self, e: ClientError, key: ApiKey, version: i16) -> anyhow::Error {
        match e {
            ClientError::TrailingBytes { count, .. } => {
                anyhow!("the {key:?} v{version} response from {} has {count} bytes left over after decoding: not a response this tool understands", self.server)
            }
            e => anyhow!("cannot decode the {key:?} v{version} response from {}: {e}", self.server),
        }
    }

    fn io_error(&self, e: io::Error, key: ApiKey, version: i16, doing: &str) -> anyhow::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => anyhow!(
                "timed out after {} ms {doing} {key:?} v{version} at {}; is the broker overloaded? (--timeout-ms)",
                self.config.timeout.as_millis(),
                self.server
            ),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                anyhow!("the broker at {} closed the connection while {doing} {key:?} v{version}; its log may say why", self.server)
            }
            _ => anyhow!("{doing} {key:?} v{version} at {} failed: {e}", self.server),
        }
    }
}

/// One `read` into `buf`, giving up with `TimedOut` once `deadline` has passed; a closed
/// connection is `UnexpectedEof`.
fn read_some_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|()| anyhow!("unknown api key {}", R::KEY))
}

enum ConnectFailure {
    /// The name did not resolve (or is not HOST:PORT).
    Resolve(String),
    /// Nothing accepted the connection at any of its addresses.
    Connect(String),
}

fn connect_one(server: &str, timeout: Duration) -> Result<TcpStream, ConnectFailure> {
    let addresses: Vec<SocketAddr> = match server.to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(e) => return Err(ConnectFailure::Resolve(format!("cannot resolve {server:?}: {e} (--bootstrap-server wants HOST:PORT, e.g. 127.0.0.1:9092)"))),
    };
    let mut last_error = None;
    for address in &addresses {
        match TcpStream::connect_timeout(address, timeout).and_then(|stream| configure(stream, timeout)) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => last_error = Some(format!("timed out after {} ms", timeout.as_millis())),
            Err(e) => last_error = Some(connect_error_text(&e)),
        }
    }
    match last_error {
        Some(e) => Err(ConnectFailure::Connect(format!("cannot connect to {server}: {e}"))),
        None => Err(ConnectFailure::Resolve(format!("cannot connect to {server}: the name resolves to no address"))),
    }
}

fn configure(stream: TcpStream, timeout: Duration) -> io::Result<TcpStream> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // Requests are small and sent one at a time: do not let Nagle hold them back.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The OS message without the "(os error N)" tail, lower-cased the way the rest reads:
/// "connection refused".
fn connect_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_version_has_a_response_schema() {
        // A version without one would be refused after the broker answered it.
        for &(key, min, max) in CLIENT_VERSIONS {
            for version in min..=max {
                assert!(shardlog_protocol::validate::has_response_schema(key as i16, version), "{key:?} v{version}");
            }
        }
    }

    #[test]
    fn api_versions_requests_encode_at_every_client_version() {
        let (_, min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == ApiKey::ApiVersions).copied().unwrap();
        for version in min..=max {
            core::encode_request(&core::api_versions_request(version, CLIENT_ID, "1.0"), version, 1, CLIENT_ID).unwrap();
        }
    }

    #[test]
    fn client_versions_are_within_what_the_crate_speaks() {
        for &(key, min, max) in CLIENT_VERSIONS {
            let valid = key.valid_versions();
            assert!(min <= max && valid.min <= min && max <= valid.max, "{key:?} {min}-{max} outside {valid:?}");
        }
    }

    #[test]
    fn connect_errors_read_well() {
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(connect_error_text(&e), "connection refused");
    }

    #[test]
    fn connect_to_a_closed_port_says_what_to_do() {
        // Bind then drop, so that the port is (very likely) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = ClientConfig { timeout: Duration::from_secs(2), ..ClientConfig::default() };
        let e = Client::connect(&format!("127.0.0.1:{port}"), config).err().expect("nothing listens there");
        let text = format!("{e:#}");
        assert!(text.contains(&format!("cannot connect to 127.0.0.1:{port}")), "{text}");
        assert!(text.contains("is the broker running? (--bootstrap-server)"), "{text}");
    }

    #[test]
    fn a_peer_that_trickles_bytes_times_out_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = socket.read(&mut buf).unwrap();
            // A plausible length, then one byte every 100 ms: each read is quick, the whole is not.
            let _ = socket.write_all(&1000i32.to_be_bytes());
            for _ in 0..30 {
                if socket.write_all(&[0]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let config = ClientConfig { timeout: Duration::from_millis(500), ..ClientConfig::default() };
        // Per-read timeouts would keep reading until the peer gives up after 3 s and fail with
        // a closed connection; the request deadline fails it with a timeout instead. (No
        // wall-clock assertion: the error says which bound fired.)
        let e = Client::connect(&address.to_string(), config).err().expect("the peer never finishes");
        assert!(format!("{e:#}").contains("timed out after 500 ms reading the response to ApiVersions"), "{e:#}");
        server.join().unwrap();
    }

    #[test]
    fn a_huge_length_prefix_is_refused_before_allocating() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = socket.read(&mut buf).unwrap();
            socket.write_all(&i32::MAX.to_be_bytes()).unwrap();
        });
        let config = ClientConfig { timeout: Duration::from_secs(5), ..ClientConfig::default() };
        let e = Client::connect(&address.to_string(), config).err().expect("the peer is not a broker");
        assert!(format!("{e:#}").contains("claims 2147483647 bytes"), "{e:#}");
        server.join().unwrap();
    }
}
