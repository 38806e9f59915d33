//! The transfers component's own variables: how long idempotency keys live, and how long
//! holds may last. (The policy variables are read for the plugins, in `policy`.)

use wasmpay_common::config::{self, ConfigError};

/// How long an idempotency key (and the response it replays) is kept.
pub async fn idempotency_key_ttl_secs() -> Result<i64, ConfigError> {
    config::parsed("idempotency_key_ttl_secs").await
}

/// The expiry of a hold whose request names none.
pub async fn hold_default_expiry_secs() -> Result<i64, ConfigError> {
    config::parsed("hold_default_expiry_secs").await
}

/// The longest expiry a hold may ask for.
pub async fn hold_max_expiry_secs() -> Result<i64, ConfigError> {
    config::parsed("hold_max_expiry_secs").await
}
