//! Holds: money reserved in the payer's wallet, then captured (all or part) by the payee,
//! voided by either party, or expired by itself — and every refusal without effect.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    app::{Reply, TestApp},
    money::{assert_books_balance, balance, count, funded_wallet, key, transfer, wallet},
    users::{User, newest_event, signed_up, verified},
};

pub async fn place(app: &TestApp, user: &User, body: &Value) -> Reply {
    app.post("/holds").bearer(&user.access).header("idempotency-key", key()).json(body).send().await
}

pub async fn capture(app: &TestApp, user: &User, hold: &str, body: Option<&Value>) -> Reply {
    let request = app.post(&format!("/holds/{hold}/capture")).bearer(&user.access).header("idempotency-key", key());
    match body {
        Some(body) => request.json(body),
        None => request,
    }
    .send()
    .await
}

pub async fn void(app: &TestApp, user: &User, hold: &str) -> Reply {
    app.post(&format!("/holds/{hold}/void")).bearer(&user.access).header("idempotency-key", key()).send().await
}

/// The wallet as its owner sees it.
async fn wallet_view(app: &TestApp, user: &User, wallet: &str) -> Value {
    let reply = app.get(&format!("/accounts/{wallet}")).bearer(&user.access).send().await;
    reply.expect(200);
    reply.json()
}

/// `(balance, available, held)` of a wallet.
async fn amounts(app: &TestApp, user: &User, wallet: &str) -> (String, String, String) {
    let view = wallet_view(app, user, wallet).await;
    let text = |name: &str| view[name].as_str().unwrap().to_owned();
    (text("balance"), text("available"), text("held"))
}

fn owned(amounts: (&str, &str, &str)) -> (String, String, String) {
    (amounts.0.to_owned(), amounts.1.to_owned(), amounts.2.to_owned())
}

async fn withdraw(app: &TestApp, user: &User, wallet: &str, amount: &str) -> Reply {
    app.post("/withdrawals")
        .bearer(&user.access)
        .header("idempotency-key", key())
        .json(&json!({ "accountId": wallet, "amount": amount }))
        .send()
        .await
}

#[tokio::test]
async fn a_hold_reserves_money_until_the_payee_captures_part_of_it() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-hold").await;
    let bob = signed_up(&app, "bob-hold").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = wallet(&app, &bob, "USD").await;

    let placed = place(
        &app,
        &alice,
        &json!({ "fromAccountId": from, "toEmail": bob.email, "amount": "60", "currency": "USD", "description": "Order 17" }),
    )
    .await;
    placed.expect(201);
    let hold = placed.json();
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(hold["status"], "pending");
    assert_eq!((hold["fromAccountId"].as_str(), hold["toAccountId"].as_str()), (Some(from.as_str()), Some(to.as_str())));
    assert_eq!((hold["amount"].as_str(), hold["currency"].as_str()), (Some("60.00"), Some("USD")));
    assert_eq!(hold["description"], "Order 17");
    assert_eq!(hold["capturedAmount"], Value::Null);

    // The money stays in the payer's wallet and cannot be spent.
    assert_eq!(amounts(&app, &alice, &from).await, owned(("100.00", "40.00", "60.00")));
    assert_eq!(amounts(&app, &bob, &to).await, owned(("0.00", "0.00", "0.00")));
    assert_eq!(wallet_view(&app, &alice, &from).await["holds"][0]["id"], id.as_str());
    assert_eq!(wallet_view(&app, &bob, &to).await["holds"][0]["id"], id.as_str(), "the payee sees it too");
    let overdraw = withdraw(&app, &alice, &from, "40.01").await;
    overdraw.expect(422);
    assert_eq!(overdraw.problem(), "insufficient-funds");
    let carol = signed_up(&app, "carol-hold").await;
    let elsewhere = wallet(&app, &carol, "USD").await;
    let spend = transfer(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": elsewhere, "amount": "41", "currency": "USD" })).await;
    assert_eq!((spend.status, spend.problem()), (422, "insufficient-funds".to_owned()));
    let second = place(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "40.01", "currency": "USD" })).await;
    assert_eq!((second.status, second.problem()), (422, "insufficient-funds".to_owned()));
    withdraw(&app, &alice, &from, "40").await.expect(201);

    // Both parties see it; anyone else gets a 404.
    let path = format!("/holds/{id}");
    assert_eq!(app.get(&path).bearer(&alice.access).send().await.json(), hold);
    app.get(&path).bearer(&bob.access).send().await.expect(200);
    let stranger = app.get(&path).bearer(&carol.access).send().await;
    assert_eq!((stranger.status, stranger.problem()), (404, "hold-not-found".to_owned()));

    let by_payer = capture(&app, &alice, &id, None).await;
    assert_eq!((by_payer.status, by_payer.problem()), (403, "capture-by-payee-only".to_owned()));
    let too_much = capture(&app, &bob, &id, Some(&json!({ "amount": "60.01" }))).await;
    assert_eq!((too_much.status, too_much.problem()), (422, "capture-exceeds-hold".to_owned()));
    let too_fine = capture(&app, &bob, &id, Some(&json!({ "amount": "1.001" }))).await;
    assert_eq!((too_fine.status, too_fine.problem()), (422, "amount-too-precise".to_owned()));

    let captured = capture(&app, &bob, &id, Some(&json!({ "amount": "45" }))).await;
    captured.expect(201);
    let captured = captured.json();
    assert_eq!(captured["status"], "captured");
    assert_eq!((captured["capturedAmount"].as_str(), captured["releasedAmount"].as_str()), (Some("45.00"), Some("15.00")));
    let moved = &captured["transfer"];
    assert_eq!((moved["kind"].as_str(), moved["amount"].as_str()), (Some("transfer"), Some("45.00")));
    assert_eq!((moved["holdId"].as_str(), moved["fromAccountId"].as_str()), (Some(id.as_str()), Some(from.as_str())));
    assert_eq!(captured["transferId"], moved["id"]);
    assert_eq!(amounts(&app, &alice, &from).await, owned(("15.00", "15.00", "0.00")), "the rest is released");
    assert_eq!(amounts(&app, &bob, &to).await, owned(("45.00", "45.00", "0.00")));
    assert_eq!(wallet_view(&app, &alice, &from).await["holds"], json!([]));

    // One capture per hold; a captured hold cannot be voided.
    let again = capture(&app, &bob, &id, Some(&json!({ "amount": "15" }))).await;
    assert_eq!((again.status, again.problem()), (409, "hold-not-active".to_owned()));
    let voided = void(&app, &alice, &id).await;
    assert_eq!((voided.status, voided.problem()), (409, "hold-not-active".to_owned()));

    // The payer's history: the hold where it was placed (captured now), then the transfer.
    let history = app.get(&format!("/accounts/{from}/transactions")).bearer(&alice.access).send().await.json();
    let items = history["transactions"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|item| item["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["transfer-out", "withdrawal", "hold-out", "deposit"], "{history}");
    assert_eq!((items[0]["holdId"].as_str(), items[0]["amount"].as_str()), (Some(id.as_str()), Some("-45.00")));
    assert_eq!((items[2]["holdStatus"].as_str(), items[2]["amount"].as_str()), (Some("captured"), Some("-60.00")));
    assert_eq!((items[2]["balanceAfter"].as_str(), items[2]["transferId"].clone()), (Some("100.00"), moved["id"].clone()));
    let payee_history = app.get(&format!("/accounts/{to}/transactions")).bearer(&bob.access).send().await.json();
    let kinds: Vec<&str> = payee_history["transactions"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["transfer-in", "hold-in"]);

    let placed_event = newest_event(&app, &id, &["hold.placed"]).await;
    assert_eq!((placed_event["payer"]["userId"].as_str(), placed_event["payee"]["userId"].as_str()), (Some(alice.id.as_str()), Some(bob.id.as_str())));
    let captured_event = newest_event(&app, &id, &["hold.captured"]).await;
    assert_eq!((captured_event["capturedAmount"].as_str(), captured_event["releasedAmount"].as_str()), (Some("45.00"), Some("15.00")));
    assert_eq!(captured_event["transferId"], moved["id"]);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn either_party_voids_a_hold_and_its_money_is_free_at_once() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-void").await;
    let bob = signed_up(&app, "bob-void").await;
    let from = funded_wallet(&app, &alice, "VND", "100000").await;
    let to = wallet(&app, &bob, "VND").await;
    for (voider, by) in [(&alice, "payer"), (&bob, "payee")] {
        let hold = place(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "70000", "currency": "VND" })).await;
        hold.expect(201);
        let id = hold.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(amounts(&app, &alice, &from).await.1, "30000");
        let voided = void(&app, voider, &id).await;
        voided.expect(200);
        assert_eq!((voided.json()["status"].as_str(), voided.json()["voidedBy"].as_str()), (Some("voided"), Some(by)));
        assert_eq!(amounts(&app, &alice, &from).await, owned(("100000", "100000", "0")));
        let event = newest_event(&app, &id, &["hold.voided"]).await;
        assert_eq!(event["voidedBy"], by);
        let twice = void(&app, voider, &id).await;
        assert_eq!((twice.status, twice.problem()), (409, "hold-not-active".to_owned()));
        let late = capture(&app, &bob, &id, None).await;
        assert_eq!((late.status, late.problem()), (409, "hold-not-active".to_owned()));
    }
    assert_eq!(amounts(&app, &bob, &to).await.0, "0");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn an_expired_hold_frees_its_money_without_any_job_and_cannot_be_captured() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-expire").await;
    let bob = signed_up(&app, "bob-expire").await;
    let from = funded_wallet(&app, &alice, "USD", "10").await;
    let to = wallet(&app, &bob, "USD").await;
    let hold = place(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "10", "currency": "USD", "expiresInSecs": 1 })).await;
    hold.expect(201);
    let id = hold.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(amounts(&app, &alice, &from).await.1, "0.00");
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    // No sweeper runs in this test: the expiry alone frees the money.
    assert_eq!(amounts(&app, &alice, &from).await, owned(("10.00", "10.00", "0.00")));
    let view = app.get(&format!("/holds/{id}")).bearer(&bob.access).send().await.json();
    assert_eq!(view["status"], "expired");
    assert_eq!(view["settledAt"], view["expiresAt"]);
    let late = capture(&app, &bob, &id, None).await;
    assert_eq!((late.status, late.problem()), (409, "hold-expired".to_owned()));
    let void_late = void(&app, &alice, &id).await;
    assert_eq!((void_late.status, void_late.problem()), (409, "hold-expired".to_owned()));
    assert_eq!(amounts(&app, &bob, &to).await.0, "0.00", "nothing moved");
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM outbox.events WHERE event_type = 'hold.captured'").await, 0);
    withdraw(&app, &alice, &from, "10").await.expect(201);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn bad_hold_requests_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-badhold").await;
    let bob = signed_up(&app, "bob-badhold").await;
    let carol = signed_up(&app, "carol-badhold").await;
    let from = funded_wallet(&app, &alice, "USD", "50").await;
    let to = wallet(&app, &bob, "USD").await;
    let euros = wallet(&app, &bob, "EUR").await;
    let valid = json!({ "fromAccountId": from, "toAccountId": to, "amount": "5", "currency": "USD" });
    let with = |name: &str, value: Value| {
        let mut body = valid.clone();
        body[name] = value;
        body
    };
    for (body, status, problem) in [
        (with("expiresInSecs", json!(0)), 422, "validation-failed"),
        (with("expiresInSecs", json!(2_592_001)), 422, "validation-failed"),
        (with("expiresInSecs", json!("60")), 422, "validation-failed"),
        (with("expiresInSecs", json!(1.5)), 422, "validation-failed"),
        (with("amount", json!("-5")), 422, "validation-failed"),
        (with("amount", json!("0.001")), 422, "validation-failed"),
        (with("toAccountId", json!(from)), 422, "same-account"),
        (with("toAccountId", json!(euros)), 422, "currency-mismatch"),
        (with("fromAccountId", json!(euros)), 404, "account-not-found"),
        (with("amount", json!("50.01")), 422, "insufficient-funds"),
    ] {
        let reply = place(&app, &alice, &body).await;
        assert_eq!((reply.status, reply.problem()), (status, problem.to_owned()), "{body}");
    }
    let unkeyed = app.post("/holds").bearer(&alice.access).json(&valid).send().await;
    assert_eq!((unkeyed.status, unkeyed.problem()), (400, "idempotency-key-required".to_owned()));
    let anonymous = app.post("/holds").header("idempotency-key", key()).json(&valid).send().await;
    anonymous.expect(401);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.holds").await, 0);

    let hold = place(&app, &alice, &valid).await;
    hold.expect(201);
    let id = hold.json()["id"].as_str().unwrap().to_owned();
    // Another user's hold is a 404 whatever they ask, and so is an id that is not a UUID.
    for reply in [capture(&app, &carol, &id, None).await, void(&app, &carol, &id).await] {
        assert_eq!((reply.status, reply.problem()), (404, "hold-not-found".to_owned()));
    }
    for path in ["/holds/not-a-uuid", "/holds/00000000-0000-0000-0000-000000000000"] {
        let reply = app.get(path).bearer(&alice.access).send().await;
        assert_eq!((reply.status, reply.problem()), (404, "hold-not-found".to_owned()));
    }
    let bad_amount = capture(&app, &bob, &id, Some(&json!({ "amount": "lots" }))).await;
    assert_eq!((bad_amount.status, bad_amount.problem()), (422, "validation-failed".to_owned()));
    let zero = capture(&app, &bob, &id, Some(&json!({ "amount": "0" }))).await;
    assert_eq!(zero.status, 422, "{zero:?}");
    assert_eq!(amounts(&app, &alice, &from).await, owned(("50.00", "45.00", "5.00")));
    assert_eq!(app.get(&format!("/holds/{id}")).bearer(&bob.access).send().await.json()["status"], "pending");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn replays_with_one_key_take_effect_once() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-replayhold").await;
    let bob = signed_up(&app, "bob-replayhold").await;
    let from = funded_wallet(&app, &alice, "USD", "30").await;
    let to = wallet(&app, &bob, "USD").await;
    let body = json!({ "fromAccountId": from, "toAccountId": to, "amount": "20", "currency": "USD" });
    let placing = key();
    let send = |body: Value, key: String| {
        let app = &app;
        let alice = &alice;
        async move { app.post("/holds").bearer(&alice.access).header("idempotency-key", key).json(&body).send().await }
    };
    let first = send(body.clone(), placing.clone()).await;
    first.expect(201);
    let replay = send(body.clone(), placing.clone()).await;
    replay.expect(201);
    assert_eq!((replay.json(), replay.header("idempotent-replayed")), (first.json(), Some("true")));
    let changed = send(json!({ "fromAccountId": from, "toAccountId": to, "amount": "21", "currency": "USD" }), placing).await;
    assert_eq!((changed.status, changed.problem()), (422, "idempotency-key-reused".to_owned()));
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.holds").await, 1);

    let id = first.json()["id"].as_str().unwrap().to_owned();
    let capturing = key();
    let capture_once = || {
        app.post(&format!("/holds/{id}/capture"))
            .bearer(&bob.access)
            .header("idempotency-key", capturing.clone())
            .json(&json!({ "amount": "5" }))
            .send()
    };
    let captured = capture_once().await;
    captured.expect(201);
    let again = capture_once().await;
    again.expect(201);
    assert_eq!((again.json(), again.header("idempotent-replayed")), (captured.json(), Some("true")));
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 1);
    assert_eq!(balance(&app, &bob, &to).await, "5.00");
    assert_books_balance(&app).await;
}
