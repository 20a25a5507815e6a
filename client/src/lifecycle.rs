//! Lifecycle: one pass over every bucket with lifecycle rules applies them as S3 does —
//! expiring current versions after N days or from a date (a delete marker in versioned
//! buckets, removal otherwise), removing noncurrent versions N days after they became
//! noncurrent (keeping the newest `NewerNoncurrentVersions`), removing delete markers that are
//! a key's only version, and aborting multipart uploads started N days ago. Versions protected
//! by object lock are never removed. The worker that runs passes lives in the server; a pass
//! takes the time as an argument, so it can be tested at any date.

use cairn_chunkserver::RateLimiter;
use cairn_core::manifest::{Bucket, LifecycleRule, VersionManifest, Versioning};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::{ClientError, UploadsQuery, VersionSel, VersionsQuery};

/// A day in milliseconds.
const DAY_MS: u64 = 86_400_000;
/// Versions or uploads read per listing call.
const PAGE: usize = 1000;

/// What a lifecycle pass did (also its progress while it runs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleReport {
    /// Buckets with rules, visited.
    pub buckets: u64,
    /// Versions and delete markers looked at.
    pub versions_scanned: u64,
    /// Current versions expired.
    pub expired: u64,
    /// Noncurrent versions removed.
    pub noncurrent_removed: u64,
    /// Lone delete markers removed.
    pub markers_removed: u64,
    /// Multipart uploads aborted.
    pub uploads_aborted: u64,
    /// Versions an action applied to but object lock protects.
    pub locked_skipped: u64,
    /// Actions that failed.
    pub errors: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// When an action of `days` days on something dated `from_ms` is due: S3 rounds the expiry
/// up to the next midnight UTC.
fn due(from_ms: u64, days: u32) -> u64 {
    let t = from_ms.saturating_add(u64::from(days) * DAY_MS);
    t.div_ceil(DAY_MS).saturating_mul(DAY_MS)
}

/// Whether a rule's filter selects a version.
fn selects(rule: &LifecycleRule, m: &VersionManifest) -> bool {
    let f = &rule.filter;
    rule.enabled
        && m.key.starts_with(&f.prefix)
        && f.tags.iter().all(|(k, v)| m.tags.get(k) == Some(v))
        && f.size_greater_than.is_none_or(|n| m.size > n)
        && f.size_less_than.is_none_or(|n| m.size < n)
}

/// Where the scan of one key stands.
#[derive(Default)]
struct KeyState {
    key: String,
    /// Entries of this key seen so far.
    seen: u64,
    /// Noncurrent versions seen so far (not counting delete markers).
    noncurrent: u32,
    /// mtime of the previous (newer) entry: when the next one became noncurrent.
    newer_mtime: u64,
    /// The key's newest entry was a delete marker: removed if no other entry follows.
    lone_marker: Option<VersionManifest>,
}

impl Client {
    /// One lifecycle pass at time `now_ms`; `progress` sees the report after every page.
    pub async fn run_lifecycle(
        &self,
        now_ms: u64,
        progress: &(dyn Fn(&LifecycleReport) + Sync),
    ) -> Result<LifecycleReport, ClientError> {
        self.run_lifecycle_limited(now_ms, progress, &RateLimiter::new(0))
            .await
    }

    /// [`Client::run_lifecycle`] at most as fast as `limiter` allows, one token per version
    /// it looks at.
    pub async fn run_lifecycle_limited(
        &self,
        now_ms: u64,
        progress: &(dyn Fn(&LifecycleReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<LifecycleReport, ClientError> {
        let mut report = LifecycleReport::default();
        for bucket in self.list_buckets().await? {
            let Some(rules) = bucket.lifecycle.clone() else {
                continue;
            };
            if !rules.iter().any(|r| r.enabled) {
                continue;
            }
            report.buckets += 1;
            self.lifecycle_versions(&bucket, &rules, now_ms, &mut report, progress, limiter)
                .await?;
            self.lifecycle_uploads(&bucket, &rules, now_ms, &mut report)
                .await?;
            progress(&report);
        }
        Ok(report)
    }

    async fn lifecycle_versions(
        &self,
        bucket: &Bucket,
        rules: &[LifecycleRule],
        now: u64,
        report: &mut LifecycleReport,
        progress: &(dyn Fn(&LifecycleReport) + Sync),
        limiter: &RateLimiter,
    ) -> Result<(), ClientError> {
        let mut q = VersionsQuery {
            max_keys: PAGE,
            ..Default::default()
        };
        let mut state = KeyState::default();
        loop {
            let page = match self.list_versions(&bucket.name, &q).await {
                Ok(p) => p,
                // The bucket went away during the pass.
                Err(ClientError::NoSuchBucket(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            limiter.acquire(page.versions.len() as u64).await;
            for m in page.versions {
                report.versions_scanned += 1;
                if m.key != state.key {
                    self.finish_key(bucket, rules, &mut state, report).await;
                    state = KeyState {
                        key: m.key.clone(),
                        ..Default::default()
                    };
                }
                self.lifecycle_entry(bucket, rules, now, &mut state, m, report)
                    .await;
            }
            progress(report);
            if !page.is_truncated {
                break;
            }
            q.key_marker = page.next_key_marker;
            q.version_marker = page.next_version_marker;
        }
        self.finish_key(bucket, rules, &mut state, report).await;
        Ok(())
    }

    /// Applies the rules to one entry of the key being scanned (entries come newest first).
    async fn lifecycle_entry(
        &self,
        bucket: &Bucket,
        rules: &[LifecycleRule],
        now: u64,
        state: &mut KeyState,
        m: VersionManifest,
        report: &mut LifecycleReport,
    ) {
        let newest = state.seen == 0;
        state.seen += 1;
        let became_noncurrent = std::mem::replace(&mut state.newer_mtime, m.mtime_ms);
        if newest {
            if m.delete_marker {
                state.lone_marker = Some(m);
                return;
            }
            let expire = rules.iter().any(|r| {
                selects(r, &m)
                    && (r.expiration_days.is_some_and(|d| due(m.mtime_ms, d) <= now)
                        || r.expiration_date_ms.is_some_and(|d| d <= now))
            });
            if expire {
                let sel = match bucket.versioning {
                    // A delete marker hides the object; its versions stay.
                    Versioning::Enabled | Versioning::Suspended => VersionSel::Current,
                    Versioning::Unversioned => VersionSel::Id(m.version),
                };
                if self.lifecycle_delete(bucket, &m, sel, report).await {
                    report.expired += 1;
                }
            }
            return;
        }
        state.lone_marker = None;
        if m.delete_marker {
            return;
        }
        state.noncurrent += 1;
        let expire = rules.iter().any(|r| {
            selects(r, &m)
                && r.noncurrent_days
                    .is_some_and(|d| due(became_noncurrent, d) <= now)
                && r.newer_noncurrent_versions
                    .is_none_or(|keep| state.noncurrent > keep)
        });
        if expire
            && self
                .lifecycle_delete(bucket, &m, VersionSel::Id(m.version), report)
                .await
        {
            report.noncurrent_removed += 1;
        }
    }

    /// At the end of a key: removes its delete marker if it was the only entry and a rule
    /// asks for expired delete markers to go.
    async fn finish_key(
        &self,
        bucket: &Bucket,
        rules: &[LifecycleRule],
        state: &mut KeyState,
        report: &mut LifecycleReport,
    ) {
        let Some(marker) = state.lone_marker.take() else {
            return;
        };
        if state.seen != 1 {
            return;
        }
        let wanted = rules.iter().any(|r| {
            r.expired_object_delete_marker
                && r.enabled
                && marker.key.starts_with(&r.filter.prefix)
                && r.filter.tags.is_empty()
        });
        if wanted
            && self
                .lifecycle_delete(bucket, &marker, VersionSel::Id(marker.version), report)
                .await
        {
            report.markers_removed += 1;
        }
    }

    /// Deletes for lifecycle; object lock refusals and failures are counted, not raised.
    async fn lifecycle_delete(
        &self,
        bucket: &Bucket,
        m: &VersionManifest,
        sel: VersionSel,
        report: &mut LifecycleReport,
    ) -> bool {
        match self
            .delete_object_with(&bucket.name, &m.key, &sel, false)
            .await
        {
            Ok(_) => true,
            Err(ClientError::AccessDenied(_)) => {
                report.locked_skipped += 1;
                false
            }
            Err(e) => {
                report.errors += 1;
                report.last_error = Some(format!("{}/{}: {e}", bucket.name, m.key));
                false
            }
        }
    }

    async fn lifecycle_uploads(
        &self,
        bucket: &Bucket,
        rules: &[LifecycleRule],
        now: u64,
        report: &mut LifecycleReport,
    ) -> Result<(), ClientError> {
        if !rules
            .iter()
            .any(|r| r.enabled && r.abort_incomplete_multipart_days.is_some())
        {
            return Ok(());
        }
        let mut q = UploadsQuery {
            max_uploads: PAGE,
            ..Default::default()
        };
        loop {
            let page = match self.list_uploads(&bucket.name, &q).await {
                Ok(p) => p,
                Err(ClientError::NoSuchBucket(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            for u in page.uploads {
                let abort = rules.iter().any(|r| {
                    r.enabled
                        && u.key.starts_with(&r.filter.prefix)
                        && r.abort_incomplete_multipart_days
                            .is_some_and(|d| due(u.initiated_ms, d) <= now)
                });
                if !abort {
                    continue;
                }
                match self
                    .abort_multipart(&bucket.name, &u.key, &u.upload_id)
                    .await
                {
                    Ok(()) | Err(ClientError::NoSuchUpload(_)) => report.uploads_aborted += 1,
                    Err(e) => {
                        report.errors += 1;
                        report.last_error = Some(format!("{}/{}: {e}", bucket.name, u.key));
                    }
                }
            }
            if !page.is_truncated {
                return Ok(());
            }
            q.key_marker = page.next_key_marker;
            q.upload_id_marker = page.next_upload_id_marker;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_to_midnight_utc() {
        // 2024-01-01T10:00Z + 1 day → 2024-01-03T00:00Z.
        let t = 1_704_103_200_000;
        assert_eq!(due(t, 1), 1_704_240_000_000);
        // Exactly midnight stays.
        assert_eq!(due(1_704_067_200_000, 1), 1_704_153_600_000);
    }

    #[test]
    fn filters_select_by_prefix_tags_and_size() {
        let mut rule = LifecycleRule {
            enabled: true,
            ..Default::default()
        };
        rule.filter.prefix = "logs/".into();
        rule.filter.tags.insert("tier".into(), "tmp".into());
        rule.filter.size_greater_than = Some(10);
        let mut m =
            VersionManifest::delete_marker("b", "logs/a", crate::VersionId::MIN, None, false, 0);
        m.delete_marker = false;
        m.size = 11;
        m.tags.insert("tier".into(), "tmp".into());
        assert!(selects(&rule, &m));
        m.size = 10;
        assert!(!selects(&rule, &m), "size bounds are strict");
        m.size = 11;
        m.key = "data/a".into();
        assert!(!selects(&rule, &m));
        m.key = "logs/a".into();
        m.tags.clear();
        assert!(!selects(&rule, &m));
        rule.enabled = false;
        assert!(!selects(&rule, &m));
    }
}
