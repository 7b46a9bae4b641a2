//! Where the engine sends what it is given: a command to the shard `placement::route` names (or
//! to every shard, for a reversal and a settlement close), a query to the shard that knows or to
//! all of them, through a bounded mailbox that answers `Overloaded` when full.

use crate::fanout::*;
use crate::runtime::ClientMsg;
use crate::*;
use crossbeam_channel::TrySendError;
use std::sync::atomic::Ordering;

impl Engine {
    /// Where a command goes first.
    pub fn route(&self, cmd: &Command) -> ShardId {
        route(cmd, self.shard_count)
    }

    // The refused message comes back by value so its reply can be answered; boxing it would
    // allocate on the overload path, which is exactly where allocation should be avoided.
    #[allow(clippy::result_large_err)]
    fn send(&self, shard: ShardId, msg: ClientMsg) -> Result<(), (EngineError, ClientMsg)> {
        if self.failed() {
            return Err((EngineError::Storage, msg));
        }
        if self.stopping.load(Ordering::Acquire) {
            return Err((EngineError::Stopping, msg));
        }
        let i = usize::from(shard.0);
        self.depths[i].fetch_add(1, Ordering::Relaxed);
        match self.mailboxes[i].client.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.depths[i].fetch_sub(1, Ordering::Relaxed);
                Err((EngineError::Overloaded, m))
            }
        }
    }

    pub(crate) fn deliver(&self, shard: ShardId, msg: ClientMsg) {
        if let Err((e, msg)) = self.send(shard, msg) {
            match msg {
                ClientMsg::Command(_, to)
                | ClientMsg::Query(_, to)
                | ClientMsg::Upload(_, to)
                | ClientMsg::Reseal(_, to) => to(Err(e)),
            }
        }
    }

    /// Submits a command; `reply` runs once the answer is durable. A reversal, whose shard is not
    /// known from its id, is asked of every shard.
    pub fn submit(&self, cmd: Command, reply: ReplyTo) {
        let fan_out = match cmd {
            Command::ReverseRedemption { .. } => Some(pick_found as fn(Vec<Reply>) -> Reply),
            Command::CloseSettlement { .. } => Some(concat_events as fn(Vec<Reply>) -> Reply),
            _ => None,
        };
        if let Some(combine) = fan_out {
            let fan = FanOut::new(self.shard_count, reply, combine);
            for s in 0..self.shard_count {
                self.deliver(ShardId(s), ClientMsg::Command(cmd.clone(), fan.part()));
            }
            return;
        }
        let shard = self.route(&cmd);
        self.deliver(shard, ClientMsg::Command(cmd, reply));
    }

    /// Asks a query of the shard that knows, or of all shards for totals and orders.
    pub fn query(&self, q: Query, reply: ReplyTo) {
        let n = self.shard_count;
        let one =
            |s: ShardId, q: Query, reply: ReplyTo| self.deliver(s, ClientMsg::Query(q, reply));
        match &q {
            Query::Wallet { wallet, .. }
            | Query::WalletLimits { wallet, .. }
            | Query::WalletHistory { wallet, .. }
            | Query::FxQuote { wallet, .. } => {
                one(giftcard_core::placement::wallet_shard(wallet, n), q, reply)
            }
            Query::Card { card }
            | Query::CardDelivery { card }
            | Query::Cards { first: card, .. } => {
                if card.shard().0 >= n {
                    return reply(Err(EngineError::Rejected(Rejection::CardNotFound)));
                }
                one(card.shard(), q, reply)
            }
            Query::CardByCode { hash, .. } => one(shard_for(hash, n), q, reply),
            Query::Skus
            | Query::Sku { .. }
            | Query::Fx
            | Query::PriceList { .. }
            | Query::Pricing { .. }
            | Query::MarginFloors
            | Query::Fees
            | Query::Sourcing { .. }
            | Query::ExpiryPolicy { .. }
            | Query::CommissionTiers { .. } => one(ShardId(0), q, reply),
            Query::Order { .. }
            | Query::OrderRisk { .. }
            | Query::Redemption { .. }
            | Query::Sale { .. } => {
                let fan = FanOut::new(n, reply, pick_found);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::FailedDeliveries { .. } | Query::RetryingDeliveries { .. } => {
                let fan = FanOut::new(n, reply, merge_card_lists);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Reviews { .. } => {
                let fan = FanOut::new(n, reply, merge_reviews);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Stock { .. } => {
                let fan = FanOut::new(n, reply, merge_stock);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::StockLevels => {
                let fan = FanOut::new(n, reply, merge_stock_levels);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Revenue { .. } => {
                let fan = FanOut::new(n, reply, merge_revenue);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Liability { .. } => {
                let fan = FanOut::new(n, reply, merge_liability);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Totals => {
                let fan = FanOut::new(n, reply, merge_totals);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
        }
    }
}
