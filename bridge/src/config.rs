//! Every setting of the bridge: a flag, an environment variable and a default, all listed
//! by `bridge <command> --help` and in the README.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use wasmpay_sealed::Key;

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL connection string of the wasmpay database (sslmode=disable for plaintext;
    /// otherwise TLS is tried or required as the string says).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
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
}

#[derive(Args, Debug, Clone)]
pub struct RelayArgs {
    /// Most outbox rows read and published per batch.
    #[arg(long, env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub relay_batch_size: i64,
    /// Poll the outbox at least this often (milliseconds), notifications or not.
    #[arg(long, env = "RELAY_POLL_INTERVAL_MS", default_value_t = 1_000)]
    pub relay_poll_interval_ms: u64,
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
}

impl RelayArgs {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.relay_poll_interval_ms)
    }

    pub fn leader_retry(&self) -> Duration {
        Duration::from_millis(self.relay_leader_retry_ms)
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
    /// withdrawal-completed, transfer-refunded, password-changed).
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
pub const WORKFLOWS: [&str; 7] = [
    "email-verification",
    "transfer-sent",
    "transfer-received",
    "deposit-received",
    "withdrawal-completed",
    "transfer-refunded",
    "password-changed",
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
mod tests {
    use super::*;

    #[test]
    fn workflows_default_to_their_names_and_can_be_renamed() {
        let workflows = parse_workflows("transfer-sent = money-out").unwrap();
        assert_eq!(workflows["transfer-sent"], "money-out");
        assert_eq!(workflows["email-verification"], "email-verification");
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
