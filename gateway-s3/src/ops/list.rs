//! Listings: ListObjects (v1), ListObjectsV2 and ListObjectVersions.

use base64::Engine as _;
use cairn_client::{version_label, ListPage, ListQuery, VersionId, VersionManifest, VersionsQuery};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::owners::Owners;
use super::{page_size, Gateway};
use crate::convert::{etag, timestamp, url_encode};
use crate::error::client_error;

/// Most entries in one listing page, and the default.
pub(super) const MAX_KEYS: usize = 1000;

const TOKEN: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How names are written in a listing: as they are, or URL-encoded (`encoding-type=url`).
#[derive(Clone, Copy)]
pub(super) struct Names {
    url: bool,
}

impl Names {
    pub(super) fn new(encoding: Option<&EncodingType>) -> S3Result<Names> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Names { url: false }),
            Some(EncodingType::URL) => Ok(Names { url: true }),
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "invalid encoding type `{other}`: use url"
            )),
        }
    }

    pub(super) fn name(self, s: &str) -> String {
        if self.url {
            url_encode(s)
        } else {
            s.to_string()
        }
    }

    pub(super) fn opt(self, s: Option<&str>) -> Option<String> {
        s.map(|s| self.name(s))
    }

    pub(super) fn prefixes(self, prefixes: &[String]) -> Option<CommonPrefixList> {
        Some(
            prefixes
                .iter()
                .map(|p| CommonPrefix {
                    prefix: Some(self.name(p)),
                })
                .collect(),
        )
    }
}

/// An empty delimiter or marker means none.
pub(super) fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// Who the versions of a listing belong to, with their display names.
struct VersionOwners {
    /// Owner of versions written before writers were recorded.
    bucket_owner: String,
    owners: Owners,
}

impl VersionOwners {
    async fn load(
        gw: &Gateway,
        bucket_owner: String,
        versions: &[VersionManifest],
    ) -> S3Result<VersionOwners> {
        let mut ids: Vec<String> = versions.iter().map(|m| m.owner.clone()).collect();
        ids.push(bucket_owner.clone());
        let owners = Owners::load(gw, ids).await?;
        Ok(VersionOwners {
            bucket_owner,
            owners,
        })
    }

    /// The owner shown for a version: its writer, or the bucket's owner for versions written
    /// before writers were recorded.
    fn of(&self, m: &VersionManifest) -> Owner {
        let id = if m.owner.is_empty() {
            &self.bucket_owner
        } else {
            &m.owner
        };
        self.owners.owner(id)
    }
}

/// `owners` is `None` when the listing does not show owners.
fn object_entry(m: &VersionManifest, names: Names, owners: Option<&VersionOwners>) -> Object {
    Object {
        e_tag: Some(etag(&m.etag)),
        key: Some(names.name(&m.key)),
        last_modified: Some(timestamp(m.mtime_ms)),
        owner: owners.map(|o| o.of(m)),
        size: Some(i64::try_from(m.size).unwrap_or(i64::MAX)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// Where a truncated page resumes: the client's marker, else the last entry returned.
fn resume_after(page: &ListPage) -> Option<String> {
    page.next_marker.clone().or_else(|| {
        let last_key = page.objects.last().map(|m| m.key.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        last_key.max(last_prefix)
    })
}

/// ListObjects (v1): `marker` paging; NextMarker is given when a delimiter is used, as in S3
/// (without one, clients resume after the last key).
pub(super) async fn list_objects(
    gw: &Gateway,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let delimiter = non_empty(input.delimiter.as_ref());
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone(),
        start_after: non_empty(input.marker.as_ref()),
        max_keys: page_size(input.max_keys, MAX_KEYS)?,
    };
    let page = gw
        .client
        .list_objects(&input.bucket, &query)
        .await
        .map_err(client_error)?;
    let next_marker = (page.is_truncated && delimiter.is_some())
        .then(|| resume_after(&page))
        .flatten();
    // ListObjects (v1) always shows owners.
    let bucket = gw
        .client
        .head_bucket(&input.bucket)
        .await
        .map_err(client_error)?;
    let owners = VersionOwners::load(gw, bucket.owner, &page.objects).await?;
    let output = ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(names.name(&query.prefix)),
        marker: Some(names.name(input.marker.as_deref().unwrap_or(""))),
        max_keys: Some(i32::try_from(query.max_keys).unwrap_or(i32::MAX)),
        is_truncated: Some(page.is_truncated),
        contents: Some(
            page.objects
                .iter()
                .map(|m| object_entry(m, names, Some(&owners)))
                .collect(),
        ),
        common_prefixes: names.prefixes(&page.common_prefixes),
        delimiter: names.opt(delimiter.as_deref()),
        next_marker: names.opt(next_marker.as_deref()),
        encoding_type: input.encoding_type,
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// ListObjectsV2: continuation tokens are the base64 of the key to resume after.
pub(super) async fn list_objects_v2(
    gw: &Gateway,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let delimiter = non_empty(input.delimiter.as_ref());
    let start_after = match input.continuation_token.as_deref() {
        Some(token) => Some(
            TOKEN
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "the continuation token provided is incorrect"
                    )
                })?,
        ),
        None => non_empty(input.start_after.as_ref()),
    };
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone(),
        start_after,
        max_keys: page_size(input.max_keys, MAX_KEYS)?,
    };
    let page = gw
        .client
        .list_objects(&input.bucket, &query)
        .await
        .map_err(client_error)?;
    let owners = if input.fetch_owner == Some(true) {
        let bucket = gw
            .client
            .head_bucket(&input.bucket)
            .await
            .map_err(client_error)?;
        Some(VersionOwners::load(gw, bucket.owner, &page.objects).await?)
    } else {
        None
    };
    let next_token = page
        .is_truncated
        .then(|| resume_after(&page))
        .flatten()
        .map(|k| TOKEN.encode(k));
    let key_count = page.objects.len() + page.common_prefixes.len();
    let output = ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(names.name(&query.prefix)),
        max_keys: Some(i32::try_from(query.max_keys).unwrap_or(i32::MAX)),
        key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
        continuation_token: input.continuation_token,
        is_truncated: Some(page.is_truncated),
        next_continuation_token: next_token,
        contents: Some(
            page.objects
                .iter()
                .map(|m| object_entry(m, names, owners.as_ref()))
                .collect(),
        ),
        common_prefixes: names.prefixes(&page.common_prefixes),
        delimiter: names.opt(delimiter.as_deref()),
        encoding_type: input.encoding_type,
        start_after: names.opt(input.start_after.as_deref()),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// The id of `key`'s null version, for a `versionIdMarker` of `null`.
async fn null_version_id(gw: &Gateway, bucket: &str, key: &str) -> S3Result<Option<VersionId>> {
    let mut query = VersionsQuery {
        prefix: key.to_string(),
        max_keys: MAX_KEYS,
        ..Default::default()
    };
    loop {
        let page = gw
            .client
            .list_versions(bucket, &query)
            .await
            .map_err(client_error)?;
        for v in &page.versions {
            if v.key != key {
                return Ok(None);
            }
            if v.null_version {
                return Ok(Some(v.version));
            }
        }
        if !page.is_truncated {
            return Ok(None);
        }
        query.key_marker = page.next_key_marker;
        query.version_marker = page.next_version_marker;
    }
}

/// ListObjectVersions: versions and delete markers, newest first per key, with IsLatest.
pub(super) async fn list_object_versions(
    gw: &Gateway,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let delimiter = non_empty(input.delimiter.as_ref());
    let key_marker = non_empty(input.key_marker.as_ref());
    let version_marker = match (non_empty(input.version_id_marker.as_ref()), &key_marker) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(s3_error!(
                InvalidArgument,
                "a version-id marker cannot be specified without a key marker"
            ))
        }
        (Some(v), Some(key)) if v == "null" => null_version_id(gw, &input.bucket, key).await?,
        (Some(v), Some(_)) => Some(
            v.parse::<VersionId>()
                .map_err(|e| s3_error!(InvalidArgument, "invalid version id marker: {e}"))?,
        ),
    };
    let query = VersionsQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: delimiter.clone(),
        key_marker: key_marker.clone(),
        version_marker,
        max_keys: page_size(input.max_keys, MAX_KEYS)?,
    };
    let page = gw
        .client
        .list_versions(&input.bucket, &query)
        .await
        .map_err(client_error)?;

    let bucket = gw
        .client
        .head_bucket(&input.bucket)
        .await
        .map_err(client_error)?;
    let owners = VersionOwners::load(gw, bucket.owner, &page.versions).await?;
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    // The page starts mid-key when resuming after a version: that key's newest is not here.
    let mut previous_key = version_marker.and(key_marker.clone());
    for m in &page.versions {
        let is_latest = previous_key.as_deref() != Some(m.key.as_str());
        previous_key = Some(m.key.clone());
        if m.delete_marker {
            markers.push(DeleteMarkerEntry {
                is_latest: Some(is_latest),
                key: Some(names.name(&m.key)),
                last_modified: Some(timestamp(m.mtime_ms)),
                owner: Some(owners.of(m)),
                version_id: Some(version_label(m)),
            });
        } else {
            versions.push(ObjectVersion {
                e_tag: Some(etag(&m.etag)),
                is_latest: Some(is_latest),
                key: Some(names.name(&m.key)),
                last_modified: Some(timestamp(m.mtime_ms)),
                owner: Some(owners.of(m)),
                size: Some(i64::try_from(m.size).unwrap_or(i64::MAX)),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some(version_label(m)),
                ..Default::default()
            });
        }
    }
    let next_version_id_marker = page.next_version_marker.map(|v| {
        page.versions
            .iter()
            .find(|m| m.version == v)
            .map_or_else(|| v.to_string(), version_label)
    });
    let output = ListObjectVersionsOutput {
        common_prefixes: names.prefixes(&page.common_prefixes),
        delete_markers: Some(markers),
        delimiter: names.opt(delimiter.as_deref()),
        encoding_type: input.encoding_type,
        is_truncated: Some(page.is_truncated),
        key_marker: Some(names.name(key_marker.as_deref().unwrap_or(""))),
        max_keys: Some(i32::try_from(query.max_keys).unwrap_or(i32::MAX)),
        name: Some(input.bucket),
        next_key_marker: names.opt(page.next_key_marker.as_deref()),
        next_version_id_marker,
        prefix: Some(names.name(&query.prefix)),
        version_id_marker: input.version_id_marker,
        versions: Some(versions),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}
