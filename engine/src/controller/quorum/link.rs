//! The byte stream under one quorum link: plain TCP, or TLS when the controller listener is SSL
//! (`listener.security.protocol.map=CONTROLLER:SSL`). The frames above it are the same either way.
//!
//! The TLS is the brokers' own: rustls through futures-rustls, the controller listener's
//! acceptor (`security::tls::TlsAcceptor`, so its certificates reload like any listener's) on
//! the accepting side, and on the connecting side the client config built from the same
//! listener's settings (`security::tls::build_client_config`), as Kafka's controllers and
//! brokers connect with the controller listener's config. What rustls buffers is bounded by
//! its own buffer limit (64 KiB by default); the framing above keeps its bounds.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures::{AsyncRead, AsyncWrite};

use crate::config::QuorumTls;
use crate::runtime::TcpStream;

/// The longest a TLS handshake may take, on either side. A handshake on a LAN takes
/// milliseconds; this bound keeps a peer that connects and sends nothing (or a plaintext node
/// waiting for an answer to its hello) from holding one of the listener's connection slots.
pub const TLS_HANDSHAKE_WAIT: Duration = Duration::from_secs(5);

pub enum Link {
    Plain(TcpStream),
    /// This node connected (to a voter, or a bootstrap server).
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    /// Another node connected to this node's controller listener.
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

/// The link this node opens on `tcp`, connected to `address` (a voter's or bootstrap server's
/// `host:port`): TLS when `tls` is set, verifying that the certificate names the host.
pub async fn open(tcp: TcpStream, address: &str, tls: Option<&QuorumTls>) -> Result<Link> {
    let Some(tls) = tls else { return Ok(Link::Plain(tcp)) };
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_start_matches('[').trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} (in {address}) is not a host name or IP address that a TLS certificate can name"))?;
    let handshake = futures_rustls::TlsConnector::from(tls.client.clone()).connect(name, tcp);
    let stream = within(handshake).await.context("TLS handshake")?;
    Ok(Link::Client(Box::new(stream)))
}

/// The link another node opened to this node's controller listener: TLS when the listener is
/// SSL (its `ssl.client.auth` decides whether the peer must present a certificate).
pub async fn accept(tcp: TcpStream, tls: Option<&QuorumTls>) -> Result<Link> {
    let Some(acceptor) = tls.and_then(QuorumTls::acceptor) else { return Ok(Link::Plain(tcp)) };
    let handshake = futures_rustls::TlsAcceptor::from(acceptor.config()).accept(tcp);
    let stream = within(handshake).await.context("TLS handshake")?;
    Ok(Link::Server(Box::new(stream)))
}

async fn within<T>(handshake: impl std::future::Future<Output = std::io::Result<T>>) -> Result<T> {
    futures::select! {
        r = futures::FutureExt::fuse(handshake) => Ok(r?),
        _ = futures::FutureExt::fuse(crate::runtime::sleep(TLS_HANDSHAKE_WAIT)) => anyhow::bail!("not done within {TLS_HANDSHAKE_WAIT:?}"),
    }
}

/// Whether `error` is a TLS failure (a bad certificate, an alert from the peer), rather than a
/// link that merely closed: the peer refused this node, and says why.
pub fn tls_failure(error: &anyhow::Error) -> Option<String> {
    error.chain().filter_map(|e| e.downcast_ref::<std::io::Error>()).find_map(|e| e.get_ref()?.downcast_ref::<rustls::Error>()).map(|e| e.to_string())
}

impl AsyncRead for Link {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Link::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Link::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

/// Writers flush after each batch: a TLS stream may hold the last record until then.
impl AsyncWrite for Link {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Link::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Link::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_flush(cx),
            Link::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Link::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    /// Shuts the sending side down (after TLS's close_notify): the peer reads the end of the
    /// stream, while this side may still read.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Link::Plain(s) => Pin::new(s).poll_close(cx),
            Link::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            Link::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
