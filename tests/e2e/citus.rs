//! The ledger on Citus (migrations/V13): what `bridge migrate` distributes on a coordinator,
//! where a posting's rows land, and a worker added and shards rebalanced while transfers
//! run. These tests need the three-node cluster of `WASMPAY_E2E_DATABASE=citus`: `cargo
//! xtask test` runs them in its Citus pass, under Spin, and leaves them out of the others.

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use futures::future::join_all;
use serde_json::json;
use wasmpay_test_support::{citus, kafka, novu::NovuStandIn};

use crate::{
    app::TestApp,
    bridge::{BridgeConfig, NOVU_KEY, eventually, insert_event, published_once_or_more},
    money::{assert_books_balance, count, funded_wallet, key},
    users::{User, verified},
};

/// Each distributed table and the column it is distributed by; `None`: a reference table.
const DISTRIBUTION: &[(&str, Option<&str>)] = &[
    ("identity.users", Some("id")),
    ("identity.sessions", Some("user_id")),
    ("identity.refresh_tokens", Some("user_id")),
    ("identity.email_verifications", Some("user_id")),
    ("identity.email_addresses", Some("email_key")),
    ("identity.login_failures", Some("email_key")),
    ("accounts.accounts", Some("id")),
    ("accounts.owner_wallets", Some("owner_id")),
    ("accounts.system_accounts", None),
    ("ledger.entries", Some("account_id")),
    ("ledger.transfers", Some("id")),
    ("ledger.holds", Some("payer_account_id")),
    ("ledger.idempotency_keys", Some("user_id")),
    ("outbox.events", Some("id")),
];

/// The uuid-keyed tables: one colocation group, so a user's rows share a shard.
const COLOCATED: &[&str] = &[
    "identity.users",
    "identity.sessions",
    "identity.refresh_tokens",
    "identity.email_verifications",
    "accounts.accounts",
    "accounts.owner_wallets",
    "ledger.entries",
    "ledger.transfers",
    "ledger.holds",
    "ledger.idempotency_keys",
    "outbox.events",
];

async fn spawn() -> TestApp {
    assert!(
        citus::wanted(),
        "the Citus tests run against the Citus cluster: WASMPAY_E2E_DATABASE=citus (cargo xtask test sets it)"
    );
    TestApp::spawn().await
}

#[tokio::test]
async fn bridge_migrate_distributes_the_tables_on_a_coordinator() {
    let app = spawn().await;
    let sql = app.sql().await;
    for (table, column) in DISTRIBUTION {
        let row = sql
            .query_one(
                "SELECT partmethod::text, column_to_column_name(logicalrelid, partkey)
                 FROM pg_dist_partition WHERE logicalrelid = $1::text::regclass",
                &[table],
            )
            .await
            .unwrap_or_else(|e| panic!("{table} is not distributed: {e}"));
        let (method, key): (String, Option<String>) = (row.get(0), row.get(1));
        match column {
            Some(column) => assert_eq!(
                (method.as_str(), key.as_deref()),
                ("h", Some(*column)),
                "{table}"
            ),
            None => assert_eq!(method, "n", "{table} is a reference table"),
        }
    }
    let groups: i64 = sql
        .query_one(
            "SELECT count(DISTINCT colocationid) FROM pg_dist_partition
             WHERE logicalrelid = ANY ($1::text[]::regclass[])",
            &[&COLOCATED],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        groups, 1,
        "the uuid-keyed tables share one colocation group"
    );
    let local: i64 = sql
        .query_one("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'outbox.relay_wakeup'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(local, 0, "the relay's switch stays a coordinator table");
    let trigger: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'events_wake_relay'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(trigger, 0, "no writer notifies on Citus");
}

#[tokio::test]
async fn a_users_wallets_and_postings_are_written_on_the_users_shard_and_found_by_id_on_one() {
    let app = spawn().await;
    let ada = verified(&app, "shard-ada").await;
    let grace = verified(&app, "shard-grace").await;
    let from = funded_wallet(&app, &ada, "USD", "100").await;
    let to = funded_wallet(&app, &grace, "USD", "1").await;
    let sent = app
        .post("/transfers")
        .bearer(&ada.access)
        .header("idempotency-key", key())
        .json(&json!({ "fromAccountId": from, "toAccountId": to, "amount": "12.50", "currency": "USD" }))
        .send()
        .await;
    sent.expect(201);
    let transfer = sent.json()["id"].as_str().unwrap().to_owned();
    let sql = app.sql().await;
    // Shards are compared by index in the colocation group (each table has its own ids).
    let same_shard = |a: &str, b: &str| {
        format!(
            "SELECT get_shard_id_for_distribution_column('accounts.accounts', {a})
                  = get_shard_id_for_distribution_column('accounts.accounts', {b})"
        )
    };
    let checks = [
        (
            "the wallet on its owner's shard",
            same_shard("a.id", "a.owner_id"),
            "FROM accounts.accounts a WHERE a.id = $1::text::uuid",
            from.clone(),
        ),
        (
            "the transfer on its payer's shard",
            same_shard("t.id", "t.from_account_id"),
            "FROM ledger.transfers t WHERE t.id = $1::text::uuid",
            transfer.clone(),
        ),
        (
            "its event with it",
            same_shard("e.id", "e.aggregate_id::uuid"),
            "FROM outbox.events e WHERE e.aggregate_id = $1",
            transfer.clone(),
        ),
    ];
    for (what, test, from_clause, id) in checks {
        let rows = sql
            .query(&format!("{test} {from_clause}"), &[&id])
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{what}: no row");
        for row in rows {
            assert!(row.get::<_, bool>(0), "{what}");
        }
    }
    // GET /transfers/{id} reads the transfer by its id: one shard, not every one.
    let plan: Vec<String> = sql
        .query(
            "EXPLAIN SELECT * FROM ledger.transfers WHERE id = $1::text::uuid",
            &[&transfer],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        plan.iter().any(|line| line.contains("Task Count: 1")),
        "{plan:#?}"
    );
    app.get(&format!("/transfers/{transfer}"))
        .bearer(&grace.access)
        .send()
        .await
        .expect(200);
}

/// Wallets and how many transfer clients run while the cluster grows.
const WALLETS: usize = 8;
const CLIENTS: usize = 6;

#[tokio::test]
async fn adding_a_worker_and_rebalancing_while_transfers_run_loses_and_creates_nothing() {
    assert!(
        citus::wanted(),
        "the Citus tests run in the Citus pass (WASMPAY_E2E_DATABASE=citus)"
    );
    let db = citus::cluster()
        .migrated_database_made_afresh()
        .await
        .expect("a distributed database");
    let app = TestApp::spawn_on(db).await;
    let mut people: Vec<(User, String)> = Vec::new();
    for n in 0..WALLETS {
        let user = verified(&app, &format!("rebalance{n}")).await;
        let wallet = funded_wallet(&app, &user, "USD", "1000").await;
        people.push((user, wallet));
    }
    let sql = app.sql().await;
    let total_before: String = sql
        .query_one(
            "SELECT sum(balance)::text FROM accounts.accounts WHERE kind = 'user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let transfers_before = count(
        &app,
        "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'",
    )
    .await;

    let moving = AtomicBool::new(true);
    let created = AtomicUsize::new(0);
    let clients = (0..CLIENTS).map(|client| {
        let (people, app, moving, created) = (&people, &app, &moving, &created);
        async move {
            let mut n = 0;
            let mut refused = Vec::new();
            while moving.load(Ordering::Relaxed) {
                let (from, to) = ((client + n) % WALLETS, (client + n + 1 + n % 3) % WALLETS);
                n += 1;
                if from == to {
                    continue;
                }
                let (sender, source) = &people[from];
                let reply = app
                    .post("/transfers")
                    .bearer(&sender.access)
                    .header("idempotency-key", key())
                    .json(&json!({ "fromAccountId": source, "toAccountId": people[to].1, "amount": "0.01", "currency": "USD" }))
                    .send()
                    .await;
                match reply.status {
                    201 => {
                        created.fetch_add(1, Ordering::Relaxed);
                    }
                    // A shard's cut-over may hold its writes past a statement's timeout: the
                    // request is refused and changes nothing (counted below).
                    503 => refused.push(reply.problem()),
                    other => panic!("unexpected {other}: {:?}", reply.json()),
                }
            }
            refused
        }
    });

    let grow = async {
        // Transfers run for a while on two workers first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let port = citus::cluster()
            .add_worker(&app.db.name)
            .await
            .expect("a third worker joins");
        sql.execute("SELECT citus_rebalance_start()", &[])
            .await
            .expect("the rebalance starts");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let state: String = sql
                .query_one("SELECT state::text FROM citus_rebalance_status()", &[])
                .await
                .expect("the rebalance's status")
                .get(0);
            match state.as_str() {
                "finished" => break,
                "failed" | "cancelled" => panic!("the rebalance {state}"),
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "the rebalance did not finish in 240 s (state {state})"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // And for a while on three.
        tokio::time::sleep(Duration::from_secs(2)).await;
        moving.store(false, Ordering::Relaxed);
        port
    };
    let (refused, port) = tokio::join!(join_all(clients), grow);

    let placements: i64 = sql
        .query_one(
            "SELECT count(*) FROM citus_shards WHERE nodeport = $1",
            &[&i32::from(port)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        placements > 0,
        "the new worker holds shards after the rebalance"
    );
    let created = created.load(Ordering::Relaxed);
    assert!(created > 0, "transfers went through while the cluster grew");
    let transfers_after = count(
        &app,
        "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'",
    )
    .await;
    assert_eq!(
        transfers_after - transfers_before,
        created as i64,
        "every answered transfer is in the ledger, and nothing else (refused: {refused:?})"
    );
    let total_after: String = sql
        .query_one(
            "SELECT sum(balance)::text FROM accounts.accounts WHERE kind = 'user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        total_after, total_before,
        "transfers between users neither create nor lose money"
    );
    assert_books_balance(&app).await;
}

#[tokio::test]
async fn the_relay_polls_through_the_coordinator_and_skips_no_event_that_commits_late_on_a_worker()
{
    let app = spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    // The notified relay's fallback poll, a minute: nothing here may wait for it.
    config.env = vec![("RELAY_POLL_INTERVAL_MS".into(), "60000".into())];
    let _relay = config.spawn("relay");

    // An event whose transaction stays open while later ones commit and are published.
    let mut late_writer = app.sql().await;
    let late = late_writer.transaction().await.unwrap();
    let late_id = insert_event(&late, "late").await;
    let mut ids = Vec::new();
    let mut writer = app.sql().await;
    for n in 0..20u64 {
        let transaction = writer.transaction().await.unwrap();
        ids.push(insert_event(&transaction, &format!("on-time-{n}")).await);
        transaction.commit().await.unwrap();
        // Around the relay's idle pause, as in the notified relay's test.
        tokio::time::sleep(Duration::from_millis(200 + (n * 37) % 100)).await;
    }
    // The relay's start (topics, leadership) included; the late event is not visible yet.
    eventually(
        Duration::from_secs(60),
        "the events that committed published",
        || async { crate::bridge::unpublished(&app).await == 0 },
    )
    .await;
    late.commit().await.unwrap();
    let late_published = || async {
        let sql = app.sql().await;
        sql.query_one(
            "SELECT published_at IS NOT NULL FROM outbox.events WHERE id = $1::text::uuid",
            &[&late_id],
        )
        .await
        .unwrap()
        .get::<_, bool>(0)
    };
    eventually(
        Duration::from_secs(10),
        "the late event published too",
        late_published,
    )
    .await;
    ids.push(late_id.clone());
    let listening: bool = app
        .sql()
        .await
        .query_one("SELECT listening FROM outbox.relay_wakeup", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !listening,
        "the relay never asks writers to notify on Citus"
    );
    assert_eq!(
        published_once_or_more(&config, &ids).await,
        0,
        "no relay crashed, so nothing was sent twice"
    );
}
