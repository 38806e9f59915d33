//! `bridge migrate`: idempotent, safe when several run at once, recording what ran.

use wasmpay_test_support::postgres::{connect, empty_database, migrate};

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
