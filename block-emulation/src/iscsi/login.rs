//! The login phase (RFC 7143 §6): security negotiation (no authentication, or CHAP with MD5,
//! one-way or mutual), then operational negotiation, up to the full-feature phase. Refusals
//! carry the status class and detail the RFC gives for each cause.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use md5::{Digest, Md5};
use rand::RngCore;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::{debug, info};

use super::pdu::{self, op, Bhs, Digests, OutPdu, ReadError};
use super::server::{ExportAccess, SessionEntry, Shared};
use super::text::{self, Params};
use crate::scsi::LogicalUnit;

/// Login stages (CSG / NSG values).
const SECURITY: u8 = 0;
const FULL_FEATURE: u8 = 3;

/// Transit and continue bits of a login PDU.
const T_BIT: u8 = 0x80;
const C_BIT: u8 = 0x40;

/// Status classes and details (RFC 7143 §11.13.5).
mod status {
    pub(super) const INITIATOR_ERROR: u16 = 0x0200;
    pub(super) const AUTH_FAILED: u16 = 0x0201;
    pub(super) const FORBIDDEN: u16 = 0x0202;
    pub(super) const NOT_FOUND: u16 = 0x0203;
    pub(super) const UNSUPPORTED_VERSION: u16 = 0x0205;
    pub(super) const MISSING_PARAMETER: u16 = 0x0207;
    pub(super) const SESSION_TYPE: u16 = 0x0209;
    pub(super) const NO_SESSION: u16 = 0x020a;
    pub(super) const INVALID_DURING_LOGIN: u16 = 0x020b;
    pub(super) const TARGET_ERROR: u16 = 0x0300;
}

/// Largest login PDU data segment taken: the 8 KiB every initiator may send during login.
const LOGIN_MAX_RECV: usize = 8192;

/// Why a login failed (the initiator has been sent the refusal where one applies).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Pdu(ReadError),
    #[error("refused with status {status:#06x}: {reason}")]
    Refused { status: u16, reason: String },
}

/// A session that reached the full-feature phase.
pub(crate) struct LoggedIn {
    pub(crate) initiator: String,
    pub(crate) isid: [u8; 6],
    pub(crate) tsih: u16,
    /// The target's name; `None` for a discovery session.
    pub(crate) target: Option<String>,
    pub(crate) unit: Option<Arc<LogicalUnit>>,
    pub(crate) params: Params,
    /// The CmdSN the first full-feature command carries.
    pub(crate) exp_cmd_sn: u32,
    /// The StatSN of the next status sent.
    pub(crate) stat_sn: u32,
    /// Becomes true when a new login reinstates this session (the old one then ends).
    pub(crate) kill: watch::Receiver<bool>,
    /// This portal, as SendTargets reports it (`ADDR:PORT,TPGT`).
    pub(crate) portal: String,
}

enum Auth {
    /// Nothing chosen yet.
    Start,
    /// CHAP chosen: the algorithm comes next.
    ChapAlgorithm,
    /// Challenge sent: the response comes next.
    ChapResponse { id: u8, challenge: [u8; 16] },
    /// Authenticated (or no authentication needed).
    Done,
}

/// Decodes a CHAP binary value: `0x` hex or `0b` base64 (RFC 7143 §6.1).
fn chap_decode(v: &str) -> Option<Vec<u8>> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        let h = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_string()
        };
        return hex::decode(h).ok();
    }
    if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        return base64::engine::general_purpose::STANDARD.decode(b).ok();
    }
    None
}

fn chap_hex(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// The CHAP response to `challenge` with identifier `id`: MD5(id, secret, challenge).
fn chap_response(id: u8, secret: &str, challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret.as_bytes());
    h.update(challenge);
    h.finalize().into()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Login<'a, S> {
    stream: &'a mut S,
    shared: &'a Shared,
    isid: [u8; 6],
    itt: u32,
    cmd_sn: u32,
    stat_sn: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Login<'_, S> {
    async fn send(
        &mut self,
        flags: u8,
        tsih: u16,
        status: u16,
        pairs: &[(String, String)],
    ) -> std::io::Result<()> {
        let mut bhs = Bhs::new(op::LOGIN_RESP);
        bhs.0[1] = flags;
        bhs.0[8..14].copy_from_slice(&self.isid);
        bhs.set_u16(14, tsih);
        bhs.set_itt(self.itt);
        bhs.set_u32(24, self.stat_sn);
        self.stat_sn = self.stat_sn.wrapping_add(1);
        bhs.set_u32(28, self.cmd_sn);
        bhs.set_u32(
            32,
            self.cmd_sn
                .wrapping_add(self.shared.config.queue_depth)
                .wrapping_sub(1),
        );
        bhs.set_u16(36, status);
        let data = text::encode(pairs);
        let mut out = OutPdu::with_data(bhs, vec![data.into()]);
        let (head, hl, tail, tl) = out.finish(Digests::default());
        let mut buf = head[..hl].to_vec();
        for p in &out.data {
            buf.extend_from_slice(p);
        }
        buf.extend_from_slice(&tail[..tl]);
        self.stream.write_all(&buf).await?;
        self.stream.flush().await
    }

    async fn refuse(&mut self, status: u16, reason: impl Into<String>) -> LoginError {
        let reason = reason.into();
        if let Err(e) = self.send(0, 0, status, &[]).await {
            debug!(error = %e, "sending a login refusal failed");
        }
        LoginError::Refused { status, reason }
    }
}

fn get<'p>(pairs: &'p [(String, String)], key: &str) -> Option<&'p str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Runs the login phase on a new connection. `Ok(None)`: the initiator closed the connection
/// first.
pub(crate) async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: Option<SocketAddr>,
    shared: &Shared,
) -> Result<Option<LoggedIn>, LoginError> {
    let limits = shared.config.limits();
    let mut first = true;
    let mut stage = SECURITY;
    let mut auth = Auth::Start;
    let mut access = ExportAccess::default();
    let mut params = Params::default();
    let mut declared = false;
    let mut initiator = String::new();
    let mut target: Option<String> = None;
    let mut volume: Option<String> = None;
    let mut pending_text: Vec<u8> = Vec::new();
    let mut l = Login {
        stream,
        shared,
        isid: [0; 6],
        itt: 0,
        cmd_sn: 0,
        stat_sn: 0,
    };
    loop {
        let pdu = match pdu::read_pdu(l.stream, Digests::default(), LOGIN_MAX_RECV).await {
            Ok(p) => p,
            Err(ReadError::Closed) => return Ok(None),
            Err(e) => return Err(LoginError::Pdu(e)),
        };
        let b = &pdu.bhs;
        if b.opcode() != op::LOGIN_REQ {
            return Err(l
                .refuse(
                    status::INVALID_DURING_LOGIN,
                    format!("opcode {:#04x} during login", b.opcode()),
                )
                .await);
        }
        let flags = b.flags();
        let (transit, cont) = (flags & T_BIT != 0, flags & C_BIT != 0);
        let (csg, nsg) = ((flags >> 2) & 3, flags & 3);
        l.itt = b.itt();
        l.cmd_sn = b.u32_at(24);
        if first {
            l.isid.copy_from_slice(&b.0[8..14]);
            l.stat_sn = b.u32_at(28);
        }
        let (version_max, version_min) = (b.0[2], b.0[3]);
        if version_min > 0 || version_max < version_min {
            return Err(l
                .refuse(
                    status::UNSUPPORTED_VERSION,
                    format!("versions {version_min}-{version_max} offered; this target speaks 0"),
                )
                .await);
        }
        if transit && cont {
            return Err(l
                .refuse(status::INITIATOR_ERROR, "both T and C bits set")
                .await);
        }
        if csg < stage || csg == 2 || csg == FULL_FEATURE || (transit && (nsg <= csg || nsg == 2)) {
            return Err(l
                .refuse(
                    status::INITIATOR_ERROR,
                    format!("bad stage transition {csg} -> {nsg}"),
                )
                .await);
        }
        if pending_text.len() + pdu.data.len() > text::MAX_TEXT_LEN {
            return Err(l
                .refuse(status::INITIATOR_ERROR, "login text too long")
                .await);
        }
        pending_text.extend_from_slice(&pdu.data);
        if cont {
            // More text follows: acknowledge with an empty response.
            l.send(csg << 2, 0, 0, &[]).await?;
            continue;
        }
        let pairs = match text::parse(&std::mem::take(&mut pending_text)) {
            Ok(p) => p,
            Err(e) => return Err(l.refuse(status::INITIATOR_ERROR, e.to_string()).await),
        };
        let mut answers: Vec<(String, String)> = Vec::new();
        if first {
            let Some(name) = get(&pairs, "InitiatorName") else {
                return Err(l
                    .refuse(status::MISSING_PARAMETER, "no InitiatorName")
                    .await);
            };
            if !text::valid_iscsi_name(&name.to_ascii_lowercase()) {
                return Err(l
                    .refuse(
                        status::INITIATOR_ERROR,
                        format!("{name:?} is not an iSCSI name"),
                    )
                    .await);
            }
            initiator = name.to_string();
            if b.u16_at(14) != 0 {
                // One connection per session: there is no session to add a connection to.
                return Err(l
                    .refuse(
                        status::NO_SESSION,
                        "adding a connection to a session (TSIH set)",
                    )
                    .await);
            }
            match get(&pairs, "SessionType").unwrap_or("Normal") {
                "Discovery" => {}
                "Normal" => {
                    let Some(name) = get(&pairs, "TargetName") else {
                        return Err(l.refuse(status::MISSING_PARAMETER, "no TargetName").await);
                    };
                    let name = name.to_ascii_lowercase();
                    let found = match shared.volume_of(&name).await {
                        Ok(v) => v,
                        Err(e) => return Err(l.refuse(status::TARGET_ERROR, e.to_string()).await),
                    };
                    let Some(vol) = found else {
                        return Err(l
                            .refuse(status::NOT_FOUND, format!("no target {name}"))
                            .await);
                    };
                    access = match shared.access.access(&vol).await {
                        Ok(a) if a.disabled => {
                            return Err(l
                                .refuse(
                                    status::NOT_FOUND,
                                    format!("{name} is not exported over iSCSI"),
                                )
                                .await)
                        }
                        Ok(a) => a,
                        Err(e) => return Err(l.refuse(status::TARGET_ERROR, e.to_string()).await),
                    };
                    if !access.allows(&initiator) {
                        return Err(l
                            .refuse(
                                status::FORBIDDEN,
                                format!("initiator {initiator} may not log in to {name}"),
                            )
                            .await);
                    }
                    target = Some(name);
                    volume = Some(vol);
                }
                other => {
                    return Err(l
                        .refuse(status::SESSION_TYPE, format!("session type {other:?}"))
                        .await)
                }
            }
        }
        let chap_required = access.chap.is_some();
        if csg == SECURITY {
            if let Some(methods) = get(&pairs, "AuthMethod") {
                let offered: Vec<&str> = methods.split(',').collect();
                let chosen = if chap_required {
                    offered.contains(&"CHAP").then_some("CHAP")
                } else {
                    offered.contains(&"None").then_some("None")
                };
                let Some(chosen) = chosen else {
                    return Err(l
                        .refuse(
                            status::AUTH_FAILED,
                            format!(
                                "AuthMethod {methods} offered; this target needs {}",
                                if chap_required { "CHAP" } else { "None" }
                            ),
                        )
                        .await);
                };
                answers.push(("AuthMethod".into(), chosen.into()));
                auth = if chosen == "CHAP" {
                    Auth::ChapAlgorithm
                } else {
                    Auth::Done
                };
            }
            if let Some(algs) = get(&pairs, "CHAP_A") {
                if !matches!(auth, Auth::ChapAlgorithm) {
                    return Err(l
                        .refuse(status::INITIATOR_ERROR, "CHAP_A out of turn")
                        .await);
                }
                if !algs.split(',').any(|a| a == "5") {
                    return Err(l
                        .refuse(
                            status::AUTH_FAILED,
                            format!("CHAP algorithms {algs}: only MD5 (5)"),
                        )
                        .await);
                }
                let mut challenge = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut challenge);
                let id = rand::random::<u8>();
                answers.push(("CHAP_A".into(), "5".into()));
                answers.push(("CHAP_I".into(), id.to_string()));
                answers.push(("CHAP_C".into(), chap_hex(&challenge)));
                auth = Auth::ChapResponse { id, challenge };
            } else if let Some(user) = get(&pairs, "CHAP_N") {
                let Auth::ChapResponse { id, challenge } = auth else {
                    return Err(l
                        .refuse(status::INITIATOR_ERROR, "CHAP_N out of turn")
                        .await);
                };
                let Some(chap) = access.chap.clone() else {
                    return Err(l.refuse(status::AUTH_FAILED, "CHAP not configured").await);
                };
                let response = get(&pairs, "CHAP_R").and_then(chap_decode);
                let expected = chap_response(id, &chap.secret, &challenge);
                if user != chap.user || !response.is_some_and(|r| same(&r, &expected)) {
                    return Err(l
                        .refuse(
                            status::AUTH_FAILED,
                            format!("CHAP failed for user {user:?}"),
                        )
                        .await);
                }
                // Mutual CHAP: the initiator challenges the target in turn.
                if let (Some(i), Some(c)) = (get(&pairs, "CHAP_I"), get(&pairs, "CHAP_C")) {
                    let Some(mutual) = access.mutual_chap.clone() else {
                        return Err(l
                            .refuse(
                                status::AUTH_FAILED,
                                "mutual CHAP asked, but no target secret is set",
                            )
                            .await);
                    };
                    let (Ok(i), Some(c)) = (i.parse::<u8>(), chap_decode(c)) else {
                        return Err(l.refuse(status::AUTH_FAILED, "bad CHAP_I or CHAP_C").await);
                    };
                    if c.is_empty() || c.len() > 1024 || same(&c, &challenge) {
                        // A reflected challenge would make the target answer its own.
                        return Err(l.refuse(status::AUTH_FAILED, "unacceptable CHAP_C").await);
                    }
                    answers.push(("CHAP_N".into(), mutual.user.clone()));
                    answers.push((
                        "CHAP_R".into(),
                        chap_hex(&chap_response(i, &mutual.secret, &c)),
                    ));
                }
                auth = Auth::Done;
            }
            for (k, _) in &pairs {
                if text::is_operational(k) {
                    answers.push((k.clone(), "Reject".into()));
                }
            }
        } else {
            if chap_required && !matches!(auth, Auth::Done) {
                return Err(l
                    .refuse(
                        status::AUTH_FAILED,
                        "this target needs CHAP; the initiator skipped it",
                    )
                    .await);
            }
            auth = Auth::Done;
            answers.extend(params.negotiate(&pairs, &limits));
        }
        if first && target.is_some() {
            answers.push(("TargetPortalGroupTag".into(), "1".into()));
        }
        first = false;
        // Transit when asked and done with this stage.
        let can_transit = transit && matches!(auth, Auth::Done);
        if can_transit && nsg == FULL_FEATURE && !declared {
            params.target_max_recv = limits.max_recv_data_segment_length;
            answers.push((
                "MaxRecvDataSegmentLength".into(),
                params.target_max_recv.to_string(),
            ));
            declared = true;
        }
        if can_transit && nsg == FULL_FEATURE {
            let tsih = shared.new_tsih();
            let (kill_tx, kill_rx) = watch::channel(false);
            if let Some(t) = &target {
                let key = (initiator.to_ascii_lowercase(), l.isid, t.clone());
                let old = shared
                    .sessions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        key,
                        SessionEntry {
                            tsih,
                            kill: kill_tx,
                        },
                    );
                if let Some(old) = old {
                    info!(initiator = %initiator, target = %t, "session reinstated: the old one ends");
                    let _ = old.kill.send(true);
                }
            }
            let unit = match &volume {
                Some(v) => match shared.unit(v).await {
                    Ok(u) => Some(u),
                    Err(e) => {
                        return Err(l.refuse(status::TARGET_ERROR, e.to_string()).await);
                    }
                },
                None => None,
            };
            if let Err(e) = l
                .send(T_BIT | (csg << 2) | FULL_FEATURE, tsih, 0, &answers)
                .await
            {
                if let Some(u) = unit {
                    shared.release_unit(u);
                }
                return Err(e.into());
            }
            let portal = local.map_or_else(|| "127.0.0.1:3260".to_string(), |a| a.to_string());
            return Ok(Some(LoggedIn {
                initiator,
                isid: l.isid,
                tsih,
                target,
                unit,
                params,
                exp_cmd_sn: l.cmd_sn,
                stat_sn: l.stat_sn,
                kill: kill_rx,
                portal: format!("{portal},1"),
            }));
        }
        let flags = if can_transit {
            stage = nsg;
            T_BIT | (csg << 2) | nsg
        } else {
            csg << 2
        };
        l.send(flags, 0, 0, &answers).await?;
        if stage < csg {
            stage = csg;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chap_values_decode_in_hex_and_base64() {
        assert_eq!(chap_decode("0x0102ff"), Some(vec![1, 2, 255]));
        assert_eq!(chap_decode("0x102"), Some(vec![1, 2]));
        assert_eq!(chap_decode("0bAQL/"), Some(vec![1, 2, 255]));
        assert_eq!(chap_decode("0102"), None);
        assert_eq!(chap_decode("0xzz"), None);
    }

    #[test]
    fn chap_response_is_md5_of_id_secret_and_challenge() {
        // RFC 1994: MD5 over the identifier, the secret and the challenge.
        let r = chap_response(1, "secret", &[0xaa; 4]);
        let mut h = Md5::new();
        h.update([
            1u8, b's', b'e', b'c', b'r', b'e', b't', 0xaa, 0xaa, 0xaa, 0xaa,
        ]);
        assert_eq!(&r[..], &h.finalize()[..]);
        assert!(same(&r, &r));
        assert!(!same(&r, &r[..15]));
    }
}
