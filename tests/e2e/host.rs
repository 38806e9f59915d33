//! Spin behaviour the components rely on, observed through the real components under
//! either runtime; where wasmpay-host differs from Spin on purpose, the test says how.

use futures::future::join_all;
use serde_json::json;

use crate::app::{Runtime, Server, TestApp};
use wasmpay_test_support::postgres::server;

#[tokio::test]
async fn paths_no_route_matches_get_spins_empty_404() {
    let app = TestApp::spawn().await;
    let reply = app.get("/nowhere").undocumented().send().await;
    reply.expect(404);
    assert!(reply.body.is_empty());
    app.get("/.well-known/spin/health").undocumented().send().await.expect(200);
}

#[tokio::test]
async fn a_database_outside_allowed_outbound_hosts_is_refused() {
    // The manifest allows postgres://{{ db_host }}; point it at another port than db_url.
    let elsewhere = format!("127.0.0.1:{}", server().port() + 1);
    let app = TestApp::spawn_with(|config| config.variable("db_host", elsewhere)).await;
    let reply = app.get("/auth/health").send().await;
    reply.expect(503);
    assert_eq!(reply.problem(), "unavailable");
}

#[tokio::test]
async fn a_missing_required_variable_stops_start_up() {
    let db = wasmpay_test_support::postgres::migrated_database().await.unwrap();
    let mut config = TestApp::config(&db);
    config.variables.remove("db_url");
    let error = match Server::start(config).await {
        Ok(_) => panic!("the application started without db_url"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains(r#"no provider resolved required variable(s): [Key("db_url")]"#), "{error}");
}

/// A divergence of the host, on purpose: it buffers request bodies and refuses those above
/// `--max-request-body-bytes` itself; Spin streams any body to the component, whose own
/// JSON limit (16 KiB) refuses it with a problem. Both answer 413.
#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let huge = vec![b'x'; wasmpay_host::DEFAULT_MAX_REQUEST_BODY_BYTES + 1];
    let reply = app.post("/auth/login").body("application/json", huge).undocumented().send().await;
    reply.expect(413);
    match Runtime::current() {
        Runtime::Host => assert_eq!(String::from_utf8_lossy(&reply.body), "request body too large\n"),
        Runtime::Spin => assert_eq!(reply.problem(), "payload-too-large"),
    }
}

/// 64 requests at once: more than an instance takes (8), so several instances serve them.
#[tokio::test]
async fn concurrent_requests_are_spread_over_instances() {
    let app = TestApp::spawn().await;
    let replies = join_all((0..64).map(|_| app.get("/transfers/health").send())).await;
    assert!(replies.iter().all(|r| r.status == 200), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(replies[0].json()["component"], json!("transfers"));
}
