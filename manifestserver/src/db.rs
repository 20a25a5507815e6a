//! Storage plumbing shared by the operation modules: the column families, the counters kept
//! with the data, and write transactions (the lock, a batch, a write, and a WAL sync shared
//! with the mutations committed alongside: group commit).

use cairn_core::format::Versioned;
use cairn_core::manifest::{Change, VersionManifest};
use parking_lot::{Condvar, Mutex, MutexGuard};
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

/// Group commit of the store's mutations: which batches are written and which are durable.
///
/// Each committed batch takes a ticket (in write order, under the write lock). A committer
/// whose ticket is not yet durable either runs the WAL sync itself, when none is running,
/// covering every batch written before the sync started, or waits for the running one and
/// then checks again. A WAL sync makes every earlier WAL record durable (RocksDB recovers a
/// prefix of the WAL), so "durable up to ticket N" is one number.
pub(crate) struct GroupSync {
    /// False when the config does not sync writes: every write counts as durable at once.
    sync: bool,
    state: Mutex<SyncState>,
    done: Condvar,
    /// Wakes the committers that wait on a task rather than a thread.
    done_async: tokio::sync::Notify,
}

thread_local! {
    /// Inside [`ManifestStore::deferring`]: `Some(last ticket written)`, and commits return
    /// once written instead of once durable.
    static DEFERRED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Ends a deferring scope, on unwinding too (a pool thread must not keep deferring).
struct DeferScope;

impl Drop for DeferScope {
    fn drop(&mut self) {
        DEFERRED.set(None);
    }
}

#[derive(Debug, Default)]
struct SyncState {
    /// Tickets handed out (batches written).
    written: u64,
    /// The change-log seq as of the last ticket.
    written_seq: u64,
    /// Tickets known durable.
    synced: u64,
    /// The change-log seq as of the last durable ticket.
    synced_seq: u64,
    /// A committer is running the WAL sync.
    syncing: bool,
}

impl GroupSync {
    /// Nothing pending; `last_seq` (as recovered at open) is durable.
    pub(crate) fn new(sync: bool, last_seq: u64) -> GroupSync {
        GroupSync {
            sync,
            state: Mutex::new(SyncState {
                written_seq: last_seq,
                synced_seq: last_seq,
                ..SyncState::default()
            }),
            done: Condvar::new(),
            done_async: tokio::sync::Notify::new(),
        }
    }

    /// Records a written batch (call under the write lock, so tickets follow write order).
    pub(crate) fn written(&self, last_seq: u64) -> u64 {
        let mut s = self.state.lock();
        s.written += 1;
        s.written_seq = last_seq;
        if !self.sync {
            s.synced = s.written;
            s.synced_seq = last_seq;
        }
        s.written
    }

    /// The last change-log seq known durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.state.lock().synced_seq
    }

    /// Returns once `ticket` is durable, running `sync_wal` when no other committer is; the
    /// error of a failed sync goes to the committer that ran it and to those that try again.
    pub(crate) fn wait_durable(
        &self,
        ticket: u64,
        sync_wal: impl Fn() -> Result<(), ManifestError>,
    ) -> Result<(), ManifestError> {
        let mut s = self.state.lock();
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if s.syncing {
                self.done.wait(&mut s);
                continue;
            }
            s.syncing = true;
            let (target, target_seq) = (s.written, s.written_seq);
            let result = MutexGuard::unlocked(&mut s, &sync_wal);
            self.sync_ended(&mut s, (target, target_seq), result.is_ok());
            result?;
        }
    }

    /// [`GroupSync::wait_durable`] on a task: waits for the running sync without holding a
    /// thread, and runs `sync_wal` on the blocking pool when none runs.
    pub(crate) async fn wait_durable_async<F>(
        &self,
        ticket: u64,
        sync_wal: F,
    ) -> Result<(), ManifestError>
    where
        F: Fn() -> Result<(), ManifestError> + Clone + Send + 'static,
    {
        loop {
            let notified = self.done_async.notified();
            tokio::pin!(notified);
            // Registered before the state is looked at, so a sync ending in between wakes it.
            notified.as_mut().enable();
            let target = {
                let mut s = self.state.lock();
                if s.synced >= ticket {
                    return Ok(());
                }
                if s.syncing {
                    None
                } else {
                    s.syncing = true;
                    Some((s.written, s.written_seq))
                }
            };
            let Some((target, target_seq)) = target else {
                notified.await;
                continue;
            };
            let f = sync_wal.clone();
            let result = match tokio::task::spawn_blocking(f).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(ManifestError::Invalid(format!(
                    "the WAL sync did not run: {e}"
                ))),
            };
            self.sync_ended(&mut self.state.lock(), (target, target_seq), result.is_ok());
            result?;
        }
    }

    /// Records the end of a WAL sync that covered tickets up to `target` (and its seq), and
    /// wakes every waiter, on threads and on tasks.
    fn sync_ended(&self, s: &mut SyncState, (target, target_seq): (u64, u64), ok: bool) {
        s.syncing = false;
        if ok {
            s.synced = s.synced.max(target);
            s.synced_seq = s.synced_seq.max(target_seq);
        }
        self.done.notify_all();
        self.done_async.notify_waiters();
    }
}

/// A mutation in progress: the write lock, a working copy of the counters and the batch.
pub(crate) struct Txn<'a> {
    guard: MutexGuard<'a, WriteState>,
    /// Counters as they will be after the batch.
    pub(crate) state: WriteState,
    /// Everything the mutation writes.
    pub(crate) batch: WriteBatch,
    /// Its changes to per-bucket usage, added to the batch at commit.
    pub(crate) usage: crate::usage::UsageChanges,
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
            usage: crate::usage::UsageChanges::default(),
        }
    }

    /// Writes the mutation's batch and publishes its counters, then returns once the batch is
    /// durable (when the config syncs writes).
    ///
    /// Group commit: the batch is written without a sync while the write lock is held (so the
    /// next mutation's checks see it), and the lock is released before the WAL sync, which
    /// one committer runs for every batch written before it started (see [`GroupSync`]). Many
    /// concurrent mutations thus share one fsync instead of queueing for one each.
    pub(crate) fn commit(&self, mut txn: Txn<'_>) -> Result<(), ManifestError> {
        self.write_usage(&mut txn)?;
        if txn.state.stats != txn.guard.stats {
            txn.batch
                .put_cf(self.cf(CF_META), STATS_KEY, txn.state.stats.encode());
        }
        let Txn {
            mut guard,
            state,
            batch,
            ..
        } = txn;
        self.db.write_opt(batch, &self.unsynced)?;
        // After the batch is visible: a reader that saw the old generation re-reads.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *guard = state;
        let ticket = self.group.written(state.last_seq);
        drop(guard);
        if let Some(last) = DEFERRED.get() {
            DEFERRED.set(Some(last.max(ticket)));
            return Ok(());
        }
        self.group
            .wait_durable(ticket, || Ok(self.db.flush_wal(true)?))
    }

    /// Runs `f` (mutations of this store) with the waits for durability deferred: its commits
    /// return once their batches are written (visible to later mutations and reads, as a
    /// written batch always is), and the ticket to wait for comes back with `f`'s result.
    /// Nothing may be acknowledged before [`ManifestStore::durable`] of that ticket returns.
    pub(crate) fn deferring<T>(&self, f: impl FnOnce() -> T) -> (T, Option<u64>) {
        let _scope = DeferScope;
        DEFERRED.set(Some(0));
        let out = f();
        let ticket = DEFERRED.get().filter(|&t| t > 0);
        (out, ticket)
    }

    /// Returns once the batch of `ticket` is durable, without holding a thread while the
    /// group's WAL sync runs.
    pub(crate) async fn durable(
        self: std::sync::Arc<Self>,
        ticket: u64,
    ) -> Result<(), ManifestError> {
        let store = self.clone();
        self.group
            .wait_durable_async(ticket, move || Ok(store.db.flush_wal(true)?))
            .await
    }

    /// The last change-log seq whose entry is durable: what log readers may see (an entry
    /// past it could still be lost to a crash, and its seq then reused for another change).
    pub(crate) fn durable_seq(&self) -> u64 {
        self.group.durable_seq()
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

    /// [`ManifestStore::get_rec`] if it needs no I/O: read from the memtables and the block
    /// cache only (RocksDB's `kBlockCacheTier`); `None` when the record (or the absence of
    /// one) could only be known by reading a file, which the caller then does on a blocking
    /// thread. A hot record is thus read on the calling task, without a thread hand-off.
    pub(crate) fn get_rec_now<T: Versioned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Option<Result<Option<T>, ManifestError>> {
        let mut opts = ReadOptions::default();
        opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        match self.db.get_pinned_cf_opt(self.cf(cf), key, &opts) {
            Ok(Some(v)) => Some(T::decode(&v).map(Some).map_err(Into::into)),
            Ok(None) => Some(Ok(None)),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => None,
            Err(e) => Some(Err(e.into())),
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};

    use super::GroupSync;

    /// Batches written while a WAL sync runs are made durable together by the next one, and
    /// the durable seq moves only when a sync that covers an entry has finished.
    #[test]
    fn batches_written_during_a_sync_share_the_next_one() {
        let group = Arc::new(GroupSync::new(true, 10));
        let syncs = Arc::new(AtomicU64::new(0));
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(parking_lot::Mutex::new(release_rx));
        let sync_wal = {
            let syncs = syncs.clone();
            move || {
                // The first sync blocks until the test lets it finish; later ones do not.
                if syncs.fetch_add(1, Ordering::SeqCst) == 0 {
                    entered_tx.send(()).unwrap();
                    release_rx.lock().recv().unwrap();
                }
                Ok(())
            }
        };
        let sync_wal = Arc::new(sync_wal);

        let first = group.written(11);
        let leader = {
            let (group, sync_wal) = (group.clone(), sync_wal.clone());
            std::thread::spawn(move || group.wait_durable(first, &*sync_wal))
        };
        entered.recv().unwrap();
        assert_eq!(
            group.durable_seq(),
            10,
            "nothing is durable before its sync ends"
        );

        // Four more batches while the first sync runs: they wait for it, then one of them
        // syncs for all four.
        let followers: Vec<_> = (12..16)
            .map(|seq| {
                let ticket = group.written(seq);
                let (group, sync_wal) = (group.clone(), sync_wal.clone());
                std::thread::spawn(move || group.wait_durable(ticket, &*sync_wal))
            })
            .collect();
        release.send(()).unwrap();
        leader.join().unwrap().unwrap();
        for f in followers {
            f.join().unwrap().unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 2, "five batches, two syncs");
        assert_eq!(group.durable_seq(), 15);
    }

    /// A failed sync fails its committer and leaves the entry not durable; a later sync that
    /// succeeds covers it.
    #[test]
    fn a_failed_sync_is_an_error_and_a_later_one_covers_the_batch() {
        let group = GroupSync::new(true, 0);
        let ticket = group.written(1);
        let err = group.wait_durable(ticket, || {
            Err(crate::ManifestError::Invalid("disk gone".into()))
        });
        assert!(err.is_err());
        assert_eq!(group.durable_seq(), 0);
        group.wait_durable(ticket, || Ok(())).unwrap();
        assert_eq!(group.durable_seq(), 1);
    }

    /// Without synced writes every batch counts as durable when written.
    #[test]
    fn unsynced_stores_never_wait() {
        let group = GroupSync::new(false, 3);
        let ticket = group.written(4);
        assert_eq!(group.durable_seq(), 4);
        group
            .wait_durable(ticket, || panic!("no sync without synced writes"))
            .unwrap();
    }

    /// Committers waiting on tasks share syncs like threads do: batches written while a sync
    /// runs are covered by one more, and none returns before a sync covering it has ended.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_waiting_for_durability_share_syncs() {
        let group = Arc::new(GroupSync::new(true, 0));
        let syncs = Arc::new(AtomicU64::new(0));
        let (entered_tx, entered) = mpsc::channel::<()>();
        let entered_tx = Arc::new(parking_lot::Mutex::new(entered_tx));
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(parking_lot::Mutex::new(release_rx));
        let sync_wal = {
            let syncs = syncs.clone();
            move || {
                if syncs.fetch_add(1, Ordering::SeqCst) == 0 {
                    entered_tx.lock().send(()).unwrap();
                    release_rx.lock().recv().unwrap();
                }
                Ok(())
            }
        };
        let first = group.written(1);
        let leader = {
            let (group, sync_wal) = (group.clone(), sync_wal.clone());
            tokio::spawn(async move { group.wait_durable_async(first, sync_wal).await })
        };
        tokio::task::spawn_blocking(move || entered.recv().unwrap())
            .await
            .unwrap();
        let followers: Vec<_> = (2..10)
            .map(|seq| {
                let ticket = group.written(seq);
                let (group, sync_wal) = (group.clone(), sync_wal.clone());
                tokio::spawn(async move { group.wait_durable_async(ticket, sync_wal).await })
            })
            .collect();
        assert_eq!(
            group.durable_seq(),
            0,
            "nothing durable while the first sync runs"
        );
        release.send(()).unwrap();
        leader.await.unwrap().unwrap();
        for f in followers {
            f.await.unwrap().unwrap();
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 2, "nine batches, two syncs");
        assert_eq!(group.durable_seq(), 9);
    }

    /// Inside a deferring scope a commit returns once written and hands back its ticket;
    /// the scope ends even when its closure panics, so the pool thread waits again after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_commits_return_their_ticket_and_the_scope_always_ends() {
        use cairn_core::manifest::Bucket;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            crate::ManifestStore::open(dir.path(), crate::ManifestConfig::default()).unwrap(),
        );
        let (r, ticket) = store.deferring(|| store.create_bucket(&Bucket::new("b1", "owner", 0)));
        r.unwrap();
        let ticket = ticket.expect("a deferred commit hands back its ticket");
        assert!(
            store.group.state.lock().synced < ticket,
            "the commit returned before its sync"
        );
        store.clone().durable(ticket).await.unwrap();
        assert!(store.group.state.lock().synced >= ticket);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.deferring(|| panic!("a mutation that panics"))
        }));
        assert!(caught.is_err());
        assert_eq!(
            super::DEFERRED.get(),
            None,
            "the scope ended with the panic"
        );
        // Outside a scope a commit returns durable again.
        store.create_bucket(&Bucket::new("b2", "owner", 0)).unwrap();
        let s = store.group.state.lock();
        assert_eq!(
            s.synced, s.written,
            "a commit outside the scope waited for its sync"
        );
    }
}
