//! `wasmpay-bench`: the benchmarks behind BENCHMARKS.md. Build the components first
//! (`cargo xtask build`), then e.g. `cargo run -p wasmpay-bench -- login`.

mod citus;
mod client;
mod cpu;
mod holds;
mod instances;
mod login;
mod pgledger;
mod platform;
mod policies;
mod relay;
mod reuse;
mod transfers;
mod worktree;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// bcrypt inside the identity component vs native, at one cost.
    Login {
        #[arg(long, default_value_t = 12)]
        cost: u32,
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// ledger.transfer through pgbench and POST /transfers under Spin, on PostgreSQL and on a three-node Citus
    /// cluster (wallets on one shard, and on two workers), in alternating rounds, with each node's CPU per transfer.
    #[command(verbatim_doc_comment)]
    Citus {
        /// Measured seconds per round and case.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// POST /transfers at 32 clients over 10,000 wallets, uniform and with one hot wallet, and GET /transfers/health,
    /// under real Spin (`spin up`, when the Spin CLI is found) and under wasmpay-host, against pgbench calling
    /// ledger.transfer on the same database in the same run.
    ///
    /// By default everything runs here: a PostgreSQL cluster (migrated, seeded), then `spin up` and the host on it.
    /// With --target-url, the load goes to a server already running instead (e.g. `cargo xtask up`): give it
    /// --database-url, the database that server uses (the bench seeds 10,000 users and wallets there, in schema
    /// `bench` and as user<N>@bench.example, and runs pgbench on it), and --jwt-secret, that server's jwt_secret.
    #[command(verbatim_doc_comment)]
    Transfers {
        /// Measured seconds per run (HTTP runs after 3 s of warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Postgres on core 0, everything else (Spin, host, load generator, pgbench) on core 1.
        #[arg(long, conflicts_with = "target_url")]
        pin: bool,
        /// Send the HTTP load to this server (http://host:port) instead of starting Spin and wasmpay-host.
        #[arg(long, value_name = "URL", requires = "database_url")]
        target_url: Option<String>,
        /// The (migrated) database the --target-url server uses: seeded and driven by pgbench.
        #[arg(long, value_name = "URL", requires = "target_url")]
        database_url: Option<String>,
        /// The jwt_secret of the --target-url server (the bench signs its access tokens with it).
        #[arg(long, value_name = "SECRET", requires = "target_url")]
        jwt_secret: Option<String>,
    },
    /// POST /transfers under Spin with the shipped policy plugins vs plugins that allow everything (no fee, no
    /// requirement), both this checkout, on one database, in alternating rounds.
    Policies {
        /// Measured seconds per round and build.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Serve both builds with wasmpay-host instead of `spin up`.
        #[arg(long)]
        host: bool,
    },
    /// Payments under Spin: POST /transfers vs POST /holds then POST /holds/{id}/capture, on one server and
    /// database, in alternating rounds.
    Holds {
        /// Measured seconds per round and flow.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Serve with wasmpay-host instead of `spin up`.
        #[arg(long)]
        host: bool,
    },
    /// POST /transfers under `spin up` for --requests requests, with wasmpay's instance flags and with one instance
    /// reused for the whole run, sampling the resident memory of Spin's processes: does memory grow with reuse?
    Reuse {
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// GET /transfers/health instead of POST /transfers.
        #[arg(long)]
        health: bool,
        /// Serve with wasmpay-host instead of `spin up`.
        #[arg(long)]
        host: bool,
    },
    /// POST /transfers (uniform, or --hot) or GET /transfers/health under `spin up` (or --host) with each
    /// configuration: spin up flags and variables, as
    /// "--max-instance-reuse-count 128 db_statement_timeout_ms=0 component:transfers=path/to/other.wasm".
    Instances {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// GET /transfers/health instead of POST /transfers.
        #[arg(long, conflicts_with = "hot")]
        health: bool,
        /// Every transfer touches one wallet.
        #[arg(long)]
        hot: bool,
        /// Serve with wasmpay-host instead of `spin up`.
        #[arg(long)]
        host: bool,
        configurations: Vec<String>,
    },
    /// bridge relay draining a 50,000-event backlog vs a raw rdkafka producer, and the
    /// commit-to-publish lag at a steady rate.
    Relay {
        /// Events per second of the steady phase.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Seconds of the steady phase.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The relay's RELAY_BATCH_SIZE.
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Backlog drains measured, each against its own raw-producer run.
        #[arg(long, default_value_t = 5)]
        rounds: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Measure Spin and the host as users run them: with RUST_BACKTRACE set (as it is on
    // some development machines), Spin captures a backtrace for an error it makes on every
    // request, 3 % of its CPU in a profile of `POST /transfers`. Spin inherits this
    // environment.
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::remove_var("RUST_BACKTRACE");
        std::env::remove_var("RUST_LIB_BACKTRACE");
    }
    if let Bench::Transfers { pin: true, .. } = cli.bench {
        // Before the runtime starts its threads, so they inherit the core.
        cpu::pin_self(1)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.bench {
            Bench::Login { cost, samples } => login::run(cost, samples).await,
            Bench::Citus { seconds, rounds } => citus::run(seconds, rounds).await,
            Bench::Transfers {
                seconds,
                pin,
                target_url,
                database_url,
                jwt_secret,
            } => {
                let options = transfers::Options {
                    seconds,
                    pin,
                    target_url,
                    database_url,
                    jwt_secret,
                };
                transfers::run(options).await
            }
            Bench::Policies { seconds, rounds, host } => {
                let runtime = if host { platform::Runtime::Host } else { platform::Runtime::Spin };
                policies::run(seconds, rounds, runtime).await
            }
            Bench::Holds { seconds, rounds, host } => {
                holds::run(seconds, rounds, if host { platform::Runtime::Host } else { platform::Runtime::Spin }).await
            }
            Bench::Relay { rate, seconds, batch_size, rounds } => relay::run(rate, seconds, batch_size, rounds).await,
            Bench::Reuse { requests, health, host } => {
                reuse::run(requests, health, if host { platform::Runtime::Host } else { platform::Runtime::Spin }).await
            }
            Bench::Instances { seconds, health, hot, host, configurations } => {
                let runtime = if host { platform::Runtime::Host } else { platform::Runtime::Spin };
                let workload = if health { transfers::Workload::Health } else { transfers::Workload::Transfers { hot } };
                instances::run(seconds, workload, runtime, &configurations).await
            }
        }
    })
}
