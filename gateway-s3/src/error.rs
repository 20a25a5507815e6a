//! The one place where client errors become S3 errors (code, status and extra headers).

use cairn_client::ClientError;
use http::{HeaderMap, HeaderValue};
use s3s::{S3Error, S3ErrorCode};
use tracing::error;

/// Maps a client error to the S3 error a client expects.
pub(crate) fn client_error(e: ClientError) -> S3Error {
    use ClientError as E;
    let message = e.to_string();
    let code = match &e {
        E::NoSuchBucket(_) => S3ErrorCode::NoSuchBucket,
        E::NoSuchKey { delete_marker, .. } => {
            let mut err = S3Error::with_message(S3ErrorCode::NoSuchKey, message);
            if let Some(version) = delete_marker {
                err.set_headers(delete_marker_headers(version));
            }
            return err;
        }
        E::NoSuchVersion { .. } => S3ErrorCode::NoSuchVersion,
        E::MethodNotAllowed { version } => {
            let mut err = S3Error::with_message(S3ErrorCode::MethodNotAllowed, message);
            let mut headers = delete_marker_headers(version);
            headers.insert(http::header::ALLOW, HeaderValue::from_static("DELETE"));
            err.set_headers(headers);
            return err;
        }
        E::BucketAlreadyOwnedByYou(_) => S3ErrorCode::BucketAlreadyOwnedByYou,
        E::BucketAlreadyExists(_) => S3ErrorCode::BucketAlreadyExists,
        E::BucketNotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        E::InvalidBucketName(_) => S3ErrorCode::InvalidBucketName,
        E::KeyTooLong => S3ErrorCode::KeyTooLongError,
        E::NoSuchUpload(_) => S3ErrorCode::NoSuchUpload,
        E::InvalidPart(_) => S3ErrorCode::InvalidPart,
        E::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        E::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        E::EntityTooLarge(_) => S3ErrorCode::EntityTooLarge,
        E::InvalidRange { .. } => S3ErrorCode::InvalidRange,
        E::BadDigest => S3ErrorCode::BadDigest,
        E::IncompleteBody(_) => S3ErrorCode::IncompleteBody,
        E::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        E::AccessDenied(_) => S3ErrorCode::AccessDenied,
        E::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
        E::InvalidBucketState(_) => S3ErrorCode::InvalidBucketState,
        E::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        E::NoSpace(_) => {
            // 507: what S3-compatible stores answer when a write does not fit; clients
            // retry it later, and the message says how to make room.
            return custom_error(
                "InsufficientStorage",
                http::StatusCode::INSUFFICIENT_STORAGE,
                &message,
            );
        }
        E::QuotaExceeded(_) => {
            // Ceph RGW's code and status for a write past a bucket quota: clients do not
            // retry a 403, and the message says how to make room.
            return custom_error("QuotaExceeded", http::StatusCode::FORBIDDEN, &message);
        }
        E::KmsDisabled(_) => {
            return custom_error(
                "KMS.DisabledException",
                http::StatusCode::BAD_REQUEST,
                &message,
            )
        }
        E::KmsNotFound(_) => {
            return custom_error(
                "KMS.NotFoundException",
                http::StatusCode::BAD_REQUEST,
                &message,
            )
        }
        E::Corrupt(_) | E::Storage(_) => {
            // Details go to the log, not to the client.
            error!(error = %e, "object store failure");
            return S3Error::with_message(
                S3ErrorCode::InternalError,
                "we encountered an internal error, please try again",
            );
        }
    };
    S3Error::with_message(code, message)
}

/// Headers of a 404/405 caused by a delete marker. They replace the response's headers, so
/// the XML content type is set here too.
fn delete_marker_headers(version: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    headers.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(version) {
        headers.insert("x-amz-version-id", v);
    }
    headers
}

/// An error with a code s3s has no variant for, and its HTTP status.
pub(crate) fn custom_error(code: &'static str, status: http::StatusCode, message: &str) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom(code.into()), message.to_string());
    err.set_status_code(status);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_s3() {
        let cases = [
            (ClientError::NoSuchBucket("b".into()), "NoSuchBucket", 404),
            (
                ClientError::BucketNotEmpty("b".into()),
                "BucketNotEmpty",
                409,
            ),
            (ClientError::InvalidRange { size: 3 }, "InvalidRange", 416),
            (ClientError::KeyTooLong, "KeyTooLongError", 400),
            (ClientError::InvalidPartOrder, "InvalidPartOrder", 400),
            (ClientError::Storage("disk".into()), "InternalError", 500),
            (
                ClientError::NoSpace("full".into()),
                "InsufficientStorage",
                507,
            ),
            (
                ClientError::MethodNotAllowed {
                    version: "v".into(),
                },
                "MethodNotAllowed",
                405,
            ),
        ];
        for (e, code, status) in cases {
            let err = client_error(e);
            assert_eq!(err.code().as_str(), code);
            assert_eq!(err.status_code().map(|s| s.as_u16()), Some(status));
        }
    }

    #[test]
    fn delete_marker_adds_headers() {
        let err = client_error(ClientError::NoSuchKey {
            key: "k".into(),
            delete_marker: Some("abc".into()),
        });
        let headers = err.headers().unwrap();
        assert_eq!(headers["x-amz-delete-marker"], "true");
        assert_eq!(headers["x-amz-version-id"], "abc");
    }
}
