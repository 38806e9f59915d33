//! The engine under concurrent load, through the HTTP host: after every run the books
//! balance (ledger.check_invariants), no request failed with a 5xx, and each effect
//! happened exactly as often as the responses say.

use std::{collections::BTreeMap, time::Instant};

use futures::future::join_all;
use serde_json::json;

use crate::{
    app::TestApp,
    holds,
    money::{assert_books_balance, balance, count, funded_wallet, key, wallet},
    users::{User, verified},
};

/// A small deterministic generator: reproducible runs without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WALLETS: usize = 50;
const CLIENTS: usize = 32;
const TRANSFERS_PER_CLIENT: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_transfers_keeps_the_books_balanced() {
    let app = TestApp::spawn().await;
    let mut people: Vec<(User, String)> = Vec::new();
    for n in 0..WALLETS {
        let user = verified(&app, &format!("storm{n}")).await;
        let wallet = funded_wallet(&app, &user, "USD", "1000").await;
        people.push((user, wallet));
    }
    let hot = 0;
    let clients = (0..CLIENTS).map(|client| {
        let people = &people;
        let app = &app;
        async move {
            let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (client as u64 + 1));
            // Clients 2k and 2k+1 share a pair of wallets and send in opposite directions.
            let pair = (1 + (client / 2) * 2 % (WALLETS - 2), 2 + (client / 2) * 2 % (WALLETS - 2));
            let mut statuses: BTreeMap<(u16, String), usize> = BTreeMap::new();
            let mut waits = Vec::with_capacity(TRANSFERS_PER_CLIENT);
            for _ in 0..TRANSFERS_PER_CLIENT {
                let (from, to) = match random.below(4) {
                    0 => {
                        let other = 1 + random.below(WALLETS - 1);
                        if random.below(2) == 0 { (hot, other) } else { (other, hot) }
                    }
                    1 if client % 2 == 0 => pair,
                    1 => (pair.1, pair.0),
                    _ => {
                        let from = random.below(WALLETS);
                        let to = (from + 1 + random.below(WALLETS - 1)) % WALLETS;
                        (from, to)
                    }
                };
                let cents = 1 + random.below(2_000);
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                let (sender, source) = &people[from];
                let sent = Instant::now();
                let reply = app
                    .post("/transfers")
                    .bearer(&sender.access)
                    .header("idempotency-key", key())
                    .json(&json!({ "fromAccountId": source, "toAccountId": people[to].1, "amount": amount, "currency": "USD" }))
                    .send()
                    .await;
                waits.push(sent.elapsed());
                let problem = if reply.status == 201 { String::new() } else { reply.problem() };
                *statuses.entry((reply.status, problem)).or_default() += 1;
            }
            (statuses, waits)
        }
    });
    let mut totals: BTreeMap<(u16, String), usize> = BTreeMap::new();
    let mut waits = Vec::new();
    for (statuses, client_waits) in join_all(clients).await {
        waits.extend(client_waits);
        for (outcome, n) in statuses {
            *totals.entry(outcome).or_default() += n;
        }
    }
    // How long the answers took, printed and repeated in a failure's message: a hot
    // wallet's queue shows here.
    waits.sort();
    let at = |share: f64| waits[((waits.len() - 1) as f64 * share) as usize].as_millis();
    let latency = format!("answered in p50 {} ms, p99 {} ms, max {} ms", at(0.5), at(0.99), at(1.0));
    eprintln!("the storm: {totals:?}; {latency}");
    let created = totals.get(&(201, String::new())).copied().unwrap_or(0);
    let unexpected: Vec<_> = totals
        .iter()
        .filter(|((status, problem), _)| !(*status == 201 || (*status == 422 && problem == "insufficient-funds")))
        .collect();
    assert!(unexpected.is_empty(), "unexpected outcomes (5xx included): {unexpected:?}; {latency}");
    assert_eq!(totals.values().sum::<usize>(), CLIENTS * TRANSFERS_PER_CLIENT);
    assert!(created > CLIENTS * TRANSFERS_PER_CLIENT / 2, "most transfers succeed: {totals:?}; {latency}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await,
        created as i64,
        "one transfer row per 201"
    );
    assert_books_balance(&app).await;
    let total: String = app
        .sql()
        .await
        .query_one("SELECT sum(balance)::text FROM accounts.accounts WHERE kind = 'user'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, "50000.0000", "no money created or lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_requests_with_one_key_make_one_posting() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-64").await;
    let bob = verified(&app, "bob-64").await;
    let from = funded_wallet(&app, &alice, "EUR", "100").await;
    let to = wallet(&app, &bob, "EUR").await;
    let shared_key = key();
    let body = json!({ "fromAccountId": from, "toAccountId": to, "amount": "1.50", "currency": "EUR" });
    let replies = join_all((0..64).map(|_| {
        app.post("/transfers")
            .bearer(&alice.access)
            .header("idempotency-key", shared_key.clone())
            .json(&body)
            .send()
    }))
    .await;
    let created: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert!(
        replies.iter().all(|r| r.status == 201 || (r.status == 409 && r.problem() == "request-in-progress")),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(!created.is_empty());
    assert!(created.iter().all(|r| r.body == created[0].body), "every 201 carries the one posting");
    assert_eq!(created.iter().filter(|r| r.header("idempotent-replayed").is_none()).count(), 1);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 1);
    assert_eq!(balance(&app, &alice, &from).await, "98.50");
    assert_books_balance(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_transfer() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-refunds").await;
    let bob = verified(&app, "bob-refunds").await;
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = funded_wallet(&app, &bob, "USD", "500").await;
    let paid = app
        .post("/transfers")
        .bearer(&alice.access)
        .header("idempotency-key", key())
        .json(&json!({ "fromAccountId": from, "toAccountId": to, "amount": "100", "currency": "USD" }))
        .send()
        .await;
    paid.expect(201);
    let refunds = format!("/transfers/{}/refunds", paid.json()["id"].as_str().unwrap());
    let replies = join_all((0..30).map(|_| {
        app.post(&refunds)
            .bearer(&bob.access)
            .header("idempotency-key", key())
            .json(&json!({ "amount": "10" }))
            .send()
    }))
    .await;
    let refunded = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(refunded, 10, "exactly the transfer's amount comes back");
    assert!(replies
        .iter()
        .filter(|r| r.status != 201)
        .all(|r| r.status == 422 && r.problem() == "refund-exceeds-transfer"));
    let refunded_amount: String = app
        .sql()
        .await
        .query_one("SELECT refunded_amount::text FROM ledger.transfers WHERE kind = 'transfer'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(refunded_amount, "100.0000");
    assert_eq!(balance(&app, &alice, &from).await, "100.00");
    assert_books_balance(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_wallet_while_postings_race_against_it() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-close").await;
    let bob = verified(&app, "bob-close").await;
    let bobs = funded_wallet(&app, &bob, "USD", "1000").await;
    let mut closed_while_busy = 0;
    for _ in 0..4 {
        let target = funded_wallet(&app, &alice, "USD", "5").await;
        let inflow = join_all((0..12).map(|_| {
            app.post("/transfers")
                .bearer(&bob.access)
                .header("idempotency-key", key())
                .json(&json!({ "fromAccountId": bobs, "toAccountId": target, "amount": "1", "currency": "USD" }))
                .send()
        }));
        let outflow = join_all((0..8).map(|_| {
            app.post("/transfers")
                .bearer(&alice.access)
                .header("idempotency-key", key())
                .json(&json!({ "fromAccountId": target, "toAccountId": bobs, "amount": "1", "currency": "USD" }))
                .send()
        }));
        let closer = async {
            // Drain and close, again and again, while the transfers run.
            for _ in 0..20 {
                let left = balance(&app, &alice, &target).await;
                if left != "0.00" {
                    let drained = app
                        .post("/withdrawals")
                        .bearer(&alice.access)
                        .header("idempotency-key", key())
                        .json(&json!({ "accountId": target, "amount": left }))
                        .send()
                        .await;
                    assert!(matches!(drained.status, 201 | 409 | 422), "{}", drained.status);
                }
                let close = app.delete(&format!("/accounts/{target}")).bearer(&alice.access).send().await;
                match close.status {
                    200 => return true,
                    409 if close.problem() == "account-not-empty" => continue,
                    other => panic!("closing answered {other}"),
                }
            }
            false
        };
        let (inflow, outflow, closed) = tokio::join!(inflow, outflow, closer);
        for reply in inflow.iter().chain(&outflow) {
            assert!(
                reply.status == 201 || (reply.status == 409 && reply.problem() == "account-closed")
                    || (reply.status == 422 && reply.problem() == "insufficient-funds"),
                "{} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let refused_as_closed = inflow.iter().chain(&outflow).filter(|r| r.status == 409).count();
        if closed && refused_as_closed > 0 {
            closed_while_busy += 1;
        }
        if closed {
            // Nothing touched the wallet after the close: the close bumped its version last.
            let (version, max_entry_version, balance): (i64, i64, String) = {
                let row = app
                    .sql()
                    .await
                    .query_one(
                        "SELECT a.version, (SELECT max(e.account_version) FROM ledger.entries e WHERE e.account_id = a.id),
                                a.balance::text
                         FROM accounts.accounts a WHERE a.id = $1::text::uuid",
                        &[&target],
                    )
                    .await
                    .unwrap();
                (row.get(0), row.get(1), row.get(2))
            };
            assert!(max_entry_version < version, "a posting touched the wallet after its close");
            assert_eq!(balance, "0.0000");
        }
        assert_books_balance(&app).await;
    }
    println!("closes that raced live postings: {closed_while_busy} of 4 rounds");
}

/// The two orders of the race, made deterministic by holding one side's transaction open
/// in a SQL session: a close waits for a posting in flight and then sees its balance; a
/// posting waits for a close in flight and then finds the wallet closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_posting_wait_for_each_other() {
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-lock").await;
    let target = wallet(&app, &alice, "USD").await;
    let path = format!("/accounts/{target}");

    // A deposit in flight: the close must wait for it, then refuse.
    let session = app.sql().await;
    session.batch_execute("BEGIN").await.unwrap();
    session
        .query(
            "SELECT * FROM ledger.settle('deposit', $1::text::uuid, 'held-deposit', sha256('held'), 60,
                                         gen_random_uuid(), gen_random_uuid(), $2::text::uuid, 5, '{}')",
            &[&alice.id, &target],
        )
        .await
        .unwrap();
    let ((refused, answered_at), committing_at) = tokio::join!(
        async {
            let reply = app.delete(&path).bearer(&alice.access).send().await;
            (reply, Instant::now())
        },
        commit_after_a_while(&session)
    );
    assert!(answered_at > committing_at, "the close did not wait for the posting's lock");
    refused.expect(409);
    assert_eq!(refused.problem(), "account-not-empty");

    // A close in flight: the posting must wait for it, then find the wallet closed.
    let withdrawn = app
        .post("/withdrawals")
        .bearer(&alice.access)
        .header("idempotency-key", key())
        .json(&json!({ "accountId": target, "amount": "5" }))
        .send()
        .await;
    withdrawn.expect(201);
    session.batch_execute("BEGIN").await.unwrap();
    session
        .execute(
            "UPDATE accounts.accounts SET status = 'closed', closed_at = now() AT TIME ZONE 'UTC', version = version + 1
             WHERE id = $1::text::uuid AND balance = 0",
            &[&target],
        )
        .await
        .unwrap();
    // What the close does besides (components/accounts/src/close.rs).
    session
        .execute(
            "DELETE FROM accounts.owner_wallets WHERE account_id = $1::text::uuid",
            &[&target],
        )
        .await
        .unwrap();
    let ((refused, answered_at), committing_at) = tokio::join!(
        async {
            let reply = app
                .post("/deposits")
                .bearer(&alice.access)
                .header("idempotency-key", key())
                .json(&json!({ "accountId": target, "amount": "1" }))
                .send()
                .await;
            (reply, Instant::now())
        },
        commit_after_a_while(&session)
    );
    assert!(answered_at > committing_at, "the posting did not wait for the close's lock");
    refused.expect(409);
    assert_eq!(refused.problem(), "account-closed");
    assert_books_balance(&app).await;
}

/// Lets the other side reach the lock, then commits the held transaction; returns when the
/// commit started: nothing waiting on the lock can finish before that.
async fn commit_after_a_while(session: &tokio_postgres::Client) -> Instant {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let committing = Instant::now();
    session.batch_execute("COMMIT").await.unwrap();
    committing
}

/// A capture and a void of one hold, sent together, many times: exactly one of the two
/// wins each time, and the loser is told the hold is no longer active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_and_a_void_of_one_hold_never_both_win() {
    const ROUNDS: usize = 24;
    let app = TestApp::spawn().await;
    let alice = verified(&app, "alice-race-hold").await;
    let bob = verified(&app, "bob-race-hold").await;
    let from = funded_wallet(&app, &alice, "USD", "1000").await;
    let to = wallet(&app, &bob, "USD").await;
    let mut captures = 0;
    for round in 0..ROUNDS {
        let hold = holds::place(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "10", "currency": "USD" })).await;
        hold.expect(201);
        let id = hold.json()["id"].as_str().unwrap().to_owned();
        // The payer and the payee take turns at voiding.
        let voider = if round % 2 == 0 { &alice } else { &bob };
        let (captured, voided) = tokio::join!(holds::capture(&app, &bob, &id, None), holds::void(&app, voider, &id));
        let outcome = |reply: &crate::app::Reply| if reply.status < 300 { "won".to_owned() } else { reply.problem() };
        match (outcome(&captured).as_str(), outcome(&voided).as_str()) {
            ("won", "hold-not-active") => captures += 1,
            ("hold-not-active", "won") => {}
            other => panic!("round {round}: capture and void gave {other:?}"),
        }
    }
    let moved = format!("{}.00", captures * 10);
    assert_eq!(balance(&app, &bob, &to).await, moved);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.holds WHERE status = 'pending'").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.holds WHERE status = 'captured'").await, captures as i64);
    assert_books_balance(&app).await;
}

/// Holds, captures, voids, transfers and withdrawals racing on the same few wallets: no
/// wallet ever spends held money (available stays ≥ 0, checked by the ledger's invariants
/// after the run), and no money is created or lost — what left the users' wallets is
/// exactly what the successful withdrawals took out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_holds_captures_voids_transfers_and_withdrawals_never_spends_held_money() {
    const PEOPLE: usize = 6;
    const CLIENTS: usize = 12;
    const STEPS_PER_CLIENT: usize = 40;
    let app = TestApp::spawn().await;
    let mut people: Vec<(User, String)> = Vec::new();
    for n in 0..PEOPLE {
        let user = verified(&app, &format!("holdstorm{n}")).await;
        let wallet = funded_wallet(&app, &user, "USD", "100").await;
        people.push((user, wallet));
    }
    let placed: std::sync::Mutex<Vec<(String, usize, usize)>> = std::sync::Mutex::new(Vec::new());
    let clients = (0..CLIENTS).map(|client| {
        let (people, app, placed) = (&people, &app, &placed);
        async move {
            let mut random = XorShift(0xA076_1D64_78BD_642F ^ (client as u64 + 1));
            let mut outcomes: BTreeMap<(&'static str, u16, String), usize> = BTreeMap::new();
            let mut withdrawn_cents = 0_u64;
            for _ in 0..STEPS_PER_CLIENT {
                let from = random.below(PEOPLE);
                let to = (from + 1 + random.below(PEOPLE - 1)) % PEOPLE;
                let cents = 1 + random.below(4_000) as u64;
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                let (payer, source) = &people[from];
                let known = { placed.lock().unwrap().get(random.below(64)).cloned() };
                let (operation, reply) = match (random.below(5), known) {
                    (1, _) => {
                        let body = json!({ "fromAccountId": source, "toAccountId": people[to].1, "amount": amount, "currency": "USD" });
                        ("transfer", app.post("/transfers").bearer(&payer.access).header("idempotency-key", key()).json(&body).send().await)
                    }
                    (2, _) => {
                        let body = json!({ "accountId": source, "amount": amount });
                        let reply = app.post("/withdrawals").bearer(&payer.access).header("idempotency-key", key()).json(&body).send().await;
                        if reply.status == 201 {
                            withdrawn_cents += cents;
                        }
                        ("withdrawal", reply)
                    }
                    (0, _) | (_, None) => {
                        let body = json!({ "fromAccountId": source, "toAccountId": people[to].1, "amount": amount, "currency": "USD" });
                        let reply = holds::place(app, payer, &body).await;
                        if reply.status == 201 {
                            placed.lock().unwrap().insert(0, (reply.json()["id"].as_str().unwrap().to_owned(), from, to));
                        }
                        ("hold", reply)
                    }
                    (3, Some((hold, _, payee))) => {
                        let part = json!({ "amount": format!("{}.{:02}", cents / 400, cents % 100) });
                        let body = (cents % 2 == 0).then_some(&part);
                        ("capture", holds::capture(app, &people[payee].0, &hold, body).await)
                    }
                    (_, Some((hold, payer, payee))) => {
                        let voider = if cents % 2 == 0 { payer } else { payee };
                        ("void", holds::void(app, &people[voider].0, &hold).await)
                    }
                };
                let problem = if reply.status < 300 { String::new() } else { reply.problem() };
                *outcomes.entry((operation, reply.status, problem)).or_default() += 1;
            }
            (outcomes, withdrawn_cents)
        }
    });
    let mut totals: BTreeMap<(&'static str, u16, String), usize> = BTreeMap::new();
    let mut withdrawn_cents = 0;
    for (outcomes, cents) in join_all(clients).await {
        withdrawn_cents += cents;
        for (outcome, n) in outcomes {
            *totals.entry(outcome).or_default() += n;
        }
    }
    let expected = |(operation, status, problem): &(&'static str, u16, String)| match (*operation, *status, problem.as_str()) {
        (_, 200 | 201, "") => true,
        ("hold" | "transfer" | "withdrawal" | "capture", 422, "insufficient-funds") => true,
        ("capture", 422, "capture-exceeds-hold" | "validation-failed") => true,
        ("capture" | "void", 409, "hold-not-active" | "hold-expired") => true,
        _ => false,
    };
    let unexpected: Vec<_> = totals.iter().filter(|(outcome, _)| !expected(outcome)).collect();
    assert!(unexpected.is_empty(), "unexpected outcomes (5xx included): {unexpected:?}\nall: {totals:?}");
    assert_eq!(totals.values().sum::<usize>(), CLIENTS * STEPS_PER_CLIENT);
    for operation in ["hold", "capture", "void", "transfer", "withdrawal"] {
        let won = totals.iter().filter(|((o, status, _), _)| *o == operation && *status < 300).map(|(_, n)| n).sum::<usize>();
        assert!(won > 0, "some {operation} succeeded: {totals:?}");
    }
    assert_books_balance(&app).await;
    let left: String = app
        .sql()
        .await
        .query_one("SELECT (600 - sum(balance))::text FROM accounts.accounts WHERE kind = 'user'", &[])
        .await
        .unwrap()
        .get(0);
    let withdrawn = format!("{}.{:02}00", withdrawn_cents / 100, withdrawn_cents % 100);
    assert_eq!(left, withdrawn, "only withdrawals took money out of the users' wallets");
}
