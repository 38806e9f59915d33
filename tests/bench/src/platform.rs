//! The platform under benchmark: a local PostgreSQL with realistic durability settings and a migrated database (or a
//! database given by URL), and the servers under test, each reached at a URL: the components under `spin up` (the
//! runtime users run), under the in-process wasmpay host, or an external server.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use wasmpay_host::{HostConfig, RunningHost};
use wasmpay_test_support::{
    cluster::LocalCluster,
    paths, postgres,
    spin::{self, SpinApp, SpinUp},
};

use crate::cpu;

pub struct Platform {
    /// The cluster this process started; `None` for a database given by URL.
    pub cluster: Option<LocalCluster>,
    pub database_url: String,
    /// What every runtime started here gets, as `spin up --variable name=value` would give it.
    variables: BTreeMap<String, String>,
    dir: TempDir,
}

/// A directory removed on drop.
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        Self::named("bench")
    }

    /// `wasmpay-<label>-<pid>` in the temporary directory.
    pub(crate) fn named(label: &str) -> anyhow::Result<Self> {
        let dir = Self(std::env::temp_dir().join(format!("wasmpay-{label}-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0)?;
        Ok(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef0123";


/// The runtimes this benchmark can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `spin up` (the Spin CLI) as a child process.
    Spin,
    /// wasmpay-host, in this process.
    Host,
}

impl Platform {
    /// Starts a local cluster, creates and migrates a database; servers started later get `variables` on top of the
    /// ones that connect them to it.
    pub async fn start(variables: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let cluster = LocalCluster::start(
            &dir.0,
            wasmpay_test_support::cluster::free_port()?,
            &["max_connections=300", "shared_buffers=256MB", "shared_preload_libraries=pg_stat_statements"],
        )?;
        let admin = postgres::connect(&cluster.url("postgres")).await?;
        admin.batch_execute("CREATE DATABASE bench").await?;
        let database_url = cluster.url("bench");
        postgres::migrate(&database_url).await?;
        let mut all: BTreeMap<String, String> = [
            ("db_url", database_url.clone()),
            ("db_host", format!("127.0.0.1:{}", cluster.port())),
            ("jwt_secret", JWT_SECRET.to_owned()),
            ("event_encryption_key", "YmVuY2gtZXZlbnQta2V5LTMyLWJ5dGVzLWxvbmchISE=".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        all.extend(variables.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Ok(Self {
            cluster: Some(cluster),
            database_url,
            variables: all,
            dir,
        })
    }

    /// A (migrated) database this process started by other means, e.g. a Citus coordinator: servers started
    /// here connect to `database_url` at `host_port`.
    pub fn serving(database_url: &str, host_port: &str) -> anyhow::Result<Self> {
        let variables = [
            ("db_url", database_url.to_owned()),
            ("db_host", host_port.to_owned()),
            ("jwt_secret", JWT_SECRET.to_owned()),
            ("event_encryption_key", "YmVuY2gtZXZlbnQta2V5LTMyLWJ5dGVzLWxvbmchISE=".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Self {
            cluster: None,
            database_url: database_url.to_owned(),
            variables,
            dir: TempDir::new()?,
        })
    }

    /// A database someone else runs (already migrated, used by the server under test): nothing is started.
    pub fn external(database_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            cluster: None,
            database_url: database_url.to_owned(),
            variables: BTreeMap::new(),
            dir: TempDir::new()?,
        })
    }

    /// The postmaster, when the cluster is ours (to pin it and count its CPU).
    pub fn postmaster(&self) -> Option<i32> {
        self.cluster.as_ref().map(LocalCluster::pid)
    }

    /// A scratch directory, removed with the platform.
    pub fn scratch(&self) -> &Path {
        &self.dir.0
    }

    /// Serves the components from the release wasm builds under `runtime`, with the same variables either way.
    pub async fn serve(&self, runtime: Runtime) -> anyhow::Result<Server> {
        anyhow::ensure!(self.variables.contains_key("db_url"), "servers are started only on a database this process started");
        let sources = paths::COMPONENTS.iter().map(|c| ((*c).to_owned(), paths::component(c))).collect();
        let build = Build {
            manifest: paths::repo_root().join("spin.toml"),
            component_sources: sources,
            dependency_sources: paths::policy_slot_sources(),
            instance_flags: spin::instance_flags(),
        };
        self.serve_build(runtime, build, &[]).await
    }

    /// Serves `build` under `runtime`, with the platform's variables and `overrides` on top.
    pub async fn serve_build(&self, runtime: Runtime, build: Build, overrides: &[(&str, String)]) -> anyhow::Result<Server> {
        let mut variables = self.variables.clone();
        variables.extend(overrides.iter().map(|(name, value)| ((*name).to_owned(), value.clone())));
        Ok(match runtime {
            Runtime::Host => {
                let mut config = HostConfig::new(build.manifest);
                config.reuse = wasmpay_host::InstanceReuse::from_flags(&build.instance_flags)?;
                config.variables = variables;
                config.component_sources = build.component_sources;
                config.dependency_sources = build.dependency_sources;
                let host = wasmpay_host::start(config).await.context("the host did not start")?;
                Server {
                    name: "wasmpay-host".into(),
                    running: Running::Host(host),
                }
            }
            Runtime::Spin => {
                let up = SpinUp {
                    manifest: build.manifest,
                    variables,
                    component_sources: build.component_sources,
                    dependency_sources: build.dependency_sources,
                    instance_flags: build.instance_flags,
                    ..SpinUp::default()
                };
                let spin = SpinApp::start(&up).await.context("spin up did not start")?;
                Server {
                    name: "Spin".into(),
                    running: Running::Spin(spin),
                }
            }
        })
    }
}

/// A build of the application: its manifest and the files its components and their
/// dependencies come from.
pub struct Build {
    pub manifest: PathBuf,
    pub component_sources: BTreeMap<String, PathBuf>,
    pub dependency_sources: BTreeMap<(String, String), PathBuf>,
    /// How `spin up` (or the host) reuses instances: wasmpay's flags unless a run compares others.
    pub instance_flags: Vec<(String, String)>,
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
    }
}

/// A server under test, reached at `http://{authority}`; stopped on drop.
pub struct Server {
    pub name: String,
    running: Running,
}

enum Running {
    Host(RunningHost),
    Spin(SpinApp),
    /// At this host:port.
    External(String),
}

impl Server {
    /// A server someone else runs, at `http://host:port`.
    pub fn external(url: &str) -> anyhow::Result<Self> {
        let Some(authority) = url.strip_prefix("http://").map(|rest| rest.trim_end_matches('/')) else {
            bail!("--target-url must be http://host:port, not {url}");
        };
        if authority.is_empty() || authority.contains('/') {
            bail!("--target-url must be http://host:port (no path), not {url}");
        }
        Ok(Self {
            name: format!("target {url}"),
            running: Running::External(authority.to_owned()),
        })
    }

    /// host:port.
    pub fn authority(&self) -> String {
        match &self.running {
            Running::Host(host) => host.addr().to_string(),
            Running::Spin(spin) => spin.addr().to_string(),
            Running::External(authority) => authority.clone(),
        }
    }

    /// The server's own process, when it runs in one this process started: `spin up` (which runs the application in
    /// a `spin trigger http` child of its own).
    pub fn pid(&self) -> Option<i32> {
        match &self.running {
            Running::Spin(spin) => Some(spin.pid()),
            Running::Host(_) | Running::External(_) => None,
        }
    }

    /// Whether this process sees the server's CPU: its own process (Spin) or this one (the host). An external
    /// server's is not counted.
    pub fn cpu_visible(&self) -> bool {
        !matches!(self.running, Running::External(_))
    }

    /// CPU used so far by the server's own processes (zero when it runs in this process, or elsewhere).
    pub fn process_cpu(&self) -> Duration {
        self.pid().map(cpu::tree_cpu).unwrap_or_default()
    }

    /// What the server printed so far, when that is known (Spin's log).
    pub fn output(&self) -> Option<String> {
        match &self.running {
            Running::Spin(spin) => Some(spin.output()),
            Running::Host(_) | Running::External(_) => None,
        }
    }
}
