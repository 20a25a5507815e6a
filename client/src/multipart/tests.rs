//! Joining parts with re-cut seams, below S3's part-size rules: byte-exact whatever the parts
//! hold (tiny parts, runs of zeros, slices of other objects' chunks, inline leaves), one
//! subtree per part, and chunked as one stream through the same bytes.

use std::sync::Arc;

use bytes::Bytes;
use cairn_core::chunker::{CDC_MAX, CDC_MIN};
use cairn_core::extent::{
    Child, Leaf, NodeStore, Piece, RangeWalker, Target, TreeBuilder, TreeNode,
};
use cairn_core::manifest::Content;
use futures::StreamExt;
use rand::{Rng, RngCore, SeedableRng};

use super::seams::PartSpan;
use crate::client::Client;
use crate::copy::piece_leaf;
use crate::put::IngestLimits;

const MIB: usize = 1 << 20;

fn client() -> (tempfile::TempDir, Client) {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::open_dir(dir.path()).unwrap();
    (dir, c)
}

/// Stores `data` as an upload part is stored.
async fn ingest(c: &Client, data: &[u8]) -> Option<Child> {
    let frames: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(100_000)
        .map(|f| Ok(Bytes::copy_from_slice(f)))
        .collect();
    let limits = IngestLimits {
        max_len: u64::MAX,
        expected_len: None,
        allow_inline: false,
        checksum: None,
        sealer: None,
        owner: 0,
    };
    let body = futures::stream::iter(frames).boxed();
    let stored = c.ingest(body, Arc::new(c.inner.cdc.clone()), limits);
    stored.await.unwrap().content.tree()
}

/// Stores `data` as UploadPartCopy of a range makes a part: inside a larger object, then a
/// tree of slices of that object's chunks.
async fn ingest_as_copy(c: &Client, data: &[u8], rng: &mut impl Rng) -> Option<Child> {
    let before = rng.gen_range(0..300_000);
    let mut source = vec![0u8; before];
    rng.fill_bytes(&mut source);
    source.extend_from_slice(data);
    let root = ingest(c, &source).await?;
    let (start, end) = (before as u64, source.len() as u64);
    let mut walker = RangeWalker::new(root, start, end).unwrap();
    let mut builder = TreeBuilder::new();
    while let Some(piece) = walker.next(c).await.unwrap() {
        builder
            .push_leaf(c, piece_leaf(piece).unwrap())
            .await
            .unwrap();
    }
    builder.finish(c).await.unwrap()
}

/// Stores `data` as a tree of inline leaves of up to 1.5 MiB (a tree may hold them; no part
/// is made so today, but completion must not care).
async fn store_inline(c: &Client, data: &[u8], rng: &mut impl Rng) -> Option<Child> {
    let mut builder = TreeBuilder::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(3 * MIB / 2));
        let leaf = Leaf {
            len: n as u64,
            target: Target::Inline(Bytes::copy_from_slice(&rest[..n])),
        };
        builder.push_leaf(c, leaf).await.unwrap();
        rest = &rest[n..];
    }
    builder.finish(c).await.unwrap()
}

/// How a part of [`join_and_check`] is stored.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// As UploadPart stores it.
    Ingest,
    /// As UploadPartCopy of a range stores it.
    Copy,
    /// As inline leaves.
    Inline,
}

/// Joins parts stored from `sizes` slices of `data` (each as `kinds` says) and checks the
/// object reads back as `data` with one subtree per part.
async fn join_and_check(c: &Client, data: &[u8], sizes: &[usize], kinds: &[Kind]) -> Child {
    let mut rng = rand::rngs::StdRng::seed_from_u64(data.len() as u64);
    let mut spans = Vec::new();
    let mut at = 0;
    for (&size, &kind) in sizes.iter().zip(kinds) {
        let bytes = &data[at..at + size];
        let root = match kind {
            Kind::Ingest => ingest(c, bytes).await,
            Kind::Copy => ingest_as_copy(c, bytes, &mut rng).await,
            Kind::Inline => store_inline(c, bytes, &mut rng).await,
        };
        if let Some(root) = root {
            spans.push(PartSpan {
                start: at as u64,
                root,
            });
        }
        at += size;
    }
    let root = c.join_parts(&spans, true, 0).await.unwrap().unwrap();
    let mut got = Vec::with_capacity(data.len());
    let mut body = c.read_range(&Content::Tree(root), 0, root.len, None);
    while let Some(b) = body.next().await {
        got.extend_from_slice(&b.unwrap());
    }
    assert!(got == data, "joined bytes differ (sizes {sizes:?})");
    let lens: Vec<u64> = sizes
        .iter()
        .filter(|&&s| s > 0)
        .map(|&s| s as u64)
        .collect();
    if lens.len() > 1 {
        match c.load(root.node, root.len).await.unwrap() {
            TreeNode::Children(kids) => {
                let kid_lens: Vec<u64> = kids.iter().map(|k| k.len).collect();
                assert_eq!(kid_lens, lens, "one subtree per part");
            }
            TreeNode::Leaves(_) => panic!("a joined object of parts has a subtree per part"),
        }
    }
    root
}

/// The data pieces of a tree in order, slices of one chunk side by side merged.
async fn chunking(c: &Client, root: Child) -> Vec<Piece> {
    let mut walker = RangeWalker::new(root, 0, root.len).unwrap();
    let mut out: Vec<Piece> = Vec::new();
    while let Some(p) = walker.next(c).await.unwrap() {
        if !out.last_mut().is_some_and(|last| last.try_merge(&p)) {
            out.push(p);
        }
    }
    out
}

/// Random bytes, runs of zeros and repeats of earlier bytes.
fn mixed(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = rng.gen_range(1..2 * MIB).min(len - out.len());
        match rng.gen_range(0..4) {
            0 => out.resize(out.len() + n, 0),
            1 if out.len() > n => {
                let from = rng.gen_range(0..out.len() - n);
                out.extend_from_within(from..from + n);
            }
            _ => {
                let at = out.len();
                out.resize(at + n, 0);
                rng.fill_bytes(&mut out[at..]);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_parts_read_back_whatever_their_sizes_and_leaves() {
    let (_dir, c) = client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let odd = [0, 1, 100, CDC_MIN - 1, CDC_MIN + 1, CDC_MAX, CDC_MAX + 7];
    for _ in 0..24 {
        let n = rng.gen_range(1..7);
        let sizes: Vec<usize> = (0..n)
            .map(|_| match rng.gen_range(0..3) {
                0 => odd[rng.gen_range(0..odd.len())],
                _ => rng.gen_range(1..3 * MIB),
            })
            .collect();
        let kinds = [Kind::Ingest, Kind::Ingest, Kind::Copy, Kind::Inline];
        let kinds: Vec<Kind> = (0..n).map(|_| kinds[rng.gen_range(0..4)]).collect();
        let data = mixed(&mut rng, sizes.iter().sum());
        if data.is_empty() {
            continue;
        }
        join_and_check(&c, &data, &sizes, &kinds).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_parts_are_chunked_as_one_stream() {
    let (_dir, c) = client();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for round in 0..4 {
        let mut sizes: Vec<usize> = (0..4).map(|_| rng.gen_range(5 * MIB..9 * MIB)).collect();
        sizes.push(rng.gen_range(0..2 * MIB));
        let mut data = vec![0u8; sizes.iter().sum()];
        rng.fill_bytes(&mut data);
        if round == 3 {
            // Zeros across two seams.
            let seam = sizes[0];
            data[seam - 3 * MIB..seam + sizes[1] + 2 * MIB].fill(0);
        }
        let joined = join_and_check(&c, &data, &sizes, &[Kind::Ingest; 5]).await;
        let whole = ingest(&c, &data).await.unwrap();
        assert_eq!(
            chunking(&c, joined).await,
            chunking(&c, whole).await,
            "round {round}: sizes {sizes:?}"
        );
    }
}
