//! Calls to replicas: one node, R of them, all of them, the primary; read repair.

use super::*;

impl Shared {
    pub(super) fn remote(&self, addr: SocketAddr, name: &str) -> RemoteManifest {
        RemoteManifest::new(
            self.client
                .peer(addr, name)
                .with_timeout(self.config.call_timeout),
        )
    }

    pub(super) async fn connect(&self, node: &Node) -> Result<RemoteManifest, ManifestError> {
        match node
            .connect(self.config.call_timeout, |addr, name| {
                self.remote(addr, name)
            })
            .await
        {
            Some(remote) => remote.map_err(|e| ManifestError::from(Refusal::Transport(e))),
            None => Err(ManifestError::Invalid(format!(
                "node {} is this node, not a remote one",
                node.label()
            ))),
        }
    }

    /// Whether `node` is a remote node suspected down (a call to it just failed on the
    /// transport; see `cairn_net::Client::is_suspect`).
    pub(crate) fn suspected(&self, node: &Node) -> bool {
        !matches!(node.reach, Reach::Local(_)) && self.client.is_suspect(&node.name)
    }

    /// Positions of `order`, nodes suspected down last (otherwise in order).
    pub(crate) fn by_health(&self, order: &[Arc<Node>]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..order.len()).collect();
        idx.sort_by_key(|&i| self.suspected(&order[i]));
        idx
    }

    /// One request to one node: its store directly (on the blocking pool) or its service.
    pub(crate) async fn call(
        &self,
        node: &Node,
        req: ManifestRequest,
    ) -> Result<ManifestResponse, ManifestError> {
        match &node.reach {
            Reach::Local(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || rpc::execute(&store, req))
                    .await
                    .map_err(|e| {
                        ManifestError::from(Refusal::Remote {
                            kind: ErrorKind::Internal,
                            message: format!("manifest store task failed: {e}"),
                        })
                    })?
            }
            _ => self.connect(node).await?.call(&req).await,
        }
    }

    pub(crate) async fn get_stamped(
        &self,
        node: &Node,
        ids: Vec<RecordId>,
    ) -> Result<Vec<StampedRecord>, ManifestError> {
        let n = ids.len();
        match self.call(node, ManifestRequest::GetStamped(ids)).await? {
            ManifestResponse::Stamped(v) if v.len() == n => Ok(v),
            other => Err(unexpected("a stamped read", &other)),
        }
    }

    /// Stamped writes on one node: the call's failure, or one result per write.
    pub(crate) async fn put_stamped(
        &self,
        node: &Node,
        writes: Vec<StampedWrite>,
    ) -> Result<Vec<Result<WriteOutcome, ManifestError>>, ManifestError> {
        let n = writes.len();
        match self.call(node, ManifestRequest::PutStamped(writes)).await? {
            ManifestResponse::Written(v) if v.len() == n => Ok(v
                .into_iter()
                .map(|r| r.map_err(ManifestError::from))
                .collect()),
            other => Err(unexpected("a stamped write", &other)),
        }
    }

    /// Stamped writes on one node, all of which must succeed.
    pub(super) async fn put_all(
        &self,
        node: &Node,
        writes: Vec<StampedWrite>,
    ) -> Result<Vec<WriteOutcome>, ManifestError> {
        self.put_stamped(node, writes).await?.into_iter().collect()
    }

    pub(super) async fn read_key(
        &self,
        node: &Node,
        bucket: &str,
        key: &str,
        null: bool,
    ) -> Result<KeyState, ManifestError> {
        let req = ManifestRequest::ReadKey {
            bucket: bucket.to_string(),
            key: key.to_string(),
            null,
        };
        match self.call(node, req).await? {
            ManifestResponse::KeyState(s) => Ok(s),
            other => Err(unexpected("a key read", &other)),
        }
    }

    /// Sends `writes` to `node` in the background (read repair), unless the background budget
    /// is used up (then they are dropped and counted).
    pub(super) fn repair(
        self: &Arc<Self>,
        node: Arc<Node>,
        writes: Vec<StampedWrite>,
        peers: &[Arc<Node>],
    ) {
        if writes.is_empty() {
            return;
        }
        let n = writes.len() as u64;
        let Ok(permit) = self.background.clone().try_acquire_owned() else {
            add(&self.counters.repairs_dropped, n);
            return;
        };
        add(&self.counters.read_repairs, n);
        let (shared, peers) = (self.clone(), peers.to_vec());
        tokio::spawn(async move {
            if let Err(e) = shared.put_with_bucket(&node, writes, &peers).await {
                tracing::debug!(node = %node.label(), error = %e, "read repair failed");
            }
            drop(permit);
        });
    }

    /// [`Shared::put_all`]; when the replica lacks the bucket (its creation has not reached it
    /// yet: writes of one bucket may overtake each other), the bucket record is copied to it
    /// from the first of `peers` that holds it and the writes are tried once more.
    pub(super) async fn put_with_bucket(
        &self,
        node: &Node,
        writes: Vec<StampedWrite>,
        peers: &[Arc<Node>],
    ) -> Result<Vec<WriteOutcome>, ManifestError> {
        let result = self.put_all(node, writes.clone()).await;
        if let (Err(ManifestError::NoSuchBucket(_)), Some(bucket)) =
            (&result, writes.first().and_then(|w| bucket_of(&w.id)))
        {
            if self.copy_bucket(node, bucket, peers).await {
                return self.put_all(node, writes).await;
            }
        }
        result
    }

    /// Copies bucket `bucket`'s record to `node` from the first of `peers` that holds it;
    /// whether it did.
    pub(super) async fn copy_bucket(&self, node: &Node, bucket: &str, peers: &[Arc<Node>]) -> bool {
        let id = RecordId::Bucket(bucket.to_string());
        for peer in peers.iter().filter(|p| p.id != node.id) {
            let Ok(mut found) = self.get_stamped(peer, vec![id.clone()]).await else {
                continue;
            };
            match found.pop() {
                Some(b) if b.record.is_some() => {
                    add(&self.counters.read_repairs, 1);
                    return self.put_all(node, vec![repair_write(&b)]).await.is_ok();
                }
                Some(b) if b.deleted => return false,
                _ => {}
            }
        }
        false
    }

    /// Asks nodes of `order` one request each until `needed` answered (starting `needed` at
    /// once, and one more for each that fails); the answers by position in `order`.
    pub(crate) async fn ask<T, F, Fut>(
        self: &Arc<Self>,
        what: &str,
        order: &[Arc<Node>],
        needed: usize,
        f: F,
    ) -> Result<Vec<(usize, T)>, ManifestError>
    where
        T: Send + 'static,
        F: Fn(Arc<Shared>, Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, ManifestError>> + Send + 'static,
    {
        let needed = needed.clamp(1, order.len().max(1));
        // Nodes suspected down are asked last; answers keep their position in `order`.
        let by_health = self.by_health(order);
        let mut set = JoinSet::new();
        let mut next = 0;
        let spawn = |set: &mut JoinSet<_>, next: &mut usize| {
            let i = by_health[*next];
            *next += 1;
            let fut = f(self.clone(), order[i].clone());
            set.spawn(async move { (i, fut.await) });
        };
        while next < order.len() && next < needed {
            spawn(&mut set, &mut next);
        }
        let mut answers = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = set.join_next().await {
            let Ok((i, result)) = joined else { continue };
            match result {
                Ok(t) => {
                    answers.push((i, t));
                    if answers.len() >= needed {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(node = %order[i].label(), error = %e, "{what} failed");
                    failures.push((order[i].label(), e));
                    if next < order.len() {
                        spawn(&mut set, &mut next);
                    }
                }
            }
        }
        if answers.len() >= needed {
            answers.sort_by_key(|(i, _)| *i);
            return Ok(answers);
        }
        Err(replicas_error(what, needed, answers.len(), failures))
    }

    /// Writes `writes` on every replica at once; returns once `quorum` acknowledged (the
    /// replica at `pre_acked`, a primary that already made the change, counts without waiting
    /// for it), with the outcomes received by then, by replica position. Stragglers finish in
    /// the background.
    pub(crate) async fn write_replicas(
        self: &Arc<Self>,
        what: &str,
        replicas: &[Arc<Node>],
        writes: Vec<StampedWrite>,
        quorum: usize,
        pre_acked: Option<usize>,
    ) -> Result<Vec<(usize, Vec<WriteOutcome>)>, ManifestError> {
        let quorum = quorum.clamp(1, replicas.len().max(1));
        let (tx, mut rx) = mpsc::channel(replicas.len().max(1));
        // Replicas suspected down are not waited on when the others can make the quorum
        // (anti-entropy and read repair bring them up to date).
        let skip_suspects = replicas.iter().filter(|n| !self.suspected(n)).count() >= quorum;
        for (i, node) in replicas.iter().enumerate() {
            if skip_suspects && self.suspected(node) && Some(i) != pre_acked {
                add(&self.counters.replica_write_failures, 1);
                let e = ManifestError::from(Refusal::Transport(RpcError::Io(format!(
                    "{} is suspected down: not written, anti-entropy catches it up",
                    node.label()
                ))));
                let _ = tx.try_send((i, Err(e)));
                continue;
            }
            let permit = self
                .background
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| ManifestError::Invalid("replicated backend is closed".into()))?;
            let (tx, node, shared, writes, peers) = (
                tx.clone(),
                node.clone(),
                self.clone(),
                writes.clone(),
                replicas.to_vec(),
            );
            tokio::spawn(async move {
                let result = shared.put_with_bucket(&node, writes, &peers).await;
                if let Err(e) = &result {
                    add(&shared.counters.replica_write_failures, 1);
                    tracing::debug!(node = %node.label(), error = %e, "replica write failed");
                }
                let _ = tx.send((i, result)).await;
                drop(permit);
            });
        }
        drop(tx);
        let mut acked: Vec<(usize, Vec<WriteOutcome>)> = Vec::new();
        let mut failures: Vec<(String, ManifestError)> = Vec::new();
        let base = usize::from(pre_acked.is_some());
        while acked.len() + base < quorum && replicas.len() - failures.len() >= quorum {
            let Some((i, result)) = rx.recv().await else {
                break;
            };
            if Some(i) == pre_acked {
                continue;
            }
            match result {
                Ok(outcomes) => acked.push((i, outcomes)),
                Err(e) => failures.push((replicas[i].label(), e)),
            }
        }
        if acked.len() + base >= quorum {
            acked.sort_by_key(|(i, _)| *i);
            return Ok(acked);
        }
        Err(replicas_error(what, quorum, acked.len() + base, failures))
    }

    /// Runs a checked write on the primary: the first replica, in placement order, that
    /// answers. Returns its position and outcome.
    pub(super) async fn primary_write(
        &self,
        what: &str,
        replicas: &[Arc<Node>],
        write: StampedWrite,
    ) -> Result<(usize, WriteOutcome), ManifestError> {
        let mut failures = Vec::new();
        for i in self.by_health(replicas) {
            let node = &replicas[i];
            match self.put_stamped(node, vec![write.clone()]).await {
                Ok(mut results) => {
                    let mut result = results
                        .pop()
                        .ok_or_else(|| unexpected(what, &ManifestResponse::Written(Vec::new())))?;
                    if let (Err(ManifestError::NoSuchBucket(_)), Some(bucket)) =
                        (&result, bucket_of(&write.id))
                    {
                        // A primary that missed the bucket's creation gets it, once.
                        if self.copy_bucket(node, bucket, replicas).await {
                            result = self
                                .put_all(node, vec![write.clone()])
                                .await
                                .map(|mut v| v.pop().unwrap_or_default());
                        }
                    }
                    return result.map(|o| (i, o));
                }
                Err(e) if is_transport(&e) => {
                    add(&self.counters.primary_failovers, 1);
                    failures.push((node.label(), e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(replicas_error(what, 1, 0, failures))
    }

    /// Sends `req` to the first replica, in `order`, that answers.
    pub(super) async fn first_answer(
        &self,
        what: &str,
        order: &[Arc<Node>],
        req: ManifestRequest,
    ) -> Result<(usize, ManifestResponse), ManifestError> {
        let mut failures = Vec::new();
        for i in self.by_health(order) {
            let node = &order[i];
            match self.call(node, req.clone()).await {
                Ok(resp) => return Ok((i, resp)),
                Err(e) if is_transport(&e) => {
                    if i == 0 {
                        add(&self.counters.primary_failovers, 1);
                    }
                    failures.push((node.label(), e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(replicas_error(what, 1, 0, failures))
    }

    /// A read's calls (see [`ReadSet`]): R of the current replicas, as [`Shared::ask`] asks
    /// them, and at the same time every previous-only replica, whose failures are left out.
    /// The answers by position in `set.order`.
    pub(crate) async fn ask_read<T, F, Fut>(
        self: &Arc<Self>,
        what: &str,
        set: &ReadSet,
        r: usize,
        f: F,
    ) -> Result<Vec<(usize, T)>, ManifestError>
    where
        T: Send + 'static,
        F: Fn(Arc<Shared>, Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T, ManifestError>> + Send + 'static,
    {
        let mut extra = JoinSet::new();
        for i in set.current..set.order.len() {
            let fut = f(self.clone(), set.order[i].clone());
            extra.spawn(async move { (i, fut.await) });
        }
        let mut answers = self.ask(what, &set.order[..set.current], r, f).await?;
        while let Some(joined) = extra.join_next().await {
            match joined {
                Ok((i, Ok(t))) => answers.push((i, t)),
                Ok((i, Err(e))) => {
                    tracing::debug!(node = %set.order[i].label(), error = %e,
                        "{what} of a previous replica failed");
                }
                Err(_) => {}
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        Ok(answers)
    }

    /// Reads a record from R of the first `current` replicas of `order` and every one after
    /// them (previous-only replicas, see [`ReadSet`]); returns the winner (greatest stamp) and
    /// the answers by position, after sending the winner to current replicas that lacked it.
    pub(super) async fn get_record(
        self: &Arc<Self>,
        order: &[Arc<Node>],
        current: usize,
        r: usize,
        id: &RecordId,
        repair: bool,
    ) -> Result<(StampedRecord, Vec<(usize, StampedRecord)>), ManifestError> {
        let ids = vec![id.clone()];
        let set = ReadSet {
            order: order.to_vec(),
            current,
        };
        let answers = self
            .ask_read("a read", &set, r, move |shared, node| {
                let ids = ids.clone();
                async move {
                    let mut v = shared.get_stamped(&node, ids).await?;
                    v.pop()
                        .ok_or_else(|| unexpected("a stamped read", &ManifestResponse::Done))
                }
            })
            .await?;
        let winner = self.settle_record(order, current, &answers, repair)?;
        Ok((winner, answers))
    }

    /// The winner among the answers of a record read (greatest stamp, see
    /// [`StampedRecord::rank`]); with `repair`, it is sent to the current replicas (the first
    /// `current` of `order`) whose answer differs.
    pub(super) fn settle_record(
        self: &Arc<Self>,
        order: &[Arc<Node>],
        current: usize,
        answers: &[(usize, StampedRecord)],
        repair: bool,
    ) -> Result<StampedRecord, ManifestError> {
        let winner = answers
            .iter()
            .map(|(_, a)| a)
            .max_by_key(|a| a.rank())
            .cloned()
            .ok_or_else(|| ManifestError::Invalid("a read settled without an answer".into()))?;
        if repair && winner.rank().1 {
            for (i, a) in answers.iter().filter(|(i, _)| *i < current) {
                if a.stamp != winner.stamp
                    || a.record != winner.record
                    || a.deleted != winner.deleted
                {
                    self.repair(order[*i].clone(), vec![repair_write(&winner)], order);
                }
            }
        }
        Ok(winner)
    }

    /// One replica's view of a bucket's record and of one version of one of its keys (a
    /// [`ManifestRequest::ReadObject`]), checked to be of the kind `wanted` asks for.
    pub(super) async fn read_object_on(
        &self,
        node: &Node,
        bucket: &str,
        key: &str,
        wanted: WantedVersion,
    ) -> Result<ObjectState, ManifestError> {
        let req = ManifestRequest::ReadObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: wanted,
        };
        match self.call(node, req).await? {
            ManifestResponse::ObjectState(s) => match (&s.version, wanted) {
                (VersionState::Key(_), WantedVersion::Newest | WantedVersion::Null)
                | (VersionState::Record(_), WantedVersion::Id(_)) => Ok(*s),
                _ => Err(unexpected(
                    "an object read",
                    &ManifestResponse::ObjectState(s),
                )),
            },
            other => Err(unexpected("an object read", &other)),
        }
    }
}
