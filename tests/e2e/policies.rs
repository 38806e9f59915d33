//! Policy plugins (wit/policy/policy.wit) end to end: each shipped plugin allows, refuses
//! and charges as it says through HTTP, holds and captures included, refusals change
//! nothing, racing requests never pass a limit, swapping a plugin in the manifest changes
//! behaviour with the same transfers.wasm, a plugin built against contract 0.1.0 keeps
//! working in the compatibility slot and is asked about holds as transfers, a plugin fits
//! only a slot of its contract version, and a plugin that misbehaves or imports a
//! capability is contained.

use futures::future::join_all;
use serde_json::json;
use wasmpay_host::HostConfig;
use wasmpay_test_support::paths;

use crate::{
    app::{Reply, Runtime, Server, TestApp},
    holds::{capture, place},
    money::{assert_books_balance, balance, count, funded_wallet, key, transfer, wallet},
    users::{User, signed_up, verified},
};

const TRANSFERS: &str = "transfers";
const THIRD_SLOT: &str = "third-policy";

async fn spawn(customize: impl FnOnce(HostConfig) -> HostConfig) -> TestApp {
    TestApp::spawn_with(customize).await
}

/// A transfer of `amount` USD between two wallets.
async fn pay(app: &TestApp, user: &User, from: &str, to: &str, amount: &str) -> Reply {
    transfer(app, user, &json!({"fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "USD"})).await
}

async fn transfer_count(app: &TestApp) -> i64 {
    count(app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await
}

/// What the platform's USD fee account holds, in cents.
async fn usd_fee_cents(app: &TestApp) -> i64 {
    count(app, "SELECT coalesce(sum((balance * 100)::bigint), 0)::int8 FROM accounts.accounts WHERE kind = 'fees' AND currency = 'USD'").await
}

#[tokio::test]
async fn the_fee_policy_charges_the_sender_and_books_the_fee_for_the_platform() {
    let app = spawn(|config| config.variable("transfer_fees", "USD=0.30+25bp, VND=1000")).await;
    let (alice, bob) = (verified(&app, "fee-alice").await, verified(&app, "fee-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "100.00").await;
    let to = wallet(&app, &bob, "USD").await;

    // 0.30 + 0.25% of 10.00 = 0.325, half-even to the cent: 0.32.
    let sent = transfer(&app, &alice, &json!({"fromAccountId": from, "toAccountId": to, "amount": "10.00", "currency": "USD"})).await;
    sent.expect(201);
    let posted = sent.json();
    assert_eq!((posted["amount"].as_str(), posted["fee"].as_str()), (Some("10.00"), Some("0.32")));
    assert_eq!(balance(&app, &alice, &from).await, "89.68");
    assert_eq!(balance(&app, &bob, &to).await, "10.00");
    let fees = count(&app, "SELECT (balance * 100)::bigint FROM accounts.accounts WHERE kind = 'fees' AND currency = 'USD'").await;
    assert_eq!(fees, 32, "the fee account holds the fee");

    let history = app.get(&format!("/accounts/{from}/transactions")).bearer(&alice.access).send().await;
    history.expect(200);
    let entry = &history.json()["transactions"][0];
    assert_eq!((entry["amount"].as_str(), entry["fee"].as_str()), (Some("-10.32"), Some("0.32")));
    let received = app.get(&format!("/accounts/{to}/transactions")).bearer(&bob.access).send().await;
    assert!(received.json()["transactions"][0].get("fee").is_none(), "the recipient sees no fee");
    let event = crate::users::newest_event(&app, posted["id"].as_str().unwrap(), &["transfer.completed"]).await;
    assert_eq!(event["fee"], "0.32");

    // The balance must cover amount and fee: 89.68 + its fee does not fit in 89.68.
    let before = transfer_count(&app).await;
    let short = transfer(&app, &alice, &json!({"fromAccountId": from, "toAccountId": to, "amount": "89.68", "currency": "USD"})).await;
    short.expect(422);
    assert_eq!(short.problem(), "insufficient-funds");
    assert_eq!(transfer_count(&app).await, before);

    // A refund gives back the amount; the fee stays with the platform.
    let refund = app
        .post(&format!("/transfers/{}/refunds", posted["id"].as_str().unwrap()))
        .bearer(&bob.access)
        .header("idempotency-key", key())
        .send()
        .await;
    refund.expect(201);
    assert_eq!(refund.json()["fee"], "0.00");
    assert_eq!(balance(&app, &alice, &from).await, "99.68");
    assert_eq!(balance(&app, &bob, &to).await, "0.00");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn a_malformed_policy_setting_stops_postings_with_a_problem() {
    let app = spawn(|config| config.variable("transfer_fees", "USD=lots")).await;
    let (alice, bob) = (verified(&app, "bad-fee-alice").await, verified(&app, "bad-fee-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "10").await;
    let to = wallet(&app, &bob, "USD").await;
    let refused = transfer(&app, &alice, &json!({"fromAccountId": from, "toAccountId": to, "amount": "1", "currency": "USD"})).await;
    refused.expect(503);
    assert_eq!(refused.problem(), "policy-misconfigured");
    assert!(refused.json()["detail"].as_str().unwrap().contains("transfer_fees"));
    assert_eq!(transfer_count(&app).await, 0);
    assert_eq!(balance(&app, &alice, &from).await, "10.00");
}

#[tokio::test]
async fn the_velocity_policy_counts_transfers_and_amounts_in_a_rolling_day() {
    let app = spawn(|config| config.variable("transfer_velocity", "USD=2/100, VND=/1000")).await;
    let (alice, bob) = (verified(&app, "velocity-alice").await, verified(&app, "velocity-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "500").await;
    let to = wallet(&app, &bob, "USD").await;
    let send = |amount: &'static str| pay(&app, &alice, &from, &to, amount);

    send("20").await.expect(201);
    let too_much = send("80.01").await;
    too_much.expect(429);
    assert_eq!(too_much.problem(), "velocity-limit-exceeded");
    send("30").await.expect(201);
    let too_many = send("0.01").await;
    too_many.expect(429);
    assert_eq!(too_many.problem(), "velocity-limit-exceeded");
    assert_eq!(transfer_count(&app).await, 2, "refusals post nothing");
    assert_eq!(balance(&app, &alice, &from).await, "450.00");

    // What a wallet receives does not count against what it may send.
    let bob_sends = transfer(&app, &bob, &json!({"fromAccountId": to, "toAccountId": from, "amount": "49", "currency": "USD"})).await;
    bob_sends.expect(201);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn racing_transfers_never_pass_a_velocity_limit_and_fees_keep_the_books_balanced() {
    let app = spawn(|config| {
        config
            .variable("transfer_velocity", "USD=5/")
            .variable("transfer_fees", "USD=0.01+10bp")
    })
    .await;
    let (alice, bob) = (verified(&app, "race-alice").await, verified(&app, "race-bob").await);
    let alice_usd = funded_wallet(&app, &alice, "USD", "1000").await;
    let bob_usd = funded_wallet(&app, &bob, "USD", "1000").await;
    let app = &app;
    let requests = (0..24).map(|n| {
        let (user, from, to) = if n % 2 == 0 { (&alice, &alice_usd, &bob_usd) } else { (&bob, &bob_usd, &alice_usd) };
        async move { pay(app, user, from, to, &format!("{}.{:02}", 1 + n, n)).await }
    });
    let replies = join_all(requests).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 10, "five per wallet: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 429), "{statuses:?}");
    for wallet in [&alice_usd, &bob_usd] {
        let sent = count(&app, &format!("SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer' AND from_account_id = '{wallet}'")).await;
        assert_eq!(sent, 5);
    }
    let fee_entries = count(&app, "SELECT count(*) FROM ledger.entries e JOIN accounts.accounts a ON a.id = e.account_id WHERE a.kind = 'fees'").await;
    assert_eq!(fee_entries, 10, "every transfer paid its fee");
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn holds_and_captures_obey_the_transfer_rules_and_only_the_capture_pays_the_fee() {
    let app = spawn(|config| {
        config
            .variable("max_transfer_amount", "USD=50")
            .variable("transfer_fees", "USD=1")
            .variable("transfer_velocity", "USD=2/")
    })
    .await;
    let (alice, bob) = (verified(&app, "hold-rules-alice").await, verified(&app, "hold-rules-bob").await);
    let carol = signed_up(&app, "hold-rules-carol").await;
    let from = funded_wallet(&app, &alice, "USD", "200").await;
    let to = wallet(&app, &bob, "USD").await;
    let hold = |amount: &str| json!({"fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "USD"});

    // policies/standard: a hold announces a transfer, so the transfer limit and the verified
    // e-mail apply to it.
    let above = place(&app, &alice, &hold("50.01")).await;
    assert_eq!((above.status, above.problem()), (422, "amount-above-limit".to_owned()));
    let carol_wallet = funded_wallet(&app, &carol, "USD", "10").await;
    let unverified = place(
        &app,
        &carol,
        &json!({"fromAccountId": carol_wallet, "toAccountId": to, "amount": "1", "currency": "USD"}),
    )
    .await;
    assert_eq!((unverified.status, unverified.problem()), (403, "email-not-verified".to_owned()));

    // policies/fees: the hold only reserves money; its capture is the transfer, and pays.
    let placed = place(&app, &alice, &hold("40")).await;
    placed.expect(201);
    assert_eq!(balance(&app, &alice, &from).await, "200.00");
    assert_eq!(usd_fee_cents(&app).await, 0, "no fee on a hold");
    let id = placed.json()["id"].as_str().unwrap().to_owned();
    capture(&app, &bob, &id, None).await.expect(201);
    assert_eq!(balance(&app, &alice, &from).await, "159.00", "40 and the fee of 1");
    assert_eq!(balance(&app, &bob, &to).await, "40.00");
    assert_eq!(usd_fee_cents(&app).await, 100);

    // policies/velocity (two a day): the capture was the first transfer, this is the second,
    // and a hold is checked as the third.
    pay(&app, &alice, &from, &to, "1").await.expect(201);
    let too_many = place(&app, &alice, &hold("1")).await;
    assert_eq!((too_many.status, too_many.problem()), (429, "velocity-limit-exceeded".to_owned()));
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.holds").await, 1, "refusals place nothing");
    assert_eq!(transfer_count(&app).await, 2);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn a_plugin_built_against_contract_0_1_works_in_the_compatibility_slot_and_sees_holds_as_transfers() {
    let engine = std::fs::read(paths::component("transfers")).unwrap();
    let app = TestApp::spawn().await;
    let (alice, bob, carol) =
        (verified(&app, "block-alice").await, verified(&app, "block-bob").await, verified(&app, "block-carol").await);
    let dave = verified(&app, "block-dave").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to_bob = wallet(&app, &bob, "USD").await;
    let to_carol = wallet(&app, &carol, "USD").await;
    let to_dave = wallet(&app, &dave, "USD").await;
    let pay =
        |to: &str, amount: &str| json!({"fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "USD"});
    transfer(&app, &alice, &pay(&to_bob, "1")).await.expect(201);
    let for_dave = place(&app, &alice, &pay(&to_dave, "5")).await;
    for_dave.expect(201);
    let for_dave = for_dave.json()["id"].as_str().unwrap().to_owned();

    // The same database and transfers.wasm; the manifest's compatibility slot now holds the
    // JavaScript blocklist, built against 0.1.0 and never rebuilt since, and bob is on the
    // list: his user id (as a sender), his wallet and his e-mail address (as a request names
    // a recipient; matched whatever its case). So is dave's wallet, not dave.
    let TestApp { db, server, .. } = app;
    drop(server);
    let blocked = format!("nobody@example.com, {}, {to_bob}, {}, {to_dave}", bob.id, bob.email.to_uppercase());
    let config = TestApp::config(&db)
        .dependency_source(TRANSFERS, paths::COMPATIBILITY_SLOT, paths::js_policy())
        .variable("blocked_parties", blocked);
    assert_eq!(config.component_sources[TRANSFERS], paths::component("transfers"));
    let app =
        TestApp::serving(db, Server::start(config).await.expect("the application starts with the JavaScript plugin"));
    let to_bob_by_email = json!({"fromAccountId": from, "toEmail": bob.email, "amount": "1", "currency": "USD"});
    for refused in [pay(&to_bob, "1"), to_bob_by_email.clone()] {
        let reply = transfer(&app, &alice, &refused).await;
        reply.expect(403);
        assert_eq!(reply.problem(), "party-blocked");
        assert!(
            !reply.json()["detail"].as_str().unwrap().contains(&bob.email),
            "the refusal does not say who is blocked"
        );
    }
    let bob_sends = transfer(
        &app,
        &bob,
        &json!({"fromAccountId": to_bob, "toAccountId": to_carol, "amount": "0.50", "currency": "USD"}),
    )
    .await;
    bob_sends.expect(403);
    transfer(&app, &alice, &pay(&to_carol, "1")).await.expect(201);

    // Contract 0.1.0 names no holds: the plugin is asked about a hold as the transfer it
    // announces, and about a capture as the payer's transfer it becomes.
    for refused in [pay(&to_bob, "1"), to_bob_by_email] {
        let reply = place(&app, &alice, &refused).await;
        assert_eq!((reply.status, reply.problem()), (403, "party-blocked".to_owned()), "{refused}");
    }
    let bob_holds = place(
        &app,
        &bob,
        &json!({"fromAccountId": to_bob, "toAccountId": to_carol, "amount": "0.50", "currency": "USD"}),
    )
    .await;
    assert_eq!((bob_holds.status, bob_holds.problem()), (403, "party-blocked".to_owned()));
    let for_carol = place(&app, &alice, &pay(&to_carol, "2")).await;
    for_carol.expect(201);
    capture(&app, &carol, for_carol.json()["id"].as_str().unwrap(), None).await.expect(201);
    let dave_captures = capture(&app, &dave, &for_dave, None).await;
    assert_eq!((dave_captures.status, dave_captures.problem()), (403, "party-blocked".to_owned()));

    assert_eq!(balance(&app, &alice, &from).await, "96.00");
    assert_eq!(balance(&app, &bob, &to_bob).await, "1.00");
    assert_eq!(balance(&app, &dave, &to_dave).await, "0.00");
    assert_eq!(
        count(&app, &format!("SELECT count(*) FROM ledger.holds WHERE id = '{for_dave}' AND status = 'pending'")).await,
        1
    );
    assert_eq!(transfer_count(&app).await, 3);
    assert_books_balance(&app).await;
    assert_eq!(std::fs::read(paths::component("transfers")).unwrap(), engine, "the engine was not rebuilt");
}

#[tokio::test]
async fn a_plugin_fills_only_a_slot_of_the_contract_version_it_was_built_against() {
    let db = wasmpay_test_support::postgres::migrated_database().await.expect("a migrated test database");
    let misplaced = [
        (THIRD_SLOT, paths::js_policy(), "wasmpay:policy/policy@0.2.0"),
        (paths::COMPATIBILITY_SLOT, paths::policy("policy-standard"), "wasmpay:policy/policy@0.1.0"),
    ];
    for (slot, plugin, wanted) in misplaced {
        let config = TestApp::config(&db).dependency_source(TRANSFERS, slot, &plugin);
        let Err(error) = Server::start(config).await else {
            panic!("the application started with {} in slot {slot} under {:?}", plugin.display(), Runtime::current());
        };
        let message = format!("{error:#}");
        assert!(message.contains(&format!("dependency '{slot}'")) && message.contains(wanted), "{message}");
    }
}

#[tokio::test]
async fn a_misbehaving_plugin_posts_nothing() {
    let app = spawn(|config| config.dependency_source(TRANSFERS, THIRD_SLOT, paths::policy("policy-misbehaving"))).await;
    let (alice, bob) = (verified(&app, "misbehaving-alice").await, verified(&app, "misbehaving-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "500").await;
    let to = wallet(&app, &bob, "USD").await;
    let send = |amount: &'static str| pay(&app, &alice, &from, &to, amount);
    send("1").await.expect(201);
    // Garbage: a fee finer than a cent, a refusal with status 200, a slug that is not one.
    for amount in ["66.6", "77.7", "88.8"] {
        let reply = send(amount).await;
        reply.expect(503);
        assert_eq!(reply.problem(), "policy-failed", "{amount}");
    }
    // A trap ends the request as Spin ends it: an empty 500, and nothing posted.
    let trapped = app
        .post("/transfers")
        .undocumented()
        .bearer(&alice.access)
        .header("idempotency-key", key())
        .json(&json!({"fromAccountId": from, "toAccountId": to, "amount": "13.13", "currency": "USD"}))
        .send()
        .await;
    trapped.expect(500);
    assert!(trapped.body.is_empty());
    assert_eq!(transfer_count(&app).await, 1);
    assert_eq!(balance(&app, &alice, &from).await, "499.00");
    send("2").await.expect(201);
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn a_plugin_importing_a_capability_is_refused_at_start_up() {
    let db = wasmpay_test_support::postgres::migrated_database().await.expect("a migrated test database");
    let config = TestApp::config(&db).dependency_source(TRANSFERS, THIRD_SLOT, paths::policy("policy-nosy"));
    let Err(error) = Server::start(config).await else {
        panic!("the application started with a plugin importing Spin's variables under {:?}", Runtime::current());
    };
    let message = format!("{error:#}");
    assert!(message.contains("dependency 'third-policy' of component 'transfers'"), "{message}");
    assert!(message.contains("spin:variables/variables@3.0.0"), "{message}");
}

#[tokio::test]
async fn a_plugin_whose_export_does_not_fit_the_slot_is_refused_at_start_up() {
    // Imports nothing, exports the interface by name, but its `evaluate` takes nothing.
    let misfit = wat::parse_str(
        r#"(component
            (core module $m (func (export "evaluate")))
            (core instance $i (instantiate $m))
            (func $evaluate (canon lift (core func $i "evaluate")))
            (instance $policy (export "evaluate" (func $evaluate)))
            (export "wasmpay:policy/policy@0.2.0" (instance $policy))
        )"#,
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!("wasmpay-misfit-{}.wasm", std::process::id()));
    std::fs::write(&path, misfit).unwrap();
    let db = wasmpay_test_support::postgres::migrated_database().await.expect("a migrated test database");
    let config = TestApp::config(&db).dependency_source(TRANSFERS, THIRD_SLOT, &path);
    let outcome = Server::start(config).await;
    let _ = std::fs::remove_file(&path);
    let Err(error) = outcome else {
        panic!("the application started with a plugin that does not fit its slot under {:?}", Runtime::current());
    };
    let message = format!("{error:#}");
    assert!(message.contains("third-policy") && message.contains("not compatible"), "{message}");
}
