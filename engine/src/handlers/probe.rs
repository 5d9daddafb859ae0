//! Request metrics: count and latency per Kafka API, on the shard that served the connection.
//! A fixed table indexed by API key: recording is two adds, no lookup.

use crate::metrics::HistogramData;
use std::cell::RefCell;

/// API keys below this are counted (Kafka's keys are below 100).
pub const API_KEYS_MAX: usize = 128;

#[derive(Debug)]
pub struct RequestProbe {
    per_api: RefCell<Vec<(u64, HistogramData)>>,
}

impl Default for RequestProbe {
    fn default() -> Self {
        RequestProbe { per_api: RefCell::new(vec![(0, HistogramData::default()); API_KEYS_MAX]) }
    }
}

impl RequestProbe {
    pub fn record(&self, api_key: i16, latency_us: u64) {
        if let Some((count, latency)) = self.per_api.borrow_mut().get_mut(api_key as usize) {
            *count += 1;
            latency.record(latency_us);
        }
    }

    /// (api key, requests, latency histogram in µs) for every API seen.
    pub fn snapshot(&self) -> Vec<(i16, u64, HistogramData)> {
        self.per_api.borrow().iter().enumerate().filter(|(_, (c, _))| *c > 0).map(|(k, (c, h))| (k as i16, *c, h.clone())).collect()
    }
}

thread_local! {
    /// This shard's request probe. Each shard is one executor pinned to one thread, so a
    /// thread-local is shard-local: the connection loop records here without a handle
    /// threaded through every layer.
    static REQUESTS: RequestProbe = RequestProbe::default();
    static PRODUCE_ORDER_VIOLATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a broken produce-order invariant (a bug; see `produce::check_order`).
pub fn produce_order_violated() {
    PRODUCE_ORDER_VIOLATIONS.with(|c| c.set(c.get() + 1));
}

pub fn produce_order_violations() -> u64 {
    PRODUCE_ORDER_VIOLATIONS.with(std::cell::Cell::get)
}

/// Records one request served by this shard.
pub fn record(api_key: i16, latency_us: u64) {
    REQUESTS.with(|p| p.record(api_key, latency_us));
}

/// This shard's requests so far (see [`RequestProbe::snapshot`]).
pub fn snapshot() -> Vec<(i16, u64, HistogramData)> {
    REQUESTS.with(RequestProbe::snapshot)
}
