//! Configuration comes only from Spin variables (`[component.x.variables]` in spin.toml).
//!
//! An instance reads each variable once, on first use, and keeps it for the rest of its
//! life: Spin reuses a WASIp3 instance for many requests, and each read is an asynchronous
//! call into the host (a dozen per transfer cost about a sixth of its throughput). A value
//! changed at its provider (a rotated secret in Vault) is therefore seen by instances Spin
//! starts afterwards: within `--max-instance-reuse-count` requests or
//! `--idle-instance-timeout`, whichever comes first.

use std::{cell::RefCell, collections::HashMap, str::FromStr};

use crate::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("variable `{name}` could not be read: {reason}")]
    Unavailable { name: &'static str, reason: String },
    #[error("variable `{name}` has an invalid value: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl From<ConfigError> for Problem {
    fn from(error: ConfigError) -> Self {
        eprintln!("configuration error: {error}");
        Problem::internal()
    }
}

thread_local! {
    /// Values read so far (`None`: the component maps no such variable).
    static READ: RefCell<HashMap<&'static str, Option<String>>> = RefCell::new(HashMap::new());
}

/// A variable's value, or `None` when the component's manifest maps no variable of that name.
pub async fn optional(name: &'static str) -> Result<Option<String>, ConfigError> {
    if let Some(value) = READ.with(|read| read.borrow().get(name).cloned()) {
        return Ok(value);
    }
    let value = match spin_sdk::variables::get(name).await {
        Ok(value) => Some(value),
        Err(spin_sdk::variables::Error::Undefined(_)) => None,
        Err(e) => {
            return Err(ConfigError::Unavailable {
                name,
                reason: e.to_string(),
            });
        }
    };
    READ.with(|read| read.borrow_mut().insert(name, value.clone()));
    Ok(value)
}

/// The raw value of a variable the component declares.
pub async fn text(name: &'static str) -> Result<String, ConfigError> {
    optional(name).await?.ok_or_else(|| ConfigError::Unavailable {
        name,
        reason: "the component maps no such variable".into(),
    })
}

/// A variable parsed into `T`; the manifest gives every such variable a default.
pub async fn parsed<T>(name: &'static str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text(name).await?.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })
}
