//! The write-back budget every volume of a site shares, as a page cache's dirty limit is
//! shared by every file: writes are acknowledged from memory while the volumes together
//! buffer less than it, and wait while they buffer more. One busy volume may take most of it
//! (absorbing rewrites of the same blocks between commits, as a page cache does), and a site
//! with many volumes still holds at most the budget.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

pub(crate) struct DirtyBudget {
    limit: u64,
    used: AtomicU64,
    /// Bumped whenever buffered bytes are released (a commit ended, a volume closed).
    released: watch::Sender<u64>,
}

impl DirtyBudget {
    pub(crate) fn new(limit: u64) -> DirtyBudget {
        DirtyBudget {
            limit,
            used: AtomicU64::new(0),
            released: watch::channel(0).0,
        }
    }

    /// Bytes buffered by every volume together.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Over the budget: writers wait.
    pub(crate) fn over(&self) -> bool {
        self.used() > self.limit
    }

    /// Past half the budget: every volume with buffered writes commits.
    pub(crate) fn pressing(&self) -> bool {
        self.used() > self.limit / 2
    }

    /// One volume's buffered bytes went from `before` to `after`.
    pub(crate) fn change(&self, before: u64, after: u64) {
        if after >= before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
            self.released.send_modify(|n| *n += 1);
        }
    }

    /// Wakes on every release.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_add_up_and_releases_wake_waiters() {
        let b = DirtyBudget::new(100);
        let waiter = b.subscribe();
        b.change(0, 60);
        b.change(0, 30);
        assert!(b.pressing() && !b.over());
        b.change(30, 50);
        assert!(b.over());
        assert!(!waiter.has_changed().unwrap());
        b.change(60, 0);
        assert!(waiter.has_changed().unwrap());
        assert_eq!(b.used(), 50);
        assert!(!b.over() && !b.pressing());
    }
}
