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
            &Query::call("SELECT ledger.transfer_json(t) FROM ledger.visible_transfer($1, $2) t WHERE t.id IS NOT NULL"),
            &[id.into(), caller.user_id.into()],
        )
        .await?
        .ok_or_else(not_found)?;
    let body: serde_json::Value = db::get(&row, 0)?;
    Ok(http::json(200, &body))
}
