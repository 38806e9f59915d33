//! `wasmpay-bench policies`: what the policy plugins cost `POST /transfers` under Spin. Two
//! builds of this checkout serve the same load on the same database, in alternating rounds:
//!
//! - shipped: transfers.wasm composed with the standard plugin and the idle fees and
//!   velocity plugins in its three 0.2.0 slots and `policies/pass` in its 0.1.0
//!   compatibility slot (the default manifest): the standard one asks the ledger to check
//!   the sender's verified e-mail;
//! - allow-all: the same transfers.wasm with `tests/plugins/misbehaving` in every 0.2.0 slot,
//!   which allows the bench's amounts (0.01 to 1.00) with no fee and no requirement, and
//!   `policies/pass`, which allows everything, still in the compatibility slot (a 0.2.0
//!   plugin cannot fill it).
//!
//! The difference is everything the rules cost: three plugin calls per posting, their
//! answers checked, and the requirement the ledger checks under the wallet locks. (Until
//! the components were WASIp3 the yardstick was the last engine with the rules built in,
//! commit ac3247e; that build is WASIp2, so under Spin today it would measure the instance
//! model, not the plugins.)

use std::{sync::Arc, time::Duration};

use anyhow::ensure;
use wasmpay_test_support::{paths, postgres, spin};

use crate::{
    cpu,
    platform::{Build, JWT_SECRET, Platform, Runtime, Server},
    transfers::{Measured, STANDARD_TRANSFER_TERMS, Sql, WALLETS, Workload, http_run, pgbench_run, pgbench_script, seed, token},
};

const WARMUP: Duration = Duration::from_secs(3);
/// What the allow-all plugins give the ledger: no fee, no requirement.
const ALLOW_ALL_TERMS: &str = r#"'{"fee": null, "requirements": []}'::jsonb"#;

struct Round {
    label: &'static str,
    measured: Measured,
    /// pgbench calling the build's own `ledger.transfer` with what the component sends it.
    sql: Measured,
    /// CPU per request sent (warm-up included) during the HTTP run.
    cpu: CpuSplit,
}

/// Where a request's CPU goes: the runtime (Spin's process tree; zero for the host, which
/// runs in this process), this process (the load generator, and the host when it serves)
/// and Postgres (the postmaster's process tree), in ms per request.
#[derive(Clone, Copy)]
struct CpuSplit {
    runtime: f64,
    this_process: f64,
    postgres: f64,
}

impl CpuSplit {
    fn now(platform: &Platform, server: &Server) -> [Duration; 3] {
        [server.process_cpu(), cpu::own().0, platform.postmaster().map(cpu::tree_cpu).unwrap_or_default()]
    }

    fn per_request(before: [Duration; 3], after: [Duration; 3], requests: usize) -> Self {
        let ms = |i: usize| (after[i] - before[i]).as_secs_f64() * 1e3 / requests.max(1) as f64;
        Self { runtime: ms(0), this_process: ms(1), postgres: ms(2) }
    }
}

pub async fn run(seconds: u64, rounds: u32, runtime: Runtime) -> anyhow::Result<()> {
    let platform = Platform::start(&[]).await?;
    let db = postgres::connect(&platform.database_url).await?;
    seed(&db).await?;
    db.batch_execute("VACUUM ANALYZE").await?;
    let shipped = platform.serve(runtime).await?;
    let allow_all_build = Build {
        manifest: paths::repo_root().join("spin.toml"),
        component_sources: paths::COMPONENTS.iter().map(|c| ((*c).to_owned(), paths::component(c))).collect(),
        dependency_sources: paths::policy_slot_sources()
            .into_iter()
            .map(|(slot, shipped)| {
                let allow_all =
                    if slot.1 == paths::COMPATIBILITY_SLOT { shipped } else { paths::policy("policy-misbehaving") };
                (slot, allow_all)
            })
            .collect(),
        instance_flags: spin::instance_flags(),
    };
    let allow_all = platform.serve_build(runtime, allow_all_build, &[]).await?;
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    println!(
        "# policies: POST /transfers under {}, {WALLETS} wallets, 32 clients, uniform; {rounds} rounds of {seconds} s per build \
         after {} s of warm-up, alternating",
        shipped.name,
        WARMUP.as_secs()
    );
    let duration = Duration::from_secs(seconds);
    // The same SQL as each build sends, without HTTP and Spin.
    let shipped_sql = pgbench_script(false, Sql::Bare);
    let allow_all_sql = shipped_sql.replace(STANDARD_TRANSFER_TERMS, ALLOW_ALL_TERMS);
    ensure!(allow_all_sql != shipped_sql, "the allow-all call could not be derived from {shipped_sql}");
    // A first pass of each, unmeasured: the first server measured otherwise meets a cold cache.
    for server in [&shipped, &allow_all] {
        http_run(server, tokens.clone(), Workload::Transfers { hot: false }, WARMUP, Duration::from_secs(5)).await?;
    }
    let mut results = Vec::new();
    for round in 1..=rounds {
        let order: [(&'static str, &Server, &String); 2] = if round % 2 == 1 {
            [("shipped", &shipped, &shipped_sql), ("allow-all", &allow_all, &allow_all_sql)]
        } else {
            [("allow-all", &allow_all, &allow_all_sql), ("shipped", &shipped, &shipped_sql)]
        };
        for (label, server, script) in order {
            let sql = pgbench_run(&platform, &format!("{label}-{round}"), script, &platform.database_url, duration)?;
            let before = CpuSplit::now(&platform, server);
            let measured = http_run(server, tokens.clone(), Workload::Transfers { hot: false }, WARMUP, duration).await?;
            let cpu = CpuSplit::per_request(before, CpuSplit::now(&platform, server), measured.sent);
            let failed: usize = measured.outcomes.iter().filter(|(status, _)| **status != 201).map(|(_, n)| n).sum();
            ensure!(failed == 0, "{label}: {failed} transfers were not 201: {:?}", measured.outcomes);
            println!(
                "round {round} {label:>9}: POST /transfers {:>7.1}/s, p50 {:.1} ms, p99 {:.1} ms; pgbench ledger.transfer {:>7.1}/s; \
                 CPU per request: runtime {:.3} ms, this process {:.3} ms, Postgres {:.3} ms",
                measured.per_sec, measured.p50_ms, measured.p99_ms, sql.per_sec, cpu.runtime, cpu.this_process, cpu.postgres
            );
            results.push(Round { label, measured, sql, cpu });
        }
    }
    let broken: i64 = db.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
    ensure!(broken == 0, "the books do not balance after the run");
    let ratios = |value: fn(&Round) -> f64| {
        let mut ratios: Vec<f64> = results
            .chunks(2)
            .map(|pair| {
                let by = |label: &str| pair.iter().find(|r| r.label == label).map(value).unwrap_or(f64::NAN);
                by("shipped") / by("allow-all")
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    };
    let median = |label: &str, value: fn(&Round) -> f64| {
        let mut values: Vec<f64> = results.iter().filter(|r| r.label == label).map(value).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "\n| build | POST /transfers/s (median) | p99 ms (median) | pgbench ledger.transfer/s (median) | CPU per request (median): \
         runtime / this process / Postgres |\n|---|---|---|---|---|"
    );
    for label in ["allow-all", "shipped"] {
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.3} / {:.3} / {:.3} ms |",
            median(label, |r| r.measured.per_sec),
            median(label, |r| r.measured.p99_ms),
            median(label, |r| r.sql.per_sec),
            median(label, |r| r.cpu.runtime),
            median(label, |r| r.cpu.this_process),
            median(label, |r| r.cpu.postgres)
        );
    }
    for (what, ratios) in [("POST /transfers", ratios(|r| r.measured.per_sec)), ("pgbench ledger.transfer", ratios(|r| r.sql.per_sec))] {
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!("{what}: shipped / allow-all per round {} — median {:.3}", shown.join(", "), ratios[ratios.len() / 2]);
    }
    Ok(())
}
