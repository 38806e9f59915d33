//! The bridge's one way to open a Postgres connection, and optionally a stream of the
//! connection's LISTEN notifications.
//!
//! `sslmode` reads as libpq's (`wasmpay_dburl`): `disable` is plaintext; `require` is TLS
//! without checking the server's certificate; `verify-ca` checks it was signed by a trusted
//! CA; `verify-full`, or no `sslmode`, checks that and the host name too; `prefer` and
//! `allow` are refused, as they may fall back to plaintext without saying so. The trusted
//! CAs are those of `DATABASE_CA_FILE` (PEM, several allowed: a cloud's regional bundle)
//! when it is set, else the system's.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures::StreamExt;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Notification};
use tokio_postgres_rustls::MakeRustlsConnect;
use wasmpay_dburl::{DatabaseUrl, Tls};

use crate::config::DatabaseArgs;

/// Where and how the bridge connects, checked once at start-up.
#[derive(Clone)]
pub struct Database {
    config: Config,
    /// None: plaintext (`sslmode=disable`).
    tls: Option<MakeRustlsConnect>,
    /// What to tell an operator whose connection fails its TLS checks.
    trusted: String,
}

impl Database {
    pub fn new(args: &DatabaseArgs) -> anyhow::Result<Self> {
        let url = DatabaseUrl::parse(&args.database_url).context("DATABASE_URL")?;
        if url.tls() == Tls::Disable {
            // A plaintext connection reads no CA (DATABASE_CA_FILE may be set for another).
            let config = url.with_sslmode("disable").parse().context("DATABASE_URL is not a valid connection string")?;
            return Ok(Self { config, tls: None, trusted: String::new() });
        }
        let config: Config = url.with_sslmode("require").parse().context("DATABASE_URL is not a valid connection string")?;
        let mut roots = rustls::RootCertStore::empty();
        let trusted = match &args.database_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("cannot read DATABASE_CA_FILE {}", path.display()))?;
                let mut found = 0;
                for certificate in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let certificate = certificate.with_context(|| format!("DATABASE_CA_FILE {} holds an unreadable certificate", path.display()))?;
                    roots.add(certificate).with_context(|| format!("DATABASE_CA_FILE {} holds a certificate rustls refuses", path.display()))?;
                    found += 1;
                }
                if found == 0 {
                    bail!("DATABASE_CA_FILE {} holds no PEM certificate", path.display());
                }
                format!("the CA certificates of DATABASE_CA_FILE ({})", path.display())
            }
            None => {
                for certificate in rustls_native_certs::load_native_certs().certs {
                    // A certificate the system store holds but rustls cannot parse is skipped.
                    let _ = roots.add(certificate);
                }
                "the system's CA certificates (set DATABASE_CA_FILE to the CA that signed the server's certificate)".to_owned()
            }
        };
        let verified = rustls::ClientConfig::builder().with_root_certificates(roots.clone()).with_no_client_auth();
        let client = match url.tls() {
            Tls::VerifyFull => verified,
            Tls::VerifyCa => {
                let chain = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots)).build()?;
                dangerous(verified, Arc::new(AnyName(chain)))
            }
            Tls::Require => {
                let provider = verified.crypto_provider().clone();
                dangerous(verified, Arc::new(Unchecked(provider)))
            }
            Tls::Disable => unreachable!("handled above"),
        };
        Ok(Self { config, tls: Some(MakeRustlsConnect::new(client)), trusted })
    }

    async fn open(&self, notifications: Option<mpsc::UnboundedSender<Notification>>) -> anyhow::Result<Client> {
        let connected = match &self.tls {
            None => self.config.connect(NoTls).await.map(|(client, connection)| drive(client, connection, notifications)),
            Some(tls) => self.config.connect(tls.clone()).await.map(|(client, connection)| drive(client, connection, notifications)),
        };
        connected.map_err(|e| {
            let e = anyhow::Error::new(e);
            // The whole chain: the TLS library's reason is below tokio-postgres's message.
            let message = format!("{e:#}");
            let hint = if message.contains("certificate") {
                format!(" (the server's certificate was checked against {}, as DATABASE_URL's sslmode asks)", self.trusted)
            } else if self.tls.is_some() && message.contains("TLS") {
                " (DATABASE_URL asks for TLS; say sslmode=disable for a server that has none)".to_owned()
            } else {
                String::new()
            };
            e.context(format!("cannot connect to Postgres{hint}"))
        })
    }
}

/// Connects; the connection is driven on a background task.
/// Whether the database is a Citus coordinator's (the `citus` extension is installed).
pub async fn is_distributed(client: &Client) -> anyhow::Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await
        .context("cannot tell whether the database is distributed")?;
    Ok(row.get(0))
}

pub async fn connect(database: &Database) -> anyhow::Result<Client> {
    database.open(None).await
}

/// Connects and forwards the connection's notifications; the receiver closes when the
/// connection does.
pub async fn connect_listening(database: &Database) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Notification>)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let client = database.open(Some(sender)).await?;
    Ok((client, receiver))
}

fn dangerous(mut config: rustls::ClientConfig, verifier: Arc<dyn ServerCertVerifier>) -> rustls::ClientConfig {
    config.dangerous().set_certificate_verifier(verifier);
    config
}

/// `verify-ca`: the chain must reach a trusted CA; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: encrypted, the certificate not checked (the handshake's signatures still are).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn drive<S, T>(client: Client, mut connection: Connection<S, T>, notifications: Option<mpsc::UnboundedSender<Notification>>) -> Client
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
    client
}
