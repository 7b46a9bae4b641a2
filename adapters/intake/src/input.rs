//! Input discipline: bodies are parsed strictly (unknown fields, wrong types and floats where an
//! integer belongs are refused, naming the field), and ids, currencies, amounts and strings are
//! checked here, before anything reaches the engine.

use crate::error::ApiError;
use giftcard_core::{Currency, Money, AMOUNT_MINOR_MAX};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Longest free-text field (brand, reference, recipient...).
pub const TEXT_LEN_MAX: usize = 256;

/// Parses a JSON body, naming the offending field on failure.
pub fn json<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    parse_checked(body, true)
}

/// [`json`] without the byte-scan fast path: every body gets the exact positional-struct check.
/// For tests and benchmarks that compare the two; they must agree on every body.
pub fn json_exact<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    parse_checked(body, false)
}

fn parse_checked<T: DeserializeOwned + Serialize>(body: &[u8], fast: bool) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::Invalid {
            code: "malformed_json",
            detail: "request body is empty".into(),
            field: None,
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    // Tracking the path costs a bookkeeping step per value, so only a body that fails is parsed
    // again to name the offending field; serde_json stops at the same point both times.
    let value = T::deserialize(&mut *de).map_err(|plain| {
        let de = &mut serde_json::Deserializer::from_slice(body);
        let (path, inner) = match serde_path_to_error::deserialize::<_, T>(de) {
            Err(e) => (e.path().to_string(), e.into_inner()),
            Ok(_) => (".".to_owned(), plain),
        };
        let code = if inner.is_syntax() || inner.is_eof() {
            "malformed_json"
        } else {
            "invalid_field"
        };
        let field = (path != ".").then_some(path);
        ApiError::Invalid {
            code,
            detail: inner.to_string(),
            field,
        }
    })?;
    // Without this, `{...} garbage` or two documents back to back would be accepted as the
    // first one: the body must be exactly one JSON value (whitespace around it is fine).
    de.end().map_err(|e| ApiError::Invalid {
        code: "malformed_json",
        detail: e.to_string(),
        field: None,
    })?;
    // serde lets a struct arrive as a positional array (`"amount": [2500, "USD"]`), an encoding
    // the API does not document and a reader of the body would not expect: refuse it. Almost
    // every body has arrays only as the values of list fields; those are cleared by one scan of
    // the bytes, and only the rest pay for the exact check (parse as a `Value`, compare with the
    // parsed request re-serialized).
    if fast && arrays_only_in_list_fields(body) {
        return Ok(value);
    }
    let sent: Value = serde_json::from_slice(body).map_err(|e| ApiError::Invalid {
        code: "malformed_json",
        detail: e.to_string(),
        field: None,
    })?;
    let canonical = serde_json::to_value(&value).unwrap_or(Value::Null);
    if let Some(path) = array_for_object(&sent, &canonical, String::new()) {
        return Err(ApiError::Invalid {
            code: "invalid_field",
            detail: "invalid type: array, expected an object".into(),
            field: (!path.is_empty()).then_some(path),
        });
    }
    Ok(value)
}

/// Request fields that are lists, in every request type (`list_fields_are_arrays_in_every_schema`
/// checks this against the OpenAPI document). A positional struct can hide under no other name.
pub const LIST_FIELDS: &[&str] = &["codes", "items", "orders", "rates", "regions"];

/// Whether every array in a body that already parsed as valid JSON is the value of a key in
/// [`LIST_FIELDS`] (written without escapes). A struct sent as an array would be an array under
/// another key, at the top level, or inside an array, so `true` means there is none. Strings are
/// skipped with their escapes.
fn arrays_only_in_list_fields(body: &[u8]) -> bool {
    let mut i = 0;
    // The last string seen, and whether a colon followed it (it was a key).
    let mut key: Option<&[u8]> = None;
    let mut after_colon = false;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                key = body.get(start..i.min(body.len()));
                after_colon = false;
            }
            b':' => after_colon = key.is_some(),
            b'[' => {
                let listed = after_colon
                    && key.is_some_and(|k| LIST_FIELDS.iter().any(|f| f.as_bytes() == k));
                if !listed {
                    return false;
                }
                key = None;
                after_colon = false;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                key = None;
                after_colon = false;
            }
        }
        i += 1;
    }
    true
}

/// The path of the first array in `sent` where the parsed request, re-serialized as
/// `canonical`, has an object. Walks only where both have containers, so its depth is the
/// request type's, whatever the body's nesting.
fn array_for_object(sent: &Value, canonical: &Value, path: String) -> Option<String> {
    let nested = |v: &Value| v.is_array() || v.is_object();
    match (sent, canonical) {
        (Value::Array(_), Value::Object(_)) => Some(path),
        (Value::Array(s), Value::Array(c)) => s
            .iter()
            .zip(c)
            .enumerate()
            .filter(|(_, (s, _))| nested(s))
            .find_map(|(i, (s, c))| array_for_object(s, c, format!("{path}[{i}]"))),
        (Value::Object(s), Value::Object(c)) => {
            s.iter().filter(|(_, v)| nested(v)).find_map(|(k, v)| {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                c.get(k).and_then(|c| array_for_object(v, c, at))
            })
        }
        _ => None,
    }
}

/// Checks a client-chosen id: 1-64 of `A-Za-z0-9._:-`.
pub fn id<'a>(field: &str, s: &'a str) -> Result<&'a str, ApiError> {
    let ok = (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(ApiError::invalid(
            "invalid_id",
            field,
            "ids are 1-64 characters of A-Za-z0-9._:-",
        ))
    }
}

/// Checks a wallet id in a request. A client names its own wallets by the ids it chose (the
/// engine finds them in its namespace); an admin may also name any client's wallet as
/// `{client}~{id}`.
pub fn wallet_id<'a>(field: &str, s: &'a str, admin: bool) -> Result<&'a str, ApiError> {
    match s.split_once(giftcard_core::WalletId::NAMESPACE) {
        Some((client, own)) if admin => {
            id(field, client)?;
            id(field, own)?;
            Ok(s)
        }
        _ => id(field, s),
    }
}

/// Checks a free-text field's length.
pub fn text<'a>(field: &str, s: &'a str, min: usize) -> Result<&'a str, ApiError> {
    if (min..=TEXT_LEN_MAX).contains(&s.chars().count()) && !s.chars().any(char::is_control) {
        Ok(s)
    } else {
        Err(ApiError::invalid(
            "invalid_text",
            field,
            format!("must be {min}-{TEXT_LEN_MAX} characters without control characters"),
        ))
    }
}

/// Parses an ISO 4217 currency code.
pub fn currency(field: &str, s: &str) -> Result<Currency, ApiError> {
    Currency::parse(s).ok_or_else(|| {
        ApiError::invalid(
            "invalid_currency",
            field,
            "not an active ISO 4217 currency code",
        )
    })
}

/// A positive, bounded amount of an ISO 4217 currency.
pub fn money(field: &str, m: &crate::wire::MoneyDto) -> Result<Money, ApiError> {
    let ccy = currency(&format!("{field}.currency"), &m.currency)?;
    if !(1..=AMOUNT_MINOR_MAX).contains(&m.amount_minor) {
        return Err(ApiError::invalid(
            "invalid_amount",
            format!("{field}.amount_minor"),
            format!("must be an integer from 1 to {AMOUNT_MINOR_MAX} minor units"),
        ));
    }
    Ok(Money::new(m.amount_minor, ccy))
}

/// Which decimal a string must be; each kind is a pattern the OpenAPI document states too.
#[derive(Clone, Copy, Debug)]
pub enum DecimalKind {
    /// [0, 1): discounts and the FX spread.
    Fraction,
    /// (-1, 10]: a markup (negative for a discount to the buyer).
    Markup,
    /// > 0: an FX mid rate.
    Rate,
}

impl DecimalKind {
    /// The pattern (ECMA-262 and Rust `regex` agree on it).
    pub const fn pattern(self) -> &'static str {
        match self {
            DecimalKind::Fraction => r"^0(\.[0-9]{1,12})?$",
            DecimalKind::Markup => r"^(-0\.[0-9]{1,12}|[0-9](\.[0-9]{1,12})?|10(\.0{1,12})?)$",
            DecimalKind::Rate => {
                r"^([1-9][0-9]{0,11}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9][0-9]{0,11})$"
            }
        }
    }
}

/// A rate or percentage as a decimal string ("0.15"); never a float.
pub fn decimal(field: &str, s: &str, kind: DecimalKind) -> Result<rust_decimal::Decimal, ApiError> {
    use std::str::FromStr;
    static RES: std::sync::OnceLock<Vec<regex::Regex>> = std::sync::OnceLock::new();
    let res = RES.get_or_init(|| {
        [
            DecimalKind::Fraction,
            DecimalKind::Markup,
            DecimalKind::Rate,
        ]
        .iter()
        .filter_map(|k| regex::Regex::new(k.pattern()).ok())
        .collect()
    });
    let ok = res.get(kind as usize).is_some_and(|re| re.is_match(s));
    let bad = || {
        ApiError::invalid(
            "invalid_decimal",
            field,
            format!("must be a decimal string matching {}", kind.pattern()),
        )
    };
    if !ok {
        return Err(bad());
    }
    rust_decimal::Decimal::from_str(s).map_err(|_| bad())
}

/// A decimal number made of 1 to 19 ASCII digits (card ids, cursors).
pub fn digits(field: &str, s: &str) -> Result<u64, ApiError> {
    let ok = (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    s.parse::<u64>()
        .ok()
        .filter(|_| ok)
        .ok_or_else(|| ApiError::invalid("invalid_id", field, "must be 1 to 19 decimal digits"))
}

/// The idempotency key: the `Idempotency-Key` header or the id in the body; both must agree.
pub fn idempotency_key(
    header: Option<&str>,
    body: Option<&str>,
    field: &str,
) -> Result<String, ApiError> {
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid(
                "idempotency_key_mismatch",
                field,
                "Idempotency-Key header and body id differ",
            ))
        }
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(ApiError::invalid(
                "missing_idempotency_key",
                field,
                "send an Idempotency-Key header or an id in the body",
            ))
        }
    };
    id(field, key).map(str::to_owned)
}

/// A digest of the canonical form of a request (its parsed fields re-serialized in a fixed
/// order), which the engine uses to tell a replay from a conflicting reuse of a key.
pub fn fingerprint<T: serde::Serialize>(canonical: &T) -> giftcard_core::Fingerprint {
    let bytes = serde_json::to_vec(canonical).unwrap_or_default();
    giftcard_shard::scenario::fingerprint(&bytes)
}

/// Whether a Content-Type names JSON: `application/json` or `application/<anything>+json`, with
/// or without parameters. A body declared as text/plain, a form or anything else is refused
/// rather than guessed at.
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    let essence = essence.trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) => sub == "json" || sub.ends_with("+json"),
        _ => false,
    }
}

/// A wallet's limits from the wire (also the shape of the configured defaults). Amounts are
/// 1 to `AMOUNT_MINOR_MAX` minor units, windows 1 ms to a day, counts at least 1, and one order
/// maximum per currency.
pub fn limits(
    field: &str,
    dto: &crate::wire::LimitsDto,
) -> Result<giftcard_core::limits::LimitSet, ApiError> {
    use giftcard_core::limits::{LimitSet, Velocity, RECENT_KEPT_MS, VELOCITY_LIMITS_MAX};
    let at = |f: String| {
        if field.is_empty() {
            f
        } else {
            format!("{field}.{f}")
        }
    };
    if dto.order_max.len() > 200 {
        return Err(ApiError::invalid(
            "too_many",
            at("order_max".into()),
            "at most 200 currencies",
        ));
    }
    let mut order_max = Vec::with_capacity(dto.order_max.len());
    for (i, m) in dto.order_max.iter().enumerate() {
        let m = money(&at(format!("order_max[{i}]")), m)?;
        order_max.push((m.currency(), m.minor()));
    }
    order_max.sort_by_key(|(c, _)| *c);
    if order_max.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(ApiError::invalid(
            "invalid_field",
            at("order_max".into()),
            "a currency named twice",
        ));
    }
    if dto.velocity.len() > VELOCITY_LIMITS_MAX {
        return Err(ApiError::invalid(
            "too_many",
            at("velocity".into()),
            format!("at most {VELOCITY_LIMITS_MAX} velocity limits"),
        ));
    }
    let mut velocity = Vec::with_capacity(dto.velocity.len());
    for (i, v) in dto.velocity.iter().enumerate() {
        let f = |name: &str| at(format!("velocity[{i}].{name}"));
        let ccy = currency(&f("currency"), &v.currency)?;
        if !(1..=RECENT_KEPT_MS).contains(&v.window_ms) {
            return Err(ApiError::invalid(
                "invalid_field",
                f("window_ms"),
                format!("must be 1 to {RECENT_KEPT_MS} ms (a day)"),
            ));
        }
        if v.max_orders.is_none() && v.max_amount_minor.is_none() {
            return Err(ApiError::invalid(
                "missing_field",
                f("max_orders"),
                "a velocity limit needs max_orders, max_amount_minor or both",
            ));
        }
        if v.max_orders == Some(0) {
            return Err(ApiError::invalid(
                "invalid_field",
                f("max_orders"),
                "must be at least 1",
            ));
        }
        if v.max_amount_minor
            .is_some_and(|m| !(1..=AMOUNT_MINOR_MAX).contains(&m))
        {
            return Err(ApiError::invalid(
                "invalid_amount",
                f("max_amount_minor"),
                format!("must be an integer from 1 to {AMOUNT_MINOR_MAX} minor units"),
            ));
        }
        velocity.push(Velocity {
            currency: ccy,
            window_ms: v.window_ms,
            max_orders: v.max_orders,
            max_amount_minor: v.max_amount_minor,
        });
    }
    for (name, cap) in [
        ("sku_daily_cards", dto.sku_daily_cards),
        ("brand_daily_cards", dto.brand_daily_cards),
    ] {
        if cap == Some(0) {
            return Err(ApiError::invalid(
                "invalid_field",
                at(name.into()),
                "must be at least 1 (leave it out for no cap)",
            ));
        }
    }
    let set = LimitSet {
        order_max,
        velocity,
        sku_daily_cards: dto.sku_daily_cards,
        brand_daily_cards: dto.brand_daily_cards,
    };
    debug_assert!(set.is_valid());
    Ok(set)
}

#[cfg(test)]
mod tests {

    /// The fast path changes the cost, never the answer.
    #[test]
    fn the_fast_path_and_the_exact_check_agree() {
        let bodies = [
            r#"{"order_id":"o-1","wallet_id":"w","items":[{"sku_id":"s","quantity":1}],"region":"US","delivery":{"channel":"none"}}"#,
            r#"{"order_id":"o-1","wallet_id":"w","items":[{"sku_id":"s","quantity":1,"amount":[2500,"USD"]}],"region":"US","delivery":{"channel":"none"}}"#,
            r#"{"order_id":"o-1","wallet_id":"w","items":[["s",1,null]],"region":"US","delivery":{"channel":"none"}}"#,
            r#"{"order_id":"o-1","wallet_id":"w","items":[{"sku_id":"s","quantity":1}],"region":"US","delivery":["none",""]}"#,
            r#"["o-1","w",[{"sku_id":"s","quantity":1}],"US",null,{"channel":"none"}]"#,
            r#"{"order_id":"o-1","wallet_id":"w","it\u0065ms":[{"sku_id":"s","quantity":1}],"region":"US","delivery":{"channel":"none"}}"#,
        ];
        for b in bodies {
            let fast =
                json::<crate::wire::OrderRequestDto>(b.as_bytes()).map_err(|e| e.to_string());
            let exact =
                json_exact::<crate::wire::OrderRequestDto>(b.as_bytes()).map_err(|e| e.to_string());
            assert_eq!(fast.is_ok(), exact.is_ok(), "{b}: {fast:?} / {exact:?}");
            assert_eq!(fast.err(), exact.err(), "{b}");
        }
    }

    #[test]
    fn the_fast_path_clears_list_fields_only() {
        let ok = |b: &str| arrays_only_in_list_fields(b.as_bytes());
        assert!(ok(
            r#"{"order_id":"o","items":[{"sku_id":"s","quantity":1}]}"#
        ));
        assert!(ok(r#"{"codes" : ["A[1]", "B\"[", "C"]}"#));
        assert!(!ok(r#"{"amount":[2500,"USD"]}"#));
        assert!(!ok(r#"[1, 2]"#));
        assert!(!ok(r#"{"items":[["s",1]]}"#));
        assert!(!ok(r#"{"items":[{"amount":[1,"USD"]}]}"#));
        assert!(!ok(r#"{"it\u0065ms":[1]}"#));
        assert!(!ok(r#"{"note":"items","x":[1]}"#));
    }

    use super::*;

    #[test]
    fn ids_are_1_to_64_safe_characters() {
        assert!(id("f", "order-1:a.b_c").is_ok());
        assert!(id("f", &"a".repeat(64)).is_ok());
        for bad in ["", "has space", "ünï", "a/b", &"a".repeat(65)] {
            assert!(id("f", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn money_is_positive_bounded_and_iso_4217() {
        let m = |minor, ccy: &str| {
            money(
                "amount",
                &crate::wire::MoneyDto {
                    amount_minor: minor,
                    currency: ccy.into(),
                },
            )
        };
        assert_eq!(m(2500, "USD").map(|m| m.minor()).ok(), Some(2500));
        assert!(
            m(0, "USD").is_err()
                && m(-1, "USD").is_err()
                && m(AMOUNT_MINOR_MAX + 1, "USD").is_err()
        );
        assert!(m(1, "usd").is_err() && m(1, "XXX").is_err());
    }

    #[test]
    fn idempotency_key_comes_from_header_or_body_and_both_must_agree() {
        assert_eq!(
            idempotency_key(Some("k1"), None, "id").ok().as_deref(),
            Some("k1")
        );
        assert_eq!(
            idempotency_key(None, Some("k2"), "id").ok().as_deref(),
            Some("k2")
        );
        assert_eq!(
            idempotency_key(Some("k"), Some("k"), "id").ok().as_deref(),
            Some("k")
        );
        assert!(idempotency_key(Some("a"), Some("b"), "id").is_err());
        assert!(idempotency_key(None, None, "id").is_err());
    }

    #[test]
    fn only_json_media_types_are_accepted() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!is_json_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_body_is_exactly_one_json_value() {
        let parse = |b: &'static [u8]| json::<crate::wire::CreateWallet>(b);
        assert!(parse(b" {\"wallet_id\":\"w\"}\n").is_ok());
        for bad in [
            &b"{\"wallet_id\":\"w\"} garbage"[..],
            b"{\"wallet_id\":\"w\"}{\"wallet_id\":\"v\"}",
            b"{\"wallet_id\":\"w\"}]",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ApiError::Invalid {
                        code: "malformed_json",
                        ..
                    })
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn structs_are_objects_never_positional_arrays() {
        let deposit = |b: &'static str| json::<crate::wire::DepositRequest>(b.as_bytes());
        assert!(deposit(
            r#"{"deposit_id":"d","amount":{"amount_minor":1,"currency":"USD"},"reference":"r"}"#
        )
        .is_ok());
        let e = deposit(r#"{"deposit_id":"d","amount":[1,"USD"],"reference":"r"}"#);
        assert!(
            matches!(e, Err(ApiError::Invalid { code: "invalid_field", field: Some(f), .. }) if f == "amount")
        );
        let e = deposit(r#"["d",{"amount_minor":1,"currency":"USD"},"r"]"#);
        assert!(matches!(
            e,
            Err(ApiError::Invalid {
                code: "invalid_field",
                field: None,
                ..
            })
        ));
        let e = json::<crate::wire::OrderRequestDto>(
            br#"{"order_id":"o","wallet_id":"w","items":[{"sku_id":"s","quantity":1},["s",2,null]],"region":"US","delivery":{"channel":"none"}}"#,
        );
        assert!(
            matches!(&e, Err(ApiError::Invalid { field: Some(f), .. }) if f == "items[1]"),
            "{e:?}"
        );
    }

    #[test]
    fn bodies_name_the_offending_field() {
        let e = json::<crate::wire::OrderRequestDto>(br#"{"order_id":"o","wallet_id":"w","items":[{"sku_id":"s","quantity":1.5}],"region":"US","delivery":{"channel":"none"}}"#);
        assert!(
            matches!(e, Err(ApiError::Invalid { field: Some(f), .. }) if f == "items[0].quantity")
        );
        let e = json::<crate::wire::CreateWallet>(br#"{"wallet_id":"w","extra":1}"#);
        assert!(matches!(e, Err(ApiError::Invalid { field: Some(f), .. }) if f == "extra"));
        let e = json::<crate::wire::CreateWallet>(b"{");
        assert!(matches!(
            e,
            Err(ApiError::Invalid {
                code: "malformed_json",
                ..
            })
        ));
    }
}
