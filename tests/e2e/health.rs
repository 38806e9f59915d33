//! Each component answers its health route with data read from Postgres, and answers
//! unknown routes and wrong methods with problems.

use crate::app::TestApp;

/// The newest migration in migrations/ (`V<n>__name.sql`).
pub fn latest_schema_version() -> i64 {
    std::fs::read_dir(wasmpay_test_support::paths::repo_root().join("migrations"))
        .expect("migrations/")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .max()
        .expect("at least one migration")
}

#[tokio::test]
async fn every_component_reports_its_health_from_the_database() {
    let app = TestApp::spawn().await;
    for (path, component) in [
        ("/auth/health", "identity"),
        ("/accounts/health", "accounts"),
        ("/transfers/health", "transfers"),
    ] {
        let reply = app.get(path).send().await;
        reply.expect(200);
        let body = reply.json();
        assert_eq!(body["component"], component);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["schemaVersion"], latest_schema_version(), "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_problems() {
    let app = TestApp::spawn().await;
    let unknown = app.get("/auth/no-such-thing").undocumented().send().await;
    unknown.expect(404);
    assert_eq!(unknown.problem(), "not-found");

    let wrong_method = app.delete("/transfers/health").undocumented().send().await;
    wrong_method.expect(405);
    assert_eq!(wrong_method.problem(), "method-not-allowed");
    assert_eq!(wrong_method.header("allow"), Some("GET"));
}
