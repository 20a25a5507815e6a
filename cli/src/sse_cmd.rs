//! `cairn sse`: the site's master keys for server-side encryption with the site's keys
//! (SSE-S3, `x-amz-server-side-encryption: AES256`). They live in `DATA_DIR/sse-master.keys`
//! (mode 0600; on a multi-node site beside each node's certificates, written by `cairn init`)
//! or in `CAIRN_SSE_MASTER_KEYS`; a running site reloads the file within seconds.

use std::path::PathBuf;

use anyhow::anyhow;
use cairn_client::crypt::{SiteKeys, KEYS_FILE};
use clap::Subcommand;

/// `cairn sse ...`
#[derive(Subcommand)]
pub enum SseCommand {
    /// List the ids of the master keys held (the greatest seals new writes; older ones still
    /// open what they sealed).
    Keys {
        /// Data dir of a single-node site, or a node's certificates dir.
        #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Add a new master key that seals every new encrypted write from now on. Objects written
    /// before keep opening with the key they were sealed under: never delete old keys from the
    /// file. On a multi-node site, copy the file to every node afterwards.
    RotateKey {
        /// Data dir of a single-node site, or a node's certificates dir.
        #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
        data_dir: PathBuf,
    },
}

/// Runs `cairn sse ...`.
pub fn run(cmd: SseCommand) -> anyhow::Result<()> {
    match cmd {
        SseCommand::Keys { data_dir } => {
            let keys = SiteKeys::load(&data_dir)
                .map_err(|e| anyhow!("{e}"))?
                .ok_or_else(|| {
                    anyhow!(
                        "no {KEYS_FILE} in {}: a single-node site makes it on first start, \
                         `cairn init` for a multi-node site",
                        data_dir.display()
                    )
                })?;
            let ids = keys.ids();
            for id in &ids {
                let current = if Some(id) == ids.last() {
                    "  (seals new writes)"
                } else {
                    ""
                };
                println!("{id}{current}");
            }
            Ok(())
        }
        SseCommand::RotateKey { data_dir } => {
            if !data_dir.join(KEYS_FILE).exists() {
                return Err(anyhow!(
                    "no {KEYS_FILE} in {}: give the data dir of a site (or the certificates dir \
                     of a node)",
                    data_dir.display()
                ));
            }
            let id = SiteKeys::rotate(&data_dir).map_err(|e| anyhow!("{e}"))?;
            println!(
                "master key {id} added to {}: new encrypted writes use it once the site has \
                 reloaded the file (within seconds); back the file up",
                data_dir.join(KEYS_FILE).display()
            );
            Ok(())
        }
    }
}

/// Reloads the site's master keys from `dir` whenever the file changes (a rotation), until
/// `stop`: keys from the environment never change.
pub async fn reload_loop(
    client: cairn_client::Client,
    dir: PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let path = dir.join(KEYS_FILE);
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
        if *stop.borrow() {
            return;
        }
        let now = stamp(&path);
        if now == seen || std::env::var_os(cairn_client::crypt::KEYS_ENV).is_some() {
            continue;
        }
        seen = now;
        match SiteKeys::load(&dir) {
            Ok(Some(keys)) => {
                tracing::info!(ids = ?keys.ids(), "reloaded the site's encryption keys");
                client.set_site_keys(&keys);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot reload the site's encryption keys"),
        }
    }
}
