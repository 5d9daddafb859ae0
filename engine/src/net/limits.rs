//! `max.connections` and `max.connections.per.ip`: counts of open client connections over
//! every shard; and the rate of new connections per address, for `connection_creation_rate`
//! quotas.
//!
//! The counts are shared between shards (an atomic and a mutex-guarded map), which the
//! thread-per-core rule allows here because they are touched only when a connection opens or
//! closes, never per request: splitting the limits per shard instead would refuse a client
//! whose connections the kernel's SO_REUSEPORT hash happened to put on one shard.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::BrokerConfig;

pub struct ConnectionLimits {
    max_connections: usize,
    per_ip_max: usize,
    per_ip_overrides: std::collections::BTreeMap<IpAddr, usize>,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections accepted lately per address, for the `connection_creation_rate` quotas of
    /// ip entities: measured over every shard at once, since the kernel spreads one address's
    /// connections over the shards. (rate, when last touched in ms)
    creation: Mutex<HashMap<IpAddr, (crate::quota::manager::Rate, u64)>>,
}

/// Addresses whose connection rate is measured at most; past it the least recently seen goes.
pub const RATED_ADDRESSES_MAX: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `max.connections` reached (another shard took the last slot since the acceptor looked).
    Broker { max: usize },
    /// The address has `max.connections.per.ip` (or its override) open already.
    PerIp { max: usize },
}

/// One open connection, counted until dropped.
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.open.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(config: &BrokerConfig) -> ConnectionLimits {
        ConnectionLimits::with_limits(config.max_connections, config.max_connections_per_ip, config.max_connections_per_ip_overrides.clone())
    }

    pub fn with_limits(max_connections: usize, per_ip_max: usize, per_ip_overrides: std::collections::BTreeMap<IpAddr, usize>) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            per_ip_max,
            per_ip_overrides,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            creation: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the broker is at `max.connections`: the acceptors wait instead of accepting.
    pub fn full(&self) -> bool {
        self.open.load(Ordering::Acquire) >= self.max_connections
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Counts a new connection from `ip` against its `connection_creation_rate` quota (`quota`
    /// connections per second). Err: the throttle time, and the attempt is not counted, as in
    /// Kafka (KIP-612), which closes such a connection once that time has passed. The throttle
    /// is bounded by the span of the windows.
    pub fn count_creation(&self, ip: IpAddr, quota: Option<f64>, window: crate::quota::manager::WindowConfig, now_ms: u64) -> Result<(), u64> {
        use crate::quota::manager::{throttle_time_ms, Rate};
        let Some(bound) = quota else { return Ok(()) };
        let mut rates = self.creation.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !rates.contains_key(&ip) && rates.len() >= RATED_ADDRESSES_MAX {
            let span = window.samples as u64 * window.window_ms;
            rates.retain(|_, (_, last)| now_ms.saturating_sub(*last) < span);
            if rates.len() >= RATED_ADDRESSES_MAX {
                let oldest = rates.iter().min_by_key(|(_, (_, last))| *last).map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    rates.remove(&oldest);
                }
            }
        }
        let (rate, last) = rates.entry(ip).or_insert_with(|| (Rate::new(now_ms), now_ms));
        *last = now_ms;
        rate.record(window, 1.0, now_ms);
        let measured = rate.measure(window, now_ms);
        let throttle = throttle_time_ms(measured, bound, rate.window_ms(window, now_ms));
        if throttle == 0 {
            return Ok(());
        }
        rate.record(window, -1.0, now_ms);
        Err(throttle.min(window.samples as u64 * window.window_ms))
    }

    /// Counts a new connection from `ip`, or says which limit refuses it.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refused> {
        let per_ip_max = self.per_ip_overrides.get(&ip).copied().unwrap_or(self.per_ip_max);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= per_ip_max {
            return Err(Refused::PerIp { max: per_ip_max });
        }
        let counted = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max_connections).then_some(n + 1));
        if counted.is_err() {
            return Err(Refused::Broker { max: self.max_connections });
        }
        per_ip.insert(ip, from_ip + 1);
        Ok(ConnectionSlot { limits: self.clone(), ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_limit_and_its_override_count_open_connections_only() {
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert(ip("10.0.0.2"), 3);
        let limits = Arc::new(ConnectionLimits::with_limits(100, 2, overrides));
        let a1 = limits.try_open(ip("10.0.0.1")).unwrap();
        let _a2 = limits.try_open(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.try_open(ip("10.0.0.1")).err(), Some(Refused::PerIp { max: 2 }));
        let _b: Vec<_> = (0..3).map(|_| limits.try_open(ip("10.0.0.2")).unwrap()).collect();
        assert_eq!(limits.try_open(ip("10.0.0.2")).err(), Some(Refused::PerIp { max: 3 }));
        drop(a1);
        assert!(limits.try_open(ip("10.0.0.1")).is_ok(), "a closed connection frees its slot");
        assert_eq!(limits.open_connections(), 4, "a2 and the three of 10.0.0.2: the slot taken in the assert above was dropped again");
    }

    #[test]
    fn connection_creation_rate_throttles_an_address_over_its_quota_only() {
        let limits = ConnectionLimits::with_limits(100, 100, Default::default());
        let window = crate::quota::manager::WindowConfig { samples: 3, window_ms: 1000 };
        // 2 connections/s over a 2 s span: 4 fit at once, the fifth is throttled.
        for _ in 0..4 {
            assert_eq!(limits.count_creation(ip("10.0.0.1"), Some(2.0), window, 0), Ok(()));
        }
        let throttle = limits.count_creation(ip("10.0.0.1"), Some(2.0), window, 0).unwrap_err();
        assert!(throttle > 0 && throttle <= 3000, "{throttle}");
        // A refused attempt is not counted, another address is measured apart, and no quota
        // is no limit.
        assert!(limits.count_creation(ip("10.0.0.1"), Some(2.0), window, 0).is_err());
        assert_eq!(limits.count_creation(ip("10.0.0.2"), Some(2.0), window, 0), Ok(()));
        assert_eq!(limits.count_creation(ip("10.0.0.1"), None, window, 0), Ok(()));
        // Once the windows have passed, the address may connect again.
        assert_eq!(limits.count_creation(ip("10.0.0.1"), Some(2.0), window, 5000), Ok(()));
    }

    #[test]
    fn broker_limit_refuses_past_max_connections_and_frees_on_close() {
        let limits = Arc::new(ConnectionLimits::with_limits(2, 10, Default::default()));
        let a = limits.try_open(ip("10.0.0.1")).unwrap();
        let _b = limits.try_open(ip("10.0.0.2")).unwrap();
        assert!(limits.full());
        assert_eq!(limits.try_open(ip("10.0.0.3")).err(), Some(Refused::Broker { max: 2 }));
        drop(a);
        assert!(!limits.full());
        assert!(limits.try_open(ip("10.0.0.3")).is_ok());
    }
}
