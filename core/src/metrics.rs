//! Pieces for Prometheus text exposition (format 0.0.4) without a metrics library: a
//! fixed-bucket [`Histogram`] on atomics, `# HELP`/`# TYPE` headers, label value escaping, and
//! the [`MetricsSource`] trait the admin endpoint's `/metrics` collects from.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets in seconds (upper bounds; `+Inf` is implied), shared by Cairn's histograms.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Something that appends Prometheus text lines to `/metrics`.
pub trait MetricsSource: Send + Sync {
    /// Appends this source's metrics (with their `# HELP` and `# TYPE` lines) to `out`.
    fn render(&self, out: &mut String);
}

/// A histogram with fixed upper bounds: recording is a few relaxed atomic adds, no lock.
///
/// A value lands in the first bucket whose bound is ≥ it (Prometheus `le` semantics), or in
/// `+Inf`. The count is the sum of the buckets, so a rendering always has `_count` equal to the
/// `+Inf` bucket even while values are being recorded.
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`; not cumulative.
    counts: Box<[AtomicU64]>,
    /// The sum of recorded values, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with `bounds` (ascending, finite) as bucket upper bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }

    /// Records `value`. NaN is ignored.
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Values recorded so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Sum of the values recorded so far.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// Appends `NAME_bucket{LABELS,le="..."}` lines (cumulative, `+Inf` last), `NAME_sum` and
    /// `NAME_count`. `labels` is a rendered label list without braces (see [`labels`]), or
    /// empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let _ = match self.bounds.get(i) {
                Some(b) => writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}"),
                None => writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        sample(out, &format!("{name}_sum"), labels, self.sum());
        sample(out, &format!("{name}_count"), labels, cumulative);
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .field("sum", &self.sum())
            .finish()
    }
}

/// Appends the `# HELP` and `# TYPE` lines of metric `name` (`kind`: counter, gauge,
/// histogram).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one sample line: `NAME{LABELS} VALUE`, or `NAME VALUE` when `labels` is empty.
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = if labels.is_empty() {
        writeln!(out, "{name} {value}")
    } else {
        writeln!(out, "{name}{{{labels}}} {value}")
    };
}

/// Renders a label list without braces, `a="x",b="y"`, escaping each value.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(&mut out, value);
        out.push('"');
    }
    out
}

/// Appends `value` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        static B: &[f64] = &[0.1, 1.0, 10.0];
        let h = Histogram::new(B);
        for v in [0.0, 0.1, 0.10001, 1.0, 5.0, 10.0, 10.5, 1e9] {
            h.observe(v);
        }
        h.observe(f64::NAN);
        assert_eq!(h.count(), 8);
        assert!((h.sum() - (0.0 + 0.1 + 0.10001 + 1.0 + 5.0 + 10.0 + 10.5 + 1e9)).abs() < 1e-3);
        let mut out = String::new();
        h.render(&mut out, "t_seconds", "op=\"x\"");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "t_seconds_bucket{op=\"x\",le=\"0.1\"} 2",
                "t_seconds_bucket{op=\"x\",le=\"1\"} 4",
                "t_seconds_bucket{op=\"x\",le=\"10\"} 6",
                "t_seconds_bucket{op=\"x\",le=\"+Inf\"} 8",
                &format!("t_seconds_sum{{op=\"x\"}} {}", h.sum()),
                "t_seconds_count{op=\"x\"} 8",
            ]
        );
    }

    #[test]
    fn an_empty_histogram_renders_zeros_without_labels() {
        let h = Histogram::latency();
        let mut out = String::new();
        h.render(&mut out, "d", "");
        assert_eq!(out.lines().count(), LATENCY_BUCKETS.len() + 3);
        assert!(out.starts_with("d_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("d_bucket{le=\"2.5\"} 0\n"));
        assert!(out.contains("d_bucket{le=\"+Inf\"} 0\n"));
        assert!(out.ends_with("d_sum 0\nd_count 0\n"));
    }

    #[test]
    fn durations_are_seconds() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_millis(3));
        h.observe_duration(Duration::from_secs(20));
        let mut out = String::new();
        h.render(&mut out, "d", "");
        assert!(out.contains("d_bucket{le=\"0.001\"} 0\n"));
        assert!(out.contains("d_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("d_bucket{le=\"10\"} 1\n"));
        assert!(out.contains("d_bucket{le=\"+Inf\"} 2\n"));
        assert!((h.sum() - 20.003).abs() < 1e-9);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("peer", "n\"2\\x\ny"), ("kind", "Io")]),
            "peer=\"n\\\"2\\\\x\\ny\",kind=\"Io\""
        );
        assert_eq!(labels(&[]), "");
        let mut out = String::new();
        header(&mut out, "m_total", "counter", "Calls.\nback\\slash");
        sample(&mut out, "m_total", &labels(&[("a", "b")]), 3);
        sample(&mut out, "m_total", "", 4);
        assert_eq!(
            out,
            "# HELP m_total Calls.\\nback\\\\slash\n# TYPE m_total counter\nm_total{a=\"b\"} 3\nm_total 4\n"
        );
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::latency());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe(0.5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 4000);
        assert!((h.sum() - 2000.0).abs() < 1e-6);
    }
}
