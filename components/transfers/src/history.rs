//! `GET /accounts/{id}/transactions?limit&cursor&from&to`: a wallet's postings, newest
//! first, for its owner only.
//!
//! Pages follow the wallet's version, which each posting and each hold placed increments
//! under the wallet's row lock: versions grow in commit order, so items arriving while a
//! client pages only ever appear before its first page, never between pages. The cursor is
//! opaque. A hold appears where it was placed, with its status now.

use chrono::NaiveDateTime;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Param, Query},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
    time,
};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Counterparty {
    account_id: Uuid,
    name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Transaction {
    /// The ledger entry's id, or `hold:` and the hold's.
    id: String,
    /// The posting; for a hold, the transfer its capture became, if it was captured.
    transfer_id: Option<Uuid>,
    kind: &'static str,
    /// Signed: negative left the wallet (a fee included).
    amount: String,
    /// The fee within `amount`, on a transfer out that paid one.
    #[serde(skip_serializing_if = "Option::is_none")]
    fee: Option<String>,
    balance_after: String,
    counterparty: Option<Counterparty>,
    description: Option<String>,
    created_at: String,
    /// The hold a hold item is, or a transfer captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<Uuid>,
    /// A hold item's status now: pending, captured, voided or expired.
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_status: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    transactions: Vec<Transaction>,
    next_cursor: Option<String>,
}

struct PageQuery {
    limit: i64,
    before_version: Option<i64>,
    from: Option<NaiveDateTime>,
    to: Option<NaiveDateTime>,
}

/// A cursor is the wallet version its page ends before, as 16 lower-case hex digits. Every
/// string of that shape (openapi.yaml's `^[0-7][0-9a-f]{15}$`) is a position: version 0
/// comes before every posting, so its page is empty.
fn encode_cursor(version: i64) -> String {
    format!("{version:016x}")
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let hex = cursor.len() == 16 && cursor.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    // The first digit above 7 overflows i64 and is refused.
    hex.then(|| i64::from_str_radix(cursor, 16).ok()).flatten()
}

fn parse_query(query: &str) -> Result<PageQuery, Problem> {
    let mut parsed = PageQuery {
        limit: DEFAULT_LIMIT,
        before_version: None,
        from: None,
        to: None,
    };
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => parsed.limit = limit,
                _ => errors.push(FieldError::new("limit", "must be an integer from 1 to 100")),
            },
            // An empty cursor asks for the first page, as no cursor does.
            "cursor" if value.is_empty() => parsed.before_version = None,
            "cursor" => match decode_cursor(&value) {
                Some(version) => parsed.before_version = Some(version),
                None => errors.push(FieldError::new("cursor", "is not a cursor this API returned")),
            },
            "from" | "to" => match time::parse_rfc3339(&value) {
                Some(at) if name == "from" => parsed.from = Some(at),
                Some(at) => parsed.to = Some(at),
                None => errors.push(FieldError::new(name.as_ref(), "must be an RFC 3339 date-time")),
            },
            _ => {}
        }
    }
    if let (Some(from), Some(to)) = (parsed.from, parsed.to)
        && from >= to
    {
        errors.push(FieldError::new("to", "must be after from"));
    }
    if errors.is_empty() { Ok(parsed) } else { Err(Problem::validation(errors)) }
}

fn kind(item_kind: &str, amount: Decimal) -> &'static str {
    let incoming = amount > Decimal::ZERO;
    match (item_kind, incoming) {
        ("hold-in", _) => "hold-in",
        ("hold-out", _) => "hold-out",
        ("transfer", true) => "transfer-in",
        ("transfer", false) => "transfer-out",
        ("refund", true) => "refund-in",
        ("refund", false) => "refund-out",
        ("deposit", _) => "deposit",
        _ => "withdrawal",
    }
}

fn render(amount: Decimal, scale: u32) -> String {
    let mut rendered = amount;
    rendered.rescale(scale);
    rendered.to_string()
}

pub async fn handle(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("no wallet with this id");
    let wallet: Uuid = params.uuid("id").ok_or_else(not_found)?;
    let query = parse_query(request.query())?;
    let db = Db::connect_as(&caller).await?;
    let rows = db
        .query_all(
            &Query::call("SELECT * FROM ledger.history($1, $2, $3, $4, $5, $6)"),
            &[
                wallet.into(),
                caller.user_id.into(),
                query.before_version.map_or(Param::DbNull, Into::into),
                query.from.map_or(Param::DbNull, Into::into),
                query.to.map_or(Param::DbNull, Into::into),
                (query.limit + 1).into(),
            ],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Err(not_found());
    };
    let scale = u32::try_from(db::get::<i16>(first, 0)?).unwrap_or(0);
    let mut transactions = Vec::new();
    let mut versions = Vec::new();
    for row in &rows {
        let Some(item_id) = db::get::<Option<String>>(row, 1)? else {
            break;
        };
        let amount: Decimal = db::get(row, 4)?;
        let item_kind: String = db::get(row, 3)?;
        let counterparty_kind: String = db::get(row, 7)?;
        transactions.push(Transaction {
            id: item_id,
            transfer_id: db::get(row, 2)?,
            kind: kind(&item_kind, amount),
            amount: render(amount, scale),
            fee: db::get::<Option<Decimal>>(row, 12)?.filter(|fee| !fee.is_zero()).map(|fee| render(fee, scale)),
            balance_after: render(db::get(row, 5)?, scale),
            counterparty: (counterparty_kind == "user")
                .then(|| {
                    Ok::<_, db::DbError>(Counterparty {
                        account_id: db::get(row, 6)?,
                        name: db::get(row, 8)?,
                    })
                })
                .transpose()?,
            description: db::get(row, 9)?,
            created_at: time::rfc3339(db::get(row, 10)?),
            hold_id: db::get(row, 13)?,
            hold_status: db::get(row, 14)?,
        });
        versions.push(db::get::<i64>(row, 11)?);
    }
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let next_cursor = if transactions.len() > limit {
        transactions.truncate(limit);
        versions.get(limit - 1).map(|version| encode_cursor(*version))
    } else {
        None
    };
    Ok(http::json(200, &Page { transactions, next_cursor }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_shapes() {
        assert_eq!(encode_cursor(42), "000000000000002a");
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor(&encode_cursor(i64::MAX)), Some(i64::MAX));
        assert_eq!(decode_cursor("0000000000000000"), Some(0));
        for shape in ["42", "000000000000002A", "8000000000000000", "+00000000000002a", "000000000000002a0", "%%%"] {
            assert_eq!(decode_cursor(shape), None, "{shape}");
        }
    }

    #[test]
    fn query_parameters_are_checked() {
        let query = parse_query("limit=5&from=2026-01-01T00%3A00%3A00%2B01%3A00").unwrap();
        assert_eq!(query.limit, 5);
        assert_eq!(parse_query("cursor=").unwrap().before_version, None, "an empty cursor is the first page");
        assert_eq!(query.from.map(time::rfc3339).as_deref(), Some("2025-12-31T23:00:00.000000Z"));
        for bad in ["limit=0", "limit=101", "limit=x", "cursor=abc", "from=yesterday", "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_are_named_by_direction() {
        assert_eq!(kind("transfer", Decimal::ONE), "transfer-in");
        assert_eq!(kind("transfer", -Decimal::ONE), "transfer-out");
        assert_eq!(kind("refund", -Decimal::ONE), "refund-out");
        assert_eq!(kind("deposit", Decimal::ONE), "deposit");
        assert_eq!(kind("withdrawal", -Decimal::ONE), "withdrawal");
        assert_eq!(kind("hold-out", -Decimal::ONE), "hold-out");
        assert_eq!(kind("hold-in", Decimal::ONE), "hold-in");
    }
}
