//! Wallets: create, read, freeze (admin), deposits, history.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use giftcard_core::state::{TxKind, Wallet};
use giftcard_core::{Command, Money, Rejection, RequestId, WalletId};
use giftcard_shard::{Outcome, Query, QueryAnswer};
use serde::Deserialize;

const WALLET_ROLES: &[Role] = &[Role::Checkout, Role::Admin];
/// Deposits create money: only the tenant's payment service, which saw the capture, and admins.
const FUNDING_ROLES: &[Role] = &[Role::Funding, Role::Admin];

/// The wire view of a wallet.
pub fn wallet_view(id: &str, w: &Wallet) -> WalletView {
    let balances = giftcard_intake::orders::balance_views(&w.balances);
    WalletView {
        wallet_id: id.to_owned(),
        owner: w.owner.as_str().to_owned(),
        frozen: w.frozen,
        kyc_verified: w.kyc_verified,
        balances,
    }
}

async fn load_wallet(state: &AppState, who: &Principal, id: &str) -> Result<WalletView, ApiError> {
    match state
        .ask(Query::Wallet {
            caller: who.caller(),
            wallet: WalletId::new(id),
        })
        .await?
    {
        QueryAnswer::Wallet(w) => Ok(wallet_view(id, &w)),
        _ => Err(ApiError::Unavailable),
    }
}

/// Creates a wallet owned by the calling client.
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", request_body = CreateWallet, responses((status = 201, body = WalletView)), security(("bearer" = [])))]
pub async fn create_wallet(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<CreateWallet>,
) -> crate::error::Answer {
    who.require(WALLET_ROLES)?;
    let body = body.parse()?;
    let id = input::wallet_id("wallet_id", &body.wallet_id, who.role == Role::Admin)?;
    let cmd = Command::CreateWallet {
        caller: who.caller(),
        wallet: WalletId::new(id),
        kyc_verified: body.kyc_verified,
    };
    // A retry of the same creation (same owner, same KYC flag) replays the original answer.
    let replayed = matches!(state.submit(cmd).await?, Outcome::Answered(_));
    let view = WalletView {
        wallet_id: id.to_owned(),
        owner: who.client.clone(),
        frozen: false,
        kyc_verified: body.kyc_verified,
        balances: vec![],
    };
    Ok(reply(StatusCode::CREATED, &view, replayed))
}

/// A wallet's balances per currency.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)), responses((status = 200, body = WalletView)), security(("bearer" = [])))]
pub async fn get_wallet(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(WALLET_ROLES)?;
    let id = input::wallet_id("wallet_id", &path, who.role == Role::Admin)?;
    Ok(reply(
        StatusCode::OK,
        &load_wallet(&state, &who, id).await?,
        false,
    ))
}

/// Freezes or unfreezes a wallet, and verifies or unverifies its KYC (admin; who and when are
/// journaled). At least one of `frozen` and `kyc_verified`.
#[utoipa::path(patch, path = "/v1/wallets/{wallet_id}", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)), request_body = UpdateWallet, responses((status = 200, body = WalletView)), security(("bearer" = [])))]
pub async fn update_wallet(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<UpdateWallet>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let body = body.parse()?;
    let id = input::wallet_id("wallet_id", &path, who.role == Role::Admin)?;
    if body.frozen.is_none() && body.kyc_verified.is_none() {
        return Err(ApiError::invalid(
            "missing_field",
            "frozen",
            "give frozen, kyc_verified or both",
        )
        .into());
    }
    // Both parts are checked before either is applied: a wallet that is not there changes
    // nothing.
    load_wallet(&state, &who, id).await?;
    if let Some(frozen) = body.frozen {
        state
            .submit(Command::SetWalletFrozen {
                wallet: WalletId::new(id),
                frozen,
            })
            .await?;
    }
    if let Some(verified) = body.kyc_verified {
        state
            .submit(Command::SetKyc {
                caller: who.caller(),
                wallet: WalletId::new(id),
                verified,
            })
            .await?;
    }
    Ok(reply(
        StatusCode::OK,
        &load_wallet(&state, &who, id).await?,
        false,
    ))
}

/// Funds a wallet with a captured payment. Idempotent by `Idempotency-Key` or `deposit_id`.
#[utoipa::path(post, path = "/v1/wallets/{wallet_id}/deposits", tag = "wallets",
    params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)),
    request_body = DepositRequest, responses((status = 201, body = DepositView)), security(("bearer" = [])))]
pub async fn deposit(
    who: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<DepositRequest>,
) -> crate::error::Answer {
    who.require(FUNDING_ROLES)?;
    let body = body.parse()?;
    let wallet = input::wallet_id("wallet_id", &path, who.role == Role::Admin)?;
    let key = input::idempotency_key(
        idempotency_header(&req)?,
        body.deposit_id.as_deref(),
        "deposit_id",
    )?;
    let funder = format!("key:{}", who.client);
    let (view, replayed) = credit(
        &state,
        who.caller(),
        wallet,
        key,
        &body.amount,
        body.reference,
        (&funder, &who.deposit_limit),
    )
    .await?;
    Ok(reply(StatusCode::CREATED, &view, replayed))
}

/// Credits a wallet once per `deposit_id` (a replay answers the same, whether replayed or not):
/// the one deposit path of funding keys and of payment gateways' webhooks.
pub(super) async fn credit(
    state: &AppState,
    caller: giftcard_core::Caller,
    wallet: &str,
    deposit_id: String,
    amount_dto: &MoneyDto,
    reference: String,
    (funder, limit): (&str, &crate::limits::DepositLimit),
) -> Result<(DepositView, bool), ApiError> {
    let amount = input::money("amount", amount_dto)?;
    if !limit.allows(amount.currency())
        || limit.per_call_minor.is_some_and(|max| amount.minor() > max)
    {
        return Err(ApiError::Rejected(Rejection::LimitExceeded, None));
    }
    input::text("reference", &reference, 1)?;
    // The day's allowance is taken before the engine call and given back unless the credit
    // took effect (refused, failed, or a replay of one already counted).
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let count = crate::limits::DepositCount {
        funder,
        wallet,
        deposit_id: &deposit_id,
        currency: amount.currency(),
        minor: amount.minor(),
        day,
    };
    let taken = match limit.per_day_minor {
        Some(per_day) => state.daily_deposits.take(&count, per_day)?,
        None => false,
    };
    let give_back = || {
        if taken {
            state.daily_deposits.give_back(&count);
        }
    };
    let fingerprint = input::fingerprint(&(amount_dto, &reference));
    let cmd = Command::Deposit {
        caller,
        wallet: WalletId::new(wallet),
        deposit_id: RequestId::new(&deposit_id),
        amount,
        reference: reference.clone(),
        fingerprint,
    };
    let (replayed, balances) = match state.submit(cmd).await {
        Ok(Outcome::Moved {
            replayed,
            after: giftcard_shard::After::Wallet(balances),
            ..
        }) => (replayed, balances),
        Ok(other) => return Err(ApiError::Internal(format!("a deposit answered {other:?}"))),
        Err(e) => {
            // Only an answer that says nothing was written gives the allowance back: after a
            // storage failure the credit may have been journaled.
            if matches!(
                e,
                ApiError::Rejected(..) | ApiError::Overloaded | ApiError::NotReady
            ) {
                give_back();
            }
            return Err(e);
        }
    };
    if replayed {
        give_back();
    }
    // The body is derived from the request (so a replay answers the same) and the balances.
    let view = DepositView {
        deposit_id,
        wallet_id: wallet.to_owned(),
        amount: MoneyView::of(amount),
        reference,
        balances: giftcard_intake::orders::balance_views(&balances),
    };
    Ok((view, replayed))
}

/// The `Idempotency-Key` header, if sent.
pub fn idempotency_header(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::invalid("invalid_id", "Idempotency-Key", "not visible ASCII")),
    }
}

/// Paging of the history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// A wallet's history, oldest first, cursor-paginated.
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/transactions", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129), HistoryParams),
    responses((status = 200, body = TxPage)), security(("bearer" = [])))]
pub async fn transactions(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<HistoryParams>,
) -> crate::error::Answer {
    who.require(WALLET_ROLES)?;
    let id = input::wallet_id("wallet_id", &path, who.role == Role::Admin)?;
    let after = match &q.cursor {
        None => 0,
        Some(c) => input::digits("cursor", c)?,
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit", "must be 1 to 500").into());
    }
    let query = Query::WalletHistory {
        caller: who.caller(),
        wallet: WalletId::new(id),
        after,
        limit: limit as usize,
    };
    let QueryAnswer::History(entries) = state.ask(query).await? else {
        return Err(ApiError::Unavailable.into());
    };
    let next_cursor =
        (entries.len() == limit as usize).then(|| (after + entries.len() as u64).to_string());
    let transactions = entries
        .into_iter()
        .map(|e| TxView {
            seq: e.seq,
            at_ms: e.at.0,
            kind: match e.kind {
                TxKind::Deposit => "deposit",
                TxKind::Purchase => "purchase",
                TxKind::Hold => "hold",
                TxKind::HoldReleased => "hold_released",
                TxKind::Fee => "fee",
                TxKind::Refund => "refund",
            }
            .into(),
            amount: MoneyView::of(e.amount),
            reference: e.reference.to_string(),
        })
        .collect();
    Ok(reply(
        StatusCode::OK,
        &TxPage {
            transactions,
            next_cursor,
        },
        false,
    ))
}

fn limits_view(id: &str, l: &giftcard_shard::WalletLimits) -> WalletLimitsView {
    WalletLimitsView {
        wallet_id: id.to_owned(),
        source: if l.own { "wallet" } else { "defaults" }.to_owned(),
        limits: LimitsDto::of(&l.limits),
        kyc_verified: l.kyc_verified,
        kyc_changed_by: l.kyc.as_ref().map(|m| m.by.as_str().to_owned()),
        kyc_changed_at_ms: l.kyc.as_ref().map(|m| m.at.0),
        kyc_threshold: l
            .kyc_threshold_minor
            .iter()
            .map(|(c, m)| MoneyView::of(Money::new(*m, *c)))
            .collect(),
    }
}

async fn load_limits(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<WalletLimitsView, ApiError> {
    match state
        .ask(Query::WalletLimits {
            caller: who.caller(),
            wallet: WalletId::new(id),
        })
        .await?
    {
        QueryAnswer::WalletLimits(l) => Ok(limits_view(id, &l)),
        _ => Err(ApiError::Unavailable),
    }
}

/// The limits the engine applies to a wallet (its own, or the configured defaults) and its KYC
/// standing (admin).
#[utoipa::path(get, path = "/v1/wallets/{wallet_id}/limits", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)), responses((status = 200, body = WalletLimitsView)), security(("bearer" = [])))]
pub async fn get_limits(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let id = input::wallet_id("wallet_id", &path, true)?;
    Ok(reply(
        StatusCode::OK,
        &load_limits(&state, &who, id).await?,
        false,
    ))
}

/// Sets a wallet's own limits, which replace the defaults for it entirely (admin). Checked in
/// the same commit as each order's debit; a tripped limit is `422 limit_exceeded` naming it.
#[utoipa::path(put, path = "/v1/wallets/{wallet_id}/limits", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)), request_body = LimitsDto, responses((status = 200, body = WalletLimitsView)), security(("bearer" = [])))]
pub async fn put_limits(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<LimitsDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let body = body.parse()?;
    let limits = input::limits("", &body)?;
    set_limits(who, state, &path, Some(limits)).await
}

/// Replaces a wallet's own limits (`None`: the defaults again) and answers what is in force.
async fn set_limits(
    who: Principal,
    state: web::Data<AppState>,
    path: &str,
    limits: Option<giftcard_core::limits::LimitSet>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let id = input::wallet_id("wallet_id", path, true)?;
    state
        .submit(Command::SetWalletLimits {
            caller: who.caller(),
            wallet: WalletId::new(id),
            limits,
        })
        .await?;
    Ok(reply(
        StatusCode::OK,
        &load_limits(&state, &who, id).await?,
        false,
    ))
}

/// Drops a wallet's own limits: the configured defaults apply to it again (admin). A `POST` to
/// a reset action rather than a `DELETE`, because the limits in force stay readable afterwards.
#[utoipa::path(post, path = "/v1/wallets/{wallet_id}/limits/reset", tag = "wallets", params(("wallet_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$", min_length = 1, max_length = 129)), responses((status = 200, body = WalletLimitsView)), security(("bearer" = [])))]
pub async fn reset_limits(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    set_limits(who, state, &path, None).await
}
