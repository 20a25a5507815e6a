//! Site CA and node identities: the certificates that let nodes of one site (and only those)
//! talk to each other.
//!
//! A site has one CA (ECDSA P-256, self-signed, path length 0). Each node has a certificate
//! signed by it that carries the node's name twice: as a DNS name (what a client checks the
//! server against) and as the URI `cairn://SITE/NODE` (how a server learns who is calling).
//! Extra DNS names and IP addresses can be added for operators' tools.
//!
//! On disk: `ca.pem` and `ca.key` for the CA; `node.pem` (the node certificate), `node.key` and a
//! copy of `ca.pem` in each node's directory, so a node directory is all a node needs. Keys are
//! written with mode 0600, files are replaced atomically (written aside, then renamed).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::NetError;

/// File name of the CA certificate (in the site dir and in each node dir).
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key (only in the site dir; keep it offline).
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of a node's certificate.
pub const NODE_CERT_FILE: &str = "node.pem";
/// File name of a node's private key.
pub const NODE_KEY_FILE: &str = "node.key";

/// How long a site CA is valid.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
/// How long a node certificate is valid.
const NODE_VALIDITY: time::Duration = time::Duration::days(1825);
/// Certificates start to be valid this long before they are made, so a peer whose clock is a
/// little behind accepts them.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);
/// At most this many extra names in a node certificate.
const MAX_EXTRA_NAMES: usize = 64;
/// Identity files larger than this are not certificates or keys of ours.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Checks that `name` can be a site or node name: a DNS label of a-z, 0-9 and '-'.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NetError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidName {
            what,
            name: name.to_string(),
        })
    }
}

/// A site's certificate authority: it signs the certificates of the site's nodes.
pub struct SiteCa {
    site: String,
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteCa")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

fn cert_err(e: impl fmt::Display) -> NetError {
    NetError::Cert(e.to_string())
}

/// The parts of a CA certificate that signing depends on; rebuilt identically when a CA is
/// loaded, so its issuer name and key identifier match the certificate on disk.
fn ca_params(site: &str) -> Result<CertificateParams, NetError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("cairn site {site} CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cairn");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(
        format!("cairn://{site}").try_into().map_err(cert_err)?,
    )];
    Ok(params)
}

impl SiteCa {
    /// Makes a new CA for the site `site` (a DNS label).
    pub fn generate(site: &str) -> Result<SiteCa, NetError> {
        validate_name("site", site)?;
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = ca_params(site)?;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(SiteCa {
            site: site.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The site a CA certificate (PEM, as [`SiteCa::cert_pem`] gives it) is for, from its
    /// `cairn://SITE` name; an error if it is not a Cairn site CA certificate.
    pub fn site_of_cert(pem: &str) -> Result<String, NetError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(cert_err)?;
        let cert = webpki::EndEntityCert::try_from(&der).map_err(cert_err)?;
        let site = cert.valid_uri_names().find_map(|u| {
            let site = u.strip_prefix("cairn://")?;
            validate_name("site", site)
                .is_ok()
                .then(|| site.to_string())
        });
        site.ok_or_else(|| NetError::Cert("the certificate names no cairn://SITE".into()))
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for node `node` (a DNS label), valid as both server and client.
    /// `extra_names` are added as subject alternative names: IP addresses where they parse as
    /// one, DNS names otherwise.
    pub fn issue_node(&self, node: &str, extra_names: &[String]) -> Result<NodeIdentity, NetError> {
        validate_name("node", node)?;
        if extra_names.len() > MAX_EXTRA_NAMES {
            return Err(NetError::Cert(format!(
                "{} extra names: at most {MAX_EXTRA_NAMES}",
                extra_names.len()
            )));
        }
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node);
        params.distinguished_name.push(
            DnType::OrganizationName,
            format!("cairn site {}", self.site),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let mut sans = vec![
            SanType::DnsName(node.try_into().map_err(cert_err)?),
            SanType::URI(node_uri(&self.site, node).try_into().map_err(cert_err)?),
        ];
        for name in extra_names {
            sans.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.as_str().try_into().map_err(|_| {
                    NetError::Cert(format!("`{name}` is neither an IP address nor a DNS name"))
                })?),
            });
        }
        params.subject_alt_names = sans;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + NODE_VALIDITY;
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        let identity = NodeIdentity {
            site: self.site.clone(),
            node: node.to_string(),
            ca_pem: self.cert_pem.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            trusted: Vec::new(),
        };
        // Prove the new certificate chains to the CA as peers will check it, so a CA loaded
        // from files it was not made from fails here rather than at every handshake.
        crate::tls::check_chains(&identity)?;
        Ok(identity)
    }

    /// Writes `DIR/ca.pem` and `DIR/ca.key` (0600). Refuses to replace either unless `force`.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), NetError> {
        let cert = dir.join(CA_CERT_FILE);
        let key = dir.join(CA_KEY_FILE);
        if !force {
            refuse_existing(&[&cert, &key])?;
        }
        create_dir(dir)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)
    }

    /// Loads the CA written by [`SiteCa::save`] from `dir`.
    pub fn load(dir: &Path) -> Result<SiteCa, NetError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let cert_pem = read_pem(&cert_path)?;
        let key_pem = read_pem(&dir.join(CA_KEY_FILE))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| NetError::Cert(format!("{}: {e}", cert_path.display())))?;
        let parsed = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| NetError::Cert(format!("{}: {e:?}", cert_path.display())))?;
        let site = parsed
            .valid_uri_names()
            .find_map(|u| u.strip_prefix("cairn://").map(str::to_string))
            .filter(|s| validate_name("site", s).is_ok())
            .ok_or_else(|| {
                NetError::Cert(format!(
                    "{}: not a cairn site CA (no cairn://SITE name)",
                    cert_path.display()
                ))
            })?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err)?;
        if key.subject_public_key_info() != parsed.subject_public_key_info().as_ref() {
            return Err(NetError::Cert(format!(
                "{} does not belong to {}",
                CA_KEY_FILE,
                cert_path.display()
            )));
        }
        Ok(SiteCa {
            issuer: Issuer::new(ca_params(&site)?, key),
            site,
            cert_pem,
            key_pem,
        })
    }
}

/// The URI name that identifies node `node` of site `site` in its certificate.
fn node_uri(site: &str, node: &str) -> String {
    format!("cairn://{site}/{node}")
}

/// A node's identity: its certificate, its key and the site CA it trusts.
#[derive(Clone)]
pub struct NodeIdentity {
    site: String,
    node: String,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    /// CA certificates of other sites this identity also accepts (site links), PEM.
    trusted: Vec<String>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("site", &self.site)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate of the CA this node trusts, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// This identity, also accepting peers whose certificates other sites' CAs signed
    /// (`cas`, PEM): what the two ends of a site link use. A server built on it accepts
    /// callers of those sites as well as of its own ([`PeerInfo::site`](crate::PeerInfo)
    /// says which), and a client accepts servers of those sites.
    pub fn trusting(mut self, cas: Vec<String>) -> NodeIdentity {
        self.trusted = cas;
        self
    }

    /// The other sites' CA certificates this identity accepts (see
    /// [`NodeIdentity::trusting`]).
    pub fn trusted(&self) -> &[String] {
        &self.trusted
    }

    /// The files [`NodeIdentity::save`] writes in `dir`.
    pub fn files(dir: &Path) -> [PathBuf; 3] {
        [
            dir.join(NODE_CERT_FILE),
            dir.join(NODE_KEY_FILE),
            dir.join(CA_CERT_FILE),
        ]
    }

    /// Writes `DIR/node.pem`, `DIR/node.key` (0600) and `DIR/ca.pem`. Refuses to replace any of
    /// them unless `force`.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), NetError> {
        let [cert, key, ca] = Self::files(dir);
        if !force {
            refuse_existing(&[&cert, &key, &ca])?;
        }
        create_dir(dir)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&ca, self.ca_pem.as_bytes(), 0o644)
    }

    /// Loads an identity written by [`NodeIdentity::save`] and checks that it chains to its CA.
    pub fn load(dir: &Path) -> Result<NodeIdentity, NetError> {
        let [cert, key, ca] = Self::files(dir);
        let cert_pem = read_pem(&cert)?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| NetError::Cert(format!("{}: {e}", cert.display())))?;
        let (site, node) = peer_names(&der).ok_or_else(|| {
            NetError::Cert(format!(
                "{}: not a cairn node certificate (no cairn://SITE/NODE name)",
                cert.display()
            ))
        })?;
        let identity = NodeIdentity {
            site,
            node,
            ca_pem: read_pem(&ca)?,
            cert_pem,
            key_pem: read_pem(&key)?,
            trusted: Vec::new(),
        };
        crate::tls::check_chains(&identity)?;
        Ok(identity)
    }

    /// The certificate chain (node certificate only: peers hold the CA), DER.
    pub(crate) fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, NetError> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NetError::Cert(format!("node certificate: {e}")))
            .and_then(|v| {
                if v.is_empty() {
                    Err(NetError::Cert("node certificate: no certificate".into()))
                } else {
                    Ok(v)
                }
            })
    }

    /// The node's private key, DER.
    pub(crate) fn key(&self) -> Result<PrivateKeyDer<'static>, NetError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| NetError::Cert(format!("node key: {e}")))
    }

    /// The CA certificate, DER.
    pub(crate) fn ca(&self) -> Result<CertificateDer<'static>, NetError> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| NetError::Cert(format!("ca certificate: {e}")))
    }

    /// Every CA certificate this identity accepts: its own site's, then the trusted ones.
    pub(crate) fn roots(&self) -> Result<Vec<CertificateDer<'static>>, NetError> {
        let mut out = vec![self.ca()?];
        for pem in &self.trusted {
            out.push(
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .map_err(|e| NetError::Cert(format!("trusted site CA certificate: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// The site and node named by a node certificate's `cairn://SITE/NODE` URI, if it has one.
/// Only meaningful for a certificate whose chain has been verified.
pub(crate) fn peer_names(der: &CertificateDer<'_>) -> Option<(String, String)> {
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    let found = cert.valid_uri_names().find_map(|u| {
        let (site, node) = u.strip_prefix("cairn://")?.split_once('/')?;
        (validate_name("site", site).is_ok() && validate_name("node", node).is_ok())
            .then(|| (site.to_string(), node.to_string()))
    });
    found
}

fn refuse_existing(paths: &[&Path]) -> Result<(), NetError> {
    for p in paths {
        if p.exists() {
            return Err(NetError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), NetError> {
    std::fs::create_dir_all(dir).map_err(|e| NetError::file(dir, e))
}

fn read_pem(path: &Path) -> Result<String, NetError> {
    let len = std::fs::metadata(path)
        .map_err(|e| NetError::file(path, e))?
        .len();
    if len > MAX_PEM_FILE {
        return Err(NetError::Cert(format!(
            "{}: {len} bytes is too large for a certificate or key",
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| NetError::file(path, e))
}

/// Writes `contents` to a temporary file beside `path` with `mode`, syncs it and renames it
/// over `path`, so a reader never sees half a key and a key is never readable by others.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), NetError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&tmp).map_err(|e| NetError::file(&tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| NetError::file(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| NetError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["a", "node-1", "eu-west", &"x".repeat(63)] {
            assert!(validate_name("node", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "Node", "a.b", "a/b", "a b", &"x".repeat(64)] {
            assert!(validate_name("node", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn saved_ca_and_identity_load_back_and_keep_issuing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = SiteCa::generate("paris").unwrap();
        ca.save(dir.path(), false).unwrap();
        assert!(matches!(
            ca.save(dir.path(), false),
            Err(NetError::Exists { .. })
        ));
        let loaded = SiteCa::load(dir.path()).unwrap();
        assert_eq!(loaded.site(), "paris");
        // Issuing with the reloaded CA runs the chain check against the saved certificate.
        let id = loaded
            .issue_node("n1", &["10.0.0.1".into(), "n1.example".into()])
            .unwrap();
        let node_dir = dir.path().join("n1");
        id.save(&node_dir, false).unwrap();
        let back = NodeIdentity::load(&node_dir).unwrap();
        assert_eq!((back.site(), back.node()), ("paris", "n1"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path().join(CA_KEY_FILE)), 0o600);
            assert_eq!(mode(node_dir.join(NODE_KEY_FILE)), 0o600);
        }
    }

    #[test]
    fn a_key_from_another_ca_is_refused_on_load() {
        let dir = tempfile::tempdir().unwrap();
        SiteCa::generate("a")
            .unwrap()
            .save(dir.path(), false)
            .unwrap();
        let other = SiteCa::generate("a").unwrap();
        std::fs::write(dir.path().join(CA_KEY_FILE), &other.key_pem).unwrap();
        assert!(matches!(SiteCa::load(dir.path()), Err(NetError::Cert(_))));
    }
}
