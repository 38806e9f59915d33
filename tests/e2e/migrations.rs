//! `bridge migrate`: idempotent, safe when several run at once, recording what ran, and
//! building the schema `migrations/schema.sql` shows.

use wasmpay_test_support::{
    paths,
    postgres::{connect, empty_database, migrate, migrated_database},
    schema,
};

use crate::health::latest_schema_version;

async fn applied_versions(url: &str) -> Vec<i32> {
    let client = connect(url).await.unwrap();
    client
        .query("SELECT version FROM refinery_schema_history ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn concurrent_runs_apply_each_migration_once() {
    let db = empty_database().await.unwrap();
    let (first, second, third) = tokio::join!(migrate(&db.url), migrate(&db.url), migrate(&db.url));
    first.unwrap();
    second.unwrap();
    third.unwrap();
    let versions = applied_versions(&db.url).await;
    let expected: Vec<i32> = (1..=latest_schema_version() as i32).collect();
    assert_eq!(versions, expected);

    migrate(&db.url).await.expect("a rerun is a no-op");
    assert_eq!(applied_versions(&db.url).await, expected);
}

#[tokio::test]
async fn the_schema_has_one_schema_per_component_and_the_outbox() {
    let db = empty_database().await.unwrap();
    migrate(&db.url).await.unwrap();
    let client = connect(&db.url).await.unwrap();
    let schemas: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname IN ('identity', 'accounts', 'ledger', 'outbox') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(schemas, ["accounts", "identity", "ledger", "outbox"]);
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let db = empty_database().await.unwrap();
    migrate(&db.url).await.unwrap();
    let client = connect(&db.url).await.unwrap();
    client
        .execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1", &[])
        .await
        .unwrap();
    let error = migrate(&db.url).await.expect_err("a divergent history must stop the migration");
    assert!(format!("{error:#}").contains("is different than filesystem one"), "{error:#}");
}

#[tokio::test]
async fn schema_sql_matches_a_freshly_migrated_database() {
    let db = migrated_database().await.unwrap();
    let dumped = schema::dump(&db.url).unwrap();
    let path = paths::repo_root().join(schema::SNAPSHOT);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    if let Some(difference) = first_difference(&committed, &dumped) {
        panic!(
            "{} is out of date: run `cargo xtask schema`.\n{difference}",
            schema::SNAPSHOT
        );
    }
}

/// Where `committed` and `dumped` part, with a few lines of each from there on.
fn first_difference(committed: &str, dumped: &str) -> Option<String> {
    const SHOWN_LINES: usize = 5;
    let committed: Vec<&str> = committed.lines().collect();
    let dumped: Vec<&str> = dumped.lines().collect();
    let at = (0..committed.len().max(dumped.len())).find(|&i| committed.get(i) != dumped.get(i))?;
    let excerpt = |lines: &[&str]| -> String {
        let shown = lines
            .iter()
            .skip(at)
            .take(SHOWN_LINES)
            .map(|line| format!("    {line}\n"))
            .collect::<String>();
        if shown.is_empty() {
            "    (end of file)\n".to_owned()
        } else {
            shown
        }
    };
    Some(format!(
        "first difference at line {} (the file has {} lines, the migrated database dumps to {}):\n  the file:\n{}  the database:\n{}",
        at + 1,
        committed.len(),
        dumped.len(),
        excerpt(&committed),
        excerpt(&dumped),
    ))
}
