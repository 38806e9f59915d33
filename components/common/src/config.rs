//! Configuration comes only from Spin variables (`[component.x.variables]` in spin.toml).

use std::str::FromStr;

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

/// The raw value of a variable the component declares.
pub async fn text(name: &'static str) -> Result<String, ConfigError> {
    spin_sdk::variables::get(name).await.map_err(|e| ConfigError::Unavailable {
        name,
        reason: e.to_string(),
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
