//! Spin variables: `{{ name }}` templates, providers (static values, then the
//! `SPIN_VARIABLE_*` environment), defaults, the start-up check for required variables,
//! and `fermyon:spin/variables@2.0.0` (WASIp2) and `spin:variables/variables@3.0.0`
//! (WASIp3, asynchronous) for guests.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{bail, ensure};

use wasmtime::component::Accessor;

use crate::{
    bindings::{fermyon::spin::variables::{self, Error as GuestError}, spin::variables::variables as variables3},
    manifest::Variable,
    postgres::Capabilities,
};

/// Spin's rule for variable names: `[a-z][a-z0-9_]*[a-z0-9]` without `__`.
pub fn validate_name(name: &str) -> Result<(), VariableError> {
    let invalid = |reason: String| Err(VariableError::InvalidName(format!("{name:?}: {reason}")));
    if name.is_empty() {
        return invalid("must not be empty".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')) {
        return invalid(format!(
            "invalid character {c:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("must start with a lowercase ASCII letter".into());
    }
    if !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return invalid("must end with a lowercase ASCII letter or digit".into());
    }
    if name.contains("__") {
        return invalid("must not contain multiple consecutive underscores".into());
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VariableError {
    #[error("invalid variable name: {0}")]
    InvalidName(String),
    #[error("invalid variable template: {0}")]
    InvalidTemplate(String),
    #[error("undefined variable: {0}")]
    Undefined(String),
    #[error("provider error: {0}")]
    Provider(String),
}

/// A manifest value that may reference application variables: `"postgres://{{ db_host }}"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, VariableError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| VariableError::InvalidTemplate("unmatched '{{' in template".into()))?;
            let name = after[..end].trim();
            validate_name(name)?;
            parts.push(Part::Variable(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The text of a template without references, which can be checked before start-up.
    pub fn literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => Some(text.as_str()),
                Part::Variable(_) => None,
            })
            .collect()
    }

    pub fn ensure_references_known(&self, variables: &BTreeMap<String, Variable>) -> Result<(), VariableError> {
        for part in &self.parts {
            if let Part::Variable(name) = part
                && !variables.contains_key(name)
            {
                return Err(VariableError::InvalidTemplate(format!("unknown variable {name:?}")));
            }
        }
        Ok(())
    }
}

/// A source of variable values, as configured in a runtime config's `[[variables_provider]]`.
#[derive(Debug, Clone)]
pub enum Provider {
    /// Fixed values (`type = "static"`; also how tests and `--variable` set values).
    Static(BTreeMap<String, String>),
    /// `<PREFIX>_<NAME>` environment variables (`type = "env"`).
    Env { prefix: String },
}

pub const DEFAULT_ENV_PREFIX: &str = "SPIN_VARIABLE";

impl Provider {
    fn get(&self, name: &str) -> Result<Option<String>, VariableError> {
        match self {
            Provider::Static(values) => Ok(values.get(name).cloned()),
            Provider::Env { prefix } => {
                let key = format!("{prefix}_{}", name.to_ascii_uppercase());
                match std::env::var(&key) {
                    Ok(value) => Ok(Some(value)),
                    Err(std::env::VarError::NotPresent) => Ok(None),
                    Err(std::env::VarError::NotUnicode(_)) => {
                        Err(VariableError::Provider(format!("failed to resolve env var {key}")))
                    }
                }
            }
        }
    }
}

/// Resolves application variables: the configured providers in order, then Spin's default
/// `SPIN_VARIABLE_*` environment provider, then the manifest default.
pub struct Resolver {
    variables: BTreeMap<String, Variable>,
    providers: Vec<Provider>,
}

impl Resolver {
    pub fn new(variables: BTreeMap<String, Variable>, mut providers: Vec<Provider>) -> anyhow::Result<Self> {
        for provider in &providers {
            if let Provider::Static(values) = provider {
                for name in values.keys() {
                    ensure!(
                        variables.contains_key(name),
                        "a value was given for {name:?}, which the manifest does not declare in [variables]"
                    );
                }
            }
        }
        providers.push(Provider::Env {
            prefix: DEFAULT_ENV_PREFIX.to_owned(),
        });
        Ok(Self { variables, providers })
    }

    fn lookup(&self, name: &str) -> Result<Option<String>, VariableError> {
        for provider in &self.providers {
            if let Some(value) = provider.get(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    pub fn resolve_variable(&self, name: &str) -> Result<String, VariableError> {
        if let Some(value) = self.lookup(name)? {
            return Ok(value);
        }
        match self.variables.get(name).and_then(|v| v.default.clone()) {
            Some(default) => Ok(default),
            None => Err(VariableError::Provider(format!(
                "no provider resolved required variable {name:?}"
            ))),
        }
    }

    pub fn resolve_template(&self, template: &Template) -> Result<String, VariableError> {
        let mut value = String::new();
        for part in &template.parts {
            match part {
                Part::Literal(text) => value.push_str(text),
                Part::Variable(name) => value.push_str(&self.resolve_variable(name)?),
            }
        }
        Ok(value)
    }

    /// Spin refuses to start when a required variable has no value from any provider, with
    /// this message (the names as Spin's `Key` debug-prints them).
    pub fn ensure_required_resolvable(&self) -> anyhow::Result<()> {
        let mut unresolved = Vec::new();
        for (name, variable) in &self.variables {
            if variable.default.is_none() && self.lookup(name)?.is_none() {
                unresolved.push(format!("Key({name:?})"));
            }
        }
        if !unresolved.is_empty() {
            bail!("provider error: no provider resolved required variable(s): [{}]", unresolved.join(", "));
        }
        Ok(())
    }
}

/// One component's view of the variables, as `fermyon:spin/variables` serves it.
pub struct ComponentVariables {
    pub component_id: String,
    pub templates: BTreeMap<String, Template>,
    pub resolver: Arc<Resolver>,
}

impl ComponentVariables {
    pub fn get(&self, name: &str) -> Result<String, VariableError> {
        validate_name(name)?;
        let template = self.templates.get(name).ok_or_else(|| {
            VariableError::Undefined(format!("no variable for {:?}.{name:?}", self.component_id))
        })?;
        self.resolver.resolve_template(template)
    }
}

impl From<VariableError> for GuestError {
    fn from(error: VariableError) -> Self {
        match error {
            VariableError::InvalidName(message) => GuestError::InvalidName(message),
            VariableError::Undefined(message) => GuestError::Undefined(message),
            VariableError::Provider(message) => GuestError::Provider(message),
            other @ VariableError::InvalidTemplate(_) => GuestError::Other(other.to_string()),
        }
    }
}

impl From<VariableError> for variables3::Error {
    fn from(error: VariableError) -> Self {
        match error {
            VariableError::InvalidName(message) => Self::InvalidName(message),
            VariableError::Undefined(message) => Self::Undefined(message),
            VariableError::Provider(message) => Self::Provider(message),
            other @ VariableError::InvalidTemplate(_) => Self::Other(other.to_string()),
        }
    }
}

impl variables::Host for crate::runtime::RequestState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, GuestError>> {
        Ok(self.variables.get(&name).map_err(GuestError::from))
    }
}

impl variables3::Host for crate::runtime::RequestState {}

impl variables3::HostWithStore for Capabilities {
    async fn get<T>(accessor: &Accessor<T, Self>, name: String) -> wasmtime::Result<Result<String, variables3::Error>> {
        Ok(accessor.with(|mut access| access.get().variables.get(&name).map_err(variables3::Error::from)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<String, Variable> {
        let required = Variable {
            description: None,
            required: true,
            default: None,
            secret: true,
        };
        let defaulted = Variable {
            description: None,
            required: false,
            default: Some("5432".into()),
            secret: false,
        };
        BTreeMap::from([
            ("db_password".to_owned(), required),
            ("db_port".to_owned(), defaulted),
        ])
    }

    fn component(resolver: Resolver) -> ComponentVariables {
        ComponentVariables {
            component_id: "things".into(),
            templates: BTreeMap::from([(
                "db_url".to_owned(),
                Template::parse("postgres://app:{{ db_password }}@db:{{db_port}}/app").unwrap(),
            )]),
            resolver: Arc::new(resolver),
        }
    }

    #[test]
    fn names_follow_spins_rules() {
        for good in ["a", "db_url", "jwt_ttl_secs2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Db", "1st", "trailing_", "double__underscore", "dash-ed"] {
            assert!(matches!(validate_name(bad), Err(VariableError::InvalidName(_))), "{bad}");
        }
    }

    #[test]
    fn templates_substitute_every_reference() {
        let resolver = Resolver::new(declared(), vec![Provider::Static(BTreeMap::from([("db_password".into(), "s3cret".into())]))]).unwrap();
        assert_eq!(component(resolver).get("db_url").unwrap(), "postgres://app:s3cret@db:5432/app");
    }

    #[test]
    fn unmatched_braces_are_an_invalid_template() {
        assert_eq!(
            Template::parse("postgres://{{ db_host"),
            Err(VariableError::InvalidTemplate("unmatched '{{' in template".into()))
        );
    }

    #[test]
    fn configured_providers_come_before_the_default_environment() {
        // The environment is process-wide: this test owns the names it sets.
        let variables = BTreeMap::from([(
            "wasmpay_host_test_key".to_owned(),
            Variable {
                description: None,
                required: true,
                default: None,
                secret: false,
            },
        )]);
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("MYAPP_WASMPAY_HOST_TEST_KEY", "custom");
            std::env::set_var("SPIN_VARIABLE_WASMPAY_HOST_TEST_KEY", "default-env");
        }
        let custom = Resolver::new(variables.clone(), vec![Provider::Env { prefix: "MYAPP".into() }]).unwrap();
        assert_eq!(custom.resolve_variable("wasmpay_host_test_key").unwrap(), "custom");
        let plain = Resolver::new(variables, Vec::new()).unwrap();
        assert_eq!(plain.resolve_variable("wasmpay_host_test_key").unwrap(), "default-env");
    }

    #[test]
    fn static_values_beat_the_environment_which_beats_defaults() {
        // The environment is process-wide: this test owns the names it sets.
        let variables = BTreeMap::from([(
            "wasmpay_host_test_port".to_owned(),
            Variable {
                description: None,
                required: false,
                default: Some("1".into()),
                secret: false,
            },
        )]);
        let resolver = Resolver::new(variables.clone(), Vec::new()).unwrap();
        assert_eq!(resolver.resolve_variable("wasmpay_host_test_port").unwrap(), "1");
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("SPIN_VARIABLE_WASMPAY_HOST_TEST_PORT", "2") };
        assert_eq!(resolver.resolve_variable("wasmpay_host_test_port").unwrap(), "2");
        let with_static =
            Resolver::new(variables, vec![Provider::Static(BTreeMap::from([("wasmpay_host_test_port".into(), "3".into())]))])
                .unwrap();
        assert_eq!(with_static.resolve_variable("wasmpay_host_test_port").unwrap(), "3");
    }

    #[test]
    fn a_missing_required_variable_stops_start_up_and_fails_get() {
        let resolver = Resolver::new(declared(), Vec::new()).unwrap();
        let error = resolver.ensure_required_resolvable().unwrap_err().to_string();
        assert!(error.contains(r#"no provider resolved required variable(s): [Key("db_password")]"#), "{error}");
        assert_eq!(
            component(resolver).get("db_url"),
            Err(VariableError::Provider("no provider resolved required variable \"db_password\"".into()))
        );
    }

    #[test]
    fn guests_get_spins_error_variants() {
        let resolver = Resolver::new(declared(), vec![Provider::Static(BTreeMap::from([("db_password".into(), "x".into())]))]).unwrap();
        let things = component(resolver);
        assert!(matches!(things.get("DB_URL"), Err(VariableError::InvalidName(_))));
        assert_eq!(
            things.get("db_port"),
            Err(VariableError::Undefined("no variable for \"things\".\"db_port\"".into())),
            "application variables are visible only through the component's own table"
        );
    }

    #[test]
    fn values_for_undeclared_variables_are_refused() {
        assert!(Resolver::new(declared(), vec![Provider::Static(BTreeMap::from([("nope".into(), "x".into())]))]).is_err());
    }
}
