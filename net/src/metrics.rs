//! Per-peer call counters of a [`crate::Client`]: calls, errors by kind, and a latency histogram,
//! rendered as Prometheus text.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::metrics::{header, labels, sample, Histogram, MetricsSource};
use cairn_core::ErrorKind;
use parking_lot::RwLock;

use crate::error::RpcError;

/// Distinct peer labels kept; peers beyond it are counted under [`OTHER_PEER`].
const MAX_PEERS: usize = 1024;
/// The peer label of peers beyond [`MAX_PEERS`].
const OTHER_PEER: &str = "_other";

/// Error kinds: the transport's own failures by [`RpcError`] variant, a remote handler's by
/// its [`ErrorKind`] (prefixed `Remote`). A fixed set, so the `kind` label stays bounded.
const KINDS: &[&str] = &[
    "Timeout",
    "Tls",
    "Io",
    "Protocol",
    "TooLarge",
    "RemoteNotFound",
    "RemoteAlreadyExists",
    "RemoteInvalidInput",
    "RemoteConflict",
    "RemoteCorrupt",
    "RemotePermissionDenied",
    "RemoteLimitExceeded",
    "RemoteIo",
    "RemoteInternal",
    "RemoteNoSpace",
];

/// The `kind` label of a failed call (an index into [`KINDS`]).
fn kind_index(e: &RpcError) -> usize {
    match e {
        RpcError::Timeout(_) => 0,
        RpcError::Tls { .. } => 1,
        RpcError::Io(_) => 2,
        RpcError::Protocol(_) => 3,
        RpcError::TooLarge { .. } => 4,
        RpcError::Remote { kind, .. } => match kind {
            ErrorKind::NotFound => 5,
            ErrorKind::AlreadyExists => 6,
            ErrorKind::InvalidInput => 7,
            ErrorKind::Conflict => 8,
            ErrorKind::Corrupt => 9,
            ErrorKind::PermissionDenied => 10,
            ErrorKind::LimitExceeded => 11,
            ErrorKind::Io => 12,
            ErrorKind::Internal => 13,
            ErrorKind::NoSpace => 14,
        },
    }
}

/// The counters of calls to one peer.
#[derive(Debug)]
pub(crate) struct PeerStats {
    calls: AtomicU64,
    errors: [AtomicU64; KINDS.len()],
    duration: Histogram,
}

impl PeerStats {
    fn new() -> PeerStats {
        PeerStats {
            calls: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: Histogram::latency(),
        }
    }

    /// Records one finished call (its outcome and how long it took).
    pub(crate) fn record<T>(&self, result: &Result<T, RpcError>, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            self.errors[kind_index(e)].fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe_duration(elapsed);
    }
}

/// Calls a client made, per peer node name: `cairn_rpc_calls_total{peer}`,
/// `cairn_rpc_errors_total{peer,kind}` and `cairn_rpc_duration_seconds{peer}` (from the call's
/// start to its response head or failure; a response body is read later, at the caller's
/// pace, and is not included). Shared by a client's clones and its [`crate::Peer`] handles.
#[derive(Default)]
pub struct RpcMetrics {
    peers: RwLock<BTreeMap<Arc<str>, Arc<PeerStats>>>,
}

impl std::fmt::Debug for RpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcMetrics")
            .field("peers", &self.peers.read().len())
            .finish()
    }
}

impl RpcMetrics {
    /// Empty counters.
    pub fn new() -> RpcMetrics {
        RpcMetrics::default()
    }

    /// The counters of `node`, created on first use (peer handles keep them, so a call does
    /// not look them up).
    pub(crate) fn peer(&self, node: &str) -> Arc<PeerStats> {
        if let Some(s) = self.peers.read().get(node) {
            return s.clone();
        }
        let mut peers = self.peers.write();
        let label = if peers.len() >= MAX_PEERS && !peers.contains_key(node) {
            OTHER_PEER
        } else {
            node
        };
        peers
            .entry(Arc::from(label))
            .or_insert_with(|| Arc::new(PeerStats::new()))
            .clone()
    }

    /// Calls made to `node` so far.
    pub fn calls(&self, node: &str) -> u64 {
        self.peers
            .read()
            .get(node)
            .map_or(0, |s| s.calls.load(Ordering::Relaxed))
    }

    /// Failed calls to `node` so far, of every kind.
    pub fn errors(&self, node: &str) -> u64 {
        self.peers.read().get(node).map_or(0, |s| {
            s.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum()
        })
    }

    /// Appends the Prometheus text of every peer's counters to `out`.
    pub fn render(&self, out: &mut String) {
        let peers: Vec<(Arc<str>, Arc<PeerStats>)> = self
            .peers
            .read()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        header(
            out,
            "cairn_rpc_calls_total",
            "counter",
            "Node-to-node calls made, by peer node.",
        );
        for (node, s) in &peers {
            sample(
                out,
                "cairn_rpc_calls_total",
                &labels(&[("peer", node)]),
                s.calls.load(Ordering::Relaxed),
            );
        }
        header(
            out,
            "cairn_rpc_errors_total",
            "counter",
            "Failed node-to-node calls, by peer node and error kind.",
        );
        for (node, s) in &peers {
            for (kind, n) in KINDS.iter().zip(&s.errors) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    sample(
                        out,
                        "cairn_rpc_errors_total",
                        &labels(&[("peer", node), ("kind", kind)]),
                        n,
                    );
                }
            }
        }
        header(
            out,
            "cairn_rpc_duration_seconds",
            "histogram",
            "Node-to-node call latency to the response head, by peer node.",
        );
        for (node, s) in &peers {
            s.duration.render(
                out,
                "cairn_rpc_duration_seconds",
                &labels(&[("peer", node)]),
            );
        }
    }
}

impl MetricsSource for RpcMetrics {
    fn render(&self, out: &mut String) {
        RpcMetrics::render(self, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_errors_are_counted_per_peer_and_kind() {
        let m = RpcMetrics::new();
        let n2 = m.peer("n2");
        n2.record::<()>(&Ok(()), Duration::from_millis(2));
        n2.record::<()>(&Err(RpcError::Io("gone".into())), Duration::from_millis(20));
        m.peer("n3").record::<()>(
            &Err(RpcError::remote(ErrorKind::NotFound, "no")),
            Duration::from_secs(1),
        );
        assert_eq!((m.calls("n2"), m.errors("n2")), (2, 1));
        assert_eq!((m.calls("n3"), m.errors("n3")), (1, 1));
        assert_eq!(m.calls("n4"), 0);
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("cairn_rpc_calls_total{peer=\"n2\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("cairn_rpc_errors_total{peer=\"n2\",kind=\"Io\"} 1\n"));
        assert!(out.contains("cairn_rpc_errors_total{peer=\"n3\",kind=\"RemoteNotFound\"} 1\n"));
        assert!(out.contains("cairn_rpc_duration_seconds_count{peer=\"n2\"} 2\n"));
        assert!(out.contains("cairn_rpc_duration_seconds_bucket{peer=\"n2\",le=\"0.005\"} 1\n"));
        assert_eq!(out.matches("# TYPE").count(), 3);
    }

    #[test]
    fn peers_beyond_the_limit_share_one_label() {
        let m = RpcMetrics::new();
        for i in 0..MAX_PEERS + 5 {
            m.peer(&format!("n{i}"))
                .record::<()>(&Ok(()), Duration::ZERO);
        }
        assert_eq!(m.calls(OTHER_PEER), 5);
        assert_eq!(m.calls("n0"), 1);
        assert_eq!(m.peers.read().len(), MAX_PEERS + 1);
    }
}
