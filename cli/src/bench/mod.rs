//! `cairn bench`: how fast the write pipeline can go on this machine, and how close an S3
//! endpoint's PUTs and GETs come to it.
//!
//! - [`numbers`]: human sizes and durations, medians and percentiles.
//! - [`data`]: the half-compressible, never-repeating object bodies.
//! - [`pipeline`]: the in-process bound of the write pipeline (MD5 + FastCDC + BLAKE3 + zstd).
//! - [`site`]: the in-process single-node site measured when no endpoint is given.
//! - [`s3`]: the SDK client, the timed PUT and GET phases, the bucket and its cleanup.
//! - [`report`]: the text, Markdown and JSON renderings.

mod data;
pub(crate) mod numbers;
mod pipeline;
mod report;
mod s3;
mod site;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use data::ObjectSource;
use numbers::{format_size, parse_duration, parse_object_size, parse_size};
use report::{Report, Row, S3Report, Summary};
use s3::{Bench, PhaseLimits};

/// Shown by `cairn bench --help`.
const ABOUT_MEASURES: &str = "\
What is measured:

  1. Pipeline bound (in-process, no network, no disk): the CPU work of Cairn's write
     pipeline over a --pipeline-size body. As in a real upload, one thread computes the
     body's MD5 and the FastCDC cut points (both sequential) while one worker per core
     hashes each chunk with BLAKE3 and compresses it with zstd. No PUT on this machine can
     be faster; the result is in MiB/s, the median of --pipeline-rounds rounds.

  2. S3 PUT and GET: for each of --sizes, a PUT phase then a GET phase, each running
     --concurrency workers for --seconds (or --max-ops requests), repeated --rounds times.
     Reported per size and operation: ops/s, MiB/s, median and p99 latency, from the round
     with the median MiB/s; and PUT MiB/s divided by the pipeline bound. PUTs are single
     PutObject requests with UNSIGNED-PAYLOAD (unless --sign-payload). GETs read the objects
     just written and check their length; one object per size and round is read whole and
     its MD5 checked against the PUT's ETag and the bytes sent.

  3. Without --endpoint, the endpoint is a single-node site started in this process (a
     temporary data dir, a random access key, S3 on a free 127.0.0.1 port), stopped and
     removed at the end. It shares the CPU with the client.

The data is half-compressible (each 4 KiB page: 2 KiB random, 2 KiB text), and every page of
every object carries a stamp, so no chunk repeats and dedup cannot make PUTs cheaper. Objects
written are deleted at the end unless --keep (a temporary in-process site is removed whole).
Progress goes to stderr, results to stdout.";

/// Measures the write pipeline's bound and an S3 endpoint's PUT and GET throughput.
#[derive(Args, Debug)]
#[command(after_help = ABOUT_MEASURES)]
pub struct BenchArgs {
    /// S3 endpoint to measure, e.g. http://127.0.0.1:3900. Without it, an in-process
    /// single-node site is started for the run.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Access key id for --endpoint (the in-process site makes its own).
    #[arg(long, env = "CAIRN_ACCESS_KEY_ID")]
    access_key: Option<String>,
    /// Secret key for --endpoint.
    #[arg(long, env = "CAIRN_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Bucket to write to; created if missing (and then deleted at the end unless --keep).
    #[arg(long, default_value = "cairn-bench")]
    bucket: String,
    /// Object sizes, comma-separated, in human units (B, KiB, MiB, GiB; at most 1GiB).
    #[arg(long, value_delimiter = ',', default_value = "4KiB,1MiB,64MiB", value_parser = parse_object_size)]
    sizes: Vec<u64>,
    /// Parallel workers per phase [default: 8 for sizes up to 1 MiB, 2 for larger ones].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: Option<u32>,
    /// Time budget of each PUT or GET phase, in seconds (e.g. 5, 2.5 or 500ms); requests in
    /// flight at the end finish and count.
    #[arg(long, default_value = "5", value_parser = parse_duration)]
    seconds: Duration,
    /// Request budget of each phase: it ends after this many requests even if time is left.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_ops: Option<u64>,
    /// Rounds of PUT and GET phases per size; the round with the median MiB/s is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Body size for the pipeline bound.
    #[arg(long, default_value = "64MiB", value_parser = parse_pipeline_size)]
    pipeline_size: u64,
    /// Rounds of the pipeline bound; the median is reported.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(1..=100))]
    pipeline_rounds: u32,
    /// Measure only the pipeline bound (no S3).
    #[arg(long)]
    pipeline_only: bool,
    /// Print the results as Markdown tables (for BENCHMARKS.md) instead of plain text.
    #[arg(long)]
    markdown: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the objects (and the bucket, and the in-process site's data dir) after the run.
    #[arg(long)]
    keep: bool,
    /// Data dir of the in-process site [default: a new dir in the system temp dir, removed at
    /// the end]. The medium of this dir is part of what PUTs measure.
    #[arg(long, value_name = "DIR", conflicts_with = "endpoint")]
    site_dir: Option<PathBuf>,
    /// Sign PUT bodies (SHA-256 of the payload, computed by the client and checked by the
    /// endpoint) instead of sending UNSIGNED-PAYLOAD.
    #[arg(long)]
    sign_payload: bool,
    /// Ask the endpoint to compute and store an additional checksum of every PUT
    /// (x-amz-sdk-checksum-algorithm: crc32, crc32c, crc64nvme, sha1 or sha256), as clients that
    /// want one do; the client sends no value, so the figure is the endpoint's cost.
    #[arg(long, value_name = "ALGORITHM", value_parser = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])]
    checksum: Option<String>,
    /// Store every object with server-side encryption: `aes256` (SSE-S3, the site's keys) or
    /// `customer` (SSE-C, one random key for the run, sent with every PUT and GET).
    #[arg(long, value_name = "KIND", value_parser = ["aes256", "customer"])]
    sse: Option<String>,
}

fn parse_pipeline_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    if !(1 << 20..=4 << 30).contains(&bytes) {
        return Err(format!("`{s}` is out of range: use 1MiB to 4GiB"));
    }
    Ok(bytes)
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.endpoint.is_some() && (args.access_key.is_none() || args.secret_key.is_none()) {
        bail!(
            "--endpoint needs --access-key and --secret-key (or CAIRN_ACCESS_KEY_ID and \
             CAIRN_SECRET_ACCESS_KEY)"
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let run_id: u64 = rand::random();
    let largest = if args.pipeline_only {
        0
    } else {
        args.sizes.iter().copied().max().unwrap_or(0)
    };
    let pool = largest.max(args.pipeline_size) as usize;
    let source =
        Arc::new(tokio::task::spawn_blocking(move || ObjectSource::new(pool, run_id)).await?);

    let pb = bar(
        u64::from(args.pipeline_rounds),
        "pipeline bound",
        "{pos}/{len} rounds",
    );
    let (src, size, rounds, pb2) = (
        source.clone(),
        args.pipeline_size as usize,
        args.pipeline_rounds,
        pb.clone(),
    );
    let pipeline = tokio::task::spawn_blocking(move || {
        let body = src.object(u64::MAX, size);
        pipeline::measure(&body, rounds, &pb2)
    })
    .await?;
    pb.finish_and_clear();
    eprintln!("pipeline bound: {:.1} MiB/s", pipeline.mib_s);

    let s3 = if args.pipeline_only {
        None
    } else {
        Some(run_s3(&args, source, run_id).await?)
    };
    let report = Report {
        cores,
        pipeline,
        s3,
    };
    if args.markdown {
        print!("{}", report.markdown());
    } else {
        print!("{}", report.text());
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Sets up the endpoint and bucket, runs every phase, then cleans up whatever happened.
async fn run_s3(
    args: &BenchArgs,
    source: Arc<ObjectSource>,
    run_id: u64,
) -> anyhow::Result<S3Report> {
    let site = match &args.endpoint {
        Some(_) => None,
        None => Some(site::start(args.site_dir.as_deref()).await?),
    };
    let (endpoint, access_key, secret_key) = match &site {
        Some(s) => (
            s.endpoint.clone(),
            s.access_key.clone(),
            s.secret_key.clone(),
        ),
        None => (
            args.endpoint.clone().unwrap_or_default(),
            args.access_key.clone().unwrap_or_default(),
            args.secret_key.clone().unwrap_or_default(),
        ),
    };
    if let Some(s) = &site {
        eprintln!(
            "in-process site on {} with data in {}",
            s.endpoint,
            s.dir.path.display()
        );
    }
    let bench = Arc::new(Bench {
        s3: s3::client(&endpoint, &access_key, &secret_key),
        bucket: args.bucket.clone(),
        prefix: format!("bench-{run_id:016x}"),
        source,
        sign_payload: args.sign_payload,
        checksum: args.checksum.as_ref().map(|a| a.to_ascii_uppercase()),
        sse: s3::sse_headers(args.sse.as_deref()),
        next_object: AtomicU64::new(0),
        written: Mutex::new(Vec::new()),
    });

    let mut created_bucket = false;
    let result = phases(args, &bench, &mut created_bucket).await;

    // A temporary site's dir goes whole; anywhere else, the objects go one by one.
    let temporary_site = site.as_ref().is_some_and(|s| s.dir.is_temporary());
    let mut cleanup = Ok(());
    if !args.keep && !temporary_site {
        cleanup = clean(&bench, created_bucket).await;
    }
    if let Some(site) = site {
        let stopped = site.stop().await;
        match stopped {
            Ok(mut dir) if args.keep && dir.is_temporary() => {
                dir.keep();
                eprintln!("the site's data is kept in {}", dir.path.display());
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: {e:#}"),
        }
    }
    let rows = result?;
    cleanup?;
    Ok(S3Report {
        endpoint,
        in_process: args.endpoint.is_none(),
        bucket: args.bucket.clone(),
        seconds: args.seconds.as_secs_f64(),
        max_ops: args.max_ops,
        rounds: args.rounds,
        sign_payload: args.sign_payload,
        checksum: args.checksum.clone(),
        sse: args.sse.clone(),
        rows,
    })
}

/// Every size: `rounds` times a PUT phase, a GET phase over what it wrote, and one check.
async fn phases(
    args: &BenchArgs,
    bench: &Arc<Bench>,
    created_bucket: &mut bool,
) -> anyhow::Result<Vec<Row>> {
    *created_bucket = bench.ensure_bucket().await?;
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let workers = match args.concurrency {
            Some(n) => n as usize,
            None if size <= 1 << 20 => 8,
            None => 2,
        };
        let limits = PhaseLimits {
            workers,
            duration: args.seconds,
            max_ops: args.max_ops,
        };
        let mut put = Row {
            size,
            op: "PUT",
            workers,
            rounds: Vec::new(),
        };
        let mut get = Row {
            op: "GET",
            rounds: Vec::new(),
            ..put
        };
        for round in 1..=args.rounds {
            let name = |op: &str| format!("{} {op} {round}/{}", format_size(size), args.rounds);
            let pb = phase_bar(&name("PUT"), args.seconds);
            let (phase, objects) = bench.put_phase(size, limits, &pb).await?;
            pb.finish_and_clear();
            put.rounds
                .push(log_phase(&name("PUT"), Summary::from(&phase)));

            let objects = Arc::new(objects);
            let pb = phase_bar(&name("GET"), args.seconds);
            let phase = bench.get_phase(size, objects.clone(), limits, &pb).await?;
            pb.finish_and_clear();
            get.rounds
                .push(log_phase(&name("GET"), Summary::from(&phase)));

            bench.verify(&objects[0], size).await?;
        }
        rows.push(put);
        rows.push(get);
    }
    Ok(rows)
}

/// Deletes the objects the run wrote, and the bucket if the run created it.
async fn clean(bench: &Bench, created_bucket: bool) -> anyhow::Result<()> {
    let keys = bench.written_keys();
    let pb = bar(keys.len() as u64, "deleting objects", "{pos}/{len}");
    let deleted = bench.delete(&keys, &pb).await;
    pb.finish_and_clear();
    deleted.context("cannot delete the bench objects: delete them by hand or use --keep")?;
    if created_bucket {
        bench.delete_bucket().await?;
    }
    Ok(())
}

fn log_phase(name: &str, s: Summary) -> Summary {
    eprintln!(
        "{name}: {} ops in {:.1} s, {:.1} ops/s, {:.1} MiB/s, p50 {:.2} ms, p99 {:.2} ms",
        s.ops, s.secs, s.ops_s, s.mib_s, s.p50_ms, s.p99_ms
    );
    s
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
fn bar(len: u64, prefix: &str, counter: &str) -> ProgressBar {
    let template = format!("{{prefix:>18}} [{{bar:30}}] {counter} {{msg}}");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(prefix.to_string())
}

/// A phase's bar: its position is the elapsed part of the time budget.
fn phase_bar(prefix: &str, budget: Duration) -> ProgressBar {
    bar(budget.as_millis() as u64, prefix, "{elapsed:>3}")
}
