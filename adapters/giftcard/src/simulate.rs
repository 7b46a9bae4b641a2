//! `giftcard simulate`: runs the deterministic simulator (`giftcard_shard::sim`) over many seeds
//! and prints what was injected and checked. A failing seed prints the command that replays it.

use anyhow::{bail, Result};
use giftcard_shard::sim::{self, SimOptions, SimReport};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Number of seeds to run, starting at `--first-seed`.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Run exactly this seed (as printed by a failure).
    #[arg(long)]
    seed: Option<u64>,
    /// Steps per seed.
    #[arg(long, default_value_t = SimOptions::default().steps)]
    steps: u32,
    /// Shards (default: chosen by each seed, 1 to 4).
    #[arg(long)]
    shards: Option<u16>,
    /// Crash probability per step, parts per million.
    #[arg(long, default_value_t = SimOptions::default().crash_ppm)]
    crash_ppm: u32,
    /// Probability that a journal sync fails, parts per million.
    #[arg(long, default_value_t = SimOptions::default().sync_fail_ppm)]
    sync_fail_ppm: u32,
    /// Threads running seeds (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
}

pub fn run(args: SimArgs) -> Result<()> {
    let opts = SimOptions {
        steps: args.steps,
        shards: args.shards,
        crash_ppm: args.crash_ppm,
        sync_fail_ppm: args.sync_fail_ppm,
    };
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(first);
    let total = Mutex::new(SimReport::default());
    let failures = Mutex::new(Vec::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    break;
                }
                match sim::run(seed, &opts) {
                    Ok(r) => {
                        if let Ok(mut t) = total.lock() {
                            t.merge(&r);
                        }
                    }
                    Err(f) => {
                        eprintln!("{f}");
                        if let Ok(mut v) = failures.lock() {
                            v.push(f);
                        }
                    }
                }
            });
        }
    });
    let t = total.into_inner().unwrap_or_default();
    let failures = failures.into_inner().unwrap_or_default();
    println!(
        "{} seeds ({} failed) in {:.1} s, {} steps each",
        count,
        failures.len(),
        started.elapsed().as_secs_f64(),
        opts.steps
    );
    println!("{}", t.summary());
    if !failures.is_empty() {
        bail!(
            "{} seed(s) failed; the first: {}",
            failures.len(),
            failures[0]
        );
    }
    Ok(())
}
