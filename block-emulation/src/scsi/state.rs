//! The state a logical unit keeps between commands: which I_T nexuses it has seen and the unit
//! attentions pending for each, the capacity it last reported, the mode settings, and the
//! reservations (their rules are in [`super::pr`]).

use std::collections::{HashMap, VecDeque};

use super::limits;
use super::mode::ModeState;
use super::pr::PrState;
use super::sense::ua;
use super::Nexus;

/// Everything behind the logical unit's mutex.
pub(super) struct UnitState {
    /// Every nexus that sent a command and is not lost, with its pending unit attentions
    /// (additional sense code and qualifier), oldest first.
    nexuses: HashMap<Nexus, VecDeque<(u8, u8)>>,
    /// The device size, in bytes, the nexuses were last told of.
    capacity: u64,
    /// Mode page settings.
    pub(super) mode: ModeState,
    /// The nexus holding a RESERVE(6/10) reservation.
    pub(super) reserved_by: Option<Nexus>,
    /// Persistent reservations.
    pub(super) pr: PrState,
}

impl UnitState {
    pub(super) fn new(capacity: u64) -> UnitState {
        UnitState {
            nexuses: HashMap::new(),
            capacity,
            mode: ModeState::default(),
            reserved_by: None,
            pr: PrState::default(),
        }
    }

    /// Notes that `nexus` sent a command; a nexus not seen before starts with a POWER ON
    /// unit attention (SAM-5 6.4: a new I_T nexus is as good as a power on to it).
    pub(super) fn see(&mut self, nexus: &Nexus) {
        if !self.nexuses.contains_key(nexus) {
            self.nexuses
                .insert(nexus.clone(), VecDeque::from([ua::POWER_ON]));
        }
    }

    /// Drops `nexus` and what was pending for it.
    pub(super) fn forget(&mut self, nexus: &Nexus) {
        self.nexuses.remove(nexus);
    }

    /// When the device was resized since the last command, every nexus is told
    /// CAPACITY DATA HAS CHANGED.
    pub(super) fn refresh_capacity(&mut self, size: u64) {
        if size != self.capacity {
            self.capacity = size;
            self.queue_ua_all(None, ua::CAPACITY_CHANGED);
        }
    }

    /// Queues `cond` for `nexus`, if it is connected (a nexus that comes back starts with a
    /// POWER ON unit attention, which covers whatever it missed).
    pub(super) fn queue_ua(&mut self, nexus: &Nexus, cond: (u8, u8)) {
        if let Some(q) = self.nexuses.get_mut(nexus) {
            if q.contains(&cond) {
                return;
            }
            if q.len() >= limits::MAX_PENDING_UA {
                q.pop_front();
            }
            q.push_back(cond);
        }
    }

    /// Queues `cond` for every nexus but `except`.
    pub(super) fn queue_ua_all(&mut self, except: Option<&Nexus>, cond: (u8, u8)) {
        let all: Vec<Nexus> = self
            .nexuses
            .keys()
            .filter(|n| Some(*n) != except)
            .cloned()
            .collect();
        for n in &all {
            self.queue_ua(n, cond);
        }
    }

    /// The oldest unit attention pending for `nexus`, which is cleared.
    pub(super) fn take_ua(&mut self, nexus: &Nexus) -> Option<(u8, u8)> {
        self.nexuses.get_mut(nexus)?.pop_front()
    }
}
