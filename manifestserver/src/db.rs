//! Storage plumbing shared by the operation modules: the column families, the counters kept
//! with the data, and write transactions (the lock, a batch, one synced write).

use cairn_core::format::Versioned;
use cairn_core::manifest::{Change, VersionManifest};
use parking_lot::MutexGuard;
use rocksdb::{ColumnFamily, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::{ManifestError, ManifestStore};

/// Column family names.
pub(crate) const CF_BUCKETS: &str = "buckets";
pub(crate) const CF_VERSIONS: &str = "versions";
pub(crate) const CF_CURRENT: &str = "current";
pub(crate) const CF_UPLOADS: &str = "uploads";
pub(crate) const CF_PARTS: &str = "parts";
pub(crate) const CF_CHANGELOG: &str = "changelog";
pub(crate) const CF_KEYS: &str = "keys";
pub(crate) const CF_META: &str = "meta";
/// Tombstones of removed versions: version key → removal time (unix ms, u64 BE). Kept for
/// good (they are small), so a removed version never comes back through a replica.
pub(crate) const CF_REMOVED: &str = "removed";
/// Revision stamps of mutable records: kind byte + record key → stamp (16 bytes BE) + flags.
pub(crate) const CF_STAMPS: &str = "stamps";
/// Every column family; `open` creates the missing ones, so older databases gain new ones.
pub(crate) const ALL_CFS: [&str; 10] = [
    CF_BUCKETS,
    CF_VERSIONS,
    CF_CURRENT,
    CF_UPLOADS,
    CF_PARTS,
    CF_CHANGELOG,
    CF_KEYS,
    CF_META,
    CF_REMOVED,
    CF_STAMPS,
];
/// Key of the counters in `meta`.
pub(crate) const STATS_KEY: &[u8] = b"stats";

/// The counters as stored in `meta` (the last seq comes from the change log itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredStats {
    pub(crate) buckets: u64,
    pub(crate) versions: u64,
    pub(crate) logical_bytes: u64,
}

impl Versioned for StoredStats {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "manifest stats";
}

/// What the write lock protects: the counters every mutation updates. Mutations work on a copy
/// and store it back only once their batch is durable.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteState {
    /// Last change-log sequence number written.
    pub(crate) last_seq: u64,
    /// Counters, written as absolute values with each batch that changes them.
    pub(crate) stats: StoredStats,
}

/// A mutation in progress: the write lock, a working copy of the counters and the batch.
pub(crate) struct Txn<'a> {
    guard: MutexGuard<'a, WriteState>,
    /// Counters as they will be after the batch.
    pub(crate) state: WriteState,
    /// Everything the mutation writes.
    pub(crate) batch: WriteBatch,
}

impl ManifestStore {
    /// The counters and last change-log seq as last committed.
    pub(crate) fn load_state(&self) -> Result<WriteState, ManifestError> {
        let stats = match self.db.get_pinned_cf(self.cf(CF_META), STATS_KEY)? {
            Some(v) => StoredStats::decode(&v)?,
            None => StoredStats::default(),
        };
        Ok(WriteState {
            last_seq: self.load_last_seq()?,
            stats,
        })
    }

    /// The last entry's sequence number, or the last trimmed one when the whole log has been
    /// trimmed: sequence numbers never start over.
    fn load_last_seq(&self) -> Result<u64, ManifestError> {
        let trimmed = self.log_trimmed()?;
        let mut it = self.db.raw_iterator_cf(self.cf(CF_CHANGELOG));
        it.seek_to_last();
        match it.key() {
            Some(k) => Ok(u64::from_be_bytes(k.try_into().map_err(|_| {
                keys::corrupt("change log key", format!("{} bytes, expected 8", k.len()))
            })?)
            .max(trimmed)),
            None => {
                it.status()?;
                Ok(trimmed)
            }
        }
    }

    /// A column family opened by `open`.
    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is opened with the database")
    }

    /// Starts a mutation: takes the write lock.
    pub(crate) fn begin(&self) -> Txn<'_> {
        let guard = self.state.lock();
        let state = *guard;
        Txn {
            guard,
            state,
            batch: WriteBatch::default(),
        }
    }

    /// Writes the mutation's batch (durably, per config) and then publishes its counters.
    pub(crate) fn commit(&self, mut txn: Txn<'_>) -> Result<(), ManifestError> {
        if txn.state.stats != txn.guard.stats {
            txn.batch
                .put_cf(self.cf(CF_META), STATS_KEY, txn.state.stats.encode());
        }
        self.db.write_opt(txn.batch, &self.write_opts)?;
        *txn.guard = txn.state;
        Ok(())
    }

    /// Appends a change-log entry to the mutation.
    pub(crate) fn log_change(&self, txn: &mut Txn<'_>, m: &VersionManifest, removed: bool) {
        txn.state.last_seq += 1;
        let change = Change {
            seq: txn.state.last_seq,
            bucket: m.bucket.clone(),
            key: m.key.clone(),
            version: m.version,
            delete_marker: m.delete_marker,
            removed,
        };
        txn.batch.put_cf(
            self.cf(CF_CHANGELOG),
            change.seq.to_be_bytes(),
            change.encode(),
        );
    }

    /// Reads and decodes one record.
    pub(crate) fn get_rec<T: Versioned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<T>, ManifestError> {
        match self.db.get_pinned_cf(self.cf(cf), key)? {
            Some(v) => Ok(Some(T::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every record of a small table (buckets, access keys), in key order.
    pub(crate) fn all_recs<T: Versioned>(&self, cf: &str) -> Result<Vec<T>, ManifestError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
            let (_, v) = item?;
            out.push(T::decode(&v)?);
        }
        Ok(out)
    }

    /// Whether any record of `cf` starts with `prefix`.
    pub(crate) fn any_with_prefix(&self, cf: &str, prefix: &[u8]) -> Result<bool, ManifestError> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.to_vec());
        if let Some(end) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(prefix);
        if it.valid() {
            return Ok(true);
        }
        it.status()?;
        Ok(false)
    }
}
