//! The calling side: a [`Client`] owns a QUIC endpoint and a [`Pool`] of connections, and hands
//! out [`Peer`] handles that make typed calls.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_core::format::Versioned;

use crate::body::{send_body, RecvBody, SendBody, SendGuard};
use crate::config::NetConfig;
use crate::error::{connection_error, NetError, RpcError};
use crate::identity::NodeIdentity;
use crate::metrics::{PeerStats, RpcMetrics};
use crate::server::Rpc;
use crate::wire::{self, FrameKind, RequestEnvelope, ResponseEnvelope};

/// One slot per peer: the lock is held while dialing, so concurrent callers share one dial.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Connections to peers, one per (address, node name), reused by every call and re-dialed
/// when closed (peer restarted, idle timeout, network failure).
pub struct Pool {
    endpoint: quinn::Endpoint,
    slots: parking_lot::Mutex<HashMap<(SocketAddr, String), Slot>>,
    /// Slots are pruned of closed connections when there are more than this many.
    max_slots: usize,
}

impl Pool {
    fn new(endpoint: quinn::Endpoint, max_slots: usize) -> Self {
        Pool {
            endpoint,
            slots: parking_lot::Mutex::new(HashMap::new()),
            max_slots,
        }
    }

    fn slot(&self, addr: SocketAddr, node: &str) -> Slot {
        let mut slots = self.slots.lock();
        if let Some(s) = slots.get(&(addr, node.to_string())) {
            return s.clone();
        }
        if slots.len() >= self.max_slots {
            // Drop slots whose connection is gone and that nobody is dialing.
            slots.retain(|_, s| match s.try_lock() {
                Ok(c) => c.as_ref().is_some_and(|c| c.close_reason().is_none()),
                Err(_) => true,
            });
        }
        slots.entry((addr, node.to_string())).or_default().clone()
    }

    /// The open connection to node `node` at `addr`, dialing one if there is none.
    pub async fn get(&self, addr: SocketAddr, node: &str) -> Result<quinn::Connection, RpcError> {
        let slot = self.slot(addr, node);
        let mut conn = slot.lock().await;
        if let Some(c) = conn.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let label = format!("{node} at {addr}");
        let connecting = self
            .endpoint
            .connect(addr, node)
            .map_err(|e| RpcError::Io(format!("connecting to {label}: {e}")))?;
        let c = connecting.await.map_err(|e| connection_error(&label, &e))?;
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Takes the connection to `node` at `addr` out of the pool, so the next call dials
    /// again. Used when a call timed out: a peer that crashed or restarted sends no close, and
    /// its old connection would swallow every call until the idle timeout. It is not closed:
    /// other calls in flight on it (a slow peer under load, not a dead one, answers them) go on
    /// to their own answer or deadline, and it closes when the last of them lets go of it.
    pub fn forget(&self, addr: SocketAddr, node: &str) {
        let slot = self.slots.lock().get(&(addr, node.to_string())).cloned();
        if let Some(slot) = slot {
            if let Ok(mut conn) = slot.try_lock() {
                conn.take();
            }
        }
    }

    /// Open connections in the pool.
    pub fn open_connections(&self) -> usize {
        self.slots
            .lock()
            .values()
            .filter(|s| {
                s.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| c.close_reason().is_none()))
                    .unwrap_or(false)
            })
            .count()
    }
}

struct ClientInner {
    endpoint: quinn::Endpoint,
    pool: Pool,
    config: NetConfig,
    metrics: Arc<RpcMetrics>,
    /// Peers whose last call failed on the transport, until when they are suspected down.
    suspects: parking_lot::Mutex<HashMap<Arc<str>, Instant>>,
}

/// How long a peer whose call failed on the transport (timed out, unreachable) stays suspected
/// down, unless a call to it succeeds first.
pub const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// A node's client side: calls other nodes of its site.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    /// A client with the identity `identity`, on an ephemeral UDP port of `bind` (e.g.
    /// `0.0.0.0:0`, or `[::]:0` to reach IPv6 peers too).
    pub fn new(
        identity: &NodeIdentity,
        config: NetConfig,
        bind: SocketAddr,
    ) -> Result<Self, NetError> {
        let transport = config.transport()?;
        let cfg = crate::tls::quic_client_config(identity, transport)?;
        let mut endpoint = quinn::Endpoint::client(bind)
            .map_err(|e| NetError::Endpoint(format!("binding {bind}: {e}")))?;
        endpoint.set_default_client_config(cfg);
        let pool = Pool::new(endpoint.clone(), config.max_connections);
        Ok(Client {
            inner: Arc::new(ClientInner {
                endpoint,
                pool,
                config,
                metrics: Arc::new(RpcMetrics::new()),
                suspects: parking_lot::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A handle for calling node `node` at `addr`. The server's certificate must name `node`.
    pub fn peer(&self, addr: SocketAddr, node: &str) -> Peer {
        Peer {
            client: self.inner.clone(),
            addr,
            node: node.into(),
            timeout: self.inner.config.call_timeout,
            stats: self.inner.metrics.peer(node),
        }
    }

    /// Per-peer call counters of this client and its clones (for `/metrics`).
    pub fn metrics(&self) -> Arc<RpcMetrics> {
        self.inner.metrics.clone()
    }

    /// Whether node `node` is suspected down: a call to it failed on the transport (timed out,
    /// unreachable) within [`SUSPECT_FOR`] and none succeeded since. Callers that replicate use
    /// it to try other nodes first and not to wait on this one; calls to it still go through.
    pub fn is_suspect(&self, node: &str) -> bool {
        let mut suspects = self.inner.suspects.lock();
        match suspects.get(node) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                suspects.remove(node);
                false
            }
            None => false,
        }
    }

    /// The connection pool.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Closes every connection (calls in flight fail) and waits briefly for the peers to hear.
    pub async fn close(&self) {
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(0), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

/// A handle on one peer node: cheap to clone, shares the client's connections.
#[derive(Clone)]
pub struct Peer {
    client: Arc<ClientInner>,
    addr: SocketAddr,
    node: Arc<str>,
    timeout: Duration,
    stats: Arc<PeerStats>,
}

impl Peer {
    /// The same peer with another call deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The peer's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The peer's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls the peer's service for `R` and returns its response (a response body, if the
    /// handler sent one, is discarded).
    pub async fn call<R: Rpc>(&self, req: &R) -> Result<R::Response, RpcError> {
        self.call_with_body(req, None).await.map(|(resp, _)| resp)
    }

    /// Calls with an optional request body, returning the response and its body (empty if the
    /// handler sent none). The deadline covers connecting, sending the request and its body
    /// and receiving the response head; the response body is read at the caller's pace.
    pub async fn call_with_body<R: Rpc>(
        &self,
        req: &R,
        body: Option<SendBody>,
    ) -> Result<(R::Response, RecvBody), RpcError> {
        let start = Instant::now();
        let fenced = self
            .client
            .config
            .fence
            .as_ref()
            .is_some_and(|f| f.blocks(&self.node));
        let result = if fenced {
            Err(RpcError::Io(format!(
                "{} is fenced off from this node (partition)",
                self.node
            )))
        } else {
            match tokio::time::timeout(self.timeout, self.call_inner(req, body)).await {
                Ok(r) => r,
                Err(_) => Err(RpcError::Timeout(self.timeout)),
            }
        };
        self.stats.record(&result, start.elapsed());
        match &result {
            Ok(_) => {
                self.client.suspects.lock().remove(&*self.node);
            }
            Err(e @ (RpcError::Timeout(_) | RpcError::Io(_))) => {
                self.client
                    .suspects
                    .lock()
                    .insert(self.node.clone(), Instant::now() + SUSPECT_FOR);
                if matches!(e, RpcError::Timeout(_)) {
                    self.client.pool.forget(self.addr, &self.node);
                }
            }
            Err(_) => {}
        }
        result
    }

    async fn call_inner<R: Rpc>(
        &self,
        req: &R,
        body: Option<SendBody>,
    ) -> Result<(R::Response, RecvBody), RpcError> {
        let max_head = self.client.config.max_head;
        let env = RequestEnvelope {
            service: R::SERVICE.to_string(),
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            body: body.is_some(),
        };
        let head = wire::encode_request(&env, &req.encode());
        if head.len() > max_head {
            return Err(RpcError::TooLarge {
                what: "request head",
                len: head.len() as u64,
                limit: max_head as u64,
            });
        }
        let label = format!("{} at {}", self.node, self.addr);
        let conn = self.client.pool.get(self.addr, &self.node).await?;
        let (send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(&label, &e))?;
        let mut send = SendGuard::new(send);

        // Send the request while watching for the response: a server may answer (an error, or
        // "already have it") before it has read the whole request, and then stop reading.
        let head = {
            let sending = async {
                wire::write_frame(send.stream(), FrameKind::Head, &head).await?;
                if let Some(body) = body {
                    if let Some(e) = send_body(send.stream(), body).await? {
                        // Our own body failed: the call fails with its error.
                        return Err(e);
                    }
                }
                send.finish()
            };
            let receiving = wire::read_head(&mut recv, "response head", max_head);
            tokio::pin!(sending, receiving);
            tokio::select! {
                biased;
                head = &mut receiving => head,
                sent = &mut sending => match sent {
                    Ok(()) => receiving.await,
                    Err(e @ RpcError::Remote { .. }) => Err(e),
                    // The stream failed; the response may still say why.
                    Err(e) => receiving.await.map_err(|_| e),
                },
            }
        }
        .map_err(|e| with_tls_context(e, &conn, &label))?;

        match wire::decode_response(&head)? {
            (ResponseEnvelope::Ok { body }, msg) => {
                let resp = R::Response::decode(msg)
                    .map_err(|e| RpcError::Protocol(format!("response from {label}: {e}")))?;
                Ok((resp, RecvBody::new(recv, body)))
            }
            (ResponseEnvelope::Err { kind, message }, _) => {
                Err(wire::envelope_error(kind, message))
            }
        }
    }
}

/// A call that failed because its connection did is reported as the connection's error, so a
/// handshake the server refused after the client's side completed reads as [`RpcError::Tls`].
fn with_tls_context(e: RpcError, conn: &quinn::Connection, label: &str) -> RpcError {
    match (&e, conn.close_reason()) {
        (RpcError::Io(_), Some(reason)) => match connection_error(label, &reason) {
            tls @ RpcError::Tls { .. } => tls,
            _ => e,
        },
        _ => e,
    }
}
