//! The quorum's network: one outgoing TCP connection to each other voter's controller
//! listener, and the connections the others open to this node's.
//!
//! Frames are `[u32 length][u8 kind][payload]` (big-endian). A connection opens with a hello
//! (JSON: the sender's node id and cluster id), after which every frame is a raft-rs message
//! (protobuf), a request forwarded to the active controller, or the answer to one (`[u64 id]`
//! then the controller's own encoding). Each link carries one direction: an answer goes back
//! on the answering node's own link to the asker. A hello from a node that is not a voter, or from another cluster, closes the
//! connection with a log line, and nothing it sends reaches raft.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{AsyncReadExt, AsyncWriteExt};
use protobuf::Message as _;
use raft::prelude::Message;
use serde::{Deserialize, Serialize};

use super::{log_store::QUORUM_FRAME_BYTES_MAX, raft_id, Quorum};
use crate::config::QuorumVoter;
use crate::notify::Notify;
use crate::runtime::{TcpListener, TcpStream};

const FRAME_HELLO: u8 = 1;
const FRAME_RAFT: u8 = 2;
pub const FRAME_FORWARD: u8 = 3;
pub const FRAME_FORWARD_REPLY: u8 = 4;
/// The largest hello: a node id and a cluster id.
const HELLO_BYTES_MAX: usize = 4096;
/// Messages queued for one voter while the connection to it is down or slow. Raft sends again
/// what is lost, so the oldest go first past this bound.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 1024;
/// Waits between attempts to reach a voter that is down.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Open incoming quorum connections: a few per voter (reconnects overlap old ones).
const INCOMING_CONNECTIONS_MAX: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    node_id: i32,
    cluster_id: Option<String>,
}

enum Outgoing {
    Raft(Message),
    Frame(u8, Vec<u8>),
}

struct PeerQueue {
    messages: RefCell<VecDeque<Outgoing>>,
    ready: Notify,
}

/// Outgoing queues, one per other voter, by raft id.
#[derive(Default)]
pub struct Peers {
    queues: RefCell<HashMap<u64, Rc<PeerQueue>>>,
}

impl Peers {
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            self.enqueue(m.to, Outgoing::Raft(m));
        }
    }

    /// Sends a frame of `kind` to voter `to` (a raft id).
    pub fn send_frame(&self, to: u64, kind: u8, payload: Vec<u8>) {
        self.enqueue(to, Outgoing::Frame(kind, payload));
    }

    fn enqueue(&self, to: u64, item: Outgoing) {
        let queues = self.queues.borrow();
        let Some(q) = queues.get(&to) else {
            tracing::debug!(to, "metadata quorum message for an unknown voter dropped");
            return;
        };
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
    let listener = TcpListener::bind(listen)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot listen for the metadata quorum on {listen}: is another node there?"))?;
    for voter in voters.iter().filter(|v| v.node_id != node_id) {
        let queue = Rc::new(PeerQueue { messages: RefCell::new(VecDeque::new()), ready: Notify::default() });
        quorum.peers.queues.borrow_mut().insert(raft_id(voter.node_id), queue.clone());
        let hello = serde_json::to_vec(&Hello { node_id, cluster_id: cluster_id.clone() }).expect("hello serializes");
        crate::runtime::spawn(send_loop(voter.clone(), queue, hello)).detach();
    }
    let voter_ids: Vec<i32> = voters.iter().map(|v| v.node_id).collect();
    let quorum = Rc::downgrade(quorum);
    crate::runtime::spawn(async move {
        let open = Rc::new(std::cell::Cell::new(0usize));
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
            let (quorum, voter_ids, cluster_id, open) = (quorum.clone(), voter_ids.clone(), cluster_id.clone(), open.clone());
            crate::runtime::spawn(async move {
                let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                if let Err(e) = receive_loop(stream, &quorum, node_id, &voter_ids, cluster_id.as_deref()).await {
                    tracing::info!(peer = %peer, error = %format!("{e:#}"), "metadata quorum connection closed");
                }
                open.set(open.get() - 1);
            })
            .detach();
        }
    })
    .detach();
    Ok(())
}

async fn send_loop(voter: QuorumVoter, queue: Rc<PeerQueue>, hello: Vec<u8>) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut said_down = false;
    loop {
        let mut stream = match TcpStream::connect(voter.address.as_str()).await {
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
        backoff = RECONNECT_BACKOFF_MIN;
        if write_frame(&mut stream, FRAME_HELLO, &hello).await.is_err() {
            continue;
        }
        loop {
            let ready = queue.ready.notified();
            let batch: Vec<Outgoing> = queue.messages.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                ready.await;
                continue;
            }
            let mut out = Vec::new();
            for item in &batch {
                let (kind, bytes) = match item {
                    Outgoing::Raft(m) => match m.write_to_bytes() {
                        Ok(bytes) => (FRAME_RAFT, bytes),
                        Err(e) => {
                            tracing::error!(error = %e, "a metadata quorum message did not encode; dropped");
                            continue;
                        }
                    },
                    Outgoing::Frame(kind, bytes) => (*kind, bytes.clone()),
                };
                if bytes.len() < QUORUM_FRAME_BYTES_MAX {
                    push_frame(&mut out, kind, &bytes);
                } else {
                    tracing::error!(bytes = bytes.len(), "a metadata quorum message is over the frame bound; dropped");
                }
            }
            if stream.write_all(&out).await.is_err() {
                // Lost with the connection; raft sends again what matters.
                break;
            }
        }
    }
}

fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

async fn write_frame(stream: &mut TcpStream, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    push_frame(&mut out, kind, payload);
    stream.write_all(&out).await
}

async fn read_frame(stream: &mut TcpStream, bytes_max: usize) -> Result<(u8, Vec<u8>)> {
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

async fn receive_loop(mut stream: TcpStream, quorum: &Weak<Quorum>, node_id: i32, voters: &[i32], cluster_id: Option<&str>) -> Result<()> {
    let (kind, payload) = read_frame(&mut stream, HELLO_BYTES_MAX).await?;
    if kind != FRAME_HELLO {
        bail!("the first frame is of kind {kind}, not a hello: refusing the connection");
    }
    let hello: Hello = serde_json::from_slice(&payload).context("the hello is not valid JSON")?;
    if !voters.contains(&hello.node_id) || hello.node_id == node_id {
        tracing::warn!(from = hello.node_id, voters = ?voters, "refused a metadata quorum connection from a node that is not another voter: check controller.quorum.voters on both");
        bail!("node {} is not another voter", hello.node_id);
    }
    if let (Some(theirs), Some(ours)) = (hello.cluster_id.as_deref(), cluster_id) {
        if theirs != ours {
            tracing::warn!(
                from = hello.node_id,
                their_cluster_id = theirs,
                cluster_id = ours,
                "refused a metadata quorum connection from a node of another cluster: check cluster.id"
            );
            bail!("node {} belongs to cluster {theirs}", hello.node_id);
        }
    }
    let from = raft_id(hello.node_id);
    loop {
        let (kind, payload) = read_frame(&mut stream, QUORUM_FRAME_BYTES_MAX).await?;
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
