//! A client counts its calls per peer: successes, failures by kind, and their latency.

mod common;

use std::time::Duration;

use cairn_net::NetConfig;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_errors_are_counted_per_peer() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2", "n3"]);
        let server = start(&ids[0]);
        let gone = start(&ids[2]);
        let gone_addr = gone.addr;
        gone.stop().await;

        let client = client(&ids[1], NetConfig::default());
        let metrics = client.metrics();
        let n1 = client.peer(server.addr, "n1");
        for i in 0..3 {
            n1.call(&TestRpc::Echo(format!("m{i}"))).await.unwrap();
        }
        n1.call(&TestRpc::FailNotFound("nope".into()))
            .await
            .unwrap_err();
        // A clone of the client shares the counters.
        let n3 = client
            .clone()
            .peer(gone_addr, "n3")
            .with_timeout(Duration::from_millis(300));
        for _ in 0..2 {
            n3.call(&TestRpc::Echo("anyone?".into())).await.unwrap_err();
        }

        assert_eq!(metrics.calls("n1"), 4);
        assert_eq!(metrics.errors("n1"), 1);
        assert_eq!(metrics.calls("n3"), 2);
        assert_eq!(metrics.errors("n3"), 2);

        let mut text = String::new();
        metrics.render(&mut text);
        assert!(
            text.contains("cairn_rpc_calls_total{peer=\"n1\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("cairn_rpc_calls_total{peer=\"n3\"} 2\n"));
        assert!(text.contains("cairn_rpc_errors_total{peer=\"n1\",kind=\"RemoteNotFound\"} 1\n"));
        let n3_errors: u64 = text
            .lines()
            .filter(|l| l.starts_with("cairn_rpc_errors_total{peer=\"n3\",kind="))
            .map(|l| {
                assert!(
                    l.contains("kind=\"Timeout\"") || l.contains("kind=\"Io\""),
                    "{l}"
                );
                l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(n3_errors, 2);
        assert!(text.contains("cairn_rpc_duration_seconds_count{peer=\"n1\"} 4\n"));
        assert!(text.contains("cairn_rpc_duration_seconds_count{peer=\"n3\"} 2\n"));
        assert!(text.contains("cairn_rpc_duration_seconds_bucket{peer=\"n1\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("# TYPE cairn_rpc_duration_seconds histogram\n"));
        server.stop().await;
    })
    .await
}
