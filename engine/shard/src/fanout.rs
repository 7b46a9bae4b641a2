//! Answers asked of several shards: one reply from each, combined once all are in.

use crate::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Collects one reply from each of several shards and answers once.
pub(crate) struct FanOut {
    inner: Arc<Mutex<FanState>>,
}

struct FanState {
    left: u16,
    replies: Vec<Reply>,
    reply: Option<ReplyTo>,
    combine: fn(Vec<Reply>) -> Reply,
}

impl FanOut {
    pub(crate) fn new(n: u16, reply: ReplyTo, combine: fn(Vec<Reply>) -> Reply) -> FanOut {
        FanOut {
            inner: Arc::new(Mutex::new(FanState {
                left: n,
                replies: Vec::new(),
                reply: Some(reply),
                combine,
            })),
        }
    }

    pub(crate) fn part(&self) -> ReplyTo {
        let inner = self.inner.clone();
        Box::new(move |r| {
            let Ok(mut s) = inner.lock() else { return };
            s.replies.push(r);
            s.left -= 1;
            if s.left == 0 {
                let replies = std::mem::take(&mut s.replies);
                if let Some(reply) = s.reply.take() {
                    reply((s.combine)(replies));
                }
            }
        })
    }
}

/// The one shard that found the object, or the most telling refusal.
pub(crate) fn pick_found(replies: Vec<Reply>) -> Reply {
    let mut fallback = None;
    for r in replies {
        match r {
            Ok(Outcome::Query(QueryAnswer::Missing)) => {
                fallback = fallback.or(Some(Ok(Outcome::Query(QueryAnswer::Missing))))
            }
            Ok(o) => return Ok(o),
            Err(EngineError::Rejected(Rejection::RedemptionNotFound)) => {
                fallback = fallback.or(Some(Err(EngineError::Rejected(
                    Rejection::RedemptionNotFound,
                ))))
            }
            Err(e) => fallback = Some(Err(e)),
        }
    }
    fallback.unwrap_or_else(|| Err(EngineError::Internal("no shard answered".into())))
}

/// An answer of the wrong kind: a bug in the engine, not a storage failure.
pub(crate) fn unexpected(o: Outcome) -> EngineError {
    tracing::error!(?o, "an engine answer of the wrong kind");
    EngineError::Internal(format!("an answer of the wrong kind: {o:?}"))
}

/// The events of every shard; `Answered` only when every shard had done it before (a close that
/// a crash cut short is finished by its retry, and that is a change).
pub(crate) fn concat_events(replies: Vec<Reply>) -> Reply {
    let mut all = Vec::new();
    let mut changed = false;
    for r in replies {
        match r? {
            Outcome::Applied(mut evs) => {
                changed = true;
                all.append(&mut evs);
            }
            Outcome::Answered(mut evs) => all.append(&mut evs),
            other => return Err(unexpected(other)),
        }
    }
    Ok(if changed {
        Outcome::Applied(all)
    } else {
        Outcome::Answered(all)
    })
}

pub(crate) fn merge_card_lists(replies: Vec<Reply>) -> Reply {
    let mut all = Vec::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::CardList(mut v)) => all.append(&mut v),
            other => return Err(unexpected(other)),
        }
    }
    all.sort_by_key(|(id, _)| *id);
    Ok(Outcome::Query(QueryAnswer::CardList(all)))
}

pub(crate) fn merge_reviews(replies: Vec<Reply>) -> Reply {
    let mut all = Vec::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Reviews(mut v)) => all.append(&mut v),
            other => return Err(unexpected(other)),
        }
    }
    all.sort_by(|a, b| (a.1.pending.order.at, &a.0).cmp(&(b.1.pending.order.at, &b.0)));
    Ok(Outcome::Query(QueryAnswer::Reviews(all)))
}

pub(crate) fn merge_stock(replies: Vec<Reply>) -> Reply {
    let (mut available, mut sold) = (0, 0);
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Stock {
                available: a,
                sold: s,
            }) => {
                available += a;
                sold += s;
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Stock { available, sold }))
}

pub(crate) fn merge_stock_levels(replies: Vec<Reply>) -> Reply {
    let mut all: BTreeMap<SkuId, (u64, u64)> = BTreeMap::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::StockLevels(levels)) => {
                for (sku, (available, sold)) in levels {
                    let e = all.entry(sku).or_default();
                    e.0 += available;
                    e.1 += sold;
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::StockLevels(all)))
}

pub(crate) fn merge_revenue(replies: Vec<Reply>) -> Reply {
    let mut all = giftcard_core::sales::Revenue::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Revenue(part)) => {
                giftcard_core::sales::merge(&mut all, part)
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Revenue(all)))
}

pub(crate) fn merge_liability(replies: Vec<Reply>) -> Reply {
    let mut all = giftcard_core::liability::LiabilityReport::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Liability(part)) => {
                giftcard_core::liability::merge(&mut all, part)
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Liability(all)))
}

pub(crate) fn merge_totals(replies: Vec<Reply>) -> Reply {
    let mut total = ShardTotals::default();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Totals(t)) => total.merge(*t),
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Totals(Box::new(total))))
}
