//! The stamped operations of a [`ManifestStore`] (see the module docs of `stamped`).

use super::*;

impl ManifestStore {
    fn stamp_entry(&self, skey: &[u8]) -> Result<Option<(VersionId, bool)>, ManifestError> {
        match self.db.get_pinned_cf(self.cf(CF_STAMPS), skey)? {
            Some(v) => Ok(Some(decode_stamp(&v)?)),
            None => Ok(None),
        }
    }

    /// Whether version `version` of `key` was removed here (it has a tombstone).
    pub fn is_removed(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<bool, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let vkey = keys::version_key(bucket, key, version);
        Ok(self.db.get_pinned_cf(self.cf(CF_REMOVED), vkey)?.is_some())
    }

    /// Where a record lives: its column family, database key and stamp key.
    fn locate(id: &RecordId) -> Result<(&'static str, Vec<u8>, Vec<u8>), ManifestError> {
        Ok(match id {
            RecordId::Bucket(name) => {
                keys::check_bucket(name)?;
                (
                    CF_BUCKETS,
                    name.as_bytes().to_vec(),
                    stamp_key(KIND_BUCKET, name.as_bytes()),
                )
            }
            RecordId::Key(kid) => {
                if kid.is_empty() {
                    return Err(ManifestError::Invalid(
                        "access key id must not be empty".to_string(),
                    ));
                }
                (
                    CF_KEYS,
                    kid.as_bytes().to_vec(),
                    stamp_key(KIND_KEY, kid.as_bytes()),
                )
            }
            RecordId::Version {
                bucket,
                key,
                version,
            } => {
                keys::check_bucket(bucket)?;
                keys::check_key(key)?;
                let vkey = keys::version_key(bucket, key, *version);
                let skey = version_stamp_key(&vkey);
                (CF_VERSIONS, vkey, skey)
            }
            RecordId::Upload {
                bucket,
                key,
                upload_id,
            } => {
                keys::check_bucket(bucket)?;
                keys::check_key(key)?;
                keys::check_upload_id(upload_id)?;
                let ukey = keys::upload_key(bucket, key, upload_id);
                let skey = stamp_key(KIND_UPLOAD, &ukey);
                (CF_UPLOADS, ukey, skey)
            }
            RecordId::Part {
                bucket,
                key,
                upload_id,
                number,
            } => {
                keys::check_bucket(bucket)?;
                keys::check_key(key)?;
                keys::check_upload_id(upload_id)?;
                let pkey = keys::part_key(upload_id, *number);
                let skey = stamp_key(KIND_PART, &pkey);
                (CF_PARTS, pkey, skey)
            }
        })
    }

    fn decode_record(id: &RecordId, v: &[u8]) -> Result<Record, ManifestError> {
        Ok(match id {
            RecordId::Bucket(_) => Record::Bucket(Bucket::decode(v)?),
            RecordId::Key(_) => Record::Key(AccessKey::decode(v)?),
            RecordId::Version { .. } => Record::Version(VersionManifest::decode(v)?),
            RecordId::Upload { .. } => Record::Upload(Upload::decode(v)?),
            RecordId::Part { .. } => Record::Part(Part::decode(v)?),
        })
    }

    /// A record with its stamp, as this store holds it.
    pub fn get_stamped(&self, id: &RecordId) -> Result<StampedRecord, ManifestError> {
        let (cf, dbkey, skey) = Self::locate(id)?;
        let record = match self.db.get_pinned_cf(self.cf(cf), &dbkey)? {
            Some(v) => Some(Self::decode_record(id, &v)?),
            None => None,
        };
        let entry = self.stamp_entry(&skey)?;
        let (stamp, deleted) = match (&record, entry, id) {
            (Some(_), Some((s, _)), _) => (s, false),
            (Some(_), None, _) => (VersionId::MIN, false),
            (None, _, RecordId::Version { .. }) => {
                if self
                    .db
                    .get_pinned_cf(self.cf(CF_REMOVED), &dbkey)?
                    .is_some()
                {
                    (TOMBSTONE, true)
                } else {
                    (VersionId::MIN, false)
                }
            }
            (None, Some((s, true)), _) => (s, true),
            (None, _, RecordId::Part { .. }) => {
                let upload = self.upload_of_part(id)?;
                match upload.1 {
                    Some((s, true)) => (s, true),
                    _ => (VersionId::MIN, false),
                }
            }
            (None, _, _) => (VersionId::MIN, false),
        };
        Ok(StampedRecord {
            id: id.clone(),
            stamp,
            record,
            deleted,
        })
    }

    /// For a part id: whether its upload is stored, and the upload's stamp entry.
    #[allow(clippy::type_complexity)]
    fn upload_of_part(
        &self,
        id: &RecordId,
    ) -> Result<(bool, Option<(VersionId, bool)>), ManifestError> {
        let RecordId::Part {
            bucket,
            key,
            upload_id,
            ..
        } = id
        else {
            return Ok((false, None));
        };
        let ukey = keys::upload_key(bucket, key, upload_id);
        let live = self.db.get_pinned_cf(self.cf(CF_UPLOADS), &ukey)?.is_some();
        Ok((live, self.stamp_entry(&stamp_key(KIND_UPLOAD, &ukey))?))
    }

    /// Applies a stamped write (see [`StampedWrite`] and the module docs): a write whose stamp
    /// is not above the stored one changes nothing (`applied: false`) unless it is checked.
    pub fn put_stamped(&self, w: &StampedWrite) -> Result<WriteOutcome, ManifestError> {
        let (cf, dbkey, skey) = Self::locate(&w.id)?;
        match (&w.id, &w.record) {
            (RecordId::Bucket(n), Some(Record::Bucket(b))) if &b.name == n => {}
            (RecordId::Key(k), Some(Record::Key(a))) if &a.id == k => {}
            (
                RecordId::Version {
                    bucket,
                    key,
                    version,
                },
                Some(Record::Version(m)),
            ) if &m.bucket == bucket && &m.key == key && m.version == *version => {}
            (
                RecordId::Upload {
                    bucket,
                    key,
                    upload_id,
                },
                Some(Record::Upload(u)),
            ) if &u.bucket == bucket && &u.key == key && &u.upload_id == upload_id => {}
            (RecordId::Part { number, .. }, Some(Record::Part(p))) if p.number == *number => {}
            (RecordId::Part { .. }, None) => return Err(mismatch("a part cannot be deleted")),
            (_, None) => {}
            _ => return Err(mismatch("kind or name")),
        }
        if let RecordId::Part { number, .. } = &w.id {
            if *number == 0 || *number > 10_000 {
                return Err(ManifestError::Invalid(format!(
                    "part number {number} is out of range: use 1 to 10000"
                )));
            }
        }
        let mut txn = self.begin();
        let out = match &w.id {
            RecordId::Version { .. } => self.put_version_stamped(&mut txn, w, &dbkey, &skey)?,
            _ => self.put_record_stamped(&mut txn, w, cf, &dbkey, &skey)?,
        };
        if out.applied {
            self.commit(txn)?;
        }
        Ok(out)
    }

    fn put_record_stamped(
        &self,
        txn: &mut Txn<'_>,
        w: &StampedWrite,
        cf: &str,
        dbkey: &[u8],
        skey: &[u8],
    ) -> Result<WriteOutcome, ManifestError> {
        let previous = match self.db.get_pinned_cf(self.cf(cf), dbkey)? {
            Some(v) => Some(Self::decode_record(&w.id, &v)?),
            None => None,
        };
        let entry = self.stamp_entry(skey)?;
        let stored = match (&previous, entry) {
            (_, Some((s, deleted))) if previous.is_some() || deleted => s,
            _ => VersionId::MIN,
        };
        let missing = || -> ManifestError {
            match &w.id {
                RecordId::Bucket(n) => ManifestError::NoSuchBucket(n.clone()),
                RecordId::Key(k) => {
                    ManifestError::Invalid(format!("access key `{k}` does not exist"))
                }
                RecordId::Upload { upload_id, .. } | RecordId::Part { upload_id, .. } => {
                    ManifestError::NoSuchUpload(upload_id.clone())
                }
                RecordId::Version { .. } => ManifestError::Invalid("no such version".into()),
            }
        };
        // A part needs its upload: never stored once the upload is gone, and for a checked
        // write the upload must be here.
        if let RecordId::Part { .. } = &w.id {
            let (live, upload) = self.upload_of_part(&w.id)?;
            if !live && (upload.is_some_and(|(_, d)| d) || w.check == StampCheck::Exists) {
                return Err(missing());
            }
        }
        let stamp = match &w.check {
            StampCheck::None => {
                if w.stamp <= stored {
                    return Ok(WriteOutcome {
                        stamp: stored,
                        previous,
                        ..WriteOutcome::default()
                    });
                }
                w.stamp
            }
            StampCheck::Absent => {
                if let Some(p) = &previous {
                    return Err(match p {
                        Record::Bucket(b) => ManifestError::BucketExists {
                            name: b.name.clone(),
                            owner: b.owner.clone(),
                        },
                        Record::Key(k) => ManifestError::KeyExists(k.id.clone()),
                        _ => conflict(&w.id),
                    });
                }
                checked_stamp(w.stamp, stored)
            }
            StampCheck::Exists => {
                if previous.is_none() && !matches!(w.id, RecordId::Part { .. }) {
                    return Err(missing());
                }
                checked_stamp(w.stamp, stored)
            }
            StampCheck::Is { stamp, record } => {
                if previous.is_none() {
                    return Err(missing());
                }
                if previous.as_ref() != Some(record) || *stamp != stored {
                    return Err(conflict(&w.id));
                }
                checked_stamp(w.stamp, stored)
            }
            StampCheck::Unlocked { .. } => {
                return Err(ManifestError::Invalid(
                    "an object-lock check applies to versions only".into(),
                ))
            }
        };
        let mut out = WriteOutcome {
            applied: true,
            stamp,
            previous: previous.clone(),
            ..WriteOutcome::default()
        };
        match (&w.id, &w.record) {
            (RecordId::Bucket(name), None) => {
                if w.check != StampCheck::None {
                    let prefix = keys::bucket_prefix(name);
                    if self.any_with_prefix(CF_VERSIONS, &prefix)?
                        || self.any_with_prefix(CF_UPLOADS, &prefix)?
                    {
                        return Err(ManifestError::BucketNotEmpty(name.clone()));
                    }
                }
                if previous.is_some() {
                    txn.state.stats.buckets = txn.state.stats.buckets.saturating_sub(1);
                }
            }
            (RecordId::Bucket(_), Some(_)) if previous.is_none() => txn.state.stats.buckets += 1,
            (RecordId::Upload { bucket, .. }, Some(_)) => self.require_bucket(bucket)?,
            (RecordId::Upload { upload_id, .. }, None) => {
                let prefix = keys::parts_prefix(upload_id);
                let mut ro = ReadOptions::default();
                ro.set_iterate_lower_bound(prefix.clone());
                if let Some(end) = keys::prefix_end(&prefix) {
                    ro.set_iterate_upper_bound(end);
                }
                let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_PARTS), ro);
                it.seek(&prefix);
                while let Some((k, v)) = it.item() {
                    out.parts.push(Part::decode(v)?);
                    txn.batch.delete_cf(self.cf(CF_PARTS), k);
                    txn.batch
                        .delete_cf(self.cf(CF_STAMPS), stamp_key(KIND_PART, k));
                    it.next();
                }
                it.status()?;
            }
            _ => {}
        }
        match &w.record {
            Some(r) => {
                let bytes = match r {
                    Record::Bucket(b) => b.encode(),
                    Record::Key(k) => k.encode(),
                    Record::Upload(u) => u.encode(),
                    Record::Part(p) => p.encode(),
                    Record::Version(m) => m.encode(),
                };
                txn.batch.put_cf(self.cf(cf), dbkey, bytes);
            }
            None => txn.batch.delete_cf(self.cf(cf), dbkey),
        }
        txn.batch.put_cf(
            self.cf(CF_STAMPS),
            skey,
            encode_stamp(stamp, w.record.is_none()),
        );
        Ok(out)
    }

    fn put_version_stamped(
        &self,
        txn: &mut Txn<'_>,
        w: &StampedWrite,
        vkey: &[u8],
        skey: &[u8],
    ) -> Result<WriteOutcome, ManifestError> {
        let RecordId::Version {
            bucket,
            key,
            version,
        } = &w.id
        else {
            unreachable!("called for versions only");
        };
        let current = self.get_rec::<VersionManifest>(CF_VERSIONS, vkey)?;
        let stored = match &current {
            Some(_) => self.stamp_entry(skey)?.map_or(VersionId::MIN, |(s, _)| s),
            None => VersionId::MIN,
        };
        let tombstoned = self.db.get_pinned_cf(self.cf(CF_REMOVED), vkey)?.is_some();
        let previous = current.clone().map(Record::Version);
        let Some(Record::Version(m)) = &w.record else {
            // A removal: the version goes (if here) and a tombstone stays.
            if let (
                StampCheck::Unlocked {
                    now_ms,
                    bypass_governance,
                },
                Some(c),
            ) = (&w.check, &current)
            {
                if c.lock.protects(*now_ms, *bypass_governance) {
                    return Err(ManifestError::Locked(crate::rpc::LOCKED.into()));
                }
            }
            let applied = if current.is_some() {
                self.remove_in(txn, bucket, key, *version)?;
                true
            } else if !tombstoned {
                self.tombstone_in(txn, vkey);
                true
            } else {
                false
            };
            return Ok(WriteOutcome {
                applied,
                stamp: TOMBSTONE,
                previous,
                ..WriteOutcome::default()
            });
        };
        if tombstoned {
            return Ok(WriteOutcome {
                stamp: TOMBSTONE,
                ..WriteOutcome::default()
            });
        }
        let stamp = match &w.check {
            StampCheck::None => w.stamp,
            StampCheck::Is { stamp, record } => {
                let Some(c) = &current else {
                    // Gone: the caller reports "no such version".
                    return Ok(WriteOutcome::default());
                };
                if Some(record) != previous.as_ref() || *stamp != stored {
                    return Err(conflict(&w.id));
                }
                let _ = c;
                checked_stamp(w.stamp, stored)
            }
            _ => {
                return Err(ManifestError::Invalid(
                    "a version write takes no existence check".into(),
                ))
            }
        };
        match &current {
            None => {
                let (applied, replaced) = self.apply_in(txn, m)?;
                if applied && stamp > VersionId::MIN {
                    txn.batch
                        .put_cf(self.cf(CF_STAMPS), skey, encode_stamp(stamp, false));
                }
                Ok(WriteOutcome {
                    applied,
                    stamp,
                    previous: None,
                    replaced,
                    parts: Vec::new(),
                })
            }
            Some(c) => {
                if stamp <= stored || c == m && stamp == stored {
                    return Ok(WriteOutcome {
                        stamp: stored,
                        previous,
                        ..WriteOutcome::default()
                    });
                }
                if c.content != m.content
                    || c.delete_marker != m.delete_marker
                    || c.null_version != m.null_version
                {
                    return Err(ManifestError::Invalid(
                        "an in-place update cannot change a version's identity or content".into(),
                    ));
                }
                txn.batch.put_cf(self.cf(CF_VERSIONS), vkey, m.encode());
                let ck = keys::current_key(bucket, key);
                let is_current = self
                    .get_rec::<VersionManifest>(crate::db::CF_CURRENT, &ck)?
                    .is_some_and(|cur| cur.version == *version);
                if is_current {
                    txn.batch
                        .put_cf(self.cf(crate::db::CF_CURRENT), ck, m.encode());
                }
                txn.batch
                    .put_cf(self.cf(CF_STAMPS), skey, encode_stamp(stamp, false));
                self.log_change(txn, m, false);
                Ok(WriteOutcome {
                    applied: true,
                    stamp,
                    previous,
                    ..WriteOutcome::default()
                })
            }
        }
    }

    /// This store's view of a key: its newest version (`null`: its null version) with its
    /// stamp, and the tombstones newer than it (see [`KeyState`]).
    pub fn read_key(&self, bucket: &str, key: &str, null: bool) -> Result<KeyState, ManifestError> {
        keys::check_bucket(bucket)?;
        keys::check_key(key)?;
        let found = if null {
            self.versions_of(bucket, key)?
                .into_iter()
                .find(|v| v.null_version)
        } else {
            self.newest_except(bucket, key, None)?
        };
        let stamp = match &found {
            Some(f) => {
                let vkey = keys::version_key(bucket, key, f.version);
                self.stamp_entry(&version_stamp_key(&vkey))?
                    .map_or(VersionId::MIN, |(s, _)| s)
            }
            None => VersionId::MIN,
        };
        let (start, ro) = Self::key_versions_opts(bucket, key);
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_REMOVED), ro);
        it.seek(&start);
        let mut tombstones = Vec::new();
        while let Some(k) = it.key() {
            let id = keys::parse_inverted_version(&k[start.len()..])?;
            if found.as_ref().is_some_and(|f| id <= f.version) || tombstones.len() == MAX_TOMBSTONES
            {
                break;
            }
            tombstones.push(id);
            it.next();
        }
        it.status()?;
        Ok(KeyState {
            found,
            stamp,
            tombstones,
        })
    }

    /// This store's view of a bucket's record and of one version of one of its keys (see
    /// [`ObjectState`]): [`ManifestStore::get_stamped`] of the bucket, then
    /// [`ManifestStore::read_key`] for the newest or the null version, or
    /// [`ManifestStore::get_stamped`] of the version by id; for the newest version, its
    /// sibling count here ([`ManifestStore::count_siblings`], as a single store's GET counts).
    pub fn read_object_stamped(
        &self,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectState, ManifestError> {
        keys::check_key(key)?;
        let record = self.get_stamped(&RecordId::Bucket(bucket.to_string()))?;
        let mut siblings = 0;
        let version = match wanted {
            WantedVersion::Newest => {
                let state = self.read_key(bucket, key, false)?;
                if let Some(m) = &state.found {
                    siblings = self.count_siblings(m)?;
                }
                VersionState::Key(state)
            }
            WantedVersion::Null => VersionState::Key(self.read_key(bucket, key, true)?),
            WantedVersion::Id(version) => {
                VersionState::Record(self.get_stamped(&RecordId::Version {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    version,
                })?)
            }
        };
        Ok(ObjectState {
            bucket: record,
            version,
            siblings,
        })
    }

    /// Bucket records (`keys` false) or access keys (`keys` true) named strictly after
    /// `after`, with their stamps, deleted ones included (as tombstones): at most `max`, and
    /// whether more follow.
    pub fn list_stamped_page(
        &self,
        keys_table: bool,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<StampedRecord>, bool), ManifestError> {
        let (cf, kind) = if keys_table {
            (CF_KEYS, KIND_KEY)
        } else {
            (CF_BUCKETS, KIND_BUCKET)
        };
        let want = max.saturating_add(1);
        // Live records.
        let start = after.map(|a| keys::after(a.as_bytes()));
        let mode = match &start {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut names: Vec<String> = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), mode).take(want) {
            let (k, _) = item?;
            names.push(String::from_utf8_lossy(&k).into_owned());
        }
        // Deleted ones (stamp entries flagged deleted).
        let lower = stamp_key(kind, after.map_or(&b""[..], |a| a.as_bytes()));
        let lower = if after.is_some() {
            keys::after(&lower)
        } else {
            lower
        };
        let mut ro = ReadOptions::default();
        if let Some(end) = keys::prefix_end(&[kind]) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(self.cf(CF_STAMPS), ro);
        it.seek(&lower);
        let mut deleted = 0usize;
        while let Some((k, v)) = it.item() {
            if deleted == want {
                break;
            }
            if decode_stamp(v)?.1 {
                names.push(String::from_utf8_lossy(&k[1..]).into_owned());
                deleted += 1;
            }
            it.next();
        }
        it.status()?;
        names.sort();
        names.dedup();
        let truncated = names.len() > max;
        names.truncate(max);
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            let id = if keys_table {
                RecordId::Key(n)
            } else {
                RecordId::Bucket(n)
            };
            out.push(self.get_stamped(&id)?);
        }
        Ok((out, truncated))
    }

    /// Parts of an upload numbered after `after` with their stamps, at most `max`.
    pub fn list_parts_stamped(
        &self,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<(VersionId, Part)>, ManifestError> {
        let parts = self.list_parts(upload_id, after, max)?;
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let skey = stamp_key(KIND_PART, &keys::part_key(upload_id, p.number));
            let stamp = self.stamp_entry(&skey)?.map_or(VersionId::MIN, |(s, _)| s);
            out.push((stamp, p));
        }
        Ok(out)
    }

    /// The anti-entropy cursor kept for peer `peer`: the map epoch it was kept under and the
    /// last change-log seq of that peer this store has caught up with (`None` if none).
    pub fn sync_cursor(&self, peer: u64) -> Result<Option<(u64, u64)>, ManifestError> {
        let k = [CURSOR_PREFIX, &peer.to_be_bytes()].concat();
        match self.db.get_pinned_cf(self.cf(CF_META), k)? {
            Some(v) => {
                let b: [u8; 16] = v[..]
                    .try_into()
                    .map_err(|_| keys::corrupt("sync cursor", "expected 16 bytes"))?;
                let (epoch, seq) = b.split_at(8);
                Ok(Some((
                    u64::from_be_bytes(epoch.try_into().unwrap_or_default()),
                    u64::from_be_bytes(seq.try_into().unwrap_or_default()),
                )))
            }
            None => Ok(None),
        }
    }

    /// Stores the anti-entropy cursor of peer `peer` under map `epoch` (durably).
    pub fn set_sync_cursor(&self, peer: u64, epoch: u64, seq: u64) -> Result<(), ManifestError> {
        let k = [CURSOR_PREFIX, &peer.to_be_bytes()].concat();
        let v = [epoch.to_be_bytes(), seq.to_be_bytes()].concat();
        self.db
            .put_cf_opt(self.cf(CF_META), k, v, &self.write_opts)?;
        Ok(())
    }

    /// The newest cluster map epoch under which this store caught up with every other
    /// manifest node of that map (a complete anti-entropy pass, see
    /// `ReplicatedManifests::anti_entropy_pass`); 0 if never.
    pub fn synced_epoch(&self) -> Result<u64, ManifestError> {
        match self.db.get_pinned_cf(self.cf(CF_META), SYNCED_EPOCH)? {
            Some(v) => {
                let b: [u8; 8] = v[..]
                    .try_into()
                    .map_err(|_| keys::corrupt("synced epoch", "expected 8 bytes"))?;
                Ok(u64::from_be_bytes(b))
            }
            None => Ok(0),
        }
    }

    /// Records that this store caught up under map `epoch` (durably; an older epoch than the
    /// one kept is ignored).
    pub fn set_synced_epoch(&self, epoch: u64) -> Result<(), ManifestError> {
        if epoch <= self.synced_epoch()? {
            return Ok(());
        }
        self.db.put_cf_opt(
            self.cf(CF_META),
            SYNCED_EPOCH,
            epoch.to_be_bytes(),
            &self.write_opts,
        )?;
        Ok(())
    }
}
