//! Sends operations to a target. Open loop: every request has an intended send time from the
//! arrival shape, and its latency is measured from that time, not from when the tool managed
//! to send it; so a target (or a tool) that stalls is charged for every request the stall
//! delayed, and coordinated omission cannot hide it. Closed loop: a fixed number of workers
//! each send their next request as soon as the previous one is answered (maximum throughput).

use crate::plan::Op;
use crate::record::Recorder;
use crate::targets::Target;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How requests are sent.
#[derive(Clone, Debug)]
pub enum Mode {
    /// At the intended times (offsets from the start), with at most `inflight_max` unanswered;
    /// when that bound is reached the scheduler waits, and the wait is charged to latency.
    Open {
        offsets: Arc<Vec<Duration>>,
        inflight_max: usize,
    },
    /// `workers` back-to-back senders until `ops` are done or `secs` have passed.
    Closed { workers: usize, ops: u64, secs: f64 },
}

/// Runs `ops` against `target` and returns when every request sent has been answered.
pub async fn drive(
    target: Arc<Target>,
    ops: impl Iterator<Item = Op> + Send + 'static,
    mode: Mode,
    rec: Arc<Recorder>,
    progress: bool,
) -> Duration {
    let finished = Arc::new(AtomicBool::new(false));
    let ticker = progress.then(|| tokio::spawn(progress_line(rec.clone(), finished.clone())));
    match mode {
        Mode::Open {
            offsets,
            inflight_max,
        } => open_loop(target, ops, offsets, inflight_max, &rec).await,
        Mode::Closed {
            workers,
            ops: n,
            secs,
        } => closed_loop(target, ops, workers, n, secs, &rec).await,
    }
    let elapsed = rec.start().elapsed();
    finished.store(true, Ordering::Relaxed);
    if let Some(t) = ticker {
        let _ = t.await;
    }
    elapsed
}

/// The scheduler runs on its own OS thread and sleeps with `std::thread::sleep` (nanosleep,
/// tens of microseconds late at most) rather than on Tokio's 1 ms timer wheel, which would
/// send every request up to a millisecond late and charge that to the target.
async fn open_loop(
    target: Arc<Target>,
    ops: impl Iterator<Item = Op> + Send + 'static,
    offsets: Arc<Vec<Duration>>,
    inflight_max: usize,
    rec: &Arc<Recorder>,
) {
    let gate = Arc::new(Semaphore::new(inflight_max.max(1)));
    let (rt, gate2, rec2) = (tokio::runtime::Handle::current(), gate.clone(), rec.clone());
    let scheduler = tokio::task::spawn_blocking(move || {
        let start = rec2.start();
        for (op, offset) in ops.zip(offsets.iter()) {
            let intended = start + *offset;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            rec2.offered(intended);
            let Ok(permit) = rt.block_on(gate2.clone().acquire_owned()) else {
                break;
            };
            let (target, rec) = (target.clone(), rec2.clone());
            rt.spawn(async move {
                let outcome = target.exec(&op).await;
                rec.record(&op, intended, Instant::now(), &outcome);
                drop(permit);
            });
        }
    });
    let _ = scheduler.await;
    // Every permit back means every request answered.
    let _ = gate.acquire_many(inflight_max.max(1) as u32).await;
}

async fn closed_loop(
    target: Arc<Target>,
    ops: impl Iterator<Item = Op> + Send + 'static,
    workers: usize,
    n: u64,
    secs: f64,
    rec: &Arc<Recorder>,
) {
    let ops = Arc::new(std::sync::Mutex::new(ops));
    let taken = Arc::new(AtomicU64::new(0));
    let deadline = rec.start() + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (target, rec, ops, taken) = (target.clone(), rec.clone(), ops.clone(), taken.clone());
        tasks.spawn(async move {
            while taken.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                let Some(op) = ops.lock().ok().and_then(|mut it| it.next()) else {
                    break;
                };
                let sent = Instant::now();
                rec.offered(sent);
                let outcome = target.exec(&op).await;
                rec.record(&op, sent, Instant::now(), &outcome);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Prints, once a second: answers per second in the last second, totals, errors, shed, p99.
async fn progress_line(rec: Arc<Recorder>, finished: Arc<AtomicBool>) {
    let tty = std::io::stderr().is_terminal();
    let mut last = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !finished.load(Ordering::Relaxed) {
        tick.tick().await;
        let (done, errors, shed, p99) = rec.progress();
        let line = format!(
            "[{:>4}s] {:>8}/s  done {:>9}  errors {:>6}  shed {:>7}  p99 so far {:>9.3} ms",
            rec.start().elapsed().as_secs(),
            done - last,
            done,
            errors,
            shed,
            p99 as f64 / 1_000.0
        );
        last = done;
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}")
        } else {
            writeln!(err, "{line}")
        };
    }
    if tty {
        let _ = writeln!(std::io::stderr());
    }
}
