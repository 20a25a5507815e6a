//! Exports: which buckets are served, read-only or read-write, to which client addresses, and
//! whether root is squashed. Kept in `DATA_DIR/nfs/exports.json` (written by `cairn nfs
//! export|unexport`), which a running server reads again within a second of a change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::handle::export_id;

/// The uid and gid a squashed caller gets (`nobody`).
pub const NOBODY: u32 = 65534;

/// One export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportConfig {
    /// The bucket; clients mount it as `/BUCKET`.
    pub bucket: String,
    /// Refuse every change (NFS3ERR_ROFS).
    #[serde(default)]
    pub read_only: bool,
    /// Client addresses allowed (`10.0.0.7`, `10.0.0.0/8`, `::1`); empty: any that reaches
    /// the listener.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Callers with uid 0 act as `nobody` (65534).
    #[serde(default)]
    pub root_squash: bool,
}

impl ExportConfig {
    /// Checks the bucket name and the address list; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(format!("{:?} is not a bucket name", self.bucket));
        }
        for c in &self.clients {
            parse_net(c)?;
        }
        Ok(())
    }

    /// The path clients mount.
    pub fn path(&self) -> String {
        format!("/{}", self.bucket)
    }

    /// Whether `addr` may use this export.
    pub fn allows(&self, addr: IpAddr) -> bool {
        if self.clients.is_empty() {
            return true;
        }
        let addr = canonical(addr);
        self.clients.iter().any(|c| match parse_net(c) {
            Ok((net, bits)) => in_net(addr, net, bits),
            Err(_) => false,
        })
    }
}

/// An export as served: its config and its id (file system id and handle prefix).
#[derive(Clone, Debug)]
pub struct Export {
    /// What the operator configured.
    pub config: ExportConfig,
    /// [`export_id`] of the bucket.
    pub id: u32,
}

impl Export {
    /// The export of `config`.
    pub fn new(config: ExportConfig) -> Export {
        let id = export_id(&config.bucket);
        Export { config, id }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

/// `ADDR` or `ADDR/BITS`.
fn parse_net(s: &str) -> Result<(IpAddr, u8), String> {
    let bad = || format!("{s:?} is not an address or ADDRESS/BITS network");
    let (a, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
        None => (s, None),
    };
    let addr = canonical(a.trim().parse::<IpAddr>().map_err(|_| bad())?);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return Err(bad());
    }
    Ok((addr, bits))
}

fn in_net(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The exports file of a data dir.
pub struct ExportsFile {
    path: PathBuf,
}

impl ExportsFile {
    /// `DATA_DIR/nfs/exports.json`.
    pub fn in_data_dir(dir: &Path) -> ExportsFile {
        ExportsFile {
            path: dir.join("nfs").join("exports.json"),
        }
    }

    /// The exports file at `path`.
    pub fn at(path: PathBuf) -> ExportsFile {
        ExportsFile { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The exports (none when the file does not exist).
    pub fn load(&self) -> Result<Vec<ExportConfig>, String> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{} is not a valid exports file: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Replaces the exports (written to a temporary file, synced, then renamed).
    pub fn save(&self, exports: &[ExportConfig]) -> Result<(), String> {
        use std::io::Write;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(exports).map_err(|e| e.to_string())?;
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(clients: &[&str]) -> ExportConfig {
        ExportConfig {
            bucket: "b".into(),
            read_only: false,
            clients: clients.iter().map(|s| s.to_string()).collect(),
            root_squash: false,
        }
    }

    #[test]
    fn allow_lists_match_addresses_and_networks() {
        let any = export(&[]);
        assert!(any.allows("192.0.2.1".parse().unwrap()));
        let e = export(&["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]);
        assert!(e.validate().is_ok());
        assert!(e.allows("127.0.0.1".parse().unwrap()));
        assert!(e.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(e.allows("10.200.1.2".parse().unwrap()));
        assert!(!e.allows("11.0.0.1".parse().unwrap()));
        assert!(e.allows("2001:db8:1::5".parse().unwrap()));
        assert!(!e.allows("2001:db9::5".parse().unwrap()));
        assert!(export(&["10.0.0.0/33"]).validate().is_err());
        assert!(export(&["host.example"]).validate().is_err());
        let mut bad = export(&[]);
        bad.bucket = "a/b".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn the_exports_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let f = ExportsFile::in_data_dir(dir.path());
        assert_eq!(f.load().unwrap(), vec![]);
        let all = vec![export(&["127.0.0.1"])];
        f.save(&all).unwrap();
        assert_eq!(f.load().unwrap(), all);
    }
}
