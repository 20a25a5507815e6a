//! Map tests: apply, validation, encoding, diff.

use super::*;
use crate::error::ErrorKind;
use crate::format::FormatError;

fn node(id: NodeId, name: &str, zone: &str) -> NodeInfo {
    NodeInfo::new(id, name, format!("10.0.0.{id}:7400"), zone)
}

fn three() -> ClusterMap {
    ClusterMap::new("eu")
        .apply(&StagedChanges {
            upsert: vec![node(1, "n1", "a"), node(2, "n2", "b"), node(3, "n3", "c")],
            ..StagedChanges::default()
        })
        .unwrap()
}

fn upsert(nodes: Vec<NodeInfo>) -> StagedChanges {
    StagedChanges {
        upsert: nodes,
        ..StagedChanges::default()
    }
}

#[test]
fn apply_bumps_epoch_and_keeps_the_base() {
    let m = three();
    assert_eq!(m.epoch, 1);
    assert_eq!(m.nodes.len(), 3);
    assert_eq!(m.replication_factor, 3);
    assert_eq!(m.write_quorum(), 2);
    let m2 = m.apply(&upsert(vec![node(4, "n4", "d")])).unwrap();
    assert_eq!(m2.epoch, 2);
    assert_eq!(
        m.nodes.len(),
        3,
        "apply does not change the map it is called on"
    );
    assert_eq!(m2.nodes.len(), 4);
    let m3 = m2
        .apply(&StagedChanges {
            remove: vec![1],
            set_rf: Some(2),
            set_write_quorum: Some(WriteQuorum::Fixed(1)),
            ..StagedChanges::default()
        })
        .unwrap();
    assert_eq!(m3.epoch, 3);
    assert!(m3.node(1).is_none());
    assert_eq!((m3.replication_factor, m3.write_quorum()), (2, 1));
}

#[test]
fn single_node_site() {
    let m = ClusterMap::single_node("home", node(7, "solo", "z")).unwrap();
    assert_eq!((m.epoch, m.replication_factor, m.write_quorum()), (1, 1, 1));
    assert_eq!(m.manifest_replicas(), 1);
    assert_eq!(m.node_by_name("solo").map(|n| n.id), Some(7));
}

#[test]
fn versioned_round_trip() {
    let mut m = three();
    m.nodes.get_mut(&2).unwrap().weight = 0;
    m.nodes.get_mut(&3).unwrap().roles = Roles::NONE.with(Role::Chunk);
    let bytes = m.encode();
    assert_eq!(bytes[0], 1);
    assert_eq!(ClusterMap::decode(&bytes).unwrap(), m);
    let staged = StagedChanges {
        upsert: vec![node(9, "n9", "x")],
        remove: vec![1],
        set_rf: Some(2),
        set_write_quorum: Some(WriteQuorum::Fixed(2)),
    };
    assert_eq!(StagedChanges::decode(&staged.encode()).unwrap(), staged);
    let mut wrong = bytes.clone();
    wrong[0] = 2;
    assert!(matches!(
        ClusterMap::decode_checked(&wrong),
        Err(MapError::Format(FormatError::UnknownVersion { .. }))
    ));
    assert!(ClusterMap::decode_checked(&bytes[..bytes.len() - 3]).is_err());
}

#[test]
fn decode_checked_refuses_invalid_maps() {
    let mut m = three();
    let n = m.nodes.remove(&3).unwrap();
    m.nodes.insert(30, n);
    let err = ClusterMap::decode_checked(&m.encode()).unwrap_err();
    assert!(matches!(err, MapError::IdMismatch { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}

fn apply_err(base: &ClusterMap, changes: StagedChanges) -> MapError {
    base.apply(&changes).unwrap_err()
}

#[test]
fn validation_errors() {
    let m = three();
    let e = apply_err(&m, upsert(vec![node(4, "n1", "d")]));
    assert!(matches!(e, MapError::DuplicateName { .. }), "{e}");
    assert!(e.to_string().contains("must be unique"));

    let mut dup = node(4, "n4", "d");
    dup.address = "10.0.0.1:7400".into();
    let e = apply_err(&m, upsert(vec![dup.clone()]));
    assert!(matches!(e, MapError::DuplicateAddress { .. }), "{e}");
    dup.address = "10.0.0.1:7401".into();
    assert!(m.apply(&upsert(vec![dup])).is_ok());

    let e = apply_err(
        &m,
        StagedChanges {
            set_rf: Some(0),
            ..StagedChanges::default()
        },
    );
    assert_eq!(e, MapError::ReplicationFactorZero);

    let e = apply_err(
        &m,
        StagedChanges {
            set_rf: Some(4),
            ..StagedChanges::default()
        },
    );
    // Majority of 4 is 3, which is fine; four chunk nodes are not there.
    assert_eq!(
        e,
        MapError::NotEnoughChunkNodes {
            rf: 4,
            available: 3
        }
    );
    assert!(e.to_string().contains("lower the replication factor"));

    let mut drained = m.node(3).unwrap().clone();
    drained.weight = 0;
    let e = apply_err(&m, upsert(vec![drained]));
    assert_eq!(
        e,
        MapError::NotEnoughChunkNodes {
            rf: 3,
            available: 2
        }
    );

    let e = apply_err(
        &m,
        StagedChanges {
            set_write_quorum: Some(WriteQuorum::Fixed(4)),
            ..StagedChanges::default()
        },
    );
    assert_eq!(e, MapError::QuorumTooLarge { quorum: 4, rf: 3 });
    let e = apply_err(
        &m,
        StagedChanges {
            set_write_quorum: Some(WriteQuorum::Fixed(0)),
            ..StagedChanges::default()
        },
    );
    assert_eq!(e, MapError::QuorumZero);

    let chunk_only: Vec<NodeInfo> = m
        .nodes
        .values()
        .map(|n| NodeInfo {
            roles: Roles::NONE.with(Role::Chunk),
            ..n.clone()
        })
        .collect();
    assert_eq!(
        apply_err(&m, upsert(chunk_only.clone())),
        MapError::NoManifestNode
    );
    let mut one_manifest = chunk_only;
    one_manifest[0].roles = Roles::ALL;
    let e = apply_err(&m, upsert(one_manifest));
    assert_eq!(
        e,
        MapError::NotEnoughManifestNodes {
            quorum: 2,
            available: 1
        }
    );

    let mut none = node(4, "n4", "d");
    none.roles = Roles::NONE;
    assert!(matches!(
        apply_err(&m, upsert(vec![none])),
        MapError::NoRoles { .. }
    ));

    for bad in ["N4", "", "-x", "a.b", &"x".repeat(64)] {
        let e = apply_err(&m, upsert(vec![node(4, bad, "d")]));
        assert!(
            matches!(e, MapError::InvalidName { what: "node", .. }),
            "{bad}: {e}"
        );
        let e = apply_err(&m, upsert(vec![node(4, "n4", bad)]));
        assert!(
            matches!(e, MapError::InvalidName { what: "zone", .. }),
            "{bad}: {e}"
        );
    }
    let e = ClusterMap::new("Bad Site")
        .apply(&upsert(vec![node(1, "n1", "a")]))
        .unwrap_err();
    assert!(matches!(e, MapError::InvalidName { what: "site", .. }));

    let e = apply_err(&m, upsert(vec![node(MAX_NODE_ID + 1, "n4", "d")]));
    assert!(matches!(e, MapError::InvalidNodeId { .. }));
    assert!(m.apply(&upsert(vec![node(MAX_NODE_ID, "n4", "d")])).is_ok());
}

#[test]
fn addresses() {
    let m = three();
    for ok in [
        "host.example:1",
        "[fd00::5]:7400",
        "10.1.2.3:65535",
        "Node-X:80",
    ] {
        let mut n = node(4, "n4", "d");
        n.address = ok.into();
        assert!(m.apply(&upsert(vec![n])).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "host",
        "host:",
        ":7400",
        "host:0",
        "host:65536",
        "host:+80",
        "fd00::5:7400",
        "[nothex]:7400",
        "a b:1",
    ] {
        let mut n = node(4, "n4", "d");
        n.address = bad.into();
        let e = apply_err(&m, upsert(vec![n]));
        assert!(matches!(e, MapError::InvalidAddress { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("use host:port"));
    }
    // Host names compare without case.
    let mut n = node(4, "n4", "d");
    n.address = "HOST:1".into();
    let m2 = m.apply(&upsert(vec![n])).unwrap();
    let mut n = node(5, "n5", "d");
    n.address = "host:1".into();
    assert!(matches!(
        apply_err(&m2, upsert(vec![n])),
        MapError::DuplicateAddress { .. }
    ));
}

#[test]
fn staged_change_errors() {
    let m = three();
    let e = apply_err(
        &m,
        StagedChanges {
            remove: vec![42],
            ..StagedChanges::default()
        },
    );
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("00000000002a"), "{e}");
    let e = apply_err(&m, upsert(vec![node(4, "n4", "d"), node(4, "n5", "e")]));
    assert!(matches!(e, MapError::StagedTwice { .. }));
    let e = apply_err(
        &m,
        StagedChanges {
            upsert: vec![node(1, "n1", "a")],
            remove: vec![1],
            ..StagedChanges::default()
        },
    );
    assert!(matches!(e, MapError::StagedTwice { .. }));
    assert_eq!(apply_err(&m, StagedChanges::default()), MapError::NoChange);
    assert_eq!(
        apply_err(&m, upsert(vec![m.node(2).unwrap().clone()])),
        MapError::NoChange
    );
    let mut last = m.clone();
    last.epoch = u64::MAX;
    assert!(matches!(
        apply_err(&last, upsert(vec![node(4, "n4", "d")])),
        MapError::EpochExhausted { .. }
    ));
    // An empty map is not valid on its own.
    assert!(ClusterMap::new("eu").validate().is_err());
}

#[test]
fn diff_says_what_changed() {
    let m = three();
    assert!(m.diff(&m).is_empty());
    let mut n1 = m.node(1).unwrap().clone();
    n1.weight = 0;
    n1.zone = "b".into();
    let m2 = m
        .apply(&StagedChanges {
            upsert: vec![n1, node(4, "n4", "d")],
            remove: vec![2],
            set_rf: Some(2),
            set_write_quorum: None,
        })
        .unwrap();
    let d = m.diff(&m2);
    // Majority of 3 and of 2 are both 2, so the write quorum is not reported as changed.
    let expected = "epoch 1 -> 2
  ~ replication factor 3 -> 2
  ~ node `n1` (000000000001): zone a -> b; weight 1 -> 0 (drained)
  - node `n2` (000000000002) at 10.0.0.2:7400, zone b, weight 1, roles chunk,manifest,s3
  + node `n4` (000000000004) at 10.0.0.4:7400, zone d, weight 1, roles chunk,manifest,s3
";
    assert_eq!(d.to_string(), expected);
    assert_eq!(d.changes.len(), 4);
    let m3 = m2
        .apply(&StagedChanges {
            set_write_quorum: Some(WriteQuorum::Fixed(1)),
            ..StagedChanges::default()
        })
        .unwrap();
    assert!(m2
        .diff(&m3)
        .to_string()
        .contains("~ write quorum majority (2) -> 1 (1)"));
    let back = m2.diff(&m).to_string();
    assert!(back.contains("weight 0 -> 1 (undrained)"), "{back}");
}

#[test]
fn roles_parse_and_print() {
    assert_eq!(
        "chunk, s3".parse::<Roles>().unwrap().to_string(),
        "chunk,s3"
    );
    assert_eq!("all".parse::<Roles>().unwrap(), Roles::ALL);
    assert!("".parse::<Roles>().is_err());
    assert!("chunk,disk".parse::<Roles>().unwrap_err().contains("disk"));
    assert_eq!(Roles::NONE.to_string(), "none");
    assert_eq!(WriteQuorum::Majority.resolve(5), 3);
    assert_eq!(WriteQuorum::Majority.resolve(1), 1);
}

#[test]
fn node_count_is_bounded() {
    let many: Vec<NodeInfo> = (1..=MAX_NODES as NodeId + 1)
        .map(|id| NodeInfo::new(id, format!("n{id}"), format!("h{id}:1"), "z"))
        .collect();
    let e = ClusterMap::new("eu").apply(&upsert(many)).unwrap_err();
    assert_eq!(
        e,
        MapError::TooManyNodes {
            count: MAX_NODES + 1,
            max: MAX_NODES
        }
    );
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
}
