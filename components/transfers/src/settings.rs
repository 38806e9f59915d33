//! The transfers component's variables: per-posting limits and idempotency key lifetime.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use wasmpay_common::config::{self, ConfigError};

/// The most one posting may move, per currency: `"*=1000000, VND=25000000000"` (major
/// units; `*` covers the currencies not named; without `*`, unnamed currencies have no limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits(Vec<(String, Decimal)>);

impl Limits {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut limits = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (code, amount) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?} is not CODE=AMOUNT"))?;
            let code = code.trim().to_ascii_uppercase();
            if code != "*" && (code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(format!("{code:?} is not a currency code or *"));
            }
            let amount = Decimal::from_str(amount.trim()).map_err(|e| format!("{entry:?}: {e}"))?;
            if amount <= Decimal::ZERO {
                return Err(format!("{entry:?}: a limit must be positive"));
            }
            limits.push((code, amount));
        }
        Ok(Self(limits))
    }

    pub fn load(name: &'static str) -> Result<Self, ConfigError> {
        Self::parse(&config::text(name)?).map_err(|reason| ConfigError::Invalid { name, reason })
    }

    pub fn for_currency(&self, code: &str) -> Option<Decimal> {
        let find = |wanted: &str| self.0.iter().find(|(c, _)| c == wanted).map(|(_, amount)| *amount);
        find(code).or_else(|| find("*"))
    }

    /// As the ledger's functions take them: `{"VND": "25000000000", "*": "1000000"}`.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self.0.iter().map(|(code, amount)| (code.clone(), Value::String(amount.to_string()))).collect();
        Value::Object(map)
    }
}

/// How long an idempotency key (and the response it replays) is kept.
pub fn idempotency_key_ttl_secs() -> Result<i64, ConfigError> {
    config::parsed("idempotency_key_ttl_secs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_currencies_override_the_default() {
        let limits = Limits::parse("*=1000000, vnd=25000000000").unwrap();
        assert_eq!(limits.for_currency("VND"), Some(Decimal::from(25_000_000_000_i64)));
        assert_eq!(limits.for_currency("USD"), Some(Decimal::from(1_000_000)));
        assert_eq!(Limits::parse("USD=10").unwrap().for_currency("EUR"), None);
    }

    #[test]
    fn malformed_limits_are_refused() {
        for text in ["USD", "US=1", "USD=x", "USD=-1", "USD=0"] {
            assert!(Limits::parse(text).is_err(), "{text}");
        }
    }
}
