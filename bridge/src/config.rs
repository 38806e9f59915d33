//! Every setting of the bridge: a flag, an environment variable and a default, all listed
//! by `bridge <command> --help` and in the README.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use wasmpay_sealed::Key;

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string of the wasmpay database. sslmode reads as libpq's:
    /// disable (plaintext), require (TLS, certificate not checked), verify-ca, verify-full
    /// (the default: TLS, certificate and host name checked); prefer and allow are refused.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// CA certificates (PEM file, several allowed) that verify the database's certificate;
    /// without it, the system's CA store.
    #[arg(long, env = "DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Prefix of every topic: <prefix>.identity, <prefix>.accounts, <prefix>.ledger,
    /// <prefix>.notifications.dlq.
    #[arg(long, env = "TOPIC_PREFIX", default_value = "wasmpay")]
    pub topic_prefix: String,
    /// Partitions of each topic the bridge creates when it is missing.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    /// Replication factor of the topics the bridge creates.
    #[arg(long, env = "TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
    /// How the bridge talks to the brokers: plaintext, ssl (TLS), sasl_plaintext or
    /// sasl_ssl (SASL over TLS, what managed Kafka services ask for).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", default_value = "plaintext",
          value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    pub kafka_security_protocol: String,
    /// CA certificates (PEM file) that verify the brokers' certificates; without it, the
    /// system's CA store (TLS protocols only).
    #[arg(long, env = "KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// Client certificate (PEM file) for mutual TLS, with --kafka-key-file.
    #[arg(long, env = "KAFKA_CERT_FILE")]
    pub kafka_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM file).
    #[arg(long, env = "KAFKA_KEY_FILE")]
    pub kafka_key_file: Option<PathBuf>,
    /// Password of that private key, if it is encrypted.
    #[arg(long, env = "KAFKA_KEY_PASSWORD", hide_env_values = true)]
    pub kafka_key_password: Option<Secret>,
    /// SASL mechanism (sasl_plaintext and sasl_ssl): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (never logged).
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,
    /// Further librdkafka properties for every Kafka client, `key=value,…`, for what the
    /// flags do not cover (librdkafka's CONFIGURATION.md lists them). Properties the flags
    /// or the bridge's delivery guarantees set are refused here.
    #[arg(long, env = "KAFKA_PROPERTIES", default_value = "", hide_env_values = true)]
    pub kafka_properties: String,
}

/// A secret from a flag or the environment: `Debug` (logs, errors) never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret(value.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// librdkafka properties that `KAFKA_PROPERTIES` may not set: the flags own the first ones,
/// the bridge's delivery and commit guarantees the rest (crate::kafka sets them).
pub const OWNED_PROPERTIES: [&str; 25] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "security.protocol",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "message.timeout.ms",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "linger.ms",
    "queue.buffering.max.messages",
    "session.timeout.ms",
];

impl KafkaArgs {
    /// What every Kafka client gets — brokers, security, the pass-through properties — or
    /// the first setting that is wrong, by its environment variable.
    pub fn client_settings(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut settings = vec![
            ("bootstrap.servers".to_owned(), self.kafka_brokers.clone()),
            ("client.id".to_owned(), "wasmpay-bridge".to_owned()),
            ("security.protocol".to_owned(), self.kafka_security_protocol.clone()),
        ];
        let tls = self.kafka_security_protocol.ends_with("ssl");
        let sasl = self.kafka_security_protocol.starts_with("sasl_");
        let files = [
            ("KAFKA_CA_FILE", "ssl.ca.location", &self.kafka_ca_file),
            ("KAFKA_CERT_FILE", "ssl.certificate.location", &self.kafka_cert_file),
            ("KAFKA_KEY_FILE", "ssl.key.location", &self.kafka_key_file),
        ];
        for (variable, property, file) in files {
            let Some(file) = file else { continue };
            if !tls {
                bail!("{variable} is set but KAFKA_SECURITY_PROTOCOL={} uses no TLS (ssl or sasl_ssl do)", self.kafka_security_protocol);
            }
            std::fs::File::open(file).with_context(|| format!("{variable}={} cannot be read", file.display()))?;
            settings.push((property.to_owned(), file.display().to_string()));
        }
        if self.kafka_cert_file.is_some() != self.kafka_key_file.is_some() {
            bail!("KAFKA_CERT_FILE and KAFKA_KEY_FILE go together (mutual TLS needs both)");
        }
        if let Some(password) = &self.kafka_key_password {
            if self.kafka_key_file.is_none() {
                bail!("KAFKA_KEY_PASSWORD is set without KAFKA_KEY_FILE");
            }
            settings.push(("ssl.key.password".to_owned(), password.expose().to_owned()));
        }
        if tls && self.kafka_ca_file.is_none() {
            // The vendored OpenSSL knows no system store of its own: librdkafka finds it.
            settings.push(("ssl.ca.location".to_owned(), "probe".to_owned()));
        }
        let sasl_given = [
            ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism.is_some()),
            ("KAFKA_SASL_USERNAME", self.kafka_sasl_username.is_some()),
            ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password.is_some()),
        ];
        for (variable, given) in sasl_given {
            if sasl && !given {
                bail!("KAFKA_SECURITY_PROTOCOL={} needs {variable}", self.kafka_security_protocol);
            }
            if !sasl && given {
                bail!("{variable} is set but KAFKA_SECURITY_PROTOCOL={} uses no SASL (sasl_ssl or sasl_plaintext do)", self.kafka_security_protocol);
            }
        }
        if let (Some(mechanism), Some(username), Some(password)) =
            (&self.kafka_sasl_mechanism, &self.kafka_sasl_username, &self.kafka_sasl_password)
        {
            settings.push(("sasl.mechanism".to_owned(), mechanism.clone()));
            settings.push(("sasl.username".to_owned(), username.clone()));
            settings.push(("sasl.password".to_owned(), password.expose().to_owned()));
        }
        for entry in self.kafka_properties.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((key, value)) = entry.split_once('=').map(|(k, v)| (k.trim(), v.trim())) else {
                bail!("KAFKA_PROPERTIES entries are key=value, got {:?}", entry.split('=').next().unwrap_or_default());
            };
            if key.is_empty() {
                bail!("KAFKA_PROPERTIES has an entry without a key");
            }
            if OWNED_PROPERTIES.contains(&key) {
                bail!("KAFKA_PROPERTIES may not set {key}: the bridge's flags or its delivery guarantees set it");
            }
            settings.push((key.to_owned(), value.to_owned()));
        }
        Ok(settings)
    }
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Most outbox rows read and published per batch.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub relay_batch_size: i64,
    /// How often a listening (idle) relay reads the outbox (milliseconds), notified or not.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 1_000)]
    pub relay_poll_interval_ms: u64,
    /// How often an idle relay reads the outbox on Citus (milliseconds), where no writer
    /// notifies it: a NOTIFY would stay on the worker that ran it.
    #[arg(long, env = "RELAY_DISTRIBUTED_POLL_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub relay_distributed_poll_ms: u64,
    /// How often a standby tries to become the leader (milliseconds).
    #[arg(long, env = "RELAY_LEADER_RETRY_MS", default_value_t = 1_000)]
    pub relay_leader_retry_ms: u64,
    /// How long the broker may take to acknowledge an event (milliseconds) before the batch
    /// is retried.
    #[arg(long, env = "RELAY_DELIVERY_TIMEOUT_MS", default_value_t = 30_000)]
    pub relay_delivery_timeout_ms: u64,
    /// Published outbox rows older than this many hours are deleted.
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 168)]
    pub outbox_retention_hours: u64,
    /// How often the leader prunes published rows and expired idempotency keys (seconds).
    #[arg(long, env = "PRUNE_INTERVAL_SECS", default_value_t = 60)]
    pub prune_interval_secs: u64,
    /// How often the leader marks holds past their expiry as expired, announcing each with
    /// a `hold.expired` event (seconds, 1 to 3600). The money of an expired hold is free from
    /// its expiry on whatever this says: it only bounds how late the event and its
    /// notification come.
    #[arg(long, env = "HOLD_SWEEP_INTERVAL_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub hold_sweep_interval_secs: u64,
}

impl RelayArgs {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.relay_poll_interval_ms)
    }

    pub fn distributed_poll(&self) -> Duration {
        Duration::from_millis(self.relay_distributed_poll_ms)
    }

    pub fn leader_retry(&self) -> Duration {
        Duration::from_millis(self.relay_leader_retry_ms)
    }

    pub fn hold_sweep_interval(&self) -> Duration {
        Duration::from_secs(self.hold_sweep_interval_secs)
    }
}

#[derive(Args, Debug, Clone)]
pub struct NotifyArgs {
    /// Novu's API base URL.
    #[arg(long, env = "NOVU_API_URL", default_value = "https://api.novu.co")]
    pub novu_api_url: String,
    /// Novu secret key. Without one, notifications are printed to stdout instead of sent.
    #[arg(long, env = "NOVU_API_KEY", hide_env_values = true)]
    pub novu_api_key: Option<String>,
    /// Keys that open secrets sealed inside events: `id=base64,…` (the components' current
    /// `event_encryption_key_id`=`event_encryption_key`, plus retired keys during rotation).
    #[arg(long, env = "EVENT_KEYS", hide_env_values = true, default_value = "")]
    pub event_keys: String,
    /// The link in verification e-mails; `{token}` is replaced by the token.
    #[arg(long, env = "VERIFICATION_URL_TEMPLATE", default_value = "http://127.0.0.1:3000/app/verify-email?token={token}")]
    pub verification_url_template: String,
    /// Novu workflow ids by notification: `transfer-sent=my-id,…` overrides the defaults
    /// (email-verification, transfer-sent, transfer-received, deposit-received,
    /// withdrawal-completed, transfer-refunded, password-changed, hold-placed,
    /// hold-captured, hold-voided, hold-expired).
    #[arg(long, env = "NOVU_WORKFLOWS", default_value = "")]
    pub novu_workflows: String,
    /// Kafka consumer group of the notifier.
    #[arg(long, env = "NOTIFY_GROUP_ID", default_value = "wasmpay-notify")]
    pub notify_group_id: String,
    /// Attempts per notification on network errors, 5xx and 429 before dead-lettering.
    #[arg(long, env = "NOTIFY_MAX_ATTEMPTS", default_value_t = 8)]
    pub notify_max_attempts: u32,
    /// First retry delay (milliseconds); it doubles per attempt, with jitter.
    #[arg(long, env = "NOTIFY_BACKOFF_BASE_MS", default_value_t = 500)]
    pub notify_backoff_base_ms: u64,
    /// Longest retry delay (milliseconds), `Retry-After` included.
    #[arg(long, env = "NOTIFY_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub notify_backoff_max_ms: u64,
    /// Time limit of one request to Novu (milliseconds).
    #[arg(long, env = "NOTIFY_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub notify_request_timeout_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct OpsArgs {
    /// Where /healthz, /readyz and /metrics are served.
    #[arg(long, env = "OPS_LISTEN", default_value = "127.0.0.1:9464")]
    pub ops_listen: SocketAddr,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// On SIGTERM or Ctrl-C: time allowed to finish the current batch, flush and commit
    /// (seconds) before exiting anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value_t = 15)]
    pub shutdown_timeout_secs: u64,
}

/// Parses `id=base64,…` into keys.
pub fn parse_event_keys(text: &str) -> anyhow::Result<Vec<Key>> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (id, key) = entry.split_once('=').context("EVENT_KEYS entries are id=base64")?;
            Key::from_base64(id.trim(), key.trim()).with_context(|| format!("event key {:?}", id.trim()))
        })
        .collect()
}

/// The notifications the notifier sends, by their default workflow id.
pub const WORKFLOWS: [&str; 11] = [
    "email-verification",
    "transfer-sent",
    "transfer-received",
    "deposit-received",
    "withdrawal-completed",
    "transfer-refunded",
    "password-changed",
    "hold-placed",
    "hold-captured",
    "hold-voided",
    "hold-expired",
];

/// The workflow id of each notification, defaults overridden by `overrides`.
pub fn parse_workflows(overrides: &str) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut workflows: BTreeMap<&'static str, String> = WORKFLOWS.iter().map(|w| (*w, (*w).to_owned())).collect();
    for entry in overrides.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, id)) = entry.split_once('=') else {
            bail!("NOVU_WORKFLOWS entries are notification=workflow-id, got {entry:?}");
        };
        let Some(known) = WORKFLOWS.iter().find(|w| **w == name.trim()) else {
            bail!("unknown notification {:?}; known: {}", name.trim(), WORKFLOWS.join(", "));
        };
        workflows.insert(known, id.trim().to_owned());
    }
    Ok(workflows)
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Kafka {
        #[command(flatten)]
        args: KafkaArgs,
    }

    /// Kafka settings as `bridge` parses these flags.
    pub(crate) fn kafka(flags: &[&str]) -> KafkaArgs {
        Kafka::try_parse_from(std::iter::once("bridge").chain(flags.iter().copied())).unwrap().args
    }

    fn refusal(flags: &[&str]) -> String {
        format!("{:#}", kafka(flags).client_settings().unwrap_err())
    }

    #[test]
    fn plaintext_needs_no_security_settings() {
        let settings = kafka(&[]).client_settings().unwrap();
        assert!(settings.contains(&("security.protocol".into(), "plaintext".into())));
        assert!(!settings.iter().any(|(k, _)| k.starts_with("ssl.") || k.starts_with("sasl.")));
    }

    #[test]
    fn tls_without_a_ca_file_uses_the_system_store() {
        let settings = kafka(&["--kafka-security-protocol", "ssl"]).client_settings().unwrap();
        assert!(settings.contains(&("ssl.ca.location".into(), "probe".into())));
    }

    #[test]
    fn sasl_needs_a_mechanism_a_user_and_a_password() {
        assert_eq!(refusal(&["--kafka-security-protocol", "sasl_ssl"]), "KAFKA_SECURITY_PROTOCOL=sasl_ssl needs KAFKA_SASL_MECHANISM");
        let settings = kafka(&[
            "--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism", "SCRAM-SHA-512",
            "--kafka-sasl-username", "relay", "--kafka-sasl-password", "s3cret",
        ])
        .client_settings()
        .unwrap();
        assert!(settings.contains(&("sasl.password".into(), "s3cret".into())));
        assert!(refusal(&["--kafka-sasl-username", "relay"]).starts_with("KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=plaintext uses no SASL"));
    }

    #[test]
    fn tls_files_must_exist_and_need_tls() {
        assert!(refusal(&["--kafka-ca-file", "/etc/hostname"]).starts_with("KAFKA_CA_FILE is set but KAFKA_SECURITY_PROTOCOL=plaintext uses no TLS"));
        assert!(refusal(&["--kafka-security-protocol", "ssl", "--kafka-ca-file", "/no/such/ca.pem"]).starts_with("KAFKA_CA_FILE=/no/such/ca.pem cannot be read"));
        assert_eq!(
            refusal(&["--kafka-security-protocol", "ssl", "--kafka-cert-file", "/etc/hostname"]),
            "KAFKA_CERT_FILE and KAFKA_KEY_FILE go together (mutual TLS needs both)"
        );
    }

    #[test]
    fn properties_pass_through_except_what_the_bridge_owns() {
        let settings = kafka(&["--kafka-properties", "socket.keepalive.enable=true, broker.address.family=v4"]).client_settings().unwrap();
        assert!(settings.contains(&("socket.keepalive.enable".into(), "true".into())));
        assert!(settings.contains(&("broker.address.family".into(), "v4".into())));
        assert_eq!(
            refusal(&["--kafka-properties", "acks=0"]),
            "KAFKA_PROPERTIES may not set acks: the bridge's flags or its delivery guarantees set it"
        );
        assert_eq!(refusal(&["--kafka-properties", "acks"]), "KAFKA_PROPERTIES entries are key=value, got \"acks\"");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let args = kafka(&[
            "--kafka-security-protocol", "sasl_plaintext", "--kafka-sasl-mechanism", "PLAIN",
            "--kafka-sasl-username", "relay", "--kafka-sasl-password", "hunter2-secret",
        ]);
        assert!(!format!("{args:?}").contains("hunter2-secret"));
    }

    #[derive(Parser)]
    struct Relay {
        #[command(flatten)]
        args: RelayArgs,
    }

    #[test]
    fn holds_are_swept_every_few_seconds_and_at_least_hourly() {
        let interval = |flags: &[&str]| {
            Relay::try_parse_from(std::iter::once("bridge").chain(flags.iter().copied())).map(|relay| relay.args.hold_sweep_interval())
        };
        assert_eq!(interval(&[]).unwrap(), Duration::from_secs(5));
        assert_eq!(interval(&["--hold-sweep-interval-secs", "1"]).unwrap(), Duration::from_secs(1));
        assert_eq!(interval(&["--hold-sweep-interval-secs", "3600"]).unwrap(), Duration::from_secs(3_600));
        assert!(interval(&["--hold-sweep-interval-secs", "0"]).is_err(), "back-to-back sweeps");
        assert!(interval(&["--hold-sweep-interval-secs", "3601"]).is_err());
    }

    #[test]
    fn workflows_default_to_their_names_and_can_be_renamed() {
        let workflows = parse_workflows("transfer-sent = money-out").unwrap();
        assert_eq!(workflows["transfer-sent"], "money-out");
        assert_eq!(workflows["email-verification"], "email-verification");
        assert_eq!(parse_workflows("hold-expired=hold-lapsed").unwrap()["hold-expired"], "hold-lapsed");
        assert!(parse_workflows("no-such=thing").is_err());
        assert!(parse_workflows("transfer-sent").is_err());
    }

    #[test]
    fn event_keys_are_a_keyring() {
        let keys = parse_event_keys("k2=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, k1=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
        assert_eq!(keys.iter().map(Key::id).collect::<Vec<_>>(), ["k2", "k1"]);
        assert!(parse_event_keys("k1=short").is_err());
        assert!(parse_event_keys("").unwrap().is_empty());
    }
}
