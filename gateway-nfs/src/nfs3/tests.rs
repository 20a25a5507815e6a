//! Encodings of NFSv3 types checked against RFC 1813.

use bytes::Bytes;

use super::*;
use crate::xdr::{decode, encode, pad_len};

fn fattr() -> Fattr3 {
    Fattr3 {
        type_: Ftype3::Reg,
        mode: 0o644,
        nlink: 1,
        uid: 1000,
        gid: 1000,
        size: 5,
        used: 8,
        rdev: Specdata3::default(),
        fsid: 1,
        fileid: 42,
        atime: Nfstime3 {
            seconds: 1,
            nseconds: 2,
        },
        mtime: Nfstime3 {
            seconds: 3,
            nseconds: 4,
        },
        ctime: Nfstime3 {
            seconds: 5,
            nseconds: 6,
        },
    }
}

#[test]
fn attribute_sizes() {
    let a = fattr();
    let b = encode(&a);
    assert_eq!(b.len(), FATTR3_SIZE);
    assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0x01, 0xa4]);
    assert_eq!(decode::<Fattr3>(&b), Ok(a.clone()));
    let wcc = WccAttr {
        size: a.size,
        mtime: a.mtime,
        ctime: a.ctime,
    };
    assert_eq!(encode(&wcc).len(), WCC_ATTR_SIZE);
    assert_eq!(encode(&Some(a)).len(), post_op_attr_size(true));
    // GETATTR success: status + fattr3.
    let res: GetattrRes = Nfs3Res::Ok(fattr());
    assert_eq!(encode(&res).len(), 4 + FATTR3_SIZE);
    let res: GetattrRes = Nfs3Res::Fail(Nfsstat3::Stale, ());
    assert_eq!(encode(&res), [0, 0, 0, 70]);
}

#[test]
fn status_codes() {
    assert_eq!(Nfsstat3::Badhandle.to_u32(), 10001);
    assert_eq!(Nfsstat3::Jukebox.to_u32(), 10008);
    assert_eq!(Nfsstat3::from_u32(63), Some(Nfsstat3::Nametoolong));
    assert_eq!(Nfsstat3::from_u32(3), None);
    // A failure claiming success goes out as SERVERFAULT.
    let res: RemoveRes = Nfs3Res::Fail(Nfsstat3::Ok, WccData::default());
    assert_eq!(encode(&res), [0, 0, 0x27, 0x16, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn empty_readdir_reply() {
    let res: ReaddirRes = Nfs3Res::Ok(ReaddirResOk {
        dir_attributes: None,
        cookieverf: [0; 8],
        entries: vec![],
        eof: true,
    });
    let b = encode(&res);
    assert_eq!(
        b,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    assert_eq!(b.len(), 4 + readdir_resok_base_size(false));
    assert_eq!(decode::<ReaddirRes>(&b), Ok(res));
}

#[test]
fn entry_sizes_match_encoding() {
    for name_len in 0..9 {
        let name = vec![b'x'; name_len];
        let entries = vec![Entry3 {
            fileid: 1,
            name: name.clone(),
            cookie: 2,
        }];
        let ok = ReaddirResOk {
            dir_attributes: Some(fattr()),
            cookieverf: [1; 8],
            entries,
            eof: false,
        };
        let len = encode(&ok).len();
        assert_eq!(len, readdir_resok_base_size(true) + entry3_size(name_len));
        assert_eq!(ok.entries[0].encoded_len(), entry3_size(name_len));
        for (attrs, fh) in [(false, None), (true, Some(vec![7u8; 13])), (true, None)] {
            let e = Entryplus3 {
                fileid: 1,
                name: name.clone(),
                cookie: 2,
                name_attributes: attrs.then(fattr),
                name_handle: fh.map(NfsFh3),
            };
            let plus = ReaddirplusResOk {
                dir_attributes: None,
                cookieverf: [1; 8],
                entries: vec![e.clone()],
                eof: true,
            };
            let b = encode(&plus);
            assert_eq!(b.len(), readdir_resok_base_size(false) + e.encoded_len());
            assert_eq!(decode::<ReaddirplusResOk>(&b), Ok(plus));
        }
    }
}

#[test]
fn names_and_handles_are_bounded() {
    let long = Diropargs3 {
        dir: NfsFh3(vec![1; 8]),
        name: vec![b'a'; 300],
    };
    let got = decode::<Diropargs3>(&encode(&long)).unwrap();
    assert!(name_too_long(&got.name));
    assert!(!name_too_long(&[b'a'; NAME_MAX]));
    let huge = Diropargs3 {
        dir: NfsFh3(vec![1; 8]),
        name: vec![b'a'; NAME_DECODE_MAX + 1],
    };
    assert_eq!(
        decode::<Diropargs3>(&encode(&huge)),
        Err(XdrError::TooLong {
            what: "filename3",
            len: NAME_DECODE_MAX + 1,
            max: NAME_DECODE_MAX
        })
    );
    let fh = NfsFh3(vec![0; NFS3_FHSIZE + 1]);
    assert!(matches!(
        decode::<NfsFh3>(&encode(&fh)),
        Err(XdrError::TooLong { .. })
    ));
}

#[test]
fn sattr3_encoding() {
    let s = Sattr3 {
        mode: Some(0o755),
        mtime: SetTime::ServerTime,
        atime: SetTime::ClientTime(Nfstime3 {
            seconds: 9,
            nseconds: 0,
        }),
        ..Sattr3::default()
    };
    let b = encode(&s);
    assert_eq!(
        b,
        [
            0, 0, 0, 1, 0, 0, 1, 0xed, // mode
            0, 0, 0, 0, // uid
            0, 0, 0, 0, // gid
            0, 0, 0, 0, // size
            0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, // atime
            0, 0, 0, 1, // mtime
        ]
    );
    assert_eq!(decode::<Sattr3>(&b), Ok(s));
}

#[test]
fn write_args_share_the_record() {
    let args = WriteArgs {
        file: NfsFh3(vec![9; 12]),
        offset: 4096,
        count: 5,
        stable: StableHow::Unstable,
        data: Bytes::from_static(b"hello"),
    };
    let mut record = vec![0u8; 8];
    record.extend_from_slice(&encode(&args));
    let record = Bytes::from(record);
    let got = WriteArgs::decode_shared(&record, &record[8..]).unwrap();
    assert_eq!(got, args);
    let start = got.data.as_ptr() as usize - record.as_ptr() as usize;
    assert_eq!(start, 8 + 4 + 12 + 8 + 4 + 4 + 4);
    // Arguments from elsewhere are copied.
    let copy = encode(&args);
    assert_eq!(WriteArgs::decode_shared(&record, &copy), Ok(args));
}

#[test]
fn read_reply_head() {
    let ok = ReadResOk {
        file_attributes: None,
        count: 3,
        eof: true,
        data: Bytes::from_static(b"abc"),
    };
    let mut w = Writer::new();
    ok.pack_ok_head(&mut w);
    let mut head = w.into_inner();
    head.extend_from_slice(&ok.data);
    head.extend_from_slice(&[0; 3][..pad_len(ok.data.len())]);
    let res: ReadRes = Nfs3Res::Ok(ok);
    assert_eq!(head, encode(&res));
}

#[test]
fn mknod_and_create() {
    let m = MknodArgs {
        where_: Diropargs3 {
            dir: NfsFh3(vec![1]),
            name: b"dev".to_vec(),
        },
        what: MknodData3::Chr {
            attributes: Sattr3::default(),
            spec: Specdata3 {
                specdata1: 1,
                specdata2: 3,
            },
        },
    };
    assert_eq!(decode::<MknodArgs>(&encode(&m)), Ok(m));
    let reg = [
        0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, b'f', 0, 0, 0, 0, 0, 0, 1,
    ];
    assert_eq!(
        decode::<MknodArgs>(&reg).map(|a| a.what),
        Ok(MknodData3::Other(Ftype3::Reg))
    );
    let c = CreateArgs {
        where_: Diropargs3 {
            dir: NfsFh3(vec![1]),
            name: b"f".to_vec(),
        },
        how: CreateHow::Exclusive([1, 2, 3, 4, 5, 6, 7, 8]),
    };
    assert_eq!(decode::<CreateArgs>(&encode(&c)), Ok(c));
    assert_eq!(
        decode::<CreateHow>(&[0, 0, 0, 3]),
        Err(XdrError::BadValue {
            what: "createmode3",
            value: 3
        })
    );
}
