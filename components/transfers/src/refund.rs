//! `POST /transfers/{id}/refunds {amount?}`: the recipient of a transfer sends back part
//! or all of what is left of it. Concurrent refunds never exceed the transfer in total.

use serde::Deserialize;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Param},
    http::{self, Request, Response},
    money::parse_amount,
    problem::{FieldError, Problem},
    router::Params,
};

use crate::{
    idempotency::{IdempotencyKey, fingerprint},
    policy::{self, Intent, Kind},
    posting,
    settings::idempotency_key_ttl_secs,
};

#[derive(Deserialize)]
struct RefundBody {
    #[serde(default)]
    amount: Option<String>,
}

pub async fn handle(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("you did not receive a transfer with this id");
    let original: Uuid = params.uuid("id").ok_or_else(not_found)?;
    let key = IdempotencyKey::from_request(&request)?;
    // An empty body asks for everything that is left.
    let body: RefundBody = if request.body().is_empty() {
        RefundBody { amount: None }
    } else {
        http::json_body(&request)?
    };
    let amount = match body.amount.as_deref().map(parse_amount) {
        Some(Ok(amount)) => Some(amount),
        Some(Err(e)) => return Err(FieldError::new("amount", e.to_string()).into()),
        None => None,
    };
    let print = fingerprint(
        "POST /transfers/{id}/refunds",
        &[&original.to_string(), &amount.map(|a| a.normalize().to_string()).unwrap_or_default()],
    );
    let terms = policy::terms(&Intent {
        kind: Kind::Refund,
        amount,
        currency: None,
        initiator: caller.user_id,
        wallet: None,
        recipient: None,
        refund_of: Some(original),
    })
    .await?;
    let db = Db::connect_as(&caller).await?;
    posting::run(
        &db,
        "SELECT status, body, problem, replayed
         FROM ledger.refund($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            Uuid::now_v7().into(),
            original.into(),
            amount.map_or(Param::DbNull, Into::into),
            db::jsonb(&terms)?,
        ],
    )
    .await
}
