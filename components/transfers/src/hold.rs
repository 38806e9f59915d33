//! Holds: `POST /holds` reserves money in the payer's wallet for a payee, `POST
//! /holds/{id}/capture` (the payee) turns all or part of it into a transfer and releases
//! the rest, `POST /holds/{id}/void` (either party) releases it, `GET /holds/{id}` shows
//! it. A hold expires by itself: from its expiry on, the ledger no longer counts it
//! (migrations/V12__holds.sql). Placing and capturing are asked of the policies; voiding
//! only frees money and is not.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    currency::Currency,
    db::{self, Db, DbError, Param, Query},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
};

use crate::{
    idempotency::{IdempotencyKey, fingerprint},
    policy::{self, Intent, Kind},
    posting,
    settings::{hold_default_expiry_secs, hold_max_expiry_secs, idempotency_key_ttl_secs},
    transfer::{self, TransferBody},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    #[serde(flatten)]
    transfer: TransferBody,
    #[serde(default)]
    expires_in_secs: Option<Value>,
}

/// `expiresInSecs`: a whole number of seconds from 1 to `max_secs` (`60` or `60.0`, both
/// integers to JSON Schema); absent, `default_secs`.
fn parse_expiry(value: Option<&Value>, default_secs: i64, max_secs: i64) -> Result<i64, FieldError> {
    let Some(value) = value else { return Ok(default_secs) };
    let whole = value.as_i64().or_else(|| {
        value.as_f64().filter(|secs| secs.fract() == 0.0 && secs.abs() <= max_secs as f64).map(|secs| secs as i64)
    });
    match whole {
        Some(secs) if (1..=max_secs).contains(&secs) => Ok(secs),
        _ => Err(FieldError::new(
            "expiresInSecs",
            format!("must be a whole number of seconds from 1 to {max_secs}"),
        )),
    }
}

pub async fn place(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let key = IdempotencyKey::from_request(&request)?;
    let body: HoldBody = http::json_body(&request)?;
    let max_secs = hold_max_expiry_secs().await?;
    let expiry = parse_expiry(body.expires_in_secs.as_ref(), hold_default_expiry_secs().await?, max_secs);
    let (expires_in_secs, errors) = match expiry {
        Ok(secs) => (secs, Vec::new()),
        Err(error) => (0, vec![error]),
    };
    let order = transfer::parse(body.transfer, errors)?;
    order.check_distinct()?;
    let terms = policy::terms(&order.intent(Kind::Hold, caller.user_id)).await?;
    let (to_account, to_email_key) = order.recipient_params();
    let [from, recipient, amount, currency, description] = order.print_fields();
    let expiry_field = expires_in_secs.to_string();
    let print = fingerprint("POST /holds", &[&from, &recipient, &amount, &currency, &description, &expiry_field]);
    let db = Db::connect_as(&caller).await?;
    posting::run(
        &db,
        "SELECT status, body, problem, replayed
         FROM ledger.place_hold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            Uuid::now_v7().into(),
            order.from.into(),
            to_account,
            to_email_key,
            order.money.currency().code().to_owned().into(),
            order.money.amount().into(),
            order.description.into(),
            expires_in_secs.into(),
            db::jsonb(&terms)?,
        ],
    )
    .await
}

fn hold_not_found() -> Problem {
    Problem::new(404, "hold-not-found", "Hold not found", "neither of your wallets takes part in a hold with this id")
}

pub async fn view(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let id: Uuid = params.uuid("id").ok_or_else(hold_not_found)?;
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(
            &Query::call("SELECT ledger.hold_json(h) FROM ledger.visible_hold($1, $2) h WHERE h.id IS NOT NULL"),
            &[id.into(), caller.user_id.into()],
        )
        .await?
        .ok_or_else(hold_not_found)?;
    let body: Value = db::get(&row, 0)?;
    Ok(http::json(200, &body))
}

/// What a capture's policies are asked about: the hold's parties and currency, which never
/// change once it is placed.
struct Placed {
    payer_wallet: Uuid,
    payee_wallet: Uuid,
    currency: Currency,
    payer: Uuid,
    amount: Decimal,
}

async fn placed(db: &Db, id: Uuid, caller: Uuid) -> Result<Placed, Problem> {
    let row = db
        .query_opt(
            &Query::call("SELECT h.payer_account_id, h.payee_account_id, h.currency, h.initiated_by, h.amount
             FROM ledger.visible_hold($1, $2) h WHERE h.id IS NOT NULL"),
            &[id.into(), caller.into()],
        )
        .await?
        .ok_or_else(hold_not_found)?;
    let code: String = db::get(&row, 2)?;
    let currency = Currency::parse(&code).map_err(|e| DbError::Decode { column: 2, reason: e.to_string() })?;
    Ok(Placed {
        payer_wallet: db::get(&row, 0)?,
        payee_wallet: db::get(&row, 1)?,
        currency,
        payer: db::get(&row, 3)?,
        amount: db::get(&row, 4)?,
    })
}

pub async fn capture(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let id: Uuid = params.uuid("id").ok_or_else(hold_not_found)?;
    let key = IdempotencyKey::from_request(&request)?;
    let amount = posting::part_amount(&request)?;
    let db = Db::connect_as(&caller).await?;
    let hold = placed(&db, id, caller.user_id).await?;
    let terms = policy::terms(&Intent {
        kind: Kind::Capture,
        amount: Some(amount.unwrap_or(hold.amount)),
        currency: Some(hold.currency),
        initiator: hold.payer,
        wallet: Some(hold.payer_wallet),
        recipient: Some(policy::Recipient::Wallet(hold.payee_wallet)),
        refund_of: None,
        hold: Some(id),
    })
    .await?;
    let print = fingerprint(
        "POST /holds/{id}/capture",
        &[&id.to_string(), &amount.map(|a| a.normalize().to_string()).unwrap_or_default()],
    );
    posting::run(
        &db,
        "SELECT status, body, problem, replayed
         FROM ledger.capture_hold($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            Uuid::now_v7().into(),
            id.into(),
            amount.map_or(Param::DbNull, Into::into),
            db::jsonb(&terms)?,
        ],
    )
    .await
}

pub async fn void(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let id: Uuid = params.uuid("id").ok_or_else(hold_not_found)?;
    let key = IdempotencyKey::from_request(&request)?;
    let print = fingerprint("POST /holds/{id}/void", &[&id.to_string()]);
    let db = Db::connect_as(&caller).await?;
    posting::run(
        &db,
        "SELECT status, body, problem, replayed FROM ledger.void_hold($1, $2, $3, $4, $5, $6)",
        &[
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            id.into(),
        ],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_whole_seconds_within_the_maximum() {
        assert_eq!(parse_expiry(None, 604_800, 2_592_000), Ok(604_800));
        assert_eq!(parse_expiry(Some(&Value::from(1)), 604_800, 2_592_000), Ok(1));
        assert_eq!(parse_expiry(Some(&Value::from(2_592_000)), 604_800, 2_592_000), Ok(2_592_000));
        assert_eq!(parse_expiry(Some(&Value::from(54_521.0)), 604_800, 2_592_000), Ok(54_521), "an integer to JSON Schema");
        for bad in [Value::from(0), Value::from(-5), Value::from(2_592_001), Value::from(1.5), Value::from(2_592_001.0), Value::from("60")] {
            assert!(parse_expiry(Some(&bad), 604_800, 2_592_000).is_err(), "{bad}");
        }
    }
}
