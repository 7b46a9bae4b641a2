//! Deadlines: an index of the times at which something in the state falls due by itself. Time
//! still enters only as data: the runtime (or the simulator, with simulated time) sends a
//! `Command::Tick` when [`Deadlines::next_due`] has passed, and the tick journals an
//! `Event::Expired` naming what fell due, so replay repeats it exactly.
//!
//! Today's user: the recorded answer of a *rejected* order is kept for the replay window
//! (`rejection_replay_window_ms`), then forgotten, so a client may use the order id afresh. A
//! rejection changed nothing, so forgetting it early or late never moves money; only the
//! idempotent replay of the rejection ends. The window is a setting of the runtime, not of the
//! journal: an entry's due time is fixed when the rejection is applied, with the window in force
//! then (0: rejections are kept for ever and nothing is indexed).

use crate::event::Event;
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Something that falls due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Deadline {
    /// The recorded rejection of an order is forgotten.
    RejectedOrder(OrderKey),
}

/// Deadlines that fire in one tick at most, so one tick never makes a large journal frame.
pub const FIRED_PER_TICK_MAX: usize = 512;

/// The index of due times of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    pub(crate) due: BTreeSet<(UnixMillis, Deadline)>,
    /// How long a rejected order's answer is replayed, in ms (0: for ever). Set by the runtime.
    #[serde(skip)]
    pub(crate) rejection_window_ms: u64,
}

impl Deadlines {
    /// The earliest due time, if anything is due at all.
    pub fn next_due(&self) -> Option<UnixMillis> {
        self.due.first().map(|(t, _)| *t)
    }

    /// Entries in the index.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Every entry, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = &(UnixMillis, Deadline)> {
        self.due.iter()
    }

    /// What is due at `now`: an `Expired` event naming it, or nothing (`Answered`).
    pub(crate) fn decide_tick(&self, st: &ShardState, now: UnixMillis) -> Decision {
        let fired: Vec<Deadline> = self
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(FIRED_PER_TICK_MAX)
            .map(|(_, d)| d.clone())
            .collect();
        debug_assert!(fired.iter().all(|d| match d {
            Deadline::RejectedOrder(key) => st
                .orders()
                .get(key)
                .is_some_and(|r| matches!(r.outcome, OrderOutcome::Rejected(_))),
        }));
        if fired.is_empty() {
            return Decision::Answered(vec![]);
        }
        Decision::Events(vec![Event::Expired { fired, at: now }])
    }

    /// The deadlines' part of an event applied at `at`.
    pub(crate) fn apply(&mut self, event: &Event, at: UnixMillis) {
        match event {
            Event::OrderRejected { key, .. } if self.rejection_window_ms > 0 => {
                let due = UnixMillis(at.0.saturating_add(self.rejection_window_ms));
                self.due.insert((due, Deadline::RejectedOrder(key.clone())));
            }
            Event::Expired { fired, .. } => {
                // A tick fires the earliest entries, so they are found at the front; anything
                // named that is not (an index built under another window) is searched for.
                let mut left: BTreeSet<&Deadline> = fired.iter().collect();
                while let Some((_, d)) = self.due.first() {
                    if !left.remove(d) {
                        break;
                    }
                    self.due.pop_first();
                }
                if !left.is_empty() {
                    self.due.retain(|(_, d)| !left.contains(d));
                }
            }
            _ => {}
        }
    }
}
