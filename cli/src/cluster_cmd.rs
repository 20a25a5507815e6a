//! `cairn cluster`: the cluster map of a multi-node site — show it with every node's state and
//! workers, stage changes (add, remove, set), and apply them as the next epoch, which every
//! node then receives. Runs against any node's admin endpoint.

use clap::Subcommand;
use http::Method;

use crate::node::admin::{ApplyView, ClusterView};
use crate::ops::admin_of;
use crate::Target;

/// `cairn cluster ...`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the map (epoch, replication), each node (address, zone, weight, roles, up or down,
    /// chunks) with its workers' progress and last error, and the staged changes.
    Status(Target),
    /// Stage adding a node (or changing a node's entry). Takes effect with `cairn cluster apply`.
    #[command(after_long_help = "\
Example:
  cairn init --dir site --add-nodes --nodes n4        (its certificate, same CA)
  cairn cluster add n4 --address 10.0.0.4:3901 --zone rack-d --data-dir /var/lib/cairn
  cairn cluster apply --data-dir /var/lib/cairn")]
    Add {
        /// The node's name (as in its certificate).
        name: String,
        /// Its node transport address, HOST:PORT.
        #[arg(long)]
        address: String,
        /// Its failure domain: replicas go to distinct zones first.
        #[arg(long, default_value = "default")]
        zone: String,
        /// Capacity weight: its share of the data is proportional to it (0: drained).
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Roles: chunk, manifest, s3 or all, comma-separated.
        #[arg(long, default_value = "all")]
        roles: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stage removing a node. Its data moves to the others once applied (rebalance); keep it
    /// running until `cairn cluster status` shows its chunk count at 0.
    Remove {
        /// The node's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stage new replication settings.
    Set {
        /// Copies of each chunk and of each bucket's metadata.
        #[arg(long)]
        rf: Option<u8>,
        /// Acknowledgements a write waits for: "majority" or a number.
        #[arg(long)]
        write_quorum: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Drop the staged changes.
    Discard(Target),
    /// Apply the staged changes as the next epoch and send the new map to every node.
    Apply(Target),
}

/// Runs a `cairn cluster` command.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status(t) => status(&t).await,
        ClusterCommand::Add {
            name,
            address,
            zone,
            weight,
            roles,
            target,
        } => {
            stage(
                &target,
                serde_json::json!({"op": "add", "name": name, "address": address, "zone": zone,
                                   "weight": weight, "roles": roles}),
            )
            .await
        }
        ClusterCommand::Remove { name, target } => {
            stage(&target, serde_json::json!({"op": "remove", "name": name})).await
        }
        ClusterCommand::Set {
            rf,
            write_quorum,
            target,
        } => {
            if rf.is_none() && write_quorum.is_none() {
                anyhow::bail!("give --rf and/or --write-quorum");
            }
            stage(
                &target,
                serde_json::json!({"op": "set", "replication_factor": rf, "write_quorum": write_quorum}),
            )
            .await
        }
        ClusterCommand::Discard(t) => {
            let _: serde_json::Value = admin_of(&t)?
                .call(Method::DELETE, "/v1/cluster/stage", None)
                .await?;
            println!("staged changes dropped");
            Ok(())
        }
        ClusterCommand::Apply(t) => {
            let v: ApplyView = admin_of(&t)?
                .call(Method::POST, "/v1/cluster/apply", None)
                .await?;
            println!("cluster map epoch {}:", v.epoch);
            for c in &v.changes {
                println!("  {c}");
            }
            println!("nodes:");
            for (name, s) in &v.nodes {
                println!("  {name:<16} {s}");
            }
            Ok(())
        }
    }
}

async fn stage(t: &Target, body: serde_json::Value) -> anyhow::Result<()> {
    let v: serde_json::Value = admin_of(t)?
        .call(Method::POST, "/v1/cluster/stage", Some(body))
        .await?;
    println!("staged (apply with `cairn cluster apply`):");
    for line in v["staged"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or_default());
    }
    Ok(())
}

/// A node's disk state in one cell: its state, then each data dir's free space
/// (`ok chunks 61% free, meta 61% free`).
fn disk_line(d: &crate::disk::DiskStatus) -> String {
    let dirs: Vec<String> = d
        .dirs
        .iter()
        .map(|dir| {
            let pct = if dir.total_bytes == 0 {
                0.0
            } else {
                dir.free_bytes as f64 * 100.0 / dir.total_bytes as f64
            };
            format!("{} {pct:.0}% free", dir.name)
        })
        .collect();
    format!("{} {}", d.state, dirs.join(", "))
}

async fn status(t: &Target) -> anyhow::Result<()> {
    let v: ClusterView = admin_of(t)?.call(Method::GET, "/v1/cluster", None).await?;
    println!(
        "site {} (id {:04x})  epoch {}  replication factor {}  write quorum {}",
        v.site, v.site_id, v.epoch, v.replication_factor, v.write_quorum
    );
    println!();
    println!(
        "{:<12} {:<13} {:<22} {:<10} {:>6} {:<20} {:<5} {:>6} {:>10}  DISK",
        "NODE", "ID", "ADDRESS", "ZONE", "WEIGHT", "ROLES", "STATE", "EPOCH", "CHUNKS"
    );
    for n in &v.nodes {
        let (epoch, chunks, disk) = match &n.status {
            Some(s) => (
                s.epoch.to_string(),
                s.chunks.map_or("-".to_string(), |c| c.to_string()),
                s.disk.as_ref().map_or("-".to_string(), disk_line),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<12} {:<13} {:<22} {:<10} {:>6} {:<20} {:<5} {:>6} {:>10}  {}",
            n.name, n.id, n.address, n.zone, n.weight, n.roles, n.state, epoch, chunks, disk
        );
    }
    println!();
    println!(
        "{:<12} {:<12} {:<10} {:>7}  {:<40} LAST ERROR",
        "NODE", "WORKER", "STATE", "PASSES", "PROGRESS"
    );
    for n in &v.nodes {
        match &n.status {
            Some(s) => {
                for w in &s.workers {
                    println!(
                        "{:<12} {:<12} {:<10} {:>7}  {:<40} {}",
                        n.name,
                        w.name,
                        w.state,
                        w.passes,
                        crate::workers::progress_line(w),
                        w.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
            None => println!(
                "{:<12} (not reachable: {})",
                n.name,
                n.error.as_deref().unwrap_or("no answer")
            ),
        }
    }
    if !v.staged.is_empty() {
        println!();
        println!("staged (apply with `cairn cluster apply`):");
        for s in &v.staged {
            println!("  {s}");
        }
    }
    Ok(())
}
