//! A bucket exported by the NFS gateway, mounted through FUSE with the `nfs-fuse` client (an
//! NFSv3 client of this crate: UNSTABLE writes, COMMIT, resend after a server restart), and
//! used with std::fs and the usual tools: what is done through the mount is what the object
//! API then lists and reads, and objects put through the object API (as S3 puts them) show in
//! the mount. An fsx-style run of random operations (and server restarts) checks every read
//! against a model. Uncommitted writes survive a server restart (the client sends them again
//! when COMMIT's verifier changed), and SIGTERM unmounts, lazily while a file is open.
//!
//! The NFS server runs in this process on its own runtime, so that a test can stop it as a
//! crash would (losing the writes it buffered) and start it again on the same port.
//!
//! Needs root and /dev/fuse: without them the tests fail and say so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_client::{Client, ListQuery, PutOptions, VersionSel};
use cairn_nfs::{ExportConfig, Fs, NfsConfig, NfsServer};
use cairn_tests::random_bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BUCKET: &str = "bkt";

/// Fails (does not skip) when the machine cannot mount FUSE file systems.
fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "the NFS mount tests mount through FUSE and need /dev/fuse (load the fuse module; in a \
         container, pass --device /dev/fuse)"
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "the NFS mount tests need root: they mount a FUSE file system and act on the export as \
         uid 0 (run them as root, e.g. with sudo)"
    );
}

/// A store with one bucket and an NFS server exporting it, on a runtime of its own.
struct Site {
    client: Client,
    addr: SocketAddr,
    server: Option<tokio::runtime::Runtime>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Site {
    fn start() -> Site {
        require_fuse();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let client = rt.block_on(async {
            let client = Client::open_dir(dir.path()).unwrap();
            client.create_bucket(BUCKET, "owner").await.unwrap();
            client
        });
        let mut site = Site {
            client,
            addr: "127.0.0.1:0".parse().unwrap(),
            server: None,
            rt,
            _dir: dir,
        };
        site.start_server();
        site
    }

    /// Starts the NFS server (a new instance: a new write verifier, nothing buffered), on the
    /// port of the last one if there was one.
    fn start_server(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nfs-server")
            .enable_all()
            .build()
            .unwrap();
        let exports = vec![ExportConfig {
            bucket: BUCKET.into(),
            read_only: false,
            clients: Vec::new(),
            root_squash: false,
        }];
        let fs = Arc::new(Fs::new(self.client.clone(), exports, 64 << 20));
        // No background commits: data is committed when the client asks.
        let config = NfsConfig {
            commit_after: Duration::from_secs(3600),
            ..NfsConfig::default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = loop {
            match rt.block_on(NfsServer::bind(self.addr, fs.clone(), config.clone())) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding {}: {e}; trying again", self.addr);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("cannot bind the NFS server on {}: {e}", self.addr),
            }
        };
        self.addr = server.local_addr().unwrap();
        rt.spawn(server.run(std::future::pending()));
        self.server = Some(rt);
    }

    /// Stops the NFS server as a crash would: its connections drop and what it buffered of
    /// UNSTABLE writes is lost.
    fn crash_server(&mut self) {
        if let Some(rt) = self.server.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Every object of the bucket: key → bytes.
    fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.rt.block_on(async {
            let mut out = BTreeMap::new();
            let mut after = None;
            loop {
                let page = self
                    .client
                    .list_objects(
                        BUCKET,
                        &ListQuery {
                            prefix: String::new(),
                            delimiter: None,
                            start_after: after.clone(),
                            max_keys: 1000,
                        },
                    )
                    .await
                    .unwrap();
                for m in &page.objects {
                    out.insert(m.key.clone(), get(&self.client, &m.key).await);
                }
                match page.objects.last() {
                    Some(m) if page.is_truncated => after = Some(m.key.clone()),
                    _ => return out,
                }
            }
        })
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(get(&self.client, key))
    }

    /// PUT through the object API, as an S3 client would.
    fn put(&self, key: &str, body: &[u8]) {
        let body = bytes::Bytes::copy_from_slice(body);
        let len = body.len() as u64;
        self.rt
            .block_on(self.client.put_object(
                BUCKET,
                key,
                Box::pin(futures::stream::once(async move { Ok(body) })),
                PutOptions {
                    content_length: Some(len),
                    owner: "owner".into(),
                    ..PutOptions::default()
                },
            ))
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    fn delete(&self, key: &str) {
        self.rt
            .block_on(self.client.delete_object(BUCKET, key, &VersionSel::Current))
            .unwrap_or_else(|e| panic!("DELETE {key}: {e}"));
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(rt) = self.server.take() {
            rt.shutdown_background();
        }
    }
}

async fn get(client: &Client, key: &str) -> Vec<u8> {
    let r = client
        .get_object(BUCKET, key, &VersionSel::Current, None)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"));
    let mut body = r.body;
    let mut out = Vec::new();
    while let Some(b) = body.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

/// Whether `dir` is a FUSE mount point now.
fn is_fuse_mount(dir: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines().any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        fields.get(4) == Some(&want.as_ref()) && l.contains(" - fuse")
    })
}

fn fusermount(args: &[&str], dir: &Path) -> bool {
    ["fusermount3", "fusermount"].iter().any(|tool| {
        Command::new(tool)
            .args(args)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The export mounted by an `nfs-fuse` process; on drop (a failed test) it is unmounted and
/// the process stopped, so that no mount is left behind.
struct Mount {
    dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Mount {
    /// Mounts `/BUCKET` of `site` on `dir` and waits until the mount is up.
    fn new(site: &Site, dir: &Path) -> Mount {
        fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let log = dir.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_nfs-fuse"))
            .arg(site.addr.to_string())
            .arg(format!("/{BUCKET}"))
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("start nfs-fuse");
        let mut m = Mount {
            dir,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_fuse_mount(&m.dir) {
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                m.child = None;
                panic!(
                    "nfs-fuse exited ({status}) before mounting:\n{}",
                    m.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nfs-fuse did not mount {} within 30 s:\n{}",
                m.dir.display(),
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts (`fusermount3 -u`), waits for nfs-fuse to exit by itself and checks it
    /// succeeded; returns what it printed.
    fn unmount(self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Busy while the kernel still releases files closed just before.
        while !fusermount(&["-u"], &self.dir) {
            assert!(
                Instant::now() < deadline,
                "fusermount3 -u {} keeps failing",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_exit()
    }

    /// Sends nfs-fuse SIGTERM.
    fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for nfs-fuse to exit by itself (unmounted) and checks it succeeded and left no
    /// mount; returns what it printed.
    fn wait_exit(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut child = self.child.take().unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!("nfs-fuse did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.log_text();
        assert!(status.success(), "nfs-fuse exited with {status}:\n{log}");
        assert!(
            !is_fuse_mount(&self.dir),
            "still mounted after nfs-fuse exited"
        );
        log
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if !fusermount(&["-u"], &self.dir) {
                let _ = child.kill();
                fusermount(&["-u", "-z"], &self.dir);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("nfs-fuse output:\n{}", self.log_text());
        }
    }
}

/// The names in a directory of the mount.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn tool(cmd: &str, args: &[&Path]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn same(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes, {} expected, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn files_and_directories_made_through_the_mount_are_the_buckets_objects() {
    let started = Instant::now();
    let mut site = Site::start();
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new(&site, &tmp.path().join("mnt"));
    let mounted = started.elapsed();

    // Files: create, overwrite in the middle, append, truncate down and up.
    let mut want: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut a = random_bytes((3 << 20) + 12_345, 1);
    fs::write(m.path("a.bin"), &a).unwrap();
    same("a.bin as written", &fs::read(m.path("a.bin")).unwrap(), &a);
    let patch = random_bytes(70_000, 2);
    let mut f = OpenOptions::new()
        .write(true)
        .open(m.path("a.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(1_000_000)).unwrap();
    f.write_all(&patch).unwrap();
    drop(f);
    a[1_000_000..1_070_000].copy_from_slice(&patch);
    let tail = random_bytes(5_000, 3);
    let mut f = OpenOptions::new()
        .append(true)
        .open(m.path("a.bin"))
        .unwrap();
    f.write_all(&tail).unwrap();
    drop(f);
    a.extend_from_slice(&tail);
    same(
        "a.bin after the overwrite and the append",
        &fs::read(m.path("a.bin")).unwrap(),
        &a,
    );
    let f = OpenOptions::new()
        .write(true)
        .open(m.path("a.bin"))
        .unwrap();
    f.set_len(2_000_000).unwrap();
    a.truncate(2_000_000);
    assert_eq!(f.metadata().unwrap().len(), 2_000_000);
    f.set_len(2_100_000).unwrap();
    a.resize(2_100_000, 0);
    drop(f);
    same(
        "a.bin after truncations",
        &fs::read(m.path("a.bin")).unwrap(),
        &a,
    );
    fs::write(m.path("empty"), b"").unwrap();
    want.insert("empty", Vec::new());

    // Directories, nested; files in them; cp from outside the mount.
    fs::create_dir_all(m.path("d1/d2/d3")).unwrap();
    let notes = b"notes\n".repeat(1000);
    fs::write(m.path("d1/notes.txt"), &notes).unwrap();
    let deep = random_bytes(300_000, 4);
    fs::write(m.path("d1/d2/d3/deep.bin"), &deep).unwrap();
    let outside = tmp.path().join("outside.bin");
    let copied = random_bytes(1_500_000, 5);
    fs::write(&outside, &copied).unwrap();
    tool("cp", &[&outside, &m.path("d1/d2/copied.bin")]);
    assert_eq!(
        names(&m.path("d1")),
        BTreeSet::from(["d2".into(), "notes.txt".into()])
    );
    assert_eq!(
        fs::create_dir(m.path("d1/d2")).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        fs::remove_dir(m.path("d1/d2")).unwrap_err().kind(),
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(
        fs::read(m.path("d1/missing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Renames: a file into a directory, then the whole tree with mv.
    fs::rename(m.path("a.bin"), m.path("d1/d2/a-renamed.bin")).unwrap();
    assert!(!m.path("a.bin").exists());
    tool("mv", &[&m.path("d1"), &m.path("top")]);
    assert!(!m.path("d1").exists());
    same(
        "the renamed file in the renamed tree",
        &fs::read(m.path("top/d2/a-renamed.bin")).unwrap(),
        &a,
    );
    want.insert("top/d2/a-renamed.bin", a.clone());
    want.insert("top/notes.txt", notes.clone());
    want.insert("top/d2/d3/deep.bin", deep.clone());
    want.insert("top/d2/copied.bin", copied.clone());

    // Removals: a file, an empty directory, a tree with rm -r.
    fs::write(m.path("top/gone.txt"), b"soon gone").unwrap();
    fs::remove_file(m.path("top/gone.txt")).unwrap();
    fs::create_dir(m.path("top/empty-dir")).unwrap();
    fs::remove_dir(m.path("top/empty-dir")).unwrap();
    fs::create_dir_all(m.path("junk/a/b")).unwrap();
    fs::write(m.path("junk/a/b/x"), b"x").unwrap();
    fs::write(m.path("junk/y"), b"y").unwrap();
    tool("rm", &[Path::new("-r"), &m.path("junk")]);
    assert!(!m.path("junk").exists());

    // Symlinks.
    std::os::unix::fs::symlink("top/notes.txt", m.path("link")).unwrap();
    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        Path::new("top/notes.txt")
    );
    assert!(fs::symlink_metadata(m.path("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    same(
        "read through the symlink",
        &fs::read(m.path("link")).unwrap(),
        &notes,
    );

    // Modes.
    fs::set_permissions(m.path("top/notes.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(m.path("top/d2"), fs::Permissions::from_mode(0o750)).unwrap();
    let mode = |p: &str| fs::metadata(m.path(p)).unwrap().permissions().mode();
    assert_eq!(mode("top/notes.txt") & 0o7777, 0o640);
    assert_eq!(mode("top/d2") & 0o7777, 0o750);
    assert!(fs::metadata(m.path("top/d2")).unwrap().is_dir());
    // access(2) asks the server (ACCESS): root may write, but not execute a file no one may.
    use rustix::fs::{access, Access};
    access(m.path("top/notes.txt"), Access::WRITE_OK | Access::READ_OK).unwrap();
    assert_eq!(
        access(m.path("top/notes.txt"), Access::EXEC_OK),
        Err(rustix::io::Errno::ACCESS)
    );
    access(m.path("top/d2"), Access::EXEC_OK).unwrap();
    // Owner and times.
    std::os::unix::fs::chown(m.path("top/notes.txt"), Some(1234), Some(5678)).unwrap();
    let meta = fs::metadata(m.path("top/notes.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let f = File::options()
        .write(true)
        .open(m.path("top/notes.txt"))
        .unwrap();
    f.set_modified(when).unwrap();
    drop(f);
    assert_eq!(
        fs::metadata(m.path("top/notes.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        when
    );
    // statfs (FSSTAT).
    let st = rustix::fs::statvfs(&m.dir).unwrap();
    assert!(
        st.f_blocks > 0 && st.f_bavail > 0,
        "statfs: {} blocks, {} available",
        st.f_blocks,
        st.f_bavail
    );
    assert_eq!(
        fs::metadata(m.path("top/d2/copied.bin")).unwrap().len(),
        1_500_000
    );
    let ls = Command::new("ls")
        .arg("-la")
        .arg(m.path("top/d2"))
        .output()
        .unwrap();
    assert!(ls.status.success());
    assert!(String::from_utf8_lossy(&ls.stdout).contains("a-renamed.bin"));

    // The object API sees the same tree: the same keys (files, the markers of directories
    // made with mkdir, the symlink holding its target) with the same bytes.
    let objects = site.objects();
    let mut expected: BTreeMap<String, Vec<u8>> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for marker in ["top/", "top/d2/", "top/d2/d3/"] {
        expected.insert(marker.into(), Vec::new());
    }
    expected.insert("link".into(), b"top/notes.txt".to_vec());
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the bucket's keys"
    );
    for (k, v) in &expected {
        same(&format!("object {k}"), &objects[k], v);
    }

    // Objects put through the object API show in the mount; changes show at once.
    let one = b"hello from S3".to_vec();
    let two = random_bytes(200_000, 6);
    site.put("s3/one.txt", &one);
    site.put("s3/deep/two.bin", &two);
    site.put("top/from-s3.txt", b"beside the NFS files");
    assert_eq!(
        names(&m.path("s3")),
        BTreeSet::from(["deep".into(), "one.txt".into()])
    );
    same(
        "an S3 object read through the mount",
        &fs::read(m.path("s3/one.txt")).unwrap(),
        &one,
    );
    same(
        "a nested S3 object",
        &fs::read(m.path("s3/deep/two.bin")).unwrap(),
        &two,
    );
    assert!(names(&m.path("top")).contains("from-s3.txt"));
    let newer = b"changed through S3".to_vec();
    site.put("s3/one.txt", &newer);
    same(
        "an object overwritten through S3",
        &fs::read(m.path("s3/one.txt")).unwrap(),
        &newer,
    );
    site.delete("s3/one.txt");
    assert!(
        !m.path("s3/one.txt").exists(),
        "deleted through S3, still in the mount"
    );
    // And a file written through the mount over an S3 object is read back through S3.
    fs::write(m.path("s3/deep/two.bin"), b"rewritten over NFS").unwrap();
    assert_eq!(site.get("s3/deep/two.bin"), b"rewritten over NFS");

    let log = m.unmount();
    site.crash_server();
    eprintln!("nfs-fuse: {}", log.trim().replace('\n', "\n  "));
    eprintln!(
        "mounted in {:.2?}; whole test {:.2?}",
        mounted,
        started.elapsed()
    );
}

/// The last operations of an fsx run, for failure messages.
fn recent(history: &[String]) -> String {
    history[history.len().saturating_sub(40)..].join("\n")
}

/// Adds details to the last operation of an fsx run.
fn note(history: &mut [String], what: String) {
    if let Some(last) = history.last_mut() {
        last.push_str(&what);
    }
}

/// One file of the fsx run: its bytes, and an open handle (or none).
struct FsxFile {
    data: Vec<u8>,
    handle: Option<File>,
}

#[test]
fn fsx_random_operations_match_a_model() {
    const OPS: usize = 6000;
    const TIME: Duration = Duration::from_secs(20);
    const MAX_SIZE: u64 = 3 << 20;
    let mut site = Site::start();
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new(&site, &tmp.path().join("mnt"));
    fs::create_dir(m.path("fsx")).unwrap();
    let path = |name: &str| m.path(&format!("fsx/{name}"));
    // NFS_FSX_SEED=N runs another sequence.
    let seed = std::env::var("NFS_FSX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f5c5_u64);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut files: HashMap<String, FsxFile> = HashMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut bytes_written, mut bytes_read) = (0u64, 0u64);
    let started = Instant::now();
    let mut done = 0;
    let mut history: Vec<String> = Vec::new();
    // Names ever used. A file is only made under a new name: the server gives a new file the
    // file id of a file renamed away from the same name (see the ignored test below).
    let mut used: Vec<String> = Vec::new();
    let mut restarts = 0;
    while done < OPS && started.elapsed() < TIME {
        done += 1;
        // Three times, the server crashes and comes back: what it lost of uncommitted writes
        // the client must send again.
        if done % (OPS / 4) == 0 && done < OPS {
            site.crash_server();
            site.start_server();
            restarts += 1;
            history.push(format!("{done}: server restart"));
        }
        // Fewer than three files: make one.
        if files.len() < 3 {
            let name = format!("f{}", used.len());
            used.push(name.clone());
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(path(&name))
                .unwrap_or_else(|e| panic!("op {done}: create {name}: {e}"));
            files.insert(
                name,
                FsxFile {
                    data: Vec::new(),
                    handle: Some(f),
                },
            );
            *counts.entry("create").or_default() += 1;
            continue;
        }
        let mut existing: Vec<String> = files.keys().cloned().collect();
        existing.sort();
        let name = existing[rng.gen_range(0..existing.len())].clone();
        let p = path(&name);
        let file = files.get_mut(&name).unwrap();
        if file.handle.is_none() {
            file.handle = Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&p)
                    .unwrap_or_else(|e| panic!("op {done}: open {name}: {e}")),
            );
        }
        let len = file.data.len() as u64;
        let op = match rng.gen_range(0..100) {
            0..=34 => "write",
            35..=64 => "read",
            65..=72 => "truncate",
            73..=79 => "reopen",
            80..=85 => "fsync",
            86..=91 => "rename",
            92..=96 => "stat",
            _ => "check",
        };
        *counts.entry(op).or_default() += 1;
        history.push(format!("{done}: {op} {name} (len {len})"));
        let h = file.handle.as_ref().unwrap();
        match op {
            "write" => {
                let at = rng
                    .gen_range(0..=len.min(MAX_SIZE - 1) + 65_536)
                    .min(MAX_SIZE - 1);
                let n = if rng.gen_range(0..50) == 0 {
                    rng.gen_range(1..=1_300_000)
                } else {
                    rng.gen_range(1..=65_536)
                };
                let n = n.min((MAX_SIZE - at) as usize);
                let buf = random_bytes(n, rng.gen());
                note(&mut history, format!(" {n} bytes at {at}"));
                h.write_all_at(&buf, at)
                    .unwrap_or_else(|e| panic!("op {done}: write {n} at {at} of {name}: {e}"));
                let end = at as usize + n;
                if file.data.len() < end {
                    file.data.resize(end, 0);
                }
                file.data[at as usize..end].copy_from_slice(&buf);
                bytes_written += n as u64;
            }
            "read" => {
                let at = rng.gen_range(0..=len + 1000);
                let n = rng.gen_range(1..=200_000usize);
                note(&mut history, format!(" {n} bytes at {at}"));
                let mut buf = vec![0u8; n];
                let mut got = 0;
                while got < n {
                    let r = h
                        .read_at(&mut buf[got..], at + got as u64)
                        .unwrap_or_else(|e| panic!("op {done}: read of {name}: {e}"));
                    if r == 0 {
                        break;
                    }
                    got += r;
                }
                let from = (at as usize).min(file.data.len());
                let to = (at as usize + n).min(file.data.len());
                same(
                    &format!(
                        "op {done}: read of {n} at {at} of {name} ({len} bytes) after\n{}\n",
                        recent(&history)
                    ),
                    &buf[..got],
                    &file.data[from..to],
                );
                bytes_read += got as u64;
            }
            "truncate" => {
                let to = if rng.gen_bool(0.5) {
                    rng.gen_range(0..=len)
                } else {
                    rng.gen_range(len..=(len + 300_000).min(MAX_SIZE))
                };
                note(&mut history, format!(" to {to}"));
                h.set_len(to)
                    .unwrap_or_else(|e| panic!("op {done}: truncate {name} to {to}: {e}"));
                file.data.resize(to as usize, 0);
            }
            "reopen" => {
                // Close (flush: COMMIT) and open again.
                file.handle = None;
                file.handle = Some(OpenOptions::new().read(true).write(true).open(&p).unwrap());
            }
            "fsync" => h
                .sync_all()
                .unwrap_or_else(|e| panic!("op {done}: fsync {name}: {e}")),
            "stat" => {
                let got = fs::metadata(&p).unwrap().len();
                assert_eq!(
                    got,
                    len,
                    "op {done}: size of {name} after\n{}",
                    recent(&history)
                );
            }
            "check" => {
                same(
                    &format!("op {done}: whole {name} after\n{}\n", recent(&history)),
                    &fs::read(&p).unwrap(),
                    &file.data,
                );
            }
            "rename" => {
                // To a new name, to a name used before and free now, or over another file
                // (whose handle is closed first).
                let free: Vec<&String> = used.iter().filter(|n| !files.contains_key(*n)).collect();
                let to = match rng.gen_range(0..3) {
                    0 if !free.is_empty() => free[rng.gen_range(0..free.len())].clone(),
                    1 => existing[rng.gen_range(0..existing.len())].clone(),
                    _ => {
                        used.push(format!("f{}", used.len()));
                        used[used.len() - 1].clone()
                    }
                };
                note(&mut history, format!(" to {to}"));
                if to != name {
                    if let Some(mut over) = files.remove(&to) {
                        over.handle = None;
                    }
                    fs::rename(&p, path(&to))
                        .unwrap_or_else(|e| panic!("op {done}: rename {name} to {to}: {e}"));
                    let moved = files.remove(&name).unwrap();
                    files.insert(to, moved);
                }
            }
            _ => unreachable!(),
        }
    }
    // Close everything (COMMIT), then compare through the mount and through the object API.
    for f in files.values_mut() {
        f.handle = None;
    }
    let on_disk = names(&m.path("fsx"));
    let mut model: Vec<&String> = files.keys().collect();
    model.sort();
    assert_eq!(
        on_disk.iter().collect::<Vec<_>>(),
        model,
        "the files in the mount"
    );
    for (name, f) in &files {
        same(
            &format!("{name} at the end"),
            &fs::read(path(name)).unwrap(),
            &f.data,
        );
    }
    let objects = site.objects();
    let keys: Vec<&String> = objects.keys().collect();
    let mut want_keys: Vec<String> = files.keys().map(|n| format!("fsx/{n}")).collect();
    want_keys.push("fsx/".into());
    want_keys.sort();
    assert_eq!(
        keys,
        want_keys.iter().collect::<Vec<_>>(),
        "the bucket's keys"
    );
    for (name, f) in &files {
        same(
            &format!("object fsx/{name}"),
            &objects[&format!("fsx/{name}")],
            &f.data,
        );
    }
    let ran = started.elapsed();
    let log = m.unmount();
    site.crash_server();
    eprintln!(
        "fsx (seed {seed}): {done} operations in {ran:.2?} ({counts:?}, {restarts} server \
         restarts), {bytes_written} bytes written, {bytes_read} bytes read and compared; final \
         sizes {:?}",
        files
            .iter()
            .map(|(n, f)| (n.clone(), f.data.len()))
            .collect::<BTreeMap<_, _>>()
    );
    eprintln!("nfs-fuse: {}", log.trim().replace('\n', "\n  "));
    assert!(done >= 300, "only {done} operations ran in {TIME:?}");
    assert_eq!(
        log.matches("reconnected").count(),
        restarts,
        "reconnects after {restarts} server restarts:\n{log}"
    );
}

#[test]
fn uncommitted_writes_are_sent_again_after_the_server_restarts() {
    let started = Instant::now();
    let mut site = Site::start();
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new(&site, &tmp.path().join("mnt"));

    // Written but not yet committed (the file stays open): buffered by the server only.
    let mut want = random_bytes((3 << 20) + 777, 7);
    let f = File::create(m.path("r.bin")).unwrap();
    f.write_all_at(&want, 0).unwrap();
    let patch = random_bytes(10_000, 8);
    f.write_all_at(&patch, 100_000).unwrap();
    want[100_000..110_000].copy_from_slice(&patch);
    assert!(
        site.get("r.bin").is_empty(),
        "committed before any close or fsync"
    );

    // The server crashes: the buffered writes are lost. A new instance (a new write
    // verifier) comes up on the same port.
    site.crash_server();
    assert!(site.get("r.bin").is_empty());
    site.start_server();

    // The client reconnects; what it has not had committed it still shows (as dirty pages)...
    same(
        "read after the restart",
        &fs::read(m.path("r.bin")).unwrap(),
        &want,
    );
    // ... and at fsync, COMMIT's new verifier makes it send those writes again.
    f.sync_all().unwrap();
    same("the object after fsync", &site.get("r.bin"), &want);
    drop(f);
    same(
        "read after close",
        &fs::read(m.path("r.bin")).unwrap(),
        &want,
    );

    let log = m.unmount();
    site.crash_server();
    assert!(
        log.contains("write verifier changed"),
        "nfs-fuse did not report resending writes:\n{log}"
    );
    assert!(log.contains("reconnected"), "no reconnect reported:\n{log}");
    eprintln!("nfs-fuse: {}", log.trim().replace('\n', "\n  "));
    eprintln!("whole test {:.2?}", started.elapsed());
}

/// A file made under a name another file was renamed away from is another file: the renamed
/// one keeps its id, the new one gets its own, and uncommitted writes (kept per file id by the
/// server) of the two never mix. (Before new files got ids of their own, the new file's data
/// landed in the renamed file.)
#[test]
fn a_file_made_under_a_name_another_was_renamed_from_keeps_its_own_data() {
    let mut site = Site::start();
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new(&site, &tmp.path().join("mnt"));
    fs::write(m.path("a"), b"first file").unwrap();
    fs::rename(m.path("a"), m.path("b")).unwrap();
    // Uncommitted writes to the renamed file and to a new file under its old name at once.
    let b = OpenOptions::new().write(true).open(m.path("b")).unwrap();
    b.write_all_at(b"BBBB", 0).unwrap();
    let a = File::create(m.path("a")).unwrap();
    a.write_all_at(b"second file, made after the rename", 0)
        .unwrap();
    drop(a);
    drop(b);
    let objects = site.objects();
    let text = |k: &str| String::from_utf8_lossy(&objects[k]).into_owned();
    let (a, b) = (text("a"), text("b"));
    let (a_read, b_read) = (
        fs::read_to_string(m.path("a")).unwrap(),
        fs::read_to_string(m.path("b")).unwrap(),
    );
    assert_eq!(
        (a.as_str(), b.as_str()),
        ("second file, made after the rename", "BBBBt file"),
        "objects"
    );
    assert_eq!(
        (a_read.as_str(), b_read.as_str()),
        ("second file, made after the rename", "BBBBt file"),
        "read through the mount"
    );
    m.unmount();
    site.crash_server();
}

#[test]
fn sigterm_unmounts_and_what_was_written_is_committed() {
    let mut site = Site::start();
    let tmp = tempfile::tempdir().unwrap();
    let m = Mount::new(&site, &tmp.path().join("mnt"));
    fs::write(m.path("closed.txt"), b"closed before the signal").unwrap();
    let mut want = random_bytes(2_000_000, 11);
    let f = File::create(m.path("open.bin")).unwrap();
    f.write_all_at(&want, 0).unwrap();

    // A file is open: the unmount is lazy, and the open file works until it is closed.
    m.terminate();
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_fuse_mount(&m.dir) {
        assert!(Instant::now() < deadline, "SIGTERM did not unmount");
        std::thread::sleep(Duration::from_millis(20));
    }
    f.write_all_at(b"tail", want.len() as u64).unwrap();
    want.extend_from_slice(b"tail");
    drop(f);
    let log = m.wait_exit();
    site.crash_server();
    assert!(log.contains("signal received"), "{log}");
    let objects = site.objects();
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        ["closed.txt", "open.bin"]
    );
    same("open.bin", &objects["open.bin"], &want);
    assert_eq!(objects["closed.txt"], b"closed before the signal");
}
