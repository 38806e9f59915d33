//! `wasmpay-bench`: the benchmarks behind BENCHMARKS.md. Build the components first
//! (`cargo xtask build`), then e.g. `cargo run -p wasmpay-bench -- login`.

mod client;
mod login;
mod platform;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Login { cost, samples } => login::run(cost, samples).await,
    }
}
