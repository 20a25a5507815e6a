//! Admin commands (`cairn key`, `cairn bucket`, `cairn stats`), run against a data dir directly
//! or through a running site's admin endpoint.

use anyhow::Context;
use cairn_client::Client;
use http::Method;

use crate::admin::{self, AdminClient, BucketInfo, GrantInfo, KeyInfo, LimitsInfo, StatsInfo};
use crate::workers::WorkerStatus;
use crate::Target;

/// Where the command's work happens.
pub(crate) enum Backend {
    /// The data dir, opened in this process (no site is running on it).
    Local(Client),
    /// A running site's admin API.
    Remote(Box<AdminClient>),
}

pub(crate) async fn backend(t: &Target) -> anyhow::Result<Backend> {
    if let Some(url) = &t.admin {
        let token = t
            .token
            .clone()
            .context("--admin needs --token (or CAIRN_ADMIN_TOKEN): it is in the site's DATA_DIR/admin.token")?;
        return Ok(Backend::Remote(Box::new(AdminClient::new(url, &token))));
    }
    let dir = &t.data_dir;
    if dir.join("cluster.map").exists() {
        // A node of a multi-node site: its stores hold only its share, so always go through
        // the running node.
        return Ok(Backend::Remote(Box::new(running_site(dir)?)));
    }
    if !dir.join("node-id").exists() {
        anyhow::bail!(
            "{} is not a cairn data dir: start a site with `cairn serve --data-dir {}` first, or pass --data-dir",
            dir.display(),
            dir.display()
        );
    }
    match Client::open_dir(dir) {
        Ok(c) => Ok(Backend::Local(c)),
        Err(e) if e.to_string().to_lowercase().contains("lock") => {
            // A site is running on the data dir: go through its admin endpoint.
            Ok(Backend::Remote(Box::new(running_site(dir)?)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The admin endpoint of the site (or node) running on data dir `dir`, from the
/// `admin.json` and `admin.token` it wrote there.
pub(crate) fn running_site(dir: &std::path::Path) -> anyhow::Result<AdminClient> {
    let file = std::fs::read_to_string(dir.join("admin.json")).with_context(|| {
        format!(
            "no site is running on {} (it has no admin.json): start it, or pass --admin and --token",
            dir.display()
        )
    })?;
    let ep: admin::EndpointFile = serde_json::from_str(&file)?;
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .with_context(|| format!("cannot read {}/admin.token", dir.display()))?;
    Ok(AdminClient::new(&ep.url, token.trim()))
}

/// The admin endpoint `t` names: `--admin` with its token, or the site running on `--data-dir`.
pub(crate) fn admin_of(t: &Target) -> anyhow::Result<AdminClient> {
    match &t.admin {
        Some(url) => {
            let token = t.token.clone().context(
                "--admin needs --token (or CAIRN_ADMIN_TOKEN): it is in the node's DATA_DIR/admin.token",
            )?;
            Ok(AdminClient::new(url, &token))
        }
        None => running_site(&t.data_dir),
    }
}

/// `cairn key create NAME`.
pub async fn key_create(t: &Target, name: &str) -> anyhow::Result<()> {
    let k: KeyInfo = match backend(t).await? {
        Backend::Local(c) => admin::key_info(&c.create_key(name).await?, true),
        Backend::Remote(a) => {
            a.call(
                Method::POST,
                "/v1/keys",
                Some(serde_json::json!({ "name": name })),
            )
            .await?
        }
    };
    println!("Access key id:     {}", k.id);
    println!("Secret access key: {}", k.secret.unwrap_or_default());
    println!("(the secret is shown only now: keep it)");
    Ok(())
}

/// `cairn key list`.
pub async fn key_list(t: &Target) -> anyhow::Result<()> {
    let keys: Vec<KeyInfo> = match backend(t).await? {
        Backend::Local(c) => c
            .list_keys()
            .await?
            .iter()
            .map(|k| admin::key_info(k, false))
            .collect(),
        Backend::Remote(a) => a.call(Method::GET, "/v1/keys", None).await?,
    };
    println!("{:<24} {:<20} {:<22} GRANTS", "ID", "NAME", "CREATED");
    for k in keys {
        println!(
            "{:<24} {:<20} {:<22} {}",
            k.id,
            k.name,
            fmt_time(k.created_ms),
            describe_grants(&k)
        );
    }
    Ok(())
}

/// A key's bucket grants on one line, e.g. `photos:read,write logs:owner` (`-` for none).
fn describe_grants(k: &KeyInfo) -> String {
    if k.grants.is_empty() {
        return "-".to_string();
    }
    k.grants
        .iter()
        .map(|(b, g)| format!("{b}:{}", g.describe()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cairn key info ID`.
pub async fn key_info(t: &Target, id: &str) -> anyhow::Result<()> {
    let k: KeyInfo = match backend(t).await? {
        Backend::Local(c) => match c.get_key(id).await? {
            Some(k) => admin::key_info(&k, false),
            None => anyhow::bail!("no access key `{id}`: see `cairn key list`"),
        },
        Backend::Remote(a) => a.call(Method::GET, &format!("/v1/keys/{id}"), None).await?,
    };
    println!("Access key id: {}", k.id);
    println!("Name:          {}", k.name);
    println!("Created:       {}", fmt_time(k.created_ms));
    if k.grants.is_empty() {
        println!("Bucket grants: none (the key can use the buckets it owns)");
    } else {
        println!("Bucket grants:");
        for (bucket, g) in &k.grants {
            println!("  {bucket:<40} {}", g.describe());
        }
    }
    println!("Limits:        {}", k.limits.describe());
    Ok(())
}

/// `cairn key limit ID [--requests-per-sec N] [--bytes-per-sec SIZE] [--clear]`: sets the key's
/// limits to exactly `limits` (none given: lifts them).
pub async fn key_limit(t: &Target, id: &str, limits: LimitsInfo) -> anyhow::Result<()> {
    let k: KeyInfo = match backend(t).await? {
        Backend::Local(c) => admin::key_info(&c.set_key_limits(id, limits.into()).await?, false),
        Backend::Remote(a) => {
            let path = format!("/v1/keys/{id}/limits");
            a.call(Method::PUT, &path, Some(serde_json::to_value(limits)?))
                .await?
        }
    };
    if k.limits == LimitsInfo::default() {
        println!("Key {} has no limits", k.id);
    } else {
        println!(
            "Key {} is limited to {} (running gateways apply it within a few seconds)",
            k.id,
            k.limits.describe()
        );
    }
    Ok(())
}

/// `cairn key allow ID --bucket B [--read] [--write] [--owner]`: sets the key's grant on the
/// bucket to exactly the permissions given; `None` (`cairn key deny`) removes it.
pub async fn key_grant(
    t: &Target,
    id: &str,
    bucket: &str,
    grant: Option<GrantInfo>,
) -> anyhow::Result<()> {
    if grant.is_some_and(|g| !(g.read || g.write || g.owner)) {
        anyhow::bail!("give at least one of --read, --write and --owner");
    }
    let path = format!("/v1/keys/{id}/grants/{bucket}");
    let k: KeyInfo = match backend(t).await? {
        Backend::Local(c) => admin::key_info(
            &c.set_key_grant(id, bucket, grant.map(Into::into)).await?,
            false,
        ),
        Backend::Remote(a) => match grant {
            Some(g) => {
                a.call(Method::PUT, &path, Some(serde_json::to_value(g)?))
                    .await?
            }
            None => a.call(Method::DELETE, &path, None).await?,
        },
    };
    match k.grants.get(bucket) {
        Some(g) => println!("Key {} may now {} in bucket {bucket}", k.id, g.describe()),
        None => println!("Key {} has no grant on bucket {bucket}", k.id),
    }
    Ok(())
}

/// `cairn key delete ID`.
pub async fn key_delete(t: &Target, id: &str) -> anyhow::Result<()> {
    let deleted = match backend(t).await? {
        Backend::Local(c) => c.delete_key(id).await?,
        Backend::Remote(a) => {
            a.call::<serde_json::Value>(Method::DELETE, &format!("/v1/keys/{id}"), None)
                .await?;
            true
        }
    };
    if !deleted {
        anyhow::bail!("no access key `{id}`: see `cairn key list`");
    }
    println!("Deleted access key {id}");
    Ok(())
}

/// `cairn bucket create NAME`.
pub async fn bucket_create(t: &Target, name: &str, owner: Option<&str>) -> anyhow::Result<()> {
    let b: BucketInfo = match backend(t).await? {
        Backend::Local(c) => {
            let owner = admin::default_owner(&c, owner).await?;
            admin::bucket_info(&c.create_bucket(name, &owner).await?)
        }
        Backend::Remote(a) => {
            a.call(
                Method::POST,
                "/v1/buckets",
                Some(serde_json::json!({ "name": name, "owner": owner })),
            )
            .await?
        }
    };
    println!("Created bucket {} (owner {})", b.name, b.owner);
    Ok(())
}

/// `cairn bucket list`.
pub async fn bucket_list(t: &Target) -> anyhow::Result<()> {
    let buckets: Vec<BucketInfo> = match backend(t).await? {
        Backend::Local(c) => c
            .list_buckets()
            .await?
            .iter()
            .map(admin::bucket_info)
            .collect(),
        Backend::Remote(a) => a.call(Method::GET, "/v1/buckets", None).await?,
    };
    println!(
        "{:<40} {:<24} {:<12} CREATED",
        "NAME", "OWNER", "VERSIONING"
    );
    for b in buckets {
        println!(
            "{:<40} {:<24} {:<12} {}",
            b.name,
            b.owner,
            b.versioning,
            fmt_time(b.created_ms)
        );
    }
    Ok(())
}

/// `cairn workers`: workers run inside `cairn serve`, so this needs a running site.
pub async fn workers(t: &Target) -> anyhow::Result<()> {
    let statuses: Vec<WorkerStatus> = match backend(t).await? {
        Backend::Local(_) => anyhow::bail!(
            "no site is running on {}: workers run inside `cairn serve` (start it, or pass \
             --admin URL --token TOKEN of a running site)",
            t.data_dir.display()
        ),
        Backend::Remote(a) => a.call(Method::GET, "/v1/workers", None).await?,
    };
    for s in statuses {
        println!(
            "{} ({}), {} passes, every {} s",
            s.name, s.state, s.passes, s.interval_secs
        );
        if let Some(t) = s.last_started_ms {
            println!("  last started:  {}", fmt_time(t));
        }
        if let Some(t) = s.last_finished_ms {
            println!("  last finished: {}", fmt_time(t));
        }
        if let Some(g) = &s.gc {
            println!(
                "  phase {:?}, versions scanned {}, uploads scanned {}, chunks marked {}, \
                 chunks scanned {}, chunks deleted {}, bytes freed {}",
                g.phase,
                g.versions_scanned,
                g.uploads_scanned,
                g.chunks_marked,
                g.chunks_scanned,
                g.chunks_deleted,
                g.bytes_freed
            );
            if let Some(e) = &s.last_error {
                println!("  last error: {e}");
            }
            continue;
        }
        if s.name != "lifecycle" {
            println!("  {}", crate::workers::progress_line(&s));
            if let Some(e) = &s.last_error {
                println!("  last error: {e}");
            }
            for f in &s.findings {
                println!("  {f}");
            }
            continue;
        }
        let p = &s.progress;
        println!(
            "  buckets {}, versions scanned {}, expired {}, noncurrent removed {}, \
             delete markers removed {}, uploads aborted {}, kept by object lock {}, errors {}",
            p.buckets,
            p.versions_scanned,
            p.expired,
            p.noncurrent_removed,
            p.markers_removed,
            p.uploads_aborted,
            p.locked_skipped,
            p.errors
        );
        if let Some(e) = &s.last_error {
            println!("  last error: {e}");
        }
    }
    Ok(())
}

/// `cairn stats`.
pub async fn stats(t: &Target) -> anyhow::Result<()> {
    let s: StatsInfo = match backend(t).await? {
        Backend::Local(c) => admin::stats_info(&c.stats().await?),
        Backend::Remote(a) => a.call(Method::GET, "/v1/stats", None).await?,
    };
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    println!("buckets:          {}", s.buckets);
    println!("versions:         {}", s.versions);
    println!("chunks:           {}", s.chunks);
    println!(
        "logical bytes:    {} ({})",
        s.logical_bytes,
        human(s.logical_bytes)
    );
    println!(
        "after dedup:      {} ({})",
        s.unique_bytes,
        human(s.unique_bytes)
    );
    println!(
        "physical bytes:   {} ({})",
        s.physical_bytes,
        human(s.physical_bytes)
    );
    println!(
        "dedup ratio:      {:.2}x",
        ratio(s.logical_bytes, s.unique_bytes)
    );
    println!(
        "compression:      {:.2}x",
        ratio(s.unique_bytes, s.physical_bytes)
    );
    println!(
        "total reduction:  {:.2}x",
        ratio(s.logical_bytes, s.physical_bytes)
    );
    Ok(())
}

pub(crate) fn human(b: u64) -> String {
    cairn_core::space::human_bytes(b)
}

pub(crate) fn fmt_time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_and_times() {
        assert_eq!(human(0), "0.0 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
