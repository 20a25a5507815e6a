//! Streamed bodies: 32 MiB each way through one node pair, with the process's peak memory
//! growing far less than the payload (the transport never holds a body whole). One test in
//! its own binary, so no other test's allocations blur the measurement.

mod common;

use cairn_net::NetConfig;
use common::*;

const LEN: u64 = 32 << 20;

/// Resets the process's peak resident size and returns the current one, in KiB; `None` where
/// the kernel does not offer it.
fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_body_streams_both_ways_in_bounded_memory() {
    bounded(async {
        let (_ca, ids) = site("lyon", &["n1", "n2"]);
        let server = start(&ids[0]);
        let client = client(&ids[1], NetConfig::default());
        let peer = client.peer(server.addr, "n1");
        let expected = generated_hash(LEN, 7).await;
        // Warm the connection and the allocator so the measurement sees only the transfer.
        peer.call(&TestRpc::Echo("warm".into())).await.unwrap();

        let before = reset_peak_rss();

        // Up: the handler hashes pieces as they arrive.
        let (resp, _) = peer
            .call_with_body(&TestRpc::Upload, Some(generated(LEN, 7)))
            .await
            .unwrap();
        assert_eq!(resp, TestResp::Uploaded(expected.0, expected.1));

        // Down: the caller hashes pieces as they arrive.
        let (resp, mut body) = peer
            .call_with_body(&TestRpc::Download { len: LEN, seed: 7 }, None)
            .await
            .unwrap();
        assert_eq!(resp, TestResp::Done);
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut largest = 0;
        while let Some(piece) = body.chunk().await.unwrap() {
            largest = largest.max(piece.len());
            n += piece.len() as u64;
            hasher.update(&piece);
        }
        assert!(body.is_done());
        assert_eq!((n, *hasher.finalize().as_bytes()), expected);
        assert!(largest <= cairn_net::wire::MAX_DATA_FRAME, "{largest}");

        match (before, status_kib("VmHWM:")) {
            (Some(before), Some(peak)) => {
                let grown_mib = peak.saturating_sub(before) / 1024;
                // Flow-control windows allow a few MiB in flight per direction; buffering a
                // body whole would add at least its 32 MiB.
                assert!(
                    grown_mib < 24,
                    "peak memory grew by {grown_mib} MiB during the transfer"
                );
                eprintln!("peak memory growth during 2 x 32 MiB: {grown_mib} MiB");
            }
            _ => eprintln!("peak memory not measurable here; checked contents only"),
        }
        server.stop().await;
    })
    .await
}
