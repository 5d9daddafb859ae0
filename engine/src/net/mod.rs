//! The network side: listeners (one socket per shard on the same port, SO_REUSEPORT), and the
//! per-connection loops that read frames and write responses.

pub mod admin_http;
pub mod connection;
pub mod limits;
pub mod sendfile;
pub mod vectored;

use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use glommio::net::TcpListener;
use glommio::task::JoinHandle;

use crate::shard::Shard;

/// How often a shard's acceptor looks again while the broker is at `max.connections`.
const FULL_RECHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Listener tasks of a shard; dropping them stops accepting.
pub struct Listeners {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.cancel();
        }
    }
}

/// Starts this shard's listeners. `limits` (`max.connections`, `max.connections.per.ip`) is
/// shared by every shard.
pub fn listen(shard: &Rc<Shard>, limits: Arc<limits::ConnectionLimits>) -> Result<Listeners> {
    let mut tasks = Vec::new();
    let quorum_listeners = &shard.config.quorum.controller_listener_names;
    for (index, listener) in shard.config.listeners.iter().enumerate().filter(|(_, l)| !quorum_listeners.contains(&l.name)) {
        let socket = TcpListener::bind(listener.bind)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot listen on {} ({}): is another broker running there?", listener.bind, listener.name))?;
        let shard = shard.clone();
        let limits = limits.clone();
        let handle = glommio::spawn_local(async move {
            let mut said_full = false;
            loop {
                // At max.connections, leave new connections in the listen backlog until one
                // closes, as Kafka's acceptor does. The count is shared by every shard, so
                // this looks again after a short while rather than waiting for a signal.
                if limits.full() {
                    if !said_full {
                        tracing::warn!(max_connections = limits.max_connections(), "max.connections reached: new connections wait until one closes");
                        said_full = true;
                    }
                    glommio::timer::sleep(FULL_RECHECK_INTERVAL).await;
                    continue;
                }
                said_full = false;
                match socket.accept().await {
                    Ok(stream) => {
                        let peer_ip = stream.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
                        let quota = {
                            let meta = shard.metadata.borrow();
                            if meta.client_quotas.is_empty() {
                                None
                            } else {
                                meta.client_quotas.ip_connection_rate(&peer_ip)
                            }
                        };
                        if let Err(throttle_ms) = limits.count_creation(peer_ip, quota, shard.config.quota_window, crate::quota::manager::now_ms()) {
                            shard.shard_probe.connections_refused.inc();
                            tracing::info!(peer = %peer_ip, listener = %shard.config.listeners[index].name, throttle_ms,
                                "closing a new connection after its throttle time: the address is over its connection_creation_rate quota");
                            // Closed after the throttle time, not at once, so that the client
                            // does not reconnect straight away (KIP-612).
                            glommio::spawn_local(async move {
                                glommio::timer::sleep(std::time::Duration::from_millis(throttle_ms)).await;
                                drop(stream);
                            })
                            .detach();
                            continue;
                        }
                        // Another shard may have taken the last slot while this one waited in
                        // accept: this connection then waits unserved, like those still in the
                        // backlog, until a slot frees.
                        let slot = loop {
                            match limits.try_open(peer_ip) {
                                Ok(slot) => break Some(slot),
                                Err(limits::Refused::Broker { .. }) => glommio::timer::sleep(FULL_RECHECK_INTERVAL).await,
                                Err(refused) => {
                                    shard.shard_probe.connections_refused.inc();
                                    tracing::info!(peer = %peer_ip, listener = %shard.config.listeners[index].name, limit = ?refused,
                                        "closing a new connection: it is over max.connections.per.ip (or its override)");
                                    break None;
                                }
                            }
                        };
                        let Some(slot) = slot else { continue };
                        let shard = shard.clone();
                        shard.shard_probe.connections_accepted.inc();
                        glommio::spawn_local(async move {
                            shard.shard_probe.connections_open.set(shard.shard_probe.connections_open.get() + 1);
                            connection::serve(shard.clone(), stream, index).await;
                            shard.shard_probe.connections_open.set(shard.shard_probe.connections_open.get() - 1);
                            drop(slot);
                        })
                        .detach();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach();
        tasks.push(handle);
    }
    Ok(Listeners { tasks })
}
