//! Server-side encryption on a three-node site: objects written through one node's gateway
//! read back through the others (every node holds the site's keys from `cairn init`), and a
//! corrupt copy of an encrypted chunk is found by scrub and repaired from another replica
//! without any key (sealed chunks are ordinary chunks to the chunk layer).

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use base64::Engine;
use cairn_chunkserver::WorkerKind;
use cairn_tests::multi::MultiSite;
use cairn_tests::random_bytes;
use cairn_tests::scenario::{bounded, get, MANUAL_WORKERS};
use md5::{Digest, Md5};

const BOUND: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encrypted_objects_read_through_every_node_and_scrub_repairs_their_chunks() {
    bounded(BOUND, async {
        let site = MultiSite::start(3, 3, 3, MANUAL_WORKERS).await;
        let s3 = site.s3(0);
        s3.create_bucket().bucket("sealed").send().await.unwrap();
        let site_data = random_bytes(3 << 20, 21);
        let customer_data = random_bytes(1 << 20, 22);
        let raw = [42u8; 32];
        let e = base64::engine::general_purpose::STANDARD;
        let (key, key_md5) = (e.encode(raw), e.encode(Md5::digest(raw)));
        s3.put_object()
            .bucket("sealed")
            .key("site")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(site_data.clone()))
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket("sealed")
            .key("customer")
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key)
            .sse_customer_key_md5(&key_md5)
            .body(ByteStream::from(customer_data.clone()))
            .send()
            .await
            .unwrap();

        let read_customer = |s3: aws_sdk_s3::Client| {
            let (key, key_md5) = (key.clone(), key_md5.clone());
            async move {
                s3.get_object()
                    .bucket("sealed")
                    .key("customer")
                    .sse_customer_algorithm("AES256")
                    .sse_customer_key(key)
                    .sse_customer_key_md5(key_md5)
                    .send()
                    .await
                    .unwrap()
                    .body
                    .collect()
                    .await
                    .unwrap()
                    .into_bytes()
                    .to_vec()
            }
        };
        for k in 0..3 {
            assert!(
                get(&site.s3(k), "sealed", "site").await == site_data,
                "node {k}"
            );
            assert!(read_customer(site.s3(k)).await == customer_data, "node {k}");
        }

        // Corrupt node 1's copy of one chunk of each object: scrub finds both (it verifies
        // what is stored, no key needed) and repairs them from the other replicas.
        let store = site.node(0).chunks.clone().unwrap();
        let ids: Vec<_> = site.all_chunks().into_iter().collect();
        assert!(ids.len() >= 4, "{} chunks", ids.len());
        let victims = [ids[0], ids[ids.len() - 1]];
        let good: Vec<_> = victims
            .iter()
            .map(|v| store.get(v).unwrap().unwrap())
            .collect();
        for v in &victims {
            store.corrupt_for_test(v, b"bit rot").unwrap();
            assert!(store.get(v).is_err(), "the corrupt copy still verifies");
        }
        let m = site.node(0).maintenance.clone().unwrap();
        let report = m.run_pass(WorkerKind::Scrub).await.unwrap();
        assert_eq!(
            (report.corrupt_found, report.corrupt_repaired),
            (2, 2),
            "{report:?}"
        );
        for (v, g) in victims.iter().zip(&good) {
            assert_eq!(&store.get(v).unwrap().unwrap(), g);
        }
        assert!(get(&s3, "sealed", "site").await == site_data);
        assert!(read_customer(s3.clone()).await == customer_data);
        site.shutdown().await;
    })
    .await;
}
