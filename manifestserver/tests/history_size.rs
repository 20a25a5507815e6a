//! The bound on a manifest store's history, in entries and bytes: a stream of overwrites (each
//! logs a new version and the removal of the one it replaces, and leaves a tombstone) read by
//! two consumers, one that keeps up and one that stops halfway, trimmed as the `history-trim`
//! worker does. The same writes on a second store that is never trimmed are the reference.
//!
//! `CAIRN_HISTORY_WRITES` sets the number of overwrites (default 20 000; BENCHMARKS.md has a
//! run with ten million, built with `--release`).

mod common;

use cairn_manifestserver::{HistoryState, ManifestStore, TrimPolicy};
use common::{null_version, open_fast};

const KEYS: u64 = 1000;
/// The retention of the trims (simulated time: consumers acknowledge at the times given).
const RETENTION_MS: u64 = 7 * 86_400_000;

fn writes() -> u64 {
    std::env::var("CAIRN_HISTORY_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn policy(now_ms: u64) -> TrimPolicy {
    TrimPolicy {
        now_ms,
        retention_ms: RETENTION_MS,
        peers: vec!["ae/2".into(), "ae/3".into()],
    }
}

fn line(what: &str, h: &HistoryState, tombstones: u64) {
    println!(
        "{what}: last seq {}, log entries {}, log {} bytes, tombstones {tombstones}, \
         tombstones {} bytes",
        h.last_seq,
        h.log_entries(),
        h.log_bytes,
        h.tombstone_bytes
    );
}

#[test]
fn the_history_is_bounded_by_the_slowest_live_consumer() {
    let n = writes();
    let (dir, ref_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both come with bucket `b`.
    let (s, reference) = (open_fast(dir.path()), open_fast(ref_dir.path()));
    // Simulated clock for the consumers: a write a millisecond from now on (tombstones carry
    // the wall clock's time of their removal).
    let t0 = wall_ms();
    let tenth = (n / 10).max(1);
    let write = |store: &ManifestStore, i: u64| {
        let m = null_version("b", &format!("k{}", i % KEYS), i + 1, 10);
        store.apply(&m).unwrap();
    };
    for i in 0..n {
        write(&s, i);
        write(&reference, i);
        if (i + 1) % tenth == 0 {
            let now = t0 + i;
            let end = s.stats().unwrap().last_seq;
            // ae/2 keeps up; ae/3 stops reading halfway through.
            s.ack_changes("ae/2", end, now).unwrap();
            if i < n / 2 {
                s.ack_changes("ae/3", end, now).unwrap();
            }
            s.trim_history_with(&policy(now)).unwrap();
        }
    }
    s.compact_history();
    reference.compact_history();
    let never = reference.history().unwrap();
    line(
        "never trimmed",
        &never,
        reference.count_tombstones().unwrap(),
    );
    let held = s.history().unwrap();
    line(
        "trimmed, one reader silent since halfway",
        &held,
        s.count_tombstones().unwrap(),
    );
    // Every write logs two changes once each key has a version: the log holds what ae/3
    // has not read, the second half.
    assert_eq!(never.log_entries(), never.last_seq);
    let ae3 = held.consumers.iter().find(|c| c.name == "ae/3").unwrap();
    assert_eq!(held.first_seq, ae3.acked + 1);
    assert_eq!(held.log_entries(), held.last_seq - ae3.acked);
    assert!(
        held.log_entries() <= never.log_entries() * 6 / 10,
        "{held:?}"
    );

    // ae/3 stays silent for longer than the retention: the log goes whole, and the
    // tombstones (older than the retention by then) with it.
    let later = (t0 + n).max(wall_ms()) + RETENTION_MS + 1;
    s.ack_changes("ae/2", held.last_seq, later).unwrap();
    let r = s.trim_history_with(&policy(later)).unwrap();
    assert_eq!(r.expired, vec!["ae/3".to_string()]);
    s.compact_history();
    let after = s.history().unwrap();
    line(
        "trimmed, the silent reader past the retention",
        &after,
        s.count_tombstones().unwrap(),
    );
    assert_eq!(after.log_entries(), 0);
    assert_eq!(s.count_tombstones().unwrap(), 0);
    assert!(reference.count_tombstones().unwrap() >= n.saturating_sub(KEYS));
}

/// Now, by the wall clock (as the store stamps tombstones).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
