//! `cairn kms`: the site's built-in key manager for SSE-KMS (`aws:kms`). Keys are made, listed,
//! disabled and enabled here; S3 requests name them by id, `alias/NAME` or ARN.

use cairn_client::kms::KmsKey;
use cairn_client::Client;
use clap::Subcommand;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::ops::{backend, Backend};
use crate::Target;

/// `cairn kms ...`
#[derive(Subcommand)]
pub enum KmsCommand {
    /// Make a KMS key: S3 requests use it with `x-amz-server-side-encryption: aws:kms` and
    /// `x-amz-server-side-encryption-aws-kms-key-id: ID` (or `alias/ALIAS`).
    Create {
        /// An alias to name it by (`alias/ALIAS` in requests).
        #[arg(long)]
        alias: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the KMS keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Disable a key: objects under it cannot be read or written (KMS.DisabledException)
    /// until it is enabled again. Running gateways notice within 5 seconds.
    Disable {
        /// Key id, alias/NAME or ARN.
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Enable a disabled key.
    Enable {
        /// Key id, alias/NAME or ARN.
        key: String,
        #[command(flatten)]
        target: Target,
    },
}

/// A KMS key as the admin API and the CLI show it (never its material).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KmsKeyInfo {
    /// Its id.
    pub id: String,
    /// Its alias.
    pub alias: Option<String>,
    /// What it is for.
    pub description: String,
    /// Creation time, unix ms.
    pub created_ms: u64,
    /// Whether it seals and opens.
    pub enabled: bool,
}

/// The shown form of a key.
pub fn key_info(k: &KmsKey) -> KmsKeyInfo {
    KmsKeyInfo {
        id: k.id.clone(),
        alias: k.alias.clone(),
        description: k.description.clone(),
        created_ms: k.created_ms,
        enabled: k.enabled,
    }
}

/// Body of `POST /v1/kms`.
#[derive(Debug, Deserialize, Serialize)]
pub struct CreateKms {
    /// Alias.
    pub alias: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// The admin API's `/v1/kms` calls, or `None` for another path.
pub async fn handle_admin(
    client: &Client,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Option<Result<(http::StatusCode, serde_json::Value), cairn_client::ClientError>> {
    let ok = |s: http::StatusCode, v: serde_json::Value| Some(Ok((s, v)));
    let to_json = |k: &KmsKey| serde_json::to_value(key_info(k)).expect("serializable");
    match (method, path) {
        (&Method::GET, "/v1/kms") => match client.kms_list().await {
            Ok(keys) => ok(
                http::StatusCode::OK,
                serde_json::Value::Array(keys.iter().map(to_json).collect()),
            ),
            Err(e) => Some(Err(e)),
        },
        (&Method::POST, "/v1/kms") => {
            let req: CreateKms = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => {
                    return Some(Err(cairn_client::ClientError::InvalidArgument(format!(
                        "bad JSON: {e}"
                    ))))
                }
            };
            match client
                .kms_create(req.alias.as_deref(), &req.description)
                .await
            {
                Ok(k) => ok(http::StatusCode::CREATED, to_json(&k)),
                Err(e) => Some(Err(e)),
            }
        }
        (&Method::POST, p) if p.starts_with("/v1/kms/") => {
            let rest = &p["/v1/kms/".len()..];
            let (key, enabled) = if let Some(k) = rest.strip_suffix("/enable") {
                (k, true)
            } else if let Some(k) = rest.strip_suffix("/disable") {
                (k, false)
            } else {
                return None;
            };
            match client.kms_set_enabled(key, enabled).await {
                Ok(k) => ok(http::StatusCode::OK, to_json(&k)),
                Err(e) => Some(Err(e)),
            }
        }
        _ => None,
    }
}

/// Runs `cairn kms ...`.
pub async fn run(cmd: KmsCommand) -> anyhow::Result<()> {
    match cmd {
        KmsCommand::Create {
            alias,
            description,
            target,
        } => {
            let k: KmsKeyInfo = match backend(&target).await? {
                Backend::Local(c) => key_info(&c.kms_create(alias.as_deref(), &description).await?),
                Backend::Remote(a) => {
                    a.call(
                        Method::POST,
                        "/v1/kms",
                        Some(serde_json::to_value(CreateKms { alias, description })?),
                    )
                    .await?
                }
            };
            println!("Created KMS key {}", k.id);
            if let Some(a) = &k.alias {
                println!("alias: alias/{a}");
            }
            Ok(())
        }
        KmsCommand::List { json, target } => {
            let keys: Vec<KmsKeyInfo> = match backend(&target).await? {
                Backend::Local(c) => c.kms_list().await?.iter().map(key_info).collect(),
                Backend::Remote(a) => a.call(Method::GET, "/v1/kms", None).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            println!("{:<36}  {:<8}  {:<20}  DESCRIPTION", "ID", "STATE", "ALIAS");
            for k in keys {
                println!(
                    "{:<36}  {:<8}  {:<20}  {}",
                    k.id,
                    if k.enabled { "enabled" } else { "disabled" },
                    k.alias.map(|a| format!("alias/{a}")).unwrap_or_default(),
                    k.description
                );
            }
            Ok(())
        }
        KmsCommand::Disable { key, target } => set(&key, false, &target).await,
        KmsCommand::Enable { key, target } => set(&key, true, &target).await,
    }
}

async fn set(key: &str, enabled: bool, target: &Target) -> anyhow::Result<()> {
    let k: KmsKeyInfo = match backend(target).await? {
        Backend::Local(c) => key_info(&c.kms_set_enabled(key, enabled).await?),
        Backend::Remote(a) => {
            let path = format!(
                "/v1/kms/{key}/{}",
                if enabled { "enable" } else { "disable" }
            );
            a.call(Method::POST, &path, None).await?
        }
    };
    println!(
        "KMS key {} is {}",
        k.id,
        if k.enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}
