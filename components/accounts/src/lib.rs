//! The accounts component: wallets per currency. This file is its route table.
//! Balances are maintained by the transfer engine; this component never writes them.

mod account;
mod close;
mod open;
mod view;

use spin_sdk::http_service;
use wasmpay_common::{health, http::Response, router::{self, Router}};

#[http_service]
async fn handle(request: spin_sdk::http::Request) -> Response {
    router::serve(request, routes).await
}

fn routes() -> Router {
    Router::new()
        .get("/accounts/health", |_, _| health::report("accounts", env!("CARGO_PKG_VERSION")))
        .post("/accounts", open::handle)
        .get("/accounts/me", view::mine)
        .get("/accounts/:id", view::one)
        .delete("/accounts/:id", close::handle)
}
