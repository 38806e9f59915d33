//! Accounts: wallets per ISO 4217 currency, their balances at each currency's scale,
//! ownership, and closing.

use serde_json::{Value, json};

use crate::{
    app::TestApp,
    money::deposit,
    users::{User, claims, forge, hs256, jwt_secret, newest_event, now_secs, signed_up},
};

pub async fn open_wallet(app: &TestApp, user: &User, currency: &str) -> Value {
    let reply = app.post("/accounts").bearer(&user.access).json(&json!({ "currency": currency })).send().await;
    reply.expect(201);
    reply.json()
}

#[tokio::test]
async fn wallets_show_balances_at_each_currencys_scale() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "scales").await;
    for (currency, zero) in [("USD", "0.00"), ("VND", "0"), ("JPY", "0"), ("BHD", "0.000"), ("EUR", "0.00")] {
        let wallet = open_wallet(&app, &user, currency).await;
        assert_eq!(wallet["currency"], currency);
        assert_eq!(wallet["balance"], zero, "{currency}");
        assert_eq!(wallet["status"], "active");
        let event = newest_event(&app, wallet["id"].as_str().unwrap(), &["account.opened"]).await;
        assert_eq!(event["ownerId"], user.id.as_str());
    }
    let mine = app.get("/accounts/me").bearer(&user.access).send().await;
    mine.expect(200);
    let currencies: Vec<String> = mine.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["currency"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(currencies, ["EUR", "BHD", "JPY", "VND", "USD"], "newest first");
}

#[tokio::test]
async fn a_non_empty_balance_renders_at_the_currency_scale() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "render").await;
    let usd = open_wallet(&app, &user, "USD").await;
    let bhd = open_wallet(&app, &user, "BHD").await;
    deposit(&app, &user, usd["id"].as_str().unwrap(), "12.5").await.expect(201);
    deposit(&app, &user, bhd["id"].as_str().unwrap(), "1.25").await.expect(201);
    let usd = app.get(&format!("/accounts/{}", usd["id"].as_str().unwrap())).bearer(&user.access).send().await;
    assert_eq!(usd.json()["balance"], "12.50");
    let bhd = app.get(&format!("/accounts/{}", bhd["id"].as_str().unwrap())).bearer(&user.access).send().await;
    assert_eq!(bhd.json()["balance"], "1.250");
}

#[tokio::test]
async fn one_active_wallet_per_currency() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "dupe-wallet").await;
    open_wallet(&app, &user, "USD").await;
    let again = app.post("/accounts").bearer(&user.access).json(&json!({ "currency": "usd" })).send().await;
    again.expect(409);
    assert_eq!(again.problem(), "account-exists");
    // Another user may of course hold USD too.
    let other = signed_up(&app, "other-wallet").await;
    open_wallet(&app, &other, "USD").await;
}

#[tokio::test]
async fn currencies_are_checked_against_iso_4217_and_the_allow_list() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "iso").await;
    for currency in [json!("ABC"), json!("US"), json!("XAU"), json!("U$D"), json!(840), json!(null)] {
        let reply = app.post("/accounts").bearer(&user.access).json(&json!({ "currency": currency })).send().await;
        reply.expect(422);
    }
    let missing = app.post("/accounts").bearer(&user.access).json(&json!({})).send().await;
    missing.expect(422);
    assert_eq!(missing.json()["errors"][0]["field"], "currency");

    let limited = TestApp::spawn_with(|config| config.variable("allowed_currencies", "USD, EUR")).await;
    let user = signed_up(&limited, "allow-list").await;
    open_wallet(&limited, &user, "EUR").await;
    let refused = limited.post("/accounts").bearer(&user.access).json(&json!({ "currency": "VND" })).send().await;
    refused.expect(422);
    assert_eq!(refused.problem(), "currency-not-supported");
}

#[tokio::test]
async fn another_users_wallet_does_not_exist_for_you() {
    let app = TestApp::spawn().await;
    let alice = signed_up(&app, "alice-wallet").await;
    let bob = signed_up(&app, "bob-wallet").await;
    let wallet = open_wallet(&app, &alice, "USD").await;
    let path = format!("/accounts/{}", wallet["id"].as_str().unwrap());
    let peek = app.get(&path).bearer(&bob.access).send().await;
    peek.expect(404);
    assert_eq!(peek.problem(), "not-found");
    app.delete(&path).bearer(&bob.access).send().await.expect(404);
    app.get(&path).bearer(&alice.access).send().await.expect(200);
    let bobs = app.get("/accounts/me").bearer(&bob.access).send().await;
    assert_eq!(bobs.json()["accounts"], json!([]));

    for id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "1' OR '1'='1"] {
        app.get(&format!("/accounts/{id}")).bearer(&alice.access).send().await.expect(404);
    }
}

#[tokio::test]
async fn settlement_accounts_are_never_visible() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "settlement").await;
    // The currency's settlement account opens with its first deposit.
    crate::money::funded_wallet(&app, &user, "JPY", "500").await;
    let settlement: String = app
        .sql()
        .await
        .query_one("SELECT id::text FROM accounts.accounts WHERE kind = 'settlement' AND currency = 'JPY'", &[])
        .await
        .unwrap()
        .get(0);
    app.get(&format!("/accounts/{settlement}")).bearer(&user.access).send().await.expect(404);
    let mine = app.get("/accounts/me").bearer(&user.access).send().await.json();
    assert_eq!(mine["accounts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn only_an_empty_wallet_closes_and_a_new_one_may_follow() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "close").await;
    let full = open_wallet(&app, &user, "USD").await;
    let empty = open_wallet(&app, &user, "EUR").await;
    deposit(&app, &user, full["id"].as_str().unwrap(), "1").await.expect(201);

    let refused = app.delete(&format!("/accounts/{}", full["id"].as_str().unwrap())).bearer(&user.access).send().await;
    refused.expect(409);
    assert_eq!(refused.problem(), "account-not-empty");

    let empty_path = format!("/accounts/{}", empty["id"].as_str().unwrap());
    let closed = app.delete(&empty_path).bearer(&user.access).send().await;
    closed.expect(200);
    assert_eq!(closed.json()["status"], "closed");
    assert!(closed.json()["closedAt"].is_string());
    let event = newest_event(&app, empty["id"].as_str().unwrap(), &["account.closed"]).await;
    assert_eq!(event["currency"], "EUR");

    let again = app.delete(&empty_path).bearer(&user.access).send().await;
    again.expect(409);
    assert_eq!(again.problem(), "account-closed");
    let still_readable = app.get(&empty_path).bearer(&user.access).send().await;
    assert_eq!(still_readable.json()["status"], "closed");
    let reopened = open_wallet(&app, &user, "EUR").await;
    assert_ne!(reopened["id"], empty["id"]);
}

#[tokio::test]
async fn wallets_need_a_valid_access_token() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "wallet-auth").await;
    app.get("/accounts/me").send().await.expect(401);
    app.post("/accounts").json(&json!({ "currency": "USD" })).send().await.expect(401);
    let mut expired = claims(&user, now_secs() - 3_600);
    expired["exp"] = json!(now_secs() - 1);
    let token = forge(&hs256("HS256"), &expired, jwt_secret());
    let reply = app.get("/accounts/me").bearer(&token).send().await;
    reply.expect(401);
    assert_eq!(reply.problem(), "invalid-token");
}
