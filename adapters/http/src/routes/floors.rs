//! Margin floors (admin): the least each SKU's or brand's cards earn over their cost.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::floors::{MarginFloors, MARGIN_FLOORS_MAX};
use giftcard_core::pricelists::PriceTarget;
use giftcard_core::{Command, SkuId};
use giftcard_shard::{Query, QueryAnswer};

fn floors_view(f: &MarginFloors) -> MarginFloorsDto {
    let floors = f
        .entries()
        .into_iter()
        .map(|(target, floor)| {
            let (sku_id, brand) = match target {
                PriceTarget::Sku(s) => (Some(s.as_str().to_owned()), None),
                PriceTarget::Brand(b) => (None, Some(b)),
            };
            MarginFloorDto {
                sku_id,
                brand,
                min_margin: floor.normalize().to_string(),
            }
        })
        .collect();
    MarginFloorsDto { floors }
}

fn parse_floors(dto: &MarginFloorsDto) -> Result<MarginFloors, ApiError> {
    if dto.floors.len() > MARGIN_FLOORS_MAX {
        return Err(ApiError::invalid(
            "too_many",
            "floors",
            format!("at most {MARGIN_FLOORS_MAX} floors"),
        ));
    }
    let mut out = MarginFloors::default();
    for (i, e) in dto.floors.iter().enumerate() {
        let at = |f: &str| format!("floors[{i}].{f}");
        let floor = input::decimal(
            &at("min_margin"),
            &e.min_margin,
            input::DecimalKind::Fraction,
        )?;
        let fresh = match (&e.sku_id, &e.brand) {
            (Some(s), None) => out
                .by_sku
                .insert(SkuId::new(input::id(&at("sku_id"), s)?), floor)
                .is_none(),
            (None, Some(b)) => out
                .by_brand
                .insert(input::text(&at("brand"), b, 1)?.to_owned(), floor)
                .is_none(),
            _ => {
                return Err(ApiError::invalid(
                    "invalid_field",
                    format!("floors[{i}]"),
                    "a floor names a sku_id or a brand, not both",
                ))
            }
        };
        if !fresh {
            return Err(ApiError::invalid(
                "invalid_field",
                format!("floors[{i}]"),
                "a SKU or brand named twice",
            ));
        }
    }
    if let Some(why) = out.malformed() {
        return Err(ApiError::invalid("invalid_margin_floor", "floors", why));
    }
    Ok(out)
}

/// Replaces every margin floor (an empty list removes them). From then on no order sells a card
/// below its cost plus its floor, and a pricing rule or price list that would is refused when it
/// is set.
#[utoipa::path(put, path = "/v1/admin/margin-floors", tag = "admin",
    request_body = MarginFloorsDto, responses((status = 200, body = MarginFloorsDto)), security(("bearer" = [])))]
pub async fn put_margin_floors(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<MarginFloorsDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let floors = parse_floors(&body.parse()?)?;
    state
        .submit(Command::SetMarginFloors(floors.clone()))
        .await?;
    Ok(reply(StatusCode::OK, &floors_view(&floors), false))
}

/// Every margin floor.
#[utoipa::path(get, path = "/v1/admin/margin-floors", tag = "admin",
    responses((status = 200, body = MarginFloorsDto)), security(("bearer" = [])))]
pub async fn get_margin_floors(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let QueryAnswer::MarginFloors(f) = state.ask(Query::MarginFloors).await? else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &floors_view(&f), false))
}
