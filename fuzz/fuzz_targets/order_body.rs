//! The order body parser of the HTTP adapter (`giftcard_intake::orders::parse_order`, re-exported as `giftcard_http::routes::parse_order`: strict JSON,
//! then every check `POST /v1/orders` makes before the engine). Errors, never panics; whatever
//! it accepts is within the documented bounds.
#![no_main]

use giftcard_core::{Caller, ClientId, AMOUNT_MINOR_MAX, ORDER_CARDS_MAX};
use giftcard_http::routes::{parse_order, ORDER_LINES_MAX};
use libfuzzer_sys::fuzz_target;

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let who = Caller {
        client: ClientId::new("fuzz-client"),
        admin: false,
    };
    let Ok(order) = parse_order(&who, data) else {
        return;
    };
    assert!(valid_id(order.key.order_id.as_str()) && valid_id(order.wallet.as_str()));
    assert!(valid_id(&order.region));
    assert!((1..=ORDER_LINES_MAX).contains(&order.items.len()));
    assert!((1..=u64::from(ORDER_CARDS_MAX)).contains(&order.card_count()));
    for item in &order.items {
        assert!(item.quantity >= 1 && valid_id(item.sku.as_str()));
        assert!(item
            .amount_minor
            .map_or(true, |a| (1..=AMOUNT_MINOR_MAX).contains(&a)));
    }
    assert!(!order.admin && order.fresh_codes.is_empty());
});
