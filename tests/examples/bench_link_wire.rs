//! Benchmark of a site link's wire efficiency: how many bytes cross a link for a change,
//! against what the change costs in stored bytes at the source, and against `rclone sync`
//! between the same sites' S3 endpoints.
//!
//! Two single-node sites in this process, site a linked to site b (QUIC on loopback) through a
//! pass-through UDP relay ([`cairn_tests::relay`], no delay, no cap, no loss) that only counts
//! the datagrams. The figures are the link's own counters (`sent.bytes`: stored bytes of the
//! chunks and tree nodes shipped, `sent.chunks`, `sent.nodes`), the source's chunk store
//! (`physical_bytes` before and after each PUT) and the relay's UDP payload bytes each way.
//!
//! Scenarios (each run on fresh sites):
//!
//! 1. the initial copy of a `--mib` MiB object of random (incompressible) data, and on other
//!    sites of as much compressible text;
//! 2. a `--insert` byte insertion in the middle of the random object, PUT again under its key;
//! 3. the same content PUT under another key;
//! 4. `rclone sync` from a's bucket to a third site's, run after each of 1, 2 and 3, so that
//!    for 2 and 3 the destination already holds the previous content.
//!
//! It stops by itself (each wait is bounded, about a minute in all on two cores).
//!
//! ```text
//! cargo run --release -p cairn-tests --example bench_link_wire
//! ```
//!
//! Options: `--mib N` (64), `--insert N` (100, bytes inserted in the middle),
//! `--rclone PATH` (/usr/bin/rclone; `none` skips rclone).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use cairn_isgw::{DataMode, Direction, LinkConfig, Mode, TrafficSnapshot};
use cairn_tests::link::LinkedSite;
use cairn_tests::relay::{Relay, RelayConfig, RelayStats};
use cairn_tests::{random_bytes, TestSite, ACCESS_KEY, SECRET_KEY};

/// The bucket everything is written to.
const BUCKET: &str = "data";
/// Most time for the link to ship one step.
const SHIP_LIMIT: Duration = Duration::from_secs(60);
/// Most time for one `rclone sync`.
const RCLONE_LIMIT: Duration = Duration::from_secs(60);

struct Args {
    mib: usize,
    insert: usize,
    rclone: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        mib: 64,
        insert: 100,
        rclone: Some("/usr/bin/rclone".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--mib" => a.mib = parse(&flag, &value),
            "--insert" => a.insert = parse(&flag, &value),
            "--rclone" => a.rclone = (value != "none").then_some(value),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if a.mib == 0 || a.mib > 1024 {
        usage("--mib is 1 to 1024");
    }
    a
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| usage(&format!("bad value for {flag}: {value}")))
}

fn usage(why: &str) -> ! {
    eprintln!("bench_link_wire: {why}\nusage: bench_link_wire [--mib N] [--insert N] [--rclone PATH|none]");
    std::process::exit(2)
}

/// `n` bytes of log-like text lines with a counter: compressible, and no two lines alike.
fn text_bytes(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 128);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(
            format!(
                "{i:010} 2024-05-01T12:00:00Z INFO cairn::bench request served: GET /data/object \
                 status=200 bytes={} took_us={}\n",
                (i * 7919) % 65536,
                (i * 104_729) % 10_000
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(n);
    v
}

fn delta(after: TrafficSnapshot, before: TrafficSnapshot) -> TrafficSnapshot {
    TrafficSnapshot {
        versions: after.versions - before.versions,
        versions_present: after.versions_present - before.versions_present,
        removals: after.removals - before.removals,
        conflicts: after.conflicts - before.conflicts,
        nodes: after.nodes - before.nodes,
        chunks: after.chunks - before.chunks,
        bytes: after.bytes - before.bytes,
        bytes_skipped: after.bytes_skipped - before.bytes_skipped,
    }
}

/// Site a linked to site b through a counting relay, and a third site for rclone.
struct Sites {
    a: LinkedSite,
    b: LinkedSite,
    c: TestSite,
    relay: Relay,
}

impl Sites {
    async fn start() -> Sites {
        let a = LinkedSite::start().await;
        let b = LinkedSite::start().await;
        a.trust(&b);
        b.trust(&a);
        let relay = Relay::start(b.link_addr, RelayConfig::default())
            .await
            .expect("relay");
        let c = TestSite::start().await;
        for s3 in [a.site.s3(), c.s3()] {
            s3.create_bucket()
                .bucket(BUCKET)
                .send()
                .await
                .expect("bucket");
            s3.put_bucket_versioning()
                .bucket(BUCKET)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
        }
        Sites { a, b, c, relay }
    }

    /// Links a to b (a sends, initial copy and continuous) through the relay.
    fn link(&self) {
        self.a.add_link(LinkConfig {
            name: "wire".into(),
            remote: self.relay.addr().to_string(),
            buckets: Some(vec![BUCKET.into()]),
            direction: Direction::Send,
            mode: Mode::Both,
            data: DataMode::Full,
            rate_bytes_per_sec: 0,
            paused: false,
        });
    }

    fn sent(&self) -> TrafficSnapshot {
        self.a.status("wire").map(|s| s.sent).unwrap_or_default()
    }

    async fn physical(&self) -> (u64, u64) {
        let s = self.a.site.client.stats().await.expect("stats");
        (s.physical_bytes, s.chunks)
    }

    async fn stop(self) {
        let stop = async {
            self.a.stop().await;
            self.b.stop().await;
            self.c.stop().await;
            self.relay.stop().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), stop).await;
    }
}

/// One PUT at a and what it cost there.
struct Write {
    logical: u64,
    /// Stored bytes new at a (chunks and tree nodes the PUT added).
    stored: u64,
    /// Chunks (data and nodes) new at a.
    new_chunks: u64,
    etag: String,
    /// The version's tree nodes at a: how many, and their stored bytes.
    tree: Option<(u64, u64)>,
}

async fn put(s: &Sites, key: &str, data: Vec<u8>) -> Write {
    let (p0, c0) = s.physical().await;
    let logical = data.len() as u64;
    let out =
        s.a.site
            .s3()
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .expect("put");
    let (p1, c1) = s.physical().await;
    let tree = match out.version_id.as_deref().map(str::parse) {
        Some(Ok(v)) => tree_nodes(&s.a.site.client, key, v).await,
        _ => None,
    };
    Write {
        logical,
        stored: p1 - p0,
        new_chunks: c1 - c0,
        etag: out.e_tag.unwrap_or_default(),
        tree,
    }
}

/// How many tree nodes the version of `key` has at `client`, and their stored bytes.
async fn tree_nodes(
    client: &cairn_client::Client,
    key: &str,
    version: cairn_core::VersionId,
) -> Option<(u64, u64)> {
    let m = client.stored_version(BUCKET, key, version).await.ok()??;
    let mut todo = vec![m.content.tree()?];
    let (mut count, mut bytes) = (0, 0);
    while let Some(child) = todo.pop() {
        let stored = client.stored_chunks(vec![child.node]).await.ok()?;
        bytes += stored.first()?.as_ref()?.payload.len() as u64;
        count += 1;
        if let cairn_core::extent::TreeNode::Children(c) =
            client.tree_node(child.node, child.len).await.ok()?
        {
            todo.extend(c);
        }
    }
    Some((count, bytes))
}

/// The stored bytes of the tree nodes among `nodes` new chunks or shipped nodes, when they are
/// all of the version's tree (or none).
fn node_bytes(nodes: u64, tree: Option<(u64, u64)>) -> Option<u64> {
    match tree {
        _ if nodes == 0 => Some(0),
        Some((n, b)) if n == nodes => Some(b),
        _ => None,
    }
}

/// The counters at the start of a step.
struct Mark {
    sent: TrafficSnapshot,
    udp: RelayStats,
    drops: Option<u64>,
}

impl Mark {
    fn now(s: &Sites) -> Mark {
        Mark {
            sent: s.sent(),
            udp: s.relay.stats(),
            drops: udp_rcvbuf_errors(),
        }
    }
}

/// This machine's count of UDP datagrams dropped for a full receive buffer (`RcvbufErrors`
/// in /proc/net/snmp; system-wide).
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
}

/// What one step sent over the link.
struct Shipped {
    link: TrafficSnapshot,
    udp: RelayStats,
    /// UDP datagrams this machine dropped for a full receive buffer meanwhile.
    drops: Option<u64>,
    secs: f64,
    ok: bool,
}

/// Waits (bounded) until a has applied `versions` versions in all at b, and `key` at b has
/// `etag`; returns what crossed since `mark`.
async fn ship(s: &Sites, mark: &Mark, t: Instant, versions: u64, key: &str, etag: &str) -> Shipped {
    let sb = s.b.site.s3();
    let mut ok = false;
    while t.elapsed() < SHIP_LIMIT {
        if s.sent().versions >= versions {
            let head = sb.head_object().bucket(BUCKET).key(key).send().await;
            ok = head.is_ok_and(|h| h.e_tag.as_deref() == Some(etag));
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let udp = s.relay.stats();
    let udp_before = mark.udp;
    Shipped {
        link: delta(s.sent(), mark.sent),
        drops: udp_rcvbuf_errors().zip(mark.drops).map(|(a, b)| a - b),
        udp: RelayStats {
            to_target: cairn_tests::relay::DirStats {
                packets: udp.to_target.packets - udp_before.to_target.packets,
                bytes: udp.to_target.bytes - udp_before.to_target.bytes,
                ..Default::default()
            },
            to_client: cairn_tests::relay::DirStats {
                packets: udp.to_client.packets - udp_before.to_client.packets,
                bytes: udp.to_client.bytes - udp_before.to_client.bytes,
                ..Default::default()
            },
            clients: udp.clients,
        },
        secs,
        ok,
    }
}

/// A PUT at a, then the link's shipping of it.
async fn step(s: &Sites, key: &str, data: Vec<u8>, versions: u64) -> (Write, Shipped) {
    let mark = Mark::now(s);
    let w = put(s, key, data).await;
    let t = Instant::now();
    let shipped = ship(s, &mark, t, versions, key, &w.etag).await;
    (w, shipped)
}

/// What one `rclone sync` did.
#[derive(Default)]
struct Rclone {
    /// Bytes rclone counted as transferred (its final stats, `stats.bytes` of its JSON log).
    bytes: Option<u64>,
    /// Objects it copied, with what it said of each.
    copied: Vec<(String, String)>,
    /// Its final one-line stats.
    line: String,
    secs: f64,
    error: Option<String>,
    /// Whether the third site then held the step's object with the source's ETag.
    checked: bool,
}

async fn rclone_sync(bin: &str, src: SocketAddr, dst: SocketAddr) -> Rclone {
    let mut cmd = tokio::process::Command::new(bin);
    // rclone 1.60's S3 backend fails to start when AWS_CA_BUNDLE is set ("unable to load
    // custom CA bundle"); the endpoints are plain HTTP, so no CA is needed.
    cmd.env_remove("AWS_CA_BUNDLE");
    for (remote, addr) in [("SRC", src), ("DST", dst)] {
        let var = |k: &str| format!("RCLONE_CONFIG_{remote}_{k}");
        cmd.env(var("TYPE"), "s3")
            .env(var("PROVIDER"), "Other")
            .env(var("ENV_AUTH"), "false")
            .env(var("ENDPOINT"), format!("http://{addr}"))
            .env(var("ACCESS_KEY_ID"), ACCESS_KEY)
            .env(var("SECRET_ACCESS_KEY"), SECRET_KEY)
            .env(var("REGION"), "us-east-1")
            .env(var("FORCE_PATH_STYLE"), "true");
    }
    cmd.args([
        "sync",
        &format!("src:{BUCKET}"),
        &format!("dst:{BUCKET}"),
        "--config",
        "/dev/null",
        "--stats-one-line",
        "-v",
        "--use-json-log",
        "--retries",
        "1",
    ])
    .kill_on_drop(true);
    let t = Instant::now();
    let out = match tokio::time::timeout(RCLONE_LIMIT, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => {
            return Rclone {
                error: Some(format!("{bin}: {e}")),
                ..Rclone::default()
            }
        }
        Err(_) => {
            return Rclone {
                error: Some(format!("timed out after {RCLONE_LIMIT:?}")),
                ..Rclone::default()
            }
        }
    };
    let mut r = Rclone {
        secs: t.elapsed().as_secs_f64(),
        ..Rclone::default()
    };
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let msg = v["msg"].as_str().unwrap_or_default().trim().to_string();
        if let Some(bytes) = v["stats"]["bytes"].as_u64() {
            r.bytes = Some(bytes);
            r.line = msg;
        } else if msg.starts_with("Copied") {
            let object = v["object"].as_str().unwrap_or_default().to_string();
            r.copied.push((object, msg));
        }
    }
    if !out.status.success() {
        r.error = Some(format!("{}: {}", out.status, log.trim()));
    } else if r.bytes.is_none() {
        r.error = Some(format!("no stats in its log: {}", log.trim()));
    }
    r
}

/// The figures of one table row.
struct Row {
    what: String,
    write: Write,
    shipped: Shipped,
    rclone: Option<(Rclone, u64)>,
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.3}", a as f64 / b as f64)
    }
}

fn print_row_detail(r: &Row) {
    let l = &r.shipped.link;
    println!(
        "{}: logical {} B, new at a {} B in {} chunks (data and nodes); link sent {} B = {} data \
         chunks + {} tree nodes, {} versions applied ({} present), {} B skipped (b had them); \
         UDP a->b {} B in {} packets, b->a {} B in {} packets (UDP receive-buffer drops on \
         this machine meanwhile: {}); the version's tree at a: {}; shipped in {:.2} s; {}",
        r.what,
        r.write.logical,
        r.write.stored,
        r.write.new_chunks,
        l.bytes,
        l.chunks,
        l.nodes,
        l.versions,
        l.versions_present,
        l.bytes_skipped,
        r.shipped.udp.to_target.bytes,
        r.shipped.udp.to_target.packets,
        r.shipped.udp.to_client.bytes,
        r.shipped.udp.to_client.packets,
        r.shipped
            .drops
            .map_or("unknown".to_string(), |d| d.to_string()),
        r.write.tree.map_or("unknown".to_string(), |(n, b)| format!(
            "{n} node(s), {b} B stored"
        )),
        r.shipped.secs,
        if r.shipped.ok {
            "checked at b (ETag)"
        } else {
            "NOT at b in time"
        }
    );
    if let Some((rc, size)) = &r.rclone {
        match &rc.error {
            Some(e) => println!("  rclone sync failed: {e}"),
            None => println!(
                "  rclone sync ({:.2} s): copied {:?}; its stats: {} B transferred (\"{}\"); \
                 sizes of the objects it copied: {size} B; {}",
                rc.secs,
                rc.copied
                    .iter()
                    .map(|(o, m)| format!("{o}: {m}"))
                    .collect::<Vec<_>>(),
                rc.bytes.unwrap_or_default(),
                rc.line,
                if rc.checked {
                    "checked at the third site (ETag)"
                } else {
                    "NOT at the third site"
                }
            ),
        }
    }
}

/// The sum of the sizes (from `sizes`) of the objects rclone copied.
fn copied_size(rc: &Rclone, sizes: &[(&str, u64)]) -> u64 {
    rc.copied
        .iter()
        .filter_map(|(o, _)| sizes.iter().find(|(k, _)| k == o).map(|(_, n)| *n))
        .sum()
}

/// `rclone sync` from a to the third site, which must then hold `key` with `etag`.
async fn rclone_step(
    args: &Args,
    s: &Sites,
    sizes: &[(&str, u64)],
    key: &str,
    etag: &str,
) -> Option<(Rclone, u64)> {
    let bin = args.rclone.as_deref()?;
    let mut rc = rclone_sync(bin, s.a.site.addr, s.c.addr).await;
    let head = s.c.s3().head_object().bucket(BUCKET).key(key).send().await;
    rc.checked = head.is_ok_and(|h| h.e_tag.as_deref() == Some(etag));
    let size = copied_size(&rc, sizes);
    Some((rc, size))
}

#[tokio::main]
async fn main() {
    let args = args();
    let size = args.mib << 20;
    let started = Instant::now();
    println!(
        "site a -> site b over a link (QUIC on loopback through a counting UDP relay: no delay, \
         no cap); rclone {} from a's S3 endpoint to a third site's",
        args.rclone.as_deref().unwrap_or("skipped")
    );
    let mut rows: Vec<Row> = Vec::new();

    // Random data: the initial copy, an insertion in the middle, the same bytes under another key.
    let s = Sites::start().await;
    let data = random_bytes(size, 1);
    let mark = Mark::now(&s);
    let w = put(&s, "obj", data.clone()).await;
    s.link();
    let t = Instant::now();
    let shipped = ship(&s, &mark, t, 1, "obj", &w.etag).await;
    let rclone = rclone_step(&args, &s, &[("obj", size as u64)], "obj", &w.etag).await;
    rows.push(Row {
        what: format!("1a. initial copy, {} MiB random", args.mib),
        write: w,
        shipped,
        rclone,
    });
    print_row_detail(rows.last().unwrap());

    let mut edited = data;
    let mid = size / 2;
    edited.splice(mid..mid, random_bytes(args.insert, 2));
    let edited_size = edited.len() as u64;
    let (w, shipped) = step(&s, "obj", edited.clone(), 2).await;
    let rclone = rclone_step(&args, &s, &[("obj", edited_size)], "obj", &w.etag).await;
    rows.push(Row {
        what: format!("2. {} B inserted in the middle, same key", args.insert),
        write: w,
        shipped,
        rclone,
    });
    print_row_detail(rows.last().unwrap());

    let (w, shipped) = step(&s, "copy", edited, 3).await;
    let rclone = rclone_step(
        &args,
        &s,
        &[("copy", edited_size), ("obj", edited_size)],
        "copy",
        &w.etag,
    )
    .await;
    rows.push(Row {
        what: "3. the same content under another key".into(),
        write: w,
        shipped,
        rclone,
    });
    print_row_detail(rows.last().unwrap());
    s.stop().await;

    // Compressible data: the initial copy.
    let s = Sites::start().await;
    let mark = Mark::now(&s);
    let w = put(&s, "text", text_bytes(size)).await;
    s.link();
    let t = Instant::now();
    let shipped = ship(&s, &mark, t, 1, "text", &w.etag).await;
    let rclone = rclone_step(&args, &s, &[("text", size as u64)], "text", &w.etag).await;
    rows.push(Row {
        what: format!("1b. initial copy, {} MiB compressible text", args.mib),
        write: w,
        shipped,
        rclone,
    });
    print_row_detail(rows.last().unwrap());
    s.stop().await;

    println!();
    println!(
        "| scenario | object, B | new stored at a, B (chunks) | link sent, B | data chunks + \
         nodes | of which tree nodes, B | link / new stored | link / object | UDP a->b, B | \
         rclone sent, B | rclone / link |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let l = &r.shipped.link;
        let (rc_bytes, rc_ratio) = match &r.rclone {
            Some((rc, _)) if rc.error.is_none() => {
                let b = rc.bytes.unwrap_or_default();
                let x = if l.bytes == 0 {
                    "no link bytes".to_string()
                } else {
                    ratio(b, l.bytes)
                };
                (b.to_string(), x)
            }
            Some(_) => ("failed".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {}{} | {} | {} ({}) | {} | {} + {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            if r.shipped.ok {
                ""
            } else {
                " (NOT shipped in time)"
            },
            r.write.logical,
            r.write.stored,
            r.write.new_chunks,
            l.bytes,
            l.chunks,
            l.nodes,
            node_bytes(l.nodes, r.write.tree).map_or("?".to_string(), |b| b.to_string()),
            ratio(l.bytes, r.write.stored),
            ratio(l.bytes, r.write.logical),
            r.shipped.udp.to_target.bytes,
            rc_bytes,
            rc_ratio
        );
    }
    println!();
    println!(
        "object: the PUT's size. New stored at a: the source's physical_bytes delta across \
         the PUT, in the chunks (data and tree nodes) it added: for 2, the chunks around the \
         edit and the new tree node. Link sent: the link's sent.bytes, the stored (compressed, \
         as kept at the source) bytes of the data chunks and tree nodes shipped; manifests and \
         RPC framing are not counted. The link counts nodes' bytes with the chunks'; the nodes' \
         share is the stored size of the version's tree nodes read at a, when the nodes shipped \
         are that tree. UDP a->b: every datagram a sent to b during the step, through the \
         counting relay: QUIC and TLS, every RPC (Lacks, Have, Put, Apply with the manifest), \
         the link's polling every 200 ms, and QUIC's retransmissions of datagrams lost on \
         loopback (the detail lines give the machine's UDP receive-buffer drops meanwhile)."
    );
    println!(
        "rclone sent: `rclone sync src:{BUCKET} dst:{BUCKET}` from a's S3 endpoint to a third \
         site's that holds the previous content (sync run after every step), bytes rclone counts \
         as transferred in its final stats (`stats.bytes` of its JSON log). They equal the \
         sizes of the objects it copied: rclone sends whole objects, uncompressed (it reads \
         them from a and uploads them to the third site: as many bytes again cross as GET \
         bodies; HTTP headers, listings and HEADs are not counted)."
    );
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(0);
}
