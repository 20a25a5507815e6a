//! Who a site is to the sites it links with, and whom it trusts.
//!
//! A single-node site makes its own CA on first start (`DATA_DIR/ca.pem`, `DATA_DIR/ca.key`
//! 0600, for site `site-XXXX`, its site id in hex) and from it the certificate its link
//! listener and dialer present (`DATA_DIR/link/node.pem`, `node.key`). Another site's CA is
//! trusted by copying it into `DATA_DIR/link/trusted/` (`cairn link trust CA.pem`): a link's
//! two ends each trust the other's CA, and a certificate from any other CA is refused at the
//! handshake, before any call.

use std::path::{Path, PathBuf};

use cairn_net::{NodeIdentity, SiteCa};

/// The DNS name every link certificate carries, which a dialer checks (a link is dialed by
/// address, and authenticated by the CAs each side trusts).
pub const LINK_SERVER_NAME: &str = "cairn-link";

/// Largest CA certificate file `cairn link trust` reads.
const MAX_CA_FILE: u64 = 64 << 10;

/// A site name for a new single-node site with id `site`: the id and a random part, so two
/// sites never share a name even when they share an id (a copied data dir), and each trusts
/// the other's CA under its own name.
pub fn single_node_site_name(site: u16) -> String {
    format!("site-{site:04x}-{:08x}", rand::random::<u32>())
}

/// Loads this single-node site's link identity from `data_dir`, making the site CA and the
/// link certificate on first use. It trusts the CAs in the trust directory.
pub fn single_node_identity(data_dir: &Path, site: u16) -> Result<NodeIdentity, String> {
    let link_dir = data_dir.join("link");
    let ca = if data_dir.join("ca.pem").exists() {
        SiteCa::load(data_dir).map_err(|e| format!("site CA in {}: {e}", data_dir.display()))?
    } else {
        let ca = SiteCa::generate(&single_node_site_name(site)).map_err(|e| e.to_string())?;
        ca.save(data_dir, false)
            .map_err(|e| format!("cannot save the site CA in {}: {e}", data_dir.display()))?;
        ca
    };
    let identity = if link_dir.join("node.pem").exists() {
        NodeIdentity::load(&link_dir)
            .map_err(|e| format!("link certificate in {}: {e}", link_dir.display()))?
    } else {
        let id = ca
            .issue_node("link", &[LINK_SERVER_NAME.to_string()])
            .map_err(|e| e.to_string())?;
        id.save(&link_dir, false)
            .map_err(|e| format!("cannot save the link certificate: {e}"))?;
        id
    };
    Ok(identity.trusting(trusted_cas(data_dir)?.into_iter().map(|t| t.pem).collect()))
}

/// The link identity of a node of a multi-node site: its node certificate (in `certs_dir`),
/// trusting the CAs in its data dir's trust directory.
pub fn node_identity(certs_dir: &Path, data_dir: &Path) -> Result<NodeIdentity, String> {
    let identity = NodeIdentity::load(certs_dir)
        .map_err(|e| format!("node certificate in {}: {e}", certs_dir.display()))?;
    Ok(identity.trusting(trusted_cas(data_dir)?.into_iter().map(|t| t.pem).collect()))
}

/// A CA this site trusts for links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedCa {
    /// The site it names.
    pub site: String,
    /// The certificate, PEM.
    pub pem: String,
}

fn trust_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("link").join("trusted")
}

/// The CAs in the trust directory, by site name.
pub fn trusted_cas(data_dir: &Path) -> Result<Vec<TrustedCa>, String> {
    let dir = trust_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let Some(site) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pem"))
        else {
            continue;
        };
        let pem = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push(TrustedCa {
            site: site.to_string(),
            pem,
        });
    }
    out.sort_by(|a, b| a.site.cmp(&b.site));
    Ok(out)
}

/// Adds the CA certificate in `file` to the trust directory; returns the site it names.
/// Refuses a file that is not a Cairn site CA, and this site's own CA.
pub fn trust_ca(data_dir: &Path, file: &Path) -> Result<String, String> {
    let len = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if len > MAX_CA_FILE {
        return Err(format!(
            "{}: {len} bytes is too large for a CA certificate",
            file.display()
        ));
    }
    let pem = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let site = SiteCa::site_of_cert(&pem).map_err(|e| {
        format!(
            "{}: not a Cairn site CA certificate ({e}); give the other site's ca.pem (its data \
             dir's ca.pem, or `cairn link ca` there)",
            file.display()
        )
    })?;
    if let Ok(own) = std::fs::read_to_string(data_dir.join("ca.pem")) {
        if own.trim() == pem.trim() {
            return Err("that is this site's own CA: give the other site's".to_string());
        }
        if SiteCa::site_of_cert(&own).is_ok_and(|own| own == site) {
            return Err(format!(
                "that CA is for a site named {site}, as this site is: two linked sites need \
                 different names"
            ));
        }
    }
    if let Some(t) = trusted_cas(data_dir)?.into_iter().find(|t| t.site == site) {
        if t.pem.trim() != pem.trim() {
            return Err(format!(
                "another CA for a site named {site} is trusted already: `cairn link untrust \
                 {site}` first if it was replaced"
            ));
        }
    }
    let path = trust_dir(data_dir).join(format!("{site}.pem"));
    crate::config::write_atomic(&path, pem.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(site)
}

/// Removes the trusted CA of site `site`; returns whether it was trusted.
pub fn untrust_ca(data_dir: &Path, site: &str) -> Result<bool, String> {
    let path = trust_dir(data_dir).join(format!("{site}.pem"));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
