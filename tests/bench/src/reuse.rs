//! `wasmpay-bench reuse`: whether memory grows when one instance serves very many requests.
//! `POST /transfers` (uniform) at 32 clients under `spin up` with instance reuse raised to
//! `--requests` per instance (so instances live for the whole run instead of 128 requests),
//! sampling the resident memory of Spin's process tree every few seconds, beside the same
//! load with wasmpay's own settings.

use std::{sync::Arc, time::Duration};

use wasmpay_test_support::{paths, postgres, spin};

use crate::{
    cpu,
    platform::{Build, JWT_SECRET, Platform, Runtime},
    transfers::{WALLETS, Workload, http_run, seed, token},
};

/// Seconds per load chunk between memory samples.
const CHUNK: Duration = Duration::from_secs(5);

pub async fn run(requests: usize, health: bool, runtime: Runtime) -> anyhow::Result<()> {
    let workload = if health { Workload::Health } else { Workload::Transfers { hot: false } };
    let platform = Platform::start(&[("max_transfer_amount", "*=1000000")]).await?;
    seed(&postgres::connect(&platform.database_url).await?).await?;
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    let settings = [
        ("wasmpay's flags", spin::instance_flags()),
        (
            "one instance reused for the whole run",
            vec![
                ("--max-instance-reuse-count".to_owned(), requests.to_string()),
                ("--max-instance-concurrent-reuse-count".to_owned(), "32".to_owned()),
                ("--request-timeout".to_owned(), "30s".to_owned()),
            ],
        ),
    ];
    for (label, flags) in settings {
        let build = Build {
            manifest: paths::repo_root().join("spin.toml"),
            component_sources: paths::COMPONENTS.iter().map(|c| ((*c).to_owned(), paths::component(c))).collect(),
            dependency_sources: paths::policy_slot_sources(),
            instance_flags: flags.clone(),
        };
        let server = platform.serve_build(runtime, build, &[]).await?;
        // The host runs in this process (its figure includes the load generator).
        let pid = server.pid().unwrap_or_else(|| i32::try_from(std::process::id()).unwrap_or_default());
        println!("\n## {label}: {}", spin::instance_args(&flags).join(" "));
        println!("{:>10} {:>12} {:>10}", "requests", "RSS MiB", "5xx");
        let mut done = 0;
        let mut failed = 0;
        println!("{done:>10} {:>12.1} {failed:>10}", resident_mib(pid));
        while done < requests {
            let measured = http_run(&server, tokens.clone(), workload, Duration::ZERO, CHUNK).await?;
            done += measured.requests;
            failed += measured.outcomes.iter().filter(|(status, _)| **status >= 500).map(|(_, n)| n).sum::<usize>();
            println!("{done:>10} {:>12.1} {failed:>10}", resident_mib(pid));
        }
    }
    Ok(())
}

/// Resident memory of a process and its children, in MiB.
fn resident_mib(root: i32) -> f64 {
    cpu::tree(root)
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}
