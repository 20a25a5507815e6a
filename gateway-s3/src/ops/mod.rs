//! The S3 operations: [`Gateway`] implements s3s's `S3` trait by delegating each operation to
//! its family's file. Operations not listed here answer NotImplemented (s3s's default).
//!
//! - [`bucket`] — ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
//!   PutBucketVersioning, GetBucketVersioning.
//! - [`object`] — PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.
//! - [`list`] — ListObjects (v1), ListObjectsV2, ListObjectVersions.
//! - [`copy`] — CopyObject.
//! - [`multipart`] — CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//!   AbortMultipartUpload, ListParts, ListMultipartUploads.

/// The options of a request that creates an object — PutObject and CreateMultipartUpload have
/// different input types with the same fields — after refusing what the gateway does not
/// support: owner, content headers, metadata, tags, ACL and object lock (checksum and length
/// are the caller's).
macro_rules! new_object_options {
    ($headers:expr, $input:expr, $owner:expr) => {{
        $crate::ops::object::refuse_unsupported(
            $input.server_side_encryption.as_ref(),
            $input.sse_customer_algorithm.as_ref(),
        )?;
        cairn_client::PutOptions {
            headers: $crate::convert::content_headers(
                &$headers,
                $input.content_type,
                $input.cache_control,
                $input.content_disposition,
                $input.content_encoding,
                $input.content_language,
            ),
            user_metadata: $crate::convert::user_metadata($input.metadata),
            tags: $crate::convert::tagging($input.tagging.as_deref())?,
            content_md5: None,
            content_length: None,
            owner: $owner,
            acl: $crate::ops::acl::object_grants(
                $input.acl.as_ref(),
                $input.grant_full_control.as_ref(),
                $input.grant_read.as_ref(),
                $input.grant_read_acp.as_ref(),
                $input.grant_write_acp.as_ref(),
            )?,
            lock: $crate::ops::lock::lock_from_request(
                $input.object_lock_mode.as_ref(),
                $input.object_lock_retain_until_date.as_ref(),
                $input.object_lock_legal_hold_status.as_ref(),
            )?,
        }
    }};
}

mod acl;
mod bucket;
mod copy;
mod list;
mod lock;
mod multipart;
mod object;

use std::sync::Arc;

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};

use crate::S3Config;

/// The S3 service over a cairn client.
pub(crate) struct Gateway {
    /// The object store.
    client: cairn_client::Client,
    /// Gateway settings (region).
    config: Arc<S3Config>,
}

impl Gateway {
    pub(crate) fn new(client: cairn_client::Client, config: Arc<S3Config>) -> Gateway {
        Gateway { client, config }
    }
}

/// The access key id that signed a request (the access check refuses anonymous requests, so
/// this only fails if that check is bypassed).
fn requester<T>(req: &S3Request<T>) -> S3Result<String> {
    req.credentials
        .as_ref()
        .map(|c| c.access_key.clone())
        .ok_or_else(|| {
            s3_error!(
                AccessDenied,
                "anonymous access is not allowed: sign the request"
            )
        })
}

/// A `max-keys`-style parameter: default when absent, at most `limit`, never negative.
fn page_size(value: Option<i32>, limit: usize) -> S3Result<usize> {
    match value {
        None => Ok(limit),
        Some(n) => usize::try_from(n)
            .map(|n| n.min(limit))
            .map_err(|_| s3_error!(InvalidArgument, "a maximum count must not be negative")),
    }
}

type Res<T> = S3Result<S3Response<T>>;

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> Res<ListBucketsOutput> {
        bucket::list_buckets(self, req).await
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> Res<CreateBucketOutput> {
        bucket::create_bucket(self, req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> Res<HeadBucketOutput> {
        bucket::head_bucket(self, req).await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> Res<DeleteBucketOutput> {
        bucket::delete_bucket(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> Res<GetBucketLocationOutput> {
        bucket::get_bucket_location(self, req).await
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> Res<PutBucketVersioningOutput> {
        bucket::put_bucket_versioning(self, req).await
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> Res<GetBucketVersioningOutput> {
        bucket::get_bucket_versioning(self, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> Res<PutObjectOutput> {
        object::put_object(self, req).await
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> Res<GetObjectOutput> {
        object::get_object(self, req).await
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> Res<HeadObjectOutput> {
        object::head_object(self, req).await
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> Res<DeleteObjectOutput> {
        object::delete_object(self, req).await
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> Res<DeleteObjectsOutput> {
        object::delete_objects(self, req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> Res<ListObjectsOutput> {
        list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> Res<ListObjectsV2Output> {
        list::list_objects_v2(self, req).await
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> Res<ListObjectVersionsOutput> {
        list::list_object_versions(self, req).await
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> Res<CopyObjectOutput> {
        copy::copy_object(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> Res<CreateMultipartUploadOutput> {
        multipart::create_multipart_upload(self, req).await
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> Res<UploadPartOutput> {
        multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> Res<CompleteMultipartUploadOutput> {
        multipart::complete_multipart_upload(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> Res<AbortMultipartUploadOutput> {
        multipart::abort_multipart_upload(self, req).await
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> Res<ListPartsOutput> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> Res<ListMultipartUploadsOutput> {
        multipart::list_multipart_uploads(self, req).await
    }

    // ---- access: ACLs and bucket policies (acl.rs, policy.rs) ----

    // ---- object data: checksums, attributes (object.rs, attributes.rs) ----

    // ---- bucket configuration: tagging, CORS, lifecycle, object lock (config.rs, lock.rs) ----
}
