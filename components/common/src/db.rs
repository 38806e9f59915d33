//! The one way a component talks to PostgreSQL: Spin's `spin:postgres/postgres@4.0.0`.
//!
//! Spin pools connections per address and resets each one when the request ends, so a
//! component opens one connection per request and runs each transaction on it.

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

    pub fn query(&self, statement: &str, params: &[ParameterValue]) -> Result<RowSet, DbError> {
        Ok(self.connection.query(statement, params)?)
    }

    pub fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        Ok(self.connection.execute(statement, params)?)
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, statement: &str, params: &[ParameterValue]) -> Result<Option<Vec<DbValue>>, DbError> {
        Ok(self.query(statement, params)?.rows.into_iter().next())
    }

    /// The single row a query must return.
    pub fn query_one(&self, statement: &str, params: &[ParameterValue]) -> Result<Vec<DbValue>, DbError> {
        self.query_opt(statement, params)?
            .ok_or_else(|| DbError::Other("the query returned no row".into()))
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
