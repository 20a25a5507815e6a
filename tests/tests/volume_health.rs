//! Block volumes on a three-node site (RF 3): NBD through a node, one node killed while the
//! volume is written and read, health reported Degraded with its replica counts (admin JSON,
//! the same census `cairn volume info` prints), the node back, repair, Healthy again, and the
//! data read back through another node's NBD server.

use std::time::Duration;

use cairn_block::volume::{HealthState, VolumeUsage, DEFAULT_EXTENT_SIZE};
use cairn_tests::multi::MultiSite;
use cairn_tests::nbd::NbdClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

/// Random bytes (no two extents alike, so nothing dedups).
fn pattern(len: u64, seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut b = vec![0u8; len as usize];
    rand::rngs::StdRng::seed_from_u64(seed).fill(&mut b[..]);
    b
}

/// Polls node `k`'s view of the volume's usage until `done` holds (60 s at most).
async fn usage_until(
    site: &MultiSite,
    k: usize,
    what: &str,
    done: impl Fn(&VolumeUsage) -> bool,
) -> VolumeUsage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let u = site.node(k).volumes.usage("vol").await.expect("usage");
        if done(&u) {
            return u;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the volume did not become {what} within 60 s; last: {u:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` on node `k`'s admin endpoint with its token, as JSON.
async fn admin_get(site: &MultiSite, k: usize, path: &str) -> serde_json::Value {
    let token = std::fs::read_to_string(site.data_dir(k).join("admin.token")).expect("token");
    let addr = site.slots[k].config.listen.admin;
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("admin");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    );
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut out = String::new();
    conn.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = out.split_once("\r\n\r\n").expect("body").1;
    serde_json::from_str(body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_volume_stays_usable_through_a_node_loss_and_reports_its_health() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let mut site = MultiSite::start(3, 3, 3, "[volumes]\nhealth_interval = 1\n").await;
        site.node(0)
            .volumes
            .create("vol", 64 * MIB, 4096, DEFAULT_EXTENT_SIZE)
            .await
            .expect("create");

        let a = pattern(4 * MIB, 1);
        let mut nbd = NbdClient::open(site.nbd_addr(0), "vol").await.expect("nbd");
        assert_eq!(nbd.size, 64 * MIB);
        nbd.write(0, &a).await.expect("write");
        nbd.flush().await.expect("flush");
        let healthy = site.node(0).volumes.usage("vol").await.unwrap();
        assert_eq!(healthy.state, HealthState::Healthy, "{healthy:?}");
        assert_eq!((healthy.replicas_wanted, healthy.replicas_min), (3, 3));
        assert_eq!(healthy.used_bytes, 4 * MIB);

        // n3 crashes; writes still reach the quorum (2 of 3) and everything reads back.
        site.kill_node(2).await;
        let b = pattern(4 * MIB, 2);
        nbd.write(16 * MIB, &b)
            .await
            .expect("write with a node down");
        nbd.flush().await.expect("flush with a node down");
        assert_eq!(nbd.read(0, a.len() as u32).await.unwrap(), a);
        assert_eq!(nbd.read(16 * MIB, b.len() as u32).await.unwrap(), b);

        let degraded = usage_until(&site, 0, "degraded", |u| {
            u.state == HealthState::Degraded && u.nodes_down.iter().any(|n| n.contains("n3"))
        })
        .await;
        assert_eq!(
            (degraded.replicas_wanted, degraded.replicas_min),
            (3, 2),
            "{degraded:?}"
        );
        assert_eq!(
            degraded.chunks_short, degraded.chunks,
            "n3 is a replica of every chunk"
        );
        assert!(
            degraded.summary().contains("replicas 2/3 for"),
            "{}",
            degraded.summary()
        );
        let json = admin_get(&site, 0, "/v1/volumes/vol").await;
        assert_eq!(json["usage"]["state"], "degraded", "{json}");
        assert_eq!(json["usage"]["replicas_min"], 2, "{json}");
        assert_eq!(json["usage"]["used_bytes"], 8 * MIB, "{json}");

        // n3 comes back without the chunks written meanwhile; repair (started by its return)
        // copies them, and the volume is healthy again.
        site.start_node(2).await;
        let back = usage_until(&site, 0, "healthy", |u| u.state == HealthState::Healthy).await;
        assert_eq!((back.replicas_min, back.chunks_short), (3, 0), "{back:?}");
        for id in site.all_chunks() {
            assert_eq!(site.copies(&id), 3, "chunk {id} has every replica");
        }
        assert_eq!(nbd.read(0, a.len() as u32).await.unwrap(), a);
        assert_eq!(nbd.read(16 * MIB, b.len() as u32).await.unwrap(), b);
        nbd.disconnect().await.expect("disconnect");

        // n3's own NBD server serves the volume with everything in it.
        let mut via_n3 = NbdClient::open(site.nbd_addr(2), "vol")
            .await
            .expect("nbd on n3");
        assert_eq!(via_n3.read(0, a.len() as u32).await.unwrap(), a);
        assert_eq!(via_n3.read(16 * MIB, b.len() as u32).await.unwrap(), b);
        via_n3.disconnect().await.expect("disconnect");

        // The periodic check shows it in /metrics.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let m = site.metrics(0).await;
            if m.contains("cairn_volume_health{volume=\"vol\",state=\"healthy\"} 1")
                && m.contains(&format!(
                    "cairn_volume_used_bytes{{volume=\"vol\"}} {}",
                    8 * MIB
                ))
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "metrics: {m}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        site.shutdown().await;
    })
    .await
    .expect("the scenario finishes within 5 minutes");
}
