//! `bridge`: the native process beside the Spin components.

mod db;
mod migrate;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// PostgreSQL connection string of the wasmpay database.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let database_url = cli
        .database_url
        .ok_or_else(|| anyhow::anyhow!("set DATABASE_URL or pass --database-url"))?;
    match cli.command {
        Command::Migrate => {
            let mut client = db::connect(&database_url).await?;
            let applied = migrate::run(&mut client).await?;
            tracing::info!(?applied, "migrations up to date");
        }
    }
    Ok(())
}
