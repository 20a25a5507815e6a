//! `cairn volume backup` and `restore` between two real sites: site A's volume, written by
//! real NBD clients, is backed up to site B's S3 endpoint, a second backup after a 1 % change
//! sends about 1 % of the bytes, restores read back byte for byte, and a corrupted chunk
//! object fails a restore that then leaves no volume behind.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use common::{cairn, cairn_ok as cli, s3, start_site, tool_ok as ok, KEY, SECRET};

const MIB: usize = 1 << 20;

/// Pseudo-random bytes with some all-zero MiBs (holes), as real images have.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    for mib in (3..len / MIB).step_by(7) {
        data[mib * MIB..(mib + 1) * MIB].fill(0);
    }
    data
}

/// The number in "sent N bytes" of a backup's output.
fn sent_bytes(out: &str) -> u64 {
    let rest = out
        .split("sent ")
        .nth(1)
        .unwrap_or_else(|| panic!("no `sent N bytes` in {out}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// `cairn_s3_request_bytes_total{op="PutObject"}` of the site on `dir`, from its `/metrics`.
fn put_bytes(dir: &Path) -> u64 {
    let ep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("admin.json")).unwrap()).unwrap();
    let addr = ep["url"].as_str().unwrap().trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("cairn_s3_request_bytes_total{op=\"PutObject\"} "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn stop(child: &mut std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_send_only_new_chunks_and_restores_verify_every_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let ad = a.to_str().unwrap();
    let (mut site_a, ep_a) = start_site(&a, &[]);
    let (mut site_b, ep_b) = start_site(&b, &[]);
    let nbd = ep_a.nbd.expect("cairn serve serves NBD by default");
    let url = |v: &str| format!("nbd://{nbd}/{v}");

    // A 32 MiB volume on A, written with nbdcopy, snapshotted.
    let size = 32 * MIB;
    cli(&[
        "volume",
        "create",
        "vol",
        "--size",
        "32MiB",
        "--data-dir",
        ad,
    ]);
    let v1 = random_bytes(size, 7);
    let image = tmp.path().join("v1.raw");
    std::fs::write(&image, &v1).unwrap();
    ok("nbdcopy", &[image.to_str().unwrap(), &url("vol")], 120);
    cli(&[
        "volume",
        "snapshot",
        "create",
        "vol",
        "s1",
        "--data-dir",
        ad,
    ]);

    // Change 1 %: 80 scattered 4 KiB blocks (each its own pattern, so no two dedup), written
    // with qemu-io.
    let mut v2 = v1.clone();
    let mut args: Vec<String> = vec!["-f".into(), "raw".into()];
    for i in 0..80usize {
        let off = (i * 97 + 13) * 4096;
        let pattern = 0x40 + i as u8;
        v2[off..off + 4096].fill(pattern);
        args.push("-c".into());
        args.push(format!("write -P {pattern} {off} 4k"));
    }
    args.push(url("vol"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok("qemu-io", &args, 60);
    cli(&[
        "volume",
        "snapshot",
        "create",
        "vol",
        "s2",
        "--data-dir",
        ad,
    ]);

    // Backups and restores on the running site go through its admin endpoint.
    let s3b = s3(&ep_b.s3);
    s3b.create_bucket().bucket("backups").send().await.unwrap();
    let backup = |snap: &str, dest: &str| -> String {
        cli(&[
            "volume",
            "backup",
            snap,
            dest,
            "--endpoint",
            &ep_b.s3,
            "--access-key",
            KEY,
            "--secret-key",
            SECRET,
            "--data-dir",
            ad,
        ])
    };
    let restore = |snap: &str, new: &str| -> (bool, String, String) {
        cairn(&[
            "volume",
            "restore",
            "s3://backups/site-a",
            snap,
            new,
            "--endpoint",
            &ep_b.s3,
            "--access-key",
            KEY,
            "--secret-key",
            SECRET,
            "--data-dir",
            ad,
        ])
    };

    // First backup: every chunk is sent.
    let on_b = put_bytes(&b);
    let out1 = backup("vol@s1", "s3://backups/site-a");
    let first = sent_bytes(&out1);
    let first_on_b = put_bytes(&b) - on_b;
    assert!(out1.contains(" 0 chunks already there"), "{out1}");
    let data_bytes = (v1.chunks(MIB).filter(|c| c.iter().any(|&b| b != 0)).count() * MIB) as u64;
    assert!(
        first >= data_bytes * 9 / 10 && first <= data_bytes + MIB as u64,
        "the first backup sent {first} bytes of a volume with {data_bytes} bytes of data: {out1}"
    );
    // The same snapshot again: nothing to send.
    let again = backup("vol@s1", "s3://backups/site-a");
    assert_eq!(
        sent_bytes(&again),
        0,
        "a repeated backup sends nothing: {again}"
    );
    // The snapshot after the 1 % change: only its new chunks.
    let on_b = put_bytes(&b);
    let out2 = backup("vol@s2", "s3://backups/site-a");
    let second = sent_bytes(&out2);
    let second_on_b = put_bytes(&b) - on_b;
    println!("first backup: {first} bytes; second backup (1 % changed): {second} bytes");
    println!(
        "PUT bodies site B received: first {first_on_b} bytes, second {second_on_b} bytes (manifests included)"
    );
    assert!(first_on_b >= first, "B received {first_on_b} bytes");
    assert!(
        second_on_b * 20 <= first_on_b,
        "B received {second_on_b} bytes for the second backup, {first_on_b} for the first"
    );
    print!("{out1}{out2}");
    assert!(second >= 80 * 4096, "the 80 new blocks are sent: {out2}");
    assert!(
        second * 20 <= first,
        "the second backup sent {second} bytes, more than 5 % of the first's {first}: {out2}"
    );

    // Restores into new volumes, each chunk verified.
    let (r1, out, err) = restore("vol@s1", "r1");
    assert!(r1 && out.contains("every chunk verified"), "{out}{err}");
    let (r2, out, err) = restore("vol@s2", "r2");
    assert!(r2, "{out}{err}");
    let (missing, _, err) = restore("vol@nope", "r3");
    assert!(!missing && err.contains("no backup of vol@nope"), "{err}");

    // A chunk object overwritten on B: the restore names it and leaves no volume.
    let listed = s3b
        .list_objects_v2()
        .bucket("backups")
        .prefix("site-a/chunks/")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().len() > 400, "{listed:?}");
    // A 64 KiB chunk of the first image: both snapshots read it.
    let victim = listed
        .contents()
        .iter()
        .find(|o| o.size() == Some(64 << 10))
        .and_then(|o| o.key())
        .expect("a 64 KiB chunk object")
        .to_string();
    let original = s3b
        .get_object()
        .bucket("backups")
        .key(&victim)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let put = |body: ByteStream| {
        s3b.put_object()
            .bucket("backups")
            .key(&victim)
            .body(body)
            .send()
    };
    put(ByteStream::from_static(b"not the chunk"))
        .await
        .unwrap();
    for snap in ["vol@s1", "vol@s2"] {
        let (bad, out, err) = restore(snap, "bad");
        assert!(!bad, "a restore over a corrupted chunk succeeded: {out}");
        assert!(
            err.contains(&format!("s3://backups/{victim}")) && err.contains("corrupt"),
            "{err}"
        );
    }
    put(ByteStream::from(original)).await.unwrap();
    let list = cli(&["volume", "list", "--data-dir", ad]);
    assert!(
        list.contains("r1") && list.contains("r2") && !list.contains("bad"),
        "{list}"
    );

    // The restored volumes read back byte for byte, over NBD.
    let read_back = |nbd: &str, vol: &str, want: &[u8]| {
        let back = tmp.path().join(format!("{vol}.raw"));
        ok(
            "nbdcopy",
            &[&format!("nbd://{nbd}/{vol}"), back.to_str().unwrap()],
            120,
        );
        assert!(
            std::fs::read(&back).unwrap() == want,
            "restored volume {vol} differs from its snapshot"
        );
    };
    read_back(&nbd, "r1", &v1);
    read_back(&nbd, "r2", &v2);

    // With the site stopped, the command does the work on the data dir itself.
    stop(&mut site_a);
    let out = backup("vol@s2", "s3://backups/local");
    assert!(sent_bytes(&out) >= first, "{out}");
    let (r3, out, err) = restore("vol@s2", "r3");
    assert!(r3, "{out}{err}");
    let (mut site_a, ep_a) = start_site(&a, &[]);
    read_back(&ep_a.nbd.unwrap(), "r3", &v2);
    stop(&mut site_a);
    stop(&mut site_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_on_a_running_site_report_progress_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    let ad = a.to_str().unwrap();
    let (site, ep) = start_site(&a, &[]);
    // Stopped even when an assertion fails, so no server outlives the test.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            stop(&mut self.0);
        }
    }
    let _site = Stop(site);
    let nbd = ep.nbd.expect("cairn serve serves NBD by default");
    cli(&[
        "volume",
        "create",
        "vol",
        "--size",
        "16MiB",
        "--data-dir",
        ad,
    ]);
    let image = tmp.path().join("v.raw");
    let data = random_bytes(16 * MIB, 3);
    std::fs::write(&image, &data).unwrap();
    ok(
        "nbdcopy",
        &[image.to_str().unwrap(), &format!("nbd://{nbd}/vol")],
        120,
    );
    cli(&[
        "volume",
        "snapshot",
        "create",
        "vol",
        "s1",
        "--data-dir",
        ad,
    ]);
    // The site backs up into a bucket of its own S3 endpoint.
    s3(&ep.s3)
        .create_bucket()
        .bucket("backups")
        .send()
        .await
        .unwrap();
    let keys = [
        "--endpoint",
        &ep.s3,
        "--access-key",
        KEY,
        "--secret-key",
        SECRET,
    ];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&keys);
        all.extend_from_slice(&["--data-dir", ad]);
        cairn(&all)
    };

    // Through the site's admin endpoint, as a job whose progress the command follows (as
    // lines here: stderr is not a terminal).
    let (done, out, err) = run(&["volume", "backup", "vol@s1", "s3://backups/p"]);
    assert!(done, "{out}{err}");
    assert!(out.contains("Backed up vol@s1"), "{out}");
    assert!(err.contains("backup: 16.0 MiB of 16.0 MiB (100%)"), "{err}");
    let (done, out, err) = run(&["volume", "restore", "s3://backups/p", "vol@s1", "back"]);
    assert!(done, "{out}{err}");
    assert!(err.contains("restore: ") && err.contains("(100%)"), "{err}");
    let back = tmp.path().join("back.raw");
    ok(
        "nbdcopy",
        &[&format!("nbd://{nbd}/back"), back.to_str().unwrap()],
        120,
    );
    assert!(
        std::fs::read(&back).unwrap() == data,
        "the restored volume reads back"
    );

    // A job that fails reports why, with what to do.
    let (done, _, err) = run(&["volume", "restore", "s3://backups/p", "vol@nope", "x"]);
    assert!(!done);
    assert!(err.contains("vol@nope"), "{err}");
    let (done, _, err) = run(&["volume", "restore", "s3://backups/p", "vol@s1", "back"]);
    assert!(!done);
    assert!(err.contains("exists already"), "{err}");
}
