//! The shared half of wasmpay's Rust policy plugins.
//!
//! A plugin crate implements [`Guest`] and calls [`export!`]; built for `wasm32-wasip2` it
//! becomes a component that exports `wasmpay:policy/policy@0.1.0` and imports nothing: on
//! wasm this crate is `no_std` (no WASI-backed standard library), brings its own allocator
//! and turns a panic into a trap. Natively it is an ordinary crate, so plugin rules are
//! unit-tested with `cargo test`.
//!
//! # Memory
//!
//! Spin instantiates every plugin for every request, and resets each instance's linear
//! memory when the request ends: a plugin's memory is paid for per posting, page by page.
//! A plugin's `build.rs` asks for a 16 KiB stack (`cargo::rustc-link-arg-cdylib=-zstack-size=16384`)
//! instead of the linker's 1 MiB, which a rule that parses a setting and compares two
//! decimals never comes near; the stack comes first, so an overflow traps instead of
//! overwriting data. Stack, data and a posting's allocations then fit in the one 64 KiB
//! page the module declares, and the allocator never grows memory for them. Measured under
//! Spin with three plugins: 17 pages each cost 23 % of `POST /transfers` throughput, 2
//! pages (a 64 KiB stack) 0.28 ms of Spin's CPU per request, 1 page 0.09 ms.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

#[cfg(target_arch = "wasm32")]
mod runtime;
mod table;

pub use rust_decimal::{Decimal, RoundingStrategy};
pub use table::{CurrencyTable, TableError, positive_amount};

wit_bindgen::generate!({
    path: "../../wit/policy",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "export_policy",
    default_bindings_module: "wasmpay_policy",
});

pub use exports::wasmpay::policy::policy::{
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

/// For a transfer, the operator's table `name` (as [`table`]); `Ok(None)` for any other
/// posting: for rules that apply to transfers only.
pub fn transfer_table<T>(
    posting: &Posting,
    settings: &[(alloc::string::String, alloc::string::String)],
    name: &str,
    value: impl Fn(&str) -> Result<T, alloc::string::String>,
) -> Result<Option<CurrencyTable<T>>, Decision> {
    if posting.kind != PostingKind::Transfer {
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
