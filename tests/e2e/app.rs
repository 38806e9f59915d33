//! A running wasmpay for one test: a freshly migrated database, the compiled components
//! served by the Spin-compatible host, and an HTTP client whose every response is checked
//! against openapi.yaml.

use reqwest::{Method, header::HeaderMap};
use serde_json::Value;
use wasmpay_host::{HostConfig, RunningHost};
use wasmpay_test_support::{
    paths,
    postgres::{self, Database, server},
};

use crate::openapi::OpenApi;

pub const COMPONENTS: [&str; 3] = ["identity", "accounts", "transfers"];

/// The JWT secret the tests run with (tests forge tokens with it).
pub const JWT_SECRET: &str = "e2e-test-jwt-secret-0123456789abcdef";
pub const JWT_ISSUER: &str = "wasmpay";
pub const JWT_AUDIENCE: &str = "wasmpay-api";
/// base64 of 32 bytes: the event sealing key (tests open sealed tokens with it).
pub const EVENT_KEY: &str = "dGVzdC1ldmVudC1rZXktMzItYnl0ZXMtbG9uZyEhISE=";
pub const EVENT_KEY_ID: &str = "test-key";

pub struct TestApp {
    pub db: Database,
    pub host: RunningHost,
    http: reqwest::Client,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|config| config).await
    }

    /// Starts the app with a configuration the test may adjust (variables, sources).
    pub async fn spawn_with(customize: impl FnOnce(HostConfig) -> HostConfig) -> Self {
        let db = postgres::migrated_database().await.expect("a migrated test database");
        let host = wasmpay_host::start(customize(Self::config(&db)))
            .await
            .unwrap_or_else(|e| panic!("the host did not start: {e:#}"));
        Self {
            db,
            host,
            http: reqwest::Client::new(),
        }
    }

    /// The configuration `spin up` would get for this test's database.
    pub fn config(db: &Database) -> HostConfig {
        let mut config = HostConfig::new(paths::repo_root().join("spin.toml"))
            .variable("db_url", db.url.clone())
            .variable("db_host", server().host_port())
            .variable("jwt_secret", JWT_SECRET)
            .variable("event_encryption_key", EVENT_KEY)
            .variable("event_encryption_key_id", EVENT_KEY_ID)
            // bcrypt's minimum: the tests exercise logic, the benchmark measures the real cost.
            .variable("bcrypt_cost", "4");
        for component in COMPONENTS {
            config = config.component_source(component, paths::component(component));
        }
        config
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.host.url())
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
            .unwrap_or_else(|e| panic!("{} {} failed: {e}", self.method, self.path));
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
