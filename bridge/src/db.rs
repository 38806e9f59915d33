//! The bridge's one way to open a Postgres connection: TLS (rustls, system roots) unless
//! the connection string says `sslmode=disable`, and optionally a stream of the
//! connection's LISTEN notifications.

use anyhow::Context;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Notification, config::SslMode};

/// Connects; the connection is driven on a background task.
pub async fn connect(database_url: &str) -> anyhow::Result<Client> {
    open(database_url, None).await
}

/// Connects and forwards the connection's notifications; the receiver closes when the
/// connection does.
pub async fn connect_listening(database_url: &str) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Notification>)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = open(database_url, Some(sender)).await?;
    Ok((client, receiver))
}

async fn open(database_url: &str, notifications: Option<mpsc::UnboundedSender<Notification>>) -> anyhow::Result<Client> {
    let config: Config = database_url.parse().context("DATABASE_URL is not a valid connection string")?;
    if config.get_ssl_mode() == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await.context("cannot connect to Postgres")?;
        drive(connection, notifications);
        Ok(client)
    } else {
        let (client, connection) = config.connect(tls()?).await.context("cannot connect to Postgres")?;
        drive(connection, notifications);
        Ok(client)
    }
}

fn tls() -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A certificate the system store holds but rustls cannot parse is skipped.
        let _ = roots.add(certificate);
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn drive<S, T>(mut connection: Connection<S, T>, notifications: Option<mpsc::UnboundedSender<Notification>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if let Some(sender) = &notifications {
                        let _ = sender.send(notification);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "postgres connection closed");
                    break;
                }
            }
        }
    });
}
