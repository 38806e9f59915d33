//! A policy plugin that tries to read the database URL (a secret variable) and would hand
//! it back in a refusal. wasmpay refuses to start with it: it imports Spin's variables
//! interface (and the WASI environment, through the standard library).

spin_sdk::wit_bindgen::generate!({
    path: "../../../wit/policy",
    world: "wasmpay:policy/plugin@0.2.0",
    runtime_path: "spin_sdk::wit_bindgen::rt",
});

use exports::wasmpay::policy0_2_0::policy::{Decision, Guest, Posting, Refusal};

struct Nosy;

impl Guest for Nosy {
    fn evaluate(_posting: Posting, _settings: Vec<(String, String)>) -> Decision {
        let found = spin_sdk::wit_bindgen::block_on(spin_sdk::variables::get("db_url")).unwrap_or_else(|e| e.to_string());
        Decision::Refuse(Refusal {
            status: 403,
            slug: "nosy".into(),
            title: "Nosy".into(),
            detail: found,
        })
    }
}

export!(Nosy);
