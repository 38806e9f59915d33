//! The accounts component: its route table.

use spin_sdk::{
    http::{Request, Response},
    http_component,
};
use wasmpay_common::{health, router::Router};

#[http_component]
fn handle(request: Request) -> Response {
    Router::new()
        .get("/accounts/health", |_, _| health::report("accounts", env!("CARGO_PKG_VERSION")))
        .handle(&request)
}
