//! `GET /transfers/{id}`: visible to the owners of its two wallets only (404 for anyone else).

use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Query},
    http::{self, Request, Response},
    problem::Problem,
    router::Params,
};

pub async fn handle(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("no transfer with this id");
    let id: Uuid = params.uuid("id").ok_or_else(not_found)?;
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(
            &Query::select("SELECT ledger.transfer_json(t)
             FROM ledger.transfers t
             JOIN accounts.accounts source ON source.id = t.from_account_id
             JOIN accounts.accounts destination ON destination.id = t.to_account_id
             WHERE t.id = $1 AND (source.owner_id = $2 OR destination.owner_id = $2)"),
            &[id.into(), caller.user_id.into()],
        )
        .await?
        .ok_or_else(not_found)?;
    let body: serde_json::Value = db::get(&row, 0)?;
    Ok(http::json(200, &body))
}
