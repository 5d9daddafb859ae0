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
//! did). That is why UpdateFeatures is not served: without it an existing cluster cannot move to
//! transactions v2, which is the one thing it could change; serving it is left for when a
//! cluster needs that upgrade.

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

#[cfg(test)]
mod tests {
    use super::*;

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
