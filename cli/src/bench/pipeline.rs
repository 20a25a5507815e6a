//! The pipeline bound: the write path's CPU work over an in-memory body, with no I/O.
//!
//! It is shaped like the client's ingest: one sequential stage computes the body's MD5 and the
//! FastCDC cut points (both inherently sequential), while one worker per core takes each cut
//! chunk, names it with BLAKE3 and encodes it with the chunk codec (zstd when it pays). No PUT
//! on this machine can run faster than this; a PUT adds the network, the HTTP and SigV4 work
//! and the durable writes.

use std::hint::black_box;
use std::ops::Range;
use std::sync::mpsc::sync_channel;
use std::sync::Mutex;
use std::time::Instant;

use cairn_core::chunker::{split_all, Chunker, FastCdc};
use cairn_core::{codec, ChunkId};
use indicatif::ProgressBar;
use md5::{Digest, Md5};

use super::numbers::{median, mib_per_s};

/// Body bytes handed to the sequential stage at a time, like frames of a request body.
const FRAME: usize = 64 << 10;
/// Cut chunks waiting for a worker, as in the client's ingest.
const IN_FLIGHT: usize = 8;

/// What the pipeline bound measured.
pub struct PipelineResult {
    /// Bytes of the body.
    pub size: u64,
    /// Hashing and compressing workers (one per core).
    pub workers: usize,
    /// Whole-pipeline MiB/s of each round.
    pub rounds: Vec<f64>,
    /// Median of `rounds`: the bound.
    pub mib_s: f64,
    /// Chunks the body was cut into.
    pub chunks: usize,
    /// Stored bytes (after the codec) over body bytes.
    pub stored_ratio: f64,
    /// Median MiB/s of each stage alone on one core.
    pub one_core: OneCore,
}

/// Single-core speed of each stage, MiB/s of body bytes.
pub struct OneCore {
    /// MD5 over the whole body.
    pub md5: f64,
    /// FastCDC cut points over the whole body.
    pub fastcdc: f64,
    /// BLAKE3 of every chunk.
    pub blake3: f64,
    /// The chunk codec (probe, then zstd level 1 when it pays) on every chunk.
    pub zstd: f64,
}

/// Measures `body` `rounds` times; `pb` advances once per round. Blocking: run it on the
/// blocking pool.
pub fn measure(body: &[u8], rounds: u32, pb: &ProgressBar) -> PipelineResult {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut totals = Vec::new();
    let (mut md5s, mut cdcs, mut blake3s, mut zstds) = (vec![], vec![], vec![], vec![]);
    let (mut chunks, mut stored) = (0, 0);
    for _ in 0..rounds {
        let start = Instant::now();
        (chunks, stored) = whole_pipeline(body, workers);
        totals.push(rate(body.len(), start));
        let [md5, cdc, b3, z] = stages_alone(body);
        md5s.push(md5);
        cdcs.push(cdc);
        blake3s.push(b3);
        zstds.push(z);
        pb.inc(1);
    }
    PipelineResult {
        size: body.len() as u64,
        workers,
        mib_s: median(&totals),
        rounds: totals,
        chunks,
        stored_ratio: stored as f64 / body.len().max(1) as f64,
        one_core: OneCore {
            md5: median(&md5s),
            fastcdc: median(&cdcs),
            blake3: median(&blake3s),
            zstd: median(&zstds),
        },
    }
}

/// One pass of the whole pipeline; returns the chunk count and the stored bytes.
fn whole_pipeline(body: &[u8], workers: usize) -> (usize, u64) {
    let cdc = FastCdc::default();
    let (tx, rx) = sync_channel::<Range<usize>>(IN_FLIGHT);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let (mut chunks, mut stored) = (0usize, 0u64);
                    loop {
                        // The guard is dropped at the end of this statement, before the work.
                        let next = rx.lock().map(|r| r.recv());
                        let Ok(Ok(range)) = next else { break };
                        let chunk = &body[range];
                        black_box(ChunkId::of(chunk));
                        let (_, payload) = codec::encode(chunk);
                        stored += payload.map_or(chunk.len(), |p| p.len()) as u64;
                        chunks += 1;
                    }
                    (chunks, stored)
                })
            })
            .collect();

        // The sequential stage, on this thread, cutting only once a whole max-size window is
        // buffered, as the client's ingest does.
        let mut md5 = Md5::new();
        let (mut start, mut avail) = (0, 0);
        let max = cdc.max_size();
        'feed: while avail < body.len() {
            let end = (avail + FRAME).min(body.len());
            md5.update(&body[avail..end]);
            avail = end;
            while avail - start >= max {
                let n = cdc.cut(&body[start..avail], false).unwrap_or(max);
                if tx.send(start..start + n).is_err() {
                    break 'feed;
                }
                start += n;
            }
        }
        while let Some(n) = cdc.cut(&body[start..avail], true) {
            if tx.send(start..start + n).is_err() {
                break;
            }
            start += n;
        }
        black_box(md5.finalize());
        drop(tx);

        handles
            .into_iter()
            .map(|h| h.join().expect("a pipeline worker panicked"))
            .fold((0, 0), |(c, s), (c1, s1)| (c + c1, s + s1))
    })
}

/// MiB/s of MD5, FastCDC, BLAKE3 and the codec, each alone on this thread.
fn stages_alone(body: &[u8]) -> [f64; 4] {
    let start = Instant::now();
    black_box(Md5::digest(body));
    let md5 = rate(body.len(), start);

    let start = Instant::now();
    let chunks = split_all(&FastCdc::default(), body);
    let cdc = rate(body.len(), start);

    let start = Instant::now();
    for c in &chunks {
        black_box(ChunkId::of(c));
    }
    let b3 = rate(body.len(), start);

    let start = Instant::now();
    for c in &chunks {
        black_box(codec::encode(c));
    }
    let z = rate(body.len(), start);
    [md5, cdc, b3, z]
}

fn rate(bytes: usize, start: Instant) -> f64 {
    mib_per_s(bytes as u64, start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_sees_every_byte_once() {
        let body = crate::bench::data::ObjectSource::new(3 << 20, 1).object(0, 3 << 20);
        let expected = split_all(&FastCdc::default(), &body).len();
        let (chunks, stored) = whole_pipeline(&body, 3);
        assert_eq!(chunks, expected);
        assert!(stored > 0 && stored < body.len() as u64, "stored {stored}");
        let r = measure(&body, 2, &ProgressBar::hidden());
        assert_eq!(r.rounds.len(), 2);
        assert!(r.mib_s > 0.0 && r.one_core.zstd > 0.0);
        assert_eq!(r.chunks, expected);
    }
}
