//! Shared pieces of the transport tests: a test service, identities and a running server.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_core::format::Versioned;
use cairn_core::ErrorKind;
use cairn_net::{
    Client, NetConfig, NodeIdentity, PeerInfo, RecvBody, Rpc, RpcError, SendBody, Server,
    ServerStats, Service, SiteCa,
};
use serde::{Deserialize, Serialize};

/// Every test body runs under this bound.
pub const TEST_BOUND: Duration = Duration::from_secs(60);

/// Runs `f` and fails the test if it takes longer than [`TEST_BOUND`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, f)
        .await
        .expect("test did not finish in time")
}

/// Waits (bounded) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The test service's requests.
#[derive(Debug, Serialize, Deserialize)]
pub enum TestRpc {
    /// Answers with the same text.
    Echo(String),
    /// Fails with `NotFound` and this message.
    FailNotFound(String),
    /// Sleeps this many milliseconds, then answers.
    Sleep(u64),
    /// Reads the request body, answers its length and BLAKE3 hash.
    Upload,
    /// Answers with a body of `len` pseudo-random bytes from `seed`.
    Download {
        /// Body length.
        len: u64,
        /// Generator seed.
        seed: u64,
    },
    /// Answers with the caller's identity as the server saw it.
    WhoAmI,
}

impl Versioned for TestRpc {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "test request";
}

/// The test service's responses.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestResp {
    /// Echoed text.
    Echo(String),
    /// Done.
    Done,
    /// Length and hash of an uploaded body.
    Uploaded(u64, [u8; 32]),
    /// The caller's site and node.
    Peer(String, String),
}

impl Versioned for TestResp {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "test response";
}

impl Rpc for TestRpc {
    const SERVICE: &'static str = "test";
    type Response = TestResp;
}

/// A request type whose service no server registers.
#[derive(Debug, Serialize, Deserialize)]
pub struct Unregistered;

impl Versioned for Unregistered {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "unregistered";
}

impl Rpc for Unregistered {
    const SERVICE: &'static str = "nobody";
    type Response = TestResp;
}

/// What the test service saw.
#[derive(Default)]
pub struct Seen {
    /// Sleep handlers dropped before they finished (the server enforced a deadline).
    pub cancelled: AtomicUsize,
}

/// The test service.
pub struct TestService {
    /// Shared with the test.
    pub seen: Arc<Seen>,
}

struct CancelGuard(Arc<Seen>, bool);

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Service for TestService {
    type Request = TestRpc;

    async fn handle(
        &self,
        peer: PeerInfo,
        req: TestRpc,
        mut body: RecvBody,
    ) -> Result<(TestResp, Option<SendBody>), RpcError> {
        match req {
            TestRpc::Echo(s) => Ok((TestResp::Echo(s), None)),
            TestRpc::FailNotFound(m) => Err(RpcError::remote(ErrorKind::NotFound, m)),
            TestRpc::Sleep(ms) => {
                let mut guard = CancelGuard(self.seen.clone(), false);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                guard.1 = true;
                Ok((TestResp::Done, None))
            }
            TestRpc::Upload => {
                let mut hasher = blake3::Hasher::new();
                let mut len = 0u64;
                while let Some(piece) = body.chunk().await? {
                    assert!(piece.len() <= cairn_net::wire::MAX_DATA_FRAME);
                    len += piece.len() as u64;
                    hasher.update(&piece);
                }
                Ok((TestResp::Uploaded(len, *hasher.finalize().as_bytes()), None))
            }
            TestRpc::Download { len, seed } => Ok((TestResp::Done, Some(generated(len, seed)))),
            TestRpc::WhoAmI => Ok((TestResp::Peer(peer.site, peer.node), None)),
        }
    }
}

/// A site CA and identities for `nodes`.
pub fn site(name: &str, nodes: &[&str]) -> (SiteCa, Vec<NodeIdentity>) {
    let ca = SiteCa::generate(name).unwrap();
    let ids = nodes
        .iter()
        .map(|n| ca.issue_node(n, &["127.0.0.1".into()]).unwrap())
        .collect();
    (ca, ids)
}

/// A running test server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<ServerStats>,
    /// What its service saw.
    pub seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Shuts the server down and waits until its endpoint is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap();
    }
}

/// Starts a server for `identity` on `addr` with the test service.
pub fn start_on(identity: &NodeIdentity, config: NetConfig, addr: SocketAddr) -> Running {
    try_start_on(identity, config, addr).unwrap()
}

/// Starts a server on `addr`, which a stopped server may still hold for a moment (its socket
/// closes when quinn's background driver ends): retries for a bounded time.
pub async fn restart_on(identity: &NodeIdentity, addr: SocketAddr) -> Running {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match try_start_on(identity, NetConfig::default(), addr) {
            Ok(r) => return r,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    }
}

fn try_start_on(
    identity: &NodeIdentity,
    config: NetConfig,
    addr: SocketAddr,
) -> Result<Running, cairn_net::NetError> {
    let seen = Arc::new(Seen::default());
    let server = Server::builder(identity, config)
        .service(TestService { seen: seen.clone() })
        .bind(addr)?;
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
    Ok(Running {
        addr,
        stats,
        seen,
        stop: Some(tx),
        task,
    })
}

/// Starts a server for `identity` on a free loopback port.
pub fn start(identity: &NodeIdentity) -> Running {
    start_on(
        identity,
        NetConfig::default(),
        "127.0.0.1:0".parse().unwrap(),
    )
}

/// A client for `identity` on a loopback port.
pub fn client(identity: &NodeIdentity, config: NetConfig) -> Client {
    Client::new(identity, config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Deterministic pseudo-random pieces of 64 KiB, `len` bytes in all.
fn pieces(len: u64, seed: u64) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold((len, seed | 1), |(left, mut x)| async move {
        if left == 0 {
            return None;
        }
        let n = left.min(64 << 10) as usize;
        let mut piece = Vec::with_capacity(n);
        while piece.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            piece.extend_from_slice(&x.to_le_bytes());
        }
        piece.truncate(n);
        Some((Bytes::from(piece), (left - n as u64, x)))
    })
}

/// A body of [`pieces`], produced as the transport pulls it.
pub fn generated(len: u64, seed: u64) -> SendBody {
    use futures::StreamExt;
    SendBody::from_stream(pieces(len, seed).map(Ok))
}

/// Length and BLAKE3 hash of what [`generated`] produces.
pub async fn generated_hash(len: u64, seed: u64) -> (u64, [u8; 32]) {
    use futures::StreamExt;
    let mut s = std::pin::pin!(pieces(len, seed));
    let mut h = blake3::Hasher::new();
    let mut n = 0;
    while let Some(piece) = s.next().await {
        n += piece.len() as u64;
        h.update(&piece);
    }
    (n, *h.finalize().as_bytes())
}
