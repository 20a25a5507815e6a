//! The NBD server driven by real clients run as child processes: `nbdinfo`, `nbdcopy`
//! (libnbd-bin) and `qemu-io`, `qemu-img` (qemu-utils), serving the in-memory test device of
//! `nbd_common`. That device tests the protocol layer with real clients; the real volumes are
//! tested elsewhere. A missing client binary fails the test with the package to install.

mod nbd_common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn_block::{NbdConfig, NbdHandle};
use nbd_common::*;
use rand::{RngCore, SeedableRng};
use tokio::process::Command;
use tokio::time::timeout;

const MIB: usize = 1 << 20;

/// The path of `bin`, or a failure naming the Debian package that provides it.
fn tool(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{bin}` is not installed: install the Debian package `{package}` (apt-get install {package})")
        })
}

/// Runs `bin args...` to completion (killed if the test's timeout drops it).
async fn run(bin: &str, package: &str, args: &[&str]) -> Output {
    Command::new(tool(bin, package))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {bin}: {e}"))
}

/// Like [`run`], failing the test with the client's stderr unless it succeeds.
async fn run_ok(bin: &str, package: &str, args: &[&str]) -> String {
    let out = run(bin, package, args).await;
    assert!(
        out.status.success(),
        "{bin} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `base:allocation` state `nbdinfo --map` gives for the byte at `offset`.
fn state_at(map: &str, offset: usize) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let start: usize = f.next()?.parse().ok()?;
        let len: usize = f.next()?.parse().ok()?;
        let state: u32 = f.next()?.parse().ok()?;
        (start..start + len).contains(&offset).then_some(state)
    })
}

fn uri(srv: &NbdHandle, name: &str) -> String {
    format!("nbd://{}/{name}", srv.local_addr())
}

/// One 16 MiB disk (512-byte blocks), one 1 MiB read-only disk (4 KiB blocks).
async fn server(config: NbdConfig) -> (NbdHandle, Arc<MemDevice>) {
    let dev = Arc::new(MemDevice::new(16 * MIB, 512, false));
    let ro = Arc::new(MemDevice::new(MIB, 4096, true));
    let e = MemExports::default()
        .with("disk", "the test disk", dev.clone())
        .with("ro", "a read-only disk", ro);
    (start(e, config).await, dev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_reports_size_capabilities_and_block_sizes() {
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server(NbdConfig::default()).await;
        let json = run_ok("nbdinfo", "libnbd-bin", &["--json", &uri(&srv, "disk")]).await;
        let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo --json output");
        assert_eq!(v["structured"], true, "{json}");
        let e = &v["exports"][0];
        assert_eq!(e["export-name"], "disk");
        assert_eq!(e["description"], "the test disk");
        assert_eq!(e["export-size"], 16 * MIB);
        for cap in [
            "can_trim",
            "can_zero",
            "can_fua",
            "can_flush",
            "can_multi_conn",
            "can_fast_zero",
        ] {
            assert_eq!(e[cap], true, "{cap} in {json}");
        }
        assert_eq!(e["is_read_only"], false);
        assert_eq!(e["block_size_minimum"], 512, "{json}");
        assert_eq!(e["block_size_preferred"], 4096);
        assert_eq!(e["block_size_maximum"], 32 * MIB);
        assert_eq!(e["contexts"][0], "base:allocation");

        let json = run_ok("nbdinfo", "libnbd-bin", &["--json", &uri(&srv, "ro")]).await;
        let v: serde_json::Value = serde_json::from_str(&json).expect("nbdinfo --json output");
        let e = &v["exports"][0];
        assert_eq!(e["is_read_only"], true, "{json}");
        assert_eq!(e["can_trim"], false);
        assert_eq!(e["block_size_minimum"], 4096);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_lists_exports_and_refuses_unknown_ones() {
    timeout(TEST_TIMEOUT, async {
        let (srv, _) = server(NbdConfig::default()).await;
        let list = run_ok("nbdinfo", "libnbd-bin", &["--list", &uri(&srv, "")]).await;
        assert!(list.contains("export=\"disk\""), "{list}");
        assert!(list.contains("the test disk"), "{list}");
        assert!(list.contains("export=\"ro\""), "{list}");

        let out = run("nbdinfo", "libnbd-bin", &[&uri(&srv, "nope")]).await;
        assert!(!out.status.success(), "an unknown export must be refused");
        let out = run("nbdinfo", "libnbd-bin", &[&uri(&srv, "")]).await;
        assert!(!out.status.success(), "no default export is configured");
        srv.shutdown().await.unwrap();

        let config = NbdConfig {
            default_export: Some("ro".into()),
            ..NbdConfig::default()
        };
        let (srv, _) = server(config).await;
        let size = run_ok("nbdinfo", "libnbd-bin", &["--size", &uri(&srv, "")]).await;
        assert_eq!(size.trim(), MIB.to_string());
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdcopy_in_and_out_and_qemu_img_compare() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server(NbdConfig::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.img");
        let back = dir.path().join("back.img");
        let mut data = vec![0u8; 16 * MIB];
        rand::rngs::StdRng::seed_from_u64(16).fill_bytes(&mut data);
        std::fs::write(&src, &data).unwrap();
        let (src_s, back_s) = (src.to_str().unwrap(), back.to_str().unwrap());
        let disk = uri(&srv, "disk");

        run_ok("nbdcopy", "libnbd-bin", &[src_s, &disk]).await;
        assert!(dev.data() == data, "the device holds what nbdcopy wrote");
        run_ok("nbdcopy", "libnbd-bin", &[&disk, back_s]).await;
        assert!(
            std::fs::read(&back).unwrap() == data,
            "nbdcopy read back the same bytes"
        );
        run_ok(
            "qemu-img",
            "qemu-utils",
            &["compare", "-f", "raw", "-F", "raw", src_s, &disk],
        )
        .await;
        assert!(srv.stats().write.bytes.load(Ordering::Relaxed) >= 16 * MIB as u64);
        assert!(srv.stats().read.bytes.load(Ordering::Relaxed) >= 16 * MIB as u64);
        // nbdcopy flushes at the end: everything is durable.
        assert!(dev.durable() == data);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_writes_and_reads_a_pattern_and_trim_makes_a_hole() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server(NbdConfig::default()).await;
        let disk = uri(&srv, "disk");
        let out = run_ok(
            "qemu-io",
            "qemu-utils",
            &[
                "-f",
                "raw",
                "-c",
                "write -P 0x5a 1M 64k",
                "-c",
                "read -P 0x5a 1M 64k",
                &disk,
            ],
        )
        .await;
        assert!(!out.contains("Pattern verification failed"), "{out}");
        assert!(dev.data()[MIB..MIB + 65536].iter().all(|b| *b == 0x5a));

        let map = run_ok("nbdinfo", "libnbd-bin", &["--map", &disk]).await;
        assert_eq!(state_at(&map, MIB), Some(0), "{map}");
        assert_eq!(state_at(&map, MIB + 65535), Some(0), "{map}");
        assert_eq!(state_at(&map, MIB + 65536), Some(3), "{map}");

        run_ok(
            "qemu-io",
            "qemu-utils",
            &["-f", "raw", "-c", "discard 1M 32k", &disk],
        )
        .await;
        let map = run_ok("nbdinfo", "libnbd-bin", &["--map", &disk]).await;
        assert_eq!(
            state_at(&map, MIB),
            Some(3),
            "a trimmed range is a hole: {map}"
        );
        assert_eq!(state_at(&map, MIB + 32767), Some(3), "{map}");
        assert_eq!(state_at(&map, MIB + 32768), Some(0), "{map}");
        run_ok(
            "qemu-io",
            "qemu-utils",
            &[
                "-f",
                "raw",
                "-c",
                "read -P 0 1M 32k",
                "-c",
                "read -P 0x5a 1056k 32k",
                &disk,
            ],
        )
        .await;

        // Zeroing and writes past the end.
        run_ok(
            "qemu-io",
            "qemu-utils",
            &[
                "-f",
                "raw",
                "-c",
                "write -z 1056k 32k",
                "-c",
                "read -P 0 1M 64k",
                &disk,
            ],
        )
        .await;
        let out = run(
            "qemu-io",
            "qemu-utils",
            &["-f", "raw", "-c", "write -P 1 16M 4k", &disk],
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !text.contains("wrote 4096"),
            "a write past the end must fail: {text}"
        );
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_at_once() {
    timeout(TEST_TIMEOUT, async {
        let (srv, dev) = server(NbdConfig::default()).await;
        let disk = uri(&srv, "disk");
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..6u8 {
            let disk = disk.clone();
            clients.spawn(async move {
                let off = format!("{}M", 2 * u32::from(i));
                let w = format!("write -P {} {off} 1M", i + 1);
                let r = format!("read -P {} {off} 1M", i + 1);
                run_ok(
                    "qemu-io",
                    "qemu-utils",
                    &["-f", "raw", "-c", &w, "-c", "flush", "-c", &r, &disk],
                )
                .await
            });
        }
        while let Some(done) = clients.join_next().await {
            let out = done.expect("a client task failed");
            assert!(!out.contains("Pattern verification failed"), "{out}");
        }
        let data = dev.data();
        for i in 0..6usize {
            assert!(data[2 * i * MIB..(2 * i + 1) * MIB]
                .iter()
                .all(|b| *b == i as u8 + 1));
        }
        assert!(srv.stats().connections.load(Ordering::Relaxed) >= 6);
        assert!(srv.stats().flush.ops.load(Ordering::Relaxed) >= 6);
        srv.shutdown().await.unwrap();
    })
    .await
    .expect("test timed out");
}
