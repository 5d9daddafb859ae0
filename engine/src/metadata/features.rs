//! Feature versions (KIP-584): the features this broker supports, by Kafka's names and levels,
//! and the levels a new cluster finalizes. Clients read both from ApiVersions v3+ (Kafka's
//! admin client `describeFeatures`, so `kafka-features.sh describe`), and a Kafka 4 producer
//! or consumer picks protocols by the finalized levels: so each range below claims only what
//! shardlog really does.
//!
//! Every range but kraft.version's is a single level: shardlog has no switch that turns any of
//! these behaviours on or off, so no other level would be true. kraft.version is 0 or 1 by how
//! the quorum is named (static voters or bootstrap servers), which is settled when the cluster
//! is created. That is why UpdateFeatures is not served: it could change nothing.

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
    // part 2 (an epoch bump at every transaction end); shardlog writes the v0 records and does
    // not bump the epoch per transaction.
    Feature { name: "transaction.version", level_min: 0, level_max: 0, level_default: 0 },
    // 1 is eligible leader replicas (KIP-966), which shardlog does not track.
    Feature { name: "eligible.leader.replicas.version", level_min: 0, level_max: 0, level_default: 0 },
];

pub fn supported(name: &str) -> Option<&'static Feature> {
    SUPPORTED_FEATURES.iter().find(|f| f.name == name)
}

/// The finalized levels of a new cluster, and of one whose image predates feature records.
/// Level 0 is left out: as in Kafka, a feature at level 0 is not in the finalized set.
pub fn bootstrap_levels() -> BTreeMap<String, i16> {
    SUPPORTED_FEATURES.iter().filter(|f| f.level_default > 0).map(|f| (f.name.to_string(), f.level_default)).collect()
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
        assert!(!levels.contains_key("transaction.version") && !levels.contains_key("kraft.version"), "{levels:?}");
    }
}
