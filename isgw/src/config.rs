//! Links as configured (`DATA_DIR/link/links.json`, written by `cairn link add|pause|resume|
//! remove` and read by the running site) and each link's progress
//! (`DATA_DIR/link/state/NAME.json`, written by the site after every batch). Both are
//! replaced atomically (write, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_client::VersionId;
use serde::{Deserialize, Serialize};

/// Which way a link carries data, seen from the site where it is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This site's changes go to the remote.
    Send,
    /// The remote's changes come here.
    Receive,
    /// Both.
    Both,
}

impl Direction {
    /// Whether this site sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::Send | Direction::Both)
    }

    /// Whether this site receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::Receive | Direction::Both)
    }
}

/// What a link ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// What the buckets hold when the link starts, then nothing.
    Initial,
    /// Changes made after the link starts.
    Continuous,
    /// Both: an initial copy, then every change.
    Both,
}

impl Mode {
    /// Whether the link first copies what exists.
    pub fn initial(self) -> bool {
        matches!(self, Mode::Initial | Mode::Both)
    }

    /// Whether the link follows changes.
    pub fn continuous(self) -> bool {
        matches!(self, Mode::Continuous | Mode::Both)
    }
}

/// How much of each version a link ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DataMode {
    /// Manifests and all their data.
    Full,
    /// Manifests only: data is fetched from the remote on first read.
    MetadataOnly,
}

/// One configured link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkConfig {
    /// The link's name at this site (a DNS label).
    pub name: String,
    /// The remote site's link listener, HOST:PORT; or, for a send-only mirror to a plain S3
    /// store, its endpoint URL (`http://` or `https://`; credentials in
    /// `DATA_DIR/link/s3/NAME.json`).
    pub remote: String,
    /// Buckets carried; `None`: every bucket.
    pub buckets: Option<Vec<String>>,
    /// Which way (both when not given, as `cairn link add`).
    #[serde(default = "both_ways")]
    pub direction: Direction,
    /// Initial copy, continuous, or both (both when not given).
    #[serde(default = "initial_and_continuous")]
    pub mode: Mode,
    /// Full data or metadata only (full when not given).
    #[serde(default = "full_data")]
    pub data: DataMode,
    /// Most bytes per second shipped in each direction (0: no limit).
    #[serde(default)]
    pub rate_bytes_per_sec: u64,
    /// Paused links keep their place and move nothing.
    #[serde(default)]
    pub paused: bool,
}

fn both_ways() -> Direction {
    Direction::Both
}

fn initial_and_continuous() -> Mode {
    Mode::Both
}

fn full_data() -> DataMode {
    DataMode::Full
}

impl LinkConfig {
    /// Whether the link carries `bucket`.
    pub fn carries(&self, bucket: &str) -> bool {
        self.buckets
            .as_ref()
            .is_none_or(|b| b.iter().any(|b| b == bucket))
    }

    /// Whether the remote is a plain S3 endpoint (a mirror link).
    pub fn is_s3(&self) -> bool {
        self.remote.starts_with("http://") || self.remote.starts_with("https://")
    }

    /// Checks the fields a user typed.
    pub fn validate(&self) -> Result<(), String> {
        cairn_net::identity::validate_name("link", &self.name).map_err(|e| e.to_string())?;
        if self.is_s3() {
            if self.direction != Direction::Send {
                return Err(
                    "a link to a plain S3 endpoint only sends: pass --direction send".to_string(),
                );
            }
        } else if !self.remote.contains(':') {
            return Err(format!(
                "--remote {} has no port: give HOST:PORT of the remote site's link listener \
                 (its `cairn serve --link-listen`)",
                self.remote
            ));
        }
        if self.data == DataMode::MetadataOnly {
            if self.is_s3() {
                return Err("a link to a plain S3 endpoint ships data: use --data full".to_string());
            }
            if !self.direction.receives() {
                return Err(
                    "--data metadata-only is about what this site receives (it fetches data \
                     from the remote when read): use --direction receive or both (what this \
                     site sends always travels with its data)"
                        .to_string(),
                );
            }
        }
        if let Some(b) = &self.buckets {
            if b.is_empty() {
                return Err("give at least one bucket, or --all".to_string());
            }
        }
        Ok(())
    }
}

/// The links file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinksFile {
    /// Every link, by name.
    pub links: Vec<LinkConfig>,
}

/// Where a site keeps its link files.
#[derive(Clone, Debug)]
pub struct LinkDir {
    dir: PathBuf,
}

impl LinkDir {
    /// The link files of the site whose data dir is `data_dir`.
    pub fn new(data_dir: &Path) -> LinkDir {
        LinkDir {
            dir: data_dir.join("link"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn links_path(&self) -> PathBuf {
        self.dir.join("links.json")
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(format!("{name}.json"))
    }

    /// The configured links (none if the file does not exist).
    pub fn load(&self) -> std::io::Result<LinksFile> {
        match std::fs::read(self.links_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.links_path().display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LinksFile::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the links file.
    pub fn save(&self, links: &LinksFile) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(links).map_err(std::io::Error::other)?;
        write_atomic(&self.links_path(), &bytes)
    }

    /// A link's progress (fresh if none is kept).
    pub fn load_state(&self, name: &str) -> std::io::Result<LinkState> {
        match std::fs::read(self.state_path(name)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.state_path(name).display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LinkState::default()),
            Err(e) => Err(e),
        }
    }

    /// Keeps a link's progress, durably.
    pub fn save_state(&self, name: &str, state: &LinkState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        write_atomic(&self.state_path(name), &bytes)
    }

    fn s3_path(&self, name: &str) -> PathBuf {
        self.dir.join("s3").join(format!("{name}.json"))
    }

    /// Keeps the endpoint and credentials of mirror link `name` (readable by the owner only).
    pub fn save_s3_target(
        &self,
        name: &str,
        target: &crate::mirror::S3Target,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(target).map_err(std::io::Error::other)?;
        write_atomic_mode(&self.s3_path(name), &bytes, 0o600)
    }

    /// The endpoint and credentials of mirror link `name`.
    pub fn load_s3_target(&self, name: &str) -> std::io::Result<crate::mirror::S3Target> {
        let path = self.s3_path(name);
        let b = std::fs::read(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&b).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Forgets a link's progress (and a mirror link's credentials).
    pub fn remove_state(&self, name: &str) -> std::io::Result<()> {
        for path in [self.state_path(name), self.s3_path(name)] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, then syncs the
/// directory, so a crash leaves the old or the new file, whole.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// [`write_atomic`] with the file's permission bits.
pub(crate) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Where one direction of a link is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The remote site this progress is for (a link re-pointed at another site starts over).
    pub remote_site: Option<u16>,
    /// Set once the direction has taken its starting point.
    pub started: bool,
    /// The initial copy still to do: buckets left, the first being copied.
    pub initial: Vec<String>,
    /// Within the first bucket of `initial`: the last key and version copied.
    pub initial_after: Option<(String, Option<VersionId>)>,
    /// Per source change log: the last entry shipped.
    pub cursors: BTreeMap<u64, u64>,
}

/// A link's progress in both directions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkState {
    /// This site's changes going to the remote.
    pub send: Progress,
    /// The remote's changes coming here.
    pub receive: Progress,
    /// Buckets the link carries that both sites held at the last exchange of bucket records:
    /// one of them missing since was deleted at that site, and the deletion travels.
    #[serde(default)]
    pub shared_buckets: std::collections::BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(direction: Direction, data: DataMode, remote: &str) -> LinkConfig {
        LinkConfig {
            name: "edge".into(),
            remote: remote.into(),
            buckets: None,
            direction,
            mode: Mode::Both,
            data,
            rate_bytes_per_sec: 0,
            paused: false,
        }
    }

    #[test]
    fn metadata_only_is_about_what_a_site_receives() {
        let ok = [Direction::Receive, Direction::Both];
        for d in ok {
            link(d, DataMode::MetadataOnly, "core:3905")
                .validate()
                .expect("a receiving metadata-only link");
        }
        let e = link(Direction::Send, DataMode::MetadataOnly, "core:3905")
            .validate()
            .expect_err("a sending metadata-only link");
        assert!(e.contains("--direction receive or both"), "{e}");
        let e = link(
            Direction::Send,
            DataMode::MetadataOnly,
            "https://s3.example",
        )
        .validate()
        .expect_err("a metadata-only mirror");
        assert!(e.contains("--data full"), "{e}");
    }
}
