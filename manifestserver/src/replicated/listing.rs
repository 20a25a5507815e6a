//! Object, version and upload listings merged over replicas (see "Listings" in the module
//! docs of `replicated`).
//!
//! One call runs in rounds. Each round asks R current replicas and every previous-only one
//! (see [`ReadSet`]) for a page of the same query, then:
//!
//! 1. **Cut**: a page that is truncated covers its replica only up to its last entry, so
//!    entries after the smallest last entry of a truncated page (the cut) cannot be compared
//!    yet. Only entries at or before the cut are merged; the next round (or the caller's next
//!    page) starts after it.
//! 2. **Merge**: common prefixes are united. An entry (a key's current object, a version, an
//!    upload) every answering page holds, identically, is taken as is. One some pages lack or
//!    hold differently is disputed and resolved:
//!    - objects: a newest-version read of the key (`ReadKey` on R replicas and the
//!      previous-only ones, greatest version id, never one a replica removed: the same read as
//!      `head`), at most [`RESOLVE_PARALLEL`] at once; a delete marker or nothing drops it;
//!    - versions and uploads: their stamped records from every answering replica (replicas in
//!      parallel, batches of [`MAX_STAMPED`] ids one after another on each); the greatest
//!      stamp wins (a removed version's tombstone beats everything, a deleted upload's stamp
//!      beats its creation), and the entry is dropped unless the winner is a record;
//!    - either way, the winner is sent to current replicas that lacked it (read repair).
//! 3. **Page**: merged entries, in listing order, fill the page up to max-keys. A page cut
//!    short because disputed entries were dropped continues with another round after the cut,
//!    at most [`MAX_ROUNDS`] rounds; the page is then returned short, truncated, with the cut
//!    as its marker. The markers of a truncated page are otherwise the store's: its last
//!    entry.
//!
//! A replica that lacks the bucket (it missed its creation, as a replica newly placed by a map
//! change has) lists an empty page. One that answers `NoSuchBucket` instead counts as an empty
//! page once a read of the bucket record finds the bucket; when every answer says so, the
//! listing fails with `NoSuchBucket`.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use super::*;
use crate::stamped::MAX_STAMPED;

/// Rounds one listing call runs at most (see the module docs).
const MAX_ROUNDS: usize = 4;
/// Key reads one listing runs at once to resolve disputed objects.
const RESOLVE_PARALLEL: usize = 16;

/// Which listing, with the caller's query.
pub(super) enum Listing {
    Objects(ListQuery),
    Versions(VersionsQuery),
    Uploads(UploadsQuery),
}

/// Where an entry sits in listing order: by name (key or common prefix), then within a key.
/// A common prefix never has the name of a listed key (that key would be rolled up into it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Pos {
    name: String,
    sub: Sub,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Sub {
    /// A key's current object (one per key) or a common prefix.
    Name,
    /// A version: newest first.
    Version(Reverse<VersionId>),
    /// An upload: by id.
    Upload(String),
}

impl Pos {
    fn name(name: String) -> Pos {
        Pos {
            name,
            sub: Sub::Name,
        }
    }
}

/// A listed record.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Version(VersionManifest),
    Upload(Upload),
}

/// A merged entry (its name is in its [`Pos`]).
// Lives only while one page is merged (at most 1000 of them): its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Prefix,
    Item(Item),
}

/// One replica's page, by position.
#[derive(Default)]
struct Norm {
    items: Vec<(Pos, Item)>,
    prefixes: Vec<String>,
    truncated: bool,
}

impl Norm {
    fn last(&self) -> Option<Pos> {
        let item = self.items.iter().map(|(p, _)| p).max().cloned();
        let prefix = self.prefixes.iter().max().map(|cp| Pos::name(cp.clone()));
        item.max(prefix)
    }
}

/// A merged page: entries in listing order, and where the next page starts.
pub(super) struct Merged {
    entries: Vec<(Pos, Entry)>,
    truncated: bool,
    next: Option<Pos>,
}

impl Listing {
    fn max(&self) -> usize {
        match self {
            Listing::Objects(q) => q.max_keys,
            Listing::Versions(q) => q.max_keys,
            Listing::Uploads(q) => q.max_uploads,
        }
        .min(MAX_LIST)
    }

    /// The query for a page of at most `max` entries, after `start` (or from the caller's
    /// markers).
    fn request(&self, bucket: &str, start: Option<&Pos>, max: usize) -> ManifestRequest {
        let bucket = bucket.to_string();
        match self {
            Listing::Objects(q) => {
                let mut query = ListQuery {
                    max_keys: max,
                    ..q.clone()
                };
                if let Some(p) = start {
                    query.start_after = Some(p.name.clone());
                }
                ManifestRequest::ListObjects { bucket, query }
            }
            Listing::Versions(q) => {
                let mut query = VersionsQuery {
                    max_keys: max,
                    ..q.clone()
                };
                if let Some(p) = start {
                    query.key_marker = Some(p.name.clone());
                    query.version_marker = match &p.sub {
                        Sub::Version(Reverse(v)) => Some(*v),
                        _ => None,
                    };
                }
                ManifestRequest::ListVersions { bucket, query }
            }
            Listing::Uploads(q) => {
                let mut query = UploadsQuery {
                    max_uploads: max,
                    ..q.clone()
                };
                if let Some(p) = start {
                    query.key_marker = Some(p.name.clone());
                    query.upload_id_marker = match &p.sub {
                        Sub::Upload(id) => Some(id.clone()),
                        _ => None,
                    };
                }
                ManifestRequest::ListUploads { bucket, query }
            }
        }
    }
}

/// A replica's listing answer, by position.
fn normalize(resp: ManifestResponse) -> Result<Norm, ManifestError> {
    Ok(match resp {
        ManifestResponse::Objects(p) => Norm {
            items: p
                .objects
                .into_iter()
                .map(|m| (Pos::name(m.key.clone()), Item::Version(m)))
                .collect(),
            prefixes: p.common_prefixes,
            truncated: p.is_truncated,
        },
        ManifestResponse::Versions(p) => Norm {
            items: p
                .versions
                .into_iter()
                .map(|m| {
                    let pos = Pos {
                        name: m.key.clone(),
                        sub: Sub::Version(Reverse(m.version)),
                    };
                    (pos, Item::Version(m))
                })
                .collect(),
            prefixes: p.common_prefixes,
            truncated: p.is_truncated,
        },
        ManifestResponse::Uploads(p) => Norm {
            items: p
                .uploads
                .into_iter()
                .map(|u| {
                    let pos = Pos {
                        name: u.key.clone(),
                        sub: Sub::Upload(u.upload_id.clone()),
                    };
                    (pos, Item::Upload(u))
                })
                .collect(),
            prefixes: p.common_prefixes,
            truncated: p.is_truncated,
        },
        other => return Err(unexpected("a listing", &other)),
    })
}

impl Merged {
    pub(super) fn into_objects(self) -> ListPage {
        let mut page = ListPage::default();
        for (pos, e) in self.entries {
            match e {
                Entry::Prefix => page.common_prefixes.push(pos.name),
                Entry::Item(Item::Version(m)) => page.objects.push(m),
                Entry::Item(Item::Upload(_)) => {}
            }
        }
        page.is_truncated = self.truncated;
        page.next_marker = self.next.filter(|_| self.truncated).map(|p| p.name);
        page
    }

    pub(super) fn into_versions(self) -> VersionsPage {
        let mut page = VersionsPage::default();
        for (pos, e) in self.entries {
            match e {
                Entry::Prefix => page.common_prefixes.push(pos.name),
                Entry::Item(Item::Version(m)) => page.versions.push(m),
                Entry::Item(Item::Upload(_)) => {}
            }
        }
        page.is_truncated = self.truncated;
        if let Some(p) = self.next.filter(|_| self.truncated) {
            page.next_version_marker = match p.sub {
                Sub::Version(Reverse(v)) => Some(v),
                _ => None,
            };
            page.next_key_marker = Some(p.name);
        }
        page
    }

    pub(super) fn into_uploads(self) -> UploadsPage {
        let mut page = UploadsPage::default();
        for (pos, e) in self.entries {
            match e {
                Entry::Prefix => page.common_prefixes.push(pos.name),
                Entry::Item(Item::Upload(u)) => page.uploads.push(u),
                Entry::Item(Item::Version(_)) => {}
            }
        }
        page.is_truncated = self.truncated;
        if let Some(p) = self.next.filter(|_| self.truncated) {
            page.next_upload_id_marker = match p.sub {
                Sub::Upload(id) => Some(id),
                _ => None,
            };
            page.next_key_marker = Some(p.name);
        }
        page
    }
}

impl ReplicatedManifests {
    /// A listing merged over the bucket's replicas (see the module docs of `listing.rs`): R
    /// of them, or with `every`, all of them (each must answer).
    pub(super) fn merged_listing(
        &self,
        bucket: &str,
        listing: Listing,
        every: bool,
    ) -> Result<Merged, ManifestError> {
        let state = self.state();
        let set = Arc::new(state.bucket_read_set(bucket)?);
        let r = if every { set.current } else { state.r };
        self.block_on(self.shared.merged_listing(bucket, &set, r, &listing))
    }
}

impl Shared {
    async fn merged_listing(
        self: &Arc<Self>,
        bucket: &str,
        set: &Arc<ReadSet>,
        r: usize,
        listing: &Listing,
    ) -> Result<Merged, ManifestError> {
        let max = listing.max();
        let mut out: Vec<(Pos, Entry)> = Vec::new();
        let mut start: Option<Pos> = None;
        let mut bucket_checked = false;
        for _ in 0..MAX_ROUNDS {
            let room = max - out.len();
            let req = listing.request(bucket, start.as_ref(), room);
            let answers = self
                .ask_read("a listing", set, r, move |shared, node| {
                    let req = req.clone();
                    async move {
                        match shared.call(&node, req).await {
                            Ok(resp) => normalize(resp).map(Some),
                            Err(ManifestError::NoSuchBucket(_)) => Ok(None),
                            Err(e) => Err(e),
                        }
                    }
                })
                .await?;
            let lacking = answers.iter().filter(|(_, a)| a.is_none()).count();
            if lacking == answers.len() {
                return Err(ManifestError::NoSuchBucket(bucket.to_string()));
            }
            if lacking > 0 && !bucket_checked {
                // Replicas disagree on the bucket: its record decides (and is repaired).
                let id = RecordId::Bucket(bucket.to_string());
                let (winner, _) = self
                    .get_record(&set.order, set.current, r, &id, true)
                    .await?;
                if winner.record.is_none() {
                    return Err(ManifestError::NoSuchBucket(bucket.to_string()));
                }
                bucket_checked = true;
            }
            let pages: Vec<(usize, Norm)> = answers
                .into_iter()
                .map(|(i, a)| (i, a.unwrap_or_default()))
                .collect();

            // 1. The cut: the smallest last entry of a truncated page.
            let mut cut: Option<Pos> = None;
            for (i, p) in &pages {
                if p.truncated {
                    let last = p.last().ok_or_else(|| {
                        unexpected(
                            &format!("a listing of {}", set.order[*i].label()),
                            &ManifestResponse::Done,
                        )
                    })?;
                    cut = Some(match cut {
                        Some(c) if c <= last => c,
                        _ => last,
                    });
                }
            }
            let within = |pos: &Pos| cut.as_ref().is_none_or(|c| pos <= c);

            // 2. Merge.
            let answered: Vec<usize> = pages.iter().map(|(i, _)| *i).collect();
            let mut items: BTreeMap<Pos, Vec<Item>> = BTreeMap::new();
            let mut prefixes: BTreeSet<String> = BTreeSet::new();
            for (_, p) in pages {
                for (pos, item) in p.items {
                    if within(&pos) {
                        items.entry(pos).or_default().push(item);
                    }
                }
                for cp in p.prefixes {
                    if within(&Pos::name(cp.clone())) {
                        prefixes.insert(cp);
                    }
                }
            }
            let disputed: Vec<(Pos, Item)> = items
                .iter()
                .filter(|(_, held)| {
                    held.len() < answered.len() || held.iter().any(|it| it != &held[0])
                })
                .map(|(pos, held)| (pos.clone(), held[0].clone()))
                .collect();
            let mut resolved = if disputed.is_empty() {
                HashMap::new()
            } else {
                match listing {
                    Listing::Objects(_) => self.resolve_objects(bucket, set, r, disputed).await?,
                    _ => self.resolve_stamped(bucket, set, &answered, disputed).await,
                }
            };
            let mut merged: BTreeMap<Pos, Entry> = BTreeMap::new();
            for cp in prefixes {
                merged.insert(Pos::name(cp), Entry::Prefix);
            }
            for (pos, mut held) in items {
                let item = match resolved.remove(&pos) {
                    Some(r) => r,
                    None => Some(held.swap_remove(0)),
                };
                if let Some(item) = item {
                    merged.insert(pos, Entry::Item(item));
                }
            }

            // 3. Fill the page.
            let n = merged.len();
            out.extend(merged.into_iter().take(room));
            if n > room {
                let next = out.last().map(|(p, _)| p.clone());
                return Ok(Merged {
                    entries: out,
                    truncated: true,
                    next,
                });
            }
            let Some(cut) = cut else {
                return Ok(Merged {
                    entries: out,
                    truncated: false,
                    next: None,
                });
            };
            if out.len() >= max {
                let next = out.last().map(|(p, _)| p.clone()).or(Some(cut));
                return Ok(Merged {
                    entries: out,
                    truncated: true,
                    next,
                });
            }
            start = Some(cut);
        }
        Ok(Merged {
            entries: out,
            truncated: true,
            next: start,
        })
    }

    /// The current objects of disputed keys, by a newest-version read of each.
    async fn resolve_objects(
        self: &Arc<Self>,
        bucket: &str,
        set: &Arc<ReadSet>,
        r: usize,
        disputed: Vec<(Pos, Item)>,
    ) -> Result<HashMap<Pos, Option<Item>>, ManifestError> {
        let mut out = HashMap::new();
        let mut pending = disputed.into_iter().map(|(pos, _)| pos);
        let mut tasks = JoinSet::new();
        loop {
            while tasks.len() < RESOLVE_PARALLEL {
                let Some(pos) = pending.next() else { break };
                let (shared, set, bucket) = (self.clone(), set.clone(), bucket.to_string());
                tasks.spawn(async move {
                    let found = shared.newest(&set, r, &bucket, &pos.name, false).await;
                    (pos, found)
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (pos, found) = joined.map_err(|e| {
                ManifestError::from(Refusal::Remote {
                    kind: ErrorKind::Internal,
                    message: format!("a key read task failed: {e}"),
                })
            })?;
            let current = found?.filter(|m| !m.delete_marker);
            out.insert(pos, current.map(Item::Version));
        }
        Ok(out)
    }

    /// Disputed versions or uploads, by their stamped records on every answering replica
    /// (positions `answered` in `set.order`). A replica whose read fails is left out; an entry
    /// no replica could be asked about is left unresolved (kept as listed).
    async fn resolve_stamped(
        self: &Arc<Self>,
        bucket: &str,
        set: &Arc<ReadSet>,
        answered: &[usize],
        disputed: Vec<(Pos, Item)>,
    ) -> HashMap<Pos, Option<Item>> {
        let ids: Arc<Vec<RecordId>> = Arc::new(
            disputed
                .iter()
                .map(|(_, item)| match item {
                    Item::Version(m) => version_id(bucket, &m.key, m.version),
                    Item::Upload(u) => RecordId::Upload {
                        bucket: bucket.to_string(),
                        key: u.key.clone(),
                        upload_id: u.upload_id.clone(),
                    },
                })
                .collect(),
        );
        let mut tasks = JoinSet::new();
        for &i in answered {
            let (shared, node, ids) = (self.clone(), set.order[i].clone(), ids.clone());
            tasks.spawn(async move {
                let mut records = Vec::with_capacity(ids.len());
                for batch in ids.chunks(MAX_STAMPED) {
                    match shared.get_stamped(&node, batch.to_vec()).await {
                        Ok(v) => records.extend(v),
                        Err(e) => return (i, Err(e)),
                    }
                }
                (i, Ok(records))
            });
        }
        let mut views: Vec<(usize, Vec<StampedRecord>)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, Ok(records))) => views.push((i, records)),
                Ok((i, Err(e))) => {
                    tracing::debug!(node = %set.order[i].label(), error = %e,
                        "reading disputed listing entries failed");
                }
                Err(_) => {}
            }
        }
        views.sort_by_key(|(i, _)| *i);
        let mut out = HashMap::new();
        let mut repairs: HashMap<usize, Vec<StampedWrite>> = HashMap::new();
        for (j, (pos, _)) in disputed.into_iter().enumerate() {
            let Some(winner) = views
                .iter()
                .map(|(_, v)| &v[j])
                .max_by_key(|rec| rec.rank())
                .cloned()
            else {
                continue;
            };
            if winner.rank().1 {
                for (i, v) in views.iter().filter(|(i, _)| *i < set.current) {
                    let a = &v[j];
                    if a.stamp != winner.stamp
                        || a.record != winner.record
                        || a.deleted != winner.deleted
                    {
                        repairs.entry(*i).or_default().push(repair_write(&winner));
                    }
                }
            }
            let item = match winner.record {
                Some(Record::Version(m)) => Some(Item::Version(m)),
                Some(Record::Upload(u)) => Some(Item::Upload(u)),
                _ => None,
            };
            out.insert(pos, item);
        }
        for (i, writes) in repairs {
            for batch in writes.chunks(MAX_STAMPED) {
                self.repair(set.order[i].clone(), batch.to_vec(), &set.order);
            }
        }
        out
    }
}
