//! The platform contract (`wit/world.wit`): a built component may import only what the
//! world `component` imports and must export `wasi:http/handler` (WASIp3), or fit the world
//! `component-wasip2` (exporting `wasi:http/incoming-handler`), which third parties' older
//! components still meet; wasmpay's own are WASIp3. The transfers component may also import
//! its policy slots (`wit/policy/policy.wit`, world `engine`).
//! A policy plugin may import only what the world `plugin-runtime` of its contract version
//! imports (the Rust ones import nothing) and must export that version's
//! `wasmpay:policy/policy`: 0.2.0 (`wit/policy`) for the engine's first three slots, the
//! frozen 0.1.0 (`wit/deps/policy@0.1.0`) for its compatibility slot. Interfaces
//! match as Spin's and wasmtime's linkers match them: same package and interface, a
//! semver-compatible version (same major, and same minor while the major is 0; a
//! pre-release such as 0.3.0-rc-2026-03-15 only itself), and every function the component
//! imports present in the contract's version of the interface. An exported function must
//! have exactly the contract's types, as Spin requires of a dependency.

use std::{collections::BTreeMap, path::Path};

use semver::Version;
use sha2::{Digest, Sha256};
use wasmpay_test_support::paths;
use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldId, WorldItem};

use crate::app::COMPONENTS;

/// `ns:pkg/interface@version` and the functions used from it, each with its signature.
#[derive(Debug, Clone, PartialEq)]
struct Interface {
    path: String,
    version: Option<Version>,
    functions: BTreeMap<String, String>,
}

impl Interface {
    fn compatible_with(&self, provided: &Interface) -> bool {
        if self.path != provided.path {
            return false;
        }
        match (&self.version, &provided.version) {
            (None, None) => true,
            (Some(wanted), Some(offered)) if !wanted.pre.is_empty() || !offered.pre.is_empty() => wanted == offered,
            (Some(wanted), Some(offered)) => {
                wanted.major == offered.major && (wanted.major != 0 || wanted.minor == offered.minor)
            }
            _ => false,
        }
    }
}

/// An item of a world: an interface, or (`Err`) the name of a bare function or type.
type Item = Result<Interface, String>;

/// A type spelled out down to its primitives, field and case names included: equal for two
/// types from different resolves exactly when the canonical ABI sees the same type.
fn shape(resolve: &Resolve, ty: &Type) -> String {
    let Type::Id(id) = ty else {
        return format!("{ty:?}");
    };
    let typedef = &resolve.types[*id];
    let inner = |ty: &Type| shape(resolve, ty);
    let optional = |ty: &Option<Type>| ty.as_ref().map_or_else(|| "_".to_owned(), inner);
    let named = |id: &wit_parser::TypeId| resolve.types[*id].name.clone().unwrap_or_default();
    let joined = |parts: Vec<String>| parts.join(", ");
    match &typedef.kind {
        TypeDefKind::Type(ty) => inner(ty),
        TypeDefKind::Record(record) => {
            format!(
                "record {{{}}}",
                joined(record.fields.iter().map(|f| format!("{}: {}", f.name, inner(&f.ty))).collect())
            )
        }
        TypeDefKind::Variant(variant) => {
            format!(
                "variant {{{}}}",
                joined(variant.cases.iter().map(|c| format!("{}({})", c.name, optional(&c.ty))).collect())
            )
        }
        TypeDefKind::Enum(enumeration) => {
            format!("enum {{{}}}", joined(enumeration.cases.iter().map(|c| c.name.clone()).collect()))
        }
        TypeDefKind::Flags(flags) => {
            format!("flags {{{}}}", joined(flags.flags.iter().map(|f| f.name.clone()).collect()))
        }
        TypeDefKind::Tuple(tuple) => format!("tuple<{}>", joined(tuple.types.iter().map(inner).collect())),
        TypeDefKind::Option(ty) => format!("option<{}>", inner(ty)),
        TypeDefKind::List(ty) => format!("list<{}>", inner(ty)),
        TypeDefKind::Result(result) => format!("result<{}, {}>", optional(&result.ok), optional(&result.err)),
        TypeDefKind::Future(ty) => format!("future<{}>", optional(ty)),
        TypeDefKind::Stream(ty) => format!("stream<{}>", optional(ty)),
        // Resources are told apart by name: their methods are the interface's functions.
        TypeDefKind::Resource => format!("resource {}", typedef.name.clone().unwrap_or_default()),
        TypeDefKind::Handle(wit_parser::Handle::Own(id)) => format!("own<{}>", named(id)),
        TypeDefKind::Handle(wit_parser::Handle::Borrow(id)) => format!("borrow<{}>", named(id)),
        other => format!("{other:?}"),
    }
}

fn signature(resolve: &Resolve, function: &Function) -> String {
    let params: Vec<String> =
        function.params.iter().map(|p| format!("{}: {}", p.name, shape(resolve, &p.ty))).collect();
    let result = function.result.as_ref().map_or_else(|| "_".to_owned(), |ty| shape(resolve, ty));
    format!("func({}) -> {result}", params.join(", "))
}

/// The interfaces a world imports and exports.
fn world_interfaces(resolve: &Resolve, world: WorldId) -> (Vec<Item>, Vec<Item>) {
    let world = &resolve.worlds[world];
    let describe = |items: &wit_parser::IndexMap<wit_parser::WorldKey, WorldItem>| {
        items
            .iter()
            .map(|(key, item)| {
                let name = resolve.name_world_key(key);
                let WorldItem::Interface { id, .. } = item else {
                    return Err(name);
                };
                let (path, version) = match name.split_once('@') {
                    Some((path, version)) => (path.to_owned(), Some(Version::parse(version).map_err(|_| name.clone())?)),
                    None => (name.clone(), None),
                };
                Ok(Interface {
                    path,
                    version,
                    functions: resolve.interfaces[*id]
                        .functions
                        .iter()
                        .map(|(name, function)| (name.clone(), signature(resolve, function)))
                        .collect(),
                })
            })
            .collect()
    };
    (describe(&world.imports), describe(&world.exports))
}

struct Contract {
    /// What the contract is called in messages: "the platform world".
    name: &'static str,
    imports: Vec<Interface>,
    exports: Vec<Interface>,
}

/// The contract of the worlds `worlds` of the WIT package in `wit/<dir>`: what any of them
/// imports may be imported, what they export must be exported.
fn contract(name: &'static str, dir: &str, worlds: &[&str]) -> Contract {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(paths::repo_root().join("wit").join(dir))
        .unwrap_or_else(|e| panic!("wit/{dir} parses: {e:#}"));
    let mut contract = Contract {
        name,
        imports: Vec::new(),
        exports: Vec::new(),
    };
    for world in worlds {
        let world = resolve.select_world(&[package], Some(world)).expect("the world exists");
        let (imports, exports) = world_interfaces(&resolve, world);
        let only_interfaces = |items: Vec<Item>| {
            items
                .into_iter()
                .map(|item| item.unwrap_or_else(|name| panic!("the contract names an interface, not {name}")))
                .collect::<Vec<_>>()
        };
        contract.imports.extend(only_interfaces(imports));
        contract.exports.extend(only_interfaces(exports));
    }
    contract
}

/// A wasi-http component of the platform (`wit/world.wit`, world `component`): WASIp3.
fn platform() -> Contract {
    contract("the platform world", "", &["component"])
}

/// A WASIp2 component of the platform (`wit/world.wit`, world `component-wasip2`).
fn platform_wasip2() -> Contract {
    contract("the WASIp2 platform world", "", &["component-wasip2"])
}

/// The transfers component: a platform component that also imports the policy slots
/// (`wit/policy/policy.wit`, world `engine`).
fn engine() -> Contract {
    let mut engine = platform();
    engine.imports.extend(contract("", "policy", &["engine"]).imports);
    engine.name = "the platform and engine worlds";
    engine
}

/// A policy plugin of the current contract (`wit/policy/policy.wit`, world `plugin-runtime`
/// of wasmpay:policy@0.2.0), for the engine's first three slots.
fn plugin() -> Contract {
    contract("the plugin world", "policy", &["plugin-runtime"])
}

/// A policy plugin of contract 0.1.0 (`wit/deps/policy@0.1.0`), for the engine's
/// compatibility slot.
fn plugin_0_1() -> Contract {
    contract("the 0.1.0 plugin world", "policy", &["wasmpay:policy/plugin-runtime@0.1.0"])
}

/// The contract a plugin in `spin.toml`'s slot `key` must meet.
fn plugin_for_slot(key: &str) -> Contract {
    if key == paths::COMPATIBILITY_SLOT { plugin_0_1() } else { plugin() }
}

/// Every way a component breaks the contract; empty when it fits.
fn violations(contract: &Contract, wasm: &[u8]) -> Vec<String> {
    let (resolve, world) = match wit_component::decode(wasm) {
        Ok(wit_component::DecodedWasm::Component(resolve, world)) => (resolve, world),
        Ok(_) => return vec!["not a component (a WIT package)".into()],
        Err(e) => return vec![format!("not a component: {e:#}")],
    };
    let (imports, exports) = world_interfaces(&resolve, world);
    let name = contract.name;
    let mut problems = Vec::new();
    for import in imports {
        let import = match import {
            Ok(import) => import,
            Err(item) => {
                problems.push(format!("imports {item}, which is not an interface of {name}"));
                continue;
            }
        };
        let shown = match &import.version {
            Some(version) => format!("{}@{version}", import.path),
            None => import.path.clone(),
        };
        match contract.imports.iter().find(|provided| import.compatible_with(provided)) {
            None => problems.push(format!("imports {shown}, which {name} does not provide")),
            Some(provided) => {
                for function in import.functions.keys().filter(|f| !provided.functions.contains_key(*f)) {
                    problems.push(format!("imports {shown} function {function}, which {name} lacks"));
                }
            }
        }
    }
    let exported: Vec<Interface> = exports.into_iter().filter_map(Result::ok).collect();
    for required in &contract.exports {
        let Some(export) = exported.iter().find(|e| e.compatible_with(required)) else {
            problems.push(format!("does not export {}", required.path));
            continue;
        };
        for (function, wanted) in &required.functions {
            match export.functions.get(function) {
                None => problems.push(format!("exports {} without function {function}", required.path)),
                Some(found) if found != wanted => problems.push(format!(
                    "exports {} function {function} as {found}, where {name} has {wanted}",
                    required.path
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

fn check_file(contract: &Contract, path: &Path) -> Vec<String> {
    violations(contract, &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn every_built_component_meets_the_platform_contract() {
    for component in COMPONENTS {
        let contract = if component == "transfers" { engine() } else { platform() };
        let problems = check_file(&contract, &paths::component(component));
        assert!(problems.is_empty(), "{component}.wasm breaks the contract:\n{}", problems.join("\n"));
    }
}

#[test]
fn a_component_importing_outside_the_world_is_rejected() {
    let outside = wat::parse_str(
        r#"(component
            (import "wasi:http/outgoing-handler@0.2.6" (instance))
            (import "wasi:random/random@0.3.0" (instance))
            (import "wasi:random/insecure@0.2.9" (instance (export "get-frobnicated-bytes" (func))))
        )"#,
    )
    .unwrap();
    let problems = violations(&platform(), &outside);
    for expected in [
        "imports wasi:http/outgoing-handler@0.2.6, which the platform world does not provide",
        "imports wasi:random/random@0.3.0, which the platform world does not provide",
        "imports wasi:random/insecure@0.2.9 function get-frobnicated-bytes",
        "does not export wasi:http/handler",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {problems:#?}");
    }
}

/// wasmpay's components are WASIp3; the older shape is a contract of its own, which they do
/// not meet (they export the 0.3 handler) and a WASIp2 component does.
#[test]
fn wasip2_components_meet_the_wasip2_world_and_ours_are_wasip3() {
    for component in ["identity", "accounts", "web"] {
        let problems = check_file(&platform_wasip2(), &paths::component(component));
        assert!(problems.iter().any(|p| p == "does not export wasi:http/incoming-handler"), "{component}: {problems:#?}");
    }
    let legacy = wat::parse_str(
        r#"(component
            (import "spin:postgres/postgres@4.0.0" (instance))
            (import "fermyon:spin/variables@2.0.0" (instance))
            (import "wasi:cli/environment@0.2.3" (instance))
            (import "spin:variables/variables@3.0.0" (instance))
        )"#,
    )
    .unwrap();
    let problems = violations(&platform_wasip2(), &legacy);
    assert_eq!(
        problems,
        [
            "imports spin:variables/variables@3.0.0, which the WASIp2 platform world does not provide",
            "does not export wasi:http/incoming-handler",
        ],
        "a WASIp2 component imports Postgres 4.0.0 and variables 2.0.0"
    );
}

#[test]
fn every_shipped_policy_plugin_meets_the_contract_of_its_slot_and_the_rust_ones_import_nothing() {
    for (slot, package) in paths::POLICY_SLOTS {
        let wasm = std::fs::read(paths::policy(package)).unwrap();
        let problems = violations(&plugin_for_slot(slot), &wasm);
        assert!(problems.is_empty(), "{package} breaks the contract of slot {slot}:\n{}", problems.join("\n"));
        let Ok(wit_component::DecodedWasm::Component(resolve, world)) = wit_component::decode(&wasm) else {
            panic!("{package} is not a component");
        };
        assert!(resolve.worlds[world].imports.is_empty(), "{package} imports {:?}", resolve.worlds[world].imports.keys());
    }
    let shipped: Vec<&str> = paths::POLICY_SLOTS.iter().map(|(_, package)| *package).collect();
    assert!(paths::RUST_POLICIES.iter().all(|package| shipped.contains(package)), "a Rust plugin fills no slot");
    // The JavaScript plugin is built against 0.1.0, for the compatibility slot.
    let problems = check_file(&plugin_0_1(), &paths::js_policy());
    assert!(problems.is_empty(), "the JavaScript plugin breaks the 0.1.0 plugin contract:\n{}", problems.join("\n"));
}

/// A released contract version never changes: plugins built against it must keep fitting
/// the engine's slot for it. (Contract changes come as a new version: README, "Writing a
/// policy plugin".)
#[test]
fn contract_0_1_is_frozen() {
    let text = std::fs::read(paths::repo_root().join("wit/deps/policy@0.1.0/policy.wit")).unwrap();
    let digest: String = Sha256::digest(&text).iter().map(|byte| format!("{byte:02x}")).collect();
    assert_eq!(
        digest, "15bb1368a66b9b3057ce154126a75e8e0902fb0da5839ab0255494a0beaf9b98",
        "wit/deps/policy@0.1.0 was edited"
    );
}

/// A plugin of one version cannot fill a slot of another: the export is named with its
/// version, and a plugin naming a version with another version's types is refused too.
#[test]
fn a_plugin_fits_only_the_contract_version_it_was_built_against() {
    let current = std::fs::read(paths::policy("policy-standard")).unwrap();
    assert_eq!(violations(&plugin_0_1(), &current), ["does not export wasmpay:policy/policy"]);
    let problems = check_file(&plugin(), &paths::js_policy());
    assert_eq!(problems, ["does not export wasmpay:policy/policy"], "a 0.1.0 plugin fits a 0.2.0 slot");

    // 0.2.0's types under 0.1.0's name: the interface of wit/policy in a package 0.1.0.
    let text = std::fs::read_to_string(paths::repo_root().join("wit/policy/policy.wit")).unwrap();
    let start = text.find("interface policy {").unwrap();
    let interface = &text[start..start + text[start..].find("\n}\n").unwrap() + 2];
    let impostor = format!("package wasmpay:policy@0.1.0;\n{interface}\nworld plugin {{ export policy; }}\n");
    let mut resolve = Resolve::default();
    let package = resolve.push_str("impostor.wit", &impostor).unwrap();
    let world = resolve.select_world(&[package], Some("plugin")).unwrap();
    let mut module = wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)
        .unwrap();
    let impostor = wit_component::ComponentEncoder::default().module(&module).unwrap().encode().unwrap();
    let problems = violations(&plugin_0_1(), &impostor);
    assert!(
        matches!(problems.as_slice(), [problem] if problem.starts_with("exports wasmpay:policy/policy function evaluate as")
            && problem.contains("hold, capture")),
        "{problems:#?}"
    );
}

#[test]
fn a_plugin_importing_a_capability_is_rejected() {
    let problems = check_file(&plugin(), &paths::policy("policy-nosy"));
    assert!(
        problems.iter().any(|p| p == "imports spin:variables/variables@3.0.0, which the plugin world does not provide"),
        "{problems:#?}"
    );
    let outside = wat::parse_str(
        r#"(component
            (import "wasi:filesystem/preopens@0.2.6" (instance))
            (import "wasi:sockets/tcp@0.2.6" (instance))
            (import "spin:postgres/postgres@4.0.0" (instance))
            (import "wasi:cli/environment@0.2.6" (instance))
        )"#,
    )
    .unwrap();
    let problems = violations(&plugin(), &outside);
    for expected in [
        "imports wasi:filesystem/preopens@0.2.6, which the plugin world does not provide",
        "imports wasi:sockets/tcp@0.2.6, which the plugin world does not provide",
        "imports spin:postgres/postgres@4.0.0, which the plugin world does not provide",
        "imports wasi:cli/environment@0.2.6, which the plugin world does not provide",
        "does not export wasmpay:policy/policy",
    ] {
        assert!(problems.iter().any(|p| p.starts_with(expected)), "missing {expected:?} in {problems:#?}");
    }
}

/// The host's start-up check (and so `cargo xtask up` and the tests' `spin up`) allows
/// exactly what the plugin world of each contract version allows.
#[test]
fn the_start_up_check_allows_what_the_plugin_world_allows() {
    let mut checked: Vec<String> =
        wasmpay_host::dependencies::RUNTIME_IMPORTS.iter().map(|i| (*i).to_owned()).collect();
    checked.sort();
    for contract in [plugin(), plugin_0_1()] {
        let mut allowed: Vec<String> = contract.imports.into_iter().map(|i| i.path).collect();
        allowed.sort();
        assert_eq!(allowed, checked, "{}", contract.name);
    }
}

#[test]
fn any_compatible_version_meets_the_contract() {
    let interface = |name: &str| {
        let (path, version) = name.split_once('@').unwrap();
        Interface {
            path: path.to_owned(),
            version: Some(Version::parse(version).unwrap()),
            functions: BTreeMap::new(),
        }
    };
    let contract = interface("wasi:io/streams@0.2.6");
    assert!(interface("wasi:io/streams@0.2.0").compatible_with(&contract));
    assert!(interface("wasi:io/streams@0.2.12").compatible_with(&contract), "linkers match any 0.2.x");
    assert!(!interface("wasi:io/streams@0.3.0").compatible_with(&contract));
    assert!(!interface("wasi:io/poll@0.2.6").compatible_with(&contract));
    let release_candidate = interface("wasi:http/types@0.3.0-rc-2026-03-15");
    assert!(interface("wasi:http/types@0.3.0-rc-2026-03-15").compatible_with(&release_candidate));
    assert!(!interface("wasi:http/types@0.3.0").compatible_with(&release_candidate), "a release is not its candidate");
    assert!(!interface("wasi:http/types@0.3.0-rc-2025-09-16").compatible_with(&release_candidate));
}
