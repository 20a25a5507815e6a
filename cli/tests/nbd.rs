//! Block volumes of a running `cairn serve`, driven by the NBD clients users have (Debian's
//! libnbd-bin, qemu-utils, fuse3 and fuse2fs): sizes and capabilities, a 256 MiB image copied
//! in and out, pattern writes, the allocation map, and a real ext4 file system that is
//! written, snapshotted, cloned and mounted again from the clone.

mod common;

use std::path::Path;
use std::process::Child;

use common::fuse::{check_file_system, fuse2fs, nbdfuse, unmount};
use common::{admin_metrics, cairn_ok as cli, run_tool as run, start_site, tool_ok as ok};

fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    // Leave some all-zero megabytes so the image has holes, as real images do.
    for mib in (3..len / (1 << 20)).step_by(5) {
        data[mib << 20..(mib + 1) << 20].fill(0);
    }
    std::fs::write(path, data).unwrap();
}

#[test]
fn nbd_clients_read_write_copy_and_map_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let ds = d.to_str().unwrap();
    std::fs::create_dir_all(&d).unwrap();
    let (site, ep) = start_site(&d, &[]);
    let mut site = Killed(site);
    let nbd = ep.nbd.expect("cairn serve serves NBD by default");
    cli(&[
        "volume",
        "create",
        "img",
        "--size",
        "256MiB",
        "--data-dir",
        ds,
    ]);
    cli(&[
        "volume",
        "create",
        "big",
        "--size",
        "10GiB",
        "--data-dir",
        ds,
    ]);
    let url = |v: &str| format!("nbd://{nbd}/{v}");

    // Size and capabilities.
    let info = ok("nbdinfo", &["--json", &url("img")], 30);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let export = &v["exports"][0];
    assert_eq!(export["export-size"], 256u64 << 20, "{info}");
    for cap in ["can_flush", "can_fua", "can_trim", "can_zero"] {
        assert_eq!(export[cap], true, "{cap}: {info}");
    }
    // Any byte range is served; 4 KiB (the volume's block size) is preferred.
    assert_eq!(export["block_size_minimum"], 1, "{info}");
    assert_eq!(export["block_size_preferred"], 4096, "{info}");
    let list = ok("nbdinfo", &["--list", &format!("nbd://{nbd}")], 30);
    assert!(list.contains("img") && list.contains("big"), "{list}");
    let unknown = run("nbdinfo", &[&url("nope")], 30);
    assert!(!unknown.status.success(), "an unknown volume is refused");

    // A 256 MiB image in and out with nbdcopy, compared byte for byte and by qemu-img.
    let image = dir.path().join("image.raw");
    random_file(&image, 256 << 20, 1);
    // --flush: nbdcopy does not flush by default, and only acknowledged flushes are durable.
    ok(
        "nbdcopy",
        &["--flush", image.to_str().unwrap(), &url("img")],
        120,
    );
    let back = dir.path().join("back.raw");
    ok("nbdcopy", &[&url("img"), back.to_str().unwrap()], 120);
    assert!(
        std::fs::read(&image).unwrap() == std::fs::read(&back).unwrap(),
        "the image read back differs"
    );
    let cmp = ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            image.to_str().unwrap(),
            &url("img"),
        ],
        120,
    );
    assert!(cmp.contains("identical"), "{cmp}");

    // Pattern writes and reads with qemu-io, on the thin 10 GiB volume.
    let io = ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1M 64k",
            "-c",
            "write -P 0xa5 5G 4k",
            "-c",
            "flush",
            "-c",
            "read -P 0x5a 1M 64k",
            "-c",
            "read -P 0xa5 5G 4k",
            "-c",
            "read -P 0 2M 1M",
            &url("big"),
        ],
        60,
    );
    assert!(!io.contains("Pattern verification failed"), "{io}");
    // The map shows the two written ranges as data and the rest as holes.
    let map = ok("nbdinfo", &["--map", "--totals", &url("big")], 60);
    let data_line = map
        .lines()
        .find(|l| l.contains("data"))
        .unwrap_or_else(|| panic!("{map}"));
    let data_bytes: u64 = data_line
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(data_bytes, (64 << 10) + 4096, "{map}");
    // A trim makes the range a hole again.
    ok(
        "qemu-io",
        &["-f", "raw", "-c", "discard 1M 64k", &url("big")],
        60,
    );
    let map = ok("nbdinfo", &["--map", "--totals", &url("big")], 60);
    assert!(
        map.lines()
            .any(|l| l.trim_start().starts_with("4096 ") && l.contains("data")),
        "{map}"
    );

    // Per-volume metrics on the admin endpoint.
    let metrics = admin_metrics(&d);
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("cairn_volume_size_bytes{volume=\"img\"}"),
        (256u64 << 20) as f64
    );
    assert!(value("cairn_volume_writes_total{volume=\"big\"}") >= 2.0);
    assert!(value("cairn_volume_discards_total{volume=\"big\"}") >= 1.0);
    assert!(value("cairn_volume_write_bytes_total{volume=\"img\"}") >= (128u64 << 20) as f64);
    assert!(value("cairn_volume_commits_total{volume=\"img\"}") >= 1.0);
    assert!(value("cairn_volume_flush_seconds_count{volume=\"big\"}") >= 1.0);
    assert_eq!(
        value("cairn_volume_commit_errors_total{volume=\"img\"}"),
        0.0
    );

    // nbdcopy --flush flushed at its end: the image survives kill -9 and reads back after a
    // restart.
    site.0.kill().unwrap();
    site.0.wait().unwrap();
    let (site, ep) = start_site(&d, &[]);
    let mut site = Killed(site);
    let nbd2 = ep.nbd.unwrap();
    let cmp = ok(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            image.to_str().unwrap(),
            &format!("nbd://{nbd2}/img"),
        ],
        120,
    );
    assert!(cmp.contains("identical"), "{cmp}");
    site.0.kill().unwrap();
    site.0.wait().unwrap();
}

/// A `cairn serve` child, killed on drop: a failing assertion must not leave it running
/// (it would hold the test runner's output pipe open).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_ext4_file_system_on_a_volume_survives_snapshot_and_clone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let ds = d.to_str().unwrap();
    std::fs::create_dir_all(&d).unwrap();
    let (site, ep) = start_site(&d, &[]);
    let mut site = Killed(site);
    let nbd = ep.nbd.unwrap();
    cli(&[
        "volume",
        "create",
        "fsvol",
        "--size",
        "128MiB",
        "--data-dir",
        ds,
    ]);
    let (mnt, fs) = (dir.path().join("mnt"), dir.path().join("fs"));

    // mkfs, mount, write files, unmount.
    let fuse = nbdfuse(&[&format!("nbd://{nbd}/fsvol")], &mnt, &fs);
    let image = mnt.join("nbd");
    ok("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()], 120);
    let ext = fuse2fs(&image, &fs);
    let mut files = Vec::new();
    for i in 0..20u64 {
        let path = fs.join(format!("file-{i}"));
        let len = 1000 + (i as usize) * 50_000;
        let data: Vec<u8> = (0..len).map(|j| (j as u64 * 31 + i) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        files.push((format!("file-{i}"), data));
    }
    std::fs::create_dir(fs.join("sub")).unwrap();
    std::fs::write(fs.join("sub/note"), b"written through NBD").unwrap();
    files.push(("sub/note".into(), b"written through NBD".to_vec()));
    unmount(&fs, ext);
    unmount(&mnt, fuse);

    // Snapshot and clone; the clone is mounted and checked, and e2fsck finds it clean.
    cli(&[
        "volume",
        "snapshot",
        "create",
        "fsvol",
        "s1",
        "--data-dir",
        ds,
    ]);
    cli(&["volume", "clone", "fsvol@s1", "fsclone", "--data-dir", ds]);
    let fuse = nbdfuse(&[&format!("nbd://{nbd}/fsclone")], &mnt, &fs);
    check_file_system(&image, &fs, &files, "in the clone");
    unmount(&mnt, fuse);
    site.0.kill().unwrap();
    site.0.wait().unwrap();
}
