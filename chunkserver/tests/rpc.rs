//! The chunk service over real QUIC on loopback: one node serves its store, another calls it.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunkserver::rpc::{ChunkRequest, ChunkResponse, MAX_IDS_PER_CALL};
use cairn_chunkserver::{
    ChunkConfig, ChunkError, ChunkService, ChunkStore, RemoteChunks, StoredChunk, MAX_STORED_LEN,
};
use cairn_core::codec::Codec;
use cairn_core::{ChunkId, ErrorKind, MAX_CHUNK_SIZE};
use cairn_net::{Client, NetConfig, NodeIdentity, RpcError, SendBody, Server, ServerStats, SiteCa};
use common::{bounded, random_bytes};

/// A node serving its chunk store.
struct Node {
    store: Arc<ChunkStore>,
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

/// A site with nodes `n1` (serving) and `n2` (calling).
fn identities() -> (SiteCa, NodeIdentity, NodeIdentity) {
    let ca = SiteCa::generate("lyon").unwrap();
    let n1 = ca.issue_node("n1", &["127.0.0.1".into()]).unwrap();
    let n2 = ca.issue_node("n2", &["127.0.0.1".into()]).unwrap();
    (ca, n1, n2)
}

fn serve(identity: &NodeIdentity) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ChunkStore::open(dir.path(), ChunkConfig::default()).unwrap());
    let server = Server::builder(identity, NetConfig::default())
        .service(ChunkService::new(store.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Node {
        store,
        addr,
        stats,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

/// A running node `n1` and a client on `n2` calling it.
fn setup() -> (Node, Client, RemoteChunks) {
    let (_ca, n1, n2) = identities();
    let node = serve(&n1);
    let client = Client::new(&n2, NetConfig::default(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let peer = client
        .peer(node.addr, "n1")
        .with_timeout(Duration::from_secs(20));
    let remote = RemoteChunks::new(peer);
    (node, client, remote)
}

/// `len` compressible bytes (text-like) from `seed`.
fn text_bytes(len: usize, seed: u64) -> Bytes {
    let line = format!("line of a log file written by seed {seed}, fairly repetitive\n");
    Bytes::from(line.repeat(len / line.len() + 1).into_bytes()).slice(..len)
}

fn chunk(raw: Bytes) -> (ChunkId, StoredChunk) {
    (ChunkId::of(&raw), StoredChunk::encode(raw))
}

fn remote_kind(e: &ChunkError) -> Option<ErrorKind> {
    match e {
        ChunkError::Rpc {
            source: RpcError::Remote { kind, .. },
            ..
        } => Some(*kind),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn have_put_get_round_trip_chunks_of_every_size() {
    bounded(async {
        let (node, _client, remote) = setup();
        let raws = [
            Bytes::new(),
            Bytes::from_static(b"x"),
            random_bytes(1000, 1),
            text_bytes(100_000, 2),
            random_bytes(1 << 20, 3),
            random_bytes(MAX_CHUNK_SIZE, 4),
            text_bytes(MAX_CHUNK_SIZE, 5),
        ];
        let chunks: Vec<_> = raws.iter().cloned().map(chunk).collect();
        assert_eq!(chunks[5].1.codec, Codec::Raw);
        assert_eq!(chunks[6].1.codec, Codec::Zstd);
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();

        assert_eq!(remote.have(&ids).await.unwrap(), vec![false; ids.len()]);
        for (id, c) in &chunks {
            assert!(remote.put(id, c).await.unwrap(), "{id} is new");
        }
        assert_eq!(remote.have(&ids).await.unwrap(), vec![true; ids.len()]);

        for ((id, c), raw) in chunks.iter().zip(&raws) {
            let got = remote.get(id).await.unwrap().expect("stored");
            assert_eq!(&got, c);
            assert_eq!(&remote.get_verified(id).await.unwrap().unwrap(), raw);
            // The serving node holds the same bytes.
            assert_eq!(&node.store.get(id).unwrap().unwrap(), raw);
        }
        let unknown = ChunkId::of(b"never stored");
        assert_eq!(remote.get(&unknown).await.unwrap(), None);
        assert_eq!(remote.get_verified(&unknown).await.unwrap(), None);
        assert_eq!(
            remote.have(&[unknown, ids[2]]).await.unwrap(),
            vec![false, true]
        );

        let stats = remote.stats().await.unwrap();
        assert_eq!(stats, node.store.stats().unwrap());
        assert_eq!(stats.chunks, raws.len() as u64);
        assert_eq!(
            stats.raw_bytes,
            raws.iter().map(|r| r.len() as u64).sum::<u64>()
        );
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_of_a_stored_chunk_is_acknowledged_without_storing_again() {
    bounded(async {
        let (node, _client, remote) = setup();
        let (id, c) = chunk(text_bytes(300_000, 7));
        assert!(remote.put(&id, &c).await.unwrap());
        let before = node.store.stats().unwrap();
        assert!(!remote.put(&id, &c).await.unwrap());
        assert_eq!(node.store.stats().unwrap(), before);

        // The payload of a chunk already there is not read: a put of other bytes under the same
        // id is acknowledged and leaves the stored copy as it was.
        let peer = remote.peer().clone();
        let (resp, _) = peer
            .call_with_body(
                &ChunkRequest::Put {
                    id,
                    codec: Codec::Raw,
                    raw_len: 4,
                    len: 4,
                },
                Some(SendBody::from_bytes(Bytes::from_static(b"junk"))),
            )
            .await
            .unwrap();
        assert_eq!(resp, ChunkResponse::Put { stored: false });
        assert_eq!(node.store.stats().unwrap(), before);
        assert_eq!(remote.get(&id).await.unwrap().unwrap(), c);
        node.stop().await;
    })
    .await
}

/// A writer that finds its chunk already stored on a node (by `Touch`, or by a `Put` of a chunk
/// stored since its `Touch` asked) makes that copy young for GC's hold, as a local dedup put
/// does; `Have` only asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touch_and_a_put_of_a_stored_chunk_refresh_its_reference_time_and_have_does_not() {
    bounded(async {
        let (node, _client, remote) = setup();
        let (id, c) = chunk(text_bytes(100_000, 11));
        let absent = ChunkId::of(b"not stored");
        assert!(remote.put(&id, &c).await.unwrap());
        let hold_ms = 3_600_000;
        let age = |store: &ChunkStore| store.meta(&id).unwrap().unwrap().last_referenced_ms();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };

        node.store.backdate_for_test(&id, 2 * hold_ms).unwrap();
        let old = age(&node.store);
        assert_eq!(remote.have(&[id, absent]).await.unwrap(), vec![true, false]);
        assert_eq!(age(&node.store), old, "have refreshed nothing");
        let asked = now() - 1000;
        assert_eq!(
            remote.touch(&[id, absent], None).await.unwrap(),
            vec![true, false]
        );
        assert!(age(&node.store) >= asked);
        assert_eq!(
            node.store
                .delete_unreferenced_before(&[id], asked - hold_ms)
                .unwrap(),
            vec![false]
        );

        node.store.backdate_for_test(&id, 2 * hold_ms).unwrap();
        let asked = now() - 1000;
        assert!(!remote.put(&id, &c).await.unwrap());
        assert!(
            age(&node.store) >= asked,
            "a put of a stored chunk refreshed it"
        );

        // Too many ids in one call are refused.
        let many = vec![id; MAX_IDS_PER_CALL + 1];
        assert!(remote.touch(&many, None).await.is_err());
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_do_not_hash_to_their_id_are_refused_and_not_stored() {
    bounded(async {
        let (node, _client, remote) = setup();
        let (id_a, a) = chunk(random_bytes(50_000, 8));
        let (id_b, _) = chunk(random_bytes(50_000, 9));

        // The bytes of one chunk under the id of another.
        let err = remote.put(&id_b, &a).await.unwrap_err();
        assert_eq!(remote_kind(&err), Some(ErrorKind::InvalidInput), "{err}");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        // One flipped byte.
        let mut bad = a.payload.to_vec();
        bad[1234] ^= 0x40;
        let flipped = StoredChunk {
            payload: Bytes::from(bad),
            ..a.clone()
        };
        let err = remote.put(&id_a, &flipped).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

        // A "zstd" payload that is not a zstd frame.
        let (id_z, z) = chunk(text_bytes(80_000, 10));
        assert_eq!(z.codec, Codec::Zstd);
        let garbage = StoredChunk {
            payload: random_bytes(z.payload.len(), 11),
            ..z.clone()
        };
        let err = remote.put(&id_z, &garbage).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

        // A body shorter than announced.
        let peer = remote.peer().clone();
        let err = peer
            .call_with_body(
                &ChunkRequest::Put {
                    id: id_a,
                    codec: a.codec,
                    raw_len: a.raw_len,
                    len: a.payload.len() as u32,
                },
                Some(SendBody::from_bytes(a.payload.slice(..1000))),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");

        assert_eq!(
            remote.have(&[id_a, id_b, id_z]).await.unwrap(),
            vec![false; 3]
        );
        assert_eq!(node.store.stats().unwrap().chunks, 0);
        // The right bytes are then taken.
        assert!(remote.put(&id_a, &a).await.unwrap());
        assert!(remote.put(&id_z, &z).await.unwrap());
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_local_copy_answers_a_corrupt_error() {
    bounded(async {
        let (node, _client, remote) = setup();
        let (id, c) = chunk(random_bytes(200_000, 12));
        let (id_ok, ok) = chunk(random_bytes(200_000, 13));
        assert!(remote.put(&id, &c).await.unwrap());
        assert!(remote.put(&id_ok, &ok).await.unwrap());

        let mut rotten = c.payload.to_vec();
        rotten[100_000] ^= 1;
        node.store.corrupt_for_test(&id, &rotten).unwrap();

        let err = remote.get(&id).await.unwrap_err();
        assert_eq!(remote_kind(&err), Some(ErrorKind::Corrupt), "{err}");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        let err = remote.get_verified(&id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        // Other chunks, and the connection, are fine.
        assert_eq!(remote.get(&id_ok).await.unwrap().unwrap(), ok);
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_fetch_source_says_so_and_refuses_fetch() {
    bounded(async {
        let (node, _client, remote) = setup();
        let (id, c) = chunk(random_bytes(10_000, 14));
        assert!(remote.put(&id, &c).await.unwrap());
        assert!(!remote.fetches().await.unwrap());
        // Even a chunk it holds: `Fetch` is for nodes that run a metadata-only link.
        let err = remote.fetch(&id).await.unwrap_err();
        assert_eq!(remote_kind(&err), Some(ErrorKind::InvalidInput), "{err}");
        assert!(err.to_string().contains("metadata-only link"), "{err}");
        // The connection is fine.
        assert_eq!(remote.get(&id).await.unwrap().unwrap(), c);
        node.stop().await;
    })
    .await
}

/// An endless body: only a server that stops reading lets a call with it end.
fn endless_body() -> SendBody {
    let piece = Bytes::from(vec![7u8; 64 << 10]);
    SendBody::from_stream(futures::stream::repeat_with(move || Ok(piece.clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused() {
    bounded(async {
        let (node, _client, remote) = setup();
        let peer = remote.peer().clone();
        let ids: Vec<ChunkId> = (0..=MAX_IDS_PER_CALL as u32)
            .map(|i| ChunkId::of(&i.to_le_bytes()))
            .collect();

        // The typed caller refuses before sending; the server refuses what a caller sends.
        let err = remote.have(&ids).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
        let err = peer
            .call(&ChunkRequest::Have { ids: ids.clone() })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Remote { kind: ErrorKind::LimitExceeded, message } if message.contains("10000")),
            "{err:?}"
        );
        let err = peer
            .call(&ChunkRequest::Delete { ids: ids.clone() })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err:?}");
        let err = remote.delete(&ids).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
        let err = peer
            .call(&ChunkRequest::List {
                after: None,
                max: MAX_IDS_PER_CALL as u32 + 1,
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err:?}");
        // Exactly at the limit is fine.
        let present = remote.have(&ids[..MAX_IDS_PER_CALL]).await.unwrap();
        assert_eq!(present.len(), MAX_IDS_PER_CALL);

        // A put announcing more than a chunk's payload is refused from its head, with an
        // endless body following it.
        let id = ChunkId::of(b"big");
        for (raw_len, len) in [
            (MAX_CHUNK_SIZE as u32, MAX_STORED_LEN as u32 + 1),
            (MAX_CHUNK_SIZE as u32 + 1, 1000),
            (u32::MAX, u32::MAX),
        ] {
            let err = peer
                .call_with_body(
                    &ChunkRequest::Put {
                        id,
                        codec: Codec::Raw,
                        raw_len,
                        len,
                    },
                    Some(endless_body()),
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err:?}");
        }
        // A put announcing a small payload and sending an endless one is refused as soon as
        // the excess arrives (the server does not read it all).
        let err = peer
            .call_with_body(
                &ChunkRequest::Put {
                    id,
                    codec: Codec::Raw,
                    raw_len: 1000,
                    len: 1000,
                },
                Some(endless_body()),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Remote { kind: ErrorKind::LimitExceeded, message } if message.contains("longer")),
            "{err:?}"
        );
        // The typed caller refuses an oversized chunk itself.
        let big = StoredChunk {
            codec: Codec::Raw,
            raw_len: MAX_CHUNK_SIZE as u32 + 1,
            payload: random_bytes(MAX_CHUNK_SIZE + 1, 14),
        };
        let err = remote.put(&ChunkId::of(&big.payload), &big).await.unwrap_err();
        assert!(matches!(err, ChunkError::TooLarge(_)), "{err}");

        assert_eq!(node.store.stats().unwrap().chunks, 0);
        // The node still serves.
        let (id, c) = chunk(random_bytes(10, 15));
        assert!(remote.put(&id, &c).await.unwrap());
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_visit_every_id_once_in_order() {
    bounded(async {
        let (node, _client, remote) = setup();
        let mut stored = BTreeSet::new();
        for i in 0..57u32 {
            let (id, c) = chunk(Bytes::from(i.to_le_bytes().repeat(100)));
            node.store.put(&id, &c).unwrap();
            stored.insert(id);
        }

        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let page = remote.list(after, 10).await.unwrap();
            pages += 1;
            assert!(pages <= 7, "the walk does not end");
            seen.extend_from_slice(&page);
            if page.len() < 10 {
                break;
            }
            after = page.last().copied();
        }
        assert_eq!(pages, 6);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in id order, once");
        assert_eq!(seen, stored.iter().copied().collect::<Vec<_>>());

        // A page may start after an id that is not stored.
        let mid = *stored.iter().nth(20).unwrap();
        let mut probe = mid.0;
        probe[31] = probe[31].wrapping_sub(1);
        let from_probe = remote.list(Some(ChunkId(probe)), 3).await.unwrap();
        assert_eq!(from_probe[0], mid);
        assert!(remote.list(None, 0).await.unwrap().is_empty());
        let last = *stored.iter().next_back().unwrap();
        assert!(remote.list(Some(last), 10).await.unwrap().is_empty());
        let err = remote.list(None, MAX_IDS_PER_CALL + 1).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded);
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_remove_chunks_and_update_stats() {
    bounded(async {
        let (node, _client, remote) = setup();
        let chunks: Vec<_> = (0..5)
            .map(|i| chunk(random_bytes(10_000 + i * 1000, 20 + i as u64)))
            .collect();
        for (id, c) in &chunks {
            assert!(remote.put(id, c).await.unwrap());
        }
        let before = remote.stats().await.unwrap();
        let (a, b) = (chunks[0].0, chunks[1].0);
        let unknown = ChunkId::of(b"unknown");
        let existed = remote.delete(&[a, b, a, unknown]).await.unwrap();
        assert_eq!(existed, vec![true, true, false, false]);

        let after = remote.stats().await.unwrap();
        assert_eq!(after.chunks, before.chunks - 2);
        assert_eq!(after.raw_bytes, before.raw_bytes - 10_000 - 11_000);
        assert_eq!(
            after.stored_bytes,
            before.stored_bytes - (chunks[0].1.payload.len() + chunks[1].1.payload.len()) as u64
        );
        assert_eq!(
            remote
                .have(&chunks.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .await
                .unwrap(),
            vec![false, false, true, true, true]
        );
        assert_eq!(remote.get(&a).await.unwrap(), None);
        assert!(remote.delete(&[]).await.unwrap().is_empty());
        // A deleted chunk can be stored again.
        assert!(remote.put(&a, &chunks[0].1).await.unwrap());
        node.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_puts_at_once_share_one_connection() {
    bounded(async {
        let (node, client, remote) = setup();
        let chunks: Vec<_> = (0..32u64)
            .map(|i| {
                if i % 2 == 0 {
                    chunk(random_bytes(256 << 10, 100 + i))
                } else {
                    chunk(text_bytes(512 << 10, 100 + i))
                }
            })
            .collect();
        let puts = chunks.iter().map(|(id, c)| {
            let remote = remote.clone();
            async move { remote.put(id, c).await }
        });
        let results = futures::future::join_all(puts).await;
        for r in results {
            assert!(r.unwrap());
        }
        assert_eq!(client.pool().open_connections(), 1);
        assert_eq!(node.stats.connections_accepted(), 1);
        assert_eq!(node.stats.calls(), 32);
        let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
        assert_eq!(remote.have(&ids).await.unwrap(), vec![true; 32]);
        assert_eq!(node.store.stats().unwrap().chunks, 32);

        // And 32 gets at once.
        let gets = chunks.iter().map(|(id, _)| {
            let remote = remote.clone();
            async move { remote.get(id).await }
        });
        let got = futures::future::join_all(gets).await;
        for (r, (_, c)) in got.into_iter().zip(&chunks) {
            assert_eq!(&r.unwrap().unwrap(), c);
        }
        node.stop().await;
    })
    .await
}
