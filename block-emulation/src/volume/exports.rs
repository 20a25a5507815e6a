//! Who may reach a volume over iSCSI. A volume's rules are the object `exports/NAME` of the
//! volume bucket: no content, the rules in its metadata. Like the site's access keys, the
//! CHAP secrets live in the site's metadata store and nowhere an S3 client can read them (the
//! volume bucket belongs to an owner no access key has). A volume without a record is served
//! to every initiator without CHAP, as NBD serves it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_client::{ClientError, PutOptions, VersionSel};
use serde::{Deserialize, Serialize};

use super::{check_name, VolumeError, Volumes, VOLUME_BUCKET, VOLUME_OWNER};
use crate::device::BlockError;
use crate::iscsi::{ChapSecret, ExportAccess, IscsiAccess};

const EXPORT_PREFIX: &str = "exports/";
/// The metadata entry that holds the rules, as JSON.
const META_ISCSI: &str = "cairn-iscsi-export";

fn export_key(name: &str) -> String {
    format!("{EXPORT_PREFIX}{name}")
}

/// The stored form of [`ExportAccess`].
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    initiators: Vec<String>,
    #[serde(default)]
    chap: Option<(String, String)>,
    #[serde(default)]
    mutual_chap: Option<(String, String)>,
}

impl From<&ExportAccess> for Record {
    fn from(a: &ExportAccess) -> Record {
        let pair = |c: &ChapSecret| (c.user.clone(), c.secret.clone());
        Record {
            disabled: a.disabled,
            initiators: a.initiators.clone(),
            chap: a.chap.as_ref().map(pair),
            mutual_chap: a.mutual_chap.as_ref().map(pair),
        }
    }
}

impl From<Record> for ExportAccess {
    fn from(r: Record) -> ExportAccess {
        let chap = |(user, secret): (String, String)| ChapSecret { user, secret };
        ExportAccess {
            disabled: r.disabled,
            initiators: r.initiators,
            chap: r.chap.map(chap),
            mutual_chap: r.mutual_chap.map(chap),
        }
    }
}

impl Volumes {
    /// Who may log in to volume `name`'s iSCSI target.
    pub async fn iscsi_export(&self, name: &str) -> Result<ExportAccess, VolumeError> {
        self.head(name).await?;
        self.stored_export(name).await
    }

    async fn stored_export(&self, name: &str) -> Result<ExportAccess, VolumeError> {
        match self
            .client
            .head_object(VOLUME_BUCKET, &export_key(name), &VersionSel::Current)
            .await
        {
            Ok(p) => match p.manifest.user_metadata.get(META_ISCSI) {
                Some(json) => serde_json::from_str::<Record>(json)
                    .map(Into::into)
                    .map_err(|e| {
                        VolumeError::Invalid(format!(
                            "the iSCSI export of {name} is unreadable ({e}): set it again with `cairn volume export {name} --iscsi ...`"
                        ))
                    }),
                None => Ok(ExportAccess::default()),
            },
            Err(ClientError::NoSuchKey { .. } | ClientError::NoSuchBucket(_)) => {
                Ok(ExportAccess::default())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets who may log in to volume `name`'s iSCSI target (replacing the rules before);
    /// sessions already logged in stay.
    pub async fn set_iscsi_export(
        &self,
        name: &str,
        access: ExportAccess,
    ) -> Result<ExportAccess, VolumeError> {
        self.head(name).await?;
        access.validate().map_err(VolumeError::Invalid)?;
        let json = serde_json::to_string(&Record::from(&access))
            .map_err(|e| VolumeError::Invalid(e.to_string()))?;
        let opts = PutOptions {
            user_metadata: BTreeMap::from([(META_ISCSI.to_string(), json)]),
            owner: VOLUME_OWNER.to_string(),
            content_length: Some(0),
            ..Default::default()
        };
        let body = Box::pin(futures::stream::empty::<Result<Bytes, std::io::Error>>());
        self.client
            .put_object(VOLUME_BUCKET, &export_key(name), body, opts)
            .await?;
        Ok(access)
    }

    /// Drops volume `name`'s rules (with the volume).
    pub(super) async fn delete_export(&self, name: &str) -> Result<(), VolumeError> {
        match self
            .client
            .delete_object(VOLUME_BUCKET, &export_key(name), &VersionSel::Current)
            .await
        {
            Ok(_) | Err(ClientError::NoSuchKey { .. } | ClientError::NoSuchBucket(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl IscsiAccess for Volumes {
    async fn access(&self, volume: &str) -> Result<ExportAccess, BlockError> {
        if check_name("volume", volume).is_err() {
            return Err(BlockError::NotFound(volume.to_string()));
        }
        self.stored_export(volume).await.map_err(|e| match e {
            VolumeError::NotFound(n) => BlockError::NotFound(n),
            e => BlockError::Io(e.to_string()),
        })
    }
}
