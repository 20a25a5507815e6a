//! A deliberate network partition: the peers a node must not talk to.
//!
//! A [`Fence`] in a node's [`crate::NetConfig`] makes its client fail every call to a fenced
//! peer at once (as an unreachable peer, [`crate::RpcError::Io`]) and its server turn away
//! every call from one (the stream is reset unanswered). Test harnesses fence two nodes from
//! each other to partition a site on loopback; an operator could fence a misbehaving node.

use std::collections::BTreeSet;

use parking_lot::RwLock;

/// Peers, by node name, that are cut off from this node.
#[derive(Debug, Default)]
pub struct Fence {
    blocked: RwLock<BTreeSet<String>>,
}

impl Fence {
    /// An open fence: nothing is blocked.
    pub fn new() -> Self {
        Fence::default()
    }

    /// Cuts `node` off.
    pub fn block(&self, node: &str) {
        self.blocked.write().insert(node.to_string());
    }

    /// Lets `node` through again.
    pub fn unblock(&self, node: &str) {
        self.blocked.write().remove(node);
    }

    /// Lets every node through again.
    pub fn heal(&self) {
        self.blocked.write().clear();
    }

    /// Whether `node` is cut off.
    pub fn blocks(&self, node: &str) -> bool {
        self.blocked.read().contains(node)
    }
}
