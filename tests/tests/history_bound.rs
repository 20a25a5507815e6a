//! Bounded metadata history on a multi-node site: each manifest node's change log is trimmed
//! up to what the slowest live reader (another node's anti-entropy) has read; a node silent
//! for longer than the retention is no longer waited for, and when it comes back it fills
//! from its peers' listings and converges without bringing back what was removed meanwhile;
//! a map change no longer re-reads every peer's whole log.

use std::time::Duration;

use cairn_manifestserver::{AntiEntropyReport, HistoryState};
use cairn_tests::gc::slot_of;
use cairn_tests::multi::MultiSite;
use cairn_tests::scenario::{bounded, put, MANUAL_WORKERS};

const BOUND: Duration = Duration::from_secs(300);
/// A retention long enough that nothing expires unless a test says so.
const LONG: u64 = 3_600_000;
const BUCKETS: usize = 4;
const KEYS: usize = 40;

fn body(round: usize, b: usize, i: usize) -> Vec<u8> {
    format!("round {round} of h{b}/k{i}").into_bytes()
}

/// Every key of every bucket written (again) through node `via`: each overwrite in these
/// unversioned buckets logs the new version and the removal of the one it replaces.
async fn write_round(site: &MultiSite, via: usize, round: usize) {
    let s3 = site.s3(via);
    for b in 0..BUCKETS {
        for i in 0..KEYS {
            put(
                &s3,
                &format!("hist{b}"),
                &format!("k{i}"),
                body(round, b, i),
            )
            .await;
        }
    }
}

async fn anti_entropy(site: &MultiSite, nodes: &[usize]) -> Vec<AntiEntropyReport> {
    let mut out = Vec::new();
    for &k in nodes {
        out.push(
            site.node(k)
                .manifest_backend
                .anti_entropy_pass()
                .await
                .unwrap_or_else(|e| panic!("anti-entropy on n{}: {e}", k + 1)),
        );
    }
    out
}

fn history(site: &MultiSite, k: usize) -> HistoryState {
    site.node(k).manifests.as_ref().unwrap().history().unwrap()
}

/// What node `k`'s store says each key of bucket `b` holds now (its current version's etag).
fn current_etags(site: &MultiSite, k: usize, b: usize) -> Vec<Option<String>> {
    let store = site.node(k).manifests.clone().unwrap();
    (0..KEYS)
        .map(|i| {
            store
                .current(&format!("hist{b}"), &format!("k{i}"))
                .unwrap()
                .map(|m| m.etag)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_change_log_is_bounded_by_the_slowest_live_reader() {
    bounded(BOUND, async {
        let mut site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        for b in 0..BUCKETS {
            site.s3(0)
                .create_bucket()
                .bucket(format!("hist{b}"))
                .send()
                .await
                .unwrap();
        }
        for round in 0..3 {
            write_round(&site, round % 3, round).await;
        }
        // Each node logs every write (three nodes, three replicas): new versions and the
        // removals of those they replaced.
        let written = history(&site, 0).last_seq;
        assert!(written >= (5 * BUCKETS * KEYS) as u64, "{written}");

        // Every node's anti-entropy reads its peers' logs to the end, and so acknowledges
        // them: each log can then be trimmed whole.
        anti_entropy(&site, &[0, 1, 2]).await;
        for k in 0..3 {
            let r = site
                .node(k)
                .manifest_backend
                .trim_history_pass(LONG)
                .await
                .unwrap();
            let h = history(&site, k);
            assert_eq!(h.log_entries(), 0, "n{}: {r:?} {h:?}", k + 1);
            assert!(r.entries_removed >= written / 2, "n{}: {r:?}", k + 1);
        }

        // n3 goes down. Its anti-entropy is the slowest reader: n1 keeps what n3 has not read.
        let n3 = site.node(2).cluster.me();
        let n3_reader = format!("ae/{n3}");
        site.kill_node(2).await;
        write_round(&site, 0, 3).await;
        anti_entropy(&site, &[0, 1]).await;
        let r = site
            .node(0)
            .manifest_backend
            .trim_history_pass(LONG)
            .await
            .unwrap();
        assert_eq!(r.slowest.as_deref(), Some(n3_reader.as_str()), "{r:?}");
        let held = history(&site, 0);
        assert!(
            held.log_entries() >= (BUCKETS * KEYS) as u64,
            "n1 trimmed what n3 has not read: {held:?}"
        );

        // Past the retention n3 is no longer waited for (n2 has just read everything).
        anti_entropy(&site, &[1]).await;
        let n3_acked_at = held
            .consumers
            .iter()
            .find(|c| c.name == n3_reader)
            .unwrap()
            .at_ms;
        let retention = cairn_client::now_ms() - n3_acked_at - 1;
        for k in 0..2 {
            let r = site
                .node(k)
                .manifest_backend
                .trim_history_pass(retention)
                .await
                .unwrap();
            assert_eq!(r.expired, vec![n3_reader.clone()], "n{}: {r:?}", k + 1);
            assert_eq!(history(&site, k).log_entries(), 0);
        }

        // n3 comes back: no log has what it missed any more, so it fills from n1's and n2's
        // listings and converges, without bringing back the versions the round written while
        // it was away replaced (their tombstones are younger than the retention).
        site.start_node(2).await;
        let reports = anti_entropy(&site, &[2]).await;
        assert_eq!(reports[0].history_gaps, 2, "{:?}", reports[0]);
        assert!(
            reports[0].buckets_filled >= BUCKETS as u64,
            "{:?}",
            reports[0]
        );
        for b in 0..BUCKETS {
            assert_eq!(current_etags(&site, 2, b), current_etags(&site, 0, b));
            let store = site.node(2).manifests.clone().unwrap();
            let query = cairn_manifestserver::VersionsQuery {
                max_keys: 1000,
                ..Default::default()
            };
            let page = store.list_versions(&format!("hist{b}"), &query).unwrap();
            assert_eq!(
                page.versions.len(),
                KEYS,
                "h{b} on n3 holds replaced versions again"
            );
        }

        // A map change (a fourth node) does not make the others re-read their peers' logs:
        // they go on from their cursors; the new node fills the buckets placed on it from
        // listings, since the logs no longer start at the beginning.
        // Every node reads what n3's fill logged, until a pass finds nothing new and no
        // peer failed (a peer that has just restarted may miss a call or two).
        let mut caught_up = false;
        for _ in 0..20 {
            let reports = anti_entropy(&site, &[0, 1, 2]).await;
            if reports.iter().all(|r| r.errors == 0 && r.changes_read == 0) {
                caught_up = true;
                break;
            }
            eprintln!("not caught up yet: {reports:?}");
        }
        assert!(
            caught_up,
            "the nodes did not catch up with each other's logs"
        );
        let (k, map, _) = site.join_new_node().await;
        for j in 0..=k {
            assert_eq!(site.node(j).cluster.map().epoch, map.epoch);
        }
        for report in anti_entropy(&site, &[0, 1, 2]).await {
            assert!(
                report.changes_read < (BUCKETS * KEYS) as u64,
                "a map change re-read a whole log: {report:?}"
            );
        }
        let n4 = anti_entropy(&site, &[k]).await.remove(0);
        let mine: Vec<usize> = (0..BUCKETS)
            .filter(|b| {
                site.node(k)
                    .manifest_backend
                    .bucket_replicas(&format!("hist{b}"))
                    .iter()
                    .any(|id| slot_of(&site, *id) == k)
            })
            .collect();
        assert!(!mine.is_empty(), "no bucket placed on n4");
        assert!(n4.buckets_filled >= mine.len() as u64, "{n4:?}");
        for b in mine {
            assert_eq!(current_etags(&site, k, b), current_etags(&site, 0, b));
        }
        site.shutdown().await;
    })
    .await;
}
