//! A host that runs wasmpay's components the way Spin 4.0.2 does, on the wasmtime release it
//! embeds: routes, variables and `allowed_outbound_hosts` from `spin.toml`,
//! `spin:postgres@4.2.0` (and 4.0.0) over pooled connections with Spin's type mapping, a
//! fresh instance per request for WASIp2 components and reused instances, several requests
//! at once, for WASIp3 components.
//!
//! One module per capability, as in Spin's own crates:

mod allowed_hosts;
mod bindings;
pub mod dependencies;
mod http;
pub mod manifest;
pub mod postgres;
mod routes;
pub mod runtime;
pub mod runtime_config;
pub mod variables;

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub use allowed_hosts::{AddressRefused, AllowedHost, check_postgres_address};
pub use postgres::SpinVersion;
pub use runtime::InstanceReuse;
pub use bindings::spin::postgres4_2_0::postgres as pg_types;
pub use routes::{RouteMatch, Router};

use crate::{
    http::App,
    manifest::Manifest,
    runtime::{ComponentRuntime, ComponentSpec},
    variables::{ComponentVariables, Provider, Resolver},
};

/// The largest request body the host buffers for a component (Spin streams without limit;
/// this host caps it and answers 413 beyond).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 1 << 20;

/// How to run an application.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub manifest: PathBuf,
    /// Values that win over every other provider (`spin up --variable name=value`).
    pub variables: BTreeMap<String, String>,
    /// Providers from a runtime config, consulted after `variables`, before the environment.
    pub providers: Vec<Provider>,
    /// Replaces a component's `source` (for builds outside the manifest's target directory).
    pub component_sources: BTreeMap<String, PathBuf>,
    /// Replaces the `path` of a component's dependency, by component id and dependency key.
    pub dependency_sources: BTreeMap<(String, String), PathBuf>,
    pub listen: SocketAddr,
    pub max_request_body_bytes: usize,
    /// Whose Postgres behaviour to reproduce (default: Spin 4.0.2, the latest release).
    pub spin_version: SpinVersion,
    /// How WASIp3 components' instances are reused (default: Spin's).
    pub reuse: InstanceReuse,
    /// The most bytes a linear memory of an instance may grow to (runtime config
    /// `max_instance_memory`; none: no limit).
    pub max_instance_memory: Option<usize>,
}

impl HostConfig {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            variables: BTreeMap::new(),
            providers: Vec::new(),
            component_sources: BTreeMap::new(),
            dependency_sources: BTreeMap::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            spin_version: SpinVersion::default(),
            reuse: InstanceReuse::default(),
            max_instance_memory: None,
        }
    }

    pub fn variable(mut self, name: &str, value: impl Into<String>) -> Self {
        self.variables.insert(name.to_owned(), value.into());
        self
    }

    pub fn component_source(mut self, id: &str, path: impl Into<PathBuf>) -> Self {
        self.component_sources.insert(id.to_owned(), path.into());
        self
    }

    pub fn dependency_source(mut self, id: &str, key: &str, path: impl Into<PathBuf>) -> Self {
        self.dependency_sources.insert((id.to_owned(), key.to_owned()), path.into());
        self
    }
}

/// A host serving on `addr` until it is stopped or dropped.
pub struct RunningHost {
    addr: SocketAddr,
    routes: Vec<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningHost {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(route, component)` pairs as served.
    pub fn routes(&self) -> &[(String, String)] {
        &self.routes
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The manifest's components with the dependency files `config` replaces.
fn with_dependency_sources(
    mut components: BTreeMap<String, manifest::Component>,
    config: &HostConfig,
) -> anyhow::Result<BTreeMap<String, manifest::Component>> {
    for ((id, key), source) in &config.dependency_sources {
        let dependency = components
            .get_mut(id)
            .and_then(|component| component.dependencies.iter_mut().find(|d| d.key == *key))
            .with_context(|| format!("component {id} has no dependency {key:?} to take from another file"))?;
        dependency.source = source.clone();
    }
    Ok(components)
}

/// wasmpay's start-up check of every component dependency ([`dependencies::check_imports`]),
/// for launchers of another runtime (`spin up`): a plugin this host refuses to load, they
/// refuse to start.
pub fn check_dependencies(config: &HostConfig) -> anyhow::Result<()> {
    let manifest = Manifest::load(&config.manifest)?;
    for (id, component) in with_dependency_sources(manifest.components, config)? {
        for dependency in &component.dependencies {
            dependencies::check_imports(&id, dependency)?;
        }
    }
    Ok(())
}

/// Loads the application (failing like `spin up` would on a bad manifest, a missing
/// required variable or a component that does not fit) and starts serving.
pub async fn start(config: HostConfig) -> anyhow::Result<RunningHost> {
    let manifest = Manifest::load(&config.manifest)?;
    let mut providers = vec![Provider::Static(config.variables.clone())];
    providers.extend(config.providers.iter().cloned());
    let resolver = Arc::new(Resolver::new(manifest.variables.clone(), providers)?);
    resolver.ensure_required_resolvable()?;
    let (router, duplicates) = Router::build(&manifest.routes)?;
    if !duplicates.is_empty() {
        eprintln!("The following component routes are duplicates and will never be used:");
        for duplicate in duplicates {
            eprintln!("{duplicate}");
        }
    }
    let mut components = HashMap::new();
    for (id, component) in with_dependency_sources(manifest.components, &config)? {
        for template in &component.allowed_outbound_hosts {
            if let Some(entry) = template.literal() {
                AllowedHost::parse(&entry).with_context(|| format!("component {id}: invalid allowed_outbound_hosts entry"))?;
            }
        }
        let source = config.component_sources.get(&id).cloned().unwrap_or(component.source);
        let variables = ComponentVariables {
            component_id: id.clone(),
            templates: component.variables,
            resolver: resolver.clone(),
        };
        let runtime = ComponentRuntime::load(ComponentSpec {
            spin_version: config.spin_version,
            source: &source,
            dependencies: &component.dependencies,
            variables,
            allowed_host_templates: component.allowed_outbound_hosts,
            environment: component.environment.into_iter().collect(),
            reuse: config.reuse,
            max_instance_memory: config.max_instance_memory,
        })
        .with_context(|| format!("component {id}"))?;
        components.insert(id, runtime);
    }
    let routes = manifest
        .routes
        .iter()
        .map(|r| (r.route.clone(), r.component.clone()))
        .collect();
    let app = Arc::new(App {
        router,
        components,
        max_request_body_bytes: config.max_request_body_bytes,
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel();
    let task = tokio::spawn(http::serve(listener, app, stopped));
    Ok(RunningHost {
        addr,
        routes,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}
