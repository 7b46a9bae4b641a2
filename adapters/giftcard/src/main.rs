//! `giftcard`: the engine's one binary.
//!
//! - `serve`: recover, then serve HTTP (and NATS when configured).
//! - `verify --data DIR`: replay a data directory offline and check every invariant.
//! - `bench --scenario ...`: run the durable engine in-process on a temporary directory.
//! - `snapshot --data DIR`: recover, write a checkpoint, truncate the journal.
//! - `hash-key KEY`: print the hash of an API key for the configuration file.
//! - `delivery-keygen`: make the delivery consumer's key pair for sealed codes in events.
//! - `simulate --seeds N`: the deterministic simulator under faults, over many seeds.

mod bench;
mod config;
mod serve;
mod simulate;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

// The engine allocates on one thread (adapters) and frees on another (shards, journal writer);
// glibc's arenas handle that poorly under load, mimalloc handles it well (measured in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "giftcard",
    version,
    about = "Durable sharded gift card transaction engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Recover the data directory and serve the HTTP API.
    Serve {
        /// A configuration file replacing the embedded default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Start even though a shipped development key (public in this repository) is
        /// configured and the address is not loopback. Never in production.
        #[arg(long)]
        insecure_dev_keys: bool,
    },
    /// Replay a data directory offline and check the invariants; non-zero exit on a violation.
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a benchmark scenario on the durable engine in-process.
    Bench(bench::BenchArgs),
    /// Recover a data directory and write a checkpoint (snapshot plus journal truncation).
    Snapshot {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Seal every card code again under the configured seal key (`engine.seal_key` with a new
    /// `engine.seal_key_version`, the old key listed in `engine.previous_seal_keys`), then write
    /// a checkpoint. Afterwards the previous key is no longer needed. The server must be stopped.
    RotateSealKey {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the hash of an API key, as the configuration stores it.
    HashKey { key: String },
    /// Make a key pair for the delivery consumer: the public key goes in
    /// `nats.delivery_public_key`, the secret key to the consumer, which opens `sealed_code`.
    DeliveryKeygen,
    /// Run the deterministic simulator (crashes, torn and lost writes, failed syncs, delayed and
    /// reordered messages, client retries) over many seeds.
    Simulate(simulate::SimArgs),
}

/// The configuration (the file, or the embedded default, with the environment) and the engine
/// opened on `data`, for the commands that work on a stopped server's data directory.
fn open_stopped(
    data: PathBuf,
    config: Option<&std::path::Path>,
) -> Result<(config::Config, giftcard_shard::Engine)> {
    let mut cfg = config::load(config)?;
    cfg.engine.data_dir = data;
    let engine = giftcard_shard::Engine::open(cfg.engine_config()?)?;
    Ok((cfg, engine))
}

fn main() -> Result<()> {
    // No transparent huge pages for this process. mimalloc asks for them on its arenas, and a
    // fault on a fresh huge page zeroes 2 MiB (and may compact memory first) while a shard
    // waits: open-loop p99 fell from 114-159 ms to 7-17 ms without them, at the same
    // throughput and 13% less RSS (BENCHMARKS.md). Best effort: a kernel without the flag
    // only loses that.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    // Every file and directory this process creates (the journal, snapshots, sled's files) is
    // its owner's alone: 0600 and 0700. The journal holds sealed codes and every balance.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Serve {
            config,
            insecure_dev_keys,
        } => serve::run(config::load(config.as_deref())?, insecure_dev_keys),
        Cmd::Verify { data, json } => verify(data, json),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Simulate(args) => simulate::run(args),
        Cmd::Snapshot { data, config } => {
            let (_, engine) = open_stopped(data, config.as_deref())?;
            let through = engine
                .checkpoint()
                .map_err(|e| anyhow::anyhow!("checkpoint failed: {e}"))?;
            println!("checkpoint written through frame {through}");
            Ok(())
        }
        Cmd::RotateSealKey { data, config } => {
            let (cfg, engine) = open_stopped(data, config.as_deref())?;
            let report = engine
                .reseal()
                .map_err(|e| anyhow::anyhow!("re-sealing failed: {e}"))?;
            let through = engine
                .checkpoint()
                .map_err(|e| anyhow::anyhow!("checkpoint failed: {e}"))?;
            let left = engine
                .reseal()
                .map_err(|e| anyhow::anyhow!("checking the re-sealed codes failed: {e}"))?;
            anyhow::ensure!(
                left == giftcard_shard::ResealReport::default(),
                "codes still sealed under an earlier key after re-sealing: {left:?}"
            );
            println!(
                "re-sealed {} supplier codes and {} issued codes under seal key version {}; \
                 checkpoint through frame {through}. engine.previous_seal_keys may now be emptied.",
                report.slots, report.cards, cfg.engine.seal_key_version
            );
            Ok(())
        }
        Cmd::HashKey { key } => {
            println!("{}", giftcard_http::hash_api_key(&key));
            Ok(())
        }
        Cmd::DeliveryKeygen => {
            let (public, secret) = giftcard_queue::seal::keygen();
            println!(
                "# the engine: [nats] delivery_public_key (or GIFTCARD_NATS_DELIVERY_PUBLIC_KEY)"
            );
            println!("delivery_public_key = \"{public}\"");
            println!("# the delivery consumer only, kept secret: opens each event's sealed_code");
            println!("delivery_secret_key = \"{secret}\"");
            Ok(())
        }
    }
}

fn verify(data: PathBuf, json: bool) -> Result<()> {
    if !data.join("journal").exists() {
        bail!("{} holds no journal", data.display());
    }
    let report = giftcard_shard::verify::verify_dir(&data, None).map_err(|e| anyhow::anyhow!(e))?;
    if json {
        let v = serde_json::json!({
            "ok": report.ok(), "violations": report.violations, "shards": report.shards,
            "wallets": report.wallets, "orders": report.orders, "cards": report.cards,
            "codes_unsold": report.codes_unsold, "holds_in_flight": report.holds_in_flight,
            "records_replayed": report.records_replayed,
        });
        println!("{v}");
    } else {
        println!(
            "replayed {} records: {} shards, {} wallets, {} orders, {} cards, {} unsold codes, {} holds in flight",
            report.records_replayed, report.shards, report.wallets, report.orders, report.cards, report.codes_unsold, report.holds_in_flight
        );
        for v in &report.violations {
            println!("VIOLATION: {v}");
        }
        println!(
            "{}",
            if report.ok() {
                "all invariants hold"
            } else {
                "INVARIANTS VIOLATED"
            }
        );
    }
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}
