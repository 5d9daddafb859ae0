//! Request metrics: count and latency per Kafka API, on the shard that served the connection.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::metrics::{Counter, Histogram, HistogramData};

#[derive(Debug, Default)]
pub struct RequestProbe {
    per_api: RefCell<BTreeMap<i16, (Counter, Histogram)>>,
}

impl RequestProbe {
    pub fn record(&self, api_key: i16, latency_us: u64) {
        let mut map = self.per_api.borrow_mut();
        let (count, latency) = map.entry(api_key).or_default();
        count.inc();
        latency.record(latency_us);
    }

    /// (api key, requests, latency histogram in µs)
    pub fn snapshot(&self) -> Vec<(i16, u64, HistogramData)> {
        self.per_api.borrow().iter().map(|(k, (c, h))| (*k, c.get(), h.snapshot())).collect()
    }
}
