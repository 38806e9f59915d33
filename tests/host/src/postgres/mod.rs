//! `spin:postgres/postgres@4.2.0` (which components importing 4.0.0 link against too), as
//! Spin's factor-outbound-pg serves it: the address is checked against
//! `allowed_outbound_hosts`, connections come from a deadpool pool per component, address
//! and root certificate (64 connections, "Clean" recycling: the session is reset at every
//! checkout), TLS through native-tls unless `sslmode=disable`, every statement goes through
//! tokio-postgres's `query`/`execute` (prepare, then execute), and errors carry SQLSTATE.
//!
//! The synchronous functions (`open`, `query`, `execute`, what WASIp2 components call) and
//! the asynchronous ones (`open-async`, `query-async`, `execute-async`, `build-async`, what
//! WASIp3 components call) share one implementation. A connection is a pooled client behind
//! an `Arc`, so a statement runs without holding the store, as in Spin.
//!
//! One behaviour differs between Spin releases, chosen with [`SpinVersion`]: under Spin
//! 4.0.0 to 4.0.2 a synchronous `query` that returns zero rows never returns
//! (spinframework/spin issue 3671: the host waits for a column list that Postgres only
//! sends with the first row). Imitating that hang would stall the test run, so by default
//! this host fails the request instead, loudly: a 500 and a log line naming the statement.
//! Those releases also hand a failed synchronous query's error to the guest as text (the
//! debug form of the structured error, SQLSTATE inside) rather than as
//! `query-error::db-error`; the host does the same. `query-async` has neither quirk: it
//! answers an empty result at once (without column metadata, as Spin) and a structured
//! error.

pub mod convert;

use std::sync::{Arc, Mutex};

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use tokio_postgres::{NoTls, config::SslMode};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};

use crate::{
    allowed_hosts::{AddressRefused, AllowedHost, check_postgres_address},
    bindings::spin::postgres4_2_0::postgres::{
        self as pg, Column, DbError, DbValue, Error as PgError, ParameterValue, QueryError, RowSet,
    },
    runtime::RequestState,
    variables::{Resolver, Template},
};

/// A pooled connection handed to a guest; dropping the last reference returns it to the pool.
pub type Connection = Arc<deadpool_postgres::Object>;

/// `connection-builder`: an address and, optionally, a root certificate for TLS.
pub struct ConnectionBuilder {
    address: String,
    ca_root: Option<String>,
}

const CONNECTION_POOL_SIZE: usize = 64;
const CONNECTION_POOL_CACHE_CAPACITY: usize = 16;
/// Largest result a query may buffer in the host (Spin's `MAX_HOST_BUFFERED_BYTES`).
const MAX_RESULT_BYTES: usize = 128 << 20;

/// The pools of one component, keyed by the exact address string and the root certificate
/// (as in Spin).
#[derive(Default)]
pub struct ClientFactory {
    pools: Mutex<Vec<((String, Option<String>), Pool)>>,
}

impl ClientFactory {
    pub async fn get_client(&self, address: &str, ca_root: Option<&str>) -> anyhow::Result<Connection> {
        let pool = self.pool(address, ca_root)?;
        Ok(Arc::new(pool.get().await?))
    }

    fn pool(&self, address: &str, ca_root: Option<&str>) -> anyhow::Result<Pool> {
        let key = (address.to_owned(), ca_root.map(str::to_owned));
        let mut pools = self.pools.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(position) = pools.iter().position(|(k, _)| *k == key) {
            let entry = pools.remove(position);
            let pool = entry.1.clone();
            pools.push(entry);
            return Ok(pool);
        }
        let pool = create_connection_pool(address, ca_root).context("establishing PostgreSQL connection pool")?;
        if pools.len() >= CONNECTION_POOL_CACHE_CAPACITY {
            pools.remove(0);
        }
        pools.push((key, pool.clone()));
        Ok(pool)
    }
}

/// As Spin's: plaintext for `sslmode=disable`, else TLS through native-tls, which checks the
/// server's certificate chain (against the system's roots and `ca_root`) and host name; with
/// `prefer` (tokio-postgres's default) a server without TLS is reached in plaintext.
fn create_connection_pool(address: &str, ca_root: Option<&str>) -> anyhow::Result<Pool> {
    let config: tokio_postgres::Config = address.parse().context("parsing Postgres connection string")?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Clean,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        Manager::from_config(config, NoTls, manager_config)
    } else {
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(pem) = ca_root {
            builder.add_root_certificate(native_tls::Certificate::from_pem(pem.as_bytes()).context("invalid root certificate")?);
        }
        Manager::from_config(config, postgres_native_tls::MakeTlsConnector::new(builder.build()?), manager_config)
    };
    Ok(Pool::builder(manager).max_size(CONNECTION_POOL_SIZE).build()?)
}

/// Which Spin release's Postgres behaviour the host reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpinVersion {
    /// Spin 4.0.0 to 4.0.2, the latest release: a zero-row `query` hangs the request
    /// there, and fails it here (trap, so the guest answers nothing and the client gets 500).
    #[default]
    Spin4_0,
    /// Spin 3.x, and 4.0.x releases with spinframework/spin PR 3673: an empty row set.
    Fixed,
}

impl std::str::FromStr for SpinVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "4.0" | "4.0.0" | "4.0.1" | "4.0.2" => Ok(Self::Spin4_0),
            "fixed" | "3" | "3.x" => Ok(Self::Fixed),
            other => Err(format!("{other:?}: expected 4.0 (4.0.0 to 4.0.2) or fixed (3.x, later 4.0.x)")),
        }
    }
}

/// What one request's instance needs to open connections.
pub struct InstanceState {
    spin_version: SpinVersion,
    factory: Arc<ClientFactory>,
    allowed_host_templates: Arc<Vec<Template>>,
    resolver: Arc<Resolver>,
    /// Resolved on first use, once per instance, like Spin's per-instance allow-list.
    allowed_hosts: Option<Result<Vec<AllowedHost>, String>>,
}

impl InstanceState {
    pub fn new(
        spin_version: SpinVersion,
        factory: Arc<ClientFactory>,
        allowed_host_templates: Arc<Vec<Template>>,
        resolver: Arc<Resolver>,
    ) -> Self {
        Self {
            spin_version,
            factory,
            allowed_host_templates,
            resolver,
            allowed_hosts: None,
        }
    }

    fn allowed_hosts(&mut self) -> Result<&[AllowedHost], String> {
        let resolver = &self.resolver;
        let templates = &self.allowed_host_templates;
        self.allowed_hosts
            .get_or_insert_with(|| {
                templates
                    .iter()
                    .map(|template| {
                        let entry = resolver.resolve_template(template).map_err(|e| e.to_string())?;
                        AllowedHost::parse(&entry).map_err(|e| format!("{e:#}"))
                    })
                    .collect()
            })
            .as_deref()
            .map_err(Clone::clone)
    }
}

fn query_failed(error: &tokio_postgres::Error) -> PgError {
    let flattened = format!("{error:?}");
    let query_error = match error.as_db_error() {
        None => QueryError::Text(flattened),
        Some(db) => {
            let extras = [
                ("column", db.column().map(str::to_owned)),
                ("constraint", db.constraint().map(str::to_owned)),
                ("routine", db.routine().map(str::to_owned)),
                ("hint", db.hint().map(str::to_owned)),
                ("table", db.table().map(str::to_owned)),
                ("datatype", db.datatype().map(str::to_owned)),
                ("schema", db.schema().map(str::to_owned)),
                ("file", db.file().map(str::to_owned)),
                ("line", db.line().map(|line| line.to_string())),
                ("where_", db.where_().map(str::to_owned)),
            ]
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
            .collect();
            QueryError::DbError(DbError {
                as_text: flattened,
                severity: db.severity().to_owned(),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
                detail: db.detail().map(str::to_owned),
                extras,
            })
        }
    };
    PgError::QueryFailed(query_error)
}

fn convert_parameters(params: &[ParameterValue]) -> anyhow::Result<Vec<convert::SqlParam>> {
    params.iter().map(convert::to_sql_parameter).collect()
}

fn as_refs(params: &[convert::SqlParam]) -> Vec<&(dyn postgres_types::ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn postgres_types::ToSql + Sync)).collect()
}

/// `connection.open` and `open-async` (and a builder's `build`, with its root certificate):
/// the allow-list check, then a connection from the pool of the address and certificate.
pub async fn open(
    factory: &ClientFactory,
    allowed_hosts: Result<&[AllowedHost], String>,
    address: &str,
    ca_root: Option<&str>,
) -> Result<Connection, PgError> {
    let allowed = allowed_hosts.map_err(PgError::Other)?;
    if let Err(refused) = check_postgres_address(address, allowed) {
        if let AddressRefused::NotPermitted(url) = &refused {
            eprintln!(
                "A component tried to make an outbound network connection to disallowed destination 'postgres://{url}'.\n\
                 To allow this request, add 'allowed_outbound_hosts = [\"postgres://{url}\"]' to the manifest component section."
            );
        }
        return Err(PgError::ConnectionFailed(refused.to_string()));
    }
    factory
        .get_client(address, ca_root)
        .await
        .map_err(|e| PgError::ConnectionFailed(format!("{e:#}")))
}

/// `connection.query`: parameters that cannot be converted are a `bad-parameter`.
pub async fn query(client: &Connection, statement: &str, params: &[ParameterValue]) -> Result<RowSet, PgError> {
    let params = convert_parameters(params).map_err(|e| PgError::BadParameter(format!("{e:#}")))?;
    let rows = client
        .query(statement, &as_refs(&params))
        .await
        .map_err(|e| query_failed(&e))?;
    let columns = convert::columns(&rows);
    let rows = rows
        .iter()
        .map(convert::convert_row)
        .collect::<Result<_, _>>()
        .map_err(|e| PgError::QueryFailed(QueryError::Text(format!("{:#}", anyhow::Error::from(e)))))?;
    Ok(RowSet { columns, rows })
}

/// What `query-async` hands over: the columns (inferred from the first row, none for an
/// empty result), the rows, and how the statement ended. A failure before execution (a
/// statement Postgres cannot prepare, a parameter that cannot be converted) is the outer
/// error; one during execution arrives after the rows read so far, as in Spin.
pub async fn query_streamed(
    client: &Connection,
    statement: &str,
    params: &[ParameterValue],
) -> Result<(Vec<Column>, Vec<Vec<DbValue>>, Result<(), PgError>), PgError> {
    let params = convert_parameters(params).map_err(|e| PgError::BadParameter(format!("{e:#}")))?;
    let stream = client.query_raw(statement, params.iter().map(|p| p.as_ref() as &(dyn postgres_types::ToSql + Sync))).await.map_err(|e| query_failed(&e))?;
    let mut stream = std::pin::pin!(stream);
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let mut bytes = 0;
    while let Some(row) = stream.next().await {
        let row = match row {
            Ok(row) => row,
            Err(e) => return Ok((columns, rows, Err(query_failed(&e)))),
        };
        if rows.is_empty() {
            columns = convert::columns(std::slice::from_ref(&row));
        }
        let values = match convert::convert_row(&row) {
            Ok(values) => values,
            Err(e) => {
                let text = format!("{:#}", anyhow::Error::from(e));
                return Ok((columns, rows, Err(PgError::QueryFailed(QueryError::Text(text)))));
            }
        };
        bytes += values.iter().map(convert::memory_size).sum::<usize>();
        if bytes > MAX_RESULT_BYTES {
            let text = format!("query result exceeds limit of {MAX_RESULT_BYTES} bytes");
            return Ok((columns, rows, Err(PgError::QueryFailed(QueryError::Text(text)))));
        }
        rows.push(values);
    }
    Ok((columns, rows, Ok(())))
}

/// `connection.query` as the guest sees it under `version`: a zero-row result under Spin
/// 4.0.0–4.0.2 is a trap (the outer error), which fails the request with a 500.
pub async fn guest_query(
    version: SpinVersion,
    client: &Connection,
    statement: &str,
    params: &[ParameterValue],
) -> wasmtime::Result<Result<RowSet, PgError>> {
    let result = query(client, statement, params).await;
    match result {
        // Spin 4.0.0-4.0.2 flatten a failed query's structured error into text.
        Err(error @ PgError::QueryFailed(QueryError::DbError(_))) if version == SpinVersion::Spin4_0 => {
            Ok(Err(PgError::QueryFailed(QueryError::Text(format!("{error:?}")))))
        }
        Ok(rows) if rows.rows.is_empty() && version == SpinVersion::Spin4_0 => {
            let statement = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!(
                "zero-row query: under Spin 4.0.0-4.0.2 this request would hang forever \
                 (spinframework/spin issue 3671); failing it instead. Statement: {statement}"
            );
            Err(wasmtime::Error::msg(
                "a spin:postgres query returned zero rows, which hangs Spin 4.0.0-4.0.2 (spinframework/spin issue 3671)",
            ))
        }
        other => Ok(other),
    }
}

/// `connection.execute`: parameters that cannot be converted are a `value-conversion-failed`.
pub async fn execute(client: &Connection, statement: &str, params: &[ParameterValue]) -> Result<u64, PgError> {
    let params = convert_parameters(params).map_err(|e| PgError::ValueConversionFailed(format!("{e:#}")))?;
    client
        .execute(statement, &as_refs(&params))
        .await
        .map_err(|e| query_failed(&e))
}

impl RequestState {
    fn client(&self, connection: &Resource<Connection>) -> Result<Connection, PgError> {
        self.table
            .get(connection)
            .map(Arc::clone)
            .map_err(|_| PgError::ConnectionFailed("no connection found".into()))
    }

    fn push_connection(&mut self, client: Connection) -> Result<Resource<Connection>, PgError> {
        self.table
            .push(client)
            .map_err(|_| PgError::ConnectionFailed("too many connections".into()))
    }
}

/// What an asynchronous host function needs of the store, taken without holding it.
fn opener<T>(accessor: &Accessor<T, Capabilities>) -> (Arc<ClientFactory>, Result<Vec<AllowedHost>, String>) {
    accessor.with(|mut access| {
        let state = access.get();
        let allowed = state.postgres.allowed_hosts().map(<[AllowedHost]>::to_vec);
        (state.postgres.factory.clone(), allowed)
    })
}

/// `open-async` and `build-async`: a connection opened without holding the store, then
/// entered in the instance's table.
async fn open_into_table<T>(
    accessor: &Accessor<T, Capabilities>,
    address: &str,
    ca_root: Option<&str>,
) -> Result<Resource<Connection>, PgError> {
    let (factory, allowed) = opener(accessor);
    let client = open(&factory, allowed.as_deref().map_err(Clone::clone), address, ca_root).await?;
    accessor.with(|mut access| access.get().push_connection(client))
}

/// The store data the capabilities are implemented for.
pub struct Capabilities;

impl HasData for Capabilities {
    type Data<'a> = &'a mut RequestState;
}

impl pg::Host for RequestState {}

impl pg::HostConnection for RequestState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        let factory = self.postgres.factory.clone();
        Ok(match open(&factory, self.postgres.allowed_hosts(), &address, None).await {
            Ok(client) => self.push_connection(client),
            Err(e) => Err(e),
        })
    }

    async fn query(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, PgError>> {
        match self.client(&connection) {
            Ok(client) => guest_query(self.postgres.spin_version, &client, &statement, &params).await,
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        Ok(match self.client(&connection) {
            Ok(client) => execute(&client, &statement, &params).await,
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        // Dropping the last reference hands the connection back to its pool.
        drop(self.table.delete(connection)?);
        Ok(())
    }
}

impl pg::HostConnectionBuilder for RequestState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<ConnectionBuilder>> {
        Ok(self.table.push(ConnectionBuilder { address, ca_root: None })?)
    }

    async fn set_ca_root(
        &mut self,
        builder: Resource<ConnectionBuilder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), PgError>> {
        // Spin checks the certificate here, when it is set.
        if let Err(e) = native_tls::Certificate::from_pem(certificate.as_bytes()) {
            return Ok(Err(PgError::Other(format!("invalid root certificate: {e}"))));
        }
        self.table.get_mut(&builder)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(&mut self, builder: Resource<ConnectionBuilder>) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        let ConnectionBuilder { address, ca_root } = self.table.get(&builder)?;
        let (address, ca_root) = (address.clone(), ca_root.clone());
        let factory = self.postgres.factory.clone();
        Ok(match open(&factory, self.postgres.allowed_hosts(), &address, ca_root.as_deref()).await {
            Ok(client) => self.push_connection(client),
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, builder: Resource<ConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        Ok(())
    }
}

impl pg::HostConnectionWithStore for Capabilities {
    async fn open_async<T>(accessor: &Accessor<T, Self>, address: String) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        Ok(open_into_table(accessor, &address, None).await)
    }

    async fn query_async<T>(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<(Vec<Column>, StreamReader<Vec<DbValue>>, FutureReader<Result<(), PgError>>), PgError>> {
        let client = match accessor.with(|mut access| access.get().client(&connection)) {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let (columns, rows, outcome) = match query_streamed(&client, &statement, &params).await {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let outcome = FutureReader::new(&mut access, std::future::ready(Ok::<_, wasmtime::Error>(outcome)))?;
            Ok(Ok((columns, rows, outcome)))
        })
    }

    async fn execute_async<T>(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, PgError>> {
        Ok(match accessor.with(|mut access| access.get().client(&connection)) {
            Ok(client) => execute(&client, &statement, &params).await,
            Err(e) => Err(e),
        })
    }
}

impl pg::HostConnectionBuilderWithStore for Capabilities {
    async fn build_async<T>(
        accessor: &Accessor<T, Self>,
        builder: Resource<ConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, PgError>> {
        let (address, ca_root) = accessor.with(|mut access| -> wasmtime::Result<_> {
            let builder = access.get().table.get(&builder)?;
            Ok((builder.address.clone(), builder.ca_root.clone()))
        })?;
        Ok(open_into_table(accessor, &address, ca_root.as_deref()).await)
    }
}
