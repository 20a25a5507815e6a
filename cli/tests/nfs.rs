//! NFS through `cairn serve`, with the clients users have: libnfs's tools (nfs-ls, nfs-cp,
//! nfs-cat) from Debian, the AWS SDK on the same bucket, `cairn nfs export|list|unexport`, and
//! kill -9: a COMMITted write survives it, and the write verifier changes so clients resend
//! what was not committed.

mod common;
#[path = "../../gateway-nfs/tests/common/mod.rs"]
mod nfs_client;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_nfs::nfs3::{CreateHow, Sattr3, StableHow};
use common::{s3, start_site};
use nfs_client::NfsClient;

fn cairn(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nfs://127.0.0.1/PATH` of the server at `addr` (NFS and MOUNT on one port).
fn url(addr: &str, path: &str) -> String {
    let port = addr.rsplit(':').next().unwrap();
    format!("nfs://127.0.0.1/{path}?nfsport={port}&mountport={port}")
}

fn tool(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} (libnfs-utils): {e}", args[0]))
}

/// Runs `nfs-ls` on `path` until it succeeds (the site reads its exports file every second).
fn wait_mountable(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = tool(&["nfs-ls", &url(addr, path)]);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{path} never became mountable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn s3_get(client: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    let got = client
        .get_object()
        .bucket("files")
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

fn dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libnfs_tools_and_s3_share_a_bucket_and_commits_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (mut child, ep) = start_site(&dir, &[]);
    let nfs = ep
        .nfs
        .clone()
        .expect("cairn serve printed its NFS endpoint");
    let client = s3(&ep.s3);
    client.create_bucket().bucket("files").send().await.unwrap();
    client
        .put_object()
        .bucket("files")
        .key("docs/readme.txt")
        .body(ByteStream::from_static(b"written through S3\n"))
        .send()
        .await
        .unwrap();

    // Exported while the site runs: it picks the export up by itself.
    let d = dir_arg(&dir);
    let said = cairn(&["nfs", "export", "files", "--data-dir", &d]);
    assert!(said.contains("/files"), "{said}");
    assert!(cairn(&["nfs", "list", "--data-dir", &d]).contains("/files"));
    let listing = wait_mountable(&nfs, "files");
    assert!(listing.contains("docs"), "{listing}");

    // S3 → NFS.
    let out = tool(&["nfs-cat", &url(&nfs, "files/docs/readme.txt")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"written through S3\n");
    // NFS → S3, and back through NFS: 5 MiB of random bytes.
    let data = random(5 << 20, 1);
    let local = tmp.path().join("up.bin");
    std::fs::write(&local, &data).unwrap();
    let out = tool(&[
        "nfs-cp",
        local.to_str().unwrap(),
        &url(&nfs, "files/docs/up.bin"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s3_get(&client, "docs/up.bin").await == data,
        "S3 reads what nfs-cp wrote"
    );
    let back = tmp.path().join("back.bin");
    let out = tool(&[
        "nfs-cp",
        &url(&nfs, "files/docs/up.bin"),
        back.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&back).unwrap() == data);
    let out = tool(&["nfs-ls", "-R", &url(&nfs, "files")]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("docs/up.bin") && listing.contains(&(5u64 << 20).to_string()),
        "{listing}"
    );

    // A file written at offsets: committed part, then uncommitted writes; then kill -9.
    let addr: std::net::SocketAddr = nfs.parse().unwrap();
    let mut c = NfsClient::connect(addr).await;
    let root = c.mount("/files").await.unwrap();
    let unchecked = CreateHow::Unchecked(Sattr3::default());
    let fh = c.create(&root, "journal", unchecked.clone()).await.unwrap();
    let committed = random(3 << 20, 2);
    for (i, part) in committed.chunks(1 << 20).enumerate() {
        c.write(&fh, (i << 20) as u64, part, StableHow::Unstable)
            .await
            .unwrap();
    }
    let verf = c.commit(&fh).await.unwrap();
    let lost = c.create(&root, "uncommitted", unchecked).await.unwrap();
    let (how, verf2) = c
        .write(&lost, 0, &random(1 << 20, 3), StableHow::Unstable)
        .await
        .unwrap();
    assert_eq!((how, verf2), (StableHow::Unstable, verf));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();

    // Restarted: the committed file is whole, through S3 and NFS; the verifier is new, so a
    // client knows to resend its uncommitted writes.
    let (mut child, ep) = start_site(&dir, &[]);
    let client = s3(&ep.s3);
    assert!(s3_get(&client, "journal").await == committed);
    let nfs = ep.nfs.clone().unwrap();
    wait_mountable(&nfs, "files");
    let mut c = NfsClient::connect(nfs.parse().unwrap()).await;
    let root = c.mount("/files").await.unwrap();
    let (fh2, attrs) = c.lookup(&root, "journal").await.unwrap();
    assert_eq!(fh2, fh, "handles are the same across restarts");
    assert_eq!(attrs.size, 3 << 20);
    assert!(c.read_all(&fh).await == committed);
    let (_, verf3) = c
        .write(&lost, 0, b"again", StableHow::Unstable)
        .await
        .unwrap();
    assert_ne!(
        verf3, verf,
        "the write verifier must change across a restart"
    );

    // Unexported: mounts fail (within the second the site takes to notice).
    cairn(&["nfs", "unexport", "files", "--data-dir", &d]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tool(&["nfs-ls", &url(&nfs, "files")]).status.success() {
        assert!(Instant::now() < deadline, "still mountable after unexport");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().ok();
    child.wait().ok();
}
