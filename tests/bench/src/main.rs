//! `wasmpay-bench`: the benchmarks behind BENCHMARKS.md. Build the components first
//! (`cargo xtask build`), then e.g. `cargo run -p wasmpay-bench -- login`.

mod client;
mod cpu;
mod login;
mod platform;
mod relay;
mod transfers;

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
    /// POST /transfers at 32 clients over 10,000 wallets vs pgbench on ledger.transfer.
    Transfers {
        /// Measured seconds per run (after 3 s of warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Postgres on core 0, everything else (host, load generator, pgbench) on core 1.
        #[arg(long)]
        pin: bool,
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Bench::Transfers { pin: true, .. } = cli.bench {
        // Before the runtime starts its threads, so they inherit the core.
        cpu::pin_self(1)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.bench {
            Bench::Login { cost, samples } => login::run(cost, samples).await,
            Bench::Transfers { seconds, pin } => transfers::run(seconds, pin).await,
            Bench::Relay { rate, seconds, batch_size } => relay::run(rate, seconds, batch_size).await,
        }
    })
}
