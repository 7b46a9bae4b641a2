//! A SKU's suppliers beyond its own (admin): their discounts, priorities and the routing policy.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::sourcing::{Offer, Routing, Sourcing, OFFERS_MAX};
use giftcard_core::{Command, SkuId, SupplierId};
use giftcard_shard::{Query, QueryAnswer};

fn sourcing_view(s: &Sourcing) -> SourcingDto {
    SourcingDto {
        routing: Some(
            match s.routing {
                Routing::LowestCost => "lowest_cost",
                Routing::Priority => "priority",
            }
            .to_owned(),
        ),
        primary_priority: s.primary_priority,
        offers: s
            .offers
            .iter()
            .map(|o| OfferDto {
                supplier_id: o.supplier.as_str().to_owned(),
                wholesale_discount: o.wholesale_discount.normalize().to_string(),
                priority: o.priority,
            })
            .collect(),
    }
}

fn parse_sourcing(dto: &SourcingDto) -> Result<Sourcing, ApiError> {
    let routing = match dto.routing.as_deref() {
        None | Some("lowest_cost") => Routing::LowestCost,
        Some("priority") => Routing::Priority,
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_field",
                "routing",
                "lowest_cost or priority",
            ))
        }
    };
    if dto.offers.len() > OFFERS_MAX {
        return Err(ApiError::invalid(
            "too_many",
            "offers",
            format!("at most {OFFERS_MAX} offers"),
        ));
    }
    let mut offers = Vec::with_capacity(dto.offers.len());
    for (i, o) in dto.offers.iter().enumerate() {
        let at = |f: &str| format!("offers[{i}].{f}");
        let supplier = SupplierId::new(input::id(&at("supplier_id"), &o.supplier_id)?);
        if offers.iter().any(|x: &Offer| x.supplier == supplier) {
            return Err(ApiError::invalid(
                "invalid_field",
                at("supplier_id"),
                "a supplier named twice",
            ));
        }
        offers.push(Offer {
            supplier,
            wholesale_discount: input::decimal(
                &at("wholesale_discount"),
                &o.wholesale_discount,
                input::DecimalKind::Fraction,
            )?,
            priority: o.priority,
        });
    }
    Ok(Sourcing {
        routing,
        primary_priority: dto.primary_priority,
        offers,
    })
}

/// Replaces a SKU's suppliers beyond its own. Each named supplier then uploads codes to its own
/// pool of the SKU, and orders take codes by the routing, failing over when a pool runs dry. A
/// SKU of issued cards, or an offer from the SKU's own supplier, is `422 invalid_sourcing`.
#[utoipa::path(put, path = "/v1/skus/{sku_id}/suppliers", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    request_body = SourcingDto, responses((status = 200, body = SourcingDto)), security(("bearer" = [])))]
pub async fn put_sourcing(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<SourcingDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = SkuId::new(input::id("sku_id", &path)?);
    let sourcing = parse_sourcing(&body.parse()?)?;
    state
        .submit(Command::SetSourcing {
            sku,
            sourcing: sourcing.clone(),
        })
        .await?;
    Ok(reply(StatusCode::OK, &sourcing_view(&sourcing), false))
}

/// A SKU's suppliers beyond its own (none when it has only its own).
#[utoipa::path(get, path = "/v1/skus/{sku_id}/suppliers", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = SourcingDto)), security(("bearer" = [])))]
pub async fn get_sourcing(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = SkuId::new(input::id("sku_id", &path)?);
    let QueryAnswer::Sourcing(s) = state.ask(Query::Sourcing { sku }).await? else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &sourcing_view(&s), false))
}
