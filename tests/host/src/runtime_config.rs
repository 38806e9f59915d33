//! The part of Spin's runtime config file this host honours: `[[variables_provider]]`
//! (or the legacy `[[config_provider]]`) of type `static` or `env`, and
//! `max_instance_memory` (bytes a linear memory of an instance may grow to). Other providers
//! (Vault, Azure Key Vault) need real Spin; other sections configure capabilities wasmpay
//! does not use and are reported, not silently dropped.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::variables::{DEFAULT_ENV_PREFIX, Provider};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ProviderConfig {
    Static {
        values: BTreeMap<String, String>,
    },
    Env {
        prefix: Option<String>,
        dotenv_path: Option<String>,
    },
}

/// What a runtime config file says.
#[derive(Debug, Default)]
pub struct RuntimeConfig {
    /// Variable providers, in file order.
    pub providers: Vec<Provider>,
    /// The most bytes a linear memory of an instance may grow to (none: no limit).
    pub max_instance_memory: Option<usize>,
}

/// Reads a runtime config file.
pub fn load(path: &Path) -> anyhow::Result<RuntimeConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid runtime config {}", path.display()))
}

pub fn parse(text: &str) -> anyhow::Result<RuntimeConfig> {
    let mut table: toml::Table = toml::from_str(text)?;
    let max_instance_memory = match table.remove("max_instance_memory") {
        None => None,
        Some(toml::Value::Integer(bytes)) => Some(usize::try_from(bytes).context("max_instance_memory must not be negative")?),
        Some(other) => bail!("max_instance_memory must be a number of bytes, not {other}"),
    };
    Ok(RuntimeConfig {
        providers: parse_providers(table)?,
        max_instance_memory,
    })
}

fn parse_providers(mut table: toml::Table) -> anyhow::Result<Vec<Provider>> {
    let entries = match (table.remove("variables_provider"), table.remove("config_provider")) {
        (Some(_), Some(_)) => bail!("use either [[variables_provider]] or [[config_provider]], not both"),
        (Some(entries), None) | (None, Some(entries)) => entries,
        (None, None) => toml::Value::Array(Vec::new()),
    };
    for section in table.keys() {
        eprintln!("runtime config: [{section}] is ignored by the wasmpay host (wasmpay does not use it)");
    }
    let toml::Value::Array(entries) = entries else {
        bail!("variables providers must be an array of tables ([[variables_provider]])");
    };
    entries
        .into_iter()
        .map(|entry| {
            let kind = entry.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
            if !matches!(kind.as_str(), "static" | "env") {
                bail!("variables provider type {kind:?} needs Spin itself; the wasmpay host supports \"static\" and \"env\"");
            }
            Ok(match entry.try_into::<ProviderConfig>()? {
                ProviderConfig::Static { values } => Provider::Static(values),
                ProviderConfig::Env { prefix, dotenv_path } => {
                    if dotenv_path.is_some() {
                        bail!("dotenv_path is not supported by the wasmpay host; export the variables instead");
                    }
                    Provider::Env {
                        prefix: prefix.unwrap_or_else(|| DEFAULT_ENV_PREFIX.to_owned()),
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_static_and_env_providers_in_order() {
        let providers = parse(
            r#"
            [[variables_provider]]
            type = "env"
            prefix = "WASMPAY"
            [[variables_provider]]
            type = "static"
            values = { db_url = "postgres://x" }
            "#,
        )
        .unwrap()
        .providers;
        assert!(matches!(&providers[0], Provider::Env { prefix } if prefix == "WASMPAY"));
        assert!(matches!(&providers[1], Provider::Static(values) if values["db_url"] == "postgres://x"));
    }

    #[test]
    fn refuses_providers_it_cannot_honour() {
        let vault = "[[variables_provider]]\ntype = \"vault\"\nurl = \"http://v\"\ntoken = \"t\"\nmount = \"m\"";
        assert!(parse(vault).is_err());
        assert!(parse("[[config_provider]]\ntype = \"env\"\nbogus = 1").is_err());
    }

    #[test]
    fn reads_the_instance_memory_limit() {
        assert_eq!(parse("max_instance_memory = 1048576").unwrap().max_instance_memory, Some(1 << 20));
        assert_eq!(parse("").unwrap().max_instance_memory, None);
        assert!(parse("max_instance_memory = \"1MB\"").is_err());
        assert!(parse("max_instance_memory = -1").is_err());
    }
}
