//! Feature versions (KIP-584): the features this broker supports, by Kafka's names and levels,
//! and the levels a new cluster finalizes. Clients read both from ApiVersions v3+ (Kafka's
//! admin client `describeFeatures`, so `kafka-features.sh describe`), and a Kafka 4 producer
//! or consumer picks protocols by the finalized levels: so each range below claims only what
//! shardlog really does.
//!
//! Every range but kraft.version's and transaction.version's is a single level: shardlog has
//! no switch that turns those behaviours on or off, so no other level would be true.
//! kraft.version is 0 or 1 by how the quorum is named (static voters or bootstrap servers),
//! which is settled when the cluster is created. transaction.version is the one level that
//! changes what the broker does (the `__transaction_state` format and the epoch bump of
//! transactions v2), so it is finalized when the cluster is created too: 2 for a new cluster, as
//! Kafka 4 does, and 0 for a cluster that ran before shardlog knew the level (it keeps what it
//! did). An operator moves it with UpdateFeatures (`kafka-features.sh upgrade --feature
//! transaction.version=2`, or a downgrade), by Kafka's rules ([`apply_updates`]); the others
//! stay where they are.

use std::collections::BTreeMap;

/// One feature as this broker supports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub level_min: i16,
    pub level_max: i16,
    /// The level a new cluster finalizes.
    pub level_default: i16,
}

pub const METADATA_VERSION: &str = "metadata.version";
pub const KRAFT_VERSION: &str = "kraft.version";
pub const TRANSACTION_VERSION: &str = "transaction.version";
/// transaction.version from which the coordinator bumps the epoch at every transaction end and
/// transactional writes add their partition themselves (KIP-890 part 2).
pub const TRANSACTION_VERSION_EPOCH_BUMP: i16 = 2;

/// Kafka 4.0's features, in Kafka's order.
pub const SUPPORTED_FEATURES: &[Feature] = &[
    // 22 is 4.0-IV0: the first Kafka 4.0 level, which KIP-848's consumer group protocol
    // (group.version 1, served here) needs. The later 4.0 levels add what shardlog does not
    // do: 4.0-IV1 eligible leader replicas (KIP-966), 4.0-IV2 the transaction.version records
    // (KIP-890), 4.0-IV3 builds on both.
    Feature { name: METADATA_VERSION, level_min: 22, level_max: 22, level_default: 22 },
    // 1 is the dynamic controller quorum (KIP-853): the voter set kept in the metadata log,
    // found through `controller.quorum.bootstrap.servers`. A cluster with one finalizes it; a
    // static `controller.quorum.voters` (and the one-node default) stays at 0, as in Kafka.
    Feature { name: KRAFT_VERSION, level_min: 0, level_max: 1, level_default: 0 },
    // 1 is the KIP-848 consumer group protocol (ConsumerGroupHeartbeat), which shardlog serves
    // and cannot turn off.
    Feature { name: "group.version", level_min: 1, level_max: 1, level_default: 1 },
    // 1 is the flexible (v1) TransactionLogValue in `__transaction_state`, and 2 adds KIP-890
    // part 2: the coordinator bumps the producer epoch at every transaction end (EndTxn v5), and
    // a transactional Produce v12 or TxnOffsetCommit v5 adds its partition to the transaction
    // on the server side. Both are gated on this level and on the request's version, so a
    // cluster at 0 (one created before this level was known) behaves as it always did.
    // Kafka gives TV 1 and 2 no dependency on metadata.version (4.0-IV2 is only the version
    // from which Kafka's tools pick TV 2 as the default), so TV 2 is finalized beside 22, which
    // stays at 4.0-IV0: the later 4.0 levels claim eligible leader replicas, which shardlog
    // does not do.
    Feature { name: TRANSACTION_VERSION, level_min: 0, level_max: 2, level_default: 2 },
    // 1 is eligible leader replicas (KIP-966), which shardlog does not track.
    Feature { name: "eligible.leader.replicas.version", level_min: 0, level_max: 0, level_default: 0 },
];

pub fn supported(name: &str) -> Option<&'static Feature> {
    SUPPORTED_FEATURES.iter().find(|f| f.name == name)
}

/// The finalized levels of a new cluster. Level 0 is left out: as in Kafka, a feature at level 0
/// is not in the finalized set.
pub fn bootstrap_levels() -> BTreeMap<String, i16> {
    SUPPORTED_FEATURES.iter().filter(|f| f.level_default > 0).map(|f| (f.name.to_string(), f.level_default)).collect()
}

/// The finalized levels of a cluster whose image predates feature records: the new cluster's,
/// except transaction.version, which stays 0 (no record, as in Kafka) so that the transactions
/// such a cluster runs keep the format and epochs they had.
pub fn levels_of_a_cluster_from_before_features() -> BTreeMap<String, i16> {
    let mut levels = bootstrap_levels();
    levels.remove(TRANSACTION_VERSION);
    levels
}

/// The finalized transaction.version in a metadata image (0 when not finalized).
pub fn transaction_version(finalized: &BTreeMap<String, i16>) -> i16 {
    finalized.get(TRANSACTION_VERSION).copied().unwrap_or(0)
}

/// The feature levels one broker supports, by name: (min, max).
pub type SupportedRanges = BTreeMap<String, (i16, i16)>;

/// Kafka's UpgradeType: 1 upgrade only, 2 safe downgrade, 3 unsafe downgrade.
pub const UPGRADE: i8 = 1;
pub const SAFE_DOWNGRADE: i8 = 2;
pub const UNSAFE_DOWNGRADE: i8 = 3;

/// One UpdateFeatures item: the level to finalize (0 takes the feature out) and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureUpdate {
    pub name: String,
    pub level: i16,
    pub upgrade_type: i8,
}

/// The finalized levels after `updates`, or why none of them is done (Kafka's
/// FeatureControlManager: all or nothing, the first refusal answers for the request). Each level
/// must be one this broker supports and every registered broker supports (`brokers`: node id
/// and its supported ranges; a registration without them is from an older shardlog, which may
/// not run a new level); a lower level needs a downgrade type, a higher one the upgrade type.
/// kraft.version and metadata.version stay where they are.
pub fn apply_updates(
    finalized: &BTreeMap<String, i16>,
    brokers: &[(i32, &SupportedRanges)],
    updates: &[FeatureUpdate],
) -> Result<BTreeMap<String, i16>, String> {
    let mut levels = finalized.clone();
    let mut seen = std::collections::HashSet::new();
    for u in updates {
        let invalid = |why: String| format!("Invalid update version {} for feature {}. {why}", u.level, u.name);
        if !seen.insert(u.name.as_str()) {
            return Err(invalid(String::from("The feature is named more than once in the request.")));
        }
        if !matches!(u.upgrade_type, UPGRADE | SAFE_DOWNGRADE | UNSAFE_DOWNGRADE) {
            return Err(invalid(String::from("The controller does not support the given upgrade type.")));
        }
        if u.level < 0 {
            return Err(invalid(String::from("A feature version cannot be less than 0.")));
        }
        let Some(feature) = supported(&u.name) else {
            return Err(invalid(String::from("The controller does not support the given feature.")));
        };
        let current = finalized.get(&u.name).copied().unwrap_or(0);
        if !(feature.level_min..=feature.level_max).contains(&u.level) {
            return Err(invalid(format!("Local controller only supports versions {}-{}", feature.level_min, feature.level_max)));
        }
        if u.level != current && (feature.name == KRAFT_VERSION || feature.name == METADATA_VERSION) {
            let how = if feature.name == KRAFT_VERSION {
                "by static controller.quorum.voters or controller.quorum.bootstrap.servers"
            } else {
                "one level is supported"
            };
            return Err(invalid(format!("{} is settled when the cluster is formatted ({how}); shardlog does not change it", feature.name)));
        }
        if u.level < current && u.upgrade_type == UPGRADE {
            return Err(invalid(String::from(
                "Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade.",
            )));
        }
        if u.level > current && u.upgrade_type != UPGRADE {
            return Err(invalid(String::from("Can't downgrade to a newer version.")));
        }
        if u.level != current {
            for (node_id, ranges) in brokers {
                match ranges.get(&u.name) {
                    _ if ranges.is_empty() => {
                        return Err(invalid(format!(
                            "Broker {node_id} registered without the feature levels it supports (a shardlog older than this one): upgrade it first"
                        )))
                    }
                    Some((min, max)) if (*min..=*max).contains(&u.level) || u.level == 0 => {}
                    Some((min, max)) => return Err(invalid(format!("Broker {node_id} only supports versions {min}-{max}"))),
                    None if u.level == 0 => {}
                    None => return Err(invalid(format!("Broker {node_id} does not support this feature"))),
                }
            }
        }
        if u.level == 0 {
            levels.remove(&u.name);
        } else {
            levels.insert(u.name.clone(), u.level);
        }
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_follow_kafkas_rules_all_or_nothing() {
        let finalized: BTreeMap<String, i16> = [("metadata.version".to_string(), 22), ("transaction.version".to_string(), 2)].into();
        let ours: BTreeMap<String, (i16, i16)> = SUPPORTED_FEATURES.iter().map(|f| (f.name.to_string(), (f.level_min, f.level_max))).collect();
        let old = BTreeMap::new();
        let brokers = [(1, &ours), (2, &ours)];
        let update = |name: &str, level, upgrade_type| FeatureUpdate { name: name.into(), level, upgrade_type };
        let tv = "transaction.version";
        // A downgrade needs a downgrade type; then it takes the level (0: out of the set).
        let e = apply_updates(&finalized, &brokers, &[update(tv, 1, UPGRADE)]).unwrap_err();
        assert!(e.contains("without setting the upgrade type"), "{e}");
        assert_eq!(apply_updates(&finalized, &brokers, &[update(tv, 1, SAFE_DOWNGRADE)]).unwrap().get(tv), Some(&1));
        assert!(!apply_updates(&finalized, &brokers, &[update(tv, 0, SAFE_DOWNGRADE)]).unwrap().contains_key(tv));
        let lower: BTreeMap<String, i16> = [("metadata.version".to_string(), 22)].into();
        assert!(apply_updates(&lower, &brokers, &[update(tv, 2, SAFE_DOWNGRADE)]).unwrap_err().contains("newer version"));
        assert_eq!(apply_updates(&lower, &brokers, &[update(tv, 2, UPGRADE)]).unwrap().get(tv), Some(&2));
        // Refused: a level nobody supports, an unknown feature, the quorum's own, a broker of an
        // older version, a bad type, a name twice; none changes anything.
        assert!(apply_updates(&lower, &brokers, &[update(tv, 3, UPGRADE)]).unwrap_err().contains("only supports versions 0-2"));
        assert!(apply_updates(&lower, &brokers, &[update("no.such", 1, UPGRADE)]).unwrap_err().contains("does not support the given feature"));
        assert!(apply_updates(&lower, &brokers, &[update(KRAFT_VERSION, 1, UPGRADE)]).unwrap_err().contains("settled"));
        assert!(apply_updates(&lower, &brokers, &[update(METADATA_VERSION, 22, UPGRADE)]).is_ok());
        let mixed = [(1, &ours), (3, &old)];
        assert!(apply_updates(&lower, &mixed, &[update(tv, 2, UPGRADE)]).unwrap_err().contains("Broker 3 registered without"));
        assert!(apply_updates(&lower, &brokers, &[update(tv, 2, 4)]).unwrap_err().contains("upgrade type"));
        assert!(apply_updates(&lower, &brokers, &[update(tv, 2, UPGRADE), update(tv, 1, UPGRADE)]).unwrap_err().contains("more than once"));
        let e = apply_updates(&lower, &brokers, &[update(tv, 2, UPGRADE), update("no.such", 1, UPGRADE)]).unwrap_err();
        assert!(e.starts_with("Invalid update version 1 for feature no.such."), "{e}");
    }

    #[test]
    fn defaults_lie_in_the_supported_ranges_and_level_zero_is_not_finalized() {
        for f in SUPPORTED_FEATURES {
            assert!(f.level_min <= f.level_default && f.level_default <= f.level_max, "{f:?}");
        }
        let levels = bootstrap_levels();
        assert_eq!(levels.get(METADATA_VERSION), Some(&22));
        assert_eq!(levels.get("group.version"), Some(&1));
        assert_eq!(levels.get(TRANSACTION_VERSION), Some(&2), "a new cluster runs transactions v2, as Kafka 4's do");
        assert!(!levels.contains_key("kraft.version"), "{levels:?}");
        assert_eq!(transaction_version(&levels), 2);
    }

    #[test]
    fn a_cluster_from_before_feature_records_keeps_transactions_v1() {
        let levels = levels_of_a_cluster_from_before_features();
        assert_eq!(levels.get(METADATA_VERSION), Some(&22));
        assert!(!levels.contains_key(TRANSACTION_VERSION), "{levels:?}");
        assert_eq!(transaction_version(&levels), 0);
    }
}
