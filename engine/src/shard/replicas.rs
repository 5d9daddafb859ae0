//! What a partition's leader knows of its followers (Kafka's `Partition` leader state): each
//! follower's log end offset, as its replica fetches report it, and when it was last caught up;
//! from those, the high watermark and the ISR changes to ask the controller for.
//!
//! Sans-io: the shard feeds it fetches, its own log end and the clock, and reads answers; the
//! follower's fetch offset is its durable log end, since a shardlog follower fetches again only
//! once what it appended is fdatasynced (see `replication::fetcher`).

use std::collections::BTreeMap;

/// One follower as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follower {
    /// The offset of its latest fetch: it holds, durably, everything below. None until its
    /// first fetch under this leadership (Kafka's unknown log end offset).
    log_end_offset: Option<i64>,
    /// When a fetch last showed it holding everything the leader had.
    last_caught_up_ms: u64,
}

/// A partition this broker leads, with other replicas.
#[derive(Debug, Clone)]
pub struct LeaderReplicas {
    pub node_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// `min.insync.replicas` of the topic.
    pub min_insync_replicas: usize,
    followers: BTreeMap<i32, Follower>,
    /// The high watermark so far: it never moves back while this broker leads.
    high_watermark: i64,
    /// An ISR change sent to the controller and not answered yet: no other is sent meanwhile.
    pub change_in_flight: bool,
}

/// Why a replica fetch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerError {
    /// The fetching broker is not one of the partition's replicas.
    NotAReplica,
}

impl LeaderReplicas {
    /// Leadership starting (or the partition's replicas changing) at `now_ms`, with the high
    /// watermark this broker knew as a follower. Every follower counts as caught up now, as in
    /// Kafka, so that none leaves the ISR before it had `replica.lag.time.max.ms` to fetch.
    pub fn new(node_id: i32, leader_epoch: i32, partition_epoch: i32, replicas: Vec<i32>, isr: Vec<i32>, high_watermark: i64, now_ms: u64) -> LeaderReplicas {
        let followers = replicas.iter().filter(|&&r| r != node_id).map(|&r| (r, Follower { log_end_offset: None, last_caught_up_ms: now_ms })).collect();
        LeaderReplicas { node_id, leader_epoch, partition_epoch, replicas, isr, min_insync_replicas: 1, followers, high_watermark, change_in_flight: false }
    }

    /// The controller's newer state of the partition under the same leadership (an ISR change
    /// committed, by this leader's request or the controller's own, e.g. a fenced broker).
    pub fn update(&mut self, partition_epoch: i32, replicas: Vec<i32>, isr: Vec<i32>, now_ms: u64) {
        for &r in replicas.iter().filter(|&&r| r != self.node_id) {
            self.followers.entry(r).or_insert(Follower { log_end_offset: None, last_caught_up_ms: now_ms });
        }
        self.followers.retain(|r, _| replicas.contains(r));
        (self.partition_epoch, self.replicas, self.isr) = (partition_epoch, replicas, isr);
    }

    /// A replica fetch from `follower` at `fetch_offset`, while this log ends at
    /// `log_end_offset`.
    pub fn follower_fetched(&mut self, follower: i32, fetch_offset: i64, log_end_offset: i64, now_ms: u64) -> Result<(), FollowerError> {
        let state = self.followers.get_mut(&follower).ok_or(FollowerError::NotAReplica)?;
        state.log_end_offset = Some(fetch_offset);
        if fetch_offset >= log_end_offset {
            state.last_caught_up_ms = now_ms;
        }
        Ok(())
    }

    /// The high watermark with this log ending at `log_end_offset`: the smallest log end of
    /// the ISR (this broker's included), never below what it was. A member that has not
    /// fetched under this leadership holds it where it is.
    pub fn high_watermark(&mut self, log_end_offset: i64) -> i64 {
        let mut hw = log_end_offset;
        for r in self.isr.iter().filter(|&&r| r != self.node_id) {
            match self.followers.get(r).and_then(|f| f.log_end_offset) {
                Some(end) => hw = hw.min(end),
                None => return self.high_watermark,
            }
        }
        self.high_watermark = self.high_watermark.max(hw);
        self.high_watermark
    }

    /// The ISR to ask the controller for, if it should change (Kafka's `maybeShrinkIsr` and
    /// `maybeExpandIsr`): members not caught up for `lag_max_ms` leave it (the leader never
    /// does), and replicas that hold everything up to the high watermark and at least to
    /// `epoch_start_offset` (the first offset of this leader's epoch: a follower that has not
    /// reached it may still hold a divergent tail) join it.
    pub fn wanted_isr(&self, now_ms: u64, lag_max_ms: u64, epoch_start_offset: i64) -> Option<Vec<i32>> {
        if self.change_in_flight {
            return None;
        }
        let lagging = |r: &i32| self.followers.get(r).is_some_and(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max_ms);
        let caught_up =
            |r: &i32| self.followers.get(r).and_then(|f| f.log_end_offset).is_some_and(|end| end >= self.high_watermark && end >= epoch_start_offset);
        let mut isr: Vec<i32> = self.isr.iter().copied().filter(|r| *r == self.node_id || !lagging(r)).collect();
        for r in &self.replicas {
            if !isr.contains(r) && *r != self.node_id && caught_up(r) && !lagging(r) {
                isr.push(*r);
            }
        }
        if !isr.contains(&self.node_id) {
            isr.insert(0, self.node_id);
        }
        let (mut a, mut b) = (isr.clone(), self.isr.clone());
        a.sort_unstable();
        b.sort_unstable();
        (a != b).then_some(isr)
    }

    /// Each follower's lag behind a log ending at `log_end_offset`, in offsets (None before its
    /// first fetch under this leadership), by node id.
    pub fn follower_lags(&self, log_end_offset: i64) -> Vec<(i32, Option<i64>)> {
        self.followers.iter().map(|(&r, f)| (r, f.log_end_offset.map(|end| (log_end_offset - end).max(0)))).collect()
    }

    /// `follower`'s log end as its last fetch under this leadership reported it.
    pub fn follower_log_end(&self, follower: i32) -> Option<i64> {
        self.followers.get(&follower).and_then(|f| f.log_end_offset)
    }

    /// Whether acks=all writes are refused: fewer in-sync replicas than `min.insync.replicas`.
    pub fn under_min_isr(&self) -> bool {
        self.isr.len() < self.min_insync_replicas
    }
}

#[cfg(test)]
mod tests {
    use super::{FollowerError, LeaderReplicas};

    fn three() -> LeaderReplicas {
        LeaderReplicas::new(1, 5, 7, vec![1, 2, 3], vec![1, 2, 3], 10, 1_000)
    }

    #[test]
    fn the_high_watermark_is_the_smallest_isr_log_end_and_never_moves_back() {
        let mut l = three();
        // Nobody fetched yet: it stays where the follower left it.
        assert_eq!(l.high_watermark(20), 10);
        l.follower_fetched(2, 15, 20, 1_001).unwrap();
        assert_eq!(l.high_watermark(20), 10, "3 has not fetched under this leadership");
        l.follower_fetched(3, 18, 20, 1_002).unwrap();
        assert_eq!(l.high_watermark(20), 15);
        l.follower_fetched(2, 20, 20, 1_003).unwrap();
        assert_eq!(l.high_watermark(20), 18);
        // A follower out of the ISR does not hold it back.
        l.update(8, vec![1, 2, 3], vec![1, 2], 1_004);
        assert_eq!(l.high_watermark(25), 20);
        // Nor does a follower that reports less than before (it truncated): no move back.
        l.follower_fetched(2, 12, 25, 1_005).unwrap();
        assert_eq!(l.high_watermark(25), 20);
        assert_eq!(l.follower_fetched(9, 0, 25, 1_006), Err(FollowerError::NotAReplica));
        assert_eq!(l.follower_lags(25), vec![(2, Some(13)), (3, Some(7))]);
    }

    #[test]
    fn alone_in_the_isr_the_leader_commits_its_whole_log() {
        let mut l = LeaderReplicas::new(1, 0, 0, vec![1, 2], vec![1], 0, 0);
        assert_eq!(l.high_watermark(42), 42);
    }

    #[test]
    fn laggards_leave_the_isr_and_caught_up_replicas_join_it() {
        let mut l = three();
        assert_eq!(l.wanted_isr(1_500, 1_000, 0), None, "everyone counts as caught up at the start");
        l.follower_fetched(2, 20, 20, 1_800).unwrap();
        l.follower_fetched(3, 12, 20, 1_800).unwrap();
        // 3 fetched but never reached the log end: it leaves once the lag time has passed.
        assert_eq!(l.wanted_isr(1_999, 1_000, 0), None);
        assert_eq!(l.wanted_isr(2_100, 1_000, 0), Some(vec![1, 2]));
        l.change_in_flight = true;
        assert_eq!(l.wanted_isr(2_100, 1_000, 0), None, "one change at a time");
        l.change_in_flight = false;
        l.update(8, vec![1, 2, 3], vec![1, 2], 2_100);
        assert_eq!(l.high_watermark(20), 20);
        // 3 catches up to the high watermark but not to this epoch's start: not yet.
        l.follower_fetched(3, 20, 20, 2_200).unwrap();
        assert_eq!(l.wanted_isr(2_200, 1_000, 21), None);
        assert_eq!(l.wanted_isr(2_200, 1_000, 20), Some(vec![1, 2, 3]));
    }

    #[test]
    fn min_insync_replicas_counts_the_isr() {
        let mut l = three();
        l.min_insync_replicas = 2;
        assert!(!l.under_min_isr());
        l.update(8, vec![1, 2, 3], vec![1], 0);
        assert!(l.under_min_isr());
    }
}
