//! `POST /transfers/{id}/refunds {amount?}`: the recipient of a transfer sends back part
//! or all of what is left of it. Concurrent refunds never exceed the transfer in total.

use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Param},
    http::{Request, Response},
    problem::Problem,
    router::Params,
};

use crate::{
    idempotency::{IdempotencyKey, fingerprint},
    policy::{self, Intent, Kind},
    posting,
    settings::idempotency_key_ttl_secs,
};

pub async fn handle(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("you did not receive a transfer with this id");
    let original: Uuid = params.uuid("id").ok_or_else(not_found)?;
    let key = IdempotencyKey::from_request(&request)?;
    let amount = posting::part_amount(&request)?;
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
        hold: None,
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
