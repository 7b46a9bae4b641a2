//! Placement: which shard owns what. The hash must never change: data written under one
//! placement is replayed under the same one.
//!
//! - a wallet lives on `shard_for(wallet_id)`;
//! - an order's *home* is `shard_for(client, order_id)` (it records the idempotency claim) and
//!   the order executes on its wallet's shard;
//! - an issued card lives on its buyer's wallet shard, and its code's keyed hash places it there;
//! - a redemption's *home* is `shard_for(client, redemption_id)` (its claim) and it executes on
//!   the card's shard.

use crate::{OrderKey, ShardId, WalletId};

/// The fixed hash that places a key on a shard (64-bit FNV-1a).
pub fn shard_for(key: &[u8], shard_count: u16) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ShardId((h % u64::from(shard_count.max(1))) as u16)
}

/// The shard a wallet lives on, by its client's own part of the id (the whole id for wallets
/// created before namespaces: they stay where they were).
pub fn wallet_shard(wallet: &WalletId, shard_count: u16) -> ShardId {
    shard_for(wallet.local().as_bytes(), shard_count)
}

/// The home shard of an order key (`client`, a zero byte, `order_id`).
pub fn order_home(key: &OrderKey, shard_count: u16) -> ShardId {
    let client = key.client.as_str().as_bytes();
    let order = key.order_id.as_str().as_bytes();
    let mut buf = Vec::with_capacity(client.len() + 1 + order.len());
    buf.extend_from_slice(client);
    buf.push(0);
    buf.extend_from_slice(order);
    shard_for(&buf, shard_count)
}

/// The home shard of a redemption id (`client`, a zero byte, `redemption_id`), where it is
/// claimed before the card's shard acts.
pub fn redemption_home(
    client: &crate::ClientId,
    id: &crate::RequestId,
    shard_count: u16,
) -> ShardId {
    let (client, id) = (client.as_str().as_bytes(), id.as_str().as_bytes());
    let mut buf = Vec::with_capacity(client.len() + 1 + id.len());
    buf.extend_from_slice(client);
    buf.push(0);
    buf.extend_from_slice(id);
    shard_for(&buf, shard_count)
}

/// The shard a command goes to first, for `n` shards. Reversals and settlement closes are asked
/// of every shard by the engine; this names shard 0 for them.
pub fn route(cmd: &crate::Command, n: u16) -> ShardId {
    use crate::Command;
    match cmd {
        Command::DefineSku(_)
        | Command::CreateSku(_)
        | Command::ChangeSku { .. }
        | Command::SetFx(_)
        | Command::SetPriceList { .. }
        | Command::SetPricing { .. }
        | Command::SetMarginFloors(_)
        | Command::SetFees(_)
        | Command::SetCommissionTiers { .. }
        | Command::SetSourcing { .. }
        | Command::SetExpiryPolicy { .. }
        | Command::BookCommissions { .. }
        | Command::AddCodes { .. } => ShardId(0),
        Command::CreateWallet { wallet, .. }
        | Command::Deposit { wallet, .. }
        | Command::SetWalletFrozen { wallet, .. }
        | Command::SetWalletLimits { wallet, .. }
        | Command::SetKyc { wallet, .. } => wallet_shard(wallet, n),
        Command::QuoteFx { request, .. } => wallet_shard(&request.wallet, n),
        Command::PlaceOrder(req) => order_home(&req.key, n),
        Command::ClaimOrder { key, .. }
        | Command::AbortOrder { key, .. }
        | Command::SettleReview { key, .. } => order_home(key, n),
        Command::Redeem {
            caller,
            redemption_id,
            ..
        } => redemption_home(&caller.client, redemption_id, n),
        Command::ReportDelivery { card, .. }
        | Command::SetCardFrozen { card, .. }
        | Command::CancelCard { card, .. }
        | Command::ResendCard { card, .. } => {
            if card.shard().0 < n {
                card.shard()
            } else {
                ShardId(0)
            }
        }
        Command::ReleaseRedemptionClaim {
            client,
            redemption_id,
            ..
        } => redemption_home(client, redemption_id, n),
        Command::ResealCodes { cards } => match cards.first() {
            Some((card, _)) if card.shard().0 < n => card.shard(),
            _ => ShardId(0),
        },
        Command::LendStock { .. }
        | Command::ReceiveStock { .. }
        | Command::ReverseRedemption { .. }
        | Command::CloseSettlement { .. }
        // Each shard ticks itself; an engine caller never routes one.
        | Command::Tick => ShardId(0),
    }
}
