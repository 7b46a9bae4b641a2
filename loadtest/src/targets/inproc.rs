//! The durable engine in this process, on a temporary data directory: every reply still waits
//! for the journal flush that covers it, so the figures include durability, not just memory.

use super::{Books, Outcome};
use crate::plan::{Op, Scale};
use anyhow::{anyhow, bail, Context, Result};
use giftcard_core::*;
use giftcard_shard::scenario::{self, DataSet};
use giftcard_shard::{Engine, EngineConfig, EngineError, Outcome as Reply, Query, QueryAnswer};
use std::sync::{Arc, OnceLock};

/// Issued SKUs come after the supplier-code ones, numbered from here.
const ISSUED_SKU_BASE: u32 = 1_000_000;
const ISSUED_SKUS: u32 = 10;
/// Cards bought per set-up order of issued cards.
const CARDS_PER_SETUP_ORDER: u32 = 100;

/// The engine in-process.
pub struct InProcess {
    engine: Arc<Engine>,
    shards: u16,
    cards: OnceLock<Vec<CodeHash>>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    pub async fn open(shards: u16) -> Result<InProcess> {
        let dir = tempfile::tempdir().context("creating the engine's temporary data directory")?;
        let shards = match shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u16),
            n => n,
        };
        let mut cfg = EngineConfig::new(dir.path(), shards);
        cfg.checkpoint_after_records = u64::MAX;
        let engine = tokio::task::spawn_blocking(move || Engine::open(cfg)).await??;
        Ok(InProcess {
            engine: Arc::new(engine),
            shards,
            cards: OnceLock::new(),
            _dir: dir,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "engine in-process, {} shards, durable journal (fsync per batch)",
            self.shards
        )
    }

    pub async fn setup(&self, scale: &Scale) -> Result<()> {
        let engine = self.engine.clone();
        let scale = scale.clone();
        let cards = tokio::task::spawn_blocking(move || load(&engine, &scale)).await??;
        self.cards
            .set(cards)
            .map_err(|_| anyhow!("set-up ran twice"))?;
        Ok(())
    }

    pub async fn exec(&self, op: &Op) -> Outcome {
        let cmd = match *op {
            Op::Order {
                order_no,
                wallet,
                sku,
                quantity,
            } => Command::PlaceOrder(Box::new(scenario::order(order_no, wallet, sku, quantity))),
            Op::Redeem {
                redemption_no,
                card,
                amount_minor,
            } => {
                let Some(code) = self.card(card) else {
                    return Outcome::Failed("no_cards_loaded".into());
                };
                Command::Redeem {
                    caller: scenario::caller(),
                    redemption_id: RequestId::new(&format!("r-{redemption_no}")),
                    code,
                    amount: Money::new(amount_minor, scenario::usd()),
                    fingerprint: scenario::fingerprint(&amount_minor.to_le_bytes()),
                    brands: None,
                }
            }
            Op::Balance { card } => {
                let Some(hash) = self.card(card) else {
                    return Outcome::Failed("no_cards_loaded".into());
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.engine.query(
                    Query::CardByCode { hash, brands: None },
                    Box::new(move |r| drop(tx.send(r))),
                );
                return match rx.await {
                    Ok(Ok(Reply::Query(QueryAnswer::Missing))) => {
                        Outcome::Rejected("card_not_found".into())
                    }
                    Ok(r) => outcome(r),
                    Err(_) => Outcome::Failed("engine_stopped".into()),
                };
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.engine.submit(cmd, Box::new(move |r| drop(tx.send(r))));
        match rx.await {
            Ok(r) => outcome(r),
            Err(_) => Outcome::Failed("engine_stopped".into()),
        }
    }

    fn card(&self, i: u32) -> Option<CodeHash> {
        let cards = self.cards.get()?;
        cards.get(i as usize % cards.len().max(1)).copied()
    }

    pub async fn lookup(&self, order_no: u64) -> Result<Option<Outcome>> {
        let key = scenario::order(order_no, 0, 0, 1).key;
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.ask(Query::Order { key }))
            .await?
            .map_err(|e| anyhow!("order lookup: {e}"))?
        {
            QueryAnswer::Order(rec) => Ok(Some(match rec.outcome {
                OrderOutcome::Completed { cards, .. } => Outcome::Completed { cards },
                OrderOutcome::Rejected(r) => Outcome::Rejected(r.code().into()),
                // The load tool sets no review threshold: an order waiting is still open.
                OrderOutcome::PendingReview { .. } => return Ok(None),
            })),
            _ => Ok(None),
        }
    }

    pub async fn books(&self) -> Result<Books> {
        let engine = self.engine.clone();
        let report = tokio::task::spawn_blocking(move || engine.reconcile())
            .await?
            .map_err(|e| anyhow!("reconciliation: {e}"))?;
        Ok(Books {
            orders: report.orders as u64,
            cards: report.cards as u64,
            violations: report.violations,
        })
    }
}

fn outcome(r: giftcard_shard::Reply) -> Outcome {
    match r {
        Ok(Reply::Order {
            outcome: OrderOutcome::Completed { cards, .. },
            ..
        }) => Outcome::Completed { cards },
        Ok(Reply::Order {
            outcome: OrderOutcome::Rejected(x),
            ..
        }) => Outcome::Rejected(x.code().into()),
        Ok(_) => Outcome::Completed { cards: 0 },
        Err(EngineError::Rejected(x)) => Outcome::Rejected(x.code().into()),
        Err(EngineError::Overloaded) => Outcome::Shed,
        Err(e) => Outcome::Failed(format!("{e:?}").to_lowercase()),
    }
}

/// Catalog, wallets and pools through the engine's own commands, then issued cards bought with
/// ordinary orders; returns the hashes of those cards' codes.
fn load(engine: &Engine, scale: &Scale) -> Result<Vec<CodeHash>> {
    let ds = DataSet {
        wallets: scale.wallets,
        skus: scale.skus,
        codes_per_sku: scale.codes_per_sku,
        deposit_minor: scale.deposit_minor,
        kind: SkuKind::SupplierCode,
        face_minor: scale.face_minor,
        code_prefix: "lt-".into(),
        hot_skus: 0,
        hot_codes_per_sku: 0,
    };
    scenario::load(engine, &ds).map_err(|e| anyhow!("loading the data set: {e}"))?;
    for sku in 0..scale.hot_skus {
        let extra = scale.codes_of(sku) - scale.codes_per_sku;
        for start in (0..extra).step_by(5_000) {
            let codes: Vec<String> = (start..(start + 5_000).min(extra))
                .map(|c| format!("HOT-{sku:05}-{c:09}"))
                .collect();
            engine
                .upload(scenario::sku_id(sku), None, &codes)
                .map_err(|e| anyhow!("restocking hot sku {sku}: {e}"))?;
        }
    }
    if scale.cards == 0 {
        return Ok(Vec::new());
    }
    for i in 0..ISSUED_SKUS {
        let sku = scenario::sku(ISSUED_SKU_BASE + i, SkuKind::Issued, scale.face_minor);
        engine
            .call(Command::DefineSku(sku))
            .map_err(|e| anyhow!("defining issued sku: {e}"))?;
    }
    let mut hashes = Vec::with_capacity(scale.cards as usize);
    let mut no = 0u64;
    while hashes.len() < scale.cards as usize {
        let wallet = (no % u64::from(scale.wallets.max(1))) as u32;
        let req = scenario::order(
            u64::MAX - no,
            wallet,
            ISSUED_SKU_BASE + (no as u32 % ISSUED_SKUS),
            CARDS_PER_SETUP_ORDER,
        );
        no += 1;
        let Reply::Order {
            outcome: OrderOutcome::Completed {
                first_card, cards, ..
            },
            ..
        } = engine
            .call(Command::PlaceOrder(Box::new(req)))
            .map_err(|e| anyhow!("buying issued cards: {e}"))?
        else {
            bail!("a set-up order of issued cards was rejected");
        };
        let QueryAnswer::Cards(cs) = engine
            .ask(Query::Cards {
                first: first_card,
                count: cards,
            })
            .map_err(|e| anyhow!("{e}"))?
        else {
            bail!("the engine did not list the cards it just issued");
        };
        for (i, c) in cs.iter().enumerate() {
            let id = giftcard_core::CardId(first_card.0 + i as u64);
            hashes.push(
                engine.vault().hash(
                    &engine
                        .reveal(id, c)
                        .map_err(|e| anyhow!("revealing a card: {e}"))?,
                ),
            );
        }
    }
    hashes.truncate(scale.cards as usize);
    Ok(hashes)
}
