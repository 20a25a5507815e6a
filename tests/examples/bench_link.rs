//! Benchmark of a site link across an emulated WAN: two single-node sites in this process,
//! site a linked to site b through a user-space UDP relay ([`cairn_tests::relay`]) with a
//! round trip and a bandwidth cap (50 ms and 100 Mbit/s by default).
//!
//! It measures the initial copy of `--mib` MiB of random data (time and throughput against the
//! cap), then a steady write load at a while the continuous link follows it: the link's
//! `send_lag_ms` sampled every 100 ms, beside the actual lag at the same times (the age of the
//! oldest write not yet listed at b), and how long each object took to be listed at b. It stops
//! by itself: each phase has a time limit (under two minutes in all).
//!
//! ```text
//! cargo run --release -p cairn-tests --example bench_link -- --mib 64
//! ```
//!
//! Options: `--mib N` (initial copy, default 64), `--rtt-ms MS` (50), `--mbit M` (100),
//! `--loss F` (0, fraction each way), `--load-secs S` (30), `--load-mib-s R` (1, the steady
//! write rate), `--object-kib K` (256, the size of each object written under load),
//! `--rate-mib-s T` (0: none; the link's own throttle, `rate_bytes_per_sec`, in MiB/s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use cairn_isgw::{DataMode, Direction, LinkConfig, LinkPhase, Mode};
use cairn_tests::link::LinkedSite;
use cairn_tests::random_bytes;
use cairn_tests::relay::{Relay, RelayConfig, RelayStats};

/// Size of each object of the initial copy.
const INITIAL_OBJECT: usize = 4 << 20;
/// Most time for the initial copy.
const INITIAL_LIMIT: Duration = Duration::from_secs(50);
/// Most time for the link to catch up once the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Longest steady load allowed.
const MAX_LOAD: Duration = Duration::from_secs(40);
const MIB: f64 = (1 << 20) as f64;

struct Args {
    mib: u64,
    rtt_ms: u64,
    mbit: u64,
    loss: f64,
    load_secs: u64,
    load_mib_s: f64,
    object_kib: u64,
    rate_mib_s: f64,
}

fn args() -> Args {
    let mut a = Args {
        mib: 64,
        rtt_ms: 50,
        mbit: 100,
        loss: 0.0,
        load_secs: 30,
        load_mib_s: 1.0,
        object_kib: 256,
        rate_mib_s: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--mib" => a.mib = parse(&flag, &value),
            "--rtt-ms" => a.rtt_ms = parse(&flag, &value),
            "--mbit" => a.mbit = parse(&flag, &value),
            "--loss" => a.loss = parse(&flag, &value),
            "--load-secs" => a.load_secs = parse(&flag, &value),
            "--load-mib-s" => a.load_mib_s = parse(&flag, &value),
            "--object-kib" => a.object_kib = parse(&flag, &value),
            "--rate-mib-s" => a.rate_mib_s = parse(&flag, &value),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if a.mib == 0 || a.mbit == 0 || a.object_kib == 0 || a.load_mib_s <= 0.0 {
        usage("--mib, --mbit, --object-kib and --load-mib-s must be positive");
    }
    if !(a.rate_mib_s >= 0.0 && a.rate_mib_s.is_finite()) {
        usage("--rate-mib-s is a rate in MiB/s (0: no throttle)");
    }
    if !(0.0..1.0).contains(&a.loss) {
        usage("--loss is a fraction below 1");
    }
    if Duration::from_secs(a.load_secs) > MAX_LOAD {
        usage(&format!("--load-secs is at most {}", MAX_LOAD.as_secs()));
    }
    a
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")))
}

fn usage(why: &str) -> ! {
    eprintln!(
        "bench_link: {why}\nusage: bench_link [--mib N] [--rtt-ms MS] [--mbit M] [--loss F] \
         [--load-secs S] [--load-mib-s R] [--object-kib K] [--rate-mib-s T]"
    );
    std::process::exit(2)
}

/// The `p`-th percentile (0 to 100) of sorted `v`.
fn percentile<T: Copy + Default>(v: &[T], p: usize) -> T {
    if v.is_empty() {
        return T::default();
    }
    v[((v.len() - 1) * p).div_ceil(100)]
}

fn relay_line(what: &str, s: &RelayStats) -> String {
    format!(
        "{what}: a->b {:.1} MiB in {} packets ({} lost, {} dropped at the queue), b->a {:.1} MiB \
         in {} packets ({} lost, {} dropped at the queue)",
        s.to_target.bytes as f64 / MIB,
        s.to_target.packets,
        s.to_target.lost,
        s.to_target.queue_dropped,
        s.to_client.bytes as f64 / MIB,
        s.to_client.packets,
        s.to_client.lost,
        s.to_client.queue_dropped,
    )
}

/// What b lists of the keys written under load.
#[derive(Default)]
struct Seen {
    /// When each key was first listed at b.
    at: HashMap<String, Instant>,
    /// How many of the written keys, from the first, are all listed.
    prefix: usize,
}

impl Seen {
    /// Lists at b the keys after the listed prefix of `written` (they may arrive out of order).
    async fn update(&mut self, sb: &aws_sdk_s3::Client, written: &Mutex<Vec<(String, Instant)>>) {
        let after = match self.prefix {
            0 => String::new(),
            n => written.lock().unwrap()[n - 1].0.clone(),
        };
        let now = Instant::now();
        for k in keys_after(sb, "load", &after).await {
            self.at.entry(k).or_insert(now);
        }
        let w = written.lock().unwrap();
        while self.prefix < w.len() && self.at.contains_key(&w[self.prefix].0) {
            self.prefix += 1;
        }
    }

    /// Age of the oldest write not yet listed (0 if none).
    fn oldest_unseen_ms(&self, written: &Mutex<Vec<(String, Instant)>>) -> u64 {
        written
            .lock()
            .unwrap()
            .get(self.prefix)
            .map_or(0, |(_, t)| t.elapsed().as_millis() as u64)
    }
}

/// Keys listed at `bucket` after `after` (up to 1000).
async fn keys_after(s3: &aws_sdk_s3::Client, bucket: &str, after: &str) -> Vec<String> {
    let mut req = s3.list_objects_v2().bucket(bucket);
    if !after.is_empty() {
        req = req.start_after(after);
    }
    match req.send().await {
        Ok(out) => out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, data: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data))
        .send()
        .await
        .expect("put");
}

#[tokio::main]
async fn main() {
    let args = args();
    let cap_mib_s = args.mbit as f64 * 1e6 / 8.0 / MIB;
    println!(
        "link a -> b through a relay: {} ms RTT, {} Mbit/s each way ({cap_mib_s:.2} MiB/s), \
         {:.2} % loss each way",
        args.rtt_ms,
        args.mbit,
        args.loss * 100.0
    );
    if args.rate_mib_s > 0.0 {
        println!(
            "the link's own throttle: {:.2} MiB/s of stored bytes each way",
            args.rate_mib_s
        );
    }
    let a = LinkedSite::start().await;
    let b = LinkedSite::start().await;
    a.trust(&b);
    b.trust(&a);
    let wan = RelayConfig::wan(Duration::from_millis(args.rtt_ms), args.mbit).with_loss(args.loss);
    let relay = Relay::start(b.link_addr, wan).await.expect("relay");
    let (sa, sb) = (a.site.s3(), b.site.s3());
    for bucket in ["initial", "load"] {
        sa.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket");
    }

    // The initial copy: N MiB written before the link exists.
    let objects = (args.mib << 20).div_ceil(INITIAL_OBJECT as u64);
    let t = Instant::now();
    for i in 0..objects {
        put(
            &sa,
            "initial",
            &format!("init-{i:05}"),
            random_bytes(INITIAL_OBJECT, i),
        )
        .await;
    }
    let data_mib = (objects * INITIAL_OBJECT as u64) as f64 / MIB;
    println!(
        "wrote {objects} objects of {} MiB ({data_mib:.0} MiB) at a in {:.1} s",
        INITIAL_OBJECT >> 20,
        t.elapsed().as_secs_f64()
    );
    a.add_link(LinkConfig {
        name: "wan".into(),
        remote: relay.addr().to_string(),
        buckets: None,
        direction: Direction::Both,
        mode: Mode::Both,
        data: DataMode::Full,
        rate_bytes_per_sec: (args.rate_mib_s * MIB) as u64,
        paused: false,
    });
    let added = Instant::now();
    let mut connected = None;
    let mut done = None;
    let mut relay_at_connect = RelayStats::default();
    let mut errors: Vec<String> = Vec::new();
    while added.elapsed() < INITIAL_LIMIT {
        let s = a.status("wan");
        if let Some(e) = s.as_ref().and_then(|s| s.last_error.clone()) {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
        if connected.is_none() && s.as_ref().is_some_and(|s| s.phase == LinkPhase::Connected) {
            connected = Some(Instant::now());
            relay_at_connect = relay.stats();
        }
        // A version counts as sent once b has applied it.
        if s.is_some_and(|s| s.sent.versions >= objects) {
            done = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let relay_initial = relay.stats();
    match (connected, done) {
        (Some(c), Some(d)) => {
            let ship = d - c;
            let rate = data_mib / ship.as_secs_f64();
            let wire = (relay_initial.to_target.bytes - relay_at_connect.to_target.bytes) as f64
                / MIB
                / ship.as_secs_f64();
            println!(
                "initial copy of {data_mib:.0} MiB: {:.2} s from the link's connection ({:.2} s \
                 from adding it; it connected after {:.2} s)",
                ship.as_secs_f64(),
                (d - added).as_secs_f64(),
                (c - added).as_secs_f64()
            );
            println!(
                "initial copy throughput: {rate:.2} MiB/s of data = {:.0} % of the {} Mbit/s \
                 cap; {wire:.2} MiB/s on the wire a->b",
                100.0 * rate / cap_mib_s,
                args.mbit
            );
        }
        _ => println!(
            "initial copy NOT finished in {} s: {:?}",
            INITIAL_LIMIT.as_secs(),
            a.status("wan").map(|s| (s.phase, s.sent, s.last_error))
        ),
    }
    for e in &errors {
        println!("  link error seen meanwhile: {e}");
    }
    let listed = keys_after(&sb, "initial", "").await.len() as u64;
    println!("  objects listed at b: {listed} of {objects}");
    println!("  {}", relay_line("relay so far", &relay_initial));

    // A steady load: objects written at a fixed rate while the continuous link follows.
    let object = (args.object_kib << 10) as usize;
    let every = Duration::from_secs_f64(object as f64 / MIB / args.load_mib_s);
    let load_for = Duration::from_secs(args.load_secs);
    println!(
        "steady load: one {} KiB object every {:.0} ms ({:.2} MiB/s = {:.0} % of the cap) for \
         {} s",
        args.object_kib,
        every.as_secs_f64() * 1e3,
        args.load_mib_s,
        100.0 * args.load_mib_s / cap_mib_s,
        args.load_secs
    );
    let versions_before = a.status("wan").map(|s| s.sent.versions).unwrap_or_default();
    let start = Instant::now();
    // The keys written so far, in order, and when each write returned.
    let written: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let writer = {
        let (sa, written) = (sa.clone(), written.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(every);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0u64;
            while start.elapsed() < load_for {
                pace.tick().await;
                let key = format!("load-{i:06}");
                put(&sa, "load", &key, random_bytes(object, 1_000_000 + i)).await;
                written.lock().unwrap().push((key, Instant::now()));
                i += 1;
            }
        })
    };
    let mut seen = Seen::default();
    // Samples every 100 ms of the link's send_lag_ms and of the actual lag: the age of the
    // oldest write not yet listed at b.
    let mut lag_samples: Vec<u64> = Vec::new();
    let mut actual_samples: Vec<u64> = Vec::new();
    let mut next_sample = Instant::now();
    let mut next_list = Instant::now();
    while !writer.is_finished() {
        let now = Instant::now();
        if now >= next_list {
            seen.update(&sb, &written).await;
            next_list = Instant::now() + Duration::from_millis(50);
        }
        if now >= next_sample {
            if let Some(s) = a.status("wan") {
                lag_samples.push(s.send_lag_ms);
                actual_samples.push(seen.oldest_unseen_ms(&written));
            }
            next_sample += Duration::from_millis(100);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.await.expect("writer");
    let load_took = start.elapsed();
    let count = written.lock().unwrap().len();
    // Until the link has caught up (or the drain limit).
    let drain = Instant::now();
    let target = versions_before + count as u64;
    let mut caught_up = None;
    while drain.elapsed() < DRAIN_LIMIT {
        seen.update(&sb, &written).await;
        if seen.prefix == count && a.status("wan").is_some_and(|s| s.sent.versions >= target) {
            caught_up = Some(drain.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = written.lock().unwrap().clone();
    let mut delays: Vec<u64> = written
        .iter()
        .filter_map(|(k, at)| {
            seen.at
                .get(k)
                .map(|s| s.saturating_duration_since(*at).as_millis() as u64)
        })
        .collect();
    delays.sort_unstable();
    let written_mib = written.len() as f64 * object as f64 / MIB;
    println!(
        "wrote {} objects ({written_mib:.1} MiB, {:.2} MiB/s) in {:.1} s",
        written.len(),
        written_mib / load_took.as_secs_f64(),
        load_took.as_secs_f64()
    );
    lag_samples.sort_unstable();
    actual_samples.sort_unstable();
    println!(
        "send_lag_ms during the load ({} samples, every 100 ms): median {} ms, p95 {} ms, max {} ms",
        lag_samples.len(),
        percentile(&lag_samples, 50),
        percentile(&lag_samples, 95),
        lag_samples.last().copied().unwrap_or_default()
    );
    println!(
        "actual lag at the same times (age of the oldest write at a not yet listed at b): \
         median {} ms, p95 {} ms, max {} ms",
        percentile(&actual_samples, 50),
        percentile(&actual_samples, 95),
        actual_samples.last().copied().unwrap_or_default()
    );
    println!(
        "write at a -> listed at b ({} of {} objects seen): median {} ms, p95 {} ms, max {} ms",
        delays.len(),
        written.len(),
        percentile(&delays, 50),
        percentile(&delays, 95),
        delays.last().copied().unwrap_or_default()
    );
    match caught_up {
        Some(t) => println!("caught up {:.2} s after the load stopped", t.as_secs_f64()),
        None => println!(
            "NOT caught up {} s after the load stopped",
            DRAIN_LIMIT.as_secs()
        ),
    }
    if let Some(s) = a.status("wan") {
        println!(
            "link: phase {:?}, sent {:?}, last error {:?}",
            s.phase, s.sent, s.last_error
        );
    }
    println!("  {}", relay_line("relay in all", &relay.stats()));
    // A batch still in flight (a phase that ran out of time) would hold the stop: bounded.
    let stop = async {
        a.stop().await;
        b.stop().await;
        relay.stop().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), stop).await;
    std::process::exit(0);
}
