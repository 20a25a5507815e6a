//! The manifest service over real QUIC on loopback: answers equal the local store's, checks run
//! on the serving node under its write lock, errors keep their variant, bounds are refused.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::manifest::{
    AccessKey, Bucket, ChecksumType, Content, LockMode, ObjectLock, Part, Retention,
    VersionManifest, Versioning,
};
use cairn_core::ErrorKind;
use cairn_manifestserver::rpc::{self, ManifestRequest, ManifestResponse, WireError};
use cairn_manifestserver::{
    ListPage, ListQuery, ManifestError, ManifestService, ManifestStore, Refusal, RemoteManifest,
    UploadsQuery, VersionsPage, VersionsQuery, WriteCondition,
};
use cairn_net::{Client, NetConfig, Server, SiteCa};
use common::*;

/// Every test body runs under this bound.
const TEST_BOUND: Duration = Duration::from_secs(60);

/// Runs `f`, failing the test if it takes longer than [`TEST_BOUND`].
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test did not finish in time")
}

/// A node serving its manifest store, and a client node calling it.
struct Site {
    /// The serving node's store, for comparing answers.
    store: Arc<ManifestStore>,
    /// The store as the client node reaches it.
    remote: RemoteManifest,
    /// The client node's transport.
    client: Client,
    /// Where the server listens.
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Site {
    /// A site "lyon": node n1 serves a fresh store (with the test buckets), n2 calls it.
    fn start() -> Site {
        let ca = SiteCa::generate("lyon").unwrap();
        let n1 = ca.issue_node("n1", &["127.0.0.1".into()]).unwrap();
        let n2 = ca.issue_node("n2", &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open_fast(dir.path()));
        let server = Server::builder(&n1, NetConfig::default())
            .service(ManifestService::new(store.clone()))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let client =
            Client::new(&n2, NetConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let remote = RemoteManifest::new(client.peer(addr, "n1"));
        Site {
            store,
            remote,
            client,
            addr,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// Stops the server and waits for it.
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

/// The millisecond clock object lock is checked against in these tests.
const NOW: u64 = 1_800_000_000_000;

fn locked(key: &str, n: u64, lock: ObjectLock) -> VersionManifest {
    VersionManifest {
        lock,
        ..version("a", key, n, 1)
    }
}

fn retention(mode: LockMode, until_ms: u64) -> ObjectLock {
    ObjectLock {
        retention: Some(Retention { mode, until_ms }),
        legal_hold: false,
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

/// The refusal an error carries, failing the test if it carries none.
fn refusal(e: &ManifestError) -> &Refusal {
    e.refusal()
        .unwrap_or_else(|| panic!("expected a refusal, got {e:?}"))
}

fn same_list_page(a: &ListPage, b: &ListPage) {
    assert_eq!(a.objects, b.objects);
    assert_eq!(a.common_prefixes, b.common_prefixes);
    assert_eq!(a.is_truncated, b.is_truncated);
    assert_eq!(a.next_marker, b.next_marker);
}

fn same_versions_page(a: &VersionsPage, b: &VersionsPage) {
    assert_eq!(a.versions, b.versions);
    assert_eq!(a.common_prefixes, b.common_prefixes);
    assert_eq!(a.is_truncated, b.is_truncated);
    assert_eq!(a.next_key_marker, b.next_key_marker);
    assert_eq!(a.next_version_marker, b.next_version_marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_versions_listings_uploads_and_keys_round_trip() {
    bounded(async {
        let site = Site::start();
        let (r, s) = (&site.remote, &site.store);

        // Buckets.
        let mut photos = bucket("photos", "alice");
        photos.tags.insert("team".into(), "infra".into());
        r.create_bucket(&photos).await.unwrap();
        assert_eq!(r.get_bucket("photos").await.unwrap(), Some(photos.clone()));
        assert_eq!(r.get_bucket("nothing-here").await.unwrap(), None);
        assert_eq!(r.list_buckets().await.unwrap(), s.list_buckets().unwrap());
        let (first, more) = r.list_buckets_page(None, 3).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(more);
        let (rest, more) = r
            .list_buckets_page(Some(&first[2].name), 1000)
            .await
            .unwrap();
        assert!(!more);
        let paged: Vec<Bucket> = first.into_iter().chain(rest).collect();
        assert_eq!(paged, s.list_buckets().unwrap());

        // Versions: several keys, a null version, a delete marker.
        let mut n = 0;
        for key in ["dir/x", "dir/y", "dir/sub/z", "top", "zeta"] {
            for _ in 0..3 {
                n += 1;
                let (stored, replaced) = r.apply(&version("photos", key, n, n)).await.unwrap();
                assert!(stored);
                assert!(replaced.is_empty());
            }
        }
        // Applying again changes nothing, as locally.
        assert_eq!(
            r.apply(&version("photos", "top", 10, 10)).await.unwrap(),
            (false, vec![])
        );
        r.apply(&null_version("photos", "top", 20, 7))
            .await
            .unwrap();
        r.apply(&marker("photos", "zeta", 21)).await.unwrap();
        for key in ["dir/x", "top", "zeta", "missing"] {
            assert_eq!(
                r.head("photos", key).await.unwrap(),
                s.head("photos", key).unwrap()
            );
            assert_eq!(
                r.current("photos", key).await.unwrap(),
                s.current("photos", key).unwrap()
            );
            assert_eq!(
                r.get_null_version("photos", key).await.unwrap(),
                s.get_null_version("photos", key).unwrap()
            );
        }
        assert_eq!(r.current("photos", "zeta").await.unwrap(), None);
        assert!(
            r.head("photos", "zeta")
                .await
                .unwrap()
                .unwrap()
                .delete_marker
        );
        assert_eq!(
            r.get_version("photos", "top", vid(11)).await.unwrap(),
            Some(version("photos", "top", 11, 11))
        );
        assert_eq!(r.get_version("photos", "top", vid(99)).await.unwrap(), None);

        // Listings with prefix, delimiter and markers, page by page, equal the local ones.
        let mut q = ListQuery {
            prefix: "dir/".into(),
            delimiter: Some("/".into()),
            max_keys: 1,
            ..Default::default()
        };
        let mut pages = 0;
        loop {
            let (remote, local) = (
                r.list_objects("photos", &q).await.unwrap(),
                s.list_objects("photos", &q).unwrap(),
            );
            same_list_page(&remote, &local);
            pages += 1;
            if !remote.is_truncated {
                break;
            }
            q.start_after = remote.next_marker;
        }
        assert_eq!(pages, 3, "dir/sub/, dir/x, dir/y");
        let mut vq = VersionsQuery {
            max_keys: 4,
            ..Default::default()
        };
        let mut seen = 0;
        loop {
            let (remote, local) = (
                r.list_versions("photos", &vq).await.unwrap(),
                s.list_versions("photos", &vq).unwrap(),
            );
            same_versions_page(&remote, &local);
            seen += remote.versions.len();
            if !remote.is_truncated {
                break;
            }
            vq.key_marker = remote.next_key_marker;
            vq.version_marker = remote.next_version_marker;
        }
        assert_eq!(seen, all_versions(s, "photos", 1000).len());

        // Multipart uploads and parts.
        let up = upload("photos", "big", "up-1");
        r.create_upload(&up).await.unwrap();
        r.create_upload(&upload("photos", "big", "up-2"))
            .await
            .unwrap();
        assert_eq!(
            r.get_upload("photos", "big", "up-1").await.unwrap(),
            Some(up)
        );
        for i in 1..=3 {
            assert_eq!(
                r.put_part("photos", "big", "up-1", &part(i)).await.unwrap(),
                None
            );
        }
        let again = Part { size: 1, ..part(2) };
        assert_eq!(
            r.put_part("photos", "big", "up-1", &again).await.unwrap(),
            Some(part(2))
        );
        assert_eq!(
            r.list_parts("up-1", 1, 1000).await.unwrap(),
            s.list_parts("up-1", 1, 1000).unwrap()
        );
        assert_eq!(r.list_parts("up-1", 0, 2).await.unwrap().len(), 2);
        let uq = UploadsQuery {
            max_uploads: 1,
            ..Default::default()
        };
        let (remote, local) = (
            r.list_uploads("photos", &uq).await.unwrap(),
            s.list_uploads("photos", &uq).unwrap(),
        );
        assert_eq!(remote.uploads, local.uploads);
        assert!(remote.is_truncated);
        assert_eq!(remote.next_upload_id_marker, local.next_upload_id_marker);
        let done = VersionManifest {
            parts: Some(3),
            checksum_type: Some(ChecksumType::Composite),
            ..version("photos", "big", 30, 15 << 20)
        };
        assert_eq!(r.complete_upload("up-1", &done).await.unwrap(), vec![]);
        assert_eq!(r.current("photos", "big").await.unwrap(), Some(done));
        assert_eq!(r.get_upload("photos", "big", "up-1").await.unwrap(), None);
        assert_eq!(
            r.abort_upload("photos", "big", "up-2").await.unwrap(),
            vec![]
        );

        // Access keys.
        let k = access_key("AKONE");
        r.put_key(&k).await.unwrap();
        r.put_key(&access_key("AKTWO")).await.unwrap();
        assert_eq!(r.get_key("AKONE").await.unwrap(), Some(k.clone()));
        assert_eq!(r.list_keys().await.unwrap(), s.list_keys().unwrap());
        let (page, more) = r.list_keys_page(Some("AKONE"), 10).await.unwrap();
        assert_eq!((page, more), (vec![access_key("AKTWO")], false));
        let mut granted = k.clone();
        granted.grants.insert(
            "photos".into(),
            cairn_core::manifest::KeyGrant {
                read: true,
                ..Default::default()
            },
        );
        assert_eq!(
            r.update_key(&k, &granted).await.unwrap(),
            Some(granted.clone())
        );
        assert!(r.update_key(&k, &granted).await.unwrap_err().is_conflict());
        assert_eq!(
            r.update_key(&access_key("AKNONE"), &access_key("AKNONE"))
                .await
                .unwrap(),
            None
        );
        assert!(r.delete_key("AKONE").await.unwrap());
        assert!(!r.delete_key("AKONE").await.unwrap());

        // Totals.
        assert_eq!(r.stats().await.unwrap(), s.stats().unwrap());

        // Deleting a bucket.
        r.create_bucket(&bucket("scratch", "alice")).await.unwrap();
        r.delete_bucket("scratch").await.unwrap();
        assert_eq!(s.get_bucket("scratch").unwrap(), None);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_applies_run_on_the_server_and_one_racer_wins() {
    bounded(async {
        let site = Site::start();
        let r = &site.remote;
        let none_match = WriteCondition::IfNoneMatchAny;

        // If-None-Match: * on a new key passes, on an existing one fails.
        assert!(
            r.apply_if(&version("a", "k", 1, 1), None, &none_match)
                .await
                .unwrap()
                .0
        );
        let e = r
            .apply_if(&version("a", "k", 2, 1), None, &none_match)
            .await
            .unwrap_err();
        assert!(
            matches!(refusal(&e), Refusal::PreconditionFailed(_)),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(site.store.get_version("a", "k", vid(2)).unwrap(), None);

        // If-Match: the ETag must match the current object's; no current object is NoSuchKey.
        let e = r
            .apply_if(
                &version("a", "k", 3, 1),
                None,
                &WriteCondition::IfMatch("\"nope\"".into()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(refusal(&e), Refusal::PreconditionFailed(_)),
            "{e:?}"
        );
        let matching = WriteCondition::IfMatch("\"etag-1\"".into());
        assert!(
            r.apply_if(&version("a", "k", 4, 1), None, &matching)
                .await
                .unwrap()
                .0
        );
        let e = r
            .apply_if(&version("a", "fresh", 5, 1), None, &matching)
            .await
            .unwrap_err();
        assert_eq!(refusal(&e), &Refusal::NoSuchKey("fresh".into()));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        // A delete marker on top counts as no current object.
        r.apply(&marker("a", "k", 6)).await.unwrap();
        assert!(
            r.apply_if(&version("a", "k", 7, 1), None, &none_match)
                .await
                .unwrap()
                .0
        );

        // Completing an upload conditionally removes it with its parts; a gone upload is
        // NoSuchUpload.
        r.create_upload(&upload("a", "mp", "up-9")).await.unwrap();
        r.put_part("a", "mp", "up-9", &part(1)).await.unwrap();
        assert!(
            r.apply_if(&version("a", "mp", 8, 1), Some("up-9"), &none_match)
                .await
                .unwrap()
                .0
        );
        assert_eq!(r.list_parts("up-9", 0, 10).await.unwrap(), vec![]);
        let e = r
            .apply_if(&version("a", "mp2", 9, 1), Some("up-9"), &none_match)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ManifestError::NoSuchUpload(ref u) if u == "up-9"),
            "{e:?}"
        );

        // Many conditional creates of one key at once: exactly one wins.
        let racers = (0..16u64).map(|i| {
            let r = site.remote.clone();
            tokio::spawn(async move {
                r.apply_if(
                    &version("a", "race", 100 + i, i),
                    None,
                    &WriteCondition::IfNoneMatchAny,
                )
                .await
            })
        });
        let results = join_tasks(racers).await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{results:?}");
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(refusal(r), Refusal::PreconditionFailed(_)),
                "{r:?}"
            );
        }
        assert_eq!(
            all_versions(&site.store, "a", 1000)
                .iter()
                .filter(|v| v.key == "race")
                .count(),
            1
        );
        site.stop().await;
    })
    .await
}

/// Awaits every spawned task (a join error fails the test).
async fn join_tasks<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_refuses_versions_object_lock_protects() {
    bounded(async {
        let site = Site::start();
        let r = &site.remote;
        let hold = ObjectLock {
            retention: None,
            legal_hold: true,
        };
        let cases = [
            ("held", hold),
            (
                "compliance",
                retention(LockMode::Compliance, NOW + 3_600_000),
            ),
            (
                "governance",
                retention(LockMode::Governance, NOW + 3_600_000),
            ),
            ("expired", retention(LockMode::Compliance, NOW - 1)),
        ];
        for (i, (key, lock)) in cases.iter().enumerate() {
            r.apply(&locked(key, i as u64 + 1, lock.clone()))
                .await
                .unwrap();
        }
        let remove = |key: &'static str, n: u64, bypass: bool| {
            let r = r.clone();
            async move {
                r.remove_version_unless_locked("a", key, vid(n), NOW, bypass)
                    .await
            }
        };

        // A legal hold and an unexpired compliance retention refuse, even with bypass.
        for (key, n) in [("held", 1), ("compliance", 2)] {
            for bypass in [false, true] {
                let e = remove(key, n, bypass).await.unwrap_err();
                assert!(matches!(e, ManifestError::Locked(_)), "{key}: {e:?}");
                assert_eq!(e.kind(), ErrorKind::PermissionDenied);
                assert!(site.store.get_version("a", key, vid(n)).unwrap().is_some());
            }
        }
        // Governance refuses without bypass and yields to it.
        let e = remove("governance", 3, false).await.unwrap_err();
        assert!(matches!(e, ManifestError::Locked(_)), "{e:?}");
        let removed = remove("governance", 3, true).await.unwrap();
        assert_eq!(removed.map(|m| m.key), Some("governance".to_string()));
        // A passed retention does not protect; a missing version is `None`.
        assert!(remove("expired", 4, false).await.unwrap().is_some());
        assert_eq!(remove("expired", 4, false).await.unwrap(), None);
        // The unchecked removal is there for internal callers.
        assert!(r
            .remove_version("a", "held", vid(1))
            .await
            .unwrap()
            .is_some());
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_updates_refuse_a_stale_record() {
    bounded(async {
        let site = Site::start();
        let r = &site.remote;

        // Buckets.
        let b0 = r.get_bucket("a").await.unwrap().unwrap();
        let b1 = Bucket {
            versioning: Versioning::Suspended,
            ..b0.clone()
        };
        assert_eq!(r.update_bucket(&b0, &b1).await.unwrap(), b1);
        let b2 = Bucket {
            policy: Some("{}".into()),
            ..b0.clone()
        };
        let e = r.update_bucket(&b0, &b2).await.unwrap_err();
        assert!(e.is_conflict(), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(site.store.get_bucket("a").unwrap(), Some(b1.clone()));
        let renamed = Bucket {
            name: "b".into(),
            ..b1.clone()
        };
        let e = r.update_bucket(&b1, &renamed).await.unwrap_err();
        assert!(matches!(e, ManifestError::Invalid(_)), "{e:?}");
        let gone = bucket("gone", "x");
        let e = r.update_bucket(&gone, &gone).await.unwrap_err();
        assert!(
            matches!(e, ManifestError::NoSuchBucket(ref b) if b == "gone"),
            "{e:?}"
        );

        // Versions: tags change in place, logged again; a stale expected record conflicts.
        let v0 = version("a", "doc", 1, 10);
        r.apply(&v0).await.unwrap();
        let seq = r.stats().await.unwrap().last_seq;
        let mut v1 = v0.clone();
        v1.tags.insert("k".into(), "v".into());
        assert_eq!(r.update_version(&v0, &v1).await.unwrap(), Some(v1.clone()));
        assert_eq!(r.current("a", "doc").await.unwrap(), Some(v1.clone()));
        assert_eq!(r.stats().await.unwrap().last_seq, seq + 1);
        let mut v2 = v0.clone();
        v2.lock.legal_hold = true;
        let e = r.update_version(&v0, &v2).await.unwrap_err();
        assert!(e.is_conflict(), "{e:?}");
        assert_eq!(site.store.current("a", "doc").unwrap(), Some(v1.clone()));
        // Content cannot change in place, nor move to another key.
        let resized = VersionManifest {
            content: Content::Inline(vec![1u8; 3].into()),
            ..v1.clone()
        };
        let e = r.update_version(&v1, &resized).await.unwrap_err();
        assert!(matches!(e, ManifestError::Invalid(_)), "{e:?}");
        let moved = VersionManifest {
            key: "other".into(),
            ..v1.clone()
        };
        let e = r.update_version(&v1, &moved).await.unwrap_err();
        assert!(matches!(e, ManifestError::Invalid(_)), "{e:?}");
        // A missing version is `None`.
        let ghost = version("a", "doc", 99, 1);
        assert_eq!(r.update_version(&ghost, &ghost).await.unwrap(), None);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_variant_across_the_wire() {
    bounded(async {
        let site = Site::start();
        let (r, s) = (&site.remote, &site.store);

        // Each failing call fails the same way remotely and locally (nothing changed between).
        fn same(remote: Result<(), ManifestError>, local: Result<(), ManifestError>) {
            let (remote, local) = (remote.unwrap_err(), local.unwrap_err());
            assert_eq!(format!("{remote:?}"), format!("{local:?}"));
            assert_eq!(remote.kind(), local.kind());
        }
        let taken = bucket("a", "someone-else");
        let e = r.create_bucket(&taken).await.unwrap_err();
        assert!(
            matches!(&e, ManifestError::BucketExists { name, owner } if name == "a" && owner == "tester"),
            "{e:?}"
        );
        same(Err(e), s.create_bucket(&taken));
        same(
            r.delete_bucket("nope").await,
            s.delete_bucket("nope"),
        );
        let e = r.delete_bucket("nope").await.unwrap_err();
        assert!(matches!(e, ManifestError::NoSuchBucket(ref b) if b == "nope"), "{e:?}");
        same(
            r.apply(&version("nope", "k", 1, 1)).await.map(drop),
            s.apply(&version("nope", "k", 1, 1)).map(drop),
        );
        r.apply(&version("a", "k", 1, 1)).await.unwrap();
        let e = r.delete_bucket("a").await.unwrap_err();
        assert!(matches!(e, ManifestError::BucketNotEmpty(ref b) if b == "a"), "{e:?}");
        same(Err(e), s.delete_bucket("a"));
        let e = r.put_part("a", "k", "no-upload", &part(1)).await.unwrap_err();
        assert!(matches!(e, ManifestError::NoSuchUpload(_)), "{e:?}");
        same(Err(e), s.put_part("a", "k", "no-upload", &part(1)).map(drop));
        same(
            r.abort_upload("a", "k", "no-upload").await.map(drop),
            s.abort_upload("a", "k", "no-upload").map(drop),
        );
        r.put_key(&access_key("AKDUP")).await.unwrap();
        let e = r.put_key(&access_key("AKDUP")).await.unwrap_err();
        assert!(matches!(e, ManifestError::KeyExists(ref k) if k == "AKDUP"), "{e:?}");
        same(Err(e), s.put_key(&access_key("AKDUP")));
        let long = "x".repeat(64);
        let e = r.get_bucket(&long).await.unwrap_err();
        assert!(matches!(e, ManifestError::Invalid(_)), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        same(Err(e), s.get_bucket(&long).map(drop));
        let long_key = "k".repeat(1025);
        same(
            r.head("a", &long_key).await.map(drop),
            s.head("a", &long_key).map(drop),
        );

        // A call that cannot reach the store is a transport failure, not a store error.
        let addr = site.addr;
        let client = site.client.clone();
        site.stop().await;
        let gone = RemoteManifest::new(client.peer(addr, "n1").with_timeout(Duration::from_secs(2)));
        let e = gone.stats().await.unwrap_err();
        assert!(matches!(refusal(&e), Refusal::Transport(_)), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Io);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_over_the_bounds_are_refused_by_both_sides() {
    bounded(async {
        let site = Site::start();
        let r = &site.remote;
        let limit = |e: ManifestError| {
            assert!(matches!(refusal(&e), Refusal::LimitExceeded(_)), "{e:?}");
            assert_eq!(e.kind(), ErrorKind::LimitExceeded);
            e.to_string()
        };

        // The caller refuses before sending.
        let over = ListQuery {
            max_keys: rpc::MAX_LIST + 1,
            ..Default::default()
        };
        let msg = limit(r.list_objects("a", &over).await.unwrap_err());
        assert!(msg.contains("at most 1000"), "{msg}");
        let vq = VersionsQuery {
            max_keys: rpc::MAX_LIST + 1,
            ..Default::default()
        };
        limit(r.list_versions("a", &vq).await.unwrap_err());
        let uq = UploadsQuery {
            max_uploads: usize::MAX,
            ..Default::default()
        };
        limit(r.list_uploads("a", &uq).await.unwrap_err());
        limit(r.list_parts("u", 0, 1001).await.unwrap_err());
        limit(r.list_buckets_page(None, 1001).await.unwrap_err());
        limit(r.list_keys_page(None, 1001).await.unwrap_err());
        let msg = limit(r.changes_since(0, rpc::MAX_CHANGES + 1).await.unwrap_err());
        assert!(msg.contains("at most 10000"), "{msg}");

        // The server refuses too, whoever sends the request.
        let raw = [
            ManifestRequest::ListObjects {
                bucket: "a".into(),
                query: over,
            },
            ManifestRequest::ChangesSince {
                after: 0,
                max: u32::MAX,
            },
            ManifestRequest::ListKeys {
                after: None,
                max: 5000,
            },
        ];
        for req in raw {
            match r.peer().call(&req).await.unwrap() {
                ManifestResponse::Failed(WireError::LimitExceeded(m)) => {
                    assert!(m.contains("at most"), "{m}")
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
        }

        // At the bounds, calls pass.
        let at = ListQuery {
            max_keys: rpc::MAX_LIST,
            ..Default::default()
        };
        r.list_objects("a", &at).await.unwrap();
        assert_eq!(r.changes_since(0, rpc::MAX_CHANGES).await.unwrap(), vec![]);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_pages_without_gaps() {
    bounded(async {
        let site = Site::start();
        let r = &site.remote;
        for n in 1..=25 {
            r.apply(&version("b", &format!("k{}", n % 4), n, n))
                .await
                .unwrap();
        }
        r.remove_version("b", "k1", vid(1)).await.unwrap();
        let mut after = 0;
        let mut got = Vec::new();
        loop {
            let page = r.changes_since(after, 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 7);
            after = page.last().unwrap().seq;
            got.extend(page);
        }
        assert_eq!(got, site.store.changes_since(0, 10_000).unwrap());
        let seqs: Vec<u64> = got.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (1..=26).collect::<Vec<_>>());
        assert!(got.last().unwrap().removed);
        assert_eq!(r.changes_since(u64::MAX, 10).await.unwrap(), vec![]);
        site.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_too_large_for_one_answer_comes_in_smaller_exact_pages() {
    bounded(async {
        let site = Site::start();
        // 1000 objects of about 12 KiB of metadata each: a full page would be ~12 MiB.
        let meta: BTreeMap<String, String> = (0..12)
            .map(|i| (format!("m{i}"), "v".repeat(1000)))
            .collect();
        for n in 0..1000u64 {
            let m = VersionManifest {
                user_metadata: meta.clone(),
                ..version("bb", &format!("obj{n:04}"), n + 1, 1)
            };
            site.store.apply(&m).unwrap();
        }
        let mut q = ListQuery {
            max_keys: 1000,
            ..Default::default()
        };
        let first = site.remote.list_objects("bb", &q).await.unwrap();
        assert!(first.objects.len() < 1000, "{}", first.objects.len());
        assert!(first.is_truncated);
        assert_eq!(
            first.next_marker.as_deref(),
            first.objects.last().map(|o| o.key.as_str())
        );
        let mut keys: Vec<String> = first.objects.iter().map(|o| o.key.clone()).collect();
        q.start_after = first.next_marker;
        loop {
            let page = site.remote.list_objects("bb", &q).await.unwrap();
            keys.extend(page.objects.iter().map(|o| o.key.clone()));
            if !page.is_truncated {
                break;
            }
            q.start_after = page.next_marker;
        }
        let want: Vec<String> = (0..1000).map(|n| format!("obj{n:04}")).collect();
        assert_eq!(keys, want);
        site.stop().await;
    })
    .await
}
