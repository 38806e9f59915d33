//! The accounts component: wallets per currency. This file is its route table.
//! Balances are maintained by the transfer engine; this component never writes them.

mod account;
mod close;
mod open;
mod view;

use spin_sdk::{
    http::{Request, Response},
    http_component,
};
use wasmpay_common::{health, router::Router};

#[http_component]
fn handle(request: Request) -> Response {
    Router::new()
        .get("/accounts/health", |_, _| health::report("accounts", env!("CARGO_PKG_VERSION")))
        .post("/accounts", open::handle)
        .get("/accounts/me", view::mine)
        .get("/accounts/:id", view::one)
        .delete("/accounts/:id", close::handle)
        .handle(&request)
}
