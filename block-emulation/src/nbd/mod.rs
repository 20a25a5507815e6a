//! An NBD server (the Network Block Device protocol, fixed newstyle) serving [`Exports`] to
//! the Linux kernel client, qemu, libnbd tools and the like.
//!
//! - Handshake: fixed newstyle only; options `EXPORT_NAME`, `ABORT`, `LIST`, `INFO`, `GO`
//!   (export, name, description and block size information), `STRUCTURED_REPLY`,
//!   `LIST_META_CONTEXT` and `SET_META_CONTEXT` (`base:allocation`). Others are refused with
//!   `NBD_REP_ERR_UNSUP`.
//! - Transmission: `READ`, `WRITE`, `DISC`, `FLUSH`, `TRIM`, `WRITE_ZEROES` and
//!   `BLOCK_STATUS`, with `FUA`; simple replies, or structured ones when negotiated. Many
//!   requests run at once per connection, and a flush on any connection covers the writes of
//!   all of them (`NBD_FLAG_CAN_MULTI_CONN`).
//!
//! The wire format is in [`proto`] as pure functions; [`NbdServer`] does the I/O.
//!
//! [`Exports`]: crate::device::Exports

mod handshake;
pub mod proto;
mod server;
mod transmission;

pub use server::{NbdConfig, NbdHandle, NbdServer, NbdStats, OpStats};
