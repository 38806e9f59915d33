//! The transfers component: the double-entry engine. This file is its route table; each
//! money movement is asked of the policy plugins (`policy`), then is one call of a ledger
//! function (migrations/V5__ledger.sql, V9__policy_terms_and_fees.sql, V12__holds.sql).

mod history;
mod hold;
mod idempotency;
mod policy;
mod posting;
mod refund;
mod settings;
mod settlement;
mod transfer;
mod view;

use spin_sdk::http_service;
use wasmpay_common::{health, http::Response, router::{self, Router}};

#[http_service]
async fn handle(request: spin_sdk::http::Request) -> Response {
    router::serve(request, routes).await
}

fn routes() -> Router {
    Router::new()
        .get("/transfers/health", |_, _| health::report("transfers", env!("CARGO_PKG_VERSION")))
        .post("/transfers", transfer::handle)
        .get("/transfers/:id", view::handle)
        .post("/transfers/:id/refunds", refund::handle)
        .post("/deposits", settlement::deposit)
        .post("/withdrawals", settlement::withdraw)
        .post("/holds", hold::place)
        .get("/holds/:id", hold::view)
        .post("/holds/:id/capture", hold::capture)
        .post("/holds/:id/void", hold::void)
        .get("/accounts/:id/transactions", history::handle)
}
