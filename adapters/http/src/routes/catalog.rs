//! Catalog and inventory: SKUs (admin writes, everyone reads), supplier code uploads and stock.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::catalog::SkuChanges;
use giftcard_core::{
    Command, Currency, Denomination, Rejection, Sku, SkuId, SkuKind, SkuStatus, SupplierId,
};
use giftcard_shard::{Outcome, Query, QueryAnswer};
use rust_decimal::Decimal;

/// Who may read the catalog and its stock: the checkouts that sell it, the suppliers that
/// fill it (their cost fields and stock only), admins.
const CATALOG_READERS: &[Role] = &[Role::Checkout, Role::Supplier, Role::Admin];

/// Codes one upload may carry.
pub const UPLOAD_CODES_MAX: usize = 50_000;

/// The wire view of a SKU as `who` may see it: its cost fields (what we pay, and to whom) only
/// for admins and the SKU's own supplier, never for competitors or checkouts.
pub fn sku_view_for(s: &Sku, who: &Principal) -> SkuView {
    let mut view = sku_view(s);
    let owner = who.role == Role::Supplier && s.supplier.as_str() == who.client;
    if who.role != Role::Admin && !owner {
        view.wholesale_discount = None;
        view.supplier_id = None;
    }
    view
}

/// The full wire view of a SKU.
pub fn sku_view(s: &Sku) -> SkuView {
    let m = |minor| MoneyView {
        amount_minor: minor,
        currency: s.currency.code().to_owned(),
    };
    let face_value = match s.denomination {
        Denomination::Fixed(f) => DenominationView::Fixed(m(f)),
        Denomination::Open { min, max } => DenominationView::Open {
            min: m(min),
            max: m(max),
        },
    };
    SkuView {
        sku_id: s.id.as_str().to_owned(),
        brand: s.brand.clone(),
        category: s.category.clone(),
        kind: match s.kind {
            SkuKind::SupplierCode => SkuKindDto::SupplierCode,
            SkuKind::Issued => SkuKindDto::Issued,
        },
        currency: s.currency.code().to_owned(),
        face_value,
        wholesale_discount: Some(s.wholesale_discount.to_string()),
        markup: s.markup.to_string(),
        supplier_id: Some(s.supplier.as_str().to_owned()),
        regions: s.regions.clone(),
        status: match s.status {
            SkuStatus::Active => SkuStatusDto::Active,
            SkuStatus::Paused => SkuStatusDto::Paused,
        },
        issue_cap: s.issue_cap,
    }
}

/// Every SKU, sorted by id.
pub async fn all_skus(state: &AppState) -> Result<Vec<Sku>, ApiError> {
    match state.ask(Query::Skus).await? {
        QueryAnswer::Skus(s) => Ok(s),
        _ => Err(ApiError::Unavailable),
    }
}

/// One SKU, or 404.
pub async fn find_sku(state: &AppState, id: &str) -> Result<Sku, ApiError> {
    all_skus(state)
        .await?
        .into_iter()
        .find(|s| s.id.as_str() == id)
        .ok_or(ApiError::NotFound {
            code: "sku_not_found",
            what: "sku",
        })
}

fn denomination(d: &DenominationDto) -> Result<(Denomination, Currency), ApiError> {
    match d {
        DenominationDto::Fixed(f) => {
            let f = input::money("face_value.fixed", f)?;
            Ok((Denomination::Fixed(f.minor()), f.currency()))
        }
        DenominationDto::Open(r) => {
            let lo = input::money("face_value.open.min", &r.min)?;
            let hi = input::money("face_value.open.max", &r.max)?;
            if lo.currency() != hi.currency() || lo.minor() > hi.minor() {
                return Err(ApiError::invalid(
                    "invalid_denomination",
                    "face_value.open.max",
                    "must be the same currency as and not below min",
                ));
            }
            Ok((
                Denomination::Open {
                    min: lo.minor(),
                    max: hi.minor(),
                },
                lo.currency(),
            ))
        }
    }
}

fn regions(r: Option<Vec<Region>>) -> Result<Vec<String>, ApiError> {
    let r = r.unwrap_or_default();
    if r.len() > 250 {
        return Err(ApiError::invalid(
            "too_many",
            "regions",
            "at most 250 regions",
        ));
    }
    r.into_iter()
        .enumerate()
        .map(|(i, region)| input::id(&format!("regions[{i}]"), &region.0).map(str::to_owned))
        .collect()
}

fn status(s: SkuStatusDto) -> SkuStatus {
    match s {
        SkuStatusDto::Active => SkuStatus::Active,
        SkuStatusDto::Paused => SkuStatus::Paused,
    }
}

fn sku_from(r: SkuRequest) -> Result<Sku, ApiError> {
    let id = input::id("sku_id", &r.sku_id)?;
    let (denom, currency) = denomination(&r.face_value)?;
    let kind = match r.kind {
        SkuKindDto::SupplierCode => SkuKind::SupplierCode,
        SkuKindDto::Issued => SkuKind::Issued,
    };
    if r.issue_cap.is_some() && kind != SkuKind::Issued {
        return Err(ApiError::invalid(
            "invalid_sku",
            "issue_cap",
            "only issued SKUs have an issue cap",
        ));
    }
    if r.issue_cap.is_some_and(|c| c == 0 || c > 1_000_000_000) {
        return Err(ApiError::invalid(
            "invalid_sku",
            "issue_cap",
            "must be 1 to 10^9",
        ));
    }
    Ok(Sku {
        id: SkuId::new(id),
        brand: input::text("brand", &r.brand, 1)?.to_owned(),
        category: input::text("category", &r.category, 1)?.to_owned(),
        kind,
        denomination: denom,
        currency,
        wholesale_discount: input::decimal(
            "wholesale_discount",
            &r.wholesale_discount,
            input::DecimalKind::Fraction,
        )?,
        markup: r.markup.as_deref().map_or(Ok(Decimal::ZERO), |m| {
            input::decimal("markup", m, input::DecimalKind::Markup)
        })?,
        supplier: SupplierId::new(input::id("supplier_id", &r.supplier_id)?),
        regions: regions(r.regions)?,
        status: r.status.map_or(SkuStatus::Active, status),
        issue_cap: r.issue_cap,
    })
}

/// Defines a SKU (admin). Repeating an identical definition is a replay; a different one, 409.
/// Decided in the engine, so two concurrent definitions of one id cannot both succeed.
#[utoipa::path(post, path = "/v1/skus", tag = "catalog", request_body = SkuRequest, responses((status = 201, body = SkuView)), security(("bearer" = [])))]
pub async fn create_sku(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<SkuRequest>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let body = body.parse()?;
    let sku = sku_from(body)?;
    let replayed = matches!(
        state.submit(Command::CreateSku(sku.clone())).await?,
        Outcome::Answered(_)
    );
    Ok(reply(StatusCode::CREATED, &sku_view(&sku), replayed))
}

/// The catalog.
#[utoipa::path(get, path = "/v1/skus", tag = "catalog", responses((status = 200, body = SkuList)), security(("bearer" = [])))]
pub async fn list_skus(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    who.require(CATALOG_READERS)?;
    let skus = all_skus(&state)
        .await?
        .iter()
        .map(|s| sku_view_for(s, &who))
        .collect();
    Ok(reply(StatusCode::OK, &SkuList { skus }, false))
}

/// A SKU with its version as an entity tag (`"v3"`), for a conditional `PATCH`.
async fn sku_with_etag(state: &AppState, who: &Principal, id: &str) -> crate::error::Answer {
    match state
        .ask(Query::Sku {
            sku: SkuId::new(id),
        })
        .await
    {
        Ok(QueryAnswer::Sku(sku, version)) => {
            let mut res = reply(StatusCode::OK, &sku_view_for(&sku, who), false);
            let etag = actix_web::http::header::HeaderValue::from_str(&format!("\"v{version}\""))
                .map_err(|_| ApiError::Internal("an entity tag that is no header".into()))?;
            res.headers_mut()
                .insert(actix_web::http::header::ETAG, etag);
            Ok(res)
        }
        Ok(_) => Err(ApiError::Internal("a SKU query answered no SKU".into()).into()),
        Err(ApiError::Rejected(Rejection::SkuNotFound, _)) => Err(ApiError::NotFound {
            code: "sku_not_found",
            what: "sku",
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// One SKU; its `ETag` names its version.
#[utoipa::path(get, path = "/v1/skus/{sku_id}", tag = "catalog", params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)), responses((status = 200, body = SkuView)), security(("bearer" = [])))]
pub async fn get_sku(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(CATALOG_READERS)?;
    let id = input::id("sku_id", &path)?;
    sku_with_etag(&state, &who, id).await
}

/// The version an `If-Match` header names (`"v3"`, or `*` for any); absent, the change is
/// unconditional (still atomic in the engine).
fn if_match(req: &actix_web::HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(v) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid(
            "invalid_if_match",
            "If-Match",
            "send the ETag of GET /v1/skus/{sku_id}, like \"v3\", or *",
        )
    };
    let v = v.to_str().map_err(|_| bad())?.trim();
    if v == "*" {
        return Ok(None);
    }
    let digits = v
        .strip_prefix("\"v")
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?;
    Ok(Some(input::digits("If-Match", digits).map_err(|_| bad())?))
}

/// Changes a SKU (admin). Kind, currency, supplier and issue cap cannot change. The change is
/// made inside the engine (never read, modified and written here); with `If-Match` only if the
/// SKU is still at that version, else 412.
#[utoipa::path(patch, path = "/v1/skus/{sku_id}", tag = "catalog", params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"v[0-9]{1,19}")$"#, description = "The ETag of the version the change is based on, or *")), request_body = SkuPatch, responses((status = 200, body = SkuView)), security(("bearer" = [])))]
pub async fn patch_sku(
    who: Principal,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    body: JsonBody<SkuPatch>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let p = body.parse()?;
    let id = input::id("sku_id", &path)?;
    let if_version = if_match(&req)?;
    let changes = SkuChanges {
        denomination: p.face_value.as_ref().map(denomination).transpose()?,
        brand: p
            .brand
            .as_deref()
            .map(|b| input::text("brand", b, 1).map(str::to_owned))
            .transpose()?,
        category: p
            .category
            .as_deref()
            .map(|c| input::text("category", c, 1).map(str::to_owned))
            .transpose()?,
        wholesale_discount: p
            .wholesale_discount
            .as_deref()
            .map(|d| input::decimal("wholesale_discount", d, input::DecimalKind::Fraction))
            .transpose()?,
        markup: p
            .markup
            .as_deref()
            .map(|m| input::decimal("markup", m, input::DecimalKind::Markup))
            .transpose()?,
        regions: match p.regions {
            Some(r) => Some(regions(Some(r))?),
            None => None,
        },
        status: p.status.map(status),
    };
    let cmd = Command::ChangeSku {
        sku: SkuId::new(id),
        if_version,
        changes,
    };
    match state.submit(cmd).await {
        Ok(_) => sku_with_etag(&state, &who, id).await,
        Err(ApiError::Rejected(Rejection::SkuNotFound, _)) => Err(ApiError::NotFound {
            code: "sku_not_found",
            what: "sku",
        }
        .into()),
        Err(ApiError::Rejected(Rejection::CurrencyMismatch, _)) => Err(ApiError::invalid(
            "currency_mismatch",
            "face_value",
            "the SKU's currency cannot change",
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

async fn stock_view(state: &AppState, id: &str) -> Result<StockView, ApiError> {
    match state
        .ask(Query::Stock {
            sku: SkuId::new(id),
        })
        .await?
    {
        QueryAnswer::Stock { available, sold } => Ok(StockView {
            sku_id: id.to_owned(),
            available,
            reserved: 0,
            sold,
        }),
        _ => Err(ApiError::Unavailable),
    }
}

/// Adds supplier codes to a SKU's pool (its supplier, or admin); returns the stock.
#[utoipa::path(post, path = "/v1/skus/{sku_id}/codes", tag = "catalog", params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)), request_body = UploadCodes, responses((status = 201, body = StockView)), security(("bearer" = [])))]
pub async fn upload_codes(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<UploadCodes>,
) -> crate::error::Answer {
    who.require(&[Role::Supplier, Role::Admin])?;
    // Each upload is a probe of which codes exist (a refusal says some do): it takes a token
    // of the supplier's lookup allowance, like a balance inquiry.
    if who.role == Role::Supplier {
        state.per_client.take(&who.client)?;
    }
    let body = body.parse()?;
    let id = input::id("sku_id", &path)?;
    let codes = body.codes;
    if codes.is_empty() || codes.len() > UPLOAD_CODES_MAX {
        return Err(ApiError::invalid(
            "invalid_count",
            "codes",
            format!("send 1 to {UPLOAD_CODES_MAX} codes"),
        )
        .into());
    }
    let codes: Vec<String> = codes.into_iter().map(|c| c.0).collect();
    if let Some(i) = codes
        .iter()
        .position(|c| !giftcard_shard::codes::valid_code(c))
    {
        return Err(ApiError::invalid(
            "invalid_code",
            format!("codes[{i}]"),
            "codes are 4-128 printable ASCII characters without spaces",
        )
        .into());
    }
    let sku = find_sku(&state, id)
        .await
        .map_err(|e| match (&e, who.role) {
            // A supplier learns nothing about SKUs that are not its own.
            (ApiError::NotFound { .. }, Role::Supplier) => ApiError::Forbidden,
            _ => e,
        })?;
    if sku.kind != SkuKind::SupplierCode {
        // Well-formed, but this SKU's kind has no code pool: a rule rejection.
        return Err(ApiError::Rejected(giftcard_core::Rejection::InvalidSku, None).into());
    }
    let supplier = (who.role == Role::Supplier).then(|| SupplierId::new(&who.client));
    let engine = state.engine()?.clone();
    let sku_id = SkuId::new(id);
    state
        .bridge(|to| engine.upload_codes(sku_id, supplier, &codes, to))
        .await?;
    Ok(reply(
        StatusCode::CREATED,
        &stock_view(&state, id).await?,
        false,
    ))
}

/// Available and sold codes of a SKU (a supplier sees only its own SKUs).
#[utoipa::path(get, path = "/v1/skus/{sku_id}/stock", tag = "catalog", params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)), responses((status = 200, body = StockView)), security(("bearer" = [])))]
pub async fn stock(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(CATALOG_READERS)?;
    let id = input::id("sku_id", &path)?;
    if who.role == Role::Supplier {
        let sku = find_sku(&state, id)
            .await
            .map_err(|_| ApiError::Forbidden)?;
        if sku.supplier.as_str() != who.client {
            return Err(ApiError::Forbidden.into());
        }
    }
    Ok(reply(StatusCode::OK, &stock_view(&state, id).await?, false))
}
