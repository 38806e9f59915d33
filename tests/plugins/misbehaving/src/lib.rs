//! A policy plugin that misbehaves on purpose, chosen by the posting's amount, so the tests
//! can show what the engine does with it: 13.13 traps (a panic), 66.6 asks for a fee on
//! a deposit-sized scale the currency does not have, 77.7 refuses with a status no problem
//! may have, 88.8 refuses with a slug that is not one. Every other amount is allowed.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{string::String, vec::Vec};

use wasmpay_policy::{Decision, Guest, Posting, Refusal, Terms};

struct Misbehaving;

impl Guest for Misbehaving {
    fn evaluate(posting: Posting, _settings: Vec<(String, String)>) -> Decision {
        match posting.amount.as_deref() {
            Some("13.13") => panic!("a plugin bug"),
            Some("66.6") => Decision::Allow(Terms {
                fee: Some("0.001".into()),
                requirements: Vec::new(),
            }),
            Some("77.7") => Decision::Refuse(Refusal::new(200, "fine", "Fine", "not a refusal")),
            Some("88.8") => Decision::Refuse(Refusal::new(422, "Not A Slug!", "Refused", "refused")),
            _ => wasmpay_policy::allow(),
        }
    }
}

wasmpay_policy::export!(Misbehaving);
