//! The iSCSI target (RFC 7143): volumes as logical units that initiators (Linux open-iscsi,
//! libiscsi, hypervisors, Kubernetes nodes) log in to.
//!
//! Each volume is the LUN 0 of a target of its own, `PREFIX:VOLUME` (the prefix is derived
//! from the site's name): one target per volume, as OpenEBS exports them, so an initiator
//! logs in to exactly the volumes it is allowed to, and a volume's access rules (initiator
//! names, CHAP) are the target's. A portal serves every target.
//!
//! Layers: [`pdu`] reads and writes PDUs with every length checked first; [`text`] parses
//! text keys and negotiates a session's parameters; [`login`] runs the login phase (security
//! with CHAP, operational negotiation); [`session`] runs the full-feature phase of a
//! connection (command windows, R2T and Data-Out, Data-In with status, task management,
//! keepalives, logout); [`server`] accepts connections and keeps the sessions and logical
//! units that connections share. SCSI itself is [`crate::scsi`]'s.

mod login;
mod metrics;
mod pdu;
mod server;
mod session;
mod text;

pub use metrics::LunStats;
pub use server::{
    check_target_prefix, default_target_prefix, target_name, ChapSecret, ExportAccess, IscsiAccess,
    IscsiConfig, IscsiHandle, IscsiServer, IscsiStats, OpenAccess,
};
