//! `bridge migrate`: applies the SQL files in `migrations/` (embedded at build time) with
//! refinery, which records each applied version and its checksum in
//! `refinery_schema_history` and refuses to run when an applied file has changed.
//! A session advisory lock makes concurrent runs (several bridges starting at once) safe:
//! the first applies, the others wait and then find nothing to do.

use anyhow::Context;
use tokio_postgres::Client;

refinery::embed_migrations!("../migrations");

/// Advisory lock key shared by every `bridge migrate` ("wasmpay" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0077_6173_6d70_6179;

/// Applies every pending migration; returns the versions applied by this call.
pub async fn run(client: &mut Client) -> anyhow::Result<Vec<i32>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("cannot take the migration lock")?;
    let outcome = migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await;
    // Release before reporting, so a failed run never blocks the next one.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("cannot release the migration lock")?;
    let report = outcome.context("migration failed")?;
    Ok(report.applied_migrations().iter().map(|m| m.version()).collect())
}
