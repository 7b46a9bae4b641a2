//! Money: integer minor units of one ISO 4217 currency, with checked arithmetic only, and the one
//! place where a decimal rate turns back into minor units. Never holds a float.

use crate::Rejection;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Active ISO 4217 codes with their minor-unit exponent. Codes without minor units in the
/// standard's table (precious metals, testing codes) are deliberately absent.
const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWL", 2),
];

/// An ISO 4217 currency: three upper-case ASCII letters known to the table above.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses an upper-case ISO 4217 code; lower case and unknown codes are refused.
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        ISO_4217
            .iter()
            .any(|(c, _)| c.as_bytes() == bytes)
            .then_some(Currency(bytes))
    }

    /// Digits after the decimal point in this currency's minor unit (USD 2, JPY 0, KWD 3).
    pub fn exponent(self) -> u8 {
        ISO_4217
            .iter()
            .find(|(c, _)| c.as_bytes() == self.0)
            .map_or(2, |(_, e)| *e)
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // Constructed only from table entries, which are ASCII.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of one currency in integer minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

impl Money {
    /// An amount in minor units.
    pub const fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }
    /// Zero of a currency.
    pub const fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }
    /// The amount in minor units.
    pub const fn minor(self) -> i64 {
        self.minor
    }
    /// The currency.
    pub const fn currency(self) -> Currency {
        self.currency
    }

    /// Adds two amounts of the same currency, refusing overflow.
    pub fn checked_add(self, rhs: Money) -> Result<Money, Rejection> {
        if self.currency != rhs.currency {
            return Err(Rejection::CurrencyMismatch);
        }
        let minor = self
            .minor
            .checked_add(rhs.minor)
            .ok_or(Rejection::AmountOutOfRange)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }

    /// Subtracts an amount of the same currency, refusing overflow.
    pub fn checked_sub(self, rhs: Money) -> Result<Money, Rejection> {
        if self.currency != rhs.currency {
            return Err(Rejection::CurrencyMismatch);
        }
        let minor = self
            .minor
            .checked_sub(rhs.minor)
            .ok_or(Rejection::AmountOutOfRange)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }

    /// Multiplies by a count (cards in an order), refusing overflow.
    pub fn checked_mul(self, n: u32) -> Result<Money, Rejection> {
        let minor = self
            .minor
            .checked_mul(i64::from(n))
            .ok_or(Rejection::AmountOutOfRange)?;
        Ok(Money {
            minor,
            currency: self.currency,
        })
    }
}

/// Scales an amount by a decimal factor and rounds to the target currency's minor unit,
/// half to even (banker's rounding), so that repeated conversions carry no upward bias.
/// `factor` already includes any exponent difference between the two currencies.
pub fn scale_half_even(minor: i64, factor: Decimal, target: Currency) -> Result<Money, Rejection> {
    let raw = Decimal::from(minor)
        .checked_mul(factor)
        .ok_or(Rejection::AmountOutOfRange)?;
    let rounded = raw.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    let minor = rounded.to_i64().ok_or(Rejection::AmountOutOfRange)?;
    Ok(Money::new(minor, target))
}

/// Converts an amount to another currency at `rate` (units of `to` per unit of `from`), rounding
/// half to even to the target's minor unit. The exponents of both currencies are honoured:
/// 1.00 USD at 150 JPY/USD is 150 JPY, i.e. 100 minor units become 150 minor units.
pub fn convert(amount: Money, to: Currency, rate: Decimal) -> Result<Money, Rejection> {
    let shift = i32::from(to.exponent()) - i32::from(amount.currency().exponent());
    let mut factor = rate;
    let ten = Decimal::from(10);
    for _ in 0..shift.unsigned_abs() {
        factor = if shift > 0 {
            factor.checked_mul(ten)
        } else {
            factor.checked_div(ten)
        }
        .ok_or(Rejection::AmountOutOfRange)?;
    }
    scale_half_even(amount.minor(), factor, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ccy(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn currencies_are_checked_against_iso_4217() {
        assert!(Currency::parse("USD").is_some());
        assert!(Currency::parse("usd").is_none());
        assert!(Currency::parse("XXX").is_none());
        assert!(Currency::parse("US").is_none());
        assert_eq!(ccy("JPY").exponent(), 0);
        assert_eq!(ccy("KWD").exponent(), 3);
    }

    #[test]
    fn arithmetic_refuses_overflow_and_mixed_currencies() {
        let max = Money::new(i64::MAX, ccy("USD"));
        assert_eq!(
            max.checked_add(Money::new(1, ccy("USD"))),
            Err(Rejection::AmountOutOfRange)
        );
        assert_eq!(
            Money::new(1, ccy("USD")).checked_add(Money::new(1, ccy("EUR"))),
            Err(Rejection::CurrencyMismatch)
        );
        assert_eq!(
            Money::new(i64::MAX / 2 + 1, ccy("USD")).checked_mul(2),
            Err(Rejection::AmountOutOfRange)
        );
    }

    #[test]
    fn conversion_rounds_half_to_even_and_honours_exponents() {
        let rate = Decimal::from_str("0.5").unwrap();
        // 0.5 minor units rounds to 0 (even), 1.5 rounds to 2 (even), 2.5 rounds to 2.
        assert_eq!(
            convert(Money::new(1, ccy("USD")), ccy("EUR"), rate)
                .unwrap()
                .minor(),
            0
        );
        assert_eq!(
            convert(Money::new(3, ccy("USD")), ccy("EUR"), rate)
                .unwrap()
                .minor(),
            2
        );
        assert_eq!(
            convert(Money::new(5, ccy("USD")), ccy("EUR"), rate)
                .unwrap()
                .minor(),
            2
        );
        // 1.00 USD at 150 JPY per USD is 150 JPY.
        let jpy = convert(Money::new(100, ccy("USD")), ccy("JPY"), Decimal::from(150)).unwrap();
        assert_eq!(jpy, Money::new(150, ccy("JPY")));
        // 1.000 KWD at 3.25 USD per KWD is 3.25 USD.
        let usd = convert(
            Money::new(1000, ccy("KWD")),
            ccy("USD"),
            Decimal::from_str("3.25").unwrap(),
        )
        .unwrap();
        assert_eq!(usd, Money::new(325, ccy("USD")));
    }
}
