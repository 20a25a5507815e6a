//! The listing engine shared by ListObjects, ListObjectVersions and ListMultipartUploads: one
//! bounded range scan over a table keyed by `bucket 0x00 escaped(key) ...`, with S3's prefix,
//! delimiter and marker rules. A common prefix is emitted once, then the scan seeks past every
//! record under it instead of iterating them.

use cairn_core::format::Versioned;
use cairn_core::manifest::{Upload, VersionManifest};
use rocksdb::{DBRawIteratorWithThreadMode, DBWithThreadMode, ReadOptions, SingleThreaded};

use crate::db::{CF_CURRENT, CF_UPLOADS, CF_VERSIONS};
use crate::keys;
use crate::list::{ListPage, ListQuery, UploadsPage, UploadsQuery, VersionsPage, VersionsQuery};
use crate::{ManifestError, ManifestStore};

/// Most entries one listing page returns, whatever the query asks.
const MAX_PAGE: usize = 1000;

/// One listing entry.
enum Entry {
    /// A record: its object key and stored value.
    Record { key: String, value: Vec<u8> },
    /// A common prefix standing for every record under it.
    Prefix(String),
}

/// A scan in progress.
struct Scan<'a> {
    it: DBRawIteratorWithThreadMode<'a, DBWithThreadMode<SingleThreaded>>,
    /// `bucket 0x00`.
    bucket_prefix: Vec<u8>,
    prefix: &'a str,
    /// Non-empty delimiter, if any.
    delimiter: Option<&'a str>,
    /// Common prefixes not greater than this were returned by an earlier page.
    marker: Option<&'a str>,
    /// Nothing more can follow.
    done: bool,
}

impl<'a> Scan<'a> {
    /// Starts at the first record under `prefix` at or after `from` (a database key).
    fn new(
        store: &'a ManifestStore,
        cf: &str,
        bucket: &str,
        prefix: &'a str,
        delimiter: Option<&'a str>,
        marker: Option<&'a str>,
        from: Option<Vec<u8>>,
    ) -> Scan<'a> {
        let lower = keys::object_prefix(bucket, prefix);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lower.clone());
        if let Some(end) = keys::prefix_end(&lower) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = store.db.raw_iterator_cf_opt(store.cf(cf), ro);
        match from {
            Some(from) if from > lower => it.seek(from),
            _ => it.seek(&lower),
        }
        Scan {
            it,
            bucket_prefix: keys::bucket_prefix(bucket),
            prefix,
            delimiter: delimiter.filter(|d| !d.is_empty()),
            marker,
            done: false,
        }
    }

    /// The next entry, `None` at the end of the range.
    fn next_entry(&mut self) -> Result<Option<Entry>, ManifestError> {
        while !self.done {
            let Some((k, v)) = self.it.item() else {
                self.it.status()?;
                return Ok(None);
            };
            let tail = k
                .strip_prefix(self.bucket_prefix.as_slice())
                .ok_or_else(|| keys::corrupt("index key", "record outside its bucket"))?;
            let (key, _) = keys::split_object_key(tail)?;
            if !key.starts_with(self.prefix) {
                // The iterator bounds make this unreachable; stop rather than list a stranger.
                return Ok(None);
            }
            let rolled = self.delimiter.and_then(|d| {
                key[self.prefix.len()..]
                    .find(d)
                    .map(|i| key[..self.prefix.len() + i + d.len()].to_string())
            });
            let Some(cp) = rolled else {
                let value = v.to_vec();
                self.it.next();
                return Ok(Some(Entry::Record { key, value }));
            };
            let mut under = self.bucket_prefix.clone();
            keys::escape_into(&mut under, cp.as_bytes());
            match keys::prefix_end(&under) {
                Some(end) => self.it.seek(end),
                None => self.done = true,
            }
            if self.marker.is_none_or(|m| cp.as_str() > m) {
                return Ok(Some(Entry::Prefix(cp)));
            }
        }
        Ok(None)
    }

    /// Up to `max` entries, and whether another entry follows them.
    fn page(&mut self, max: usize) -> Result<(Vec<Entry>, bool), ManifestError> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.next_entry()? {
                Some(e) => out.push(e),
                None => return Ok((out, false)),
            }
        }
        let more = max > 0 && self.next_entry()?.is_some();
        Ok((out, more))
    }
}

impl ManifestStore {
    pub(crate) fn list_objects_impl(
        &self,
        bucket: &str,
        q: &ListQuery,
    ) -> Result<ListPage, ManifestError> {
        let marker = q.start_after.as_deref();
        let from = marker.map(|sa| keys::after(&keys::current_key(bucket, sa)));
        let delimiter = q.delimiter.as_deref();
        let mut scan = Scan::new(self, CF_CURRENT, bucket, &q.prefix, delimiter, marker, from);
        let (entries, truncated) = scan.page(q.max_keys.min(MAX_PAGE))?;
        let mut page = ListPage::default();
        let mut last = None;
        for e in entries {
            match e {
                Entry::Record { key, value } => {
                    page.objects.push(VersionManifest::decode(&value)?);
                    last = Some(key);
                }
                Entry::Prefix(cp) => {
                    page.common_prefixes.push(cp.clone());
                    last = Some(cp);
                }
            }
        }
        page.is_truncated = truncated;
        page.next_marker = if truncated { last } else { None };
        Ok(page)
    }

    pub(crate) fn list_versions_impl(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        let marker = q.key_marker.as_deref();
        let from = marker.map(|km| match q.version_marker {
            Some(vm) => keys::after(&keys::version_key(bucket, km, vm)),
            None => keys::prefix_end(&keys::terminated_key(bucket, km))
                .expect("a terminated key ends with 0x01"),
        });
        let delimiter = q.delimiter.as_deref();
        let mut scan = Scan::new(
            self,
            CF_VERSIONS,
            bucket,
            &q.prefix,
            delimiter,
            marker,
            from,
        );
        let (entries, truncated) = scan.page(q.max_keys.min(MAX_PAGE))?;
        let mut page = VersionsPage::default();
        for e in entries {
            match e {
                Entry::Record { key, value } => {
                    let m = VersionManifest::decode(&value)?;
                    page.next_key_marker = Some(key);
                    page.next_version_marker = Some(m.version);
                    page.versions.push(m);
                }
                Entry::Prefix(cp) => {
                    page.next_key_marker = Some(cp.clone());
                    page.next_version_marker = None;
                    page.common_prefixes.push(cp);
                }
            }
        }
        page.is_truncated = truncated;
        if !truncated {
            page.next_key_marker = None;
            page.next_version_marker = None;
        }
        Ok(page)
    }

    pub(crate) fn list_uploads_impl(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ManifestError> {
        let marker = q.key_marker.as_deref();
        let from = marker.map(|km| match q.upload_id_marker.as_deref() {
            Some(id) => keys::after(&keys::upload_key(bucket, km, id)),
            None => keys::prefix_end(&keys::terminated_key(bucket, km))
                .expect("a terminated key ends with 0x01"),
        });
        let delimiter = q.delimiter.as_deref();
        let mut scan = Scan::new(self, CF_UPLOADS, bucket, &q.prefix, delimiter, marker, from);
        let (entries, truncated) = scan.page(q.max_uploads.min(MAX_PAGE))?;
        let mut page = UploadsPage::default();
        for e in entries {
            match e {
                Entry::Record { key, value } => {
                    let u = Upload::decode(&value)?;
                    page.next_key_marker = Some(key);
                    page.next_upload_id_marker = Some(u.upload_id.clone());
                    page.uploads.push(u);
                }
                Entry::Prefix(cp) => {
                    page.next_key_marker = Some(cp.clone());
                    page.next_upload_id_marker = None;
                    page.common_prefixes.push(cp);
                }
            }
        }
        page.is_truncated = truncated;
        if !truncated {
            page.next_key_marker = None;
            page.next_upload_id_marker = None;
        }
        Ok(page)
    }
}
