//! The network side: listeners (one socket per shard on the same port, SO_REUSEPORT), and the
//! per-connection loops that read frames and write responses.

pub mod admin_http;
pub mod connection;
pub mod sendfile;

use std::fs::File;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Context, Result};
use glommio::net::TcpListener;
use glommio::task::JoinHandle;

use crate::shard::Shard;

/// A byte range of a segment file, to be sent with sendfile.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
}

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

pub fn listen(shard: &Rc<Shard>) -> Result<Listeners> {
    let mut tasks = Vec::new();
    for (index, listener) in shard.config.listeners.iter().enumerate() {
        let socket = TcpListener::bind(listener.bind)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot listen on {} ({}): is another broker running there?", listener.bind, listener.name))?;
        let shard = shard.clone();
        let handle = glommio::spawn_local(async move {
            loop {
                match socket.accept().await {
                    Ok(stream) => {
                        let shard = shard.clone();
                        shard.shard_probe.connections_accepted.inc();
                        glommio::spawn_local(async move {
                            shard.shard_probe.connections_open.set(shard.shard_probe.connections_open.get() + 1);
                            connection::serve(shard.clone(), stream, index).await;
                            shard.shard_probe.connections_open.set(shard.shard_probe.connections_open.get() - 1);
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
