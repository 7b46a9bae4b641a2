//! B2B price lists (admin): a client's discounts by SKU or brand, in quantity tiers.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::pricelists::{PriceEntry, PriceList, PriceTarget};
use giftcard_core::{ClientId, Command, SkuId, ORDER_CARDS_MAX};
use giftcard_shard::{Query, QueryAnswer};

fn list_view(list: &PriceList) -> PriceListDto {
    PriceListDto {
        entries: list
            .entries
            .iter()
            .map(|e| {
                let (sku_id, brand) = match &e.target {
                    PriceTarget::Sku(s) => (Some(s.as_str().to_owned()), None),
                    PriceTarget::Brand(b) => (None, Some(b.clone())),
                };
                PriceEntryDto {
                    sku_id,
                    brand,
                    min_quantity: Some(e.min_quantity),
                    discount: e.discount.normalize().to_string(),
                }
            })
            .collect(),
    }
}

fn parse_list(dto: &PriceListDto) -> Result<PriceList, ApiError> {
    let mut entries = Vec::with_capacity(dto.entries.len());
    for (i, e) in dto.entries.iter().enumerate() {
        let at = |f: &str| format!("entries[{i}].{f}");
        let target = match (&e.sku_id, &e.brand) {
            (Some(s), None) => PriceTarget::Sku(SkuId::new(input::id(&at("sku_id"), s)?)),
            (None, Some(b)) => PriceTarget::Brand(input::text(&at("brand"), b, 1)?.to_owned()),
            _ => {
                return Err(ApiError::invalid(
                    "invalid_field",
                    format!("entries[{i}]"),
                    "an entry names a sku_id or a brand, not both",
                ))
            }
        };
        let min_quantity = e.min_quantity.unwrap_or(1);
        if !(1..=ORDER_CARDS_MAX).contains(&min_quantity) {
            return Err(ApiError::invalid(
                "invalid_field",
                at("min_quantity"),
                format!("must be 1 to {ORDER_CARDS_MAX}"),
            ));
        }
        let discount = input::decimal(&at("discount"), &e.discount, input::DecimalKind::Fraction)?;
        entries.push(PriceEntry {
            target,
            min_quantity,
            discount,
        });
    }
    let list = PriceList { entries };
    if let Some(why) = list.malformed() {
        return Err(ApiError::invalid("invalid_price_list", "entries", why));
    }
    Ok(list)
}

/// Replaces a client's price list (an empty list removes it). A list that would sell any card
/// of the catalog below its cost is refused (`422 below_margin_floor`) and changes nothing.
#[utoipa::path(put, path = "/v1/admin/price-lists/{client_id}", tag = "admin",
    params(("client_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    request_body = PriceListDto, responses((status = 200, body = PriceListDto)), security(("bearer" = [])))]
pub async fn put_price_list(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<PriceListDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let client = input::id("client_id", &path)?;
    let list = parse_list(&body.parse()?)?;
    state
        .submit(Command::SetPriceList {
            client: ClientId::new(client),
            list: list.clone(),
        })
        .await?;
    Ok(reply(StatusCode::OK, &list_view(&list), false))
}

/// A client's price list (empty when it has none).
#[utoipa::path(get, path = "/v1/admin/price-lists/{client_id}", tag = "admin",
    params(("client_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = PriceListDto)), security(("bearer" = [])))]
pub async fn get_price_list(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let client = input::id("client_id", &path)?;
    let QueryAnswer::PriceList(list) = state
        .ask(Query::PriceList {
            client: ClientId::new(client),
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &list_view(&list), false))
}
