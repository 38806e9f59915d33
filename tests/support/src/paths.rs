//! Where the build put things, found from the running binary itself (tests run from
//! `<target>/<profile>/deps/`, binaries from `<target>/<profile>/`), whatever
//! `CARGO_TARGET_DIR` says.

use std::path::PathBuf;

/// The components `spin.toml` wires, each built from the cargo package of the same name.
pub const COMPONENTS: [&str; 4] = ["identity", "accounts", "transfers", "web"];

/// The policy plugins written in Rust (`policies/`), cargo packages built for wasm32-wasip2
/// with the components; each file is named after its package (`policy_fees.wasm`). All but
/// `policy-pass` speak the current contract, wasmpay:policy@0.2.0; it speaks 0.1.0.
pub const RUST_POLICIES: [&str; 4] = ["policy-standard", "policy-fees", "policy-velocity", "policy-pass"];

/// Policy plugins that misbehave on purpose, for the tests (`tests/plugins/`): one built
/// as the Rust policies are, and one importing Spin capabilities, built as the components.
pub const TEST_POLICIES: [&str; 2] = ["policy-misbehaving", "policy-nosy"];

/// `spin.toml`'s policy slots of the transfers component: dependency key and plugin package.
pub const POLICY_SLOTS: [(&str, &str); 4] = [
    ("first-policy", "policy-standard"),
    ("second-policy", "policy-fees"),
    ("third-policy", "policy-velocity"),
    (COMPATIBILITY_SLOT, "policy-pass"),
];

/// The slot of the transfers component for a plugin built against contract 0.1.0
/// (`wit/deps/policy@0.1.0`); the other slots speak 0.2.0.
pub const COMPATIBILITY_SLOT: &str = "wasmpay:policy/policy@0.1.0";

/// The files of `spin.toml`'s policy slots as this build made them, by (component, key):
/// what `HostConfig::dependency_sources` and `SpinUp::dependency_sources` take.
pub fn policy_slot_sources() -> std::collections::BTreeMap<(String, String), PathBuf> {
    POLICY_SLOTS
        .iter()
        .map(|(key, package)| (("transfers".to_owned(), (*key).to_owned()), policy(package)))
        .collect()
}

/// A Rust policy plugin's component, by package name.
pub fn policy(package: &str) -> PathBuf {
    component(&package.replace('-', "_"))
}

/// The JavaScript policy plugin (`policies/blocklist-js`), built by `cargo xtask build`.
pub fn js_policy() -> PathBuf {
    let path = target_dir().join("policies/blocklist-js.wasm");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the plugins first",
        path.display()
    );
    path
}

/// The repository root (holds `spin.toml`). Every package using this is two levels below
/// it; `cargo test`/`cargo run` name that package at run time, which wins over the path
/// compiled in (clones sharing one `CARGO_TARGET_DIR` share the compiled binaries too).
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// `<target>/<profile>`: where native binaries such as `bridge` are.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running binary has a path");
    let dir = exe.parent().expect("the running binary is in a directory");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("deps/ has a parent").to_owned(),
        _ => dir.to_owned(),
    }
}

/// `<target>`.
pub fn target_dir() -> PathBuf {
    profile_dir().parent().expect("the profile directory has a parent").to_owned()
}

/// A native binary of the workspace, built by `cargo xtask build` (or `cargo build`).
pub fn binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds it first",
        path.display()
    );
    path
}

/// A component built for wasm32-wasip2 in release mode by `cargo xtask build` or `spin build`.
pub fn component(name: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`, which builds the components first",
        path.display()
    );
    path
}

/// The Chromium the browser tests drive: `$CHROMIUM`, else Debian's `/usr/bin/chromium`
/// (which may be missing: the caller checks).
pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}
