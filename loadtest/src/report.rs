//! One run against one target from set-up to verdict, and the report of it: a text table for
//! people, JSON for machines, and the comparison table when several targets ran the same plan.

use crate::books::{self, BooksCheck, Lookup};
use crate::driver::{self, Mode};
use crate::plan::{Mix, OpGen, Scale, Shape};
use crate::record::{Recorder, Summary};
use crate::targets::Target;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

/// Everything that defines the work offered, identical for every target of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub profile: String,
    pub mix: Mix,
    pub scale: Scale,
    /// Open loop: the arrival shape. Closed loop: `None`.
    pub shape: Option<Shape>,
    pub workers: usize,
    pub ops_max: u64,
    pub secs_max: f64,
    pub inflight_max: usize,
    pub seed: u64,
}

/// The report of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub target: String,
    pub target_kind: String,
    pub commit: String,
    pub machine: String,
    pub plan: Plan,
    pub setup_secs: f64,
    pub summary: Summary,
    pub books: BooksCheck,
}

/// Sets up `target`, runs `plan` against it, reads its books, and reports.
pub async fn run(
    target: Arc<Target>,
    plan: &Plan,
    workers: usize,
    progress: bool,
) -> Result<RunReport> {
    let setup_started = Instant::now();
    target.setup(&plan.scale).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let before = target.books().await?;
    let ops = OpGen::new(plan.mix.clone(), plan.scale.clone(), plan.seed);
    let (mode, phases) = match &plan.shape {
        Some(shape) => {
            let offsets = Arc::new(shape.offsets());
            let phases = shape
                .segments
                .iter()
                .map(|s| (s.label.clone(), s.secs))
                .collect::<Vec<_>>();
            (
                Mode::Open {
                    offsets,
                    inflight_max: plan.inflight_max,
                },
                phases,
            )
        }
        None => (
            Mode::Closed {
                workers,
                ops: plan.ops_max,
                secs: plan.secs_max,
            },
            vec![("closed".to_string(), plan.secs_max)],
        ),
    };
    let rec = Arc::new(Recorder::new(Instant::now(), &phases));
    let elapsed = driver::drive(target.clone(), ops, mode, rec.clone(), progress).await;
    let summary = rec.summary(elapsed)?;
    let after = target.books().await?;
    let lookup = look_up(&target, rec.uncertain_orders()).await?;
    let books = books::check(before, after, summary.orders, lookup);
    Ok(RunReport {
        target: target.describe(),
        target_kind: target.kind().into(),
        commit: commit(),
        machine: machine(),
        plan: Plan {
            workers,
            ..plan.clone()
        },
        setup_secs,
        summary,
        books,
    })
}

/// Asks the target what became of every order answered shed or failed.
async fn look_up(target: &Target, orders: Vec<(u64, bool)>) -> Result<Lookup> {
    let mut l = Lookup::default();
    for (order_no, shed) in orders {
        let held = target.lookup(order_no).await?.is_some();
        if shed {
            l.shed_checked += 1;
            if held {
                l.shed_but_recorded += 1;
                if l.examples.len() < 5 {
                    l.examples.push(order_no);
                }
            }
        } else {
            l.unknown_checked += 1;
            l.unknown_recorded += u64::from(held);
        }
    }
    Ok(l)
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".into(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1_000.0)
}

/// The report as a text table.
pub fn text(r: &RunReport) -> String {
    let s = &r.summary;
    let mut out = String::new();
    let mode = match &r.plan.shape {
        Some(shape) => {
            let segs: Vec<String> = shape
                .segments
                .iter()
                .map(|g| {
                    format!(
                        "{} {:.0}->{:.0}/s {}s",
                        g.label, g.from_per_s, g.to_per_s, g.secs
                    )
                })
                .collect();
            format!("open loop, {}", segs.join(", "))
        }
        None => format!(
            "closed loop, {} workers, at most {} ops / {} s",
            r.plan.workers, r.plan.ops_max, r.plan.secs_max
        ),
    };
    let _ = writeln!(out, "target     {}", r.target);
    let _ = writeln!(out, "profile    {} ({mode})", r.plan.profile);
    let _ = writeln!(out, "commit     {} on {}", r.commit, r.machine);
    let _ = writeln!(
        out,
        "set-up     {:.1} s ({} wallets, {} skus)",
        r.setup_secs, r.plan.scale.wallets, r.plan.scale.skus
    );
    let _ = writeln!(
        out,
        "answered   {} in {:.2} s = {:.0}/s (completed {:.0}/s)",
        s.ops, s.secs, s.throughput_per_s, s.completed_per_s
    );
    let _ = writeln!(
        out,
        "latency ms {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "max"
    );
    let l = &s.latency_us;
    let _ = writeln!(
        out,
        "           {:>9} {:>9} {:>9} {:>9} {:>9}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    if s.phases.len() > 1 {
        let _ = writeln!(
            out,
            "phase      {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "offered", "completed", "shed", "errors", "p99 ms", "max ms"
        );
        for p in &s.phases {
            let _ = writeln!(
                out,
                "  {:<8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                p.label,
                p.offered,
                p.completed,
                p.shed,
                p.errors,
                ms(p.latency_us.p99),
                ms(p.latency_us.max)
            );
        }
    }
    let outcomes: Vec<String> = s.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "outcomes   {}", outcomes.join(", "));
    let b = &r.books;
    let verdict = if b.ok() {
        "OK".to_string()
    } else {
        format!("MISMATCH: {}", b.differences.join("; "))
    };
    let _ = writeln!(
        out,
        "books      {verdict} (orders +{} for completed {} + rejected {}, {} unknown, {} shed; cards +{} for {})",
        b.after.orders as i128 - b.before.orders as i128,
        b.seen.completed,
        b.seen.rejected,
        b.seen.unknown,
        b.seen.shed,
        b.after.cards as i128 - b.before.cards as i128,
        b.seen.cards
    );
    if b.lookup.shed_checked + b.lookup.unknown_checked > 0 {
        let _ = writeln!(
            out,
            "looked up  {} shed orders: {} held by the target anyway; {} with unknown effect: {} held",
            b.lookup.shed_checked, b.lookup.shed_but_recorded, b.lookup.unknown_checked, b.lookup.unknown_recorded
        );
    }
    out
}

/// The side-by-side table of several targets on one plan, with ratios to the last target
/// (put the peer last).
pub fn comparison(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let Some(base) = reports.last() else {
        return out;
    };
    let _ = writeln!(
        out,
        "{:<10} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "target",
        "completed/s",
        "answered/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        format!("x {}", base.target_kind),
        "books"
    );
    for r in reports {
        let s = &r.summary;
        let ratio = s.completed_per_s / base.summary.completed_per_s.max(1e-9);
        let _ = writeln!(
            out,
            "{:<10} {:>12.0} {:>12.0} {:>10} {:>10} {:>10} {:>11.1}x {:>10}",
            r.target_kind,
            s.completed_per_s,
            s.throughput_per_s,
            ms(s.latency_us.p50),
            ms(s.latency_us.p99),
            ms(s.latency_us.max),
            ratio,
            if r.books.ok() { "ok" } else { "MISMATCH" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Recorder;
    use crate::targets::{Books, Outcome};

    fn sample() -> RunReport {
        let start = Instant::now();
        let rec = Recorder::new(start, &[("base".into(), 1.0), ("10x".into(), 1.0)]);
        let op = crate::plan::Op::Order {
            order_no: 1,
            wallet: 0,
            sku: 0,
            quantity: 2,
        };
        rec.offered(start);
        rec.record(
            &op,
            start,
            start + std::time::Duration::from_millis(3),
            &Outcome::Completed { cards: 2 },
        );
        rec.offered(start);
        rec.record(
            &op,
            start,
            start + std::time::Duration::from_millis(1),
            &Outcome::Shed,
        );
        let summary = rec.summary(std::time::Duration::from_secs(2)).unwrap();
        let books = books::check(
            Books::default(),
            Books {
                orders: 1,
                cards: 2,
                violations: vec![],
            },
            summary.orders,
            Lookup::default(),
        );
        RunReport {
            target: "test target".into(),
            target_kind: "sleep".into(),
            commit: "abc".into(),
            machine: "m".into(),
            plan: Plan {
                profile: "spike".into(),
                mix: Mix::uniform(),
                scale: Scale::for_plan(&Mix::uniform(), 2, 1, 1),
                shape: Some(Shape::spike(1.0, [1.0, 1.0, 0.0, 0.0])),
                workers: 0,
                ops_max: 2,
                secs_max: 2.0,
                inflight_max: 10,
                seed: 1,
            },
            setup_secs: 0.0,
            summary,
            books,
        }
    }

    #[test]
    fn text_report_has_throughput_percentiles_outcomes_and_books() {
        let t = text(&sample());
        assert!(
            t.contains("answered   2 in 2.00 s = 1/s (completed 0/s)"),
            "{t}"
        );
        assert!(
            t.contains("latency ms       p50       p90       p99     p99.9       max"),
            "{t}"
        );
        assert!(t.contains("outcomes   completed 1, shed 1"), "{t}");
        assert!(t.contains("books      OK (orders +1 for completed 1 + rejected 0, 0 unknown, 1 shed; cards +2 for 2)"), "{t}");
        assert!(
            t.contains("  base             2         1         1"),
            "{t}"
        );
    }

    #[test]
    fn json_report_carries_the_fields_tools_read() {
        let v = serde_json::to_value(sample()).unwrap();
        for path in [
            "/summary/throughput_per_s",
            "/summary/latency_us/p50",
            "/summary/latency_us/p90",
            "/summary/latency_us/p99",
            "/summary/latency_us/p999",
            "/summary/latency_us/max",
            "/summary/outcomes/completed",
            "/summary/outcomes/shed",
            "/summary/timeline/0/p99_us",
            "/summary/phases/1/label",
            "/books/differences",
            "/commit",
            "/machine",
        ] {
            assert!(v.pointer(path).is_some(), "missing {path} in {v}");
        }
        assert_eq!(
            v.pointer("/summary/latency_us/max")
                .and_then(|x| x.as_u64())
                .map(|us| us / 1_000),
            Some(3)
        );
    }

    #[test]
    fn comparison_states_ratios_to_the_last_target() {
        let mut fast = sample();
        fast.target_kind = "inproc".into();
        fast.summary.completed_per_s = 5_000.0;
        let mut peer = sample();
        peer.target_kind = "postgres".into();
        peer.summary.completed_per_s = 50.0;
        let t = comparison(&[fast, peer]);
        assert!(t.contains("100.0x"), "{t}");
        assert!(t.contains("x postgres"), "{t}");
        assert!(t.contains("1.0x"), "{t}");
    }
}
