//! What backups use: a snapshot's layout (in order, covering it, zeros merged, chunks by id and
//! verified on read) and a volume rebuilt from it, byte for byte; an aborted restore leaves no
//! volume.

use std::time::Duration;

use bytes::Bytes;
use cairn_block::volume::DEFAULT_EXTENT_SIZE;
use cairn_block::{BlockDevice, VolumeConfig, VolumeError, Volumes};
use cairn_client::Client;
use cairn_core::extent::Target;
use cairn_core::ChunkId;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_layout_rebuilds_the_volume() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let dir = tempfile::tempdir().unwrap();
        let client = Client::open_dir(dir.path()).unwrap();
        let vols = Volumes::new(client, VolumeConfig::default());
        vols.create("src", 8 * MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let data: Vec<u8> = (0..3 * MIB).map(|_| rng.gen()).collect();
        let v = vols.open("src").await.unwrap();
        v.write(MIB, Bytes::from(data.clone()), false)
            .await
            .unwrap();
        v.write(6 * MIB + 100, Bytes::from_static(b"small"), false)
            .await
            .unwrap();
        v.flush().await.unwrap();
        drop(v);
        vols.snapshot("src", "s").await.unwrap();

        let layout = vols.snapshot_layout("src", "s").await.unwrap();
        assert_eq!(
            (layout.size, layout.block_size, layout.extent_size),
            (8 * MIB, 4096, DEFAULT_EXTENT_SIZE)
        );
        let mut at = 0;
        for p in &layout.pieces {
            assert_eq!(p.offset, at, "pieces are in order without gaps");
            at += p.len;
        }
        assert_eq!(at, 8 * MIB);
        assert_eq!(layout.pieces[0].target, Target::Zeros);
        assert_eq!(layout.pieces[0].len, MIB, "zeros are merged");
        assert!(layout.chunks().len() >= 48, "{}", layout.chunks().len());
        for id in layout.chunks() {
            assert_eq!(ChunkId::of(&vols.read_chunk(id).await.unwrap()), id);
        }

        // Rebuild it piece by piece.
        let r = vols
            .begin_restore("copy", layout.size, layout.block_size, layout.extent_size)
            .await
            .unwrap();
        for p in &layout.pieces {
            let bytes = match &p.target {
                Target::Zeros => continue,
                Target::Inline(b) => b.clone(),
                Target::Chunk { id, skip } => {
                    let c = vols.read_chunk(*id).await.unwrap();
                    c.slice(*skip as usize..*skip as usize + p.len as usize)
                }
            };
            r.write(p.offset, bytes).await.unwrap();
        }
        let info = r.finish().await.unwrap();
        assert_eq!(info.size, 8 * MIB);
        let copy = vols.open("copy").await.unwrap();
        let back = copy.read(0, (8 * MIB) as u32).await.unwrap();
        let mut want = vec![0u8; (8 * MIB) as usize];
        want[MIB as usize..(4 * MIB) as usize].copy_from_slice(&data);
        want[(6 * MIB + 100) as usize..(6 * MIB + 105) as usize].copy_from_slice(b"small");
        assert!(back == want, "the rebuilt volume differs");
        drop(copy);

        // An aborted restore leaves nothing; a taken name is refused before anything is written.
        let r = vols
            .begin_restore("gone", MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .unwrap();
        r.write(0, Bytes::from(vec![7u8; 4096])).await.unwrap();
        r.abort().await;
        assert!(matches!(
            vols.info("gone").await,
            Err(VolumeError::NotFound(_))
        ));
        assert!(matches!(
            vols.begin_restore("copy", MIB, 4096, DEFAULT_EXTENT_SIZE)
                .await,
            Err(VolumeError::Exists(_))
        ));
    })
    .await
    .expect("the test finishes within its bound");
}
