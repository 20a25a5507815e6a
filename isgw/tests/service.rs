//! The link service under bad input: random and mangled requests, as another site could send
//! them, decode or fail cleanly, and those that decode are answered (or refused) by a real
//! site without a panic; a chunk whose bytes do not hash to its id, or a node shipped before
//! its children, is refused and nothing of the call after it is stored.

use std::sync::Arc;

use bytes::Bytes;
use cairn_client::{ChunkId, ChunkRef, Client};
use cairn_core::codec::Codec;
use cairn_core::extent::{Leaf, TreeNode};
use cairn_core::format::Versioned;
use cairn_isgw::proto::{LinkRequest, Shipped, VersionKey};
use cairn_isgw::LinkService;
use cairn_net::{PeerInfo, RecvBody, Service};
use rand::{Rng, SeedableRng};

fn peer() -> PeerInfo {
    PeerInfo {
        site: "other".into(),
        node: "link".into(),
        addr: "127.0.0.1:1".parse().expect("addr"),
        cert: Arc::new(rustls_pki_types::CertificateDer::from(Vec::new())),
    }
}

/// Valid requests of every kind, as seeds for mangling.
fn samples() -> Vec<LinkRequest> {
    let id = ChunkId::of(b"x");
    let key = VersionKey {
        bucket: "bkt".into(),
        key: "k".into(),
        version: cairn_client::VersionId(42),
    };
    vec![
        LinkRequest::Hello {
            protocol: 1,
            site: 7,
            link: "l".into(),
        },
        LinkRequest::Lacks {
            versions: vec![key.clone()],
        },
        LinkRequest::Have {
            refs: vec![
                ChunkRef::data(id),
                ChunkRef {
                    id,
                    node_len: Some(9),
                },
            ],
        },
        LinkRequest::Put {
            chunks: vec![Shipped {
                chunk: ChunkRef::data(id),
                codec: Codec::Raw,
                raw_len: 1,
                len: 1,
            }],
        },
        LinkRequest::Apply {
            versions: Vec::new(),
            removals: vec![key.clone()],
        },
        LinkRequest::Logs { reader: 3 },
        LinkRequest::Changes {
            reader: 3,
            log: 0,
            after: 0,
            max: 10,
        },
        LinkRequest::Versions { keys: vec![key] },
        LinkRequest::ListVersions {
            bucket: "bkt".into(),
            after: None,
            max: 10,
        },
        LinkRequest::Fetch { ids: vec![id] },
        LinkRequest::BucketList,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mangled_requests_are_answered_or_refused_without_a_panic() {
    let dir = tempfile::tempdir().expect("tmp");
    let client = Client::open_dir(dir.path()).expect("site");
    client.create_bucket("bkt", "K").await.expect("bucket");
    let service = LinkService::new(client);
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let seeds: Vec<Vec<u8>> = samples().iter().map(|r| r.encode()).collect();
    let (mut decoded, mut handled) = (0, 0);
    for round in 0..3000 {
        let bytes = if round % 3 == 0 {
            let len = rng.gen_range(0..256);
            (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
        } else {
            let mut b = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(0..4) {
                if b.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..b.len());
                match rng.gen_range(0..3) {
                    0 => b[at] = rng.gen(),
                    1 => b.truncate(at),
                    _ => b.insert(at, rng.gen()),
                }
            }
            b
        };
        let Ok(req) = LinkRequest::decode(&bytes) else {
            continue;
        };
        decoded += 1;
        // A body that may or may not match what a Put announces.
        let body = RecvBody::empty();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            service.handle(peer(), req, body),
        )
        .await
        .expect("every request is answered in time");
        if answer.is_ok() {
            handled += 1;
        }
    }
    assert!(
        decoded > 400,
        "many mangled requests still decode: {decoded}"
    );
    assert!(handled > 100, "and many are answered: {handled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_chunks_are_checked_and_nodes_wait_for_their_children() {
    use cairn_client::StoredChunk;
    let dir = tempfile::tempdir().expect("tmp");
    let client = Client::open_dir(dir.path()).expect("site");
    let data = Bytes::from_static(b"some chunk bytes");
    let id = ChunkId::of(&data);
    // Bytes that do not hash to the id they are shipped under.
    let wrong = client
        .put_shipped(vec![(
            ChunkRef::data(id),
            StoredChunk::raw(Bytes::from_static(b"other bytes")),
        )])
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
    assert_eq!(
        client.have_shipped(vec![ChunkRef::data(id)]).await.unwrap(),
        vec![false]
    );
    // A node whose child is not stored is refused; with the child first it is stored.
    let node = TreeNode::Leaves(vec![Leaf::chunk(id, data.len() as u64)]).encode();
    let node_id = ChunkId::of(&node);
    let node_ref = ChunkRef {
        id: node_id,
        node_len: Some(data.len() as u64),
    };
    let early = client
        .put_shipped(vec![(
            node_ref,
            StoredChunk::raw(Bytes::from(node.clone())),
        )])
        .await;
    assert!(early.is_err(), "{early:?}");
    assert_eq!(
        client.have_shipped(vec![node_ref]).await.unwrap(),
        vec![false]
    );
    client
        .put_shipped(vec![
            (ChunkRef::data(id), StoredChunk::raw(data.clone())),
            (node_ref, StoredChunk::raw(Bytes::from(node))),
        ])
        .await
        .expect("children first");
    assert_eq!(
        client
            .have_shipped(vec![node_ref, ChunkRef::data(id)])
            .await
            .unwrap(),
        vec![true, true]
    );
}
