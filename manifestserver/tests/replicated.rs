//! The replicating manifest backend over real QUIC on loopback: three nodes each serve a
//! manifest store, and backends on those nodes (or on a gateway) keep metadata through
//! `ReplicatedManifests`.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::cluster::{ClusterMap, NodeId, NodeInfo, StagedChanges};
use cairn_core::manifest::{
    AccessKey, Bucket, Content, ObjectLock, ObjectLockConfig, Part, VersionManifest, Versioning,
};
use cairn_core::VersionId;
use cairn_manifestserver::{
    ListQuery, ManifestBackend, ManifestConfig, ManifestError, ManifestReplicationConfig,
    ManifestService, ManifestStore, ObjectLookup, Refusal, ReplicatedManifests, UploadsQuery,
    VersionsQuery, WantedVersion, WriteCondition,
};
use cairn_net::{Client, NetConfig, NodeIdentity, Server, SiteCa};
use common::*;

/// Every test body runs under this bound.
const TEST_BOUND: Duration = Duration::from_secs(120);
/// The backend's call deadline: short, so calls to stopped nodes fail quickly.
const CALL_TIMEOUT: Duration = Duration::from_millis(1500);
/// The time object lock is checked against.
const NOW: u64 = 1_800_000_000_000;

async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test did not finish in time")
}

/// Waits until `cond` holds, for at most 10 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not reached within 10 s");
}

/// A node serving its manifest store (it can stop and start again at the same address).
struct Node {
    id: NodeId,
    name: String,
    identity: NodeIdentity,
    store: Arc<ManifestStore>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    fn serve(&mut self, addr: SocketAddr) {
        // A restart binds the node's old address: the stopped endpoint may hold its socket for
        // a moment after its task ended.
        let mut tries = 0;
        let server = loop {
            let bound = Server::builder(&self.identity, NetConfig::default())
                .service(ManifestService::new(self.store.clone()))
                .bind(addr);
            match bound {
                Ok(s) => break s,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("binding {addr}: {e}"),
            }
        };
        self.addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        }));
        self.stop = Some(tx);
    }

    /// Stops serving (the store stays readable by the test).
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Serves again at the same address.
    fn restart(&mut self) {
        self.serve(self.addr);
    }

    fn info(&self) -> NodeInfo {
        NodeInfo::new(
            self.id,
            &self.name,
            self.addr.to_string(),
            format!("z{}", self.id),
        )
    }

    fn has(&self, bucket: &str, key: &str, v: VersionId) -> bool {
        self.store.get_version(bucket, key, v).unwrap().is_some()
    }
}

struct Site {
    ca: SiteCa,
    nodes: Vec<Node>,
}

impl Site {
    /// Nodes n1, n2, n3 (ids 1, 2, 3, each in its own zone).
    fn start() -> Site {
        let ca = SiteCa::generate("lyon").unwrap();
        let nodes = (1..=3)
            .map(|i| {
                let name = format!("n{i}");
                let identity = ca.issue_node(&name, &["127.0.0.1".into()]).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(
                    ManifestStore::open(dir.path(), ManifestConfig { sync_writes: false }).unwrap(),
                );
                let mut node = Node {
                    id: i,
                    name,
                    identity,
                    store,
                    addr: "127.0.0.1:0".parse().unwrap(),
                    stop: None,
                    task: None,
                    _dir: dir,
                };
                node.serve("127.0.0.1:0".parse().unwrap());
                node
            })
            .collect();
        Site { ca, nodes }
    }

    /// The map of every node, replication factor 3, majority quorum.
    fn map(&self) -> ClusterMap {
        ClusterMap::new("lyon")
            .apply(&StagedChanges {
                upsert: self.nodes.iter().map(Node::info).collect(),
                set_rf: Some(3),
                ..StagedChanges::default()
            })
            .unwrap()
    }

    fn client(&self, name: &str) -> Client {
        let identity = self.ca.issue_node(name, &["127.0.0.1".into()]).unwrap();
        Client::new(
            &identity,
            NetConfig::default(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap()
    }

    /// A backend on node `i` (0-based; its store is the local replica), or on a gateway.
    fn backend(&self, on: Option<usize>) -> Arc<ReplicatedManifests> {
        let (local, name, clock) = match on {
            Some(i) => {
                let n = &self.nodes[i];
                (Some((n.id, n.store.clone())), n.name.clone(), n.id)
            }
            None => (None, "gw".to_string(), 99),
        };
        Arc::new(ReplicatedManifests::with_config(
            self.map(),
            local,
            self.client(&name),
            tokio::runtime::Handle::current(),
            ManifestReplicationConfig {
                call_timeout: CALL_TIMEOUT,
                clock_node: Some(clock),
                ..ManifestReplicationConfig::default()
            },
        ))
    }

    fn stores(&self) -> Vec<Arc<ManifestStore>> {
        self.nodes.iter().map(|n| n.store.clone()).collect()
    }

    async fn stop(mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}

/// Runs a blocking backend call on the blocking pool, as the client library does.
async fn blocking<T: Send + 'static>(
    backend: &Arc<ReplicatedManifests>,
    f: impl FnOnce(&ReplicatedManifests) -> T + Send + 'static,
) -> T {
    let backend = backend.clone();
    tokio::task::spawn_blocking(move || f(&backend))
        .await
        .unwrap()
}

async fn apply(b: &Arc<ReplicatedManifests>, m: &VersionManifest) -> bool {
    let m = m.clone();
    blocking(b, move |b| b.apply_when(&m, None, None))
        .await
        .unwrap()
        .0
}

async fn head(b: &Arc<ReplicatedManifests>, bucket: &str, key: &str) -> Option<VersionManifest> {
    let (bucket, key) = (bucket.to_string(), key.to_string());
    blocking(b, move |b| b.head(&bucket, &key)).await.unwrap()
}

async fn create(b: &Arc<ReplicatedManifests>, bucket: Bucket) {
    blocking(b, move |b| b.create_bucket(&bucket))
        .await
        .unwrap()
}

fn part(number: u32) -> Part {
    Part {
        number,
        md5: [number as u8; 16],
        size: 5 << 20,
        mtime_ms: 9,
        content: Content::Empty,
        checksums: BTreeMap::new(),
    }
}

fn access_key(id: &str) -> AccessKey {
    AccessKey {
        id: id.to_string(),
        secret: format!("secret-{id}"),
        name: id.to_lowercase(),
        created_ms: 1,
        grants: BTreeMap::new(),
        limits: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_written_on_one_node_are_on_every_replica_and_read_from_another() {
    bounded(async {
        let site = Site::start();
        let b1 = site.backend(Some(0));
        let b2 = site.backend(Some(1));
        assert_eq!(b1.quorums(), (3, 2, 2));
        create(&b1, bucket("photos", "AK")).await;
        let err = blocking(&b2, |b| b.create_bucket(&bucket("photos", "BK")))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ManifestError::BucketExists { owner, .. } if owner == "AK"),
            "{err:?}"
        );

        let v1 = version("photos", "k1", 1, 10);
        let v2 = version("photos", "k1", 2, 20);
        let v3 = version("photos", "k2", 3, 30);
        for m in [&v1, &v2, &v3] {
            assert!(apply(&b1, m).await, "new version");
        }
        // Once every replica holds it (the third one's write may still be in flight after the
        // quorum answered), applying it again is new nowhere.
        eventually("every replica holds v2", || {
            site.nodes.iter().all(|n| n.has("photos", "k1", v2.version))
        })
        .await;
        assert!(!apply(&b1, &v2).await, "applying again is not new");

        assert_eq!(head(&b2, "photos", "k1").await, Some(v2.clone()));
        let got = blocking(&b2, |b| b.get_version("photos", "k1", vid(1)))
            .await
            .unwrap();
        assert_eq!(got, Some(v1.clone()));
        let cur = blocking(&b2, |b| b.current("photos", "k2")).await.unwrap();
        assert_eq!(cur, Some(v3.clone()));
        let none = blocking(&b2, |b| b.head("photos", "nope")).await.unwrap();
        assert_eq!(none, None);
        let err = blocking(&b2, |b| {
            b.apply_when(&version("nobucket", "k", 9, 1), None, None)
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ManifestError::NoSuchBucket(_)), "{err:?}");

        for m in [&v1, &v2, &v3] {
            eventually("every replica holds the version", || {
                site.nodes
                    .iter()
                    .all(|n| n.has("photos", &m.key, m.version))
            })
            .await;
        }
        for n in &site.nodes {
            assert!(
                n.store.get_bucket("photos").unwrap().is_some(),
                "{}",
                n.name
            );
            assert_eq!(n.store.head("photos", "k1").unwrap(), Some(v2.clone()));
        }

        // Keys: stored on their own replicas, listed from every node.
        let gw = site.backend(None);
        blocking(&gw, |b| b.put_key(&access_key("AK1")))
            .await
            .unwrap();
        let err = blocking(&b1, |b| b.put_key(&access_key("AK1")))
            .await
            .unwrap_err();
        assert!(matches!(err, ManifestError::KeyExists(_)), "{err:?}");
        let got = blocking(&b2, |b| b.get_key("AK1")).await.unwrap();
        assert_eq!(got, Some(access_key("AK1")));
        let keys = blocking(&gw, |b| b.list_keys()).await.unwrap();
        assert_eq!(keys, vec![access_key("AK1")]);
        assert!(blocking(&gw, |b| b.delete_key("AK1")).await.unwrap());
        assert_eq!(blocking(&b1, |b| b.get_key("AK1")).await.unwrap(), None);
        assert!(blocking(&gw, |b| b.list_keys()).await.unwrap().is_empty());
        let buckets = blocking(&gw, |b| b.list_buckets()).await.unwrap();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].name, "photos");
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_catches_up_by_read_repair_and_anti_entropy() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, bucket("b", "AK")).await;
        eventually("bucket everywhere", || {
            site.stores()
                .iter()
                .all(|s| s.get_bucket("b").unwrap().is_some())
        })
        .await;

        site.nodes[2].stop().await;
        let mut written = Vec::new();
        for i in 0..10u64 {
            let m = version("b", &format!("k{i}"), 10 + i, i);
            assert!(apply(&gw, &m).await, "W = 2 of 3 is enough");
            written.push(m);
        }
        let newest = version("b", "k0", 100, 7);
        assert!(apply(&gw, &newest).await);
        assert_eq!(head(&gw, "b", "k0").await, Some(newest.clone()));
        assert!(!site.nodes[2].has("b", "k0", newest.version), "n3 was down");

        site.nodes[2].restart();
        // n3's own backend asks n3 first: its answer lacks the newest version, the other
        // replica's has it; the read returns it and repairs n3.
        let b3 = site.backend(Some(2));
        assert_eq!(head(&b3, "b", "k0").await, Some(newest.clone()));
        eventually("n3 repaired by the read", || {
            site.nodes[2].has("b", "k0", newest.version)
        })
        .await;
        assert!(b3.counters().read_repairs >= 1);
        assert!(!site.nodes[2].has("b", "k5", vid(15)), "not read yet");

        let report = b3.anti_entropy_pass().await.unwrap();
        assert_eq!(report.errors, 0, "{report:?}");
        assert_eq!(report.peers, 2);
        assert!(report.changes_read >= 11, "{report:?}");
        assert!(report.versions_fetched >= 10, "{report:?}");
        for m in written.iter().chain([&newest]) {
            assert!(site.nodes[2].has("b", &m.key, m.version), "{}", m.key);
            assert_eq!(
                site.nodes[2]
                    .store
                    .head("b", &m.key)
                    .unwrap()
                    .unwrap()
                    .version,
                if m.key == "k0" {
                    newest.version
                } else {
                    m.version
                }
            );
        }
        // Caught up: the next pass reads nothing new.
        let again = b3.anti_entropy_pass().await.unwrap();
        assert_eq!(
            (again.changes_read, again.versions_fetched),
            (0, 0),
            "{again:?}"
        );
        let mut metrics = String::new();
        b3.render_prometheus(&mut metrics);
        assert!(
            metrics.contains("cairn_manifest_anti_entropy_passes_total 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("cairn_manifest_read_repairs_total"),
            "{metrics}"
        );
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_while_a_node_is_down_is_never_resurrected() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, bucket("b", "AK")).await;
        let (v1, v2, v3) = (
            version("b", "k", 1, 1),
            version("b", "k", 2, 2),
            version("b", "k", 3, 3),
        );
        for m in [&v1, &v2, &v3] {
            apply(&gw, m).await;
        }
        eventually("three versions everywhere", || {
            site.nodes
                .iter()
                .all(|n| n.has("b", "k", v3.version) && n.has("b", "k", v1.version))
        })
        .await;

        // v3 goes while n3 is down: a read through n3's backend must not bring it back.
        site.nodes[2].stop().await;
        let removed = blocking(&gw, |b| b.remove_version("b", "k", vid(3), None))
            .await
            .unwrap();
        assert_eq!(removed, Some(v3.clone()));
        site.nodes[2].restart();
        assert!(
            site.nodes[2].has("b", "k", v3.version),
            "n3 missed the removal"
        );
        let b3 = site.backend(Some(2));
        assert_eq!(head(&b3, "b", "k").await, Some(v2.clone()));
        let got = blocking(&b3, |b| b.get_version("b", "k", vid(3)))
            .await
            .unwrap();
        assert_eq!(got, None);
        assert!(
            !site.nodes[2].has("b", "k", v3.version),
            "removal pushed to n3"
        );
        assert!(site.nodes[2].store.is_removed("b", "k", vid(3)).unwrap());

        // v2 goes while n3 is down: anti-entropy (no read) brings the removal to n3, and
        // anti-entropy elsewhere does not take it back from n3.
        site.nodes[2].stop().await;
        blocking(&gw, |b| b.remove_version("b", "k", vid(2), None))
            .await
            .unwrap();
        site.nodes[2].restart();
        assert!(site.nodes[2].has("b", "k", v2.version));
        // The first pass on n1 and n2 runs while n3 still holds v2.
        let b1 = site.backend(Some(0));
        let b2 = site.backend(Some(1));
        for b in [&b1, &b2] {
            let r = b.anti_entropy_pass().await.unwrap();
            assert_eq!(r.errors, 0, "{r:?}");
        }
        let r = b3.anti_entropy_pass().await.unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.removals_applied >= 1, "{r:?}");
        for b in [&b1, &b2, &b3] {
            b.anti_entropy_pass().await.unwrap();
        }
        for n in &site.nodes {
            for v in [vid(2), vid(3)] {
                assert!(!n.has("b", "k", v), "{} holds {v:?}", n.name);
                assert!(n.store.is_removed("b", "k", v).unwrap(), "{} {v:?}", n.name);
            }
            assert_eq!(
                n.store.head("b", "k").unwrap(),
                Some(v1.clone()),
                "{}",
                n.name
            );
        }
        for b in [&gw, &b1, &b3] {
            assert_eq!(head(b, "b", "k").await, Some(v1.clone()));
        }
        site.stop().await;
    })
    .await
}

async fn read_object(
    b: &Arc<ReplicatedManifests>,
    bucket: &str,
    key: &str,
    wanted: WantedVersion,
) -> ObjectLookup {
    let (bucket, key) = (bucket.to_string(), key.to_string());
    blocking(b, move |b| b.read_object(&bucket, &key, wanted))
        .await
        .unwrap()
}

/// A GET's one metadata read (`read_object`): the bucket's record and the version, one call to
/// each of R replicas, merged as the separate reads merge them — a replica that missed the
/// newest version and the bucket's new settings is outvoted and repaired, a removed version is
/// never returned and its removal is pushed to a replica that missed it — and a missing bucket
/// is no bucket whatever the key. A single store answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_read_gets_the_bucket_and_the_version_from_one_quorum_read() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, bucket("b", "AK")).await;
        let v1 = VersionManifest {
            null_version: true,
            ..version("b", "k", 1, 1)
        };
        let v2 = version("b", "k", 2, 2);
        for m in [&v1, &v2] {
            assert!(apply(&gw, m).await);
        }
        eventually("both versions everywhere", || {
            site.nodes
                .iter()
                .all(|n| n.has("b", "k", v1.version) && n.has("b", "k", v2.version))
        })
        .await;
        let record = blocking(&gw, |b| b.get_bucket("b")).await.unwrap();
        assert!(record.is_some());
        let cases = [
            ("k", WantedVersion::Newest, Some(&v2)),
            ("k", WantedVersion::Null, Some(&v1)),
            ("k", WantedVersion::Id(vid(1)), Some(&v1)),
            ("k", WantedVersion::Id(vid(9)), None),
            ("nope", WantedVersion::Newest, None),
            ("nope", WantedVersion::Null, None),
        ];
        for (key, wanted, expected) in cases {
            let want = ObjectLookup {
                bucket: record.clone(),
                version: expected.cloned(),
                siblings: 0,
            };
            assert_eq!(
                read_object(&gw, "b", key, wanted).await,
                want,
                "{key} {wanted:?}"
            );
            for n in &site.nodes {
                let single = ManifestBackend::read_object(&*n.store, "b", key, wanted).unwrap();
                assert_eq!(single, want, "{} {key} {wanted:?}", n.name);
            }
        }
        for wanted in [WantedVersion::Newest, WantedVersion::Id(vid(1))] {
            assert_eq!(
                read_object(&gw, "none", "k", wanted).await,
                ObjectLookup::default()
            );
            let single = ManifestBackend::read_object(&*site.nodes[0].store, "none", "k", wanted);
            assert_eq!(single.unwrap(), ObjectLookup::default());
        }
        // A delete marker is the newest version: S3 names it in its NoSuchKey answer.
        let marker = VersionManifest::delete_marker("b", "k", vid(3), Some(vid(2)), false, 3);
        assert!(apply(&gw, &marker).await);
        let got = read_object(&gw, "b", "k", WantedVersion::Newest).await;
        assert_eq!(got.version, Some(marker.clone()));
        let single =
            ManifestBackend::read_object(&*site.nodes[0].store, "b", "k", WantedVersion::Newest);
        assert_eq!(single.unwrap().version, Some(marker.clone()));

        // While n3 is down: the bucket's settings change, a newer version comes, and the null
        // version goes.
        site.nodes[2].stop().await;
        let updated = blocking(&gw, |b| {
            b.update_bucket("b", &mut |b: &mut Bucket| {
                b.tags.insert("t".into(), "1".into());
                Ok(())
            })
        })
        .await
        .unwrap();
        let v4 = version("b", "k", 4, 4);
        assert!(apply(&gw, &v4).await);
        let removed = blocking(&gw, |b| b.remove_version("b", "k", vid(1), None))
            .await
            .unwrap();
        assert_eq!(removed, Some(v1.clone()));
        site.nodes[2].restart();
        let n3 = site.nodes[2].store.clone();
        assert!(n3.get_bucket("b").unwrap().unwrap().tags.is_empty());
        assert!(
            site.nodes[2].has("b", "k", v1.version),
            "n3 missed the removal"
        );

        // n3's own backend asks n3 first and one other replica: the other's answers win.
        let b3 = site.backend(Some(2));
        let got = read_object(&b3, "b", "k", WantedVersion::Newest).await;
        assert_eq!(got.bucket, Some(updated.clone()));
        assert_eq!(got.version, Some(v4.clone()));
        let got = read_object(&b3, "b", "k", WantedVersion::Null).await;
        assert_eq!(got.version, None, "the removed null version");
        let got = read_object(&b3, "b", "k", WantedVersion::Id(vid(1))).await;
        assert_eq!(
            got,
            ObjectLookup {
                bucket: Some(updated.clone()),
                version: None,
                siblings: 0,
            }
        );
        eventually("n3 repaired by the reads", || {
            site.nodes[2].has("b", "k", v4.version)
                && !site.nodes[2].has("b", "k", v1.version)
                && n3.get_bucket("b").unwrap().as_ref() == Some(&updated)
        })
        .await;
        assert!(n3.is_removed("b", "k", vid(1)).unwrap());
        site.stop().await;
    })
    .await
}

/// Version `n` of `b/key` made at site `site` over `parent`.
fn made_at(key: &str, n: u64, site: u16, parent: &VersionManifest) -> VersionManifest {
    VersionManifest {
        version: VersionId::new(1_700_000_000_000 + n, 0, site, 7),
        parent: Some(parent.version),
        ..version("b", key, n, n)
    }
}

async fn count_siblings(b: &Arc<ReplicatedManifests>, m: &VersionManifest) -> u32 {
    let m = m.clone();
    blocking(b, move |b| b.count_siblings(&m)).await.unwrap()
}

/// Siblings (versions made at two sites over the same parent) on a three-node site: each
/// replica a GET's `read_object` asks counts them for its newest version, and the read takes
/// the greatest count among the replicas whose newest version won; `count_siblings` takes
/// the greatest of R replicas. With every replica equal both are what a single store
/// counts; a replica that missed a sibling is outvoted; a replica's count for a version that
/// did not win is not taken (until read repair gives it the winner).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_are_counted_by_the_replicas_holding_the_winning_version() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, bucket("b", "AK")).await;
        // p, then a (site 1) and b (site 2) over p: b is current, a its sibling.
        let p = version("b", "k", 1, 1);
        let a = made_at("k", 2, 1, &p);
        let b = made_at("k", 3, 2, &p);
        for m in [&p, &a, &b] {
            assert!(apply(&gw, m).await);
        }
        eventually("every version on every replica", || {
            site.nodes
                .iter()
                .all(|n| [&p, &a, &b].iter().all(|m| n.has("b", "k", m.version)))
        })
        .await;
        let got = read_object(&gw, "b", "k", WantedVersion::Newest).await;
        assert_eq!((got.version.as_ref(), got.siblings), (Some(&b), 1));
        for n in &site.nodes {
            let single =
                ManifestBackend::read_object(&*n.store, "b", "k", WantedVersion::Newest).unwrap();
            assert_eq!(single, got, "{}", n.name);
        }
        for wanted in [WantedVersion::Null, WantedVersion::Id(b.version)] {
            assert_eq!(read_object(&gw, "b", "k", wanted).await.siblings, 0);
        }
        for (m, want) in [(&p, 0), (&a, 1), (&b, 1)] {
            assert_eq!(count_siblings(&gw, m).await, want, "{:?}", m.version);
            assert_eq!(site.nodes[0].store.count_siblings(m).unwrap(), want);
        }

        // n3 is down, so n1's backend reads n1 and n2.
        site.nodes[2].stop().await;
        let (n1, n2) = (site.nodes[0].store.clone(), site.nodes[1].store.clone());
        let b1 = site.backend(Some(0));
        // k2: n1 missed a2; n2 holds it. Both have the winner b2: n2's count wins.
        let p2 = version("b", "k2", 1, 1);
        let a2 = made_at("k2", 2, 1, &p2);
        let b2 = made_at("k2", 3, 2, &p2);
        for m in [&p2, &b2] {
            n1.apply(m).unwrap();
        }
        for m in [&p2, &a2, &b2] {
            n2.apply(m).unwrap();
        }
        let got = read_object(&b1, "b", "k2", WantedVersion::Newest).await;
        assert_eq!((got.version.as_ref(), got.siblings), (Some(&b2), 1));
        assert_eq!(count_siblings(&b1, &b2).await, 1);
        assert_eq!(
            n1.count_siblings(&b2).unwrap(),
            0,
            "n1 alone knows no sibling"
        );

        // k3: n1 holds p3 and b3; n2 holds p3, a3 (site 1) and c3 (site 3, older than b3), all
        // over p3. n2's newest version is c3, with one sibling: not b3's count.
        let p3 = version("b", "k3", 1, 1);
        let a3 = made_at("k3", 2, 1, &p3);
        let c3 = made_at("k3", 3, 3, &p3);
        let b3 = made_at("k3", 4, 2, &p3);
        for m in [&p3, &b3] {
            n1.apply(m).unwrap();
        }
        for m in [&p3, &a3, &c3] {
            n2.apply(m).unwrap();
        }
        let got = read_object(&b1, "b", "k3", WantedVersion::Newest).await;
        assert_eq!((got.version.as_ref(), got.siblings), (Some(&b3), 0));
        // The read sends b3 to n2, which then counts b3's siblings a3 and c3.
        eventually("b3 repaired onto n2", || {
            site.nodes[1].has("b", "k3", b3.version)
        })
        .await;
        let got = read_object(&b1, "b", "k3", WantedVersion::Newest).await;
        assert_eq!((got.version.as_ref(), got.siblings), (Some(&b3), 2));
        assert_eq!(count_siblings(&b1, &b3).await, 2);
        site.stop().await;
    })
    .await
}

/// Upload ids a store holds in `bucket`.
fn upload_ids(store: &ManifestStore, bucket: &str) -> Vec<String> {
    let q = UploadsQuery {
        max_uploads: 1000,
        ..Default::default()
    };
    let page = store.list_uploads(bucket, &q).unwrap();
    page.uploads.into_iter().map(|u| u.upload_id).collect()
}

/// Uploads and parts are not in the change log: a node that was down while an upload was
/// started, its parts written and another upload aborted gets all of it from anti-entropy
/// alone (no read asks it), and the abort is not undone by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_parts_a_node_missed_reach_it_by_anti_entropy() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, bucket("b", "AK")).await;
        let doomed = upload("b", "k2", "u2");
        let u = doomed.clone();
        blocking(&gw, move |b| b.create_upload(&u)).await.unwrap();
        eventually("u2 everywhere", || {
            site.nodes
                .iter()
                .all(|n| upload_ids(&n.store, "b") == ["u2"])
        })
        .await;

        site.nodes[2].stop().await;
        let u = upload("b", "k1", "u1");
        blocking(&gw, move |b| b.create_upload(&u)).await.unwrap();
        for n in 1..=3u32 {
            let p = part(n);
            blocking(&gw, move |b| b.put_part("b", "k1", "u1", &p))
                .await
                .unwrap();
        }
        blocking(&gw, |b| b.abort_upload("b", "k2", "u2"))
            .await
            .unwrap();
        site.nodes[2].restart();
        let n3 = site.nodes[2].store.clone();
        assert_eq!(upload_ids(&n3, "b"), ["u2"], "n3 missed all of it");

        let b3 = site.backend(Some(2));
        let r = b3.anti_entropy_pass().await.unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.records_updated >= 5, "{r:?}");
        assert_eq!(upload_ids(&n3, "b"), ["u1"]);
        let parts: Vec<u32> = n3
            .list_parts("u1", 0, 100)
            .unwrap()
            .iter()
            .map(|p| p.number)
            .collect();
        assert_eq!(parts, [1, 2, 3]);
        // The other nodes' passes bring nothing back.
        for i in 0..3 {
            let r = site.backend(Some(i)).anti_entropy_pass().await.unwrap();
            assert_eq!(r.errors, 0, "{r:?}");
        }
        for n in &site.nodes {
            assert_eq!(upload_ids(&n.store, "b"), ["u1"], "{}", n.name);
        }
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_from_two_nodes_at_once_lets_exactly_one_win() {
    bounded(async {
        let site = Site::start();
        let b1 = site.backend(Some(0));
        let b2 = site.backend(Some(1));
        create(&b1, bucket("b", "AK")).await;
        for i in 0..5u64 {
            let key = format!("k{i}");
            let ma = version("b", &key, 100 + 2 * i, 1);
            let mb = version("b", &key, 101 + 2 * i, 2);
            let (ra, rb) = tokio::join!(
                blocking(&b1, move |b| b.apply_when(
                    &ma,
                    None,
                    Some(&WriteCondition::IfNoneMatchAny)
                )),
                blocking(&b2, move |b| b.apply_when(
                    &mb,
                    None,
                    Some(&WriteCondition::IfNoneMatchAny)
                )),
            );
            let ok = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
            assert_eq!(ok, 1, "{key}: {ra:?} {rb:?}");
            let failed = if ra.is_err() { &ra } else { &rb };
            let e = failed.as_ref().unwrap_err();
            assert!(
                matches!(e.refusal(), Some(Refusal::PreconditionFailed(_))),
                "{e:?}"
            );
            let winner = if ra.is_ok() {
                vid(100 + 2 * i)
            } else {
                vid(101 + 2 * i)
            };
            assert_eq!(head(&b1, "b", &key).await.unwrap().version, winner);
            assert_eq!(head(&b2, "b", &key).await.unwrap().version, winner);
        }
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_update_made_while_a_node_was_down_wins_everywhere() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        create(&gw, Bucket::new("cfg", "AK", 1)).await;
        eventually("bucket everywhere", || {
            site.stores()
                .iter()
                .all(|s| s.get_bucket("cfg").unwrap().is_some())
        })
        .await;

        // Tags change while n3 is down; anti-entropy on n3 brings the change.
        site.nodes[2].stop().await;
        let updated = blocking(&gw, |b| {
            b.update_bucket("cfg", &mut |b: &mut Bucket| {
                b.tags.insert("v".into(), "1".into());
                Ok(())
            })
        })
        .await
        .unwrap();
        assert_eq!(updated.tags.get("v").map(String::as_str), Some("1"));
        site.nodes[2].restart();
        assert!(site.nodes[2]
            .store
            .get_bucket("cfg")
            .unwrap()
            .unwrap()
            .tags
            .is_empty());
        let b3 = site.backend(Some(2));
        let r = b3.anti_entropy_pass().await.unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(r.records_updated >= 1, "{r:?}");
        assert_eq!(
            site.nodes[2]
                .store
                .get_bucket("cfg")
                .unwrap()
                .unwrap()
                .tags
                .get("v")
                .map(String::as_str),
            Some("1")
        );

        // Versioning changes while n3 is down; a read through n3 returns the new record and
        // repairs n3.
        site.nodes[2].stop().await;
        blocking(&gw, |b| {
            b.update_bucket("cfg", &mut |b: &mut Bucket| {
                b.versioning = Versioning::Enabled;
                Ok(())
            })
        })
        .await
        .unwrap();
        site.nodes[2].restart();
        assert_eq!(
            site.nodes[2]
                .store
                .get_bucket("cfg")
                .unwrap()
                .unwrap()
                .versioning,
            Versioning::Unversioned
        );
        let got = blocking(&b3, |b| b.get_bucket("cfg"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.versioning, Versioning::Enabled);
        assert_eq!(got.tags.get("v").map(String::as_str), Some("1"));
        eventually("n3 repaired", || {
            site.nodes[2]
                .store
                .get_bucket("cfg")
                .unwrap()
                .unwrap()
                .versioning
                == Versioning::Enabled
        })
        .await;

        // Anti-entropy everywhere: the older records never come back.
        for i in 0..3 {
            let b = site.backend(Some(i));
            let r = b.anti_entropy_pass().await.unwrap();
            assert_eq!(r.errors, 0, "{r:?}");
        }
        for n in &site.nodes {
            let b = n.store.get_bucket("cfg").unwrap().unwrap();
            assert_eq!(b.versioning, Versioning::Enabled, "{}", n.name);
            assert_eq!(b.tags.get("v").map(String::as_str), Some("1"), "{}", n.name);
        }
        // A refusing closure changes nothing.
        let err = blocking(&gw, |b| {
            b.update_bucket("cfg", &mut |_b: &mut Bucket| {
                Err(ManifestError::Invalid("no".into()))
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ManifestError::Invalid(_)), "{err:?}");
        let err = blocking(&gw, |b| {
            b.update_bucket("nope", &mut |_b: &mut Bucket| Ok(()))
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ManifestError::NoSuchBucket(_)), "{err:?}");
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_version_cannot_be_removed_through_the_replicated_backend() {
    bounded(async {
        let site = Site::start();
        let gw = site.backend(None);
        let mut locked_bucket = bucket("vault", "AK");
        locked_bucket.object_lock = Some(ObjectLockConfig {
            default_retention: None,
        });
        create(&gw, locked_bucket).await;
        let held = VersionManifest {
            lock: ObjectLock {
                retention: None,
                legal_hold: true,
            },
            ..version("vault", "doc", 1, 5)
        };
        apply(&gw, &held).await;
        for bypass in [false, true] {
            let err = blocking(&gw, move |b| {
                b.remove_version("vault", "doc", vid(1), Some((NOW, bypass)))
            })
            .await
            .unwrap_err();
            assert!(matches!(err, ManifestError::Locked(_)), "{err:?}");
        }
        eventually("every replica still holds it", || {
            site.nodes.iter().all(|n| n.has("vault", "doc", vid(1)))
        })
        .await;

        // Releasing the hold (in place, through the primary) lets it go.
        let released = blocking(&gw, |b| {
            b.update_version("vault", "doc", vid(1), &mut |m: &mut VersionManifest| {
                m.lock.legal_hold = false;
                Ok(())
            })
        })
        .await
        .unwrap()
        .unwrap();
        assert!(!released.lock.legal_hold);
        let b2 = site.backend(Some(1));
        let got = blocking(&b2, |b| b.get_version("vault", "doc", vid(1)))
            .await
            .unwrap()
            .unwrap();
        assert!(!got.lock.legal_hold);
        let removed = blocking(&b2, |b| {
            b.remove_version("vault", "doc", vid(1), Some((NOW, false)))
        })
        .await
        .unwrap();
        assert_eq!(removed.map(|m| m.version), Some(vid(1)));
        eventually("gone everywhere, with tombstones", || {
            site.nodes.iter().all(|n| {
                !n.has("vault", "doc", vid(1))
                    && n.store.is_removed("vault", "doc", vid(1)).unwrap()
            })
        })
        .await;
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_equal_a_single_store_holding_the_same_data() {
    bounded(async {
        let site = Site::start();
        let gw = site.backend(None);
        let single = Reference::with_buckets(&gw, &["l1", "l2"]).await;
        let keys = ["a/1", "a/2", "a/b/3", "b", "c/d", "c/e", "d", "z/z"];
        let mut n = 0;
        let mut data = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            for _ in 0..=(i % 3) {
                n += 1;
                data.push(version("l1", k, n, n));
            }
            if i % 4 == 1 {
                n += 1;
                data.push(marker("l1", k, n));
            }
        }
        single.write(&gw, &data).await;
        // A removed version and a few uploads.
        let gone = data[2].clone();
        blocking(&gw, move |b| {
            b.remove_version("l1", &gone.key, gone.version, None)
        })
        .await
        .unwrap();
        single
            .remove_version("l1", &data[2].key, data[2].version)
            .unwrap();
        for (k, id) in [("a/1", "u1"), ("a/2", "u2"), ("c/x", "u3"), ("q", "u4")] {
            let u = upload("l1", k, id);
            let u2 = u.clone();
            blocking(&gw, move |b| b.create_upload(&u2)).await.unwrap();
            single.create_upload(&u).unwrap();
        }
        // Parts, a completion and an abort, through the primary.
        for n in 1..=3u32 {
            let p = part(n);
            let p2 = p.clone();
            blocking(&gw, move |b| b.put_part("l1", "a/1", "u1", &p2))
                .await
                .unwrap();
            single.put_part("l1", "a/1", "u1", &p).unwrap();
        }
        let err = blocking(&gw, |b| b.put_part("l1", "a/1", "nope", &part(1)))
            .await
            .unwrap_err();
        assert!(matches!(err, ManifestError::NoSuchUpload(_)), "{err:?}");
        for (after, max) in [(0, 1000), (1, 1), (3, 10)] {
            let got = blocking(&gw, move |b| b.list_parts("l1", "u1", after, max))
                .await
                .unwrap();
            assert_eq!(got, single.list_parts("u1", after, max).unwrap());
        }
        let done = version("l1", "a/2", 500, 9);
        let d2 = done.clone();
        blocking(&gw, move |b| b.apply_when(&d2, Some("u2"), None))
            .await
            .unwrap();
        single.complete_upload("u2", &done).unwrap();
        let err = blocking(&gw, |b| b.abort_upload("l1", "a/2", "u2"))
            .await
            .unwrap_err();
        assert!(matches!(err, ManifestError::NoSuchUpload(_)), "{err:?}");
        let aborted = blocking(&gw, |b| b.abort_upload("l1", "q", "u4"))
            .await
            .unwrap();
        assert_eq!(aborted, single.abort_upload("l1", "q", "u4").unwrap());
        eventually("uploads settled everywhere", || {
            site.stores().iter().all(|s| {
                s.get_upload("l1", "a/2", "u2").unwrap().is_none()
                    && s.get_upload("l1", "q", "u4").unwrap().is_none()
                    && s.list_parts("u1", 0, 1000).unwrap().len() == 3
            })
        })
        .await;

        let expected = all_versions(&single, "l1", 1000);
        eventually("every replica holds the same versions", || {
            site.stores()
                .iter()
                .all(|s| all_versions(s, "l1", 1000) == expected)
        })
        .await;

        let list_queries = [
            ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
            ListQuery {
                delimiter: Some("/".into()),
                max_keys: 1000,
                ..Default::default()
            },
            ListQuery {
                prefix: "a/".into(),
                delimiter: Some("/".into()),
                max_keys: 1,
                ..Default::default()
            },
            ListQuery {
                delimiter: Some("/".into()),
                max_keys: 2,
                ..Default::default()
            },
            ListQuery {
                max_keys: 3,
                start_after: Some("a/2".into()),
                ..Default::default()
            },
        ];
        for q in list_queries {
            // Page through both, comparing each page.
            let mut q = q;
            for _ in 0..20 {
                let qq = q.clone();
                let got = blocking(&gw, move |b| b.list_objects("l1", &qq))
                    .await
                    .unwrap();
                let want = single.list_objects("l1", &q).unwrap();
                assert_eq!(got.objects, want.objects, "{q:?}");
                assert_eq!(got.common_prefixes, want.common_prefixes, "{q:?}");
                assert_eq!(got.is_truncated, want.is_truncated, "{q:?}");
                assert_eq!(got.next_marker, want.next_marker, "{q:?}");
                if !want.is_truncated {
                    break;
                }
                q.start_after = want.next_marker;
            }
        }
        let version_queries = [
            VersionsQuery {
                max_keys: 1000,
                ..Default::default()
            },
            VersionsQuery {
                max_keys: 3,
                ..Default::default()
            },
            VersionsQuery {
                delimiter: Some("/".into()),
                max_keys: 2,
                ..Default::default()
            },
            VersionsQuery {
                prefix: "a/".into(),
                max_keys: 1,
                ..Default::default()
            },
        ];
        for q in version_queries {
            let mut q = q;
            for _ in 0..40 {
                let qq = q.clone();
                let got = blocking(&gw, move |b| b.list_versions("l1", &qq))
                    .await
                    .unwrap();
                let want = single.list_versions("l1", &q).unwrap();
                assert_eq!(got.versions, want.versions, "{q:?}");
                assert_eq!(got.common_prefixes, want.common_prefixes, "{q:?}");
                assert_eq!(got.is_truncated, want.is_truncated, "{q:?}");
                assert_eq!(got.next_key_marker, want.next_key_marker, "{q:?}");
                assert_eq!(got.next_version_marker, want.next_version_marker, "{q:?}");
                if !want.is_truncated {
                    break;
                }
                q.key_marker = want.next_key_marker;
                q.version_marker = want.next_version_marker;
            }
        }
        for q in [
            UploadsQuery {
                max_uploads: 1000,
                ..Default::default()
            },
            UploadsQuery {
                delimiter: Some("/".into()),
                max_uploads: 2,
                ..Default::default()
            },
        ] {
            let qq = q.clone();
            let got = blocking(&gw, move |b| b.list_uploads("l1", &qq))
                .await
                .unwrap();
            let want = single.list_uploads("l1", &q).unwrap();
            assert_eq!(got.uploads, want.uploads, "{q:?}");
            assert_eq!(got.common_prefixes, want.common_prefixes, "{q:?}");
            assert_eq!(got.is_truncated, want.is_truncated, "{q:?}");
            assert_eq!(got.next_key_marker, want.next_key_marker, "{q:?}");
            assert_eq!(
                got.next_upload_id_marker, want.next_upload_id_marker,
                "{q:?}"
            );
        }
        let got: Vec<String> = blocking(&gw, |b| b.list_buckets())
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        let want: Vec<String> = single
            .list_buckets()
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(got, want);
        let (gh, sh) = (
            blocking(&gw, |b| b.head("l1", "b")).await.unwrap(),
            single.head("l1", "b").unwrap(),
        );
        assert_eq!(gh, sh);
        site.stop().await;
    })
    .await
}

// ---- merged listings: a replica that missed writes, a map change ----

impl Site {
    /// Starts one more node, n{i} with id i in its own zone (in no map yet); its position.
    fn add_node(&mut self) -> usize {
        let i = self.nodes.len() as NodeId + 1;
        let name = format!("n{i}");
        let identity = self.ca.issue_node(&name, &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            ManifestStore::open(dir.path(), ManifestConfig { sync_writes: false }).unwrap(),
        );
        let mut node = Node {
            id: i,
            name,
            identity,
            store,
            addr: "127.0.0.1:0".parse().unwrap(),
            stop: None,
            task: None,
            _dir: dir,
        };
        node.serve("127.0.0.1:0".parse().unwrap());
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// `map` with node `i` (0-based) added: the next epoch.
    fn map_adding(&self, map: &ClusterMap, i: usize) -> ClusterMap {
        map.apply(&StagedChanges {
            upsert: vec![self.nodes[i].info()],
            ..StagedChanges::default()
        })
        .unwrap()
    }

    /// A backend on node `on` (0-based) with `map`.
    fn backend_with(&self, on: usize, map: ClusterMap) -> Arc<ReplicatedManifests> {
        self.backend_settling(on, map, ManifestReplicationConfig::default().map_settle)
    }

    /// A backend on node `on` with `map` whose anti-entropy counts as caught up under a new
    /// map only `settle` after it took it.
    fn backend_settling(
        &self,
        on: usize,
        map: ClusterMap,
        settle: Duration,
    ) -> Arc<ReplicatedManifests> {
        let n = &self.nodes[on];
        Arc::new(ReplicatedManifests::with_config(
            map,
            Some((n.id, n.store.clone())),
            self.client(&n.name),
            tokio::runtime::Handle::current(),
            ManifestReplicationConfig {
                call_timeout: CALL_TIMEOUT,
                clock_node: Some(n.id),
                map_settle: settle,
                ..ManifestReplicationConfig::default()
            },
        ))
    }
}

/// Object listings with and without a delimiter, paged by 2.
fn object_queries() -> Vec<ListQuery> {
    vec![
        ListQuery {
            max_keys: 1000,
            ..Default::default()
        },
        ListQuery {
            max_keys: 2,
            ..Default::default()
        },
        ListQuery {
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        },
        ListQuery {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        },
    ]
}

/// Version listings with and without a delimiter, paged by 2.
fn version_queries() -> Vec<VersionsQuery> {
    vec![
        VersionsQuery {
            max_keys: 1000,
            ..Default::default()
        },
        VersionsQuery {
            max_keys: 2,
            ..Default::default()
        },
        VersionsQuery {
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Default::default()
        },
    ]
}

/// Pages through `b` and `single` with every query, comparing each page.
async fn assert_listings_match(b: &Arc<ReplicatedManifests>, single: &ManifestStore, name: &str) {
    for q in object_queries() {
        let mut q = q;
        for page in 0.. {
            assert!(page < 50, "{q:?}: too many pages");
            let (qq, bb) = (q.clone(), name.to_string());
            let got = blocking(b, move |b| b.list_objects(&bb, &qq))
                .await
                .unwrap();
            let want = single.list_objects(name, &q).unwrap();
            assert_eq!(got.objects, want.objects, "{q:?}");
            assert_eq!(got.common_prefixes, want.common_prefixes, "{q:?}");
            assert_eq!(got.is_truncated, want.is_truncated, "{q:?}");
            assert_eq!(got.next_marker, want.next_marker, "{q:?}");
            if !want.is_truncated {
                break;
            }
            q.start_after = want.next_marker;
        }
    }
    for q in version_queries() {
        let mut q = q;
        for page in 0.. {
            assert!(page < 50, "{q:?}: too many pages");
            let (qq, bb) = (q.clone(), name.to_string());
            let got = blocking(b, move |b| b.list_versions(&bb, &qq))
                .await
                .unwrap();
            let want = single.list_versions(name, &q).unwrap();
            assert_eq!(got.versions, want.versions, "{q:?}");
            assert_eq!(got.common_prefixes, want.common_prefixes, "{q:?}");
            assert_eq!(got.is_truncated, want.is_truncated, "{q:?}");
            assert_eq!(got.next_key_marker, want.next_key_marker, "{q:?}");
            assert_eq!(got.next_version_marker, want.next_version_marker, "{q:?}");
            if !want.is_truncated {
                break;
            }
            q.key_marker = want.next_key_marker;
            q.version_marker = want.next_version_marker;
        }
    }
}

/// A single store that gets every write the replicated site gets: what the site's reads and
/// listings must equal.
struct Reference {
    store: ManifestStore,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Reference {
    type Target = ManifestStore;
    fn deref(&self) -> &ManifestStore {
        &self.store
    }
}

impl Reference {
    /// An empty store, and buckets `names` created in it and through `gw`.
    async fn with_buckets(gw: &Arc<ReplicatedManifests>, names: &[&str]) -> Reference {
        let dir = tempfile::tempdir().unwrap();
        let store = ManifestStore::open(dir.path(), ManifestConfig { sync_writes: false }).unwrap();
        for name in names {
            create(gw, bucket(name, "AK")).await;
            store.create_bucket(&bucket(name, "AK")).unwrap();
        }
        Reference { store, _dir: dir }
    }

    /// Applies each of `versions` through `gw` (a write quorum must take it) and here.
    async fn write(&self, gw: &Arc<ReplicatedManifests>, versions: &[VersionManifest]) {
        for m in versions {
            assert!(apply(gw, m).await, "W = 2 of 3");
            self.store.apply(m).unwrap();
        }
    }
}

/// Waits until each of `nodes` holds every one of `versions` in its own store.
async fn held_by(nodes: &[Node], versions: &[VersionManifest]) {
    eventually("written on every node", || {
        nodes
            .iter()
            .all(|n| versions.iter().all(|m| n.has(&m.bucket, &m.key, m.version)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_writes_still_lists_everything_through_its_own_backend() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        let single = Reference::with_buckets(&gw, &["m"]).await;
        let before = [
            version("m", "a/1", 1, 1),
            version("m", "a/2", 2, 2),
            version("m", "b", 3, 3),
            version("m", "c/d", 4, 4),
            version("m", "d", 5, 5),
        ];
        single.write(&gw, &before).await;
        held_by(&site.nodes, &before).await;

        // n3 misses newer versions, new keys (some under new prefixes) and delete markers.
        site.nodes[2].stop().await;
        let during = [
            version("m", "a/1", 10, 10),
            version("m", "a/b/3", 11, 11),
            marker("m", "b", 12),
            version("m", "c/e", 13, 13),
            marker("m", "d", 14),
            version("m", "d", 15, 15),
            version("m", "e/f", 16, 16),
            version("m", "z/z", 17, 17),
            version("m", "z/z", 18, 18),
        ];
        single.write(&gw, &during).await;
        site.nodes[2].restart();
        let stale = &site.nodes[2].store;
        assert_ne!(
            stale
                .list_objects(
                    "m",
                    &ListQuery {
                        max_keys: 1000,
                        ..Default::default()
                    }
                )
                .unwrap()
                .objects,
            single
                .list_objects(
                    "m",
                    &ListQuery {
                        max_keys: 1000,
                        ..Default::default()
                    }
                )
                .unwrap()
                .objects,
            "n3 missed the writes"
        );
        assert!(!site.nodes[2].has("m", "z/z", vid(18)));

        // n3's own backend asks n3 first (and no anti-entropy ran).
        let b3 = site.backend(Some(2));
        assert_listings_match(&b3, &single, "m").await;
        assert_eq!(b3.counters().ae_passes, 0);
        assert!(b3.counters().read_repairs > 0, "listings repair n3");
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_removed_while_a_node_was_down_is_not_listed_through_that_node() {
    bounded(async {
        let mut site = Site::start();
        let gw = site.backend(None);
        let single = Reference::with_buckets(&gw, &["r"]).await;
        let data = [
            version("r", "k1", 1, 1),
            version("r", "k1", 2, 2),
            version("r", "k1", 3, 3),
            version("r", "k2", 4, 4),
            version("r", "x/y", 5, 5),
            version("r", "x/y", 6, 6),
        ];
        single.write(&gw, &data).await;
        held_by(&site.nodes, &data).await;

        // k1's middle and newest versions and x/y's oldest go while n3 is down.
        site.nodes[2].stop().await;
        for (k, v) in [("k1", 2), ("k1", 3), ("x/y", 5)] {
            let removed = blocking(&gw, move |b| b.remove_version("r", k, vid(v), None))
                .await
                .unwrap();
            assert!(removed.is_some(), "{k} {v}");
            single.remove_version("r", k, vid(v)).unwrap();
        }
        site.nodes[2].restart();
        for (k, v) in [("k1", 2), ("k1", 3), ("x/y", 5)] {
            assert!(
                site.nodes[2].has("r", k, vid(v)),
                "n3 missed removing {k} {v}"
            );
        }

        let b3 = site.backend(Some(2));
        let got = blocking(&b3, |b| {
            b.list_versions(
                "r",
                &VersionsQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
        let listed: Vec<(String, VersionId)> = got
            .versions
            .iter()
            .map(|m| (m.key.clone(), m.version))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("k1".to_string(), vid(1)),
                ("k2".to_string(), vid(4)),
                ("x/y".to_string(), vid(6)),
            ]
        );
        assert_listings_match(&b3, &single, "r").await;
        // The listing pushed the removals to n3.
        eventually("removals pushed to n3", || {
            [("k1", 2), ("k1", 3), ("x/y", 5)].iter().all(|(k, v)| {
                !site.nodes[2].has("r", k, vid(*v))
                    && site.nodes[2].store.is_removed("r", k, vid(*v)).unwrap()
            })
        })
        .await;
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fourth_node_joins_its_backend_lists_and_reads_everything_before_anti_entropy() {
    bounded(async {
        let mut site = Site::start();
        let old_map = site.map();
        // Backends made before n4 exists have the three-node map.
        let gw = site.backend(None);
        let b1 = site.backend(Some(0));
        let n4 = site.add_node();
        let new_map = site.map_adding(&old_map, n4);
        assert!(new_map.epoch > old_map.epoch);
        // A bucket the new map places on n4 (and on two of the three old nodes).
        let name = (0..1000)
            .map(|i| format!("moved{i}"))
            .find(|b| cairn_core::placement::place_manifest(&new_map, b, b"", 3).contains(&4))
            .expect("some bucket lands on n4");
        let placed = cairn_core::placement::place_manifest(&new_map, &name, b"", 3);
        // `stale`: the first old replica n4's backend asks (after itself); `dropped`: the old
        // replica the new map no longer places the bucket on.
        let stale = placed.iter().copied().find(|&id| id != 4).unwrap();
        let dropped = (1..=3).find(|id| !placed.contains(id)).unwrap();
        let (si, di) = ((stale - 1) as usize, (dropped - 1) as usize);

        let single = Reference::with_buckets(&gw, &[&name]).await;
        let first = [
            version(&name, "a/1", 1, 1),
            version(&name, "a/2", 2, 2),
            version(&name, "b", 3, 3),
        ];
        single.write(&gw, &first).await;
        held_by(&site.nodes[..3], &first).await;
        // Written while `stale` is down: only the dropped replica and the other old one hold
        // these.
        site.nodes[si].stop().await;
        let second = [
            version(&name, "a/1", 10, 10),
            version(&name, "a/b/3", 11, 11),
            marker(&name, "b", 12),
            version(&name, "c/d", 13, 13),
            version(&name, "e", 14, 14),
        ];
        single.write(&gw, &second).await;
        site.nodes[si].restart();
        assert!(site.nodes[di].has(&name, "e", vid(14)));
        assert!(!site.nodes[si].has(&name, "e", vid(14)));
        assert!(site.nodes[n4].store.get_bucket(&name).unwrap().is_none());

        // The map change reaches every backend; n4's own backend asks n4 (empty) and `stale`
        // among the current replicas, and the dropped replica as the previous map's.
        let b4 = site.backend_with(n4, old_map.clone());
        for b in [&gw, &b4, &b1] {
            assert!(b.set_map(new_map.clone()));
        }
        assert_eq!(b4.bucket_replicas(&name), placed);
        let mut previous = b4.previous_bucket_replicas(&name);
        previous.sort();
        assert_eq!(previous, vec![1, 2, 3]);

        assert_listings_match(&b4, &single, &name).await;
        for key in ["a/1", "a/2", "a/b/3", "b", "c/d", "e", "none"] {
            let k = key.to_string();
            let nm = name.clone();
            let got = blocking(&b4, move |b| b.current(&nm, &k)).await.unwrap();
            assert_eq!(got, single.current(&name, key).unwrap(), "{key}");
        }
        let got = blocking(&b4, {
            let nm = name.clone();
            move |b| b.get_bucket(&nm)
        })
        .await
        .unwrap();
        assert!(got.is_some());
        assert_eq!(b4.counters().ae_passes, 0);
        // Dropping the previous map is explicit.
        assert!(b4.forget_previous_map());
        assert!(!b4.forget_previous_map());
        assert!(b4.previous_bucket_replicas(&name).is_empty());
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_map_is_forgotten_once_every_node_of_the_new_one_caught_up() {
    bounded(async {
        let mut site = Site::start();
        let old_map = site.map();
        let n4 = site.add_node();
        let new_map = site.map_adding(&old_map, n4);
        let backends: Vec<_> = (0..4)
            .map(|i| site.backend_settling(i, old_map.clone(), Duration::ZERO))
            .collect();
        // Data written under the old map, on n1..n3 only; several buckets so that n4 becomes
        // a replica of some.
        let names: Vec<String> = (0..6).map(|i| format!("handover{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            create(&backends[0], bucket(name, "AK")).await;
            for k in 0..3u64 {
                let key = format!("k{k}");
                let v = 10 * i as u64 + k + 1;
                apply(&backends[0], &version(name, &key, v, v)).await;
            }
        }
        let on_n4: Vec<&String> = names
            .iter()
            .filter(|n| {
                cairn_core::placement::place_manifest(&new_map, n, b"", 3)
                    .contains(&site.nodes[n4].id)
            })
            .collect();
        assert!(!on_n4.is_empty(), "no bucket lands on n4");
        // The old map's nodes ran anti-entropy under it: caught up under its epoch.
        for b in &backends[..3] {
            assert!(b.anti_entropy_pass().await.unwrap().synced);
        }
        for b in &backends {
            assert!(b.set_map(new_map.clone()));
            assert!(b.has_previous_map());
        }
        // Nobody caught up under the new map yet: reads keep asking the old placement.
        assert!(!backends[0].forget_previous_map_when_synced().await.unwrap());

        // A pass too soon after the map change does not count.
        let patient = site.backend_settling(n4, old_map.clone(), Duration::from_secs(3600));
        assert!(patient.set_map(new_map.clone()));
        let r = patient.anti_entropy_pass().await.unwrap();
        assert_eq!(r.errors, 0, "{r:?}");
        assert!(!r.synced);
        assert!(site.nodes[n4].store.synced_epoch().unwrap() < new_map.epoch);

        // n1..n3 caught up, n4 not: still kept.
        for b in &backends[..3] {
            assert!(b.anti_entropy_pass().await.unwrap().synced);
        }
        assert!(!backends[0].forget_previous_map_when_synced().await.unwrap());
        assert!(backends[0].has_previous_map());

        // A pass that cannot reach a peer does not count either.
        site.nodes[1].stop().await;
        let r = backends[n4].anti_entropy_pass().await.unwrap();
        assert!(r.errors > 0 && !r.synced, "{r:?}");
        // (n2 cannot say whether it caught up either: the map is kept.)
        let kept = backends[0].forget_previous_map_when_synced().await;
        assert!(!matches!(kept, Ok(true)), "{kept:?}");
        assert!(backends[0].has_previous_map());
        site.nodes[1].restart();

        // Once n2 answers again, a pass catches up.
        let mut last = None;
        for _ in 0..50 {
            let r = backends[n4].anti_entropy_pass().await.unwrap();
            if r.synced {
                last = None;
                break;
            }
            last = Some(r);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.is_none(), "n4 never caught up: {last:?}");
        assert_eq!(site.nodes[n4].store.synced_epoch().unwrap(), new_map.epoch);
        // n4 holds, in its own store, every version of the buckets placed on it.
        for name in &on_n4 {
            for k in 0..3 {
                let got = site.nodes[n4]
                    .store
                    .current(name, &format!("k{k}"))
                    .unwrap();
                assert!(got.is_some(), "n4 lacks {name}/k{k}");
            }
        }
        for b in &backends {
            assert!(b.forget_previous_map_when_synced().await.unwrap());
            assert!(!b.has_previous_map());
            assert!(!b.forget_previous_map_when_synced().await.unwrap());
        }
        // Reads through the new placement alone find everything.
        for (i, name) in names.iter().enumerate() {
            for k in 0..3u64 {
                let got = head(&backends[n4], name, &format!("k{k}")).await.unwrap();
                assert_eq!(got.version, vid(10 * i as u64 + k + 1));
            }
        }
        site.stop().await;
    })
    .await
}
