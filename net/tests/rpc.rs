//! Typed calls over real QUIC on loopback: round trips, remote errors, deadlines, size limits,
//! connection reuse and the caller's identity.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_core::ErrorKind;
use cairn_net::wire::{self, FrameKind, ResponseEnvelope};
use cairn_net::{NetConfig, RpcError, SendBody};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_requests_round_trip_and_see_the_callers_identity() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let client = client(&ids[1], NetConfig::default());
        let peer = client.peer(server.addr, "n1");

        let resp = peer.call(&TestRpc::Echo("hello".into())).await.unwrap();
        assert_eq!(resp, TestResp::Echo("hello".into()));
        let who = peer.call(&TestRpc::WhoAmI).await.unwrap();
        assert_eq!(who, TestResp::Peer("lyon".into(), "n2".into()));

        // Many calls at once share the connection, each on its own stream.
        let calls = (0..64).map(|i| {
            let peer = peer.clone();
            async move { peer.call(&TestRpc::Echo(format!("m{i}"))).await }
        });
        let results = futures::future::join_all(calls).await;
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r.unwrap(), TestResp::Echo(format!("m{i}")));
        }
        assert_eq!(server.stats.calls(), 66);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_arrive_with_their_kind() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let client = client(&ids[1], NetConfig::default());
        let peer = client.peer(server.addr, "n1");

        let err = peer
            .call(&TestRpc::FailNotFound("chunk 42 is not here".into()))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            RpcError::Remote {
                kind: ErrorKind::NotFound,
                message: "chunk 42 is not here".into()
            }
        );
        assert_eq!(err.kind(), ErrorKind::NotFound);

        // A service the node does not run.
        let err = peer.call(&common::Unregistered).await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Remote { kind: ErrorKind::NotFound, message } if message.contains("nobody")),
            "{err:?}"
        );

        // A body that fails half-way: the call fails with the body's error, and the handler
        // saw it as a remote error rather than a short body.
        let failing = SendBody::from_stream(futures::stream::iter([
            Ok(Bytes::from_static(b"some bytes")),
            Err(RpcError::remote(ErrorKind::Corrupt, "source went bad")),
        ]));
        let err = peer
            .call_with_body(&TestRpc::Upload, Some(failing))
            .await
            .unwrap_err();
        assert_eq!(err, RpcError::remote(ErrorKind::Corrupt, "source went bad"));

        // The connection is still good.
        assert_eq!(
            peer.call(&TestRpc::Echo("after".into())).await.unwrap(),
            TestResp::Echo("after".into())
        );
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_fires_against_a_slow_handler_and_stops_it() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let client = client(&ids[1], NetConfig::default());
        let peer = client
            .peer(server.addr, "n1")
            .with_timeout(Duration::from_millis(300));

        let started = Instant::now();
        let err = peer.call(&TestRpc::Sleep(20_000)).await.unwrap_err();
        assert_eq!(err, RpcError::Timeout(Duration::from_millis(300)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The server dropped the handler shortly after the deadline.
        let seen = server.seen.clone();
        eventually("server cancels the slow handler", || {
            seen.cancelled.load(Ordering::SeqCst) == 1
        })
        .await;
        // A fast call under the same deadline passes.
        assert_eq!(peer.call(&TestRpc::Sleep(1)).await.unwrap(), TestResp::Done);
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_does_not_fail_the_others_on_its_connection() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let client = client(&ids[1], NetConfig::default());
        let patient = client
            .peer(server.addr, "n1")
            .with_timeout(Duration::from_secs(20));
        let hasty = client
            .peer(server.addr, "n1")
            .with_timeout(Duration::from_millis(200));
        // One connection carries both: a slow call with a long deadline, and one that times
        // out meanwhile (the pool then dials anew for later calls).
        let slow = tokio::spawn(async move { patient.call(&TestRpc::Sleep(1_500)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let err = hasty.call(&TestRpc::Sleep(20_000)).await.unwrap_err();
        assert_eq!(err, RpcError::Timeout(Duration::from_millis(200)));
        assert_eq!(
            slow.await.unwrap(),
            Ok(TestResp::Done),
            "the slow call's answer was lost with the connection"
        );
        // Later calls work (on a new connection).
        assert_eq!(
            hasty.call(&TestRpc::Sleep(1)).await.unwrap(),
            TestResp::Done
        );
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_head_is_refused_from_its_length_prefix() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);

        // A raw stream that announces a 4 GiB head and sends none of it: the server must answer
        // from the length alone (it cannot have read or allocated the payload).
        let transport = NetConfig::default().transport().unwrap();
        let cfg = cairn_net::tls::quic_client_config(&ids[1], transport).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(cfg);
        let conn = endpoint.connect(server.addr, "n1").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&wire::frame_header(FrameKind::Head, u32::MAX - 1))
            .await
            .unwrap();
        let reply = recv.read_to_end(64 << 10).await.unwrap();
        assert!(reply.len() > wire::FRAME_HEADER_LEN, "{reply:?}");
        assert_eq!(reply[4], FrameKind::Head as u8);
        match wire::decode_response(&reply[wire::FRAME_HEADER_LEN..]).unwrap() {
            (ResponseEnvelope::Err { kind, message }, _) => {
                assert_eq!(wire::error_kind(kind), ErrorKind::LimitExceeded);
                assert!(message.contains("4294967294 bytes exceeds"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        drop((send, recv));
        conn.close(0u32.into(), b"done");

        // Through the typed client: a head over the server's limit comes back as a remote
        // LimitExceeded; over the client's own limit it is refused before sending.
        let small = NetConfig {
            max_head: 1024,
            ..NetConfig::default()
        };
        let small_server = start_on(&ids[0], small.clone(), "127.0.0.1:0".parse().unwrap());
        let big = "x".repeat(4096);
        let c = client(&ids[1], NetConfig::default());
        let err = c
            .peer(small_server.addr, "n1")
            .call(&TestRpc::Echo(big.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err:?}");
        assert!(matches!(err, RpcError::Remote { .. }), "{err:?}");
        let c_small = client(&ids[1], small);
        let err = c_small
            .peer(server.addr, "n1")
            .call(&TestRpc::Echo(big))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RpcError::TooLarge {
                    what: "request head",
                    limit: 1024,
                    ..
                }
            ),
            "{err:?}"
        );
        // The server is unharmed.
        let ok = c
            .peer(server.addr, "n1")
            .call(&TestRpc::Echo("ok".into()))
            .await;
        assert_eq!(ok.unwrap(), TestResp::Echo("ok".into()));
        small_server.stop().await;
        server.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reuse_one_connection_and_redial_after_a_restart() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let addr = server.addr;
        let client = client(&ids[1], NetConfig::default());
        let peer = client.peer(addr, "n1");

        peer.call(&TestRpc::Echo("a".into())).await.unwrap();
        // A second handle on the same peer shares the pool too.
        client
            .peer(addr, "n1")
            .call(&TestRpc::Echo("b".into()))
            .await
            .unwrap();
        assert_eq!(server.stats.connections_accepted(), 1);
        assert_eq!(server.stats.calls(), 2);
        assert_eq!(client.pool().open_connections(), 1);

        // The node restarts on the same address: the pool notices the closed connection and
        // dials again.
        server.stop().await;
        let pool_client = client.clone();
        eventually("client sees the connection closed", || {
            pool_client.pool().open_connections() == 0
        })
        .await;
        let restarted = restart_on(&ids[0], addr).await;
        let resp = peer.call(&TestRpc::Echo("c".into())).await.unwrap();
        assert_eq!(resp, TestResp::Echo("c".into()));
        assert_eq!(restarted.stats.connections_accepted(), 1);
        restarted.stop().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_can_be_forwarded_as_a_request_body() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2", "n3"]);
        let a = start(&ids[0]);
        let b = start(&ids[2]);
        let client = client(&ids[1], NetConfig::default());
        let len = 3 * (1 << 20) + 17;
        let (_, body) = client
            .peer(a.addr, "n1")
            .call_with_body(&TestRpc::Download { len, seed: 9 }, None)
            .await
            .unwrap();
        let resp = client
            .peer(b.addr, "n3")
            .call_with_body(&TestRpc::Upload, Some(body.into_send_body()))
            .await
            .unwrap()
            .0;
        let (n, hash) = generated_hash(len, 9).await;
        assert_eq!(resp, TestResp::Uploaded(n, hash));
        a.stop().await;
        b.stop().await;
    })
    .await
}
