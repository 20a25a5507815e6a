//! The bench's results and their three renderings: a text table, Markdown for BENCHMARKS.md,
//! and JSON.

use serde_json::{json, Value};

use super::data::DESCRIPTION;
use super::numbers::{format_size, median, median_index, mib_per_s, percentile};
use super::pipeline::PipelineResult;
use super::s3::Phase;

/// The PUT/bound ratio the write path aims for on large objects.
pub const AIM: f64 = 0.5;

/// Everything one run measured.
pub struct Report {
    /// Cores of this machine.
    pub cores: usize,
    /// The pipeline bound.
    pub pipeline: PipelineResult,
    /// The S3 phases, unless `--pipeline-only`.
    pub s3: Option<S3Report>,
}

/// The S3 part of a run.
pub struct S3Report {
    /// Endpoint URL.
    pub endpoint: String,
    /// Whether it was the in-process site.
    pub in_process: bool,
    /// Bucket used.
    pub bucket: String,
    /// Time budget of each phase, seconds.
    pub seconds: f64,
    /// Request budget of each phase.
    pub max_ops: Option<u64>,
    /// Rounds per size.
    pub rounds: u32,
    /// Whether PUT bodies were signed.
    pub sign_payload: bool,
    /// Additional checksum the endpoint computed for every PUT.
    pub checksum: Option<String>,
    /// Server-side encryption of every object (`aes256` or `customer`).
    pub sse: Option<String>,
    /// One row per size and operation, in run order.
    pub rows: Vec<Row>,
}

/// One size and operation over all rounds.
pub struct Row {
    /// Object size, bytes.
    pub size: u64,
    /// "PUT" or "GET".
    pub op: &'static str,
    /// Parallel workers.
    pub workers: usize,
    /// Each round's figures.
    pub rounds: Vec<Summary>,
}

/// The figures of one phase.
#[derive(Clone, Copy)]
pub struct Summary {
    /// Requests completed.
    pub ops: u64,
    /// Phase length, seconds.
    pub secs: f64,
    /// Requests per second.
    pub ops_s: f64,
    /// Body MiB per second.
    pub mib_s: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

impl From<&Phase> for Summary {
    fn from(p: &Phase) -> Summary {
        Summary {
            ops: p.ops,
            secs: p.secs,
            ops_s: if p.secs > 0.0 {
                p.ops as f64 / p.secs
            } else {
                0.0
            },
            mib_s: mib_per_s(p.bytes, p.secs),
            p50_ms: median(&p.latencies_ms),
            p99_ms: percentile(&p.latencies_ms, 99.0),
        }
    }
}

impl Row {
    /// The round with the median MiB/s.
    pub fn median(&self) -> Summary {
        let mibs: Vec<f64> = self.rounds.iter().map(|r| r.mib_s).collect();
        median_index(&mibs).map_or(
            Summary {
                ops: 0,
                secs: 0.0,
                ops_s: 0.0,
                mib_s: 0.0,
                p50_ms: 0.0,
                p99_ms: 0.0,
            },
            |i| self.rounds[i],
        )
    }
}

impl Report {
    /// PUT MiB/s over the pipeline bound, per PUT row.
    fn ratios(&self) -> Vec<(u64, f64)> {
        let Some(s3) = &self.s3 else { return vec![] };
        s3.rows
            .iter()
            .filter(|r| r.op == "PUT" && self.pipeline.mib_s > 0.0)
            .map(|r| (r.size, r.median().mib_s / self.pipeline.mib_s))
            .collect()
    }

    /// The headline ratio: 64 MiB objects if measured, else the largest size.
    fn headline(&self) -> Option<(u64, f64)> {
        let ratios = self.ratios();
        ratios
            .iter()
            .find(|(s, _)| *s == 64 << 20)
            .or_else(|| ratios.iter().max_by_key(|(s, _)| *s))
            .copied()
    }

    fn ratio_cell(&self, row: &Row) -> String {
        match self
            .ratios()
            .iter()
            .find(|(s, _)| row.op == "PUT" && *s == row.size)
        {
            Some((_, r)) => format!("{:.1} %", r * 100.0),
            None => String::new(),
        }
    }

    fn headline_line(&self) -> Option<String> {
        let (size, r) = self.headline()?;
        let verdict = if r >= AIM { "met" } else { "not met" };
        Some(format!(
            "{} PUT ÷ pipeline bound: {:.1} % (aim: ≥ {:.0} %, {verdict})",
            format_size(size),
            r * 100.0,
            AIM * 100.0
        ))
    }

    fn pipeline_title(&self) -> String {
        let p = &self.pipeline;
        format!(
            "Pipeline bound (in-process, no I/O): a body of {} cut by FastCDC into {} chunks; MD5 \
             and the cut points on one thread while {} workers hash (BLAKE3) and compress (zstd) \
             the chunks; stored/raw {:.2}",
            format_size(p.size),
            p.chunks,
            p.workers,
            p.stored_ratio
        )
    }

    fn s3_title(s3: &S3Report) -> String {
        let site = if s3.in_process {
            " (in-process single-node site, sharing the CPU with the client)"
        } else {
            ""
        };
        let budget = match s3.max_ops {
            Some(n) => format!("{} s or {n} requests", s3.seconds),
            None => format!("{} s", s3.seconds),
        };
        let mut signing = if s3.sign_payload {
            "signed payloads".to_string()
        } else {
            "UNSIGNED-PAYLOAD".to_string()
        };
        if let Some(a) = &s3.checksum {
            signing.push_str(&format!(", endpoint computes a {a} checksum of every PUT"));
        }
        match s3.sse.as_deref() {
            Some("aes256") => signing.push_str(", objects stored with SSE-S3 (AES256)"),
            Some(_) => signing.push_str(", objects stored with SSE-C (a customer key)"),
            None => {}
        }
        format!(
            "S3 at {}{site}, bucket `{}`: per size a PUT phase then a GET phase of {budget} each, \
             {}, the round with the median MiB/s shown; {signing}",
            s3.endpoint,
            s3.bucket,
            plural(s3.rounds as usize, "round")
        )
    }

    /// The plain-text report.
    pub fn text(&self) -> String {
        let p = &self.pipeline;
        let mut out = format!(
            "cairn bench on {} cores\ndata: {DESCRIPTION}\n\n",
            self.cores
        );
        out += &format!("{}\n", self.pipeline_title());
        let rounds: Vec<String> = p.rounds.iter().map(|r| format!("{r:.1}")).collect();
        out += &format!(
            "  bound           {:>8.1} MiB/s  (median of {}: {})\n",
            p.mib_s,
            plural(p.rounds.len(), "round"),
            rounds.join(", ")
        );
        let c = &p.one_core;
        out += &format!(
            "  one core each   MD5 {:.1}, FastCDC {:.1}, BLAKE3 {:.1}, zstd codec {:.1} MiB/s\n",
            c.md5, c.fastcdc, c.blake3, c.zstd
        );
        let Some(s3) = &self.s3 else { return out };
        out += &format!("\n{}\n", Self::s3_title(s3));
        out += &format!(
            "{:<9} {:<4} {:>7} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10}\n",
            "size", "op", "workers", "ops", "ops/s", "MiB/s", "p50 ms", "p99 ms", "PUT/bound"
        );
        for row in &s3.rows {
            let m = row.median();
            out += &format!(
                "{:<9} {:<4} {:>7} {:>7} {:>10.1} {:>9.1} {:>9.2} {:>9.2} {:>10}\n",
                format_size(row.size),
                row.op,
                row.workers,
                m.ops,
                m.ops_s,
                m.mib_s,
                m.p50_ms,
                m.p99_ms,
                self.ratio_cell(row)
            );
        }
        if let Some(line) = self.headline_line() {
            out += &format!("\n{line}\n");
        }
        out
    }

    /// The report as Markdown, ready for BENCHMARKS.md.
    pub fn markdown(&self) -> String {
        let p = &self.pipeline;
        let c = &p.one_core;
        let mut out = format!("Data: {DESCRIPTION}.\n\n{}.\n\n", self.pipeline_title());
        out += "| Stage | MiB/s |\n|---|---:|\n";
        out += &format!(
            "| **Pipeline bound** (all stages at once, median of {}) | **{:.1}** |\n",
            plural(p.rounds.len(), "round"),
            p.mib_s
        );
        for (name, v) in [
            ("MD5, one core", c.md5),
            ("FastCDC cut points, one core", c.fastcdc),
            ("BLAKE3, one core", c.blake3),
            ("chunk codec (zstd level 1), one core", c.zstd),
        ] {
            out += &format!("| {name} | {v:.1} |\n");
        }
        let Some(s3) = &self.s3 else { return out };
        out += &format!("\n{}.\n\n", Self::s3_title(s3));
        out += "| Object size | Op | Workers | Ops | ops/s | MiB/s | p50 ms | p99 ms | PUT ÷ bound |\n";
        out += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
        for row in &s3.rows {
            let m = row.median();
            out += &format!(
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} |\n",
                format_size(row.size),
                row.op,
                row.workers,
                m.ops,
                m.ops_s,
                m.mib_s,
                m.p50_ms,
                m.p99_ms,
                self.ratio_cell(row)
            );
        }
        if let Some(line) = self.headline_line() {
            out += &format!("\n**{line}**\n");
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let p = &self.pipeline;
        let summary = |s: &Summary| {
            json!({
                "ops": s.ops, "secs": s.secs, "ops_per_s": s.ops_s, "mib_per_s": s.mib_s,
                "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
            })
        };
        let s3 = self.s3.as_ref().map(|s3| {
            json!({
                "endpoint": s3.endpoint,
                "in_process_site": s3.in_process,
                "bucket": s3.bucket,
                "phase_seconds": s3.seconds,
                "phase_max_ops": s3.max_ops,
                "rounds": s3.rounds,
                "signed_payload": s3.sign_payload,
                "checksum": s3.checksum,
                "sse": s3.sse,
                "results": s3.rows.iter().map(|r| {
                    let mut v = summary(&r.median());
                    v["size_bytes"] = json!(r.size);
                    v["size"] = json!(format_size(r.size));
                    v["op"] = json!(r.op);
                    v["workers"] = json!(r.workers);
                    v["rounds"] = json!(r.rounds.iter().map(summary).collect::<Vec<_>>());
                    v
                }).collect::<Vec<_>>(),
                "put_over_bound": self.ratios().iter().map(|(size, r)| json!({
                    "size_bytes": size, "size": format_size(*size), "ratio": r,
                })).collect::<Vec<_>>(),
            })
        });
        json!({
            "cores": self.cores,
            "data": DESCRIPTION,
            "pipeline": {
                "size_bytes": p.size,
                "workers": p.workers,
                "chunks": p.chunks,
                "stored_ratio": p.stored_ratio,
                "mib_per_s": p.mib_s,
                "rounds_mib_per_s": p.rounds,
                "one_core_mib_per_s": {
                    "md5": p.one_core.md5,
                    "fastcdc": p.one_core.fastcdc,
                    "blake3": p.one_core.blake3,
                    "zstd_codec": p.one_core.zstd,
                },
            },
            "s3": s3,
            "aim_put_over_bound": AIM,
        })
    }
}
