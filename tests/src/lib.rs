//! Shared helpers for the integration tests.

use giftcard_core::*;
use giftcard_shard::scenario::{caller, fingerprint, usd};
use giftcard_shard::{Engine, EngineConfig, EngineError, Outcome, Query, QueryAnswer};
use std::path::Path;

/// Opens an engine on `dir` with `shards` shards and small mailboxes.
pub fn open(dir: &Path, shards: u16) -> Engine {
    Engine::open(EngineConfig::new(dir, shards)).expect("engine opens")
}

/// Creates and funds a wallet of the scenario client.
pub fn funded_wallet(engine: &Engine, id: &str, minor: i64) {
    engine
        .call(Command::CreateWallet {
            caller: caller(),
            wallet: WalletId::new(id),
            kyc_verified: false,
        })
        .expect("wallet");
    engine
        .call(Command::Deposit {
            caller: caller(),
            wallet: WalletId::new(id),
            deposit_id: RequestId::new("d1"),
            amount: Money::new(minor, usd()),
            reference: "test".into(),
            fingerprint: fingerprint(id.as_bytes()),
        })
        .expect("deposit");
}

/// Places an order and returns its outcome.
pub fn place(
    engine: &Engine,
    order_id: &str,
    wallet: &str,
    sku: &str,
    qty: u32,
) -> Result<(OrderOutcome, bool), EngineError> {
    // The scenario's single-line order, with this test's ids and a body-derived fingerprint.
    let mut req = giftcard_shard::scenario::order(0, 0, 0, qty);
    req.key.order_id = OrderId::new(order_id);
    req.wallet = WalletId::new(wallet);
    req.items[0].sku = SkuId::new(sku);
    req.fingerprint = fingerprint(format!("{wallet}/{sku}/{qty}").as_bytes());
    match engine.call(Command::PlaceOrder(Box::new(req)))? {
        Outcome::Order {
            outcome, replayed, ..
        } => Ok((outcome, replayed)),
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// The USD balance (available, held) of a wallet.
pub fn balance(engine: &Engine, wallet: &str) -> (i64, i64) {
    match engine
        .ask(Query::Wallet {
            caller: caller(),
            wallet: WalletId::new(wallet),
        })
        .expect("wallet query")
    {
        QueryAnswer::Wallet(w) => {
            let b = w.balance(usd());
            (b.available_minor, b.held_minor)
        }
        other => panic!("unexpected answer {other:?}"),
    }
}

/// Decodes every shard's state bytes and runs the invariant checker.
pub fn check_invariants(engine: &Engine) -> giftcard_shard::verify::Report {
    let states: Vec<giftcard_core::state::ShardState> = engine
        .state_bytes()
        .expect("states")
        .iter()
        .map(|b| bincode_decode(b))
        .collect();
    giftcard_shard::verify::check(&states, 0)
}

fn bincode_decode(b: &[u8]) -> giftcard_core::state::ShardState {
    giftcard_shard::codec_state(b).expect("state decodes")
}
