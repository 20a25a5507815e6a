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

/// The ACL a request asks for with `x-amz-acl` (canned) or the `x-amz-grant-*` headers
/// (which cannot be combined with a canned ACL).
pub(crate) fn grants_from_headers(
    canned: Option<&str>,
    full_control: Option<&str>,
    read: Option<&str>,
    write: Option<&str>,
    read_acp: Option<&str>,
    write_acp: Option<&str>,
) -> S3Result<Vec<Grant>> {
    if [full_control, read, write, read_acp, write_acp]
        .iter()
        .any(Option::is_some)
    {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-grant-* headers are not supported yet: use a canned ACL"
        ));
    }
    match canned {
        None => Ok(Vec::new()),
        Some(c) => canned_grants(c),
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
