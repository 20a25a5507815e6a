//! ACLs and bucket policies: canned ACLs, `x-amz-grant-*` headers and AccessControlPolicy
//! bodies mapped onto Cairn's grant model ([`cairn_core::manifest::Grant`]);
//! Get/PutBucketAcl, Get/PutObjectAcl, Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus.
//!
//! The owner of a bucket or object always has full control; it is shown first in an ACL and
//! never stored as a grant. Owners are access key ids, shown with the key's name.

use cairn_core::manifest::{Grant, Grantee, Permission};
use s3s::dto::{self, ObjectCannedACL};
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::owners::owner_of;
use super::{requester, Gateway};
use crate::access::BucketOwner;
use crate::convert::version_sel;
use crate::error::client_error;
use crate::policy::{Policy, PolicyError, MAX_POLICY_BYTES};

/// S3's group of everyone, signed or not.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// S3's group of every signed request.
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// Most grants in one ACL (S3's limit is 100).
const MAX_GRANTS: usize = 100;

/// The grants a canned ACL stands for, besides the owner's full control.
pub(crate) fn canned_grants(canned: &str) -> S3Result<Vec<Grant>> {
    let grant = |grantee, permission| Grant {
        grantee,
        permission,
    };
    Ok(match canned {
        "private" | "bucket-owner-read" | "bucket-owner-full-control" => Vec::new(),
        "public-read" => vec![grant(Grantee::AllUsers, Permission::Read)],
        "public-read-write" => vec![
            grant(Grantee::AllUsers, Permission::Read),
            grant(Grantee::AllUsers, Permission::Write),
        ],
        "authenticated-read" => vec![grant(Grantee::AuthenticatedUsers, Permission::Read)],
        other => {
            return Err(s3_error!(
                InvalidArgument,
                "unknown canned ACL `{other}`: use private, public-read, public-read-write or \
                 authenticated-read"
            ))
        }
    })
}

/// The grantee of a group URI.
fn group(uri: &str) -> S3Result<Grantee> {
    match uri {
        ALL_USERS => Ok(Grantee::AllUsers),
        AUTHENTICATED_USERS => Ok(Grantee::AuthenticatedUsers),
        other => Err(s3_error!(
            InvalidArgument,
            "unsupported grantee group `{other}`: use {ALL_USERS} or {AUTHENTICATED_USERS}"
        )),
    }
}

/// Parses one `x-amz-grant-*` value: `id="KEYID", uri="GROUP-URI", ...`.
fn parse_grant_header(value: &str, permission: Permission, out: &mut Vec<Grant>) -> S3Result<()> {
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((kind, grantee)) = part.split_once('=') else {
            return Err(s3_error!(
                InvalidArgument,
                "malformed grant `{part}`: write id=\"KEYID\" or uri=\"GROUP-URI\""
            ));
        };
        let grantee = grantee.trim().trim_matches('"');
        let grantee = match kind.trim().to_ascii_lowercase().as_str() {
            "id" if !grantee.is_empty() => Grantee::Key(grantee.to_string()),
            "uri" => group(grantee)?,
            "emailaddress" => {
                return Err(s3_error!(
                    NotImplemented,
                    "grants by email address are not supported: grant to id=\"KEYID\" (an \
                     access key id) instead"
                ))
            }
            _ => {
                return Err(s3_error!(
                    InvalidArgument,
                    "malformed grant `{part}`: write id=\"KEYID\" or uri=\"GROUP-URI\""
                ))
            }
        };
        push_grant(
            out,
            Grant {
                grantee,
                permission,
            },
        )?;
    }
    Ok(())
}

/// Adds a grant once, within [`MAX_GRANTS`].
fn push_grant(out: &mut Vec<Grant>, grant: Grant) -> S3Result<()> {
    if !out.contains(&grant) {
        if out.len() >= MAX_GRANTS {
            return Err(s3_error!(
                InvalidArgument,
                "an ACL holds at most {MAX_GRANTS} grants"
            ));
        }
        out.push(grant);
    }
    Ok(())
}

/// The ACL a request asks for with `x-amz-acl` (canned) or the `x-amz-grant-*` headers
/// (which cannot be combined with a canned ACL). No header: no grants.
pub(crate) fn grants_from_headers(
    canned: Option<&str>,
    full_control: Option<&str>,
    read: Option<&str>,
    write: Option<&str>,
    read_acp: Option<&str>,
    write_acp: Option<&str>,
) -> S3Result<Vec<Grant>> {
    let headers = [
        (full_control, Permission::FullControl),
        (read, Permission::Read),
        (write, Permission::Write),
        (read_acp, Permission::ReadAcp),
        (write_acp, Permission::WriteAcp),
    ];
    let any_grant = headers.iter().any(|(v, _)| v.is_some());
    match canned {
        Some(_) if any_grant => Err(s3_error!(
            InvalidRequest,
            "specifying both a canned ACL (x-amz-acl) and x-amz-grant-* headers is not allowed: \
             send one or the other"
        )),
        Some(c) => canned_grants(c),
        None => {
            let mut grants = Vec::new();
            for (value, permission) in headers {
                if let Some(v) = value {
                    parse_grant_header(v, permission, &mut grants)?;
                }
            }
            Ok(grants)
        }
    }
}

/// The ACL of a new object from its request's ACL headers.
pub(crate) fn object_grants(
    canned: Option<&ObjectCannedACL>,
    full_control: Option<&String>,
    read: Option<&String>,
    read_acp: Option<&String>,
    write_acp: Option<&String>,
) -> S3Result<Vec<Grant>> {
    grants_from_headers(
        canned.map(|c| c.as_str()),
        full_control.map(String::as_str),
        read.map(String::as_str),
        None,
        read_acp.map(String::as_str),
        write_acp.map(String::as_str),
    )
}

/// The grants of an AccessControlPolicy body, and whether it grants the owner FULL_CONTROL
/// (kept as a flag: the owner's full control is listed first when it does, and the owner's
/// access does not depend on it). The Owner, when given, must be the resource's owner
/// (ownership never changes).
fn grants_from_body(body: dto::AccessControlPolicy, owner: &str) -> S3Result<AclGrants> {
    if let Some(id) = body.owner.as_ref().and_then(|o| o.id.as_deref()) {
        if id != owner {
            return Err(s3_error!(
                AccessDenied,
                "the ACL names owner `{id}`, but the owner is `{owner}`: ownership cannot change"
            ));
        }
    }
    let mut grants = Vec::new();
    let mut owner_grant = false;
    for g in body.grants.into_iter().flatten() {
        let (Some(grantee), Some(permission)) = (g.grantee, g.permission) else {
            return Err(s3_error!(
                MalformedACLError,
                "each Grant needs a Grantee and a Permission"
            ));
        };
        let permission = match permission.as_str() {
            dto::Permission::FULL_CONTROL => Permission::FullControl,
            dto::Permission::READ => Permission::Read,
            dto::Permission::WRITE => Permission::Write,
            dto::Permission::READ_ACP => Permission::ReadAcp,
            dto::Permission::WRITE_ACP => Permission::WriteAcp,
            other => {
                return Err(s3_error!(
                    MalformedACLError,
                    "unknown permission `{other}`: use FULL_CONTROL, READ, WRITE, READ_ACP or \
                     WRITE_ACP"
                ))
            }
        };
        let grantee = match grantee.type_.as_str() {
            dto::Type::CANONICAL_USER => match grantee.id {
                Some(id) if !id.is_empty() => Grantee::Key(id),
                _ => {
                    return Err(s3_error!(
                        MalformedACLError,
                        "a CanonicalUser grantee needs an ID (an access key id)"
                    ))
                }
            },
            dto::Type::GROUP => match grantee.uri.as_deref() {
                Some(uri) => group(uri)?,
                None => return Err(s3_error!(MalformedACLError, "a Group grantee needs a URI")),
            },
            dto::Type::AMAZON_CUSTOMER_BY_EMAIL => {
                return Err(s3_error!(
                    NotImplemented,
                    "grants by email address are not supported: grant to a CanonicalUser ID \
                     (an access key id) instead"
                ))
            }
            other => {
                return Err(s3_error!(
                    MalformedACLError,
                    "unknown grantee type `{other}`: use CanonicalUser or Group"
                ))
            }
        };
        if grantee == Grantee::Key(owner.to_string()) && permission == Permission::FullControl {
            owner_grant = true;
            continue;
        }
        push_grant(
            &mut grants,
            Grant {
                grantee,
                permission,
            },
        )?;
    }
    Ok(AclGrants {
        grants,
        owner_grant,
    })
}

/// An ACL as stored: the grants besides the owner's FULL_CONTROL, and whether that one is
/// listed.
#[derive(Debug)]
struct AclGrants {
    grants: Vec<Grant>,
    owner_grant: bool,
}

/// The one ACL source of a Put*Acl request: canned header, grant headers or body.
struct AclSource<'a> {
    canned: Option<&'a str>,
    full_control: Option<&'a str>,
    read: Option<&'a str>,
    write: Option<&'a str>,
    read_acp: Option<&'a str>,
    write_acp: Option<&'a str>,
    body: Option<dto::AccessControlPolicy>,
}

impl AclSource<'_> {
    fn grants(self, owner: &str) -> S3Result<AclGrants> {
        let headers = self.canned.is_some()
            || [
                self.full_control,
                self.read,
                self.write,
                self.read_acp,
                self.write_acp,
            ]
            .iter()
            .any(Option::is_some);
        match self.body {
            Some(_) if headers => Err(s3_error!(
                InvalidRequest,
                "send the ACL either in headers (x-amz-acl or x-amz-grant-*) or as an \
                 AccessControlPolicy body, not both"
            )),
            Some(body) => grants_from_body(body, owner),
            None if !headers => Err(s3_error!(
                InvalidRequest,
                "no ACL given: send x-amz-acl, x-amz-grant-* headers or an AccessControlPolicy \
                 body"
            )),
            None => grants_from_headers(
                self.canned,
                self.full_control,
                self.read,
                self.write,
                self.read_acp,
                self.write_acp,
            )
            .map(|grants| AclGrants {
                grants,
                owner_grant: true,
            }),
        }
    }
}

/// Refuses grants to access keys that do not exist (S3's "Invalid id").
pub(crate) async fn check_grantees(gw: &Gateway, grants: &[Grant]) -> S3Result<()> {
    for g in grants {
        if let Grantee::Key(id) = &g.grantee {
            if gw.client.get_key(id).await.map_err(client_error)?.is_none() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Invalid id: no access key `{id}` exists to grant to"
                ));
            }
        }
    }
    Ok(())
}

/// An ACL as S3 shows it: the owner's full control first (unless the ACL put left it out),
/// then the stored grants.
async fn acl_grants(
    gw: &Gateway,
    owner: &dto::Owner,
    acl: &[Grant],
    owner_grant: bool,
) -> S3Result<dto::Grants> {
    let user = |id: Option<String>, display_name: Option<String>| dto::Grantee {
        display_name,
        email_address: None,
        id,
        type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
        uri: None,
    };
    let group = |uri: &str| dto::Grantee {
        display_name: None,
        email_address: None,
        id: None,
        type_: dto::Type::from_static(dto::Type::GROUP),
        uri: Some(uri.to_string()),
    };
    let permission = |p: Permission| {
        dto::Permission::from_static(match p {
            Permission::Read => dto::Permission::READ,
            Permission::Write => dto::Permission::WRITE,
            Permission::ReadAcp => dto::Permission::READ_ACP,
            Permission::WriteAcp => dto::Permission::WRITE_ACP,
            Permission::FullControl => dto::Permission::FULL_CONTROL,
        })
    };
    let mut out = Vec::new();
    if owner_grant {
        out.push(dto::Grant {
            grantee: Some(user(owner.id.clone(), owner.display_name.clone())),
            permission: Some(permission(Permission::FullControl)),
        });
    }
    for g in acl {
        let grantee = match &g.grantee {
            Grantee::Key(id) => {
                let shown = owner_of(gw, id).await?;
                user(shown.id, shown.display_name)
            }
            Grantee::AllUsers => group(ALL_USERS),
            Grantee::AuthenticatedUsers => group(AUTHENTICATED_USERS),
        };
        out.push(dto::Grant {
            grantee: Some(grantee),
            permission: Some(permission(g.permission)),
        });
    }
    Ok(out)
}

/// GetBucketAcl: the owner and the bucket's grants.
pub(super) async fn get_bucket_acl(
    gw: &Gateway,
    req: S3Request<dto::GetBucketAclInput>,
) -> S3Result<S3Response<dto::GetBucketAclOutput>> {
    let bucket = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let owner = owner_of(gw, &bucket.owner).await?;
    // With ACLs disabled S3 shows only the owner's FULL_CONTROL.
    let grants = if bucket.acls_disabled() {
        acl_grants(gw, &owner, &[], true).await?
    } else {
        acl_grants(gw, &owner, &bucket.acl, bucket.owner_grant).await?
    };
    Ok(S3Response::new(dto::GetBucketAclOutput {
        grants: Some(grants),
        owner: Some(owner),
    }))
}

/// PutBucketAcl: replaces the bucket's grants with a canned ACL, grant headers or a body.
pub(super) async fn put_bucket_acl(
    gw: &Gateway,
    req: S3Request<dto::PutBucketAclInput>,
) -> S3Result<S3Response<dto::PutBucketAclOutput>> {
    let controls = crate::public::controls(&req)?;
    controls.check_acl_change()?;
    let input = req.input;
    let bucket = gw
        .client
        .head_bucket(&input.bucket)
        .await
        .map_err(client_error)?;
    let grants = AclSource {
        canned: input.acl.as_ref().map(|c| c.as_str()),
        full_control: input.grant_full_control.as_deref(),
        read: input.grant_read.as_deref(),
        write: input.grant_write.as_deref(),
        read_acp: input.grant_read_acp.as_deref(),
        write_acp: input.grant_write_acp.as_deref(),
        body: input.access_control_policy,
    }
    .grants(&bucket.owner)?;
    controls.check_acl(None, &grants.grants)?;
    check_grantees(gw, &grants.grants).await?;
    gw.client
        .update_bucket(&input.bucket, move |b| {
            b.acl = grants.grants;
            b.owner_grant = grants.owner_grant;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(dto::PutBucketAclOutput {}))
}

/// The owner of an object: its writer, or the bucket's owner for versions written before
/// objects had owners.
fn object_owner<T>(req: &S3Request<T>, writer: &str) -> S3Result<String> {
    if !writer.is_empty() {
        return Ok(writer.to_string());
    }
    match req.extensions.get::<BucketOwner>() {
        Some(o) => Ok(o.0.clone()),
        None => requester(req),
    }
}

/// GetObjectAcl: the owner and grants of a version (the current one by default).
pub(super) async fn get_object_acl(
    gw: &Gateway,
    req: S3Request<dto::GetObjectAclInput>,
) -> S3Result<S3Response<dto::GetObjectAclOutput>> {
    let input = &req.input;
    let version = version_sel(input.version_id.as_deref())?;
    let head = gw
        .client
        .head_object(&input.bucket, &input.key, &version)
        .await
        .map_err(client_error)?;
    let controls = crate::public::controls(&req)?;
    // With ACLs disabled the bucket owner owns every object, with FULL_CONTROL alone.
    let (owner, grants) = if controls.acls_disabled() {
        let owner = owner_of(gw, &controls.owner).await?;
        let grants = acl_grants(gw, &owner, &[], true).await?;
        (owner, grants)
    } else {
        let owner = owner_of(gw, &object_owner(&req, &head.manifest.owner)?).await?;
        let grants = acl_grants(gw, &owner, &head.manifest.acl, head.manifest.owner_grant).await?;
        (owner, grants)
    };
    let mut resp = S3Response::new(dto::GetObjectAclOutput {
        grants: Some(grants),
        owner: Some(owner),
        request_charged: None,
    });
    if let Some(v) = head
        .version_id
        .as_deref()
        .and_then(|v| http::HeaderValue::from_str(v).ok())
    {
        resp.headers.insert("x-amz-version-id", v);
    }
    Ok(resp)
}

/// PutObjectAcl: replaces a version's grants in place (the version and its data stay).
pub(super) async fn put_object_acl(
    gw: &Gateway,
    req: S3Request<dto::PutObjectAclInput>,
) -> S3Result<S3Response<dto::PutObjectAclOutput>> {
    let controls = crate::public::controls(&req)?;
    controls.check_acl_change()?;
    let input = &req.input;
    if input.grant_write.is_some() {
        return Err(s3_error!(
            InvalidArgument,
            "WRITE cannot be granted on an object: grant it on the bucket"
        ));
    }
    let version = version_sel(input.version_id.as_deref())?;
    let head = gw
        .client
        .head_object(&input.bucket, &input.key, &version)
        .await
        .map_err(client_error)?;
    let owner = object_owner(&req, &head.manifest.owner)?;
    let input = req.input;
    // S3 accepts the canned public-read-write on an object (its WRITE grant means nothing
    // there); only WRITE asked for explicitly is refused.
    let canned = input.acl.is_some();
    let grants = AclSource {
        canned: input.acl.as_ref().map(|c| c.as_str()),
        full_control: input.grant_full_control.as_deref(),
        read: input.grant_read.as_deref(),
        write: None,
        read_acp: input.grant_read_acp.as_deref(),
        write_acp: input.grant_write_acp.as_deref(),
        body: input.access_control_policy,
    }
    .grants(&owner)?;
    if !canned
        && grants
            .grants
            .iter()
            .any(|g| g.permission == Permission::Write)
    {
        return Err(s3_error!(
            InvalidArgument,
            "WRITE cannot be granted on an object: grant it on the bucket"
        ));
    }
    controls.check_acl(None, &grants.grants)?;
    check_grantees(gw, &grants.grants).await?;
    // Pin the version resolved above, so a concurrent write cannot move the ACL elsewhere.
    let pinned = head.manifest.version;
    gw.client
        .update_version(
            &input.bucket,
            &input.key,
            &cairn_client::VersionSel::Id(pinned),
            move |m| {
                m.acl = grants.grants;
                m.owner_grant = grants.owner_grant;
                Ok(())
            },
        )
        .await
        .map_err(client_error)?;
    let mut resp = S3Response::new(dto::PutObjectAclOutput::default());
    if let Some(v) = head
        .version_id
        .as_deref()
        .and_then(|v| http::HeaderValue::from_str(v).ok())
    {
        resp.headers.insert("x-amz-version-id", v);
    }
    Ok(resp)
}

/// Validates a policy for `bucket`: S3's MalformedPolicy (400) for bad documents and unknown
/// principals, NotImplemented for IAM features the gateway does not evaluate.
async fn validate_policy(gw: &Gateway, bucket: &str, text: &str) -> S3Result<Policy> {
    let policy = Policy::parse(bucket, text).map_err(|e| match e {
        PolicyError::Malformed(msg) => s3_error!(MalformedPolicy, "{msg}"),
        PolicyError::Unsupported(msg) => s3_error!(NotImplemented, "{msg}"),
    })?;
    for id in policy.named_keys() {
        if gw.client.get_key(id).await.map_err(client_error)?.is_none() {
            return Err(s3_error!(
                MalformedPolicy,
                "Invalid principal in policy: no access key `{id}` exists"
            ));
        }
    }
    Ok(policy)
}

/// PutBucketPolicy: stores a validated policy document (at most 20 KiB) as sent; a public one
/// is AccessDenied when the bucket's PublicAccessBlock has BlockPublicPolicy.
pub(super) async fn put_bucket_policy(
    gw: &Gateway,
    req: S3Request<dto::PutBucketPolicyInput>,
) -> S3Result<S3Response<dto::PutBucketPolicyOutput>> {
    let input = req.input;
    if input.policy.len() > MAX_POLICY_BYTES {
        return Err(s3_error!(
            MalformedPolicy,
            "the policy is {} bytes; bucket policies must be at most 20 KiB",
            input.policy.len()
        ));
    }
    let bucket = gw
        .client
        .head_bucket(&input.bucket)
        .await
        .map_err(client_error)?;
    let policy = validate_policy(gw, &input.bucket, &input.policy).await?;
    let block = bucket
        .public_access_block
        .is_some_and(|b| b.block_public_policy);
    if block && policy.is_public() {
        return Err(s3_error!(
            AccessDenied,
            "access denied: the bucket's PublicAccessBlock blocks public policies              (BlockPublicPolicy); allow named keys only, limit it to source addresses, or turn              the setting off"
        ));
    }
    let text = input.policy;
    gw.client
        .update_bucket(&input.bucket, move |b| {
            b.policy = Some(text);
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(dto::PutBucketPolicyOutput {}))
}

fn no_policy(bucket: &str) -> s3s::S3Error {
    s3_error!(
        NoSuchBucketPolicy,
        "the bucket `{bucket}` has no policy: set one with PutBucketPolicy"
    )
}

/// GetBucketPolicy: the document as stored; NoSuchBucketPolicy without one.
pub(super) async fn get_bucket_policy(
    gw: &Gateway,
    req: S3Request<dto::GetBucketPolicyInput>,
) -> S3Result<S3Response<dto::GetBucketPolicyOutput>> {
    let bucket = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let policy = bucket.policy.ok_or_else(|| no_policy(&bucket.name))?;
    Ok(S3Response::new(dto::GetBucketPolicyOutput {
        policy: Some(policy),
    }))
}

/// DeleteBucketPolicy: 204 whether or not a policy was set.
pub(super) async fn delete_bucket_policy(
    gw: &Gateway,
    req: S3Request<dto::DeleteBucketPolicyInput>,
) -> S3Result<S3Response<dto::DeleteBucketPolicyOutput>> {
    gw.client
        .update_bucket(&req.input.bucket, |b| {
            b.policy = None;
            Ok(())
        })
        .await
        .map_err(client_error)?;
    Ok(S3Response::new(dto::DeleteBucketPolicyOutput {}))
}

/// GetBucketPolicyStatus: public when a statement allows something to everyone.
pub(super) async fn get_bucket_policy_status(
    gw: &Gateway,
    req: S3Request<dto::GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<dto::GetBucketPolicyStatusOutput>> {
    let bucket = gw
        .client
        .head_bucket(&req.input.bucket)
        .await
        .map_err(client_error)?;
    let text = bucket.policy.ok_or_else(|| no_policy(&bucket.name))?;
    let public = Policy::parse(&bucket.name, &text).is_ok_and(|p| p.is_public());
    Ok(S3Response::new(dto::GetBucketPolicyStatusOutput {
        policy_status: Some(dto::PolicyStatus {
            is_public: Some(public),
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(full: Option<&str>, read: Option<&str>) -> S3Result<Vec<Grant>> {
        grants_from_headers(None, full, read, None, None, None)
    }

    #[test]
    fn grant_headers_parse_ids_and_groups() {
        let grants = headers(
            Some(r#"id="KEY1""#),
            Some(&format!(
                r#"uri="{ALL_USERS}", id=KEY2 ,uri="{AUTHENTICATED_USERS}""#
            )),
        )
        .unwrap();
        assert_eq!(
            grants,
            vec![
                Grant {
                    grantee: Grantee::Key("KEY1".into()),
                    permission: Permission::FullControl
                },
                Grant {
                    grantee: Grantee::AllUsers,
                    permission: Permission::Read
                },
                Grant {
                    grantee: Grantee::Key("KEY2".into()),
                    permission: Permission::Read
                },
                Grant {
                    grantee: Grantee::AuthenticatedUsers,
                    permission: Permission::Read
                },
            ]
        );
        assert!(headers(None, None).unwrap().is_empty());
    }

    #[test]
    fn bad_grant_headers_are_refused_with_their_reason() {
        let code = |r: S3Result<Vec<Grant>>| r.unwrap_err().code().as_str().to_string();
        assert_eq!(
            code(headers(None, Some(r#"emailAddress="a@example.com""#))),
            "NotImplemented"
        );
        assert_eq!(code(headers(None, Some("KEY1"))), "InvalidArgument");
        assert_eq!(code(headers(None, Some(r#"id="""#))), "InvalidArgument");
        assert_eq!(
            code(headers(
                None,
                Some(r#"uri="http://acs.amazonaws.com/groups/s3/LogDelivery""#)
            )),
            "InvalidArgument"
        );
        assert_eq!(
            code(grants_from_headers(
                Some("public-read"),
                None,
                Some(r#"id="K""#),
                None,
                None,
                None
            )),
            "InvalidRequest"
        );
        assert_eq!(
            code(grants_from_headers(
                Some("everyone"),
                None,
                None,
                None,
                None,
                None
            )),
            "InvalidArgument"
        );
    }

    #[test]
    fn canned_acls_map_to_groups() {
        assert_eq!(
            canned_grants("public-read-write").unwrap().len(),
            2,
            "read and write for everyone"
        );
        assert!(canned_grants("private").unwrap().is_empty());
        assert_eq!(
            canned_grants("authenticated-read").unwrap()[0].grantee,
            Grantee::AuthenticatedUsers
        );
    }

    #[test]
    fn bodies_drop_the_owner_and_refuse_email_grantees() {
        let grantee = |type_: &'static str, id: Option<&str>, uri: Option<&str>| dto::Grantee {
            display_name: None,
            email_address: None,
            id: id.map(str::to_string),
            type_: dto::Type::from_static(type_),
            uri: uri.map(str::to_string),
        };
        let grant = |g, p: &'static str| dto::Grant {
            grantee: Some(g),
            permission: Some(dto::Permission::from_static(p)),
        };
        let body = |grants| dto::AccessControlPolicy {
            grants: Some(grants),
            owner: Some(dto::Owner {
                display_name: None,
                id: Some("OWNER".into()),
            }),
        };
        let grants = grants_from_body(
            body(vec![
                grant(
                    grantee(dto::Type::CANONICAL_USER, Some("OWNER"), None),
                    dto::Permission::FULL_CONTROL,
                ),
                grant(
                    grantee(dto::Type::GROUP, None, Some(ALL_USERS)),
                    dto::Permission::READ,
                ),
            ]),
            "OWNER",
        )
        .unwrap();
        assert!(grants.owner_grant);
        assert_eq!(
            grants.grants,
            vec![Grant {
                grantee: Grantee::AllUsers,
                permission: Permission::Read
            }]
        );
        // No grants at all: not even the owner's is listed.
        let none = grants_from_body(body(vec![]), "OWNER").unwrap();
        assert!(!none.owner_grant && none.grants.is_empty());
        let err = grants_from_body(body(vec![]), "SOMEONE-ELSE").unwrap_err();
        assert_eq!(err.code().as_str(), "AccessDenied");
        let err = grants_from_body(
            body(vec![grant(
                grantee(dto::Type::AMAZON_CUSTOMER_BY_EMAIL, None, None),
                dto::Permission::READ,
            )]),
            "OWNER",
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "NotImplemented");
    }
}
