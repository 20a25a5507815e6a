//! The site's encryption keys through `cairn`: a single-node site makes them on first start
//! (mode 0600), `cairn sse keys` lists them, `cairn sse rotate-key` adds one that seals new
//! writes, and objects sealed under the old key still read after a restart; `cairn init`
//! gives every node of a site the same keys.

mod common;

use std::os::unix::fs::PermissionsExt;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use cairn_core::extent::{RangeWalker, Target};
use common::*;

async fn put_sealed(s3: &aws_sdk_s3::Client, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket("keys")
        .key(key)
        .server_side_encryption(ServerSideEncryption::Aes256)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

async fn get(s3: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    let out = s3
        .get_object()
        .bucket("keys")
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The master key id in the header of each sealed chunk of `key`'s current version.
async fn key_ids(client: &cairn_client::Client, key: &str) -> Vec<u32> {
    let (_, m) = client
        .read_object("keys", key, &cairn_client::VersionSel::Current)
        .await
        .unwrap()
        .into_version()
        .unwrap();
    let cairn_client::Content::Tree(root) = m.content else {
        panic!("{key} is not a tree");
    };
    let mut w = RangeWalker::new(root, 0, m.size).unwrap();
    let mut ids = Vec::new();
    while let Some(p) = w.next(client).await.unwrap() {
        if let Target::Chunk { id, .. } = p.target {
            let sealed = client.read_chunk_bytes(id).await.unwrap();
            ids.push(u32::from_le_bytes(sealed[2..6].try_into().unwrap()));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_seal_new_writes_and_old_objects_still_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let (mut child, endpoint) = start(dir);
    let s3 = s3(&endpoint);
    s3.create_bucket().bucket("keys").send().await.unwrap();
    let keys_file = dir.join("sse-master.keys");
    assert_eq!(
        std::fs::metadata(&keys_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = cairn_tests_data(1);
    put_sealed(&s3, "before", &before).await;
    assert_eq!(
        cairn_ok(&["sse", "keys", "--data-dir", d]).trim(),
        "1  (seals new writes)"
    );

    let out = cairn_ok(&["sse", "rotate-key", "--data-dir", d]);
    assert!(out.contains("master key 2 added"), "{out}");
    let listed = cairn_ok(&["sse", "keys", "--data-dir", d]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["1", "2  (seals new writes)"]
    );

    // A restart loads the rotated file (a running site reloads it within seconds too).
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, endpoint) = start(dir);
    let s3 = common::s3(&endpoint);
    let after = cairn_tests_data(2);
    put_sealed(&s3, "after", &after).await;
    assert!(get(&s3, "before").await == before);
    assert!(get(&s3, "after").await == after);
    child.kill().unwrap();
    child.wait().unwrap();

    let client = cairn_client::Client::open_dir(dir).unwrap();
    let old = key_ids(&client, "before").await;
    let new = key_ids(&client, "after").await;
    assert!(!old.is_empty() && old.iter().all(|&k| k == 1), "{old:?}");
    assert!(!new.is_empty() && new.iter().all(|&k| k == 2), "{new:?}");

    // A damaged key file is refused with a message, not replaced.
    std::fs::write(&keys_file, "1:not-base64\n").unwrap();
    let (ok, _, err) = cairn(&["sse", "keys", "--data-dir", d]);
    assert!(!ok && err.contains("not base64 of 32 bytes"), "{err}");
}

#[test]
fn init_gives_every_node_the_same_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let d = dir.to_str().unwrap();
    cairn_ok(&["init", "--dir", d, "--site", "lyon", "--nodes", "n1,n2"]);
    cairn_ok(&["init", "--dir", d, "--add-nodes", "--nodes", "n3"]);
    let site = std::fs::read(dir.join("sse-master.keys")).unwrap();
    for n in ["n1", "n2", "n3"] {
        let p = dir.join(n).join("sse-master.keys");
        assert_eq!(std::fs::read(&p).unwrap(), site, "{n}");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let listed = cairn_ok(&[
        "sse",
        "keys",
        "--data-dir",
        dir.join("n3").to_str().unwrap(),
    ]);
    assert_eq!(listed.trim(), "1  (seals new writes)");
}

/// Incompressible test bytes (several chunks).
fn cairn_tests_data(seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..(3 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_keys_are_made_listed_and_disabled_with_the_cli() {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let (mut child, endpoint) = start(dir);
    let s3 = s3(&endpoint);
    s3.create_bucket().bucket("keys").send().await.unwrap();
    // Through the running site's admin endpoint.
    let out = cairn_ok(&[
        "kms",
        "create",
        "--alias",
        "app",
        "--description",
        "app data",
        "--data-dir",
        d,
    ]);
    assert!(out.contains("alias/app"), "{out}");
    let listed: serde_json::Value =
        serde_json::from_str(&cairn_ok(&["kms", "list", "--json", "--data-dir", d])).unwrap();
    assert_eq!(listed[0]["alias"], "app");
    assert_eq!(listed[0]["enabled"], true);
    assert!(
        listed[0].get("material").is_none(),
        "key material is never shown"
    );
    let body = cairn_tests_data(3);
    s3.put_object()
        .bucket("keys")
        .key("app")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/app")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    cairn_ok(&["kms", "disable", "alias/app", "--data-dir", d]);
    let e = s3
        .get_object()
        .bucket("keys")
        .key("app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("KMS.DisabledException"));
    let out = cairn_ok(&["kms", "enable", "alias/app", "--data-dir", d]);
    assert!(out.contains("enabled"), "{out}");
    let got = s3
        .get_object()
        .bucket("keys")
        .key("app")
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().to_vec() == body);
    let (ok, _, err) = cairn(&["kms", "disable", "alias/nope", "--data-dir", d]);
    assert!(!ok && err.contains("no such KMS key"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    // On the data dir itself once the site is stopped.
    let out = cairn_ok(&["kms", "list", "--data-dir", d]);
    assert!(
        out.contains("alias/app") && out.contains("enabled"),
        "{out}"
    );
}
