//! Amounts of money: decimal strings in major units, never floats, never rounded.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::currency::Currency;

/// A positive amount in a currency, with no more decimals than the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal string in major units such as \"12.34\"")]
    Malformed,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("{currency} allows at most {scale} decimal places")]
    TooPrecise { currency: &'static str, scale: u32 },
    #[error("is too large")]
    TooLarge,
    #[error("allows at most 4 decimal places")]
    TooPreciseForAnyCurrency,
}

/// Longest digit string accepted; `rust_decimal` and Spin's NUMERIC mapping hold 28 digits.
const MAX_DIGITS: usize = 28;
/// No ISO 4217 currency has a finer minor unit, and the ledger keeps 4 decimals.
pub const MAX_SCALE: u32 = 4;
/// The ledger's NUMERIC(28, 4): at most 24 digits before the point.
const MAX_WHOLE_DIGITS: usize = 24;

/// Parses a positive `"12.34"`-style amount whose currency is not known yet (the ledger
/// checks it against the wallet's scale). Signs, exponents, spaces, separators and leading
/// zeros are refused; so is anything finer than any currency's minor unit. Trailing zeros
/// carry no precision (`"1.50000"` is 1.5). openapi.yaml's `PositiveAmount` pattern states
/// exactly these rules.
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = whole.len() > 1 && whole.starts_with('0');
    if !digits_only(whole) || leading_zero || fraction.is_some_and(|f| !digits_only(f)) {
        return Err(MoneyError::Malformed);
    }
    if whole.len() + fraction.map_or(0, str::len) > MAX_DIGITS {
        return Err(MoneyError::TooLarge);
    }
    let amount = Decimal::from_str(text).map_err(|_| MoneyError::Malformed)?.normalize();
    if amount.trunc().to_string().len() > MAX_WHOLE_DIGITS {
        return Err(MoneyError::TooLarge);
    }
    if amount.scale() > MAX_SCALE {
        return Err(MoneyError::TooPreciseForAnyCurrency);
    }
    if amount <= Decimal::ZERO {
        return Err(MoneyError::NotPositive);
    }
    Ok(amount)
}

impl Money {
    /// Parses `"12.34"`-style text. A value with more decimals than the currency allows is
    /// an error, not a rounding.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let amount = match parse_amount(text) {
            Err(MoneyError::TooPreciseForAnyCurrency) => {
                return Err(MoneyError::TooPrecise {
                    currency: currency.code(),
                    scale: currency.scale(),
                });
            }
            other => other?,
        };
        if amount.scale() > currency.scale() {
            return Err(MoneyError::TooPrecise {
                currency: currency.code(),
                scale: currency.scale(),
            });
        }
        Self::new(amount, currency)
    }

    /// An amount computed or read from the database rather than typed by a user.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if amount.normalize().scale() > currency.scale() {
            return Err(MoneyError::TooPrecise {
                currency: currency.code(),
                scale: currency.scale(),
            });
        }
        Ok(Self { amount, currency })
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount as the API shows it: at exactly the currency's scale.
    pub fn to_api_string(&self) -> String {
        format_amount(self.amount, self.currency)
    }
}

/// Renders any amount (balances may be zero or, for settlement accounts, negative) at the
/// currency's scale: `"0.00"` USD, `"0"` VND, `"0.000"` BHD.
pub fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut rendered = amount;
    rendered.rescale(currency.scale());
    rendered.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn parses_major_units_within_the_scale() {
        assert_eq!(Money::parse("12.34", usd()).unwrap().to_api_string(), "12.34");
        assert_eq!(Money::parse("12.3", usd()).unwrap().to_api_string(), "12.30");
        assert_eq!(Money::parse("7", usd()).unwrap().to_api_string(), "7.00");
        // Trailing zeros beyond the scale carry no precision.
        assert_eq!(Money::parse("1.500", usd()).unwrap().to_api_string(), "1.50");
    }

    #[test]
    fn refuses_more_decimals_than_the_currency_allows() {
        let vnd = Currency::parse("VND").unwrap();
        assert_eq!(
            Money::parse("10.5", vnd),
            Err(MoneyError::TooPrecise { currency: "VND", scale: 0 })
        );
        assert!(matches!(Money::parse("0.001", usd()), Err(MoneyError::TooPrecise { .. })));
    }

    #[test]
    fn refuses_anything_but_plain_positive_decimals() {
        for text in ["", "-1", "+1", "1e3", " 1", "1 ", "1,00", "1.", ".5", "0x10", "NaN", "1.2.3", "01", "00.5"] {
            assert_eq!(Money::parse(text, usd()), Err(MoneyError::Malformed), "{text:?}");
        }
        assert_eq!(Money::parse("0", usd()), Err(MoneyError::NotPositive));
        assert_eq!(Money::parse("0.00", usd()), Err(MoneyError::NotPositive));
        assert_eq!(Money::parse(&"9".repeat(29), usd()), Err(MoneyError::TooLarge));
        assert_eq!(Money::parse(&"9".repeat(25), usd()), Err(MoneyError::TooLarge), "beyond NUMERIC(28, 4)");
    }

    #[test]
    fn amounts_without_a_currency_stop_at_four_decimals() {
        assert_eq!(parse_amount("1.2345").unwrap().to_string(), "1.2345");
        assert_eq!(parse_amount("1.23450").unwrap().to_string(), "1.2345");
        assert_eq!(parse_amount("1.23456"), Err(MoneyError::TooPreciseForAnyCurrency));
        assert_eq!(parse_amount("0"), Err(MoneyError::NotPositive));
        assert_eq!(parse_amount("0.5").unwrap().to_string(), "0.5");
    }

    #[test]
    fn formats_at_the_currency_scale() {
        let bhd = Currency::parse("BHD").unwrap();
        assert_eq!(format_amount(Decimal::ZERO, bhd), "0.000");
        assert_eq!(format_amount(Decimal::ZERO, Currency::parse("VND").unwrap()), "0");
        assert_eq!(format_amount(Decimal::new(-1250, 2), usd()), "-12.50");
    }
}
