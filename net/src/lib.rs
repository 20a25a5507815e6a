//! Cairn's node-to-node transport: QUIC (quinn) with mutual TLS under a site CA, and typed RPC
//! with streamed bodies, deadlines and connection reuse.
//!
//! # Identity
//!
//! Each site has a CA ([`SiteCa`]); each node has a certificate signed by it
//! ([`NodeIdentity`]) that names the node as a DNS name and as `cairn://SITE/NODE`. Servers
//! require a client certificate from the site CA (it is their only root); clients check the
//! server against the CA and the node name they dialed. A peer with no certificate, or one from
//! another CA, fails the handshake; handlers learn the verified caller as [`PeerInfo`].
//!
//! # Calls
//!
//! A service is a request enum implementing [`Rpc`] (which names the service and its response
//! type) and a handler implementing [`Service`]. One [`Server`] serves every service of a node
//! on one UDP port; a [`Client`] keeps one connection per peer in its [`Pool`] and makes calls
//! through [`Peer`] handles. Each call is one QUIC bidirectional stream.
//!
//! # Frame format
//!
//! Each direction of a stream is a sequence of frames:
//!
//! ```text
//! frame   = len: u32 big-endian | kind: u8 | payload: len bytes
//! kind    = 1 head | 2 data | 3 end | 4 abort
//! request = head(request) [ data* (end | abort) ]     body only if the envelope says so
//! reply   = head(response) [ data* (end | abort) ]
//!
//! head(request)  = 0x01 (protocol version) | postcard{service, timeout_ms, body: bool}
//!                  | the request's versioned encoding (format byte, postcard)
//! head(response) = 0x01 | postcard{Ok{body: bool} | Err{kind, message}}
//!                  | the response's versioned encoding (if Ok)
//! abort payload  = postcard{kind, message}: the sender's body failed
//! ```
//!
//! Error kinds travel as fixed codes of `cairn_core::ErrorKind`. A head of another protocol
//! version is refused with a message saying which side to upgrade; a message of an unknown
//! format version is refused by its `Versioned` decoder.
//!
//! # Limits
//!
//! - head frames: [`NetConfig::max_head`] (16 MiB by default); a longer length prefix is
//!   refused before anything of that size is allocated, and the caller gets
//!   [`RpcError::TooLarge`] (from the remote side as a `LimitExceeded` remote error).
//! - data frames: 1 to 1 MiB ([`wire::MAX_DATA_FRAME`]); abort frames ≤ 64 KiB; error
//!   messages cut to 4 KiB; service names ≤ 64 bytes.
//! - bodies are never buffered whole: QUIC flow control ([`NetConfig::stream_window`],
//!   [`NetConfig::connection_window`], [`NetConfig::send_window`]) bounds what sits in memory,
//!   and [`RecvBody::chunk`] hands out pieces as they arrive.
//! - every call has a deadline ([`NetConfig::call_timeout`] or [`Peer::with_timeout`]); the
//!   server stops the handler half a second after it. Calls in flight per connection and
//!   connections per server are bounded; idle connections are kept alive by pings and closed
//!   after [`NetConfig::idle_timeout`] without traffic.

mod body;
mod client;
mod config;
mod error;
mod fence;
pub mod identity;
mod limit;
mod metrics;
mod reach;
mod resolve;
mod server;
pub mod tls;
pub mod wire;

pub use body::{RecvBody, SendBody};
pub use client::{Client, Peer, Pool, SUSPECT_FOR};
pub use config::NetConfig;
pub use error::{NetError, RpcError};
pub use fence::Fence;
pub use identity::{NodeIdentity, SiteCa};
pub use limit::RateLimiter;
pub use metrics::RpcMetrics;
pub use reach::{MapNode, Reach};
pub use resolve::resolve;
pub use server::{PeerInfo, Rpc, Server, ServerBuilder, ServerStats, Service};
