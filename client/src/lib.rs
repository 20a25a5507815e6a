//! The client library every gateway uses (libccow's role in EdgeFS): buckets, streaming object
//! put and get, listings, copies, multipart uploads and access keys, over the chunk and manifest
//! stores. Gateways depend on this crate only; they never open a store.
//!
//! Put streams the body through content-defined chunking, hashes and compresses chunks in
//! parallel off the async executor, stores every chunk (and tree node) durably, and only then
//! applies the manifest: a visible version is always fully readable (invariant I2).

mod buckets;
mod client;
mod error;
mod get;
mod keys;
mod multipart;
mod nodes;
mod objects;
mod put;
mod types;

pub use client::Client;
pub use error::ClientError;
pub use types::*;

pub use cairn_core::manifest::{
    AccessKey, Bucket, Content, ContentHeaders, Part, Upload, VersionManifest, Versioning,
};
pub use cairn_core::VersionId;
pub use cairn_manifestserver::{
    ListPage, ListQuery, UploadsPage, UploadsQuery, VersionsPage, VersionsQuery,
};
