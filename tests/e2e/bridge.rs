//! The bridge with a real broker (tansu) and the Novu stand-in: notifications end to end
//! through the components, the hold sweeper, and the failure cases — relays killed
//! mid-stream, two relays at once, the broker restarted, Novu throttling, failing or
//! refusing, a sweep failing.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig, Message,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
};
use serde_json::{Value, json};
use wasmpay_test_support::{
    cluster::free_port,
    kafka::{self, Broker, Storage},
    novu::{Fault, NovuStandIn},
    paths,
};

use crate::{
    app::{EVENT_KEY, EVENT_KEY_ID, TestApp, client},
    holds,
    money::{deposit, funded_wallet, transfer, wallet},
    users::{User, register, unique_email, verified},
};

pub(crate) const NOVU_KEY: &str = "novu-test-secret";

/// A bridge process with its own topics, consumer group and ops port.
pub(crate) struct BridgeProcess {
    child: Child,
    ops_port: u16,
    log: PathBuf,
}

#[derive(Clone)]
pub(crate) struct BridgeConfig {
    database_url: String,
    brokers: String,
    prefix: String,
    novu_url: String,
    /// Where verification links point (the web app's verify page, in the browser tests).
    pub verification_url_template: String,
    /// More environment (e.g. Kafka security settings).
    pub env: Vec<(String, String)>,
}

impl BridgeConfig {
    pub(crate) fn new(app: &TestApp, brokers: String, novu: &NovuStandIn) -> Self {
        Self {
            database_url: app.db.url.clone(),
            brokers,
            prefix: format!("t{}", app.db.name),
            novu_url: novu.url(),
            verification_url_template: "https://app.example/verify-email?token={token}".into(),
            env: Vec::new(),
        }
    }

    /// Topic names as the README documents them.
    fn topic(&self, aggregate: &str) -> String {
        format!("{}.{aggregate}", self.prefix)
    }

    pub(crate) fn spawn(&self, command: &str) -> BridgeProcess {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ops_port = free_port().unwrap();
        let log = std::env::temp_dir().join(format!(
            "wasmpay-bridge-{}-{}-{}.log",
            std::process::id(),
            self.prefix,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut process = Command::new(paths::binary("bridge"));
        process
            .arg(command)
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("TOPIC_PREFIX", &self.prefix)
            .env("TOPIC_PARTITIONS", "3")
            .env("NOVU_API_URL", &self.novu_url)
            .env("NOVU_API_KEY", NOVU_KEY)
            .env("EVENT_KEYS", format!("{EVENT_KEY_ID}={EVENT_KEY}"))
            .env("VERIFICATION_URL_TEMPLATE", &self.verification_url_template)
            .env("NOTIFY_GROUP_ID", format!("{}-notify", self.prefix))
            .env("OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
            .env("RELAY_POLL_INTERVAL_MS", "200")
            .env("RELAY_LEADER_RETRY_MS", "200")
            .env("RELAY_DELIVERY_TIMEOUT_MS", "5000")
            .env("NOTIFY_BACKOFF_BASE_MS", "50")
            .env("NOTIFY_BACKOFF_MAX_MS", "2000")
            .env("NOTIFY_REQUEST_TIMEOUT_MS", "1000")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap());
        BridgeProcess {
            child: process.spawn().expect("the bridge starts"),
            ops_port,
            log,
        }
    }
}

impl BridgeProcess {
    async fn metrics(&self) -> Option<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.ops_port);
        client().get(url).send().await.ok()?.text().await.ok()
    }

    /// A metric's value (summed over its labels), if the bridge answers.
    async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        let values: Vec<f64> = text
            .lines()
            .filter(|line| line.starts_with(name) && !line.starts_with('#'))
            .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the bridge said (the harness prints a failure's output).
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last {} lines of {} ---", tail.len(), self.log.display());
            tail.iter().rev().for_each(|line| eprintln!("{line}"));
        }
        // KEEP_BRIDGE_LOGS=1 keeps the logs for a look after a failure.
        if std::env::var_os("KEEP_BRIDGE_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Polls `check` until it holds or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

static READERS: AtomicU32 = AtomicU32::new(0);

/// Every record on `topics` (from the beginning), by event id, with how often it was seen.
fn read_topics(brokers: &str, topics: &[String], expected: usize, limit: Duration) -> BTreeMap<String, (usize, String, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}-{}", std::process::id(), READERS.fetch_add(1, Ordering::Relaxed)))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).unwrap();
    let mut seen: BTreeMap<String, (usize, String, Value)> = BTreeMap::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && (seen.len() < expected || expected == 0) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let header = |name: &str| {
                message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == name))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let payload: Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(Value::Null);
            let entry = seen.entry(header("ce_id")).or_insert((0, header("ce_type"), payload));
            entry.0 += 1;
        }
    }
    seen
}

/// Asserts every event of `ids` reached the ledger topic; returns how many extra copies did.
pub(crate) async fn published_once_or_more(config: &BridgeConfig, ids: &[String]) -> usize {
    let topics = vec![config.topic("ledger")];
    let seen = tokio::task::spawn_blocking({
        let brokers = config.brokers.clone();
        let expected = ids.len();
        move || read_topics(&brokers, &topics, expected, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(missing.is_empty(), "{} of {} committed events never reached Kafka: {missing:?}", missing.len(), ids.len());
    seen.values().map(|(n, _, _)| n - 1).sum()
}

/// Inserts `count` outbox events of a type the notifier turns into one notification each.
async fn write_deposit_events(app: &TestApp, count: usize, per_transaction: usize) -> Vec<String> {
    let sql = app.sql().await;
    let mut ids = Vec::new();
    for chunk in 0..count.div_ceil(per_transaction) {
        let rows: Vec<String> = sql
            .query(
                "INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT gen_random_uuid(), 'ledger', gen_random_uuid()::text, 'deposit.completed',
                        jsonb_build_object('transferId', gen_random_uuid(), 'amount', '1.00', 'currency', 'USD',
                                           'balanceAfter', '1.00', 'account', jsonb_build_object(
                                               'userId', 'u' || n, 'email', 'u' || n || '@example.com',
                                               'fullName', 'User ' || n, 'accountId', gen_random_uuid()))
                 FROM generate_series($1::int8, $2::int8) n
                 RETURNING id::text",
                &[&((chunk * per_transaction) as i64), &((chunk * per_transaction + per_transaction - 1) as i64)],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        ids.extend(rows);
    }
    ids.truncate(count);
    ids
}

/// Inserts one ledger event in `transaction`, left to the caller to commit; its id.
pub(crate) async fn insert_event(
    transaction: &tokio_postgres::Transaction<'_>,
    aggregate_id: &str,
) -> String {
    transaction
        .query_one(
            "INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
             VALUES (gen_random_uuid(), 'ledger', $1, 'deposit.completed', jsonb_build_object($1::text, true))
             RETURNING id::text",
            &[&aggregate_id],
        )
        .await
        .unwrap()
        .get(0)
}

pub(crate) async fn unpublished(app: &TestApp) -> i64 {
    crate::money::count(app, "SELECT count(*) FROM outbox.events WHERE published_at IS NULL").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_sends_one_verification_email_whose_link_verifies() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    let bridge = config.spawn("run");
    let email = unique_email("notified");
    register(&app, &email, crate::users::PASSWORD, "Ada Notified").await.expect(201);

    eventually(Duration::from_secs(30), "the verification e-mail", || {
        let effects = novu.effects();
        async move { effects.iter().any(|t| t.name == "email-verification") }
    })
    .await;
    let verifications: Vec<_> = novu.effects().into_iter().filter(|t| t.name == "email-verification").collect();
    assert_eq!(verifications.len(), 1, "exactly one verification e-mail");
    let trigger = &verifications[0];
    assert_eq!(trigger.to["email"], email.as_str());
    assert_eq!(trigger.to["firstName"], "Ada");
    assert!(trigger.transaction_id.is_some());
    let link = trigger.payload["verificationLink"].as_str().unwrap();
    let token = link.split("token=").nth(1).unwrap();
    let token: String = form_urlencoded::parse(format!("t={token}").as_bytes()).next().unwrap().1.into_owned();
    let verified = app.post("/auth/verify-email").json(&json!({ "token": token })).send().await;
    verified.expect(200);
    assert!(bridge.metric("wasmpay_bridge_relay_leader").await == Some(1.0), "{}", bridge.log());
    assert!(!bridge.log().contains(&email), "the bridge logged an e-mail address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_notifies_the_sender_and_the_recipient_once_each() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let _bridge = BridgeConfig::new(&app, kafka::shared().brokers(), &novu).spawn("run");
    let alice = verified(&app, "alice-notify").await;
    let bob = verified(&app, "bob-notify").await;
    let from = funded_wallet(&app, &alice, "USD", "50").await;
    let to = wallet(&app, &bob, "USD").await;
    transfer(&app, &alice, &json!({ "fromAccountId": from, "toAccountId": to, "amount": "12.50", "currency": "USD" }))
        .await
        .expect(201);
    // Events of different keys sit on different partitions: no order among them.
    eventually(Duration::from_secs(30), "the deposit and both transfer notifications", || {
        let effects = novu.effects();
        async move {
            ["deposit-received", "transfer-sent", "transfer-received"]
                .iter()
                .all(|name| effects.iter().any(|t| t.name == *name))
        }
    })
    .await;
    let effects = novu.effects();
    let of = |name: &str| effects.iter().filter(|t| t.name == name).collect::<Vec<_>>();
    let (sent, received) = (of("transfer-sent"), of("transfer-received"));
    assert_eq!((sent.len(), received.len()), (1, 1));
    assert_eq!(sent[0].to["subscriberId"], alice.id.as_str());
    assert_eq!(received[0].to["subscriberId"], bob.id.as_str());
    assert_eq!(received[0].payload["amount"], "12.50");
    assert_eq!(received[0].payload["senderName"], "alice-notify user");
    assert_eq!(of("deposit-received").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_committed_event_reaches_kafka_across_relay_crashes() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    let _notifier = config.spawn("notify");
    let writer = async {
        let mut ids = Vec::new();
        for _ in 0..30 {
            ids.extend(write_deposit_events(&app, 20, 5).await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids
    };
    let crasher = async {
        let mut kills = 0;
        while kills < 6 {
            let mut relay = config.spawn("relay");
            tokio::time::sleep(Duration::from_millis(400 + 150 * kills)).await;
            relay.kill();
            kills += 1;
        }
        kills
    };
    let (ids, kills) = tokio::join!(writer, crasher);
    assert!(kills >= 5);
    let _survivor = config.spawn("relay");
    eventually(Duration::from_secs(60), "the outbox to drain", || async { unpublished(&app).await == 0 }).await;

    let duplicates = published_once_or_more(&config, &ids).await;
    println!("{} events, {duplicates} duplicates after {kills} relay kills", ids.len());

    eventually(Duration::from_secs(60), "every notification", || {
        let effects = novu.effects().len();
        let expected = ids.len();
        async move { effects >= expected }
    })
    .await;
    let effects = novu.effects();
    let transactions: BTreeSet<_> = effects.iter().filter_map(|t| t.transaction_id.clone()).collect();
    assert_eq!(effects.len(), ids.len(), "one effect per event");
    assert_eq!(transactions.len(), ids.len(), "each transactionId took effect once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_relay_takes_over_when_the_leader_dies() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    let mut first = config.spawn("relay");
    eventually(Duration::from_secs(20), "a leader", || async { first.metric("wasmpay_bridge_relay_leader").await == Some(1.0) }).await;
    let second = config.spawn("relay");
    eventually(Duration::from_secs(20), "the standby to be up", || async { second.metric("wasmpay_bridge_relay_leader").await.is_some() })
        .await;
    assert_eq!(second.metric("wasmpay_bridge_relay_leader").await, Some(0.0), "one leader at a time");

    write_deposit_events(&app, 10, 10).await;
    eventually(Duration::from_secs(20), "the leader to publish", || async { unpublished(&app).await == 0 }).await;
    assert_eq!(second.metric("wasmpay_bridge_events_relayed").await, Some(0.0), "the standby published nothing");

    first.kill();
    let killed_at = Instant::now();
    write_deposit_events(&app, 10, 10).await;
    eventually(Duration::from_secs(20), "the standby to take over", || async {
        second.metric("wasmpay_bridge_relay_leader").await == Some(1.0)
    })
    .await;
    eventually(Duration::from_secs(20), "the new leader to publish", || async { unpublished(&app).await == 0 }).await;
    println!("take-over and publish after {:?}", killed_at.elapsed());
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    assert_eq!(second.metric("wasmpay_bridge_events_relayed").await, Some(10.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_broker_restart() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut broker = Broker::start(Storage::Sqlite).unwrap();
    let config = BridgeConfig::new(&app, broker.brokers(), &novu);
    let relay = config.spawn("relay");
    let mut ids = write_deposit_events(&app, 20, 5).await;
    eventually(Duration::from_secs(30), "the first events to publish", || async { unpublished(&app).await == 0 }).await;

    broker.stop();
    ids.extend(write_deposit_events(&app, 20, 5).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(unpublished(&app).await > 0, "nothing can be published while the broker is down");
    broker.restart().unwrap();
    ids.extend(write_deposit_events(&app, 20, 5).await);
    eventually(Duration::from_secs(60), "the outbox to drain after the restart", || async { unpublished(&app).await == 0 }).await;
    assert!(relay.metric("wasmpay_bridge_relay_failures").await.unwrap_or(0.0) >= 1.0, "{}", relay.log());

    let topics = vec![config.topic("ledger")];
    let brokers = broker.brokers();
    let expected = ids.len();
    let seen = tokio::task::spawn_blocking(move || read_topics(&brokers, &topics, expected, Duration::from_secs(60)))
        .await
        .unwrap();
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(missing, 0, "events lost across the broker restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_failing_and_hanging_calls_to_novu_are_retried() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    novu.fail_next([
        Fault::TooManyRequests { retry_after_secs: 1 },
        Fault::ServerError,
        Fault::Delay(Duration::from_secs(3)),
    ]);
    let bridge = BridgeConfig::new(&app, kafka::shared().brokers(), &novu).spawn("run");
    let user = crate::users::signed_up(&app, "retried").await;
    let started = Instant::now();
    eventually(Duration::from_secs(30), "the verification e-mail after retries", || {
        let effects = novu.effects();
        async move { effects.iter().any(|t| t.name == "email-verification") }
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert!(novu.request_count() >= 4);
    assert_eq!(novu.effects().len(), 1, "{}", user.id);
    assert!(bridge.metric("wasmpay_bridge_notifications_retried").await.unwrap_or(0.0) >= 3.0, "{}", bridge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_notification_is_dead_lettered_and_the_consumer_moves_on() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    novu.reject_workflow("email-verification");
    let config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    let bridge = config.spawn("run");
    let user = crate::users::signed_up(&app, "refused").await;
    let wallet_id = wallet(&app, &user, "USD").await;
    deposit(&app, &user, &wallet_id, "5").await.expect(201);
    eventually(Duration::from_secs(60), "the deposit notification after the refused one", || {
        let effects = novu.effects();
        async move { effects.iter().any(|t| t.name == "deposit-received") }
    })
    .await;
    assert!(novu.effects().iter().all(|t| t.name != "email-verification"));
    let topics = vec![config.topic("notifications.dlq")];
    let brokers = config.brokers.clone();
    let dead = tokio::task::spawn_blocking(move || read_topics(&brokers, &topics, 1, Duration::from_secs(30)))
        .await
        .unwrap();
    let (_, event_type, letter) = dead.values().next().expect("a dead letter");
    assert_eq!(event_type, "user.registered");
    assert_eq!(letter["status"], 400);
    assert_eq!(letter["request"]["name"], "email-verification");
    assert_eq!(bridge.metric("wasmpay_bridge_notifications_dead_lettered").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut bridge = BridgeConfig::new(&app, kafka::shared().brokers(), &novu).spawn("run");
    eventually(Duration::from_secs(20), "readiness", || async {
        client()
            .get(format!("http://127.0.0.1:{}/readyz", bridge.ops_port))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    write_deposit_events(&app, 50, 50).await;
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(bridge.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = bridge.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the bridge did not stop within its shutdown timeout");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}: {}", bridge.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_reports_whether_the_bridge_answers() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut bridge = BridgeConfig::new(&app, kafka::shared().brokers(), &novu).spawn("run");
    let healthcheck = |port: u16| {
        std::process::Command::new(paths::binary("bridge"))
            .arg("healthcheck")
            .env("OPS_LISTEN", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
    };
    let port = bridge.ops_port;
    eventually(Duration::from_secs(20), "a healthy bridge", || async move { healthcheck(port).status.success() }).await;
    bridge.kill();
    let down = healthcheck(port);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).starts_with("unhealthy: 127.0.0.1:"), "{down:?}");
}

/// A transaction that commits after rows with higher positions were published (its
/// position was taken first) still gets its event out, while the relay keeps several
/// batches in flight past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_late_behind_published_ones_is_still_published_once() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    config.env = vec![("RELAY_BATCH_SIZE".into(), "50".into())];
    let _relay = config.spawn("relay");

    // The late transaction takes its position, then waits.
    let mut late = app.sql().await;
    let transaction = late.transaction().await.unwrap();
    let late_id = insert_event(&transaction, "late").await;
    // Meanwhile 1,000 events behind it are committed and published (several batches of 50
    // in flight past the late position).
    let mut ids = write_deposit_events(&app, 1_000, 100).await;
    eventually(Duration::from_secs(60), "the later events published", || async {
        crate::money::count(&app, "SELECT count(*) FROM outbox.events WHERE published_at IS NOT NULL").await == 1_000
    })
    .await;
    transaction.commit().await.unwrap();
    ids.push(late_id.clone());
    eventually(Duration::from_secs(30), "the late event published", || async { unpublished(&app).await == 0 }).await;

    let duplicates = published_once_or_more(&config, &ids).await;
    assert_eq!(duplicates, 0, "no relay crashed, so nothing was sent twice");
}

/// Writers notify only a listening relay (V10): an idle relay listens and is woken by the
/// next commit, not by its poll; events committed while it goes to sleep — some by writers
/// still running when it tries the wake-up lock — are never left for the poll. With the
/// poll a minute away, an event missed by both would fail the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_relay_is_woken_by_the_next_commit_and_misses_none_while_it_falls_asleep() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    config.env = vec![("RELAY_POLL_INTERVAL_MS".into(), "60000".into())];
    let _relay = config.spawn("relay");
    let listening = || async {
        let sql = app.sql().await;
        sql.query_one("SELECT listening FROM outbox.relay_wakeup", &[]).await.unwrap().get::<_, bool>(0)
    };
    eventually(Duration::from_secs(30), "the idle relay listening", || async { listening().await }).await;

    let mut ids = write_deposit_events(&app, 1, 1).await;
    eventually(Duration::from_secs(5), "the event published on its notification", || async { unpublished(&app).await == 0 })
        .await;

    // Commits spaced around the relay's 250 ms of idleness before it listens, each holding
    // the wake-up lock for 20 ms before it commits.
    let mut writer = app.sql().await;
    for n in 0..30u64 {
        let transaction = writer.transaction().await.unwrap();
        let id = insert_event(&transaction, "sleepy").await;
        transaction.execute("SELECT pg_sleep(0.02)", &[]).await.unwrap();
        transaction.commit().await.unwrap();
        ids.push(id);
        tokio::time::sleep(Duration::from_millis(200 + (n * 37) % 100)).await;
    }
    eventually(Duration::from_secs(5), "every event published without the poll", || async { unpublished(&app).await == 0 })
        .await;
    eventually(Duration::from_secs(5), "the relay listening again", || async { listening().await }).await;
    assert_eq!(published_once_or_more(&config, &ids).await, 0, "no relay crashed, so nothing was sent twice");
}

/// Places a hold of `amount` USD from `payer`'s wallet `from` to the wallet `to`; its id.
async fn place_hold(app: &TestApp, payer: &User, from: &str, to: &str, amount: &str, expires_in_secs: u64) -> String {
    let body = json!({
        "fromAccountId": from, "toAccountId": to, "amount": amount, "currency": "USD", "expiresInSecs": expires_in_secs
    });
    let placed = holds::place(app, payer, &body).await;
    placed.expect(201);
    placed.json()["id"].as_str().unwrap().to_owned()
}

/// The hold's status as the ledger stored it: the API reads a hold past its expiry as
/// expired already, only the table says whether the sweeper marked it.
async fn stored_status(app: &TestApp, hold: &str) -> String {
    let sql = app.sql().await;
    sql.query_one("SELECT status FROM ledger.holds WHERE id = $1::text::uuid", &[&hold]).await.unwrap().get(0)
}

/// Nothing captures or voids a hold with a one-second expiry: the running bridge's sweeper
/// marks it expired, its one `hold.expired` event reaches Kafka once, and the payer is told;
/// a hold not yet due stays pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_hold_is_swept_announced_once_and_the_payer_told() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    config.env = vec![("HOLD_SWEEP_INTERVAL_SECS".into(), "1".into())];
    let bridge = config.spawn("run");
    let alice = verified(&app, "alice-lapse").await;
    let bob = verified(&app, "bob-lapse").await;
    let from = funded_wallet(&app, &alice, "USD", "50").await;
    let to = wallet(&app, &bob, "USD").await;
    let lapsing = place_hold(&app, &alice, &from, &to, "20.00", 1).await;
    let lasting = place_hold(&app, &alice, &from, &to, "10.00", 604_800).await;

    eventually(Duration::from_secs(30), "the sweeper to mark the hold expired", || async {
        stored_status(&app, &lapsing).await == "expired"
    })
    .await;
    eventually(Duration::from_secs(30), "the hold-expired notification", || {
        let effects = novu.effects();
        async move { effects.iter().any(|t| t.name == "hold-expired") }
    })
    .await;
    let effects = novu.effects();
    let expired: Vec<_> = effects.iter().filter(|t| t.name == "hold-expired").collect();
    assert_eq!(expired.len(), 1, "one notification, to the payer only");
    assert_eq!(expired[0].to["subscriberId"], alice.id.as_str());
    assert_eq!(expired[0].payload["holdId"], lapsing.as_str());
    assert_eq!(expired[0].payload["amount"], "20.00");
    assert_eq!(expired[0].payload["payeeName"], "bob-lapse user");
    assert_eq!(stored_status(&app, &lasting).await, "pending", "a hold not yet due is left alone");

    eventually(Duration::from_secs(30), "the outbox to drain", || async { unpublished(&app).await == 0 }).await;
    let ledger_events = crate::money::count(&app, "SELECT count(*) FROM outbox.events WHERE aggregate_type = 'ledger'").await;
    let topics = vec![config.topic("ledger")];
    let brokers = config.brokers.clone();
    let seen = tokio::task::spawn_blocking(move || read_topics(&brokers, &topics, ledger_events as usize, Duration::from_secs(60)))
        .await
        .unwrap();
    let announced: Vec<_> = seen
        .values()
        .filter(|(_, event_type, payload)| event_type == "hold.expired" && payload["holdId"] == lapsing.as_str())
        .collect();
    assert_eq!(announced.len(), 1, "one hold.expired event for the hold");
    assert_eq!(announced[0].0, 1, "published once");
    assert_eq!(bridge.metric("wasmpay_bridge_holds_expired_total").await, Some(1.0), "{}", bridge.log());
}

/// A hold placed and then captured tells the payer when it is placed, and both parties,
/// after that, what the capture took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_hold_tells_the_payer_it_was_placed_and_both_parties_it_was_captured() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let _bridge = BridgeConfig::new(&app, kafka::shared().brokers(), &novu).spawn("run");
    let alice = verified(&app, "alice-held").await;
    let bob = verified(&app, "bob-held").await;
    let from = funded_wallet(&app, &alice, "USD", "50").await;
    let to = wallet(&app, &bob, "USD").await;
    let hold = place_hold(&app, &alice, &from, &to, "30.00", 3_600).await;
    holds::capture(&app, &bob, &hold, Some(&json!({ "amount": "25.00" }))).await.expect(201);

    eventually(Duration::from_secs(30), "the hold-placed and both hold-captured notifications", || {
        let effects = novu.effects();
        async move { effects.iter().filter(|t| t.name == "hold-captured").count() == 2 }
    })
    .await;
    let effects = novu.effects();
    let held: Vec<_> = effects.iter().filter(|t| t.name.starts_with("hold-")).collect();
    let told: Vec<(&str, &str)> = held.iter().map(|t| (t.name.as_str(), t.to["subscriberId"].as_str().unwrap())).collect();
    // One hold's events share a key, so they are notified in order.
    assert_eq!(told, [("hold-placed", alice.id.as_str()), ("hold-captured", alice.id.as_str()), ("hold-captured", bob.id.as_str())]);
    assert_eq!(held[0].payload["payeeName"], "bob-held user");
    assert_eq!(held[0].payload["amount"], "30.00");
    for captured in &held[1..] {
        assert_eq!(captured.payload["holdId"], hold.as_str());
        assert_eq!(captured.payload["capturedAmount"], "25.00");
        assert_eq!(captured.payload["releasedAmount"], "5.00");
    }
    assert_eq!(held[1].payload["payeeName"], "bob-held user");
    assert_eq!(held[2].payload["payerName"], "alice-held user");
}

/// A sweep that fails — here the ledger function is gone for a while — is counted and
/// retried at the next sweep, while the relay keeps its leadership and goes on publishing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sweep_is_retried_and_holds_up_no_publishing() {
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    config.env = vec![("HOLD_SWEEP_INTERVAL_SECS".into(), "1".into())];
    let relay = config.spawn("relay");
    let sql = app.sql().await;
    sql.batch_execute("ALTER FUNCTION ledger.expire_holds(int) RENAME TO expire_holds_withheld").await.unwrap();
    let alice = verified(&app, "alice-withheld").await;
    let bob = verified(&app, "bob-withheld").await;
    let from = funded_wallet(&app, &alice, "USD", "50").await;
    let to = wallet(&app, &bob, "USD").await;
    let hold = place_hold(&app, &alice, &from, &to, "20.00", 1).await;
    let failed_before = relay.metric("wasmpay_bridge_hold_sweep_failures_total").await.unwrap_or(0.0);

    eventually(Duration::from_secs(30), "sweeps failing after the hold fell due", || async {
        relay.metric("wasmpay_bridge_hold_sweep_failures_total").await.unwrap_or(0.0) >= failed_before + 2.0
    })
    .await;
    write_deposit_events(&app, 10, 10).await;
    eventually(Duration::from_secs(30), "the relay to publish meanwhile", || async { unpublished(&app).await == 0 }).await;
    assert!(!relay.log().contains("relay lost its leadership"), "{}", relay.log());
    assert_eq!(relay.metric("wasmpay_bridge_relay_leader").await, Some(1.0));
    assert_eq!(stored_status(&app, &hold).await, "pending");

    sql.batch_execute("ALTER FUNCTION ledger.expire_holds_withheld(int) RENAME TO expire_holds").await.unwrap();
    eventually(Duration::from_secs(30), "a later sweep to mark the hold expired", || async {
        stored_status(&app, &hold).await == "expired"
    })
    .await;
    eventually(Duration::from_secs(30), "its event published", || async { unpublished(&app).await == 0 }).await;
    assert_eq!(relay.metric("wasmpay_bridge_holds_expired_total").await, Some(1.0), "{}", relay.log());
}
