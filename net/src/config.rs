//! Transport settings shared by servers and clients.

use std::sync::Arc;
use std::time::Duration;

use crate::error::NetError;
use crate::wire::DEFAULT_MAX_HEAD;

/// Limits and timers of the transport. The defaults suit nodes of one site.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Largest request or response head (the typed message) accepted or sent; larger ones are
    /// refused from their length prefix alone.
    pub max_head: usize,
    /// Default deadline of a call (connect, send the request and its body, receive the
    /// response head); [`crate::Peer::with_timeout`] overrides it per peer handle.
    pub call_timeout: Duration,
    /// How long a server waits for a request head once a stream is open.
    pub head_timeout: Duration,
    /// Interval of keep-alive packets on an idle connection.
    pub keep_alive: Duration,
    /// A connection with no traffic (keep-alives included) for this long is closed; this also
    /// bounds a handshake with a silent peer.
    pub idle_timeout: Duration,
    /// Calls in flight per connection (QUIC bidirectional streams); more wait for a slot.
    pub max_streams_per_connection: u32,
    /// Connections a server holds at once; further ones are refused.
    pub max_connections: usize,
    /// Bytes a receiver buffers per stream before the sender must wait (QUIC flow control):
    /// with the connection window below, this bounds a body's memory on both sides.
    pub stream_window: u32,
    /// Bytes a receiver buffers per connection, all streams together.
    pub connection_window: u32,
    /// Bytes a sender keeps unacknowledged per connection.
    pub send_window: u64,
    /// Peers this node must not talk to (a deliberate partition); `None`: every peer.
    pub fence: Option<Arc<crate::Fence>>,
    /// Congestion control by BBR instead of CUBIC: for links between sites, where a little
    /// random loss on a long path would otherwise halve the window again and again.
    pub bbr: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_head: DEFAULT_MAX_HEAD,
            call_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_streams_per_connection: 256,
            max_connections: 4096,
            stream_window: 2 << 20,
            connection_window: 16 << 20,
            send_window: 8 << 20,
            fence: None,
            bbr: false,
        }
    }
}

impl NetConfig {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |m: &str| Err(NetError::Endpoint(m.to_string()));
        if self.max_head == 0 || self.max_head > u32::MAX as usize {
            return bad("max_head must be between 1 byte and 4 GiB");
        }
        if self.keep_alive >= self.idle_timeout {
            return bad("keep_alive must be shorter than idle_timeout");
        }
        if self.max_streams_per_connection == 0 || self.max_connections == 0 {
            return bad("max_streams_per_connection and max_connections must be at least 1");
        }
        if self.stream_window == 0 || self.connection_window < self.stream_window {
            return bad("connection_window must be at least stream_window, which must be > 0");
        }
        Ok(())
    }

    /// The QUIC transport settings these limits describe.
    pub fn transport(&self) -> Result<Arc<quinn::TransportConfig>, NetError> {
        self.validate()?;
        let mut t = quinn::TransportConfig::default();
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|e| NetError::Endpoint(format!("idle_timeout: {e}")))?;
        t.max_idle_timeout(Some(idle))
            .keep_alive_interval(Some(self.keep_alive))
            .max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.max_streams_per_connection))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_window))
            .receive_window(quinn::VarInt::from_u32(self.connection_window))
            .send_window(self.send_window);
        if self.bbr {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        Ok(Arc::new(t))
    }
}
