//! Linked sites: two single-node sites in this process, linked over QUIC with mutual TLS as
//! `cairn serve` links them, written to and read from through S3.

use std::time::Duration;

use aws_sdk_s3::types::BucketVersioningStatus;
use cairn_isgw::LinkPhase;
use cairn_tests::link::{enable_versioning, get, put, versioned_bucket, wait_for, LinkedSite};
use cairn_tests::random_bytes;

/// How long a scenario waits for a link to converge.
const CONVERGE: Duration = Duration::from_secs(120);

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

/// Sets whether link `name` of `site` is paused, as `cairn link pause|resume` does.
fn set_paused(site: &LinkedSite, name: &str, paused: bool) {
    let dir = cairn_isgw::LinkDir::new(site.site.dir());
    let mut file = dir.load().expect("links");
    for l in &mut file.links {
        if l.name == name {
            l.paused = paused;
        }
    }
    dir.save(&file).expect("save links");
}

/// The `x-cairn-siblings` header of a HEAD of the key's current version, sent over a raw
/// connection from a presigned URL (the SDK does not show headers it does not model).
async fn raw_head(site: &LinkedSite, bucket: &str, key: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let presigned = site
        .site
        .s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300))
                .expect("presigning"),
        )
        .await
        .expect("presign");
    let uri: http::Uri = presigned.uri().parse().expect("uri");
    let mut req = format!(
        "HEAD {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        uri.path_and_query().expect("path").as_str(),
        uri.authority().expect("authority")
    );
    for (name, value) in presigned.headers() {
        if !name.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    req.push_str("\r\n");
    let mut conn = tokio::net::TcpStream::connect(site.site.addr)
        .await
        .expect("connect");
    conn.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-cairn-siblings")
            .then(|| value.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_of_one_key_at_both_sites_keep_both_versions_as_siblings() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    versioned_bucket(&sa, "docs").await;
    put(&sa, "docs", "plan", b"v1".to_vec()).await;
    a.link_to("to-b", &b, None);
    wait_for(CONVERGE, "v1 at b", || async {
        get(&sb, "docs", "plan").await.filter(|(d, _)| d == b"v1")
    })
    .await;
    // The link goes down; both sites write the key over v1.
    set_paused(&a, "to-b", true);
    wait_for(CONVERGE, "the link to pause", || async {
        a.status("to-b").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    let va = put(&sa, "docs", "plan", b"from a".to_vec()).await;
    let vb = put(&sb, "docs", "plan", b"from b".to_vec()).await;
    set_paused(&a, "to-b", false);
    let want = wait_for(CONVERGE, "both sites to list the same versions", || async {
        let (la, lb) = (versions(&sa, "docs").await, versions(&sb, "docs").await);
        (la == lb && la.len() == 3).then_some(la)
    })
    .await;
    assert!(want.iter().any(|(_, v, _)| *v == va) && want.iter().any(|(_, v, _)| *v == vb));
    // The greater version id is current at both sites; the other is its sibling.
    let (winner, body) = if va > vb {
        (&va, "from a")
    } else {
        (&vb, "from b")
    };
    for (name, site) in [("a", &a), ("b", &b)] {
        let (got, v) = get(&site.site.s3(), "docs", "plan").await.expect("current");
        assert_eq!(
            (v.as_str(), got.as_slice()),
            (winner.as_str(), body.as_bytes()),
            "at {name}"
        );
        let head = raw_head(site, "docs", "plan").await;
        assert_eq!(head.as_deref(), Some("1"), "x-cairn-siblings at {name}");
        let listed = site
            .site
            .client
            .siblings("docs", "plan")
            .await
            .expect("siblings");
        assert_eq!(
            listed.len(),
            2,
            "the current version and one sibling at {name}"
        );
    }
    let conflicts = a.status("to-b").expect("status");
    assert!(
        conflicts.sent.conflicts + conflicts.received.conflicts >= 1,
        "the link counts the conflict: {conflicts:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_an_unversioned_bucket_the_greater_write_wins_at_both_sites() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    sa.create_bucket()
        .bucket("plain")
        .send()
        .await
        .expect("bucket");
    put(&sa, "plain", "k", b"first".to_vec()).await;
    a.link_to("to-b", &b, None);
    wait_for(CONVERGE, "first at b", || async {
        get(&sb, "plain", "k").await.filter(|(d, _)| d == b"first")
    })
    .await;
    set_paused(&a, "to-b", true);
    wait_for(CONVERGE, "the link to pause", || async {
        a.status("to-b").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    put(&sa, "plain", "k", b"from a".to_vec()).await;
    put(&sb, "plain", "k", b"from b".to_vec()).await;
    // Which write is greater: the version ids the sites gave them.
    let ida = a.site.client.siblings("plain", "k").await.expect("a")[0].version;
    let idb = b.site.client.siblings("plain", "k").await.expect("b")[0].version;
    let winner: &[u8] = if ida > idb { b"from a" } else { b"from b" };
    set_paused(&a, "to-b", false);
    wait_for(CONVERGE, "both sites to keep the greater write", || async {
        let (ga, gb) = (get(&sa, "plain", "k").await, get(&sb, "plain", "k").await);
        (ga.is_some_and(|(d, _)| d == winner) && gb.is_some_and(|(d, _)| d == winner)).then_some(())
    })
    .await;
    for site in [&a, &b] {
        let all = site
            .site
            .client
            .siblings("plain", "k")
            .await
            .expect("versions");
        assert_eq!(all.len(), 1, "one version of an unversioned key: {all:?}");
    }
    let s = a.status("to-b").expect("status");
    assert!(s.sent.conflicts + s.received.conflicts >= 1, "{s:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triangle_of_sites_converges_and_applies_each_version_once_per_site() {
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    let c = LinkedSite::start().await;
    for (x, y) in [(&a, &b), (&a, &c), (&b, &a), (&b, &c), (&c, &a), (&c, &b)] {
        x.trust(y);
    }
    versioned_bucket(&a.site.s3(), "mesh").await;
    a.link_to("ab", &b, None);
    b.link_to("bc", &c, None);
    a.link_to("ac", &c, None);
    // The bucket reaches every site before they write.
    for site in [&b, &c] {
        wait_for(CONVERGE, "the bucket everywhere", || async {
            site.site
                .s3()
                .head_bucket()
                .bucket("mesh")
                .send()
                .await
                .ok()
        })
        .await;
    }
    for (n, site) in [&a, &b, &c].into_iter().enumerate() {
        let s3 = site.site.s3();
        for i in 0..5u64 {
            let seed = 1000 * n as u64 + i;
            put(
                &s3,
                "mesh",
                &format!("s{n}/{i}"),
                random_bytes(300 << 10, seed),
            )
            .await;
        }
    }
    wait_for(
        CONVERGE,
        "every site to list the same 15 versions",
        || async {
            let la = versions(&a.site.s3(), "mesh").await;
            let lb = versions(&b.site.s3(), "mesh").await;
            let lc = versions(&c.site.s3(), "mesh").await;
            (la.len() == 15 && la == lb && lb == lc).then_some(())
        },
    )
    .await;
    // Versions applied at each site, over all its links: exactly the ten made elsewhere.
    let (ab, ac, bc) = (
        a.status("ab").expect("ab"),
        a.status("ac").expect("ac"),
        b.status("bc").expect("bc"),
    );
    let at_a = ab.received.versions + ac.received.versions;
    let at_b = ab.sent.versions + bc.received.versions;
    let at_c = ac.sent.versions + bc.sent.versions;
    assert_eq!((at_a, at_b, at_c), (10, 10, 10), "{ab:?}\n{ac:?}\n{bc:?}");
    for (n, site) in [&a, &b, &c].into_iter().enumerate() {
        let (got, _) = get(&site.site.s3(), "mesh", &format!("s{}/4", (n + 1) % 3))
            .await
            .expect("object");
        assert!(got == random_bytes(300 << 10, 1000 * ((n as u64 + 1) % 3) + 4));
    }
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// The bucket's tags at a site, sorted (empty if none or no bucket).
async fn bucket_tags(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, String)> {
    let Ok(out) = s3.get_bucket_tagging().bucket(bucket).send().await else {
        return Vec::new();
    };
    let mut tags: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}

async fn tag_bucket(s3: &aws_sdk_s3::Client, bucket: &str, value: &str) {
    use aws_sdk_s3::types::{Tag, Tagging};
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            Tagging::builder()
                .tag_set(
                    Tag::builder()
                        .key("owner")
                        .value(value)
                        .build()
                        .expect("tag"),
                )
                .build()
                .expect("tagging"),
        )
        .send()
        .await
        .expect("tag bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_settings_travel_and_the_newest_change_wins() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    sa.create_bucket()
        .bucket("conf")
        .send()
        .await
        .expect("bucket");
    a.link_to("to-b", &b, None);
    a.wait_on_link("to-b", CONVERGE, "the bucket at b", || async {
        sb.head_bucket().bucket("conf").send().await.ok()
    })
    .await;
    // A change at a reaches b; versioning too.
    tag_bucket(&sa, "conf", "team-a").await;
    enable_versioning(&sa, "conf").await;
    wait_for(CONVERGE, "a's settings at b", || async {
        let tags = bucket_tags(&sb, "conf").await;
        let v = sb
            .get_bucket_versioning()
            .bucket("conf")
            .send()
            .await
            .ok()?
            .status;
        (tags == vec![("owner".to_string(), "team-a".to_string())]
            && v == Some(BucketVersioningStatus::Enabled))
        .then_some(())
    })
    .await;
    // A later change at b comes back to a.
    tag_bucket(&sb, "conf", "team-b").await;
    wait_for(CONVERGE, "b's change at a", || async {
        (bucket_tags(&sa, "conf").await == vec![("owner".to_string(), "team-b".to_string())])
            .then_some(())
    })
    .await;
    // Changes at both while the link is paused: the newest wins at both sites.
    set_paused(&a, "to-b", true);
    wait_for(CONVERGE, "the link to pause", || async {
        a.status("to-b").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    tag_bucket(&sa, "conf", "first").await;
    tag_bucket(&sb, "conf", "second").await;
    // Which is newest: the revisions the two sites gave their changes.
    let ra = a.site.client.head_bucket("conf").await.expect("a").revision;
    let rb = b.site.client.head_bucket("conf").await.expect("b").revision;
    let newest = if ra > rb { "first" } else { "second" };
    set_paused(&a, "to-b", false);
    wait_for(CONVERGE, "both sites to keep the newest change", || async {
        let want = vec![("owner".to_string(), newest.to_string())];
        (bucket_tags(&sa, "conf").await == want && bucket_tags(&sb, "conf").await == want)
            .then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_site_and_a_three_node_site_sync_both_ways() {
    let multi = cairn_tests::multi::MultiSite::start(3, 3, 3, "").await;
    let single = LinkedSite::start().await;
    // Each trusts the other's CA: the single node's file, and the three-node site's CA on the
    // node that accepts the link.
    let multi_ca = single.site.dir().join("multi-ca.pem");
    std::fs::write(&multi_ca, multi.ca.cert_pem()).expect("write CA");
    cairn_isgw::identity::trust_ca(single.site.dir(), &multi_ca).expect("trust multi");
    cairn_isgw::identity::trust_ca(&multi.data_dir(0), &single.site.dir().join("ca.pem"))
        .expect("trust single");
    let remote = multi.node(0).link_addr.expect("n1 accepts links");
    single.add_link(cairn_isgw::LinkConfig {
        name: "dc".into(),
        remote: remote.to_string(),
        buckets: None,
        direction: cairn_isgw::Direction::Both,
        mode: cairn_isgw::Mode::Both,
        data: cairn_isgw::DataMode::Full,
        rate_bytes_per_sec: 0,
        paused: false,
    });
    let (ss, sm) = (single.site.s3(), multi.s3(1));
    versioned_bucket(&ss, "edge").await;
    let big = random_bytes(3 << 20, 31);
    let v = put(&ss, "edge", "from-edge", big.clone()).await;
    wait_for(
        CONVERGE,
        "the edge's write at the three-node site",
        || async {
            get(&sm, "edge", "from-edge")
                .await
                .filter(|(d, id)| *d == big && *id == v)
        },
    )
    .await;
    let vm = put(&sm, "edge", "from-dc", b"made in the data centre".to_vec()).await;
    wait_for(CONVERGE, "the data centre's write at the edge", || async {
        get(&ss, "edge", "from-dc")
            .await
            .filter(|(_, id)| *id == vm)
    })
    .await;
    let status = single.status("dc").expect("status");
    assert_eq!(status.remote_site, Some(multi.node(0).client.site_id()));
    single.stop().await;
    multi.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_is_mirrored_to_a_plain_s3_endpoint_and_deletes_follow() {
    let a = LinkedSite::start().await;
    // The mirror's target is any S3 endpoint; here another site's, used as a plain S3 store.
    let target = cairn_tests::TestSite::start().await;
    let (sa, st) = (a.site.s3(), target.s3());
    versioned_bucket(&sa, "pics").await;
    put(&sa, "pics", "before", b"made before the link".to_vec()).await;
    put(&sa, "pics", "gone-soon", b"deleted later".to_vec()).await;
    let dir = cairn_isgw::LinkDir::new(a.site.dir());
    dir.save_s3_target(
        "backup",
        &cairn_isgw::mirror::S3Target {
            endpoint: format!("http://{}", target.addr),
            region: "us-east-1".into(),
            access_key_id: cairn_tests::ACCESS_KEY.into(),
            secret_access_key: cairn_tests::SECRET_KEY.into(),
        },
    )
    .expect("credentials");
    a.add_link(cairn_isgw::LinkConfig {
        name: "backup".into(),
        remote: format!("http://{}", target.addr),
        buckets: Some(vec!["pics".into()]),
        direction: cairn_isgw::Direction::Send,
        mode: cairn_isgw::Mode::Both,
        data: cairn_isgw::DataMode::Full,
        rate_bytes_per_sec: 0,
        paused: false,
    });
    wait_for(CONVERGE, "the initial copy at the endpoint", || async {
        get(&st, "pics", "before")
            .await
            .filter(|(d, _)| d == b"made before the link")
    })
    .await;
    // Changes follow: a new object (large enough for a multipart upload), an overwrite, and a
    // delete.
    let big = random_bytes(
        (cairn_isgw::mirror::SINGLE_PUT_MAX + (3 << 20)) as usize,
        41,
    );
    put(&sa, "pics", "big", big.clone()).await;
    put(&sa, "pics", "before", b"changed".to_vec()).await;
    sa.delete_object()
        .bucket("pics")
        .key("gone-soon")
        .send()
        .await
        .expect("delete");
    wait_for(CONVERGE, "the changes at the endpoint", || async {
        let changed = get(&st, "pics", "before")
            .await
            .is_some_and(|(d, _)| d == b"changed");
        let gone = get(&st, "pics", "gone-soon").await.is_none();
        let big_there = get(&st, "pics", "big").await.is_some_and(|(d, _)| d == big);
        (changed && gone && big_there).then_some(())
    })
    .await;
    let status = a.status("backup").expect("status");
    assert_eq!(status.phase, LinkPhase::Connected, "{status:?}");
    assert!(
        status.sent.removals >= 1 && status.sent.versions >= 3,
        "{status:?}"
    );
    a.stop().await;
    target.stop().await;
}

async fn has_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> bool {
    s3.head_bucket().bucket(bucket).send().await.is_ok()
}

/// A bucket deleted at either site is deleted at the other (once the removals of its objects
/// have arrived there) and not made again by the next exchange of bucket records; a bucket
/// deleted at one site while the other wrote into it comes back with that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_bucket_is_deleted_at_the_linked_site_unless_it_was_written_there() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    for bucket in ["gone-a", "kept"] {
        sa.create_bucket().bucket(bucket).send().await.unwrap();
    }
    put(&sa, "gone-a", "x", b"data".to_vec()).await;
    sb.create_bucket().bucket("gone-b").send().await.unwrap();
    a.link_to("to-b", &b, None);
    wait_for(CONVERGE, "every bucket at both sites", || async {
        let all = ["gone-a", "kept", "gone-b"];
        for bucket in all {
            if !has_bucket(&sa, bucket).await || !has_bucket(&sb, bucket).await {
                return None;
            }
        }
        get(&sb, "gone-a", "x").await
    })
    .await;

    // Deleted at the dialing site, after its object: gone at the other too.
    sa.delete_object()
        .bucket("gone-a")
        .key("x")
        .send()
        .await
        .unwrap();
    sa.delete_bucket().bucket("gone-a").send().await.unwrap();
    // Deleted at the other site: gone at the dialing one.
    sb.delete_bucket().bucket("gone-b").send().await.unwrap();
    wait_for(CONVERGE, "both deletions at the other site", || async {
        (!has_bucket(&sb, "gone-a").await && !has_bucket(&sa, "gone-b").await).then_some(())
    })
    .await;
    // A bucket made after the deletions crossing over proves later exchanges ran: neither
    // deleted bucket came back.
    sb.create_bucket().bucket("marker").send().await.unwrap();
    wait_for(CONVERGE, "a later bucket at a", || async {
        has_bucket(&sa, "marker").await.then_some(())
    })
    .await;
    for (s3, site) in [(&sa, "a"), (&sb, "b")] {
        for bucket in ["gone-a", "gone-b"] {
            assert!(
                !has_bucket(s3, bucket).await,
                "{bucket} came back at {site}"
            );
        }
    }

    // Deleted at a while b, cut off, wrote into it: b's write wins and the bucket returns.
    set_paused(&a, "to-b", true);
    wait_for(CONVERGE, "the link to pause", || async {
        a.status("to-b").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    sa.delete_bucket().bucket("kept").send().await.unwrap();
    put(&sb, "kept", "written-at-b", b"mine".to_vec()).await;
    set_paused(&a, "to-b", false);
    let (body, _) = wait_for(CONVERGE, "the bucket and b's write back at a", || async {
        get(&sa, "kept", "written-at-b").await
    })
    .await;
    assert_eq!(body, b"mine");
    assert!(has_bucket(&sb, "kept").await);
    a.stop().await;
    b.stop().await;
}

/// While a link is paused, its status counts the changes piling up at this site (change-log
/// entries past its cursors); once it runs again they are shipped and the count goes to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_status_counts_the_changes_not_yet_shipped() {
    let (a, b) = pair().await;
    let (sa, sb) = (a.site.s3(), b.site.s3());
    sa.create_bucket().bucket("behind").send().await.unwrap();
    put(&sa, "behind", "first", b"1".to_vec()).await;
    a.link_to("to-b", &b, None);
    wait_for(CONVERGE, "the first object at b", || async {
        get(&sb, "behind", "first").await
    })
    .await;
    set_paused(&a, "to-b", true);
    wait_for(CONVERGE, "the link to pause", || async {
        a.status("to-b").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    for key in ["two", "three", "four"] {
        put(&sa, "behind", key, b"x".to_vec()).await;
    }
    wait_for(CONVERGE, "three changes counted while paused", || async {
        a.status("to-b").filter(|s| s.send_behind == 3)
    })
    .await;
    assert!(get(&sb, "behind", "two").await.is_none());
    set_paused(&a, "to-b", false);
    wait_for(
        CONVERGE,
        "the changes shipped and the count back to 0",
        || async {
            let s = a.status("to-b")?;
            let shipped = get(&sb, "behind", "four").await.is_some();
            (shipped && s.send_behind == 0 && s.receive_behind == 0).then_some(())
        },
    )
    .await;
    a.stop().await;
    b.stop().await;
}
