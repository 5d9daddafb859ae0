//! Cross-shard calls over glommio's channel mesh: a request travels to the owner shard, and
//! its reply comes back the same way, matched by id. No locks: each shard owns its end of every
//! channel, and the pending-reply table is shard-local.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{anyhow, Result};
use futures::channel::oneshot;
use glommio::channels::channel_mesh::{Receivers, Senders};

use super::messages::{Envelope, ShardReply, ShardRequest};

pub struct Router {
    pub shard_id: usize,
    senders: Senders<Envelope>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ShardReply>>>,
    next_id: Cell<u64>,
    /// Cross-shard calls made by this shard, and their round-trip time in µs (a probe for
    /// the hop).
    pub calls: Cell<u64>,
    pub call_latency_us: crate::metrics::Histogram,
}

impl Router {
    pub fn new(senders: Senders<Envelope>) -> Router {
        Router {
            shard_id: senders.peer_id(),
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            calls: Cell::new(0),
            call_latency_us: Default::default(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Sends `request` to shard `to` and waits for its reply.
    pub async fn call(&self, to: usize, request: ShardRequest) -> Result<ShardReply> {
        assert_ne!(to, self.shard_id, "a shard must not route to itself");
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.calls.set(self.calls.get() + 1);
        let guard = PendingGuard { router: self, id };
        let started = std::time::Instant::now();
        if self.senders.send_to(to, Envelope::Request { id, from: self.shard_id, request }).await.is_err() {
            return Err(anyhow!("shard {to} is gone"));
        }
        let reply = rx.await.map_err(|_| anyhow!("shard {to} dropped the request"))?;
        self.call_latency_us.record(started.elapsed().as_micros() as u64);
        drop(guard);
        Ok(reply)
    }

    async fn reply(&self, to: usize, id: u64, reply: ShardReply) {
        if self.senders.send_to(to, Envelope::Reply { id, reply }).await.is_err() {
            tracing::debug!(shard = to, "reply to a closed shard dropped");
        }
    }

    fn deliver(&self, id: u64, reply: ShardReply) {
        // The caller may have given up (a long poll that finished early): drop the reply.
        if let Some(tx) = self.pending.borrow_mut().remove(&id) {
            let _ = tx.send(reply);
        }
    }
}

/// Removes the pending entry if the caller's future is dropped before the reply comes.
struct PendingGuard<'a> {
    router: &'a Router,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.router.pending.borrow_mut().remove(&self.id);
    }
}

/// Runs one receive loop per peer. Requests are handled in their own tasks so that a long
/// poll does not hold up the channel; `handle` is the shard's request handler.
pub fn spawn_receivers<H, F>(router: Rc<Router>, mut receivers: Receivers<Envelope>, handle: H)
where
    H: Fn(ShardRequest) -> F + Clone + 'static,
    F: std::future::Future<Output = ShardReply> + 'static,
{
    for (peer, stream) in receivers.streams() {
        let router = router.clone();
        let handle = handle.clone();
        glommio::spawn_local(async move {
            while let Some(envelope) = stream.recv().await {
                match envelope {
                    Envelope::Request { id, from, request } => {
                        let router = router.clone();
                        let handle = handle.clone();
                        glommio::spawn_local(async move {
                            let reply = handle(request).await;
                            router.reply(from, id, reply).await;
                        })
                        .detach();
                    }
                    Envelope::Reply { id, reply } => router.deliver(id, reply),
                }
            }
            tracing::debug!(peer, "mesh channel closed");
        })
        .detach();
    }
}
