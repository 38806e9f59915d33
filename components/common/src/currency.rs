//! ISO 4217 currencies with their minor-unit exponents (data from the `iso_currency` crate).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    iso: iso_currency::Currency,
    scale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("must be a three-letter ISO 4217 currency code")]
    Malformed,
    #[error("{0} is not an ISO 4217 currency")]
    Unknown(String),
    #[error("{0} has no minor unit defined by ISO 4217 and cannot hold money here")]
    NoMinorUnit(String),
}

impl Currency {
    /// Parses a code such as `USD` (case-insensitive). Codes without an ISO 4217 minor unit
    /// (precious metals, the "no currency" code, testing codes) are refused: no wallet can
    /// hold them.
    pub fn parse(code: &str) -> Result<Self, CurrencyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(CurrencyError::Malformed);
        }
        let code = code.to_ascii_uppercase();
        let iso = iso_currency::Currency::from_code(&code).ok_or_else(|| CurrencyError::Unknown(code.clone()))?;
        let scale = iso.exponent().ok_or(CurrencyError::NoMinorUnit(code))?;
        Ok(Self {
            iso,
            scale: u32::from(scale),
        })
    }

    pub fn code(&self) -> &'static str {
        self.iso.code()
    }

    /// Digits after the decimal point in the currency's minor unit: USD 2, VND 0, BHD 3.
    pub fn scale(&self) -> u32 {
        self.scale
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_follow_iso_4217() {
        for (code, scale) in [("USD", 2), ("VND", 0), ("JPY", 0), ("BHD", 3), ("EUR", 2), ("CLF", 4)] {
            assert_eq!(Currency::parse(code).unwrap().scale(), scale, "{code}");
        }
    }

    #[test]
    fn codes_are_case_insensitive_and_normalised() {
        assert_eq!(Currency::parse("usd").unwrap().code(), "USD");
    }

    #[test]
    fn refuses_unknown_malformed_and_unitless_codes() {
        assert_eq!(Currency::parse("ABC"), Err(CurrencyError::Unknown("ABC".into())));
        assert_eq!(Currency::parse("US"), Err(CurrencyError::Malformed));
        assert_eq!(Currency::parse("U$D"), Err(CurrencyError::Malformed));
        assert_eq!(Currency::parse("XAU"), Err(CurrencyError::NoMinorUnit("XAU".into())));
    }
}
