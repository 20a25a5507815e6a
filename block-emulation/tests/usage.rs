//! Volume space use and health on a real single-node store: what a volume's head reaches,
//! what snapshots add, that a clone costs nothing, and that a single node reports Healthy.

use std::time::Duration;

use bytes::Bytes;
use cairn_block::volume::{HealthState, DEFAULT_EXTENT_SIZE};
use cairn_block::{BlockDevice, VolumeConfig, Volumes};
use cairn_client::Client;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test finishes within its bound")
}

fn random(len: u64, seed: u64) -> Bytes {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut b = vec![0u8; len as usize];
    rng.fill(&mut b[..]);
    Bytes::from(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_bytes_count_what_the_head_reaches_and_clones_add_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let vols = Volumes::new(
            client.clone(),
            VolumeConfig {
                commit_interval: Duration::from_secs(3600),
                ..VolumeConfig::default()
            },
        );
        vols.create("thin", 10 << 30, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let empty = vols.usage("thin").await.unwrap();
        assert_eq!((empty.used_bytes, empty.state), (0, HealthState::Healthy));

        // 6 MiB of random data in three places of a 10 GiB volume, one of them written twice.
        let v = vols.open("thin").await.unwrap();
        v.write(0, random(2 * MIB, 1), false).await.unwrap();
        v.write(5 << 30, random(3 * MIB, 2), false).await.unwrap();
        v.write(9 << 30, random(MIB, 3), false).await.unwrap();
        v.write(9 << 30, random(MIB, 4), false).await.unwrap();
        v.flush().await.unwrap();
        let u = vols.usage("thin").await.unwrap();
        assert_eq!(u.used_bytes, 6 * MIB, "{u:?}");
        assert_eq!(u.used_chunks, 6 * MIB / u64::from(DEFAULT_EXTENT_SIZE));
        assert_eq!(u.state, HealthState::Healthy);
        assert_eq!(
            (u.replicas_wanted, u.replicas_min, u.chunks_short),
            (1, 1, 0)
        );
        assert!(
            u.chunks > u.used_chunks,
            "tree nodes are counted too: {u:?}"
        );
        assert_eq!((u.snapshots, u.snapshot_bytes), (0, 0));

        // A snapshot shares everything; overwriting 1 MiB afterwards makes the snapshot hold
        // the old 1 MiB on its own.
        vols.snapshot("thin", "s1").await.unwrap();
        assert_eq!(vols.usage("thin").await.unwrap().snapshot_bytes, 0);
        v.write(0, random(MIB, 5), false).await.unwrap();
        v.flush().await.unwrap();
        let u = vols.usage("thin").await.unwrap();
        assert_eq!((u.used_bytes, u.snapshots), (6 * MIB, 1), "{u:?}");
        assert_eq!(u.snapshot_bytes, MIB, "{u:?}");
        drop(v);

        // A clone reaches the snapshot's chunks: the same used bytes, and nothing new stored.
        let before = client.stats().await.unwrap();
        vols.clone_snapshot("thin", "s1", "copy").await.unwrap();
        let after = client.stats().await.unwrap();
        assert_eq!(after.unique_bytes, before.unique_bytes);
        let c = vols.usage("copy").await.unwrap();
        assert_eq!((c.used_bytes, c.state), (6 * MIB, HealthState::Healthy));
    })
    .await;
}
