//! Where a site accepts links: a QUIC endpoint serving only the link service, with the link
//! identity and the trusted CAs of the moment. When the set of trusted CAs changes (`cairn link
//! trust`), the endpoint is rebuilt on the same address, so trust takes effect without a
//! restart (connections in progress end and their links reconnect).

use std::net::SocketAddr;
use std::time::Duration;

use cairn_client::Client;
use cairn_net::{NetConfig, Server};
use tokio::sync::watch;

use crate::runner::IdentitySource;
use crate::service::LinkService;

/// How often the trusted CAs are looked at.
const TRUST_CHECK: Duration = Duration::from_secs(1);

/// A bound link listener.
pub struct LinkListener {
    server: Server,
    addr: SocketAddr,
    identity: IdentitySource,
    client: Client,
}

impl LinkListener {
    /// Binds `addr` for the links of this site (`client`), presenting `identity`.
    pub fn bind(
        addr: SocketAddr,
        identity: IdentitySource,
        client: Client,
    ) -> Result<LinkListener, String> {
        let server = build(addr, &identity, &client)?;
        let addr = server.local_addr().map_err(|e| e.to_string())?;
        Ok(LinkListener {
            server,
            addr,
            identity,
            client,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` is set.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let LinkListener {
            mut server,
            addr,
            identity,
            client,
        } = self;
        let trusted = |i: &IdentitySource| i().map(|id| id.trusted().to_vec()).ok();
        let mut current = trusted(&identity);
        loop {
            let (restart_tx, restart_rx) = watch::channel(false);
            let mut stop2 = stop.clone();
            let mut restart = restart_rx.clone();
            let serving = tokio::spawn(server.run(async move {
                tokio::select! {
                    _ = stop2.wait_for(|s| *s) => {}
                    _ = restart.wait_for(|s| *s) => {}
                }
            }));
            loop {
                let stopping = tokio::select! {
                    r = stop.wait_for(|s| *s) => r.is_ok(),
                    _ = tokio::time::sleep(TRUST_CHECK) => false,
                };
                if stopping || stop.has_changed().is_err() {
                    let _ = serving.await;
                    return;
                }
                let now = trusted(&identity);
                if now != current {
                    current = now;
                    break;
                }
            }
            let _ = restart_tx.send(true);
            let _ = serving.await;
            // The old endpoint's socket is released once it and every connection task holding
            // it are gone (a handshake that was in progress when the trust changed can keep it
            // for a while): retry until it is, or until the site stops. Never give up: a
            // listener that stopped listening would refuse every link from then on.
            let mut tries = 0u32;
            server = loop {
                match build(addr, &identity, &client) {
                    Ok(s) => break s,
                    Err(e) => {
                        tries += 1;
                        if tries.is_multiple_of(50) {
                            tracing::warn!(%addr, error = %e, "link listener: the address is \
                                still held by the previous endpoint; retrying");
                        }
                        let wait = Duration::from_millis(100 * u64::from(tries.min(10)));
                        tokio::select! {
                            // Stopped, or the site is gone.
                            _ = stop.wait_for(|s| *s) => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            };
            tracing::info!(%addr, "link listener now trusts the new set of site CAs");
        }
    }
}

/// The transport settings of both ends of a link: calls that carry up to 64 MiB over a slow
/// path get two minutes, and congestion control is BBR, which keeps a long path with a little
/// random loss busy (`CAIRN_LINK_CONGESTION=cubic` chooses QUIC's default instead).
pub(crate) fn link_net_config() -> NetConfig {
    let cubic = std::env::var("CAIRN_LINK_CONGESTION").is_ok_and(|v| v == "cubic");
    NetConfig {
        call_timeout: Duration::from_secs(120),
        bbr: !cubic,
        ..NetConfig::default()
    }
}

fn build(addr: SocketAddr, identity: &IdentitySource, client: &Client) -> Result<Server, String> {
    let identity = identity()?;
    Server::builder(&identity, link_net_config())
        .service(LinkService::new(client.clone()))
        .bind(addr)
        .map_err(|e| format!("cannot listen for links on {addr}: {e}"))
}
