//! Cairn's NFS gateway: buckets exported over NFSv3 (RFC 1813), with MOUNT v3 and a port
//! mapper (RFC 1833, version 2) on the same TCP port. A file `a/b/c` of the export of bucket B
//! is object `a/b/c` of B; a directory is a key prefix. The gateway sees only
//! `cairn_client::Client`, like the S3 gateway.

pub mod attr;
pub mod cache;
pub mod export;
pub mod fs;
pub mod handle;
pub mod mount;
pub mod nfs3;
pub mod ops;
pub mod portmap;
pub mod rpc;
pub mod segments;
pub mod server;
pub mod xdr;

pub use export::{ExportConfig, ExportsFile};
pub use fs::{Fs, DEFAULT_READ_CACHE_BYTES};
pub use server::{NfsConfig, NfsMetrics, NfsServer};
