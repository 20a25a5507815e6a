//! A small NFSv3 client over TCP for tests: ONC RPC calls with AUTH_SYS, built from the
//! crate's own encoders, and the replies decoded; it drives what the libnfs tools cannot
//! (writes at offsets, UNSTABLE writes and COMMIT, cookies, handles kept across renames).

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;

use bytes::Bytes;
use cairn_nfs::mount::{self, Dirpath, MntRes};
use cairn_nfs::nfs3::*;
use cairn_nfs::rpc::{self, Auth, AuthUnix};
use cairn_nfs::xdr::{self, Pack, Reader, Unpack};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What an RPC answered, when it was not a success.
#[derive(Debug, PartialEq, Eq)]
pub enum RpcFailure {
    /// MSG_ACCEPTED with this accept_stat (1 PROG_UNAVAIL, 2 PROG_MISMATCH, 3 PROC_UNAVAIL,
    /// 4 GARBAGE_ARGS, 5 SYSTEM_ERR).
    Accepted(u32),
    /// MSG_DENIED with this reject_stat.
    Denied(u32),
}

/// A connection to an NFS server.
pub struct NfsClient {
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    xid: u32,
    /// The credential sent.
    pub auth: Auth,
}

/// AUTH_SYS for `uid`/`gid`.
pub fn unix(uid: u32, gid: u32) -> Auth {
    Auth::Unix(AuthUnix {
        stamp: 1,
        machine: b"test".to_vec(),
        uid,
        gid,
        gids: vec![gid],
    })
}

impl NfsClient {
    /// Connects as root.
    pub async fn connect(addr: SocketAddr) -> NfsClient {
        let s = TcpStream::connect(addr)
            .await
            .expect("connect to the NFS server");
        let (rd, wr) = s.into_split();
        NfsClient {
            rd: BufReader::new(rd),
            wr,
            xid: 1,
            auth: unix(0, 0),
        }
    }

    /// Sends a raw record (for malformed calls) and returns the raw reply record.
    pub async fn raw(&mut self, record: &[u8]) -> Vec<u8> {
        self.wr
            .write_all(&rpc::record_header(record.len()))
            .await
            .unwrap();
        self.wr.write_all(record).await.unwrap();
        rpc::read_record(&mut self.rd, 4 << 20)
            .await
            .unwrap()
            .expect("a reply")
    }

    /// Sends a raw record; the reply record, or `None` when the server closes the connection
    /// or does not answer (a record that is not a call).
    pub async fn raw_or_closed(&mut self, record: &[u8]) -> Option<Vec<u8>> {
        self.wr
            .write_all(&rpc::record_header(record.len()))
            .await
            .ok()?;
        self.wr.write_all(record).await.ok()?;
        rpc::read_record(&mut self.rd, 4 << 20).await.ok().flatten()
    }

    /// Calls `prog`/`vers`/`proc_` with `args`; the result's bytes on success.
    pub async fn call_raw(
        &mut self,
        prog: u32,
        vers: u32,
        proc_: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, RpcFailure> {
        self.xid += 1;
        let mut w = rpc::encode_call(self.xid, prog, vers, proc_, &self.auth);
        w.opaque_fixed(args);
        let reply = self.raw(w.as_slice()).await;
        let mut r = Reader::new(&reply);
        assert_eq!(r.u32().unwrap(), self.xid, "reply to another call");
        assert_eq!(r.u32().unwrap(), 1, "not a reply");
        if r.u32().unwrap() != 0 {
            return Err(RpcFailure::Denied(r.u32().unwrap()));
        }
        let _flavor = r.u32().unwrap();
        let _verf = r.opaque(400).unwrap();
        match r.u32().unwrap() {
            0 => Ok(r.rest().to_vec()),
            stat => Err(RpcFailure::Accepted(stat)),
        }
    }

    /// An NFSv3 call that must succeed at the RPC level.
    pub async fn nfs<A: Pack, R: Unpack>(&mut self, proc_: u32, args: &A) -> R {
        let bytes = self
            .call_raw(rpc::PROG_NFS, rpc::NFS_VERSION, proc_, &xdr::encode(args))
            .await
            .unwrap_or_else(|e| panic!("NFS procedure {proc_}: {e:?}"));
        xdr::decode(&bytes).unwrap_or_else(|e| panic!("reply of procedure {proc_}: {e}"))
    }

    /// MNT of `path`.
    pub async fn mount(&mut self, path: &str) -> Result<NfsFh3, mount::Mountstat3> {
        let bytes = self
            .call_raw(
                rpc::PROG_MOUNT,
                rpc::MOUNT_VERSION,
                mount::PROC_MNT,
                &xdr::encode(&Dirpath(path.as_bytes().to_vec())),
            )
            .await
            .expect("MNT");
        match xdr::decode::<MntRes>(&bytes).expect("MNT reply") {
            MntRes::Ok { fhandle, .. } => Ok(fhandle),
            MntRes::Fail(s) => Err(s),
        }
    }

    /// LOOKUP of `name` in `dir`.
    pub async fn lookup(&mut self, dir: &NfsFh3, name: &str) -> Result<(NfsFh3, Fattr3), Nfsstat3> {
        let r: LookupRes = self
            .nfs(
                PROC_LOOKUP,
                &LookupArgs {
                    what: Diropargs3 {
                        dir: dir.clone(),
                        name: name.as_bytes().to_vec(),
                    },
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => Ok((ok.object, ok.obj_attributes.expect("attributes"))),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// GETATTR.
    pub async fn getattr(&mut self, fh: &NfsFh3) -> Result<Fattr3, Nfsstat3> {
        let r: GetattrRes = self
            .nfs(PROC_GETATTR, &GetattrArgs { object: fh.clone() })
            .await;
        match r {
            Nfs3Res::Ok(a) => Ok(a),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// CREATE (unchecked, mode 0644).
    pub async fn create(
        &mut self,
        dir: &NfsFh3,
        name: &str,
        how: CreateHow,
    ) -> Result<NfsFh3, Nfsstat3> {
        let r: CreateRes = self
            .nfs(
                PROC_CREATE,
                &CreateArgs {
                    where_: Diropargs3 {
                        dir: dir.clone(),
                        name: name.as_bytes().to_vec(),
                    },
                    how,
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => Ok(ok.obj.expect("a handle")),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// MKDIR.
    pub async fn mkdir(&mut self, dir: &NfsFh3, name: &str) -> Result<NfsFh3, Nfsstat3> {
        let r: MkdirRes = self
            .nfs(
                PROC_MKDIR,
                &MkdirArgs {
                    where_: Diropargs3 {
                        dir: dir.clone(),
                        name: name.as_bytes().to_vec(),
                    },
                    attributes: Sattr3 {
                        mode: Some(0o755),
                        ..Sattr3::default()
                    },
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => Ok(ok.obj.expect("a handle")),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// WRITE; returns (committed, verifier).
    pub async fn write(
        &mut self,
        fh: &NfsFh3,
        offset: u64,
        data: &[u8],
        stable: StableHow,
    ) -> Result<(StableHow, [u8; 8]), Nfsstat3> {
        let r: WriteRes = self
            .nfs(
                PROC_WRITE,
                &WriteArgs {
                    file: fh.clone(),
                    offset,
                    count: data.len() as u32,
                    stable,
                    data: Bytes::copy_from_slice(data),
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => {
                assert_eq!(ok.count as usize, data.len());
                Ok((ok.committed, ok.verf))
            }
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// COMMIT; returns the verifier.
    pub async fn commit(&mut self, fh: &NfsFh3) -> Result<[u8; 8], Nfsstat3> {
        let r: CommitRes = self
            .nfs(
                PROC_COMMIT,
                &CommitArgs {
                    file: fh.clone(),
                    offset: 0,
                    count: 0,
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => Ok(ok.verf),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// READ of `count` bytes at `offset`: (data, eof).
    pub async fn read(
        &mut self,
        fh: &NfsFh3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), Nfsstat3> {
        let r: ReadRes = self
            .nfs(
                PROC_READ,
                &ReadArgs {
                    file: fh.clone(),
                    offset,
                    count,
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(ok) => Ok((ok.data.to_vec(), ok.eof)),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// The whole file, read in 1 MiB calls.
    pub async fn read_all(&mut self, fh: &NfsFh3) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let (b, eof) = self
                .read(fh, out.len() as u64, 1 << 20)
                .await
                .expect("READ");
            out.extend_from_slice(&b);
            if eof {
                return out;
            }
            assert!(!b.is_empty(), "READ returned nothing before the end");
        }
    }

    /// REMOVE, RMDIR.
    pub async fn remove(&mut self, dir: &NfsFh3, name: &str, is_dir: bool) -> Result<(), Nfsstat3> {
        let what = Diropargs3 {
            dir: dir.clone(),
            name: name.as_bytes().to_vec(),
        };
        let r: RemoveRes = if is_dir {
            self.nfs(PROC_RMDIR, &RmdirArgs { object: what }).await
        } else {
            self.nfs(PROC_REMOVE, &RemoveArgs { object: what }).await
        };
        match r {
            Nfs3Res::Ok(_) => Ok(()),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// RENAME.
    pub async fn rename(
        &mut self,
        from: &NfsFh3,
        fname: &str,
        to: &NfsFh3,
        tname: &str,
    ) -> Result<(), Nfsstat3> {
        let r: RenameRes = self
            .nfs(
                PROC_RENAME,
                &RenameArgs {
                    from: Diropargs3 {
                        dir: from.clone(),
                        name: fname.as_bytes().to_vec(),
                    },
                    to: Diropargs3 {
                        dir: to.clone(),
                        name: tname.as_bytes().to_vec(),
                    },
                },
            )
            .await;
        match r {
            Nfs3Res::Ok(_) => Ok(()),
            Nfs3Res::Fail(s, _) => Err(s),
        }
    }

    /// Every name in `dir`, READDIR after READDIR with `count` bytes each, following cookies.
    pub async fn list(&mut self, dir: &NfsFh3, count: u32) -> Vec<String> {
        let (mut cookie, mut verf, mut names) = (0u64, [0u8; 8], Vec::new());
        loop {
            let r: ReaddirRes = self
                .nfs(
                    PROC_READDIR,
                    &ReaddirArgs {
                        dir: dir.clone(),
                        cookie,
                        cookieverf: verf,
                        count,
                    },
                )
                .await;
            let ok = match r {
                Nfs3Res::Ok(ok) => ok,
                Nfs3Res::Fail(s, _) => panic!("READDIR: {s:?}"),
            };
            for e in &ok.entries {
                names.push(String::from_utf8(e.name.clone()).unwrap());
                cookie = e.cookie;
            }
            verf = ok.cookieverf;
            if ok.eof {
                return names;
            }
            assert!(
                !ok.entries.is_empty(),
                "READDIR returned nothing before the end"
            );
        }
    }
}
