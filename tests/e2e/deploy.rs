//! Deploying as Spin hosts do: `spin registry push` the built application to an OCI
//! registry (a local one, Debian's `docker-registry`, over plain HTTP), then
//! `spin up -f <reference>` runs it from there against the same database. Runs in the
//! real-Spin pass of `cargo xtask test` (`WASMPAY_E2E_RUNTIME=spin`).

use serde_json::json;
use wasmpay_test_support::{
    postgres::migrated_database,
    registry::Registry,
    spin::{self, SpinApp, SpinUp},
};

use crate::{
    app::{Runtime, Server, TestApp, runtime_config_file},
    health::latest_schema_version,
    money::{assert_books_balance, balance, funded_wallet, transfer, wallet},
    users::verified,
};

#[tokio::test]
async fn the_application_runs_from_an_oci_registry() {
    if Runtime::current() != Runtime::Spin {
        eprintln!("skipped under wasmpay-host: pushing to a registry is Spin's; the Spin pass runs it");
        return;
    }
    let registry = Registry::start().expect("a local OCI registry");
    let reference = format!("{}/wasmpay/wasmpay:e2e-{}", registry.authority(), std::process::id());
    let db = migrated_database().await.expect("a migrated test database");
    let config = TestApp::config(&db);
    let build = SpinUp {
        manifest: config.manifest.clone(),
        component_sources: config.component_sources.clone(),
        dependency_sources: config.dependency_sources.clone(),
        ..SpinUp::default()
    };
    spin::push(&build, &reference).expect("spin registry push");

    let from_registry = SpinUp {
        variables: config.variables,
        runtime_config: Some(runtime_config_file()),
        from_registry: Some(reference),
        ..SpinUp::default()
    };
    let server = SpinApp::start(&from_registry).await.expect("spin up -f <reference>");
    let app = TestApp::serving(db, Server::Spin(server));

    for path in ["/auth/health", "/accounts/health", "/transfers/health"] {
        let reply = app.get(path).send().await;
        reply.expect(200);
        assert_eq!(reply.json()["schemaVersion"], latest_schema_version(), "{path}");
    }
    let ada = verified(&app, "oci-ada").await;
    let grace = verified(&app, "oci-grace").await;
    let from = funded_wallet(&app, &ada, "USD", "100.00").await;
    let to = wallet(&app, &grace, "USD").await;
    let sent = transfer(&app, &ada, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "12.34", "currency": "USD" })).await;
    sent.expect(201);
    assert_eq!(balance(&app, &ada, &from).await, "87.66");
    assert_eq!(balance(&app, &grace, &to).await, "12.34");
    assert_books_balance(&app).await;
}
