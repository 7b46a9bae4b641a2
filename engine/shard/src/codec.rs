//! The journal's record payload: a versioned bincode envelope around a core event.

use giftcard_core::Event;

/// Version of the envelope written today. Version 2 added the fees at the end of a completed
/// order (version 1 records are read with none); version 3 the time of a redemption and of a
/// reversal (read as 0 from older records).
pub const EVENT_VERSION: u8 = 3;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record payload")]
    Empty,
    #[error("unknown event version {0}")]
    UnknownVersion(u8),
    #[error("malformed event")]
    Malformed(#[from] bincode::Error),
}

/// Appends an event's envelope to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, event: &Event) {
    buf.push(EVENT_VERSION);
    // Serializing a plain enum into a Vec cannot fail.
    let _ = bincode::serialize_into(buf, event);
}

/// Decodes an envelope.
pub fn decode(payload: &[u8]) -> Result<Event, DecodeError> {
    let (&version, body) = payload.split_first().ok_or(DecodeError::Empty)?;
    if version == 0 || version > EVENT_VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    use bincode::Options;
    // Bounded: a hostile length prefix cannot make the decoder allocate more than the payload.
    let opts = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(payload.len() as u64 * 4 + 1024);
    if version < EVENT_VERSION {
        return Ok(giftcard_core::event::decode_version(version, || {
            opts.deserialize(body)
        })?);
    }
    Ok(opts.deserialize(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use giftcard_core::event::{CompletedOrder, DeliveryChannel};
    use giftcard_core::fees::FeeKind;
    use giftcard_core::*;

    fn completed(fees: Vec<(FeeKind, Money)>) -> Event {
        let usd = Currency::parse("USD").expect("USD");
        Event::OrderCompleted(Box::new(CompletedOrder {
            key: OrderKey {
                client: ClientId::new("c"),
                order_id: OrderId::new("o"),
            },
            fingerprint: [1; 16],
            wallet: WalletId::new("c~w"),
            charged: Money::new(2_500, usd),
            captured_hold: None,
            first_card: CardId(7),
            lines: vec![],
            channel: DeliveryChannel::Sms,
            recipient: "+15550100".into(),
            at: UnixMillis(9),
            fees,
        }))
    }

    /// Version 2 records carry a completed order's fees; version 1 records (written before
    /// fees existed, without the trailing field) still decode, with none.
    #[test]
    fn completed_orders_of_both_versions_decode() {
        let usd = Currency::parse("USD").expect("USD");
        let with_fees = completed(vec![(FeeKind::Order, Money::new(50, usd))]);
        let mut buf = Vec::new();
        encode_into(&mut buf, &with_fees);
        assert_eq!(buf[0], 3);
        assert_eq!(decode(&buf).expect("v3 decodes"), with_fees);
        // A version 2 record of a completed order has the same layout.
        let mut v2 = buf.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2).expect("v2 decodes"), with_fees);
        // A version 1 record is the same bytes without the fee list's length (8 bytes, fixint).
        let without = completed(vec![]);
        let mut v1 = Vec::new();
        encode_into(&mut v1, &without);
        v1.truncate(v1.len() - 8);
        v1[0] = 1;
        assert_eq!(decode(&v1).expect("v1 decodes"), without);
        // The flag is reset after a v1 record: the next v2 record reads its fees.
        assert_eq!(decode(&buf).expect("v2 after v1"), with_fees);
        assert!(matches!(
            decode(&[4, 0]),
            Err(DecodeError::UnknownVersion(4))
        ));
    }

    /// Version 3 records carry a redemption's and a reversal's time; older ones, without the
    /// trailing field, decode with 0.
    #[test]
    fn redemptions_of_every_version_decode() {
        let usd = Currency::parse("USD").expect("USD");
        let redeemed = |at| Event::Redeemed {
            client: ClientId::new("m"),
            redemption_id: RequestId::new("r"),
            fingerprint: [2; 16],
            card: CardId(3),
            amount: Money::new(700, usd),
            at: UnixMillis(at),
        };
        let reversed = |at| Event::RedemptionReversed {
            client: ClientId::new("m"),
            redemption_id: RequestId::new("r"),
            card: CardId(3),
            amount: Money::new(700, usd),
            at: UnixMillis(at),
        };
        for (now, legacy) in [(redeemed(42), redeemed(0)), (reversed(42), reversed(0))] {
            let mut buf = Vec::new();
            encode_into(&mut buf, &now);
            assert_eq!(decode(&buf).expect("v3 decodes"), now);
            let mut old = buf.clone();
            old.truncate(old.len() - 8);
            for v in [1, 2] {
                old[0] = v;
                assert_eq!(decode(&old).expect("an older record decodes"), legacy);
            }
            assert_eq!(decode(&buf).expect("v3 after an older one"), now);
        }
    }
}
