//! A file's uncommitted (UNSTABLE) writes, as a kernel NFS client keeps its dirty pages: the
//! bytes last written at each offset, in pieces that do not overlap, each with the write
//! verifier of the WRITE that sent it. A later write replaces the bytes it covers, so resending
//! any subset of the pieces can never bring back older data.

use std::collections::BTreeMap;

/// A WRITE/COMMIT verifier.
pub type Verf = [u8; 8];

/// Bytes written at one offset and the verifier the server returned for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The bytes.
    pub data: Vec<u8>,
    /// The verifier of the WRITE that sent them.
    pub verf: Verf,
}

/// The uncommitted writes of one file.
#[derive(Clone, Debug, Default)]
pub struct Dirty {
    pieces: BTreeMap<u64, Piece>,
    bytes: u64,
}

impl Dirty {
    /// Records `data` written at `offset` with verifier `verf`, replacing older bytes it covers.
    pub fn insert(&mut self, offset: u64, data: Vec<u8>, verf: Verf) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        // Pieces starting before `end` that reach past `offset`: walking back from `end`, the
        // first piece that ends at or before `offset` ends the overlap (pieces are disjoint).
        let overlapping: Vec<u64> = self
            .pieces
            .range(..end)
            .rev()
            .take_while(|(start, p)| **start + p.data.len() as u64 > offset)
            .map(|(start, _)| *start)
            .collect();
        for start in overlapping {
            let Some(p) = self.pieces.remove(&start) else {
                continue;
            };
            self.bytes -= p.data.len() as u64;
            let p_end = start + p.data.len() as u64;
            if start < offset {
                let left = p.data[..(offset - start) as usize].to_vec();
                self.bytes += left.len() as u64;
                self.pieces.insert(
                    start,
                    Piece {
                        data: left,
                        verf: p.verf,
                    },
                );
            }
            if p_end > end {
                let right = p.data[(end - start) as usize..].to_vec();
                self.bytes += right.len() as u64;
                self.pieces.insert(
                    end,
                    Piece {
                        data: right,
                        verf: p.verf,
                    },
                );
            }
        }
        self.bytes += data.len() as u64;
        self.pieces.insert(offset, Piece { data, verf });
    }

    /// Drops whatever is kept of `[offset, offset + len)` (written stably since).
    pub fn forget(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        self.insert(offset, vec![0; len as usize], [0; 8]);
        if let Some(p) = self.pieces.remove(&offset) {
            self.bytes -= p.data.len() as u64;
        }
    }

    /// Whether nothing is uncommitted.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Bytes uncommitted.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the last piece ends (0 when empty): the file is at least this long.
    pub fn end(&self) -> u64 {
        self.pieces
            .iter()
            .next_back()
            .map_or(0, |(s, p)| s + p.data.len() as u64)
    }

    /// The pieces whose verifier is not `verf` (the server lost them), as (offset, bytes).
    pub fn not_committed_by(&self, verf: &Verf) -> Vec<(u64, Vec<u8>)> {
        self.pieces
            .iter()
            .filter(|(_, p)| &p.verf != verf)
            .map(|(s, p)| (*s, p.data.clone()))
            .collect()
    }

    /// `buf` holds what the server returned for a read of `want` bytes at `offset`: lays the
    /// uncommitted bytes over it, growing it (with zeros between) where they reach past it.
    pub fn overlay(&self, offset: u64, want: usize, buf: &mut Vec<u8>) {
        let want_end = offset + want as u64;
        let reach = self.end().min(want_end);
        if reach > offset + buf.len() as u64 {
            buf.resize((reach - offset) as usize, 0);
        }
        let buf_end = offset + buf.len() as u64;
        // Pieces that may overlap [offset, buf_end): those starting before it ends.
        for (start, p) in self.pieces.range(..buf_end) {
            let p_end = start + p.data.len() as u64;
            let (from, to) = ((*start).max(offset), p_end.min(buf_end));
            if from >= to {
                continue;
            }
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&p.data[(from - start) as usize..(to - start) as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file a sequence of writes makes, byte by byte.
    fn model(writes: &[(u64, Vec<u8>)]) -> Vec<u8> {
        let mut f = Vec::new();
        for (o, d) in writes {
            let end = *o as usize + d.len();
            if f.len() < end {
                f.resize(end, 0);
            }
            f[*o as usize..end].copy_from_slice(d);
        }
        f
    }

    #[test]
    fn later_writes_replace_earlier_bytes_and_pieces_stay_disjoint() {
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let mut d = Dirty::default();
            let mut writes = Vec::new();
            for i in 0..(1 + next() % 12) {
                let o = next() % 300;
                let len = 1 + next() % 80;
                let data: Vec<u8> = (0..len).map(|j| (round + i * 31 + j) as u8).collect();
                d.insert(o, data.clone(), [(i % 3) as u8; 8]);
                writes.push((o, data));
            }
            let want = model(&writes);
            assert_eq!(d.end(), want.len() as u64);
            let mut buf = Vec::new();
            d.overlay(0, 1000, &mut buf);
            assert_eq!(buf, want, "round {round}");
            // Every byte is in exactly one piece.
            let total: u64 = d.pieces.values().map(|p| p.data.len() as u64).sum();
            assert_eq!(total, d.bytes());
            let mut last_end = 0;
            for (s, p) in &d.pieces {
                assert!(*s >= last_end, "pieces overlap");
                last_end = s + p.data.len() as u64;
            }
            // A read in the middle: the server's bytes, with the writes laid over them.
            let mut mid = vec![0xee; 10];
            d.overlay(20, 30, &mut mid);
            let len = 10.max((want.len() as u64).min(50).saturating_sub(20) as usize);
            let mut expect = vec![0xee; 10];
            expect.resize(len, 0);
            for (o, data) in &writes {
                for (k, b) in data.iter().enumerate() {
                    let pos = *o as usize + k;
                    if (20..20 + len).contains(&pos) {
                        expect[pos - 20] = *b;
                    }
                }
            }
            assert_eq!(mid, expect, "round {round}");
        }
    }

    #[test]
    fn resends_only_what_the_verifier_lost() {
        let mut d = Dirty::default();
        d.insert(0, vec![1; 10], [1; 8]);
        d.insert(5, vec![2; 10], [2; 8]);
        assert_eq!(d.not_committed_by(&[2; 8]), vec![(0, vec![1; 5])]);
        assert_eq!(d.not_committed_by(&[1; 8]), vec![(5, vec![2; 10])]);
        assert_eq!(d.pieces.len(), 2);
        assert_eq!(d.bytes(), 15);
    }
}
