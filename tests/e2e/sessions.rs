//! Access tokens end with their session: once a session is over (logout, revoked from
//! another device, password changed elsewhere, refresh token reused, refresh token
//! expired), every access token of it is refused at once on every authenticated route,
//! with the same 401 as a bad signature, and the request changes nothing.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    app::TestApp,
    money::{funded_wallet, key, transfer, wallet},
    users::{PASSWORD, User, access_claims, logged_in, verified},
};

/// A user with money and a transfer, so that every route has something to act on.
struct Scene {
    ada: User,
    wallet: String,
    transfer: String,
}

async fn scene(app: &TestApp) -> Scene {
    let ada = verified(app, "session-ada").await;
    let grace = verified(app, "session-grace").await;
    let wallet_id = funded_wallet(app, &ada, "USD", "100.00").await;
    let to = wallet(app, &grace, "USD").await;
    let sent = transfer(app, &ada, &json!({ "fromAccountId": wallet_id, "toAccountId": to, "amount": "10.00", "currency": "USD" })).await;
    sent.expect(201);
    Scene {
        transfer: sent.json()["id"].as_str().unwrap().to_owned(),
        ada,
        wallet: wallet_id,
    }
}

fn session_of(token: &str) -> String {
    access_claims(token)["sid"].as_str().unwrap().to_owned()
}

/// What any of the refused requests could have changed.
async fn state(app: &TestApp, user: &User) -> Value {
    let row = app
        .sql()
        .await
        .query_one(
            "SELECT json_build_array(
                 (SELECT count(*) FROM ledger.transfers), (SELECT count(*) FROM outbox.events),
                 (SELECT count(*) FROM accounts.accounts), (SELECT sum(balance)::text FROM accounts.accounts WHERE kind = 'user'),
                 (SELECT count(*) FROM identity.sessions WHERE revoked_at IS NULL),
                 (SELECT full_name || password_hash FROM identity.users WHERE id::text = $1))",
            &[&user.id],
        )
        .await
        .unwrap();
    row.get(0)
}

/// Every authenticated route, with a request that a live session would get through.
async fn every_route_refuses(app: &TestApp, token: &str, scene: &Scene, live_session: &str) {
    let wallet = &scene.wallet;
    let transfer = &scene.transfer;
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/users/me".into(), None),
        (Method::PATCH, "/users/me".into(), Some(json!({ "fullName": "Stolen Token" }))),
        (Method::POST, "/users/me/password".into(), Some(json!({ "currentPassword": PASSWORD, "newPassword": "taken over by a thief" }))),
        (Method::POST, "/auth/resend-verification".into(), None),
        (Method::GET, "/auth/sessions".into(), None),
        (Method::DELETE, format!("/auth/sessions/{live_session}"), None),
        (Method::POST, "/auth/logout".into(), None),
        (Method::POST, "/accounts".into(), Some(json!({ "currency": "EUR" }))),
        (Method::GET, "/accounts/me".into(), None),
        (Method::GET, format!("/accounts/{wallet}"), None),
        (Method::DELETE, format!("/accounts/{wallet}"), None),
        (Method::GET, format!("/accounts/{wallet}/transactions"), None),
        (Method::POST, "/deposits".into(), Some(json!({ "accountId": wallet, "amount": "5.00" }))),
        (Method::POST, "/withdrawals".into(), Some(json!({ "accountId": wallet, "amount": "5.00" }))),
        (
            Method::POST,
            "/transfers".into(),
            Some(json!({ "fromAccountId": wallet, "toEmail": "nobody@example.com", "amount": "1.00", "currency": "USD" })),
        ),
        (Method::GET, format!("/transfers/{transfer}"), None),
        (Method::POST, format!("/transfers/{transfer}/refunds"), Some(json!({ "amount": "1.00" }))),
    ];
    let before = state(app, &scene.ada).await;
    for (method, path, body) in routes {
        let mut call = app.call(method.clone(), &path).bearer(token).header("idempotency-key", key());
        if let Some(body) = &body {
            call = call.json(body);
        }
        let reply = call.send().await;
        assert_eq!(reply.status, 401, "{method} {path} accepted a token of an ended session: {reply:?}");
        assert_eq!(reply.problem(), "invalid-token", "{method} {path}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{method} {path}: {challenge}");
    }
    assert_eq!(state(app, &scene.ada).await, before, "a refused request changed something");
}

#[tokio::test]
async fn after_logout_the_sessions_access_token_is_refused_everywhere() {
    let app = TestApp::spawn().await;
    let scene = scene(&app).await;
    let other = logged_in(&app, &scene.ada.email, PASSWORD).await;
    app.post("/auth/logout").bearer(&scene.ada.access).send().await.expect(204);
    every_route_refuses(&app, &scene.ada.access, &scene, &session_of(&other.access)).await;
    app.get("/users/me").bearer(&other.access).send().await.expect(200);
}

#[tokio::test]
async fn a_session_revoked_from_another_device_is_refused_everywhere() {
    let app = TestApp::spawn().await;
    let scene = scene(&app).await;
    let other = logged_in(&app, &scene.ada.email, PASSWORD).await;
    let revoked = session_of(&scene.ada.access);
    app.delete(&format!("/auth/sessions/{revoked}")).bearer(&other.access).send().await.expect(204);
    every_route_refuses(&app, &scene.ada.access, &scene, &session_of(&other.access)).await;
    app.get("/accounts/me").bearer(&other.access).send().await.expect(200);
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_tokens_at_once() {
    let app = TestApp::spawn().await;
    let scene = scene(&app).await;
    let other = logged_in(&app, &scene.ada.email, PASSWORD).await;
    app.post("/users/me/password")
        .bearer(&other.access)
        .json(&json!({ "currentPassword": PASSWORD, "newPassword": "a brand new passphrase" }))
        .send()
        .await
        .expect(204);
    every_route_refuses(&app, &scene.ada.access, &scene, &session_of(&other.access)).await;
    app.get("/users/me").bearer(&other.access).send().await.expect(200);
}

#[tokio::test]
async fn reusing_a_refresh_token_ends_the_sessions_access_tokens() {
    let app = TestApp::spawn().await;
    let scene = scene(&app).await;
    let other = logged_in(&app, &scene.ada.email, PASSWORD).await;
    let refresh = json!({ "refreshToken": scene.ada.refresh });
    let rotated = app.post("/auth/refresh").json(&refresh).send().await;
    rotated.expect(200);
    app.post("/auth/refresh").json(&refresh).send().await.expect(401);
    let newest = rotated.json()["accessToken"].as_str().unwrap().to_owned();
    every_route_refuses(&app, &scene.ada.access, &scene, &session_of(&other.access)).await;
    every_route_refuses(&app, &newest, &scene, &session_of(&other.access)).await;
}

#[tokio::test]
async fn a_session_whose_refresh_token_expired_is_over() {
    let app = TestApp::spawn_with(|config| config.variable("refresh_token_ttl_secs", "3")).await;
    let scene = scene(&app).await;
    app.get("/users/me").bearer(&scene.ada.access).send().await.expect(200);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let other = logged_in(&app, &scene.ada.email, PASSWORD).await;
    every_route_refuses(&app, &scene.ada.access, &scene, &session_of(&other.access)).await;
}
