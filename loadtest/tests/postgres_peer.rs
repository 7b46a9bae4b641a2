//! The PostgreSQL peer on the machine's server (127.0.0.1:5432, database `test`, or
//! LOADTEST_PG_URL): the purchase never oversells, never overdraws, replays a retried order id,
//! and keeps books the check accepts. The test builds its own uniquely named schema and drops
//! it. If PostgreSQL is unreachable it FAILS, naming what it tried: nothing is skipped silently.

use loadtest::plan::{Mix, Op, Scale};
use loadtest::report::{self, Plan};
use loadtest::targets::{Outcome, Target, TargetOpts};
use std::sync::Arc;

fn url() -> String {
    std::env::var("LOADTEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn open(schema: &str) -> Target {
    let opts = TargetOpts {
        connections: 4,
        shards: 0,
        pg_schema: schema.into(),
        run_id: "t".into(),
        http: String::new(),
    };
    Target::open(&url(), &opts).await.unwrap_or_else(|e| {
        panic!(
            "this test needs PostgreSQL at {} (set LOADTEST_PG_URL to use another): {e:#}",
            url()
        )
    })
}

fn schema_name(what: &str) -> String {
    format!(
        "lt_test_{what}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    )
}

async fn drop_schema(t: &Target) {
    if let Target::Postgres(pg) = t {
        pg.drop_schema().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_purchase_is_exact_and_its_books_match_the_run() {
    let target = Arc::new(open(&schema_name("run")).await);
    let mix = Mix {
        single: 5,
        hot: 4,
        bulk: 1,
        bulk_quantity: 5,
        ..Mix::default()
    };
    let plan = Plan {
        profile: "test".into(),
        scale: Scale::for_plan(&mix, 400, 20, 10),
        mix,
        shape: None,
        workers: 4,
        ops_max: 400,
        secs_max: 20.0,
        inflight_max: 100,
        seed: 9,
    };
    let r = report::run(target.clone(), &plan, 4, false).await.unwrap();
    drop_schema(&target).await;
    assert!(r.books.ok(), "{:?}", r.books);
    assert_eq!(r.summary.orders.completed, 400, "{:?}", r.summary.outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_rejects_what_it_cannot_sell_and_replays_a_retry() {
    let target = open(&schema_name("edge")).await;
    let scale = Scale {
        wallets: 2,
        skus: 1,
        codes_per_sku: 3,
        hot_skus: 0,
        codes_per_hot_sku: 0,
        cards: 0,
        deposit_minor: 10_000,
        face_minor: 2_500,
    };
    target.setup(&scale).await.unwrap();
    let order = |order_no, quantity| Op::Order {
        order_no,
        wallet: 0,
        sku: 0,
        quantity,
    };
    assert_eq!(
        target.exec(&order(1, 2)).await,
        Outcome::Completed { cards: 2 }
    );
    // Retrying order 1 replays it: no second charge, no second pair of codes.
    assert_eq!(
        target.exec(&order(1, 2)).await,
        Outcome::Failed("replay:completed".into())
    );
    // One code is left: two is out of stock, and the wallet is not charged for it.
    assert_eq!(
        target.exec(&order(2, 2)).await,
        Outcome::Rejected("out_of_stock".into())
    );
    // Wallet 1 holds 10,000 minor units; five cards cost 12,500.
    assert_eq!(
        target
            .exec(&Op::Order {
                order_no: 3,
                wallet: 1,
                sku: 0,
                quantity: 5
            })
            .await,
        Outcome::Rejected("insufficient_funds".into())
    );
    let books = target.books().await.unwrap();
    drop_schema(&target).await;
    assert_eq!((books.orders, books.cards), (3, 2), "{books:?}");
    assert!(books.violations.is_empty(), "{:?}", books.violations);
}
