//! The NFS server over a real single-node store (RocksDB in a temporary dir), driven by an
//! NFSv3 client over TCP: writes at offsets and commits, the namespace operations and their
//! errors, handles across renames, READDIR cookies, and what S3 sees of it all.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_client::{Client, PutOptions, VersionSel};
use cairn_nfs::mount::Mountstat3;
use cairn_nfs::nfs3::*;
use cairn_nfs::{ExportConfig, Fs, NfsConfig, NfsServer};
use common::{NfsClient, RpcFailure};
use futures::StreamExt;

struct Site {
    client: Client,
    addr: std::net::SocketAddr,
    fs: Arc<Fs>,
    _dir: tempfile::TempDir,
}

fn export(bucket: &str) -> ExportConfig {
    ExportConfig {
        bucket: bucket.into(),
        read_only: false,
        clients: Vec::new(),
        root_squash: false,
    }
}

async fn site(exports: Vec<ExportConfig>) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open_dir(dir.path()).unwrap();
    for e in &exports {
        client.create_bucket(&e.bucket, "owner").await.unwrap();
    }
    let fs = Arc::new(Fs::new(client.clone(), exports, 64 << 20));
    // No background commits: the tests decide when a commit happens.
    let config = NfsConfig {
        commit_after: std::time::Duration::from_secs(3600),
        ..NfsConfig::default()
    };
    let server = NfsServer::bind("127.0.0.1:0".parse().unwrap(), fs.clone(), config)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    Site {
        client,
        addr,
        fs,
        _dir: dir,
    }
}

async fn get(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let r = client
        .get_object(bucket, key, &VersionSel::Current, None)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    let mut body = r.body;
    let mut out = Vec::new();
    while let Some(b) = body.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ seed)
        .collect()
}

fn unchecked() -> CreateHow {
    CreateHow::Unchecked(Sattr3 {
        mode: Some(0o644),
        ..Sattr3::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_any_offset_become_a_version_at_commit_sharing_untouched_chunks() {
    let s = site(vec![export("bkt")]).await;
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    let fh = c.create(&root, "db.bin", unchecked()).await.unwrap();

    // 4 MiB written UNSTABLE in 1 MiB calls: acknowledged from the buffer, readable at once,
    // not yet an object version.
    let mut want = pattern(4 << 20, 1);
    let mut verf = None;
    for (i, part) in want.chunks(1 << 20).enumerate() {
        let (committed, v) = c
            .write(&fh, (i << 20) as u64, part, StableHow::Unstable)
            .await
            .unwrap();
        assert_eq!(committed, StableHow::Unstable);
        assert_eq!(
            *verf.get_or_insert(v),
            v,
            "the verifier changed without a restart"
        );
    }
    assert_eq!(c.read_all(&fh).await, want);
    assert_eq!(c.getattr(&fh).await.unwrap().size, 4 << 20);
    // A READ past the end of a file with buffered writes is an empty read at EOF.
    let (past, eof) = c.read(&fh, (4 << 20) + 4096, 4096).await.unwrap();
    assert!(past.is_empty() && eof);
    assert!(
        get(&s.client, "bkt", "db.bin").await.is_empty(),
        "visible before COMMIT"
    );
    assert_eq!(c.commit(&fh).await.unwrap(), verf.unwrap());
    assert!(
        get(&s.client, "bkt", "db.bin").await == want,
        "S3 reads the committed bytes"
    );

    // Overwrites in the middle and an append: after the commit only the touched extents are
    // new chunks (the stored bytes grow by about what was written, not by the file).
    let before = s.client.stats().await.unwrap().unique_bytes;
    let patch = pattern(5000, 7);
    c.write(&fh, 1_000_000, &patch, StableHow::Unstable)
        .await
        .unwrap();
    want[1_000_000..1_005_000].copy_from_slice(&patch);
    let tail = pattern(100_000, 9);
    c.write(&fh, 4 << 20, &tail, StableHow::Unstable)
        .await
        .unwrap();
    want.extend_from_slice(&tail);
    c.commit(&fh).await.unwrap();
    let grown = s.client.stats().await.unwrap().unique_bytes - before;
    assert!(
        grown < 200_000,
        "an overwrite of 5 000 bytes and an append of 100 000 stored {grown} new bytes"
    );
    assert!(get(&s.client, "bkt", "db.bin").await == want);
    assert_eq!(c.read_all(&fh).await, want);

    // A FILE_SYNC write is durable when answered; a write past the end leaves a hole of
    // zeros; SETATTR size truncates.
    let (committed, _) = c
        .write(&fh, 6 << 20, b"end", StableHow::FileSync)
        .await
        .unwrap();
    assert_eq!(committed, StableHow::FileSync);
    let stored = get(&s.client, "bkt", "db.bin").await;
    assert_eq!(stored.len(), (6 << 20) + 3);
    assert!(stored[want.len()..6 << 20].iter().all(|&b| b == 0));
    let r: SetattrRes = c
        .nfs(
            PROC_SETATTR,
            &SetattrArgs {
                object: fh.clone(),
                new_attributes: Sattr3 {
                    size: Some(10),
                    ..Sattr3::default()
                },
                guard: None,
            },
        )
        .await;
    assert_eq!(r.status(), Nfsstat3::Ok);
    assert_eq!(get(&s.client, "bkt", "db.bin").await, want[..10]);
    assert_eq!(
        s.fs.counters
            .dirty_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_maps_to_keys_and_errors_are_nfs_statuses() {
    let s = site(vec![export("bkt")]).await;
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();

    // Directories are prefixes with a marker; files are objects.
    let d = c.mkdir(&root, "docs").await.unwrap();
    assert_eq!(c.mkdir(&root, "docs").await, Err(Nfsstat3::Exist));
    let f = c.create(&d, "a.txt", unchecked()).await.unwrap();
    c.write(&f, 0, b"alpha", StableHow::FileSync).await.unwrap();
    assert_eq!(get(&s.client, "bkt", "docs/a.txt").await, b"alpha");
    assert!(s
        .client
        .head_object("bkt", "docs/", &VersionSel::Current)
        .await
        .is_ok());
    let guarded = CreateHow::Guarded(Sattr3::default());
    assert_eq!(c.create(&d, "a.txt", guarded).await, Err(Nfsstat3::Exist));
    // An exclusive create retransmitted with its verifier finds its own file.
    let x1 = c
        .create(&d, "x", CreateHow::Exclusive(*b"12345678"))
        .await
        .unwrap();
    let x2 = c
        .create(&d, "x", CreateHow::Exclusive(*b"12345678"))
        .await
        .unwrap();
    assert_eq!(x1, x2);
    assert_eq!(
        c.create(&d, "x", CreateHow::Exclusive(*b"87654321")).await,
        Err(Nfsstat3::Exist)
    );

    // Errors.
    assert_eq!(c.lookup(&root, "nope").await.unwrap_err(), Nfsstat3::Noent);
    assert_eq!(c.lookup(&f, "x").await.unwrap_err(), Nfsstat3::Notdir);
    assert_eq!(
        c.lookup(&root, &"n".repeat(256)).await.unwrap_err(),
        Nfsstat3::Nametoolong
    );
    assert_eq!(c.remove(&root, "docs", true).await, Err(Nfsstat3::Notempty));
    assert_eq!(c.remove(&root, "docs", false).await, Err(Nfsstat3::Isdir));
    assert_eq!(c.remove(&d, "a.txt", true).await, Err(Nfsstat3::Notdir));
    assert_eq!(c.read(&d, 0, 10).await.unwrap_err(), Nfsstat3::Isdir);
    let bogus = NfsFh3(vec![9; 20]);
    assert_eq!(c.getattr(&bogus).await.unwrap_err(), Nfsstat3::Badhandle);

    // Symlinks.
    let r: SymlinkRes = c
        .nfs(
            PROC_SYMLINK,
            &SymlinkArgs {
                where_: Diropargs3 {
                    dir: d.clone(),
                    name: b"link".to_vec(),
                },
                attributes: Sattr3::default(),
                target: b"a.txt".to_vec(),
            },
        )
        .await;
    let link = match r {
        Nfs3Res::Ok(ok) => ok.obj.unwrap(),
        Nfs3Res::Fail(s, _) => panic!("SYMLINK: {s:?}"),
    };
    let r: ReadlinkRes = c.nfs(PROC_READLINK, &ReadlinkArgs { symlink: link }).await;
    match r {
        Nfs3Res::Ok(ok) => assert_eq!(ok.data, b"a.txt"),
        Nfs3Res::Fail(s, _) => panic!("READLINK: {s:?}"),
    }
    assert_eq!(c.lookup(&d, "link").await.unwrap().1.type_, Ftype3::Lnk);
    let r: LinkRes = c
        .nfs(
            PROC_LINK,
            &LinkArgs {
                file: f.clone(),
                link: Diropargs3 {
                    dir: d.clone(),
                    name: b"hard".to_vec(),
                },
            },
        )
        .await;
    assert_eq!(r.status(), Nfsstat3::Notsupp);

    // A renamed file keeps its handle and inode number; so do the files of a renamed
    // directory (re-keyed by reference: no chunk is written).
    let ino = c.getattr(&f).await.unwrap().fileid;
    c.rename(&d, "a.txt", &d, "b.txt").await.unwrap();
    assert_eq!(c.getattr(&f).await.unwrap().fileid, ino);
    assert_eq!(c.read_all(&f).await, b"alpha");
    assert_eq!(c.lookup(&d, "b.txt").await.unwrap().1.fileid, ino);
    let chunks = s.client.stats().await.unwrap().chunks;
    c.rename(&root, "docs", &root, "papers").await.unwrap();
    assert_eq!(s.client.stats().await.unwrap().chunks, chunks);
    assert_eq!(c.read_all(&f).await, b"alpha");
    assert_eq!(get(&s.client, "bkt", "papers/b.txt").await, b"alpha");
    assert!(s
        .client
        .head_object("bkt", "docs/b.txt", &VersionSel::Current)
        .await
        .is_err());
    let p = c.lookup(&root, "papers").await.unwrap().0;
    assert_eq!(
        c.getattr(&d).await.unwrap().fileid,
        c.getattr(&p).await.unwrap().fileid
    );
    assert_eq!(
        c.rename(&root, "papers", &p, "inside").await,
        Err(Nfsstat3::Inval)
    );

    // An object S3 puts under a name a file (itself put by S3: its id is its key's) was
    // renamed away from is another file: its own id, and the renamed file's handle still
    // finds the renamed file.
    let put = |key: &'static str, body: &'static [u8]| {
        let client = s.client.clone();
        async move {
            client
                .put_object(
                    "bkt",
                    key,
                    Box::pin(futures::stream::once(async move {
                        Ok(bytes::Bytes::from_static(body))
                    })),
                    PutOptions {
                        content_length: Some(body.len() as u64),
                        owner: "owner".into(),
                        ..PutOptions::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    put("papers/x-old", b"from s3").await;
    let (moved, moved_attr) = c.lookup(&p, "x-old").await.unwrap();
    c.rename(&p, "x-old", &p, "x-new").await.unwrap();
    put("papers/x-old", b"other").await;
    let (again, other) = c.lookup(&p, "x-old").await.unwrap();
    assert_ne!(other.fileid, moved_attr.fileid);
    assert_eq!(c.getattr(&moved).await.unwrap().fileid, moved_attr.fileid);
    assert_eq!(c.read_all(&moved).await, b"from s3");
    assert_eq!(c.read_all(&again).await, b"other");
    // Written through NFS, it keeps its own id across commits.
    c.write(&again, 5, b"!", StableHow::FileSync).await.unwrap();
    assert_eq!(c.getattr(&again).await.unwrap().fileid, other.fileid);
    assert_eq!(get(&s.client, "bkt", "papers/x-old").await, b"other!");
    c.remove(&p, "x-old", false).await.unwrap();
    c.remove(&p, "x-new", false).await.unwrap();

    // Removal: the old handle goes stale.
    c.remove(&p, "b.txt", false).await.unwrap();
    assert_eq!(c.getattr(&f).await.unwrap_err(), Nfsstat3::Stale);
    c.remove(&p, "x", false).await.unwrap();
    c.remove(&p, "link", false).await.unwrap();
    c.remove(&root, "papers", true).await.unwrap();
    assert_eq!(c.list(&root, 4096).await, vec![".", ".."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readdir_pages_by_cookie_and_survives_changes_between_pages() {
    let s = site(vec![export("bkt")]).await;
    for i in 0..300 {
        s.client
            .put_object(
                "bkt",
                &format!("dir/f{i:03}"),
                Box::pin(futures::stream::empty()),
                PutOptions {
                    content_length: Some(0),
                    owner: "owner".into(),
                    ..PutOptions::default()
                },
            )
            .await
            .unwrap();
    }
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    let d = c.lookup(&root, "dir").await.unwrap().0;
    // Small replies: many pages, each resumed from the last cookie.
    let names = c.list(&d, 1024).await;
    let want: Vec<String> = [".".to_string(), "..".to_string()]
        .into_iter()
        .chain((0..300).map(|i| format!("f{i:03}")))
        .collect();
    assert_eq!(names, want);

    // Entries created and removed between pages: every entry that existed throughout is
    // listed exactly once (the cookie resumes after a name, not at a position).
    let (mut cookie, mut verf, mut seen) = (0u64, [0u8; 8], Vec::new());
    let mut round = 0;
    loop {
        let r: ReaddirRes = c
            .nfs(
                PROC_READDIR,
                &ReaddirArgs {
                    dir: d.clone(),
                    cookie,
                    cookieverf: verf,
                    count: 1024,
                },
            )
            .await;
        let Nfs3Res::Ok(ok) = r else {
            panic!("READDIR failed")
        };
        for e in &ok.entries {
            seen.push(String::from_utf8(e.name.clone()).unwrap());
            cookie = e.cookie;
        }
        verf = ok.cookieverf;
        if ok.eof {
            break;
        }
        // Between pages: a new name before the cursor, one after it, and a removal ahead.
        round += 1;
        c.create(&d, &format!("a-new{round}"), unchecked())
            .await
            .unwrap();
        c.create(&d, &format!("z-new{round}"), unchecked())
            .await
            .unwrap();
        let _ = c.remove(&d, &format!("f{:03}", 299 - round), false).await;
    }
    assert!(round > 3, "only {round} pages");
    for i in 0..(299 - round) {
        let name = format!("f{i:03}");
        assert_eq!(seen.iter().filter(|n| **n == name).count(), 1, "{name}");
    }
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "an entry was listed twice");

    // A cookie from another server instance is refused.
    let r: ReaddirRes = c
        .nfs(
            PROC_READDIR,
            &ReaddirArgs {
                dir: d.clone(),
                cookie: 999_999,
                cookieverf: *b"otherone",
                count: 1024,
            },
        )
        .await;
    assert_eq!(r.status(), Nfsstat3::BadCookie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_live_in_object_metadata_as_s3fs_writes_them() {
    let s = site(vec![export("bkt")]).await;
    // An object written by S3 with s3fs's metadata: mode 0600 regular file, uid 1000.
    let meta = BTreeMap::from([
        ("mode".to_string(), "33152".to_string()),
        ("uid".to_string(), "1000".to_string()),
        ("gid".to_string(), "100".to_string()),
        ("mtime".to_string(), "1700000000".to_string()),
    ]);
    s.client
        .put_object(
            "bkt",
            "s3fs.txt",
            Box::pin(futures::stream::once(async {
                Ok(bytes::Bytes::from_static(b"0123456789"))
            })),
            PutOptions {
                content_length: Some(10),
                user_metadata: meta,
                owner: "owner".into(),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    let (fh, a) = c.lookup(&root, "s3fs.txt").await.unwrap();
    assert_eq!((a.mode, a.uid, a.gid, a.size), (0o600, 1000, 100, 10));
    assert_eq!(a.mtime.seconds, 1_700_000_000);
    // A caller that is neither owner nor in the group is refused; the owner reads.
    c.auth = common::unix(2000, 2000);
    assert_eq!(c.read(&fh, 0, 10).await.unwrap_err(), Nfsstat3::Acces);
    c.auth = common::unix(1000, 100);
    assert_eq!(c.read(&fh, 0, 10).await.unwrap().0, b"0123456789");

    // SETATTR changes metadata in place, in s3fs's names.
    let r: SetattrRes = c
        .nfs(
            PROC_SETATTR,
            &SetattrArgs {
                object: fh.clone(),
                new_attributes: Sattr3 {
                    mode: Some(0o640),
                    mtime: SetTime::ClientTime(Nfstime3 {
                        seconds: 1_600_000_000,
                        nseconds: 0,
                    }),
                    ..Sattr3::default()
                },
                guard: None,
            },
        )
        .await;
    assert_eq!(r.status(), Nfsstat3::Ok);
    let head = s
        .client
        .head_object("bkt", "s3fs.txt", &VersionSel::Current)
        .await
        .unwrap()
        .manifest;
    assert_eq!(head.user_metadata["mode"], (0o100640).to_string());
    assert_eq!(head.user_metadata["mtime"], "1600000000");
    // Only the owner (or root) may change the mode.
    c.auth = common::unix(2000, 2000);
    let r: SetattrRes = c
        .nfs(
            PROC_SETATTR,
            &SetattrArgs {
                object: fh.clone(),
                new_attributes: Sattr3 {
                    mode: Some(0o777),
                    ..Sattr3::default()
                },
                guard: None,
            },
        )
        .await;
    assert_eq!(r.status(), Nfsstat3::Perm);

    // A file NFS makes carries them too.
    c.auth = common::unix(1000, 100);
    let mine = c.create(&root, "mine", unchecked()).await.unwrap();
    let m = s
        .client
        .head_object("bkt", "mine", &VersionSel::Current)
        .await
        .unwrap()
        .manifest;
    assert_eq!(m.user_metadata["mode"], (0o100644).to_string());
    assert_eq!(m.user_metadata["uid"], "1000");
    assert_eq!(c.getattr(&mine).await.unwrap().uid, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_and_closed_exports_get_protocol_errors() {
    let mut ro = export("robkt");
    ro.read_only = true;
    let mut far = export("farbkt");
    far.clients = vec!["10.9.9.9".into()];
    let mut squashed = export("sqbkt");
    squashed.root_squash = true;
    let s = site(vec![export("bkt"), ro, far, squashed]).await;
    let mut c = NfsClient::connect(s.addr).await;
    use cairn_nfs::rpc;
    // RPC level: unknown program, wrong version, unknown procedure, undecodable arguments.
    assert_eq!(
        c.call_raw(100_099, 1, 0, &[]).await,
        Err(RpcFailure::Accepted(1))
    );
    assert_eq!(
        c.call_raw(rpc::PROG_NFS, 4, 0, &[]).await,
        Err(RpcFailure::Accepted(2))
    );
    assert_eq!(
        c.call_raw(rpc::PROG_NFS, 3, 99, &[]).await,
        Err(RpcFailure::Accepted(3))
    );
    assert_eq!(
        c.call_raw(rpc::PROG_NFS, 3, PROC_GETATTR, &[0, 0, 1]).await,
        Err(RpcFailure::Accepted(4))
    );
    assert!(c.call_raw(rpc::PROG_NFS, 3, PROC_NULL, &[]).await.is_ok());
    // The port mapper says where NFS and MOUNT are: here.
    let port = c
        .call_raw(
            rpc::PROG_PORTMAP,
            2,
            cairn_nfs::portmap::PROC_GETPORT,
            &cairn_nfs::xdr::encode(&cairn_nfs::portmap::Mapping {
                prog: rpc::PROG_NFS,
                vers: 3,
                prot: cairn_nfs::portmap::IPPROTO_TCP,
                port: 0,
            }),
        )
        .await
        .unwrap();
    assert_eq!(port, (s.addr.port() as u32).to_be_bytes());

    // MOUNT: unknown paths, addresses not in the list.
    assert_eq!(c.mount("/nope").await, Err(Mountstat3::Noent));
    assert_eq!(c.mount("/farbkt").await, Err(Mountstat3::Acces));
    // Read-only exports refuse changes.
    let ro_root = c.mount("/robkt").await.unwrap();
    assert_eq!(
        c.create(&ro_root, "x", unchecked()).await,
        Err(Nfsstat3::Rofs)
    );
    // Root squash: root acts as nobody, and what it makes is nobody's.
    let sq = c.mount("/sqbkt").await.unwrap();
    let d = c.mkdir(&sq, "d").await.unwrap();
    assert_eq!(c.getattr(&d).await.unwrap().uid, cairn_nfs::export::NOBODY);
    // A mount of a directory inside an export.
    let root = c.mount("/bkt").await.unwrap();
    let inner = c.mkdir(&root, "inner").await.unwrap();
    assert_eq!(c.mount("/bkt/inner").await.unwrap(), inner);
    assert_eq!(c.mount("/bkt/missing").await, Err(Mountstat3::Noent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mangled_calls_never_take_the_server_down() {
    use rand::{Rng, SeedableRng};
    let s = site(vec![export("bkt")]).await;
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    let fh = c.create(&root, "f", unchecked()).await.unwrap();
    // Valid calls of every procedure, then mangled: bytes flipped, cut short, lengths made
    // huge; each is answered (an error reply) or ignored, never a crash.
    let valid: Vec<Vec<u8>> = (0..=21u32)
        .map(|p| {
            let mut w =
                cairn_nfs::rpc::encode_call(7, cairn_nfs::rpc::PROG_NFS, 3, p, &common::unix(0, 0));
            w.opaque_fixed(&cairn_nfs::xdr::encode(&fh));
            w.u64(0);
            w.u32(16);
            w.into_inner()
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut sent = 0;
    while std::time::Instant::now() < deadline && sent < 2000 {
        let mut rec = valid[rng.gen_range(0..valid.len())].clone();
        match rng.gen_range(0..3) {
            0 => {
                let i = rng.gen_range(0..rec.len());
                rec[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => rec.truncate(rng.gen_range(0..rec.len())),
            _ => {
                let i = rng.gen_range(0..rec.len() / 4) * 4;
                rec[i..i + 4].copy_from_slice(&u32::MAX.to_be_bytes());
            }
        }
        // A fresh connection each time: a call the server cannot parse may close it.
        let mut raw = NfsClient::connect(s.addr).await;
        let reply = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            raw.raw_or_closed(&rec),
        )
        .await;
        // A reply or a closed connection; a hang of the server would fail the NULL below.
        let _ = reply;
        sent += 1;
    }
    assert!(sent > 50, "only {sent} mangled calls in 5 s");
    let mut c = NfsClient::connect(s.addr).await;
    assert!(c
        .call_raw(cairn_nfs::rpc::PROG_NFS, 3, PROC_NULL, &[])
        .await
        .is_ok());
    assert_eq!(c.getattr(&fh).await.unwrap().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_encrypted_with_site_keys_read_and_customer_keyed_ones_are_refused() {
    use cairn_client::crypt::{CustomerKey, Sse};
    let s = site(vec![export("bkt")]).await;
    let body: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for (key, sse) in [
        ("site.bin", Sse::Site),
        (
            "kms.bin",
            Sse::Kms {
                key_id: None,
                context: None,
                bucket_key: false,
            },
        ),
        ("customer.bin", Sse::Customer(CustomerKey([3; 32]))),
    ] {
        let b = bytes::Bytes::from(body.clone());
        s.client
            .put_object(
                "bkt",
                key,
                Box::pin(futures::stream::once(async move { Ok(b) })),
                PutOptions {
                    content_length: Some(body.len() as u64),
                    owner: "owner".into(),
                    encryption: Some(sse),
                    ..PutOptions::default()
                },
            )
            .await
            .unwrap();
    }
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    for key in ["site.bin", "kms.bin"] {
        let (fh, attr) = c.lookup(&root, key).await.unwrap();
        assert_eq!(attr.size, body.len() as u64);
        assert!(c.read_all(&fh).await == body, "{key}");
        let (part, _) = c.read(&fh, 123_456, 10_000).await.unwrap();
        assert!(part == body[123_456..133_456], "{key}");
        // NFS does not write encrypted objects (it would have to seal the new version).
        assert_eq!(
            c.write(&fh, 0, b"x", StableHow::FileSync)
                .await
                .unwrap_err(),
            Nfsstat3::Acces,
            "{key}"
        );
    }
    let (fh, _) = c.lookup(&root, "customer.bin").await.unwrap();
    assert_eq!(c.read(&fh, 0, 100).await.unwrap_err(), Nfsstat3::Acces);

    // A bucket that encrypts new objects by default takes no plaintext file from NFS: not a
    // new one (sealed empty at CREATE), nor one made before the default was set.
    let early = c.create(&root, "early.txt", unchecked()).await.unwrap();
    s.client
        .update_bucket("bkt", |b| {
            b.encryption = Some(cairn_client::DefaultEncryption::Site { bucket_key: false });
            Ok(())
        })
        .await
        .unwrap();
    let f = c.create(&root, "new.txt", unchecked()).await.unwrap();
    for fh in [&f, &early] {
        assert_eq!(
            c.write(fh, 0, b"plain", StableHow::FileSync)
                .await
                .unwrap_err(),
            Nfsstat3::Acces
        );
    }
}

async fn put_s3(client: &Client, key: &str, data: &'static [u8]) {
    client
        .put_object(
            "bkt",
            key,
            Box::pin(futures::stream::once(async move {
                Ok(bytes::Bytes::from_static(data))
            })),
            PutOptions {
                content_length: Some(data.len() as u64),
                owner: "owner".into(),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_through_a_handle_see_each_s3_write_at_once() {
    let s = site(vec![export("bkt")]).await;
    put_s3(&s.client, "f.txt", b"first").await;
    let mut c = NfsClient::connect(s.addr).await;
    let root = c.mount("/bkt").await.unwrap();
    let (fh, _) = c.lookup(&root, "f.txt").await.unwrap();
    // Read many times (the lookup behind the handle is reused), then overwritten by S3: the
    // next read through the same handle sees the new bytes and size.
    for _ in 0..3 {
        assert_eq!(c.read(&fh, 0, 100).await.unwrap().0, b"first");
    }
    put_s3(&s.client, "f.txt", b"second write").await;
    assert_eq!(c.read(&fh, 0, 100).await.unwrap().0, b"second write");
    assert_eq!(c.getattr(&fh).await.unwrap().size, 12);
    // Deleted by S3: the handle is stale at once.
    s.client
        .delete_object("bkt", "f.txt", &VersionSel::Current)
        .await
        .unwrap();
    assert!(c.read(&fh, 0, 100).await.is_err());
}
