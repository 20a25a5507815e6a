//! Finding a peer's socket address from the `host:port` the cluster map gives.

use std::net::SocketAddr;
use std::time::Duration;

use crate::RpcError;

/// The socket address of `address` (`host:port`): an IP address as is, a host name through the
/// system resolver within `timeout` (its first address). Failures are transport errors, as an
/// unreachable peer's are.
pub async fn resolve(address: &str, timeout: Duration) -> Result<SocketAddr, RpcError> {
    if let Ok(a) = address.parse::<SocketAddr>() {
        return Ok(a);
    }
    tokio::time::timeout(timeout, tokio::net::lookup_host(address))
        .await
        .map_err(|_| RpcError::Timeout(timeout))?
        .map_err(|e| RpcError::Io(format!("resolving {address}: {e}")))?
        .next()
        .ok_or_else(|| RpcError::Io(format!("{address} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_pass_and_bad_names_fail_as_transport_errors() {
        let t = Duration::from_secs(5);
        assert_eq!(
            resolve("127.0.0.1:7", t).await.unwrap(),
            "127.0.0.1:7".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(resolve("localhost:7", t).await.unwrap().port(), 7);
        let e = resolve("no port here", t).await.unwrap_err();
        assert!(matches!(e, RpcError::Io(_)), "{e:?}");
    }
}
