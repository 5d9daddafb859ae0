//! When and how long to wait before asking a broker again, as Kafka's clients do: an
//! exponential backoff from `retry.backoff.ms` (100 ms) doubling up to `retry.backoff.max.ms`
//! (1 s), within an overall bound ([`RETRY_BOUND`], the part `delivery.timeout.ms` and
//! `default.api.timeout.ms` play in Kafka) after which the caller gives up and says why.
//!
//! Sans-io: a [`Retry`] is told the time and answers with a delay or "give up", so the policy is
//! tested without sleeping; the callers do the sleeping.
//!
//! Which errors are retried is Kafka's call (`is_retriable` in the protocol's error table, from
//! Kafka's `RetriableException` marks). A produce is retried only on the retriable errors that
//! say the batch was not appended ([`produce_retriable`]): retrying one that may have been
//! appended (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, a lost connection) would write
//! it twice, which the consumers would rightly report as duplicates, as a producer without
//! idempotence does in Kafka.

use std::time::{Duration, Instant};

use shardlog_protocol::error_code::{self, is_retriable};

/// Kafka's `retry.backoff.ms` default.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Kafka's `retry.backoff.max.ms` default.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one request (with its retries) may keep failing retriably before the run fails.
pub const RETRY_BOUND: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub backoff: Duration,
    pub backoff_max: Duration,
    pub bound: Duration,
}

pub const DEFAULT_POLICY: Policy = Policy { backoff: RETRY_BACKOFF, backoff_max: RETRY_BACKOFF_MAX, bound: RETRY_BOUND };

/// The retries of one request: started at its first failure.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    policy: Policy,
    first_failure: Instant,
    attempts: u32,
}

impl Retry {
    pub fn new(policy: Policy, first_failure: Instant) -> Retry {
        Retry { policy, first_failure, attempts: 0 }
    }

    /// How many retries were granted so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a failure at `now`: how long to wait before the next try, or None when the bound
    /// is spent (the next try would start past it). No jitter: the generator's retries are
    /// few and its runs should be repeatable.
    pub fn next_delay(&mut self, now: Instant) -> Option<Duration> {
        let shift = self.attempts.min(16);
        let delay = self.policy.backoff.saturating_mul(1 << shift).min(self.policy.backoff_max);
        let elapsed = now.saturating_duration_since(self.first_failure);
        if elapsed + delay > self.policy.bound {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

/// Whether a produce that failed with `code` may be sent again: Kafka calls it retriable and
/// it means the batch was not appended.
pub fn produce_retriable(code: i16) -> bool {
    is_retriable(code)
        && matches!(
            code,
            error_code::NOT_LEADER_OR_FOLLOWER | error_code::LEADER_NOT_AVAILABLE | error_code::UNKNOWN_TOPIC_OR_PARTITION | error_code::NOT_ENOUGH_REPLICAS
        )
}

/// Whether `code` means the client's picture of the partition's leader is stale, so Metadata
/// should be asked again before the retry.
pub fn needs_metadata(code: i16) -> bool {
    matches!(code, error_code::NOT_LEADER_OR_FOLLOWER | error_code::LEADER_NOT_AVAILABLE | error_code::UNKNOWN_TOPIC_OR_PARTITION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let start = Instant::now();
        let mut retry = Retry::new(DEFAULT_POLICY, start);
        let delays: Vec<Duration> = (0..7).map(|_| retry.next_delay(start).unwrap()).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]);
        assert_eq!(retry.attempts(), 7);
    }

    #[test]
    fn no_retry_starts_past_the_bound() {
        let policy = Policy { backoff: ms(100), backoff_max: ms(1000), bound: ms(2500) };
        let start = Instant::now();
        let mut retry = Retry::new(policy, start);
        let mut now = start;
        let mut delays = Vec::new();
        while let Some(delay) = retry.next_delay(now) {
            delays.push(delay);
            now += delay;
        }
        // 100 + 200 + 400 + 800 = 1500; another 1000 would reach exactly 2500, the bound.
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000)]);
        assert_eq!(now - start, ms(2500));
        assert_eq!(retry.next_delay(now), None);
        assert_eq!(retry.attempts(), 5, "a refused retry is not counted");
    }

    #[test]
    fn time_spent_on_the_requests_counts_toward_the_bound() {
        let policy = Policy { backoff: ms(100), backoff_max: ms(1000), bound: ms(1000) };
        let start = Instant::now();
        let mut retry = Retry::new(policy, start);
        assert_eq!(retry.next_delay(start + ms(850)), Some(ms(100)));
        assert_eq!(retry.next_delay(start + ms(850)), None, "850 + 200 is past the bound");
    }

    #[test]
    fn a_huge_attempt_count_does_not_overflow() {
        let policy = Policy { backoff: ms(100), backoff_max: ms(1000), bound: Duration::MAX };
        let start = Instant::now();
        let mut retry = Retry::new(policy, start);
        for _ in 0..100 {
            assert!(retry.next_delay(start).unwrap() <= ms(1000));
        }
    }

    #[test]
    fn produce_retries_only_what_was_not_appended() {
        for code in [error_code::NOT_LEADER_OR_FOLLOWER, error_code::LEADER_NOT_AVAILABLE, error_code::UNKNOWN_TOPIC_OR_PARTITION, 19] {
            assert!(produce_retriable(code), "{code}");
        }
        // NOT_ENOUGH_REPLICAS_AFTER_APPEND (20) and REQUEST_TIMED_OUT were appended, or may have been.
        for code in [20, error_code::REQUEST_TIMED_OUT, error_code::CORRUPT_MESSAGE, error_code::MESSAGE_TOO_LARGE, error_code::NONE] {
            assert!(!produce_retriable(code), "{code}");
        }
        assert!(needs_metadata(error_code::NOT_LEADER_OR_FOLLOWER));
        assert!(!needs_metadata(19));
    }
}
