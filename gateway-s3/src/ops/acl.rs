//! ACLs: canned ACLs and `x-amz-grant-*` headers mapped onto Cairn's grant model
//! ([`cairn_core::manifest::Grant`]).

use cairn_core::manifest::{Grant, Grantee, Permission};
use s3s::dto::ObjectCannedACL;
use s3s::{s3_error, S3Result};

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

/// The ACL of a new object from its request's `x-amz-acl` header.
pub(crate) fn object_grants(canned: Option<&ObjectCannedACL>) -> S3Result<Vec<Grant>> {
    match canned {
        None => Ok(Vec::new()),
        Some(c) => canned_grants(c.as_str()),
    }
}
