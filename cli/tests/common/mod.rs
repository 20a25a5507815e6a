//! Starting a real `cairn serve` process for tests, and S3 clients for it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub mod fuse;

/// Access key the test sites are started with.
pub const KEY: &str = "CKCLITEST00000000001";
/// Its secret.
pub const SECRET: &str = "cli-test-secret-0123456789abcdefghijklmno";

/// Starts `cairn serve` on `dir` with loopback ports chosen by the OS; returns the child and
/// its S3 endpoint (read from its output).
#[allow(dead_code)] // not every test binary starts a default site
pub fn start(dir: &std::path::Path) -> (Child, String) {
    start_with(dir, &[])
}

/// Like [`start`], with extra `cairn serve` flags.
pub fn start_with(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let (child, ep) = start_site(dir, extra);
    (child, ep.s3)
}

/// What a started `cairn serve` printed.
#[allow(dead_code)] // not every test binary uses every endpoint
pub struct Endpoints {
    /// `http://ADDR` of S3.
    pub s3: String,
    /// `ADDR` of the NBD server (`nbd://ADDR/VOLUME`), if it serves NBD.
    pub nbd: Option<String>,
    /// `ADDR` of the iSCSI portal and the target name prefix (`iscsi://ADDR/PREFIX:VOLUME/0`),
    /// if it serves iSCSI.
    pub iscsi: Option<(String, String)>,
    /// `ADDR` of the link listener, if it accepts links.
    pub link: Option<String>,
    /// `ADDR` of the NFS server (NFS, MOUNT and the port mapper), if it serves NFS.
    pub nfs: Option<String>,
}

/// Starts `cairn serve` on `dir` (loopback ports chosen by the OS) with extra flags; returns
/// the child and the endpoints it printed.
pub fn start_site(dir: &std::path::Path, extra: &[&str]) -> (Child, Endpoints) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
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
        ])
        .args(if extra.contains(&"--link-listen") {
            &[][..]
        } else {
            &["--link-listen", "127.0.0.1:0"][..]
        })
        .args(
            if extra.contains(&"--nfs-listen") || extra.contains(&"--no-nfs") {
                &[][..]
            } else {
                &["--nfs-listen", "127.0.0.1:0"][..]
            },
        )
        .args(extra)
        .arg("--data-dir")
        .arg(dir)
        .env("CAIRN_ACCESS_KEY_ID", KEY)
        .env("CAIRN_SECRET_ACCESS_KEY", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cairn serve");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let (mut s3, mut nbd, mut iscsi, mut link, mut nfs) = (None, None, None, None, None);
    loop {
        let line = lines
            .next()
            .expect("cairn serve exited before printing its endpoints")
            .expect("read stdout");
        // Its log (warnings and errors at this level): shown when a test fails.
        eprintln!("[serve] {line}");
        if let Some(url) = line.strip_prefix("S3 endpoint:") {
            s3 = Some(url.trim().to_string());
        }
        if let Some(url) = line.strip_prefix("NBD endpoint:") {
            let addr = url.trim().trim_start_matches("nbd://");
            nbd = Some(addr.trim_end_matches("/VOLUME").to_string());
        }
        if let Some(url) = line.strip_prefix("iSCSI endpoint:") {
            let rest = url.trim().trim_start_matches("iscsi://");
            if let Some((addr, target)) = rest.split_once('/') {
                let prefix = target.trim_end_matches(":VOLUME/0").to_string();
                iscsi = Some((addr.to_string(), prefix));
            }
        }
        if let Some(rest) = line.strip_prefix("NFS endpoint:") {
            let rest = rest.trim().trim_start_matches("nfs://");
            nfs = rest.split('/').next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("Link listener:") {
            let addr = rest.trim().trim_start_matches("quic://");
            link = addr.split_whitespace().next().map(str::to_string);
        }
        if line.starts_with("Data dir:") {
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe; its log lines go where
    // the test's output goes.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[serve] {line}");
        }
    });
    let s3 = s3.expect("cairn serve printed its S3 endpoint");
    (
        child,
        Endpoints {
            s3,
            nbd,
            iscsi,
            link,
            nfs,
        },
    )
}

/// An AWS SDK client for `endpoint` with the test key.
#[allow(dead_code)] // not every test binary speaks S3
pub fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(KEY, SECRET, None, None, "test"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Runs `cairn ARGS` to completion; returns (success, stdout, stderr).
#[allow(dead_code)] // not every test binary runs admin commands
pub fn cairn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `cairn ARGS`, which must succeed; returns its stdout.
#[allow(dead_code)] // not every test binary runs admin commands
pub fn cairn_ok(args: &[&str]) -> String {
    let (ok, out, err) = cairn(args);
    assert!(ok, "cairn {args:?} failed: {err}");
    out
}

/// Runs a client binary (nbdinfo, qemu-io, ...) to completion within `secs`; a missing binary
/// names the Debian packages scripts/test installs. Its output is read as it comes (a full
/// pipe would stall it), and one that overruns shows what it printed so far.
#[allow(dead_code)] // not every test binary drives external clients
pub fn run_tool(bin: &str, args: &[&str], secs: u64) -> std::process::Output {
    use std::io::Read;
    use std::time::{Duration, Instant};
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}): scripts/test installs it (Debian: libnbd-bin, qemu-utils, fuse3, fuse2fs, e2fsprogs)")
        });
    fn drain(mut r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    }
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // A process it started may still hold the pipes after it was killed: not waited for long.
    let grace = if status.is_some() { 3600 } else { 5 };
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(grace))
            .unwrap_or_default()
    };
    let stdout = collect(stdout);
    let stderr = collect(stderr);
    let Some(status) = status else {
        let tail = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        panic!(
            "{bin} {args:?} did not finish within {secs} s; the end of its output:\n{}\n--- stderr:\n{}",
            tail(&stdout),
            tail(&stderr)
        );
    };
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// [`run_tool`], which must succeed; returns its stdout.
#[allow(dead_code)] // not every test binary drives external clients
pub fn tool_ok(bin: &str, args: &[&str], secs: u64) -> String {
    let out = run_tool(bin, args, secs);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET /metrics` from the admin endpoint of the site on `dir` (its address from
/// `DATA_DIR/admin.json`).
#[allow(dead_code)] // not every test binary reads metrics
pub fn admin_metrics(dir: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let file = std::fs::read_to_string(dir.join("admin.json")).unwrap();
    let url: serde_json::Value = serde_json::from_str(&file).unwrap();
    let addr = url["url"].as_str().unwrap().trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text
}
