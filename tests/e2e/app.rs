//! A running wasmpay for one test: a freshly migrated database, the compiled components
//! served by real Spin (`spin up`) or by the Spin-compatible host, and an HTTP client whose
//! every response is checked against openapi.yaml.
//!
//! `WASMPAY_E2E_RUNTIME` picks the runtime: `host` (the default: wasmpay-host in this
//! process) or `spin` (the Spin CLI, see `wasmpay_test_support::spin`). `cargo xtask test`
//! runs the suite under both.

use std::time::Duration;

use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use wasmpay_host::{HostConfig, RunningHost};
use wasmpay_test_support::{
    citus, paths,
    postgres::{self, Database, server},
    spin::{self, SpinApp, SpinUp},
};

use crate::openapi::OpenApi;

pub use wasmpay_test_support::paths::COMPONENTS;
/// The components serving the API that openapi.yaml documents.
pub const API_COMPONENTS: [&str; 3] = ["identity", "accounts", "transfers"];

/// The JWT secret the tests run with (tests forge tokens with it).
pub const JWT_SECRET: &str = "e2e-test-jwt-secret-0123456789abcdef";
pub const JWT_ISSUER: &str = "wasmpay";
pub const JWT_AUDIENCE: &str = "wasmpay-api";
/// base64 of 32 bytes: the event sealing key (tests open sealed tokens with it).
pub const EVENT_KEY: &str = "dGVzdC1ldmVudC1rZXktMzItYnl0ZXMtbG9uZyEhISE=";
pub const EVENT_KEY_ID: &str = "test-key";

/// The longest any request may take: a request that hangs (as every zero-row query does
/// under Spin 4.0.0-4.0.2) fails its test instead of stalling the run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `db_statement_timeout_ms` of the components on a Citus cluster (see [`TestApp::config`]).
const CITUS_STATEMENT_TIMEOUT_MS: &str = "20000";

/// The runtime serving the components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// wasmpay-host, in the test process.
    Host,
    /// `spin up`, a child process.
    Spin,
}

impl Runtime {
    /// The runtime this test run targets (`WASMPAY_E2E_RUNTIME`).
    pub fn current() -> Self {
        match std::env::var("WASMPAY_E2E_RUNTIME").as_deref() {
            Ok("spin") => Runtime::Spin,
            Ok("host") | Ok("") | Err(_) => Runtime::Host,
            Ok(other) => panic!("WASMPAY_E2E_RUNTIME={other}: expected host or spin"),
        }
    }
}

/// The application, served by one runtime or the other.
pub enum Server {
    Host(RunningHost),
    Spin(SpinApp),
}

impl Server {
    /// Starts `config` under the current runtime, failing as that runtime fails to start.
    pub async fn start(config: HostConfig) -> anyhow::Result<Self> {
        match Runtime::current() {
            Runtime::Host => Ok(Server::Host(wasmpay_host::start(config).await?)),
            Runtime::Spin => {
                wasmpay_host::check_dependencies(&config)?;
                let up = SpinUp {
                    manifest: config.manifest,
                    variables: config.variables,
                    component_sources: config.component_sources,
                    dependency_sources: config.dependency_sources,
                    runtime_config: Some(runtime_config_file()),
                    from_registry: None,
                    instance_flags: config.reuse.to_flags(),
                };
                Ok(Server::Spin(SpinApp::start(&up).await?))
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            Server::Host(host) => host.url(),
            Server::Spin(spin) => spin.url(),
        }
    }
}

pub fn runtime_config_file() -> std::path::PathBuf {
    paths::repo_root().join("runtime-config.toml")
}

pub struct TestApp {
    pub db: Database,
    pub server: Server,
    http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|config| config).await
    }

    /// Starts the app with a configuration the test may adjust (variables, sources).
    pub async fn spawn_with(customize: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let db = postgres::migrated_database().await.expect("a migrated test database");
        let server = Server::start(customize(Self::config(&db)))
            .await
            .unwrap_or_else(|e| panic!("the application did not start under {:?}: {e:#}", Runtime::current()));
        Self::serving(db, server)
    }

    /// Starts the app on a database the test made itself.
    pub async fn spawn_on(db: Database) -> Self {
        let server = Server::start(Self::config(&db)).await.unwrap_or_else(|e| {
            panic!(
                "the application did not start under {:?}: {e:#}",
                Runtime::current()
            )
        });
        Self::serving(db, server)
    }

    /// A test app around a server the test started itself.
    pub fn serving(db: Database, server: Server) -> Self {
        Self {
            db,
            server,
            http: client(),
        }
    }

    /// The configuration `spin up` gets for this test's database: the repository's
    /// manifest and runtime config, the built components, the test's variables.
    pub fn config(db: &Database) -> HostConfig {
        let mut config = HostConfig::new(paths::repo_root().join("spin.toml"))
            .variable("db_url", db.url.clone())
            .variable("db_host", server().host_port())
            .variable("jwt_secret", JWT_SECRET)
            .variable("event_encryption_key", EVENT_KEY)
            .variable("event_encryption_key_id", EVENT_KEY_ID)
            // bcrypt's minimum: the tests exercise logic, the benchmark measures the real cost.
            .variable("bcrypt_cost", "4");
        config.reuse = wasmpay_host::InstanceReuse::from_flags(&spin::instance_flags())
            .expect("wasmpay's instance flags are valid");
        for component in COMPONENTS {
            config = config.component_source(component, paths::component(component));
        }
        config.dependency_sources = paths::policy_slot_sources();
        let runtime_config = wasmpay_host::runtime_config::load(&runtime_config_file()).expect("runtime-config.toml is valid");
        config.providers = runtime_config.providers;
        config.max_instance_memory = runtime_config.max_instance_memory;
        if citus::wanted() {
            // A posting holds its wallets for about a dozen coordinator-to-worker round trips:
            // one wallet takes a sixth of the postings per second it takes on one server, and
            // a wallet in many concurrent postings queues six times longer (BENCHMARKS.md,
            // "Again with today's code, and a hot wallet"); here the three nodes also share two
            // cores. The storm's longest waits came near the production default (5 s) and
            // once past it: on Citus the tests allow 20 s, below the requests' own 30 s, so a
            // timeout still arrives as the engine's 503.
            config = config.variable("db_statement_timeout_ms", CITUS_STATEMENT_TIMEOUT_MS);
        }
        config
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A direct connection to the test's database, for assertions.
    pub async fn sql(&self) -> tokio_postgres::Client {
        postgres::connect(&self.db.url).await.expect("a database connection")
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
            documented: true,
        }
    }
}

/// One request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
    documented: bool,
}

impl Call<'_> {
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub fn json(self, body: &Value) -> Self {
        self.body("application/json", body.to_string().into_bytes())
    }

    pub fn body(mut self, content_type: &str, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type.to_owned(), bytes));
        self
    }

    /// For requests deliberately outside the documented API (unknown routes): only a
    /// problem body is checked, against the shared Problem schema.
    pub fn undocumented(mut self) -> Self {
        self.documented = false;
        self
    }

    pub async fn send(self) -> Reply {
        let mut request = self.app.http.request(self.method.clone(), self.app.url(&self.path));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some((content_type, bytes)) = self.body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {} failed under {:?}: {e}", self.method, self.path, Runtime::current()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a response body").to_vec();
        let reply = Reply { status, headers, body };
        let path = self.path.split('?').next().unwrap_or_default();
        let spec = OpenApi::get();
        let verdict = if self.documented {
            spec.check(self.method.as_str(), path, status, reply.header("content-type"), &reply.body)
        } else if reply.header("content-type") == Some("application/problem+json") {
            spec.check_problem(&reply.body)
        } else {
            Ok(())
        };
        if let Err(breach) = verdict {
            panic!("response breaks openapi.yaml: {breach}");
        }
        reply
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The slug of a problem's `type`, e.g. `not-found`.
    pub fn problem(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let body = self.json();
        let kind = body["type"].as_str().expect("a problem type");
        kind.rsplit('/').next().unwrap_or_default().to_owned()
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

/// The HTTP client of every test: no request may hang.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client")
}
