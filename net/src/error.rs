//! The two error types of the transport: [`NetError`] for setting a node up (identities, files,
//! binding) and [`RpcError`] for everything that can go wrong in a call.

use std::path::PathBuf;
use std::time::Duration;

use cairn_core::ErrorKind;

/// Setting up a node failed: generating or loading certificates, or binding the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A site or node name is not usable as a DNS label.
    #[error("invalid {what} name `{name}`: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    InvalidName {
        /// "site" or "node".
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A file would be overwritten.
    #[error("{} exists: refusing to overwrite it (use --force to replace it)", path.display())]
    Exists {
        /// The file that exists.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A certificate or key could not be made, parsed or used.
    #[error("certificate: {0}")]
    Cert(String),
    /// The QUIC endpoint could not be set up.
    #[error("endpoint: {0}")]
    Endpoint(String),
}

impl NetError {
    /// Wraps an I/O error on `path`.
    pub(crate) fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::File {
            path: path.into(),
            source,
        }
    }

    /// The shared error kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::InvalidName { .. } => ErrorKind::InvalidInput,
            NetError::Exists { .. } => ErrorKind::AlreadyExists,
            NetError::File { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            NetError::File { .. } | NetError::Endpoint(_) => ErrorKind::Io,
            NetError::Cert(_) => ErrorKind::InvalidInput,
        }
    }
}

/// A call failed. Handlers return it too: [`RpcError::remote`] makes the error a caller sees as
/// [`RpcError::Remote`] with the same kind and message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    /// The call's deadline passed before its response arrived.
    #[error("call timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS handshake failed: the peer's certificate is not from this site's CA, names
    /// another node, or is missing (or the peer refused ours).
    #[error("tls handshake with {peer} refused: {reason}")]
    Tls {
        /// Address or name of the peer.
        peer: String,
        /// What the TLS layer said.
        reason: String,
    },
    /// The remote handler failed, or the remote side aborted a body it was sending.
    #[error("remote error ({kind:?}): {message}")]
    Remote {
        /// The handler's error kind.
        kind: ErrorKind,
        /// The handler's message.
        message: String,
    },
    /// The peer sent something this build does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection or stream failed (network, peer gone, reset).
    #[error("connection error: {0}")]
    Io(String),
    /// A frame or message is larger than its limit; nothing of its size was allocated.
    #[error("{what} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its announced length.
        len: u64,
        /// The limit.
        limit: u64,
    },
}

impl RpcError {
    /// The error a handler returns to fail a call with `kind`; the caller receives it as
    /// [`RpcError::Remote`].
    pub fn remote(kind: ErrorKind, message: impl Into<String>) -> Self {
        RpcError::Remote {
            kind,
            message: message.into(),
        }
    }

    /// The shared error kind (for a remote error, the remote handler's kind).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RpcError::Remote { kind, .. } => *kind,
            RpcError::Timeout(_) | RpcError::Io(_) => ErrorKind::Io,
            RpcError::Tls { .. } => ErrorKind::PermissionDenied,
            RpcError::Protocol(_) => ErrorKind::Internal,
            RpcError::TooLarge { .. } => ErrorKind::LimitExceeded,
        }
    }

    /// The message sent to the caller when a handler fails with this error: a remote error's
    /// own message, otherwise the whole description.
    pub(crate) fn wire_message(&self) -> String {
        match self {
            RpcError::Remote { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<quinn::WriteError> for RpcError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => connection_error("peer", &c),
            other => RpcError::Io(format!("sending: {other}")),
        }
    }
}

impl From<quinn::ReadError> for RpcError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => connection_error("peer", &c),
            other => RpcError::Io(format!("receiving: {other}")),
        }
    }
}

impl From<quinn::ClosedStream> for RpcError {
    fn from(e: quinn::ClosedStream) -> Self {
        RpcError::Io(format!("stream: {e}"))
    }
}

/// Maps a connection failure on a connection to `peer`; handshake failures become
/// [`RpcError::Tls`].
pub(crate) fn connection_error(peer: &str, e: &quinn::ConnectionError) -> RpcError {
    use quinn::ConnectionError as C;
    let tls = |reason: String| RpcError::Tls {
        peer: peer.to_string(),
        reason,
    };
    match e {
        C::TransportError(t) if is_crypto(t.code) => tls(t.to_string()),
        C::ConnectionClosed(c) if is_crypto(c.error_code) => tls(c.to_string()),
        C::TimedOut => RpcError::Io(format!(
            "{peer}: connection timed out (peer unreachable or gone)"
        )),
        other => RpcError::Io(format!("{peer}: {other}")),
    }
}

/// TLS alerts travel as QUIC transport error codes 0x100-0x1ff (RFC 9001, section 4.8).
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    let c = u64::from(code);
    (0x100..0x200).contains(&c)
}
