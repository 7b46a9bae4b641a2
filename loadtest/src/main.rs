//! `loadtest`: see the library's docs. This file only reads the command line, runs the plan
//! against each target in turn, and writes the reports and the chart.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use loadtest::chart;
use loadtest::plan::{Mix, Scale, Shape};
use loadtest::report::{self, Plan, RunReport};
use loadtest::targets::{Target, TargetOpts};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Profile {
    /// A constant rate of single-card orders.
    Steady,
    /// Single-card orders at a rate climbing from --ramp-from to --rate.
    Ramp,
    /// Black Friday: --rate, then 10x, then 100x of it, then back (durations in --spike-secs).
    Spike,
    /// 90% of orders on 10 SKUs, at a constant rate.
    HotSku,
    /// Corporate orders of many cards mixed with single cards.
    Bulk,
    /// Redemptions and balance inquiries of issued cards.
    Redeem,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum ShapeName {
    Steady,
    Ramp,
    Spike,
}

/// Open-loop load generator for the gift card engine, with a PostgreSQL peer for comparison.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where to send load: inproc, http://HOST:PORT, nats://HOST:PORT, postgres://USER@HOST:PORT/DB,
    /// sleep://MILLIS.
    /// Repeat it to run the same plan against several targets in turn (put the peer last: the
    /// comparison states ratios to the last one).
    #[arg(long, required = true)]
    target: Vec<String>,
    #[arg(long, value_enum, default_value = "steady")]
    profile: Profile,
    /// Override the profile's operation mix: uniform, hot-sku, bulk, redeem, or a TOML file
    /// with a [mix] table (see config/loadtest-*.toml).
    #[arg(long)]
    mix: Option<String>,
    /// Override the profile's arrival shape.
    #[arg(long, value_enum)]
    shape: Option<ShapeName>,
    /// Operations per second offered (steady), reached (ramp), or the base of a spike.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Start rate of a ramp.
    #[arg(long, default_value_t = 0.0)]
    ramp_from: f64,
    /// Seconds of a steady or ramp run; the cap on a closed-loop run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of the four spike phases: base, 10x, 100x, after.
    #[arg(long, value_delimiter = ',', default_values_t = [5.0, 5.0, 5.0, 5.0])]
    spike_secs: Vec<f64>,
    /// Closed loop (maximum throughput): back-to-back requests from --concurrency workers.
    #[arg(long)]
    closed: bool,
    /// Closed-loop workers against the in-process engine (over HTTP: one per connection).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Closed-loop workers and connections against PostgreSQL (8 was its best in the peer runs).
    #[arg(long, default_value_t = 8)]
    peer_concurrency: usize,
    /// Closed loop: stop after this many operations (also sizes the code pools).
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Open loop: requests sent and not yet answered, at most; beyond it the scheduler waits
    /// (and the wait counts in latency).
    #[arg(long, default_value_t = 200_000)]
    inflight_max: usize,
    /// The engine's HTTP API for a nats:// target (set-up, redemptions, books).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// HTTP connections (and closed-loop workers over HTTP).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 10_000)]
    wallets: u32,
    #[arg(long, default_value_t = 1_000)]
    skus: u32,
    /// Codes loaded per SKU (hot SKUs too); default: sized from the plan with 20% headroom, so
    /// a run measures the engine and not stock-outs. Set it low to measure out-of-stock paths.
    #[arg(long)]
    codes_per_sku: Option<u64>,
    /// Each wallet's initial deposit, in minor units (USD).
    #[arg(long, default_value_t = 1_000_000_000)]
    deposit_minor: i64,
    /// Issued cards bought during set-up for redemptions and balance inquiries.
    #[arg(long, default_value_t = 2_000)]
    cards: u32,
    /// Shards of the in-process engine (0: one per core).
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Schema the PostgreSQL peer builds its tables in (dropped and recreated).
    #[arg(long, default_value = "loadtest")]
    pg_schema: String,
    /// Prefix of this run's ids on an HTTP server that keeps data (default: the start time).
    #[arg(long)]
    run_id: Option<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for NAME-TARGET.json reports and NAME.svg.
    #[arg(long, default_value = "loadtest/out")]
    out: PathBuf,
    /// Base name of the files written (default: the profile).
    #[arg(long)]
    name: Option<String>,
    /// Print the JSON report(s) on stdout instead of the text table.
    #[arg(long)]
    json: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

fn mix_of(args: &Args) -> Result<Mix> {
    let by_profile = match args.profile {
        Profile::HotSku => Mix::hot_sku(),
        Profile::Bulk => Mix::bulk(),
        Profile::Redeem => Mix::redeem(),
        _ => Mix::uniform(),
    };
    Ok(match args.mix.as_deref() {
        None => by_profile,
        Some("uniform") => Mix::uniform(),
        Some("hot-sku") => Mix::hot_sku(),
        Some("bulk") => Mix::bulk(),
        Some("redeem") => Mix::redeem(),
        Some(path) => Mix::from_file(path.as_ref())?,
    })
}

fn shape_of(args: &Args) -> Result<Shape> {
    let name = args.shape.unwrap_or(match args.profile {
        Profile::Ramp => ShapeName::Ramp,
        Profile::Spike => ShapeName::Spike,
        _ => ShapeName::Steady,
    });
    Ok(match name {
        ShapeName::Steady => Shape::steady(args.rate, args.duration),
        ShapeName::Ramp => Shape::ramp(args.ramp_from, args.rate, args.duration),
        ShapeName::Spike => {
            let [a, b, c, d] = args.spike_secs[..] else {
                bail!("--spike-secs takes four durations")
            };
            Shape::spike(args.rate, [a, b, c, d])
        }
    })
}

async fn run(args: Args) -> Result<()> {
    let mix = mix_of(&args)?;
    let shape = (!args.closed).then(|| shape_of(&args)).transpose()?;
    let ops = shape
        .as_ref()
        .map_or(args.requests, |s| s.offsets().len() as u64);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{:?}", args.profile).to_lowercase());
    let mut scale = Scale::for_plan(&mix, ops, args.wallets, args.skus);
    if let Some(codes) = args.codes_per_sku {
        scale.codes_per_sku = codes;
        scale.codes_per_hot_sku = codes;
    }
    scale.deposit_minor = args.deposit_minor;
    if scale.cards > 0 {
        scale.cards = args.cards.max(1);
    }
    let plan = Plan {
        profile: name.clone(),
        scale,
        mix,
        shape,
        workers: args.concurrency,
        ops_max: ops,
        secs_max: args.duration,
        inflight_max: args.inflight_max,
        seed: args.seed,
    };
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{secs:x}")
    });
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut reports: Vec<RunReport> = Vec::new();
    for (i, spec) in args.target.iter().enumerate() {
        let peer = spec.starts_with("postgres");
        // Targets of one run may be the same server (HTTP and NATS into one engine): each loads
        // its own data set under its own ids.
        let run_id = if i == 0 {
            run_id.clone()
        } else {
            format!("{run_id}t{i}")
        };
        let opts = TargetOpts {
            connections: if peer {
                args.peer_concurrency
            } else {
                args.connections
            },
            shards: args.shards,
            pg_schema: args.pg_schema.clone(),
            run_id: run_id.clone(),
            http: args.http.clone(),
        };
        let target = Arc::new(Target::open(spec, &opts).await?);
        eprintln!(
            "loadtest: {} ({} ops planned)",
            target.describe(),
            plan.ops_max
        );
        // A closed-loop worker per connection for the networked targets: more workers than
        // connections would only queue inside the tool.
        let workers = if peer {
            args.peer_concurrency
        } else if spec.starts_with("http") {
            args.connections
        } else {
            args.concurrency
        };
        let r = report::run(target, &plan, workers, !args.quiet)
            .await
            .with_context(|| format!("running against {spec}"))?;
        let file = args.out.join(format!("{name}-{}.json", r.target_kind));
        std::fs::write(&file, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("writing {}", file.display()))?;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{}", report::text(&r));
        }
        reports.push(r);
    }
    let series: Vec<chart::Series> = reports
        .iter()
        .map(|r| chart::Series {
            name: &r.target_kind,
            timeline: &r.summary.timeline,
        })
        .collect();
    let title = format!(
        "loadtest {name}: {}",
        reports
            .iter()
            .map(|r| r.target_kind.as_str())
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    let svg = args.out.join(format!("{name}.svg"));
    std::fs::write(&svg, chart::svg(&title, &series))
        .with_context(|| format!("writing {}", svg.display()))?;
    if reports.len() > 1 && !args.json {
        println!("{}", report::comparison(&reports));
    }
    eprintln!(
        "loadtest: reports and chart in {} ({})",
        args.out.display(),
        svg.display()
    );
    let bad: Vec<String> = reports
        .iter()
        .filter(|r| !r.books.ok())
        .map(|r| format!("{}: {}", r.target_kind, r.books.differences.join("; ")))
        .collect();
    if !bad.is_empty() {
        bail!(
            "BOOKS DO NOT MATCH what the tool was told:\n  {}",
            bad.join("\n  ")
        );
    }
    Ok(())
}
