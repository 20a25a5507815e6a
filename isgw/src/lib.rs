//! Inter-site links (ISGW): a site ships the versions of chosen buckets to another site, and
//! only the tree nodes and chunks the other side lacks.
//!
//! - [`proto`]: the `link` service's messages;
//! - [`site`]: the two ends of a transfer ([`Source`], [`Sink`]) and this site as both
//!   ([`LocalSite`]); [`RemoteSite`] is the other site as both, over QUIC;
//! - [`ship`](mod@ship): the transfer engine;
//! - [`LinkService`] answers the other sites, behind a [`LinkListener`];
//! - [`Links`] runs the links configured in `DATA_DIR/link/links.json` ([`config`]);
//! - [`identity`]: the site CA, the link certificate and the trusted CAs.

pub mod config;
mod error;
mod fetch;
pub mod identity;
mod listener;
pub mod mirror;
pub mod proto;
mod remote;
mod runner;
mod service;
pub mod ship;
pub mod site;

pub use config::{DataMode, Direction, LinkConfig, LinkDir, LinksFile, Mode};
pub use error::{LinkError, LinkResult};
pub use listener::LinkListener;
pub use remote::RemoteSite;
pub use runner::{check_fixed, IdentitySource, LinkPhase, LinkStatus, Links, DEFAULT_POLL};
pub use service::LinkService;
pub use ship::{Traffic, TrafficSnapshot};
pub use site::{Applied, LocalSite, Sink, Source};
