//! The wasmtime side: one engine with the pooling allocator, each component compiled once
//! and pre-instantiated, and instances as Spin 4.0.2 runs them: a fresh one for every
//! request of a WASIp2 component (`wasi:http/incoming-handler@0.2`), and for a WASIp3
//! component (`wasi:http/handler@0.3.0-rc-2026-03-15`) instances reused for many requests,
//! several at once, by the same scheduler Spin uses (wasmtime-wasi-http's `ProxyHandler`)
//! with Spin's settings ([`InstanceReuse`]).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
    component::{Component, Linker, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    WasiHttpCtx,
    handler::{HandlerState, ProxyHandler, ProxyPre, StoreBundle},
    p2, p3,
};

use crate::{
    bindings::SpinCapabilities,
    dependencies::{self, Dependency},
    postgres::{self, Capabilities},
    variables::ComponentVariables,
};

/// Concurrent instances the pool holds (Spin's default `SPIN_MAX_INSTANCE_COUNT`); a request
/// beyond it fails to instantiate.
const MAX_CONCURRENT_INSTANCES: u32 = 1_000;
const MB: usize = 1 << 20;

/// How Spin reuses the instances of a WASIp3 component (`spin up
/// --max-instance-reuse-count`, `--max-instance-concurrent-reuse-count`,
/// `--request-timeout`, `--idle-instance-timeout`); the defaults are Spin 4.0.2's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped.
    pub max_requests: usize,
    /// Requests one instance serves at once.
    pub max_concurrent: usize,
    /// How long a request may run (none: forever). A request waiting on I/O is ended at
    /// the deadline; a guest that computes is not (Spin sets no epoch deadline).
    pub request_timeout: Option<Duration>,
    /// How long an idle instance is kept for the next request.
    pub idle_timeout: Duration,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self {
            max_requests: 128,
            max_concurrent: 16,
            request_timeout: None,
            idle_timeout: Duration::from_secs(1),
        }
    }
}

impl InstanceReuse {
    /// Spin's defaults with `spin up`'s flags applied (`--max-instance-reuse-count`,
    /// `--max-instance-concurrent-reuse-count`, `--request-timeout`,
    /// `--idle-instance-timeout`, each with a single value).
    pub fn from_flags(flags: &[(String, String)]) -> anyhow::Result<Self> {
        let mut reuse = Self::default();
        for (name, value) in flags {
            let count = || value.parse::<usize>().with_context(|| format!("{name} {value}: not a count"));
            match name.as_str() {
                "--max-instance-reuse-count" => reuse.max_requests = count()?,
                "--max-instance-concurrent-reuse-count" => reuse.max_concurrent = count()?,
                "--request-timeout" => reuse.request_timeout = Some(parse_duration(value).map_err(anyhow::Error::msg)?),
                "--idle-instance-timeout" => reuse.idle_timeout = parse_duration(value).map_err(anyhow::Error::msg)?,
                other => anyhow::bail!("{other} is not an instance reuse flag of spin up"),
            }
        }
        anyhow::ensure!(reuse.max_requests >= 1 && reuse.max_concurrent >= 1, "instance reuse counts must be at least 1");
        Ok(reuse)
    }

    /// The flags that give `spin up` these settings (durations in whole seconds, all Spin
    /// 4.0.2 reads).
    pub fn to_flags(&self) -> Vec<(String, String)> {
        let mut flags = vec![
            ("--max-instance-reuse-count".to_owned(), self.max_requests.to_string()),
            ("--max-instance-concurrent-reuse-count".to_owned(), self.max_concurrent.to_string()),
            ("--idle-instance-timeout".to_owned(), format!("{}s", self.idle_timeout.as_secs())),
        ];
        if let Some(timeout) = self.request_timeout {
            flags.push(("--request-timeout".to_owned(), format!("{}s", timeout.as_secs())));
        }
        flags
    }
}

/// A duration as `spin up` 4.0.2 reads one: whole seconds, bare or with an `s` (`30`, `30s`).
/// Spin's parser strips the `s` before it tries `ms`, `us` or `ns`, so `500ms` is refused
/// there; this host refuses it too rather than accept what Spin would not.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds = text.strip_suffix('s').unwrap_or(text);
    seconds
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("{text:?} is not a whole number of seconds such as 30 or 30s (what spin up 4.0.2 reads)"))
}

/// Everything an instance's store holds.
pub struct RequestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    hooks: OutboundHttpDenied,
    pub(crate) variables: Arc<ComponentVariables>,
    pub(crate) postgres: postgres::InstanceState,
    limits: StoreLimits,
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl p2::WasiHttpView for RequestState {
    fn http(&mut self) -> p2::WasiHttpCtxView<'_> {
        p2::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl p3::WasiHttpView for RequestState {
    fn http(&mut self) -> p3::WasiHttpCtxView<'_> {
        p3::WasiHttpCtxView {
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

fn denied(uri: &hyper::Uri) {
    eprintln!("A component tried to make an outbound HTTP request to disallowed destination '{uri}'.");
}

impl p2::WasiHttpHooks for OutboundHttpDenied {
    fn send_request(
        &mut self,
        request: hyper::Request<p2::body::HyperOutgoingBody>,
        _config: p2::types::OutgoingRequestConfig,
    ) -> p2::HttpResult<p2::types::HostFutureIncomingResponse> {
        denied(request.uri());
        Err(p2::bindings::http::types::ErrorCode::HttpRequestDenied.into())
    }
}

impl p3::WasiHttpHooks for OutboundHttpDenied {
    #[allow(clippy::type_complexity, reason = "the trait's signature")]
    fn send_request(
        &mut self,
        request: http::Request<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, p3::bindings::http::types::ErrorCode>>,
        _options: Option<p3::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), p3::bindings::http::types::ErrorCode>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, p3::bindings::http::types::ErrorCode>>,
                        Box<dyn Future<Output = Result<(), p3::bindings::http::types::ErrorCode>> + Send>,
                    ),
                    wasmtime_wasi::TrappableError<p3::bindings::http::types::ErrorCode>,
                >,
            > + Send,
    > {
        denied(request.uri());
        Box::new(async { Err(p3::bindings::http::types::ErrorCode::HttpRequestDenied.into()) })
    }
}

/// The process-wide engine: tests start many hosts and share compiled code. Configured as
/// Spin configures its engine (crates/core): the component model's async support, the
/// pooling allocator with Spin's limits, pages kept resident between instances instead of
/// decommitted, and epoch interruption.
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
            .wasm_component_model_async(true)
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

/// What a component's instances are made from: a store per instance.
pub struct Stores {
    variables: Arc<ComponentVariables>,
    allowed_host_templates: Arc<Vec<crate::variables::Template>>,
    environment: Vec<(String, String)>,
    spin_version: postgres::SpinVersion,
    /// The component's Postgres pools (Spin keeps them per component).
    pg: Arc<postgres::ClientFactory>,
    max_instance_memory: Option<usize>,
}

impl Stores {
    /// A fresh store for one instance.
    pub fn new_store(&self) -> Store<RequestState> {
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
                self.pg.clone(),
                self.allowed_host_templates.clone(),
                self.variables.resolver.clone(),
            ),
            variables: self.variables.clone(),
            // As Spin's `max_instance_memory`: a memory may not grow past it (the guest's
            // allocation fails, which a Rust guest turns into a trap).
            limits: StoreLimitsBuilder::new().memory_size(self.max_instance_memory.unwrap_or(usize::MAX)).build(),
        };
        let mut store = Store::new(engine(), state);
        store.limiter(|state| &mut state.limits);
        // Spin arms a deadline only for configured timeouts; none is configured here.
        store.set_epoch_deadline(u64::MAX);
        store
    }
}

/// The instances of a WASIp3 component, as Spin's `HttpHandlerState` makes them.
pub struct Instances {
    stores: Arc<Stores>,
    reuse: InstanceReuse,
}

impl HandlerState for Instances {
    type StoreData = RequestState;

    fn new_store(&self, _request_id: Option<u64>) -> wasmtime::Result<StoreBundle<RequestState>> {
        Ok(StoreBundle {
            store: self.stores.new_store(),
            write_profile: Box::new(|_| ()),
        })
    }

    fn request_timeout(&self) -> Duration {
        self.reuse.request_timeout.unwrap_or(Duration::MAX)
    }

    fn idle_instance_timeout(&self) -> Duration {
        self.reuse.idle_timeout
    }

    fn max_instance_reuse_count(&self) -> usize {
        self.reuse.max_requests
    }

    fn max_instance_concurrent_reuse_count(&self) -> usize {
        self.reuse.max_concurrent
    }

    fn handle_worker_error(&self, error: wasmtime::Error) {
        eprintln!("worker error: {error:?}");
    }
}

/// How a component is called.
pub enum Handler {
    /// `wasi:http/incoming-handler@0.2`: a fresh instance per request.
    Wasip2(p2::bindings::ProxyPre<RequestState>),
    /// `wasi:http/handler@0.3.0-rc-2026-03-15`: reused instances.
    Wasip3(ProxyHandler<Instances>),
}

/// A component ready to serve: compiled, linked and pre-instantiated.
pub struct ComponentRuntime {
    pub(crate) handler: Handler,
    pub(crate) stores: Arc<Stores>,
}

/// What a component is loaded with.
pub struct ComponentSpec<'a> {
    pub spin_version: postgres::SpinVersion,
    pub source: &'a Path,
    pub dependencies: &'a [Dependency],
    pub variables: ComponentVariables,
    pub allowed_host_templates: Vec<crate::variables::Template>,
    pub environment: Vec<(String, String)>,
    pub reuse: InstanceReuse,
    pub max_instance_memory: Option<usize>,
}

impl ComponentRuntime {
    pub fn load(spec: ComponentSpec<'_>) -> anyhow::Result<Self> {
        let source = spec.source;
        let component = compile(source, spec.dependencies)?;
        let mut linker = Linker::<RequestState>::new(engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        p2::add_only_http_to_linker_async(&mut linker)?;
        p3::add_to_linker(&mut linker)?;
        SpinCapabilities::add_to_linker::<RequestState, Capabilities>(&mut linker, |state| state)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} imports something this host does not provide", source.display()))?;
        let stores = Arc::new(Stores {
            variables: Arc::new(spec.variables),
            allowed_host_templates: Arc::new(spec.allowed_host_templates),
            environment: spec.environment,
            spin_version: spec.spin_version,
            pg: Arc::default(),
            max_instance_memory: spec.max_instance_memory,
        });
        let handler = match (p3::bindings::ServicePre::new(instance_pre.clone()), p2::bindings::ProxyPre::new(instance_pre)) {
            (Ok(service), Err(_)) => Handler::Wasip3(ProxyHandler::new(
                Instances {
                    stores: stores.clone(),
                    reuse: spec.reuse,
                },
                ProxyPre::P3(service),
            )),
            (Err(_), Ok(proxy)) => Handler::Wasip2(proxy),
            (Ok(_), Ok(_)) => anyhow::bail!("{} exports both wasi:http handlers; it must export one", source.display()),
            (Err(_), Err(_)) => anyhow::bail!(
                "{} exports neither wasi:http/handler@0.3.0-rc-2026-03-15 nor wasi:http/incoming-handler@0.2",
                source.display()
            ),
        };
        Ok(Self { handler, stores })
    }
}

