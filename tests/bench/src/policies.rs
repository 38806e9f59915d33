//! `wasmpay-bench policies`: what moving the rules into policy plugins costs `POST /transfers`
//! under Spin. Two builds serve the same load in the same run, in alternating rounds, each
//! on its own database of one cluster, seeded alike:
//!
//! - plugins: this checkout — transfers.wasm composed with the standard plugin and the idle
//!   fees and velocity plugins in its three slots (the default manifest), migrations to V9;
//! - built in: the last commit whose engine checked the rules itself
//!   ([`BUILTIN_RULES_COMMIT`]), its transfers.wasm built in a git worktree and its own
//!   migrations (to V8) applied to the second database.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use wasmpay_host::{
    dependencies::Dependency,
    runtime::{ComponentRuntime, ComponentSpec},
    variables::{ComponentVariables, Resolver},
};
use wasmpay_test_support::{paths, postgres};

use crate::{
    cpu,
    platform::{Build, JWT_SECRET, Platform, Runtime, Server},
    transfers::{Measured, STANDARD_TRANSFER_TERMS, Sql, WALLETS, Workload, http_run, pgbench_run, pgbench_script, seed, token},
};

/// The last commit before policy plugins: limits and the verified-e-mail rule in the engine.
pub const BUILTIN_RULES_COMMIT: &str = "ac3247e";
const BUILTIN_DATABASE: &str = "builtin";
const WARMUP: Duration = Duration::from_secs(3);

/// The engine of `BUILTIN_RULES_COMMIT`, built for wasm32-wasip2 in a worktree (cargo's
/// output kept in `<target>/bench-builtin-rules`, so a second run compiles nothing), and the
/// worktree's manifest and migrations, copied out before the worktree goes.
struct BuiltinBuild {
    transfers: std::path::PathBuf,
    manifest: std::path::PathBuf,
    migrations: Vec<(u32, String)>,
}

fn build_builtin(scratch: &Path) -> anyhow::Result<BuiltinBuild> {
    let worktree = scratch.join("builtin-rules");
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("git").args(args).current_dir(paths::repo_root()).status().context("cannot run git")?;
        ensure!(status.success(), "git {} failed", args.join(" "));
        Ok(())
    };
    let worktree_arg = worktree.display().to_string();
    git(&["worktree", "add", "--detach", &worktree_arg, BUILTIN_RULES_COMMIT])?;
    let built = (|| {
        let target = paths::target_dir().join("bench-builtin-rules");
        println!("building transfers.wasm of {BUILTIN_RULES_COMMIT} (rules built in) into {}", target.display());
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--locked", "--target", "wasm32-wasip2", "--release", "-p", "transfers"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&worktree)
            .status()
            .context("cannot run cargo")?;
        ensure!(status.success(), "building the built-in-rules engine failed");
        let transfers = scratch.join("transfers-builtin.wasm");
        std::fs::copy(target.join("wasm32-wasip2/release/transfers.wasm"), &transfers)?;
        let manifest = scratch.join("spin-builtin.toml");
        std::fs::copy(worktree.join("spin.toml"), &manifest)?;
        let mut migrations = Vec::new();
        for entry in std::fs::read_dir(worktree.join("migrations"))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let version: u32 = name
                .strip_prefix('V')
                .and_then(|rest| rest.split_once("__"))
                .and_then(|(v, _)| v.parse().ok())
                .with_context(|| format!("{name} is not V<n>__name.sql"))?;
            migrations.push((version, std::fs::read_to_string(&path)?));
        }
        migrations.sort_by_key(|(version, _)| *version);
        anyhow::Ok(BuiltinBuild { transfers, manifest, migrations })
    })();
    git(&["worktree", "remove", "--force", &worktree_arg])?;
    built
}

/// Instantiations per build for the per-request instantiation figure.
const INSTANTIATIONS: u32 = 5_000;

/// What instantiating transfers for a request (and dropping it) costs, with and without its
/// plugins, on wasmtime configured as Spin configures it (wasmpay-host's engine): a fresh
/// store and instance per request, as both runtimes do. Microseconds per request.
async fn instantiation_micros(source: &Path, dependencies: &[Dependency]) -> anyhow::Result<f64> {
    let variables = ComponentVariables {
        component_id: "transfers".into(),
        templates: BTreeMap::new(),
        resolver: Arc::new(Resolver::new(BTreeMap::new(), Vec::new())?),
    };
    let runtime = ComponentRuntime::load(ComponentSpec {
        spin_version: wasmpay_host::SpinVersion::default(),
        source,
        dependencies,
        variables,
        allowed_host_templates: Vec::new(),
        environment: Vec::new(),
        reuse: wasmpay_host::InstanceReuse::default(),
    })?;
    let started = Instant::now();
    for _ in 0..INSTANTIATIONS {
        runtime.instantiate_once().await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(INSTANTIATIONS))
}

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
    let builtin = build_builtin(platform.scratch())?;
    let cluster = platform.cluster.as_ref().context("the platform starts its own cluster")?;
    postgres::connect(&cluster.url("postgres")).await?.batch_execute(&format!("CREATE DATABASE {BUILTIN_DATABASE}")).await?;
    let builtin_url = cluster.url(BUILTIN_DATABASE);
    let builtin_db = postgres::connect(&builtin_url).await?;
    for (version, sql) in &builtin.migrations {
        builtin_db.batch_execute(sql).await.with_context(|| format!("migration V{version} of {BUILTIN_RULES_COMMIT}"))?;
    }
    // The manifest's slots, with the files this build made.
    let sources = paths::policy_slot_sources();
    let mut manifest = wasmpay_host::manifest::Manifest::load(&paths::repo_root().join("spin.toml"))?;
    let mut slots = manifest.components.remove("transfers").context("spin.toml has no transfers")?.dependencies;
    for slot in &mut slots {
        slot.source = sources[&("transfers".to_owned(), slot.key.clone())].clone();
    }
    let builtin_micros = instantiation_micros(&builtin.transfers, &[]).await?;
    let plugins_micros = instantiation_micros(&paths::component("transfers"), &slots).await?;
    println!(
        "instantiating transfers for a request (and dropping it), {INSTANTIATIONS} times on one core: built in {builtin_micros:.1} µs, \
         with its three plugins {plugins_micros:.1} µs"
    );
    let plugins_db = postgres::connect(&platform.database_url).await?;
    for db in [&plugins_db, &builtin_db] {
        seed(db).await?;
        db.batch_execute("VACUUM ANALYZE").await?;
    }

    let plugins = platform.serve(runtime).await?;
    let mut builtin_sources: BTreeMap<String, _> = paths::COMPONENTS.iter().map(|c| ((*c).to_owned(), paths::component(c))).collect();
    builtin_sources.insert("transfers".into(), builtin.transfers.clone());
    let builtin_build = Build {
        manifest: builtin.manifest.clone(),
        component_sources: builtin_sources,
        dependency_sources: BTreeMap::new(),
    };
    let builtin_server = platform.serve_build(runtime, builtin_build, &[("db_url", builtin_url.clone())]).await?;
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    println!(
        "# policies: POST /transfers under {}, {WALLETS} wallets, 32 clients, uniform; {rounds} rounds of {seconds} s per build \
         after {} s of warm-up, alternating",
        plugins.name,
        WARMUP.as_secs()
    );
    let duration = Duration::from_secs(seconds);
    // The same SQL as the component sends, without HTTP and Spin: the plugins' build passes
    // the standard policy's terms, the built-in one calls the function without them.
    let plugins_sql = pgbench_script(false, Sql::Bare);
    let builtin_sql = plugins_sql.replace(&format!(", {STANDARD_TRANSFER_TERMS})"), ")");
    ensure!(builtin_sql != plugins_sql, "the built-in call could not be derived from {plugins_sql}");
    // A first pass of each, unmeasured: the first server measured otherwise meets a cold cache.
    for server in [&plugins, &builtin_server] {
        http_run(server, tokens.clone(), Workload::Transfers { hot: false }, WARMUP, Duration::from_secs(5)).await?;
    }
    let mut results = Vec::new();
    for round in 1..=rounds {
        let order: [(&'static str, &Server); 2] = if round % 2 == 1 {
            [("plugins", &plugins), ("built in", &builtin_server)]
        } else {
            [("built in", &builtin_server), ("plugins", &plugins)]
        };
        for (label, server) in order {
            let (script, url) = if label == "plugins" { (&plugins_sql, &platform.database_url) } else { (&builtin_sql, &builtin_url) };
            let sql = pgbench_run(&platform, &format!("{}-{round}", label.replace(' ', "-")), script, url, duration)?;
            let before = CpuSplit::now(&platform, server);
            let measured = http_run(server, tokens.clone(), Workload::Transfers { hot: false }, WARMUP, duration).await?;
            let cpu = CpuSplit::per_request(before, CpuSplit::now(&platform, server), measured.sent);
            let failed: usize = measured.outcomes.iter().filter(|(status, _)| **status != 201).map(|(_, n)| n).sum();
            ensure!(failed == 0, "{label}: {failed} transfers were not 201: {:?}", measured.outcomes);
            println!(
                "round {round} {label:>8}: POST /transfers {:>7.1}/s, p50 {:.1} ms, p99 {:.1} ms; pgbench ledger.transfer {:>7.1}/s; \
                 CPU per request: runtime {:.3} ms, this process {:.3} ms, Postgres {:.3} ms",
                measured.per_sec, measured.p50_ms, measured.p99_ms, sql.per_sec, cpu.runtime, cpu.this_process, cpu.postgres
            );
            results.push(Round { label, measured, sql, cpu });
        }
    }
    for db in [&plugins_db, &builtin_db] {
        let broken: i64 = db.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
        ensure!(broken == 0, "the books do not balance after the run");
    }
    let ratios = |value: fn(&Round) -> f64| {
        let mut ratios: Vec<f64> = results
            .chunks(2)
            .map(|pair| {
                let by = |label: &str| pair.iter().find(|r| r.label == label).map(value).unwrap_or(f64::NAN);
                by("plugins") / by("built in")
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
    for label in ["built in", "plugins"] {
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
        println!("{what}: plugins / built in per round {} — median {:.3}", shown.join(", "), ratios[ratios.len() / 2]);
    }
    Ok(())
}
