//! Version ids and the hybrid logical clock that makes them.
//!
//! A [`VersionId`] is 128 bits: 48-bit unix milliseconds and a 16-bit logical counter (the HLC),
//! then the origin: 16-bit site id and 48-bit node id. Ids are unique across sites without
//! coordination and totally ordered; their string form is fixed-width hex, so it sorts the same
//! way as the ids.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A site's 16-bit id, unique within a federation of linked sites.
pub type SiteId = u16;
/// A node's 48-bit id, unique within its site.
pub type NodeId = u64;

const NODE_MASK: u64 = (1 << 48) - 1;
const MS_MASK: u64 = (1 << 48) - 1;

/// A version's id: HLC timestamp then origin. Compare with `Ord` for "newer".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId(pub u128);

impl VersionId {
    /// The smallest id; sorts before every real version.
    pub const MIN: VersionId = VersionId(0);

    /// Assembles an id from its parts (`ms` and `node` are truncated to 48 bits).
    pub fn new(ms: u64, logical: u16, site: SiteId, node: NodeId) -> VersionId {
        VersionId(
            ((ms & MS_MASK) as u128) << 80
                | (logical as u128) << 64
                | (site as u128) << 48
                | (node & NODE_MASK) as u128,
        )
    }

    /// Unix milliseconds of the HLC part.
    pub fn millis(&self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// Logical counter of the HLC part.
    pub fn logical(&self) -> u16 {
        (self.0 >> 64) as u16
    }

    /// Site that made this version.
    pub fn site(&self) -> SiteId {
        (self.0 >> 48) as u16
    }

    /// Node that made this version.
    pub fn node(&self) -> NodeId {
        (self.0 as u64) & NODE_MASK
    }

    /// Big-endian bytes: they sort like the ids.
    pub fn to_be_bytes(&self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// Inverse of [`VersionId::to_be_bytes`].
    pub fn from_be_bytes(b: [u8; 16]) -> VersionId {
        VersionId(u128::from_be_bytes(b))
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VersionId({}.{}@{}:{})",
            self.millis(),
            self.logical(),
            self.site(),
            self.node()
        )
    }
}

impl FromStr for VersionId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("version id `{s}` must be 32 hex digits"));
        }
        u128::from_str_radix(s, 16)
            .map(VersionId)
            .map_err(|e| format!("version id `{s}`: {e}"))
    }
}

/// Hybrid logical clock of one node. Ticks are strictly increasing even when the wall clock steps
/// back, and a tick after [`Hlc::observe`] sorts after the observed id.
pub struct Hlc {
    site: SiteId,
    node: NodeId,
    /// (ms, logical) of the last tick or observation.
    last: Mutex<(u64, u16)>,
    wall: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Hlc {
    /// A clock for `site`/`node` driven by the system clock.
    pub fn new(site: SiteId, node: NodeId) -> Hlc {
        Hlc::with_wall_clock(site, node, || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        })
    }

    /// The node this clock names versions for.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The site this clock names versions for.
    pub fn site(&self) -> SiteId {
        self.site
    }

    /// A clock with an explicit wall-clock source (tests use it to step time back).
    pub fn with_wall_clock(
        site: SiteId,
        node: NodeId,
        wall: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Hlc {
        Hlc {
            site,
            node: node & NODE_MASK,
            last: Mutex::new((0, 0)),
            wall: Box::new(wall),
        }
    }

    /// Moves the clock past `seen` so that the next tick sorts after it.
    pub fn observe(&self, seen: VersionId) {
        let mut last = self.last.lock();
        let s = (seen.millis(), seen.logical());
        if s > *last {
            *last = s;
        }
    }

    /// A fresh id, greater than every id this clock issued or observed.
    pub fn tick(&self) -> VersionId {
        let wall = (self.wall)() & MS_MASK;
        let mut last = self.last.lock();
        let next = if wall > last.0 {
            (wall, 0)
        } else if last.1 == u16::MAX {
            (last.0 + 1, 0)
        } else {
            (last.0, last.1 + 1)
        };
        *last = next;
        VersionId::new(next.0, next.1, self.site, self.node)
    }

    /// Observes `seen` (if any) then ticks: the id for a write that replaces `seen`.
    pub fn tick_after(&self, seen: Option<VersionId>) -> VersionId {
        if let Some(v) = seen {
            self.observe(v);
        }
        self.tick()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn parts_round_trip_and_string_sorts_like_ids() {
        let a = VersionId::new(1_700_000_000_000, 5, 3, 0xABCDEF);
        assert_eq!(a.millis(), 1_700_000_000_000);
        assert_eq!(a.logical(), 5);
        assert_eq!(a.site(), 3);
        assert_eq!(a.node(), 0xABCDEF);
        let b = VersionId::new(1_700_000_000_000, 6, 0, 0);
        let c = VersionId::new(9, 0, u16::MAX, NODE_MASK);
        let mut ids = [a, b, c];
        ids.sort();
        let mut strs: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
        let sorted = strs.clone();
        strs.sort();
        assert_eq!(strs, sorted);
        assert_eq!(a.to_string().parse::<VersionId>().unwrap(), a);
        assert!("null".parse::<VersionId>().is_err());
        assert_eq!(VersionId::from_be_bytes(a.to_be_bytes()), a);
    }

    #[test]
    fn clock_is_monotonic_when_wall_clock_steps_back() {
        let now = Arc::new(AtomicU64::new(10_000));
        let n2 = now.clone();
        let hlc = Hlc::with_wall_clock(1, 1, move || n2.load(Ordering::SeqCst));
        let a = hlc.tick();
        now.store(5_000, Ordering::SeqCst);
        let b = hlc.tick();
        let c = hlc.tick();
        assert!(a < b && b < c);
        assert_eq!(b.millis(), 10_000);
        now.store(20_000, Ordering::SeqCst);
        let d = hlc.tick();
        assert_eq!((d.millis(), d.logical()), (20_000, 0));
    }

    #[test]
    fn tick_after_sorts_after_a_version_from_the_future() {
        let hlc = Hlc::with_wall_clock(1, 2, || 1_000);
        let foreign = VersionId::new(50_000, 7, 9, 9);
        let v = hlc.tick_after(Some(foreign));
        assert!(v > foreign);
        assert_eq!(v.site(), 1);
    }

    #[test]
    fn logical_overflow_carries_into_millis() {
        let hlc = Hlc::with_wall_clock(0, 0, || 1);
        hlc.observe(VersionId::new(1, u16::MAX, 0, 0));
        let v = hlc.tick();
        assert_eq!((v.millis(), v.logical()), (2, 0));
    }
}
