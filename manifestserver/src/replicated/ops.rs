//! The shapes of replicated operations: quorum reads with repair, checked writes on the
//! primary, in-place updates, newest-version reads, listings.

use super::*;

impl ReplicatedManifests {
    /// A record read from R current replicas (read order) and the previous-only ones of `set`,
    /// with read repair.
    pub(super) fn read_record(
        &self,
        set: &ReadSet,
        id: RecordId,
    ) -> Result<StampedRecord, ManifestError> {
        let r = self.state().r;
        self.block_on(async {
            self.shared
                .get_record(&set.order, set.current, r, &id, true)
                .await
        })
        .map(|(w, _)| w)
    }

    /// A checked write on the primary, then the same (unchecked, at the stamp the primary
    /// stored) replicated at W counting the primary. Returns the primary's outcome.
    pub(super) fn checked_then_replicated(
        &self,
        what: &str,
        replicas: &[Arc<Node>],
        write: StampedWrite,
    ) -> Result<WriteOutcome, ManifestError> {
        let w = self.state().w;
        self.block_on(async {
            let (i, outcome) = self
                .shared
                .primary_write(what, replicas, write.clone())
                .await?;
            let copy = StampedWrite {
                stamp: outcome.stamp,
                check: StampCheck::None,
                ..write
            };
            self.shared
                .write_replicas(what, replicas, vec![copy], w, Some(i))
                .await?;
            Ok(outcome)
        })
    }

    /// Unconditional writes to every replica, acknowledged at W.
    pub(super) fn replicate(
        &self,
        what: &str,
        replicas: &[Arc<Node>],
        writes: Vec<StampedWrite>,
    ) -> Result<Vec<(usize, Vec<WriteOutcome>)>, ManifestError> {
        let w = self.state().w;
        let adds = |x: &StampedWrite| match &x.record {
            Some(Record::Version(m)) => !m.delete_marker,
            Some(_) => true,
            None => false,
        };
        if writes.iter().any(adds) {
            // New records need a write quorum of replicas with space; removals and delete
            // markers never do (deletes keep working on full disks, as on a single node).
            let full = self.full_nodes();
            let with_space = replicas.iter().filter(|n| !full.contains(&n.id)).count();
            if with_space < w {
                return Err(Refusal::Remote {
                    kind: ErrorKind::NoSpace,
                    message: format!(
                        "{what}: {} of the {} metadata replicas are near full (free space below \
                         the threshold), under the write quorum of {w}: free space on them or \
                         add nodes",
                        replicas.len() - with_space,
                        replicas.len()
                    ),
                }
                .into());
            }
        }
        self.block_on(self.shared.write_replicas(what, replicas, writes, w, None))
    }

    /// An in-place update (see the module docs): read from R replicas in placement order,
    /// bring the primary to the winner, change a copy, compare-and-swap on the primary, retry
    /// on conflict, replicate. `None` if the record does not exist.
    pub(super) fn update_record(
        &self,
        what: &str,
        replicas: &[Arc<Node>],
        id: RecordId,
        change: &mut dyn FnMut(&mut Record) -> Result<(), ManifestError>,
    ) -> Result<Option<Record>, ManifestError> {
        let state = self.state();
        let mut last = None;
        for _ in 0..self.shared.config.update_retries.max(1) {
            let (winner, answers) = self.block_on(self.shared.get_record(
                replicas,
                replicas.len(),
                state.r,
                &id,
                false,
            ))?;
            let Some(current) = winner.record.clone() else {
                return Ok(None);
            };
            let (p, primary_answer) = &answers[0];
            let primary = replicas[*p].clone();
            if primary_answer.rank() < winner.rank() || primary_answer.record != winner.record {
                let sync = repair_write(&winner);
                if let Err(e) = self.block_on(self.shared.put_all(&primary, vec![sync])) {
                    tracing::debug!(node = %primary.label(), error = %e,
                        "bringing the primary up to date failed");
                }
            }
            let mut new = current.clone();
            change(&mut new)?;
            let stamp = self.stamp_after(winner.stamp);
            let write = StampedWrite {
                id: id.clone(),
                record: Some(new.clone()),
                stamp,
                check: StampCheck::Is {
                    stamp: winner.stamp,
                    record: current,
                },
            };
            match self.block_on(self.shared.put_all(&primary, vec![write])) {
                Ok(mut outcomes) => {
                    let outcome = outcomes.pop().unwrap_or_default();
                    if !outcome.applied && outcome.previous.is_none() {
                        return Ok(None);
                    }
                    let copy = StampedWrite {
                        id: id.clone(),
                        record: Some(new.clone()),
                        stamp: outcome.stamp,
                        check: StampCheck::None,
                    };
                    self.block_on(self.shared.write_replicas(
                        what,
                        replicas,
                        vec![copy],
                        state.w,
                        Some(*p),
                    ))?;
                    return Ok(Some(new));
                }
                Err(e) if e.is_conflict() || is_transport(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Refusal::Conflict(format!("{what}: no attempt made")).into()))
    }

    /// The newest version of a key (`null`: its null version) from R current replicas and the
    /// previous-only ones, never one an answering replica removed (see the module docs).
    pub(super) fn read_newest(
        &self,
        bucket: &str,
        key: &str,
        null: bool,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let state = self.state();
        let set = state.bucket_read_set(bucket)?;
        self.block_on(self.shared.newest(&set, state.r, bucket, key, null))
    }

    /// A bucket's record and one version of one of its keys from one read of R current
    /// replicas and the previous-only ones (each answers both: a bucket's replicas hold its
    /// record and its versions). The record is settled as [`ReplicatedManifests::read_record`]
    /// settles it, the version as `get_version` (by id) or [`ReplicatedManifests::read_newest`]
    /// (newest, null) do, read repair included. The newest version's sibling count is the
    /// greatest among the replicas whose newest version is the winner (see [`settled_siblings`]).
    pub(super) fn object_read(
        &self,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectLookup, ManifestError> {
        let state = self.state();
        let set = state.bucket_read_set(bucket)?;
        let shared = &self.shared;
        self.block_on(async {
            let (b, k) = (bucket.to_string(), key.to_string());
            let answers = shared
                .ask_read("a read", &set, state.r, move |shared, node| {
                    let (b, k) = (b.clone(), k.clone());
                    async move { shared.read_object_on(&node, &b, &k, wanted).await }
                })
                .await?;
            let mut records = Vec::with_capacity(answers.len());
            let mut versions = Vec::new();
            let mut newest = Vec::new();
            let mut counts = Vec::new();
            for (i, answer) in answers {
                records.push((i, answer.bucket));
                match answer.version {
                    VersionState::Record(v) => versions.push((i, v)),
                    VersionState::Key(s) => {
                        if let Some(f) = &s.found {
                            counts.push((f.version, answer.siblings));
                        }
                        newest.push((i, s));
                    }
                }
            }
            let record = shared.settle_record(&set.order, set.current, &records, true)?;
            let version = match wanted {
                WantedVersion::Id(_) => shared
                    .settle_record(&set.order, set.current, &versions, true)?
                    .record
                    .map(as_version)
                    .transpose()?,
                WantedVersion::Newest | WantedVersion::Null => {
                    let null = wanted == WantedVersion::Null;
                    shared
                        .settle_newest(&set, bucket, key, null, newest)
                        .await?
                }
            };
            let siblings = match (&version, wanted) {
                (Some(v), WantedVersion::Newest) => settled_siblings(&counts, v.version),
                _ => 0,
            };
            Ok(ObjectLookup {
                bucket: record.record.map(as_bucket).transpose()?,
                version,
                siblings,
            })
        })
    }

    /// [`ManifestBackend::count_siblings`]: the greatest count among R current replicas of
    /// the bucket and the previous-only ones. Siblings only accumulate on a replica (by
    /// union), so the greatest count is the one nearest the truth; with R + W > n it counts a
    /// sibling whose write reached W replicas, whether or not `m` itself is stored there.
    pub(super) fn sibling_count(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        let state = self.state();
        let set = state.bucket_read_set(&m.bucket)?;
        let req = ManifestRequest::CountSiblings {
            bucket: m.bucket.clone(),
            key: m.key.clone(),
            version: m.version,
            parent: m.parent,
        };
        let answers = self.block_on(self.shared.ask_read(
            "a sibling count",
            &set,
            state.r,
            move |shared, node| {
                let req = req.clone();
                async move {
                    match shared.call(&node, req).await? {
                        ManifestResponse::Siblings(n) => Ok(n),
                        other => Err(unexpected("a sibling count", &other)),
                    }
                }
            },
        ))?;
        Ok(answers.into_iter().map(|(_, n)| n).max().unwrap_or(0))
    }

    /// Every bucket record (`keys` false) or access key on any manifest node, greatest stamp
    /// per name, deleted ones left out.
    pub(super) fn list_everywhere(&self, keys: bool) -> Result<Vec<Record>, ManifestError> {
        let state = self.state();
        let nodes = state.manifest_nodes.clone();
        let answers = self.block_on(async {
            let mut set = JoinSet::new();
            for node in nodes.iter().cloned() {
                let shared = self.shared.clone();
                set.spawn(async move {
                    let mut out: Vec<StampedRecord> = Vec::new();
                    loop {
                        let after = out.last().map(|r| match &r.id {
                            RecordId::Bucket(n) | RecordId::Key(n) => n.clone(),
                            _ => String::new(),
                        });
                        let req = ManifestRequest::ListStamped {
                            keys,
                            after,
                            max: 100,
                        };
                        let (records, truncated) = match shared.call(&node, req).await {
                            Ok(ManifestResponse::StampedPage { records, truncated }) => {
                                (records, truncated)
                            }
                            Ok(other) => return (node, Err(unexpected("a listing", &other))),
                            Err(e) => return (node, Err(e)),
                        };
                        let progressed = !records.is_empty();
                        out.extend(records);
                        if out.len() > rpc::MAX_COLLECTED {
                            let e = Refusal::LimitExceeded(format!(
                                "more than {} records to list",
                                rpc::MAX_COLLECTED
                            ));
                            return (node, Err(e.into()));
                        }
                        if !truncated || !progressed {
                            return (node, Ok(out));
                        }
                    }
                });
            }
            let mut answers = Vec::new();
            while let Some(joined) = set.join_next().await {
                if let Ok(a) = joined {
                    answers.push(a);
                }
            }
            answers
        });
        let mut merged: BTreeMap<String, StampedRecord> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut ok = 0;
        for (node, result) in answers {
            match result {
                Ok(records) => {
                    ok += 1;
                    for r in records {
                        let name = match &r.id {
                            RecordId::Bucket(n) | RecordId::Key(n) => n.clone(),
                            _ => continue,
                        };
                        match merged.get(&name) {
                            Some(old) if old.rank() >= r.rank() => {}
                            _ => {
                                merged.insert(name, r);
                            }
                        }
                    }
                }
                Err(e) => failures.push((node.label(), e)),
            }
        }
        if failures.len() > state.n - state.r || ok == 0 {
            return Err(replicas_error(
                "a bucket or key listing",
                nodes.len() - (state.n - state.r),
                ok,
                failures,
            ));
        }
        Ok(merged.into_values().filter_map(|r| r.record).collect())
    }
}

/// The sibling count of the settled newest version `winner` from the replicas' answers
/// (newest version, its count): the greatest among those whose newest version is the winner,
/// 0 if none is (then no answer counted for it: it came from a replica asked again after a
/// removal was pushed to it). A count for another version is never taken: its siblings are
/// not the winner's. A replica that has the winner but not yet a sibling counts less; read
/// repair and anti-entropy bring it the sibling.
pub(super) fn settled_siblings(counts: &[(VersionId, u32)], winner: VersionId) -> u32 {
    counts
        .iter()
        .filter(|(v, _)| *v == winner)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

impl Shared {
    /// [`ReplicatedManifests::read_newest`] over `set`: R of its current replicas and every
    /// previous-only one; the winner is sent to current replicas that lack it.
    pub(super) async fn newest(
        self: &Arc<Self>,
        set: &ReadSet,
        r: usize,
        bucket: &str,
        key: &str,
        null: bool,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let (b, k) = (bucket.to_string(), key.to_string());
        let answers = self
            .ask_read("a read", set, r, move |shared, node| {
                let (b, k) = (b.clone(), k.clone());
                async move { shared.read_key(&node, &b, &k, null).await }
            })
            .await?;
        self.settle_newest(set, bucket, key, null, answers).await
    }

    /// The winner among the answers of a newest-version read (see [`Shared::newest`]): never
    /// a version an answering replica removed (the removal is pushed to replicas that still
    /// hold it, which are then asked again, up to three rounds), else the greatest version id;
    /// it is sent to current replicas that lack it.
    pub(super) async fn settle_newest(
        self: &Arc<Self>,
        set: &ReadSet,
        bucket: &str,
        key: &str,
        null: bool,
        mut answers: Vec<(usize, KeyState)>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let shared = self;
        let order = &set.order;
        let mut removed: HashSet<VersionId> = HashSet::new();
        for round in 0..4 {
            removed.extend(
                answers
                    .iter()
                    .flat_map(|(_, a)| a.tombstones.iter().copied()),
            );
            let stale: Vec<usize> = (0..answers.len())
                .filter(|&j| {
                    answers[j]
                        .1
                        .found
                        .as_ref()
                        .is_some_and(|f| removed.contains(&f.version))
                })
                .collect();
            if stale.is_empty() {
                break;
            }
            for j in stale {
                let (i, a) = &mut answers[j];
                let node = &order[*i];
                let found = a.found.take().expect("filtered on found");
                if round == 3 {
                    continue;
                }
                // Push the removal there, then ask it again.
                let removal = StampedWrite {
                    id: version_id(bucket, key, found.version),
                    record: None,
                    stamp: TOMBSTONE,
                    check: StampCheck::None,
                };
                add(&shared.counters.read_repairs, 1);
                if shared.put_all(node, vec![removal]).await.is_ok() {
                    if let Ok(again) = shared.read_key(node, bucket, key, null).await {
                        *a = again;
                    }
                }
            }
        }
        let winner = answers
            .iter()
            .filter_map(|(_, a)| a.found.as_ref().map(|f| (f, a.stamp)))
            .filter(|(f, _)| !removed.contains(&f.version))
            .max_by_key(|(f, stamp)| (f.version, *stamp))
            .map(|(f, s)| (f.clone(), s));
        if let Some((w, stamp)) = &winner {
            for (i, a) in answers.iter().filter(|(i, _)| *i < set.current) {
                let behind = match &a.found {
                    None => true,
                    Some(f) => {
                        f.version < w.version || (f.version == w.version && a.stamp < *stamp)
                    }
                };
                if behind {
                    shared.repair(
                        order[*i].clone(),
                        vec![StampedWrite {
                            id: version_id(bucket, key, w.version),
                            record: Some(Record::Version(w.clone())),
                            stamp: *stamp,
                            check: StampCheck::None,
                        }],
                        order,
                    );
                }
            }
        }
        Ok(winner.map(|(w, _)| w))
    }
}
