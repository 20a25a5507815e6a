//! `cairn init`: creates a site's CA and its nodes' certificates, the identities nodes use to
//! authenticate each other (mutual TLS over QUIC).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn_net::identity::{validate_name, CA_CERT_FILE, CA_KEY_FILE};
use cairn_net::{NodeIdentity, SiteCa};
use clap::Args;

/// At most this many nodes per invocation.
const MAX_NODES: usize = 1024;

/// Arguments of `cairn init`.
#[derive(Args, Debug)]
#[command(after_long_help = "\
Examples:
  cairn init --dir site --site paris --nodes n1,n2,n3 --address n1=10.0.0.1
  cairn init --dir site --add-nodes --nodes n4      (one more node, same CA)

Writes DIR/ca.pem and DIR/ca.key (the site CA), DIR/sse-master.keys (the site's keys for
server-side encryption), and for each node DIR/NODE/node.pem, DIR/NODE/node.key, DIR/NODE/ca.pem
and DIR/NODE/sse-master.keys. Copy each node's directory to that node; keep DIR/ca.key offline,
it is only needed to add nodes; back up sse-master.keys: encrypted objects cannot be read
without it.")]
pub struct InitArgs {
    /// Directory to write the CA and the node directories into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Site name (a DNS label: a-z, 0-9, '-'). Required unless --add-nodes reads it from the CA.
    #[arg(long, value_name = "NAME")]
    pub site: Option<String>,
    /// Node names, comma-separated (DNS labels). Peers dial a node by this name.
    #[arg(long, value_name = "NODE,...", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Extra DNS name or IP address for a node's certificate, as NODE=NAME (repeatable).
    #[arg(long = "address", value_name = "NODE=NAME")]
    pub addresses: Vec<String>,
    /// Issue certificates for --nodes with the CA already in DIR instead of creating one.
    #[arg(long)]
    pub add_nodes: bool,
    /// Replace existing files: with --add-nodes, the listed nodes' certificates; otherwise the
    /// CA too (every node of the site then needs a new certificate).
    #[arg(long)]
    pub force: bool,
}

/// Runs `cairn init`.
pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let nodes = parse_nodes(&args.nodes)?;
    let extra = parse_addresses(&args.addresses, &nodes)?;
    let ca_files = [args.dir.join(CA_CERT_FILE), args.dir.join(CA_KEY_FILE)];

    let (ca, new_ca) = if args.add_nodes {
        let ca = SiteCa::load(&args.dir).with_context(|| {
            format!(
                "loading the site CA from {} (run `cairn init` without --add-nodes to create one)",
                args.dir.display()
            )
        })?;
        if let Some(site) = &args.site {
            if site != ca.site() {
                bail!(
                    "the CA in {} is for site `{}`, not `{site}`",
                    args.dir.display(),
                    ca.site()
                );
            }
        }
        (ca, false)
    } else {
        let Some(site) = &args.site else {
            bail!(
                "--site is required to create a site CA (or use --add-nodes with an existing one)"
            );
        };
        validate_name("site", site)?;
        if !args.force {
            if let Some(existing) = ca_files.iter().find(|p| p.exists()) {
                bail!(
                    "{} exists: this directory already has a site CA. Use --add-nodes to issue \
                     certificates for more nodes with it, or --force to replace it (every node \
                     then needs a new certificate)",
                    existing.display()
                );
            }
        }
        (SiteCa::generate(site)?, true)
    };

    // Check every file before writing any, so a refusal leaves nothing half-done.
    if !args.force {
        for node in &nodes {
            if let Some(existing) = NodeIdentity::files(&args.dir.join(node))
                .into_iter()
                .find(|p| p.exists())
            {
                bail!(
                    "{} exists: node `{node}` already has a certificate (use --force to replace it)",
                    existing.display()
                );
            }
        }
    }
    let identities = nodes
        .iter()
        .map(|n| ca.issue_node(n, extra.get(n.as_str()).map_or(&[][..], Vec::as_slice)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut written = Vec::new();
    if new_ca {
        ca.save(&args.dir, args.force)?;
        written.push((ca_files[0].clone(), "site CA certificate"));
        written.push((ca_files[1].clone(), "site CA key (0600): keep it offline"));
    }
    // The site's encryption keys (SSE-S3): one set, made with the CA, copied to every node.
    let keys_path = args.dir.join(cairn_client::crypt::KEYS_FILE);
    let new_keys = !keys_path.exists();
    let keys = cairn_client::crypt::SiteKeys::load_or_create(&args.dir)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if new_keys {
        written.push((
            keys_path,
            "site encryption keys (0600): back them up, encrypted objects need them",
        ));
    }
    for id in &identities {
        let dir = args.dir.join(id.node());
        id.save(&dir, args.force)?;
        keys.save_to(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let [cert, key, ca_copy] = NodeIdentity::files(&dir);
        written.push((cert, "node certificate"));
        written.push((key, "node key (0600)"));
        written.push((ca_copy, "site CA certificate (copy)"));
        written.push((
            dir.join(cairn_client::crypt::KEYS_FILE),
            "site encryption keys (copy, 0600)",
        ));
    }
    report(&args.dir, ca.site(), &written, &nodes);
    Ok(())
}

fn parse_nodes(raw: &[String]) -> anyhow::Result<Vec<String>> {
    let nodes: Vec<String> = raw
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if nodes.is_empty() {
        bail!("--nodes names no node: give at least one, e.g. --nodes n1,n2,n3");
    }
    if nodes.len() > MAX_NODES {
        bail!("{} nodes: at most {MAX_NODES} per run", nodes.len());
    }
    let mut seen = BTreeSet::new();
    for n in &nodes {
        validate_name("node", n)?;
        if !seen.insert(n.as_str()) {
            bail!("node `{n}` is listed twice in --nodes");
        }
    }
    Ok(nodes)
}

fn parse_addresses<'a>(
    raw: &'a [String],
    nodes: &[String],
) -> anyhow::Result<BTreeMap<&'a str, Vec<String>>> {
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in raw {
        let Some((node, name)) = a.split_once('=') else {
            bail!("--address `{a}`: use NODE=NAME, e.g. n1=10.0.0.1 or n1=n1.example.com");
        };
        if !nodes.iter().any(|n| n == node) {
            bail!("--address `{a}`: `{node}` is not in --nodes");
        }
        out.entry(node).or_default().push(name.to_string());
    }
    Ok(out)
}

fn report(dir: &Path, site: &str, written: &[(PathBuf, &str)], nodes: &[String]) {
    println!("site `{site}`: wrote");
    for (path, what) in written {
        println!("  {:<40} {what}", path.display());
    }
    println!();
    println!("next:");
    println!(
        "  - copy each node's directory ({}/NODE) to that node; node.key must stay private",
        dir.display()
    );
    println!(
        "  - keep {} offline: it is only needed to add nodes, with",
        dir.join(CA_KEY_FILE).display()
    );
    println!(
        "      cairn init --dir {} --add-nodes --nodes NEWNODE",
        dir.display()
    );
    println!(
        "  - peers reach a node by its name ({}), which its certificate carries",
        nodes.join(", ")
    );
}
