//! Who may do what: the per-request access decision behind the `S3Access` hook.
//!
//! Order of evaluation, for a request on a bucket (one bucket lookup per request; for GetObject
//! and HeadObject the same lookup reads the version too, see [`CheckedObject`]):
//! 1. an explicit Deny in the bucket policy refuses, even for the owner (who may still manage
//!    the policy, so a bad Deny cannot lock the owner out);
//! 2. the bucket owner may do everything;
//! 3. a key with a [`KeyGrant`] on the bucket (`cairn key allow`) may do what it grants: read
//!    (list, get, head), write (put, delete, multipart) or owner (everything);
//! 4. an Allow in the bucket policy;
//! 5. the ACL: the bucket's for listings, writes and bucket ACL operations, the object's for
//!    object reads and object ACL operations (the object is looked up only at this step, unless
//!    the first lookup read it; its writer has full control over it);
//! 6. anything else is AccessDenied.
//!
//! The bucket's PublicAccessBlock and Object Ownership ([`crate::public`]) narrow steps 4 and
//! 5: RestrictPublicBuckets leaves out the policy's public Allows, IgnorePublicAcls the ACLs'
//! public grants, and BucketOwnerEnforced skips step 5 altogether.
//!
//! Requests without a bucket (ListBuckets) and CreateBucket need a signed request. Copies also
//! need read access to their source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn_client::{Bucket, ClientError, ObjectRead, VersionSel};
use cairn_core::manifest::{Grant, Grantee, KeyGrant, Permission};
use s3s::{s3_error, S3Error, S3Result};
use tracing::error;

use crate::auth::RequestFacts;
use crate::condition::RequestContext;
use crate::error::client_error;
use crate::policy::{Decision, Policy, Resource};
use crate::public::{grant_counts, restricts_public_policy};

/// The bucket owner of a request that passed the access check, left in the request's
/// extensions so operations can name an owner for what anonymous callers write.
#[derive(Clone, Debug)]
pub(crate) struct BucketOwner(pub(crate) String);

/// What the access check of a GetObject or HeadObject read — the bucket's record and the
/// version named, in one read (on a multi-node site one quorum call: the bucket's replicas
/// hold both) — left in the request's extensions so the operation serves it without reading
/// metadata again.
#[derive(Clone, Debug)]
pub(crate) struct CheckedObject(pub(crate) ObjectRead);

/// What [`Authorizer::authorize`] read to decide.
// One per request, moved on into the request's extensions: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Checked {
    /// The bucket's record.
    Bucket(Bucket),
    /// The bucket's record and the version the request names (GetObject, HeadObject).
    Object(ObjectRead),
}

impl Checked {
    /// The bucket's record.
    pub(crate) fn bucket(&self) -> &Bucket {
        match self {
            Checked::Bucket(b) => b,
            Checked::Object(read) => &read.bucket,
        }
    }
}

/// The version of an object resource the ACL step looks at.
#[derive(Clone, Copy)]
enum ObjectVersion<'a> {
    /// The one the request's `versionId` names (current if none), read at that step.
    Named(Option<&'a str>),
    /// Already read, with the bucket's record.
    Read(&'a ObjectRead),
}

/// The key and version an operation serves that the access check reads with the bucket's
/// record, at no extra cost: GetObject and HeadObject. `None` for other operations and for a
/// malformed version id (the operation refuses it, after the access decision as before).
fn served_object<'a>(req: &AccessRequest<'a>) -> Option<(&'a str, VersionSel)> {
    if !matches!(req.op, "GetObject" | "HeadObject") {
        return None;
    }
    let key = req.key?;
    VersionSel::parse(req.version_id).ok().map(|sel| (key, sel))
}

/// Which kind of [`KeyGrant`] an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// List and read.
    Read,
    /// Write and delete objects.
    Write,
    /// Bucket configuration and ACLs: owners only.
    Admin,
}

/// Which ACL may allow an operation, with which permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AclRule {
    /// No ACL grants this operation.
    None,
    /// The bucket's ACL.
    Bucket(Permission),
    /// The object's ACL (the object's writer also has full control).
    Object(Permission),
}

/// How one S3 operation is authorized.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpRule {
    /// The IAM action a bucket policy names it by.
    pub(crate) action: &'static str,
    /// The key grant it needs.
    pub(crate) class: Class,
    /// The ACL that may allow it.
    pub(crate) acl: AclRule,
    /// Works on keys named in the body (DeleteObjects): policy resources must cover them all.
    pub(crate) batch: bool,
    /// Reads the object named by `x-amz-copy-source` too.
    pub(crate) copies: bool,
}

/// The authorization rule of an operation, by its s3s name.
pub(crate) fn rule(op: &str) -> OpRule {
    use AclRule as A;
    use Class::*;
    use Permission as P;
    let r = |action, class, acl| OpRule {
        action,
        class,
        acl,
        batch: false,
        copies: false,
    };
    match op {
        "ListObjects" | "ListObjectsV2" | "HeadBucket" => {
            r("s3:ListBucket", Read, A::Bucket(P::Read))
        }
        "ListObjectVersions" => r("s3:ListBucketVersions", Read, A::Bucket(P::Read)),
        "ListMultipartUploads" => r("s3:ListBucketMultipartUploads", Read, A::Bucket(P::Read)),
        "GetBucketLocation" => r("s3:GetBucketLocation", Read, A::None),
        "GetObject" | "HeadObject" | "GetObjectAttributes" => {
            r("s3:GetObject", Read, A::Object(P::Read))
        }
        "GetObjectAcl" => r("s3:GetObjectAcl", Read, A::Object(P::ReadAcp)),
        "GetObjectTagging" => r("s3:GetObjectTagging", Read, A::Object(P::Read)),
        "GetObjectRetention" => r("s3:GetObjectRetention", Read, A::None),
        "GetObjectLegalHold" => r("s3:GetObjectLegalHold", Read, A::None),
        "PutObject"
        | "PostObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload" => r("s3:PutObject", Write, A::Bucket(P::Write)),
        "CopyObject" | "UploadPartCopy" => OpRule {
            copies: true,
            ..r("s3:PutObject", Write, A::Bucket(P::Write))
        },
        "DeleteObject" => r("s3:DeleteObject", Write, A::Bucket(P::Write)),
        "DeleteObjects" => OpRule {
            batch: true,
            ..r("s3:DeleteObject", Write, A::Bucket(P::Write))
        },
        "AbortMultipartUpload" => r("s3:AbortMultipartUpload", Write, A::Bucket(P::Write)),
        "ListParts" => r("s3:ListMultipartUploadParts", Write, A::Bucket(P::Write)),
        "PutObjectTagging" => r("s3:PutObjectTagging", Write, A::None),
        "DeleteObjectTagging" => r("s3:DeleteObjectTagging", Write, A::None),
        "PutObjectRetention" => r("s3:PutObjectRetention", Write, A::None),
        "PutObjectLegalHold" => r("s3:PutObjectLegalHold", Write, A::None),
        "PutObjectAcl" => r("s3:PutObjectAcl", Admin, A::Object(P::WriteAcp)),
        "GetBucketAcl" => r("s3:GetBucketAcl", Admin, A::Bucket(P::ReadAcp)),
        "PutBucketAcl" => r("s3:PutBucketAcl", Admin, A::Bucket(P::WriteAcp)),
        "DeleteBucket" => r("s3:DeleteBucket", Admin, A::None),
        "GetBucketPolicy" => r("s3:GetBucketPolicy", Admin, A::None),
        "PutBucketPolicy" => r("s3:PutBucketPolicy", Admin, A::None),
        "DeleteBucketPolicy" => r("s3:DeleteBucketPolicy", Admin, A::None),
        "GetBucketPolicyStatus" => r("s3:GetBucketPolicyStatus", Admin, A::None),
        "GetBucketVersioning" => r("s3:GetBucketVersioning", Admin, A::None),
        "PutBucketVersioning" => r("s3:PutBucketVersioning", Admin, A::None),
        "GetBucketTagging" => r("s3:GetBucketTagging", Admin, A::None),
        "PutBucketTagging" | "DeleteBucketTagging" => r("s3:PutBucketTagging", Admin, A::None),
        "GetBucketCors" => r("s3:GetBucketCORS", Admin, A::None),
        "PutBucketCors" | "DeleteBucketCors" => r("s3:PutBucketCORS", Admin, A::None),
        "GetBucketLifecycleConfiguration" => r("s3:GetLifecycleConfiguration", Admin, A::None),
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            r("s3:PutLifecycleConfiguration", Admin, A::None)
        }
        "GetBucketEncryption" => r("s3:GetEncryptionConfiguration", Admin, A::None),
        "PutBucketEncryption" | "DeleteBucketEncryption" => {
            r("s3:PutEncryptionConfiguration", Admin, A::None)
        }
        "GetPublicAccessBlock" => r("s3:GetBucketPublicAccessBlock", Admin, A::None),
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
            r("s3:PutBucketPublicAccessBlock", Admin, A::None)
        }
        "GetBucketOwnershipControls" => r("s3:GetBucketOwnershipControls", Admin, A::None),
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => {
            r("s3:PutBucketOwnershipControls", Admin, A::None)
        }
        "GetObjectLockConfiguration" => r("s3:GetBucketObjectLockConfiguration", Admin, A::None),
        "PutObjectLockConfiguration" => r("s3:PutBucketObjectLockConfiguration", Admin, A::None),
        // Anything else (configuration the gateway may not even implement) is the owner's.
        _ => r("s3:*", Admin, A::None),
    }
}

/// Whether a policy operation: the owner may always run these, so a Deny cannot lock the owner
/// out of fixing the policy.
fn manages_policy(op: &str) -> bool {
    matches!(
        op,
        "GetBucketPolicy" | "PutBucketPolicy" | "DeleteBucketPolicy" | "GetBucketPolicyStatus"
    )
}

/// Whether `grantee` is the caller (`who`: an access key id, `None` when anonymous).
pub(crate) fn grantee_matches(grantee: &Grantee, who: Option<&str>) -> bool {
    match grantee {
        Grantee::AllUsers => true,
        Grantee::AuthenticatedUsers => who.is_some(),
        Grantee::Key(id) => who == Some(id.as_str()),
    }
}

/// Whether a grant gives the caller `need` (FULL_CONTROL gives everything).
fn grant_allows(g: &Grant, who: Option<&str>, need: Permission) -> bool {
    (g.permission == need || g.permission == Permission::FullControl)
        && grantee_matches(&g.grantee, who)
}

/// Whether an ACL of `bucket` or of one of its objects gives the caller `need`, counting only
/// the grants its PublicAccessBlock and Object Ownership let count ([`grant_counts`]).
fn bucket_acl_allows(bucket: &Bucket, acl: &[Grant], who: Option<&str>, need: Permission) -> bool {
    acl.iter()
        .any(|g| grant_counts(bucket, g) && grant_allows(g, who, need))
}

/// Whether a key's grant on a bucket covers an operation class.
pub(crate) fn key_grant_allows(grant: &KeyGrant, class: Class) -> bool {
    grant.owner
        || match class {
            Class::Read => grant.read,
            Class::Write => grant.write,
            Class::Admin => false,
        }
}

fn denied(who: Option<&str>) -> S3Error {
    match who {
        None => s3_error!(
            AccessDenied,
            "access denied: anonymous requests may only do what the bucket's policy or ACL \
             allows to everyone; sign the request"
        ),
        Some(key) => s3_error!(
            AccessDenied,
            "access denied: key {key} has no permission for this; the bucket owner can grant it \
             with a bucket policy, an ACL or `cairn key allow`"
        ),
    }
}

/// Most parsed bucket policies kept in memory.
const POLICY_CACHE_ENTRIES: usize = 1024;

/// A parsed policy, or `None` when the stored text no longer parses.
type Parsed = Arc<Option<Policy>>;

/// Decides requests against stored buckets, keys, policies and ACLs.
pub(crate) struct Authorizer {
    client: cairn_client::Client,
    /// Parsed policies by bucket, with the text they were parsed from.
    policies: Mutex<HashMap<String, (String, Parsed)>>,
}

/// One request, as the access hook sees it.
pub(crate) struct AccessRequest<'a> {
    /// The s3s operation name.
    pub(crate) op: &'a str,
    /// The signing access key id; `None` for anonymous requests.
    pub(crate) who: Option<&'a str>,
    /// The bucket addressed.
    pub(crate) bucket: &'a str,
    /// The object key, for object requests.
    pub(crate) key: Option<&'a str>,
    /// The `versionId` query parameter.
    pub(crate) version_id: Option<&'a str>,
    /// The `x-amz-copy-source` header, decoded.
    pub(crate) copy_source: Option<&'a str>,
    /// What bucket policies' `Condition` blocks read of the request.
    pub(crate) facts: &'a RequestFacts<'a>,
}

impl Authorizer {
    pub(crate) fn new(client: cairn_client::Client) -> Authorizer {
        Authorizer {
            client,
            policies: Mutex::new(HashMap::new()),
        }
    }

    /// Allows or refuses `req`; on success returns what it read: the bucket's record, and for
    /// GetObject and HeadObject the version named too, read at once (see [`CheckedObject`]).
    pub(crate) async fn authorize(&self, req: &AccessRequest<'_>) -> S3Result<Checked> {
        let checked = match served_object(req) {
            Some((key, sel)) => match self.client.read_object(req.bucket, key, &sel).await {
                Ok(read) => Checked::Object(read),
                // Refused before anything is read: the operation reports it once access is
                // decided, as for any operation.
                Err(ClientError::KeyTooLong) => Checked::Bucket(self.bucket(req.bucket).await?),
                Err(e) => return Err(client_error(e)),
            },
            None => Checked::Bucket(self.bucket(req.bucket).await?),
        };
        let (bucket, version) = match &checked {
            Checked::Bucket(b) => (b, ObjectVersion::Named(req.version_id)),
            Checked::Object(read) => (&read.bucket, ObjectVersion::Read(read)),
        };
        let r = rule(req.op);
        let resource = match req.key {
            _ if r.batch => Resource::AnyObject(req.bucket),
            Some(key) => Resource::Object(req.bucket, key),
            None => Resource::Bucket(req.bucket),
        };
        self.decide(bucket, req.who, req.op, resource, version, req.facts)
            .await?;
        if r.copies {
            if let Some(source) = req.copy_source {
                self.authorize_copy_source(req.who, source, req.facts)
                    .await?;
            }
        }
        Ok(checked)
    }

    /// A bucket's record (`NoSuchBucket` if there is none).
    async fn bucket(&self, name: &str) -> S3Result<Bucket> {
        self.client.head_bucket(name).await.map_err(client_error)
    }

    /// The rules above for one operation on one resource of `bucket` (`version`: of an object
    /// resource).
    async fn decide(
        &self,
        bucket: &Bucket,
        who: Option<&str>,
        op: &str,
        resource: Resource<'_>,
        version: ObjectVersion<'_>,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let r = rule(op);
        let is_owner = who == Some(bucket.owner.as_str());
        let decision = match self.policy(bucket) {
            None => Decision::NoOpinion,
            Some(parsed) => match parsed.as_ref() {
                Some(p) => {
                    let mut ctx = facts.context(who);
                    if p.needs_existing_tags() {
                        self.add_existing_tags(&mut ctx, resource, &version).await?;
                    }
                    p.evaluate_in(
                        who,
                        r.action,
                        resource,
                        &ctx,
                        restricts_public_policy(bucket),
                    )
                }
                // Validated when stored, so this takes a format change or corruption; without
                // knowing its Denys, only the owner gets through.
                None => Decision::Deny,
            },
        };
        if decision == Decision::Deny && !(is_owner && manages_policy(op)) {
            return Err(match who {
                None => denied(None),
                Some(_) => s3_error!(
                    AccessDenied,
                    "access denied by an explicit Deny in the bucket policy"
                ),
            });
        }
        if is_owner {
            return Ok(());
        }
        if let Some(id) = who {
            let grant = self
                .client
                .get_key(id)
                .await
                .map_err(client_error)?
                .and_then(|k| k.grants.get(&bucket.name).copied());
            if grant.is_some_and(|g| key_grant_allows(&g, r.class)) {
                return Ok(());
            }
        }
        if decision == Decision::Allow {
            return Ok(());
        }
        match (r.acl, resource) {
            (AclRule::Bucket(need), _) if bucket_acl_allows(bucket, &bucket.acl, who, need) => {
                return Ok(())
            }
            (AclRule::Object(need), Resource::Object(b, key)) => {
                let found = match version {
                    ObjectVersion::Read(read) => read.manifest().cloned(),
                    ObjectVersion::Named(version_id) => {
                        let sel = VersionSel::parse(version_id).map_err(client_error)?;
                        self.client
                            .head_object(b, key, &sel)
                            .await
                            .map(|head| head.manifest)
                    }
                };
                match found {
                    Ok(m) => {
                        // BucketOwnerEnforced: the bucket owner owns every object.
                        let writer = !bucket.acls_disabled() && who.is_some_and(|w| w == m.owner);
                        if writer || bucket_acl_allows(bucket, &m.acl, who, need) {
                            return Ok(());
                        }
                    }
                    // A missing object is the operation's 404 for a caller who may list the
                    // bucket, and AccessDenied for others, as in S3 (existence is not revealed
                    // to whom the listing is not).
                    Err(
                        ClientError::NoSuchKey { .. }
                        | ClientError::NoSuchVersion { .. }
                        | ClientError::MethodNotAllowed { .. },
                    ) => {
                        let may_list =
                            bucket_acl_allows(bucket, &bucket.acl, who, Permission::Read)
                                || self.policy(bucket).is_some_and(|p| {
                                    p.as_ref().as_ref().is_some_and(|p| {
                                        let ctx = facts.context(who);
                                        p.evaluate_in(
                                            who,
                                            "s3:ListBucket",
                                            Resource::Bucket(b),
                                            &ctx,
                                            restricts_public_policy(bucket),
                                        ) == Decision::Allow
                                    })
                                });
                        if may_list {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(client_error(e)),
                }
            }
            _ => {}
        }
        Err(denied(who))
    }

    /// A copy needs read access to its source (`bucket/key[?versionId=...]`).
    async fn authorize_copy_source(
        &self,
        who: Option<&str>,
        source: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let source = source.strip_prefix('/').unwrap_or(source);
        let (path, version) = match source.split_once("?versionId=") {
            Some((p, v)) => (p, Some(v)),
            None => (source, None),
        };
        let Some((bucket, key)) = path.split_once('/') else {
            // Malformed: the operation reports it.
            return Ok(());
        };
        let bucket = match self.client.head_bucket(bucket).await {
            Ok(b) => b,
            // A missing source bucket is the operation's NoSuchBucket to report.
            Err(ClientError::NoSuchBucket(_)) => return Ok(()),
            Err(e) => return Err(client_error(e)),
        };
        self.decide(
            &bucket,
            who,
            "GetObject",
            Resource::Object(&bucket.name, key),
            ObjectVersion::Named(version),
            facts,
        )
        .await
    }

    /// Adds `s3:ExistingObjectTag/KEY` of the object `resource` names to `ctx` (none for a
    /// missing object or another resource). A failure to read it is the request's error: a
    /// Deny on a tag must not lapse because the read failed.
    async fn add_existing_tags(
        &self,
        ctx: &mut RequestContext,
        resource: Resource<'_>,
        version: &ObjectVersion<'_>,
    ) -> S3Result<()> {
        let Resource::Object(b, key) = resource else {
            return Ok(());
        };
        let found = match version {
            ObjectVersion::Read(read) => read.manifest().cloned(),
            ObjectVersion::Named(version_id) => {
                let sel = VersionSel::parse(*version_id).map_err(client_error)?;
                self.client
                    .head_object(b, key, &sel)
                    .await
                    .map(|head| head.manifest)
            }
        };
        let tags = match found {
            Ok(m) => m.tags,
            Err(
                ClientError::NoSuchKey { .. }
                | ClientError::NoSuchVersion { .. }
                | ClientError::MethodNotAllowed { .. },
            ) => return Ok(()),
            Err(e) => return Err(client_error(e)),
        };
        for (k, v) in tags {
            ctx.set_one(&format!("s3:ExistingObjectTag/{k}"), v);
        }
        Ok(())
    }

    /// The bucket's parsed policy, from the cache when its text is unchanged.
    fn policy(&self, bucket: &Bucket) -> Option<Parsed> {
        let text = bucket.policy.as_deref()?;
        let mut cache = match self.policies.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((cached, parsed)) = cache.get(&bucket.name) {
            if cached == text {
                return Some(parsed.clone());
            }
        }
        let parsed = Arc::new(match Policy::parse(&bucket.name, text) {
            Ok(p) => Some(p),
            Err(e) => {
                error!(bucket = %bucket.name, error = ?e, "a stored bucket policy does not parse");
                None
            }
        });
        if cache.len() >= POLICY_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(bucket.name.clone(), (text.to_string(), parsed.clone()));
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(grantee: Grantee, permission: Permission) -> Grant {
        Grant {
            grantee,
            permission,
        }
    }

    #[test]
    fn acl_grantees_and_permissions() {
        let bucket = Bucket::new("b", "OWNER", 1);
        let acl_allows = |acl: &[Grant], who, need| bucket_acl_allows(&bucket, acl, who, need);
        let acl = vec![
            grant(Grantee::AllUsers, Permission::Read),
            grant(Grantee::AuthenticatedUsers, Permission::ReadAcp),
            grant(Grantee::Key("K1".into()), Permission::FullControl),
        ];
        assert!(acl_allows(&acl, None, Permission::Read));
        assert!(!acl_allows(&acl, None, Permission::ReadAcp));
        assert!(acl_allows(&acl, Some("K2"), Permission::ReadAcp));
        assert!(!acl_allows(&acl, Some("K2"), Permission::Write));
        assert!(acl_allows(&acl, Some("K1"), Permission::WriteAcp));
        assert!(!acl_allows(&[], Some("K1"), Permission::Read));
    }

    #[test]
    fn key_grants_cover_their_class() {
        let read = KeyGrant {
            read: true,
            ..Default::default()
        };
        let owner = KeyGrant {
            owner: true,
            ..Default::default()
        };
        assert!(key_grant_allows(&read, rule("GetObject").class));
        assert!(key_grant_allows(&read, rule("ListObjectsV2").class));
        assert!(!key_grant_allows(&read, rule("PutObject").class));
        assert!(!key_grant_allows(&read, rule("PutBucketPolicy").class));
        assert!(key_grant_allows(&owner, rule("PutBucketPolicy").class));
        assert!(key_grant_allows(&owner, rule("SomethingNew").class));
    }

    #[test]
    fn operations_map_to_policy_actions() {
        assert_eq!(rule("HeadObject").action, "s3:GetObject");
        assert_eq!(rule("ListObjectsV2").action, "s3:ListBucket");
        assert_eq!(rule("PostObject").action, "s3:PutObject");
        assert!(rule("DeleteObjects").batch);
        assert!(rule("CopyObject").copies);
        assert_eq!(rule("GetObject").acl, AclRule::Object(Permission::Read));
        assert_eq!(rule("PutObject").acl, AclRule::Bucket(Permission::Write));
        assert!(manages_policy("PutBucketPolicy") && !manages_policy("PutObject"));
    }
}
