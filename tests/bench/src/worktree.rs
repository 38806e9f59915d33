//! Builds of an earlier commit, for measuring it beside this checkout: its components built
//! for wasm32-wasip2 in a git worktree (cargo's output kept in `<target>/<name>`, so a second
//! run compiles nothing), copied out with its manifest before the worktree goes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, ensure};
use wasmpay_test_support::paths;

pub struct CommitBuild {
    /// Each package's component, by package name.
    pub components: BTreeMap<String, PathBuf>,
    pub manifest: PathBuf,
}

/// Builds `packages` of `commit` (release, wasm32-wasip2) into `<target>/<target_name>`.
pub fn build(scratch: &Path, commit: &str, packages: &[&str], target_name: &str) -> anyhow::Result<CommitBuild> {
    let worktree = scratch.join(format!("worktree-{commit}"));
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("git").args(args).current_dir(paths::repo_root()).status().context("cannot run git")?;
        ensure!(status.success(), "git {} failed", args.join(" "));
        Ok(())
    };
    let worktree_arg = worktree.display().to_string();
    git(&["worktree", "add", "--detach", &worktree_arg, commit])?;
    let built = (|| {
        let target = paths::target_dir().join(target_name);
        println!("building {} of {commit} into {}", packages.join(", "), target.display());
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--locked", "--target", "wasm32-wasip2", "--release"]);
        for package in packages {
            cargo.args(["-p", package]);
        }
        let status = cargo.env("CARGO_TARGET_DIR", &target).current_dir(&worktree).status().context("cannot run cargo")?;
        ensure!(status.success(), "building {} of {commit} failed", packages.join(", "));
        let mut components = BTreeMap::new();
        for package in packages {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let copy = scratch.join(format!("{commit}-{file}"));
            std::fs::copy(target.join("wasm32-wasip2/release").join(&file), &copy)?;
            components.insert((*package).to_owned(), copy);
        }
        let manifest = scratch.join(format!("spin-{commit}.toml"));
        std::fs::copy(worktree.join("spin.toml"), &manifest)?;
        anyhow::Ok(CommitBuild { components, manifest })
    })();
    git(&["worktree", "remove", "--force", &worktree_arg])?;
    built
}
