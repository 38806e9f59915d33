//! Per-currency settings: `"*=1000000, VND=25000000000"`. A named currency overrides `*`,
//! which covers the currencies not named; without `*` the others have no entry.

use alloc::{
    string::{String, ToString},
    vec::Vec,
};
use core::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct CurrencyTable<T>(Vec<(String, T)>);

#[derive(Debug, Clone, PartialEq)]
pub struct TableError(String);

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<T> CurrencyTable<T> {
    /// Parses `CODE=VALUE` entries separated by commas, each value by `value`.
    pub fn parse(text: &str, value: impl Fn(&str) -> Result<T, String>) -> Result<Self, TableError> {
        let mut entries = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (code, text) = entry
                .split_once('=')
                .ok_or_else(|| TableError(alloc::format!("{entry:?} is not CODE=VALUE")))?;
            let code = code.trim().to_ascii_uppercase();
            if code != "*" && (code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase())) {
                return Err(TableError(alloc::format!("{code:?} is not a currency code or *")));
            }
            if entries.iter().any(|(seen, _): &(String, T)| *seen == code) {
                return Err(TableError(alloc::format!("{code} is given twice")));
            }
            let parsed = value(text.trim()).map_err(|reason| TableError(alloc::format!("{entry:?}: {reason}")))?;
            entries.push((code, parsed));
        }
        Ok(Self(entries))
    }

    /// The entry for `code`, else the `*` entry.
    pub fn for_currency(&self, code: &str) -> Option<&T> {
        let find = |wanted: &str| self.0.iter().find(|(c, _)| c == wanted).map(|(_, value)| value);
        find(code).or_else(|| find("*"))
    }

    /// Every entry, `*` as `None`: for rules the ledger applies once it knows the currency.
    pub fn entries(&self) -> impl Iterator<Item = (Option<&str>, &T)> {
        self.0.iter().map(|(code, value)| ((code != "*").then_some(code.as_str()), value))
    }
}

/// A positive decimal amount in major units.
pub fn positive_amount(text: &str) -> Result<rust_decimal::Decimal, String> {
    let amount: rust_decimal::Decimal = text.parse().map_err(|_| alloc::format!("{text:?} is not a decimal amount"))?;
    if amount <= rust_decimal::Decimal::ZERO {
        return Err("must be positive".to_string());
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_currencies_override_the_default() {
        let table = CurrencyTable::parse("*=1000000, vnd=25000000000", positive_amount).unwrap();
        assert_eq!(table.for_currency("VND").map(|a| a.to_string()).as_deref(), Some("25000000000"));
        assert_eq!(table.for_currency("USD").map(|a| a.to_string()).as_deref(), Some("1000000"));
        assert_eq!(CurrencyTable::parse("USD=10", positive_amount).unwrap().for_currency("EUR"), None);
        let entries: Vec<_> = table.entries().map(|(code, _)| code).collect();
        assert_eq!(entries, [None, Some("VND")]);
    }

    #[test]
    fn malformed_tables_are_refused() {
        for text in ["USD", "US=1", "USD=x", "USD=-1", "USD=0", "USD=1,usd=2"] {
            assert!(CurrencyTable::parse(text, positive_amount).is_err(), "{text}");
        }
    }
}
