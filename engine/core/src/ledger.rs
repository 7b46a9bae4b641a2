//! The double-entry view of events. Every money-moving event becomes postings that sum to zero
//! per currency; `postings` is the only place that knows which accounts an event touches.

use crate::event::{CompletedOrder, Event};
use crate::{CardId, Currency, Money, SupplierId, WalletId};
use serde::{Deserialize, Serialize};

/// An account of the ledger. A positive balance is what the platform owes the account's holder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Account {
    Wallet(WalletId, Currency),
    Card(CardId),
    /// Money that entered from outside (payment gateways); its balance is negative.
    Funding(Currency),
    SupplierPayable(SupplierId, Currency),
    RevenueMargin(Currency),
    RevenueFx(Currency),
    /// The platform's position in each currency from conversions.
    FxClearing(Currency),
    /// Value paid out to merchants for redeemed issued cards.
    Redeemed(Currency),
    /// Order and delivery fees.
    RevenueFees(Currency),
    /// Supplier commissions booked at settlement closes.
    RevenueCommission(Currency),
    /// Stored value left on issued cards when they expired.
    RevenueBreakage(Currency),
}

impl Account {
    /// The account's currency; none for a card's, whose currency is its SKU's.
    pub fn currency(&self) -> Option<Currency> {
        match self {
            Account::Wallet(_, c)
            | Account::Funding(c)
            | Account::SupplierPayable(_, c)
            | Account::RevenueMargin(c)
            | Account::RevenueFx(c)
            | Account::FxClearing(c)
            | Account::Redeemed(c)
            | Account::RevenueFees(c)
            | Account::RevenueCommission(c)
            | Account::RevenueBreakage(c) => Some(*c),
            Account::Card(_) => None,
        }
    }
}

/// One side of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub amount: Money,
}

fn post(out: &mut Vec<Posting>, account: Account, minor: i64, ccy: Currency) {
    if minor != 0 {
        out.push(Posting {
            account,
            amount: Money::new(minor, ccy),
        });
    }
}

/// The postings an event makes, balanced per currency.
pub fn postings(event: &Event) -> Vec<Posting> {
    let mut out = Vec::with_capacity(if matches!(event, Event::OrderCompleted(_)) {
        8
    } else {
        2
    });
    match event {
        Event::Deposited { wallet, amount, .. } => {
            post(
                &mut out,
                Account::Funding(amount.currency()),
                -amount.minor(),
                amount.currency(),
            );
            post(
                &mut out,
                Account::Wallet(wallet.clone(), amount.currency()),
                amount.minor(),
                amount.currency(),
            );
        }
        Event::OrderCompleted(order) => order_postings(order, &mut out),
        Event::CommissionBooked {
            supplier,
            commission,
            ..
        } => {
            let ccy = commission.currency();
            post(
                &mut out,
                Account::SupplierPayable(supplier.clone(), ccy),
                -commission.minor(),
                ccy,
            );
            post(
                &mut out,
                Account::RevenueCommission(ccy),
                commission.minor(),
                ccy,
            );
        }
        Event::Redeemed { card, amount, .. } => {
            post(
                &mut out,
                Account::Card(*card),
                -amount.minor(),
                amount.currency(),
            );
            post(
                &mut out,
                Account::Redeemed(amount.currency()),
                amount.minor(),
                amount.currency(),
            );
        }
        // The card's value leaves it, the wallet gets its price, and the margin it made (price
        // less face) is taken back.
        Event::CardCancelled {
            card,
            wallet,
            refund,
            face,
            restock,
            ..
        } => {
            let ccy = face.currency();
            // What the card stood for: its stored value, or what its supplier was owed.
            let value = match restock {
                None => {
                    post(&mut out, Account::Card(*card), -face.minor(), ccy);
                    face.minor()
                }
                Some(r) => {
                    let account = Account::SupplierPayable(r.supplier.clone(), ccy);
                    post(&mut out, account, -r.cost.minor(), ccy);
                    r.cost.minor()
                }
            };
            post(
                &mut out,
                Account::RevenueMargin(ccy),
                value - refund.minor(),
                ccy,
            );
            post(
                &mut out,
                Account::Wallet(wallet.clone(), ccy),
                refund.minor(),
                ccy,
            );
        }
        Event::CardExpired {
            card, remaining, ..
        } => {
            let ccy = remaining.currency();
            post(&mut out, Account::Card(*card), -remaining.minor(), ccy);
            post(
                &mut out,
                Account::RevenueBreakage(ccy),
                remaining.minor(),
                ccy,
            );
        }
        Event::RedemptionReversed { card, amount, .. } => {
            post(
                &mut out,
                Account::Card(*card),
                amount.minor(),
                amount.currency(),
            );
            post(
                &mut out,
                Account::Redeemed(amount.currency()),
                -amount.minor(),
                amount.currency(),
            );
        }
        _ => {}
    }
    out
}

fn order_postings(order: &CompletedOrder, out: &mut Vec<Posting>) {
    for (_, fee) in &order.fees {
        let ccy = fee.currency();
        post(
            out,
            Account::Wallet(order.wallet.clone(), ccy),
            -fee.minor(),
            ccy,
        );
        post(out, Account::RevenueFees(ccy), fee.minor(), ccy);
    }
    let pay = order.charged.currency();
    post(
        out,
        Account::Wallet(order.wallet.clone(), pay),
        -order.charged.minor(),
        pay,
    );
    let mut card = order.first_card.0;
    for line in &order.lines {
        let ccy = line.unit_price.currency();
        let q = i64::from(line.quantity);
        let price_total = line.unit_price.minor() * q;
        if ccy != pay {
            // The payer's currency comes in at mid plus spread; the SKU's currency goes out at price.
            post(
                out,
                Account::FxClearing(pay),
                line.charged_at_mid.minor(),
                pay,
            );
            post(
                out,
                Account::RevenueFx(pay),
                line.charged.minor() - line.charged_at_mid.minor(),
                pay,
            );
            post(out, Account::FxClearing(ccy), -price_total, ccy);
        }
        if line.issued {
            for _ in 0..line.quantity {
                post(out, Account::Card(CardId(card)), line.face.minor(), ccy);
                card += 1;
            }
            post(
                out,
                Account::RevenueMargin(ccy),
                (line.unit_price.minor() - line.face.minor()) * q,
                ccy,
            );
        } else {
            card += u64::from(line.quantity);
            post(
                out,
                Account::SupplierPayable(line.supplier.clone(), ccy),
                line.unit_cost.minor() * q,
                ccy,
            );
            post(
                out,
                Account::RevenueMargin(ccy),
                (line.unit_price.minor() - line.unit_cost.minor()) * q,
                ccy,
            );
        }
    }
}
