//! The transfer engine: every route and every rule, each refused posting without effect.

use serde_json::{Value, json};

use crate::{
    app::TestApp,
    money::{assert_books_balance, balance, count, deposit, funded_wallet, key, transfer, wallet},
    users::{newest_event, signed_up, verified},
};

#[tokio::test]
async fn a_transfer_moves_money_between_two_wallets_atomically() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-pay").await;
    let bob = signed_up(&app, "bob-pay").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = wallet(&app, &bob, "USD").await;

    let reply = transfer(
        &app,
        &alice,
        &json!({ "fromAccountId": from, "toAccountId": to, "amount": "12.34", "currency": "USD", "description": "Lunch" }),
    )
    .await;
    reply.expect(201);
    let body = reply.json();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["kind"], "transfer");
    assert_eq!((body["fromAccountId"].as_str(), body["toAccountId"].as_str()), (Some(from.as_str()), Some(to.as_str())));
    assert_eq!((body["amount"].as_str(), body["currency"].as_str()), (Some("12.34"), Some("USD")));
    assert_eq!(body["description"], "Lunch");
    assert_eq!(balance(&app, &alice, &from).await, "87.66");
    assert_eq!(balance(&app, &bob, &to).await, "12.34");

    let event = newest_event(&app, body["id"].as_str().unwrap(), &["transfer.completed"]).await;
    assert_eq!(event["sender"]["userId"], alice.id.as_str());
    assert_eq!(event["sender"]["email"], alice.email.as_str());
    assert_eq!(event["recipient"]["accountId"], to.as_str());
    assert_eq!(event["recipient"]["userId"], bob.id.as_str());
    assert_eq!(event["amount"], "12.34");

    let path = format!("/transfers/{}", body["id"].as_str().unwrap());
    assert_eq!(app.get(&path).bearer(&alice.access).send().await.json(), body);
    app.get(&path).bearer(&bob.access).send().await.expect(200);
    let carol = signed_up(&app, "carol-pay").await;
    app.get(&path).bearer(&carol.access).send().await.expect(404);
    app.get("/transfers/not-a-uuid").bearer(&alice.access).send().await.expect(404);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn the_recipient_may_be_named_by_email() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-email").await;
    let bob = signed_up(&app, "bob-email").await;
    let from = funded_wallet(&app, &alice, "VND", "100000").await;
    let to = wallet(&app, &bob, "VND").await;
    let reply = transfer(
        &app,
        &alice,
        &json!({ "fromAccountId": from, "toEmail": bob.email.to_uppercase(), "amount": "15000", "currency": "VND" }),
    )
    .await;
    reply.expect(201);
    assert_eq!(reply.json()["toAccountId"], to.as_str());
    assert_eq!(balance(&app, &bob, &to).await, "15000");

    // An unknown address, and a user without an active wallet in the currency.
    for (email, currency) in [("nobody@example.com", "VND"), (bob.email.as_str(), "EUR")] {
        let missing = transfer(
            &app,
            &alice,
            &json!({ "fromAccountId": from, "toEmail": email, "amount": "1", "currency": currency }),
        )
        .await;
        missing.expect(404);
        assert_eq!(missing.problem(), "recipient-not-found");
    }
}

/// Sends `body` from `user` and asserts the problem; nothing may change.
async fn refused(app: &TestApp, user: &crate::users::User, body: Value, status: u16, problem: &str) {
    let transfers_before = count(app, "SELECT count(*) FROM ledger.transfers").await;
    let events_before = count(app, "SELECT count(*) FROM outbox.events").await;
    let reply = transfer(app, user, &body).await;
    reply.expect(status);
    assert_eq!(reply.problem(), problem, "{body}");
    assert_eq!(count(app, "SELECT count(*) FROM ledger.transfers").await, transfers_before);
    assert_eq!(count(app, "SELECT count(*) FROM outbox.events").await, events_before);
}

#[tokio::test]
async fn every_rule_refuses_without_side_effects() {
    let app = TestApp::spawn_with(|config| config.variable("max_transfer_amount", "*=1000, VND=50000000")).await;
    let alice = verified(&app, "alice-rules").await;
    let bob = signed_up(&app, "bob-rules").await;
    let usd = funded_wallet(&app, &alice, "USD", "100").await;
    let eur = funded_wallet(&app, &alice, "EUR", "100").await;
    let vnd = funded_wallet(&app, &alice, "VND", "100000").await;
    let bob_usd = funded_wallet(&app, &bob, "USD", "50").await;
    let bob_eur = wallet(&app, &bob, "EUR").await;
    let send = |from: &str, to: &str, amount: &str, currency: &str| {
        json!({ "fromAccountId": from, "toAccountId": to, "amount": amount, "currency": currency })
    };

    refused(&app, &alice, send(&bob_usd, &usd, "1", "USD"), 404, "account-not-found").await;
    refused(&app, &bob, send(&bob_usd, &usd, "1", "USD"), 403, "email-not-verified").await;
    refused(&app, &alice, send(&usd, &bob_eur, "1", "USD"), 422, "currency-mismatch").await;
    refused(&app, &alice, send(&usd, &bob_usd, "1", "EUR"), 422, "currency-mismatch").await;
    refused(&app, &alice, send(&usd, &bob_usd, "100.01", "USD"), 422, "insufficient-funds").await;
    refused(&app, &alice, send(&usd, &usd, "1", "USD"), 422, "same-account").await;
    refused(&app, &alice, send(&usd, &bob_usd, "1000.01", "USD"), 422, "amount-above-limit").await;
    refused(&app, &alice, send(&vnd, &bob_usd, "10.5", "VND"), 422, "validation-failed").await;
    refused(&app, &alice, send(&usd, &bob_usd, "0.001", "USD"), 422, "validation-failed").await;
    for amount in ["0", "-1", "1e2", "abc", ""] {
        refused(&app, &alice, send(&usd, &bob_usd, amount, "USD"), 422, "validation-failed").await;
    }
    refused(&app, &alice, json!({ "fromAccountId": usd, "amount": "1", "currency": "USD" }), 422, "validation-failed").await;
    refused(
        &app,
        &alice,
        json!({ "fromAccountId": usd, "toAccountId": bob_usd, "toEmail": bob.email, "amount": "1", "currency": "USD" }),
        422,
        "validation-failed",
    )
    .await;
    refused(&app, &alice, json!({ "fromAccountId": usd, "toAccountId": bob_usd, "amount": 1, "currency": "USD" }), 422, "validation-failed").await;
    let long = "x".repeat(201);
    refused(
        &app,
        &alice,
        json!({ "fromAccountId": usd, "toAccountId": bob_usd, "amount": "1", "currency": "USD", "description": long }),
        422,
        "validation-failed",
    )
    .await;

    // A closed wallet takes no postings.
    app.post("/withdrawals")
        .bearer(&bob.access)
        .header("idempotency-key", key())
        .json(&json!({ "accountId": bob_usd, "amount": "50" }))
        .send()
        .await
        .expect(201);
    app.delete(&format!("/accounts/{bob_usd}")).bearer(&bob.access).send().await.expect(200);
    refused(&app, &alice, send(&usd, &bob_usd, "1", "USD"), 409, "account-closed").await;

    assert_eq!(balance(&app, &alice, &usd).await, "100.00");
    assert_eq!(balance(&app, &alice, &eur).await, "100.00");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn money_requests_need_a_valid_idempotency_key_and_a_token() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-key").await;
    let usd = wallet(&app, &alice, "USD").await;
    let body = json!({ "accountId": usd, "amount": "5" });
    let missing = app.post("/deposits").bearer(&alice.access).json(&body).send().await;
    missing.expect(400);
    assert_eq!(missing.problem(), "idempotency-key-required");
    let too_long = app.post("/deposits").bearer(&alice.access).header("idempotency-key", "k".repeat(256)).json(&body).send().await;
    too_long.expect(400);
    assert_eq!(too_long.problem(), "idempotency-key-invalid");
    app.post("/deposits").header("idempotency-key", key()).json(&body).send().await.expect(401);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers").await, 0);
}

#[tokio::test]
async fn an_idempotency_key_replays_its_outcome_and_refuses_other_requests() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-replay").await;
    let bob = signed_up(&app, "bob-replay").await;
    let from = funded_wallet(&app, &alice, "USD", "10").await;
    let to = wallet(&app, &bob, "USD").await;
    let body = json!({ "fromAccountId": from, "toAccountId": to, "amount": "4", "currency": "USD" });
    let idempotency_key = key();
    let send = |body: Value, user: &crate::users::User, k: String| {
        let request = app.post("/transfers").bearer(&user.access).header("idempotency-key", k).json(&body);
        request.send()
    };

    let first = send(body.clone(), &alice, idempotency_key.clone()).await;
    first.expect(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send(body.clone(), &alice, idempotency_key.clone()).await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the original body, byte for byte");
    // The same money written differently is the same request.
    let mut equivalent = body.clone();
    equivalent["amount"] = json!("4.00");
    send(equivalent, &alice, idempotency_key.clone()).await.expect(201);

    let mut different = body.clone();
    different["amount"] = json!("5");
    let reused = send(different, &alice, idempotency_key.clone()).await;
    reused.expect(422);
    assert_eq!(reused.problem(), "idempotency-key-reused");
    assert_eq!(balance(&app, &alice, &from).await, "6.00");

    // A refused posting is an outcome too: its replay does not re-run the rules.
    let greedy = json!({ "fromAccountId": from, "toAccountId": to, "amount": "7", "currency": "USD" });
    let greedy_key = key();
    send(greedy.clone(), &alice, greedy_key.clone()).await.expect(422);
    deposit(&app, &alice, &from, "10").await.expect(201);
    let replayed = send(greedy, &alice, greedy_key).await;
    replayed.expect(422);
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.problem(), "insufficient-funds");

    // Keys are scoped per user: bob's identical key is his own, for another request.
    let bobs = wallet(&app, &bob, "EUR").await;
    app.post("/deposits")
        .bearer(&bob.access)
        .header("idempotency-key", idempotency_key.clone())
        .json(&json!({ "accountId": bobs, "amount": "1" }))
        .send()
        .await
        .expect(201);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 1);
}

#[tokio::test]
async fn idempotency_keys_expire() {
    let app = TestApp::spawn_with(|config| config.variable("idempotency_key_ttl_secs", "3")).await;
    let alice = verified(&app, "alice-expiry").await;
    let usd = wallet(&app, &alice, "USD").await;
    let k = key();
    let deposit_with = |amount: &str| {
        app.post("/deposits")
            .bearer(&alice.access)
            .header("idempotency-key", k.clone())
            .json(&json!({ "accountId": usd, "amount": amount }))
            .send()
    };
    deposit_with("1").await.expect(201);
    deposit_with("2").await.expect(422);
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    deposit_with("2").await.expect(201);
    assert_eq!(balance(&app, &alice, &usd).await, "3.00");
}

#[tokio::test]
async fn deposits_and_withdrawals_go_through_the_settlement_account() {
    let app = TestApp::spawn_with(|config| config.variable("max_deposit_amount", "*=1000, JPY=100000")).await;
    let alice = signed_up(&app, "alice-settle").await;
    let bob = signed_up(&app, "bob-settle").await;
    let jpy = wallet(&app, &alice, "JPY").await;

    let deposited = deposit(&app, &alice, &jpy, "5000").await;
    deposited.expect(201);
    assert_eq!(deposited.json()["kind"], "deposit");
    assert_eq!(deposited.json()["fromAccountId"], Value::Null, "settlement accounts stay invisible");
    let event = newest_event(&app, deposited.json()["id"].as_str().unwrap(), &["deposit.completed"]).await;
    assert_eq!(event["balanceAfter"], "5000");
    assert_eq!(event["account"]["userId"], alice.id.as_str());

    let too_precise = deposit(&app, &alice, &jpy, "1.5").await;
    too_precise.expect(422);
    assert_eq!(too_precise.problem(), "amount-too-precise");
    let too_much = deposit(&app, &alice, &jpy, "100001").await;
    too_much.expect(422);
    assert_eq!(too_much.problem(), "amount-above-limit");
    deposit(&app, &bob, &jpy, "1").await.expect(404);

    let withdraw = |amount: &str| {
        app.post("/withdrawals")
            .bearer(&alice.access)
            .header("idempotency-key", key())
            .json(&json!({ "accountId": jpy, "amount": amount }))
            .send()
    };
    let overdraw = withdraw("5001").await;
    overdraw.expect(422);
    assert_eq!(overdraw.problem(), "insufficient-funds");
    let withdrawn = withdraw("5000").await;
    withdrawn.expect(201);
    assert_eq!(withdrawn.json()["toAccountId"], Value::Null);
    newest_event(&app, withdrawn.json()["id"].as_str().unwrap(), &["withdrawal.completed"]).await;
    assert_eq!(balance(&app, &alice, &jpy).await, "0");
    let settlement: String = app
        .sql()
        .await
        .query_one("SELECT balance::text FROM accounts.accounts WHERE kind = 'settlement' AND currency = 'JPY'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(settlement, "0.0000");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn the_recipient_refunds_up_to_what_is_left() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-refund").await;
    let bob = verified(&app, "bob-refund").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = wallet(&app, &bob, "USD").await;
    let paid = transfer(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "30", "currency": "USD" })).await;
    paid.expect(201);
    let original = paid.json()["id"].as_str().unwrap().to_owned();
    let refunds = format!("/transfers/{original}/refunds");
    let refund = |user: &crate::users::User, body: Option<Value>| {
        let mut call = app.post(&refunds).bearer(&user.access).header("idempotency-key", key());
        if let Some(body) = body {
            call = call.json(&body);
        }
        call.send()
    };

    let partial = refund(&bob, Some(json!({ "amount": "10" }))).await;
    partial.expect(201);
    assert_eq!(partial.json()["kind"], "refund");
    assert_eq!(partial.json()["refundOf"], original.as_str());
    assert_eq!((partial.json()["fromAccountId"].as_str(), partial.json()["toAccountId"].as_str()), (Some(to.as_str()), Some(from.as_str())));
    let event = newest_event(&app, &original, &["transfer.refunded"]).await;
    assert_eq!((event["amount"].as_str(), event["refundedAmount"].as_str()), (Some("10.00"), Some("10.00")));
    let parties = |party: &str| (event[party]["accountId"].clone(), event[party]["userId"].clone(), event[party]["email"].clone());
    assert_eq!(parties("refundedBy"), (json!(to), json!(bob.id), json!(bob.email)));
    assert_eq!(parties("refundedTo"), (json!(from), json!(alice.id), json!(alice.email)));

    let sender = refund(&alice, Some(json!({ "amount": "1" }))).await;
    sender.expect(404);
    assert_eq!(sender.problem(), "transfer-not-found");
    let excess = refund(&bob, Some(json!({ "amount": "20.01" }))).await;
    excess.expect(422);
    assert_eq!(excess.problem(), "refund-exceeds-transfer");
    let rest = refund(&bob, None).await;
    rest.expect(201);
    assert_eq!(rest.json()["amount"], "20.00");
    refund(&bob, Some(json!({ "amount": "0.01" }))).await.expect(422);

    let view = app.get(&format!("/transfers/{original}")).bearer(&alice.access).send().await.json();
    assert_eq!(view["refundedAmount"], "30.00");
    assert_eq!(balance(&app, &alice, &from).await, "100.00");
    assert_eq!(balance(&app, &bob, &to).await, "0.00");

    let deposit_id = deposit(&app, &bob, &to, "5").await.json()["id"].as_str().unwrap().to_owned();
    let not_refundable = app
        .post(&format!("/transfers/{deposit_id}/refunds"))
        .bearer(&bob.access)
        .header("idempotency-key", key())
        .send()
        .await;
    not_refundable.expect(422);
    assert_eq!(not_refundable.problem(), "not-refundable");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn history_lists_postings_newest_first_in_stable_pages() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-history").await;
    let bob = verified(&app, "bob-history").await;
    let mine = funded_wallet(&app, &alice, "BHD", "10").await;
    let theirs = wallet(&app, &bob, "BHD").await;
    let app = &app;
    let send = |user: &crate::users::User, from: &str, to: &str, amount: &str| {
        let body = json!({ "fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "BHD", "description": format!("n{amount}") });
        let user = user.clone();
        async move { transfer(app, &user, &body).await }
    };
    send(&alice, &mine, &theirs, "1.5").await.expect(201);
    send(&bob, &theirs, &mine, "0.25").await.expect(201);
    let paid = send(&alice, &mine, &theirs, "2").await;
    let refunded = app
        .post(&format!("/transfers/{}/refunds", paid.json()["id"].as_str().unwrap()))
        .bearer(&bob.access)
        .header("idempotency-key", key())
        .json(&json!({ "amount": "0.5" }))
        .send()
        .await;
    refunded.expect(201);
    app.post("/withdrawals")
        .bearer(&alice.access)
        .header("idempotency-key", key())
        .json(&json!({ "accountId": mine, "amount": "1" }))
        .send()
        .await
        .expect(201);

    let page = app.get(&format!("/accounts/{mine}/transactions")).bearer(&alice.access).send().await;
    page.expect(200);
    let entries = page.json()["transactions"].as_array().unwrap().clone();
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["withdrawal", "refund-in", "transfer-out", "transfer-in", "transfer-out", "deposit"]);
    let amounts: Vec<&str> = entries.iter().map(|e| e["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["-1.000", "0.500", "-2.000", "0.250", "-1.500", "10.000"]);
    let after: Vec<&str> = entries.iter().map(|e| e["balanceAfter"].as_str().unwrap()).collect();
    assert_eq!(after, ["6.250", "7.250", "6.750", "8.750", "8.500", "10.000"]);
    let counterparty = &entries[3]["counterparty"];
    assert_eq!(counterparty["accountId"], theirs.as_str());
    assert_eq!(counterparty["name"], "bob-history user");
    assert!(!page.body.windows(bob.email.len()).any(|w| w == bob.email.as_bytes()), "never the other user's e-mail");
    assert_eq!(entries[0]["counterparty"], Value::Null, "a withdrawal's counterparty is the outside world");
    assert_eq!(page.json()["nextCursor"], Value::Null);

    // Pages of two, with postings arriving between pages: nothing repeats, nothing is lost.
    let first = app.get(&format!("/accounts/{mine}/transactions?limit=2")).bearer(&alice.access).send().await.json();
    send(&alice, &mine, &theirs, "0.001").await.expect(201);
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let second = app
        .get(&format!("/accounts/{mine}/transactions?limit=2&cursor={cursor}"))
        .bearer(&alice.access)
        .send()
        .await
        .json();
    let third_cursor = second["nextCursor"].as_str().unwrap().to_owned();
    let third = app
        .get(&format!("/accounts/{mine}/transactions?limit=2&cursor={third_cursor}"))
        .bearer(&alice.access)
        .send()
        .await
        .json();
    let paged: Vec<Value> = [first, second, third.clone()]
        .iter()
        .flat_map(|p| p["transactions"].as_array().unwrap().clone())
        .collect();
    assert_eq!(paged, entries, "the pages are the history as it was when paging began");
    assert_eq!(third["nextCursor"], Value::Null);

    let future = app
        .get(&format!("/accounts/{mine}/transactions?from=2999-01-01T00:00:00Z"))
        .bearer(&alice.access)
        .send()
        .await
        .json();
    assert_eq!(future["transactions"], json!([]));
    let past = app
        .get(&format!("/accounts/{mine}/transactions?to=2000-01-01T00:00:00Z"))
        .bearer(&alice.access)
        .send()
        .await
        .json();
    assert_eq!(past["transactions"], json!([]));

    app.get(&format!("/accounts/{mine}/transactions")).bearer(&bob.access).send().await.expect(404);
    for bad in ["limit=0", "limit=1000", "cursor=forged", "from=yesterday"] {
        app.get(&format!("/accounts/{mine}/transactions?{bad}")).bearer(&alice.access).send().await.expect(422);
    }
}
