//! PublicAccessBlock and Object Ownership: which ACLs and policies a bucket refuses, which
//! grants the access decision leaves out, and who owns what is written.
//!
//! A grant is public when it is to everyone (AllUsers) or to any signed request
//! (AuthenticatedUsers), as S3 defines it; a policy is public when
//! [`crate::policy::Policy::is_public`] says so. A bucket without an Object Ownership setting
//! behaves as ObjectWriter: ACLs apply and the writer owns what it writes.

use cairn_core::manifest::{Bucket, Grant, Grantee, ObjectOwnership, Permission};
use s3s::{s3_error, S3Error, S3Result};

/// The canned ACL that gives the bucket owner full control of an object.
pub(crate) const BUCKET_OWNER_FULL_CONTROL: &str = "bucket-owner-full-control";

/// What the access check read of a bucket's controls, left in the request's extensions for
/// the operations that write ACLs or objects (they need no second bucket lookup).
#[derive(Clone, Debug)]
pub(crate) struct BucketControls {
    /// The bucket owner's access key id.
    pub(crate) owner: String,
    /// BlockPublicAcls is on.
    pub(crate) block_public_acls: bool,
    /// Object Ownership, `None` when not set.
    pub(crate) ownership: Option<ObjectOwnership>,
}

impl BucketControls {
    pub(crate) fn of(bucket: &Bucket) -> BucketControls {
        BucketControls {
            owner: bucket.owner.clone(),
            block_public_acls: bucket
                .public_access_block
                .is_some_and(|b| b.block_public_acls),
            ownership: bucket.ownership,
        }
    }

    /// Whether ACLs are disabled (BucketOwnerEnforced).
    pub(crate) fn acls_disabled(&self) -> bool {
        self.ownership == Some(ObjectOwnership::BucketOwnerEnforced)
    }

    /// Refuses PutBucketAcl and PutObjectAcl on a bucket whose ACLs are disabled.
    pub(crate) fn check_acl_change(&self) -> S3Result<()> {
        if self.acls_disabled() {
            return Err(acl_not_supported());
        }
        Ok(())
    }

    /// Checks the ACL a request sets, as a canned name or as grants: with ACLs disabled only
    /// none or the bucket owner's full control is accepted (400 AccessControlListNotSupported);
    /// with BlockPublicAcls a public grant is 403 AccessDenied.
    pub(crate) fn check_acl(&self, canned: Option<&str>, grants: &[Grant]) -> S3Result<()> {
        if self.acls_disabled() {
            let owner_only = grants.iter().all(|g| {
                g.grantee == Grantee::Key(self.owner.clone())
                    && g.permission == Permission::FullControl
            });
            if canned.is_some_and(|c| c != BUCKET_OWNER_FULL_CONTROL) || !owner_only {
                return Err(acl_not_supported());
            }
        }
        if self.block_public_acls && grants.iter().any(is_public_grant) {
            return Err(s3_error!(
                AccessDenied,
                "access denied: the bucket's PublicAccessBlock blocks public ACLs \
                 (BlockPublicAcls); grant to access keys instead, or turn the setting off"
            ));
        }
        Ok(())
    }

    /// Who owns an object written by `writer` with the canned ACL `canned`: the bucket owner
    /// when ACLs are disabled, or with BucketOwnerPreferred when the canned ACL is
    /// bucket-owner-full-control; the writer otherwise.
    pub(crate) fn object_owner(&self, writer: String, canned: Option<&str>) -> String {
        match self.ownership {
            Some(ObjectOwnership::BucketOwnerEnforced) => self.owner.clone(),
            Some(ObjectOwnership::BucketOwnerPreferred)
                if canned == Some(BUCKET_OWNER_FULL_CONTROL) =>
            {
                self.owner.clone()
            }
            _ => writer,
        }
    }
}

/// The controls the access check left in a request's extensions.
pub(crate) fn controls<T>(req: &s3s::S3Request<T>) -> S3Result<BucketControls> {
    req.extensions
        .get::<BucketControls>()
        .cloned()
        .ok_or_else(|| s3_error!(InternalError, "the access check left no bucket controls"))
}

/// S3's answer to an ACL on a bucket whose ACLs are disabled.
pub(crate) fn acl_not_supported() -> S3Error {
    s3_error!(
        AccessControlListNotSupported,
        "the bucket does not allow ACLs (its Object Ownership is BucketOwnerEnforced): send no \
         ACL or bucket-owner-full-control, and grant access with a bucket policy"
    )
}

/// Whether a grant is public: to everyone or to any signed request.
pub(crate) fn is_public_grant(g: &Grant) -> bool {
    matches!(g.grantee, Grantee::AllUsers | Grantee::AuthenticatedUsers)
}

/// Whether a grant of `bucket` (or of one of its objects) counts in access decisions: none does
/// when ACLs are disabled, public ones do not under IgnorePublicAcls.
pub(crate) fn grant_counts(bucket: &Bucket, g: &Grant) -> bool {
    if bucket.acls_disabled() {
        return false;
    }
    let ignore_public = bucket
        .public_access_block
        .is_some_and(|b| b.ignore_public_acls);
    !(ignore_public && is_public_grant(g))
}

/// Whether RestrictPublicBuckets is on: a public policy then allows only through its
/// statements that name keys.
pub(crate) fn restricts_public_policy(bucket: &Bucket) -> bool {
    bucket
        .public_access_block
        .is_some_and(|b| b.restrict_public_buckets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::manifest::PublicAccessBlock;

    fn grant(grantee: Grantee, permission: Permission) -> Grant {
        Grant {
            grantee,
            permission,
        }
    }

    #[test]
    fn enforced_ownership_takes_only_the_owners_full_control() {
        let c = BucketControls {
            owner: "OWNER".into(),
            block_public_acls: false,
            ownership: Some(ObjectOwnership::BucketOwnerEnforced),
        };
        assert!(c.check_acl(None, &[]).is_ok());
        assert!(c.check_acl(Some(BUCKET_OWNER_FULL_CONTROL), &[]).is_ok());
        let owner_full = grant(Grantee::Key("OWNER".into()), Permission::FullControl);
        assert!(c.check_acl(None, &[owner_full]).is_ok());
        let code = |r: S3Result<()>| r.unwrap_err().code().as_str().to_string();
        assert_eq!(
            code(c.check_acl(Some("private"), &[])),
            "AccessControlListNotSupported"
        );
        let other = grant(Grantee::Key("K2".into()), Permission::Read);
        assert_eq!(
            code(c.check_acl(None, &[other])),
            "AccessControlListNotSupported"
        );
        assert_eq!(code(c.check_acl_change()), "AccessControlListNotSupported");
        assert_eq!(c.object_owner("K2".into(), None), "OWNER");
    }

    #[test]
    fn preferred_ownership_follows_the_canned_acl() {
        let c = BucketControls {
            owner: "OWNER".into(),
            block_public_acls: true,
            ownership: Some(ObjectOwnership::BucketOwnerPreferred),
        };
        assert_eq!(
            c.object_owner("K2".into(), Some(BUCKET_OWNER_FULL_CONTROL)),
            "OWNER"
        );
        assert_eq!(c.object_owner("K2".into(), Some("private")), "K2");
        let public = grant(Grantee::AuthenticatedUsers, Permission::Read);
        let err = c
            .check_acl(Some("authenticated-read"), &[public])
            .unwrap_err();
        assert_eq!(err.code().as_str(), "AccessDenied");
        assert!(c.check_acl_change().is_ok());
    }

    #[test]
    fn ignored_and_disabled_grants_do_not_count() {
        let mut b = Bucket::new("b", "OWNER", 1);
        let public = grant(Grantee::AllUsers, Permission::Read);
        let key = grant(Grantee::Key("K2".into()), Permission::Read);
        assert!(grant_counts(&b, &public) && grant_counts(&b, &key));
        b.public_access_block = Some(PublicAccessBlock {
            ignore_public_acls: true,
            ..Default::default()
        });
        assert!(!grant_counts(&b, &public) && grant_counts(&b, &key));
        b.ownership = Some(ObjectOwnership::BucketOwnerEnforced);
        assert!(!grant_counts(&b, &key));
    }
}
