//! A volume's buffered writes: non-overlapping segments of data or zeros by offset, newer
//! writes replacing what they cover.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One buffered write, or what is left of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// Written bytes.
    Data(Bytes),
    /// This many zero bytes (WRITE_ZEROES, TRIM): nothing will be stored for them.
    Zeros(u64),
}

impl Seg {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Seg::Data(b) => b.len() as u64,
            Seg::Zeros(n) => *n,
        }
    }

    /// `[from, from + len)` of this segment.
    pub(crate) fn slice(&self, from: u64, len: u64) -> Seg {
        match self {
            Seg::Data(b) => Seg::Data(b.slice(from as usize..(from + len) as usize)),
            Seg::Zeros(_) => Seg::Zeros(len),
        }
    }

    fn data_bytes(&self) -> u64 {
        match self {
            Seg::Data(b) => b.len() as u64,
            Seg::Zeros(_) => 0,
        }
    }
}

/// Buffered writes not yet part of a committed version.
#[derive(Clone, Debug, Default)]
pub(crate) struct Overlay {
    segs: BTreeMap<u64, Seg>,
    data_bytes: u64,
}

impl Overlay {
    pub(crate) fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes of written data held (zero ranges cost nothing).
    pub(crate) fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// Segments in offset order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Seg)> {
        self.segs.iter().map(|(k, v)| (*k, v))
    }

    fn remove(&mut self, at: u64) -> Option<Seg> {
        let seg = self.segs.remove(&at)?;
        self.data_bytes -= seg.data_bytes();
        Some(seg)
    }

    fn put(&mut self, at: u64, seg: Seg) {
        if seg.len() == 0 {
            return;
        }
        self.data_bytes += seg.data_bytes();
        self.segs.insert(at, seg);
    }

    /// Buffers `seg` at `start`, replacing whatever it covers.
    pub(crate) fn insert(&mut self, start: u64, seg: Seg) {
        let end = start + seg.len();
        if let Some((&s, prev)) = self.segs.range(..start).next_back() {
            let pe = s + prev.len();
            if pe > start {
                let prev = self.remove(s).unwrap_or(Seg::Zeros(0));
                self.put(s, prev.slice(0, start - s));
                if pe > end {
                    self.put(end, prev.slice(end - s, pe - end));
                }
            }
        }
        let inside: Vec<u64> = self.segs.range(start..end).map(|(k, _)| *k).collect();
        for k in inside {
            if let Some(old) = self.remove(k) {
                let oe = k + old.len();
                if oe > end {
                    self.put(end, old.slice(end - k, oe - end));
                }
            }
        }
        self.put(start, seg);
    }

    /// The buffered pieces of `[start, end)`, clipped to it, in order.
    pub(crate) fn pieces(&self, start: u64, end: u64) -> Vec<(u64, Seg)> {
        let mut out = Vec::new();
        if let Some((&s, seg)) = self.segs.range(..start).next_back() {
            let se = s + seg.len();
            if se > start {
                let e = se.min(end);
                out.push((start, seg.slice(start - s, e - start)));
            }
        }
        for (&s, seg) in self.segs.range(start..end) {
            let e = (s + seg.len()).min(end);
            out.push((s, seg.slice(0, e - s)));
        }
        out
    }

    /// Whether the buffered pieces cover all of `[start, end)`.
    pub(crate) fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for (s, seg) in self.pieces(start, end) {
            if s != at {
                return false;
            }
            at = s + seg.len();
        }
        at >= end
    }

    /// `self` laid over `older`: what `self` covers wins (a failed commit's writes go back
    /// under the writes buffered since).
    pub(crate) fn over(self, mut older: Overlay) -> Overlay {
        for (s, seg) in self.segs {
            older.insert(s, seg);
        }
        older
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn apply(model: &mut [u8], start: u64, seg: &Seg) {
        let s = start as usize;
        match seg {
            Seg::Data(b) => model[s..s + b.len()].copy_from_slice(b),
            Seg::Zeros(n) => model[s..s + *n as usize].fill(0),
        }
    }

    /// Random writes into an overlay and into a plain buffer read back the same, segments never
    /// overlap and the data byte count stays exact.
    #[test]
    fn random_writes_read_back_like_a_flat_buffer() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let size = 4096u64;
            let mut model = vec![0u8; size as usize];
            let mut written = vec![false; size as usize];
            let mut o = Overlay::default();
            for _ in 0..40 {
                let start = rng.gen_range(0..size);
                let len = rng.gen_range(1..=(size - start).min(700));
                let seg = if rng.gen_bool(0.25) {
                    Seg::Zeros(len)
                } else {
                    let fill: u8 = rng.gen_range(1..=255);
                    Seg::Data(Bytes::from(vec![fill; len as usize]))
                };
                apply(&mut model, start, &seg);
                written[start as usize..(start + len) as usize].fill(true);
                o.insert(start, seg);
            }
            let mut flat = vec![0u8; size as usize];
            let mut at = 0;
            let mut data = 0;
            for (s, seg) in o.iter() {
                assert!(s >= at, "segments overlap at {s}");
                at = s + seg.len();
                data += seg.data_bytes();
                apply(&mut flat, s, seg);
            }
            assert_eq!(data, o.data_bytes());
            assert_eq!(flat, model);
            for (i, w) in written.iter().enumerate() {
                let i = i as u64;
                assert_eq!(o.covers(i, i + 1), *w, "byte {i}");
            }
            let (a, b) = (rng.gen_range(0..size), rng.gen_range(0..size));
            let (a, b) = (a.min(b), a.max(b) + 1);
            let mut part = vec![0u8; size as usize];
            for (s, seg) in o.pieces(a, b) {
                assert!(s >= a && s + seg.len() <= b);
                apply(&mut part, s, &seg);
            }
            let mut expect = vec![0u8; size as usize];
            expect[a as usize..b as usize].copy_from_slice(&flat[a as usize..b as usize]);
            assert_eq!(part, expect);
        }
    }

    #[test]
    fn newer_writes_stay_over_a_failed_commits_writes() {
        let mut old = Overlay::default();
        old.insert(0, Seg::Data(Bytes::from(vec![1u8; 100])));
        let mut new = Overlay::default();
        new.insert(50, Seg::Data(Bytes::from(vec![2u8; 10])));
        let merged = new.over(old);
        let pieces = merged.pieces(0, 100);
        let mut flat = vec![0u8; 100];
        for (s, seg) in pieces {
            apply(&mut flat, s, &seg);
        }
        assert_eq!(&flat[..50], &[1u8; 50][..]);
        assert_eq!(&flat[50..60], &[2u8; 10][..]);
        assert_eq!(&flat[60..], &[1u8; 40][..]);
        assert_eq!(merged.data_bytes(), 100);
    }
}
