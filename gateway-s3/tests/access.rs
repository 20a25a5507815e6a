//! Access control: canned ACLs and grant headers, Get/Put Bucket and Object ACLs, anonymous
//! reads and writes, bucket policies (Allow, Deny, malformed), per-key bucket grants and
//! browser POST uploads with signed policies.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketCannedAcl, ObjectCannedAcl};
use cairn_client::KeyGrant;
use common::*;

#[tokio::test]
async fn canned_acls_show_in_acl_xml_and_open_anonymous_reads() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket()
        .bucket("pub")
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await
        .unwrap();
    let acl = s3.get_bucket_acl().bucket("pub").send().await.unwrap();
    let owner = acl.owner().unwrap();
    assert_eq!(owner.id(), Some(KEY_ID));
    assert_eq!(owner.display_name(), Some("test"));
    let grants = acl.grants();
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[0].grantee().unwrap().id(), Some(KEY_ID));
    assert_eq!(grants[0].permission().unwrap().as_str(), "FULL_CONTROL");
    assert_eq!(grants[1].grantee().unwrap().uri(), Some(ALL_USERS));
    assert_eq!(grants[1].permission().unwrap().as_str(), "READ");

    // The raw XML uses S3's grantee types and group URI.
    let signed = server.signer().sign(
        "GET",
        &server.addr.to_string(),
        "/pub",
        "acl=",
        &[],
        &sha256_hex(b""),
    );
    let raw = raw_request(server.addr, &signed.head, b"").await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    let xml = raw.text();
    assert!(xml.contains("<AccessControlPolicy"), "{xml}");
    assert!(xml.contains(r#"xsi:type="Group""#), "{xml}");
    assert!(xml.contains(&format!("<URI>{ALL_USERS}</URI>")), "{xml}");
    assert!(xml.contains(r#"xsi:type="CanonicalUser""#), "{xml}");

    // public-read on the bucket lists anonymously; objects keep their own ACL.
    s3.put_object()
        .bucket("pub")
        .key("open.txt")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"for everyone"))
        .send()
        .await
        .unwrap();
    put(&s3, "pub", "closed.txt", b"owner only").await;
    let listed = anonymous(&server, "GET", "/pub", b"").await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(listed.text().contains("<Key>open.txt</Key>"));
    let got = anonymous(&server, "GET", "/pub/open.txt", b"").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, b"for everyone");
    let head = anonymous(&server, "HEAD", "/pub/open.txt", b"").await;
    assert_eq!(head.status, 200);
    let refused = anonymous(&server, "GET", "/pub/closed.txt", b"").await;
    assert_eq!(refused.status, 403);
    assert_eq!(code_of(&refused), "AccessDenied");
    // A missing object is a 404 for whom may list the bucket (here: everyone), and is not
    // revealed to others (AccessDenied), as in S3.
    let missing = anonymous(&server, "GET", "/pub/missing.txt", b"").await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    s3.create_bucket().bucket("private").send().await.unwrap();
    let hidden = anonymous(&server, "GET", "/private/missing.txt", b"").await;
    assert_eq!(hidden.status, 403, "{}", hidden.text());
    // Reading is not writing.
    let write = anonymous(&server, "PUT", "/pub/new.txt", b"nope").await;
    assert_eq!(write.status, 403, "{}", write.text());

    let acl = s3
        .get_object_acl()
        .bucket("pub")
        .key("open.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().unwrap().id(), Some(KEY_ID));
    assert_eq!(acl.grants().len(), 2);
    assert_eq!(acl.grants()[1].grantee().unwrap().uri(), Some(ALL_USERS));

    // Making it private again closes it; private buckets do not list anonymously.
    s3.put_object_acl()
        .bucket("pub")
        .key("open.txt")
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let refused = anonymous(&server, "GET", "/pub/open.txt", b"").await;
    assert_eq!(refused.status, 403);
    let acl = s3
        .get_object_acl()
        .bucket("pub")
        .key("open.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.grants().len(), 1, "only the owner's full control");
    s3.put_bucket_acl()
        .bucket("pub")
        .acl(BucketCannedAcl::Private)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous(&server, "GET", "/pub", b"").await.status, 403);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn object_acls_are_per_version() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("ver").send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket("ver")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let v1 = s3
        .put_object()
        .bucket("ver")
        .key("k")
        .acl(ObjectCannedAcl::PublicRead)
        .body(ByteStream::from_static(b"one"))
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_string();
    put(&s3, "ver", "k", b"two").await;
    // The current version is private, the first one public.
    assert_eq!(anonymous(&server, "GET", "/ver/k", b"").await.status, 403);
    let old = anonymous(&server, "GET", &format!("/ver/k?versionId={v1}"), b"").await;
    assert_eq!(old.status, 200, "{}", old.text());
    assert_eq!(old.body, b"one");
    let acl = s3
        .get_object_acl()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .send()
        .await
        .unwrap();
    assert_eq!(acl.grants().len(), 2);
    // Changing v1's ACL leaves the current version alone.
    s3.put_object_acl()
        .bucket("ver")
        .key("k")
        .version_id(&v1)
        .acl(ObjectCannedAcl::Private)
        .send()
        .await
        .unwrap();
    let old = anonymous(&server, "GET", &format!("/ver/k?versionId={v1}"), b"").await;
    assert_eq!(old.status, 403);
    assert_eq!(read(&s3, "ver", "k", None).await, b"two");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn public_read_write_takes_anonymous_writes_owned_by_the_bucket_owner() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket()
        .bucket("drop")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap();
    let resp = anonymous(&server, "PUT", "/drop/anon.txt", b"dropped").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(read(&s3, "drop", "anon.txt", None).await, b"dropped");
    let acl = s3
        .get_object_acl()
        .bucket("drop")
        .key("anon.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(acl.owner().unwrap().id(), Some(KEY_ID));
    // Configuration stays the owner's.
    let resp = anonymous(&server, "DELETE", "/drop", b"").await;
    assert_eq!(resp.status, 403);
    let resp = anonymous(&server, "GET", "/drop?acl", b"").await;
    assert_eq!(resp.status, 403);
    let resp = anonymous(&server, "DELETE", "/drop/anon.txt", b"").await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    // Bucket listings and creation need a key.
    assert_eq!(anonymous(&server, "GET", "/", b"").await.status, 403);
    assert_eq!(
        anonymous(&server, "PUT", "/newbucket", b"").await.status,
        403
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn grant_headers_name_keys_and_groups() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("shared").send().await.unwrap();
    put(&s3, "shared", "doc", b"hello").await;
    let e = other
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));

    s3.put_bucket_acl()
        .bucket("shared")
        .grant_read(format!("id=\"{KEY2}\""))
        .grant_write(format!("id=\"{KEY2}\""))
        .send()
        .await
        .unwrap();
    let listed = other
        .list_objects_v2()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.contents().len(), 1);
    put(&other, "shared", "from-second", b"x").await;
    // Bucket READ does not read objects: the object ACL does.
    let e = other
        .get_object()
        .bucket("shared")
        .key("doc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    // The writer owns what it wrote.
    assert_eq!(read(&other, "shared", "from-second", None).await, b"x");

    let acl = s3.get_bucket_acl().bucket("shared").send().await.unwrap();
    let second: Vec<_> = acl
        .grants()
        .iter()
        .filter(|g| g.grantee().and_then(|g| g.id()) == Some(KEY2))
        .collect();
    assert_eq!(second.len(), 2);
    assert_eq!(second[0].grantee().unwrap().display_name(), Some("second"));

    s3.put_object_acl()
        .bucket("shared")
        .key("doc")
        .grant_read(format!("uri=\"{ALL_USERS}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&server, "GET", "/shared/doc", b"").await.status,
        200
    );

    // Email grantees, unknown ids and canned + grant headers together are refused.
    let e = s3
        .put_bucket_acl()
        .bucket("shared")
        .grant_read("emailAddress=\"someone@example.com\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (501, "NotImplemented".into()));
    let e = s3
        .put_bucket_acl()
        .bucket("shared")
        .grant_read("id=\"AKIANOSUCHKEY0000000\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidArgument".into()));
    let e = s3
        .put_bucket_acl()
        .bucket("shared")
        .acl(BucketCannedAcl::PublicRead)
        .grant_read(format!("id=\"{KEY2}\""))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (400, "InvalidRequest".into()));
    // Only the owner changes ACLs.
    let e = other
        .put_bucket_acl()
        .bucket("shared")
        .acl(BucketCannedAcl::PublicReadWrite)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn acl_bodies_replace_grants() {
    use aws_sdk_s3::types::{AccessControlPolicy, Grant, Grantee, Owner, Permission, Type};
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("body").send().await.unwrap();
    let policy = AccessControlPolicy::builder()
        .owner(Owner::builder().id(KEY_ID).build())
        .grants(
            Grant::builder()
                .grantee(
                    Grantee::builder()
                        .r#type(Type::CanonicalUser)
                        .id(KEY2)
                        .build()
                        .unwrap(),
                )
                .permission(Permission::Read)
                .build(),
        )
        .build();
    s3.put_bucket_acl()
        .bucket("body")
        .access_control_policy(policy)
        .send()
        .await
        .unwrap();
    other.list_objects_v2().bucket("body").send().await.unwrap();
    // The body's grants are the whole ACL: it left out the owner's FULL_CONTROL, so S3 lists
    // only the one grant (the owner keeps its access to its own bucket).
    let acl = s3.get_bucket_acl().bucket("body").send().await.unwrap();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].grantee().unwrap().id(), Some(KEY2));
    s3.list_objects_v2().bucket("body").send().await.unwrap();
    server.stop().await.unwrap();
}

fn policy_for(bucket: &str, statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Id":"{bucket}-policy","Statement":[{statements}]}}"#)
}

#[tokio::test]
async fn bucket_policies_allow_and_deny() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("pol").send().await.unwrap();
    put(&s3, "pol", "shared/a", b"shared").await;
    put(&s3, "pol", "private/b", b"private").await;
    put(&s3, "pol", "public/c", b"public").await;
    let e = other
        .get_object()
        .bucket("pol")
        .key("shared/a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = s3
        .get_bucket_policy()
        .bucket("pol")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (404, "NoSuchBucketPolicy".into()));

    let policy = policy_for(
        "pol",
        &format!(
            r#"{{"Sid":"second-reads-shared","Effect":"Allow",
                 "Principal":{{"AWS":["arn:aws:iam::000000000000:user/{KEY2}"]}},
                 "Action":["s3:GetObject","s3:ListBucket"],
                 "Resource":["arn:aws:s3:::pol","arn:aws:s3:::pol/shared/*"]}},
               {{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
                 "Resource":"arn:aws:s3:::pol/public/*"}},
               {{"Effect":"Deny","Principal":{{"AWS":"*"}},"Action":"s3:Delete*",
                 "Resource":"arn:aws:s3:::pol/shared/*"}}"#
        ),
    );
    s3.put_bucket_policy()
        .bucket("pol")
        .policy(&policy)
        .send()
        .await
        .unwrap();
    let stored = s3.get_bucket_policy().bucket("pol").send().await.unwrap();
    assert_eq!(stored.policy(), Some(policy.as_str()));
    let status = s3
        .get_bucket_policy_status()
        .bucket("pol")
        .send()
        .await
        .unwrap();
    assert_eq!(status.policy_status().unwrap().is_public(), Some(true));

    assert_eq!(read(&other, "pol", "shared/a", None).await, b"shared");
    other.list_objects_v2().bucket("pol").send().await.unwrap();
    let e = other
        .get_object()
        .bucket("pol")
        .key("private/b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = other
        .put_object()
        .bucket("pol")
        .key("shared/new")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let got = anonymous(&server, "GET", "/pol/public/c", b"").await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(
        anonymous(&server, "GET", "/pol/shared/a", b"").await.status,
        403
    );

    // The explicit Deny binds the owner too, but the owner can still fix the policy.
    let e = s3
        .delete_object()
        .bucket("pol")
        .key("shared/a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    s3.delete_object()
        .bucket("pol")
        .key("private/b")
        .send()
        .await
        .unwrap();
    // Only the owner manages the policy.
    let e = other
        .get_bucket_policy()
        .bucket("pol")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    s3.delete_bucket_policy()
        .bucket("pol")
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("pol")
        .key("shared/a")
        .send()
        .await
        .unwrap();
    assert_eq!(
        anonymous(&server, "GET", "/pol/public/c", b"").await.status,
        403
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_and_unsupported_policies_are_refused() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("bad").send().await.unwrap();
    let try_put = |policy: String| {
        let s3 = s3.clone();
        async move {
            let e = s3
                .put_bucket_policy()
                .bucket("bad")
                .policy(policy)
                .send()
                .await
                .unwrap_err();
            let (status, code) = error_of(&e);
            let message = e.as_service_error().and_then(|s| {
                aws_sdk_s3::error::ProvideErrorMetadata::message(s).map(str::to_string)
            });
            (status, code, message.unwrap_or_default())
        }
    };
    let (status, code, message) = try_put("{not json".into()).await;
    assert_eq!((status, code.as_str()), (400, "MalformedPolicy"));
    assert!(message.contains("JSON"), "{message}");
    let (status, code, message) = try_put(policy_for(
        "bad",
        r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::elsewhere/*"}"#,
    ))
    .await;
    assert_eq!((status, code.as_str()), (400, "MalformedPolicy"));
    assert!(message.contains("invalid resource"), "{message}");
    let (status, code, message) = try_put(policy_for(
        "bad",
        r#"{"Effect":"Allow","Principal":{"AWS":"AKIANOSUCHKEY0000000"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::bad/*"}"#,
    ))
    .await;
    assert_eq!((status, code.as_str()), (400, "MalformedPolicy"));
    assert!(message.contains("Invalid principal"), "{message}");
    // A condition on a key the gateway never sets would silently switch a Deny off: refused.
    let (status, code, message) = try_put(policy_for(
        "bad",
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bad/*",
            "Condition":{"StringNotEquals":{"aws:SourceVpce":"vpce-1"}}}"#,
    ))
    .await;
    assert_eq!((status, code.as_str()), (501, "NotImplemented"));
    assert!(message.contains("aws:sourcevpce"), "{message}");
    let (status, code, _) = try_put(policy_for(
        "bad",
        r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bad/*",
            "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/99"}}}"#,
    ))
    .await;
    assert_eq!((status, code.as_str()), (400, "MalformedPolicy"));
    let huge = policy_for(
        "bad",
        &format!(
            r#"{{"Sid":"{}","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::bad/*"}}"#,
            "x".repeat(21 * 1024)
        ),
    );
    let (status, code, message) = try_put(huge).await;
    assert_eq!((status, code.as_str()), (400, "MalformedPolicy"));
    assert!(message.contains("20 KiB"), "{message}");
    // Nothing was stored.
    let e = s3
        .get_bucket_policy()
        .bucket("bad")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e).1, "NoSuchBucketPolicy");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn key_grants_open_buckets_to_other_keys() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("team").send().await.unwrap();
    s3.create_bucket().bucket("solo").send().await.unwrap();
    put(&s3, "team", "doc", b"team doc").await;
    let names = |l: aws_sdk_s3::operation::list_buckets::ListBucketsOutput| {
        l.buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert!(names(other.list_buckets().send().await.unwrap()).is_empty());
    let e = other
        .list_objects_v2()
        .bucket("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));

    let grant = |read, write, owner| KeyGrant { read, write, owner };
    server
        .client
        .set_key_grant(KEY2, "team", Some(grant(true, false, false)))
        .await
        .unwrap();
    assert_eq!(names(other.list_buckets().send().await.unwrap()), ["team"]);
    other.list_objects_v2().bucket("team").send().await.unwrap();
    assert_eq!(read(&other, "team", "doc", None).await, b"team doc");
    let e = other
        .put_object()
        .bucket("team")
        .key("new")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));

    server
        .client
        .set_key_grant(KEY2, "team", Some(grant(true, true, false)))
        .await
        .unwrap();
    put(&other, "team", "new", b"x").await;
    other
        .delete_object()
        .bucket("team")
        .key("new")
        .send()
        .await
        .unwrap();
    let e = other
        .get_bucket_acl()
        .bucket("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));

    server
        .client
        .set_key_grant(KEY2, "team", Some(grant(false, false, true)))
        .await
        .unwrap();
    other.get_bucket_acl().bucket("team").send().await.unwrap();
    other
        .put_bucket_policy()
        .bucket("team")
        .policy(policy_for(
            "team",
            r#"{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::team/*"}"#,
        ))
        .send()
        .await
        .unwrap();

    server
        .client
        .set_key_grant(KEY2, "team", None)
        .await
        .unwrap();
    let e = other
        .list_objects_v2()
        .bucket("team")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    // Grants need an existing bucket and key.
    assert!(server
        .client
        .set_key_grant(KEY2, "nosuchbucket", Some(grant(true, false, false)))
        .await
        .is_err());
    assert!(server
        .client
        .set_key_grant(
            "AKIANOSUCHKEY0000000",
            "team",
            Some(grant(true, false, false))
        )
        .await
        .is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn browser_post_uploads_enforce_their_policy() {
    let server = start().await;
    let s3 = server.s3();
    s3.create_bucket().bucket("forms").send().await.unwrap();
    let conditions = vec![
        r#"{"bucket":"forms"}"#.to_string(),
        r#"["starts-with","$key","uploads/"]"#.to_string(),
        r#"["content-length-range",1,1024]"#.to_string(),
        r#"["starts-with","$Content-Type","text/"]"#.to_string(),
        r#"{"x-amz-meta-color":"blue"}"#.to_string(),
        r#"{"success_action_status":"201"}"#.to_string(),
    ];
    let fields = |key: &'static str| {
        vec![
            ("key", key),
            ("Content-Type", "text/plain"),
            ("x-amz-meta-color", "blue"),
            ("success_action_status", "201"),
        ]
    };
    let form = post_form(
        &conditions,
        &fields("uploads/hello.txt"),
        "2099-12-31T23:59:59Z",
    );
    let resp = post_upload(&server, "forms", &form, b"posted from a form").await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(
        resp.text().contains("<Key>uploads/hello.txt</Key>"),
        "{}",
        resp.text()
    );
    assert!(
        resp.text().contains("<Bucket>forms</Bucket>"),
        "{}",
        resp.text()
    );
    let got = s3
        .get_object()
        .bucket("forms")
        .key("uploads/hello.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("color"))
            .map(String::as_str),
        Some("blue")
    );
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"posted from a form"
    );

    // A key outside the allowed prefix.
    let form = post_form(
        &conditions,
        &fields("elsewhere/x.txt"),
        "2099-12-31T23:59:59Z",
    );
    // As S3: 403 AccessDenied "Invalid according to Policy", naming the failed condition.
    let resp = post_upload(&server, "forms", &form, b"x").await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(code_of(&resp), "AccessDenied");
    assert!(
        resp.text().contains("Invalid according to Policy"),
        "{}",
        resp.text()
    );
    assert!(resp.text().contains("uploads/"), "{}", resp.text());
    // Too large for content-length-range.
    let form = post_form(&conditions, &fields("uploads/big"), "2099-12-31T23:59:59Z");
    let resp = post_upload(&server, "forms", &form, &vec![b'x'; 2000]).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(code_of(&resp), "EntityTooLarge");
    // An expired policy.
    let form = post_form(&conditions, &fields("uploads/late"), "2000-01-01T00:00:00Z");
    let resp = post_upload(&server, "forms", &form, b"x").await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    // A field the policy does not cover.
    let mut extra = fields("uploads/extra");
    extra.push(("x-amz-meta-size", "large"));
    let form = post_form(&conditions, &extra, "2099-12-31T23:59:59Z");
    let resp = post_upload(&server, "forms", &form, b"x").await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    // A tampered form: the signature no longer matches.
    let mut form = post_form(&conditions, &fields("uploads/t"), "2099-12-31T23:59:59Z");
    if let Some(sig) = form.iter_mut().find(|(n, _)| n == "x-amz-signature") {
        sig.1 = "0".repeat(64);
    }
    let resp = post_upload(&server, "forms", &form, b"x").await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(code_of(&resp), "SignatureDoesNotMatch");
    for key in [
        "elsewhere/x.txt",
        "uploads/big",
        "uploads/late",
        "uploads/extra",
        "uploads/t",
    ] {
        let e = s3.head_object().bucket("forms").key(key).send().await;
        assert!(e.is_err(), "{key} must not be stored");
    }

    // Redirect on success.
    let redirect_conditions = vec![
        r#"{"bucket":"forms"}"#.to_string(),
        r#"["starts-with","$key","uploads/"]"#.to_string(),
        r#"{"success_action_redirect":"http://example.com/done"}"#.to_string(),
    ];
    let form = post_form(
        &redirect_conditions,
        &[
            ("key", "uploads/r"),
            ("success_action_redirect", "http://example.com/done"),
        ],
        "2099-12-31T23:59:59Z",
    );
    let resp = post_upload(&server, "forms", &form, b"r").await;
    assert_eq!(resp.status, 303, "{}", resp.text());
    let location = resp.header("location").unwrap_or("");
    assert!(
        location.starts_with("http://example.com/done?"),
        "{location}"
    );
    assert!(location.contains("key=uploads%2Fr"), "{location}");

    // Unsigned form posts are anonymous writes: refused on a private bucket.
    let resp = post_upload(
        &server,
        "forms",
        &[("key".to_string(), "uploads/anon".to_string())],
        b"x",
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    server.stop().await.unwrap();
}

/// Conditions as AWS policies write them: an Allow for anonymous reads only from loopback
/// addresses with the right Referer, a Deny of listings outside a prefix, a Deny of uploads
/// that ask for a public canned ACL, and one of reads of objects tagged secret.
#[tokio::test]
async fn policy_conditions_decide_with_the_request() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("cond").send().await.unwrap();
    put(&s3, "cond", "pub/a", b"public").await;
    s3.put_object()
        .bucket("cond")
        .key("pub/secret")
        .tagging("class=secret")
        .body(b"hush".to_vec().into())
        .send()
        .await
        .unwrap();
    let policy = policy_for(
        "cond",
        &format!(
            r#"{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",
                 "Resource":"arn:aws:s3:::cond/pub/*",
                 "Condition":{{"IpAddress":{{"aws:SourceIp":["127.0.0.0/8","::1"]}},
                              "StringLike":{{"aws:Referer":"https://*.example.com/*"}}}}}},
               {{"Effect":"Allow","Principal":{{"AWS":"{KEY2}"}},"Action":["s3:ListBucket","s3:PutObject"],
                 "Resource":["arn:aws:s3:::cond","arn:aws:s3:::cond/*"]}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::cond",
                 "Condition":{{"StringNotLike":{{"s3:prefix":"pub/*"}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::cond/*",
                 "Condition":{{"StringEquals":{{"s3:x-amz-acl":["public-read","public-read-write","authenticated-read"]}}}}}},
               {{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::cond/*",
                 "Condition":{{"StringEquals":{{"s3:ExistingObjectTag/class":"secret"}}}}}}"#
        ),
    );
    s3.put_bucket_policy()
        .bucket("cond")
        .policy(policy)
        .send()
        .await
        .unwrap();

    // Anonymous reads: allowed with the Referer, from this (loopback) address.
    let with_referer = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\nHost: {}\nReferer: https://www.example.com/page\nContent-Length: 0",
            server.addr
        )
    };
    let r = raw_request(server.addr, &with_referer("/cond/pub/a"), b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = anonymous(&server, "GET", "/cond/pub/a", b"").await;
    assert_eq!(r.status, 403, "no Referer, no Allow");
    // A secret-tagged object stays denied, even to the owner's policy-allowed readers.
    let r = raw_request(server.addr, &with_referer("/cond/pub/secret"), b"").await;
    assert_eq!(r.status, 403);

    // Listings: only under pub/.
    other
        .list_objects_v2()
        .bucket("cond")
        .prefix("pub/")
        .send()
        .await
        .unwrap();
    let e = other
        .list_objects_v2()
        .bucket("cond")
        .prefix("etc/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = other
        .list_objects_v2()
        .bucket("cond")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_of(&e),
        (403, "AccessDenied".into()),
        "no prefix is not pub/"
    );

    // Uploads: without an ACL or with private, yes; public-read, no.
    put(&other, "cond", "up/1", b"x").await;
    other
        .put_object()
        .bucket("cond")
        .key("up/2")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::Private)
        .body(b"y".to_vec().into())
        .send()
        .await
        .unwrap();
    let e = other
        .put_object()
        .bucket("cond")
        .key("up/3")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::PublicRead)
        .body(b"z".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    server.stop().await.unwrap();
}

/// NotAction and NotResource: a second key may do anything but delete, anywhere but under
/// private/; NotPrincipal: everyone but the owner is denied reading pub/secret*.
#[tokio::test]
async fn policy_complements_apply_to_everything_but_what_they_list() {
    let server = start().await;
    let s3 = server.s3();
    let other = second_key(&server).await;
    s3.create_bucket().bucket("nots").send().await.unwrap();
    put(&s3, "nots", "pub/a", b"a").await;
    put(&s3, "nots", "private/b", b"b").await;
    let policy = policy_for(
        "nots",
        &format!(
            r#"{{"Effect":"Allow","Principal":{{"AWS":"{KEY2}"}},"NotAction":"s3:Delete*",
                 "NotResource":"arn:aws:s3:::nots/private/*"}},
               {{"Effect":"Deny","NotPrincipal":{{"AWS":"{KEY_ID}"}},"Action":"s3:GetObject",
                 "Resource":"arn:aws:s3:::nots/pub/secret*"}}"#
        ),
    );
    s3.put_bucket_policy()
        .bucket("nots")
        .policy(policy)
        .send()
        .await
        .unwrap();
    let body = other
        .get_object()
        .bucket("nots")
        .key("pub/a")
        .send()
        .await
        .unwrap();
    assert_eq!(&body.body.collect().await.unwrap().into_bytes()[..], b"a");
    put(&other, "nots", "pub/new", b"n").await;
    let e = other
        .get_object()
        .bucket("nots")
        .key("private/b")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    let e = other
        .delete_object()
        .bucket("nots")
        .key("pub/a")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    put(&s3, "nots", "pub/secret1", b"s").await;
    let e = other
        .get_object()
        .bucket("nots")
        .key("pub/secret1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_of(&e), (403, "AccessDenied".into()));
    s3.get_object()
        .bucket("nots")
        .key("pub/secret1")
        .send()
        .await
        .unwrap();
    server.stop().await.unwrap();
}
