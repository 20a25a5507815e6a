//! `cairn volume`: block volumes, their snapshots and clones, on a data dir or through a
//! running site's admin API (`/v1/volumes`), which is what the site's own volume controllers
//! serve, so commands and clients never write one volume from two processes.

use std::sync::Arc;

use cairn_block::iscsi::{ChapSecret, ExportAccess};
use cairn_block::volume::{SnapshotInfo, VolumeInfo, DEFAULT_EXTENT_SIZE};
use cairn_block::{VolumeConfig, VolumeError, Volumes};
use clap::Subcommand;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bench::numbers::parse_size;
use crate::ops::{backend, fmt_time, human, Backend};
use crate::volume_backup::{BackupRequest, RestoreRequest, S3Args};
use crate::volume_health::{list_with_usage, print_usage, with_usage, UsageJson};
use crate::Target;

/// `cairn volume ...`.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a thin volume: nothing is stored until it is written.
    Create {
        /// Volume name (1-64 characters of A-Z, a-z, 0-9, '.', '_', '-').
        name: String,
        /// Size, e.g. 10GiB or 512MiB (a multiple of the block size).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Logical block size: 512 or 4096.
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
        /// Extent size: writes are stored in aligned pieces of at most this size (a power of
        /// two from 4KiB to 4MiB). Smaller extents dedup finer; larger ones mean fewer chunks.
        #[arg(long, value_parser = parse_size, default_value = "64KiB")]
        extent_size: u64,
        #[command(flatten)]
        target: Target,
    },
    /// List volumes.
    List(Target),
    /// Show a volume and its snapshots.
    Info {
        /// Volume name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Grow a volume (clients see the new size when they connect again). Shrinking drops the
    /// data past the new end and needs --force.
    Resize {
        /// Volume name.
        name: String,
        /// New size, e.g. 20GiB.
        #[arg(value_parser = parse_size)]
        size: u64,
        /// Allow shrinking.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a volume no client has open. Its space is freed by the next GC pass.
    Delete {
        /// Volume name.
        name: String,
        /// Also delete its snapshots (a volume with snapshots is refused otherwise).
        #[arg(long)]
        snapshots: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Snapshots: named, instant, read-only copies of a volume's content.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Create a new volume from a snapshot, instantly (nothing is copied).
    Clone {
        /// The snapshot, as VOLUME@SNAPSHOT.
        source: String,
        /// Name of the new volume.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Make a snapshot the volume's content again (the volume must not be open; the snapshot
    /// stays).
    Rollback {
        /// The snapshot, as VOLUME@SNAPSHOT.
        source: String,
        #[command(flatten)]
        target: Target,
    },
    /// Back a snapshot up to any S3 store (another Cairn site, or any S3 implementation):
    /// PREFIX/chunks/<BLAKE3 hex> holds each chunk once, PREFIX/snapshots/VOLUME@SNAPSHOT.json
    /// the manifest. Only chunks missing there are sent, so later backups send what changed.
    /// Keys: --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. Example:
    /// cairn volume backup db@nightly s3://backups/site-a --endpoint http://10.0.0.2:3900
    Backup {
        /// The snapshot, as VOLUME@SNAPSHOT.
        source: String,
        /// Where to, as s3://BUCKET/PREFIX (the bucket must exist).
        dest: String,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        target: Target,
    },
    /// Create a new volume from a backup, checking every chunk's bytes against its BLAKE3
    /// name; on any failure the new volume is removed again. Example: cairn volume restore
    /// s3://backups/site-a db@nightly db-restored --endpoint http://10.0.0.2:3900
    Restore {
        /// The backup location, as s3://BUCKET/PREFIX (what `backup` was given).
        source: String,
        /// The backed-up snapshot, as VOLUME@SNAPSHOT.
        snapshot: String,
        /// Name of the new volume.
        name: String,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        target: Target,
    },
    /// Set who may log in to a volume's iSCSI target (`PREFIX:VOLUME`, LUN 0, as `cairn
    /// serve` prints). Without options every initiator may, without CHAP (the default of a
    /// new volume). Sessions already logged in stay. Example: cairn volume export db --iscsi
    /// --initiator iqn.1993-08.org.debian:01:host1 --chap host1:a-secret-of-12+
    Export {
        /// Volume name.
        name: String,
        /// Set the iSCSI export (NBD serves every volume).
        #[arg(long, required = true)]
        iscsi: bool,
        /// Only this initiator may log in (repeat for several; its name is in
        /// /etc/iscsi/initiatorname.iscsi on the host).
        #[arg(long = "initiator", value_name = "IQN")]
        initiators: Vec<String>,
        /// Initiators must answer CHAP as USER with SECRET (12-255 characters). Given as USER
        /// alone, the secret comes from $CAIRN_CHAP_SECRET or else a line of standard input,
        /// so that it stays out of the process list and the shell history.
        #[arg(long, value_name = "USER[:SECRET]")]
        chap: Option<String>,
        /// The target proves itself to initiators that ask (mutual CHAP) as USER with SECRET;
        /// USER alone takes the secret from $CAIRN_MUTUAL_CHAP_SECRET or standard input (the
        /// line after --chap's, when both are read).
        #[arg(long, value_name = "USER[:SECRET]", requires = "chap")]
        mutual_chap: Option<String>,
        /// Stop serving the volume over iSCSI: new logins are refused and discovery hides it.
        #[arg(long, conflicts_with_all = ["initiators", "chap", "mutual_chap"])]
        off: bool,
        #[command(flatten)]
        target: Target,
    },
}

/// A volume's iSCSI export as the admin API takes it (`PUT /v1/volumes/NAME/export`) and
/// shows it (without the secrets).
#[derive(Serialize, Deserialize, Default)]
pub struct ExportJson {
    /// Served over iSCSI.
    pub iscsi: bool,
    /// Initiators that may log in (empty: any).
    #[serde(default)]
    pub initiators: Vec<String>,
    /// CHAP user initiators answer as.
    #[serde(default)]
    pub chap_user: Option<String>,
    /// Its secret (never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap_secret: Option<String>,
    /// Mutual CHAP user the target answers as.
    #[serde(default)]
    pub mutual_chap_user: Option<String>,
    /// Its secret (never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_chap_secret: Option<String>,
}

impl ExportJson {
    fn shown(a: &ExportAccess) -> ExportJson {
        ExportJson {
            iscsi: !a.disabled,
            initiators: a.initiators.clone(),
            chap_user: a.chap.as_ref().map(|c| c.user.clone()),
            chap_secret: None,
            mutual_chap_user: a.mutual_chap.as_ref().map(|c| c.user.clone()),
            mutual_chap_secret: None,
        }
    }

    fn access(self) -> Result<ExportAccess, VolumeError> {
        let pair = |user: Option<String>, secret: Option<String>, what: &str| match (user, secret) {
            (Some(user), Some(secret)) => Ok(Some(ChapSecret { user, secret })),
            (None, None) => Ok(None),
            _ => Err(VolumeError::Invalid(format!(
                "{what} needs both a user and a secret"
            ))),
        };
        Ok(ExportAccess {
            disabled: !self.iscsi,
            initiators: self.initiators,
            chap: pair(self.chap_user, self.chap_secret, "CHAP")?,
            mutual_chap: pair(
                self.mutual_chap_user,
                self.mutual_chap_secret,
                "mutual CHAP",
            )?,
        })
    }
}

/// `USER:SECRET`, or `USER` with the secret from the environment variable `env` or else one
/// line of standard input.
fn chap_arg(arg: &str, flag: &str, env: &str) -> anyhow::Result<(String, String)> {
    let (user, secret) = match arg.split_once(':') {
        Some((u, p)) => (u, Some(p.to_string())),
        None => (arg, None),
    };
    anyhow::ensure!(!user.is_empty(), "{flag} takes USER:SECRET, or USER alone");
    let secret = match secret {
        Some(s) => s,
        None => match std::env::var(env) {
            Ok(s) if !s.is_empty() => s,
            _ => {
                use std::io::IsTerminal;
                if std::io::stdin().is_terminal() {
                    eprint!("{flag} secret for {user}: ");
                }
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_string()
            }
        },
    };
    anyhow::ensure!(
        !secret.is_empty(),
        "{flag} {user}: no secret: give USER:SECRET, set {env}, or write it on standard input"
    );
    Ok((user.to_string(), secret))
}

fn print_export(e: &ExportJson) {
    if !e.iscsi {
        println!("iSCSI:       not served (`cairn volume export NAME --iscsi` serves it)");
        return;
    }
    let who = if e.initiators.is_empty() {
        "any initiator".to_string()
    } else {
        e.initiators.join(", ")
    };
    let auth = match (&e.chap_user, &e.mutual_chap_user) {
        (Some(u), Some(m)) => format!("CHAP as {u}, mutual as {m}"),
        (Some(u), None) => format!("CHAP as {u}"),
        _ => "no CHAP".to_string(),
    };
    println!("iSCSI:       {who}, {auth}");
}

/// `cairn volume snapshot ...`.
#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a volume (writes acknowledged before it are in it).
    Create {
        /// Volume name.
        volume: String,
        /// Snapshot name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List a volume's snapshots.
    List {
        /// Volume name.
        volume: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a snapshot (the volume and its clones keep their data).
    Delete {
        /// Volume name.
        volume: String,
        /// Snapshot name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// A volume as the admin API shows it.
#[derive(Serialize, Deserialize)]
pub struct VolumeJson {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size.
    pub block_size: u32,
    /// Extent size.
    pub extent_size: u32,
    /// Last commit, unix ms.
    pub committed_ms: u64,
    /// Health and used bytes, in the answers that compute them (list, info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

impl From<VolumeInfo> for VolumeJson {
    fn from(v: VolumeInfo) -> Self {
        VolumeJson {
            name: v.name,
            size: v.size,
            block_size: v.block_size,
            extent_size: v.extent_size,
            committed_ms: v.committed_ms,
            usage: None,
        }
    }
}

/// A snapshot as the admin API shows it.
#[derive(Serialize, Deserialize)]
pub struct SnapshotJson {
    /// Volume name.
    pub volume: String,
    /// Snapshot name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was taken, unix ms.
    pub created_ms: u64,
}

impl From<SnapshotInfo> for SnapshotJson {
    fn from(s: SnapshotInfo) -> Self {
        SnapshotJson {
            volume: s.volume,
            name: s.name,
            size: s.size,
            created_ms: s.created_ms,
        }
    }
}

/// A request body of the volume endpoints.
#[derive(Serialize, Deserialize, Default)]
pub struct VolumeRequest {
    /// Name of what is created.
    #[serde(default)]
    pub name: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Block size.
    #[serde(default)]
    pub block_size: Option<u32>,
    /// Extent size.
    #[serde(default)]
    pub extent_size: Option<u32>,
    /// Shrink, or delete with snapshots.
    #[serde(default)]
    pub force: bool,
}

pub(crate) fn split_snapshot(s: &str) -> anyhow::Result<(&str, &str)> {
    s.split_once('@')
        .filter(|(v, n)| !v.is_empty() && !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("`{s}` does not name a snapshot: use VOLUME@SNAPSHOT"))
}

/// Runs one volume operation on a local `Volumes` (a data dir no site runs on) or through the
/// admin API: `path` and `body` are the admin request, `local` the same work in-process.
async fn call<T, F>(
    target: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
    local: F,
) -> anyhow::Result<T>
where
    T: serde::de::DeserializeOwned,
    F: AsyncFnOnce(&Volumes) -> Result<T, VolumeError>,
{
    match backend(target).await? {
        Backend::Local(client) => {
            let vols = Volumes::new(client, VolumeConfig::default());
            Ok(local(&vols).await?)
        }
        Backend::Remote(admin) => admin.call(method, path, body).await,
    }
}

fn print_volumes(vols: &[VolumeJson]) {
    println!(
        "{:<24} {:>12} {:>12} {:>6} {:>8}  {:<18} COMMITTED",
        "NAME", "SIZE", "USED", "BLOCK", "EXTENT", "HEALTH"
    );
    for v in vols {
        let (used, health) = match &v.usage {
            Some(json) => {
                let u = &json.usage;
                let health = if u.chunks_short > 0 {
                    format!(
                        "{} {}/{}",
                        u.state.name(),
                        u.replicas_min,
                        u.replicas_wanted
                    )
                } else {
                    u.state.name().to_string()
                };
                (human(u.used_bytes), health)
            }
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{:<24} {:>12} {:>12} {:>6} {:>8}  {:<18} {}",
            v.name,
            human(v.size),
            used,
            v.block_size,
            human(u64::from(v.extent_size)),
            health,
            fmt_time(v.committed_ms)
        );
    }
}

fn print_snapshots(snaps: &[SnapshotJson]) {
    println!("{:<24} {:>12}  CREATED", "SNAPSHOT", "SIZE");
    for s in snaps {
        println!(
            "{:<24} {:>12}  {}",
            format!("{}@{}", s.volume, s.name),
            human(s.size),
            fmt_time(s.created_ms)
        );
    }
}

/// Runs `cairn volume ...`.
pub async fn run(cmd: VolumeCommand) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            block_size,
            extent_size,
            target,
        } => {
            let extent = u32::try_from(extent_size)
                .map_err(|_| anyhow::anyhow!("--extent-size is at most 4MiB"))?;
            let body = VolumeRequest {
                name: name.clone(),
                size,
                block_size: Some(block_size),
                extent_size: Some(extent),
                force: false,
            };
            let v: VolumeJson = call(
                &target,
                Method::POST,
                "/v1/volumes",
                Some(serde_json::to_value(body)?),
                async |vols: &Volumes| {
                    vols.create(&name, size, block_size, extent)
                        .await
                        .map(Into::into)
                },
            )
            .await?;
            println!(
                "Created volume {} ({}, {}-byte blocks, thin: nothing stored yet)",
                v.name,
                human(v.size),
                v.block_size
            );
        }
        VolumeCommand::List(target) => {
            let vols: Vec<VolumeJson> = call(
                &target,
                Method::GET,
                "/v1/volumes",
                None,
                async |vols: &Volumes| list_with_usage(vols).await,
            )
            .await?;
            print_volumes(&vols);
        }
        VolumeCommand::Info { name, target } => {
            let path = format!("/v1/volumes/{name}");
            let v: VolumeJson = call(&target, Method::GET, &path, None, async |vols: &Volumes| {
                with_usage(vols, vols.info(&name).await?).await
            })
            .await?;
            let path = format!("/v1/volumes/{name}/snapshots");
            let snaps: Vec<SnapshotJson> =
                call(&target, Method::GET, &path, None, async |vols: &Volumes| {
                    Ok(vols
                        .snapshots(&name)
                        .await?
                        .into_iter()
                        .map(Into::into)
                        .collect())
                })
                .await?;
            println!("Volume:      {}", v.name);
            println!("Size:        {} ({} bytes)", human(v.size), v.size);
            println!("Block size:  {} bytes", v.block_size);
            println!("Extent size: {}", human(u64::from(v.extent_size)));
            println!("Committed:   {}", fmt_time(v.committed_ms));
            if let Some(u) = &v.usage {
                print_usage(u);
            }
            let path = format!("/v1/volumes/{name}/export");
            let export: ExportJson =
                call(&target, Method::GET, &path, None, async |vols: &Volumes| {
                    Ok(ExportJson::shown(&vols.iscsi_export(&name).await?))
                })
                .await?;
            print_export(&export);
            println!("Snapshots:   {}", snaps.len());
            if !snaps.is_empty() {
                print_snapshots(&snaps);
            }
        }
        VolumeCommand::Export {
            name,
            iscsi: _,
            initiators,
            chap,
            mutual_chap,
            off,
            target,
        } => {
            let chap = chap
                .map(|c| chap_arg(&c, "--chap", "CAIRN_CHAP_SECRET"))
                .transpose()?;
            let mutual = mutual_chap
                .map(|c| chap_arg(&c, "--mutual-chap", "CAIRN_MUTUAL_CHAP_SECRET"))
                .transpose()?;
            let body = ExportJson {
                iscsi: !off,
                initiators,
                chap_user: chap.as_ref().map(|c| c.0.clone()),
                chap_secret: chap.map(|c| c.1),
                mutual_chap_user: mutual.as_ref().map(|c| c.0.clone()),
                mutual_chap_secret: mutual.map(|c| c.1),
            };
            let path = format!("/v1/volumes/{name}/export");
            let json = serde_json::to_value(&body)?;
            let shown: ExportJson = call(
                &target,
                Method::PUT,
                &path,
                Some(json),
                async |vols: &Volumes| {
                    let access = vols.set_iscsi_export(&name, body.access()?).await?;
                    Ok(ExportJson::shown(&access))
                },
            )
            .await?;
            println!("Volume {name}:");
            print_export(&shown);
        }
        VolumeCommand::Resize {
            name,
            size,
            force,
            target,
        } => {
            let path = format!("/v1/volumes/{name}/size");
            let body = serde_json::json!({ "size": size, "force": force });
            let v: VolumeJson = call(
                &target,
                Method::PUT,
                &path,
                Some(body),
                async |vols: &Volumes| vols.resize(&name, size, force).await.map(Into::into),
            )
            .await?;
            println!(
                "Volume {} is now {} ({} bytes)",
                v.name,
                human(v.size),
                v.size
            );
        }
        VolumeCommand::Delete {
            name,
            snapshots,
            target,
        } => {
            let path = format!("/v1/volumes/{name}?snapshots={snapshots}");
            let _: Value = call(
                &target,
                Method::DELETE,
                &path,
                None,
                async |vols: &Volumes| {
                    vols.delete(&name, snapshots).await?;
                    Ok(Value::Null)
                },
            )
            .await?;
            println!("Deleted volume {name}; the next GC pass frees its space");
        }
        VolumeCommand::Snapshot(SnapshotCommand::Create {
            volume,
            name,
            target,
        }) => {
            let path = format!("/v1/volumes/{volume}/snapshots");
            let body = serde_json::json!({ "name": name });
            let s: SnapshotJson = call(
                &target,
                Method::POST,
                &path,
                Some(body),
                async |vols: &Volumes| vols.snapshot(&volume, &name).await.map(Into::into),
            )
            .await?;
            println!("Created snapshot {}@{}", s.volume, s.name);
        }
        VolumeCommand::Snapshot(SnapshotCommand::List { volume, target }) => {
            let path = format!("/v1/volumes/{volume}/snapshots");
            let snaps: Vec<SnapshotJson> =
                call(&target, Method::GET, &path, None, async |vols: &Volumes| {
                    Ok(vols
                        .snapshots(&volume)
                        .await?
                        .into_iter()
                        .map(Into::into)
                        .collect())
                })
                .await?;
            print_snapshots(&snaps);
        }
        VolumeCommand::Snapshot(SnapshotCommand::Delete {
            volume,
            name,
            target,
        }) => {
            let path = format!("/v1/volumes/{volume}/snapshots/{name}");
            let _: Value = call(
                &target,
                Method::DELETE,
                &path,
                None,
                async |vols: &Volumes| {
                    vols.delete_snapshot(&volume, &name).await?;
                    Ok(Value::Null)
                },
            )
            .await?;
            println!("Deleted snapshot {volume}@{name}");
        }
        VolumeCommand::Clone {
            source,
            name,
            target,
        } => {
            let (volume, snap) = split_snapshot(&source)?;
            let path = format!("/v1/volumes/{volume}/snapshots/{snap}/clone");
            let body = serde_json::json!({ "name": name });
            let v: VolumeJson = call(
                &target,
                Method::POST,
                &path,
                Some(body),
                async |vols: &Volumes| {
                    vols.clone_snapshot(volume, snap, &name)
                        .await
                        .map(Into::into)
                },
            )
            .await?;
            println!("Created volume {} from {source} (nothing copied)", v.name);
        }
        VolumeCommand::Rollback { source, target } => {
            let (volume, snap) = split_snapshot(&source)?;
            let path = format!("/v1/volumes/{volume}/snapshots/{snap}/rollback");
            let v: VolumeJson = call(
                &target,
                Method::POST,
                &path,
                None,
                async |vols: &Volumes| vols.rollback(volume, snap).await.map(Into::into),
            )
            .await?;
            println!("Volume {} holds {source} again", v.name);
        }
        VolumeCommand::Backup {
            source,
            dest,
            s3,
            target,
        } => {
            let req = BackupRequest { source, dest, s3 };
            crate::volume_backup::backup(req, &target).await?
        }
        VolumeCommand::Restore {
            source,
            snapshot,
            name,
            s3,
            target,
        } => {
            let req = RestoreRequest {
                source,
                snapshot,
                name,
                s3,
            };
            crate::volume_backup::restore(req, &target).await?
        }
    }
    Ok(())
}

fn volume_error(e: VolumeError) -> (StatusCode, Value) {
    let status = match &e {
        VolumeError::NotFound(_) => StatusCode::NOT_FOUND,
        VolumeError::Exists(_) | VolumeError::InUse(_) => StatusCode::CONFLICT,
        VolumeError::Invalid(_) => StatusCode::BAD_REQUEST,
        VolumeError::Device(cairn_block::BlockError::NoSpace(_)) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        VolumeError::Client(c) if c.kind() == cairn_core::ErrorKind::NoSpace => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, serde_json::json!({ "error": e.to_string() }))
}

fn answer<T: Serialize>(status: StatusCode, r: Result<T, VolumeError>) -> (StatusCode, Value) {
    match r {
        Ok(v) => (status, serde_json::to_value(v).unwrap_or(Value::Null)),
        Err(e) => volume_error(e),
    }
}

/// The answer to a backup or restore request: its report, or the error with its causes.
fn transfer<T: Serialize>(r: anyhow::Result<T>) -> (StatusCode, Value) {
    match r {
        Ok(v) => (
            StatusCode::OK,
            serde_json::to_value(v).unwrap_or(Value::Null),
        ),
        Err(e) => {
            let status = match e.downcast_ref::<VolumeError>() {
                Some(VolumeError::NotFound(_)) => StatusCode::NOT_FOUND,
                Some(VolumeError::Exists(_) | VolumeError::InUse(_)) => StatusCode::CONFLICT,
                Some(VolumeError::Invalid(_)) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, serde_json::json!({ "error": format!("{e:#}") }))
        }
    }
}

/// Serves `/v1/volumes...` admin requests; `None` for other paths.
pub async fn handle_admin(
    vols: &Arc<Volumes>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<(StatusCode, Value)> {
    let rest = path.strip_prefix("/v1/volumes")?;
    let req = || -> Result<VolumeRequest, (StatusCode, Value)> {
        if body.is_empty() {
            return Ok(VolumeRequest::default());
        }
        serde_json::from_slice(body).map_err(|e| {
            let msg = format!("bad JSON: {e}");
            (StatusCode::BAD_REQUEST, serde_json::json!({ "error": msg }))
        })
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let ok = StatusCode::OK;
    let bad = |e: serde_json::Error| {
        let msg = format!("bad JSON: {e}");
        (StatusCode::BAD_REQUEST, serde_json::json!({ "error": msg }))
    };
    let as_job = query.is_some_and(|q| q.split('&').any(|kv| kv == "job=true"));
    Some(match (method.clone(), parts.as_slice()) {
        // Backups and restores run here, with the controllers that own the site's volumes:
        // as a job the command follows (`?job=true`), or for as long as the request lasts.
        (Method::POST, ["backup"]) if as_job => {
            match serde_json::from_slice::<BackupRequest>(body) {
                Ok(r) => {
                    let vols = vols.clone();
                    let id = crate::volume_jobs::start("backup", move |pb| async move {
                        crate::volume_backup::run_backup(&vols, &r, &pb).await
                    });
                    (StatusCode::ACCEPTED, serde_json::json!({ "id": id }))
                }
                Err(e) => bad(e),
            }
        }
        (Method::POST, ["restore"]) if as_job => {
            match serde_json::from_slice::<RestoreRequest>(body) {
                Ok(r) => {
                    let vols = vols.clone();
                    let id = crate::volume_jobs::start("restore", move |pb| async move {
                        crate::volume_backup::run_restore(&vols, &r, &pb).await
                    });
                    (StatusCode::ACCEPTED, serde_json::json!({ "id": id }))
                }
                Err(e) => bad(e),
            }
        }
        (Method::GET, ["jobs", id]) => crate::volume_jobs::view(id),
        (Method::POST, ["backup"]) => match serde_json::from_slice::<BackupRequest>(body) {
            Ok(r) => transfer(
                crate::volume_backup::run_backup(vols, &r, &indicatif::ProgressBar::hidden()).await,
            ),
            Err(e) => bad(e),
        },
        (Method::POST, ["restore"]) => match serde_json::from_slice::<RestoreRequest>(body) {
            Ok(r) => transfer(
                crate::volume_backup::run_restore(vols, &r, &indicatif::ProgressBar::hidden())
                    .await,
            ),
            Err(e) => bad(e),
        },
        (Method::GET, []) => answer(ok, list_with_usage(vols).await),
        (Method::POST, []) => match req() {
            Ok(r) => answer(
                StatusCode::CREATED,
                vols.create(
                    &r.name,
                    r.size,
                    r.block_size.unwrap_or(4096),
                    r.extent_size.unwrap_or(DEFAULT_EXTENT_SIZE),
                )
                .await
                .map(VolumeJson::from),
            ),
            Err(e) => e,
        },
        (Method::GET, [name]) => match vols.info(name).await {
            Ok(info) => answer(ok, with_usage(vols, info).await),
            Err(e) => volume_error(e),
        },
        (Method::GET, [name, "usage"]) => answer(ok, vols.usage(name).await.map(UsageJson::from)),
        (Method::GET, [name, "export"]) => answer(
            ok,
            vols.iscsi_export(name).await.map(|a| ExportJson::shown(&a)),
        ),
        (Method::PUT, [name, "export"]) => match serde_json::from_slice::<ExportJson>(body) {
            Ok(e) => {
                let r = match e.access() {
                    Ok(a) => vols.set_iscsi_export(name, a).await,
                    Err(e) => Err(e),
                };
                answer(ok, r.map(|a| ExportJson::shown(&a)))
            }
            Err(e) => bad(e),
        },
        (Method::DELETE, [name]) => {
            let with = query.is_some_and(|q| q.split('&').any(|kv| kv == "snapshots=true"));
            answer(ok, vols.delete(name, with).await.map(|()| Value::Null))
        }
        (Method::PUT, [name, "size"]) => match req() {
            Ok(r) => answer(
                ok,
                vols.resize(name, r.size, r.force)
                    .await
                    .map(VolumeJson::from),
            ),
            Err(e) => e,
        },
        (Method::GET, [name, "snapshots"]) => answer(
            ok,
            vols.snapshots(name)
                .await
                .map(|v| v.into_iter().map(SnapshotJson::from).collect::<Vec<_>>()),
        ),
        (Method::POST, [name, "snapshots"]) => match req() {
            Ok(r) => answer(
                StatusCode::CREATED,
                vols.snapshot(name, &r.name).await.map(SnapshotJson::from),
            ),
            Err(e) => e,
        },
        (Method::DELETE, [name, "snapshots", snap]) => answer(
            ok,
            vols.delete_snapshot(name, snap).await.map(|()| Value::Null),
        ),
        (Method::POST, [name, "snapshots", snap, "clone"]) => match req() {
            Ok(r) => answer(
                StatusCode::CREATED,
                vols.clone_snapshot(name, snap, &r.name)
                    .await
                    .map(VolumeJson::from),
            ),
            Err(e) => e,
        },
        (Method::POST, [name, "snapshots", snap, "rollback"]) => {
            answer(ok, vols.rollback(name, snap).await.map(VolumeJson::from))
        }
        _ => (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "no such volume endpoint" }),
        ),
    })
}
