//! Two `cairn serve` processes linked with the `cairn link` commands, as a user links two sites;
//! either side killed with SIGKILL while the link is busy, restarted, and every acknowledged
//! write readable at both sites.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use common::{cairn, cairn_ok, s3, start_site};

fn random(n: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A running site: its process, S3 endpoint and link listener.
struct Site {
    child: Child,
    s3: String,
    link: String,
}

fn start(dir: &Path, link: &str) -> Site {
    let (child, ep) = start_site(dir, &["--link-listen", link]);
    Site {
        child,
        s3: ep.s3,
        link: ep.link.expect("cairn serve printed its link listener"),
    }
}

fn kill(site: &mut Site) {
    site.child.kill().expect("SIGKILL");
    site.child.wait().expect("wait");
}

impl Drop for Site {
    /// A failing test must not leave its sites running (they hold the test's output open).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn put(s3: &aws_sdk_s3::Client, key: &str, data: Vec<u8>) {
    s3.put_object()
        .bucket("shared")
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect("put");
}

/// (key, size) of every object, sorted.
async fn listing(s3: &aws_sdk_s3::Client) -> Option<Vec<(String, i64)>> {
    let out = s3
        .list_objects_v2()
        .bucket("shared")
        .max_keys(1000)
        .send()
        .await
        .ok()?;
    let mut v: Vec<(String, i64)> = out
        .contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap_or_default().to_string(),
                o.size().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    Some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_processes_converge_after_either_side_is_killed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let mut a = start(&a_dir, "127.0.0.1:0");
    let mut b = start(&b_dir, "127.0.0.1:0");
    // Each site trusts the other's CA, as the README says.
    let a_ca = tmp.path().join("a-ca.pem");
    let b_ca = tmp.path().join("b-ca.pem");
    std::fs::write(
        &a_ca,
        cairn_ok(&["link", "ca", "--data-dir", a_dir.to_str().unwrap()]),
    )
    .expect("write");
    std::fs::write(
        &b_ca,
        cairn_ok(&["link", "ca", "--data-dir", b_dir.to_str().unwrap()]),
    )
    .expect("write");
    let out = cairn_ok(&[
        "link",
        "trust",
        a_ca.to_str().unwrap(),
        "--data-dir",
        b_dir.to_str().unwrap(),
    ]);
    assert!(out.contains("Trusting site"), "{out}");
    cairn_ok(&[
        "link",
        "trust",
        b_ca.to_str().unwrap(),
        "--data-dir",
        a_dir.to_str().unwrap(),
    ]);
    // A site's own CA is refused.
    let (ok, _, err) = cairn(&[
        "link",
        "trust",
        a_ca.to_str().unwrap(),
        "--data-dir",
        a_dir.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("own CA"), "{err}");

    let sa = s3(&a.s3);
    sa.create_bucket()
        .bucket("shared")
        .send()
        .await
        .expect("bucket");
    for i in 0..10 {
        put(&sa, &format!("before/{i}"), random(300 << 10, i)).await;
    }
    cairn_ok(&[
        "link",
        "add",
        "b",
        "--remote",
        &b.link,
        "--all",
        "--data-dir",
        a_dir.to_str().unwrap(),
    ]);
    let listed = cairn_ok(&["link", "list", "--data-dir", a_dir.to_str().unwrap()]);
    assert!(listed.contains("all buckets"), "{listed}");

    // Writes at a while the link runs; b is killed and comes back on its address, then a.
    for i in 0..15 {
        put(&sa, &format!("during/{i}"), random(300 << 10, 100 + i)).await;
    }
    kill(&mut b);
    for i in 15..30 {
        put(&sa, &format!("during/{i}"), random(300 << 10, 100 + i)).await;
    }
    let b_link = b.link.clone();
    b = start(&b_dir, &b_link);
    for i in 30..45 {
        put(&sa, &format!("during/{i}"), random(300 << 10, 100 + i)).await;
    }
    kill(&mut a);
    a = start(&a_dir, "127.0.0.1:0");
    let sa = s3(&a.s3);
    let sb = s3(&b.s3);
    // And writes at b travel back, once b has the bucket (it may not have had it when it
    // was killed).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sb.head_bucket().bucket("shared").send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bucket never reached b"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..5 {
        put(&sb, &format!("at-b/{i}"), random(100 << 10, 500 + i)).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let want = loop {
        let (la, lb) = (listing(&sa).await, listing(&sb).await);
        if let (Some(la), Some(lb)) = (&la, &lb) {
            if la == lb && la.len() == 10 + 45 + 5 {
                break la.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sites did not converge: a has {:?} objects, b {:?}",
            la.map(|l| l.len()),
            lb.map(|l| l.len())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (key, _) in &want {
        let seed = match key.split_once('/') {
            Some(("before", i)) => i.parse::<u64>().unwrap(),
            Some(("during", i)) => 100 + i.parse::<u64>().unwrap(),
            Some(("at-b", i)) => 500 + i.parse::<u64>().unwrap(),
            _ => unreachable!("{key}"),
        };
        for (name, client) in [("a", &sa), ("b", &sb)] {
            let got = client
                .get_object()
                .bucket("shared")
                .key(key)
                .send()
                .await
                .expect("get")
                .body
                .collect()
                .await
                .expect("body")
                .into_bytes();
            let len = if key.starts_with("at-b") {
                100 << 10
            } else {
                300 << 10
            };
            assert!(got == random(len, seed), "{key} differs at {name}");
        }
    }
    let sib = cairn_ok(&[
        "object",
        "siblings",
        "shared",
        "at-b/0",
        "--data-dir",
        a_dir.to_str().unwrap(),
    ]);
    assert!(
        sib.contains("has no siblings") && sib.contains("current"),
        "{sib}"
    );
    let status = cairn_ok(&["link", "status", "--data-dir", a_dir.to_str().unwrap()]);
    assert!(status.contains("state Connected"), "{status}");
    let metrics = common::admin_metrics(&a_dir);
    assert!(
        metrics.contains("cairn_link_connected{link=\"b\"} 1"),
        "{metrics}"
    );
    cairn_ok(&["link", "pause", "b", "--data-dir", a_dir.to_str().unwrap()]);
    cairn_ok(&["link", "remove", "b", "--data-dir", a_dir.to_str().unwrap()]);
    kill(&mut a);
    kill(&mut b);
}
