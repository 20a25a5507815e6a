//! Bounded metadata history: the change log and the tombstones of removed versions are
//! trimmed once every consumer that needs them has moved past.
//!
//! **Consumers** are named readers of this store's change log, kept in `meta` with the last
//! sequence number each has acknowledged (everything up to it is consumed) and when it last
//! did:
//! - `ae/<node id>`: the anti-entropy of another manifest node, which acknowledges with every
//!   read ([`ManifestStore::changes_for`]: reading after `n` acknowledges `n`);
//! - `gc/<node>`: a garbage-collection pass, which holds the log from its start
//!   ([`ManifestStore::hold_log`]) and lets go at its end ([`ManifestStore::release_log`]);
//! - inter-site links (`link/<site>`), which will read and acknowledge the same way.
//!
//! **Trimming** ([`ManifestStore::trim_history_with`]) removes the log entries up to the horizon:
//! the smallest acknowledgement of the live consumers, those that acknowledged within the
//! retention. A consumer silent for longer (a node down or cut off that long) is no longer
//! waited for, so the log is bounded by the slowest live consumer. A consumer that then reads
//! after a trimmed part learns it from the answer's first sequence number and must catch up
//! another way (anti-entropy fills from listings). A tombstone goes once the entry of its
//! removal is trimmed (every live consumer has seen the removal, and each applies it as a
//! tombstone of its own) and it is older than the retention, so a consumer that comes back
//! within the retention still finds every tombstone of what was removed while it was away.
//!
//! The last trimmed sequence number is kept in `meta`: sequence numbers never start over,
//! even when the whole log has been trimmed.

use cairn_core::format::Versioned;
use cairn_core::manifest::Change;
use cairn_core::VersionId;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::db::{CF_CHANGELOG, CF_META, CF_REMOVED, CF_VERSIONS};
use crate::error::Refusal;
use crate::{keys, ManifestError, ManifestStore, RecordId, StampedRecord};

/// Longest consumer name.
pub const MAX_CONSUMER_NAME: usize = 128;
/// Prefix of consumers in `meta`.
const CONSUMER_PREFIX: &[u8] = b"consumer/";
/// Key in `meta` of the last trimmed change-log sequence number.
pub(crate) const LOG_TRIMMED: &[u8] = b"log-trimmed";
/// Tombstones deleted per write batch.
const TOMBSTONE_BATCH: usize = 100_000;

/// A consumer as stored.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct StoredConsumer {
    acked: u64,
    at_ms: u64,
}

impl Versioned for StoredConsumer {
    const FORMAT: u8 = 1;
    const WHAT: &'static str = "change-log consumer";
}

/// A reader of the change log and how far it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    /// Its name (`ae/<node id>`, `gc/<node>`, `link/<site>`).
    pub name: String,
    /// The last sequence number it acknowledged: it has consumed everything up to it.
    pub acked: u64,
    /// When it last acknowledged (ms since the epoch).
    pub at_ms: u64,
}

/// The change log's extent and its consumers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryState {
    /// The first sequence number still held (the last trimmed one plus one).
    pub first_seq: u64,
    /// The last sequence number written.
    pub last_seq: u64,
    /// The consumers, by name.
    pub consumers: Vec<Consumer>,
    /// Tombstones held (RocksDB's estimate).
    pub tombstones_estimate: u64,
    /// Bytes the change log takes (its table files and memtables).
    pub log_bytes: u64,
    /// Bytes the tombstones take (their table files and memtables).
    pub tombstone_bytes: u64,
}

impl HistoryState {
    /// Entries held in the log (its sequence numbers are gap-free).
    pub fn log_entries(&self) -> u64 {
        (self.last_seq + 1).saturating_sub(self.first_seq)
    }
}

/// What a trim is allowed to do.
#[derive(Clone, Debug)]
pub struct TrimPolicy {
    /// Now (ms since the epoch).
    pub now_ms: u64,
    /// A consumer silent for longer is no longer waited for; a tombstone is kept at least
    /// this long.
    pub retention_ms: u64,
    /// The anti-entropy consumers (`ae/…`) the site has now: each is registered if it is not
    /// yet (as having read nothing, so it is waited for until it reads or the retention has
    /// passed), and any other `ae/…` consumer (a node no longer in the map) is dropped.
    pub peers: Vec<String>,
}

/// What a trim did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimReport {
    /// The log is trimmed up to this sequence number.
    pub horizon: u64,
    /// Log entries removed.
    pub entries_removed: u64,
    /// Tombstones looked at.
    pub tombstones_scanned: u64,
    /// Tombstones removed.
    pub tombstones_removed: u64,
    /// Consumers no longer waited for (silent for longer than the retention).
    pub expired: Vec<String>,
    /// Consumers dropped (anti-entropy of nodes no longer in the map).
    pub dropped: Vec<String>,
    /// The consumer that holds the horizon back, if any does.
    pub slowest: Option<String>,
}

/// Now, in ms since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Fails when a log whose first held entry is `first` was trimmed past `after` (a reader
/// that held it was silent for longer than the retention).
pub(crate) fn check_not_trimmed(log: &str, first: u64, after: u64) -> Result<(), ManifestError> {
    if first > after.saturating_add(1) {
        return Err(ManifestError::Invalid(format!(
            "{log} change log was trimmed past {after} (it holds {first} on): the reader was \
             silent for longer than the history retention and missed changes; start it again"
        )));
    }
    Ok(())
}

/// Refuses an empty or over-long consumer name.
pub(crate) fn check_consumer(name: &str) -> Result<(), ManifestError> {
    if name.is_empty() || name.len() > MAX_CONSUMER_NAME {
        return Err(Refusal::LimitExceeded(format!(
            "a change-log consumer name must be 1 to {MAX_CONSUMER_NAME} bytes long"
        ))
        .into());
    }
    Ok(())
}

fn consumer_key(name: &str) -> Vec<u8> {
    [CONSUMER_PREFIX, name.as_bytes()].concat()
}

/// A tombstone's value: when the version was removed and the sequence number of its removal's
/// log entry (or of the next entry, when the removal logged none). Tombstones written before
/// the sequence number was kept hold the time only: read as sequence number 0.
pub(crate) fn tombstone_value(at_ms: u64, seq: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&at_ms.to_be_bytes());
    v[8..].copy_from_slice(&seq.to_be_bytes());
    v
}

fn parse_tombstone(v: &[u8]) -> Result<(u64, u64), ManifestError> {
    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
    match v.len() {
        8 => Ok((word(v), 0)),
        16 => Ok((word(&v[..8]), word(&v[8..]))),
        n => Err(keys::corrupt(
            "tombstone",
            format!("{n} bytes, expected 8 or 16"),
        )),
    }
}

impl ManifestStore {
    /// The last trimmed sequence number (0: nothing trimmed).
    pub(crate) fn log_trimmed(&self) -> Result<u64, ManifestError> {
        match self.db.get_pinned_cf(self.cf(CF_META), LOG_TRIMMED)? {
            Some(v) => {
                let b: [u8; 8] = v[..]
                    .try_into()
                    .map_err(|_| keys::corrupt("trimmed log mark", "expected 8 bytes"))?;
                Ok(u64::from_be_bytes(b))
            }
            None => Ok(0),
        }
    }

    /// Records that consumer `name` has consumed everything up to `acked`, at `now_ms`.
    pub fn ack_changes(&self, name: &str, acked: u64, now_ms: u64) -> Result<(), ManifestError> {
        check_consumer(name)?;
        let v = StoredConsumer {
            acked,
            at_ms: now_ms,
        };
        // Not synced: an acknowledgement lost in a crash only keeps the log longer.
        self.db
            .put_cf(self.cf(CF_META), consumer_key(name), v.encode())?;
        Ok(())
    }

    /// The changes after `after` (at most `max`) for consumer `name`, acknowledging `after`;
    /// with the first sequence number still held. When `after + 1` is below it, the consumer
    /// missed trimmed changes and must catch up another way.
    pub fn changes_for(
        &self,
        name: &str,
        after: u64,
        max: usize,
        now_ms: u64,
    ) -> Result<(u64, Vec<Change>), ManifestError> {
        self.ack_changes(name, after, now_ms)?;
        let first = self.log_trimmed()? + 1;
        Ok((first, self.changes_since(after, max)?))
    }

    /// Registers consumer `name` at the end of the log (it will read what comes next) and
    /// returns that end: the log is kept from there until the consumer lets go, moves on, or
    /// is silent for longer than the retention.
    pub fn hold_log(&self, name: &str, now_ms: u64) -> Result<u64, ManifestError> {
        // The durable end: entries after it may still be lost and their seqs reused, so the
        // holder reads them again (an entry the holder sees twice costs nothing).
        let end = self.durable_seq();
        self.ack_changes(name, end, now_ms)?;
        Ok(end)
    }

    /// Forgets consumer `name` (a finished pass): the log is no longer kept for it.
    pub fn release_log(&self, name: &str) -> Result<(), ManifestError> {
        check_consumer(name)?;
        self.db.delete_cf(self.cf(CF_META), consumer_key(name))?;
        Ok(())
    }

    /// The registered consumers, by name.
    pub fn consumers(&self) -> Result<Vec<Consumer>, ManifestError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(CONSUMER_PREFIX, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META), mode) {
            let (k, v) = item?;
            let Some(name) = k.strip_prefix(CONSUMER_PREFIX) else {
                break;
            };
            let c = StoredConsumer::decode(&v)?;
            out.push(Consumer {
                name: String::from_utf8_lossy(name).into_owned(),
                acked: c.acked,
                at_ms: c.at_ms,
            });
        }
        Ok(out)
    }

    /// The log's extent and its consumers.
    pub fn history(&self) -> Result<HistoryState, ManifestError> {
        let last_seq = self.state.lock().last_seq;
        let tombstones_estimate = self
            .db
            .property_int_value_cf(self.cf(CF_REMOVED), "rocksdb.estimate-num-keys")?
            .unwrap_or(0);
        Ok(HistoryState {
            first_seq: self.log_trimmed()? + 1,
            last_seq,
            consumers: self.consumers()?,
            tombstones_estimate,
            log_bytes: self.cf_bytes(CF_CHANGELOG)?,
            tombstone_bytes: self.cf_bytes(CF_REMOVED)?,
        })
    }

    /// Bytes a column family takes: its table files and memtables.
    fn cf_bytes(&self, cf: &str) -> Result<u64, ManifestError> {
        let prop = |name: &str| -> Result<u64, ManifestError> {
            Ok(self
                .db
                .property_int_value_cf(self.cf(cf), name)?
                .unwrap_or(0))
        };
        Ok(prop("rocksdb.total-sst-files-size")? + prop("rocksdb.size-all-mem-tables")?)
    }

    /// Compacts the change log and the tombstones, so what trimming deleted leaves the disk
    /// now rather than at RocksDB's next compaction of those files.
    pub fn compact_history(&self) {
        for cf in [CF_CHANGELOG, CF_REMOVED] {
            self.db
                .compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Tombstones held, counted one by one (for tests and benchmarks: it reads them all).
    pub fn count_tombstones(&self) -> Result<u64, ManifestError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_REMOVED));
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status()?;
        Ok(n)
    }

    /// Trims the change log up to the slowest live consumer and the tombstones whose removal
    /// every live consumer has seen and that are older than the retention (see the module
    /// docs). Registers and drops anti-entropy consumers as `policy.peers` says.
    pub fn trim_history_with(&self, policy: &TrimPolicy) -> Result<TrimReport, ManifestError> {
        let _one_at_a_time = self.trim.lock();
        let mut report = TrimReport::default();
        let mut consumers = self.consumers()?;
        for peer in &policy.peers {
            if !consumers.iter().any(|c| &c.name == peer) {
                self.ack_changes(peer, 0, policy.now_ms)?;
                consumers.push(Consumer {
                    name: peer.clone(),
                    acked: 0,
                    at_ms: policy.now_ms,
                });
            }
        }
        consumers.retain(|c| {
            let gone = c.name.starts_with("ae/") && !policy.peers.contains(&c.name);
            if gone {
                report.dropped.push(c.name.clone());
            }
            !gone
        });
        for name in &report.dropped {
            self.release_log(name)?;
        }

        let last_seq = self.state.lock().last_seq;
        let trimmed = self.log_trimmed()?;
        let live_since = policy.now_ms.saturating_sub(policy.retention_ms);
        let mut horizon = last_seq;
        for c in &consumers {
            if c.at_ms < live_since {
                report.expired.push(c.name.clone());
            } else if c.acked < horizon {
                horizon = c.acked;
                report.slowest = Some(c.name.clone());
            }
        }
        report.horizon = horizon.max(trimmed);
        if horizon > trimmed {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(
                self.cf(CF_CHANGELOG),
                (trimmed + 1).to_be_bytes(),
                (horizon + 1).to_be_bytes(),
            );
            batch.put_cf(self.cf(CF_META), LOG_TRIMMED, horizon.to_be_bytes());
            self.db.write_opt(batch, &self.write_opts)?;
            report.entries_removed = horizon - trimmed;
        }
        self.trim_tombstones(report.horizon, live_since, &mut report)?;
        Ok(report)
    }

    /// Removes the tombstones of removals logged at or before `horizon` and made before
    /// `before_ms`: one pass over all of them, deleting in batches of at most
    /// [`TOMBSTONE_BATCH`].
    fn trim_tombstones(
        &self,
        horizon: u64,
        before_ms: u64,
        report: &mut TrimReport,
    ) -> Result<(), ManifestError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_REMOVED));
        it.seek_to_first();
        let mut batch = WriteBatch::default();
        while let Some((k, v)) = it.item() {
            report.tombstones_scanned += 1;
            let (at_ms, seq) = parse_tombstone(v)?;
            if seq <= horizon && at_ms < before_ms {
                batch.delete_cf(self.cf(CF_REMOVED), k);
                report.tombstones_removed += 1;
                if batch.len() == TOMBSTONE_BATCH {
                    self.db
                        .write_opt(std::mem::take(&mut batch), &self.write_opts)?;
                }
            }
            it.next();
        }
        it.status()?;
        if !batch.is_empty() {
            self.db.write_opt(batch, &self.write_opts)?;
        }
        Ok(())
    }

    /// The versions and tombstones of `bucket` after `after` (key, then version newest first,
    /// as versions are listed), with their stamps, at most `max`; and whether more follow.
    /// What anti-entropy fills a replica from when the change log cannot tell it (a bucket
    /// newly placed on it, or trimmed history it missed).
    pub fn list_versions_stamped(
        &self,
        bucket: &str,
        after: Option<(&str, VersionId)>,
        max: usize,
    ) -> Result<(Vec<StampedRecord>, bool), ManifestError> {
        keys::check_bucket(bucket)?;
        let prefix = keys::bucket_prefix(bucket);
        let start = match after {
            Some((key, version)) => {
                keys::check_key(key)?;
                keys::after(&keys::version_key(bucket, key, version))
            }
            None => prefix.clone(),
        };
        let want = max.saturating_add(1);
        let mut found: Vec<Vec<u8>> = Vec::new();
        for cf in [CF_VERSIONS, CF_REMOVED] {
            let mut ro = ReadOptions::default();
            if let Some(end) = keys::prefix_end(&prefix) {
                ro.set_iterate_upper_bound(end);
            }
            let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
            it.seek(&start);
            let mut n = 0;
            while let Some(k) = it.key() {
                if n == want {
                    break;
                }
                found.push(k.to_vec());
                n += 1;
                it.next();
            }
            it.status()?;
        }
        found.sort();
        found.dedup();
        let truncated = found.len() > max;
        found.truncate(max);
        let mut out = Vec::with_capacity(found.len());
        for k in found {
            let (key, rest) = keys::split_object_key(&k[prefix.len()..])?;
            let version = keys::parse_inverted_version(rest)?;
            out.push(self.get_stamped(&RecordId::Version {
                bucket: bucket.to_string(),
                key,
                version,
            })?);
        }
        Ok((out, truncated))
    }
}

#[cfg(test)]
mod tests {
    use cairn_core::manifest::Bucket;

    use super::*;
    use crate::stamped::tests::{open, version};

    /// A store with bucket `b` and versions 1..=n of key `k` (change-log seqs 1..=n).
    fn store_with(dir: &std::path::Path, n: u64) -> ManifestStore {
        let s = open(dir);
        s.create_bucket(&Bucket::new("b", "AK", 1)).unwrap();
        for i in 1..=n {
            s.apply(&version("k", i)).unwrap();
        }
        s
    }

    fn policy(now_ms: u64, peers: &[&str]) -> TrimPolicy {
        TrimPolicy {
            now_ms,
            retention_ms: 1_000,
            peers: peers.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn the_log_is_trimmed_up_to_the_slowest_live_consumer() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), 10);
        let t0 = 1_000_000;
        s.ack_changes("ae/1", 4, t0).unwrap();
        s.ack_changes("ae/2", 7, t0).unwrap();
        let r = s.trim_history_with(&policy(t0, &["ae/1", "ae/2"])).unwrap();
        assert_eq!((r.horizon, r.entries_removed), (4, 4));
        assert_eq!(r.slowest.as_deref(), Some("ae/1"));
        let h = s.history().unwrap();
        assert_eq!((h.first_seq, h.last_seq, h.log_entries()), (5, 10, 6));
        let (first, changes) = s.changes_for("ae/1", 4, 100, t0).unwrap();
        assert_eq!(first, 5);
        assert_eq!(
            changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
            (5..=10).collect::<Vec<_>>()
        );

        // ae/1 goes silent for longer than the retention: it is no longer waited for.
        s.ack_changes("ae/2", 7, t0 + 1_500).unwrap();
        let r = s
            .trim_history_with(&policy(t0 + 1_500, &["ae/1", "ae/2"]))
            .unwrap();
        assert_eq!(r.expired, vec!["ae/1".to_string()]);
        assert_eq!((r.horizon, r.entries_removed), (7, 3));
        // Reading after 4 now skips trimmed entries: the answer says so.
        let (first, _) = s.changes_for("ae/1", 4, 100, t0 + 1_600).unwrap();
        assert_eq!(first, 8);
        assert!(check_not_trimmed("the", first, 4).is_err());
        assert!(check_not_trimmed("the", first, 7).is_ok());
    }

    #[test]
    fn sequence_numbers_never_start_over_after_a_whole_trim() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = store_with(dir.path(), 5);
            let r = s.trim_history_with(&policy(1_000_000, &[])).unwrap();
            assert_eq!((r.horizon, r.entries_removed), (5, 5));
            assert!(s.changes_since(0, 100).unwrap().is_empty());
        }
        let s = open(dir.path());
        assert_eq!(s.stats().unwrap().last_seq, 5);
        s.apply(&version("k", 6)).unwrap();
        let changes = s.changes_since(0, 100).unwrap();
        assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn peers_are_waited_for_until_they_read_and_others_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), 6);
        let t0 = 1_000_000;
        s.ack_changes("ae/9", 6, t0).unwrap();
        // ae/3 never read: registered at 0, it holds everything until it reads.
        let r = s.trim_history_with(&policy(t0, &["ae/3"])).unwrap();
        assert_eq!(r.dropped, vec!["ae/9".to_string()]);
        assert_eq!((r.horizon, r.entries_removed), (0, 0));
        let names: Vec<String> = s.consumers().unwrap().into_iter().map(|c| c.name).collect();
        assert_eq!(names, vec!["ae/3".to_string()]);
        s.changes_for("ae/3", 6, 10, t0 + 10).unwrap();
        let r = s.trim_history_with(&policy(t0 + 10, &["ae/3"])).unwrap();
        assert_eq!(r.entries_removed, 6);
    }

    #[test]
    fn a_held_log_is_kept_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), 3);
        let t0 = 1_000_000;
        assert_eq!(s.hold_log("gc/1", t0).unwrap(), 3);
        for i in 4..=6 {
            s.apply(&version("k", i)).unwrap();
        }
        let r = s.trim_history_with(&policy(t0, &[])).unwrap();
        assert_eq!((r.horizon, r.entries_removed), (3, 3));
        assert_eq!(s.changes_for("gc/1", 3, 10, t0).unwrap().1.len(), 3);
        s.release_log("gc/1").unwrap();
        let r = s.trim_history_with(&policy(t0, &[])).unwrap();
        assert_eq!((r.horizon, r.entries_removed), (6, 3));
        assert!(s.consumers().unwrap().is_empty());
    }

    #[test]
    fn tombstones_go_once_their_removal_is_trimmed_and_they_are_older_than_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with(dir.path(), 2);
        let v1 = version("k", 1);
        s.remove_version("b", "k", v1.version).unwrap(); // seq 3
        assert_eq!(s.count_tombstones().unwrap(), 1);
        let now = now_ms();
        // Old, but a live consumer has not read the removal yet: kept.
        let later = now + 5_000;
        s.ack_changes("ae/1", 2, later).unwrap();
        let r = s.trim_history_with(&policy(later, &["ae/1"])).unwrap();
        assert_eq!(
            (r.horizon, r.tombstones_scanned, r.tombstones_removed),
            (2, 1, 0)
        );
        assert!(s.is_removed("b", "k", v1.version).unwrap());
        // Young: kept, although every consumer has read the removal.
        s.ack_changes("ae/1", 3, now).unwrap();
        let r = s.trim_history_with(&policy(now, &["ae/1"])).unwrap();
        assert_eq!((r.horizon, r.tombstones_removed), (3, 0));
        // Old and read by everyone: gone.
        s.ack_changes("ae/1", 3, later).unwrap();
        let r = s.trim_history_with(&policy(later, &["ae/1"])).unwrap();
        assert_eq!(r.tombstones_removed, 1);
        assert_eq!(s.count_tombstones().unwrap(), 0);
    }

    #[test]
    fn stamped_version_pages_hold_versions_and_tombstones_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.create_bucket(&Bucket::new("b", "AK", 1)).unwrap();
        let (a1, a2, b1, c1) = (
            version("a", 1),
            version("a", 2),
            version("b", 3),
            version("c", 4),
        );
        for v in [&a1, &a2, &b1, &c1] {
            s.apply(v).unwrap();
        }
        s.remove_version("b", "b", b1.version).unwrap();
        let mut seen = Vec::new();
        let mut after: Option<(String, VersionId)> = None;
        loop {
            let (page, more) = s
                .list_versions_stamped("b", after.as_ref().map(|(k, v)| (k.as_str(), *v)), 2)
                .unwrap();
            assert!(page.len() <= 2);
            for r in &page {
                let RecordId::Version { key, version, .. } = &r.id else {
                    panic!("{r:?}")
                };
                seen.push((key.clone(), *version, r.deleted, r.record.is_some()));
                after = Some((key.clone(), *version));
            }
            if !more {
                break;
            }
        }
        assert_eq!(
            seen,
            vec![
                ("a".to_string(), a2.version, false, true),
                ("a".to_string(), a1.version, false, true),
                ("b".to_string(), b1.version, true, false),
                ("c".to_string(), c1.version, false, true),
            ]
        );
        assert!(s
            .list_versions_stamped("other", None, 10)
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn consumer_names_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        assert!(s.ack_changes("", 1, 1).is_err());
        assert!(s
            .ack_changes(&"x".repeat(MAX_CONSUMER_NAME + 1), 1, 1)
            .is_err());
        assert!(s.ack_changes(&"x".repeat(MAX_CONSUMER_NAME), 1, 1).is_ok());
    }

    /// The requests this module added, decoded from random bytes and from every truncation
    /// and thousands of byte flips of valid encodings: decoding never panics, and whatever
    /// decodes is checked by the bounds the server applies before running it.
    #[test]
    fn history_requests_survive_garbage_on_the_wire() {
        use rand::{Rng, SeedableRng};

        use crate::rpc::check_bounds;
        use crate::ManifestRequest;

        let valid = [
            ManifestRequest::ChangesFor {
                consumer: "ae/42".into(),
                after: 7,
                max: 100,
            },
            ManifestRequest::HoldLog("gc/1".into()),
            ManifestRequest::ReleaseLog("gc/1".into()),
            ManifestRequest::History,
            ManifestRequest::ListVersionsStamped {
                bucket: "b".into(),
                after: Some(("k".into(), VersionId(9))),
                max: 10,
            },
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for req in &valid {
            let bytes = req.encode();
            assert!(check_bounds(&ManifestRequest::decode(&bytes).unwrap()).is_ok());
            inputs.extend((0..bytes.len()).map(|n| bytes[..n].to_vec()));
            for _ in 0..2_000 {
                let mut b = bytes.clone();
                let i = rng.gen_range(0..b.len());
                b[i] = rng.gen();
                inputs.push(b);
            }
        }
        for _ in 0..2_000 {
            let n = rng.gen_range(0..64);
            inputs.push((0..n).map(|_| rng.gen()).collect());
        }
        for bytes in inputs {
            if let Ok(req) = ManifestRequest::decode(&bytes) {
                let _ = check_bounds(&req);
            }
        }
        // Names the server refuses before touching the store.
        for consumer in [String::new(), "x".repeat(MAX_CONSUMER_NAME + 1)] {
            let req = ManifestRequest::ChangesFor {
                consumer: consumer.clone(),
                after: 0,
                max: 1,
            };
            assert!(check_bounds(&req).is_err());
            assert!(check_bounds(&ManifestRequest::HoldLog(consumer)).is_err());
        }
    }
}
