//! iSCSI through a real `cairn serve`: libiscsi's conformance suite against a real volume,
//! `cairn volume export` deciding who logs in, and writes made durable by SYNCHRONIZE CACHE
//! surviving kill -9 of the target.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use common::fuse::{check_file_system, fuse2fs, nbdfuse, unmount};
use common::{admin_metrics, cairn, cairn_ok, run_tool, start_site, tool_ok};

/// A running `cairn serve`, killed when dropped (so a failing test leaves no process).
struct Site {
    child: Child,
    /// Portal address and target name prefix.
    portal: String,
    prefix: String,
}

impl Site {
    fn start(dir: &std::path::Path, extra: &[&str]) -> Site {
        let (child, ep) = start_site(dir, extra);
        let (portal, prefix) = ep.iscsi.expect("cairn serve printed its iSCSI endpoint");
        Site {
            child,
            portal,
            prefix,
        }
    }

    fn sigkill(mut self) {
        self.child.kill().expect("SIGKILL cairn serve");
        self.child.wait().unwrap();
    }

    fn url(&self, volume: &str) -> String {
        format!("iscsi://{}/{}:{volume}/0", self.portal, self.prefix)
    }

    fn url_with(&self, auth: &str, volume: &str) -> String {
        format!("iscsi://{auth}@{}/{}:{volume}/0", self.portal, self.prefix)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Held by the two tests that load both cores (the conformance suite, with its 600 s budget,
/// and qemu's image copies and file system): they run one after the other, not side by side.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn ok(bin: &str, args: &[&str]) -> bool {
    run_tool(bin, args, 120).status.success()
}

#[test]
fn conformance_suite_and_exports_on_a_running_site() {
    let _heavy = heavy();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let site = Site::start(tmp.path(), &[]);
    cairn_ok(&[
        "volume",
        "create",
        "conf",
        "--size",
        "64MiB",
        "--block-size",
        "4096",
        "--data-dir",
        dir,
    ]);

    // libiscsi's suite, SCSI family, on a real volume of 4096-byte blocks (a second session
    // is the multipath path).
    let u = site.url("conf");
    let out = run_tool("iscsi-test-cu", &["-d", "-v", "-t", "SCSI", &u, &u], 600);
    let text = String::from_utf8_lossy(&out.stdout);
    let tests = text
        .lines()
        .find(|l| l.trim_start().starts_with("tests"))
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let n: Vec<u32> = tests
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(n[1] > 200, "the SCSI family ran: {tests}");
    assert_eq!(n[3], 0, "conformance failures:\n{text}");
    // Skips are what a volume is not (removable, write-protected, of several logical blocks
    // per physical block) and the commands not built (the copy offload and atomic writes).
    let not_built = [
        "EXTENDEDCOPY",
        "RECEIVECOPYRESULT",
        "RECEIVE_COPY_RESULTS",
        "WRITEATOMIC16",
    ];
    for line in text
        .lines()
        .filter(|l| l.contains("[SKIPPED]") && l.contains("not implemented"))
    {
        assert!(
            not_built.iter().any(|c| line.contains(c)),
            "skipped as not implemented: {line}"
        );
    }
    // Per target and LUN metrics: commands by operation code, check conditions by sense key.
    let metrics = admin_metrics(tmp.path());
    let target = format!("{}:conf", site.prefix);
    let series = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let writes = format!(
        "cairn_iscsi_commands_total{{target=\"{target}\",lun=\"0\",opcode=\"0x2a\",command=\"WRITE(10)\"}}"
    );
    assert!(series(&writes) > 100.0, "WRITE(10) counted:\n{metrics}");
    let illegal = format!(
        "cairn_iscsi_check_conditions_total{{target=\"{target}\",lun=\"0\",sense_key=\"ILLEGAL REQUEST\"}}"
    );
    assert!(
        series(&illegal) > 10.0,
        "the suite's refused commands counted"
    );
    assert!(series("cairn_iscsi_command_seconds_count") > 1000.0);
    assert!(
        series(&format!(
            "cairn_iscsi_write_bytes_total{{target=\"{target}\""
        )) > 1e6
    );

    // Only host1, with CHAP.
    let host1 = "iqn.2026-12.dev.example:host1";
    // The secret on standard input, out of the command line.
    let mut export = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["volume", "export", "conf", "--iscsi", "--initiator", host1])
        .args(["--chap", "host1", "--data-dir", dir])
        .env_remove("CAIRN_CHAP_SECRET")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    export
        .stdin
        .take()
        .unwrap()
        .write_all(b"host1-secret-42\n")
        .unwrap();
    let done = export.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "cairn volume export with the secret on stdin"
    );
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(
        out.contains(host1) && out.contains("CHAP as host1"),
        "{out}"
    );
    let info = cairn_ok(&["volume", "info", "conf", "--data-dir", dir]);
    assert!(
        info.contains("iSCSI:") && info.contains(host1) && !info.contains("host1-secret-42"),
        "volume info shows the export, never the secret: {info}"
    );
    let chap = site.url_with("host1%host1-secret-42", "conf");
    assert!(ok("iscsi-inq", &["-i", host1, &chap]), "host1 with CHAP");
    assert!(!ok("iscsi-inq", &["-i", host1, &u]), "host1 without CHAP");
    assert!(
        !ok(
            "iscsi-inq",
            &["-i", host1, &site.url_with("host1%wrong-secret-42", "conf")]
        ),
        "host1 with a wrong secret"
    );
    assert!(
        !ok("iscsi-inq", &["-i", "iqn.2026-12.dev.example:host2", &chap]),
        "an initiator not on the list"
    );
    // Bad rules are refused with a reason.
    let (okay, _, err) = cairn(&[
        "volume",
        "export",
        "conf",
        "--iscsi",
        "--chap",
        "u:short",
        "--data-dir",
        dir,
    ]);
    assert!(!okay && err.contains("12-255"), "{err}");
    let (okay, _, err) = cairn(&[
        "volume",
        "export",
        "conf",
        "--iscsi",
        "--initiator",
        "not-a-name",
        "--data-dir",
        dir,
    ]);
    assert!(!okay && err.contains("iSCSI initiator name"), "{err}");

    // Off: discovery hides it and logins are refused.
    cairn_ok(&[
        "volume",
        "export",
        "conf",
        "--iscsi",
        "--off",
        "--data-dir",
        dir,
    ]);
    let portal = format!("iscsi://{}/", site.portal);
    let out = run_tool("iscsi-ls", &["-i", host1, &portal], 60);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(":conf"));
    assert!(!ok("iscsi-inq", &["-i", host1, &chap]));
    // Open again.
    cairn_ok(&["volume", "export", "conf", "--iscsi", "--data-dir", dir]);
    assert!(ok("iscsi-inq", &[&u]));
}

/// A minimal iSCSI initiator: login, SCSI commands with immediate data, Data-In.
struct Initiator {
    s: TcpStream,
    itt: u32,
    cmd_sn: u32,
}

fn pdu(bhs: &[u8; 48], data: &[u8]) -> Vec<u8> {
    let mut b = bhs.to_vec();
    b[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    b.extend_from_slice(data);
    b.resize(b.len().div_ceil(4) * 4, 0);
    b
}

impl Initiator {
    fn login(portal: &str, target: &str) -> std::io::Result<Initiator> {
        let mut s = TcpStream::connect(portal)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let text = format!(
            "InitiatorName=iqn.2026-12.dev.example:crash\0TargetName={target}\0\
             SessionType=Normal\0HeaderDigest=None\0DataDigest=None\0ImmediateData=Yes\0\
             InitialR2T=No\0MaxRecvDataSegmentLength=262144\0FirstBurstLength=262144\0\
             MaxBurstLength=1048576\0"
        );
        let mut b = [0u8; 48];
        b[0] = 0x43;
        b[1] = 0x87; // transit, operational stage to full feature
        b[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0x12, 0x34]);
        s.write_all(&pdu(&b, text.as_bytes()))?;
        let mut me = Initiator {
            s,
            itt: 1,
            cmd_sn: 0,
        };
        let (head, _) = me.read_pdu()?;
        if head[0] & 0x3f != 0x23 || head[36] != 0 {
            return Err(std::io::Error::other(format!(
                "login refused: class {} detail {}",
                head[36], head[37]
            )));
        }
        // Clear the power-on unit attention.
        for _ in 0..4 {
            if me.command(&[0u8; 6], None, 0)?.0 == 0 {
                break;
            }
        }
        Ok(me)
    }

    fn read_pdu(&mut self) -> std::io::Result<([u8; 48], Vec<u8>)> {
        let mut head = [0u8; 48];
        self.s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut data = vec![0u8; len.div_ceil(4) * 4];
        self.s.read_exact(&mut data)?;
        data.truncate(len);
        Ok((head, data))
    }

    /// Sends `cdb` (with `write` as immediate data, or expecting `read` bytes); returns the
    /// status and the data read.
    fn command(
        &mut self,
        cdb: &[u8],
        write: Option<&[u8]>,
        read: u32,
    ) -> std::io::Result<(u8, Vec<u8>)> {
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] =
            0x80 | 0x01 | if read > 0 { 0x40 } else { 0 } | if write.is_some() { 0x20 } else { 0 };
        let itt = self.itt;
        self.itt += 1;
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        let edtl = write.map_or(read, |w| w.len() as u32);
        b[20..24].copy_from_slice(&edtl.to_be_bytes());
        b[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        self.cmd_sn += 1;
        b[32..32 + cdb.len()].copy_from_slice(cdb);
        self.s.write_all(&pdu(&b, write.unwrap_or(&[])))?;
        let mut data = vec![0u8; read as usize];
        loop {
            let (head, seg) = self.read_pdu()?;
            match head[0] & 0x3f {
                0x25 => {
                    let off = u32::from_be_bytes([head[40], head[41], head[42], head[43]]) as usize;
                    data[off..off + seg.len()].copy_from_slice(&seg);
                    if head[1] & 0x01 != 0 {
                        return Ok((head[3], data));
                    }
                }
                0x21 => return Ok((head[3], data)),
                0x20 => {
                    // A ping: answer it.
                    let mut b = [0u8; 48];
                    b[0] = 0x40;
                    b[1] = 0x80;
                    b[16..20].copy_from_slice(&[0xff; 4]);
                    b[20..24].copy_from_slice(&head[20..24]);
                    self.s.write_all(&b)?;
                }
                op => return Err(std::io::Error::other(format!("unexpected PDU {op:#x}"))),
            }
        }
    }
}

const BLOCK: usize = 4096;
const BLOCKS: u32 = 256;

/// Block `lba` of generation `generation`: every 8 bytes are (lba, generation).
fn pattern(lba: u32, generation: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(BLOCK);
    while v.len() < BLOCK {
        v.extend_from_slice(&lba.to_le_bytes());
        v.extend_from_slice(&generation.to_le_bytes());
    }
    v
}

fn write10(i: &mut Initiator, lba: u32, data: &[u8]) -> std::io::Result<u8> {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&((data.len() / BLOCK) as u16).to_be_bytes());
    Ok(i.command(&cdb, Some(data), 0)?.0)
}

#[test]
fn writes_synchronized_before_a_kill_9_read_back_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    // No timer commits: only SYNCHRONIZE CACHE makes writes durable, so a flush that did
    // nothing would lose generations 1-3.
    let slow = ["--volume-commit-interval", "3600"];
    let site = Site::start(tmp.path(), &slow);
    cairn_ok(&[
        "volume",
        "create",
        "crash",
        "--size",
        "1MiB",
        "--block-size",
        "4096",
        "--data-dir",
        dir,
    ]);
    let target = format!("{}:crash", site.prefix);
    let mut init = Initiator::login(&site.portal, &target).expect("login");
    // Generations 1-3 over every block, each made durable by SYNCHRONIZE CACHE (10).
    let mut order: Vec<u32> = (0..BLOCKS).collect();
    for generation in 1..=3u32 {
        order.rotate_left(37);
        for &lba in &order {
            assert_eq!(
                write10(&mut init, lba, &pattern(lba, generation)).unwrap(),
                0
            );
        }
        let (status, _) = init
            .command(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], None, 0)
            .unwrap();
        assert_eq!(status, 0, "SYNCHRONIZE CACHE");
    }
    // Generation 4 on half the blocks, never synchronized, then SIGKILL.
    let fourth: Vec<u32> = order.iter().step_by(2).copied().collect();
    for &lba in &fourth {
        assert_eq!(write10(&mut init, lba, &pattern(lba, 4)).unwrap(), 0);
    }
    drop(init);
    site.sigkill();

    let site = Site::start(tmp.path(), &slow);
    let mut init = Initiator::login(&site.portal, &target).expect("login after the restart");
    for lba in 0..BLOCKS {
        let mut cdb = [0u8; 10];
        cdb[0] = 0x28;
        cdb[2..6].copy_from_slice(&lba.to_be_bytes());
        cdb[8] = 1;
        let (status, data) = init.command(&cdb, None, BLOCK as u32).unwrap();
        assert_eq!(status, 0, "READ (10) of block {lba}");
        // Each block is whole, its own, and of generation 3 (synchronized), or 4 where that
        // was written after (a commit may have taken it before the kill: the write-back
        // budget commits when it fills).
        let generation = u32::from_le_bytes(data[4..8].try_into().unwrap());
        let newest = if fourth.contains(&lba) { 4 } else { 3 };
        assert!(
            (3..=newest).contains(&generation) && data == pattern(lba, generation),
            "block {lba} after the restart: {:02x?}",
            &data[..16]
        );
    }
}

/// qemu's iSCSI initiator (its block-iscsi module; scripts/test points QEMU_MODULE_DIR at one
/// matching qemu-utils): fails with what to do when the module is missing.
fn qemu_iscsi() {
    let out = run_tool("qemu-img", &["--help"], 60);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.split_whitespace().any(|w| w == "iscsi"),
        "qemu-img has no iscsi driver: run the tests with scripts/test, or set QEMU_MODULE_DIR \
         to the directory scripts/qemu-iscsi-module prints"
    );
}

#[test]
fn qemu_and_an_ext4_file_system_over_iscsi_survive_kill_9() {
    let _heavy = heavy();
    qemu_iscsi();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let slow = ["--volume-commit-interval", "3600"];
    let site = Site::start(tmp.path(), &slow);
    for (name, size) in [("qimg", "32MiB"), ("fsvol", "128MiB")] {
        cairn_ok(&["volume", "create", name, "--size", size, "--data-dir", dir]);
    }

    // qemu-img convert in and out, compare, and qemu-io pattern writes.
    let img = tmp.path().join("in.img");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..32usize << 20)
        .map(|i| {
            if (i >> 20) % 4 == 3 {
                return 0; // every fourth MiB a hole
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&img, &data).unwrap();
    let img = img.to_str().unwrap();
    let url = site.url("qimg");
    tool_ok(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", img, &url],
        300,
    );
    let cmp = tool_ok(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", img, &url],
        300,
    );
    assert!(cmp.contains("identical"), "{cmp}");
    let io = tool_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1M 64k",
            "-c",
            "write -z 4M 1M",
            "-c",
            "flush",
            "-c",
            "read -P 0x5a 1M 64k",
            "-c",
            "read -P 0 4M 1M",
            &url,
        ],
        120,
    );
    assert!(!io.contains("Pattern verification failed"), "{io}");
    let out = tmp.path().join("out.img");
    let out = out.to_str().unwrap();
    tool_ok(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &url, out],
        300,
    );
    let back = std::fs::read(out).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back[1 << 20..(1 << 20) + 65536].iter().all(|&b| b == 0x5a));
    assert!(back[4 << 20..5 << 20].iter().all(|&b| b == 0));
    assert!(back[5 << 20..] == data[5 << 20..] && back[..1 << 20] == data[..1 << 20]);

    // ext4 through qemu's initiator: qemu-nbd opens the LUN over iSCSI and nbdfuse shows it
    // as a file; mkfs, files written through fuse2fs, both unmounted (flushes reach the
    // target as SYNCHRONIZE CACHE), then kill -9 of the target.
    let (mnt, fs) = (tmp.path().join("mnt"), tmp.path().join("fs"));
    let lun = site.url("fsvol");
    let export = ["[", "qemu-nbd", "-f", "raw", &lun, "]"];
    let fuse = nbdfuse(&export, &mnt, &fs);
    let image = mnt.join("nbd");
    tool_ok("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()], 120);
    let ext = fuse2fs(&image, &fs);
    let mut files = Vec::new();
    for i in 0..12u64 {
        let len = 4096 + (i as usize) * 70_000;
        let body: Vec<u8> = (0..len).map(|j| (j as u64 * 131 + i) as u8).collect();
        std::fs::write(fs.join(format!("f{i}")), &body).unwrap();
        files.push((format!("f{i}"), body));
    }
    std::fs::create_dir(fs.join("dir")).unwrap();
    std::fs::write(fs.join("dir/note"), b"written through iSCSI").unwrap();
    files.push(("dir/note".into(), b"written through iSCSI".to_vec()));
    unmount(&fs, ext);
    unmount(&mnt, fuse);
    site.sigkill();

    // After the restart: e2fsck finds it clean and every file reads back.
    let site = Site::start(tmp.path(), &slow);
    let lun = site.url("fsvol");
    let export = ["[", "qemu-nbd", "-f", "raw", &lun, "]"];
    let fuse = nbdfuse(&export, &mnt, &fs);
    check_file_system(&image, &fs, &files, "after kill -9");
    unmount(&mnt, fuse);
}

/// PERSISTENT RESERVE OUT with a 24-byte parameter list.
fn prout(i: &mut Initiator, action: u8, kind: u8, key: u64, sa_key: u64) -> u8 {
    let mut param = [0u8; 24];
    param[..8].copy_from_slice(&key.to_be_bytes());
    param[8..16].copy_from_slice(&sa_key.to_be_bytes());
    let cdb = [0x5f, action, kind, 0, 0, 0, 0, 0, 24, 0];
    i.command(&cdb, Some(&param), 0).unwrap().0
}

/// PERSISTENT RESERVE IN: the registered keys, and the reservation's key and type.
fn prin(i: &mut Initiator) -> (Vec<u64>, Option<(u64, u8)>) {
    let (status, keys) = i
        .command(&[0x5e, 0, 0, 0, 0, 0, 0, 0x01, 0, 0], None, 256)
        .unwrap();
    assert_eq!(status, 0, "READ KEYS");
    let n = u32::from_be_bytes(keys[4..8].try_into().unwrap()) as usize / 8;
    let keys = (0..n)
        .map(|k| u64::from_be_bytes(keys[8 + 8 * k..16 + 8 * k].try_into().unwrap()))
        .collect();
    let (status, r) = i
        .command(&[0x5e, 1, 0, 0, 0, 0, 0, 0x01, 0, 0], None, 256)
        .unwrap();
    assert_eq!(status, 0, "READ RESERVATION");
    let held = u32::from_be_bytes(r[4..8].try_into().unwrap()) >= 16;
    let reservation = held.then(|| {
        (
            u64::from_be_bytes(r[8..16].try_into().unwrap()),
            r[21] & 0x0f,
        )
    });
    (keys, reservation)
}

#[test]
fn persistent_reservations_outlive_every_session() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let site = Site::start(tmp.path(), &[]);
    cairn_ok(&[
        "volume",
        "create",
        "shared",
        "--size",
        "16MiB",
        "--data-dir",
        dir,
    ]);
    let target = format!("{}:shared", site.prefix);
    let mut init = Initiator::login(&site.portal, &target).expect("login");
    assert_eq!(prout(&mut init, 0, 0, 0, 0xc1a5), 0, "REGISTER");
    assert_eq!(
        prout(&mut init, 1, 1, 0xc1a5, 0),
        0,
        "RESERVE write exclusive"
    );
    assert_eq!(prin(&mut init), (vec![0xc1a5], Some((0xc1a5, 1))));
    drop(init);
    // Wait until the target has ended the session (the volume is closed when no session uses
    // it), then log in again: the registration and the reservation are still there.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !admin_metrics(tmp.path())
        .lines()
        .any(|l| l == "cairn_iscsi_sessions 0")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the session never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut init = Initiator::login(&site.portal, &target).expect("login again");
    assert_eq!(prin(&mut init), (vec![0xc1a5], Some((0xc1a5, 1))));
    // The holder (same initiator and ISID) releases and unregisters; nothing is left.
    assert_eq!(prout(&mut init, 2, 1, 0xc1a5, 0), 0, "RELEASE");
    assert_eq!(prout(&mut init, 0, 0, 0xc1a5, 0), 0, "unREGISTER");
    assert_eq!(prin(&mut init), (vec![], None));
}
