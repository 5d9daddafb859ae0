//! Cross-shard calls over glommio's channel mesh: a call travels to the shard that serves it,
//! and its reply comes back the same way, matched by id. No locks: each shard owns its end of
//! every channel, and the pending-reply table is shard-local.
//!
//! Calls are typed: each call type names its reply type ([`ShardCall`]), and the service that
//! answers it is registered once at boot ([`Router::serve`]) by the layer that owns it (the
//! partition operations here in `shard`, the group and transaction coordinators, the
//! controller). The transport carries the call and the reply type-erased and keyed by the call's
//! type, so this layer never names the coordinators above it, and a reply always has the type
//! its call declared: there is no reply enum to match and no "unexpected reply" arm.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::runtime::{self, Receivers, Senders};
use futures::channel::oneshot;

use crate::budget::{BudgetPermit, ByteBudget};

/// Calls one shard may have waiting on one peer. The receiver runs each call in a task of its
/// own (so a long poll does not hold up the channel), and this bounds those tasks: a caller
/// past it waits for a reply first. Deadlock-free as long as a call's handling waits on at
/// most one further hop back (produce verification to a transaction coordinator is the
/// deepest chain, two hops), because each direction of each pair has its own bound.
pub const SHARD_CALLS_IN_FLIGHT_PER_PEER: usize = 4096;

/// A request one shard may send another. `Reply` is what the serving shard answers.
pub trait ShardCall: Send + 'static {
    type Reply: Send + 'static;
}

/// Why a cross-shard call got no reply. These are operating errors of a shard that stops or
/// was not set up for the call; the caller answers its client with a retriable error.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("shard {0} is gone (shutting down?)")]
    PeerGone(usize),
    #[error("shard {0} dropped the call before answering")]
    Dropped(usize),
    #[error("shard {shard} serves no {call} calls")]
    NotServed { shard: usize, call: &'static str },
}

type Erased = Box<dyn Any + Send>;
type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;
type Service = Rc<dyn Fn(Erased) -> LocalFuture<Erased>>;

pub enum Envelope {
    Request { id: u64, from: usize, call_type: TypeId, call_name: &'static str, call: Erased },
    Reply { id: u64, reply: Result<Erased, CallError> },
}

pub struct Router {
    pub shard_id: usize,
    senders: Senders<Envelope>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Result<Erased, CallError>>>>,
    next_id: Cell<u64>,
    /// The service for each call type, registered at boot.
    services: RefCell<HashMap<TypeId, Service>>,
    /// Per peer shard: calls in flight to it (see [`SHARD_CALLS_IN_FLIGHT_PER_PEER`]).
    in_flight: Vec<Rc<ByteBudget>>,
    /// Cross-shard calls made by this shard, and their round-trip time in µs (a probe for
    /// the hop).
    pub calls: Cell<u64>,
    pub call_latency_us: crate::metrics::Histogram,
}

impl Router {
    pub fn new(senders: Senders<Envelope>) -> Router {
        let in_flight = (0..senders.nr_consumers()).map(|_| ByteBudget::new(SHARD_CALLS_IN_FLIGHT_PER_PEER)).collect();
        Router {
            shard_id: senders.peer_id(),
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
            services: RefCell::new(HashMap::new()),
            in_flight,
            calls: Cell::new(0),
            call_latency_us: Default::default(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.senders.nr_consumers()
    }

    /// Registers the service that answers calls of type `C` on this shard. One per type:
    /// a second registration is a programming error.
    pub fn serve<C, F, Fut>(&self, handler: F)
    where
        C: ShardCall,
        F: Fn(C) -> Fut + 'static,
        Fut: Future<Output = C::Reply> + 'static,
    {
        let service: Service = Rc::new(move |call: Erased| {
            let call = *call.downcast::<C>().expect("services are keyed by their call type");
            let reply = handler(call);
            Box::pin(async move { Box::new(reply.await) as Erased })
        });
        let previous = self.services.borrow_mut().insert(TypeId::of::<C>(), service);
        assert!(previous.is_none(), "two services registered for {}", std::any::type_name::<C>());
    }

    /// Runs `call` on shard `to`: here, through the registered service, or over the mesh.
    pub async fn call<C: ShardCall>(&self, to: usize, call: C) -> Result<C::Reply, CallError> {
        let reply = if to == self.shard_id {
            let service = self.service(TypeId::of::<C>()).ok_or(CallError::NotServed { shard: to, call: std::any::type_name::<C>() })?;
            service(Box::new(call)).await
        } else {
            self.call_peer(to, TypeId::of::<C>(), std::any::type_name::<C>(), Box::new(call)).await?
        };
        Ok(*reply.downcast::<C::Reply>().expect("a service answers with its call's reply type"))
    }

    fn service(&self, call_type: TypeId) -> Option<Service> {
        self.services.borrow().get(&call_type).cloned()
    }

    async fn call_peer(&self, to: usize, call_type: TypeId, call_name: &'static str, call: Erased) -> Result<Erased, CallError> {
        let _slot: BudgetPermit = self.in_flight[to].acquire(1).await;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.calls.set(self.calls.get() + 1);
        let guard = PendingGuard { router: self, id };
        let started = std::time::Instant::now();
        if self.senders.send_to(to, Envelope::Request { id, from: self.shard_id, call_type, call_name, call }).await.is_err() {
            return Err(CallError::PeerGone(to));
        }
        let reply = rx.await.map_err(|_| CallError::Dropped(to))?;
        self.call_latency_us.record(started.elapsed().as_micros() as u64);
        drop(guard);
        reply
    }

    async fn reply(&self, to: usize, id: u64, reply: Result<Erased, CallError>) {
        if self.senders.send_to(to, Envelope::Reply { id, reply }).await.is_err() {
            tracing::debug!(shard = to, "reply to a closed shard dropped");
        }
    }

    fn deliver(&self, id: u64, reply: Result<Erased, CallError>) {
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

/// Runs one receive loop per peer. Each call is served in its own task (bounded by the
/// caller's [`SHARD_CALLS_IN_FLIGHT_PER_PEER`]) so that a long poll does not hold up the channel.
pub fn spawn_receivers(router: Rc<Router>, mut receivers: Receivers<Envelope>) {
    for (peer, stream) in receivers.streams() {
        let router = router.clone();
        runtime::spawn(async move {
            while let Some(envelope) = stream.recv().await {
                match envelope {
                    Envelope::Request { id, from, call_type, call_name, call } => {
                        let router = router.clone();
                        runtime::spawn(async move {
                            let reply = match router.service(call_type) {
                                Some(service) => Ok(service(call).await),
                                None => {
                                    tracing::error!(shard = router.shard_id, from, call = call_name, "a call arrived that this shard does not serve");
                                    Err(CallError::NotServed { shard: router.shard_id, call: call_name })
                                }
                            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Executor, MeshBuilder, Placement};

    #[derive(Debug)]
    struct Double(u64);
    impl ShardCall for Double {
        type Reply = u64;
    }

    #[derive(Debug)]
    struct Greet(&'static str);
    impl ShardCall for Greet {
        type Reply = String;
    }

    /// Shard 1 serves Double and Greet; shard 0 serves only Double. Each calls the other, and
    /// itself, and gets each call's own reply type; a call nobody registered is refused.
    #[test]
    fn typed_calls_reach_their_service_here_and_over_the_mesh() {
        let mesh: MeshBuilder<Envelope, _> = MeshBuilder::full(2, 16);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let mesh = mesh.clone();
                Executor::new(Placement::Unbound)
                    .spawn(move || async move {
                        let (senders, receivers) = mesh.join().await.unwrap();
                        let router = Rc::new(Router::new(senders));
                        let me = router.shard_id;
                        router.serve(move |Double(n): Double| async move { n * 2 + me as u64 });
                        if me == 1 {
                            router.serve(|Greet(who): Greet| async move { format!("hello {who}") });
                        }
                        spawn_receivers(router.clone(), receivers);
                        let other = 1 - me;
                        assert_eq!(router.call(me, Double(20)).await.unwrap(), 40 + me as u64);
                        assert_eq!(router.call(other, Double(20)).await.unwrap(), 40 + other as u64);
                        let greeting = router.call(1, Greet("shard")).await;
                        let refused = router.call(0, Greet("shard")).await;
                        // Stay up until the peer has made its calls too.
                        runtime::sleep(std::time::Duration::from_millis(200)).await;
                        (greeting.map_err(|e| e.to_string()), refused.map_err(|e| e.to_string()), router.calls.get())
                    })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            let (greeting, refused, calls) = handle.join().unwrap();
            assert_eq!(greeting.unwrap(), "hello shard");
            assert!(refused.unwrap_err().contains("serves no"), "shard 0 serves no Greet calls");
            assert!(calls >= 1, "cross-shard calls are counted");
        }
    }
}
