//! The yardstick of `transfers`: pgledger (MIT; a double-entry ledger as plain PostgreSQL
//! functions, at `../shared/anchors/pgledger`, or `$PGLEDGER_DIR`), loaded at run time into
//! its own database of the benchmark's cluster and driven by pgbench the way its README
//! says it was measured on these machines, uniform and on one hot account. Nothing of it
//! is part of the project.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, ensure};
use wasmpay_test_support::{cluster, paths, postgres};

use crate::platform::Platform;

/// Accounts pgledger transfers between (as many as wasmpay's wallets in the same run).
const ACCOUNTS: usize = crate::transfers::WALLETS;

/// Where pgledger's SQL is, if it is on this machine.
pub fn anchor() -> Option<PathBuf> {
    let dir = std::env::var_os("PGLEDGER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::repo_root().join("../shared/anchors/pgledger"));
    dir.join("pgledger.sql").is_file().then_some(dir)
}

/// Loads pgledger into a new database `pgledger` of this run's cluster and opens
/// `ACCOUNTS` USD accounts; returns that database's URL.
pub async fn load(platform: &Platform, anchor: &std::path::Path) -> anyhow::Result<String> {
    let cluster = platform.cluster.as_ref().context("pgledger is loaded only into a cluster this process started")?;
    postgres::connect(&cluster.url("postgres")).await?.batch_execute("CREATE DATABASE pgledger").await?;
    let url = cluster.url("pgledger");
    for file in ["vendor/scoville-pgsql-ulid/ulid-to-uuid.sql", "vendor/scoville-pgsql-ulid/uuid-to-ulid.sql", "pgledger.sql"] {
        let output = Command::new(cluster::pg_bin_dir()?.join("psql"))
            .args(["-q", "-X", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(anchor.join(file))
            .arg(&url)
            .output()
            .context("cannot run psql")?;
        ensure!(output.status.success(), "loading {file}: {}", String::from_utf8_lossy(&output.stderr));
    }
    postgres::connect(&url)
        .await?
        .execute(
            "CREATE TABLE acct_idx AS
             SELECT g AS i, (SELECT id FROM pgledger_create_account('acct_' || g, 'USD')) AS id
             FROM generate_series(1, $1::int4) g",
            &[&(ACCOUNTS as i32)],
        )
        .await?;
    postgres::connect(&url).await?.batch_execute("ALTER TABLE acct_idx ADD PRIMARY KEY (i); ANALYZE").await?;
    Ok(url)
}

/// The pgbench transaction: one `pgledger_create_transfer` between two distinct accounts,
/// one of them account 1 when `hot`.
pub fn script(hot: bool) -> String {
    let n = ACCOUNTS;
    if hot {
        format!(
            "\\set b random(2, {n})\n\
             SELECT pgledger_create_transfer((SELECT id FROM acct_idx WHERE i = 1), (SELECT id FROM acct_idx WHERE i = :b), 1.23);\n"
        )
    } else {
        format!(
            "\\set a random(1, {n})\n\\set b random(1, {n})\n\
             SELECT pgledger_create_transfer((SELECT id FROM acct_idx WHERE i = :a), \
             (SELECT id FROM acct_idx WHERE i = CASE WHEN :b = :a THEN (:a % {n}) + 1 ELSE :b END), 1.23);\n"
        )
    }
}
