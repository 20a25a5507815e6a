//! [`ManifestBackend`] over the replicas (see the module docs of `replicated`).

use super::listing::Listing;
use super::*;

impl ManifestBackend for ReplicatedManifests {
    fn create_bucket(&self, bucket: &Bucket) -> Result<(), ManifestError> {
        let replicas = self.state().bucket_replicas(&bucket.name)?;
        let write = StampedWrite {
            id: RecordId::Bucket(bucket.name.clone()),
            record: Some(Record::Bucket(bucket.clone())),
            stamp: self.shared.hlc.tick(),
            check: StampCheck::Absent,
        };
        self.checked_then_replicated("create_bucket", &replicas, write)
            .map(|_| ())
    }

    fn get_bucket(&self, name: &str) -> Result<Option<Bucket>, ManifestError> {
        let set = self.state().bucket_read_set(name)?;
        let w = self.read_record(&set, RecordId::Bucket(name.to_string()))?;
        w.record.map(as_bucket).transpose()
    }

    fn list_buckets(&self) -> Result<Vec<Bucket>, ManifestError> {
        self.list_everywhere(false)?
            .into_iter()
            .map(as_bucket)
            .collect()
    }

    fn update_bucket(
        &self,
        name: &str,
        change: InPlace<'_, Bucket>,
    ) -> Result<Bucket, ManifestError> {
        let replicas = self.state().bucket_replicas(name)?;
        let mut on_record = |r: &mut Record| match r {
            Record::Bucket(b) => {
                change(b)?;
                if b.name != name {
                    return Err(ManifestError::Invalid("a bucket cannot be renamed".into()));
                }
                Ok(())
            }
            _ => Err(ManifestError::Invalid("expected a bucket record".into())),
        };
        match self.update_record(
            "update_bucket",
            &replicas,
            RecordId::Bucket(name.to_string()),
            &mut on_record,
        )? {
            Some(r) => as_bucket(r),
            None => Err(ManifestError::NoSuchBucket(name.to_string())),
        }
    }

    fn delete_bucket(&self, name: &str) -> Result<(), ManifestError> {
        let replicas = self.state().bucket_replicas(name)?;
        let write = StampedWrite {
            id: RecordId::Bucket(name.to_string()),
            record: None,
            stamp: self.shared.hlc.tick(),
            check: StampCheck::Exists,
        };
        self.checked_then_replicated("delete_bucket", &replicas, write)
            .map(|_| ())
    }

    fn apply_when(
        &self,
        m: &VersionManifest,
        upload_id: Option<&str>,
        condition: Option<&WriteCondition>,
    ) -> Result<(bool, Vec<VersionManifest>), ManifestError> {
        let state = self.state();
        let replicas = state.bucket_replicas(&m.bucket)?;
        let version = StampedWrite {
            id: version_id(&m.bucket, &m.key, m.version),
            record: Some(Record::Version(m.clone())),
            stamp: VersionId::MIN,
            check: StampCheck::None,
        };
        if condition.is_none() && upload_id.is_none() {
            let acked = self.replicate("apply", &replicas, vec![version])?;
            let mut stored = false;
            let mut replaced: BTreeMap<VersionId, VersionManifest> = BTreeMap::new();
            for (_, outcomes) in acked {
                for o in outcomes {
                    stored |= o.applied;
                    replaced.extend(o.replaced.into_iter().map(|r| (r.version, r)));
                }
            }
            return Ok((stored, replaced.into_values().collect()));
        }
        let req = match condition {
            Some(c) => ManifestRequest::ApplyIf {
                manifest: m.clone(),
                upload_id: upload_id.map(str::to_string),
                condition: c.clone(),
            },
            None => ManifestRequest::CompleteUpload {
                upload_id: upload_id.unwrap_or_default().to_string(),
                manifest: m.clone(),
            },
        };
        let mut writes = vec![version];
        if let Some(u) = upload_id {
            writes.push(StampedWrite {
                id: RecordId::Upload {
                    bucket: m.bucket.clone(),
                    key: m.key.clone(),
                    upload_id: u.to_string(),
                },
                record: None,
                stamp: self.shared.hlc.tick(),
                check: StampCheck::None,
            });
        }
        self.block_on(async {
            let mut failures = Vec::new();
            // The primary is the first replica that answers; one suspected down is tried last.
            for i in self.shared.by_health(&replicas) {
                let node = &replicas[i];
                let mut answer = self.shared.call(node, req.clone()).await;
                if matches!(answer, Err(ManifestError::NoSuchBucket(_)))
                    && self.shared.copy_bucket(node, &m.bucket, &replicas).await
                {
                    answer = self.shared.call(node, req.clone()).await;
                }
                let out = match answer {
                    Ok(ManifestResponse::Applied { stored, replaced }) => (stored, replaced),
                    Ok(ManifestResponse::Replaced(replaced)) => (true, replaced),
                    Ok(other) => return Err(unexpected("a checked apply", &other)),
                    Err(e) if is_transport(&e) => {
                        add(&self.shared.counters.primary_failovers, 1);
                        failures.push((node.label(), e));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.shared
                    .write_replicas("apply", &replicas, writes, state.w, Some(i))
                    .await?;
                return Ok(out);
            }
            Err(replicas_error("a checked apply", 1, 0, failures))
        })
    }

    fn head(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError> {
        self.read_newest(bucket, key, false)
    }

    fn current(&self, bucket: &str, key: &str) -> Result<Option<VersionManifest>, ManifestError> {
        Ok(self
            .read_newest(bucket, key, false)?
            .filter(|m| !m.delete_marker))
    }

    fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let set = self.state().bucket_read_set(bucket)?;
        let w = self.read_record(&set, version_id(bucket, key, version))?;
        w.record.map(as_version).transpose()
    }

    fn get_null_version(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        self.read_newest(bucket, key, true)
    }

    fn read_object(
        &self,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectLookup, ManifestError> {
        self.object_read(bucket, key, wanted)
    }

    fn count_siblings(&self, m: &VersionManifest) -> Result<u32, ManifestError> {
        self.sibling_count(m)
    }

    fn remove_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        lock_check: Option<(u64, bool)>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let replicas = self.state().bucket_replicas(bucket)?;
        let id = version_id(bucket, key, version);
        let removal = StampedWrite {
            id: id.clone(),
            record: None,
            stamp: TOMBSTONE,
            check: StampCheck::None,
        };
        let Some((now_ms, bypass_governance)) = lock_check else {
            let acked = self.replicate("remove_version", &replicas, vec![removal])?;
            return acked
                .into_iter()
                .flat_map(|(_, o)| o)
                .find_map(|o| o.previous)
                .map(as_version)
                .transpose();
        };
        // The newest copy decides first (a primary that lacks the version cannot let a
        // protected one go), then the primary under its write lock.
        let winner = self.read_record(&self.state().bucket_read_set(bucket)?, id.clone())?;
        let Some(Record::Version(m)) = winner.record else {
            return Ok(None);
        };
        if m.lock.protects(now_ms, bypass_governance) {
            return Err(ManifestError::Locked(rpc::LOCKED.into()));
        }
        let checked = StampedWrite {
            check: StampCheck::Unlocked {
                now_ms,
                bypass_governance,
            },
            ..removal
        };
        let outcome = self.checked_then_replicated("remove_version", &replicas, checked)?;
        match outcome.previous {
            Some(p) => as_version(p).map(Some),
            None => Ok(Some(m)),
        }
    }

    fn update_version(
        &self,
        bucket: &str,
        key: &str,
        version: VersionId,
        change: InPlace<'_, VersionManifest>,
    ) -> Result<Option<VersionManifest>, ManifestError> {
        let replicas = self.state().bucket_replicas(bucket)?;
        let mut on_record = |r: &mut Record| match r {
            Record::Version(m) => {
                let (id, content, marker) = (m.version, m.content.clone(), m.delete_marker);
                let (b, k) = (m.bucket.clone(), m.key.clone());
                change(m)?;
                if m.version != id
                    || m.content != content
                    || m.delete_marker != marker
                    || m.bucket != b
                    || m.key != k
                {
                    return Err(ManifestError::Invalid(
                        "an in-place update cannot change a version's identity or content".into(),
                    ));
                }
                Ok(())
            }
            _ => Err(ManifestError::Invalid("expected a version record".into())),
        };
        self.update_record(
            "update_version",
            &replicas,
            version_id(bucket, key, version),
            &mut on_record,
        )?
        .map(as_version)
        .transpose()
    }

    fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, ManifestError> {
        self.merged_listing(bucket, Listing::Objects(q.clone()), false)
            .map(|m| m.into_objects())
    }

    fn list_versions(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        self.merged_listing(bucket, Listing::Versions(q.clone()), false)
            .map(|m| m.into_versions())
    }

    fn list_versions_everywhere(
        &self,
        bucket: &str,
        q: &VersionsQuery,
    ) -> Result<VersionsPage, ManifestError> {
        self.merged_listing(bucket, Listing::Versions(q.clone()), true)
            .map(|m| m.into_versions())
    }

    fn list_uploads_everywhere(
        &self,
        bucket: &str,
        q: &UploadsQuery,
    ) -> Result<UploadsPage, ManifestError> {
        self.merged_listing(bucket, Listing::Uploads(q.clone()), true)
            .map(|m| m.into_uploads())
    }

    fn list_parts_everywhere(
        &self,
        bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        self.parts_from(bucket, upload_id, after, max, true)
    }

    fn create_upload(&self, upload: &Upload) -> Result<(), ManifestError> {
        let replicas = self.state().bucket_replicas(&upload.bucket)?;
        let write = StampedWrite {
            id: RecordId::Upload {
                bucket: upload.bucket.clone(),
                key: upload.key.clone(),
                upload_id: upload.upload_id.clone(),
            },
            record: Some(Record::Upload(upload.clone())),
            stamp: self.shared.hlc.tick(),
            check: StampCheck::None,
        };
        self.replicate("create_upload", &replicas, vec![write])
            .map(|_| ())
    }

    fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Upload>, ManifestError> {
        let set = self.state().bucket_read_set(bucket)?;
        let id = RecordId::Upload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        match self.read_record(&set, id)?.record {
            Some(Record::Upload(u)) => Ok(Some(u)),
            Some(other) => Err(ManifestError::Invalid(format!(
                "expected an upload, got {other:?}"
            ))),
            None => Ok(None),
        }
    }

    fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: &Part,
    ) -> Result<Option<Part>, ManifestError> {
        let replicas = self.state().bucket_replicas(bucket)?;
        let write = StampedWrite {
            id: RecordId::Part {
                bucket: bucket.to_string(),
                key: key.to_string(),
                upload_id: upload_id.to_string(),
                number: part.number,
            },
            record: Some(Record::Part(part.clone())),
            stamp: self.shared.hlc.tick(),
            check: StampCheck::Exists,
        };
        match self
            .checked_then_replicated("put_part", &replicas, write)?
            .previous
        {
            Some(Record::Part(p)) => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<Vec<Part>, ManifestError> {
        self.parts_from(bucket, upload_id, after, max, false)
    }

    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<Part>, ManifestError> {
        let replicas = self.state().bucket_replicas(bucket)?;
        let write = StampedWrite {
            id: RecordId::Upload {
                bucket: bucket.to_string(),
                key: key.to_string(),
                upload_id: upload_id.to_string(),
            },
            record: None,
            stamp: self.shared.hlc.tick(),
            check: StampCheck::Exists,
        };
        Ok(self
            .checked_then_replicated("abort_upload", &replicas, write)?
            .parts)
    }

    fn list_uploads(&self, bucket: &str, q: &UploadsQuery) -> Result<UploadsPage, ManifestError> {
        self.merged_listing(bucket, Listing::Uploads(q.clone()), false)
            .map(|m| m.into_uploads())
    }

    /// This node's change log when it holds a store, else the first manifest node's that
    /// answers.
    fn changes_since(&self, after: u64, max: usize) -> Result<Vec<Change>, ManifestError> {
        if let Some((_, store)) = &self.shared.local {
            return store.changes_since(after, max);
        }
        let req = ManifestRequest::ChangesSince {
            after,
            max: max.min(rpc::MAX_CHANGES) as u32,
        };
        let nodes = self.state().manifest_nodes.clone();
        match self.block_on(self.shared.first_answer("changes_since", &nodes, req))? {
            (_, ManifestResponse::Changes(c)) => Ok(c),
            (_, other) => Err(unexpected("changes_since", &other)),
        }
    }

    /// Site totals: the sum of every manifest node's totals divided by the replica count
    /// (every bucket has that many replicas, each holding its records), so the figures are
    /// exact once the replicas agree and differ by what anti-entropy has not spread yet. Nodes
    /// suspected down, or that fail to answer, are left out (the totals then undercount
    /// their share); fails only when none answers. `last_seq` is this node's, if it holds a
    /// store.
    fn stats(&self) -> Result<ManifestStats, ManifestError> {
        let state = self.state();
        let nodes: Vec<Arc<Node>> = state
            .manifest_nodes
            .iter()
            .filter(|n| !self.shared.suspected(n))
            .cloned()
            .collect();
        let mut answered = 0u64;
        let mut sums = [0u128; 3];
        let mut last_error = None;
        for (_, answer) in self.block_on(self.every_stats(nodes)) {
            match answer {
                Ok(s) => {
                    answered += 1;
                    for (sum, v) in sums
                        .iter_mut()
                        .zip([s.buckets, s.versions, s.logical_bytes])
                    {
                        *sum += u128::from(v);
                    }
                }
                Err(e) => last_error = Some(e),
            }
        }
        if answered == 0 {
            return Err(last_error.unwrap_or_else(|| {
                ManifestError::Invalid("the map has no manifest node to ask".into())
            }));
        }
        let n = state.n.max(1) as u128;
        let share = |sum: u128| u64::try_from(sum / n).unwrap_or(u64::MAX);
        let last_seq = match &self.shared.local {
            Some((_, store)) => store.stats()?.last_seq,
            None => 0,
        };
        Ok(ManifestStats {
            buckets: share(sums[0]),
            versions: share(sums[1]),
            logical_bytes: share(sums[2]),
            last_seq,
        })
    }

    /// R of the bucket's current replicas, each counting what it holds; the greatest count of
    /// each figure wins (replicas agree once anti-entropy has spread every write; until then
    /// the larger count is the safe one to check a quota against).
    fn bucket_usage(&self, bucket: &str) -> Result<crate::BucketUsage, ManifestError> {
        let set = self.state().bucket_read_set(bucket)?;
        let r = self.state().r;
        let bucket = bucket.to_string();
        let answers = self.block_on(self.shared.ask(
            "a usage read",
            &set.order[..set.current],
            r,
            move |shared, node| {
                let bucket = bucket.clone();
                async move {
                    match shared
                        .call(&node, ManifestRequest::BucketUsage(bucket))
                        .await?
                    {
                        ManifestResponse::Usage(u) => Ok(u),
                        other => Err(unexpected("a usage read", &other)),
                    }
                }
            },
        ))?;
        Ok(answers
            .into_iter()
            .fold(crate::BucketUsage::default(), |acc, (_, u)| acc.max(u)))
    }

    /// Every manifest node of the current map, asked at once; each must answer (writes go to
    /// the current placement, so these logs hold every version applied from now on).
    fn hold_change_logs(&self, holder: &str) -> Result<Vec<(u64, u64)>, ManifestError> {
        let nodes = self.state().manifest_nodes.clone();
        let want = nodes.len();
        let answers =
            self.block_on(self.every_node(nodes, ManifestRequest::HoldLog(holder.to_string())));
        let mut ends = Vec::with_capacity(answers.len());
        for (id, answer) in answers {
            match answer {
                Ok(ManifestResponse::LogHeld(seq)) => ends.push((id, seq)),
                Ok(other) => return Err(unexpected("hold_log", &other)),
                Err(e) => {
                    self.release_change_logs(holder);
                    return Err(ManifestError::Invalid(format!(
                        "manifest node {} did not hold its change log: {e}",
                        cairn_core::cluster::node_id_hex(id)
                    )));
                }
            }
        }
        if ends.len() != want {
            self.release_change_logs(holder);
            return Err(ManifestError::Invalid(format!(
                "{} of {want} manifest nodes held their change log",
                ends.len()
            )));
        }
        Ok(ends)
    }

    /// Every manifest node's log end (its `Stats`); nodes that do not answer are left out.
    fn change_log_ends(&self) -> Result<Vec<(u64, u64)>, ManifestError> {
        let nodes = self.state().manifest_nodes.clone();
        Ok(self
            .block_on(self.every_stats(nodes))
            .into_iter()
            .filter_map(|(id, s)| s.ok().map(|s| (id, s.last_seq)))
            .collect())
    }

    /// The change log of manifest node `log` of the current map.
    fn log_changes_for(
        &self,
        log: u64,
        holder: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Change>, ManifestError> {
        let state = self.state();
        let Some(node) = state.manifest_nodes.iter().find(|n| n.id == log).cloned() else {
            return Err(ManifestError::Invalid(format!(
                "node {} is not a manifest node of the map (epoch {}): its change log cannot be read",
                cairn_core::cluster::node_id_hex(log),
                state.map.epoch
            )));
        };
        let req = ManifestRequest::ChangesFor {
            consumer: holder.to_string(),
            after,
            max: max.min(rpc::MAX_CHANGES) as u32,
        };
        match self.block_on(self.shared.call(&node, req))? {
            ManifestResponse::ChangesFrom { first, changes } => {
                let name = format!("node {}'s", cairn_core::cluster::node_id_hex(log));
                crate::history::check_not_trimmed(&name, first, after)?;
                Ok(changes)
            }
            other => Err(unexpected("changes_for", &other)),
        }
    }

    fn history(&self) -> Result<HistoryState, ManifestError> {
        self.block_on(self.local_history())
    }

    fn trim_history(&self, retention_ms: u64) -> Result<TrimReport, ManifestError> {
        self.block_on(self.trim_history_pass(retention_ms))
    }

    /// Asks every manifest node of the current map and of the previous one to let go.
    fn release_change_logs(&self, holder: &str) {
        let nodes = self.state().nodes.values().cloned().collect();
        let answers =
            self.block_on(self.every_node(nodes, ManifestRequest::ReleaseLog(holder.to_string())));
        for (id, answer) in answers {
            if let Err(e) = answer {
                tracing::debug!(node = %cairn_core::cluster::node_id_hex(id), error = %e,
                    "could not release a change log: it is kept until the holder's retention passes");
            }
        }
    }

    fn put_key(&self, key: &AccessKey) -> Result<(), ManifestError> {
        if key.id.is_empty() {
            return Err(ManifestError::Invalid(
                "access key id must not be empty".to_string(),
            ));
        }
        let replicas = self.state().key_replicas(&key.id)?;
        let write = StampedWrite {
            id: RecordId::Key(key.id.clone()),
            record: Some(Record::Key(key.clone())),
            stamp: self.shared.hlc.tick(),
            check: StampCheck::Absent,
        };
        self.checked_then_replicated("put_key", &replicas, write)
            .map(|_| ())
    }

    fn update_key(
        &self,
        id: &str,
        change: InPlace<'_, AccessKey>,
    ) -> Result<Option<AccessKey>, ManifestError> {
        if id.is_empty() {
            return Ok(None);
        }
        let replicas = self.state().key_replicas(id)?;
        let mut on_record = |r: &mut Record| match r {
            Record::Key(k) => {
                change(k)?;
                if k.id != id {
                    return Err(ManifestError::Invalid(
                        "an access key id cannot change".into(),
                    ));
                }
                Ok(())
            }
            _ => Err(ManifestError::Invalid("expected an access key".into())),
        };
        self.update_record(
            "update_key",
            &replicas,
            RecordId::Key(id.to_string()),
            &mut on_record,
        )?
        .map(as_key)
        .transpose()
    }

    fn get_key(&self, id: &str) -> Result<Option<AccessKey>, ManifestError> {
        if id.is_empty() {
            return Ok(None);
        }
        let set = self.state().key_read_set(id)?;
        self.read_record(&set, RecordId::Key(id.to_string()))?
            .record
            .map(as_key)
            .transpose()
    }

    fn list_keys(&self) -> Result<Vec<AccessKey>, ManifestError> {
        self.list_everywhere(true)?
            .into_iter()
            .map(as_key)
            .collect()
    }

    fn delete_key(&self, id: &str) -> Result<bool, ManifestError> {
        if id.is_empty() {
            return Ok(false);
        }
        let replicas = self.state().key_replicas(id)?;
        let write = StampedWrite {
            id: RecordId::Key(id.to_string()),
            record: None,
            stamp: self.shared.hlc.tick(),
            check: StampCheck::None,
        };
        let acked = self.replicate("delete_key", &replicas, vec![write])?;
        Ok(acked
            .iter()
            .flat_map(|(_, o)| o)
            .any(|o| o.previous.is_some()))
    }
}

impl ReplicatedManifests {
    /// Parts of an upload merged over R of the bucket's replicas, or with `every`, all of them
    /// (the greatest stamp of each part number wins).
    fn parts_from(
        &self,
        bucket: &str,
        upload_id: &str,
        after: u32,
        max: usize,
        every: bool,
    ) -> Result<Vec<Part>, ManifestError> {
        let state = self.state();
        let set = state.bucket_read_set(bucket)?;
        let max = max.min(MAX_LIST);
        let upload = upload_id.to_string();
        let r = if every { set.current } else { state.r };
        let answers =
            self.block_on(
                self.shared
                    .ask_read("a part listing", &set, r, move |shared, node| {
                        let req = ManifestRequest::ListPartsStamped {
                            upload_id: upload.clone(),
                            after,
                            max: max as u32,
                        };
                        async move {
                            match shared.call(&node, req).await? {
                                ManifestResponse::StampedParts(p) => Ok(p),
                                other => Err(unexpected("a part listing", &other)),
                            }
                        }
                    }),
            )?;
        let mut merged: BTreeMap<u32, (VersionId, Part)> = BTreeMap::new();
        for (_, parts) in answers {
            for (stamp, p) in parts {
                match merged.get(&p.number) {
                    Some((s, _)) if *s >= stamp => {}
                    _ => {
                        merged.insert(p.number, (stamp, p));
                    }
                }
            }
        }
        Ok(merged.into_values().map(|(_, p)| p).take(max).collect())
    }
}

impl ReplicatedManifests {
    /// The totals of each of `nodes`, asked at once.
    async fn every_stats(
        &self,
        nodes: Vec<Arc<Node>>,
    ) -> Vec<(NodeId, Result<ManifestStats, ManifestError>)> {
        self.every_node(nodes, ManifestRequest::Stats)
            .await
            .into_iter()
            .map(|(id, answer)| {
                let answer = match answer {
                    Ok(ManifestResponse::Stats(s)) => Ok(s),
                    Ok(other) => Err(unexpected("stats", &other)),
                    Err(e) => Err(e),
                };
                (id, answer)
            })
            .collect()
    }

    /// `req` sent to each of `nodes` at once; their answers, in no particular order (one per
    /// node, unless a call's task failed).
    async fn every_node(
        &self,
        nodes: Vec<Arc<Node>>,
        req: ManifestRequest,
    ) -> Vec<(NodeId, Result<ManifestResponse, ManifestError>)> {
        let mut calls = tokio::task::JoinSet::new();
        for node in nodes {
            let (shared, req) = (self.shared.clone(), req.clone());
            calls.spawn(async move { (node.id, shared.call(&node, req).await) });
        }
        let mut out = Vec::new();
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok(answer) => out.push(answer),
                Err(e) => tracing::warn!(error = %e, "a manifest call task failed"),
            }
        }
        out
    }
}
