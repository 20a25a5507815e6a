//! Snapshots, clones and rollback on a real single-node store: instant (nothing copied), kept
//! by GC for as long as they exist, and dedup across snapshots.

use std::time::Duration;

use bytes::Bytes;
use cairn_block::volume::DEFAULT_EXTENT_SIZE;
use cairn_block::{BlockDevice, VolumeConfig, VolumeError, Volumes};
use cairn_client::{now_ms, Client, DEFAULT_GC_HOLD_MS};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

/// Commits only on flush; no chunk cache, so every read here goes to the chunk store (the
/// volume tests run with the cache).
fn manual() -> VolumeConfig {
    VolumeConfig {
        commit_interval: Duration::from_secs(3600),
        chunk_cache_bytes: 0,
        ..VolumeConfig::default()
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(180), f)
        .await
        .expect("the test finishes within its bound")
}

fn random(rng: &mut impl Rng, n: u64) -> Bytes {
    Bytes::from((0..n).map(|_| rng.gen()).collect::<Vec<u8>>())
}

/// A GC pass that collects everything unreachable (as if the hold had passed).
async fn collect(client: &Client) {
    client
        .run_gc(
            now_ms() + DEFAULT_GC_HOLD_MS + 60_000,
            DEFAULT_GC_HOLD_MS,
            &|_| {},
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_clones_and_rollback_share_data_and_survive_gc() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let vols = Volumes::new(client.clone(), manual());
        vols.create("db", 4 * MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let first = random(&mut rng, 4 * MIB);
        let v = vols.open("db").await.unwrap();
        v.write(0, first.clone(), false).await.unwrap();
        // The snapshot takes the acknowledged (not yet flushed) writes: it commits them first.
        let s1 = vols.snapshot("db", "s1").await.unwrap();
        assert_eq!((s1.name.as_str(), s1.size), ("s1", 4 * MIB));
        let before_clone = client.stats().await.unwrap().unique_bytes;
        // Overwrite half of the volume, flush, and take a second snapshot.
        let second = random(&mut rng, 2 * MIB);
        v.write(MIB, second.clone(), false).await.unwrap();
        v.flush().await.unwrap();
        vols.snapshot("db", "s2").await.unwrap();
        assert!(matches!(
            vols.snapshot("db", "s2").await,
            Err(VolumeError::Exists(_))
        ));
        let names: Vec<_> = vols
            .snapshots("db")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["s1", "s2"]);
        // A clone of s1 costs no chunks and reads s1's content.
        let stored = client.stats().await.unwrap().unique_bytes;
        vols.clone_snapshot("db", "s1", "db-copy").await.unwrap();
        assert_eq!(client.stats().await.unwrap().unique_bytes, stored);
        assert!(stored >= before_clone);
        // GC keeps everything the snapshots and the clone reach.
        collect(&client).await;
        let c = vols.open("db-copy").await.unwrap();
        assert!(c.read(0, (4 * MIB) as u32).await.unwrap() == first);
        // The clone diverges without touching its origin.
        c.write(0, Bytes::from(vec![0xAB; 4096]), false)
            .await
            .unwrap();
        c.flush().await.unwrap();
        let now = v.read(0, (4 * MIB) as u32).await.unwrap();
        assert!(now[..MIB as usize] == first[..MIB as usize]);
        assert!(now[MIB as usize..3 * MIB as usize] == second[..]);
        // Rollback needs the volume closed, then brings s1 back.
        assert!(matches!(
            vols.rollback("db", "s1").await,
            Err(VolumeError::InUse(_))
        ));
        drop(v);
        let rolled = async {
            loop {
                match vols.rollback("db", "s1").await {
                    Ok(_) => return,
                    Err(VolumeError::InUse(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), rolled)
            .await
            .expect("rollback once the volume is closed");
        let v = vols.open("db").await.unwrap();
        assert!(v.read(0, (4 * MIB) as u32).await.unwrap() == first);
        drop(v);
        // Deleting s2 and collecting leaves s1's data (the volume and the clone reach it).
        vols.delete_snapshot("db", "s2").await.unwrap();
        collect(&client).await;
        let v = vols.open("db").await.unwrap();
        assert!(v.read(0, (4 * MIB) as u32).await.unwrap() == first);
        drop(v);
        // A volume with snapshots is deleted only with them.
        let gone = async {
            loop {
                match vols.delete("db", false).await {
                    Err(VolumeError::InUse(_)) => tokio::task::yield_now().await,
                    other => return other,
                }
            }
        };
        let refused = tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .unwrap();
        assert!(
            matches!(refused, Err(VolumeError::Invalid(_))),
            "{refused:?}"
        );
        vols.delete("db", true).await.unwrap();
        assert!(vols.snapshots("db").await.unwrap().is_empty());
        // The clone still reads (it shares s1's chunks, which GC must keep).
        collect(&client).await;
        let mut expect = first.to_vec();
        expect[..4096].fill(0xAB);
        assert!(c.read(0, (4 * MIB) as u32).await.unwrap()[..] == expect[..]);
    })
    .await
}

/// Ten snapshots, each taken after 1 % of a fully written volume changed in random 4 KiB
/// blocks, cost about 1.1 × one copy: each write stores its own 4 KiB, not its 64 KiB extent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_snapshots_after_one_percent_changes_cost_about_one_point_one_copies() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let vols = Volumes::new(client.clone(), manual());
        let size = 32 * MIB;
        vols.create("v", size, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let v = vols.open("v").await.unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for i in 0..size / MIB {
            v.write(i * MIB, random(&mut rng, MIB), false)
                .await
                .unwrap();
        }
        v.flush().await.unwrap();
        let blocks = size / 4096;
        for s in 0..10 {
            for _ in 0..blocks / 100 {
                let b = rng.gen_range(0..blocks);
                v.write(b * 4096, random(&mut rng, 4096), false)
                    .await
                    .unwrap();
            }
            vols.snapshot("v", &format!("s{s}")).await.unwrap();
        }
        collect(&client).await;
        let stored = client.stats().await.unwrap().unique_bytes;
        let ratio = stored as f64 / size as f64;
        println!("ten snapshots after 1 % changes: {stored} bytes stored, {ratio:.3} x one copy");
        assert!(ratio <= 1.15, "{ratio:.3} x one copy");
        // Every snapshot still reads as a whole.
        let c = vols.clone_snapshot("v", "s0", "c").await.unwrap();
        assert_eq!(c.size, size);
    })
    .await
}
