//! `cairn link`: links between sites. Links live in the data dir (`DATA_DIR/link/links.json`);
//! a running site picks up changes within a second. `status` asks the running site.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_isgw::{DataMode, Direction, LinkConfig, LinkDir, LinkStatus, Mode};
use clap::{Args, Subcommand};
use http::Method;

use crate::ops::{admin_of, human};
use crate::Target;

/// The data dir a link command works on.
#[derive(Args, Clone, Debug)]
pub struct DirArg {
    /// Data dir of the site.
    #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `cairn link ...`
#[derive(Subcommand)]
pub enum LinkCommand {
    /// Link this site to another: its buckets sync with the other site's as chosen. The other
    /// site must trust this site's CA (`cairn link trust` there) and this site the other's.
    Add {
        /// A name for the link (a DNS label, e.g. `paris`).
        name: String,
        /// The other site's link listener, HOST:PORT (its `cairn serve --link-listen`); or the
        /// endpoint URL (http:// or https://) of any S3 store to mirror the buckets to (with
        /// --direction send: current objects are written there as ordinary objects and deletes
        /// follow).
        #[arg(long)]
        remote: String,
        /// Access key id at an S3 endpoint given as --remote.
        #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
        s3_access_key: Option<String>,
        /// Its secret.
        #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
        s3_secret_key: Option<String>,
        /// Region to sign requests to an S3 endpoint for.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        s3_region: String,
        /// Buckets to sync, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        buckets: Vec<String>,
        /// Sync every bucket, including buckets created later.
        #[arg(long)]
        all: bool,
        /// Send this site's changes, receive the other's, or both.
        #[arg(long, value_enum, default_value = "both")]
        direction: Direction,
        /// Copy what exists now (initial), follow changes from now on (continuous), or both.
        #[arg(long, value_enum, default_value = "both")]
        mode: Mode,
        /// Ship data with the metadata (full), or receive metadata only (metadata-only): the
        /// data of what this site receives is fetched from the other site when first read,
        /// checked, and kept in a bounded cache (`cairn serve --link-cache-size`; `cairn
        /// object pin` keeps an object for good). What this site sends always carries its data.
        #[arg(long, value_enum, default_value = "full")]
        data: DataMode,
        /// Most bytes per second shipped in each direction (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate_bytes_per_sec: u64,
        #[command(flatten)]
        dir: DirArg,
    },
    /// List the configured links.
    List(DirArg),
    /// Show each link of the running site: connected or not, lag, what it moved, last error.
    Status(Target),
    /// Stop moving data on a link, keeping its place.
    Pause {
        /// The link.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Resume a paused link from where it stopped.
    Resume {
        /// The link.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Remove a link (and its progress: adding it again starts over).
    Remove {
        /// The link.
        name: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Trust another site's CA certificate (its data dir's ca.pem, or `cairn link ca` there):
    /// links to and from that site are accepted from then on.
    Trust {
        /// The other site's CA certificate, PEM.
        ca: PathBuf,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop trusting a site's CA (by the site name `cairn link trusted` shows).
    Untrust {
        /// The site.
        site: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// List the sites whose CAs this site trusts.
    Trusted(DirArg),
    /// Print this site's CA certificate, for the other site's `cairn link trust`.
    Ca(DirArg),
}

/// Runs a `cairn link` command.
pub async fn run(cmd: LinkCommand) -> anyhow::Result<()> {
    match cmd {
        LinkCommand::Add {
            name,
            remote,
            s3_access_key,
            s3_secret_key,
            s3_region,
            buckets,
            all,
            direction,
            mode,
            data,
            rate_bytes_per_sec,
            dir,
        } => {
            let cfg = LinkConfig {
                name,
                remote,
                buckets: (!all).then_some(buckets),
                direction,
                mode,
                data,
                rate_bytes_per_sec,
                paused: false,
            };
            cfg.validate().map_err(anyhow::Error::msg)?;
            let links = LinkDir::new(&dir.data_dir);
            let mut file = links.load()?;
            if file.links.iter().any(|l| l.name == cfg.name) {
                anyhow::bail!(
                    "a link named {} exists: remove it first (`cairn link remove {}`) or pick \
                     another name",
                    cfg.name,
                    cfg.name
                );
            }
            links.remove_state(&cfg.name)?;
            if cfg.is_s3() {
                let (Some(access_key_id), Some(secret_access_key)) = (s3_access_key, s3_secret_key)
                else {
                    anyhow::bail!(
                        "a link to an S3 endpoint needs its credentials: --s3-access-key and \
                         --s3-secret-key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    );
                };
                let target = cairn_isgw::mirror::S3Target {
                    endpoint: cfg.remote.clone(),
                    region: s3_region,
                    access_key_id,
                    secret_access_key,
                };
                links.save_s3_target(&cfg.name, &target)?;
            }
            println!("Added link {} to {}", cfg.name, cfg.remote);
            file.links.push(cfg);
            links.save(&file)?;
            Ok(())
        }
        LinkCommand::List(dir) => {
            let file = LinkDir::new(&dir.data_dir).load()?;
            if file.links.is_empty() {
                println!("No links (add one with `cairn link add`).");
            }
            for l in file.links {
                println!("{}", describe(&l));
            }
            Ok(())
        }
        LinkCommand::Status(target) => status(&target).await,
        LinkCommand::Pause { name, dir } => set_paused(&dir.data_dir, &name, true),
        LinkCommand::Resume { name, dir } => set_paused(&dir.data_dir, &name, false),
        LinkCommand::Remove { name, dir } => {
            let links = LinkDir::new(&dir.data_dir);
            let mut file = links.load()?;
            let before = file.links.len();
            file.links.retain(|l| l.name != name);
            if file.links.len() == before {
                anyhow::bail!("no link named {name} in this data dir (see `cairn link list`; a link in a node's \
                 config file, [[links]], is changed there)");
            }
            links.save(&file)?;
            links.remove_state(&name)?;
            println!("Removed link {name}");
            Ok(())
        }
        LinkCommand::Trust { ca, dir } => {
            let site =
                cairn_isgw::identity::trust_ca(&dir.data_dir, &ca).map_err(anyhow::Error::msg)?;
            println!("Trusting site {site}: links to and from it are accepted");
            Ok(())
        }
        LinkCommand::Untrust { site, dir } => {
            if cairn_isgw::identity::untrust_ca(&dir.data_dir, &site).map_err(anyhow::Error::msg)? {
                println!("No longer trusting site {site}");
                Ok(())
            } else {
                anyhow::bail!("site {site} is not trusted (see `cairn link trusted`)")
            }
        }
        LinkCommand::Trusted(dir) => {
            let cas =
                cairn_isgw::identity::trusted_cas(&dir.data_dir).map_err(anyhow::Error::msg)?;
            if cas.is_empty() {
                println!("No site is trusted (trust one with `cairn link trust CA.pem`).");
            }
            for ca in cas {
                println!("{}", ca.site);
            }
            Ok(())
        }
        LinkCommand::Ca(dir) => {
            let path = dir.data_dir.join("ca.pem");
            let pem = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{} has no site CA yet: start the site once (`cairn serve --data-dir {}`) \
                     to make it",
                    dir.data_dir.display(),
                    dir.data_dir.display()
                )
            })?;
            print!("{pem}");
            Ok(())
        }
    }
}

fn set_paused(data_dir: &Path, name: &str, paused: bool) -> anyhow::Result<()> {
    let links = LinkDir::new(data_dir);
    let mut file = links.load()?;
    let link = file
        .links
        .iter_mut()
        .find(|l| l.name == name)
        .with_context(|| {
            format!(
                "no link named {name} in this data dir (see `cairn link list`; a link in a node's \
                 config file, [[links]], is changed there)"
            )
        })?;
    link.paused = paused;
    links.save(&file)?;
    println!("Link {name} {}", if paused { "paused" } else { "resumed" });
    Ok(())
}

fn describe(l: &LinkConfig) -> String {
    let buckets = match &l.buckets {
        None => "all buckets".to_string(),
        Some(b) => b.join(","),
    };
    format!(
        "{} -> {}: {buckets}, direction {:?}, mode {:?}, data {}{}{}",
        l.name,
        l.remote,
        l.direction,
        l.mode,
        match l.data {
            DataMode::Full => "full",
            DataMode::MetadataOnly => "metadata-only",
        },
        if l.rate_bytes_per_sec > 0 {
            format!(", at most {}/s", human(l.rate_bytes_per_sec))
        } else {
            String::new()
        },
        if l.paused { " (paused)" } else { "" }
    )
    .to_lowercase()
}

async fn status(t: &Target) -> anyhow::Result<()> {
    let admin = admin_of(t)?;
    let links: Vec<LinkStatus> = admin.call(Method::GET, "/v1/links", None).await?;
    if links.is_empty() {
        println!("No links (add one with `cairn link add`).");
    }
    for l in links {
        println!("{}", describe(&l.config));
        let remote = l
            .remote_site
            .map_or("unknown".to_string(), |s| format!("{s:04x}"));
        println!("  state {:?}, remote site {remote}", l.phase);
        for (dir, lag, behind, left, t) in [
            (
                "sent",
                l.send_lag_ms,
                l.send_behind,
                &l.send_initial_left,
                &l.sent,
            ),
            (
                "received",
                l.receive_lag_ms,
                l.receive_behind,
                &l.receive_initial_left,
                &l.received,
            ),
        ] {
            println!(
                "  {dir}: {} versions ({} present already), {} removals, {} nodes, {} chunks, \
                 {} shipped, {} not shipped (held already), lag {:.1} s, {behind} log entries \
                 behind{}",
                t.versions,
                t.versions_present,
                t.removals,
                t.nodes,
                t.chunks,
                human(t.bytes),
                human(t.bytes_skipped),
                lag as f64 / 1000.0,
                if left.is_empty() {
                    String::new()
                } else {
                    format!(", initial copy left: {}", left.join(","))
                }
            );
        }
        if let Some(e) = &l.last_error {
            println!("  last error: {e}");
        }
    }
    let cache: cairn_client::FetchStats = admin.call(Method::GET, "/v1/links/cache", None).await?;
    if cache.enabled {
        println!(
            "Fetch cache (metadata-only links): {} in {} chunks of at most {} ({} pinned), {} \
             chunks fetched ({}), {} evicted, {} refused (failed their check)",
            human(cache.cache.stored_bytes),
            cache.cache.chunks,
            human(cache.limit_bytes),
            human(cache.cache.pinned_bytes),
            cache.fetched_chunks,
            human(cache.fetched_bytes),
            cache.evicted_chunks,
            cache.refused_chunks
        );
    }
    Ok(())
}
