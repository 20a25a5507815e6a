//! `cairn nfs`: which buckets the site exports over NFS. Exports live in the data dir
//! (`DATA_DIR/nfs/exports.json`); a running site picks up changes within a second.

use std::path::PathBuf;

use anyhow::Context;
use cairn_nfs::{ExportConfig, ExportsFile};
use clap::{Args, Subcommand};

/// The data dir an NFS command works on.
#[derive(Args, Clone, Debug)]
pub struct DirArg {
    /// Data dir of the site.
    #[arg(long, default_value = "cairn-data", env = "CAIRN_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `cairn nfs ...`
#[derive(Subcommand)]
pub enum NfsCommand {
    /// Export a bucket over NFS: clients mount `HOST:/BUCKET` (NFSv3), for example
    /// `nfs://HOST/BUCKET` with libnfs. Exporting a bucket already exported replaces its
    /// settings.
    Export {
        /// The bucket (it must exist when a client mounts it).
        bucket: String,
        /// Refuse every change (clients get a read-only file system error).
        #[arg(long)]
        read_only: bool,
        /// Client addresses or networks allowed, comma-separated (`10.0.0.7`, `10.0.0.0/8`,
        /// `::1`); default: any client that reaches the NFS listener.
        #[arg(long, value_delimiter = ',')]
        clients: Vec<String>,
        /// Treat callers with uid 0 as `nobody` (65534), as NFS servers usually do.
        #[arg(long)]
        root_squash: bool,
        #[command(flatten)]
        dir: DirArg,
    },
    /// Stop exporting a bucket (the bucket and its objects stay).
    Unexport {
        /// The bucket.
        bucket: String,
        #[command(flatten)]
        dir: DirArg,
    },
    /// List the exports.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArg,
    },
}

/// Runs `cairn nfs ...`.
pub async fn run(cmd: NfsCommand) -> anyhow::Result<()> {
    match cmd {
        NfsCommand::Export {
            bucket,
            read_only,
            clients,
            root_squash,
            dir,
        } => {
            let e = ExportConfig {
                bucket,
                read_only,
                clients,
                root_squash,
            };
            e.validate().map_err(anyhow::Error::msg)?;
            let file = file_of(&dir)?;
            let mut all = file.load().map_err(anyhow::Error::msg)?;
            all.retain(|x| x.bucket != e.bucket);
            let path = e.path();
            all.push(e);
            all.sort_by(|a, b| a.bucket.cmp(&b.bucket));
            file.save(&all).map_err(anyhow::Error::msg)?;
            println!(
                "exported {path}: mount it from the site's NFS listener (cairn serve --nfs-listen), \
                 e.g. nfs://127.0.0.1{path}"
            );
            Ok(())
        }
        NfsCommand::Unexport { bucket, dir } => {
            let file = file_of(&dir)?;
            let mut all = file.load().map_err(anyhow::Error::msg)?;
            let before = all.len();
            all.retain(|x| x.bucket != bucket);
            if all.len() == before {
                anyhow::bail!("{bucket} is not exported (see `cairn nfs list`)");
            }
            file.save(&all).map_err(anyhow::Error::msg)?;
            println!("no longer exported: /{bucket}");
            Ok(())
        }
        NfsCommand::List { json, dir } => {
            let all = file_of(&dir)?.load().map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            if all.is_empty() {
                println!("no exports: add one with `cairn nfs export BUCKET`");
                return Ok(());
            }
            println!("{:<24} {:<6} {:<11} CLIENTS", "PATH", "ACCESS", "ROOT");
            for e in all {
                let clients = if e.clients.is_empty() {
                    "any".to_string()
                } else {
                    e.clients.join(",")
                };
                println!(
                    "{:<24} {:<6} {:<11} {clients}",
                    e.path(),
                    if e.read_only { "ro" } else { "rw" },
                    if e.root_squash { "squashed" } else { "root" },
                );
            }
            Ok(())
        }
    }
}

fn file_of(dir: &DirArg) -> anyhow::Result<ExportsFile> {
    std::fs::create_dir_all(&dir.data_dir)
        .with_context(|| format!("cannot create data dir {}", dir.data_dir.display()))?;
    Ok(ExportsFile::in_data_dir(&dir.data_dir))
}
