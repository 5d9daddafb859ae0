//! Dynamic group configs (KIP-848, config resource type GROUP): a consumer group's own
//! `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms`, set with
//! IncrementalAlterConfigs and kept in the cluster metadata. Each falls back to the broker's
//! `group.consumer.*` value and must lie within its `group.consumer.min/max.*` bounds.

use std::collections::BTreeMap;

use crate::config::GroupConfig;
use crate::topic_config::{ConfigSource, ConfigType, DescribedConfig, Kind};

pub const CONSUMER_SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const CONSUMER_HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// The keys Kafka 4.0 accepts for consumer groups. Its `share.*` keys belong to share groups,
/// which shardlog does not have, so they are refused as unknown rather than kept unused.
pub const GROUP_CONFIG_NAMES: &[&str] = &[CONSUMER_SESSION_TIMEOUT_MS, CONSUMER_HEARTBEAT_INTERVAL_MS];

const SESSION_DOC: &str = "The timeout to detect client failures when using the consumer group protocol.";
const HEARTBEAT_DOC: &str = "The heartbeat interval given to the members of a consumer group.";

pub fn is_group_config(name: &str) -> bool {
    GROUP_CONFIG_NAMES.contains(&name)
}

/// For IncrementalAlterConfigs: both keys are ints, so APPEND and SUBTRACT are refused.
pub fn kind(name: &str) -> Option<Kind> {
    is_group_config(name).then_some(Kind::Int { min: 1 })
}

/// The broker key a group key falls back to, with the broker's value.
fn broker_default(settings: &GroupConfig, name: &str) -> (&'static str, i32) {
    match name {
        CONSUMER_SESSION_TIMEOUT_MS => ("group.consumer.session.timeout.ms", settings.consumer_session_timeout_ms),
        _ => ("group.consumer.heartbeat.interval.ms", settings.consumer_heartbeat_interval_ms),
    }
}

/// The session timeout and heartbeat interval in effect for a group with these overrides.
/// Overrides were validated when set; a value that no longer parses falls back to the broker's.
pub fn effective(settings: &GroupConfig, overrides: Option<&BTreeMap<String, String>>) -> (i32, i32) {
    let get = |name: &str| overrides.and_then(|o| o.get(name)).and_then(|v| v.trim().parse::<i32>().ok()).unwrap_or(broker_default(settings, name).1);
    (get(CONSUMER_SESSION_TIMEOUT_MS), get(CONSUMER_HEARTBEAT_INTERVAL_MS))
}

/// Kafka's rules for a group's configs, on the overrides merged over the broker's defaults:
/// known keys, positive ints within the broker's bounds, and a session timeout above the
/// heartbeat interval. The message says which rule failed.
pub fn validate(settings: &GroupConfig, overrides: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in overrides {
        if !is_group_config(name) {
            return Err(format!("Unknown group config name: {name}"));
        }
        match value.trim().parse::<i32>() {
            Ok(v) if v >= 1 => {}
            _ => return Err(format!("Invalid value {value} for configuration {name}: must be an integer of at least 1")),
        }
    }
    let (session, heartbeat) = effective(settings, Some(overrides));
    let bounds = [
        (
            CONSUMER_HEARTBEAT_INTERVAL_MS,
            heartbeat,
            "group.consumer.min.heartbeat.interval.ms",
            settings.consumer_heartbeat_interval_ms_min,
            "group.consumer.max.heartbeat.interval.ms",
            settings.consumer_heartbeat_interval_ms_max,
        ),
        (
            CONSUMER_SESSION_TIMEOUT_MS,
            session,
            "group.consumer.min.session.timeout.ms",
            settings.consumer_session_timeout_ms_min,
            "group.consumer.max.session.timeout.ms",
            settings.consumer_session_timeout_ms_max,
        ),
    ];
    for (name, value, min_key, min, max_key, max) in bounds {
        if value < min {
            return Err(format!("{name}={value} must be greater than or equal to {min_key} ({min})"));
        }
        if value > max {
            return Err(format!("{name}={value} must be less than or equal to {max_key} ({max})"));
        }
    }
    if session <= heartbeat {
        return Err(format!("{CONSUMER_SESSION_TIMEOUT_MS}={session} must be greater than {CONSUMER_HEARTBEAT_INTERVAL_MS}={heartbeat}"));
    }
    Ok(())
}

/// DescribeConfigs on a GROUP resource: every group config, the group's own value (source
/// DYNAMIC_GROUP_CONFIG) or else the broker's, with the broker key as synonym.
pub fn describe(settings: &GroupConfig, properties: &BTreeMap<String, String>, overrides: Option<&BTreeMap<String, String>>) -> Vec<DescribedConfig> {
    GROUP_CONFIG_NAMES
        .iter()
        .map(|&name| {
            let (broker_key, broker_value) = broker_default(settings, name);
            let broker_source = if properties.contains_key(broker_key) { ConfigSource::StaticBroker } else { ConfigSource::Default };
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.and_then(|o| o.get(name)) {
                synonyms.push((name.to_string(), v.clone(), ConfigSource::Group));
            }
            synonyms.push((broker_key.to_string(), broker_value.to_string(), broker_source));
            let (_, value, source) = synonyms[0].clone();
            DescribedConfig {
                name: name.to_string(),
                value: Some(value),
                source,
                read_only: false,
                config_type: ConfigType::Int,
                doc: if name == CONSUMER_SESSION_TIMEOUT_MS { SESSION_DOC } else { HEARTBEAT_DOC },
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_are_checked_against_the_brokers_bounds() {
        let s = GroupConfig::default();
        assert!(validate(&s, &set(&[])).is_ok());
        assert!(validate(&s, &set(&[(CONSUMER_HEARTBEAT_INTERVAL_MS, "12000"), (CONSUMER_SESSION_TIMEOUT_MS, "50000")])).is_ok());
        let refused = |pairs: &[(&str, &str)]| validate(&s, &set(pairs)).unwrap_err();
        assert!(refused(&[(CONSUMER_HEARTBEAT_INTERVAL_MS, "4999")]).contains("group.consumer.min.heartbeat.interval.ms"));
        assert!(refused(&[(CONSUMER_HEARTBEAT_INTERVAL_MS, "15001")]).contains("group.consumer.max.heartbeat.interval.ms"));
        assert!(refused(&[(CONSUMER_SESSION_TIMEOUT_MS, "60001")]).contains("group.consumer.max.session.timeout.ms"));
        assert!(refused(&[(CONSUMER_SESSION_TIMEOUT_MS, "44999")]).contains("group.consumer.min.session.timeout.ms"));
        assert!(refused(&[(CONSUMER_SESSION_TIMEOUT_MS, "ten")]).contains("Invalid value ten"));
        assert!(refused(&[("share.session.timeout.ms", "45000")]).contains("Unknown group config name"));
        // Each within its bounds, but the session no longer than the interval.
        let wide = GroupConfig { consumer_session_timeout_ms_min: 1000, consumer_heartbeat_interval_ms_max: 50_000, ..GroupConfig::default() };
        let e = validate(&wide, &set(&[(CONSUMER_SESSION_TIMEOUT_MS, "8000"), (CONSUMER_HEARTBEAT_INTERVAL_MS, "8000")])).unwrap_err();
        assert!(e.contains("must be greater than consumer.heartbeat.interval.ms"), "{e}");
    }

    #[test]
    fn described_and_effective_values_fall_back_to_the_broker() {
        let s = GroupConfig { consumer_heartbeat_interval_ms: 6000, ..GroupConfig::default() };
        let props = set(&[("group.consumer.heartbeat.interval.ms", "6000")]);
        assert_eq!(effective(&s, None), (45_000, 6000));
        let overrides = set(&[(CONSUMER_SESSION_TIMEOUT_MS, "50000")]);
        assert_eq!(effective(&s, Some(&overrides)), (50_000, 6000));
        let d = describe(&s, &props, Some(&overrides));
        assert_eq!(d[0].name, CONSUMER_SESSION_TIMEOUT_MS);
        assert_eq!((d[0].value.as_deref(), d[0].source), (Some("50000"), ConfigSource::Group));
        assert_eq!(d[0].synonyms[1], ("group.consumer.session.timeout.ms".to_string(), "45000".to_string(), ConfigSource::Default));
        assert_eq!((d[1].value.as_deref(), d[1].source), (Some("6000"), ConfigSource::StaticBroker));
    }
}
