//! Placement over cluster maps: determinism, zone spreading, weights, and how little moves when
//! the map changes. Figures are printed (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_core::cluster::{ClusterMap, NodeId, NodeInfo, Role, Roles, StagedChanges};
use cairn_core::placement::{place, place_chunk, place_manifest, Placer};
use cairn_core::ChunkId;

/// (id, zone, weight) → a valid map; rf as given.
fn map(nodes: &[(NodeId, &str, u32)], rf: u8) -> ClusterMap {
    let upsert = nodes
        .iter()
        .map(|&(id, zone, weight)| NodeInfo {
            weight,
            ..NodeInfo::new(id, format!("n{id}"), format!("10.0.0.{id}:7400"), zone)
        })
        .collect();
    ClusterMap::new("site")
        .apply(&StagedChanges {
            upsert,
            set_rf: Some(rf),
            ..StagedChanges::default()
        })
        .unwrap()
}

fn key(i: u64) -> [u8; 32] {
    *ChunkId::of(&i.to_le_bytes()).as_bytes()
}

fn zones_of(map: &ClusterMap, ids: &[NodeId]) -> Vec<String> {
    ids.iter()
        .map(|id| map.node(*id).unwrap().zone.clone())
        .collect()
}

#[test]
fn deterministic_and_independent_of_map_history() {
    let nodes = [
        (1, "a", 1),
        (2, "b", 2),
        (3, "c", 1),
        (4, "a", 1),
        (5, "b", 3),
    ];
    let m1 = map(&nodes, 3);
    let mut reversed = nodes;
    reversed.reverse();
    // Same nodes reached through another history: one at a time, at a later epoch.
    let mut m2 = map(&reversed[..3], 3);
    for &(id, zone, weight) in &reversed[3..] {
        m2 = m2
            .apply(&StagedChanges {
                upsert: vec![NodeInfo {
                    weight,
                    ..NodeInfo::new(id, format!("n{id}"), format!("10.0.0.{id}:7400"), zone)
                }],
                ..StagedChanges::default()
            })
            .unwrap();
    }
    assert_ne!(m1.epoch, m2.epoch);
    let p = Placer::new(&m1, Role::Chunk);
    for i in 0..2_000 {
        let k = key(i);
        let a = place(&m1, &k, 3);
        assert_eq!(a.len(), 3);
        assert_eq!(a, place(&m1, &k, 3));
        assert_eq!(a, place(&m2, &k, 3));
        assert_eq!(a, p.place(&k, 3));
        let distinct: BTreeSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 3, "replicas are distinct nodes");
        // The primary is the same whatever the replica count.
        assert_eq!(place(&m1, &k, 1)[0], a[0]);
        // A longer list extends a shorter one's set (the first n are the top n).
        let all = place(&m1, &k, 5);
        assert_eq!(all.len(), 5);
        assert_eq!(&all[..3], &a[..]);
    }
    // Placement spreads keys: every node is primary for some key.
    let primaries: BTreeSet<_> = (0..2_000).map(|i| place(&m1, &key(i), 1)[0]).collect();
    assert_eq!(primaries.len(), 5);
    let id = ChunkId::of(b"chunk");
    assert_eq!(place_chunk(&m1, &id), place(&m1, id.as_bytes(), 3));
}

#[test]
fn three_zones_rf3_puts_one_replica_in_each_zone() {
    // Two nodes per zone, uneven weights: still one replica per zone.
    let m = map(
        &[
            (1, "a", 1),
            (2, "a", 5),
            (3, "b", 1),
            (4, "b", 1),
            (5, "c", 3),
            (6, "c", 1),
        ],
        3,
    );
    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    for i in 0..10_000 {
        let ids = place(&m, &key(i), 3);
        let zones: BTreeSet<_> = zones_of(&m, &ids).into_iter().collect();
        assert_eq!(zones.len(), 3, "key {i}: {ids:?}");
        for id in ids {
            *per_node.entry(id).or_default() += 1;
        }
    }
    println!("3 zones, rf 3, replicas per node over 10000 keys: {per_node:?}");
    // Within a zone, the heavier node takes the larger share.
    assert!(per_node[&2] > 3 * per_node[&1]);
    assert!(per_node[&5] > 2 * per_node[&6]);
}

#[test]
fn fewer_zones_than_replicas() {
    let m = map(
        &[
            (1, "a", 1),
            (2, "a", 1),
            (3, "b", 1),
            (4, "b", 1),
            (5, "a", 1),
        ],
        3,
    );
    for i in 0..5_000 {
        let ids = place(&m, &key(i), 3);
        let zones = zones_of(&m, &ids);
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3);
        // Both zones are used, and the first two replicas are in different zones.
        assert_ne!(zones[0], zones[1], "key {i}: {ids:?}");
        assert_eq!(zones.iter().collect::<BTreeSet<_>>().len(), 2);
    }
    // One zone: plain rendezvous over the nodes.
    let one = map(&[(1, "a", 1), (2, "a", 1), (3, "a", 1)], 2);
    for i in 0..1_000 {
        assert_eq!(place(&one, &key(i), 2).len(), 2);
    }
}

#[test]
fn shares_follow_weights() {
    // One zone, one replica: the share of each node is weight / total weight.
    let m = map(&[(1, "a", 2), (2, "a", 1), (3, "a", 1), (4, "a", 1)], 1);
    let mut count: HashMap<NodeId, u64> = HashMap::new();
    let keys = 100_000u64;
    for i in 0..keys {
        *count.entry(place(&m, &key(i), 1)[0]).or_default() += 1;
    }
    let light = (count[&2] + count[&3] + count[&4]) as f64 / 3.0;
    let ratio = count[&1] as f64 / light;
    println!(
        "weights 2,1,1,1 over {keys} keys: {:?}; weight-2 / mean weight-1 = {ratio:.3}",
        [count[&1], count[&2], count[&3], count[&4]]
    );
    assert!((1.9..=2.1).contains(&ratio), "ratio {ratio}");
    for id in [2, 3, 4] {
        let share = count[&id] as f64 / keys as f64;
        assert!((0.19..=0.21).contains(&share), "node {id}: {share}");
    }

    // Zones of one node each, rf 1: zones do not distort the shares.
    let m = map(&[(1, "a", 2), (2, "b", 1), (3, "c", 1)], 1);
    let heavy = (0..keys).filter(|&i| place(&m, &key(i), 1)[0] == 1).count();
    let share = heavy as f64 / keys as f64;
    println!("weights 2,1,1 in 3 zones, rf 1: weight-2 share {share:.4} (ideal 0.5)");
    assert!((0.49..=0.51).contains(&share), "{share}");
}

#[test]
fn drained_node_gets_nothing_and_equals_removal() {
    let nodes = [(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "a", 0)];
    let drained = map(&nodes, 2);
    let removed = map(&nodes[..3], 2);
    for i in 0..5_000 {
        let k = key(i);
        let ids = place(&drained, &k, 4);
        assert!(!ids.contains(&4), "drained node placed for key {i}");
        assert_eq!(ids, place(&removed, &k, 4));
    }
    assert_eq!(Placer::new(&drained, Role::Chunk).candidates(), 3);
}

#[test]
fn manifests_go_to_manifest_nodes_only() {
    let mut m = map(&[(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "a", 1)], 2);
    let chunk_only = m.node(4).unwrap().clone();
    m = m
        .apply(&StagedChanges {
            upsert: vec![NodeInfo {
                roles: Roles::NONE.with(Role::Chunk),
                ..chunk_only
            }],
            ..StagedChanges::default()
        })
        .unwrap();
    let mut differs = 0;
    for i in 0..3_000u64 {
        let k = format!("photos/{i}.jpg");
        let ids = place_manifest(&m, "bucket", k.as_bytes(), m.manifest_replicas());
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&4), "node 4 has no manifest role");
        assert_eq!(ids, place_manifest(&m, "bucket", k.as_bytes(), 2));
        if ids != place_manifest(&m, "other", k.as_bytes(), 2) {
            differs += 1;
        }
    }
    // The bucket is part of the key: placements for another bucket are independent.
    assert!(differs > 1_500, "{differs}");
}

/// Moves between `before` and `after` for `keys` keys at `n` replicas: (replicas moved, keys
/// whose primary changed). Asserts that every replica that appears is on `added` (when given)
/// and every replica that disappears was on `removed` (when given).
fn movement(
    before: &ClusterMap,
    after: &ClusterMap,
    n: usize,
    keys: u64,
    added: Option<NodeId>,
    removed: Option<NodeId>,
) -> (usize, usize) {
    let (pb, pa) = (
        Placer::new(before, Role::Chunk),
        Placer::new(after, Role::Chunk),
    );
    let (mut moved, mut primaries) = (0, 0);
    for i in 0..keys {
        let k = key(i);
        let (b, a) = (pb.place(&k, n), pa.place(&k, n));
        assert_eq!(b.len(), a.len());
        let (sb, sa): (BTreeSet<_>, BTreeSet<_>) = (b.iter().collect(), a.iter().collect());
        let gained: Vec<_> = sa.difference(&sb).collect();
        let lost: Vec<_> = sb.difference(&sa).collect();
        assert_eq!(gained.len(), lost.len());
        if let Some(x) = added {
            assert!(gained.iter().all(|g| ***g == x), "key {i}: {b:?} -> {a:?}");
        }
        if let Some(x) = removed {
            assert!(lost.iter().all(|l| ***l == x), "key {i}: {b:?} -> {a:?}");
        }
        moved += gained.len();
        if a[0] != b[0] {
            primaries += 1;
            // The primary changes only to the added node or away from the removed one.
            assert!(Some(a[0]) == added || Some(b[0]) == removed, "key {i}");
        }
    }
    (moved, primaries)
}

#[test]
fn adding_a_node_moves_a_fair_share_only_to_it() {
    let keys = 20_000;
    // 3 nodes, 3 zones, rf 3 → a 4th node in a 4th zone: it should hold 3/4 of the keys, so a
    // quarter of all replicas move, each from an old node to the new one.
    let three = map(&[(1, "a", 1), (2, "b", 1), (3, "c", 1)], 3);
    let four = map(&[(1, "a", 1), (2, "b", 1), (3, "c", 1), (4, "d", 1)], 3);
    let (moved, primaries) = movement(&three, &four, 3, keys, Some(4), None);
    let frac = moved as f64 / (3 * keys) as f64;
    let pfrac = primaries as f64 / keys as f64;
    println!("3->4 nodes (4 zones), rf 3: {frac:.4} of replicas moved (ideal 0.25), primary changed for {pfrac:.4} (ideal 0.25)");
    assert!((0.24..=0.26).contains(&frac), "{frac}");
    assert!((0.24..=0.26).contains(&pfrac), "{pfrac}");

    // Same with one zone and rf 1: a quarter of the keys move, all to the new node.
    let three = map(&[(1, "a", 1), (2, "a", 1), (3, "a", 1)], 1);
    let four = map(&[(1, "a", 1), (2, "a", 1), (3, "a", 1), (4, "a", 1)], 1);
    let (moved, _) = movement(&three, &four, 1, keys, Some(4), None);
    let frac = moved as f64 / keys as f64;
    println!("3->4 nodes (1 zone), rf 1: {frac:.4} of keys moved (ideal 0.25)");
    assert!((0.24..=0.26).contains(&frac), "{frac}");

    // 6 nodes in 3 zones, rf 2, a 7th node joins zone a: replicas only move to it, and it
    // ends up with no more than a fair share (2/7 of keys at most).
    let six = [
        (1, "a", 1),
        (2, "a", 1),
        (3, "b", 1),
        (4, "b", 1),
        (5, "c", 1),
        (6, "c", 1),
    ];
    let mut seven = six.to_vec();
    seven.push((7, "a", 1));
    let (moved, _) = movement(&map(&six, 2), &map(&seven, 2), 2, keys, Some(7), None);
    let frac = moved as f64 / (2 * keys) as f64;
    println!("6->7 nodes (3 zones, joins zone a), rf 2: {frac:.4} of replicas moved");
    assert!(frac > 0.05 && frac <= 2.0 / 7.0, "{frac}");

    // Raising a weight only moves replicas to that node.
    let mut heavier = six.to_vec();
    heavier[2].2 = 3;
    let (moved, _) = movement(&map(&six, 2), &map(&heavier, 2), 2, keys, Some(3), None);
    println!(
        "weight 1->3 on one of 6 nodes, rf 2: {} replicas moved to it",
        moved
    );
    assert!(moved > 0);
}

#[test]
fn removing_a_node_moves_only_what_it_held() {
    let keys = 20_000;
    let five = [
        (1, "a", 1),
        (2, "a", 1),
        (3, "b", 1),
        (4, "b", 1),
        (5, "c", 1),
    ];
    let before = map(&five, 3);
    let without_2 = [five[0], five[2], five[3], five[4]];
    let after = map(&without_2, 3);
    let held = (0..keys)
        .filter(|&i| place(&before, &key(i), 3).contains(&2))
        .count();
    let (moved, _) = movement(&before, &after, 3, keys, None, Some(2));
    println!(
        "5->4 nodes, rf 3: {moved} replicas moved; the removed node held {held} of {keys} keys"
    );
    assert_eq!(moved, held, "exactly the removed node's replicas move");
    // Node 2 shares zone a with node 1, so it holds a replica of about half the keys.
    let share = held as f64 / keys as f64;
    assert!((0.45..=0.55).contains(&share), "{share}");
}
