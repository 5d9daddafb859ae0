//! AlterConfigs and IncrementalAlterConfigs on the controller: validate every change against
//! Kafka's rules, then change the topic's overrides or the dynamic broker configs in the cluster
//! metadata, which the controller persists and broadcasts (so the change survives a restart and
//! every shard applies it at once).

use std::collections::BTreeMap;

use shardlog_protocol::error_code as ec;

use super::ConfigAlteration;
use crate::groups::configs as gc;
use crate::metadata::ClusterMetadata;
use crate::shard::Shard;
use crate::topic_config::{self as tc, RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};

/// Per resource (name, error code, message), and whether the metadata changed.
pub fn alter(shard: &Shard, meta: &mut ClusterMetadata, resources: &[ConfigAlteration], validate_only: bool) -> (Vec<(String, i16, Option<String>)>, bool) {
    let mut results = Vec::with_capacity(resources.len());
    let mut changed = false;
    for r in resources {
        let outcome = match r.resource_type {
            RESOURCE_TOPIC => alter_topic(meta, r, validate_only),
            RESOURCE_BROKER => alter_broker(shard, meta, r, validate_only),
            RESOURCE_GROUP => alter_group(shard, meta, r, validate_only),
            other => {
                Err((ec::INVALID_REQUEST, format!("Altering configs of resource type {other} is not supported; use TOPIC (2), BROKER (4) or GROUP (32).")))
            }
        };
        match outcome {
            Ok(c) => {
                changed |= c;
                results.push((r.resource_name.clone(), ec::NONE, None));
            }
            Err((code, message)) => {
                tracing::info!(resource_type = r.resource_type, resource = %r.resource_name, error = %message, "config change refused");
                results.push((r.resource_name.clone(), code, Some(message)));
            }
        }
    }
    (results, changed)
}

/// The new map after `r`'s changes: AlterConfigs replaces everything, IncrementalAlterConfigs
/// edits what is there.
fn changed_map(
    current: &BTreeMap<String, String>,
    r: &ConfigAlteration,
    kind_of: impl Fn(&str) -> Option<tc::Kind>,
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let mut next = if r.incremental { current.clone() } else { BTreeMap::new() };
    if !r.incremental && r.ops.iter().any(|(_, op, _)| *op != tc::OP_SET) {
        return Err((ec::INVALID_REQUEST, String::from("AlterConfigs only sets values")));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((name, _, _)) = r.ops.iter().find(|(name, _, _)| !seen.insert(name.as_str())) {
        return Err((ec::INVALID_REQUEST, format!("Error due to duplicate config keys: {name}")));
    }
    tc::apply_incremental(&mut next, &r.ops, kind_of).map_err(|(request, m)| (if request { ec::INVALID_REQUEST } else { ec::INVALID_CONFIG }, m))?;
    Ok(next)
}

fn alter_topic(meta: &mut ClusterMetadata, r: &ConfigAlteration, validate_only: bool) -> Result<bool, (i16, String)> {
    let Some(topic) = meta.topics.get_mut(&r.resource_name) else {
        return Err((ec::UNKNOWN_TOPIC_OR_PARTITION, format!("Topic {} does not exist.", r.resource_name)));
    };
    for (name, _, _) in &r.ops {
        if tc::topic_def(name).is_none() {
            return Err((ec::INVALID_CONFIG, format!("Unknown topic config name: {name}")));
        }
    }
    let next = changed_map(&topic.configs, r, |n| tc::topic_def(n).map(|d| d.kind))?;
    tc::validate_topic_configs(&next).map_err(|m| (ec::INVALID_CONFIG, m))?;
    if validate_only || next == topic.configs {
        return Ok(false);
    }
    tracing::info!(topic = %r.resource_name, configs = ?next, "topic configs changed");
    topic.configs = next;
    Ok(true)
}

/// A group's configs may be set before the group exists (Kafka keeps them by name); they are
/// checked against this controller's `group.consumer.*` bounds.
fn alter_group(shard: &Shard, meta: &mut ClusterMetadata, r: &ConfigAlteration, validate_only: bool) -> Result<bool, (i16, String)> {
    if r.resource_name.is_empty() {
        return Err((ec::INVALID_REQUEST, String::from("Group name must not be empty")));
    }
    if let Some((name, _, _)) = r.ops.iter().find(|(name, _, _)| !gc::is_group_config(name)) {
        return Err((ec::INVALID_CONFIG, format!("Unknown group config name: {name}; a group has {:?}", gc::GROUP_CONFIG_NAMES)));
    }
    let empty = BTreeMap::new();
    let current = meta.group_configs.get(&r.resource_name).unwrap_or(&empty);
    let next = changed_map(current, r, gc::kind)?;
    gc::validate(&shard.config.groups, &next).map_err(|m| (ec::INVALID_CONFIG, m))?;
    if validate_only || &next == current {
        return Ok(false);
    }
    tracing::info!(group = %r.resource_name, configs = ?next, "group configs changed");
    if next.is_empty() {
        meta.group_configs.remove(&r.resource_name);
    } else {
        meta.group_configs.insert(r.resource_name.clone(), next);
    }
    Ok(true)
}

fn alter_broker(shard: &Shard, meta: &mut ClusterMetadata, r: &ConfigAlteration, validate_only: bool) -> Result<bool, (i16, String)> {
    let this = shard.config.node_id;
    // A broker's own configs: the request reached the active controller through that broker,
    // or it names a broker that registered.
    let target = if r.resource_name.is_empty() {
        None
    } else {
        match r.resource_name.parse::<i32>() {
            Ok(id) if id == this || meta.brokers.contains_key(&id) => Some(id),
            _ => return Err((ec::INVALID_REQUEST, format!("Unexpected broker id, expected {this} or empty string, but received {}", r.resource_name))),
        }
    };
    for (name, op, value) in &r.ops {
        let checked = match (op, value) {
            (&tc::OP_DELETE, _) | (_, None) => {
                if tc::broker_dynamic(name) {
                    Ok(())
                } else {
                    tc::validate_broker_dynamic(name, "").map(|_| ())
                }
            }
            (_, Some(v)) if *op == tc::OP_SET => tc::validate_broker_dynamic(name, v),
            // APPEND and SUBTRACT: the name must be dynamic; the result is checked below.
            _ => {
                if tc::broker_dynamic(name) {
                    Ok(())
                } else {
                    tc::validate_broker_dynamic(name, "").map(|_| ())
                }
            }
        };
        checked.map_err(|(request, m)| (if request { ec::INVALID_REQUEST } else { ec::INVALID_CONFIG }, m))?;
    }
    let empty = BTreeMap::new();
    let current = match target {
        None => &meta.broker_default_configs,
        Some(id) if id == this => &meta.broker_configs,
        Some(id) => meta.other_broker_configs.get(&id).unwrap_or(&empty),
    };
    let next = changed_map(current, r, |n| tc::broker_synonym(n).map(|(d, _)| d.kind))?;
    for (k, v) in &next {
        tc::validate_broker_dynamic(k, v).map_err(|(request, m)| (if request { ec::INVALID_REQUEST } else { ec::INVALID_CONFIG }, m))?;
    }
    if validate_only || &next == current {
        return Ok(false);
    }
    tracing::info!(broker = %r.resource_name, configs = ?next, "dynamic broker configs changed");
    match target {
        None => meta.broker_default_configs = next,
        Some(id) if id == this => meta.broker_configs = next,
        Some(id) if next.is_empty() => {
            meta.other_broker_configs.remove(&id);
        }
        Some(id) => {
            meta.other_broker_configs.insert(id, next);
        }
    }
    Ok(true)
}
