//! The deterministic simulator over a few hundred seeds: crashes at any step, lost and torn
//! unsynced writes, failed syncs, crashes during recovery, delayed and reordered messages between
//! shards, duplicate and altered client retries, orders held for review and settled or expired
//! around crashes. After every recovery every invariant holds and every acknowledged operation
//! is in the books exactly once with the answer the client saw; a review ends once, one way.
//! `giftcard simulate --seeds N` runs many more; a failure prints the command that replays it.

use giftcard_shard::sim::{self, SimOptions, SimReport};

const SEEDS: u64 = 300;

#[test]
fn a_few_hundred_seeds_keep_every_promise() {
    let opts = SimOptions {
        steps: 1_500,
        ..SimOptions::default()
    };
    let mut total = SimReport::default();
    let mut failures = Vec::new();
    for seed in 0..SEEDS {
        match sim::run(seed, &opts) {
            Ok(r) => total.merge(&r),
            Err(f) => failures.push(f.to_string()),
        }
    }
    println!("{SEEDS} seeds\n{}", total.summary());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The faults really happened, or the run proved nothing.
    assert!(total.crashes > SEEDS, "{total:?}");
    assert!(total.torn_writes > 0 && total.lost_writes > 0 && total.sync_failures > 0);
    assert!(total.crashes_in_recovery > 0 && total.checkpoints > 0);
    assert!(total.holds_released > 0 && total.transfers_completed > 0);
    assert!(total.duplicate_retries > 0 && total.altered_retries > 0);
    assert!(total.orders_completed > 1_000);
    assert!(total.redemptions > 100 && total.reversals > 10, "{total:?}");
    assert!(total.orders_refused_by_limits > 0, "{total:?}");
    // Reviews were held, settled both ways by an admin, and released by their deadlines
    // (ticks after which the run crashes now and then).
    assert!(total.reviews_held > 50, "{total:?}");
    assert!(
        total.reviews_approved > 0 && total.reviews_rejected > 0,
        "{total:?}"
    );
    assert!(total.review_expiries_fired > 0, "{total:?}");
}

#[test]
fn every_shard_count_from_one_to_four() {
    for shards in 1..=4 {
        for seed in 0..10 {
            let opts = SimOptions {
                steps: 1_000,
                shards: Some(shards),
                crash_ppm: 10_000,
                ..SimOptions::default()
            };
            if let Err(f) = sim::run(1_000 + seed, &opts) {
                panic!("{f}");
            }
        }
    }
}
