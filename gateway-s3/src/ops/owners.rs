//! Owners as S3 shows them, the same in every response: ID is the access key id, DisplayName
//! the key's name (the id itself when the key is unnamed or gone).

use std::collections::HashMap;

use s3s::dto::Owner;
use s3s::S3Result;

use super::Gateway;
use crate::error::client_error;

/// Display names of the access keys a response shows, each looked up once.
#[derive(Default)]
pub(super) struct Owners {
    names: HashMap<String, String>,
}

impl Owners {
    /// Looks up the names of `ids` (taken as owned strings: the futures of s3s's operations
    /// must be `Send` for any lifetime, which borrowing iterators across an await defeats).
    pub(super) async fn load(gw: &Gateway, ids: Vec<String>) -> S3Result<Owners> {
        let mut owners = Owners::default();
        for id in ids {
            if owners.names.contains_key(&id) {
                continue;
            }
            let name = match gw.client.get_key(&id).await.map_err(client_error)? {
                Some(k) if !k.name.is_empty() => k.name,
                _ => id.clone(),
            };
            owners.names.insert(id, name);
        }
        Ok(owners)
    }

    /// The owner element of `id` (loaded or not).
    pub(super) fn owner(&self, id: &str) -> Owner {
        Owner {
            display_name: Some(
                self.names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string()),
            ),
            id: Some(id.to_string()),
        }
    }
}

/// The owner element of one access key id.
pub(super) async fn owner_of(gw: &Gateway, id: &str) -> S3Result<Owner> {
    Ok(Owners::load(gw, vec![id.to_string()]).await?.owner(id))
}
