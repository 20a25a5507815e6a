//! An S3 gateway whose chunks are replicated over three chunk servers in three zones (real
//! QUIC with mutual TLS on loopback, RF 3, write quorum 2): every object lands on all three;
//! with one chunk server stopped, S3 writes and reads keep succeeding and land on the other
//! two.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use cairn_chunkserver::{
    ChunkConfig, ChunkService, ChunkStore, ReplicatedChunks, ReplicationConfig,
};
use cairn_core::cluster::{ClusterMap, NodeId, NodeInfo, StagedChanges};
use cairn_core::ChunkId;
use cairn_manifestserver::{ManifestConfig, ManifestStore};
use cairn_net::{NetConfig, NodeIdentity, Server, SiteCa};
use rand::RngCore;

const KEY_ID: &str = "AKIAREPLICATEDSITE01";
const SECRET: &str = "replicated-site-secret-0123456789abcdef";

/// One chunk server.
struct ChunkNode {
    info: NodeInfo,
    store: Arc<ChunkStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl ChunkNode {
    fn start(ca: &SiteCa, id: NodeId, zone: &str) -> ChunkNode {
        let name = format!("n{id}");
        let identity: NodeIdentity = ca.issue_node(&name, &["127.0.0.1".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ChunkStore::open(dir.path(), ChunkConfig::default()).unwrap());
        let server = Server::builder(&identity, NetConfig::default())
            .service(ChunkService::new(store.clone()))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let addr: SocketAddr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        ChunkNode {
            info: NodeInfo::new(id, name, addr.to_string(), zone),
            store,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// Every chunk id the node stores.
    fn ids(&self) -> BTreeSet<ChunkId> {
        let mut out = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self.store.list_ids(after.as_ref(), 1000).unwrap();
            let done = page.len() < 1000;
            after = page.last().copied();
            out.extend(page);
            if done {
                return out;
            }
        }
    }
}

fn sdk(addr: SocketAddr) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(KEY_ID, SECRET, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

async fn put_and_check(s3: &aws_sdk_s3::Client, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket("replicated")
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
    let got = s3
        .get_object()
        .bucket("replicated")
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(got.as_ref() == body, "{key}: bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_over_replicated_chunks_survives_a_stopped_chunk_server() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("scenario finished in time");
}

async fn scenario() {
    let ca = SiteCa::generate("lyon").unwrap();
    let mut nodes: Vec<ChunkNode> = [(1, "a"), (2, "b"), (3, "c")]
        .into_iter()
        .map(|(id, zone)| ChunkNode::start(&ca, id, zone))
        .collect();
    let map = ClusterMap::new("lyon")
        .apply(&StagedChanges {
            upsert: nodes.iter().map(|n| n.info.clone()).collect(),
            set_rf: Some(3),
            ..StagedChanges::default()
        })
        .unwrap();
    assert_eq!(map.write_quorum(), 2);

    // The gateway: chunks replicated over the three servers, metadata local.
    let gw_identity = ca.issue_node("gw", &["127.0.0.1".into()]).unwrap();
    let net = cairn_net::Client::new(
        &gw_identity,
        NetConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let chunks = Arc::new(ReplicatedChunks::with_config(
        map,
        None,
        net,
        tokio::runtime::Handle::current(),
        ReplicationConfig {
            call_timeout: Duration::from_secs(2),
            ..ReplicationConfig::default()
        },
    ));
    let meta_dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(ManifestStore::open(meta_dir.path(), ManifestConfig::default()).unwrap());
    let client = cairn_client::Client::from_backends(chunks, meta, 0, 99);
    client.import_key(KEY_ID, SECRET, "test").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_s3, s3_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(cairn_s3::serve(
        listener,
        cairn_s3::S3Config::default(),
        client,
        async {
            let _ = s3_stopped.await;
        },
    ));
    let s3 = sdk(addr);
    s3.create_bucket()
        .bucket("replicated")
        .send()
        .await
        .unwrap();

    // All three up: every chunk on every node.
    for i in 0..4 {
        put_and_check(&s3, &format!("before/{i}"), &random(3 << 20)).await;
    }
    let before: Vec<_> = nodes.iter().map(ChunkNode::ids).collect();
    assert!(before[0].len() >= 4, "objects were cut into chunks");
    assert_eq!(before[0], before[1], "n1 and n2 hold the same chunks");
    assert_eq!(before[0], before[2], "n1 and n3 hold the same chunks");

    // n2 stops: writes and reads keep succeeding (quorum 2 of 3).
    nodes[1].stop().await;
    let mut during = Vec::new();
    for i in 0..4 {
        let body = random(3 << 20);
        put_and_check(&s3, &format!("during/{i}"), &body).await;
        during.push(body);
    }
    for i in 0..4 {
        let got = s3
            .get_object()
            .bucket("replicated")
            .key(format!("before/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_length(), Some(3 << 20));
    }
    let n1 = nodes[0].ids();
    let n3 = nodes[2].ids();
    let n2 = nodes[1].ids();
    let new_on_n1: BTreeSet<_> = n1.difference(&before[0]).copied().collect();
    assert!(!new_on_n1.is_empty(), "writes during the outage reached n1");
    assert_eq!(n1, n3, "n1 and n3 took every write");
    assert!(
        new_on_n1.is_disjoint(&n2),
        "the stopped node received nothing"
    );

    let _ = stop_s3.send(());
    gateway.await.unwrap().unwrap();
    for n in &mut nodes {
        n.stop().await;
    }
}
