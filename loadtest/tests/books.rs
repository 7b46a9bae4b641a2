//! The reconciliation check end to end: a whole run against a target whose books are wrong by
//! one order must fail, and a run against the real in-process engine must pass.

use loadtest::plan::{Mix, Scale, Shape};
use loadtest::report::{self, Plan};
use loadtest::targets::{Sleep, Target, TargetOpts};
use std::sync::Arc;
use std::time::Duration;

fn plan(mix: Mix, shape: Option<Shape>, ops: u64) -> Plan {
    Plan {
        profile: "test".into(),
        scale: Scale::for_plan(&mix, ops, 50, 20),
        mix,
        shape,
        workers: 16,
        ops_max: ops,
        secs_max: 10.0,
        inflight_max: 1_000,
        seed: 3,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_holds_one_order_too_few_fails_the_run() {
    let sleep = Sleep::new(Duration::from_micros(100));
    sleep.skew_books(-1);
    let r = report::run(
        Arc::new(Target::Sleep(sleep)),
        &plan(Mix::uniform(), Some(Shape::steady(500.0, 0.4)), 200),
        16,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.summary.orders.completed, 200);
    assert!(!r.books.ok());
    assert!(
        r.books.differences[0].contains("holds 199 new orders"),
        "{:?}",
        r.books.differences
    );
    assert!(report::text(&r).contains("MISMATCH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_engine_books_match_every_answer() {
    let opts = TargetOpts {
        connections: 1,
        shards: 2,
        pg_schema: String::new(),
        run_id: "t".into(),
        http: String::new(),
    };
    let target = Arc::new(Target::open("inproc", &opts).await.unwrap());
    let mix = Mix {
        single: 6,
        hot: 2,
        bulk: 1,
        redeem: 1,
        balance: 1,
        bulk_quantity: 20,
        ..Mix::default()
    };
    let r = report::run(target, &plan(mix, None, 2_000), 64, false)
        .await
        .unwrap();
    assert!(r.books.ok(), "{:?}", r.books);
    assert!(
        r.summary.orders.completed > 1_000,
        "{:?}",
        r.summary.outcomes
    );
    assert!(
        r.summary.outcomes.keys().all(|k| !k.starts_with("failed")),
        "{:?}",
        r.summary.outcomes
    );
}
