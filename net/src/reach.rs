//! How a replicating backend (chunks, manifests) reaches each node of the cluster map: its own
//! store directly, another node's service at a socket address, or a host name resolved at each
//! call.

use std::net::SocketAddr;
use std::time::Duration;

use cairn_core::cluster::{node_id_hex, NodeId, NodeInfo};

use crate::RpcError;

/// How a replica is reached: `L` is this node's own store, `R` a client of another node's
/// service.
pub enum Reach<L, R> {
    /// This node's own store.
    Local(L),
    /// Another node at a known socket address.
    Remote(R),
    /// Another node whose address is a host name, resolved at each call.
    Named(String),
}

/// One node of the map, as a backend reaches it.
pub struct MapNode<L, R> {
    /// The node's id.
    pub id: NodeId,
    /// The node's name (its certificate's).
    pub name: String,
    /// How it is reached.
    pub reach: Reach<L, R>,
}

impl<L: Clone, R: Clone> MapNode<L, R> {
    /// Node `info` as seen from the node `local` names (with its store): that node itself is
    /// reached locally, a node whose address is a socket address through `remote`, any other
    /// by name.
    pub fn new(
        info: &NodeInfo,
        local: Option<(NodeId, &L)>,
        remote: impl FnOnce(SocketAddr, &str) -> R,
    ) -> Self {
        let reach = match local {
            Some((id, store)) if id == info.id => Reach::Local(store.clone()),
            _ => match info.address.parse::<SocketAddr>() {
                Ok(addr) => Reach::Remote(remote(addr, &info.name)),
                Err(_) => Reach::Named(info.address.clone()),
            },
        };
        MapNode {
            id: info.id,
            name: info.name.clone(),
            reach,
        }
    }

    /// `name (id)`, for messages.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, node_id_hex(self.id))
    }

    /// The node's service: the client kept for its socket address, or one `remote` makes for
    /// its host name resolved within `timeout`. `None` for this node itself (no service to
    /// call: use the store).
    pub async fn connect(
        &self,
        timeout: Duration,
        remote: impl FnOnce(SocketAddr, &str) -> R,
    ) -> Option<Result<R, RpcError>> {
        match &self.reach {
            Reach::Local(_) => None,
            Reach::Remote(r) => Some(Ok(r.clone())),
            Reach::Named(host) => Some(
                crate::resolve(host, timeout)
                    .await
                    .map(|addr| remote(addr, &self.name)),
            ),
        }
    }
}
