//! Latency and outcome accounting. Latency is recorded in microseconds from each request's
//! intended send time, in an HdrHistogram for the whole run and one per second of the run (by
//! completion time), so the chart can show how percentiles moved during a spike.

use crate::plan::Op;
use crate::targets::Outcome;
use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shed or unknown orders remembered for the after-run lookup, at most.
const UNCERTAIN_ORDERS_MAX: usize = 50_000;

/// Highest latency the histograms hold: one minute; anything slower is clamped to it.
const LATENCY_US_MAX: u64 = 60_000_000;

/// One second of the run.
struct Second {
    offered: u64,
    done: u64,
    shed: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Counts of orders as the client saw them, for the books check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrderCounts {
    pub completed: u64,
    /// Rejections the target records under the order id.
    pub rejected: u64,
    /// Shed with an overload answer: the target promises no effect.
    pub shed: u64,
    /// Failed with an unknown effect (timeouts, 5xx, broken connections).
    pub unknown: u64,
    /// Cards in completed orders.
    pub cards: u64,
}

/// A stretch of the arrival shape (base, 10x, 100x...), by intended send time.
struct Phase {
    label: String,
    end_secs: f64,
    offered: u64,
    done: u64,
    completed: u64,
    shed: u64,
    errors: u64,
    latency: Histogram<u64>,
}

struct Inner {
    all: Histogram<u64>,
    phases: Vec<Phase>,
    seconds: Vec<Second>,
    outcomes: BTreeMap<String, u64>,
    orders: OrderCounts,
    /// (order number, whether it was shed) of orders whose answer promised no effect or none.
    uncertain: Vec<(u64, bool)>,
    done: u64,
    errors: u64,
    shed: u64,
}

/// Collects every answer of a run. Shared by all request tasks.
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, sigfig)
        .unwrap_or_else(|_| unreachable!("fixed, valid bounds"))
}

impl Recorder {
    /// A recorder with one phase per `(label, seconds)` of the shape, in order.
    pub fn new(start: Instant, phases: &[(String, f64)]) -> Recorder {
        let mut end = 0.0;
        let phases = phases
            .iter()
            .map(|(label, secs)| {
                end += secs;
                Phase {
                    label: label.clone(),
                    end_secs: end,
                    offered: 0,
                    done: 0,
                    completed: 0,
                    shed: 0,
                    errors: 0,
                    latency: histogram(3),
                }
            })
            .collect();
        let inner = Inner {
            all: histogram(3),
            phases,
            seconds: Vec::new(),
            outcomes: BTreeMap::new(),
            orders: OrderCounts::default(),
            uncertain: Vec::new(),
            done: 0,
            errors: 0,
            shed: 0,
        };
        Recorder {
            start,
            inner: Mutex::new(inner),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Notes a request offered at `intended` (counted in that second's offered load).
    pub fn offered(&self, intended: Instant) {
        let sec = intended.saturating_duration_since(self.start).as_secs() as usize;
        let at = intended.saturating_duration_since(self.start).as_secs_f64();
        if let Ok(mut g) = self.inner.lock() {
            g.second(sec).offered += 1;
            if let Some(p) = g.phase(at) {
                p.offered += 1;
            }
        }
    }

    /// Records one answer, with latency measured from `intended` to `done`.
    pub fn record(&self, op: &Op, intended: Instant, done: Instant, outcome: &Outcome) {
        let us = done
            .saturating_duration_since(intended)
            .as_micros()
            .clamp(1, u128::from(LATENCY_US_MAX)) as u64;
        let sec = done.saturating_duration_since(self.start).as_secs() as usize;
        let Ok(mut g) = self.inner.lock() else { return };
        g.all.saturating_record(us);
        let (shed, error) = (
            matches!(outcome, Outcome::Shed),
            matches!(outcome, Outcome::Failed(_)),
        );
        let s = g.second(sec);
        s.done += 1;
        s.shed += u64::from(shed);
        s.errors += u64::from(error);
        s.latency.saturating_record(us);
        if let Some(p) = g.phase(intended.saturating_duration_since(self.start).as_secs_f64()) {
            p.done += 1;
            p.completed += u64::from(matches!(outcome, Outcome::Completed { .. }));
            p.shed += u64::from(shed);
            p.errors += u64::from(error);
            p.latency.saturating_record(us);
        }
        g.done += 1;
        g.shed += u64::from(shed);
        g.errors += u64::from(error);
        *g.outcomes.entry(outcome.key()).or_default() += 1;
        if let Op::Order { order_no, .. } = op {
            if matches!(outcome, Outcome::Shed | Outcome::Failed(_))
                && g.uncertain.len() < UNCERTAIN_ORDERS_MAX
            {
                g.uncertain.push((*order_no, shed));
            }
            let o = &mut g.orders;
            match outcome {
                Outcome::Completed { cards } => {
                    o.completed += 1;
                    o.cards += u64::from(*cards);
                }
                Outcome::Rejected(_) => o.rejected += 1,
                Outcome::Shed => o.shed += 1,
                Outcome::Failed(_) => o.unknown += 1,
            }
        }
    }

    /// Orders answered shed (`true`) or failed (`false`), to look up after the run.
    pub fn uncertain_orders(&self) -> Vec<(u64, bool)> {
        self.inner
            .lock()
            .map(|g| g.uncertain.clone())
            .unwrap_or_default()
    }

    /// Answers so far, errors, shed, and p99 in microseconds (for the progress line).
    pub fn progress(&self) -> (u64, u64, u64, u64) {
        self.inner.lock().map_or((0, 0, 0, 0), |g| {
            (g.done, g.errors, g.shed, g.all.value_at_quantile(0.99))
        })
    }

    /// The summary of everything recorded, over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Result<Summary> {
        let g = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("a request task panicked while recording"))?;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let timeline = g
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| SecondView {
                t: t as u64,
                offered: s.offered,
                done: s.done,
                shed: s.shed,
                errors: s.errors,
                p50_us: s.latency.value_at_quantile(0.5),
                p90_us: s.latency.value_at_quantile(0.9),
                p99_us: s.latency.value_at_quantile(0.99),
                max_us: s.latency.max(),
            })
            .collect();
        Ok(Summary {
            ops: g.done,
            secs,
            throughput_per_s: g.done as f64 / secs,
            completed_per_s: g.outcomes.get("completed").copied().unwrap_or(0) as f64 / secs,
            latency_us: Percentiles::of(&g.all),
            outcomes: g.outcomes.clone(),
            orders: g.orders,
            errors: g.errors,
            shed: g.shed,
            timeline,
            phases: g
                .phases
                .iter()
                .map(|p| PhaseView {
                    label: p.label.clone(),
                    offered: p.offered,
                    done: p.done,
                    completed: p.completed,
                    shed: p.shed,
                    errors: p.errors,
                    latency_us: Percentiles::of(&p.latency),
                })
                .collect(),
        })
    }
}

impl Inner {
    fn phase(&mut self, at_secs: f64) -> Option<&mut Phase> {
        let i = self
            .phases
            .iter()
            .position(|p| at_secs < p.end_secs)
            .unwrap_or(self.phases.len().saturating_sub(1));
        self.phases.get_mut(i)
    }

    fn second(&mut self, sec: usize) -> &mut Second {
        while self.seconds.len() <= sec {
            self.seconds.push(Second {
                offered: 0,
                done: 0,
                shed: 0,
                errors: 0,
                latency: histogram(2),
            });
        }
        &mut self.seconds[sec]
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// One second on the chart.
#[derive(Clone, Debug, Serialize)]
pub struct SecondView {
    pub t: u64,
    pub offered: u64,
    pub done: u64,
    pub shed: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One phase of the shape: what was offered in it and how those requests fared.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseView {
    pub label: String,
    pub offered: u64,
    pub done: u64,
    pub completed: u64,
    pub shed: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub ops: u64,
    pub secs: f64,
    pub throughput_per_s: f64,
    pub completed_per_s: f64,
    pub latency_us: Percentiles,
    pub outcomes: BTreeMap<String, u64>,
    pub orders: OrderCounts,
    pub errors: u64,
    pub shed: u64,
    pub timeline: Vec<SecondView>,
    pub phases: Vec<PhaseView>,
}
