//! Block volumes on the object store, and the front ends that serve them.
//!
//! A volume is a versioned object in a reserved bucket: its content is the extent tree of its
//! newest committed version, cut in fixed, aligned extents. One controller task per open volume
//! owns its write-back buffer and its commits ([`volume`]). Front ends see a volume as a
//! [`BlockDevice`] ([`device`]): the NBD server ([`nbd`]) today, the iSCSI target later.

pub mod device;
pub mod iscsi;
pub mod nbd;
pub mod scsi;
pub mod volume;
mod wire;

pub use wire::ServerHandle;

pub use device::{Allocation, BlockDevice, BlockError, Exports};
pub use nbd::{NbdConfig, NbdHandle, NbdServer, NbdStats};
pub use volume::{Volume, VolumeConfig, VolumeError, VolumeInfo, Volumes};
