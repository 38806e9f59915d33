//! Helpers for moving money through the API, and the ledger's invariants.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::{
    accounts::open_wallet,
    app::{Reply, TestApp},
    users::User,
};

/// A fresh Idempotency-Key.
pub fn key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("key-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub async fn wallet(app: &TestApp, user: &User, currency: &str) -> String {
    open_wallet(app, user, currency).await["id"].as_str().unwrap().to_owned()
}

pub async fn deposit(app: &TestApp, user: &User, wallet: &str, amount: &str) -> Reply {
    app.post("/deposits")
        .bearer(&user.access)
        .header("idempotency-key", key())
        .json(&json!({ "accountId": wallet, "amount": amount }))
        .send()
        .await
}

/// A wallet in `currency` holding `amount`.
pub async fn funded_wallet(app: &TestApp, user: &User, currency: &str, amount: &str) -> String {
    let id = wallet(app, user, currency).await;
    deposit(app, user, &id, amount).await.expect(201);
    id
}

pub async fn transfer(app: &TestApp, user: &User, body: &Value) -> Reply {
    app.post("/transfers").bearer(&user.access).header("idempotency-key", key()).json(body).send().await
}

pub async fn balance(app: &TestApp, user: &User, wallet: &str) -> String {
    let reply = app.get(&format!("/accounts/{wallet}")).bearer(&user.access).send().await;
    reply.expect(200);
    reply.json()["balance"].as_str().unwrap().to_owned()
}

/// Asserts every invariant of `ledger.check_invariants()` holds.
pub async fn assert_books_balance(app: &TestApp) {
    let rows = app
        .sql()
        .await
        .query("SELECT invariant, violations FROM ledger.check_invariants()", &[])
        .await
        .unwrap();
    let broken: Vec<String> = rows
        .iter()
        .filter(|row| row.get::<_, i64>(1) != 0)
        .map(|row| format!("{}: {} violations", row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect();
    assert!(broken.is_empty(), "the books do not balance:\n{}", broken.join("\n"));
    assert_eq!(rows.len(), 11, "every invariant was checked");
}

pub async fn count(app: &TestApp, sql: &str) -> i64 {
    app.sql().await.query_one(sql, &[]).await.unwrap().get(0)
}
