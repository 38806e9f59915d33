//! The wasmtime side: one engine with the pooling allocator, each component compiled once
//! and pre-instantiated, and a fresh store and instance for every request (as Spin does
//! for wasi-http components).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

use anyhow::Context;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    component::{Component, HasSelf, Linker, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView, p2::bindings::ProxyPre,
};

use crate::{
    bindings::SpinCapabilities,
    dependencies::{self, Dependency},
    postgres,
    variables::ComponentVariables,
};

/// Concurrent instances the pool holds (Spin's default `SPIN_MAX_INSTANCE_COUNT`); a request
/// beyond it fails to instantiate.
const MAX_CONCURRENT_INSTANCES: u32 = 1_000;
const MB: usize = 1 << 20;

/// Everything a request's store holds.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    hooks: OutboundHttpDenied,
    pub(crate) variables: Arc<ComponentVariables>,
    pub(crate) postgres: postgres::InstanceState,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outbound HTTP is governed by `allowed_outbound_hosts`; wasmpay's manifest allows only
/// Postgres, so every outgoing HTTP request is denied, as Spin would deny it.
#[derive(Default)]
struct OutboundHttpDenied;

impl WasiHttpHooks for OutboundHttpDenied {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _config: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        eprintln!(
            "A component tried to make an outbound HTTP request to disallowed destination '{}'.",
            request.uri()
        );
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The process-wide engine: tests start many hosts and share compiled code. Configured as
/// Spin configures its engine (crates/core): the pooling allocator with Spin's limits, pages
/// kept resident between instances instead of decommitted, and epoch interruption.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
            .total_memories(MAX_CONCURRENT_INSTANCES)
            .total_tables(2 * MAX_CONCURRENT_INSTANCES)
            .total_stacks(MAX_CONCURRENT_INSTANCES)
            .total_core_instances(4 * MAX_CONCURRENT_INSTANCES)
            .table_elements(100_000)
            .max_component_instance_size(10 * MB)
            .max_core_instance_size(10 * MB)
            .max_core_instances_per_component(200)
            .max_tables_per_component(64)
            .max_memories_per_component(32)
            .max_tables_per_module(2)
            .max_memories_per_module(2)
            .max_memory_size(4 << 30)
            .linear_memory_keep_resident(2 * MB)
            .table_keep_resident(MB / 2);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&config).expect("the engine configuration is valid")
    })
}

/// Compiles a component, composed with its dependencies, once per process and version of
/// its files.
fn compile(source: &Path, dependencies: &[Dependency]) -> anyhow::Result<Component> {
    type Key = Vec<(PathBuf, SystemTime)>;
    static CACHE: OnceLock<Mutex<HashMap<Key, Component>>> = OnceLock::new();
    let mut key = Key::new();
    for path in std::iter::once(source).chain(dependencies.iter().map(|d| d.source.as_path())) {
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .with_context(|| format!("cannot read component {}", path.display()))?;
        key.push((path.to_owned(), modified));
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Some(component) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(component.clone());
    }
    let component = if dependencies.is_empty() {
        Component::from_file(engine(), source)
    } else {
        let name = source.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let composed = dependencies::compose(&name, source, dependencies)
            .with_context(|| format!("failed to resolve dependencies for component {}", source.display()))?;
        Component::new(engine(), composed)
    }
    .map_err(anyhow::Error::from)
    .with_context(|| format!("cannot compile component {}", source.display()))?;
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, component.clone());
    Ok(component)
}

/// A component ready to serve: compiled, linked and pre-instantiated.
pub struct ComponentRuntime {
    pre: ProxyPre<RequestState>,
    variables: Arc<ComponentVariables>,
    allowed_host_templates: Arc<Vec<crate::variables::Template>>,
    environment: Vec<(String, String)>,
    spin_version: postgres::SpinVersion,
}

impl ComponentRuntime {
    pub fn load(
        spin_version: postgres::SpinVersion,
        source: &Path,
        dependencies: &[Dependency],
        variables: ComponentVariables,
        allowed_host_templates: Vec<crate::variables::Template>,
        environment: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let component = compile(source, dependencies)?;
        let mut linker = Linker::<RequestState>::new(engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        SpinCapabilities::add_to_linker::<RequestState, HasSelf<RequestState>>(&mut linker, |state| state)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} imports something this host does not provide", source.display()))?;
        let pre = ProxyPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} does not export wasi:http/incoming-handler", source.display()))?;
        Ok(Self {
            pre,
            variables: Arc::new(variables),
            allowed_host_templates: Arc::new(allowed_host_templates),
            environment,
            spin_version,
        })
    }

    pub fn proxy_pre(&self) -> &ProxyPre<RequestState> {
        &self.pre
    }

    /// A fresh store for one request.
    pub fn new_store(&self, pg_factory: &Arc<postgres::ClientFactory>) -> Store<RequestState> {
        let wasi = WasiCtxBuilder::new()
            .inherit_stdout()
            .inherit_stderr()
            .envs(&self.environment)
            .build();
        let state = RequestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHttpDenied,
            postgres: postgres::InstanceState::new(
                self.spin_version,
                pg_factory.clone(),
                self.allowed_host_templates.clone(),
                self.variables.resolver.clone(),
            ),
            variables: self.variables.clone(),
        };
        let mut store = Store::new(engine(), state);
        // Spin arms a deadline only for configured timeouts; none is configured here.
        store.set_epoch_deadline(u64::MAX);
        store
    }
}
