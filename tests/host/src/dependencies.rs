//! Component dependencies (`[component.x.dependencies]`, Spin's SIP 020), composed as Spin
//! composes them: with wac-graph, each dependency instantiated once and plugged into the
//! imports its key names (a plain name, an interface `ns:pkg/iface@ver`, or every import
//! of a package `ns:pkg@ver`), through its export of the same name or the one `export`
//! names, type-checked structurally. Each is registered in the graph under its key's
//! package (or its plain name), so two keys of one package are refused as Spin refuses
//! them. What the main component and its dependencies import besides stays an import of
//! the composition and is linked by the host.
//!
//! A dependency runs without the component's configuration (this host, like wasmpay, does
//! not support `inherit_configuration`). Spin lets such a dependency import a capability
//! and denies every call with its deny-all adapter; wasmpay goes further and refuses, at
//! start-up, a dependency importing anything beyond what a language runtime needs
//! ([`RUNTIME_IMPORTS`]): no environment, filesystem, socket, HTTP, database, variables
//! or other Spin interface. `cargo xtask up` and the tests run [`check_imports`] before
//! they start Spin too, so both runtimes refuse the same plugins.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wac_graph::{CompositionGraph, EncodeOptions, types::Package};

/// The interfaces a dependency may import (`wit/policy/policy.wit`, world
/// `plugin-runtime`), each at any 0.2 version.
pub const RUNTIME_IMPORTS: [&str; 12] = [
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// One entry of `[component.x.dependencies]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// The key: which imports it satisfies.
    pub key: String,
    pub source: PathBuf,
    /// The export to plug in, when it is not named like the import.
    pub export: Option<String>,
}

/// `ns:pkg/iface@1.2.3` → (`ns:pkg`, `Some(iface)`, `Some(1.2.3)`); a plain name → (name, None, None).
fn split_name(name: &str) -> (&str, Option<&str>, Option<&str>) {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    match path.split_once('/') {
        Some((package, interface)) => (package, Some(interface), version),
        None => (path, None, version),
    }
}

/// The name Spin registers a dependency under in its composition graph: the package a key
/// names (`wasmpay:policy` for `wasmpay:policy/policy@0.1.0`), or the plain name.
fn registered_name(key: &str) -> &str {
    if key.contains(':') { split_name(key).0 } else { key }
}

/// Whether the dependency key `key` names the import `import`.
fn key_matches(key: &str, import: &str) -> bool {
    if !key.contains(':') {
        return key == import;
    }
    let (key_package, key_interface, key_version) = split_name(key);
    let (package, interface, version) = split_name(import);
    key_package == package
        && key_interface.is_none_or(|wanted| Some(wanted) == interface)
        && key_version.is_none_or(|wanted| Some(wanted) == version)
}

/// Reads and parses a dependency's file into `graph`.
fn load(graph: &mut CompositionGraph, name: &str, dependency: &Dependency) -> anyhow::Result<Package> {
    let bytes = std::fs::read(&dependency.source)
        .with_context(|| format!("failed to read component source from disk at path {:?}", dependency.source))?;
    Package::from_bytes(name, None, bytes, graph.types_mut())
        .with_context(|| format!("dependency '{}' is not a component", dependency.key))
}

/// Refuses a dependency importing anything beyond [`RUNTIME_IMPORTS`].
pub fn check_imports(component: &str, dependency: &Dependency) -> anyhow::Result<()> {
    let mut graph = CompositionGraph::new();
    let package = load(&mut graph, "wasmpay:dependency", dependency)?;
    check_package_imports(component, dependency, &graph, &package)
}

fn check_package_imports(component: &str, dependency: &Dependency, graph: &CompositionGraph, package: &Package) -> anyhow::Result<()> {
    let world = &graph.types()[package.ty()];
    let refused: Vec<&str> = world
        .imports
        .keys()
        .map(String::as_str)
        .filter(|import| {
            let (package, interface, version) = split_name(import);
            let allowed = RUNTIME_IMPORTS
                .iter()
                .any(|allowed| interface.is_some_and(|interface| *allowed == format!("{package}/{interface}")));
            !(allowed && version.is_some_and(|version| version.starts_with("0.2.")))
        })
        .collect();
    if !refused.is_empty() {
        bail!(
            "dependency '{}' of component '{component}' ({}) imports {}: a dependency gets no capability, so it may \
             import only what a language runtime needs ({} at 0.2.x)",
            dependency.key,
            dependency.source.display(),
            refused.join(", "),
            RUNTIME_IMPORTS.join(", ")
        );
    }
    Ok(())
}

/// The component at `main` with `dependencies` plugged in, encoded as one component.
pub fn compose(component: &str, main: &Path, dependencies: &[Dependency]) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(main).with_context(|| format!("cannot read component {}", main.display()))?;
    let mut graph = CompositionGraph::new();
    let main_package = Package::from_bytes(component, None, bytes, graph.types_mut())?;
    let main_world = main_package.ty();
    let main_id = graph.register_package(main_package)?;
    let main_instance = graph.instantiate(main_id);
    let imports: Vec<String> = graph.types()[main_world].imports.keys().cloned().collect();
    let mut plugged: Vec<(&str, &str)> = Vec::new();
    for dependency in dependencies {
        let key = dependency.key.as_str();
        let matched: Vec<&String> = imports.iter().filter(|import| key_matches(key, import)).collect();
        if matched.is_empty() {
            bail!("dependency '{key}' doesn't match any imports of component '{component}'");
        }
        let package = load(&mut graph, registered_name(key), dependency)?;
        check_package_imports(component, dependency, &graph, &package)?;
        let exports: Vec<String> = graph.types()[package.ty()].exports.keys().cloned().collect();
        let package_id = graph
            .register_package(package)
            .with_context(|| format!("dependency '{key}' of component '{component}' cannot be composed"))?;
        let instance = graph.instantiate(package_id);
        for import in matched {
            if let Some((other, _)) = plugged.iter().find(|(_, plugged_import)| *plugged_import == import.as_str()) {
                bail!("dependencies '{other}' and '{key}' both satisfy import '{import}'");
            }
            let export = dependency.export.as_deref().unwrap_or(import);
            if !exports.iter().any(|name| name == export) {
                bail!("dependency '{key}' doesn't export '{export}' to satisfy import '{import}'");
            }
            let node = graph.alias_instance_export(instance, export)?;
            graph
                .set_instantiation_argument(main_instance, import, node)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("dependency '{key}' exports '{export}' which is not compatible with import '{import}'"))?;
            plugged.push((key, import));
        }
    }
    let exports: Vec<String> = graph.types()[main_world].exports.keys().cloned().collect();
    for export in exports {
        let node = graph.alias_instance_export(main_instance, &export)?;
        graph.export(node, &export)?;
    }
    Ok(graph.encode(EncodeOptions::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_imports_as_spin_matches_them() {
        let import = "wasmpay:policy/policy@0.1.0";
        for key in ["wasmpay:policy/policy@0.1.0", "wasmpay:policy/policy", "wasmpay:policy@0.1.0", "wasmpay:policy"] {
            assert!(key_matches(key, import), "{key}");
        }
        for key in ["wasmpay:policy/policy@0.2.0", "wasmpay:other/policy", "policy", "wasmpay:policy/rules"] {
            assert!(!key_matches(key, import), "{key}");
        }
        assert!(key_matches("second-policy", "second-policy"));
        assert!(!key_matches("second-policy", "third-policy"));
    }

    /// A component importing `evaluate` from two versions of `wasmpay:policy` and from a
    /// plain-named slot, and a dependency exporting the interface of one version.
    fn components(dir: &Path) -> (PathBuf, [PathBuf; 2]) {
        let engine = r#"(component
            (import "wasmpay:policy/policy@0.1.0" (instance (export "evaluate" (func))))
            (import "wasmpay:policy/policy@0.2.0" (instance (export "evaluate" (func))))
            (import "first-policy" (instance (export "evaluate" (func))))
        )"#;
        let plugin = |version: &str| {
            format!(
                r#"(component
                    (core module $m (func (export "evaluate")))
                    (core instance $i (instantiate $m))
                    (func $evaluate (canon lift (core func $i "evaluate")))
                    (instance $policy (export "evaluate" (func $evaluate)))
                    (export "wasmpay:policy/policy@{version}" (instance $policy))
                )"#
            )
        };
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, wat::parse_str(text).unwrap()).unwrap();
            path
        };
        (
            write("engine.wasm", engine),
            [write("plugin-0.1.wasm", &plugin("0.1.0")), write("plugin-0.2.wasm", &plugin("0.2.0"))],
        )
    }

    #[test]
    fn two_keys_of_one_package_are_refused_as_spin_refuses_them() {
        let dir = std::env::temp_dir().join(format!("wasmpay-host-dependencies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (engine, [old, new]) = components(&dir);
        let dependency = |key: &str, source: &PathBuf, export: Option<&str>| Dependency {
            key: key.into(),
            source: source.clone(),
            export: export.map(Into::into),
        };
        let both_by_package = [
            dependency("wasmpay:policy/policy@0.1.0", &old, None),
            dependency("wasmpay:policy/policy@0.2.0", &new, None),
            dependency("first-policy", &new, Some("wasmpay:policy/policy@0.2.0")),
        ];
        let refused = compose("engine", &engine, &both_by_package).unwrap_err();
        let message = format!("{refused:#}");
        assert!(message.contains("package `wasmpay:policy` has already been registered"), "{message}");
        let one_by_package = [
            dependency("wasmpay:policy/policy@0.1.0", &old, None),
            dependency("first-policy", &new, Some("wasmpay:policy/policy@0.2.0")),
        ];
        let composed = compose("engine", &engine, &one_by_package);
        std::fs::remove_dir_all(&dir).unwrap();
        composed.expect("one key per package composes");
    }
}
