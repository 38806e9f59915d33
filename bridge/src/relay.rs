//! `bridge relay`: outbox → Kafka.
//!
//! One relay per database is active: the one holding a session advisory lock on its
//! connection. Standbys retry the lock and take over when the leader's connection ends
//! (a crashed leader's lock is released by Postgres as soon as its socket closes). The
//! leader reads unpublished rows in outbox order in bounded batches, publishes them with
//! an idempotent producer (key = aggregate id, CloudEvents binary-mode headers), and marks
//! only the rows the broker acknowledged. It never skips a row: at least once, in order per
//! key.
//!
//! Writers notify only a listening relay (`migrations/V10__outbox_notify_only_a_listening_relay.sql`):
//! a NOTIFY serialises committing transactions, which cost `ledger.transfer` a third of its
//! rate. While events keep coming, the leader polls every `AWAKE_POLL`; after `LISTEN_AFTER`
//! without one, it tells writers to notify again (once no writer that may have skipped
//! notifying is still running), reads once more, and sleeps on LISTEN with a poll every
//! `RELAY_POLL_INTERVAL_MS` as the fallback.
//!
//! Several batches are in flight at once (`MAX_BATCHES_IN_FLIGHT`): while the broker
//! acknowledges one, the next are read and queued. A read while batches are in flight
//! continues after the last position queued; a row that committed late with a lower
//! position is picked up by the next read from the lowest unpublished row, which happens
//! whenever nothing is in flight and at least every `RESCAN_AFTER` (one second).
//! Acknowledged rows are marked on a second connection, without holding up the reads;
//! every mark has landed before a read starts again from the lowest unpublished row, so
//! no acknowledged row is sent twice for want of its mark.
//!
//! On Citus (the `citus` extension is installed) nothing notifies: a NOTIFY would stay on
//! the worker that ran it, and the outbox's trigger is gone (migrations/V13). The leader reads
//! through the coordinator, which asks every shard for its lowest unpublished rows, every
//! `AWAKE_POLL` while events come and every `RELAY_DISTRIBUTED_POLL_MS` when idle. Positions
//! come from the coordinator's sequence, so the same rescans keep late commits from being
//! skipped. Rows are marked and pruned by event id, which is the key they are distributed by.
//!
//! While it leads, the process also sweeps expired holds (`crate::sweeper`) on a connection
//! of its own; the sweeper stops when the leadership ends, and its failures never end it.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{FutureExt, StreamExt, stream::FuturesOrdered};
use chrono::NaiveDateTime;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{DeliveryFuture, FutureRecord, Producer},
};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Notification};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{KafkaArgs, RelayArgs},
    db,
    kafka::{self, Outage, WatchedProducer},
    metrics::Metrics,
    sweeper,
};

/// Advisory lock key of the relay leadership ("relay" in ASCII).
const LEADER_LOCK_KEY: i64 = 0x72_656c_6179;
const CHANNEL: &str = "outbox_events";
/// Advisory lock key writers take shared before deciding to notify ("wakeup" in ASCII; the
/// same literal is in `outbox.notify_relay()`).
const WAKEUP_LOCK_KEY: i64 = 0x77_616b_6575_70;
/// How often a relay that has seen events recently reads the outbox (writers do not notify
/// it meanwhile).
const AWAKE_POLL: Duration = Duration::from_millis(5);
/// How long without events before the relay asks writers to notify and sleeps.
const LISTEN_AFTER: Duration = Duration::from_millis(250);
/// Rows pruned per statement, and statements per prune round.
const PRUNE_BATCH: i64 = 10_000;
const MAX_PRUNE_ROUNDS: usize = 10;
/// Pause after a failed batch before retrying it, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// The backlog gauges are refreshed at most this often.
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
/// Failed batches in a row after which the producer is replaced: a broker that lost its
/// producer state (restarted, failed over) may refuse the old producer's sequence numbers
/// for good; a new producer id starts afresh. The producer is also replaced at once when
/// every broker connection is lost, so that no stale sequence reaches a restarted broker.
/// Dropping a producer purges what it had in flight: those rows are still unpublished and
/// go out again. Duplicates are possible, losses are not.
const FAILURES_BEFORE_NEW_PRODUCER: u32 = 3;
/// Batches queued to the producer and not yet settled (acknowledged or failed).
const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// How long the relay keeps reading past the last position queued before it lets the
/// pipeline empty and reads from the lowest unpublished row again: under a backlog, how much
/// longer than usual a late commit may wait.
const RESCAN_AFTER: Duration = Duration::from_secs(1);
/// Marks sent and not yet confirmed before the relay waits for the oldest.
const MAX_MARKS_IN_FLIGHT: usize = 8;

struct OutboxRow {
    position: i64,
    id: uuid::Uuid,
    aggregate_type: String,
    aggregate_id: String,
    event_type: String,
    payload: String,
    created_at: NaiveDateTime,
}

pub async fn run(
    database: &db::Database,
    kafka_args: &KafkaArgs,
    args: &RelayArgs,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let delivery_timeout = Duration::from_millis(args.relay_delivery_timeout_ms);
    let outage = Arc::new(Outage::default());
    let mut producer = kafka::watched_producer(kafka_args, delivery_timeout, outage.clone())?;
    while !shutdown.is_cancelled() {
        let Some((leader, notifications)) = become_leader(database, args, &metrics, &shutdown).await else {
            break;
        };
        metrics.relay_leader.set(1);
        tracing::info!("relay is the leader");
        let settings = Settings {
            kafka: kafka_args,
            relay: args,
            metrics: &metrics,
            shutdown: &shutdown,
            outage: &outage,
        };
        let outcome = async {
            let marker = marking_connection(database).await?;
            let sweeping = sweeper::sweep_while_leading(database, args.hold_sweep_interval(), &metrics);
            tokio::select! {
                led = lead(&leader, &marker, notifications, &mut producer, &settings) => led,
                never = sweeping => match never {},
            }
        }
        .await;
        metrics.relay_leader.set(0);
        match outcome {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "relay lost its leadership; standing by");
                metrics.set_relay_ready(false);
                tokio::select! {
                    () = tokio::time::sleep(args.leader_retry()) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || producer.flush(delivery_timeout))
        .await
        .context("the producer flush panicked")?
        .context("cannot flush the producer")?;
    tracing::info!("relay stopped");
    Ok(())
}

/// Waits until this process holds the leadership lock; `None` on shutdown.
async fn become_leader(
    database: &db::Database,
    args: &RelayArgs,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<(Client, mpsc::UnboundedReceiver<Notification>)> {
    let mut standing_by = false;
    loop {
        let attempt = async {
            let (client, notifications) = db::connect_listening(database).await?;
            // A standby is ready: it runs and will take over.
            metrics.set_relay_ready(true);
            loop {
                let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK_KEY]).await?;
                if row.get::<_, bool>(0) {
                    // Reads walk the unpublished-rows index in order from the cursor:
                    // without statistics (a fresh or just-filled outbox) the planner would
                    // rather bitmap-scan and sort the whole backlog (90 ms instead of 0.7 ms
                    // for 500 of 50,000 rows).
                    client.batch_execute(&format!("SET enable_bitmapscan = off; LISTEN {CHANNEL}")).await?;
                    return anyhow::Ok((client, notifications));
                }
                if !standing_by {
                    tracing::info!("another relay leads; standing by");
                    standing_by = true;
                }
                tokio::time::sleep(args.leader_retry()).await;
            }
        };
        tokio::select! {
            result = attempt => match result {
                Ok(leader) => return Some(leader),
                Err(e) => {
                    metrics.set_relay_ready(false);
                    tracing::warn!(error = %format!("{e:#}"), "cannot reach the database; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(args.leader_retry()) => {}
                        () = shutdown.cancelled() => return None,
                    }
                }
            },
            () = shutdown.cancelled() => return None,
        }
    }
}

/// The second connection of a leader, on which it marks events published. It does not wait
/// for each mark's WAL flush: a mark lost in a Postgres crash only sends its events again
/// (at least once).
async fn marking_connection(database: &db::Database) -> anyhow::Result<Client> {
    let marker = db::connect(database)
        .await
        .context("cannot open the connection that marks events published")?;
    marker.batch_execute("SET synchronous_commit = off").await.context("cannot configure the marking connection")?;
    Ok(marker)
}

/// What a leading relay works with.
struct Settings<'a> {
    kafka: &'a KafkaArgs,
    relay: &'a RelayArgs,
    metrics: &'a Metrics,
    shutdown: &'a CancellationToken,
    outage: &'a Arc<Outage>,
}

/// Relays while this process leads. `Ok` on shutdown, `Err` when the leadership ends.
async fn lead(
    client: &Client,
    marker: &Client,
    mut notifications: mpsc::UnboundedReceiver<Notification>,
    producer: &mut WatchedProducer,
    settings: &Settings<'_>,
) -> anyhow::Result<()> {
    let Settings {
        kafka: kafka_args,
        relay: args,
        metrics,
        shutdown,
        outage,
    } = *settings;
    kafka::ensure_topics(kafka_args).await?;
    metrics.set_relay_ready(true);
    let prune_every = Duration::from_secs(args.prune_interval_secs);
    let mut last_prune: Option<Instant> = None;
    let mut last_backlog: Option<Instant> = None;
    let mut retry_delay = RETRY_MIN;
    let mut failures_in_a_row = 0;
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // The last position queued while batches are in flight; `None`: read from the lowest
    // unpublished row.
    let mut cursor: Option<i64> = None;
    let mut lowest_read_at = Instant::now();
    let mut marks = FuturesOrdered::new();
    // Whether writers notify: not while this leader polls.
    let mut listening = false;
    set_listening(client, false).await?;
    let distributed = db::is_distributed(client).await?;
    let mut last_events_at = Instant::now();
    loop {
        // A failed mark ends the leadership (its rows are still unpublished and go out
        // again).
        while let Some(Some(marked)) = marks.next().now_or_never() {
            marked?;
        }
        if in_flight.is_empty() {
            while let Some(marked) = marks.next().await {
                marked?;
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            cursor = None;
        } else if marks.len() >= MAX_MARKS_IN_FLIGHT {
            if let Some(marked) = marks.next().await {
                marked?;
            }
        }
        if client.is_closed() {
            bail!("the leadership connection closed");
        }
        if last_backlog.is_none_or(|at| at.elapsed() >= BACKLOG_REFRESH) {
            refresh_backlog(client, metrics).await?;
            last_backlog = Some(Instant::now());
        }
        if last_prune.is_none_or(|at| at.elapsed() >= prune_every) {
            prune(client, args.outbox_retention_hours).await?;
            last_prune = Some(Instant::now());
        }
        // Read and queue more while there is room, no failure to recover from, and no
        // rescan due.
        let may_read = in_flight.len() < MAX_BATCHES_IN_FLIGHT
            && (cursor.is_none() || lowest_read_at.elapsed() < RESCAN_AFTER)
            && !shutdown.is_cancelled();
        if may_read {
            let batch = fetch(client, args.relay_batch_size, cursor).await?;
            if let Some(last) = batch.last() {
                if listening {
                    set_listening(client, false).await?;
                    listening = false;
                }
                last_events_at = Instant::now();
                if in_flight.is_empty() {
                    // Only an outage with events in flight matters.
                    outage.take();
                }
                if cursor.is_none() {
                    lowest_read_at = Instant::now();
                }
                cursor = Some(last.position);
                let queued = queue(producer, &kafka_args.topic_prefix, &batch);
                let refused = queued.failure.is_some();
                in_flight.push_back(queued);
                if !refused {
                    continue;
                }
            } else if in_flight.is_empty() && distributed {
                let pause = if last_events_at.elapsed() < LISTEN_AFTER {
                    AWAKE_POLL
                } else {
                    args.distributed_poll()
                };
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            } else if in_flight.is_empty() && !listening {
                if last_events_at.elapsed() < LISTEN_AFTER {
                    tokio::select! {
                        () = tokio::time::sleep(AWAKE_POLL) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                } else {
                    // Notifications from before are stale; then read once more, for the
                    // events of writers that skipped notifying before the handshake.
                    while notifications.try_recv().is_ok() {}
                    listening = start_listening(client).await?;
                    if !listening {
                        last_events_at = Instant::now();
                    }
                }
                continue;
            } else if in_flight.is_empty() {
                tokio::select! {
                    notification = notifications.recv() => {
                        if notification.is_none() {
                            bail!("the leadership connection closed");
                        }
                        // Several commits may have notified: one read serves them all.
                        while notifications.try_recv().is_ok() {}
                    }
                    () = tokio::time::sleep(args.poll_interval()) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
                continue;
            }
        }
        // Settle the oldest batch in flight: mark what the broker acknowledged. A batch in
        // hand is finished even if shutdown is asked meanwhile.
        let Some(oldest) = in_flight.pop_front() else { continue };
        let (acknowledged, failure) = settle(oldest, outage).await;
        if !acknowledged.is_empty() {
            marks.push_back(mark(marker, metrics, acknowledged));
        }
        let Some(e) = failure else {
            if in_flight.is_empty() {
                retry_delay = RETRY_MIN;
                failures_in_a_row = 0;
            }
            continue;
        };
        // A failure: settle (and mark) what else is in flight, then read again from the
        // lowest unpublished row after a pause, with a new producer if this one is stuck.
        while let Some(next) = in_flight.pop_front() {
            let (acknowledged, _) = settle(next, outage).await;
            if !acknowledged.is_empty() {
                marks.push_back(mark(marker, metrics, acknowledged));
            }
        }
        metrics.relay_failures.inc();
        failures_in_a_row += 1;
        tracing::warn!(error = %e, "publishing failed; retrying");
        let fatal = producer.client().fatal_error();
        let brokers_lost = outage.take();
        if fatal.is_some() || brokers_lost || failures_in_a_row >= FAILURES_BEFORE_NEW_PRODUCER {
            tracing::warn!(fatal = ?fatal, brokers_lost, "replacing the Kafka producer");
            let fresh = kafka::watched_producer(
                kafka_args,
                Duration::from_millis(args.relay_delivery_timeout_ms),
                outage.clone(),
            )?;
            let abandoned = std::mem::replace(producer, fresh);
            // Dropping purges its queue; it joins a thread, so off the async workers.
            tokio::task::spawn_blocking(move || drop(abandoned));
            failures_in_a_row = 0;
        }
        tokio::select! {
            () = tokio::time::sleep(retry_delay) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        retry_delay = (retry_delay * 2).min(RETRY_MAX);
    }
}

/// Asks writers to notify, if no writer that may have decided not to is still running (see
/// `migrations/V10__outbox_notify_only_a_listening_relay.sql`). `false`: a writer holds the
/// wake-up lock, so writers are told not to notify again and the relay polls on. The
/// relay never waits for the lock, so no writer ever waits for the relay.
async fn start_listening(client: &Client) -> anyhow::Result<bool> {
    set_listening(client, true).await?;
    let row = client
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&WAKEUP_LOCK_KEY])
        .await
        .context("cannot take the wake-up lock")?;
    let quiet = row.get::<_, bool>(0);
    if !quiet {
        set_listening(client, false).await?;
    }
    Ok(quiet)
}

async fn set_listening(client: &Client, listening: bool) -> anyhow::Result<()> {
    client
        .execute("UPDATE outbox.relay_wakeup SET listening = $1", &[&listening])
        .await
        .context("cannot tell writers whether to notify")?;
    Ok(())
}

/// Marks the rows the broker acknowledged as published, and counts them relayed.
fn mark<'a>(marker: &'a Client, metrics: &'a Metrics, acknowledged: Vec<uuid::Uuid>) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        marker
            .execute(
                "UPDATE outbox.events SET published_at = now() AT TIME ZONE 'UTC' WHERE id = ANY($1)",
                &[&acknowledged],
            )
            .await
            .context("cannot mark events published")?;
        metrics.events_relayed.inc_by(acknowledged.len() as u64);
        Ok(())
    })
}

/// Unpublished rows in outbox order, after `cursor` when given.
async fn fetch(client: &Client, limit: i64, cursor: Option<i64>) -> anyhow::Result<Vec<OutboxRow>> {
    let rows = client
        .query(
            "SELECT position, id, aggregate_type, aggregate_id, event_type, payload::text, created_at
             FROM outbox.events
             WHERE published_at IS NULL AND position > $2
             ORDER BY position
             LIMIT $1",
            &[&limit, &cursor.unwrap_or(0)],
        )
        .await
        .context("cannot read the outbox")?;
    Ok(rows
        .iter()
        .map(|row| OutboxRow {
            position: row.get(0),
            id: row.get(1),
            aggregate_type: row.get(2),
            aggregate_id: row.get(3),
            event_type: row.get(4),
            payload: row.get(5),
            created_at: row.get(6),
        })
        .collect())
}

/// A batch handed to the producer: the deliveries to await, and a refusal to queue (the
/// rows after it were not queued).
struct InFlight {
    pending: Vec<(uuid::Uuid, DeliveryFuture)>,
    failure: Option<String>,
}

/// Queues every row of `batch` (in order) without waiting.
fn queue(producer: &WatchedProducer, prefix: &str, batch: &[OutboxRow]) -> InFlight {
    let mut pending = Vec::with_capacity(batch.len());
    let mut failure = None;
    for row in batch {
        let topic = kafka::topic(prefix, &row.aggregate_type);
        let id = row.id.to_string();
        let source = format!("/wasmpay/{}", row.aggregate_type);
        let time = row.created_at.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header { key: "ce_specversion", value: Some("1.0") })
            .insert(Header { key: "ce_id", value: Some(id.as_str()) })
            .insert(Header { key: "ce_source", value: Some(source.as_str()) })
            .insert(Header { key: "ce_type", value: Some(row.event_type.as_str()) })
            .insert(Header { key: "ce_subject", value: Some(row.aggregate_id.as_str()) })
            .insert(Header { key: "ce_time", value: Some(time.as_str()) })
            .insert(Header { key: "content-type", value: Some("application/json") });
        let record = FutureRecord::to(&topic)
            .key(row.aggregate_id.as_bytes())
            .payload(row.payload.as_bytes())
            .headers(headers);
        match producer.send_result(record) {
            Ok(delivery) => pending.push((row.id, delivery)),
            Err((e, _)) => {
                failure = Some(format!("cannot queue event {}: {e}", row.id));
                break;
            }
        }
    }
    InFlight { pending, failure }
}

/// Waits for every acknowledgement of a batch in flight — or for the loss of every broker
/// connection; returns the acknowledged events' ids and the first failure.
async fn settle(batch: InFlight, outage: &Outage) -> (Vec<uuid::Uuid>, Option<String>) {
    let InFlight { pending, mut failure } = batch;
    let mut acknowledged = Vec::with_capacity(pending.len());
    let deliveries = async {
        for (id, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => acknowledged.push(id),
                Ok(Err((e, _))) => {
                    failure.get_or_insert_with(|| format!("the broker did not acknowledge: {e}"));
                }
                Err(_) => {
                    failure.get_or_insert_with(|| "the producer dropped a delivery".to_owned());
                }
            }
        }
    };
    let lost_brokers = tokio::select! {
        () = deliveries => false,
        () = outage.seen() => true,
    };
    if lost_brokers {
        failure.get_or_insert_with(|| "every broker connection is down".to_owned());
    }
    (acknowledged, failure)
}

async fn refresh_backlog(client: &Client, metrics: &Metrics) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT count(*),
                    COALESCE(extract(epoch FROM (now() AT TIME ZONE 'UTC') - min(created_at)), 0)::float8
             FROM outbox.events WHERE published_at IS NULL",
            &[],
        )
        .await
        .context("cannot measure the backlog")?;
    metrics.outbox_backlog.set(row.get(0));
    metrics.outbox_oldest_age_seconds.set(row.get(1));
    Ok(())
}

/// Deletes published events past their retention and expired idempotency keys, in
/// bounded batches.
async fn prune(client: &Client, retention_hours: u64) -> anyhow::Result<()> {
    let retention_hours = i64::try_from(retention_hours).unwrap_or(i64::MAX);
    let published = "DELETE FROM outbox.events WHERE id IN (
                         SELECT id FROM outbox.events
                         WHERE published_at < (now() AT TIME ZONE 'UTC') - $1::int8 * interval '1 hour'
                         ORDER BY position LIMIT $2)";
    prune_rounds(client, published, &[&retention_hours, &PRUNE_BATCH]).await?;
    // By key, not by `ctid`, which is unique only within one shard on Citus.
    let expired_keys = "DELETE FROM ledger.idempotency_keys WHERE (user_id, key) IN (
                            SELECT user_id, key FROM ledger.idempotency_keys
                            WHERE expires_at < (now() AT TIME ZONE 'UTC')
                            LIMIT $1)";
    prune_rounds(client, expired_keys, &[&PRUNE_BATCH]).await
}

async fn prune_rounds(client: &Client, statement: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> anyhow::Result<()> {
    for _ in 0..MAX_PRUNE_ROUNDS {
        let deleted = client.execute(statement, params).await.context("cannot prune")?;
        if deleted < PRUNE_BATCH as u64 {
            break;
        }
    }
    Ok(())
}
