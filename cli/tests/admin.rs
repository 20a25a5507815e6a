//! The admin commands work on a stopped site's data dir and, through the admin endpoint, on a
//! running site; the first access key and the admin token are private files.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{cairn, s3, start, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_on_a_running_site_and_on_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, endpoint) = start(dir.path());

    // Through the running site (the data dir is locked by it).
    let (ok, out, err) = cairn(&["key", "create", "alice", "--data-dir", d]);
    assert!(ok, "{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Access key id:"))
        .expect("key id printed")
        .trim()
        .to_string();
    assert!(out.contains("Secret access key:"));
    let (ok, out, err) = cairn(&["key", "list", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("alice"));
    assert!(
        !out.contains(common::SECRET),
        "key list must not show secrets"
    );
    let (ok, _, err) = cairn(&["bucket", "create", "from-cli", "--data-dir", d]);
    assert!(ok, "{err}");
    let (ok, _, err) = cairn(&["bucket", "create", "Bad_Name", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("invalid bucket name"), "{err}");
    let listed = s3(&endpoint).list_buckets().send().await.unwrap();
    assert_eq!(listed.buckets()[0].name(), Some("from-cli"));
    s3(&endpoint)
        .put_object()
        .bucket("from-cli")
        .key("x")
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![7u8; 100_000]))
        .send()
        .await
        .unwrap();
    let (ok, out, err) = cairn(&["stats", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("logical bytes:    100000"), "{out}");

    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("admin.token"), 0o600);
    child.kill().unwrap();
    child.wait().unwrap();

    // Directly on the data dir once the site is gone.
    let (ok, out, err) = cairn(&["bucket", "list", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("from-cli"));
    let (ok, _, err) = cairn(&["key", "delete", &id, "--data-dir", d]);
    assert!(ok, "{err}");
    let (ok, _, err) = cairn(&["key", "delete", &id, "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("no access key"), "{err}");
    let (ok, _, err) = cairn(&["stats", "--data-dir", "/nonexistent/cairn"]);
    assert!(!ok);
    assert!(err.contains("not a cairn data dir"), "{err}");
}

#[test]
fn first_start_without_keys_prints_one_and_saves_it_privately() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "serve",
            "--s3-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--nbd-listen",
            "127.0.0.1:0",
            "--iscsi-listen",
            "127.0.0.1:0",
            "--link-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("CAIRN_ACCESS_KEY_ID")
        .env_remove("CAIRN_SECRET_ACCESS_KEY")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut printed = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("S3 endpoint:") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap();
    assert!(
        printed.contains(secret),
        "the secret is printed at first start"
    );
    let mode = std::fs::metadata(dir.path().join("credentials"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sigterm_stops_the_site_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _endpoint) = start(dir.path());
    assert!(dir.path().join("admin.json").exists());
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "cairn serve exited with {exit:?} on SIGTERM"
    );
    // The admin endpoint file is removed on a clean stop.
    assert!(!dir.path().join("admin.json").exists());
}

/// The server's allocator does not ask for transparent huge pages (mimalloc's `no_thp`, see
/// `main.rs`): with them, reusing chunk buffers spent most of a large GET's CPU zeroing 2 MiB
/// pages. Checked where the kernel gives huge pages only to memory that asks (`madvise` mode):
/// after a few MiB went through the server, none of its mappings may be eligible.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_asks_for_no_transparent_huge_pages() {
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let client = s3(&endpoint);
    client.create_bucket().bucket("thp").send().await.unwrap();
    let body: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    client
        .put_object()
        .bucket("thp")
        .key("k")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket("thp")
        .key("k")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    if !mode.contains("[madvise]") {
        eprintln!(
            "THP mode is not madvise ({}): nothing to check",
            mode.trim()
        );
        return;
    }
    let eligible = smaps
        .lines()
        .filter(|l| l.starts_with("THPeligible:") && l.split_whitespace().nth(1) == Some("1"))
        .count();
    assert_eq!(eligible, 0, "mappings marked for transparent huge pages");
}

/// The HTTP status of a failed SDK call.
fn status<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The id and secret printed by `cairn key create`.
fn created_key(out: &str) -> (String, String) {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .expect("field printed")
            .trim()
            .to_string()
    };
    (field("Access key id:"), field("Secret access key:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_allow_and_deny_manage_bucket_grants() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let (ok, out, err) = cairn(&["key", "create", "bob", "--data-dir", d]);
    assert!(ok, "{err}");
    let (bob, bob_secret) = created_key(&out);
    let (ok, _, err) = cairn(&["bucket", "create", "team", "--data-dir", d]);
    assert!(ok, "{err}");
    let bob_s3 = {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &bob,
                &bob_secret,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    };
    let e = bob_s3
        .list_objects_v2()
        .bucket("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403));

    // Through the running site.
    let (ok, out, err) = cairn(&[
        "key",
        "allow",
        &bob,
        "--bucket",
        "team",
        "--read",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("read"), "{out}");
    bob_s3
        .list_objects_v2()
        .bucket("team")
        .send()
        .await
        .unwrap();
    let e = bob_s3
        .put_object()
        .bucket("team")
        .key("x")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403));
    let (ok, out, err) = cairn(&["key", "list", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("team:read"), "{out}");
    let (ok, out, err) = cairn(&["key", "info", &bob, "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("team") && out.contains("read"), "{out}");
    // Refusals say why.
    let (ok, _, err) = cairn(&["key", "allow", &bob, "--bucket", "team", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("--read"), "{err}");
    let (ok, _, err) = cairn(&[
        "key",
        "allow",
        &bob,
        "--bucket",
        "nosuch",
        "--write",
        "--data-dir",
        d,
    ]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("bucket"), "{err}");
    let (ok, _, err) = cairn(&["key", "deny", &bob, "--bucket", "team", "--data-dir", d]);
    assert!(ok, "{err}");
    let e = bob_s3
        .list_objects_v2()
        .bucket("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(status(&e), Some(403));
    child.kill().unwrap();
    child.wait().unwrap();

    // Directly on the data dir.
    let (ok, _, err) = cairn(&[
        "key",
        "allow",
        &bob,
        "--bucket",
        "team",
        "--write",
        "--owner",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = cairn(&["key", "info", &bob, "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("write,owner"), "{out}");
    let (ok, _, err) = cairn(&["key", "deny", &bob, "--bucket", "team", "--data-dir", d]);
    assert!(ok, "{err}");
    let (ok, out, err) = cairn(&["key", "info", &bob, "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("none"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_s3_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start(dir.path());
    s3(&endpoint).list_buckets().send().await.unwrap();

    let file = std::fs::read_to_string(dir.path().join("admin.json")).unwrap();
    let url: serde_json::Value = serde_json::from_str(&file).unwrap();
    let addr = url["url"].as_str().unwrap().trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("cairn_s3_requests_total{op=\"ListBuckets\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("cairn_s3_request_duration_seconds_count{op=\"ListBuckets\"} 1\n"));
    assert!(
        text.contains("cairn_buckets 0\n"),
        "the store's gauges are still there"
    );
}

/// GET of an admin endpoint path with the site's token; the whole HTTP answer.
async fn admin_get(dir: &std::path::Path, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let file = std::fs::read_to_string(dir.join("admin.json")).unwrap();
    let url: serde_json::Value = serde_json::from_str(&file).unwrap();
    let addr = url["url"].as_str().unwrap().trim_start_matches("http://");
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.trim()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_near_full_site_refuses_writes_and_shows_it_in_the_admin_api_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    // A threshold no disk can pass: every data dir is near full from the start.
    let (mut child, endpoint) = start_with(dir.path(), &["--disk-min-free-percent", "100"]);
    let client = s3(&endpoint);
    client
        .create_bucket()
        .bucket("full-site")
        .send()
        .await
        .unwrap();
    let err = client
        .put_object()
        .bucket("full-site")
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![1u8; 10_000]))
        .send()
        .await
        .expect_err("a PUT on a near-full site");
    use aws_sdk_s3::error::ProvideErrorMetadata;
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(507));
    assert_eq!(err.code(), Some("InsufficientStorage"));
    assert!(
        err.message().unwrap_or_default().contains("near full"),
        "{err:?}"
    );
    // Listing and deleting still work.
    client
        .list_objects_v2()
        .bucket("full-site")
        .send()
        .await
        .unwrap();
    client
        .delete_object()
        .bucket("full-site")
        .key("k")
        .send()
        .await
        .unwrap();

    let disk = admin_get(dir.path(), "/v1/disk").await;
    let metrics = admin_get(dir.path(), "/metrics").await;
    let (ok, workers, err) = cairn(&["workers", "--data-dir", dir.path().to_str().unwrap()]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(disk.starts_with("HTTP/1.1 200"), "{disk}");
    let body: serde_json::Value =
        serde_json::from_str(disk.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["state"], "near-full", "{body}");
    let names: Vec<&str> = body["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chunks", "meta"]);
    assert!(body["dirs"][0]["total_bytes"].as_u64().unwrap() > 0);
    assert!(metrics.contains("cairn_disk_state 1\n"), "{metrics}");
    assert!(
        metrics.contains("cairn_disk_near_full{dir=\"chunks\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_disk_free_bytes{dir=\"meta\"} "),
        "{metrics}"
    );
    assert!(ok, "{err}");
    assert!(
        workers
            .lines()
            .any(|l| l.contains("disk") && l.contains("near-full")),
        "{workers}"
    );
}

/// The site id `/v1/site` reports, and the site id of a version id as S3 shows it.
async fn site_id(dir: &std::path::Path) -> u16 {
    let text = admin_get(dir, "/v1/site").await;
    let body = text.split("\r\n\r\n").nth(1).expect("an HTTP body");
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    v["id"].as_u64().expect("an id") as u16
}

async fn put_version(c: &aws_sdk_s3::Client, body: &str) -> String {
    c.put_object()
        .bucket("sid")
        .key("k")
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap()
        .version_id()
        .expect("a version id")
        .to_string()
}

fn site_of(version_id: &str) -> u16 {
    let v = u128::from_str_radix(version_id, 16).expect("a hex version id");
    (v >> 48) as u16
}

/// A single-node site makes its site id on first start, keeps it across a kill -9, and every
/// version it writes carries it (versions from different sites never share an id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_id_is_made_once_and_every_version_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, endpoint) = start(dir.path());
    let id = site_id(dir.path()).await;
    assert_ne!(
        id, 0,
        "0 is the id of versions written before sites had ids"
    );
    let kept = std::fs::read_to_string(dir.path().join("site-id")).unwrap();
    assert_eq!(kept.trim(), format!("{id:04x}"));

    let c = s3(&endpoint);
    c.create_bucket().bucket("sid").send().await.unwrap();
    c.put_bucket_versioning()
        .bucket("sid")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(site_of(&put_version(&c, "one").await), id);

    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, endpoint) = start(dir.path());
    assert_eq!(
        site_id(dir.path()).await,
        id,
        "the id changed across a restart"
    );
    let c = s3(&endpoint);
    assert_eq!(site_of(&put_version(&c, "two").await), id);
    child.kill().unwrap();
    child.wait().unwrap();
}
