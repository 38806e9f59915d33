//! `GET /accounts/me` (every wallet of the caller, newest first) and `GET /accounts/{id}`.
//! Another user's wallet, or an id that is not a UUID, is a 404: no existence leak.

use serde::Serialize;
use wasmpay_common::{
    auth,
    db::{Db, Query},
    http::{self, Request, Response},
    problem::Problem,
    router::Params,
};

use crate::account::{ACCOUNT_COLUMNS, AccountView};

#[derive(Serialize)]
struct AccountList {
    accounts: Vec<AccountView>,
}

/// Most wallets listed; a user holds one active wallet per currency, so this is plenty.
const MAX_LISTED_ACCOUNTS: i64 = 500;

pub async fn mine(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let db = Db::connect_as(&caller).await?;
    let rows = db.query_all(
        &Query::select(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts.accounts a
             WHERE a.owner_id = $1 AND a.kind = 'user'
             ORDER BY a.created_at DESC, a.id DESC
             LIMIT $2")),
        &[caller.user_id.into(), MAX_LISTED_ACCOUNTS.into()],
    )
    .await?;
    let accounts = rows.iter().map(|row| AccountView::from_row(row)).collect::<Result<_, _>>()?;
    Ok(http::json(200, &AccountList { accounts }))
}

pub async fn one(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("no wallet with this id");
    let id = params.uuid("id").ok_or_else(not_found)?;
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(
            &Query::select(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts.accounts a WHERE a.id = $1 AND a.owner_id = $2")),
            &[id.into(), caller.user_id.into()],
        )
        .await?
        .ok_or_else(not_found)?;
    Ok(http::json(200, &AccountView::from_row(&row)?))
}
