//! The one way a component talks to PostgreSQL: Spin's `spin:postgres/postgres@4.2.0`,
//! asynchronously (WASIp3).
//!
//! # Connections
//!
//! A request takes one connection for itself ([`Db::connect`]) and runs each of its
//! transactions on it as a single statement. The instance keeps the connection for its
//! next request instead of handing it back to Spin's pool, which would reset it: see
//! [`kept`] for the rules that make that safe. A new connection gets the statement timeout
//! of the `db_statement_timeout_ms` variable: a statement stuck on a lock or a slow plan
//! is cancelled by Postgres (changing nothing) and the request answers 503, before Spin's
//! request timeout would end it with an empty 500.
//!
//! # Access tokens end with their session
//!
//! A connection opened for a caller ([`Db::connect_as`]) adds the session check to every
//! query it runs: the token's session (`sid`, `sub`) must be live, with a live refresh
//! token, or the statement fails as a whole (writes included) with SQLSTATE 28000. The
//! check costs no round trip; the caller gets 401 `invalid-token`, as for a bad signature.
//! Work an authenticated request does on user data is therefore a [`Query`];
//! [`Db::execute`] is for statements made on no one's behalf (login failures).
//!
//! On Citus a statement whose tables all live on one shard is sent whole to that shard's
//! worker, where a function that reads other shards cannot run. So a query of tables
//! ([`Query::select`], [`Query::with`]) reads the session itself, in a materialized CTE,
//! and hands the answer to `identity.require_live_session`, which reads nothing; a call of
//! the database's functions ([`Query::call`]), which names no table and so runs on the
//! coordinator, calls `identity.require_session(sid, sub)`, which reads the session there.
//!
//! The check hangs on a row that always exists: the query is wrapped as
//! `SELECT … FROM (<the check>) AS session, (VALUES (1)) AS one LEFT JOIN (<the query>) AS
//! found ON true`, so Postgres evaluates the check even when the query matches nothing (an
//! empty side would let it skip the other), and the methods hand back only the matched rows.
//! (The same shape once kept WASIp2 components off Spin 4.0.0–4.0.2's zero-row `query` hang,
//! spinframework/spin issue 3671, which the asynchronous `query` of WASIp3 does not have.)

mod kept;

pub use kept::MAX_IDLE_CONNECTIONS;

use std::rc::Rc;

use spin_sdk::pg::{self, Connection, DbValue, Decode, ParameterValue, PgError};
use wasmpay_dburl::DatabaseUrl;

use crate::{
    auth::{self, Principal},
    config,
    problem::Problem,
};

pub use pg::{DbValue as Value, ParameterValue as Param};

/// SQLSTATE codes the components react to.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const RAISE_EXCEPTION: &str = "P0001";
    /// `identity.require_session` or `require_live_session`: the access token's session has ended.
    pub const SESSION_ENDED: &str = "28000";
    /// `query_canceled`: the statement ran past `statement_timeout`.
    pub const QUERY_CANCELED: &str = "57014";
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("query failed with SQLSTATE {code}: {message}")]
    Query { code: String, message: String },
    #[error("query failed: {0}")]
    Other(String),
    #[error("unexpected value in column {column}: {reason}")]
    Decode { column: usize, reason: String },
}

impl DbError {
    /// The SQLSTATE of a failed statement, when Postgres reported one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Query { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Serialization failures and deadlocks: the transaction changed nothing and may be retried.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.sqlstate(),
            Some(sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED)
        )
    }

    /// The connection failed (or may have), rather than the statement's SQL: no SQLSTATE
    /// at all, or one of class 08 (connection exception) or 57P (the server shut down).
    fn is_connection_failure(&self) -> bool {
        match self {
            DbError::Query { code, .. } => code.starts_with("08") || code.starts_with("57P"),
            DbError::Connect(_) | DbError::Other(_) => true,
            DbError::Decode { .. } => false,
        }
    }
}

impl From<PgError> for DbError {
    fn from(error: PgError) -> Self {
        match error {
            PgError::ConnectionFailed(reason) => DbError::Connect(reason),
            PgError::QueryFailed(pg::QueryError::DbError(db)) => DbError::Query {
                code: db.code,
                message: db.message,
            },
            PgError::QueryFailed(pg::QueryError::Text(text))
            | PgError::BadParameter(text)
            | PgError::ValueConversionFailed(text)
            | PgError::Other(text) => DbError::Other(text),
        }
    }
}

impl From<pg::Error> for DbError {
    fn from(error: pg::Error) -> Self {
        match error {
            pg::Error::PgError(error) => error.into(),
            pg::Error::Decode(reason) => DbError::Other(reason),
        }
    }
}

impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        if error.sqlstate() == Some(sqlstate::SESSION_ENDED) {
            return auth::invalid_token(
                "the session of this access token has ended; sign in again",
            );
        }
        match &error {
            DbError::Connect(_) => {
                eprintln!("database error (check db_url, db_host and db_ca_cert): {error}")
            }
            _ => eprintln!("database error: {error}"),
        }
        if error.sqlstate() == Some(sqlstate::QUERY_CANCELED) {
            return Problem::new(
                503,
                "database-timeout",
                "Database timed out",
                "the database did not finish this request in time; nothing was changed, retry shortly",
            )
            .with_header("retry-after", "1");
        }
        if error.is_connection_failure() {
            return Problem::service_unavailable(
                "the database is unreachable or the connection to it was lost; retry shortly (a payment with the same Idempotency-Key)",
            );
        }
        Problem::internal()
    }
}

/// A request's connection to the database named by the `db_url` variable.
pub struct Db {
    lease: kept::Lease,
    /// Whose session every query checks, for a request with an access token.
    caller: Option<Principal>,
}

impl Db {
    /// A connection for work done on no one's behalf (health, registration, login, refresh).
    pub async fn connect() -> Result<Self, Problem> {
        let target = target().await?;
        let lease = kept::Lease::take(target.clone(), || async {
            let connection = match &target.ca_root {
                Some(pem) => {
                    let options = pg::OpenOptions {
                        ca_root: Some(pg::Certificate::Text(pem.clone())),
                    };
                    Connection::open_with_options(&target.address, options).await
                }
                None => Connection::open(target.address.as_str()).await,
            };
            configure(connection.map_err(DbError::from)?).await
        })
        .await?;
        Ok(Self {
            lease,
            caller: None,
        })
    }

    /// A connection for an authenticated caller: every query on it also checks that the
    /// caller's session is live (see the module documentation).
    pub async fn connect_as(caller: &Principal) -> Result<Self, Problem> {
        Ok(Self {
            caller: Some(*caller),
            ..Self::connect().await?
        })
    }

    /// A statement that returns no rows (`INSERT`, `UPDATE`, `DELETE` without `RETURNING`):
    /// the number of rows it affected.
    pub async fn execute(
        &self,
        statement: &str,
        params: &[ParameterValue],
    ) -> Result<u64, DbError> {
        let connection = self.lease.start();
        let outcome = connection
            .execute(statement, params)
            .await
            .map_err(DbError::from);
        self.lease.finished(&outcome);
        outcome
    }

    /// Every row the query matched, in its order (none is an empty vector).
    pub async fn query_all(
        &self,
        query: &Query<'_>,
        params: &[ParameterValue],
    ) -> Result<Vec<Row>, DbError> {
        let Some(caller) = &self.caller else {
            return self.rows(query.statement(), params.to_vec()).await;
        };
        let mut all = params.to_vec();
        all.extend([caller.session_id.into(), caller.user_id.into()]);
        let rows = self
            .rows(query.session_checked(params.len() + 1), all)
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| matches!(row.first(), Some(DbValue::Boolean(true))))
            .map(|mut row| row.split_off(WRAPPER_COLUMNS))
            .collect())
    }

    /// The first row the query matched, if any.
    pub async fn query_opt(
        &self,
        query: &Query<'_>,
        params: &[ParameterValue],
    ) -> Result<Option<Row>, DbError> {
        Ok(self.query_all(query, params).await?.into_iter().next())
    }

    /// The row a query must match.
    pub async fn query_one(
        &self,
        query: &Query<'_>,
        params: &[ParameterValue],
    ) -> Result<Row, DbError> {
        self.query_opt(query, params)
            .await?
            .ok_or_else(|| DbError::Other("the query matched no row".into()))
    }

    /// Sends one statement and reads all its rows, then its outcome.
    async fn rows(
        &self,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Result<Vec<Row>, DbError> {
        let connection = self.lease.start();
        let outcome = async {
            let (_, rows, result) = connection.query(statement, params).await?.into_inner();
            let rows = rows.collect().await;
            result.await?;
            Ok(rows)
        }
        .await;
        self.lease.finished(&outcome);
        outcome
    }
}

/// How the component reaches its database: the connection string Spin is handed and the
/// root certificate it trusts besides the system's (`db_ca_cert`, PEM). Kept connections
/// are told apart by it.
#[derive(PartialEq, Eq)]
pub(crate) struct Target {
    address: String,
    ca_root: Option<String>,
}

thread_local! {
    /// The target, worked out once per instance from its variables (read once too).
    static TARGET: std::cell::OnceCell<Result<Rc<Target>, String>> = const { std::cell::OnceCell::new() };
}

/// `db_url` and `db_ca_cert` as Spin's Postgres client takes them (`sslmode` as
/// `wasmpay_dburl` reads it: no plaintext fallback, nothing weaker than Spin checks).
async fn target() -> Result<Rc<Target>, Problem> {
    if let Some(target) = TARGET.with(|cell| cell.get().cloned()) {
        return target.map_err(misconfigured);
    }
    let url = config::text("db_url").await?;
    let ca_root = config::optional("db_ca_cert")
        .await?
        .filter(|pem| !pem.trim().is_empty());
    let target = DatabaseUrl::parse(&url)
        .and_then(|url| url.spin_address())
        .map(|address| Rc::new(Target { address, ca_root }))
        .map_err(|e| format!("db_url: {e}"));
    TARGET
        .with(|cell| cell.get_or_init(|| target.clone()).clone())
        .map_err(misconfigured)
}

/// The answer to every request while the database settings cannot work; the log says why.
fn misconfigured(reason: String) -> Problem {
    eprintln!("database settings refused: {reason}");
    Problem::service_unavailable("the database is unreachable; nothing was changed")
}

/// Gives a connection Spin just opened the request-independent session settings: the
/// statement timeout (`db_statement_timeout_ms`, 0 for none).
async fn configure(connection: Connection) -> Result<Connection, Problem> {
    let timeout_ms: u32 = config::parsed("db_statement_timeout_ms").await?;
    connection
        .execute(
            "SELECT set_config('statement_timeout', $1, false)",
            [ParameterValue::Str(timeout_ms.to_string())],
        )
        .await
        .map_err(DbError::from)?;
    Ok(connection)
}

/// One result row, as Spin hands it over.
pub type Row = Vec<DbValue>;

/// Columns the session wrapper puts before the query's own: `matched`, `ordinal`.
const WRAPPER_COLUMNS: usize = 2;

/// A statement that returns rows: optional common table expressions (which may modify
/// data) and the `SELECT` whose rows are wanted. Kept apart because Postgres allows
/// data-modifying `WITH` only at the top level of a statement, while the session check
/// wraps the `SELECT` in a subquery (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    with: Option<&'a str>,
    select: &'a str,
    calls: bool,
}

impl<'a> Query<'a> {
    /// A `SELECT` (or `VALUES`) of tables on its own. It may call only functions that read no
    /// table: on Citus it is sent to the workers of the shards it reads.
    pub fn select(select: &'a str) -> Self {
        Self {
            with: None,
            select,
            calls: false,
        }
    }

    /// `WITH <ctes> <select>`: `ctes` is the list after `WITH` (`a AS (…), b AS (…)`). The
    /// same rule as [`Query::select`].
    pub fn with(ctes: &'a str, select: &'a str) -> Self {
        Self {
            with: Some(ctes),
            select,
            calls: false,
        }
    }

    /// A `SELECT` from the database's own functions (the ledger's postings and look-ups),
    /// naming no table itself: on Citus it runs on the coordinator, and the functions send
    /// each of their statements to the shard it reads.
    pub fn call(select: &'a str) -> Self {
        Self {
            with: None,
            select,
            calls: true,
        }
    }

    /// The statement as written.
    pub fn statement(&self) -> String {
        match self.with {
            Some(ctes) => format!("WITH {ctes}\n{}", self.select),
            None => self.select.to_owned(),
        }
    }

    /// The statement that also checks the caller's session: `session_params` numbers the
    /// first of two parameters holding the session and user ids. It fails as a whole if
    /// that session has ended, and returns one row whatever matches (see the module
    /// documentation); `ordinal` keeps the query's own order through the join.
    pub fn session_checked(&self, session_params: usize) -> String {
        let (session, user) = (session_params, session_params + 1);
        // A call reads the session through identity.require_session; a query of tables reads
        // it itself (see the module documentation).
        let (with, check) = if self.calls {
            (
                String::new(),
                format!("SELECT 1 FROM identity.require_session(${session}, ${user})"),
            )
        } else {
            let ctes = self
                .with
                .map(|ctes| format!("{ctes},\n"))
                .unwrap_or_default();
            (
                format!(
                    "WITH {ctes}session_check AS MATERIALIZED (
                         SELECT EXISTS (
                             SELECT 1 FROM identity.sessions s
                             WHERE s.user_id = ${user} AND s.id = ${session} AND s.revoked_at IS NULL
                               AND EXISTS (SELECT 1 FROM identity.refresh_tokens t
                                           WHERE t.user_id = s.user_id AND t.session_id = s.id AND t.rotated_at IS NULL
                                             AND t.expires_at > (now() AT TIME ZONE 'UTC'))) AS live
                     )\n"
                ),
                "SELECT identity.require_live_session(live) FROM session_check".to_owned(),
            )
        };
        format!(
            "{with}SELECT found.* FROM ({check}) AS session, (VALUES (1)) AS one
             LEFT JOIN (SELECT true AS matched, row_number() OVER () AS ordinal, q.* FROM ({select}) AS q) AS found
             ON true
             ORDER BY found.ordinal",
            select = self.select
        )
    }
}

/// A JSON document as a `jsonb` parameter.
pub fn jsonb<T: serde::Serialize>(value: &T) -> Result<ParameterValue, DbError> {
    serde_json::to_vec(value)
        .map(ParameterValue::Jsonb)
        .map_err(|e| DbError::Other(format!("cannot encode a JSON parameter: {e}")))
}

/// Decodes column `column` of a row.
pub fn get<T: Decode>(row: &[DbValue], column: usize) -> Result<T, DbError> {
    let value = row.get(column).ok_or_else(|| DbError::Decode {
        column,
        reason: "no such column".into(),
    })?;
    T::decode(value).map_err(|e| DbError::Decode {
        column,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_sent_as_written_or_with_the_session_check() {
        assert_eq!(Query::select("SELECT 1").statement(), "SELECT 1");
        assert_eq!(
            Query::with("a AS (SELECT 1)", "SELECT * FROM a").statement(),
            "WITH a AS (SELECT 1)\nSELECT * FROM a"
        );
        let checked = Query::with("a AS (SELECT 1)", "SELECT * FROM a").session_checked(3);
        assert!(
            checked.starts_with("WITH a AS (SELECT 1),\nsession_check AS MATERIALIZED ("),
            "{checked}"
        );
        let call = Query::call("SELECT * FROM ledger.transfer($1)").session_checked(2);
        assert!(
            call.starts_with(
                "SELECT found.* FROM (SELECT 1 FROM identity.require_session($2, $3)) AS session"
            ),
            "{call}"
        );
        assert!(
            checked.contains("WHERE s.user_id = $4 AND s.id = $3 AND s.revoked_at IS NULL"),
            "{checked}"
        );
    }

    #[test]
    fn only_a_statement_s_own_sqlstate_leaves_the_connection_usable() {
        let query = |code: &str| DbError::Query {
            code: code.into(),
            message: String::new(),
        };
        for own in ["23505", "40001", "57014", "28000", "P0001"] {
            assert!(!query(own).is_connection_failure(), "{own}");
        }
        for lost in ["08006", "57P01", "57P03"] {
            assert!(query(lost).is_connection_failure(), "{lost}");
        }
        assert!(
            DbError::Other("Error { kind: Closed, cause: None }".into()).is_connection_failure()
        );
        assert!(DbError::Connect("refused".into()).is_connection_failure());
    }
}
