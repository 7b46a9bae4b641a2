//! A target that answers every request after a known delay, and can be told to stall (answer
//! nothing for a while) or to keep wrong books. It tests the tool: a stall must show up in the
//! percentiles, and a wrong count must fail the run.

use super::{Books, Outcome};
use crate::plan::Op;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sleeps, counts, and optionally misbehaves.
pub struct Sleep {
    delay: Duration,
    /// (from, until): requests arriving in this window are held until its end.
    stall: Mutex<Option<(Instant, Instant)>>,
    orders: AtomicU64,
    cards: AtomicU64,
    /// Added to the order count the books report, to prove the check catches it.
    books_skew: AtomicI64,
}

impl Sleep {
    pub fn new(delay: Duration) -> Sleep {
        Sleep {
            delay,
            stall: Mutex::new(None),
            orders: AtomicU64::new(0),
            cards: AtomicU64::new(0),
            books_skew: AtomicI64::new(0),
        }
    }

    pub fn describe(&self) -> String {
        format!("sleep target answering after {:?}", self.delay)
    }

    /// Holds every request that arrives between `from` and `from + len` until the stall ends,
    /// like a process paused by a collector or a stuck disk.
    pub fn stall_at(&self, from: Instant, len: Duration) {
        if let Ok(mut s) = self.stall.lock() {
            *s = Some((from, from + len));
        }
    }

    /// Makes the books report `by` orders more than were placed.
    pub fn skew_books(&self, by: i64) {
        self.books_skew.store(by, Ordering::Relaxed);
    }

    pub async fn exec(&self, op: &Op) -> Outcome {
        let stall = self.stall.lock().ok().and_then(|s| *s);
        let now = Instant::now();
        if let Some((from, until)) = stall {
            if now >= from && now < until {
                tokio::time::sleep_until(until.into()).await;
            }
        }
        tokio::time::sleep(self.delay).await;
        match *op {
            Op::Order { quantity, .. } => {
                self.orders.fetch_add(1, Ordering::Relaxed);
                self.cards.fetch_add(u64::from(quantity), Ordering::Relaxed);
                Outcome::Completed { cards: quantity }
            }
            _ => Outcome::Completed { cards: 0 },
        }
    }

    pub fn books(&self) -> Books {
        let orders = self
            .orders
            .load(Ordering::Relaxed)
            .saturating_add_signed(self.books_skew.load(Ordering::Relaxed));
        Books {
            orders,
            cards: self.cards.load(Ordering::Relaxed),
            violations: Vec::new(),
        }
    }
}
