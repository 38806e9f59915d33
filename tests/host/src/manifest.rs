//! `spin.toml` (manifest version 2): the parts a wasi-http application uses, with Spin's
//! load-time rules (unknown fields refused, `required` xor `default`, id syntax).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use crate::{
    dependencies::Dependency,
    variables::{Template, validate_name},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub authors: Vec<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub trigger: Option<toml::Table>,
    #[serde(default)]
    pub tool: Option<toml::Table>,
}

/// An application variable (`[variables]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    /// Metadata only, as in Spin: it does not change how the value is resolved.
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    #[serde(default)]
    id: Option<String>,
    route: RouteSetting,
    component: String,
    #[serde(default)]
    executor: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RouteSetting {
    Pattern(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: String,
    #[allow(dead_code, reason = "documentation for people, validated here")]
    description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[allow(dead_code, reason = "read by `spin build`, validated here")]
    #[serde(default)]
    build: Option<Build>,
    #[serde(default)]
    dependencies: BTreeMap<String, RawDependency>,
    #[serde(default)]
    dependencies_inherit_configuration: bool,
}

/// A dependency from a file; Spin's other sources (a registry, a URL, another component)
/// and inherited configuration are not supported by this host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependency {
    path: String,
    export: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "read by `spin build` and `spin watch`, validated here")]
struct Build {
    command: toml::Value,
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

/// A loaded manifest, ready for the host.
#[derive(Debug)]
pub struct Manifest {
    pub application: Application,
    pub variables: BTreeMap<String, Variable>,
    pub routes: Vec<HttpRoute>,
    pub components: BTreeMap<String, Component>,
}

/// One `[[trigger.http]]` with a public route.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    pub route: String,
    pub component: String,
}

#[derive(Debug)]
pub struct Component {
    pub id: String,
    /// The Wasm file, resolved against the manifest directory (whatever `build.workdir` is).
    pub source: PathBuf,
    pub allowed_outbound_hosts: Vec<Template>,
    pub variables: BTreeMap<String, Template>,
    pub environment: BTreeMap<String, String>,
    pub dependencies: Vec<Dependency>,
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let app_root = directory
            .canonicalize()
            .with_context(|| format!("cannot resolve the directory of {}", path.display()))?;
        Self::parse(&text, &app_root).with_context(|| format!("Failed to load Spin app from {:?}", path.display()))
    }

    pub fn parse(text: &str, app_root: &Path) -> anyhow::Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        ensure!(
            raw.spin_manifest_version == 2,
            "spin_manifest_version must be 2, found {}",
            raw.spin_manifest_version
        );
        if let Some(base) = raw
            .application
            .trigger
            .as_ref()
            .and_then(|t| t.get("http"))
            .and_then(|http| http.get("base"))
            .and_then(|base| base.as_str())
            && base != "/"
        {
            bail!(
                "This application is using the deprecated trigger 'base' field. The base must be prepended to each [[trigger.http]]'s 'route'."
            );
        }
        for (name, variable) in &raw.variables {
            validate_name(name)?;
            ensure!(
                variable.required ^ variable.default.is_some(),
                "variable {name:?}: must be `required` OR have a `default`"
            );
        }
        let mut components = BTreeMap::new();
        for (id, raw_component) in raw.component {
            validate_kebab_id(&id)?;
            let mut variables = BTreeMap::new();
            for (name, value) in raw_component.variables {
                validate_name(&name)?;
                let template = Template::parse(&value)?;
                template.ensure_references_known(&raw.variables)?;
                variables.insert(name, template);
            }
            let allowed_outbound_hosts = raw_component
                .allowed_outbound_hosts
                .iter()
                .map(|host| {
                    let template = Template::parse(host)?;
                    template.ensure_references_known(&raw.variables)?;
                    Ok(template)
                })
                .collect::<anyhow::Result<_>>()?;
            ensure!(
                !raw_component.dependencies_inherit_configuration,
                "component {id}: this host runs dependencies without the component's configuration only"
            );
            let dependencies = raw_component
                .dependencies
                .into_iter()
                .map(|(key, dependency)| {
                    validate_dependency_key(&key).with_context(|| format!("component {id}"))?;
                    Ok(Dependency {
                        key,
                        source: app_root.join(&dependency.path),
                        export: dependency.export,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            components.insert(
                id.clone(),
                Component {
                    source: app_root.join(&raw_component.source),
                    id,
                    allowed_outbound_hosts,
                    variables,
                    environment: raw_component.environment,
                    dependencies,
                },
            );
        }
        let mut routes = Vec::new();
        for trigger in raw.trigger.http {
            let trigger_name = trigger.id.clone().unwrap_or_else(|| trigger.component.clone());
            ensure!(
                trigger.executor.as_ref().is_none_or(|executor| {
                    matches!(executor.get("type").and_then(|t| t.as_str()), Some("http" | "spin"))
                }),
                "trigger {trigger_name}: only the wasi-http executor is supported"
            );
            ensure!(
                components.contains_key(&trigger.component),
                "trigger {trigger_name}: component {:?} is not defined",
                trigger.component
            );
            match trigger.route {
                RouteSetting::Pattern(route) => routes.push(HttpRoute {
                    route,
                    component: trigger.component,
                }),
                RouteSetting::Private { private: true } => {}
                RouteSetting::Private { private: false } => bail!(
                    "route must be a string pattern or '{{ private = true }}': '{trigger_name}' has {{ private = false }}"
                ),
            }
        }
        Ok(Self {
            application: raw.application,
            variables: raw.variables,
            routes,
            components,
        })
    }
}

fn is_kebab(name: &str) -> bool {
    name.split('-').all(|word| {
        !word.is_empty()
            && word.starts_with(|c: char| c.is_ascii_lowercase())
            && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

fn validate_kebab_id(id: &str) -> anyhow::Result<()> {
    ensure!(is_kebab(id), "component id {id:?} must be kebab-case (lower-case words joined by '-')");
    Ok(())
}

/// A plain kebab name, or `ns:pkg[/iface][@version]` with kebab parts.
fn validate_dependency_key(key: &str) -> anyhow::Result<()> {
    let (path, version) = match key.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (key, None),
    };
    let valid = match path.split_once(':') {
        None => version.is_none() && is_kebab(path),
        Some((namespace, rest)) => {
            let (package, interface) = match rest.split_once('/') {
                Some((package, interface)) => (package, Some(interface)),
                None => (rest, None),
            };
            is_kebab(namespace)
                && is_kebab(package)
                && interface.is_none_or(is_kebab)
                && version.is_none_or(|v| v.split('.').count() == 3 && v.split('.').all(|n| n.parse::<u64>().is_ok()))
        }
    };
    ensure!(valid, "dependency name {key:?} is neither a kebab-case name nor ns:package[/interface][@version]");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "demo"
        [variables]
        db_url = { required = true, secret = true }
        db_host = { default = "localhost" }
        [[trigger.http]]
        route = "/things/..."
        component = "things"
        [[trigger.http]]
        route = { private = true }
        component = "things"
        [component.things]
        source = "target/things.wasm"
        allowed_outbound_hosts = ["postgres://{{ db_host }}"]
        [component.things.variables]
        db_url = "{{ db_url }}"
        [component.things.build]
        command = "cargo build"
        workdir = "elsewhere"
    "#;

    #[test]
    fn loads_routes_components_and_variables() {
        let manifest = Manifest::parse(MINIMAL, Path::new("/app")).unwrap();
        assert_eq!(manifest.routes.len(), 1, "private routes are not served");
        let things = &manifest.components["things"];
        assert_eq!(things.source, Path::new("/app/target/things.wasm"), "source ignores build.workdir");
        assert!(manifest.variables["db_url"].secret);
    }

    #[test]
    fn a_variable_must_be_required_or_defaulted_but_not_both() {
        let both = MINIMAL.replace("{ default = \"localhost\" }", "{ default = \"x\", required = true }");
        let error = format!("{:#}", Manifest::parse(&both, Path::new("/app")).unwrap_err());
        assert!(error.contains("must be `required` OR have a `default`"), "{error}");
        let neither = MINIMAL.replace("{ default = \"localhost\" }", "{ secret = true }");
        assert!(Manifest::parse(&neither, Path::new("/app")).is_err());
    }

    #[test]
    fn templates_must_name_declared_variables() {
        let unknown = MINIMAL.replace("{{ db_url }}", "{{ db_password }}");
        let error = format!("{:#}", Manifest::parse(&unknown, Path::new("/app")).unwrap_err());
        assert!(error.contains("unknown variable \"db_password\""), "{error}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let typo = MINIMAL.replace("allowed_outbound_hosts", "allowed_outbound_host");
        assert!(Manifest::parse(&typo, Path::new("/app")).is_err());
    }

    #[test]
    fn a_trigger_must_name_a_defined_component() {
        let dangling = MINIMAL.replace("component = \"things\"\n        [[trigger.http]]", "component = \"other\"\n        [[trigger.http]]");
        assert!(Manifest::parse(&dangling, Path::new("/app")).is_err());
    }
}
