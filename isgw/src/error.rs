//! What can go wrong on a link.

use cairn_client::ClientError;
use cairn_core::ErrorKind;
use cairn_net::RpcError;

/// A link operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The local site's stores failed.
    #[error("local site: {0}")]
    Local(#[from] ClientError),
    /// A call to the remote site failed (transport, or the remote's error).
    #[error("remote site: {0}")]
    Remote(#[from] RpcError),
    /// The remote site refused the link, or the link cannot run as configured.
    #[error("{0}")]
    Refused(String),
    /// The other side sent something that breaks the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl LinkError {
    /// The error's kind, as a service answers it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LinkError::Local(e) => e.kind(),
            LinkError::Remote(e) => e.kind(),
            LinkError::Refused(_) => ErrorKind::PermissionDenied,
            LinkError::Protocol(_) => ErrorKind::InvalidInput,
        }
    }
}

/// What a link call returns.
pub type LinkResult<T> = Result<T, LinkError>;
