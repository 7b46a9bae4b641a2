//! The redemption body parser of the HTTP adapter (`giftcard_http::routes::parse_redemption`:
//! strict JSON, idempotency key, code and amount checks). Errors, never panics; whatever it
//! accepts is within the documented bounds. The first byte chooses whether an
//! `Idempotency-Key` header is sent along.
#![no_main]

use giftcard_core::AMOUNT_MINOR_MAX;
use giftcard_http::routes::parse_redemption;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let header = match mode % 3 {
        0 => None,
        1 => Some("key-1"),
        _ => Some("bad key\u{202e}"),
    };
    let Ok(r) = parse_redemption(header, body) else {
        return;
    };
    assert!((1..=64).contains(&r.redemption_id.len()));
    assert!(r
        .redemption_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)));
    assert!(header.map_or(true, |h| h == r.redemption_id));
    assert!((4..=128).contains(&r.code.len()) && r.code.bytes().all(|b| b.is_ascii_graphic()));
    assert!((1..=AMOUNT_MINOR_MAX).contains(&r.amount.minor()));
    assert_eq!(r.amount.minor(), r.amount_dto.amount_minor);
});
