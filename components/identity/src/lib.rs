//! The identity component: registration, e-mail verification, login, sessions and the
//! caller's profile. This file is its route table; each use case has its own module.

mod login;
mod profile;
mod register;
mod secrets;
mod sessions;
mod settings;
mod users;
mod verification;

use spin_sdk::http_service;
use wasmpay_common::{health, http::Response, router::{self, Router}};

#[http_service]
async fn handle(request: spin_sdk::http::Request) -> Response {
    router::serve(request, routes).await
}

fn routes() -> Router {
    Router::new()
        .get("/auth/health", |_, _| health::report("identity", env!("CARGO_PKG_VERSION")))
        .post("/auth/register", register::handle)
        .post("/auth/verify-email", verification::verify)
        .post("/auth/resend-verification", verification::resend)
        .post("/auth/login", login::handle)
        .post("/auth/refresh", sessions::refresh)
        .post("/auth/logout", sessions::logout)
        .get("/auth/sessions", sessions::list)
        .delete("/auth/sessions/:id", sessions::revoke)
        .get("/users/me", profile::get)
        .patch("/users/me", profile::update)
        .post("/users/me/password", profile::change_password)
}
