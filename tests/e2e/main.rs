//! wasmpay's end-to-end tests. Run them with `cargo xtask test`, which builds the
//! components (wasm32-wasip2) and the bridge first.

mod app;
mod money;
mod openapi;
mod users;

mod accounts;
mod bridge;
mod browser;
mod citus;
mod concurrency;
mod contract;
mod database_tls;
mod deploy;
mod deploy_artifacts;
mod fuzz;
mod health;
mod holds;
mod host;
mod identity;
mod instances;
mod kafka_security;
mod migrations;
mod policies;
mod schemas;
mod sessions;
mod transfers;
mod web;
