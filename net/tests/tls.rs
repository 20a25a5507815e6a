//! Mutual TLS: only nodes with a certificate from the site's CA get through, in both
//! directions, and a client only talks to the node it meant to reach.

mod common;

use std::sync::Arc;

use cairn_net::{NetConfig, RpcError};
use common::*;

fn assert_tls(err: &RpcError) {
    assert!(
        matches!(err, RpcError::Tls { .. }),
        "expected a TLS refusal, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_certificate_from_another_ca_is_refused() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1"]);
        // Same site and node names, different CA: names alone must not be enough.
        let (_other, intruders) = site("lyon", &["n2"]);
        let server = start(&ids[0]);
        let intruder = client(&intruders[0], NetConfig::default());
        let err = intruder
            .peer(server.addr, "n1")
            .call(&TestRpc::Echo("let me in".into()))
            .await
            .unwrap_err();
        assert_tls(&err);
        let stats = server.stats.clone();
        eventually("server counts the refused handshake", || {
            stats.connections_refused() >= 1
        })
        .await;
        assert_eq!(server.stats.connections_accepted(), 0);
        assert_eq!(server.stats.calls(), 0);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_a_certificate_from_another_ca_is_refused() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let (_other, impostors) = site("lyon", &["n1"]);
        let impostor = start(&impostors[0]);
        let c = client(&ids[1], NetConfig::default());
        let err = c
            .peer(impostor.addr, "n1")
            .call(&TestRpc::Echo("secret".into()))
            .await
            .unwrap_err();
        assert_tls(&err);
        assert_eq!(impostor.stats.calls(), 0);
        impostor.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_the_node_dialed_is_refused() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2", "n3"]);
        let server = start(&ids[0]);
        let c = client(&ids[1], NetConfig::default());
        let err = c
            .peer(server.addr, "n3")
            .call(&TestRpc::Echo("for n3".into()))
            .await
            .unwrap_err();
        assert_tls(&err);
        // The right name works over the same client.
        let ok = c
            .peer(server.addr, "n1")
            .call(&TestRpc::Echo("for n1".into()))
            .await;
        assert_eq!(ok.unwrap(), TestResp::Echo("for n1".into()));
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1"]);
        let server = start(&ids[0]);

        // A client that trusts the site CA but presents no certificate of its own.
        let mut roots = rustls::RootCertStore::empty();
        let ca =
            rustls_pki_types::pem::PemObject::from_pem_slice(ids[0].ca_pem().as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![cairn_net::tls::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));

        // The client's side of the handshake may complete; the server's never does, so no
        // stream gets an answer and the connection ends with a TLS alert.
        let reason = match endpoint.connect(server.addr, "n1").unwrap().await {
            Err(e) => e,
            Ok(conn) => {
                let answered = async {
                    let (mut send, mut recv) = conn.open_bi().await?;
                    send.write_all(b"\0\0\0\x01\x01\x01").await?;
                    let _ = send.finish();
                    recv.read_to_end(1024).await?;
                    Ok::<_, Box<dyn std::error::Error>>(())
                }
                .await;
                assert!(
                    answered.is_err(),
                    "a client without a certificate got an answer"
                );
                conn.closed().await
            }
        };
        let code = match &reason {
            quinn::ConnectionError::ConnectionClosed(c) => u64::from(c.error_code),
            quinn::ConnectionError::TransportError(t) => u64::from(t.code),
            other => panic!("expected a TLS alert, got {other:?}"),
        };
        // TLS alerts travel as QUIC error codes 0x100-0x1ff.
        assert!((0x100..0x200).contains(&code), "{reason:?}");
        let stats = server.stats.clone();
        eventually("server counts the refused handshake", || {
            stats.connections_refused() >= 1
        })
        .await;
        assert_eq!(server.stats.connections_accepted(), 0);
        assert_eq!(server.stats.calls(), 0);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_trusting_another_site_serves_it_and_nobody_else() {
    bounded(async {
        let (_paris, paris) = site("paris", &["link"]);
        let (_lyon, lyon) = site("lyon", &["link"]);
        let (_nice, nice) = site("nice", &["link"]);
        // Paris's link end trusts Lyon's CA, and Lyon's trusts Paris's.
        let server_id = paris[0]
            .clone()
            .trusting(vec![lyon[0].ca_pem().to_string()]);
        let server = start(&server_id);
        let caller_id = lyon[0]
            .clone()
            .trusting(vec![paris[0].ca_pem().to_string()]);
        let caller = client(&caller_id, NetConfig::default());
        let who = caller
            .peer(server.addr, "link")
            .call(&TestRpc::WhoAmI)
            .await
            .expect("a trusted site's call");
        assert!(
            matches!(&who, TestResp::Peer(site, node) if site == "lyon" && node == "link"),
            "{who:?}"
        );
        // Which CA signed a caller, as a server trusting several asks.
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(lyon[0].cert_pem().as_bytes())
            .expect("certificate");
        assert!(cairn_net::tls::signed_by(&der, lyon[0].ca_pem()));
        assert!(!cairn_net::tls::signed_by(&der, paris[0].ca_pem()));
        // Nice is trusted by nobody: refused at the handshake.
        let stranger_id = nice[0]
            .clone()
            .trusting(vec![paris[0].ca_pem().to_string()]);
        let stranger = client(&stranger_id, NetConfig::default());
        let err = stranger
            .peer(server.addr, "link")
            .call(&TestRpc::Echo("let me in".into()))
            .await
            .unwrap_err();
        assert_tls(&err);
        server.stop().await;
    })
    .await
}
