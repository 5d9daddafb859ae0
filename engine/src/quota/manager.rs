//! The shard-local quota manager: what each client did lately, measured as Kafka measures it
//! (a rate over `quota.window.num` samples of `quota.window.size.seconds` each), and the
//! throttle time of a client over its quota (Kafka's `QuotaUtils.throttleTime`).
//!
//! Each shard measures the connections it serves, against the whole quota. Kafka measures per
//! broker; a client's connections to one broker normally land on one shard (one connection per
//! broker is what Kafka's clients open), so this is the same in the common case. A client whose
//! connections to this broker are spread over k shards can get up to k times its quota from it;
//! dividing the quota by the shard count instead would hold every one-connection client to a
//! fraction of what it was given, which is the worse error.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Resolved;

/// Clients measured at most per shard and quota type; past it the least recently seen entry
/// goes (its client starts a fresh measurement when it returns).
pub const TRACKED_CLIENTS_MAX: usize = 10_000;

/// An entry not touched for this long is dropped, as Kafka expires an idle client's quota
/// sensors after an hour.
pub const IDLE_EXPIRY_MS: u64 = 3_600_000;

/// `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    pub samples: usize,
    pub window_ms: u64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { samples: 11, window_ms: 1000 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// Kafka's `Rate` over a `SampledStat`: values go into the current sample until its window has
/// passed, then into the next one (the oldest is reused); samples older than every window
/// together are reset when measured.
#[derive(Debug, Clone)]
pub struct Rate {
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new(now_ms: u64) -> Rate {
        Rate { samples: vec![Sample { start_ms: now_ms, value: 0.0 }], current: 0 }
    }

    pub fn record(&mut self, config: WindowConfig, value: f64, now_ms: u64) {
        if now_ms.saturating_sub(self.samples[self.current].start_ms) >= config.window_ms {
            self.current = (self.current + 1) % config.samples.max(1);
            let fresh = Sample { start_ms: now_ms, value: 0.0 };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    fn purge(&mut self, config: WindowConfig, now_ms: u64) {
        let expire_ms = config.samples as u64 * config.window_ms;
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.start_ms) >= expire_ms {
                *s = Sample { start_ms: now_ms, value: 0.0 };
            }
        }
    }

    /// The span the rate is taken over: from the oldest sample to now, but never less than
    /// all windows but one, so a new client's first burst is not divided by a few
    /// milliseconds (Kafka's `Rate.windowSize`).
    pub fn window_ms(&mut self, config: WindowConfig, now_ms: u64) -> u64 {
        self.purge(config, now_ms);
        let oldest = self.samples.iter().map(|s| s.start_ms).min().unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / config.window_ms;
        let min_full = config.samples.saturating_sub(1) as u64;
        if full < min_full {
            elapsed += (min_full - full) * config.window_ms;
        }
        elapsed.max(1)
    }

    /// Units per second.
    pub fn measure(&mut self, config: WindowConfig, now_ms: u64) -> f64 {
        let window_ms = self.window_ms(config, now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (window_ms as f64 / 1000.0)
    }
}

/// Kafka's throttle time for a rate over its bound: how long the client must stay silent for
/// the rate over the same window to come back to the bound.
pub fn throttle_time_ms(rate: f64, bound: f64, window_ms: u64) -> u64 {
    if rate <= bound || bound <= 0.0 {
        return 0;
    }
    ((rate - bound) / bound * window_ms as f64).round() as u64
}

/// Kafka's `TokenBucket` (KIP-599), for `controller_mutation_rate`: a bucket of
/// `quota.window.num × quota.window.size.seconds × quota` tokens (the burst), refilled at the
/// quota's rate, from which each partition created or deleted takes one. It starts full, and a
/// request that finds it not empty may take it below zero; the throttle time is then how long
/// the bucket needs to come back to zero.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    fn burst(config: WindowConfig, bound: f64) -> f64 {
        config.samples as f64 * config.window_ms as f64 / 1000.0 * bound
    }

    pub fn full(config: WindowConfig, bound: f64, now_ms: u64) -> TokenBucket {
        TokenBucket { tokens: Self::burst(config, bound), last_ms: now_ms }
    }

    fn refill(&mut self, config: WindowConfig, bound: f64, now_ms: u64) {
        let elapsed_s = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + bound * elapsed_s).min(Self::burst(config, bound));
        self.last_ms = self.last_ms.max(now_ms);
    }

    pub fn tokens(&mut self, config: WindowConfig, bound: f64, now_ms: u64) -> f64 {
        self.refill(config, bound, now_ms);
        self.tokens
    }

    pub fn take(&mut self, config: WindowConfig, bound: f64, value: f64, now_ms: u64) {
        self.refill(config, bound, now_ms);
        self.tokens = (self.tokens - value).min(Self::burst(config, bound));
    }
}

/// Kafka's throttle time of a bucket below zero (`ControllerMutationQuotaManager.throttleTimeMs`).
pub fn bucket_throttle_ms(tokens: f64, bound: f64) -> u64 {
    if tokens >= 0.0 || bound <= 0.0 {
        return 0;
    }
    (-tokens / bound * 1000.0).round() as u64
}

/// Which quota a measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaType {
    Produce,
    Fetch,
    /// `controller_mutation_rate`: partitions created or deleted (KIP-599), in a token bucket.
    ControllerMutation,
    /// `request_percentage` (KIP-124): the share of a shard's thread that a client's requests
    /// take, in percent (100: one whole thread).
    Request,
}

impl QuotaType {
    pub fn name(self) -> &'static str {
        match self {
            QuotaType::Produce => "produce",
            QuotaType::Fetch => "fetch",
            QuotaType::ControllerMutation => "controller_mutation",
            QuotaType::Request => "request",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            QuotaType::Produce => super::PRODUCER_BYTE_RATE,
            QuotaType::Fetch => super::CONSUMER_BYTE_RATE,
            QuotaType::ControllerMutation => super::CONTROLLER_MUTATION_RATE,
            QuotaType::Request => super::REQUEST_PERCENTAGE,
        }
    }
}

/// (quota type, user tag, client-id tag): one measurement, shared by every client that
/// resolves to the same tags.
type Key = (QuotaType, String, String);

#[derive(Debug)]
struct Tracked {
    rate: Rate,
    /// For [`QuotaType::ControllerMutation`] only.
    bucket: Option<TokenBucket>,
    last_used_ms: u64,
    throttle_ms_total: u64,
    throttled: u64,
}

/// Throttle totals of one measured entity, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleStats {
    pub quota_type: QuotaType,
    pub user: String,
    pub client_id: String,
    pub throttle_ms_total: u64,
    pub throttled: u64,
}

/// One shard's measurements.
#[derive(Debug, Default)]
pub struct QuotaManager {
    tracked: HashMap<Key, Tracked>,
    /// Per quota type, how many entries `tracked` has.
    counts: HashMap<QuotaType, usize>,
}

impl QuotaManager {
    /// Records `value` for the tags and answers the throttle time: 0 while within `bound`.
    /// The value stays recorded either way, as Kafka's sensor keeps it.
    pub fn record(&mut self, config: WindowConfig, quota_type: QuotaType, quota: &Resolved, value: f64, now_ms: u64) -> u64 {
        let bound = quota.bound;
        let t = self.entry(quota_type, quota, now_ms);
        t.rate.record(config, value, now_ms);
        let rate = t.rate.measure(config, now_ms);
        let window_ms = t.rate.window_ms(config, now_ms);
        let mut throttle = throttle_time_ms(rate, bound, window_ms);
        if quota_type == QuotaType::Request {
            // Kafka bounds a request-time throttle by one quota window (`boundedThrottleTime`):
            // a single costly request does not silence a client for long.
            throttle = throttle.min(config.window_ms);
        }
        if throttle > 0 {
            t.throttle_ms_total += throttle;
            t.throttled += 1;
        }
        throttle
    }

    /// The entry of (`quota_type`, the quota's tags), made (within the bound) if there is none.
    fn entry(&mut self, quota_type: QuotaType, quota: &Resolved, now_ms: u64) -> &mut Tracked {
        let key = (quota_type, quota.user_tag.clone(), quota.client_tag.clone());
        if !self.tracked.contains_key(&key) {
            self.make_room(quota_type, now_ms);
            *self.counts.entry(quota_type).or_default() += 1;
        }
        let t = self.tracked.entry(key).or_insert_with(|| Tracked {
            rate: Rate::new(now_ms),
            bucket: None,
            last_used_ms: now_ms,
            throttle_ms_total: 0,
            throttled: 0,
        });
        t.last_used_ms = now_ms;
        t
    }

    fn bucket(&mut self, config: WindowConfig, quota: &Resolved, now_ms: u64) -> &mut Tracked {
        let t = self.entry(QuotaType::ControllerMutation, quota, now_ms);
        t.bucket.get_or_insert_with(|| TokenBucket::full(config, quota.bound, now_ms));
        t
    }

    /// KIP-599, before a topic's partitions are created or deleted: the throttle time of a
    /// client whose bucket is below zero (the mutation is refused), or 0.
    pub fn mutation_throttle(&mut self, config: WindowConfig, quota: &Resolved, now_ms: u64) -> u64 {
        let t = self.bucket(config, quota, now_ms);
        let tokens = t.bucket.as_mut().expect("made above").tokens(config, quota.bound, now_ms);
        let throttle = bucket_throttle_ms(tokens, quota.bound);
        if throttle > 0 {
            t.throttle_ms_total += throttle;
            t.throttled += 1;
        }
        throttle
    }

    /// Takes `partitions` mutations from the client's bucket; answers the throttle time it
    /// leaves (0 while the bucket is not below zero).
    pub fn record_mutations(&mut self, config: WindowConfig, quota: &Resolved, partitions: f64, now_ms: u64) -> u64 {
        let t = self.bucket(config, quota, now_ms);
        let bucket = t.bucket.as_mut().expect("made above");
        bucket.take(config, quota.bound, partitions, now_ms);
        bucket_throttle_ms(bucket.tokens(config, quota.bound, now_ms), quota.bound)
    }

    /// KIP-599 for one request: each topic's partitions, in order, from the client's bucket.
    /// Strict: a topic that finds the bucket below zero is refused, and every one after it
    /// (Kafka's `isExceeded`); the one that takes the bucket below zero goes through.
    /// Permissive: every topic goes through. Answers which topics may go on, and the throttle
    /// time.
    pub fn take_mutations(&mut self, config: WindowConfig, quota: &Resolved, strict: bool, topics: &[i64], now_ms: u64) -> (Vec<bool>, u64) {
        let mut allowed = Vec::with_capacity(topics.len());
        let mut throttle = 0;
        for &partitions in topics {
            if strict {
                if throttle == 0 {
                    throttle = self.mutation_throttle(config, quota, now_ms);
                }
                if throttle > 0 {
                    allowed.push(false);
                    continue;
                }
                self.record_mutations(config, quota, partitions.max(0) as f64, now_ms);
            } else {
                throttle = throttle.max(self.record_mutations(config, quota, partitions.max(0) as f64, now_ms));
            }
            allowed.push(true);
        }
        (allowed, throttle)
    }

    /// Takes back a recorded value: a throttled fetch is answered without its data (Kafka
    /// unrecords it too, since nothing was sent).
    pub fn unrecord(&mut self, config: WindowConfig, quota_type: QuotaType, quota: &Resolved, value: f64, now_ms: u64) {
        if let Some(t) = self.tracked.get_mut(&(quota_type, quota.user_tag.clone(), quota.client_tag.clone())) {
            t.rate.record(config, -value, now_ms);
        }
    }

    /// The most a client may get in one response under `bound`: what the windows hold at
    /// that rate (Kafka's `getMaxValueInQuotaWindow`), so that one fetch cannot take many
    /// windows' worth at once.
    pub fn max_value_in_window(config: WindowConfig, bound: f64) -> f64 {
        bound * config.samples.saturating_sub(1).max(1) as f64 * config.window_ms as f64 / 1000.0
    }

    fn make_room(&mut self, quota_type: QuotaType, now_ms: u64) {
        if self.counts.get(&quota_type).copied().unwrap_or(0) < TRACKED_CLIENTS_MAX {
            return;
        }
        self.tracked.retain(|_, t| now_ms.saturating_sub(t.last_used_ms) < IDLE_EXPIRY_MS);
        self.recount();
        if self.counts.get(&quota_type).copied().unwrap_or(0) >= TRACKED_CLIENTS_MAX {
            let oldest = self.tracked.iter().filter(|(k, _)| k.0 == quota_type).min_by_key(|(_, t)| t.last_used_ms).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.tracked.remove(&k);
                *self.counts.entry(quota_type).or_default() -= 1;
            }
        }
    }

    fn recount(&mut self) {
        self.counts.clear();
        for k in self.tracked.keys() {
            *self.counts.entry(k.0).or_default() += 1;
        }
    }

    /// Entities throttled at least once, with their totals.
    pub fn throttle_stats(&self) -> Vec<ThrottleStats> {
        let mut out: Vec<ThrottleStats> = self
            .tracked
            .iter()
            .filter(|(_, t)| t.throttled > 0)
            .map(|((q, u, c), t)| ThrottleStats {
                quota_type: *q,
                user: u.clone(),
                client_id: c.clone(),
                throttle_ms_total: t.throttle_ms_total,
                throttled: t.throttled,
            })
            .collect();
        out.sort_by(|a, b| (a.quota_type, &a.user, &a.client_id).cmp(&(b.quota_type, &b.user, &b.client_id)));
        out
    }

    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }
}

/// [`QuotaManager::take_mutations`] on another shard: the controller shard measures
/// `controller_mutation_rate` for the whole broker, since an admin client's connections land on
/// any shard (see `handlers::mutation_quota`).
#[derive(Debug)]
pub struct TakeMutations {
    pub config: WindowConfig,
    pub quota: Resolved,
    pub strict: bool,
    pub topics: Vec<i64>,
}

impl crate::shard::router::ShardCall for TakeMutations {
    type Reply = (Vec<bool>, u64);
}

/// Serves [`TakeMutations`] on this shard.
pub fn serve(router: &crate::shard::router::Router) {
    router.serve(|call: TakeMutations| async move { with(|m| m.take_mutations(call.config, &call.quota, call.strict, &call.topics, now_ms())) });
}

thread_local! {
    /// This shard's quota manager: a shard is one executor on one thread, so a thread-local is
    /// shard-local, and the handlers reach it without a lock.
    static MANAGER: RefCell<QuotaManager> = RefCell::new(QuotaManager::default());
}

/// Runs `f` on this shard's quota manager.
pub fn with<R>(f: impl FnOnce(&mut QuotaManager) -> R) -> R {
    MANAGER.with(|m| f(&mut m.borrow_mut()))
}

/// Milliseconds on a monotonic clock, for the windows.
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: WindowConfig = WindowConfig { samples: 11, window_ms: 1000 };

    fn quota(user: &str, client_id: &str, bound: f64) -> Resolved {
        Resolved { bound, user_tag: user.into(), client_tag: client_id.into() }
    }

    #[test]
    fn a_new_rate_is_taken_over_all_windows_but_one() {
        let mut r = Rate::new(0);
        r.record(CONFIG, 1000.0, 0);
        // 1000 units at the start: spread over 10 windows, not over the 1 ms elapsed.
        assert_eq!(r.window_ms(CONFIG, 0), 10_000);
        assert!((r.measure(CONFIG, 0) - 100.0).abs() < 1e-9);
        // After every window has passed, the span is the real elapsed time.
        for t in 1..=12 {
            r.record(CONFIG, 100.0, t * 1000);
        }
        assert_eq!(r.window_ms(CONFIG, 12_500), 12_500 - 2000);
    }

    #[test]
    fn old_samples_expire() {
        let mut r = Rate::new(0);
        r.record(CONFIG, 5000.0, 0);
        assert!(r.measure(CONFIG, 5000) > 0.0);
        // Every window later, nothing is left.
        assert_eq!(r.measure(CONFIG, 11_000), 0.0);
    }

    #[test]
    fn the_throttle_brings_the_rate_back_to_the_bound() {
        // 2000 units/s over a 10 s window with a bound of 1000: 10 s more at no traffic.
        assert_eq!(throttle_time_ms(2000.0, 1000.0, 10_000), 10_000);
        assert_eq!(throttle_time_ms(1100.0, 1000.0, 10_000), 1000);
        assert_eq!(throttle_time_ms(999.0, 1000.0, 10_000), 0);
    }

    #[test]
    fn a_request_time_throttle_is_bounded_by_one_window() {
        let mut m = QuotaManager::default();
        // 50% of a thread for 10 s against a bound of 1%: 490 s by the rate, one window by Kafka's bound.
        let throttle = m.record(CONFIG, QuotaType::Request, &quota("u", "c", 1.0), 500.0, 0);
        assert_eq!(throttle, CONFIG.window_ms);
        // The byte quotas are not bounded that way.
        assert!(m.record(CONFIG, QuotaType::Produce, &quota("u", "c", 1.0), 500.0, 0) > CONFIG.window_ms);
    }

    #[test]
    fn recording_over_the_bound_throttles_and_counts_per_entity() {
        let mut m = QuotaManager::default();
        // 10 windows * 100 B/s = 1000 bytes fit.
        assert_eq!(m.record(CONFIG, QuotaType::Produce, &quota("u", "c", 100.0), 1000.0, 0), 0);
        let throttle = m.record(CONFIG, QuotaType::Produce, &quota("u", "c", 100.0), 1000.0, 0);
        // 2000 bytes over 10 s: 200 B/s against 100, so 10 s of silence.
        assert_eq!(throttle, 10_000);
        // Another client has its own measurement.
        assert_eq!(m.record(CONFIG, QuotaType::Produce, &quota("u", "other", 100.0), 500.0, 0), 0);
        let stats = m.throttle_stats();
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].user.as_str(), stats[0].client_id.as_str(), stats[0].throttle_ms_total, stats[0].throttled), ("u", "c", 10_000, 1));
        // A fetch answered without data takes its bytes back.
        assert!(m.record(CONFIG, QuotaType::Fetch, &quota("u", "c", 100.0), 5000.0, 2) > 0);
        m.unrecord(CONFIG, QuotaType::Fetch, &quota("u", "c", 100.0), 5000.0, 2);
        assert_eq!(m.record(CONFIG, QuotaType::Fetch, &quota("u", "c", 100.0), 10.0, 3), 0);
    }

    #[test]
    fn mutations_take_from_a_full_bucket_that_may_go_below_zero_once() {
        let mut m = QuotaManager::default();
        let q = quota("u", "c", 2.0);
        // 11 windows of 1 s at 2 partitions/s: 22 tokens to start with.
        assert_eq!(m.mutation_throttle(CONFIG, &q, 0), 0);
        assert_eq!(m.record_mutations(CONFIG, &q, 20.0, 0), 0);
        // Not below zero yet: the next topic goes through and takes the bucket to -8.
        assert_eq!(m.mutation_throttle(CONFIG, &q, 0), 0);
        assert_eq!(m.record_mutations(CONFIG, &q, 10.0, 0), 4000);
        // Below zero: refused for the 4 s the refill needs, less what has passed.
        assert_eq!(m.mutation_throttle(CONFIG, &q, 0), 4000);
        assert_eq!(m.mutation_throttle(CONFIG, &q, 1000), 3000);
        assert_eq!(m.mutation_throttle(CONFIG, &q, 4000), 0);
        // The refill stops at the burst.
        m.mutation_throttle(CONFIG, &q, 1_000_000);
        assert_eq!(m.record_mutations(CONFIG, &q, 22.0, 1_000_000), 0);
        assert_eq!(m.record_mutations(CONFIG, &q, 1.0, 1_000_000), 500);
        // Another client has its own bucket.
        assert_eq!(m.record_mutations(CONFIG, &quota("u", "other", 2.0), 5.0, 1_000_000), 0);
        let stats = m.throttle_stats();
        assert_eq!((stats[0].quota_type, stats[0].throttled), (QuotaType::ControllerMutation, 2));
    }

    #[test]
    fn a_strict_request_refuses_every_topic_after_the_bucket_went_below_zero_and_a_permissive_one_none() {
        let mut m = QuotaManager::default();
        let q = quota("u", "strict", 0.1);
        // A bucket of 1.1: the first topic takes it to -8.9, the two after it are refused.
        let (allowed, throttle) = m.take_mutations(CONFIG, &q, true, &[10, 1, 1], 0);
        assert_eq!((allowed, throttle), (vec![true, false, false], 89_000));
        let (allowed, throttle) = m.take_mutations(CONFIG, &quota("u", "permissive", 0.1), false, &[10, 1], 0);
        assert_eq!((allowed, throttle), (vec![true, true], 99_000));
    }

    #[test]
    fn tracked_clients_are_bounded() {
        let mut m = QuotaManager::default();
        for i in 0..TRACKED_CLIENTS_MAX + 5 {
            m.record(CONFIG, QuotaType::Fetch, &quota("", &i.to_string(), 1e9), 1.0, i as u64);
        }
        assert_eq!(m.tracked(), TRACKED_CLIENTS_MAX);
        // Idle entries go first when room is needed.
        let late = IDLE_EXPIRY_MS + TRACKED_CLIENTS_MAX as u64 + 10;
        m.record(CONFIG, QuotaType::Fetch, &quota("", "new", 1e9), 1.0, late);
        assert_eq!(m.tracked(), 1);
    }
}
