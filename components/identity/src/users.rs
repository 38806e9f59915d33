//! How a user appears in responses, and the columns that make it.

use chrono::NaiveDateTime;
use serde::Serialize;
use uuid::Uuid;
use wasmpay_common::{
    db::{self, DbError, Value as DbValue},
    time,
};

/// `u.` columns, in the order [`UserView::from_row`] reads them.
pub const USER_COLUMNS: &str = "u.id, u.email, u.full_name, u.email_verified_at IS NOT NULL, u.created_at";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub email_verified: bool,
    pub created_at: String,
}

impl UserView {
    /// Reads [`USER_COLUMNS`] starting at column `first`.
    pub fn from_row(row: &[DbValue], first: usize) -> Result<Self, DbError> {
        Ok(Self {
            id: db::get(row, first)?,
            email: db::get(row, first + 1)?,
            full_name: db::get(row, first + 2)?,
            email_verified: db::get(row, first + 3)?,
            created_at: time::rfc3339(db::get::<NaiveDateTime>(row, first + 4)?),
        })
    }
}

/// A display name: at most 100 characters as sent, no control characters, not blank; kept
/// trimmed. openapi.yaml's `FullName` states exactly these rules.
pub fn parse_full_name(text: &str) -> Result<String, String> {
    if text.chars().count() > 100 {
        return Err("must be at most 100 characters".into());
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let name = text.trim();
    if name.is_empty() {
        return Err("must not be blank".into());
    }
    Ok(name.to_owned())
}
