//! `cairn volume` on a running site (through its admin endpoint) and on a stopped site's data
//! dir: create, list, info, resize, snapshots, clones, rollback and delete, with the errors a
//! user gets for mistakes.

mod common;

use common::{cairn, cairn_ok as ok, s3, start};

fn fails(args: &[&str]) -> String {
    let (ok, out, err) = cairn(args);
    assert!(!ok, "cairn {args:?} should fail: {out}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_commands_work_on_a_running_site_and_on_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (mut child, endpoint) = start(dir.path());

    let out = ok(&["volume", "create", "db", "--size", "1GiB", "--data-dir", d]);
    assert!(out.contains("Created volume db (1.0 GiB"), "{out}");
    let out = ok(&["volume", "list", "--data-dir", d]);
    assert!(out.contains("db") && out.contains("1.0 GiB"), "{out}");
    let err = fails(&["volume", "create", "db", "--size", "1GiB", "--data-dir", d]);
    assert!(err.contains("exists already"), "{err}");
    let err = fails(&["volume", "create", "x", "--size", "10XB", "--data-dir", d]);
    assert!(err.contains("unknown unit"), "{err}");
    let err = fails(&["volume", "info", "nope", "--data-dir", d]);
    assert!(
        err.contains("no volume or snapshot named \"nope\""),
        "{err}"
    );

    ok(&["volume", "snapshot", "create", "db", "s1", "--data-dir", d]);
    let out = ok(&["volume", "snapshot", "list", "db", "--data-dir", d]);
    assert!(out.contains("db@s1"), "{out}");
    let out = ok(&["volume", "clone", "db@s1", "db2", "--data-dir", d]);
    assert!(out.contains("Created volume db2 from db@s1"), "{out}");
    let err = fails(&["volume", "clone", "db", "db3", "--data-dir", d]);
    assert!(err.contains("VOLUME@SNAPSHOT"), "{err}");
    ok(&["volume", "resize", "db", "2GiB", "--data-dir", d]);
    let err = fails(&["volume", "resize", "db", "1GiB", "--data-dir", d]);
    assert!(err.contains("--force"), "{err}");
    ok(&["volume", "rollback", "db@s1", "--data-dir", d]);
    let out = ok(&["volume", "info", "db", "--data-dir", d]);
    assert!(
        out.contains("Size:        1.0 GiB") && out.contains("db@s1"),
        "{out}"
    );

    // S3 users do not see the volumes' bucket.
    let buckets = s3(&endpoint).list_buckets().send().await.unwrap();
    assert!(buckets.buckets().is_empty(), "{buckets:?}");

    child.kill().unwrap();
    child.wait().unwrap();

    // The same data dir with no site running: the commands open it directly.
    let out = ok(&["volume", "list", "--data-dir", d]);
    assert!(out.contains("db2"), "{out}");
    let err = fails(&["volume", "delete", "db", "--data-dir", d]);
    assert!(err.contains("snapshot"), "{err}");
    ok(&["volume", "delete", "db", "--snapshots", "--data-dir", d]);
    let err = fails(&["volume", "snapshot", "delete", "db2", "s1", "--data-dir", d]);
    assert!(err.contains("\"db2@s1\""), "{err}");
    let out = ok(&["volume", "list", "--data-dir", d]);
    assert!(!out.contains("db ") && out.contains("db2"), "{out}");
}
