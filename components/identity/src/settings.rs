//! The identity component's variables (declared in spin.toml, documented in the README).

use wasmpay_common::config::{self, ConfigError};
use wasmpay_sealed::Key;

pub struct Settings {
    pub bcrypt_cost: u32,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub verification_ttl_secs: u64,
    pub resend_interval_secs: u64,
    pub login_max_failures: i64,
    pub login_failure_window_secs: i64,
}

/// bcrypt's own bounds on the cost factor.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

impl Settings {
    pub async fn load() -> Result<Self, ConfigError> {
        let bcrypt_cost = config::parsed("bcrypt_cost").await?;
        if !BCRYPT_COSTS.contains(&bcrypt_cost) {
            return Err(ConfigError::Invalid {
                name: "bcrypt_cost",
                reason: "must be between 4 and 31".into(),
            });
        }
        let login_max_failures: i64 = config::parsed("login_max_failures").await?;
        if login_max_failures < 1 {
            return Err(ConfigError::Invalid {
                name: "login_max_failures",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            bcrypt_cost,
            access_ttl_secs: config::parsed("jwt_access_ttl_secs").await?,
            refresh_ttl_secs: config::parsed("refresh_token_ttl_secs").await?,
            verification_ttl_secs: config::parsed("verification_token_ttl_secs").await?,
            resend_interval_secs: config::parsed("verification_resend_interval_secs").await?,
            login_max_failures,
            login_failure_window_secs: config::parsed("login_failure_window_secs").await?,
        })
    }
}

/// The key that seals secrets inside events (`event_encryption_key`, base64 of 32 bytes,
/// named by `event_encryption_key_id`).
pub async fn event_key() -> Result<Key, ConfigError> {
    let id = config::text("event_encryption_key_id").await?;
    let key = config::text("event_encryption_key").await?;
    Key::from_base64(&id, &key).map_err(|e| ConfigError::Invalid {
        name: "event_encryption_key",
        reason: e.to_string(),
    })
}
