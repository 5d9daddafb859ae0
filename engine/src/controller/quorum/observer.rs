//! Broker-only nodes (`process.roles=broker`) and the metadata log: as a KRaft broker fetches
//! `__cluster_metadata` from the quorum without voting, an observer here fetches committed
//! entries from a voter over the quorum transport, and applies them in log order through the
//! same [`Applier`] the voters use. It is never part of raft's membership: the voters need not
//! know it in advance, and its absence never holds up a commit.
//!
//! The observer asks the leader it knows (any voter at first, and the next one whenever the one
//! it asked does not answer), from the index after the last one it applied. A voter answers with
//! committed entries from its own log, up to [`OBSERVER_FETCH_BYTES_MAX`], or, when the observer
//! is behind the log's start (the log was compacted), with a snapshot of its applied image. A
//! fetch with nothing new waits at the voter (bounded) until something commits, so a caught-up
//! observer does not poll. Every answer names the leader the voter knows, which is how the
//! observer finds the active controller and follows it through elections.
//!
//! What the observer applied is persisted by the applier (the metadata image, with its applied
//! index), so a restart fetches only what is new.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use raft::Storage as _;
use serde::{Deserialize, Serialize};

use super::{raft_id, transport, Applier, Batch, Quorum};
use crate::metadata::records::MetadataRecord;

/// The most entry bytes one fetch answer carries (at least one entry, whatever its size, so a
/// large entry still goes through). A snapshot goes in one answer, in parts on the link when it is large (see `transport`).
pub const OBSERVER_FETCH_BYTES_MAX: u64 = 1 << 20;
/// The longest a voter holds a fetch that has nothing new, whatever the observer asks.
pub const OBSERVER_FETCH_WAIT_MS_MAX: u64 = 5_000;
/// Fetches a voter answers at once; past this, new ones are dropped with a log line and their
/// observers time out and ask again.
pub const OBSERVER_FETCHES_IN_FLIGHT_MAX: usize = 256;
/// Observers a voter remembers for DescribeQuorum; past this, those heard from longest ago go.
pub const OBSERVERS_TRACKED_MAX: usize = 1024;
/// An observer not heard from for this long is no longer reported (it stopped, or fetches from
/// another voter).
const OBSERVER_FORGOTTEN_AFTER: Duration = Duration::from_secs(60);
/// After a fetch that got no answer: the wait before asking the next voter.
const OBSERVER_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The first index the observer has not applied.
    pub from_index: u64,
    /// How long the voter may hold the fetch for an entry at `from_index` to commit.
    pub wait_ms: u64,
    /// Entry bytes the observer takes in one answer (clamped to [`OBSERVER_FETCH_BYTES_MAX`]).
    pub bytes_max: u64,
    /// The observer's metadata directory id (KIP-853's replica key); None from nodes of
    /// versions before it was sent.
    #[serde(default)]
    pub directory_id: Option<uuid::Uuid>,
}

/// An observer as a voter last heard from it.
#[derive(Debug, Clone, Copy)]
pub struct Observed {
    /// The last index it had (its fetch's index less one).
    pub index: u64,
    /// When it fetched.
    pub at: std::time::SystemTime,
    pub directory_id: Option<uuid::Uuid>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FetchReply {
    /// The leader the answering voter knows, and its term.
    pub leader: Option<i32>,
    pub term: u64,
    /// The voter's commit index (KRaft's high watermark).
    pub commit_index: u64,
    /// When the observer is behind the log's start: the voter's image, applied up to `index`,
    /// encoded by [`Applier::snapshot`]. Entries, if any, follow it.
    pub snapshot: Option<FetchedSnapshot>,
    /// Committed entries from `from_index` (or after the snapshot) on, in order.
    pub entries: Vec<FetchedEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FetchedSnapshot {
    pub index: u64,
    /// The image as [`Applier::snapshot`] encodes it (JSON).
    pub image: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FetchedEntry {
    pub index: u64,
    /// Empty for an entry with no records (a new leader's first entry).
    pub records: Vec<MetadataRecord>,
}

impl Quorum {
    /// At a voter: answers an observer's fetch, bounded by [`OBSERVER_FETCHES_IN_FLIGHT_MAX`].
    pub(super) fn on_fetch(self: &Rc<Self>, from: i32, id: u64, request: FetchRequest) {
        if self.fetches_in_flight.get() >= OBSERVER_FETCHES_IN_FLIGHT_MAX {
            tracing::warn!(
                from,
                limit = OBSERVER_FETCHES_IN_FLIGHT_MAX,
                "too many metadata fetches from observers in flight: dropping one (its observer asks again)"
            );
            return;
        }
        self.fetches_in_flight.set(self.fetches_in_flight.get() + 1);
        let mut observed = self.observed.borrow_mut();
        if observed.len() >= OBSERVERS_TRACKED_MAX && !observed.contains_key(&from) {
            let oldest = observed.iter().min_by_key(|(_, o)| o.at).map(|(id, _)| *id).expect("not empty");
            observed.remove(&oldest);
        }
        let at = std::time::SystemTime::now();
        observed.insert(from, Observed { index: request.from_index.saturating_sub(1), at, directory_id: request.directory_id });
        drop(observed);
        let quorum = self.clone();
        crate::runtime::spawn(async move {
            let reply = quorum.answer_fetch(from, &request).await;
            let mut frame = id.to_be_bytes().to_vec();
            frame.extend_from_slice(&serde_json::to_vec(&reply).expect("fetch replies serialize"));
            quorum.peers.send_frame(raft_id(from), transport::FRAME_FETCH_REPLY, frame);
            quorum.fetches_in_flight.set(quorum.fetches_in_flight.get() - 1);
        })
        .detach();
    }

    /// The observers heard from lately, by node id, for DescribeQuorum.
    pub fn observers(&self) -> Vec<(i32, Observed)> {
        let now = std::time::SystemTime::now();
        self.observed
            .borrow()
            .iter()
            .filter(|(_, o)| now.duration_since(o.at).unwrap_or_default() < OBSERVER_FORGOTTEN_AFTER)
            .map(|(id, o)| (*id, *o))
            .collect()
    }

    /// At a voter: observer `node_id` as this node last heard from it, and whether it is a
    /// controller linked here now (a node that may be added as a voter). None: no fetch from
    /// it here lately.
    pub fn observer_state(&self, node_id: i32) -> Option<(Observed, bool)> {
        let observed = *self.observed.borrow().get(&node_id)?;
        Some((observed, self.controller_observers.borrow().get(&node_id).is_some_and(|links| *links > 0)))
    }

    async fn answer_fetch(&self, from: i32, request: &FetchRequest) -> FetchReply {
        let Some(log) = self.log.borrow().clone() else { return FetchReply::default() };
        // Entries this node has in its log and knows committed: a follower may know a commit
        // before it has stored the entries.
        let committed = || self.status().commit_index.min(log.last_index().unwrap_or(0));
        let deadline = Instant::now() + Duration::from_millis(request.wait_ms.min(OBSERVER_FETCH_WAIT_MS_MAX));
        loop {
            let changed = self.status_changed.notified();
            let left = deadline.saturating_duration_since(Instant::now());
            if request.from_index <= committed() || left.is_zero() {
                break;
            }
            futures::select! {
                _ = changed.fuse() => {}
                _ = crate::runtime::sleep(left).fuse() => {}
            }
        }
        let status = self.status();
        let mut reply = FetchReply { leader: status.leader, term: status.term, commit_index: status.commit_index, ..Default::default() };
        let commit = committed();
        let mut from_index = request.from_index;
        let first = log.first_index().unwrap_or(1);
        if from_index < first {
            match self.applier.snapshot().and_then(|(index, image)| Ok((index, String::from_utf8(image)?))) {
                Ok((index, image)) if index + 1 >= first => {
                    tracing::info!(observer = from, index, bytes = image.len(), "sending a metadata snapshot to an observer behind the log's start");
                    reply.snapshot = Some(FetchedSnapshot { index, image });
                    from_index = index + 1;
                }
                Ok(_) => return reply,
                Err(e) => {
                    tracing::warn!(observer = from, error = %format!("{e:#}"), "no metadata snapshot for a lagging observer (it asks again)");
                    return reply;
                }
            }
        }
        if from_index > commit {
            return reply;
        }
        let bytes_max = request.bytes_max.clamp(1, OBSERVER_FETCH_BYTES_MAX);
        let entries = match log.entries(from_index, commit + 1, bytes_max, raft::GetEntriesContext::empty(false)) {
            Ok(entries) => entries,
            // Compacted between the look above and now: the observer asks again.
            Err(e) => {
                tracing::debug!(observer = from, error = %e, "metadata entries for an observer not read");
                return reply;
            }
        };
        for entry in entries {
            let records = match super::entry_batch(&entry) {
                Ok(batch) => batch.map(|b: Batch| b.records).unwrap_or_default(),
                Err(e) => {
                    tracing::error!(index = entry.index, error = %format!("{e:#}"), "a metadata log entry does not decode: not sent to an observer");
                    break;
                }
            };
            reply.entries.push(FetchedEntry { index: entry.index, records });
        }
        reply
    }

    /// On a broker-only node: fetches and applies committed metadata, forever.
    pub(super) async fn observe(self: Rc<Self>, wait: Duration, applier: Rc<dyn Applier>) {
        let mut next_index = self.status.borrow().applied_index + 1;
        tracing::info!(from_index = next_index, voters = ?self.voters.borrow().iter().map(|v| v.node_id).collect::<Vec<_>>(), "observing the metadata log: fetching committed entries from the voters");
        let mut turn = 0usize;
        loop {
            if self.promoted() {
                // Added as a voter: from here on raft brings this node the log.
                if let Err(e) = self.become_voter() {
                    tracing::error!(error = %format!("{e:#}"), "this controller was added as a voter but could not start as one: it no longer applies metadata; fix the cause and restart it");
                    self.failed.set(true);
                }
                return;
            }
            // The voters as the log names them now (a dynamic quorum's change); none known (a
            // broken image) falls back to waiting.
            let voters: Vec<i32> = self.voters.borrow().iter().map(|v| v.node_id).collect();
            if voters.is_empty() {
                crate::runtime::sleep(OBSERVER_RETRY).await;
                continue;
            }
            let target = self.status.borrow().leader.filter(|l| voters.contains(l)).unwrap_or_else(|| {
                turn = turn.wrapping_add(1);
                voters[turn % voters.len()]
            });
            let request =
                FetchRequest { from_index: next_index, wait_ms: wait.as_millis() as u64, bytes_max: OBSERVER_FETCH_BYTES_MAX, directory_id: self.directory_id };
            let payload = serde_json::to_vec(&request).expect("fetch requests serialize");
            let answer = if self.peers.connected(raft_id(target)) {
                // The voter holds the fetch up to `wait`; past as long again, it is gone.
                self.request(target, transport::FRAME_FETCH, payload, wait * 2 + Duration::from_millis(self.fetch_timeout_ms), false).await.ok()
            } else {
                None
            };
            let reply = match answer.map(|a| serde_json::from_slice::<FetchReply>(&a)) {
                Some(Ok(reply)) => reply,
                Some(Err(e)) => {
                    tracing::warn!(voter = target, error = %e, "a metadata fetch answer does not decode (nodes of different versions?); asking another voter");
                    self.set_observed_leader(None, None);
                    crate::runtime::sleep(OBSERVER_RETRY).await;
                    continue;
                }
                None => {
                    // Down, or not answering: whoever leads now is found by asking the others.
                    self.set_observed_leader(None, None);
                    crate::runtime::sleep(OBSERVER_RETRY).await;
                    continue;
                }
            };
            // A voter that knows no leader (an election) or another one sends the next fetch
            // elsewhere.
            self.set_observed_leader(reply.leader, Some((reply.term, reply.commit_index)));
            let taken = self.take(&mut next_index, reply, &*applier).await;
            self.follow_voters(applier.voters());
            if let Err(e) = taken {
                tracing::error!(error = %format!("{e:#}"), "the metadata fetched from the quorum could not be applied on this node; fetching again");
                crate::runtime::sleep(OBSERVER_RETRY).await;
            }
        }
    }

    /// Applies what one fetch brought, in order; `next_index` moves past what was applied.
    async fn take(&self, next_index: &mut u64, reply: FetchReply, applier: &dyn Applier) -> anyhow::Result<()> {
        if let Some(snapshot) = reply.snapshot {
            if snapshot.index >= *next_index {
                tracing::info!(index = snapshot.index, bytes = snapshot.image.len(), "installing a metadata snapshot from the quorum");
                applier.install(snapshot.index, snapshot.image.into_bytes()).await?;
                self.removal_unapplied.set(false);
                *next_index = snapshot.index + 1;
                self.set_applied(snapshot.index);
            }
        }
        for entry in reply.entries {
            if entry.index < *next_index {
                continue;
            }
            if entry.index > *next_index {
                // Not what was asked for: ask again from where this node is.
                anyhow::bail!("the quorum sent entry {} where {} was expected", entry.index, next_index);
            }
            if !entry.records.is_empty() {
                let voters_named = entry.records.iter().any(|r| matches!(r, MetadataRecord::QuorumVoters { .. }));
                applier.apply(entry.index, entry.records).await?;
                if voters_named {
                    self.removal_unapplied.set(false);
                }
            }
            *next_index = entry.index + 1;
            self.set_applied(entry.index);
        }
        Ok(())
    }

    fn set_applied(&self, index: u64) {
        self.status.borrow_mut().applied_index = index;
        self.status_changed.notify_all();
    }

    /// The leader as the last fetch answer named it (None: unknown), with its term and commit.
    fn set_observed_leader(&self, leader: Option<i32>, term_commit: Option<(u64, u64)>) {
        let mut status = self.status.borrow_mut();
        let before = status.clone();
        status.leader = leader;
        if let Some((term, commit)) = term_commit {
            status.term = term;
            status.commit_index = commit;
        }
        let changed = *status != before;
        drop(status);
        if changed {
            if before.leader != leader {
                tracing::info!(leader = ?leader, "the metadata quorum's leader, as this observer sees it, changed");
            }
            self.status_changed.notify_all();
        }
    }
}
