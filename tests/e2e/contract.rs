//! The platform contract (`wit/world.wit`, world `component`): a built component may import
//! only what the world imports and must export `wasi:http/incoming-handler`. Versions
//! match as Spin and wasmtime link them: same package and interface, semver-compatible
//! (same major, and same minor while the major is 0), no newer than the contract's.

use std::path::Path;

use semver::Version;
use wasmpay_test_support::paths;
use wit_parser::{Resolve, WorldId};

use crate::app::COMPONENTS;

/// `ns:pkg/interface@version`.
#[derive(Debug, Clone, PartialEq)]
struct InterfaceName {
    path: String,
    version: Option<Version>,
}

impl InterfaceName {
    fn parse(name: &str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(Version::parse(version).ok()?)),
            None => (name, None),
        };
        path.contains(':').then(|| Self {
            path: path.to_owned(),
            version,
        })
    }

    /// Whether this (a component's) name is satisfied by `provided` (the contract's).
    fn satisfied_by(&self, provided: &InterfaceName) -> bool {
        if self.path != provided.path {
            return false;
        }
        match (&self.version, &provided.version) {
            (None, None) => true,
            (Some(wanted), Some(offered)) => {
                wanted.major == offered.major && (wanted.major != 0 || wanted.minor == offered.minor) && wanted <= offered
            }
            _ => false,
        }
    }
}

struct Contract {
    imports: Vec<InterfaceName>,
    exports: Vec<InterfaceName>,
}

fn world_names(resolve: &Resolve, world: WorldId) -> (Vec<String>, Vec<String>) {
    let world = &resolve.worlds[world];
    let names = |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
        items.keys().map(|key| resolve.name_world_key(key)).collect()
    };
    (names(&world.imports), names(&world.exports))
}

fn contract() -> Contract {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(paths::repo_root().join("wit"))
        .expect("wit/ parses");
    let world = resolve.select_world(&[package], Some("component")).expect("world `component`");
    let (imports, exports) = world_names(&resolve, world);
    let parse = |names: Vec<String>| {
        names
            .iter()
            .map(|n| InterfaceName::parse(n).unwrap_or_else(|| panic!("contract names an interface: {n}")))
            .collect()
    };
    Contract {
        imports: parse(imports),
        exports: parse(exports),
    }
}

/// Every way a component breaks the contract; empty when it fits.
fn violations(wasm: &[u8]) -> Vec<String> {
    let contract = contract();
    let (resolve, world) = match wit_component::decode(wasm) {
        Ok(wit_component::DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(_) => return vec!["not a component (a WIT package)".into()],
        Err(e) => return vec![format!("not a component: {e:#}")],
    };
    let (imports, exports) = world_names(&resolve, world);
    let mut problems = Vec::new();
    for import in imports {
        let allowed = InterfaceName::parse(&import)
            .is_some_and(|name| contract.imports.iter().any(|provided| name.satisfied_by(provided)));
        if !allowed {
            problems.push(format!("imports {import}, which the platform world does not provide"));
        }
    }
    let exported: Vec<InterfaceName> = exports.iter().filter_map(|e| InterfaceName::parse(e)).collect();
    for required in &contract.exports {
        if !exported.iter().any(|e| e.satisfied_by(required)) {
            problems.push(format!("does not export {}", required.path));
        }
    }
    problems
}

fn check_file(path: &Path) -> Vec<String> {
    violations(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn every_built_component_meets_the_platform_contract() {
    for component in COMPONENTS {
        let problems = check_file(&paths::component(component));
        assert!(problems.is_empty(), "{component}.wasm breaks the contract:\n{}", problems.join("\n"));
    }
}

#[test]
fn a_component_importing_outside_the_world_is_rejected() {
    let outbound_http = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.6" (instance))
            (import "wasi:io/streams@0.2.9" (instance))
            (import "wasi:random/random@0.3.0" (instance))
        )"#,
    )
    .unwrap();
    let problems = violations(&outbound_http);
    for expected in [
        "imports wasi:http/outgoing-handler@0.2.6",
        "imports wasi:io/streams@0.2.9",
        "imports wasi:random/random@0.3.0",
        "does not export wasi:http/incoming-handler",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {problems:#?}");
    }
}

#[test]
fn older_compatible_versions_meet_the_contract() {
    let older = InterfaceName::parse("wasi:io/streams@0.2.0").unwrap();
    let contract = InterfaceName::parse("wasi:io/streams@0.2.6").unwrap();
    assert!(older.satisfied_by(&contract));
    assert!(!contract.satisfied_by(&older), "a newer import than the host offers is refused");
    assert!(!InterfaceName::parse("wasi:io/poll@0.2.0").unwrap().satisfied_by(&contract));
}
