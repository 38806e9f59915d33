//! `bridge`: the native process beside the Spin components.
//!
//! - `migrate`: apply the database migrations and exit.
//! - `relay`: publish the outbox to Kafka (one active relay per database, which also
//!   marks expired holds expired).
//! - `notify`: turn events from Kafka into Novu notifications.
//! - `run`: migrate, then relay and notify in one process.
//! - `healthcheck`: exit 0 when the bridge at `OPS_LISTEN` answers `/healthz` (the
//!   container image's HEALTHCHECK: no curl needed).

mod config;
mod db;
mod kafka;
mod metrics;
mod migrate;
mod notify;
mod ops;
mod relay;
mod sweeper;

use std::{io::IsTerminal, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{DatabaseArgs, KafkaArgs, NotifyArgs, OpsArgs, RelayArgs},
    metrics::Metrics,
};

#[derive(Parser)]
#[command(version, about = "wasmpay's bridge: migrations, the outbox relay to Kafka and the Novu notifier")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Publish the transactional outbox to Kafka (the leader also marks expired holds).
    Relay {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// Send Novu notifications for events read from Kafka.
    Notify {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        notify: NotifyArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
    /// Exit 0 when the bridge serving `OPS_LISTEN` is healthy, 1 otherwise.
    Healthcheck {
        /// Where the bridge serves /healthz (0.0.0.0 means this host).
        #[arg(long, env = "OPS_LISTEN", default_value = "127.0.0.1:9464")]
        ops_listen: std::net::SocketAddr,
    },
    /// Migrate, then relay and notify.
    Run {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
        #[command(flatten)]
        relay: RelayArgs,
        #[command(flatten)]
        notify: NotifyArgs,
        #[command(flatten)]
        ops: OpsArgs,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn,tokio_postgres=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let json_logs = match &cli.command {
        Command::Relay { ops, .. } | Command::Notify { ops, .. } | Command::Run { ops, .. } => ops.log_format == "json",
        Command::Migrate { .. } | Command::Healthcheck { .. } => false,
    };
    init_logging(json_logs);
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "bridge failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    // Wrong Kafka settings stop the bridge before it does anything.
    if let Command::Relay { kafka, .. } | Command::Notify { kafka, .. } | Command::Run { kafka, .. } = &command {
        kafka.client_settings()?;
    }
    let (database, kafka, relay, notify, ops) = match command {
        Command::Migrate { database } => {
            migrate(&db::Database::new(&database)?).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Healthcheck { ops_listen } => return Ok(ops::healthcheck(ops_listen)),
        Command::Relay { database, kafka, relay, ops } => (Some(db::Database::new(&database)?), kafka, Some(relay), None, ops),
        Command::Notify { kafka, notify, ops } => (None, kafka, None, Some(notify), ops),
        Command::Run { database, kafka, relay, notify, ops } => {
            let database = db::Database::new(&database)?;
            migrate(&database).await?;
            (Some(database), kafka, Some(relay), Some(notify), ops)
        }
    };
    let metrics = Arc::new(Metrics::new());
    metrics.expect(relay.is_some(), notify.is_some());
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(ops::serve(ops.ops_listen, metrics.clone(), shutdown.clone()));
    if let (Some(database), Some(relay)) = (database, relay) {
        let (kafka, metrics, shutdown) = (kafka.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move { relay::run(&database, &kafka, &relay, metrics, shutdown).await });
    }
    if let Some(notify) = notify {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tasks.spawn(async move { notify::run(&kafka, &notify, metrics, shutdown).await });
    }
    // The first part to fail, or a signal, stops the others.
    let mut failure = None;
    tokio::select! {
        () = signalled() => tracing::info!("stopping: finishing the current batch"),
        Some(result) = tasks.join_next() => {
            failure = outcome(result);
            tracing::warn!("a part of the bridge stopped; stopping the rest");
        }
    }
    shutdown.cancel();
    let grace = Duration::from_secs(ops.shutdown_timeout_secs);
    let drained = tokio::time::timeout(grace, async {
        while let Some(result) = tasks.join_next().await {
            if let Some(e) = outcome(result) {
                failure.get_or_insert(e);
            }
        }
    })
    .await;
    match (drained, failure) {
        (Err(_), _) => {
            tracing::error!(grace_secs = ops.shutdown_timeout_secs, "did not stop within the shutdown timeout");
            Ok(ExitCode::FAILURE)
        }
        (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => {
            tracing::info!("stopped");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn outcome(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> Option<anyhow::Error> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow::Error::new(e).context("a bridge task panicked")),
    }
}

async fn migrate(database: &db::Database) -> anyhow::Result<()> {
    let mut client = db::connect(database).await?;
    let applied = migrate::run(&mut client).await?;
    tracing::info!(?applied, "migrations up to date");
    Ok(())
}

/// SIGTERM (orchestrators) or SIGINT (Ctrl-C).
async fn signalled() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
