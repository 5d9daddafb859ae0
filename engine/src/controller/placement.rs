//! Rack-aware replica assignment, as Kafka's `AdminUtils.assignReplicasToBrokersRackAware`
//! does it (the assignment of `kafka-topics.sh --create` and of CreateTopics before KRaft):
//! the brokers are listed alternating racks, partition `p`'s first replica (its preferred
//! leader) is the `(start + p)`-th broker of that list, and its other replicas follow at a
//! shift that grows once per round of the list, skipping a broker whose rack already holds a
//! replica while some rack holds none. Leaders therefore rotate over brokers and racks, every
//! broker leads the same number of a topic's partitions (within one), and with as many racks as
//! replicas the replicas of a partition are in distinct racks.
//!
//! Pure: the controller gives it the registered brokers and where to start.

use std::collections::{BTreeMap, BTreeSet};

/// Kafka's rack-alternated broker list: racks in name order, and brokers by id within a rack;
/// the first broker of each rack, then the second of each, and so on. Racks a: [1, 2] and
/// b: [3] give [1, 3, 2].
pub fn rack_alternated_brokers(brokers: &[(i32, String)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_str()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let rounds = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..rounds).flat_map(|round| by_rack.values().filter_map(move |ids| ids.get(round).copied()).collect::<Vec<_>>()).collect()
}

/// The replicas of partitions `first_partition ..< first_partition + count` (a new topic's
/// start at 0; CreatePartitions continues at the current count), each list led by its
/// preferred leader. `start`: the index in the rack-alternated list of partition 0's leader.
/// A replication factor above the number of brokers gets every broker once.
pub fn assign_rack_aware(brokers: &[(i32, String)], replication_factor: usize, count: usize, first_partition: usize, start: usize) -> Vec<Vec<i32>> {
    let arranged = rack_alternated_brokers(brokers);
    let broker_count = arranged.len();
    assert!(broker_count > 0, "rack-aware assignment needs at least one broker");
    let rack_of: BTreeMap<i32, &str> = brokers.iter().map(|(id, rack)| (*id, rack.as_str())).collect();
    let rack_count = rack_of.values().collect::<BTreeSet<_>>().len();
    let replication_factor = replication_factor.clamp(1, broker_count);
    // Kafka starts the shift where it starts the leaders, and moves it on once per full round
    // of the list (so that the second replicas do not repeat the first round's pattern). For
    // partitions added later, the rounds already passed count too.
    let mut shift = start + first_partition / broker_count;
    let mut assignment = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > first_partition && partition % broker_count == 0 {
            shift += 1;
        }
        let first = (partition + start) % broker_count;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks = BTreeSet::from([rack_of[&leader]]);
        let mut k = 0;
        while replicas.len() < replication_factor {
            // Every broker is visited within broker_count - 1 steps of k, and the first
            // replication_factor - 1 unused ones are taken at the latest then.
            let broker = arranged[replica_index(first, shift * rack_count, k, broker_count)];
            let rack = rack_of[&broker];
            let rack_ok = !racks.contains(rack) || racks.len() == rack_count;
            let broker_ok = !replicas.contains(&broker);
            // The rack rule gives way once every broker has been visited, so that a factor above
            // the number of racks still finds its replicas.
            if broker_ok && (rack_ok || k >= broker_count) {
                replicas.push(broker);
                racks.insert(rack);
            }
            k += 1;
            assert!(k < 2 * broker_count + 1, "replica search visits each broker at most twice");
        }
        assignment.push(replicas);
    }
    assignment
}

/// Kafka's `replicaIndex`: the broker `1 + (shift + k) % (n - 1)` places after the first
/// replica, never the first replica itself.
fn replica_index(first: usize, shift: usize, k: usize, broker_count: usize) -> usize {
    if broker_count == 1 {
        return first;
    }
    (first + 1 + (shift + k) % (broker_count - 1)) % broker_count
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn brokers(racks: &[(i32, &str)]) -> Vec<(i32, String)> {
        racks.iter().map(|(id, rack)| (*id, rack.to_string())).collect()
    }

    fn count_by<K: std::hash::Hash + Eq>(items: impl Iterator<Item = K>) -> HashMap<K, usize> {
        let mut counts = HashMap::new();
        for k in items {
            *counts.entry(k).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn the_broker_list_alternates_racks() {
        assert_eq!(rack_alternated_brokers(&brokers(&[(1, "a"), (2, "a"), (3, "b")])), vec![1, 3, 2]);
        // Kafka's own example: racks rack1: 0 1 2, rack2: 3, rack3: 4 5.
        let kafka = brokers(&[(0, "rack1"), (1, "rack1"), (2, "rack1"), (3, "rack2"), (4, "rack3"), (5, "rack3")]);
        assert_eq!(rack_alternated_brokers(&kafka), vec![0, 3, 4, 1, 5, 2]);
    }

    #[test]
    fn one_replica_leaders_rotate_over_the_alternated_list_and_balance_brokers() {
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b")]);
        let assignment = assign_rack_aware(&b, 1, 12, 0, 0);
        let leaders: Vec<i32> = assignment.iter().map(|r| r[0]).collect();
        assert_eq!(&leaders[..6], &[1, 3, 2, 1, 3, 2]);
        assert!(assignment.iter().all(|r| r.len() == 1));
        let per_broker = count_by(leaders.iter().copied());
        assert_eq!(per_broker, HashMap::from([(1, 4), (2, 4), (3, 4)]));
        let per_rack = count_by(leaders.iter().map(|id| if *id == 3 { "b" } else { "a" }));
        assert_eq!(per_rack, HashMap::from([("a", 8), ("b", 4)]));
        // A later start rotates the same pattern.
        let from_3: Vec<i32> = assign_rack_aware(&b, 1, 3, 0, 1).iter().map(|r| r[0]).collect();
        assert_eq!(from_3, vec![3, 2, 1]);
    }

    #[test]
    fn replicas_of_a_partition_are_in_distinct_racks_when_there_are_enough() {
        let racks = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")];
        let rack_of: HashMap<i32, &str> = racks.iter().copied().collect();
        let b = brokers(&racks);
        for start in 0..6 {
            let assignment = assign_rack_aware(&b, 3, 60, 0, start);
            for replicas in &assignment {
                let distinct: BTreeSet<&str> = replicas.iter().map(|id| rack_of[id]).collect();
                assert_eq!(distinct.len(), 3, "replicas {replicas:?} share a rack");
            }
            // Leaders: 10 per broker, 20 per rack; replicas: 30 per broker.
            assert_eq!(count_by(assignment.iter().map(|r| r[0])).values().copied().collect::<BTreeSet<_>>(), BTreeSet::from([10]));
            assert_eq!(count_by(assignment.iter().map(|r| rack_of[&r[0]])).values().copied().collect::<BTreeSet<_>>(), BTreeSet::from([20]));
            assert_eq!(count_by(assignment.iter().flatten().copied()).values().copied().collect::<BTreeSet<_>>(), BTreeSet::from([30]));
        }
    }

    #[test]
    fn a_factor_above_the_rack_count_uses_every_rack_then_other_brokers() {
        let racks = [(1, "a"), (2, "a"), (3, "b"), (4, "b")];
        let rack_of: HashMap<i32, &str> = racks.iter().copied().collect();
        let assignment = assign_rack_aware(&brokers(&racks), 3, 8, 0, 0);
        for replicas in &assignment {
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3, "{replicas:?}");
            assert_eq!(replicas.iter().map(|id| rack_of[id]).collect::<BTreeSet<_>>().len(), 2, "{replicas:?}");
        }
        // More replicas than brokers: each broker once.
        assert_eq!(assign_rack_aware(&brokers(&[(1, "a"), (2, "b")]), 3, 1, 0, 0), vec![vec![1, 2]]);
        assert_eq!(assign_rack_aware(&brokers(&[(7, "a")]), 2, 2, 0, 0), vec![vec![7], vec![7]]);
    }

    #[test]
    fn added_partitions_continue_the_rotation() {
        let b = brokers(&[(1, "a"), (2, "a"), (3, "b")]);
        let whole = assign_rack_aware(&b, 2, 9, 0, 2);
        let mut split = assign_rack_aware(&b, 2, 4, 0, 2);
        split.extend(assign_rack_aware(&b, 2, 5, 4, 2));
        assert_eq!(split, whole);
    }
}
