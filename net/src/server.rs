//! The serving side: services, the accept loop, and dispatch of each stream to its handler.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::format::Versioned;
use cairn_core::ErrorKind;
use futures::future::BoxFuture;
use rustls_pki_types::CertificateDer;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::body::{send_body, RecvBody, SendBody, SendGuard};
use crate::config::NetConfig;
use crate::error::{NetError, RpcError};
use crate::identity::{peer_names, NodeIdentity};
use crate::wire::{self, FrameKind};

/// A request type: one enum per service, with its response type. Implemented by the request
/// enum (`ChunkRpc`, `ManifestRpc`, ...), so a call names its service by its request's type.
pub trait Rpc: Versioned + Send + Sync + 'static {
    /// The service's name on the wire (at most 64 bytes, unique per server).
    const SERVICE: &'static str;
    /// What a handler answers.
    type Response: Versioned + Send + 'static;
}

/// A service a node offers: the handler of one [`Rpc`] request type.
pub trait Service: Send + Sync + 'static {
    /// The request enum this service handles.
    type Request: Rpc;

    /// Handles one call from `peer`. `body` is the request's streamed body (empty if it has
    /// none); the returned [`SendBody`], if any, streams after the response. An error reaches
    /// the caller as [`RpcError::Remote`] with the error's kind.
    fn handle(
        &self,
        peer: PeerInfo,
        req: Self::Request,
        body: RecvBody,
    ) -> impl Future<Output = Result<(<Self::Request as Rpc>::Response, Option<SendBody>), RpcError>>
           + Send;
}

/// Who is calling, from the certificate the TLS handshake verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The caller's site.
    pub site: String,
    /// The caller's node name.
    pub node: String,
    /// The caller's address.
    pub addr: SocketAddr,
    /// The caller's certificate, as verified (for servers that trust several sites: see
    /// [`crate::tls::signed_by`]).
    pub cert: Arc<CertificateDer<'static>>,
}

/// The identity of the peer of an established connection.
pub(crate) fn peer_info(conn: &quinn::Connection) -> Option<PeerInfo> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let cert = certs.first()?;
    let (site, node) = peer_names(cert)?;
    Some(PeerInfo {
        site,
        node,
        addr: conn.remote_address(),
        cert: Arc::new(cert.clone().into_owned()),
    })
}

type DispatchResult = Result<(Vec<u8>, Option<SendBody>), RpcError>;

/// A service with its request and response types erased to bytes.
trait Dispatch: Send + Sync {
    fn dispatch<'a>(
        &'a self,
        peer: PeerInfo,
        msg: &'a [u8],
        body: RecvBody,
    ) -> BoxFuture<'a, DispatchResult>;
}

struct Typed<S>(S);

impl<S: Service> Dispatch for Typed<S> {
    fn dispatch<'a>(
        &'a self,
        peer: PeerInfo,
        msg: &'a [u8],
        body: RecvBody,
    ) -> BoxFuture<'a, DispatchResult> {
        Box::pin(async move {
            let req = S::Request::decode(msg)
                .map_err(|e| RpcError::remote(ErrorKind::InvalidInput, e.to_string()))?;
            let (resp, body) = self.0.handle(peer, req, body).await?;
            Ok((resp.encode(), body))
        })
    }
}

/// How long after the caller's deadline a server stops the handler.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

type Services = HashMap<&'static str, Arc<dyn Dispatch>>;

/// Counters of a server, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    connections: AtomicU64,
    refused: AtomicU64,
    calls: AtomicU64,
}

impl ServerStats {
    /// Connections accepted (handshake passed) since the server started.
    pub fn connections_accepted(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Connections refused: failed handshakes (no or foreign certificate) and over-limit.
    pub fn connections_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Calls that reached a handler.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Collects the services of a server before it binds.
pub struct ServerBuilder {
    identity: NodeIdentity,
    config: NetConfig,
    services: Services,
    duplicate: Option<&'static str>,
}

impl ServerBuilder {
    /// Adds a service; its [`Rpc::SERVICE`] name must not be taken.
    pub fn service<S: Service>(mut self, service: S) -> Self {
        let name = <S::Request as Rpc>::SERVICE;
        if self
            .services
            .insert(name, Arc::new(Typed(service)))
            .is_some()
        {
            self.duplicate = Some(name);
        }
        self
    }

    /// Binds the QUIC endpoint on `addr` (port 0 picks a free port).
    pub fn bind(self, addr: SocketAddr) -> Result<Server, NetError> {
        if let Some(name) = self.duplicate {
            return Err(NetError::Endpoint(format!(
                "two services are named `{name}`"
            )));
        }
        let transport = self.config.transport()?;
        let cfg = crate::tls::quic_server_config(&self.identity, transport)?;
        let endpoint = quinn::Endpoint::server(cfg, addr)
            .map_err(|e| NetError::Endpoint(format!("binding {addr}: {e}")))?;
        // An identity that trusts other sites' CAs serves their callers too.
        let site = self
            .identity
            .trusted()
            .is_empty()
            .then(|| self.identity.site().to_string());
        Ok(Server {
            endpoint,
            site,
            services: Arc::new(self.services),
            config: Arc::new(self.config),
            stats: Arc::new(ServerStats::default()),
        })
    }
}

/// A node's RPC server: one QUIC endpoint serving every registered service.
pub struct Server {
    /// The QUIC endpoint connections arrive on.
    endpoint: quinn::Endpoint,
    /// This node's site: peers of other sites are turned away even with a valid certificate
    /// (`None`: the identity trusts other sites' CAs, and their callers are served).
    site: Option<String>,
    /// Handlers by service name.
    services: Arc<Services>,
    /// Limits and timers.
    config: Arc<NetConfig>,
    /// Counters.
    stats: Arc<ServerStats>,
}

impl Server {
    /// Starts building a server for the node `identity`.
    pub fn builder(identity: &NodeIdentity, config: NetConfig) -> ServerBuilder {
        ServerBuilder {
            identity: identity.clone(),
            config,
            services: HashMap::new(),
            duplicate: None,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.endpoint
            .local_addr()
            .map_err(|e| NetError::Endpoint(e.to_string()))
    }

    /// The server's counters (a handle that stays valid while it runs).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` completes, then closes every connection (calls in flight fail
    /// with a connection error at their callers).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NetError> {
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            warn!("connection task panicked: {e}");
                        }
                    }
                }
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if conns.len() >= self.config.max_connections {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        incoming.refuse();
                        continue;
                    }
                    conns.spawn(serve_connection(
                        incoming,
                        self.site.clone(),
                        self.services.clone(),
                        self.config.clone(),
                        self.stats.clone(),
                    ));
                }
            }
        }
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"shutting down");
        conns.shutdown().await;
        // Let the close reach peers, but never wait on a peer that is gone.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        Ok(())
    }
}

/// Serves one connection: a task per stream, bounded by the per-connection stream limit.
async fn serve_connection(
    incoming: quinn::Incoming,
    site: Option<String>,
    services: Arc<Services>,
    config: Arc<NetConfig>,
    stats: Arc<ServerStats>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, "handshake refused: {e}");
            return;
        }
    };
    let peer = match peer_info(&conn) {
        Some(p) if site.as_ref().is_none_or(|s| *s == p.site) => p,
        other => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, ?other, "peer certificate names no node of this site");
            conn.close(quinn::VarInt::from_u32(2), b"not a node of this site");
            return;
        }
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    debug!(%remote, node = %peer.node, "connection accepted");
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            stream = conn.accept_bi() => match stream {
                Ok((mut send, mut recv)) if config.fence.as_ref().is_some_and(|f| f.blocks(&peer.node)) => {
                    // Partitioned from this peer: the call goes unanswered.
                    let _ = send.reset(quinn::VarInt::from_u32(3));
                    let _ = recv.stop(quinn::VarInt::from_u32(3));
                }
                Ok((send, recv)) => {
                    streams.spawn(serve_stream(
                        send,
                        recv,
                        peer.clone(),
                        services.clone(),
                        config.clone(),
                        stats.clone(),
                    ));
                }
                Err(e) => {
                    debug!(%remote, node = %peer.node, "connection ended: {e}");
                    break;
                }
            }
        }
    }
}

/// Serves one call: reads the head, runs the handler under the caller's deadline, writes the
/// response head and streams its body.
async fn serve_stream(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    peer: PeerInfo,
    services: Arc<Services>,
    config: Arc<NetConfig>,
    stats: Arc<ServerStats>,
) {
    let mut send = SendGuard::new(send);
    let head = tokio::time::timeout(
        config.head_timeout,
        wire::read_head(&mut recv, "request head", config.max_head),
    )
    .await;
    let outcome = match head {
        Err(_) => Err(RpcError::Timeout(config.head_timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(head)) => call(&head, recv, peer, &services, &stats).await,
    };
    let (head, body) = match outcome {
        Ok((msg, body)) => (wire::encode_response_ok(body.is_some(), &msg), body),
        Err(e) => (wire::encode_response_err(&e), None),
    };
    if let Err(e) = wire::write_frame(send.stream(), FrameKind::Head, &head).await {
        debug!("sending a response head: {e}");
        return;
    }
    if let Some(body) = body {
        match send_body(send.stream(), body).await {
            Ok(None) => {}
            Ok(Some(e)) => debug!("response body aborted: {e}"),
            Err(e) => {
                debug!("sending a response body: {e}");
                return;
            }
        }
    }
    let _ = send.finish();
}

async fn call(
    head: &[u8],
    recv: quinn::RecvStream,
    peer: PeerInfo,
    services: &Services,
    stats: &ServerStats,
) -> DispatchResult {
    let (env, msg) = wire::decode_request(head)?;
    let service = services.get(env.service.as_str()).ok_or_else(|| {
        RpcError::remote(
            ErrorKind::NotFound,
            format!("no service `{}` on this node", env.service),
        )
    })?;
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let body = RecvBody::new(recv, env.body);
    let handler = service.dispatch(peer, msg, body);
    if env.timeout_ms == 0 {
        return handler.await;
    }
    // A little after the caller's deadline, so the caller reports its own timeout rather
    // than racing this side's answer.
    let deadline = Duration::from_millis(env.timeout_ms).saturating_add(DEADLINE_GRACE);
    tokio::time::timeout(deadline, handler)
        .await
        .unwrap_or(Err(RpcError::Timeout(deadline)))
}
