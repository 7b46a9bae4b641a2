//! Locked FX quotes: a client asks for the rate at which one of its wallets will pay for cards
//! priced in another currency, and gets it fixed, with its spread, until an expiry. An order
//! that names the quote (`fx_quote`) is converted exactly at it while `now <= expires_at`,
//! whatever the FX table says by then, and refused `QuoteExpired` after. The spread goes to
//! `revenue:fx` like any conversion's.
//!
//! A quote lives on its wallet's shard, where the orders it prices execute, and is kept by the
//! deadline index: [`QUOTE_KEPT_AFTER_EXPIRY_MS`] after its expiry a tick forgets it (from then
//! its id is unknown, and may be asked for afresh). Expiry itself is the decision's `now`
//! against `expires_at`, exact to the millisecond, whenever the tick runs.

use crate::maps::SpreadMap;
use crate::state::{Decision, ShardState};
use crate::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The longest a quote may be asked to hold, in ms (15 minutes).
pub const QUOTE_TTL_MAX_MS: u64 = 15 * 60 * 1000;

/// How long an expired quote is remembered (and answers `quote_expired`) before it is
/// forgotten, in ms (one hour).
pub const QUOTE_KEPT_AFTER_EXPIRY_MS: u64 = 60 * 60 * 1000;

/// A rate fixed for one wallet of one client, one currency pair, until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FxQuote {
    /// The stored id of the wallet that pays.
    pub wallet: WalletId,
    /// The currency the cards are priced in.
    pub from: Currency,
    /// The currency the wallet pays in.
    pub to: Currency,
    /// Units of `to` per unit of `from`, at mid.
    pub mid: Decimal,
    /// Added to the mid rate (0.01 = 1%).
    pub spread: Decimal,
    /// The last instant the quote prices an order (inclusive).
    pub expires_at: UnixMillis,
    /// Of the request that asked for it, to tell a retry from a conflict.
    pub fingerprint: Fingerprint,
}

impl FxQuote {
    /// Whether the quote still prices orders at `now`.
    pub fn live_at(&self, now: UnixMillis) -> bool {
        now <= self.expires_at
    }
}

/// A request for a quote (the parts of `Command::QuoteFx` beyond the caller).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    pub wallet: WalletId,
    pub quote_id: RequestId,
    pub from: Currency,
    pub to: Currency,
    pub ttl_ms: u64,
    pub fingerprint: Fingerprint,
}

/// The quotes kept by one shard, by (client, quote id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FxQuotes {
    pub(crate) quotes: SpreadMap<(ClientId, RequestId), FxQuote>,
}

impl FxQuotes {
    /// A client's quote by its id.
    pub fn get(&self, client: &ClientId, id: &RequestId) -> Option<&FxQuote> {
        self.quotes.get(&(client.clone(), id.clone()))
    }

    pub fn len(&self) -> usize {
        self.quotes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.quotes.is_empty()
    }

    /// Every quote kept, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&(ClientId, RequestId), &FxQuote)> {
        self.quotes.iter()
    }

    /// Fixes the FX table's rate and spread for `req` until `now + ttl_ms`. The same request
    /// again is answered by the quote it made; another under the same id is a conflict.
    pub(crate) fn decide_quote(
        &self,
        st: &ShardState,
        caller: &Caller,
        req: &QuoteRequest,
        now: UnixMillis,
    ) -> Decision {
        if let Some(q) = self.get(&caller.client, &req.quote_id) {
            return if q.fingerprint == req.fingerprint {
                Decision::Answered(vec![])
            } else {
                Decision::Reject(Rejection::IdempotencyConflict)
            };
        }
        let wallet = match st.wallets().owned(caller, &req.wallet) {
            Ok((id, _)) => id,
            Err(r) => return Decision::Reject(r),
        };
        if !(1..=QUOTE_TTL_MAX_MS).contains(&req.ttl_ms) {
            return Decision::Reject(Rejection::LimitExceeded);
        }
        if req.from == req.to {
            return Decision::Reject(Rejection::CurrencyMismatch);
        }
        let fx = st.catalog().fx();
        let Some(mid) = fx.mid_rate(req.from, req.to) else {
            return Decision::Reject(Rejection::FxRateMissing);
        };
        let Some(expires_at) = now.0.checked_add(req.ttl_ms).map(UnixMillis) else {
            return Decision::Reject(Rejection::LimitExceeded);
        };
        Decision::Events(vec![Event::FxQuoted {
            client: caller.client.clone(),
            quote_id: req.quote_id.clone(),
            quote: FxQuote {
                wallet,
                from: req.from,
                to: req.to,
                mid,
                spread: fx.spread,
                expires_at,
                fingerprint: req.fingerprint,
            },
        }])
    }

    /// The quote an order of `client` paying from `wallet` names, if it may price it at `now`.
    pub(crate) fn for_order(
        &self,
        client: &ClientId,
        id: &RequestId,
        wallet: &WalletId,
        now: UnixMillis,
    ) -> Result<&FxQuote, Rejection> {
        let q = self.get(client, id).ok_or(Rejection::QuoteNotFound)?;
        if q.wallet != *wallet {
            return Err(Rejection::QuoteMismatch);
        }
        if !q.live_at(now) {
            return Err(Rejection::QuoteExpired);
        }
        Ok(q)
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::FxQuoted {
                client,
                quote_id,
                quote,
            } => {
                self.quotes
                    .insert((client.clone(), quote_id.clone()), quote.clone());
            }
            Event::Expired { fired, .. } => {
                for d in fired {
                    if let crate::deadlines::Deadline::QuoteForgotten(client, id) = d {
                        self.quotes.remove(&(client.clone(), id.clone()));
                    }
                }
            }
            _ => {}
        }
    }
}
