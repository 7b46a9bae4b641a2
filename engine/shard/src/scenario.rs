//! Building blocks for data sets and workloads, shared by the `giftcard bench` command, the
//! criterion benches, the tests and the load generator: a catalog, funded wallets, code pools,
//! and orders, all derived from small integers so that runs are reproducible.

use crate::{Engine, EngineError, Outcome, Reply};
use crossbeam_channel::bounded;
use giftcard_core::*;
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// US dollars.
pub fn usd() -> Currency {
    Currency::parse("USD").unwrap_or_else(|| unreachable!("USD is in the table"))
}

/// The client every scenario order comes from.
pub fn client() -> ClientId {
    ClientId::new("checkout-1")
}

/// An admin caller acting for the scenario client.
pub fn caller() -> Caller {
    Caller {
        client: client(),
        admin: false,
    }
}

/// The id of the i-th scenario SKU.
pub fn sku_id(i: u32) -> SkuId {
    SkuId::new(&format!("sku-{i}"))
}

/// The id of the i-th scenario wallet.
pub fn wallet_id(i: u32) -> WalletId {
    WalletId::new(&format!("w-{i}"))
}

/// A fixed-denomination SKU of face `face_minor` USD.
pub fn sku(i: u32, kind: SkuKind, face_minor: i64) -> Sku {
    Sku {
        id: sku_id(i),
        brand: format!("brand-{}", i % 50),
        category: "retail".into(),
        kind,
        denomination: Denomination::Fixed(face_minor),
        currency: usd(),
        wholesale_discount: Decimal::new(15, 2),
        markup: Decimal::ZERO,
        supplier: SupplierId::new(&format!("supplier-{}", i % 10)),
        regions: Vec::new(),
        status: SkuStatus::Active,
        issue_cap: None,
    }
}

/// A digest of arbitrary request bytes (the adapters hash their canonical body the same way).
pub fn fingerprint(bytes: &[u8]) -> Fingerprint {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    out
}

/// An order of `qty` cards of one SKU.
pub fn order(order_no: u64, wallet: u32, sku: u32, qty: u32) -> OrderRequest {
    order_with(
        order_no,
        wallet_id(wallet),
        sku_id(sku),
        wallet,
        sku,
        qty,
        client(),
    )
}

/// Ids built once and shared by every order of a run, so a load generator spends its time on
/// the engine rather than on formatting ids.
pub struct IdCache {
    pub wallets: Vec<WalletId>,
    pub skus: Vec<SkuId>,
    pub client: ClientId,
}

impl IdCache {
    /// Ids of the first `wallets` wallets and `skus` SKUs.
    pub fn new(wallets: u32, skus: u32) -> IdCache {
        IdCache {
            wallets: (0..wallets).map(wallet_id).collect(),
            skus: (0..skus).map(sku_id).collect(),
            client: client(),
        }
    }

    /// The same order as [`order`], from cached ids.
    pub fn order(&self, order_no: u64, wallet: u32, sku: u32, qty: u32) -> OrderRequest {
        let (w, s) = (
            self.wallets[wallet as usize].clone(),
            self.skus[sku as usize].clone(),
        );
        order_with(order_no, w, s, wallet, sku, qty, self.client.clone())
    }
}

fn order_with(
    order_no: u64,
    wallet_id: WalletId,
    sku_id: SkuId,
    wallet: u32,
    sku: u32,
    qty: u32,
    client: ClientId,
) -> OrderRequest {
    let order_id = OrderId::new(&order_number(order_no));
    let mut fp_src = [0u8; 16];
    fp_src[..4].copy_from_slice(&wallet.to_le_bytes());
    fp_src[4..8].copy_from_slice(&sku.to_le_bytes());
    fp_src[8..12].copy_from_slice(&qty.to_le_bytes());
    OrderRequest {
        key: OrderKey { client, order_id },
        admin: false,
        wallet: wallet_id,
        items: vec![OrderItem {
            sku: sku_id,
            quantity: qty,
            amount_minor: None,
        }],
        region: "US".into(),
        pay_currency: None,
        fx_quote: None,
        channel: DeliveryChannel::None,
        recipient: String::new(),
        fingerprint: fp_src,
        fresh_codes: Vec::new(),
        fulfilment: Default::default(),
        stock_final: false,
    }
}

fn order_number(n: u64) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(24);
    let _ = write!(s, "o-{n}");
    s
}

/// Size of a data set.
#[derive(Clone, Debug)]
pub struct DataSet {
    pub wallets: u32,
    pub skus: u32,
    pub codes_per_sku: u64,
    pub deposit_minor: i64,
    pub kind: SkuKind,
    pub face_minor: i64,
    /// Distinguishes the codes of repeated loads into the same data directory.
    pub code_prefix: String,
    /// The first `hot_skus` SKUs get `hot_codes_per_sku` codes instead (a hot-SKU workload).
    pub hot_skus: u32,
    pub hot_codes_per_sku: u64,
}

/// Submits many commands with a bounded number in flight, and fails on the first error other
/// than `tolerate` (so a load into an existing data directory can skip what is already there).
pub fn submit_all(
    engine: &Engine,
    cmds: impl Iterator<Item = Command>,
    window: usize,
) -> Result<(), EngineError> {
    submit_tolerant(engine, cmds, window, None)
}

fn submit_tolerant(
    engine: &Engine,
    cmds: impl Iterator<Item = Command>,
    window: usize,
    tolerate: Option<Rejection>,
) -> Result<(), EngineError> {
    let check = |r: Reply| match r {
        Err(EngineError::Rejected(x)) if Some(x) == tolerate => Ok(()),
        other => other.map(drop),
    };
    let (tx, rx) = bounded::<Reply>(window);
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut sent = 0usize;
    let mut done = 0usize;
    for cmd in cmds {
        while sent - done >= window {
            check(rx.recv().map_err(|_| EngineError::Stopping)?)?;
            done += 1;
        }
        let tx = tx.clone();
        inflight.fetch_add(1, Ordering::Relaxed);
        engine.submit(cmd, Box::new(move |r| drop(tx.send(r))));
        sent += 1;
    }
    while done < sent {
        check(rx.recv().map_err(|_| EngineError::Stopping)?)?;
        done += 1;
    }
    Ok(())
}

/// Defines the catalog, funds the wallets and fills the pools.
pub fn load(engine: &Engine, ds: &DataSet) -> Result<(), EngineError> {
    for i in 0..ds.skus {
        ok(engine.call(Command::DefineSku(sku(i, ds.kind, ds.face_minor))))?;
    }
    let creates = (0..ds.wallets).map(|i| Command::CreateWallet {
        caller: caller(),
        wallet: wallet_id(i),
        kyc_verified: false,
    });
    submit_tolerant(engine, creates, 4096, Some(Rejection::WalletExists))?;
    let deposits = (0..ds.wallets).map(|i| Command::Deposit {
        caller: caller(),
        wallet: wallet_id(i),
        deposit_id: RequestId::new("initial"),
        amount: Money::new(ds.deposit_minor, usd()),
        reference: "bench".into(),
        fingerprint: fingerprint(&i.to_le_bytes()),
    });
    submit_all(engine, deposits, 4096)?;
    if ds.kind == SkuKind::SupplierCode && ds.codes_per_sku > 0 {
        let chunk = 5_000u64;
        for i in 0..ds.skus {
            let pool = if i < ds.hot_skus {
                ds.hot_codes_per_sku
            } else {
                ds.codes_per_sku
            };
            let mut start = 0;
            while start < pool {
                let end = (start + chunk).min(pool);
                let codes: Vec<String> = (start..end)
                    .map(|c| format!("CODE-{}{i:05}-{c:09}", ds.code_prefix))
                    .collect();
                ok(engine.upload(sku_id(i), None, &codes))?;
                start = end;
            }
        }
    }
    Ok(())
}

fn ok(r: Reply) -> Result<Outcome, EngineError> {
    r
}
