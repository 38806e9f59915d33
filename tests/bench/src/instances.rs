//! `wasmpay-bench instances`: POST /transfers (uniform, 32 clients) under `spin up` (or the
//! host) with several instance and connection settings, one after another on one database.

use std::{sync::Arc, time::Duration};

use wasmpay_test_support::{paths, postgres};

use crate::{
    platform::{Build, JWT_SECRET, Platform, Runtime},
    transfers::{WALLETS, Workload, http_run, seed, token},
};

pub async fn run(seconds: u64, workload: Workload, runtime: Runtime, configurations: &[String]) -> anyhow::Result<()> {
    let platform = Platform::start(&[("max_transfer_amount", "*=1000000")]).await?;
    let admin = postgres::connect(&platform.database_url).await?;
    seed(&admin).await?;
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    // An unmeasured pass first: a freshly seeded database serves the first runs measurably
    // slower (a fifth and more), which would penalise whichever configuration comes first.
    let warm = platform.serve(runtime).await?;
    http_run(&warm, tokens.clone(), workload, Duration::ZERO, Duration::from_secs(20)).await?;
    drop(warm);
    for configuration in configurations {
        // "--flag value --flag value var=value component:name=path …"
        let mut flags = Vec::new();
        let mut variables = Vec::new();
        let mut component_sources: std::collections::BTreeMap<String, std::path::PathBuf> =
            paths::COMPONENTS.iter().map(|c| ((*c).to_owned(), paths::component(c))).collect();
        let mut words = configuration.split_whitespace();
        while let Some(word) = words.next() {
            match word.split_once('=') {
                Some((name, path)) if name.starts_with("component:") => {
                    component_sources.insert(name["component:".len()..].to_owned(), path.into());
                }
                Some((name, value)) => variables.push((name, value.to_owned())),
                None => flags.push((word.to_owned(), words.next().unwrap_or_default().to_owned())),
            }
        }
        let build = Build {
            manifest: paths::repo_root().join("spin.toml"),
            component_sources,
            dependency_sources: paths::policy_slot_sources(),
            instance_flags: flags,
        };
        let server = platform.serve_build(runtime, build, &variables).await?;
        let _ = admin.batch_execute("VACUUM ANALYZE; CHECKPOINT").await;
        admin.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()").await?;
        let before = sessions(&admin).await?;
        let cpu_before = (platform.postmaster().map(crate::cpu::tree_cpu), server.process_cpu());
        let m = http_run(&server, tokens.clone(), workload, Duration::from_secs(3), Duration::from_secs(seconds)).await?;
        let after = sessions(&admin).await?;
        let cpu_after = (platform.postmaster().map(crate::cpu::tree_cpu), server.process_cpu());
        let per_request = |a: std::time::Duration, b: std::time::Duration| (a - b).as_secs_f64() * 1e3 / m.sent.max(1) as f64;
        let postgres_ms = per_request(cpu_after.0.unwrap_or_default(), cpu_before.0.unwrap_or_default());
        let spin_ms = per_request(cpu_after.1, cpu_before.1);
        let resets: i64 = admin
            .query_one("SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query = 'RESET ALL'", &[])
            .await?
            .get(0);
        println!(
            "{configuration:<90} {:>7.0}/s p50 {:>6.1} ms p99 {:>7.1} ms {:?} {} new connections, {:.2} pool checkouts per request, CPU per request: Postgres {:.3} ms, runtime {:.3} ms",
            m.per_sec,
            m.p50_ms,
            m.p99_ms,
            m.outcomes,
            after - before,
            resets as f64 / m.sent.max(1) as f64,
            postgres_ms,
            spin_ms
        );
    }
    Ok(())
}

async fn sessions(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one("SELECT sessions FROM pg_stat_database WHERE datname = current_database()", &[])
        .await?
        .get(0))
}
