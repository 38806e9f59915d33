//! The hold sweeper: while this process's relay leads, it marks the pending holds whose
//! expiry has passed as expired, each with its `hold.expired` event
//! (`ledger.expire_holds`, `migrations/V12__holds.sql`).
//!
//! The ledger already ignores a pending hold past its expiry, so a sweep frees no money: it
//! records the fact and announces it, and `HOLD_SWEEP_INTERVAL_SECS` bounds how late. It
//! runs beside the leading relay so that one sweeper per database does the work; two would
//! still be correct, as `expire_holds` skips holds another transaction has locked and marks
//! a hold only while it is pending. It has a connection of its own, so a sweep never delays
//! the relay's reads or marks, and a failed sweep never ends the leadership: it is logged,
//! counted and tried again at the next sweep. Each statement commits its marks together
//! with their events, so a sweep cut short — by a failure, or by the leadership ending —
//! leaves no hold marked without its event and announces none twice.

use std::{convert::Infallible, time::Duration};

use anyhow::Context;
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

use crate::{db, metrics::Metrics};

/// Holds expired per statement (one transaction each, so the holds' row locks are short),
/// and statements per sweep: at most 5,000 holds a sweep, a larger backlog drains over the
/// next sweeps.
const HOLDS_PER_STATEMENT: i32 = 500;
const MAX_STATEMENTS_PER_SWEEP: usize = 10;
/// How long a sweep may take before its connection is given up (a network that hangs, a
/// database that stopped answering); the next sweep opens another.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Sweeps every `interval`, the first time at once. It never returns: the relay drops it
/// when its leadership ends.
pub async fn sweep_while_leading(database: &db::Database, interval: Duration, metrics: &Metrics) -> Infallible {
    let mut connection: Option<Client> = None;
    let mut sweeps = tokio::time::interval(interval);
    // A slow sweep postpones the next instead of bringing sweeps back to back.
    sweeps.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        sweeps.tick().await;
        let failure = match tokio::time::timeout(SWEEP_TIMEOUT, sweep(database, &mut connection, metrics)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => {
                connection = None;
                anyhow::anyhow!("the sweep took longer than {SWEEP_TIMEOUT:?}")
            }
        };
        metrics.hold_sweep_failures.inc();
        tracing::warn!(error = %format!("{failure:#}"), "cannot expire holds; retrying at the next sweep");
    }
}

/// Expires due holds until a statement finds fewer than it may take, in at most
/// `MAX_STATEMENTS_PER_SWEEP` statements; (re)opens the connection when it is closed.
async fn sweep(database: &db::Database, connection: &mut Option<Client>, metrics: &Metrics) -> anyhow::Result<()> {
    let client = match connection.take() {
        Some(open) if !open.is_closed() => connection.insert(open),
        _ => connection.insert(db::connect(database).await.context("cannot open the hold sweeper's connection")?),
    };
    for _ in 0..MAX_STATEMENTS_PER_SWEEP {
        let expired: i32 = client
            .query_one("SELECT ledger.expire_holds($1)", &[&HOLDS_PER_STATEMENT])
            .await
            .context("cannot expire holds")?
            .get(0);
        metrics.holds_expired.inc_by(u64::try_from(expired).unwrap_or_default());
        if expired < HOLDS_PER_STATEMENT {
            break;
        }
    }
    Ok(())
}
