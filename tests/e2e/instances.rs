//! WASIp3 instances serve many requests, several at once, and keep their Postgres
//! connections between requests (components/common/src/db/kept.rs). These tests hold that
//! to its rules under either runtime: a request stuck in the database holds up no other
//! request and shares nothing with it, a statement that runs too long answers 503 and
//! changes nothing, a connection the database dropped fails only the requests that meet
//! it, no request waits for a connection under three times an instance's concurrency, and a trap
//! ends only the requests of its own instance, whose payments an Idempotency-Key replay
//! recovers; an instance serves thousands of requests within runtime-config.toml's memory
//! limit.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::json;
use tokio_postgres::Client;
use wasmpay_test_support::{paths, spin};

use crate::{
    app::{Reply, TestApp},
    money::{assert_books_balance, balance, count, funded_wallet, key, wallet},
    users::{User, verified},
};

/// A transaction of the test's own holding a wallet's row lock, as a long posting would;
/// postings on that wallet wait for it.
struct WalletLock(Client);

impl WalletLock {
    async fn take(app: &TestApp, wallet: &str) -> Self {
        let client = app.sql().await;
        client
            .batch_execute(&format!("BEGIN; SELECT 1 FROM accounts.accounts WHERE id = '{wallet}' FOR UPDATE"))
            .await
            .expect("the wallet's row lock");
        Self(client)
    }

    async fn release(self) {
        self.0.batch_execute("COMMIT").await.expect("the lock released");
    }
}

/// Waits until `n` statements of the components wait for a lock.
async fn until_waiting_for_locks(app: &TestApp, n: i64) {
    let sql = app.sql().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} of {n} statements wait for a lock after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pay(app: &TestApp, user: &User, key: &str, from: &str, to: &str, amount: &str) -> Reply {
    payment(app, user, key, from, to, amount).send().await
}

fn payment<'a>(app: &'a TestApp, user: &User, key: &str, from: &str, to: &str, amount: &str) -> crate::app::Call<'a> {
    app.post("/transfers")
        .bearer(&user.access)
        .header("idempotency-key", key)
        .json(&json!({"fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "USD"}))
}

/// A naive instance-wide connection would queue every other request of the instance behind
/// the stuck statement, or run them inside its transaction. Here each runs on its own
/// connection at full speed and is committed (visible to another session) when it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_in_the_database_holds_up_no_other_request_and_shares_nothing_with_it() {
    let app = TestApp::spawn_with(|config| config.variable("db_statement_timeout_ms", "30000")).await;
    let (alice, bob, carol) = (verified(&app, "stuck-alice").await, verified(&app, "stuck-bob").await, verified(&app, "stuck-carol").await);
    let alice_wallet = funded_wallet(&app, &alice, "USD", "100").await;
    let bob_wallet = funded_wallet(&app, &bob, "USD", "100").await;
    let carol_wallet = wallet(&app, &carol, "USD").await;

    let lock = WalletLock::take(&app, &alice_wallet).await;
    let stuck_key = key();
    let stuck = pay(&app, &alice, &stuck_key, &alice_wallet, &bob_wallet, "1.00");
    let others = async {
        until_waiting_for_locks(&app, 1).await;
        let observer = app.sql().await;
        for round in 0..10 {
            let started = Instant::now();
            let sent = pay(&app, &bob, &key(), &bob_wallet, &carol_wallet, "0.01").await;
            sent.expect(201);
            assert!(started.elapsed() < Duration::from_secs(2), "transfer {round} took {:?} beside the stuck one", started.elapsed());
            let id = sent.json()["id"].as_str().unwrap().to_owned();
            let committed: i64 = observer
                .query_one("SELECT count(*) FROM ledger.transfers WHERE id = $1::text::uuid", &[&id])
                .await
                .unwrap()
                .get(0);
            assert_eq!(committed, 1, "transfer {round} answered 201 but is not committed");
        }
        let reads = join_all((0..16).map(|_| app.get(&format!("/accounts/{bob_wallet}")).bearer(&bob.access).send())).await;
        assert!(reads.iter().all(|r| r.status == 200), "{:?}", reads.iter().map(|r| r.status).collect::<Vec<_>>());
        lock.release().await;
    };
    let (stuck, ()) = tokio::join!(stuck, others);
    stuck.expect(201);
    assert_eq!(balance(&app, &alice, &alice_wallet).await, "99.00");
    assert_eq!(balance(&app, &carol, &carol_wallet).await, "0.10");
    assert_books_balance(&app).await;
}

/// `db_statement_timeout_ms` bounds a request stuck in the database: Postgres cancels the
/// statement (SQLSTATE 57014), the request answers 503 `database-timeout` with Retry-After
/// long before Spin's request timeout, and nothing was posted; a retry with the same key
/// posts once.
#[tokio::test]
async fn a_statement_past_the_timeout_answers_503_and_changes_nothing() {
    let app = TestApp::spawn_with(|config| config.variable("db_statement_timeout_ms", "500")).await;
    let (alice, bob) = (verified(&app, "timeout-alice").await, verified(&app, "timeout-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "10").await;
    let to = wallet(&app, &bob, "USD").await;
    let lock = WalletLock::take(&app, &from).await;
    let payment = key();
    let started = Instant::now();
    let timed_out = pay(&app, &alice, &payment, &from, &to, "2.50").await;
    let waited = started.elapsed();
    timed_out.expect(503);
    assert_eq!(timed_out.problem(), "database-timeout");
    assert_eq!(timed_out.header("retry-after"), Some("1"));
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 0);
    lock.release().await;
    assert_eq!(balance(&app, &alice, &from).await, "10.00");
    pay(&app, &alice, &payment, &from, &to, "2.50").await.expect(201);
    let replay = pay(&app, &alice, &payment, &from, &to, "2.50").await;
    replay.expect(201);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(&app, &alice, &from).await, "7.50");
    assert_books_balance(&app).await;
}

/// Ends every connection of the database but the caller's, as a restart or an operator
/// would.
async fn terminate_connections(app: &TestApp) {
    let ended: i64 = app
        .sql()
        .await
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) ended",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ended > 0, "the components had connections to end");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A connection kept by an instance may die while it waits (a restart, an idle timeout, an
/// operator). Under load, so that the instance keeps connections between requests, every
/// connection of the database is ended: the requests in flight and the one that takes a
/// dead idle connection answer 503 `unavailable` (never an empty 500, never a hang), the
/// instance drops its other idle connections with it, and the requests after get fresh ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_fails_only_the_requests_that_meet_it() {
    const CLIENTS: usize = 4;
    let app = TestApp::spawn().await;
    let alice = verified(&app, "dead-alice").await;
    let mine = wallet(&app, &alice, "USD").await;
    let killed = std::sync::atomic::AtomicBool::new(false);
    let done = std::sync::atomic::AtomicBool::new(false);
    let clients = join_all((0..CLIENTS).map(|_| async {
        // (after the kill, status) of each request.
        let mut replies = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let after_kill = killed.load(std::sync::atomic::Ordering::SeqCst);
            let reply = app.get("/accounts/me").bearer(&alice.access).send().await;
            if reply.status != 200 {
                reply.expect(503);
                assert_eq!(reply.problem(), "unavailable");
                assert_eq!(reply.header("retry-after"), Some("1"));
            }
            replies.push((after_kill, reply.status));
        }
        replies
    }));
    let operator = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        terminate_connections(&app).await;
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (replies, ()) = tokio::join!(clients, operator);
    let failed: usize = replies.iter().flatten().filter(|(_, status)| *status != 200).count();
    assert!(failed <= 2 * CLIENTS, "{failed} requests failed after the connections ended");
    for client in &replies {
        let last: Vec<u16> = client.iter().rev().take(5).map(|(_, status)| *status).collect();
        assert!(last.iter().all(|status| *status == 200), "a client's last requests: {last:?}");
        assert!(client.iter().filter(|(after_kill, _)| *after_kill).count() > 5, "the load went on after the kill");
    }
    assert_eq!(balance(&app, &alice, &mine).await, "0.00");
}

/// Three times an instance's concurrency on one component, with idle instances kept for
/// 5 s: every request answers at once, none waits for a connection. (Instances that kept
/// their connections while idle would hold them from Spin's pool, 64 per component, until
/// they retire, and requests of the busy instances would wait that long.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_waits_for_a_connection_under_three_times_an_instances_concurrency() {
    let app = TestApp::spawn_with(|mut config| {
        config.reuse.idle_timeout = Duration::from_secs(5);
        config
    })
    .await;
    let concurrency = app_concurrency();
    let clients = 3 * concurrency;
    let tags: Vec<String> = (0..clients).map(|n| format!("bounded{n}")).collect();
    let people: Vec<User> = join_all(tags.iter().map(|tag| verified(&app, tag))).await;
    let observer = app.sql().await;
    let connections = async || -> i64 {
        observer
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    };
    let before = connections().await;
    let load = join_all(people.iter().map(|user| async {
        let mut slowest = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            app.get("/accounts/me").bearer(&user.access).send().await.expect(200);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    }));
    let sample = async {
        let mut most = 0;
        for _ in 0..100 {
            most = most.max(connections().await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        most
    };
    let (slowest, most) = tokio::join!(load, sample);
    let slowest = slowest.into_iter().max().unwrap_or_default();
    assert!(slowest < Duration::from_secs(2), "a request waited {slowest:?}");
    assert!(most - before <= SPIN_POOL_SIZE, "{most} connections (before the load: {before}): the pool's bound broke");
}

/// Connections Spin's pool holds per component and address.
const SPIN_POOL_SIZE: i64 = 64;

/// The requests one instance serves at once, as wasmpay runs Spin.
fn app_concurrency() -> usize {
    spin::INSTANCE_FLAGS
        .iter()
        .find(|(name, _)| *name == "--max-instance-concurrent-reuse-count")
        .and_then(|(_, value)| value.parse().ok())
        .expect("wasmpay sets the concurrency")
}

/// A plugin that traps (here on the amount 13.13) ends its instance, and with it every
/// other request in flight on that instance: they answer an empty 500 like the trapping one,
/// though their postings may have committed. Replaying each with its Idempotency-Key gives
/// its one outcome; nothing is lost or posted twice, and other instances are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_the_requests_sharing_its_instance_and_a_replay_recovers_each_payment() {
    let app = TestApp::spawn_with(|config| {
        config
            .variable("db_statement_timeout_ms", "30000")
            .dependency_source("transfers", "third-policy", paths::policy("policy-misbehaving"))
    })
    .await;
    let (alice, bob) = (verified(&app, "trap-alice").await, verified(&app, "trap-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "100").await;
    let to = wallet(&app, &bob, "USD").await;
    let lock = WalletLock::take(&app, &to).await;
    let keys: Vec<String> = (0..3).map(|_| key()).collect();
    // Undocumented: a request ended by the trap answers Spin's empty 500.
    // One after the other, each once the one before waits for the lock: requests that arrive
    // together may each start an instance of their own before the first is ready, and then
    // none need share the trapping one's.
    let blocked = join_all(keys.iter().enumerate().map(|(i, k)| {
        let (app, alice, from, to) = (&app, &alice, &from, &to);
        async move {
            until_waiting_for_locks(app, i as i64).await;
            payment(app, alice, k, from, to, "1.00").undocumented().send().await
        }
    }));
    let trap = async {
        until_waiting_for_locks(&app, keys.len() as i64).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let trapped = payment(&app, &alice, &key(), &from, &to, "13.13").undocumented().send().await;
        lock.release().await;
        trapped
    };
    let (blocked, trapped) = tokio::join!(blocked, trap);
    trapped.expect(500);
    assert!(trapped.body.is_empty());
    let lost = blocked.iter().filter(|reply| reply.status == 500).count();
    assert!(blocked.iter().all(|reply| matches!(reply.status, 201 | 500)), "{:?}", blocked.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(lost > 0, "no request shared the trapping one's instance: {:?}", blocked.iter().map(|r| r.status).collect::<Vec<_>>());
    for key in &keys {
        pay(&app, &alice, key, &from, &to, "1.00").await.expect(201);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await, 3);
    assert_eq!(balance(&app, &alice, &from).await, "97.00");
    assert_books_balance(&app).await;
}

/// One instance for 4,000 requests (8 at once), under runtime-config.toml's
/// `max_instance_memory` (64 MiB, which both runtimes enforce): a component that kept a few
/// kilobytes of every request would outgrow it and answer 500s. (Outside the guest's
/// memory, the runtime's own state for an instance grows with the requests it served:
/// BENCHMARKS.md, "Instances and connections".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_thousands_of_requests_within_its_memory_limit() {
    const REQUESTS: usize = 4_000;
    let app = TestApp::spawn_with(|mut config| {
        config.reuse.max_requests = REQUESTS;
        config
    })
    .await;
    assert!(app_memory_limit().is_some(), "runtime-config.toml sets max_instance_memory");
    let alice = verified(&app, "memory-alice").await;
    let mine = funded_wallet(&app, &alice, "USD", "10").await;
    let clients = app_concurrency();
    let served = join_all((0..clients).map(|_| async {
        for _ in 0..REQUESTS / clients {
            app.get(&format!("/accounts/{mine}")).bearer(&alice.access).send().await.expect(200);
        }
    }))
    .await;
    assert_eq!(served.len(), clients);
    assert_eq!(balance(&app, &alice, &mine).await, "10.00");
}

fn app_memory_limit() -> Option<usize> {
    wasmpay_host::runtime_config::load(&crate::app::runtime_config_file()).ok()?.max_instance_memory
}
