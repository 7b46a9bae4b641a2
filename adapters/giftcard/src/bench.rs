//! `giftcard bench`: the durable engine in-process on a temporary data directory, driven by one
//! submitting thread with a bounded window of orders in flight (closed loop), or at a fixed
//! arrival rate (open loop, latency measured from each order's intended send time, so a stall
//! is charged to every order it delayed). Latency is recorded in an HdrHistogram.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use giftcard_core::*;
use giftcard_shard::scenario::{self, DataSet};
use giftcard_shard::{Engine, EngineConfig, EngineError, Outcome, Query, QueryAnswer};
use hdrhistogram::Histogram;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Scenario {
    /// One card per order, wallets and SKUs uniform at random.
    Uniform,
    /// 90% of orders on 10 SKUs.
    HotSku,
    /// 1,000 cards per order.
    Bulk,
    /// Partial redemptions of issued cards by code.
    Redeem,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "uniform")]
    scenario: Scenario,
    /// Orders (or redemptions) to run.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Shards; 0 means one per core.
    #[arg(long, default_value_t = 0)]
    shards: u16,
    #[arg(long, default_value_t = 100_000)]
    wallets: u32,
    #[arg(long, default_value_t = 1_000)]
    skus: u32,
    /// Codes to load per SKU; 0 sizes the pools from the workload.
    #[arg(long, default_value_t = 0)]
    codes_per_sku: u64,
    /// Orders per second to offer (open loop); 0 runs closed loop at full speed.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Orders in flight in closed loop.
    #[arg(long, default_value_t = 20_000)]
    window: u64,
    /// Also stop the engine and time recovery of the data directory.
    #[arg(long)]
    recovery: bool,
    /// Keep the data directory here instead of a temporary one.
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print `ack <order-number> <outcome>` for every acknowledged order, as it is acknowledged
    /// (the crash tests read this to know what must survive a kill).
    #[arg(long)]
    ack_log: bool,
    /// Number the orders from here and name the codes after it, so repeated runs into one data
    /// directory use fresh order ids and codes.
    #[arg(long, default_value_t = 0)]
    order_offset: u64,
    #[arg(long)]
    json: bool,
    /// Every pricing rule on (issue 14): the client has a price list (a brand discount and a
    /// SKU tier), the brand a margin floor, euro orders a fee, suppliers commission tiers,
    /// every SKU three suppliers (two cheaper ones with a third of the codes each, sold first),
    /// and every order pays in euros at a locked FX quote of its wallet.
    #[arg(long)]
    rules: bool,
    /// Every limit on (issue 15), set so that none trips but all are evaluated: per-currency
    /// velocity (orders and amount an hour), single-order maxima, daily caps per SKU and per
    /// brand, and a KYC threshold the unverified wallets' daily totals are checked against;
    /// and risk scoring with every rule (one holds for a wallet's orders after its 40th), a
    /// review threshold no score reaches, and (with `--issued`) an expiry policy on every SKU,
    /// so every card sold gets its expiry deadline.
    #[arg(long)]
    risk: bool,
    /// Orders buy issued cards (a code drawn, hashed and sealed per card, stored value owed
    /// and tracked by the liability report) instead of suppliers' codes.
    #[arg(long)]
    issued: bool,
}

struct Tally {
    hist: Mutex<Histogram<u64>>,
    completed: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    cards: AtomicU64,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let shards = match args.shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u16),
        n => n,
    };
    let mut cfg = EngineConfig::new(&dir, shards);
    cfg.checkpoint_after_records = u64::MAX;
    if args.risk {
        cfg.risk = std::sync::Arc::new(risk_policy());
        cfg.scoring = std::sync::Arc::new(scoring());
    }
    let engine = Engine::open(cfg.clone())?;
    let setup_started = Instant::now();
    let per_order = if args.scenario == Scenario::Bulk {
        1_000
    } else {
        1
    };
    let ds = dataset(&args, per_order);
    // Under --rules every SKU has three suppliers, each with a third of the same codes: the
    // store holds as many codes as without, so the two runs compare like with like.
    let mut own = ds.clone();
    if args.rules && ds.kind == SkuKind::SupplierCode {
        own.codes_per_sku = ds.codes_per_sku.div_ceil(3);
        own.hot_codes_per_sku = ds.hot_codes_per_sku.div_ceil(3);
    }
    scenario::load(&engine, &own).map_err(|e| anyhow::anyhow!("loading the data set: {e}"))?;
    let codes = if args.scenario == Scenario::Redeem {
        redeem_setup(&engine, &args)?
    } else {
        Vec::new()
    };
    if args.rules {
        rules_setup(&engine, &ds)?;
    }
    if args.risk && ds.kind == SkuKind::Issued {
        for i in 0..ds.skus {
            engine
                .call(Command::SetExpiryPolicy {
                    sku: scenario::sku_id(i),
                    policy: giftcard_core::expiry::ExpiryPolicy::DaysAfterIssue(365),
                })
                .map_err(|e| anyhow::anyhow!("expiry policy: {e}"))?;
        }
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    if args.ack_log {
        println!("ready");
    }
    eprintln!(
        "set-up done in {setup_secs:.1}s; running {} orders",
        args.orders
    );
    let rss_after_setup = rss_mib();

    let tally = Arc::new(Tally {
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        completed: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        cards: AtomicU64::new(0),
    });
    let syncs_before = engine.syncs();
    let started = Instant::now();
    drive(&engine, &args, &ds, &codes, &tally)?;
    let secs = started.elapsed().as_secs_f64();
    let syncs = engine.syncs() - syncs_before;
    let rss = rss_mib();
    let mut recovery = None;
    if args.recovery {
        drop(engine);
        let reopened = Engine::open(cfg)?;
        recovery = Some((
            reopened.recovery.duration.as_secs_f64(),
            reopened.recovery.records_replayed,
        ));
    }
    report(
        &args,
        shards,
        &tally,
        secs,
        setup_secs,
        syncs,
        rss_after_setup,
        rss,
        recovery,
    )
}

fn dataset(args: &BenchArgs, per_order: u64) -> DataSet {
    let kind = if args.scenario == Scenario::Redeem || args.issued {
        SkuKind::Issued
    } else {
        SkuKind::SupplierCode
    };
    let codes = if args.codes_per_sku > 0 {
        args.codes_per_sku
    } else if kind == SkuKind::Issued {
        0
    } else {
        let cards = args.orders * per_order;
        let share = match args.scenario {
            // The cold SKUs share the 10% of orders not on the 10 hot ones.
            Scenario::HotSku => cards / 10 / u64::from(args.skus.saturating_sub(10).max(1)),
            _ => cards / u64::from(args.skus.max(1)),
        };
        share + share / 5 + 16
    };
    // Each hot SKU takes 9% of all orders.
    let hot = args.scenario == Scenario::HotSku && args.codes_per_sku == 0;
    let hot_codes = args.orders * per_order * 9 / 100;
    DataSet {
        wallets: args.wallets,
        skus: args.skus,
        codes_per_sku: codes,
        deposit_minor: 1_000_000_000_000,
        kind,
        face_minor: 2_500,
        code_prefix: format!("{}-", args.order_offset),
        hot_skus: if hot { 10 } else { 0 },
        hot_codes_per_sku: hot_codes + hot_codes / 5 + 16,
    }
}

fn eur() -> giftcard_core::Currency {
    giftcard_core::Currency::parse("EUR").unwrap_or_else(|| unreachable!("EUR is in the table"))
}

/// `--risk`: limits in every currency the bench pays in, high enough that none trips.
fn risk_policy() -> giftcard_core::limits::RiskPolicy {
    use giftcard_core::limits::{LimitSet, RiskPolicy, Velocity};
    let currencies: Vec<Currency> = ["EUR", "USD"]
        .iter()
        .filter_map(|c| Currency::parse(c))
        .collect();
    let max = giftcard_core::AMOUNT_MINOR_MAX;
    RiskPolicy {
        limits: LimitSet {
            order_max: currencies.iter().map(|c| (*c, max)).collect(),
            velocity: currencies
                .iter()
                .map(|c| Velocity {
                    currency: *c,
                    window_ms: 3_600_000,
                    max_orders: Some(u32::MAX),
                    max_amount_minor: Some(max),
                })
                .collect(),
            sku_daily_cards: Some(u32::MAX),
            brand_daily_cards: Some(u32::MAX),
        },
        kyc_threshold_minor: currencies.iter().map(|c| (*c, max)).collect(),
        kyc_review: false,
        review_ttl_ms: 0,
    }
}

/// Risk scoring under `--risk`: every rule evaluated on every order (the bench's orders name
/// no recipient, so `shared_recipient` stops at that). Only velocity holds, for a
/// wallet's orders after its 40th in the hour (in `uniform`, about the last fifth of them), so
/// those journal a score; none is refused.
fn scoring() -> giftcard_core::risk::Scoring {
    use giftcard_core::risk::{RiskRule, Scoring, WeightedRule};
    let usd = Currency::parse("USD").unwrap_or_else(|| unreachable!());
    let w = |rule, weight| WeightedRule { rule, weight };
    Scoring {
        rules: vec![
            w(
                RiskRule::Velocity {
                    window_ms: 3_600_000,
                    orders: 40,
                },
                10,
            ),
            w(RiskRule::FundedRecently { age_ms: 1 }, 10),
            w(
                RiskRule::AmountOverHistory {
                    percent: 1_000_000,
                    min_orders: 1,
                },
                10,
            ),
            w(
                RiskRule::NewRecipient {
                    currency: usd,
                    min_amount_minor: giftcard_core::AMOUNT_MINOR_MAX,
                },
                10,
            ),
            w(
                RiskRule::SharedRecipient {
                    window_ms: 3_600_000,
                    wallets: 64,
                },
                10,
            ),
            // An hour's sales of the order's SKU, read on every order; never that many.
            w(
                RiskRule::HotSku {
                    window_ms: 3_600_000,
                    cards: u32::MAX,
                },
                10,
            ),
        ],
        reject_above: None,
        // Compared on every scored order; no score reaches it (the six weights sum to 60).
        review_above: Some(1_000),
    }
}

/// The quote id each wallet's orders name under `--rules`.
fn quote_id(wallet: u32) -> RequestId {
    RequestId::new(&format!("q-{wallet}"))
}

/// `--rules`: an FX table, a price list for the bench's client (1% off the SKUs' brand, 2%
/// off SKU 0 from two cards), euros in every wallet, and a quote per wallet held for the
/// longest a quote may be (the run is shorter).
fn rules_setup(engine: &Engine, ds: &DataSet) -> Result<()> {
    use giftcard_core::pricelists::{PriceEntry, PriceList, PriceTarget};
    let mut fx = giftcard_core::catalog::FxTable {
        spread: rust_decimal::Decimal::new(1, 2),
        ..Default::default()
    };
    fx.mid
        .insert((scenario::usd(), eur()), rust_decimal::Decimal::new(92, 2));
    let fail = |what: &'static str| move |e: EngineError| anyhow::anyhow!("{what}: {e}");
    engine.call(Command::SetFx(fx)).map_err(fail("FX table"))?;
    let brand = scenario::sku(0, ds.kind, ds.face_minor).brand;
    let list = PriceList {
        entries: vec![
            PriceEntry {
                target: PriceTarget::Brand(brand),
                min_quantity: 1,
                discount: rust_decimal::Decimal::new(1, 2),
            },
            PriceEntry {
                target: PriceTarget::Sku(scenario::sku_id(0)),
                min_quantity: 2,
                discount: rust_decimal::Decimal::new(2, 2),
            },
        ],
    };
    engine
        .call(Command::SetPriceList {
            client: scenario::caller().client,
            list,
        })
        .map_err(fail("price list"))?;
    let deposits = (0..ds.wallets).map(|i| Command::Deposit {
        caller: scenario::caller(),
        wallet: scenario::wallet_id(i),
        deposit_id: RequestId::new("eur"),
        amount: Money::new(ds.deposit_minor, eur()),
        reference: "bench".into(),
        fingerprint: scenario::fingerprint(&i.to_le_bytes()),
    });
    scenario::submit_all(engine, deposits, 4096).map_err(fail("euro deposits"))?;
    let quotes = (0..ds.wallets).map(|i| Command::QuoteFx {
        caller: scenario::caller(),
        request: giftcard_core::quotes::QuoteRequest {
            wallet: scenario::wallet_id(i),
            quote_id: quote_id(i),
            from: scenario::usd(),
            to: eur(),
            ttl_ms: giftcard_core::quotes::QUOTE_TTL_MAX_MS,
            fingerprint: [0; 16],
        },
    });
    scenario::submit_all(engine, quotes, 4096).map_err(fail("quotes"))?;
    let mut floors = giftcard_core::floors::MarginFloors::default();
    floors.by_brand.insert(
        scenario::sku(0, ds.kind, ds.face_minor).brand,
        rust_decimal::Decimal::new(1, 2),
    );
    engine
        .call(Command::SetMarginFloors(floors))
        .map_err(fail("margin floors"))?;
    let mut fees = giftcard_core::fees::FeeSchedule::default();
    fees.by_currency.insert(
        eur(),
        giftcard_core::fees::Fees {
            order_minor: 30,
            ..Default::default()
        },
    );
    engine.call(Command::SetFees(fees)).map_err(fail("fees"))?;
    if ds.kind == giftcard_core::SkuKind::SupplierCode {
        three_suppliers(engine, ds)?;
    }
    Ok(())
}

/// Two more suppliers behind every SKU, cheaper than its own, each with a third of its codes
/// (the SKU's own supplier has the last third): the cheapest is sold first, so orders fail over
/// between pools as they run dry. And commission tiers for all three (booked at a settlement
/// close, never per order).
fn three_suppliers(engine: &Engine, ds: &DataSet) -> Result<()> {
    use giftcard_core::sourcing::{Offer, Sourcing};
    let fail = |what: &'static str| move |e: EngineError| anyhow::anyhow!("{what}: {e}");
    let offers = [("bench-b", 16), ("bench-c", 17)];
    let mut tiers = giftcard_core::commissions::CommissionTiers::default();
    tiers.by_currency.insert(
        scenario::usd(),
        vec![
            giftcard_core::commissions::Tier {
                from_minor: 0,
                rate: rust_decimal::Decimal::new(1, 2),
            },
            giftcard_core::commissions::Tier {
                from_minor: 100_000_000,
                rate: rust_decimal::Decimal::new(2, 2),
            },
        ],
    );
    let own = (0..ds.skus.min(10)).map(|i| scenario::sku(i, ds.kind, ds.face_minor).supplier);
    for supplier in offers.iter().map(|(s, _)| SupplierId::new(s)).chain(own) {
        engine
            .call(Command::SetCommissionTiers {
                supplier,
                tiers: tiers.clone(),
            })
            .map_err(fail("commission tiers"))?;
    }
    for i in 0..ds.skus {
        let sourcing = Sourcing {
            offers: offers
                .iter()
                .map(|(s, d)| Offer {
                    supplier: SupplierId::new(s),
                    wholesale_discount: rust_decimal::Decimal::new(*d, 2),
                    priority: 0,
                })
                .collect(),
            ..Default::default()
        };
        engine
            .call(Command::SetSourcing {
                sku: scenario::sku_id(i),
                sourcing,
            })
            .map_err(fail("sourcing"))?;
        let third = if i < ds.hot_skus {
            ds.hot_codes_per_sku
        } else {
            ds.codes_per_sku
        }
        .div_ceil(3);
        for (s, _) in offers {
            let mut start = 0;
            while start < third {
                let end = (start + 5_000).min(third);
                let codes: Vec<String> = (start..end)
                    .map(|c| format!("{s}-{}{i:05}-{c:09}", ds.code_prefix))
                    .collect();
                engine
                    .upload(scenario::sku_id(i), Some(SupplierId::new(s)), &codes)
                    .map_err(fail("offer codes"))?;
                start = end;
            }
        }
    }
    Ok(())
}

/// Buys issued cards for the redeem scenario and returns their code hashes.
fn redeem_setup(engine: &Engine, args: &BenchArgs) -> Result<Vec<CodeHash>> {
    let cards_wanted = 10_000u64.min(args.orders.max(1));
    let mut hashes = Vec::new();
    let mut no = 0u64;
    while (hashes.len() as u64) < cards_wanted {
        let req = scenario::order(
            u64::MAX - no,
            (no % u64::from(args.wallets)) as u32,
            (no % u64::from(args.skus)) as u32,
            100,
        );
        no += 1;
        let Outcome::Order {
            outcome: OrderOutcome::Completed {
                first_card, cards, ..
            },
            ..
        } = engine
            .call(Command::PlaceOrder(Box::new(req)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
        else {
            bail!("setup order was not completed");
        };
        let QueryAnswer::Cards(cs) = engine
            .ask(Query::Cards {
                first: first_card,
                count: cards,
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?
        else {
            bail!("cards query failed");
        };
        for (i, c) in cs.iter().enumerate() {
            let id = CardId(first_card.0 + i as u64);
            hashes.push(
                engine
                    .vault()
                    .hash(&engine.reveal(id, c).map_err(|e| anyhow::anyhow!("{e}"))?),
            );
        }
    }
    Ok(hashes)
}

fn command(
    args: &BenchArgs,
    ds: &DataSet,
    ids: &scenario::IdCache,
    codes: &[CodeHash],
    i: u64,
    rng: &mut StdRng,
) -> Command {
    match args.scenario {
        Scenario::Redeem => Command::Redeem {
            caller: scenario::caller(),
            redemption_id: RequestId::new(&format!("r-{i}")),
            code: codes[rng.gen_range(0..codes.len())],
            amount: Money::new(1, scenario::usd()),
            fingerprint: [0; 16],
            brands: None,
        },
        _ => {
            let wallet = rng.gen_range(0..ds.wallets);
            let sku = match args.scenario {
                Scenario::HotSku if rng.gen_range(0..10) < 9 => rng.gen_range(0..10.min(ds.skus)),
                _ => rng.gen_range(0..ds.skus),
            };
            let qty = match args.scenario {
                Scenario::Bulk => 1_000,
                // The crash runs mix in multi-card orders, which borrow stock across shards.
                _ if args.ack_log => rng.gen_range(1..=3),
                _ => 1,
            };
            let mut order = ids.order(args.order_offset + i, wallet, sku, qty);
            if args.rules {
                order.pay_currency = Some(eur());
                order.fx_quote = Some(quote_id(wallet));
            }
            Command::PlaceOrder(Box::new(order))
        }
    }
}

fn drive(
    engine: &Engine,
    args: &BenchArgs,
    ds: &DataSet,
    codes: &[CodeHash],
    tally: &Arc<Tally>,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let sent = AtomicU64::new(0);
    let start = Instant::now();
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let ids = scenario::IdCache::new(ds.wallets, ds.skus);
    for i in 0..args.orders {
        let cmd = command(args, ds, &ids, codes, i, &mut rng);
        let intended = match interval {
            Some(iv) => {
                // Sleep, not spin: on a small machine a spinning generator takes a core from
                // the engine it measures. Orders whose time passed during a sleep go out at once,
                // and latency counts from the intended time, so the generator's lateness is
                // charged to the engine, never hidden.
                let at = start + iv.mul_f64(i as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                at
            }
            None => {
                while sent.load(Ordering::Relaxed) - done(tally) >= args.window {
                    std::thread::yield_now();
                }
                Instant::now()
            }
        };
        let t = tally.clone();
        sent.fetch_add(1, Ordering::Relaxed);
        let ack = args.ack_log.then_some(args.order_offset + i);
        engine.submit(
            cmd,
            Box::new(move |r| {
                if let Some(no) = ack {
                    log_ack(no, &r);
                }
                record(&t, intended, r)
            }),
        );
    }
    while done(tally) < args.orders {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn log_ack(no: u64, r: &giftcard_shard::Reply) {
    match r {
        Ok(Outcome::Order {
            outcome:
                OrderOutcome::Completed {
                    first_card,
                    cards,
                    charged,
                },
            ..
        }) => {
            println!(
                "ack {no} completed {} {cards} {}",
                first_card.0,
                charged.minor()
            )
        }
        Ok(Outcome::Order {
            outcome: OrderOutcome::Rejected(r),
            ..
        }) => println!("ack {no} rejected {}", r.code()),
        _ => {}
    }
}

fn done(t: &Tally) -> u64 {
    t.completed.load(Ordering::Relaxed)
        + t.rejected.load(Ordering::Relaxed)
        + t.failed.load(Ordering::Relaxed)
}

fn record(t: &Tally, intended: Instant, r: giftcard_shard::Reply) {
    let us = intended.elapsed().as_micros() as u64;
    if let Ok(mut h) = t.hist.lock() {
        let _ = h.record(us.max(1));
    }
    match r {
        Ok(Outcome::Order {
            outcome: OrderOutcome::Completed { cards, .. },
            ..
        }) => {
            t.cards.fetch_add(u64::from(cards), Ordering::Relaxed);
            t.completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Outcome::Order { .. }) => drop(t.rejected.fetch_add(1, Ordering::Relaxed)),
        Ok(Outcome::Moved { events, .. })
            if events.iter().any(|e| matches!(e, Event::Redeemed { .. })) =>
        {
            t.completed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => drop(t.rejected.fetch_add(1, Ordering::Relaxed)),
        Err(_) => drop(t.failed.fetch_add(1, Ordering::Relaxed)),
    }
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &BenchArgs,
    shards: u16,
    t: &Tally,
    secs: f64,
    setup_secs: f64,
    syncs: u64,
    rss_setup: u64,
    rss: u64,
    recovery: Option<(f64, u64)>,
) -> Result<()> {
    let h = t
        .hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?;
    let total = done(t);
    let v = serde_json::json!({
        "scenario": args.scenario.to_possible_value().map(|v| v.get_name().to_owned()),
        "shards": shards,
        "orders": total,
        "completed": t.completed.load(Ordering::Relaxed),
        "rejected": t.rejected.load(Ordering::Relaxed),
        "failed": t.failed.load(Ordering::Relaxed),
        "cards": t.cards.load(Ordering::Relaxed),
        "seconds": secs,
        "orders_per_sec": total as f64 / secs,
        "cards_per_sec": t.cards.load(Ordering::Relaxed) as f64 / secs,
        "offered_rate": args.rate,
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
        "fsyncs": syncs,
        "orders_per_fsync": total as f64 / syncs.max(1) as f64,
        "setup_seconds": setup_secs,
        "rss_mib_after_setup": rss_setup,
        "rss_mib": rss,
        "recovery_seconds": recovery.map(|r| r.0),
        "recovery_records": recovery.map(|r| r.1),
    });
    if args.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v).context("report")?);
    }
    if t.failed.load(Ordering::Relaxed) > 0 {
        bail!("{} orders failed", t.failed.load(Ordering::Relaxed));
    }
    Ok(())
}
