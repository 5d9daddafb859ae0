//! The quorum's network: one outgoing TCP connection to each other voter's controller
//! listener, and the connections the others open to this node's.
//!
//! Frames are `[u32 length][u8 kind][payload]` (big-endian); a message longer than a frame (a
//! snapshot of a large image) goes as leading part frames and a last frame of its own kind. A connection opens with a hello
//! (JSON: the sender's node id, cluster id and `controller.quorum.voters`), after which every
//! frame is a raft-rs message (protobuf), a request forwarded to the active controller, or the
//! answer to one (`[u64 id]` then the controller's own encoding). Each link carries one
//! direction: an answer goes back on the answering node's own link to the asker.
//!
//! A hello from a node that is not a voter, from another cluster, or with another voter list
//! (the quorum's membership is static, so every voter must name the same voters) closes the
//! connection with a log line, and nothing the sender sends reaches raft. So does a hello that
//! is malformed or over its bound. A refused hello is answered with one refusal frame (JSON:
//! the reason and the receiver's voters) before the close, so that the sender logs both lists
//! too; a voter reads nothing else from its link.
//!
//! A broker-only node (an observer, see [`super::observer`]) opens the same links to every
//! voter, with `observer` set in its hello; it has no controller listener, so a voter answers
//! it on the observer's own link: fetches of the metadata log and forwarded calls go one way,
//! their answers the other. An observer's hello is refused if its node id is a voter's, and,
//! like a voter's, if it names another cluster or other voters. A frame from an observer that
//! is not a fetch or a forwarded call, or a fetch that does not decode, closes its link with a
//! log line.
//!
//! With a dynamic quorum the voter set changes at run time (AddRaftVoter, RemoveRaftVoter), so
//! nodes may for a moment name different voters: there a hello is refused only when it names
//! another cluster, or this node's own id. Links follow the committed voter set: a node opens
//! one to each new voter and closes the one to a voter removed. An observer's hello says
//! whether it is a controller (one the leader may add as a voter).
//!
//! With a dynamic quorum (`controller.quorum.bootstrap.servers`, KIP-853) a node that does not
//! know the voters yet opens a link to a bootstrap server with `discover` set in its hello; the
//! voter answers with one frame (its node id, its voters with their addresses, the leader it
//! knows) and closes. Only a hello from another cluster is refused there.
//!
//! When the controller listener is SSL every one of these links is TLS (see [`super::link`]):
//! the hello goes only over a finished handshake. A handshake that fails (a certificate the
//! truststore does not know, none where `ssl.client.auth=required`, a plaintext peer) closes
//! the connection with a log line on each side that names the peer and the reason, and the
//! connecting side tries again after its backoff, as for a voter that is down.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{AsyncReadExt, AsyncWriteExt};
use protobuf::Message as _;
use raft::prelude::Message;
use serde::{Deserialize, Serialize};

use super::link::{self, Link};
use super::log_store::{QUORUM_FRAME_BYTES_MAX, QUORUM_SNAPSHOT_BYTES_MAX};
use super::{raft_id, Quorum};
use crate::config::{QuorumTls, QuorumVoter};
use crate::notify::Notify;
use crate::runtime::{TcpListener, TcpStream};

const FRAME_HELLO: u8 = 1;
const FRAME_RAFT: u8 = 2;
pub const FRAME_FORWARD: u8 = 3;
pub const FRAME_FORWARD_REPLY: u8 = 4;
/// What a voter sends back on a voter's link: why it refused the hello, before it closes.
const FRAME_REFUSED: u8 = 5;
/// An observer's fetch of the metadata log (`[u64 id]` then JSON), and the answer.
pub const FRAME_FETCH: u8 = 6;
pub const FRAME_FETCH_REPLY: u8 = 7;
/// A voter's answer to a discovering hello ([`Discovered`], JSON).
const FRAME_DISCOVERED: u8 = 8;
/// The leading part of a message too long for one frame (a snapshot of a large image, to a
/// voter or an observer): the parts and the frame of the message's own kind that ends it
/// make its payload, in order.
const FRAME_PART: u8 = 9;
/// Messages longer than this go in parts of this size: only those one frame cannot hold, so
/// that a node of an earlier version (which knows no parts) still takes every message it took.
const FRAME_PART_BYTES: usize = QUORUM_FRAME_BYTES_MAX - 1;
/// The largest hello (and refusal): a node id, a cluster id and the voter list, which a quorum
/// of a few voters keeps far below this.
const HELLO_BYTES_MAX: usize = 64 * 1024;
/// After a refusal: how long, and how many bytes, to read what the sender still sends.
const REFUSED_DRAIN_WAIT: Duration = Duration::from_millis(500);
const REFUSED_DRAIN_BYTES_MAX: usize = 4 << 20;
/// Messages queued for one voter (forwarded calls also while it is down; raft messages only while it is up). Raft sends again
/// what is lost, so the oldest go first past this bound.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 1024;
/// Waits between attempts to reach a voter that is down.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a link to a voter just removed stays open: long enough for the answers to what
/// it forwarded (its own removal among them) to reach it.
const REMOVED_VOTER_LINK_GRACE: Duration = Duration::from_secs(2);
/// Open incoming quorum connections: a few per voter and per broker-only node (reconnects
/// overlap old ones).
const INCOMING_CONNECTIONS_MAX: usize = 512;

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    node_id: i32,
    cluster_id: Option<String>,
    /// The sender's `controller.quorum.voters`: (node id, host:port).
    voters: Vec<(i32, String)>,
    /// A broker-only node, which fetches the log rather than votes.
    #[serde(default)]
    observer: bool,
    /// A node that asks for the quorum's voters (through `controller.quorum.bootstrap.servers`)
    /// and hangs up: answered with one [`Discovered`] frame.
    #[serde(default)]
    discover: bool,
    /// An observer that is a controller (of a dynamic quorum, not yet a voter).
    #[serde(default)]
    controller: bool,
    /// The sender's metadata directory id (KIP-853); None from nodes of versions before it.
    #[serde(default)]
    directory_id: Option<uuid::Uuid>,
}

/// The answer to a discovering hello: who answered, the voters it knows (node id and
/// controller listener) and the leader it knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discovered {
    pub node_id: i32,
    pub voters: Vec<(i32, String)>,
    pub leader: Option<i32>,
    /// The voters' metadata directory ids, where recorded.
    #[serde(default)]
    pub directory_ids: std::collections::BTreeMap<i32, uuid::Uuid>,
}

impl Discovered {
    pub fn voters(&self) -> Vec<QuorumVoter> {
        QuorumVoter::joined(&self.voters, &self.directory_ids)
    }
}

/// Why a receiver closed a link at its hello.
#[derive(Debug, Serialize, Deserialize)]
struct Refusal {
    reason: String,
    /// The receiver's `controller.quorum.voters`.
    voters: Vec<(i32, String)>,
}

/// A voter list as the hello carries it, in node id order (the order of
/// `controller.quorum.voters` does not matter).
fn voter_list(voters: &[QuorumVoter]) -> Vec<(i32, String)> {
    let mut list: Vec<(i32, String)> = voters.iter().map(|v| (v.node_id, v.address.clone())).collect();
    list.sort();
    list
}

/// `1@host:port,2@host:port`, for log lines.
fn voters_text(voters: &[(i32, String)]) -> String {
    voters.iter().map(|(id, address)| format!("{id}@{address}")).collect::<Vec<_>>().join(",")
}

enum Outgoing {
    Raft(Message),
    Frame(u8, Vec<u8>),
}

struct PeerQueue {
    messages: RefCell<VecDeque<Outgoing>>,
    ready: Notify,
    /// Whether a connection to the voter is up. Raft messages for a voter that is down are
    /// dropped rather than kept for its return: delivered late, old appends would stand in for
    /// what the leader now has (a snapshot, once its log is compacted), and raft sends again
    /// what is lost.
    connected: Cell<bool>,
    /// The voter left the voter set (or this node stopped observing): the link closes.
    stopped: Cell<bool>,
}

impl PeerQueue {
    fn new(connected: bool) -> Rc<PeerQueue> {
        Rc::new(PeerQueue { messages: RefCell::new(VecDeque::new()), ready: Notify::default(), connected: Cell::new(connected), stopped: Cell::new(false) })
    }

    fn stop(&self) {
        self.stopped.set(true);
        self.disconnected();
        self.messages.borrow_mut().clear();
        self.ready.notify_all();
    }

    fn disconnected(&self) {
        self.connected.set(false);
        self.messages.borrow_mut().retain(|m| !matches!(m, Outgoing::Raft(_)));
    }
}

/// Outgoing queues, one per other voter, by raft id, and those of the observers' links here.
#[derive(Default)]
pub struct Peers {
    queues: RefCell<HashMap<u64, Rc<PeerQueue>>>,
    observers: RefCell<HashMap<u64, Rc<PeerQueue>>>,
}

impl Peers {
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            self.enqueue(m.to, Outgoing::Raft(m));
        }
    }

    /// Sends a frame of `kind` to node `to` (a raft id): a voter, or an observer linked here.
    pub fn send_frame(&self, to: u64, kind: u8, payload: Vec<u8>) {
        self.enqueue(to, Outgoing::Frame(kind, payload));
    }

    /// Whether a link to node `to` (a raft id) is up.
    pub fn connected(&self, to: u64) -> bool {
        self.queues.borrow().get(&to).is_some_and(|q| q.connected.get())
    }

    /// The queue of an observer's link, replacing any of an earlier link of the same node.
    fn attach(&self, to: u64) -> Rc<PeerQueue> {
        let queue = PeerQueue::new(true);
        self.observers.borrow_mut().insert(to, queue.clone());
        queue
    }

    fn detach(&self, to: u64, queue: &Rc<PeerQueue>) {
        let mut queues = self.observers.borrow_mut();
        if queues.get(&to).is_some_and(|q| Rc::ptr_eq(q, queue)) {
            queues.remove(&to);
        }
    }

    /// Closes the link to `to` (a raft id): a voter removed from the set.
    fn stop(&self, to: u64) {
        if let Some(q) = self.queues.borrow_mut().remove(&to) {
            q.stop();
        }
    }

    /// Closes every outgoing link: an observer that becomes a voter opens them again as one.
    pub fn stop_all(&self) {
        for (_, q) in self.queues.borrow_mut().drain() {
            q.stop();
        }
    }

    fn enqueue(&self, to: u64, item: Outgoing) {
        // Answers to an observer go back on its own link (it may have no listener); everything
        // else on this node's link to the voter.
        let reply = matches!(item, Outgoing::Frame(FRAME_FORWARD_REPLY | FRAME_FETCH_REPLY, _));
        let observer = if reply { self.observers.borrow().get(&to).cloned() } else { None };
        let queues = self.queues.borrow();
        let Some(q) = observer.as_ref().or_else(|| queues.get(&to)) else {
            tracing::debug!(to, "metadata quorum message for an unknown voter dropped");
            return;
        };
        if matches!(item, Outgoing::Raft(_)) && !q.connected.get() {
            return;
        }
        let mut pending = q.messages.borrow_mut();
        if pending.len() >= PEER_QUEUE_MESSAGES_MAX {
            pending.pop_front();
        }
        pending.push_back(item);
        drop(pending);
        q.ready.notify_all();
    }
}

pub fn start(quorum: &Rc<Quorum>, node_id: i32, cluster_id: Option<String>, voters: &[QuorumVoter], listen: std::net::SocketAddr) -> Result<()> {
    if quorum.listening.get() {
        // A voter that left the voters and was added again: its listener never stopped.
        return connect(quorum, node_id, cluster_id, voters, false);
    }
    let listener = TcpListener::bind(listen)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot listen for the metadata quorum on {listen}: is another node there?"))?;
    quorum.listening.set(true);
    connect(quorum, node_id, cluster_id.clone(), voters, false)?;
    let voters = Rc::new(voter_list(voters));
    let tls = quorum.tls.clone();
    let quorum = Rc::downgrade(quorum);
    crate::runtime::spawn(async move {
        let open = Rc::new(std::cell::Cell::new(0usize));
        let reports = Rc::new(RefusalReports::default());
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metadata quorum connection failed");
                    crate::runtime::sleep(RECONNECT_BACKOFF_MIN).await;
                    continue;
                }
            };
            if open.get() >= INCOMING_CONNECTIONS_MAX {
                tracing::warn!(limit = INCOMING_CONNECTIONS_MAX, "too many metadata quorum connections: closing a new one");
                continue;
            }
            open.set(open.get() + 1);
            let (quorum, voters, cluster_id, open, reports, tls) =
                (quorum.clone(), voters.clone(), cluster_id.clone(), open.clone(), reports.clone(), tls.clone());
            crate::runtime::spawn(async move {
                let address = stream.peer_addr().ok();
                let peer = address.map(|a| a.to_string()).unwrap_or_default();
                match link::accept(stream, tls.as_ref()).await {
                    Ok(stream) => {
                        if let Err(e) = receive_loop(stream, &quorum, node_id, &voters, cluster_id.as_deref(), &peer, &reports).await {
                            tracing::info!(peer = %peer, error = %format!("{e:#}"), "metadata quorum connection closed");
                        }
                    }
                    Err(e) => {
                        let reason = format!("{e:#}");
                        // A node that keeps reconnecting with the same bad certificate is
                        // logged once per interval.
                        if reports.due(&format!("{:?} {reason}", address.map(|a| a.ip()))) {
                            tracing::warn!(
                                peer = %peer,
                                listener = tls.as_ref().map_or("", |t| t.listener.as_str()),
                                reason = %reason,
                                "closed a metadata quorum connection whose TLS handshake failed: is the peer's certificate signed by a CA in \
                                 ssl.truststore.location (and given, where ssl.client.auth=required), and does the peer use SSL on the controller listener?"
                            );
                        }
                    }
                }
                open.set(open.get() - 1);
            })
            .detach();
        }
    })
    .detach();
    Ok(())
}

/// An observer's links: to every voter, none from them.
pub fn start_observer(quorum: &Rc<Quorum>, node_id: i32, cluster_id: Option<String>, voters: &[QuorumVoter]) -> Result<()> {
    connect(quorum, node_id, cluster_id, voters, true)
}

/// Follows a change of the voter set: opens a link to each new voter, closes the links to
/// those removed, and links again to those `moved` to another address.
pub fn follow_voters(quorum: &Rc<Quorum>, voters: &[QuorumVoter], moved: &[i32]) {
    for node_id in moved {
        tracing::info!(voter = node_id, "linking again to a voter whose controller listener moved");
        quorum.peers.stop(raft_id(*node_id));
    }
    let keep: std::collections::HashSet<u64> = voters.iter().map(|v| raft_id(v.node_id)).collect();
    let gone: Vec<u64> = quorum.peers.queues.borrow().keys().copied().filter(|id| !keep.contains(id)).collect();
    for id in gone {
        // Not at once: the removed node may have forwarded its own removal, whose answer goes
        // back on this link once the change is applied, which is now.
        let quorum = Rc::downgrade(quorum);
        crate::runtime::spawn(async move {
            crate::runtime::sleep(REMOVED_VOTER_LINK_GRACE).await;
            let Some(quorum) = quorum.upgrade() else { return };
            if !quorum.voters().iter().any(|v| raft_id(v.node_id) == id) {
                tracing::info!(voter = super::node_id(id), "closing the link to a node no longer a voter");
                quorum.peers.stop(id);
            }
        })
        .detach();
    }
    let cluster_id = quorum.cluster_id.borrow().clone();
    if let Err(e) = connect(quorum, quorum.node_id, cluster_id, voters, quorum.observer()) {
        tracing::error!(error = %format!("{e:#}"), "cannot link to the new voters");
    }
}

/// Starts a link to every other voter that has none.
fn connect(quorum: &Rc<Quorum>, node_id: i32, cluster_id: Option<String>, voters: &[QuorumVoter], observer: bool) -> Result<()> {
    let controller = quorum.promotion.borrow().is_some();
    for voter in voters.iter().filter(|v| v.node_id != node_id) {
        if quorum.peers.queues.borrow().contains_key(&raft_id(voter.node_id)) {
            continue;
        }
        let queue = PeerQueue::new(false);
        quorum.peers.queues.borrow_mut().insert(raft_id(voter.node_id), queue.clone());
        let hello = Hello {
            node_id,
            cluster_id: cluster_id.clone(),
            voters: voter_list(voters),
            observer,
            discover: false,
            controller,
            directory_id: quorum.directory_id,
        };
        let hello = serde_json::to_vec(&hello).expect("hello serializes");
        if hello.len() + 1 > HELLO_BYTES_MAX {
            bail!(
                "controller.quorum.voters makes a quorum hello of {} bytes, over the bound of {HELLO_BYTES_MAX}: name fewer voters, or shorter hosts",
                hello.len()
            );
        }
        crate::runtime::spawn(send_loop(voter.clone(), queue, hello, Rc::downgrade(quorum), quorum.tls.clone())).detach();
    }
    Ok(())
}

async fn send_loop(voter: QuorumVoter, queue: Rc<PeerQueue>, hello: Vec<u8>, quorum: Weak<Quorum>, tls: Option<QuorumTls>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut said_down = false;
    // The last refusal logged, so that a voter refusing every reconnect is logged once (until
    // a connection it accepted closes).
    let mut said_refused: Option<String> = None;
    loop {
        if queue.stopped.get() {
            return;
        }
        queue.disconnected();
        let stream = match TcpStream::connect(voter.address.as_str()).await {
            Ok(s) => s,
            Err(e) => {
                if !said_down {
                    tracing::info!(voter = voter.node_id, address = %voter.address, error = %e, "cannot reach a metadata quorum voter; retrying");
                    said_down = true;
                }
                crate::runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if said_down {
            tracing::info!(voter = voter.node_id, address = %voter.address, "reached metadata quorum voter");
        }
        said_down = false;
        let stream = match link::open(stream, &voter.address, tls.as_ref()).await {
            Ok(stream) => stream,
            Err(e) => {
                let reason = format!("{e:#}");
                if said_refused.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        voter = voter.node_id,
                        address = %voter.address,
                        reason = %reason,
                        "TLS handshake with a metadata quorum voter failed; retrying: is its certificate signed by a CA in this node's \
                         ssl.truststore.location, for the host it is reached at, and does it use SSL on the controller listener?"
                    );
                    said_refused = Some(reason);
                }
                crate::runtime::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        let (reader, mut writer) = stream.split();
        if write_frame(&mut writer, FRAME_HELLO, &hello).await.is_err() {
            continue;
        }
        queue.connected.set(true);
        // A voter sends nothing back unless it refuses the hello (then it closes), or answers
        // an observer.
        let closed = futures::FutureExt::fuse(read_back(reader, &quorum, voter.node_id));
        futures::pin_mut!(closed);
        loop {
            let ready = queue.ready.notified();
            if queue.stopped.get() {
                return;
            }
            let batch: Vec<Outgoing> = queue.messages.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                futures::select! {
                    _ = futures::FutureExt::fuse(ready) => continue,
                    end = closed => {
                        match end {
                            LinkEnd::Refused(refusal) => {
                                if said_refused.as_deref() != Some(refusal.reason.as_str()) {
                                    tracing::warn!(
                                        voter = voter.node_id,
                                        address = %voter.address,
                                        their_voters = %voters_text(&refusal.voters),
                                        "metadata quorum voter refused this node's connection: {}",
                                        refusal.reason
                                    );
                                    said_refused = Some(refusal.reason);
                                }
                                // A refusal lasts until someone fixes a configuration.
                                backoff = RECONNECT_BACKOFF_MAX;
                            }
                            LinkEnd::Tls(reason) => {
                                // TLS 1.3 finishes the client's handshake before the server
                                // checks the client's certificate: its verdict comes here.
                                if said_refused.as_deref() != Some(reason.as_str()) {
                                    tracing::warn!(
                                        voter = voter.node_id,
                                        address = %voter.address,
                                        reason = %reason,
                                        "metadata quorum voter ended this node's TLS link; retrying: is this node's certificate \
                                         (ssl.keystore.location) signed by a CA in the voter's truststore?"
                                    );
                                    said_refused = Some(reason);
                                }
                                backoff = RECONNECT_BACKOFF_MAX;
                            }
                            LinkEnd::Closed => {
                                tracing::debug!(voter = voter.node_id, "metadata quorum connection closed by the voter; reconnecting");
                                // It took the hello; a later refusal is news again.
                                said_refused = None;
                            }
                        }
                        crate::runtime::sleep(backoff).await;
                        break;
                    }
                }
            }
            backoff = RECONNECT_BACKOFF_MIN;
            let messages = batch.into_iter().filter_map(|item| match item {
                Outgoing::Raft(m) => match m.write_to_bytes() {
                    Ok(bytes) => Some((FRAME_RAFT, bytes)),
                    Err(e) => {
                        tracing::error!(error = %e, "a metadata quorum message did not encode; dropped");
                        None
                    }
                },
                Outgoing::Frame(kind, bytes) => Some((kind, bytes)),
            });
            if write_messages(&mut writer, messages).await.is_err() {
                // Lost with the connection; raft sends again what matters.
                break;
            }
        }
    }
}

/// Writes `messages` (kind, payload), each as one frame, or in parts when longer than
/// [`FRAME_PART_BYTES`]; short ones go out together. A message over
/// [`QUORUM_SNAPSHOT_BYTES_MAX`] is dropped with a log line (its receiver could not take it).
async fn write_messages(writer: &mut (impl futures::AsyncWrite + Unpin), messages: impl Iterator<Item = (u8, Vec<u8>)>) -> std::io::Result<()> {
    write_messages_in_parts_of(writer, messages, FRAME_PART_BYTES).await
}

async fn write_messages_in_parts_of(
    writer: &mut (impl futures::AsyncWrite + Unpin),
    messages: impl Iterator<Item = (u8, Vec<u8>)>,
    part_bytes: usize,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    for (kind, payload) in messages {
        if payload.len() <= part_bytes {
            push_frame(&mut out, kind, &payload);
            continue;
        }
        if payload.len() > QUORUM_SNAPSHOT_BYTES_MAX {
            tracing::error!(
                bytes = payload.len(),
                limit = QUORUM_SNAPSHOT_BYTES_MAX,
                "a metadata quorum message (a snapshot of the image) is over the bound a node takes; dropped"
            );
            continue;
        }
        write_flushed(writer, &std::mem::take(&mut out)).await?;
        let parts = payload.len().div_ceil(part_bytes);
        for (i, part) in payload.chunks(part_bytes).enumerate() {
            write_frame(writer, if i + 1 == parts { kind } else { FRAME_PART }, part).await?;
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    write_flushed(writer, &out).await
}

/// Reads one message: a frame, or the parts of one (see [`FRAME_PART`]), at most
/// `message_bytes_max` in all.
async fn read_message(stream: &mut (impl futures::AsyncRead + Unpin), message_bytes_max: usize) -> Result<(u8, Vec<u8>)> {
    let mut parts: Vec<u8> = Vec::new();
    loop {
        let (kind, payload) = read_frame(stream, QUORUM_FRAME_BYTES_MAX).await?;
        if parts.len() + payload.len() > message_bytes_max {
            bail!("a message of over {message_bytes_max} bytes (in parts): not a shardlog controller, or a damaged stream");
        }
        if kind != FRAME_PART {
            if parts.is_empty() {
                return Ok((kind, payload));
            }
            parts.extend_from_slice(&payload);
            return Ok((kind, parts));
        }
        parts.extend_from_slice(&payload);
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

async fn write_frame(stream: &mut (impl futures::AsyncWrite + Unpin), kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    push_frame(&mut out, kind, payload);
    write_flushed(stream, &out).await
}

/// Writes `bytes` and flushes them: over TLS the last record waits in rustls until then.
async fn write_flushed(stream: &mut (impl futures::AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut (impl futures::AsyncRead + Unpin), bytes_max: usize) -> Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.context("reading a frame length")?;
    let length = u32::from_be_bytes(head) as usize;
    if length == 0 || length > bytes_max {
        bail!("frame of {length} bytes is outside 1..={bytes_max}: not a shardlog controller, or a damaged stream");
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.context("reading a frame")?;
    let kind = body[0];
    body.remove(0);
    Ok((kind, body))
}

/// How a link ended, as its sender sees it.
enum LinkEnd {
    /// The receiver refused the hello, and said why.
    Refused(Refusal),
    /// The receiver's TLS refused this node (its certificate, most likely): rustls's reason.
    Tls(String),
    Closed,
}

/// Reads what the receiver of a link sends back (answers, to an observer) until it closes the
/// link; returns how it ended.
async fn read_back(mut reader: impl futures::AsyncRead + Unpin, quorum: &Weak<Quorum>, voter: i32) -> LinkEnd {
    loop {
        // A fetch answer may carry a snapshot of the image.
        match read_message(&mut reader, QUORUM_SNAPSHOT_BYTES_MAX).await {
            Ok((FRAME_REFUSED, payload)) if payload.len() < HELLO_BYTES_MAX => {
                return serde_json::from_slice(&payload).map_or(LinkEnd::Closed, LinkEnd::Refused);
            }
            Ok((FRAME_FORWARD_REPLY | FRAME_FETCH_REPLY, payload)) if payload.len() >= 8 => {
                let id = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                let Some(quorum) = quorum.upgrade() else { return LinkEnd::Closed };
                quorum.on_forward_reply(id, payload[8..].to_vec());
            }
            Ok((kind, payload)) => {
                tracing::warn!(voter, kind, bytes = payload.len(), "a metadata quorum voter sent a frame this node does not expect: closing the link");
                return LinkEnd::Closed;
            }
            Err(e) => return link::tls_failure(&e).map_or(LinkEnd::Closed, LinkEnd::Tls),
        }
    }
}

/// The first frame of an incoming link, which must be a well-formed hello.
async fn read_hello(stream: &mut (impl futures::AsyncRead + Unpin)) -> Result<Hello> {
    let (kind, payload) = read_frame(stream, HELLO_BYTES_MAX).await?;
    if kind != FRAME_HELLO {
        bail!("the first frame is of kind {kind}, not a hello");
    }
    serde_json::from_slice(&payload).context("the hello does not decode (not a shardlog controller of this version?)")
}

/// Why this node refuses `hello`, or None: what to check (for the log line), and the details.
fn refusal_reason(hello: &Hello, node_id: i32, voters: &[(i32, String)], cluster_id: Option<&str>) -> Option<(&'static str, String)> {
    let is_voter = voters.iter().any(|(id, _)| *id == hello.node_id);
    if hello.observer && is_voter {
        return Some((
            "refused a metadata quorum connection from a broker-only node whose node.id is a voter's: check node.id and controller.quorum.voters",
            format!("node {} says it is a broker-only node, but it is a voter of controller.quorum.voters {}", hello.node_id, voters_text(voters)),
        ));
    }
    if !hello.observer && (!is_voter || hello.node_id == node_id) {
        return Some((
            "refused a metadata quorum connection from a node that is not another voter: check controller.quorum.voters on both",
            format!("node {} is not another voter of this node's controller.quorum.voters {}", hello.node_id, voters_text(voters)),
        ));
    }
    if let Some(refused) = cluster_refusal(hello, cluster_id) {
        return Some(refused);
    }
    let mut theirs = hello.voters.clone();
    theirs.sort();
    if theirs != voters {
        let what = "refused a metadata quorum connection from a node whose controller.quorum.voters differs: every voter must name the same voters";
        return Some((
            what,
            format!(
                "the voter lists differ: node {} has controller.quorum.voters={}, node {node_id} has {}",
                hello.node_id,
                voters_text(&theirs),
                voters_text(voters)
            ),
        ));
    }
    None
}

/// Why this node refuses a voter's hello from a node whose metadata directory is not the one
/// the voter set records for its id (KIP-853's replica key), or None. Such a node lost the log
/// it voted with; as an observer it is welcome.
fn directory_refusal(hello: &Hello, voters: &[QuorumVoter]) -> Option<(&'static str, String)> {
    if hello.observer || hello.discover {
        return None;
    }
    let theirs = hello.directory_id?;
    let voter = voters.iter().find(|v| v.node_id == hello.node_id)?;
    if voter.is(hello.node_id, theirs) {
        return None;
    }
    let text = crate::storage::meta_properties::uuid_text;
    Some((
        "refused a metadata quorum link from a node whose metadata directory is not its voter's: it may not vote",
        format!(
            "node {} has metadata directory id {}, but voter {} was added with {} (a replaced or lost disk?): remove the old voter and add the node again",
            hello.node_id,
            text(theirs),
            hello.node_id,
            voter.directory_id.map(text).unwrap_or_default()
        ),
    ))
}

/// Why this node refuses a hello from another cluster, or None.
fn cluster_refusal(hello: &Hello, cluster_id: Option<&str>) -> Option<(&'static str, String)> {
    match (hello.cluster_id.as_deref(), cluster_id) {
        (Some(theirs), Some(ours)) if theirs != ours => Some((
            "refused a metadata quorum connection from a node of another cluster: check cluster.id",
            format!("node {} belongs to cluster {theirs}, this node to {ours}", hello.node_id),
        )),
        _ => None,
    }
}

/// How long one bootstrap server gets to answer a discovering hello.
const DISCOVERY_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Asks `bootstrap` servers (`controller.quorum.bootstrap.servers`), one after the other and
/// again until one answers, for the quorum's voters. A server that is down or refuses is
/// logged once, and the next one asked.
pub async fn discover(bootstrap: &[String], node_id: i32, cluster_id: Option<String>, tls: Option<&QuorumTls>) -> Discovered {
    let hello = discovering_hello(node_id, cluster_id);
    let mut said: HashMap<&str, String> = HashMap::new();
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        for server in bootstrap {
            match ask_once(server, &hello, tls).await {
                Ok(found) if !found.voters.is_empty() => {
                    tracing::info!(server = %server, answered_by = found.node_id, voters = %voters_text(&found.voters), leader = ?found.leader, "found the metadata quorum through controller.quorum.bootstrap.servers");
                    return found;
                }
                Ok(found) => {
                    let why = format!("node {} knows no voters yet", found.node_id);
                    if said.get(server.as_str()) != Some(&why) {
                        tracing::info!(server = %server, "asking controller.quorum.bootstrap.servers for the quorum's voters: {why}; asking again");
                        said.insert(server, why);
                    }
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    if said.get(server.as_str()) != Some(&why) {
                        tracing::info!(server = %server, error = %why, "a controller.quorum.bootstrap.servers entry did not say who the voters are; asking the next one");
                        said.insert(server, why);
                    }
                }
            }
        }
        crate::runtime::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Asks each of `voters` once, in turn, for the voters it knows; the first answer that names a
/// leader other than this node, or None. How a voter that hears from no leader finds out
/// whether it was removed while it could not hear (the leader stops writing to a voter it
/// removed, and may do so before the voter learns the removal committed).
pub async fn ask_voters(voters: &[QuorumVoter], node_id: i32, cluster_id: Option<String>, tls: Option<&QuorumTls>) -> Option<Discovered> {
    let hello = discovering_hello(node_id, cluster_id);
    for voter in voters.iter().filter(|v| v.node_id != node_id) {
        match ask_once(&voter.address, &hello, tls).await {
            Ok(found) if found.leader.is_some_and(|l| l != node_id) && !found.voters.is_empty() => return Some(found),
            Ok(_) => {}
            Err(e) => tracing::debug!(voter = voter.node_id, error = %format!("{e:#}"), "a voter did not say who the voters are"),
        }
    }
    None
}

fn discovering_hello(node_id: i32, cluster_id: Option<String>) -> Vec<u8> {
    serde_json::to_vec(&Hello { node_id, cluster_id, voters: Vec::new(), observer: false, discover: true, controller: false, directory_id: None })
        .expect("hello serializes")
}

/// One discovering hello to `server` and its answer, within [`DISCOVERY_ANSWER_WAIT`].
async fn ask_once(server: &str, hello: &[u8], tls: Option<&QuorumTls>) -> Result<Discovered> {
    let attempt = async {
        let tcp = TcpStream::connect(server).await.map_err(std::io::Error::from).context("connecting")?;
        let mut stream = link::open(tcp, server, tls).await?;
        write_frame(&mut stream, FRAME_HELLO, hello).await.context("sending the hello")?;
        match read_frame(&mut stream, HELLO_BYTES_MAX).await? {
            (FRAME_DISCOVERED, payload) => serde_json::from_slice::<Discovered>(&payload).context("the answer does not decode"),
            (FRAME_REFUSED, payload) => {
                let refusal: Refusal = serde_json::from_slice(&payload).context("the refusal does not decode")?;
                bail!("refused: {}", refusal.reason)
            }
            (kind, _) => bail!("answered with a frame of kind {kind}: not a shardlog controller of this version?"),
        }
    };
    futures::select! {
        r = futures::FutureExt::fuse(attempt) => r,
        _ = futures::FutureExt::fuse(crate::runtime::sleep(DISCOVERY_ANSWER_WAIT)) => Err(anyhow::anyhow!("no answer within {DISCOVERY_ANSWER_WAIT:?}")),
    }
}

/// Refusals logged lately, so that a misconfigured node that reconnects every second is
/// logged once per interval, not once per connection.
#[derive(Default)]
struct RefusalReports {
    last: RefCell<HashMap<String, std::time::Instant>>,
}

/// How often one refusal, the same reason for the same node, is logged again.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(30);
/// Distinct refusals remembered; past this the memory starts again (and logs again).
const REFUSAL_REPORTS_MAX: usize = 64;

impl RefusalReports {
    /// Whether to log this refusal now.
    fn due(&self, reason: &str) -> bool {
        let mut last = self.last.borrow_mut();
        let now = std::time::Instant::now();
        if last.get(reason).is_some_and(|t| now.duration_since(*t) < REFUSAL_REPORT_INTERVAL) {
            return false;
        }
        if last.len() >= REFUSAL_REPORTS_MAX {
            last.clear();
        }
        last.insert(reason.to_string(), now);
        true
    }
}

async fn receive_loop(
    mut stream: Link,
    quorum: &Weak<Quorum>,
    node_id: i32,
    voters: &[(i32, String)],
    cluster_id: Option<&str>,
    peer: &str,
    reports: &RefusalReports,
) -> Result<()> {
    let hello = match read_hello(&mut stream).await {
        Ok(hello) => hello,
        Err(e) => {
            tracing::warn!(peer, error = %format!("{e:#}"), "refused a metadata quorum connection whose hello is malformed or too large");
            bail!("bad hello");
        }
    };
    // A dynamic quorum's voters change, and nodes learn each change at their own pace: only the
    // cluster (and a node claiming this one's id) is checked.
    let dynamic = quorum.upgrade().is_some_and(|q| q.dynamic);
    let dynamic_voters = match quorum.upgrade() {
        Some(q) if dynamic => q.voters(),
        _ => Vec::new(),
    };
    let current: Vec<(i32, String)> = if dynamic { voter_list(&dynamic_voters) } else { voters.to_vec() };
    let voters = &current[..];
    let refused = if hello.discover || (dynamic && hello.node_id != node_id) {
        cluster_refusal(&hello, cluster_id).or_else(|| directory_refusal(&hello, &dynamic_voters))
    } else {
        refusal_reason(&hello, node_id, voters, cluster_id)
    };
    if let Some((what, reason)) = refused {
        if reports.due(&reason) {
            tracing::warn!(peer, from = hello.node_id, their_cluster_id = ?hello.cluster_id, "{what}: {reason}");
        }
        let refusal = serde_json::to_vec(&Refusal { reason: reason.clone(), voters: voters.to_vec() }).expect("refusal serializes");
        // Best effort: the sender logs it; the close says the rest. Unread bytes at the close
        // would make it a reset, which can discard the refusal on the sender's side, so what
        // the sender sent after its hello is read and dropped until it hangs up (bounded).
        if write_frame(&mut stream, FRAME_REFUSED, &refusal).await.is_ok() {
            let _ = stream.close().await;
            let drain = async {
                let mut buffer = vec![0u8; 16 * 1024];
                let mut drained = 0;
                while drained < REFUSED_DRAIN_BYTES_MAX {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            };
            futures::select! {
                _ = futures::FutureExt::fuse(drain) => {}
                _ = futures::FutureExt::fuse(crate::runtime::sleep(REFUSED_DRAIN_WAIT)) => {}
            }
        }
        bail!("{reason}");
    }
    if hello.discover {
        let Some(q) = quorum.upgrade() else { return Ok(()) };
        let directory_ids = QuorumVoter::directory_ids(&dynamic_voters);
        let answer = Discovered { node_id, voters: voters.to_vec(), leader: q.status().leader, directory_ids };
        tracing::debug!(peer, from = hello.node_id, "node asked for the metadata quorum's voters");
        write_frame(&mut stream, FRAME_DISCOVERED, &serde_json::to_vec(&answer).expect("discovery answers serialize")).await?;
        return Ok(());
    }
    if hello.observer {
        let Some(q) = quorum.upgrade() else { return Ok(()) };
        tracing::info!(peer, observer = hello.node_id, controller = hello.controller, "an observer follows the metadata log from here");
        if hello.controller {
            *q.controller_observers.borrow_mut().entry(hello.node_id).or_default() += 1;
        }
        let served = serve_observer(stream, &q, hello.node_id).await;
        if hello.controller {
            let mut links = q.controller_observers.borrow_mut();
            if let Some(n) = links.get_mut(&hello.node_id) {
                *n -= 1;
                if *n == 0 {
                    links.remove(&hello.node_id);
                }
            }
        }
        return served;
    }
    let from = raft_id(hello.node_id);
    loop {
        // A raft message may carry a snapshot of the image.
        let (kind, payload) = read_message(&mut stream, QUORUM_SNAPSHOT_BYTES_MAX).await?;
        if kind == FRAME_FORWARD || kind == FRAME_FORWARD_REPLY {
            let Some(quorum) = quorum.upgrade() else { return Ok(()) };
            if payload.len() < 8 {
                bail!("a forwarded frame from node {} is {} bytes, shorter than its id", hello.node_id, payload.len());
            }
            let id = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
            let body = payload[8..].to_vec();
            if kind == FRAME_FORWARD {
                quorum.on_forward(hello.node_id, id, body);
            } else {
                quorum.on_forward_reply(id, body);
            }
            continue;
        }
        if kind != FRAME_RAFT {
            bail!("unknown frame kind {kind} from node {}", hello.node_id);
        }
        let message = Message::parse_from_bytes(&payload).with_context(|| format!("a message from node {} does not decode", hello.node_id))?;
        if message.from != from || message.to != raft_id(node_id) {
            bail!("node {} sent a message from {} to {}: refusing the connection", hello.node_id, message.from, message.to);
        }
        let Some(quorum) = quorum.upgrade() else { return Ok(()) };
        quorum.receive(message);
    }
}

/// An observer's link, at a voter: its fetches and forwarded calls come in, the answers go
/// back on the same connection. Ends when the link closes or the observer misbehaves.
async fn serve_observer(stream: Link, quorum: &Rc<Quorum>, observer: i32) -> Result<()> {
    let (mut reader, writer) = stream.split();
    let queue = quorum.peers.attach(raft_id(observer));
    let requests = async {
        loop {
            let (kind, payload) = read_frame(&mut reader, QUORUM_FRAME_BYTES_MAX).await?;
            let misbehaved = if kind != FRAME_FETCH && kind != FRAME_FORWARD {
                Some(format!("a frame of kind {kind}, which is neither a fetch nor a forwarded call"))
            } else if payload.len() < 8 {
                Some(format!("a frame of {} bytes, shorter than its id", payload.len()))
            } else {
                let id = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                let body = payload[8..].to_vec();
                if kind == FRAME_FORWARD {
                    quorum.on_forward(observer, id, body);
                    None
                } else {
                    match serde_json::from_slice::<super::observer::FetchRequest>(&body) {
                        Ok(request) => {
                            quorum.on_fetch(observer, id, request);
                            None
                        }
                        Err(e) => Some(format!("a metadata fetch that does not decode ({e})")),
                    }
                }
            };
            if let Some(what) = misbehaved {
                tracing::warn!(observer, "broker-only node {observer} sent {what}: closing its metadata link");
                bail!("broker-only node {observer} sent {what}");
            }
        }
    };
    let outcome = futures::select! {
        r = futures::FutureExt::fuse(requests) => r,
        r = futures::FutureExt::fuse(write_loop(writer, queue.clone())) => r,
    };
    quorum.peers.detach(raft_id(observer), &queue);
    outcome
}

/// Writes what is queued for an observer onto its link, until the link fails.
async fn write_loop(mut writer: impl futures::AsyncWrite + Unpin, queue: Rc<PeerQueue>) -> Result<()> {
    loop {
        let ready = queue.ready.notified();
        let batch: Vec<Outgoing> = queue.messages.borrow_mut().drain(..).collect();
        if batch.is_empty() {
            ready.await;
            continue;
        }
        // Only frames go to an observer: it takes no part in raft.
        let messages = batch.into_iter().filter_map(|item| match item {
            Outgoing::Frame(kind, bytes) => Some((kind, bytes)),
            Outgoing::Raft(_) => None,
        });
        write_messages(&mut writer, messages).await.context("writing to a broker-only node")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(list: &[(i32, &str)]) -> Vec<(i32, String)> {
        list.iter().map(|(id, a)| (*id, a.to_string())).collect()
    }

    fn hello(node_id: i32, cluster_id: Option<&str>, list: &[(i32, &str)]) -> Hello {
        Hello {
            node_id,
            cluster_id: cluster_id.map(String::from),
            voters: voters(list),
            observer: false,
            discover: false,
            controller: false,
            directory_id: None,
        }
    }

    #[test]
    fn a_message_longer_than_a_part_goes_in_parts_and_reads_back_whole() {
        futures_lite::future::block_on(async {
            // A snapshot of 2.5 parts between two short messages, on one link (parts of 64 KiB
            // here; a frame's worth on a real link).
            let part = 64 << 10;
            let big: Vec<u8> = (0..part * 5 / 2).map(|i| (i % 251) as u8).collect();
            let messages = vec![(FRAME_FETCH_REPLY, b"before".to_vec()), (FRAME_RAFT, big.clone()), (FRAME_FORWARD, b"after".to_vec())];
            let mut wire = futures::io::Cursor::new(Vec::new());
            write_messages_in_parts_of(&mut wire, messages.into_iter(), part).await.unwrap();
            let bytes = wire.into_inner();
            let mut reader = futures::io::Cursor::new(bytes.clone());
            assert_eq!(read_message(&mut reader, QUORUM_SNAPSHOT_BYTES_MAX).await.unwrap(), (FRAME_FETCH_REPLY, b"before".to_vec()));
            let (kind, payload) = read_message(&mut reader, QUORUM_SNAPSHOT_BYTES_MAX).await.unwrap();
            assert_eq!((kind, payload.len()), (FRAME_RAFT, big.len()));
            assert!(payload == big);
            assert_eq!(read_message(&mut reader, QUORUM_SNAPSHOT_BYTES_MAX).await.unwrap(), (FRAME_FORWARD, b"after".to_vec()));
            // No frame on the wire is longer than a part (and its header).
            let mut at = 0;
            let mut frames = 0;
            while at < bytes.len() {
                let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                assert!(length <= part + 1, "{length}");
                at += 4 + length;
                frames += 1;
            }
            assert_eq!(frames, 5);
            // Parts past the reader's bound end the link rather than grow without limit.
            let mut reader = futures::io::Cursor::new(bytes);
            read_message(&mut reader, 64).await.unwrap();
            let e = read_message(&mut reader, 2 * part).await.unwrap_err();
            assert!(format!("{e:#}").contains("in parts"), "{e:#}");
        });
    }

    #[test]
    fn a_hello_is_refused_unless_it_names_the_same_voters_in_any_order() {
        let ours = voters(&[(1, "h:1"), (2, "h:2"), (3, "h:3")]);
        let accept = |h: &Hello| refusal_reason(h, 1, &ours, Some("c"));
        assert_eq!(accept(&hello(2, Some("c"), &[(3, "h:3"), (2, "h:2"), (1, "h:1")])), None);
        assert_eq!(accept(&hello(3, None, &[(1, "h:1"), (2, "h:2"), (3, "h:3")])), None);
        let (what, reason) = accept(&hello(2, Some("c"), &[(1, "h:1"), (2, "h:2"), (3, "h:3"), (4, "h:4")])).expect("refused");
        assert!(what.contains("controller.quorum.voters differs"));
        assert!(reason.contains("1@h:1,2@h:2,3@h:3,4@h:4") && reason.contains("node 1 has 1@h:1,2@h:2,3@h:3"), "{reason}");
        assert!(accept(&hello(2, Some("c"), &[(1, "h:1"), (2, "other:2"), (3, "h:3")])).is_some());
        assert!(accept(&hello(2, Some("d"), &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).expect("refused").0.contains("another cluster"));
        assert!(accept(&hello(4, Some("c"), &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).expect("refused").0.contains("not another voter"));
        assert!(accept(&hello(1, Some("c"), &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).expect("refused").0.contains("not another voter"));
    }

    #[test]
    fn an_observer_is_accepted_only_under_a_node_id_of_its_own_with_the_same_voters_and_cluster() {
        let ours = voters(&[(1, "h:1"), (2, "h:2"), (3, "h:3")]);
        let observer = |node_id: i32, cluster_id: &str, list: &[(i32, &str)]| Hello { observer: true, ..hello(node_id, Some(cluster_id), list) };
        let accept = |h: &Hello| refusal_reason(h, 1, &ours, Some("c"));
        assert_eq!(accept(&observer(7, "c", &[(3, "h:3"), (1, "h:1"), (2, "h:2")])), None);
        assert!(accept(&observer(2, "c", &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).expect("refused").1.contains("it is a voter"));
        assert!(accept(&observer(7, "d", &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).expect("refused").0.contains("another cluster"));
        assert!(accept(&observer(7, "c", &[(1, "h:1"), (2, "h:2")])).expect("refused").0.contains("voters differs"));
        // The same node id without the observer flag is no voter, and refused.
        assert!(accept(&hello(7, Some("c"), &[(1, "h:1"), (2, "h:2"), (3, "h:3")])).is_some());
        // A hello of an older version, without the flag, is a voter's.
        let old: Hello = serde_json::from_str(r#"{"node_id":2,"cluster_id":"c","voters":[[1,"h:1"],[2,"h:2"],[3,"h:3"]]}"#).unwrap();
        assert!(!old.observer && accept(&old).is_none());
    }

    #[test]
    fn refusals_are_logged_once_per_interval() {
        let reports = RefusalReports::default();
        assert!(reports.due("a"));
        assert!(!reports.due("a"));
        assert!(reports.due("b"));
        for i in 0..2 * REFUSAL_REPORTS_MAX {
            reports.due(&i.to_string());
        }
        assert!(reports.last.borrow().len() <= REFUSAL_REPORTS_MAX);
    }
}
