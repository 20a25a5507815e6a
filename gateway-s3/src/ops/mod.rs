//! The S3 operations: [`Gateway`] implements s3s's `S3` trait by delegating each operation to
//! its family's file. Operations not listed here answer NotImplemented (s3s's default).
//!
//! - [`bucket`] — ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
//!   PutBucketVersioning, GetBucketVersioning.
//! - [`object`] — PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.
//! - [`list`] — ListObjects (v1), ListObjectsV2, ListObjectVersions.
//! - [`copy`] — CopyObject.
//! - [`acl`] — GetBucketAcl, PutBucketAcl, GetObjectAcl, PutObjectAcl, PutBucketPolicy,
//!   GetBucketPolicy, DeleteBucketPolicy, GetBucketPolicyStatus (access decisions themselves are
//!   made before an operation runs, in `crate::access`).
//! - [`multipart`] — CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//!   AbortMultipartUpload, ListParts, ListMultipartUploads.
//! - [`public_access`] — Put/Get/DeletePublicAccessBlock, Put/Get/DeleteBucketOwnershipControls
//!   (their effects on ACLs, policies and owners are in `crate::public` and `crate::access`).

/// The options of a request that creates an object — PutObject and CreateMultipartUpload have
/// different input types with the same fields — after refusing what the gateway does not
/// support: owner, content headers, metadata, tags, ACL, object lock and server-side
/// encryption (checksum and length are the caller's). The ACL must pass the bucket's
/// PublicAccessBlock and Object Ownership (`$controls`), which also decide the owner.
macro_rules! new_object_options {
    ($headers:expr, $input:expr, $owner:expr, $controls:expr) => {{
        let encryption = $crate::sse::write_request(
            $input.server_side_encryption.as_ref(),
            $input.ssekms_key_id.as_ref(),
            $input.ssekms_encryption_context.as_ref(),
            $input.bucket_key_enabled,
            $crate::sse::customer_key(
                $input.sse_customer_algorithm.as_ref(),
                $input.sse_customer_key.as_ref(),
                $input.sse_customer_key_md5.as_ref(),
            )?,
        )?;
        let acl = $crate::ops::acl::object_grants(
            $input.acl.as_ref(),
            $input.grant_full_control.as_ref(),
            $input.grant_read.as_ref(),
            $input.grant_read_acp.as_ref(),
            $input.grant_write_acp.as_ref(),
        )?;
        let canned = $input.acl.as_ref().map(|c| c.as_str());
        $controls.check_acl(canned, &acl)?;
        let owner = $controls.object_owner($owner, canned);
        let acl = if $controls.acls_disabled() {
            Vec::new()
        } else {
            acl
        };
        cairn_client::PutOptions {
            encryption,
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
            checksum: None,
            condition: None,
            owner,
            acl,
            lock: $crate::ops::lock::lock_from_request(
                $input.object_lock_mode.as_ref(),
                $input.object_lock_retain_until_date.as_ref(),
                $input.object_lock_legal_hold_status.as_ref(),
            )?,
        }
    }};
}

mod acl;
mod attributes;
mod bucket;
mod config;
mod copy;
mod list;
mod lock;
mod multipart;
mod object;
mod owners;
mod public_access;

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

/// Who a request acts as: the access key id that signed it or, for an anonymous request the
/// access check let through (a public-read-write bucket, a policy Allow), the bucket's owner,
/// who then owns what the request writes.
fn requester<T>(req: &S3Request<T>) -> S3Result<String> {
    if let Some(c) = req.credentials.as_ref() {
        return Ok(c.access_key.clone());
    }
    req.extensions
        .get::<crate::access::BucketOwner>()
        .map(|o| o.0.clone())
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

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> Res<UploadPartCopyOutput> {
        copy::upload_part_copy(self, req).await
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

    // ---- access: ACLs, bucket policies, public access block and ownership (acl.rs,
    // public_access.rs) ----

    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> Res<GetBucketAclOutput> {
        acl::get_bucket_acl(self, req).await
    }

    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> Res<PutBucketAclOutput> {
        acl::put_bucket_acl(self, req).await
    }

    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> Res<GetObjectAclOutput> {
        acl::get_object_acl(self, req).await
    }

    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> Res<PutObjectAclOutput> {
        acl::put_object_acl(self, req).await
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> Res<PutBucketPolicyOutput> {
        acl::put_bucket_policy(self, req).await
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> Res<GetBucketPolicyOutput> {
        acl::get_bucket_policy(self, req).await
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> Res<DeleteBucketPolicyOutput> {
        acl::delete_bucket_policy(self, req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> Res<GetBucketPolicyStatusOutput> {
        acl::get_bucket_policy_status(self, req).await
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> Res<PutPublicAccessBlockOutput> {
        public_access::put_public_access_block(self, req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> Res<GetPublicAccessBlockOutput> {
        public_access::get_public_access_block(self, req).await
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> Res<DeletePublicAccessBlockOutput> {
        public_access::delete_public_access_block(self, req).await
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> Res<PutBucketOwnershipControlsOutput> {
        public_access::put_bucket_ownership_controls(self, req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> Res<GetBucketOwnershipControlsOutput> {
        public_access::get_bucket_ownership_controls(self, req).await
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> Res<DeleteBucketOwnershipControlsOutput> {
        public_access::delete_bucket_ownership_controls(self, req).await
    }

    // ---- object data: checksums, attributes (object.rs, attributes.rs) ----

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> Res<GetObjectAttributesOutput> {
        attributes::get_object_attributes(self, req).await
    }

    // ---- bucket configuration: tagging, CORS, lifecycle, object lock (config.rs, lock.rs) ----

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> Res<PutBucketEncryptionOutput> {
        config::put_bucket_encryption(self, req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> Res<GetBucketEncryptionOutput> {
        config::get_bucket_encryption(self, req).await
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> Res<DeleteBucketEncryptionOutput> {
        config::delete_bucket_encryption(self, req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> Res<PutBucketTaggingOutput> {
        config::put_bucket_tagging(self, req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> Res<GetBucketTaggingOutput> {
        config::get_bucket_tagging(self, req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> Res<DeleteBucketTaggingOutput> {
        config::delete_bucket_tagging(self, req).await
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> Res<PutObjectTaggingOutput> {
        config::put_object_tagging(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> Res<GetObjectTaggingOutput> {
        config::get_object_tagging(self, req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> Res<DeleteObjectTaggingOutput> {
        config::delete_object_tagging(self, req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> Res<PutBucketCorsOutput> {
        config::put_bucket_cors(self, req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> Res<GetBucketCorsOutput> {
        config::get_bucket_cors(self, req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> Res<DeleteBucketCorsOutput> {
        config::delete_bucket_cors(self, req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> Res<PutBucketLifecycleConfigurationOutput> {
        config::put_bucket_lifecycle_configuration(self, req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> Res<GetBucketLifecycleConfigurationOutput> {
        config::get_bucket_lifecycle_configuration(self, req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> Res<DeleteBucketLifecycleOutput> {
        config::delete_bucket_lifecycle(self, req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> Res<PutObjectLockConfigurationOutput> {
        lock::put_object_lock_configuration(self, req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> Res<GetObjectLockConfigurationOutput> {
        lock::get_object_lock_configuration(self, req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> Res<PutObjectRetentionOutput> {
        lock::put_object_retention(self, req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> Res<GetObjectRetentionOutput> {
        lock::get_object_retention(self, req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> Res<PutObjectLegalHoldOutput> {
        lock::put_object_legal_hold(self, req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> Res<GetObjectLegalHoldOutput> {
        lock::get_object_legal_hold(self, req).await
    }
}
