//! Relay throughput and lag: `bridge relay` draining a 50,000-event outbox backlog into a
//! real broker (tansu, in memory), against a raw rdkafka producer sending the same
//! payloads, keys and headers to the same broker in the same run — in alternating rounds
//! on a fresh backlog each, since one drain lasts under a second and the machine's other
//! work (autovacuum, checkpoints) moves single figures; then the commit-to-publish lag of
//! events written at a steady 500 per second.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use wasmpay_test_support::{
    cluster::{self, LocalCluster},
    kafka::{Broker, Storage},
    paths,
    postgres::{self, connect},
    process::Supervised,
};

const BACKLOG: i64 = 50_000;

/// A transfer.completed-sized event (about 500 bytes of JSON).
const SEED: &str = "
INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
SELECT gen_random_uuid(), 'ledger', gen_random_uuid()::text, 'transfer.completed',
       jsonb_build_object(
           'transferId', gen_random_uuid(), 'amount', (n % 1000) || '.25', 'currency', 'USD',
           'description', 'Benchmark transfer ' || n,
           'sender', jsonb_build_object('userId', gen_random_uuid(), 'accountId', gen_random_uuid(),
                                        'email', 'sender' || n || '@example.com', 'fullName', 'Sender ' || n),
           'recipient', jsonb_build_object('userId', gen_random_uuid(), 'accountId', gen_random_uuid(),
                                           'email', 'recipient' || n || '@example.com', 'fullName', 'Recipient ' || n),
           'createdAt', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
FROM generate_series(1, $1::int8) n";

struct Event {
    key: String,
    id: String,
    payload: String,
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    // The relay's producer settings (bridge/src/kafka.rs).
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000")
        .set("message.timeout.ms", "60000")
        .create()
        .context("cannot create the producer")
}

async fn create_topic(brokers: &str, name: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let results = admin
        .create_topics(&[NewTopic::new(name, 3, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await?;
    for result in results {
        result.map_err(|(topic, code)| anyhow::anyhow!("cannot create {topic}: {code}"))?;
    }
    Ok(())
}

/// Waits until the outbox has no unpublished row, looking every `period`.
async fn all_published(db: &tokio_postgres::Client, limit: Duration, period: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let published: bool = db
            .query_one("SELECT NOT EXISTS (SELECT FROM outbox.events WHERE published_at IS NULL)", &[])
            .await?
            .get(0);
        if published {
            return Ok(());
        }
        ensure!(started.elapsed() < limit, "the relay did not publish everything within {limit:?}");
        tokio::time::sleep(period).await;
    }
}

/// The raw producer: every event queued at once, then every acknowledgement awaited.
async fn raw_producer(brokers: &str, topic: &str, events: &[Event]) -> anyhow::Result<f64> {
    create_topic(brokers, topic).await?;
    let producer = producer(brokers)?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header { key: "ce_specversion", value: Some("1.0") })
            .insert(Header { key: "ce_id", value: Some(event.id.as_str()) })
            .insert(Header { key: "ce_source", value: Some("/wasmpay/ledger") })
            .insert(Header { key: "ce_type", value: Some("transfer.completed") })
            .insert(Header { key: "ce_subject", value: Some(event.key.as_str()) })
            .insert(Header { key: "ce_time", value: Some("2026-11-21T00:00:00.000000Z") })
            .insert(Header { key: "content-type", value: Some("application/json") });
        let record = FutureRecord::to(topic).key(&event.key).payload(&event.payload).headers(headers);
        pending.push(producer.send_result(record).map_err(|(e, _)| anyhow::anyhow!("queue full: {e}"))?);
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| anyhow::anyhow!("not acknowledged: {e}"))?;
    }
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

fn start_relay(database_url: &str, brokers: &str, ops_port: u16, batch_size: u64) -> anyhow::Result<Supervised> {
    let mut command = Command::new(paths::binary("bridge"));
    command
        .arg("relay")
        .env("RELAY_BATCH_SIZE", batch_size.to_string())
        .env("DATABASE_URL", database_url)
        .env("KAFKA_BROKERS", brokers)
        .env("TOPIC_PREFIX", "relay")
        .env("OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Supervised::spawn(command, libc::SIGKILL)
}

pub async fn run(rate: u64, seconds: u64, batch_size: u64, rounds: u32) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("wasmpay-bench-relay-{}", std::process::id()));
    let cluster = LocalCluster::start(&dir, cluster::free_port()?, &["max_connections=100"])?;
    connect(&cluster.url("postgres")).await?.batch_execute("CREATE DATABASE bench").await?;
    let database_url = cluster.url("bench");
    postgres::migrate(&database_url).await?;
    let broker = Broker::start(Storage::Memory)?;
    let db = connect(&database_url).await?;
    println!("# relay: {BACKLOG} events of ~500 bytes, batches of {batch_size}, tansu (in memory) on 2 shared cores, {rounds} rounds");

    let mut ratios = Vec::new();
    for round in 1..=rounds {
        // A fresh backlog: the previous round's rows gone and vacuumed, the same shape.
        db.batch_execute("DELETE FROM outbox.events").await?;
        db.batch_execute("VACUUM ANALYZE outbox.events").await?;
        db.execute(SEED, &[&BACKLOG]).await?;
        let events: Vec<Event> = db
            .query("SELECT aggregate_id, id::text, payload::text FROM outbox.events ORDER BY position", &[])
            .await?
            .iter()
            .map(|row| Event {
                key: row.get(0),
                id: row.get(1),
                payload: row.get(2),
            })
            .collect();
        let raw_rate = raw_producer(&broker.brokers(), &format!("raw{round}.ledger"), &events).await?;

        let relay = start_relay(&database_url, &broker.brokers(), cluster::free_port()?, batch_size)?;
        // Polled lightly: counting the unpublished rows every few milliseconds would take
        // CPU from the relay being measured.
        all_published(&db, Duration::from_secs(600), Duration::from_millis(200)).await?;
        relay.stop(libc::SIGTERM, Duration::from_secs(20));
        // From the first acknowledged publication to the last, by the relay's own marks.
        let span: f64 = db
            .query_one(
                "SELECT extract(epoch FROM max(published_at) - min(published_at))::float8 FROM outbox.events",
                &[],
            )
            .await?
            .get(0);
        let relay_rate = BACKLOG as f64 / span;
        ratios.push(relay_rate / raw_rate);
        println!(
            "round {round}: raw rdkafka producer {raw_rate:>7.0} events/s, bridge relay (backlog) {relay_rate:>7.0} events/s: {:.2}x",
            relay_rate / raw_rate
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "relay / raw producer over {rounds} rounds: median {:.2}x (min {:.2}x, max {:.2}x)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );

    // Steady load: `rate` events per second, each its own committed transaction, once the
    // relay leads and publishes (a probe event): its start-up is not lag.
    db.batch_execute("DELETE FROM outbox.events").await?;
    let relay = start_relay(&database_url, &broker.brokers(), cluster::free_port()?, batch_size)?;
    db.execute(SEED, &[&1i64]).await?;
    all_published(&db, Duration::from_secs(60), Duration::from_millis(20)).await?;
    db.batch_execute("DELETE FROM outbox.events").await?;
    let writers = 4u64;
    let per_writer = rate / writers;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let url = database_url.clone();
            tokio::spawn(async move {
                let client = connect(&url).await?;
                let period = Duration::from_secs_f64(1.0 / per_writer as f64);
                let mut next = Instant::now();
                while Instant::now() < deadline {
                    client.execute(SEED, &[&1i64]).await?;
                    next += period;
                    tokio::time::sleep_until(next.into()).await;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = db
        .query_one(
            "SELECT count(*),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)) * 1000,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)) * 1000,
                    count(*) FILTER (WHERE published_at IS NULL)
             FROM outbox.events",
            &[],
        )
        .await?;
    let (written, p50, p99, unpublished): (i64, f64, f64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    println!(
        "commit-to-publish lag at {} events/s for {seconds} s: p50 {p50:.1} ms, p99 {p99:.1} ms ({written} events, {unpublished} unpublished)",
        written / seconds as i64
    );
    relay.stop(libc::SIGTERM, Duration::from_secs(20));
    drop(broker);
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
