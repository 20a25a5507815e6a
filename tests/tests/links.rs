//! Linked sites: two single-node sites in this process, linked over QUIC with mutual TLS as
//! `cairn serve` links them, written to and read from through S3.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use cairn_isgw::LinkPhase;
use cairn_tests::link::{wait_for, LinkedSite};
use cairn_tests::random_bytes;

/// How long a scenario waits for a link to converge.
const CONVERGE: Duration = Duration::from_secs(60);

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: Vec<u8>) -> String {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect("put")
        .version_id
        .unwrap_or_default()
}

/// The object's bytes and version id, if it exists.
async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let version = out.version_id.clone().unwrap_or_default();
    Some((
        out.body.collect().await.ok()?.into_bytes().to_vec(),
        version,
    ))
}

/// Every version and delete marker of a bucket as (key, version id, is delete marker),
/// sorted.
async fn versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String, bool)> {
    let out = s3
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("list versions");
    let mut all: Vec<(String, String, bool)> = out
        .versions()
        .iter()
        .map(|v| {
            (
                v.key().unwrap_or_default().to_string(),
                v.version_id().unwrap_or_default().to_string(),
                false,
            )
        })
        .chain(out.delete_markers().iter().map(|d| {
            (
                d.key().unwrap_or_default().to_string(),
                d.version_id().unwrap_or_default().to_string(),
                true,
            )
        }))
        .collect();
    all.sort();
    all
}

async fn versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
}

/// Two sites that trust each other.
async fn pair() -> (LinkedSite, LinkedSite) {
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    a.trust(&b);
    b.trust(&a);
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_sites_copy_what_exists_and_follow_changes_both_ways() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    assert_ne!(a.site.client.site_id(), b.site.client.site_id());
    // Before the link: a bucket with a large object (several chunks and tree nodes), a small
    // one (inline) and an empty one, with two versions of one key.
    versioned_bucket(&sa, "photos").await;
    let big = random_bytes(6 << 20, 1);
    put(&sa, "photos", "big", big.clone()).await;
    put(&sa, "photos", "small", b"hello".to_vec()).await;
    put(&sa, "photos", "small", b"hello again".to_vec()).await;
    put(&sa, "photos", "empty", Vec::new()).await;

    a.link_to("to-b", &b, None);
    let want = versions(&sa, "photos").await;
    assert_eq!(want.len(), 4);
    wait_for(CONVERGE, "the initial copy at b", || async {
        let have = match sb.head_bucket().bucket("photos").send().await {
            Ok(_) => versions(&sb, "photos").await,
            Err(_) => Vec::new(),
        };
        (have == want).then_some(())
    })
    .await;
    let (got, _) = get(&sb, "photos", "big").await.expect("big at b");
    assert!(got == big, "the large object reads back the same at b");
    assert_eq!(
        get(&sb, "photos", "small").await.expect("small").0,
        b"hello again"
    );
    assert_eq!(get(&sb, "photos", "empty").await.expect("empty").0, b"");
    let status = a.status("to-b").expect("status");
    assert_eq!(status.phase, LinkPhase::Connected);
    assert_eq!(status.remote_site, Some(b.site.client.site_id()));
    assert!(status.sent.versions >= 4, "{status:?}");
    assert!(
        status.sent.chunks > 0 && status.sent.nodes > 0,
        "{status:?}"
    );

    // Continuous, both ways: a write at b appears at a, with the same version id.
    let vb = put(&sb, "photos", "from-b", b"written at b".to_vec()).await;
    wait_for(CONVERGE, "b's write at a", || async {
        get(&sa, "photos", "from-b").await.filter(|(_, v)| *v == vb)
    })
    .await;
    // A delete at a (a delete marker) reaches b; a removed version too.
    sa.delete_object()
        .bucket("photos")
        .key("big")
        .send()
        .await
        .expect("delete");
    let old_small = want
        .iter()
        .filter(|(k, _, _)| k == "small")
        .map(|(_, v, _)| v.clone())
        .min()
        .expect("two versions of small");
    sa.delete_object()
        .bucket("photos")
        .key("small")
        .version_id(&old_small)
        .send()
        .await
        .expect("remove version");
    let want = versions(&sa, "photos").await;
    wait_for(CONVERGE, "a's deletes at b", || async {
        (versions(&sb, "photos").await == want).then_some(())
    })
    .await;
    assert!(
        get(&sb, "photos", "big").await.is_none(),
        "big is deleted at b"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_other_site_lacks_crosses_the_link() {
    let (a, b) = pair().await;
    let sa = a.site.s3();
    versioned_bucket(&sa, "data").await;
    let data = random_bytes(16 << 20, 7);
    put(&sa, "data", "v1", data.clone()).await;
    a.link_to("to-b", &b, Some(vec!["data".into()]));
    let sb = b.site.s3();
    wait_for(CONVERGE, "v1 at b", || async {
        get(&sb, "data", "v1").await.filter(|(d, _)| *d == data)
    })
    .await;
    let first = a.status("to-b").expect("status").sent;
    // About the stored bytes: random data does not compress.
    assert!(
        first.bytes >= 16 << 20 && first.bytes < (16 << 20) + (1 << 20),
        "initial copy shipped {} bytes for 16 MiB",
        first.bytes
    );

    // The same bytes under another key: no chunk crosses.
    put(&sa, "data", "copy", data.clone()).await;
    wait_for(CONVERGE, "the copy at b", || async {
        get(&sb, "data", "copy").await.filter(|(d, _)| *d == data)
    })
    .await;
    let second = a.status("to-b").expect("status").sent;
    assert_eq!(
        second.chunks, first.chunks,
        "no data chunk was shipped for the copy"
    );
    assert!(
        second.bytes - first.bytes < 64 << 10,
        "the copy shipped {} bytes",
        second.bytes - first.bytes
    );
    assert!(
        second.bytes_skipped - first.bytes_skipped >= 16 << 20,
        "{second:?}"
    );

    // A 100-byte insertion in the middle: only the chunks around it cross.
    let mut edited = data.clone();
    edited.splice(8 << 20..8 << 20, random_bytes(100, 8));
    put(&sa, "data", "v1", edited.clone()).await;
    wait_for(CONVERGE, "the edit at b", || async {
        get(&sb, "data", "v1").await.filter(|(d, _)| *d == edited)
    })
    .await;
    let third = a.status("to-b").expect("status").sent;
    let shipped = third.bytes - second.bytes;
    assert!(
        shipped < 4 << 20,
        "a 100-byte insertion shipped {shipped} bytes of a 16 MiB object"
    );
    assert!(
        third.chunks > second.chunks,
        "the edited chunks were shipped"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_whose_ca_is_not_trusted_gets_nothing() {
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    // a trusts b, but b does not trust a: b's listener refuses a at the handshake.
    a.trust(&b);
    let sa = a.site.s3();
    sa.create_bucket()
        .bucket("secret")
        .send()
        .await
        .expect("bucket");
    put(&sa, "secret", "k", b"v".to_vec()).await;
    a.link_to("to-b", &b, None);
    let status = wait_for(CONVERGE, "the link to fail", || async {
        a.status("to-b")
            .filter(|s| s.phase == LinkPhase::Offline && s.last_error.is_some())
    })
    .await;
    assert!(status.remote_site.is_none(), "{status:?}");
    let e = status.last_error.unwrap_or_default();
    assert!(
        e.contains("cairn link trust"),
        "the error says what to do: {e}"
    );
    assert!(
        b.site
            .s3()
            .head_bucket()
            .bucket("secret")
            .send()
            .await
            .is_err(),
        "nothing reached b"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_with_one_site_id_are_not_linked() {
    let a = LinkedSite::start().await;
    // b is made with a's site id, as a copied data dir would have it.
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::copy(a.site.dir().join("site-id"), tmp.path().join("site-id")).expect("copy id");
    let b = LinkedSite::on(cairn_tests::TestSite::start_on(tmp.path()).await).await;
    assert_eq!(a.site.client.site_id(), b.site.client.site_id());
    a.trust(&b);
    b.trust(&a);
    a.link_to("to-b", &b, None);
    // (The first attempts may fail at the handshake until each listener has taken the
    // other's CA into its trust.)
    let status = wait_for(
        CONVERGE,
        "the link to be refused for its site id",
        || async {
            a.status("to-b").filter(|s| {
                s.last_error
                    .as_ref()
                    .is_some_and(|e| e.contains("both sites have site id"))
            })
        },
    )
    .await;
    let e = status.last_error.unwrap_or_default();
    assert_ne!(status.phase, LinkPhase::Connected);
    assert!(e.contains("site-id"), "the error says how to fix it: {e}");
    a.stop().await;
    b.stop().await;
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_resumes_after_the_receiver_restarts_and_applies_nothing_twice() {
    let (a, b) = pair().await;
    let sa = a.site.s3();
    versioned_bucket(&sa, "logs").await;
    a.link_to("to-b", &b, None);
    for i in 0..20 {
        put(&sa, "logs", &format!("k{i}"), random_bytes(200 << 10, i)).await;
    }
    // b goes away while the link is busy (its data dir and link files are kept) and comes
    // back on the same address.
    let b_addr = b.link_addr;
    let (b_dir, b_tmp) = b.stop().await;
    for i in 20..40 {
        put(&sa, "logs", &format!("k{i}"), random_bytes(200 << 10, i)).await;
    }
    let b = LinkedSite::on_addr(cairn_tests::TestSite::start_on(&b_dir).await, b_addr).await;
    let want = versions(&sa, "logs").await;
    assert_eq!(want.len(), 40);
    let sb = b.site.s3();
    wait_for(CONVERGE, "every write at b", || async {
        let have = match sb.head_bucket().bucket("logs").send().await {
            Ok(_) => versions(&sb, "logs").await,
            Err(_) => Vec::new(),
        };
        (have == want).then_some(())
    })
    .await;
    for i in [0u64, 19, 20, 39] {
        let (got, _) = get(&sb, "logs", &format!("k{i}"))
            .await
            .expect("object at b");
        assert!(
            got == random_bytes(200 << 10, i),
            "k{i} reads back the same at b"
        );
    }
    let sent = a.status("to-b").expect("status").sent;
    assert_eq!(
        sent.versions, 40,
        "each version applied once at b: {sent:?}"
    );
    a.stop().await;
    b.stop().await;
    drop(b_tmp);
}
