//! The target's metrics: connections, sessions, logins, protocol errors, and per target and
//! LUN the commands by operation code, CHECK CONDITIONs by sense key, bytes and latency
//! (`cairn_iscsi_*` on the admin endpoint's `/metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::metrics::{self, Histogram, MetricsSource};

use super::server::IscsiStats;

/// What one LUN of one target has done.
pub struct LunStats {
    commands: [AtomicU64; 256],
    sense_keys: [AtomicU64; 16],
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
    latency: Histogram,
}

impl Default for LunStats {
    fn default() -> LunStats {
        LunStats {
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            sense_keys: std::array::from_fn(|_| AtomicU64::new(0)),
            read_bytes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
            latency: Histogram::latency(),
        }
    }
}

impl LunStats {
    /// One command answered: its operation code, the sense key of a CHECK CONDITION, the
    /// bytes it moved and how long it took from its last byte of data to its answer.
    pub(crate) fn record(
        &self,
        opcode: u8,
        sense_key: Option<u8>,
        read: u64,
        written: u64,
        took: Duration,
    ) {
        self.commands[usize::from(opcode)].fetch_add(1, Ordering::Relaxed);
        if let Some(k) = sense_key {
            self.sense_keys[usize::from(k & 0x0f)].fetch_add(1, Ordering::Relaxed);
        }
        self.read_bytes.fetch_add(read, Ordering::Relaxed);
        self.write_bytes.fetch_add(written, Ordering::Relaxed);
        self.latency.observe_duration(took);
    }
}

/// The LUN statistics of every target, by (target name, LUN).
#[derive(Default)]
pub(crate) struct Units(Mutex<BTreeMap<(String, u64), Arc<LunStats>>>);

impl Units {
    pub(crate) fn get(&self, target: &str, lun: u64) -> Arc<LunStats> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((target.to_string(), lun)).or_default().clone()
    }
}

/// The sense key of sense data as sent (fixed or descriptor format).
pub(crate) fn sense_key(sense: &[u8]) -> Option<u8> {
    match sense.first().map(|b| b & 0x7f) {
        Some(0x70 | 0x71) => sense.get(2).map(|k| k & 0x0f),
        Some(0x72 | 0x73) => sense.get(1).map(|k| k & 0x0f),
        _ => None,
    }
}

/// A name for an operation code in metrics.
fn command_name(op: u8) -> &'static str {
    match op {
        0x00 => "TEST UNIT READY",
        0x03 => "REQUEST SENSE",
        0x08 => "READ(6)",
        0x0a => "WRITE(6)",
        0x12 => "INQUIRY",
        0x15 => "MODE SELECT(6)",
        0x16 => "RESERVE(6)",
        0x17 => "RELEASE(6)",
        0x1a => "MODE SENSE(6)",
        0x1b => "START STOP UNIT",
        0x1e => "PREVENT ALLOW MEDIUM REMOVAL",
        0x25 => "READ CAPACITY(10)",
        0x28 => "READ(10)",
        0x2a => "WRITE(10)",
        0x2e => "WRITE AND VERIFY(10)",
        0x2f => "VERIFY(10)",
        0x35 => "SYNCHRONIZE CACHE(10)",
        0x41 => "WRITE SAME(10)",
        0x42 => "UNMAP",
        0x55 => "MODE SELECT(10)",
        0x5a => "MODE SENSE(10)",
        0x5e => "PERSISTENT RESERVE IN",
        0x5f => "PERSISTENT RESERVE OUT",
        0x88 => "READ(16)",
        0x89 => "COMPARE AND WRITE",
        0x8a => "WRITE(16)",
        0x8e => "WRITE AND VERIFY(16)",
        0x8f => "VERIFY(16)",
        0x91 => "SYNCHRONIZE CACHE(16)",
        0x93 => "WRITE SAME(16)",
        0x9e => "SERVICE ACTION IN(16)",
        0xa0 => "REPORT LUNS",
        0xa3 => "MAINTENANCE IN",
        0xa8 => "READ(12)",
        0xaa => "WRITE(12)",
        0xae => "WRITE AND VERIFY(12)",
        0xaf => "VERIFY(12)",
        _ => "other",
    }
}

const SENSE_KEYS: [&str; 16] = [
    "NO SENSE",
    "RECOVERED ERROR",
    "NOT READY",
    "MEDIUM ERROR",
    "HARDWARE ERROR",
    "ILLEGAL REQUEST",
    "UNIT ATTENTION",
    "DATA PROTECT",
    "BLANK CHECK",
    "VENDOR SPECIFIC",
    "COPY ABORTED",
    "ABORTED COMMAND",
    "RESERVED",
    "VOLUME OVERFLOW",
    "MISCOMPARE",
    "COMPLETED",
];

impl MetricsSource for IscsiStats {
    fn render(&self, out: &mut String) {
        let totals: [(&str, &str, &str, &AtomicU64); 6] = [
            (
                "cairn_iscsi_connections_total",
                "counter",
                "Connections accepted.",
                &self.connections,
            ),
            (
                "cairn_iscsi_sessions",
                "gauge",
                "Sessions in the full-feature phase.",
                &self.active_sessions,
            ),
            (
                "cairn_iscsi_login_failures_total",
                "counter",
                "Logins refused or failed.",
                &self.login_failures,
            ),
            (
                "cairn_iscsi_protocol_errors_total",
                "counter",
                "PDUs rejected and connections dropped for breaking the protocol.",
                &self.protocol_errors,
            ),
            (
                "cairn_iscsi_task_management_total",
                "counter",
                "Task management requests.",
                &self.task_management,
            ),
            (
                "cairn_iscsi_commands_answered_total",
                "counter",
                "SCSI commands answered.",
                &self.commands,
            ),
        ];
        for (name, kind, help, v) in totals {
            metrics::header(out, name, kind, help);
            metrics::sample(out, name, "", v.load(Ordering::Relaxed));
        }
        let units: Vec<((String, u64), Arc<LunStats>)> = {
            let m = self.units.0.lock().unwrap_or_else(|e| e.into_inner());
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        metrics::header(
            out,
            "cairn_iscsi_commands_total",
            "counter",
            "SCSI commands by target, LUN and operation code.",
        );
        for ((target, lun), s) in &units {
            let lun = lun.to_string();
            for (op, n) in s.commands.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let code = format!("0x{op:02x}");
                    let l = metrics::labels(&[
                        ("target", target),
                        ("lun", &lun),
                        ("opcode", &code),
                        ("command", command_name(op as u8)),
                    ]);
                    metrics::sample(out, "cairn_iscsi_commands_total", &l, n);
                }
            }
        }
        metrics::header(
            out,
            "cairn_iscsi_check_conditions_total",
            "counter",
            "Commands answered with CHECK CONDITION, by sense key.",
        );
        for ((target, lun), s) in &units {
            let lun = lun.to_string();
            for (key, n) in s.sense_keys.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let l = metrics::labels(&[
                        ("target", target),
                        ("lun", &lun),
                        ("sense_key", SENSE_KEYS[key]),
                    ]);
                    metrics::sample(out, "cairn_iscsi_check_conditions_total", &l, n);
                }
            }
        }
        for (name, help, pick) in [
            ("cairn_iscsi_read_bytes_total", "Bytes sent in Data-In.", 0),
            (
                "cairn_iscsi_write_bytes_total",
                "Bytes of write data taken by commands.",
                1,
            ),
        ] {
            metrics::header(out, name, "counter", help);
            for ((target, lun), s) in &units {
                let l = metrics::labels(&[("target", target), ("lun", &lun.to_string())]);
                let v = if pick == 0 {
                    &s.read_bytes
                } else {
                    &s.write_bytes
                };
                metrics::sample(out, name, &l, v.load(Ordering::Relaxed));
            }
        }
        metrics::header(
            out,
            "cairn_iscsi_command_seconds",
            "histogram",
            "Time from a command's last data to its answer.",
        );
        for ((target, lun), s) in &units {
            let l = metrics::labels(&[("target", target), ("lun", &lun.to_string())]);
            s.latency.render(out, "cairn_iscsi_command_seconds", &l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sense_keys_are_read_from_both_formats() {
        assert_eq!(sense_key(&[0x70, 0, 0x05, 0, 0, 0, 0, 10]), Some(5));
        assert_eq!(sense_key(&[0xf0, 0, 0x06]), Some(6));
        assert_eq!(sense_key(&[0x72, 0x0e, 0x1d, 0]), Some(0x0e));
        assert_eq!(sense_key(&[]), None);
        assert_eq!(sense_key(&[0x70]), None);
    }

    #[test]
    fn per_lun_series_render_with_their_labels() {
        let stats = IscsiStats::default();
        let lun = stats.units.get("iqn.2026-12.dev.cairn:local:db", 0);
        lun.record(0x2a, None, 0, 4096, Duration::from_millis(2));
        lun.record(0x28, Some(5), 512, 0, Duration::from_millis(1));
        let mut out = String::new();
        stats.render(&mut out);
        assert!(out.contains(
            "cairn_iscsi_commands_total{target=\"iqn.2026-12.dev.cairn:local:db\",lun=\"0\",opcode=\"0x2a\",command=\"WRITE(10)\"} 1"
        ), "{out}");
        assert!(out.contains("sense_key=\"ILLEGAL REQUEST\"} 1"), "{out}");
        assert!(out.contains("cairn_iscsi_write_bytes_total{target=\"iqn.2026-12.dev.cairn:local:db\",lun=\"0\"} 4096"), "{out}");
        assert!(out.contains("cairn_iscsi_command_seconds_count{target=\"iqn.2026-12.dev.cairn:local:db\",lun=\"0\"} 2"), "{out}");
    }
}
