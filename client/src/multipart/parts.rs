//! Parts of an upload read back from a completed object: their lengths (from the shape
//! completion gives the object's tree) and GET with `partNumber`.

use cairn_core::extent::{Child, NodeStore, TreeNode};
use cairn_core::manifest::{Content, VersionManifest};

use crate::client::Client;
use crate::objects::shown_version;
use crate::{ClientError, GetResult, ObjectRead, VersionSel};

/// Reads the lengths of the `count` subtrees at `depth` below `root`, in order; `None` if the
/// tree does not have exactly that shape.
async fn subtree_lengths(
    c: &Client,
    root: Child,
    depth: usize,
    count: usize,
) -> Result<Option<Vec<u64>>, ClientError> {
    let mut level = vec![root];
    for _ in 0..depth {
        let mut next = Vec::new();
        for node in level {
            match c.load(node.node, node.len).await? {
                TreeNode::Children(children) => next.extend(children),
                TreeNode::Leaves(_) => return Ok(None),
            }
            if next.len() > count {
                return Ok(None);
            }
        }
        level = next;
    }
    Ok((level.len() == count).then(|| level.iter().map(|c| c.len).collect()))
}

impl Client {
    /// The lengths of a completed multipart object's parts, in part-number order, read from
    /// the shape completion gives its tree (each part's root is a subtree of the object's tree,
    /// [`FANOUT`](cairn_core::extent) per node); `None` for an object that is not multipart.
    ///
    /// Only the last part can be empty, and an empty part has no subtree. The one shape this
    /// cannot tell apart is an object whose last part is empty and whose only other part's own
    /// tree has exactly as many top-level subtrees as the object has parts; the first reading
    /// (no empty part) is taken then.
    pub async fn part_lengths(&self, m: &VersionManifest) -> Result<Option<Vec<u64>>, ClientError> {
        let Some(n) = m.parts.map(|n| n as usize).filter(|&n| n > 0) else {
            return Ok(None);
        };
        let root = match &m.content {
            Content::Tree(root) => *root,
            // Inline content never comes from multipart; empty content means empty parts.
            _ => {
                let mut lens = vec![0; n];
                lens[0] = m.size;
                return Ok(Some(lens));
            }
        };
        const FANOUT: usize = 512;
        for nonempty in [n, n - 1] {
            if nonempty == 0 {
                continue;
            }
            // Completion's builder puts the part roots at the bottom of `depth` levels.
            let mut depth = 0;
            let mut span = 1usize;
            while span < nonempty {
                span = span.saturating_mul(FANOUT);
                depth += 1;
            }
            if let Some(mut lens) = subtree_lengths(self, root, depth, nonempty).await? {
                lens.resize(n, 0);
                return Ok(Some(lens));
            }
        }
        Err(ClientError::Corrupt(format!(
            "the tree of {}/{} does not have the shape of {n} parts",
            m.bucket, m.key
        )))
    }

    /// One part of an object (GET with `partNumber`): the bytes of part `number` of a
    /// multipart object, or the whole object as its part 1 if it is not multipart. Returns the
    /// read (its range set) and the object's part count (`None` if not multipart). A part
    /// number beyond the last is InvalidRange.
    pub async fn get_object_part(
        &self,
        bucket: &str,
        key: &str,
        version: &VersionSel,
        number: u32,
    ) -> Result<(GetResult, Option<u32>), ClientError> {
        let read = self.read_object(bucket, key, version).await?;
        self.get_object_part_from(read, number).await
    }

    /// [`Client::get_object_part`] of what `read` found: the version's metadata is not read
    /// again (a multipart object's part lengths come from its tree).
    pub async fn get_object_part_from(
        &self,
        read: ObjectRead,
        number: u32,
    ) -> Result<(GetResult, Option<u32>), ClientError> {
        let key = read.customer_key.clone();
        let (b, m) = read.into_version()?;
        let sealer = self.open_for(m.encryption.as_ref(), key.as_ref()).await?;
        let lens = self.part_lengths(&m).await?;
        let (start, end) = match (&lens, number) {
            (None, 1) => (0, m.size),
            (Some(lens), n) if (1..=lens.len()).contains(&(n as usize)) => {
                let i = n as usize - 1;
                let start: u64 = lens[..i].iter().sum();
                (start, start + lens[i])
            }
            _ => return Err(ClientError::InvalidRange { size: m.size }),
        };
        let body = self.read_range(&m.content, start, end, sealer);
        Ok((
            GetResult {
                version_id: shown_version(&b, &m),
                range: Some((start, end)),
                manifest: m,
                body,
            },
            lens.map(|l| l.len() as u32),
        ))
    }
}
