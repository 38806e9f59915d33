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
//!
//! # Access tokens end with their session
//!
//! A connection opened for a caller ([`Db::connect_as`]) adds the session check to every
//! query it runs: `identity.require_session(sid, sub)` joins the statement, which fails as a
//! whole (writes included) with SQLSTATE 28000 when the token's session was revoked or has
//! expired. The check costs no round trip; the caller gets 401 `invalid-token`, as for a
//! bad signature. Work an authenticated request does on user data is therefore a
//! [`Query`]; [`Db::execute`] is for statements made on no one's behalf (login failures).

use spin_sdk::pg4::{self, Connection, DbValue, Decode, ParameterValue, PgError, RowSet};

use crate::{
    auth::{self, Principal},
    config,
    problem::Problem,
};

pub use pg4::{DbValue as Value, ParameterValue as Param};

/// SQLSTATE codes the components react to.
pub mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const RAISE_EXCEPTION: &str = "P0001";
    /// `identity.require_session`: the access token's session has ended.
    pub const SESSION_ENDED: &str = "28000";
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
            PgError::QueryFailed(pg4::QueryError::Text(text)) => match sqlstate_in_text(&text) {
                Some(code) => DbError::Query { code, message: text },
                None => DbError::Other(text),
            },
            PgError::BadParameter(text) | PgError::ValueConversionFailed(text) | PgError::Other(text) => {
                DbError::Other(text)
            }
        }
    }
}

/// Spin 4.0.0 to 4.0.2 hand a failed `query` to the guest as `QueryError::Text` holding
/// the debug form of the structured error (`Error::QueryFailed(QueryError::DbError(DbError
/// { …, code: "40001", … }))`) instead of `QueryError::DbError` (observed for `query`, the
/// only call whose SQLSTATE the components act on; not checked for `execute`). The SQLSTATE
/// is read back from that text, so retries and refusals that depend on it behave the same
/// on every release.
fn sqlstate_in_text(text: &str) -> Option<String> {
    let (_, after) = text.split_once("DbError {")?.1.split_once("code: \"")?;
    let code = after.get(..5)?;
    (code.bytes().all(|b| b.is_ascii_alphanumeric()) && after[5..].starts_with('"')).then(|| code.to_owned())
}

impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        if error.sqlstate() == Some(sqlstate::SESSION_ENDED) {
            return auth::invalid_token("the session of this access token has ended; sign in again");
        }
        eprintln!("database error: {error}");
        match error {
            DbError::Connect(_) => Problem::service_unavailable("the database is unreachable; nothing was changed"),
            _ => Problem::internal(),
        }
    }
}

pub struct Db {
    connection: Connection,
    /// Whose session every query checks, for a request with an access token.
    caller: Option<Principal>,
}

impl Db {
    /// Opens a connection to the database named by the `db_url` variable, for work done on
    /// no one's behalf (health, registration, login, refresh).
    pub fn connect() -> Result<Self, Problem> {
        let url = config::text("db_url")?;
        let connection = Connection::open(&url).map_err(DbError::from)?;
        Ok(Self { connection, caller: None })
    }

    /// Opens a connection for an authenticated caller: every query on it also checks that
    /// the caller's session is live (see the module documentation).
    pub fn connect_as(caller: &Principal) -> Result<Self, Problem> {
        Ok(Self {
            caller: Some(*caller),
            ..Self::connect()?
        })
    }

    /// A statement that returns no rows (`INSERT`, `UPDATE`, `DELETE` without `RETURNING`):
    /// the number of rows it affected.
    pub fn execute(&self, statement: &str, params: &[ParameterValue]) -> Result<u64, DbError> {
        Ok(self.connection.execute(statement, params)?)
    }

    /// Every row the query matched, in its order (none is an empty vector).
    pub fn query_all(&self, query: &Query<'_>, params: &[ParameterValue]) -> Result<Vec<Row>, DbError> {
        let result: RowSet = match &self.caller {
            None => self.connection.query(&query.at_least_one_row(None), params)?,
            Some(caller) => {
                let mut all = params.to_vec();
                all.extend([caller.session_id.into(), caller.user_id.into()]);
                self.connection.query(&query.at_least_one_row(Some(params.len() + 1)), &all)?
            }
        };
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
    /// the query's own order through the join. With `session_params`, the number of the
    /// first of two parameters holding the caller's session and user ids, the statement
    /// also checks that session (and fails as a whole if it has ended).
    pub fn at_least_one_row(&self, session_params: Option<usize>) -> String {
        let with = self.with.map(|ctes| format!("WITH {ctes}\n")).unwrap_or_default();
        let session = session_params
            .map(|n| format!("(SELECT identity.require_session(${n}, ${})) AS session, ", n + 1))
            .unwrap_or_default();
        format!(
            "{with}SELECT found.* FROM {session}(VALUES (1)) AS one
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
    fn the_sqlstate_is_read_back_from_spin_4_0s_text_errors() {
        let text = r#"Error::QueryFailed(QueryError::DbError(DbError { as-text: "Error { kind: Db, code: SqlState(E40001) }", severity: "ERROR", code: "40001", message: "could not serialize access", detail: None, extras: [] }))"#;
        assert_eq!(sqlstate_in_text(text).as_deref(), Some("40001"));
        let error = DbError::from(PgError::QueryFailed(pg4::QueryError::Text(text.into())));
        assert!(error.is_transient(), "{error:?}");
        assert_eq!(sqlstate_in_text("connection reset by peer"), None);
        assert_eq!(sqlstate_in_text(r#"DbError { code: "4000" }"#), None);
    }

    #[test]
    fn queries_return_at_least_one_row_and_may_check_the_session() {
        let plain = Query::select("SELECT 1").at_least_one_row(None);
        assert!(plain.starts_with("SELECT found.* FROM (VALUES (1)) AS one"), "{plain}");
        let checked = Query::with("a AS (SELECT 1)", "SELECT * FROM a").at_least_one_row(Some(3));
        assert!(checked.starts_with("WITH a AS (SELECT 1)\nSELECT found.* FROM (SELECT identity.require_session($3, $4)) AS session, (VALUES (1))"), "{checked}");
    }
}
