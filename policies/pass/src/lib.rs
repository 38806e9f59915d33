//! The default plugin of the engine's compatibility slot, which speaks contract
//! `wasmpay:policy@0.1.0`: it allows every posting, with no fee and nothing for the ledger
//! to check. Spin fills every import of the transfers component or refuses to start, so the
//! slot needs a plugin even where no 0.1.0 plugin is run; an operator who runs one puts it
//! there instead (README, "Writing a policy plugin").
//!
//! Built against the frozen 0.1.0 text (`wit/deps/policy@0.1.0`) rather than with
//! `wasmpay-policy`, whose bindings are the current contract's.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{string::String, vec::Vec};

#[cfg(target_arch = "wasm32")]
use wasmpay_policy_runtime as _;

wit_bindgen::generate!({
    path: "../../wit/policy",
    world: "wasmpay:policy/plugin@0.1.0",
});

use exports::wasmpay::policy0_1_0::policy::{Decision, Guest, Posting, Terms};

struct Pass;

impl Guest for Pass {
    fn evaluate(_posting: Posting, _settings: Vec<(String, String)>) -> Decision {
        Decision::Allow(Terms { fee: None, requirements: Vec::new() })
    }
}

// Only on wasm: the canonical ABI's export names are not symbols a native linker accepts.
#[cfg(target_arch = "wasm32")]
export!(Pass);
#[cfg(not(target_arch = "wasm32"))]
const _: fn(Posting, Vec<(String, String)>) -> Decision = <Pass as Guest>::evaluate;
