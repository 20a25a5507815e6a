//! `cairn init` writes a site CA and node identities with private keys, refuses to overwrite
//! them, and can add nodes under the existing CA.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_net::{NodeIdentity, SiteCa};

/// Runs `cairn ARGS` (bounded in time) and returns (success, stdout, stderr).
fn cairn(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn init_writes_a_ca_and_node_identities_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let d = dir.to_str().unwrap();
    let (ok, out, err) = cairn(&[
        "init",
        "--dir",
        d,
        "--site",
        "paris",
        "--nodes",
        "n1,n2",
        "--address",
        "n1=10.0.0.1",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("ca.key") && out.contains("next:"), "{out}");

    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    let ca = SiteCa::load(&dir).unwrap();
    assert_eq!(ca.site(), "paris");
    for node in ["n1", "n2"] {
        let nd = dir.join(node);
        assert_eq!(mode(&nd.join("node.key")), 0o600, "{node}");
        assert_eq!(mode(&nd.join("node.pem")), 0o644, "{node}");
        // Loading checks that the certificate chains to the CA copy and names the node.
        let id = NodeIdentity::load(&nd).unwrap();
        assert_eq!((id.site(), id.node()), ("paris", node));
        assert_eq!(read(&nd.join("ca.pem")), read(&dir.join("ca.pem")));
        assert!(!read(&nd.join("node.pem")).contains("PRIVATE KEY"));
    }
    assert!(
        !dir.join("n1").join("ca.key").exists(),
        "nodes must not get the CA key"
    );
}

#[test]
fn init_refuses_to_overwrite_a_ca_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let (ok, _, err) = cairn(&["init", "--dir", d, "--site", "paris", "--nodes", "n1"]);
    assert!(ok, "{err}");
    let ca_before = read(&dir.join("ca.pem"));
    let key_before = read(&dir.join("ca.key"));
    let node_before = read(&dir.join("n1/node.pem"));

    let (ok, _, err) = cairn(&["init", "--dir", d, "--site", "paris", "--nodes", "n1"]);
    assert!(!ok);
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(read(&dir.join("ca.pem")), ca_before);
    assert_eq!(read(&dir.join("ca.key")), key_before);
    assert_eq!(read(&dir.join("n1/node.pem")), node_before);

    let (ok, _, err) = cairn(&[
        "init", "--dir", d, "--site", "paris", "--nodes", "n1", "--force",
    ]);
    assert!(ok, "{err}");
    assert_ne!(read(&dir.join("ca.pem")), ca_before);
    assert_ne!(read(&dir.join("n1/node.pem")), node_before);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("n1/node.key")), 0o600);
    NodeIdentity::load(&dir.join("n1")).unwrap();
}

#[test]
fn add_nodes_issues_under_the_existing_ca_and_keeps_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let (ok, _, err) = cairn(&["init", "--dir", d, "--site", "rome", "--nodes", "n1"]);
    assert!(ok, "{err}");
    let ca_before = read(&dir.join("ca.pem"));
    let n1_before = read(&dir.join("n1/node.pem"));

    let (ok, out, err) = cairn(&["init", "--dir", d, "--add-nodes", "--nodes", "n2"]);
    assert!(ok, "{err}");
    assert!(!out.contains("site CA key"), "no new CA is written: {out}");
    assert_eq!(read(&dir.join("ca.pem")), ca_before);
    assert_eq!(read(&dir.join("n1/node.pem")), n1_before);
    let n2 = NodeIdentity::load(&dir.join("n2")).unwrap();
    assert_eq!((n2.site(), n2.node()), ("rome", "n2"));
    assert_eq!(n2.ca_pem(), ca_before);

    // An existing node is not reissued without --force; a site name must match the CA's.
    let (ok, _, err) = cairn(&["init", "--dir", d, "--add-nodes", "--nodes", "n1"]);
    assert!(!ok && err.contains("already has a certificate"), "{err}");
    let (ok, _, err) = cairn(&[
        "init",
        "--dir",
        d,
        "--add-nodes",
        "--site",
        "oslo",
        "--nodes",
        "n3",
    ]);
    assert!(!ok && err.contains("rome"), "{err}");
    assert!(!dir.join("n3").exists());
}

#[test]
fn init_rejects_bad_names_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let d = dir.to_str().unwrap();
    let (ok, _, err) = cairn(&[
        "init",
        "--dir",
        d,
        "--site",
        "paris",
        "--nodes",
        "n1,Bad_Node",
    ]);
    assert!(!ok);
    assert!(err.contains("invalid node name `Bad_Node`"), "{err}");
    let (ok, _, err) = cairn(&["init", "--dir", d, "--site", "paris", "--nodes", "n1,n1"]);
    assert!(!ok && err.contains("twice"), "{err}");
    let (ok, _, err) = cairn(&["init", "--dir", d, "--nodes", "n1"]);
    assert!(!ok && err.contains("--site"), "{err}");
    let (ok, _, err) = cairn(&[
        "init",
        "--dir",
        d,
        "--site",
        "paris",
        "--nodes",
        "n1",
        "--address",
        "n9=1.2.3.4",
    ]);
    assert!(!ok && err.contains("not in --nodes"), "{err}");
    assert!(!dir.exists(), "a refused init must not write anything");
}

/// A node config for `name` whose certificates are in `certs` and data in `data`.
fn node_config(name: &str, certs: &Path, data: &Path, extra_site_field: &str) -> String {
    format!(
        "[node]\nname = \"{name}\"\ndata_dir = \"{}\"\ncerts_dir = \"{}\"\n\
         [listen]\nrpc = \"127.0.0.1:0\"\ns3 = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [site]\n{extra_site_field}[[site.nodes]]\nname = \"n1\"\naddress = \"127.0.0.1:7001\"\n",
        data.display(),
        certs.display()
    )
}

#[test]
fn serve_with_a_bad_config_says_what_is_wrong_and_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let (ok, _, err) = cairn(&[
        "init",
        "--dir",
        site.to_str().unwrap(),
        "--site",
        "s",
        "--nodes",
        "n1,n2",
    ]);
    assert!(ok, "{err}");
    let data = tmp.path().join("data");
    let config = tmp.path().join("node.toml");
    let serve = |text: String| {
        std::fs::write(&config, text).unwrap();
        let (ok, _, err) = cairn(&["serve", "--config", config.to_str().unwrap()]);
        assert!(!ok, "cairn serve started with a bad config");
        err
    };

    // A misspelt field is named.
    let err = serve(node_config(
        "n1",
        &site.join("n1"),
        &data,
        "replication_factr = 1\n",
    ));
    assert!(err.contains("replication_factr"), "{err}");
    // No certificate: says how to make one.
    let err = serve(node_config("n1", &tmp.path().join("none"), &data, ""));
    assert!(err.contains("cairn init"), "{err}");
    // Another node's certificate.
    let err = serve(node_config("n1", &site.join("n2"), &data, ""));
    assert!(err.contains("is for node `n2`, not `n1`"), "{err}");
    // A first map that cannot work: replication factor above the node count.
    let err = serve(node_config(
        "n1",
        &site.join("n1"),
        &data,
        "replication_factor = 3\n",
    ));
    assert!(err.contains("[site]"), "{err}");
    assert!(!data.exists(), "a bad config left a data dir behind");
    // Missing file.
    let (ok, _, err) = cairn(&["serve", "--config", "/nonexistent/cairn.toml"]);
    assert!(!ok && err.contains("cannot read config file"), "{err}");
}
