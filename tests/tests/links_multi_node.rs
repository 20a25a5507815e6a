//! Links with a multi-node site: a single-node site linked to a three-node site (replication
//! factor 3), read and written through S3 at every node of the three-node site.

use std::time::Duration;

use cairn_isgw::LinkPhase;
use cairn_manifestserver::VersionsQuery;
use cairn_tests::link::{get, put, siblings_header, versioned_bucket, wait_for, LinkedSite};
use cairn_tests::multi::MultiSite;

/// How long a scenario waits for a link to converge.
const CONVERGE: Duration = Duration::from_secs(120);

/// The version ids of `bucket/key` at an S3 endpoint, sorted.
async fn version_ids(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<String> {
    let Ok(out) = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
    else {
        return Vec::new();
    };
    let mut ids: Vec<String> = out
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| v.version_id().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// How many versions of `bucket/key` node `k`'s own manifest store holds.
fn stored_versions(multi: &MultiSite, k: usize, bucket: &str, key: &str) -> usize {
    let store = multi.node(k).manifests.as_ref().expect("manifest role");
    let q = VersionsQuery {
        prefix: key.to_string(),
        max_keys: 100,
        ..VersionsQuery::default()
    };
    match store.list_versions(bucket, &q) {
        Ok(page) => page.versions.iter().filter(|v| v.key == key).count(),
        Err(_) => 0,
    }
}

/// A key written at both sites over the same version while their link is paused: once the
/// link resumes, a GET and a HEAD through every node of the three-node site say
/// `x-cairn-siblings: 1` (each node's read counts the siblings on the metadata replicas it
/// asks), `Client::siblings` lists the current version and its sibling there, and the
/// three-node site reports the conflict when it applies the other site's version (its
/// replicated backend counts the sibling).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siblings_made_across_a_link_are_counted_at_every_node_of_a_multi_node_site() {
    let multi = MultiSite::start(3, 3, 3, "").await;
    let single = LinkedSite::start().await;
    single.link_to_node("dc", &multi, 0);
    let ss = single.site.s3();
    versioned_bucket(&ss, "docs").await;
    let v1 = put(&ss, "docs", "plan", b"v1").await;
    for k in 0..3 {
        let s3 = multi.s3(k);
        wait_for(
            CONVERGE,
            "v1 at every node of the three-node site",
            || async { get(&s3, "docs", "plan").await.filter(|(_, v)| *v == v1) },
        )
        .await;
    }

    // The link goes down; each site writes the key over v1 (the three-node site through n2).
    single.set_paused("dc", true);
    wait_for(CONVERGE, "the link to pause", || async {
        single.status("dc").filter(|s| s.phase == LinkPhase::Paused)
    })
    .await;
    let vs = put(&ss, "docs", "plan", b"from the edge").await;
    let vm = put(&multi.s3(1), "docs", "plan", b"from the data centre").await;
    single.set_paused("dc", false);
    let sm = multi.s3(0);
    let want = wait_for(CONVERGE, "both sites to list the same versions", || async {
        let (a, b) = (
            version_ids(&ss, "docs", "plan").await,
            version_ids(&sm, "docs", "plan").await,
        );
        (a == b && a.len() == 3).then_some(a)
    })
    .await;
    assert!(want.contains(&vs) && want.contains(&vm), "{want:?}");
    // Every metadata replica holds all three versions, so whichever replicas a node's read
    // asks, each counts the sibling.
    wait_for(CONVERGE, "all three versions on every replica", || async {
        (0..3)
            .all(|k| stored_versions(&multi, k, "docs", "plan") == 3)
            .then_some(())
    })
    .await;

    // The greater version id is current; the other is its sibling.
    let (winner, body): (&str, &[u8]) = if vs > vm {
        (&vs, b"from the edge")
    } else {
        (&vm, b"from the data centre")
    };
    for k in 0..3 {
        let node = format!("n{}", k + 1);
        let s3 = multi.s3(k);
        let (got, v) = get(&s3, "docs", "plan").await.expect("current");
        assert_eq!((v.as_str(), got.as_slice()), (winner, body), "at {node}");
        for head in [true, false] {
            let header = siblings_header(&s3, head, "docs", "plan").await;
            let method = if head { "HEAD" } else { "GET" };
            assert_eq!(
                header.as_deref(),
                Some("1"),
                "x-cairn-siblings of a {method} at {node}"
            );
        }
        let listed = multi
            .node(k)
            .client
            .siblings("docs", "plan")
            .await
            .expect("siblings");
        assert_eq!(
            listed.len(),
            2,
            "the current version and a sibling at {node}"
        );
    }
    let header = siblings_header(&ss, true, "docs", "plan").await;
    assert_eq!(header.as_deref(), Some("1"), "x-cairn-siblings at the edge");
    let status = single.status("dc").expect("status");
    assert!(
        status.sent.conflicts >= 1,
        "the three-node site counted the edge's version as a conflict: {status:?}"
    );
    single.stop().await;
    multi.shutdown().await;
}

/// A link given in a node's config file (`[[links]]`, with the defaults: every bucket, both
/// ways, initial copy and continuous, full data) runs on that node without `cairn link add`:
/// what exists at the other site arrives, and writes through another node go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_in_the_node_config_file_runs_without_link_add() {
    let single = LinkedSite::start().await;
    let mut multi = MultiSite::start(3, 3, 1, "").await;
    // Each site trusts the other's CA.
    let multi_ca = single.site.dir().join("multi-ca.pem");
    std::fs::write(&multi_ca, multi.ca.cert_pem()).unwrap();
    cairn_isgw::identity::trust_ca(single.site.dir(), &multi_ca).unwrap();
    cairn_isgw::identity::trust_ca(&multi.data_dir(0), &single.site.dir().join("ca.pem")).unwrap();
    let ss = single.site.s3();
    ss.create_bucket().bucket("conf-link").send().await.unwrap();
    put(&ss, "conf-link", "from-single", b"s").await;

    let toml = format!(
        "[[links]]\nname = \"to-single\"\nremote = \"{}\"\n",
        single.link_addr
    );
    let table: toml::Table = toml::from_str(&toml).unwrap();
    let links: Vec<cairn_isgw::LinkConfig> = table["links"].clone().try_into().unwrap();
    cairn_isgw::check_fixed(&links).unwrap();
    multi.stop_node(0).await;
    multi.slots[0].config.links = links;
    multi.start_node(0).await;

    let (body, _) = wait_for(
        CONVERGE,
        "the single site's object at the multi-node site",
        || {
            let s3 = multi.s3(1);
            async move { get(&s3, "conf-link", "from-single").await }
        },
    )
    .await;
    assert_eq!(body, b"s");
    put(&multi.s3(2), "conf-link", "from-multi", b"m").await;
    wait_for(
        CONVERGE,
        "the multi-node site's object at the single site",
        || async { get(&ss, "conf-link", "from-multi").await },
    )
    .await;
    let file = cairn_isgw::LinkDir::new(&multi.data_dir(0)).load().unwrap();
    assert!(
        file.links.is_empty(),
        "the link lives in the config, not the links file"
    );
    multi.shutdown().await;
    single.stop().await;
}

/// `[site] id` in a node's config replaces the id derived from the site's CA: the node's
/// versions carry it from its next start (the way out when two sites to link share an id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_id_can_be_set_in_the_config() {
    let mut multi = MultiSite::start(1, 1, 1, "").await;
    let derived = multi.node(0).client.site_id();
    let chosen = if derived == 0x1234 { 0x4321 } else { 0x1234 };
    multi.stop_node(0).await;
    multi.slots[0].config.site.id = Some(chosen);
    multi.start_node(0).await;
    assert_eq!(multi.node(0).client.site_id(), chosen);
    let s3 = multi.s3(0);
    s3.create_bucket().bucket("ids").send().await.unwrap();
    put(&s3, "ids", "k", b"v").await;
    let page = multi
        .node(0)
        .client
        .list_versions(
            "ids",
            &VersionsQuery {
                max_keys: 10,
                ..VersionsQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.versions[0].version.site(), chosen);
    multi.shutdown().await;
}
