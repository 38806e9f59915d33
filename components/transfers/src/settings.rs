//! The transfers component's own variable: how long idempotency keys live. (The policy
//! variables are read for the plugins, in `policy`.)

use wasmpay_common::config::{self, ConfigError};

/// How long an idempotency key (and the response it replays) is kept.
pub async fn idempotency_key_ttl_secs() -> Result<i64, ConfigError> {
    config::parsed("idempotency_key_ttl_secs").await
}
