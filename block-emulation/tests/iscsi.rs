//! The iSCSI target driven by libiscsi's tools (iscsi-ls, iscsi-inq, iscsi-readcapacity16)
//! and its conformance suite (iscsi-test-cu), over in-memory devices, and by a raw client
//! for logins no well-behaved initiator sends.

#[path = "nbd_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cairn_block::iscsi::{
    ChapSecret, ExportAccess, IscsiAccess, IscsiConfig, IscsiHandle, IscsiServer, OpenAccess,
};
use cairn_block::BlockError;
use common::{MemDevice, MemExports};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFIX: &str = "iqn.2026-12.dev.cairn:test";
/// Bound of each tool run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

async fn start(exports: MemExports, access: Arc<dyn IscsiAccess>) -> IscsiHandle {
    let config = IscsiConfig {
        target_prefix: PREFIX.to_string(),
        ..Default::default()
    };
    start_with(exports, access, config).await
}

async fn start_with(
    exports: MemExports,
    access: Arc<dyn IscsiAccess>,
    config: IscsiConfig,
) -> IscsiHandle {
    IscsiServer::bind("127.0.0.1:0", Arc::new(exports), access, config)
        .await
        .expect("binding 127.0.0.1:0")
        .spawn()
        .expect("starting the target")
}

fn url(h: &IscsiHandle, volume: &str) -> String {
    format!(
        "iscsi://{}/{}/0",
        h.local_addr(),
        cairn_block::iscsi::target_name(PREFIX, volume)
    )
}

/// Runs a tool; returns whether it succeeded, and its stdout and stderr.
async fn tool(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        TOOL_TIMEOUT,
        tokio::process::Command::new(cmd)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{cmd} {args:?} did not finish in {TOOL_TIMEOUT:?}"))
    .unwrap_or_else(|e| panic!("running {cmd} (from libiscsi-bin): {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mem(size: usize, block: u32) -> Arc<MemDevice> {
    Arc::new(MemDevice::new(size, block, false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_inquiry_and_capacity_with_libiscsi_tools() {
    let exports = MemExports::default()
        .with("vol1", "a volume", mem(8 << 20, 512))
        .with("Big_Vol", "another", mem(16 << 20, 4096));
    let h = start(exports, Arc::new(OpenAccess)).await;

    let portal = format!("iscsi://{}", h.local_addr());
    let (ok, out, err) = tool("iscsi-ls", &["-s", &portal]).await;
    assert!(ok, "iscsi-ls failed: {out}{err}");
    assert!(
        out.contains(&format!("{PREFIX}:vol1")) && out.contains(&format!("{PREFIX}:big-vol")),
        "iscsi-ls lists both targets: {out}"
    );
    // `-s` logs in to each target and lists its LUNs with their sizes.
    assert!(out.contains("Lun:0"), "iscsi-ls shows LUN 0: {out}");

    let (ok, out, err) = tool("iscsi-inq", &[&url(&h, "vol1")]).await;
    assert!(ok, "iscsi-inq failed: {out}{err}");
    assert!(
        out.contains("CAIRN"),
        "vendor in the standard inquiry data: {out}"
    );
    let (ok, out, err) = tool("iscsi-inq", &["-e", "1", "-c", "0x80", &url(&h, "vol1")]).await;
    assert!(ok, "iscsi-inq VPD 0x80 failed: {out}{err}");

    let (ok, out, err) = tool("iscsi-readcapacity16", &[&url(&h, "Big_Vol")]).await;
    assert!(ok, "iscsi-readcapacity16 failed: {out}{err}");
    assert!(out.contains("4096"), "block size 4096: {out}");
    assert!(
        out.contains(&format!("{}", (16 << 20) / 4096 - 1)),
        "last LBA: {out}"
    );

    // An unknown target is refused at login.
    let bad = format!("iscsi://{}/{PREFIX}:nope/0", h.local_addr());
    let (ok, _, _) = tool("iscsi-inq", &[&bad]).await;
    assert!(!ok, "login to an unknown target succeeded");
    h.shutdown().await.unwrap();
}

/// The conformance suite's summary: tests run, passed (skips included) and failed.
fn summary(out: &str) -> (u32, u32, u32) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("tests"))
        .unwrap_or_else(|| panic!("no CUnit summary in:\n{out}"));
    let n: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[1], n[2], n[3])
}

/// Names of the tests the suite skipped, from its `-v` output (CUnit counts a skip as a pass).
fn skipped_tests(out: &str) -> Vec<String> {
    let mut suite = "";
    let mut test = "";
    let mut skipped: Vec<String> = Vec::new();
    for line in out.lines() {
        if let Some(s) = line.trim_start().strip_prefix("Suite: ") {
            suite = s.trim();
        }
        if let Some(t) = line.trim_start().strip_prefix("Test: ") {
            test = t.split_whitespace().next().unwrap_or("");
        }
        if line.contains("[SKIPPED]") {
            let name = format!("{suite}.{test}");
            if !skipped.contains(&name) {
                skipped.push(name);
            }
        }
    }
    skipped
}

/// Runs conformance family `family` against a fresh in-memory LUN, with a second session to
/// it as the multipath path; asserts no failure and returns the skipped tests.
async fn conformance(family: &str, block: u32) -> Vec<String> {
    // Small: every FUA write copies the whole device as its durable image.
    let exports = MemExports::default().with("conf", "", mem(8 << 20, block));
    let h = start(exports, Arc::new(OpenAccess)).await;
    let u = url(&h, "conf");
    let (_, out, err) = tool("iscsi-test-cu", &["-d", "-v", "-t", family, &u, &u]).await;
    let (ran, passed, failed) = summary(&out);
    let skipped = skipped_tests(&out);
    eprintln!(
        "iscsi-test-cu -t {family} (block size {block}): {ran} run, {passed} passed ({} of them skips), {failed} failed\nskipped: {}",
        skipped.len(),
        skipped.join(", ")
    );
    let failures: Vec<&str> = out.lines().filter(|l| l.contains("FAILED")).collect();
    assert!(ran > 0, "no test ran:\n{out}\n{err}");
    assert_eq!(
        failed,
        0,
        "conformance failures:\n{}\n\nfull output:\n{out}\n{err}",
        failures.join("\n")
    );
    h.shutdown().await.unwrap();
    skipped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_scsi_commands() {
    // 4096-byte blocks run against real volumes (the CLI's iSCSI test): some of the suite's
    // tests send 512 bytes for a block, which a byte-granular volume takes and this
    // block-granular in-memory device does not.
    conformance("SCSI", 512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_iscsi_protocol() {
    conformance("iSCSI", 512).await;
}

/// A volume that needs CHAP (and answers mutual CHAP), and one open only to one initiator.
struct TestAccess;

#[async_trait]
impl IscsiAccess for TestAccess {
    async fn access(&self, volume: &str) -> Result<ExportAccess, BlockError> {
        Ok(match volume {
            "secret" => ExportAccess {
                disabled: false,
                initiators: Vec::new(),
                chap: Some(ChapSecret {
                    user: "alice".into(),
                    secret: "opensesame1234".into(),
                }),
                mutual_chap: Some(ChapSecret {
                    user: "target".into(),
                    secret: "targetsecret987".into(),
                }),
            },
            "private" => ExportAccess {
                initiators: vec!["iqn.2026-12.dev.example:allowed".into()],
                ..Default::default()
            },
            _ => ExportAccess::default(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chap_and_initiator_lists_decide_who_logs_in() {
    let exports = MemExports::default()
        .with("secret", "", mem(1 << 20, 512))
        .with("private", "", mem(1 << 20, 512));
    let h = start(exports, Arc::new(TestAccess)).await;
    let addr = h.local_addr();
    let target = |v: &str| cairn_block::iscsi::target_name(PREFIX, v);

    // Without credentials, with a wrong secret or user: refused.
    let (ok, _, _) = tool("iscsi-inq", &[&url(&h, "secret")]).await;
    assert!(!ok, "login without CHAP succeeded");
    let wrong = format!("iscsi://alice%wrongsecret123@{addr}/{}/0", target("secret"));
    assert!(
        !tool("iscsi-inq", &[&wrong]).await.0,
        "a wrong CHAP secret logged in"
    );
    let wrong = format!("iscsi://bob%opensesame1234@{addr}/{}/0", target("secret"));
    assert!(
        !tool("iscsi-inq", &[&wrong]).await.0,
        "a wrong CHAP user logged in"
    );
    // One-way CHAP.
    let good = format!("iscsi://alice%opensesame1234@{addr}/{}/0", target("secret"));
    let (ok, out, err) = tool("iscsi-inq", &[&good]).await;
    assert!(ok, "one-way CHAP login failed: {out}{err}");
    // Mutual CHAP: the initiator checks the target's answer too.
    let mutual = format!(
        "iscsi://alice%opensesame1234@{addr}/{}/0?target_user=target&target_password=targetsecret987",
        target("secret")
    );
    let (ok, out, err) = tool("iscsi-inq", &[&mutual]).await;
    assert!(ok, "mutual CHAP login failed: {out}{err}");
    let mutual_wrong = format!(
        "iscsi://alice%opensesame1234@{addr}/{}/0?target_user=target&target_password=notthetarget",
        target("secret")
    );
    assert!(
        !tool("iscsi-inq", &[&mutual_wrong]).await.0,
        "the initiator accepted a target that does not know the mutual secret"
    );
    // CHAP algorithms: MD5 (5) is picked from a list; a value that only starts with 5, or
    // none, is refused with an authentication failure.
    for (algs, want) in [
        ("5,6,7,8", None),
        ("56", Some((2, 0x01))),
        ("", Some((2, 0x01))),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let first = format!(
            "InitiatorName=iqn.2026-12.x:y\0TargetName={}\0AuthMethod=CHAP,None\0",
            target("secret")
        );
        assert_eq!(raw_login(&mut s, 0x01, (0, 0), &first).await, Some((0, 0)));
        let got = raw_login(&mut s, 0x01, (0, 0), &format!("CHAP_A={algs}\0")).await;
        assert_eq!(got, Some(want.unwrap_or((0, 0))), "CHAP_A={algs}");
    }

    // The initiator list.
    let (ok, out, err) = tool(
        "iscsi-inq",
        &["-i", "iqn.2026-12.dev.example:allowed", &url(&h, "private")],
    )
    .await;
    assert!(ok, "an allowed initiator was refused: {out}{err}");
    let (ok, _, _) = tool(
        "iscsi-inq",
        &["-i", "iqn.2026-12.dev.example:other", &url(&h, "private")],
    )
    .await;
    assert!(!ok, "an initiator not on the list logged in");
    // Discovery lists only the targets an initiator may log in to.
    let portal = format!("iscsi://{addr}");
    let (ok, out, _) = tool(
        "iscsi-ls",
        &["-i", "iqn.2026-12.dev.example:other", &portal],
    )
    .await;
    assert!(
        ok && !out.contains(":private"),
        "discovery showed a forbidden target: {out}"
    );
    h.shutdown().await.unwrap();
}

/// A raw login request with `text`; returns the response's status class and detail.
async fn raw_login(
    stream: &mut TcpStream,
    flags: u8,
    versions: (u8, u8),
    text: &str,
) -> Option<(u8, u8)> {
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43;
    bhs[1] = flags;
    bhs[2] = versions.0;
    bhs[3] = versions.1;
    let len = text.len();
    bhs[5] = (len >> 16) as u8;
    bhs[6] = (len >> 8) as u8;
    bhs[7] = len as u8;
    bhs[8..14].copy_from_slice(&[0x40, 0, 0, 0, 0, 1]);
    let mut pdu = bhs.to_vec();
    pdu.extend_from_slice(text.as_bytes());
    pdu.resize(pdu.len().div_ceil(4) * 4, 0);
    stream.write_all(&pdu).await.ok()?;
    let mut head = [0u8; 48];
    stream.read_exact(&mut head).await.ok()?;
    assert_eq!(head[0] & 0x3f, 0x23, "a login response");
    let dlen = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
    let mut data = vec![0u8; dlen.div_ceil(4) * 4];
    stream.read_exact(&mut data).await.ok()?;
    Some((head[36], head[37]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_get_the_status_the_rfc_gives() {
    let exports = MemExports::default()
        .with("vol", "", mem(1 << 20, 512))
        .with("secret", "", mem(1 << 20, 512));
    let h = start(exports, Arc::new(TestAccess)).await;
    let addr = h.local_addr();
    let t = cairn_block::iscsi::target_name(PREFIX, "vol");
    // (flags, (version max, version min), text, (status class, status detail))
    type Case = (u8, (u8, u8), String, (u8, u8));
    let cases: Vec<Case> = vec![
        // No InitiatorName: missing parameter.
        (0x81, (0, 0), format!("TargetName={t}\0"), (2, 0x07)),
        // An unknown target: not found.
        (
            0x81,
            (0, 0),
            format!("InitiatorName=iqn.2026-12.x:y\0TargetName={PREFIX}:none\0"),
            (2, 0x03),
        ),
        // A version this target does not speak.
        (
            0x81,
            (2, 1),
            format!("InitiatorName=iqn.2026-12.x:y\0TargetName={t}\0"),
            (2, 0x05),
        ),
        // A session type that does not exist.
        (
            0x81,
            (0, 0),
            "InitiatorName=iqn.2026-12.x:y\0SessionType=Bogus\0".to_string(),
            (2, 0x09),
        ),
        // T and C both set.
        (
            0xc1,
            (0, 0),
            format!("InitiatorName=iqn.2026-12.x:y\0TargetName={t}\0"),
            (2, 0x00),
        ),
        // Malformed text.
        (0x81, (0, 0), "InitiatorName\0".to_string(), (2, 0x00)),
        // CHAP needed, only None offered.
        (
            0x81,
            (0, 0),
            format!("InitiatorName=iqn.2026-12.x:y\0TargetName={PREFIX}:secret\0AuthMethod=None\0"),
            (2, 0x01),
        ),
        // Skipping security on a target that needs CHAP.
        (
            0x87,
            (0, 0),
            format!("InitiatorName=iqn.2026-12.x:y\0TargetName={PREFIX}:secret\0"),
            (2, 0x01),
        ),
    ];
    for (flags, versions, text, want) in cases {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let got = raw_login(&mut s, flags, versions, &text).await;
        assert_eq!(got, Some(want), "login with {text:?}");
    }
    // A data segment over what login allows: the connection is closed, nothing answered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut bhs = [0u8; 48];
    bhs[0] = 0x43;
    bhs[5] = 0xff;
    bhs[6] = 0xff;
    bhs[7] = 0xff;
    s.write_all(&bhs).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the target closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "an oversized login PDU got an answer");
    // The target still serves.
    let (ok, out, err) = tool("iscsi-inq", &[&url(&h, "vol")]).await;
    assert!(ok, "{out}{err}");
    h.shutdown().await.unwrap();
}

/// Logs in to `target` straight into the full-feature phase (no authentication); returns
/// the CmdSN of the first command.
async fn raw_full_login(s: &mut TcpStream, target: &str) -> u32 {
    let text = format!(
        "InitiatorName=iqn.2026-12.dev.example:fuzz\0TargetName={target}\0\
         ImmediateData=Yes\0InitialR2T=No\0MaxRecvDataSegmentLength=65536\0"
    );
    let got = raw_login(s, 0x87, (0, 0), &text).await;
    assert_eq!(got, Some((0, 0)), "raw login");
    0
}

/// A SCSI command PDU (no digests) with `cdb`, `edtl` and immediate `data`.
fn scsi_pdu(cmd_sn: u32, itt: u32, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = 0x01;
    b[1] = flags;
    let len = data.len();
    b[5] = (len >> 16) as u8;
    b[6] = (len >> 8) as u8;
    b[7] = len as u8;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&edtl.to_be_bytes());
    b[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
    b[32..32 + cdb.len().min(16)].copy_from_slice(&cdb[..cdb.len().min(16)]);
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

/// Sends `bytes` and reads whatever comes back until the target goes quiet or closes.
async fn poke(s: &mut TcpStream, bytes: &[u8]) -> bool {
    if s.write_all(bytes).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => continue,
            Err(_) => return true,
        }
    }
}

/// Bounded fuzzing of the login and full-feature parsers over real sockets: random bytes,
/// mutated login requests, and mutated SCSI command, Data-Out, text, task management and NOP
/// PDUs after a real login. The target must never panic, and keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_pdus_never_break_the_target() {
    use rand::{Rng, SeedableRng};
    let dev = mem(4 << 20, 512);
    let exports = MemExports::default().with("vol", "", dev.clone());
    let h = start(exports, Arc::new(OpenAccess)).await;
    let addr = h.local_addr();
    let target = cairn_block::iscsi::target_name(PREFIX, "vol");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x15c5_1f0a);
    let login = {
        let text = format!("InitiatorName=iqn.2026-12.x:y\0TargetName={target}\0");
        let mut b = vec![0u8; 48];
        b[0] = 0x43;
        b[1] = 0x87;
        b[7] = text.len() as u8;
        b.extend_from_slice(text.as_bytes());
        b.resize(b.len().div_ceil(4) * 4, 0);
        b
    };
    for round in 0..150 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        match round % 3 {
            0 => {
                let n = rng.gen_range(1..600);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                poke(&mut s, &bytes).await;
            }
            1 => {
                let mut bytes = login.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
                poke(&mut s, &bytes).await;
            }
            _ => {
                let mut sn = raw_full_login(&mut s, &target).await;
                for i in 0..20u32 {
                    let opcode =
                        [0x00u8, 0x01, 0x02, 0x04, 0x05, 0x06, 0x10, 0x3f][rng.gen_range(0..8)];
                    let cdb: Vec<u8> = (0..16).map(|_| rng.gen()).collect();
                    let data: Vec<u8> = (0..rng.gen_range(0..1024)).map(|_| rng.gen()).collect();
                    let mut pdu =
                        scsi_pdu(sn, i, rng.gen(), rng.gen_range(0..1 << 20), &cdb, &data);
                    pdu[0] = opcode | if rng.gen_bool(0.3) { 0x40 } else { 0 };
                    for _ in 0..rng.gen_range(0..3) {
                        let j = rng.gen_range(0..48);
                        pdu[j] = rng.gen();
                    }
                    sn = sn.wrapping_add(1);
                    if !poke(&mut s, &pdu).await {
                        break;
                    }
                }
            }
        }
    }
    // Still serving.
    let (ok, out, err) = tool("iscsi-inq", &[&url(&h, "vol")]).await;
    assert!(ok, "{out}{err}");
    h.shutdown().await.unwrap();
}

/// Waits (bounded) until the target has no session left: nothing is stuck on a connection
/// that went away.
async fn no_sessions_left(h: &IscsiHandle) {
    use std::sync::atomic::Ordering;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.stats().active_sessions.load(Ordering::Relaxed) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a session outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_logins_and_dropped_writes_leave_nothing_behind() {
    let dev = mem(1 << 20, 512);
    let exports = MemExports::default().with("vol", "", dev.clone());
    let config = IscsiConfig {
        target_prefix: PREFIX.to_string(),
        login_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let h = start_with(exports, Arc::new(OpenAccess), config).await;
    let addr = h.local_addr();
    let target = cairn_block::iscsi::target_name(PREFIX, "vol");

    // A login that never finishes: half a header, then silence. The target hangs up.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x43, 0x87, 0, 0]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the target closes a login that does not finish")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // A write whose data never all arrives: 4 KiB announced, 512 bytes sent, connection gone.
    let before = dev.data();
    let mut s = TcpStream::connect(addr).await.unwrap();
    raw_full_login(&mut s, &target).await;
    let cdb = [0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0];
    // F clear: more (unsolicited) data was to follow.
    let pdu = scsi_pdu(0, 1, 0x21, 4096, &cdb, &[0xab; 512]);
    s.write_all(&pdu).await.unwrap();
    drop(s);
    no_sessions_left(&h).await;

    // A data segment longer than its header says (the rest is garbage to the target): the
    // connection is dropped, nothing is written.
    let mut s = TcpStream::connect(addr).await.unwrap();
    raw_full_login(&mut s, &target).await;
    let mut pdu = scsi_pdu(0, 2, 0xa1, 512, &cdb[..], &[0xcd; 512]);
    pdu[7] = 0xff; // claims 0x0002ff bytes where 512 follow: the next "header" is data
    pdu[6] = 0x02;
    pdu.extend_from_slice(&[0xee; 4096]);
    let _ = s.write_all(&pdu).await;
    drop(s);
    no_sessions_left(&h).await;
    assert!(
        dev.data() == before,
        "a write with missing or lying data changed the device"
    );

    // The target still serves.
    let (ok, out, err) = tool("iscsi-inq", &[&url(&h, "vol")]).await;
    assert!(ok, "{out}{err}");
    h.shutdown().await.unwrap();
}

/// Reads one PDU from the target: its header and data segment.
async fn read_pdu(s: &mut TcpStream) -> ([u8; 48], Vec<u8>) {
    let mut head = [0u8; 48];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut head))
        .await
        .expect("the target answers within 30 s")
        .expect("read a PDU header");
    let dlen = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
    let mut data = vec![0u8; dlen.div_ceil(4) * 4];
    s.read_exact(&mut data).await.expect("read a data segment");
    data.truncate(dlen);
    (head, data)
}

/// A Data-Out PDU answering an R2T.
fn data_out_pdu(itt: u32, ttt: u32, data_sn: u32, offset: u32, last: bool, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = 0x05;
    b[1] = if last { 0x80 } else { 0 };
    let len = data.len();
    b[5] = (len >> 16) as u8;
    b[6] = (len >> 8) as u8;
    b[7] = len as u8;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&ttt.to_be_bytes());
    b[36..40].copy_from_slice(&data_sn.to_be_bytes());
    b[40..44].copy_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

/// The connection's buffer budget is spent on a write still waiting for its data when the
/// next write arrives: that one waits for budget, but the target goes on reading, so the
/// first write's Data-Out still arrives, its budget comes back and both complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_budget_does_not_stall_the_data_of_others() {
    const MIB: u32 = 1 << 20;
    let dev = mem(4 << 20, 512);
    let exports = MemExports::default().with("vol", "", dev.clone());
    let config = IscsiConfig {
        target_prefix: PREFIX.to_string(),
        max_transfer: MIB,
        max_buffered_bytes: MIB as usize,
        ..Default::default()
    };
    let h = start_with(exports, Arc::new(OpenAccess), config).await;
    let target = cairn_block::iscsi::target_name(PREFIX, "vol");
    let mut s = TcpStream::connect(h.local_addr()).await.unwrap();
    raw_full_login(&mut s, &target).await;

    // Two writes of 1 MiB (the whole budget each), F set: all their data goes by R2T.
    let blocks = (MIB / 512) as u16;
    let write = |lba: u32| {
        let mut cdb = vec![0x2a, 0];
        cdb.extend_from_slice(&lba.to_be_bytes());
        cdb.extend_from_slice(&[0, (blocks >> 8) as u8, blocks as u8, 0]);
        cdb
    };
    let fill = |itt: u32| vec![itt as u8; MIB as usize];
    // TEST UNIT READY takes the unit attention of the new session first.
    s.write_all(&scsi_pdu(0, 9, 0x81, 0, &[0; 6], &[]))
        .await
        .unwrap();
    while read_pdu(&mut s).await.0[0] & 0x3f != 0x21 {}
    let mut cmds = scsi_pdu(1, 1, 0xa1, MIB, &write(0), &[]);
    cmds.extend(scsi_pdu(2, 2, 0xa1, MIB, &write(2048), &[]));
    s.write_all(&cmds).await.unwrap();

    // Answer every R2T until both commands have their status.
    let mut status = std::collections::HashMap::new();
    while status.len() < 2 {
        let (head, _) = read_pdu(&mut s).await;
        let itt = u32::from_be_bytes(head[16..20].try_into().unwrap());
        match head[0] & 0x3f {
            0x31 => {
                let ttt = u32::from_be_bytes(head[20..24].try_into().unwrap());
                let offset = u32::from_be_bytes(head[40..44].try_into().unwrap());
                let len = u32::from_be_bytes(head[44..48].try_into().unwrap());
                let data = fill(itt);
                let mut pdus = Vec::new();
                let (mut at, mut sn) = (offset, 0);
                while at < offset + len {
                    let n = (offset + len - at).min(8192);
                    let last = at + n == offset + len;
                    let piece = &data[at as usize..(at + n) as usize];
                    pdus.extend(data_out_pdu(itt, ttt, sn, at, last, piece));
                    at += n;
                    sn += 1;
                }
                s.write_all(&pdus).await.unwrap();
            }
            0x21 => {
                status.insert(itt, head[3]);
            }
            // NOP-In pings and anything else: not part of this exchange.
            _ => {}
        }
    }
    assert_eq!(status.get(&1), Some(&0), "first write: GOOD");
    assert_eq!(status.get(&2), Some(&0), "second write: GOOD");
    let data = dev.data();
    assert!(data[..MIB as usize].iter().all(|&b| b == 1));
    assert!(data[MIB as usize..2 * MIB as usize].iter().all(|&b| b == 2));
    h.shutdown().await.unwrap();
}
