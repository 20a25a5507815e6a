//! Multipart uploads: the upload records, their parts, and completing an upload into a version
//! in the same batch that removes it.

use cairn_core::format::Versioned;
use cairn_core::manifest::{Part, Upload, VersionManifest};
use rocksdb::ReadOptions;

use crate::db::{Txn, CF_PARTS, CF_UPLOADS};
use crate::keys;
use crate::{ManifestError, ManifestStore};

/// Highest part number S3 allows.
const MAX_PART_NUMBER: u32 = 10_000;
/// Most parts one `list_parts` call returns.
const MAX_LIST_PARTS: usize = 1000;

impl ManifestStore {
    pub(crate) fn create_upload_impl(&self, upload: &Upload) -> Result<(), ManifestError> {
        keys::check_bucket(&upload.bucket)?;
        keys::check_key(&upload.key)?;
        keys::check_upload_id(&upload.upload_id)?;
        let mut txn = self.begin();
        self.require_bucket(&upload.bucket)?;
        txn.batch.put_cf(
            self.cf(CF_UPLOADS),
            keys::upload_key(&upload.bucket, &upload.key, &upload.upload_id),
            upload.encode(),
        );
        self.commit(txn)
    }

    /// `NoSuchUpload` unless the upload exists (checked under the write lock).
    fn require_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<u8>, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        keys::check_upload_id(upload_id)?;
        let ukey = keys::upload_key(bucket, key, upload_id);
        if self.db.get_pinned_cf(self.cf(CF_UPLOADS), &ukey)?.is_none() {
            return Err(ManifestError::NoSuchUpload(upload_id.to_string()));
        }
        Ok(ukey)
    }

    pub(crate) fn put_part_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError> {
        if part.number == 0 || part.number > MAX_PART_NUMBER {
            return Err(ManifestError::Invalid(format!(
                "part number {} is out of range: use 1 to {MAX_PART_NUMBER}",
                part.number
            )));
        }
        let mut txn = self.begin();
        self.require_upload(bucket, key, upload_id)?;
        let pkey = keys::part_key(upload_id, part.number);
        let old = self.get_rec::<Part>(CF_PARTS, &pkey)?;
        txn.batch.put_cf(self.cf(CF_PARTS), pkey, part.encode());
        self.commit(txn)?;
        Ok(old)
    }

    /// Parts of an upload with number > `after`, ascending, at most `max`, with their keys.
    fn scan_parts(
        &self,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<(Vec<u8>, Part)>, ManifestError> {
        keys::check_upload_id(upload_id)?;
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = keys::parts_prefix(upload_id);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.clone());
        if let Some(end) = keys::prefix_end(&prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_PARTS), ro);
        it.seek(keys::part_key(upload_id, first));
        let mut out = Vec::new();
        while out.len() < max {
            let Some((k, v)) = it.item() else { break };
            out.push((k.to_vec(), Part::decode(v)?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    pub(crate) fn list_parts_impl(
        &self,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        let parts = self.scan_parts(upload_id, after, max.min(MAX_LIST_PARTS))?;
        Ok(parts.into_iter().map(|(_, p)| p).collect())
    }

    /// Adds the removal of the upload record and all its parts to the mutation.
    fn remove_upload_in(
        &self,
        txn: &mut Txn<'_>,
        ukey: &[u8],
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        txn.batch.delete_cf(self.cf(CF_UPLOADS), ukey);
        let parts = self.scan_parts(upload_id, 0, usize::MAX)?;
        let cf = self.cf(CF_PARTS);
        Ok(parts
            .into_iter()
            .map(|(k, p)| {
                txn.batch.delete_cf(cf, k);
                p
            })
            .collect())
    }

    pub(crate) fn abort_upload_impl(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        let mut txn = self.begin();
        let ukey = self.require_upload(bucket, key, upload_id)?;
        let parts = self.remove_upload_in(&mut txn, &ukey, upload_id)?;
        self.commit(txn)?;
        Ok(parts)
    }

    pub(crate) fn complete_upload_impl(
        &self,
        upload_id: &str,
        m: &VersionManifest,
    ) -> Result<Vec<VersionManifest>, ManifestError> {
        let mut txn = self.begin();
        let ukey = self.require_upload(&m.bucket, &m.key, upload_id)?;
        let (_, replaced) = self.apply_in(&mut txn, m)?;
        self.remove_upload_in(&mut txn, &ukey, upload_id)?;
        self.commit(txn)?;
        Ok(replaced)
    }
}
