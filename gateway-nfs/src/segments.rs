//! A file's buffered writes: non-overlapping byte ranges by offset, newer writes replacing
//! what they cover.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Buffered writes not yet part of a committed version.
#[derive(Clone, Debug, Default)]
pub struct Segments {
    segs: BTreeMap<u64, Bytes>,
    bytes: u64,
}

impl Segments {
    /// Nothing buffered.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes buffered.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segments in offset order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Bytes)> {
        self.segs.iter().map(|(k, v)| (*k, v))
    }

    /// Removes `[start, end)` from what is buffered, keeping the parts of segments outside it.
    fn cut(&mut self, start: u64, end: u64) {
        let first = self
            .segs
            .range(..start)
            .next_back()
            .filter(|(s, b)| **s + b.len() as u64 > start)
            .map(|(s, _)| *s);
        let keys: Vec<u64> = first
            .into_iter()
            .chain(self.segs.range(start..end).map(|(s, _)| *s))
            .collect();
        for s in keys {
            let Some(b) = self.segs.remove(&s) else {
                continue;
            };
            self.bytes -= b.len() as u64;
            let e = s + b.len() as u64;
            if s < start {
                let head = b.slice(..(start - s) as usize);
                self.bytes += head.len() as u64;
                self.segs.insert(s, head);
            }
            if e > end {
                let tail = b.slice((end - s) as usize..);
                self.bytes += tail.len() as u64;
                self.segs.insert(end, tail);
            }
        }
    }

    /// Buffers `data` at `offset`, replacing what it covers.
    pub fn write(&mut self, offset: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.cut(offset, end);
        self.bytes += data.len() as u64;
        self.segs.insert(offset, data);
    }

    /// Drops everything at or past `size`.
    pub fn truncate(&mut self, size: u64) {
        self.cut(size, u64::MAX);
    }

    /// The buffered pieces overlapping `[start, end)`, clipped to it.
    pub fn pieces(&self, start: u64, end: u64) -> Vec<(u64, Bytes)> {
        if start >= end {
            // A READ at or past the end of the file asks for nothing.
            return Vec::new();
        }
        // One search, walking back from `end`: segments do not overlap, so the first one
        // that ends at or before `start` ends the walk.
        let mut out: Vec<(u64, Bytes)> = self
            .segs
            .range(..end)
            .rev()
            .map_while(|(s, b)| {
                let e = s + b.len() as u64;
                (e > start).then(|| {
                    let (a, z) = ((*s).max(start), e.min(end));
                    (a, b.slice((a - s) as usize..(z - s) as usize))
                })
            })
            .collect();
        out.reverse();
        out
    }

    /// Removes the segments of `committed` that are still buffered as they were (newer writes
    /// over them stay).
    pub fn forget(&mut self, committed: &Segments) {
        for (s, b) in committed.iter() {
            if let Some(cur) = self.segs.get(&s) {
                if cur.len() == b.len() && cur.as_ptr() == b.as_ptr() {
                    self.bytes -= cur.len() as u64;
                    self.segs.remove(&s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(s: &Segments, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        for (o, b) in s.pieces(0, len as u64) {
            v[o as usize..o as usize + b.len()].copy_from_slice(&b);
        }
        v
    }

    #[test]
    fn newer_writes_replace_what_they_cover() {
        let mut s = Segments::default();
        s.write(0, Bytes::from(vec![1u8; 10]));
        s.write(5, Bytes::from(vec![2u8; 10]));
        s.write(2, Bytes::from(vec![3u8; 2]));
        let mut want = vec![1u8; 5];
        want.extend(vec![2u8; 10]);
        want[2] = 3;
        want[3] = 3;
        assert_eq!(flat(&s, 15), want);
        assert_eq!(s.bytes(), 15);
        s.truncate(12);
        assert_eq!(s.bytes(), 12);
        assert_eq!(flat(&s, 15)[12..], [0, 0, 0]);
        let pieces = s.pieces(3, 6);
        let total: usize = pieces.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn a_commit_forgets_only_what_was_not_written_again() {
        let mut s = Segments::default();
        s.write(0, Bytes::from(vec![1u8; 10]));
        s.write(20, Bytes::from(vec![1u8; 10]));
        let snapshot = s.clone();
        s.write(25, Bytes::from(vec![2u8; 2]));
        s.forget(&snapshot);
        // [0, 10) went; [20, 30) was split by a newer write, so all of its pieces stay.
        assert_eq!(s.pieces(0, 10).len(), 0);
        assert_eq!(s.bytes(), 10);
    }

    /// Random writes against a byte model: every sub-range's pieces are in order, do not
    /// overlap, stay inside the range, and hold exactly the bytes written last there.
    #[test]
    fn pieces_of_any_range_match_a_model_of_random_writes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        const LEN: usize = 4096;
        let mut s = Segments::default();
        let mut model: Vec<Option<u8>> = vec![None; LEN];
        for i in 0..2000u32 {
            let at = rng.gen_range(0..LEN - 1);
            let len = rng.gen_range(1..=(LEN - at).min(200));
            let byte = (i % 251) as u8;
            s.write(at as u64, Bytes::from(vec![byte; len]));
            model[at..at + len].fill(Some(byte));
            let a = rng.gen_range(0..LEN);
            let b = rng.gen_range(a..=LEN);
            let mut seen = vec![None; b - a];
            let mut last_end = a as u64;
            for (o, bytes) in s.pieces(a as u64, b as u64) {
                assert!(o >= last_end, "pieces out of order or overlapping");
                last_end = o + bytes.len() as u64;
                assert!(last_end <= b as u64);
                for (k, x) in bytes.iter().enumerate() {
                    seen[o as usize - a + k] = Some(*x);
                }
            }
            assert_eq!(seen[..], model[a..b], "range {a}..{b} after write {i}");
        }
    }
}
