//! A small blocking Kafka client: one `std::net::TcpStream`, one request in flight at a time.
//!
//! It is all the admin commands need: they send a handful of requests and print the answers, so
//! an async runtime would only add weight. On connect it asks the broker for its ApiVersions and,
//! for each API in [`CLIENT_VERSIONS`], picks the highest version both sides speak. Every wait is
//! bounded by one timeout (the connect, and each request from its write to the last byte of its
//! response), and every response by [`ClientConfig::response_bytes_max`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use shardlog_protocol::error_code::{error_name, UNSUPPORTED_VERSION};
use shardlog_protocol::kafka_protocol;

/// How long a connect, a write or a read may take before the command gives up.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// The largest response accepted: the broker's own `socket.request.max.bytes` default. An admin
/// response (a few groups, a few thousand partitions) is far smaller; a larger length prefix
/// means a confused peer (not Kafka, or a desynchronised stream), not a real answer.
pub const RESPONSE_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// The client id sent in every request header; brokers log it.
pub const CLIENT_ID: &str = "shardlog-admin";

/// The versions this client speaks, per API: (key, min, max). The code that builds each request
/// and reads each response handles every version in its range; a unit test encodes every request
/// at every version listed here.
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

/// What the negotiation found for one API of [`CLIENT_VERSIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// The highest version both sides speak.
    Version(i16),
    /// The broker serves the API, but no version in common: (broker min, broker max).
    NoCommonVersion(i16, i16),
    /// The broker does not advertise the API at all.
    NotServed,
}

/// For each API in `client`, the highest version that `client` and `broker` (key, min, max)
/// both speak. Pure, so that it can be tested without a broker.
pub fn negotiate(client: &[(ApiKey, i16, i16)], broker: &[(i16, i16, i16)]) -> Vec<(ApiKey, Negotiated)> {
    client
        .iter()
        .map(|&(key, client_min, client_max)| {
            let outcome = match broker.iter().find(|(k, _, _)| *k == key as i16) {
                None => Negotiated::NotServed,
                Some(&(_, broker_min, broker_max)) => {
                    let version = client_max.min(broker_max);
                    if version >= client_min.max(broker_min) {
                        Negotiated::Version(version)
                    } else {
                        Negotiated::NoCommonVersion(broker_min, broker_max)
                    }
                }
            };
            (key, outcome)
        })
        .collect()
}

pub struct Client {
    stream: TcpStream,
    /// The server as the user named it, for messages.
    server: String,
    config: ClientConfig,
    correlation_id: i32,
    versions: Vec<(ApiKey, Negotiated)>,
    /// The broker's ApiVersions answer: (key, min, max).
    broker_versions: Vec<(i16, i16, i16)>,
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
                    let mut client =
                        Client { stream, server: server.to_string(), config, correlation_id: 0, versions: Vec::new(), broker_versions: Vec::new() };
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
        let (client_min, client_max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max)).unwrap_or((-1, -1));
        match self.versions.iter().find(|(k, _)| *k == key).map(|(_, n)| *n) {
            Some(Negotiated::Version(v)) => Ok(v),
            Some(Negotiated::NoCommonVersion(min, max)) => Err(anyhow!(
                "the broker at {} serves {key:?} versions {min}-{max}, and this tool speaks {client_min}-{client_max}: no version in common",
                self.server
            )),
            Some(Negotiated::NotServed) => Err(anyhow!("the broker at {} does not serve {key:?} (it is not in its ApiVersions answer)", self.server)),
            None => Err(anyhow!("this tool does not speak {key:?} (programming error: it is missing from CLIENT_VERSIONS)")),
        }
    }

    /// The versions (min, max) the broker advertised for `key`, for any API, including those
    /// outside [`CLIENT_VERSIONS`].
    pub fn broker_versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.iter().find(|(k, _, _)| *k == key as i16).map(|&(_, min, max)| (min, max))
    }

    /// Sends `request` encoded at `version` and decodes the answer at the same version. The
    /// version is not checked against the negotiation: take it from [`Client::version`], or fix it
    /// where the caller knows the broker (a benchmark against shardlog, say).
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let key = api_key::<R>()?;
        let mut body = self.round_trip(key, version, request)?;
        let response =
            R::Response::decode(&mut body, version).map_err(|e| anyhow!("cannot decode the {key:?} v{version} response from {}: {e:#}", self.server))?;
        if body.has_remaining() {
            bail!(
                "the {key:?} v{version} response from {} has {} bytes left over after decoding: not a response this tool understands",
                self.server,
                body.remaining()
            );
        }
        Ok(response)
    }

    /// Asks the broker which versions it serves, and keeps the best version of each API.
    fn negotiate_versions(&mut self) -> Result<()> {
        let mut version = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == ApiKey::ApiVersions).map_or(0, |&(_, _, max)| max);
        // At most two tries: the first answer, even a refusal, lists the versions the broker serves.
        for _ in 0..2 {
            let response = self.api_versions(version)?;
            self.broker_versions = response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
            self.versions = negotiate(CLIENT_VERSIONS, &self.broker_versions);
            match response.error_code {
                0 => return Ok(()),
                UNSUPPORTED_VERSION => match self.version(ApiKey::ApiVersions) {
                    Ok(v) if v != version => version = v,
                    Ok(_) | Err(_) => break,
                },
                code => bail!("the broker at {} refused ApiVersions v{version}: {}", self.server, error_name(code)),
            }
        }
        bail!("the broker at {} and this tool have no ApiVersions version in common; is it a Kafka broker?", self.server)
    }

    fn api_versions(&mut self, version: i16) -> Result<ApiVersionsResponse> {
        let request = api_versions_request(version);
        let mut body = self.round_trip(ApiKey::ApiVersions, version, &request)?;
        // A broker that does not know `version` answers with a v0 body (error code first in every
        // version), so look at the error code before choosing how to decode.
        let decode_version = if body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == UNSUPPORTED_VERSION { 0 } else { version };
        ApiVersionsResponse::decode(&mut body, decode_version)
            .map_err(|e| anyhow!("cannot decode the ApiVersions v{decode_version} response from {}: {e:#}; is it a Kafka broker?", self.server))
    }

    /// Writes one request frame and reads its response frame; returns the body after the header.
    fn round_trip<T: Encodable>(&mut self, key: ApiKey, version: i16, body: &T) -> Result<Bytes> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = encode_request(key, version, correlation_id, &self.config.client_id, body)?;
        // One deadline for the whole exchange, so that a peer that trickles bytes cannot stretch
        // the per-read timeout into an endless wait.
        let deadline = Instant::now() + self.config.timeout;
        self.stream.set_write_timeout(Some(self.config.timeout)).map_err(|e| self.io_error(e, key, version, "sending"))?;
        self.stream.write_all(&frame).map_err(|e| self.io_error(e, key, version, "sending"))?;

        let mut length_prefix = [0u8; 4];
        read_exact_by(&mut self.stream, &mut length_prefix, deadline).map_err(|e| self.io_error(e, key, version, "reading the response to"))?;
        let length = i32::from_be_bytes(length_prefix);
        if length < 4 || length as usize > self.config.response_bytes_max {
            bail!(
                "the {key:?} v{version} response from {} claims {length} bytes, outside 4..={}: is it a Kafka broker?",
                self.server,
                self.config.response_bytes_max
            );
        }
        let mut frame = vec![0u8; length as usize];
        read_exact_by(&mut self.stream, &mut frame, deadline).map_err(|e| self.io_error(e, key, version, "reading the response to"))?;
        let mut frame = Bytes::from(frame);
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| anyhow!("cannot decode the {key:?} v{version} response header from {}: {e:#}", self.server))?;
        if header.correlation_id != correlation_id {
            bail!("the {key:?} response from {} carries correlation id {}, expected {correlation_id}", self.server, header.correlation_id);
        }
        Ok(frame)
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

/// `read_exact`, but giving up with `TimedOut` once `deadline` has passed.
fn read_exact_by(stream: &mut TcpStream, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

/// One request frame: 4-byte length, header (v1 or v2, as the API and version want), body.
pub fn encode_request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, client_id: &str, body: &T) -> Result<Vec<u8>> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let mut frame = vec![0u8; 4];
    header.encode(&mut frame, key.request_header_version(version)).map_err(|e| anyhow!("cannot encode the {key:?} v{version} request header: {e:#}"))?;
    body.encode(&mut frame, version).map_err(|e| anyhow!("cannot encode the {key:?} v{version} request: {e:#}"))?;
    let length = i32::try_from(frame.len() - 4).context("request larger than 2 GiB")?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame)
}

pub fn api_versions_request(version: i16) -> ApiVersionsRequest {
    let mut r = ApiVersionsRequest::default();
    if version >= 3 {
        // KIP-511: brokers check these against [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
        r.client_software_name = StrBytes::from_static_str(CLIENT_ID);
        r.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_picks_the_highest_common_version() {
        let client = &[(ApiKey::ListGroups, 0, 5), (ApiKey::OffsetFetch, 2, 9), (ApiKey::ListOffsets, 1, 10), (ApiKey::DescribeGroups, 0, 6)];
        let broker = &[(ApiKey::ListGroups as i16, 0, 4), (ApiKey::OffsetFetch as i16, 0, 1), (ApiKey::ListOffsets as i16, 1, 12)];
        assert_eq!(
            negotiate(client, broker),
            vec![
                (ApiKey::ListGroups, Negotiated::Version(4)),
                (ApiKey::OffsetFetch, Negotiated::NoCommonVersion(0, 1)),
                (ApiKey::ListOffsets, Negotiated::Version(10)),
                (ApiKey::DescribeGroups, Negotiated::NotServed),
            ]
        );
    }

    #[test]
    fn negotiate_handles_a_broker_range_above_the_client() {
        let client = &[(ApiKey::ListOffsets, 1, 3)];
        let broker = &[(ApiKey::ListOffsets as i16, 4, 7)];
        assert_eq!(negotiate(client, broker), vec![(ApiKey::ListOffsets, Negotiated::NoCommonVersion(4, 7))]);
    }

    #[test]
    fn request_frames_carry_length_header_and_body() {
        // ApiVersions v3 uses a v2 (flexible) request header.
        let frame = encode_request(ApiKey::ApiVersions, 3, 7, "c", &api_versions_request(3)).unwrap();
        let length = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        let mut rest = Bytes::from(frame[4..].to_vec());
        let header = RequestHeader::decode(&mut rest, 2).unwrap();
        assert_eq!((header.request_api_key, header.request_api_version, header.correlation_id), (18, 3, 7));
        assert_eq!(header.client_id.as_deref(), Some("c"));
        let body = ApiVersionsRequest::decode(&mut rest, 3).unwrap();
        assert_eq!(body.client_software_name.as_str(), CLIENT_ID);
        assert!(!rest.has_remaining());
    }

    #[test]
    fn api_versions_requests_encode_at_every_client_version() {
        let (_, min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == ApiKey::ApiVersions).copied().unwrap();
        for version in min..=max {
            encode_request(ApiKey::ApiVersions, version, 1, CLIENT_ID, &api_versions_request(version)).unwrap();
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
