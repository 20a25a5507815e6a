//! Volumes on a real single-node store (RocksDB in a temporary dir), driven through the same
//! `BlockDevice` interface the NBD server uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_block::volume::{DEFAULT_EXTENT_SIZE, VOLUME_BUCKET};
use cairn_block::{Allocation, BlockDevice, BlockError, VolumeConfig, VolumeError, Volumes};
use cairn_client::Client;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

fn site() -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open_dir(dir.path()).unwrap();
    (dir, client)
}

/// A config whose timer never commits during a test, so commits happen only on flush.
fn manual() -> VolumeConfig {
    VolumeConfig {
        commit_interval: Duration::from_secs(3600),
        ..VolumeConfig::default()
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test finishes within its bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_created_listed_described_and_deleted() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client.clone(), manual());
        assert!(vols.list().await.unwrap().is_empty());
        let a = vols
            .create("alpha", 10 << 30, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        assert_eq!(
            (a.size, a.block_size, a.extent_size),
            (10 << 30, 4096, 65536)
        );
        vols.create("beta", MIB, 512, 4096).await.unwrap();
        let names: Vec<_> = vols
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert!(matches!(
            vols.create("alpha", MIB, 4096, DEFAULT_EXTENT_SIZE).await,
            Err(VolumeError::Exists(_))
        ));
        for (name, size, bs, ext) in [
            ("", MIB, 4096, 65536),
            ("-x", MIB, 4096, 65536),
            ("a/b", MIB, 4096, 65536),
            ("ok", 0, 4096, 65536),
            ("ok", 1000, 4096, 65536),
            ("ok", MIB, 1024, 65536),
            ("ok", MIB, 4096, 3000),
            ("ok", MIB, 4096, 8 << 20),
        ] {
            assert!(
                matches!(
                    vols.create(name, size, bs, ext).await,
                    Err(VolumeError::Invalid(_))
                ),
                "{name:?} {size} {bs} {ext} is refused"
            );
        }
        // A new 10 GiB volume stores nothing but its tree nodes.
        let stored = client.stats().await.unwrap().unique_bytes;
        assert!(stored < 4096, "two empty volumes store {stored} bytes");
        // The reserved bucket belongs to no access key.
        let b = client.head_bucket(VOLUME_BUCKET).await.unwrap();
        assert_eq!(b.owner, "cairn-system");
        // Open volumes cannot be deleted; closed ones can.
        let v = vols.open("beta").await.unwrap();
        assert!(matches!(
            vols.delete("beta", false).await,
            Err(VolumeError::InUse(_))
        ));
        drop(v);
        // The controller ends (after committing nothing) once its last handle is gone.
        let deleted = async {
            loop {
                match vols.delete("beta", false).await {
                    Ok(()) => return,
                    Err(VolumeError::InUse(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), deleted)
            .await
            .expect("a closed volume can be deleted");
        assert!(matches!(
            vols.info("beta").await,
            Err(VolumeError::NotFound(_))
        ));
        assert!(matches!(
            vols.open("nope").await,
            Err(VolumeError::NotFound(_))
        ));
    })
    .await
}

/// Random writes, zeroes and trims of random sizes (whole blocks) against a flat model; reads
/// are checked between writes and after each flush, and after the volume is closed and opened
/// again (everything was flushed, so everything was promised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_writes_read_back_through_buffer_commits_and_reopen() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client.clone(), manual());
        let size = 8 * MIB;
        vols.create("v", size, 512, 16384).await.unwrap();
        let mut model = vec![0u8; size as usize];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..6 {
            let v = vols.open("v").await.unwrap();
            for _ in 0..60 {
                let blocks = rng.gen_range(1..=200u64);
                let start = rng.gen_range(0..(size / 512 - blocks)) * 512;
                let len = blocks * 512;
                let r = start as usize..(start + len) as usize;
                match rng.gen_range(0..10) {
                    0 => {
                        v.trim(start, len, false).await.unwrap();
                        model[r].fill(0);
                    }
                    1 => {
                        v.write_zeroes(start, len, rng.gen_bool(0.5)).await.unwrap();
                        model[r].fill(0);
                    }
                    _ => {
                        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                        model[r].copy_from_slice(&data);
                        v.write(start, Bytes::from(data), rng.gen_bool(0.1))
                            .await
                            .unwrap();
                    }
                }
                if rng.gen_bool(0.1) {
                    v.flush().await.unwrap();
                }
                let a = rng.gen_range(0..size / 512) * 512;
                let n = (rng.gen_range(1..=64u64) * 512).min(size - a);
                let got = v.read(a, n as u32).await.unwrap();
                assert_eq!(
                    &got[..],
                    &model[a as usize..(a + n) as usize],
                    "round {round}"
                );
            }
            v.flush().await.unwrap();
            let all = v.read(0, size as u32).await.unwrap();
            assert!(
                all[..] == model[..],
                "round {round}: whole volume after flush"
            );
            drop(v);
        }
        let v = vols.open("v").await.unwrap();
        let all = v.read(0, size as u32).await.unwrap();
        assert!(all[..] == model[..], "whole volume after reopening");
    })
    .await
}

/// Writers are held while the buffer is over its bound, and the buffer past half its bound
/// commits by itself (the timer and flushes never run here), concurrent writers included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_buffer_stays_bounded_and_commits_under_pressure() {
    bounded(async {
        let (_d, client) = site();
        let bound = MIB;
        let vols = Volumes::new(
            client.clone(),
            VolumeConfig {
                max_dirty_bytes: bound,
                ..manual()
            },
        );
        let size = 32 * MIB;
        vols.create("v", size, 4096, 65536).await.unwrap();
        let v = vols.open("v").await.unwrap();
        let piece = 256 << 10;
        let block = move |i: u64| Bytes::from(vec![(i % 251) as u8 + 1; piece as usize]);
        // One writer: every acknowledgement comes with the buffer at or under the bound.
        for i in 0..(size / piece) / 2 {
            v.write(i * piece, block(i), false).await.unwrap();
            let dirty = v
                .stats()
                .dirty_bytes
                .load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                dirty <= bound,
                "write {i} acknowledged with {dirty} bytes buffered"
            );
        }
        // Four writers at once over the second half.
        let half = size / piece / 2;
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                for i in (half + w..2 * half).step_by(4) {
                    v.write(i * piece, block(i), false).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let commits = v.stats().commits.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            commits >= 8,
            "only {commits} commits for {size} bytes over a {bound}-byte bound"
        );
        for i in 0..size / piece {
            let got = v.read(i * piece, piece as u32).await.unwrap();
            assert!(got == block(i), "piece {i} reads back");
        }
    })
    .await
}

/// The bound is the site's, not each volume's: two volumes written at once hold at most the
/// budget together (plus the writes just buffered and not yet acknowledged), and both finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_share_one_write_back_budget() {
    bounded(async {
        let (_d, client) = site();
        let bound = MIB;
        let vols = Arc::new(Volumes::new(
            client.clone(),
            VolumeConfig {
                max_dirty_bytes: bound,
                ..manual()
            },
        ));
        let size = 16 * MIB;
        let piece: u64 = 64 << 10;
        let writers = 4u64;
        for name in ["a", "b"] {
            vols.create(name, size, 4096, 65536).await.unwrap();
        }
        let mut tasks = Vec::new();
        for (n, name) in ["a", "b"].into_iter().enumerate() {
            let v = vols.open(name).await.unwrap();
            for w in 0..writers / 2 {
                let (v, vols) = (v.clone(), vols.clone());
                tasks.push(tokio::spawn(async move {
                    for i in (w..size / piece).step_by(writers as usize / 2) {
                        let data = Bytes::from(vec![(i % 251) as u8 + n as u8; piece as usize]);
                        v.write(i * piece, data, false).await.unwrap();
                        // Each other writer may have buffered one piece not yet acknowledged.
                        let held = vols.dirty_bytes();
                        assert!(held <= bound + writers * piece, "{held} bytes buffered");
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        for (n, name) in ["a", "b"].into_iter().enumerate() {
            let v = vols.open(name).await.unwrap();
            for i in 0..size / piece {
                let got = v.read(i * piece, piece as u32).await.unwrap();
                assert!(
                    got.iter().all(|&x| x == (i % 251) as u8 + n as u8),
                    "{name} {i}"
                );
            }
        }
    })
    .await
}

/// Writers that flush at once: a commit starts on the tree of the one still being stored
/// (commits overlap), reads see every acknowledged write throughout, and every flush that
/// returned is durable as a committed version: another manager opening the volume reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_overlap_commits_and_each_is_durable_when_it_returns() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client.clone(), manual());
        let size = 16 * MIB;
        vols.create("v", size, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("v").await.unwrap();
        let writers = 8u64;
        let blocks = size / 4096 / writers;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (v, client) = (v.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                // Writer `w` owns the blocks `w` modulo `writers`; generation `round + 1`.
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                let mut mine = std::collections::HashMap::new();
                for round in 0..24u8 {
                    let mut written = Vec::new();
                    for _ in 0..4 {
                        let b = rng.gen_range(0..blocks) * writers + w;
                        let data = Bytes::from(vec![round + 1; 4096]);
                        v.write(b * 4096, data, false).await.unwrap();
                        mine.insert(b, round + 1);
                        written.push(b);
                    }
                    v.flush().await.unwrap();
                    let committed = Volumes::new(client.clone(), manual());
                    let c = committed.open("v").await.unwrap();
                    for b in written {
                        let want = mine[&b];
                        let (now, then) = (
                            v.read(b * 4096, 4096).await.unwrap(),
                            c.read(b * 4096, 4096).await.unwrap(),
                        );
                        assert!(now.iter().all(|&x| x == want), "writer {w} block {b}");
                        assert!(
                            then.iter().all(|&x| x == want),
                            "writer {w} block {b} flushed"
                        );
                    }
                }
                mine
            }));
        }
        let mut all = std::collections::HashMap::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let overlapped = v
            .stats()
            .commits_overlapped
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(overlapped > 0, "no commit started on a running one's tree");
        drop(v);
        let fresh = Volumes::new(client, manual());
        let v = fresh.open("v").await.unwrap();
        let whole = v.read(0, size as u32).await.unwrap();
        for (b, want) in all {
            let at = (b * 4096) as usize;
            assert!(whole[at..at + 4096].iter().all(|&x| x == want), "block {b}");
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thin_volume_stores_only_what_was_written_and_maps_holes() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client.clone(), manual());
        vols.create("thin", 10 << 30, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("thin").await.unwrap();
        // 16 MiB of random data in 1 MiB writes spread over the 10 GiB, plus 16 MiB of zeros.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for i in 0..16u64 {
            let data: Vec<u8> = (0..MIB).map(|_| rng.gen()).collect();
            v.write(i * 512 * MIB, Bytes::from(data), false)
                .await
                .unwrap();
            let zeros = Bytes::from(vec![0u8; MIB as usize]);
            v.write(i * 512 * MIB + 8 * MIB, zeros, false)
                .await
                .unwrap();
        }
        v.flush().await.unwrap();
        let stats = client.stats().await.unwrap();
        let written = 16 * MIB;
        assert!(
            stats.unique_bytes >= written && stats.unique_bytes < written + written / 10,
            "a 10 GiB volume with 16 MiB written stores {} bytes",
            stats.unique_bytes
        );
        // The map: data where written, holes everywhere else (zero writes included).
        let map = v.allocation(0, 16 * MIB).await.unwrap();
        let run = |len, hole| Allocation { len, hole };
        assert_eq!(map, vec![run(MIB, false), run(15 * MIB, true)]);
        // A trim turns data back into a hole, buffered or committed.
        v.trim(0, 64 << 10, false).await.unwrap();
        let map = v.allocation(0, 2 * MIB).await.unwrap();
        assert_eq!(map[0], run(64 << 10, true));
        assert_eq!(map[1], run(MIB - (64 << 10), false));
        v.flush().await.unwrap();
        assert_eq!(v.allocation(0, 2 * MIB).await.unwrap(), map);
        assert_eq!(&v.read(0, 4096).await.unwrap()[..], &[0u8; 4096][..]);
    })
    .await
}

/// Requests past the end are refused and change nothing; unaligned ones (NBD clients that did
/// not ask for the block size send them) are served byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_requests_are_refused_and_unaligned_ones_served() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client, manual());
        vols.create("r", MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("r").await.unwrap();
        let block = |n: usize| Bytes::from(vec![7u8; n]);
        let out = |r: Result<(), BlockError>| matches!(r, Err(BlockError::OutOfRange { .. }));
        assert!(out(v.write(MIB, block(4096), false).await));
        assert!(out(v.write(MIB - 4096, block(8192), false).await));
        assert!(out(v.trim(MIB - 1, 2, false).await));
        assert!(matches!(
            v.read(u64::MAX - 4095, 4096).await,
            Err(BlockError::OutOfRange { .. })
        ));
        v.flush().await.unwrap();
        let map = v.allocation(0, MIB).await.unwrap();
        assert_eq!(
            map,
            vec![Allocation {
                len: MIB,
                hole: true
            }]
        );
        // Unaligned: a write across an extent boundary, a sector inside a block, a trim.
        let mut model = vec![0u8; MIB as usize];
        let edits: [(u64, usize, u8); 3] = [(65_530, 20, 1), (4096 + 512, 512, 2), (100, 3, 3)];
        for (at, n, fill) in edits {
            v.write(at, Bytes::from(vec![fill; n]), false)
                .await
                .unwrap();
            model[at as usize..at as usize + n].fill(fill);
        }
        v.trim(65_535, 2, false).await.unwrap();
        model[65_535..65_537].fill(0);
        assert!(v.read(0, MIB as u32).await.unwrap()[..] == model[..]);
        v.flush().await.unwrap();
        assert!(v.read(0, MIB as u32).await.unwrap()[..] == model[..]);
        assert_eq!(&v.read(65_529, 3).await.unwrap()[..], &[0, 1, 1]);
    })
    .await
}

/// Two volumes served at once; one of them is changed behind its controller's back (a second
/// writer commits it), so its next commit is refused and it fails from then on. The other
/// keeps reading, writing and flushing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_volume_does_not_affect_another() {
    bounded(async {
        let (_d, client) = site();
        let vols = Volumes::new(client.clone(), manual());
        for name in ["good", "bad"] {
            vols.create(name, 4 * MIB, 4096, DEFAULT_EXTENT_SIZE)
                .await
                .unwrap();
        }
        let good = vols.open("good").await.unwrap();
        let bad = vols.open("bad").await.unwrap();
        // Another manager (another node, say) writes "bad" and commits.
        let other = Volumes::new(client.clone(), manual());
        let intruder = other.open("bad").await.unwrap();
        let nines = Bytes::from(vec![9u8; 4096]);
        intruder.write(0, nines, false).await.unwrap();
        intruder.flush().await.unwrap();
        let ones = Bytes::from(vec![1u8; 4096]);
        bad.write(4096, ones.clone(), false).await.unwrap();
        let err = bad.flush().await.unwrap_err();
        assert!(matches!(err, BlockError::Io(_)), "{err:?}");
        assert!(bad.write(0, ones, false).await.is_err());
        // The good volume is untouched by all this.
        for i in 0..32u64 {
            let data = Bytes::from(vec![i as u8 + 1; 4096]);
            good.write(i * 4096, data, false).await.unwrap();
        }
        good.flush().await.unwrap();
        for i in 0..32u64 {
            assert_eq!(good.read(i * 4096, 4096).await.unwrap()[0], i as u8 + 1);
        }
        // What the second writer committed is what the volume holds.
        drop((bad, intruder));
        let fresh = Volumes::new(client, manual());
        let b = fresh.open("bad").await.unwrap();
        assert_eq!(b.read(0, 4096).await.unwrap()[0], 9);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_grow_online_and_shrink_only_when_forced() {
    bounded(async {
        let (_d, client) = site();
        let vols = Arc::new(Volumes::new(client, manual()));
        vols.create("g", MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("g").await.unwrap();
        let threes = Bytes::from(vec![3u8; 4096]);
        v.write(MIB - 4096, threes, false).await.unwrap();
        let info = vols.resize("g", 3 * MIB, false).await.unwrap();
        assert_eq!(info.size, 3 * MIB);
        assert_eq!(v.size(), 3 * MIB, "the open handle sees the new size");
        assert_eq!(v.read(MIB - 4096, 4096).await.unwrap()[0], 3);
        assert_eq!(&v.read(2 * MIB, 4096).await.unwrap()[..], &[0u8; 4096][..]);
        let fours = Bytes::from(vec![4u8; 4096]);
        v.write(2 * MIB, fours, false).await.unwrap();
        assert!(matches!(
            vols.resize("g", MIB, false).await,
            Err(VolumeError::Invalid(_))
        ));
        assert!(matches!(
            vols.resize("g", MIB + 1, true).await,
            Err(VolumeError::Invalid(_))
        ));
        let info = vols.resize("g", MIB, true).await.unwrap();
        assert_eq!(info.size, MIB);
        assert!(matches!(
            v.read(2 * MIB, 4096).await,
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(v.read(MIB - 4096, 4096).await.unwrap()[0], 3);
        // Growing again brings zeros, not the dropped data.
        vols.resize("g", 3 * MIB, false).await.unwrap();
        assert_eq!(&v.read(2 * MIB, 4096).await.unwrap()[..], &[0u8; 4096][..]);
    })
    .await
}
