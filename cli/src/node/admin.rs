//! The admin endpoint's `/v1/cluster` calls on a node of a multi-node site: the map with each
//! node's state and workers, staging changes, and applying them (what `cairn cluster` calls).

use std::sync::Arc;

use cairn_core::cluster::{node_id_hex, NodeInfo, StagedChanges};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::cluster::{ClusterState, NodeStatus, StatusFn};
use super::config::{node_id, parse_quorum, parse_roles};

/// What the admin endpoint needs of a node for `/v1/cluster`.
#[derive(Clone)]
pub struct ClusterAdmin {
    /// The node's map.
    pub cluster: Arc<ClusterState>,
    /// The node's own status.
    pub status: StatusFn,
    /// The site's id (in every version id it makes).
    pub site_id: cairn_core::SiteId,
}

/// A node as `/v1/cluster` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    /// Id, hex.
    pub id: String,
    /// Name.
    pub name: String,
    /// Node transport address.
    pub address: String,
    /// Zone.
    pub zone: String,
    /// Capacity weight.
    pub weight: u32,
    /// Roles.
    pub roles: String,
    /// `up` or `down` as this node sees it.
    pub state: String,
    /// Its status, when it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterView {
    /// Site name.
    pub site: String,
    /// Site id (absent from nodes that predate it).
    #[serde(default)]
    pub site_id: cairn_core::SiteId,
    /// Map epoch.
    pub epoch: u64,
    /// Replication factor.
    pub replication_factor: u8,
    /// Write quorum (resolved).
    pub write_quorum: u8,
    /// Nodes by id.
    pub nodes: Vec<NodeView>,
    /// Staged changes, one line each.
    pub staged: Vec<String>,
}

/// `POST /v1/cluster/stage`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum StageRequest {
    /// Add a node, or replace a node's entry.
    Add {
        /// Name (as in its certificate).
        name: String,
        /// Node transport address.
        address: String,
        /// Zone.
        zone: String,
        /// Capacity weight.
        weight: u32,
        /// Roles, comma-separated.
        roles: String,
    },
    /// Remove a node.
    Remove {
        /// Its name.
        name: String,
    },
    /// Change the replication settings.
    Set {
        /// Replication factor.
        replication_factor: Option<u8>,
        /// Write quorum: "majority" or a number.
        write_quorum: Option<String>,
    },
}

/// `POST /v1/cluster/apply`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyView {
    /// The new epoch.
    pub epoch: u64,
    /// What changed, one line each.
    pub changes: Vec<String>,
    /// Each node's answer to the new map: `adopted`, `had it`, or why it was not reached.
    pub nodes: Vec<(String, String)>,
}

fn describe_staged(s: &StagedChanges, map: &cairn_core::cluster::ClusterMap) -> Vec<String> {
    let mut out = Vec::new();
    for n in &s.upsert {
        let verb = if map.node(n.id).is_some() {
            "change"
        } else {
            "add"
        };
        out.push(format!(
            "{verb} {} at {}, zone {}, weight {}, roles {}",
            n.name, n.address, n.zone, n.weight, n.roles
        ));
    }
    for id in &s.remove {
        out.push(format!("remove {}", super::cluster::label(map, *id)));
    }
    if let Some(rf) = s.set_rf {
        out.push(format!("replication factor {rf}"));
    }
    if let Some(w) = s.set_write_quorum {
        out.push(format!("write quorum {w:?}"));
    }
    out
}

type Answer = (StatusCode, serde_json::Value);

/// A change to the staged changes.
type StageChange = Box<dyn FnOnce(&mut StagedChanges)>;

fn bad(msg: impl std::fmt::Display) -> Answer {
    (
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": msg.to_string() }),
    )
}

fn ok<T: Serialize>(v: &T) -> Answer {
    match serde_json::to_value(v) {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": e.to_string() }),
        ),
    }
}

impl ClusterAdmin {
    /// Answers a `/v1/cluster` call; `None` if the path is not one.
    pub async fn handle(&self, method: &Method, path: &str, body: &[u8]) -> Option<Answer> {
        let answer = match (method, path) {
            (&Method::GET, "/v1/cluster") => self.view().await,
            (&Method::POST, "/v1/cluster/stage") => match serde_json::from_slice(body) {
                Ok(req) => self.stage(req),
                Err(e) => bad(format!("not a stage request: {e}")),
            },
            (&Method::DELETE, "/v1/cluster/stage") => match self.cluster.unstage() {
                Ok(()) => ok(&serde_json::json!({ "staged": [] })),
                Err(e) => bad(format!("{e:#}")),
            },
            (&Method::POST, "/v1/cluster/apply") => self.apply().await,
            _ => return None,
        };
        Some(answer)
    }

    async fn view(&self) -> Answer {
        let map = self.cluster.map();
        let statuses = self.cluster.statuses(&self.status).await;
        let nodes = map
            .nodes
            .values()
            .map(|n| {
                let answer = statuses.iter().find(|(name, _)| *name == n.name);
                let (status, error) = match answer {
                    Some((_, Ok(s))) => (Some(s.clone()), None),
                    Some((_, Err(e))) => (None, Some(e.clone())),
                    None => (None, None),
                };
                NodeView {
                    id: node_id_hex(n.id),
                    name: n.name.clone(),
                    address: n.address.clone(),
                    zone: n.zone.clone(),
                    weight: n.weight,
                    roles: n.roles.to_string(),
                    state: if status.is_some() { "up" } else { "down" }.into(),
                    status,
                    error,
                }
            })
            .collect();
        ok(&ClusterView {
            site: map.site.clone(),
            site_id: self.site_id,
            epoch: map.epoch,
            replication_factor: map.replication_factor,
            write_quorum: map.write_quorum(),
            nodes,
            staged: describe_staged(&self.cluster.staged(), &map),
        })
    }

    fn stage(&self, req: StageRequest) -> Answer {
        let map = self.cluster.map();
        let change: Result<StageChange, String> = match req {
            StageRequest::Add {
                name,
                address,
                zone,
                weight,
                roles,
            } => match parse_roles(&[roles]) {
                Ok(roles) => {
                    let mut info = NodeInfo::new(node_id(&map.site, &name), name, address, zone);
                    info.weight = weight;
                    info.roles = roles;
                    Ok(Box::new(move |s: &mut StagedChanges| {
                        s.remove.retain(|id| *id != info.id);
                        s.upsert.retain(|n| n.id != info.id);
                        s.upsert.push(info);
                    }))
                }
                Err(e) => Err(format!("{e:#}")),
            },
            StageRequest::Remove { name } => {
                let id = node_id(&map.site, &name);
                if map.node(id).is_none() {
                    Err(format!(
                        "node `{name}` is not in the map: see `cairn cluster status`"
                    ))
                } else {
                    Ok(Box::new(move |s: &mut StagedChanges| {
                        s.upsert.retain(|n| n.id != id);
                        if !s.remove.contains(&id) {
                            s.remove.push(id);
                        }
                    }))
                }
            }
            StageRequest::Set {
                replication_factor,
                write_quorum,
            } => match write_quorum.as_deref().map(parse_quorum).transpose() {
                Ok(w) => Ok(Box::new(move |s: &mut StagedChanges| {
                    if replication_factor.is_some() {
                        s.set_rf = replication_factor;
                    }
                    if w.is_some() {
                        s.set_write_quorum = w;
                    }
                })),
                Err(e) => Err(format!("{e:#}")),
            },
        };
        let change = match change {
            Ok(c) => c,
            Err(e) => return bad(e),
        };
        match self.cluster.stage(change) {
            Ok(s) => ok(&serde_json::json!({ "staged": describe_staged(&s, &map) })),
            Err(e) => bad(format!("{e:#}")),
        }
    }

    async fn apply(&self) -> Answer {
        match self.cluster.apply_staged().await {
            Ok((map, diff, answers)) => ok(&ApplyView {
                epoch: map.epoch,
                changes: diff.to_string().lines().map(str::to_string).collect(),
                nodes: answers
                    .into_iter()
                    .map(|(name, r)| {
                        let s = match r {
                            Ok(true) => "adopted".to_string(),
                            Ok(false) => "had it".to_string(),
                            Err(e) => {
                                format!("not reached ({e}); it will fetch the map from a peer")
                            }
                        };
                        (name, s)
                    })
                    .collect(),
            }),
            Err(e) => bad(format!("{e:#}")),
        }
    }
}
