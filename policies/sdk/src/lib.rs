//! The shared half of wasmpay's Rust policy plugins, for the current plugin contract,
//! `wasmpay:policy@0.2.0`.
//!
//! A plugin crate implements [`Guest`] and calls [`export!`]; built for `wasm32-wasip2` it
//! becomes a component that exports `wasmpay:policy/policy@0.2.0` and imports nothing: on
//! wasm this crate is `no_std` (no WASI-backed standard library) and links
//! `wasmpay-policy-runtime`, which brings the allocator and turns a panic into a trap (its
//! docs, "Memory", say why a plugin's `build.rs` asks for a 16 KiB stack). Natively it is an
//! ordinary crate, so plugin rules are unit-tested with `cargo test`.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

mod table;

#[cfg(target_arch = "wasm32")]
use wasmpay_policy_runtime as _;

pub use rust_decimal::{Decimal, RoundingStrategy};
pub use table::{CurrencyTable, TableError, positive_amount};

wit_bindgen::generate!({
    path: "../../wit/policy",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export_policy",
    default_bindings_module: "wasmpay_policy",
});

pub use exports::wasmpay::policy0_2_0::policy::{
    Ceiling, Condition, Currency, Decision, Guest, Posting, PostingKind, Recipient, Refusal, Requirement, Terms,
};

/// Makes `$plugin` (a type implementing [`Guest`]) the component's export. Only on wasm:
/// the canonical ABI's export names are not symbols a native linker accepts.
#[macro_export]
macro_rules! export {
    ($plugin:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::export_policy!($plugin with_types_in $crate);
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Posting, ::std::vec::Vec<(::std::string::String, ::std::string::String)>) -> $crate::Decision =
            <$plugin as $crate::Guest>::evaluate;
    };
}

/// The value of the setting `name`, if the operator set one.
pub fn setting<'a>(settings: &'a [(alloc::string::String, alloc::string::String)], name: &str) -> Option<&'a str> {
    settings.iter().find(|(key, _)| key == name).map(|(_, value)| value.trim()).filter(|value| !value.is_empty())
}

/// The operator's per-currency table `name`, parsed by `value`: `Ok(None)` when it is unset,
/// `Err` with the [`misconfigured`] refusal when it does not parse.
pub fn table<T>(
    settings: &[(alloc::string::String, alloc::string::String)],
    name: &str,
    value: impl Fn(&str) -> Result<T, alloc::string::String>,
) -> Result<Option<CurrencyTable<T>>, Decision> {
    setting(settings, name)
        .map(|text| CurrencyTable::parse(text, value).map_err(|error| misconfigured(name, &error)))
        .transpose()
}

impl PostingKind {
    /// Whether the posting is a transfer between two users' wallets, the hold that announces
    /// one or the capture that makes one: rules on transfers apply to all three.
    pub fn is_transfer(self) -> bool {
        matches!(self, PostingKind::Transfer | PostingKind::Hold | PostingKind::Capture)
    }
}

/// For a transfer, a hold or a capture ([`PostingKind::is_transfer`]), the operator's table
/// `name` (as [`table`]); `Ok(None)` for any other posting: for rules that apply to
/// transfers only.
pub fn transfer_table<T>(
    posting: &Posting,
    settings: &[(alloc::string::String, alloc::string::String)],
    name: &str,
    value: impl Fn(&str) -> Result<T, alloc::string::String>,
) -> Result<Option<CurrencyTable<T>>, Decision> {
    if !posting.kind.is_transfer() {
        return Ok(None);
    }
    table(settings, name, value)
}

/// A decimal amount as the engine sends it ("12.50"); `None` if it is not one.
pub fn amount(text: &str) -> Option<Decimal> {
    text.parse().ok()
}

/// Allows the posting with no fee and nothing for the ledger to check.
pub fn allow() -> Decision {
    Decision::Allow(Terms {
        fee: None,
        requirements: alloc::vec::Vec::new(),
    })
}

impl Refusal {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<alloc::string::String>) -> Self {
        Self {
            status,
            slug: slug.into(),
            title: title.into(),
            detail: detail.into(),
        }
    }
}

/// The refusal a plugin returns when the operator's settings cannot be read, so that a
/// typo in a setting stops postings loudly instead of silently dropping a rule.
pub fn misconfigured(setting: &str, error: &TableError) -> Decision {
    Decision::Refuse(Refusal::new(
        503,
        "policy-misconfigured",
        "Policy misconfigured",
        alloc::format!("the platform's setting {setting} is invalid ({error}); no posting is possible until it is fixed"),
    ))
}
