//! Pricing rules per SKU (admin): face, face ± a percentage or a fixed price, each optionally
//! inside a validity window (a promotion).

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::promotions::{PriceRule, PricingRule, PRICING_RULES_MAX};
use giftcard_core::{Command, SkuId, UnixMillis};
use giftcard_shard::{Query, QueryAnswer};

fn rules_view(rules: &[PricingRule]) -> PricingDto {
    PricingDto {
        rules: rules
            .iter()
            .map(|r| {
                let (kind, percent, amount_minor) = match &r.rule {
                    PriceRule::Face => (PriceRuleKind::Face, None, None),
                    PriceRule::FacePercent(p) => (
                        PriceRuleKind::FacePercent,
                        Some(p.normalize().to_string()),
                        None,
                    ),
                    PriceRule::Fixed(m) => (PriceRuleKind::Fixed, None, Some(*m)),
                };
                PricingRuleDto {
                    kind,
                    percent,
                    amount_minor,
                    from_ms: r.from.map(|t| t.0),
                    until_ms: r.until.map(|t| t.0),
                }
            })
            .collect(),
    }
}

fn parse_rules(dto: &PricingDto) -> Result<Vec<PricingRule>, ApiError> {
    if dto.rules.len() > PRICING_RULES_MAX {
        return Err(ApiError::invalid(
            "too_many",
            "rules",
            format!("at most {PRICING_RULES_MAX} rules"),
        ));
    }
    let mut rules = Vec::with_capacity(dto.rules.len());
    for (i, r) in dto.rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].{f}");
        let misplaced = |f: &str| {
            ApiError::invalid(
                "invalid_field",
                at(f),
                format!("not a field of a {:?} rule", r.kind),
            )
        };
        let rule = match r.kind {
            PriceRuleKind::Face => {
                if r.percent.is_some() {
                    return Err(misplaced("percent"));
                }
                if r.amount_minor.is_some() {
                    return Err(misplaced("amount_minor"));
                }
                PriceRule::Face
            }
            PriceRuleKind::FacePercent => {
                if r.amount_minor.is_some() {
                    return Err(misplaced("amount_minor"));
                }
                let p = r.percent.as_deref().ok_or_else(|| {
                    ApiError::invalid(
                        "missing_field",
                        at("percent"),
                        "a face_percent rule needs it",
                    )
                })?;
                let p = input::decimal(&at("percent"), p, input::DecimalKind::Markup)?;
                PriceRule::FacePercent(p)
            }
            PriceRuleKind::Fixed => {
                if r.percent.is_some() {
                    return Err(misplaced("percent"));
                }
                let m = r.amount_minor.ok_or_else(|| {
                    ApiError::invalid("missing_field", at("amount_minor"), "a fixed rule needs it")
                })?;
                if !(1..=giftcard_core::AMOUNT_MINOR_MAX).contains(&m) {
                    return Err(ApiError::invalid(
                        "invalid_amount",
                        at("amount_minor"),
                        "must be 1 to 10^12",
                    ));
                }
                PriceRule::Fixed(m)
            }
        };
        if let (Some(f), Some(u)) = (r.from_ms, r.until_ms) {
            if u <= f {
                return Err(ApiError::invalid(
                    "invalid_window",
                    at("until_ms"),
                    "the window ends before it starts",
                ));
            }
        }
        rules.push(PricingRule {
            rule,
            from: r.from_ms.map(UnixMillis),
            until: r.until_ms.map(UnixMillis),
        });
    }
    Ok(rules)
}

/// Replaces a SKU's pricing rules (none removes them). A rule that would sell a card below its
/// cost is refused (`422 below_margin_floor`) and changes nothing.
#[utoipa::path(put, path = "/v1/skus/{sku_id}/pricing", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    request_body = PricingDto, responses((status = 200, body = PricingDto)), security(("bearer" = [])))]
pub async fn put_pricing(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<PricingDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = input::id("sku_id", &path)?;
    let rules = parse_rules(&body.parse()?)?;
    state
        .submit(Command::SetPricing {
            sku: SkuId::new(sku),
            rules: rules.clone(),
        })
        .await?;
    Ok(reply(StatusCode::OK, &rules_view(&rules), false))
}

/// A SKU's pricing rules (empty when it has none).
#[utoipa::path(get, path = "/v1/skus/{sku_id}/pricing", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = PricingDto)), security(("bearer" = [])))]
pub async fn get_pricing(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = input::id("sku_id", &path)?;
    let QueryAnswer::Pricing(rules) = state
        .ask(Query::Pricing {
            sku: SkuId::new(sku),
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &rules_view(&rules), false))
}
