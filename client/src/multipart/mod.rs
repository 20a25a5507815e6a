//! Multipart uploads. Each part is stored as a tree of its own (`upload.rs`); completion
//! (`complete.rs`) joins the parts' trees into the object's, reusing every part's chunks by
//! reference except around the seams, which it cuts again as one stream through the object
//! would (`seams.rs`, reading the parts' leaves through `feed.rs`), so a multipart object
//! dedups like a single PUT of the same bytes. The object's tree keeps one subtree per part,
//! from which a part's bytes are found again (`parts.rs`).

mod complete;
mod feed;
mod parts;
mod seams;
mod upload;

#[cfg(test)]
mod tests;

use cairn_core::manifest::Upload;

use crate::checksum::ChecksumAlgorithm;
use crate::ClientError;

/// Smallest part but the last (S3's limit).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Highest part number.
pub const MAX_PARTS: u32 = 10_000;

/// The checksum algorithm an upload's parts carry, if it named one.
fn upload_algorithm(upload: &Upload) -> Result<Option<ChecksumAlgorithm>, ClientError> {
    match upload.checksum_algorithm.as_deref() {
        None => Ok(None),
        Some(name) => ChecksumAlgorithm::parse(name).map(Some).ok_or_else(|| {
            ClientError::Corrupt(format!(
                "upload names an unknown checksum algorithm `{name}`"
            ))
        }),
    }
}
