//! The one way a component talks to PostgreSQL: Spin's `spin:postgres/postgres@4.0.0`.
//!
//! Spin pools connections per address and resets each one when the request ends, so a
//! component opens one connection per request and runs each transaction on it.
//!
//! # Every row-returning statement returns at least one row
//!
//! Under Spin 4.0.0 to 4.0.2, a `query` whose result has zero rows never returns: the host
//! waits for the column list, which Postgres only sends with the first row
//! (spinframework/spin issue 3671, fixed by PR 3673 after 4.0.2). The request hangs, with
//! nothing logged. Spin 3.x and later 4.0.x answer with an empty row set. To work on all of
//! them, components never send a statement that can match no row:
//!
//! - statements that return nothing go through [`Db::execute`];
//! - statements that return rows are a [`Query`], which [`Db::query_all`],
//!   [`Db::query_opt`] and [`Db::query_one`] wrap as
//!   `SELECT … FROM (VALUES (1)) AS one LEFT JOIN (<the query>) AS found ON true`: one row
//!   of NULLs stands for "no match", and these methods hand back only the matched rows.
//!
//! There is no raw `query` here, so a statement cannot bypass the rule. The test host
//! (`wasmpay-host`) fails any zero-row `query` loudly, so a statement that slipped past it
//! fails the test suite instead of hanging production.

use spin_sdk::pg4::{self, Connection, DbValue, Decode, ParameterValue, PgError, RowSet};

use crate::{config, problem::Problem};

pub use pg4::{DbValue as Value, ParameterValue as Param};

/// SQLSTATE codes the components react to.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const RAISE_EXCEPTION: &str = "P0001";
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
}

impl From<PgError> for DbError {
    fn from(error: PgError) -> Self {
        match error {
            PgError::ConnectionFailed(reason) => DbError::Connect(reason),
            PgError::QueryFailed(pg4::QueryError::DbError(db)) => DbError::Query {
                code: db.code,
                message: db.message,
            },
            PgError::QueryFailed(pg4::QueryError::Text(text)) => DbError::Other(text),
            PgError::BadParameter(text) | PgError::ValueConversionFailed(text) | PgError::Other(text) => {
                DbError::Other(text)
            }
        }
    }
}

impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        eprintln!("database error: {error}");
        match error {
            DbError::Connect(_) => Problem::service_unavailable("the database is unreachable; nothing was changed"),
            _ => Problem::internal(),
        }
    }
}

pub struct Db {
    connection: Connection,
}

impl Db {
    /// Opens a connection to the database named by the `db_url` variable.
    pub fn connect() -> Result<Self, Problem> {
        let url = config::text("db_url")?;
        let connection = Connection::open(&url).map_err(DbError::from)?;
        Ok(Self { connection })
    }

    /// A statement that returns no rows (`INSERT`, `UPDATE`, `DELETE` without `RETURNING`):
    /// the number of rows it affected.
    pub fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        Ok(self.connection.execute(statement, params)?)
    }

    /// Every row the query matched, in its order (none is an empty vector).
    pub fn query_all(&self, query: &Query<'_>, params: &[ParameterValue]) -> Result<Vec<Row>, DbError> {
        let result: RowSet = self.connection.query(&query.at_least_one_row(), params)?;
        Ok(result
            .rows
            .into_iter()
            .filter(|row| matches!(row.first(), Some(DbValue::Boolean(true))))
            .map(|mut row| row.split_off(WRAPPER_COLUMNS))
            .collect())
    }

    /// The first row the query matched, if any.
    pub fn query_opt(&self, query: &Query<'_>, params: &[ParameterValue]) -> Result<Option<Row>, DbError> {
        Ok(self.query_all(query, params)?.into_iter().next())
    }

    /// The row a query must match.
    pub fn query_one(&self, query: &Query<'_>, params: &[ParameterValue]) -> Result<Row, DbError> {
        self.query_opt(query, params)?
            .ok_or_else(|| DbError::Other("the query matched no row".into()))
    }
}

/// One result row, as Spin hands it over.
pub type Row = Vec<DbValue>;

/// Columns the wrapper puts before the query's own: `matched`, `ordinal`.
const WRAPPER_COLUMNS: usize = 2;

/// A statement that returns rows: optional common table expressions (which may modify
/// data) and the `SELECT` whose rows are wanted. Kept apart because Postgres allows
/// data-modifying `WITH` only at the top level of a statement, while the `SELECT` is
/// wrapped in a subquery (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    with: Option<&'a str>,
    select: &'a str,
}

impl<'a> Query<'a> {
    /// A `SELECT` (or `VALUES`, or a `SELECT` from a function) on its own.
    pub fn select(select: &'a str) -> Self {
        Self { with: None, select }
    }

    /// `WITH <ctes> <select>`: `ctes` is the list after `WITH` (`a AS (…), b AS (…)`).
    pub fn with(ctes: &'a str, select: &'a str) -> Self {
        Self { with: Some(ctes), select }
    }

    /// The statement sent to Postgres: at least one row, whatever matches. `ordinal` keeps
    /// the query's own order through the join.
    pub fn at_least_one_row(&self) -> String {
        let with = self.with.map(|ctes| format!("WITH {ctes}\n")).unwrap_or_default();
        format!(
            "{with}SELECT found.* FROM (VALUES (1)) AS one
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
