//! Linked sites across an emulated WAN: site a dials site b through a user-space UDP relay
//! (50 ms round trip, 100 Mbit/s each way, with and without loss) and a continuous link carries
//! a steady stream of writes at a to b.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use cairn_isgw::{DataMode, Direction, LinkConfig, LinkPhase, Mode};
use cairn_tests::link::{versioned_bucket, wait_for, LinkedSite};
use cairn_tests::random_bytes;
use cairn_tests::relay::{Relay, RelayConfig, RelayStats};

/// How long a scenario waits for the link to carry everything.
const CONVERGE: Duration = Duration::from_secs(300);

/// Size of each object written.
const OBJECT: usize = 256 << 10;

/// Time between two writes: 256 KiB every 50 ms is 5 MiB/s, 40 % of the WAN's 100 Mbit/s.
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// The keys of `bucket` (at most 1000), sorted; none if the bucket is not there yet.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let Ok(out) = s3.list_objects_v2().bucket(bucket).send().await else {
        return Vec::new();
    };
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    keys
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Links a to b through a relay with `wan`; once the link runs (a marker written before it was
/// added has crossed), writes `count` objects at a at a steady pace, and checks that each reads
/// back the same at b and that the link's traffic crossed the relay. Returns what the relay
/// carried.
async fn continuous_link_across(wan: RelayConfig, count: u64) -> RelayStats {
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    a.trust(&b);
    b.trust(&a);
    let relay = Relay::start(b.link_addr, wan).await.expect("relay");
    let (sa, sb) = (a.site.s3(), b.site.s3());
    versioned_bucket(&sa, "stream").await;
    sa.put_object()
        .bucket("stream")
        .key("marker")
        .body(ByteStream::from(b"before the link".to_vec()))
        .send()
        .await
        .expect("put marker");
    a.add_link(LinkConfig {
        name: "wan".into(),
        remote: relay.addr().to_string(),
        buckets: None,
        direction: Direction::Both,
        mode: Mode::Both,
        data: DataMode::Full,
        rate_bytes_per_sec: 0,
        paused: false,
    });
    wait_for(CONVERGE, "the initial copy (the marker) at b", || async {
        keys(&sb, "stream")
            .await
            .contains(&"marker".to_string())
            .then_some(())
    })
    .await;
    // The writes come after the initial copy: the link follows a's change logs for them. They
    // are paced as a steady load (WRITE_EVERY apart), not to wait for anything.
    let name = |i: u64| format!("obj-{i:04}");
    let mut pace = tokio::time::interval(WRITE_EVERY);
    for i in 0..count {
        pace.tick().await;
        sa.put_object()
            .bucket("stream")
            .key(name(i))
            .body(ByteStream::from(random_bytes(OBJECT, i)))
            .send()
            .await
            .expect("put");
    }
    let mut want: Vec<String> = (0..count).map(name).collect();
    want.push("marker".into());
    want.sort();
    wait_for(CONVERGE, "every object listed at b", || async {
        (keys(&sb, "stream").await == want).then_some(())
    })
    .await;
    for i in 0..count {
        let got = get(&sb, "stream", &name(i)).await;
        assert!(
            got == random_bytes(OBJECT, i),
            "{} reads back the same at b",
            name(i)
        );
    }
    // a counts a version as sent once b has answered the apply: that answer may still be on
    // its way.
    let status = wait_for(CONVERGE, "a to count every version sent", || async {
        a.status("wan").filter(|s| s.sent.versions > count)
    })
    .await;
    assert_eq!(
        status.sent.versions,
        count + 1,
        "each version applied once at b: {status:?}"
    );
    assert_eq!(status.remote_site, Some(b.site.client.site_id()));
    assert_eq!(status.phase, LinkPhase::Connected, "{status:?}");
    // Everything went through the relay: at least the objects' bytes towards b, and b's
    // answers back.
    let stats = relay.stats();
    assert!(
        stats.to_target.bytes >= count * OBJECT as u64,
        "{stats:?} for {count} objects of {OBJECT} bytes"
    );
    assert!(stats.to_client.packets > 0, "{stats:?}");
    a.stop().await;
    b.stop().await;
    relay.stop().await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_link_across_a_wan_carries_every_write() {
    continuous_link_across(RelayConfig::wan(Duration::from_millis(50), 100), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuous_link_across_a_lossy_wan_converges() {
    let wan = RelayConfig::wan(Duration::from_millis(50), 100).with_loss(0.01);
    let stats = continuous_link_across(wan, 50).await;
    assert!(
        stats.to_target.lost > 0 && stats.to_client.lost > 0,
        "packets were lost both ways: {stats:?}"
    );
}
