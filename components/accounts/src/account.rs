//! How a wallet appears in responses, and the columns that make it.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;
use wasmpay_common::{
    currency::Currency,
    db::{self, DbError, Value as DbValue},
    money::format_amount,
    time,
};

/// `a.` columns, in the order [`AccountView::from_row`] reads them, ending with what its
/// active holds reserve (as `ledger.held`, migrations/V13; read here in the query, which on
/// Citus runs on the wallet's shard, where the holds on its money are).
pub const ACCOUNT_COLUMNS: &str = "a.id, a.currency, a.balance, a.status, a.created_at, a.closed_at,
     (SELECT sum(h.amount) FROM ledger.holds h
      WHERE h.payer_account_id = a.id AND h.status = 'pending'
        AND h.expires_at > clock_timestamp() AT TIME ZONE 'UTC')";

/// The same for a wallet just opened or just closed (balance zero): nothing is on hold.
pub const EMPTY_ACCOUNT_COLUMNS: &str = "a.id, a.currency, a.balance, a.status, a.created_at, a.closed_at, 0::numeric";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: Uuid,
    pub currency: String,
    /// At the currency's scale: "0.00" USD, "0" VND, "0.000" BHD.
    pub balance: String,
    /// What the wallet can spend: its balance less its active holds.
    pub available: String,
    /// What its active holds reserve.
    pub held: String,
    pub status: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
}

impl AccountView {
    pub fn from_row(row: &[DbValue]) -> Result<Self, DbError> {
        let code: String = db::get(row, 1)?;
        let currency = Currency::parse(&code).map_err(|e| DbError::Decode {
            column: 1,
            reason: e.to_string(),
        })?;
        let balance: Decimal = db::get(row, 2)?;
        let held = db::get::<Option<Decimal>>(row, 6)?.unwrap_or_default();
        Ok(Self {
            id: db::get(row, 0)?,
            currency: code,
            balance: format_amount(balance, currency),
            available: format_amount(balance - held, currency),
            held: format_amount(held, currency),
            status: db::get(row, 3)?,
            created_at: time::rfc3339(db::get::<NaiveDateTime>(row, 4)?),
            closed_at: db::get::<Option<NaiveDateTime>>(row, 5)?.map(time::rfc3339),
        })
    }
}
