//! The bridge's one way to open a Postgres connection.

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

/// Connects and drives the connection on a background task.
pub async fn connect(database_url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(database_url, NoTls)
        .await
        .context("cannot connect to Postgres")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}
