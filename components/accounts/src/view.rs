//! `GET /accounts/me` (every wallet of the caller, newest first) and `GET /accounts/{id}`
//! (one wallet, with its active holds: those on its money and those in its favour).
//! Another user's wallet, or an id that is not a UUID, is a 404: no existence leak.

use serde::Serialize;
use serde_json::Value;
use wasmpay_common::{
    auth,
    db::{self, Db, DbError, Query},
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
/// Most active holds shown with a wallet, newest first.
const MAX_LISTED_HOLDS: i64 = 50;

#[derive(Serialize)]
struct WalletView {
    #[serde(flatten)]
    account: AccountView,
    holds: Vec<Value>,
}

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
            &Query::call(
                "SELECT a.id, a.currency, a.balance, a.status, a.created_at, a.closed_at,
                    ledger.held(a.id), ledger.wallet_holds(a.id, $3)
                 FROM accounts.owned_wallet($1, $2) a WHERE a.id IS NOT NULL",
            ),
            &[id.into(), caller.user_id.into(), MAX_LISTED_HOLDS.into()],
        )
        .await?
        .ok_or_else(not_found)?;
    let holds = serde_json::from_value(db::get(&row, 7)?)
        .map_err(|e| DbError::Decode { column: 7, reason: e.to_string() })?;
    let wallet = WalletView { account: AccountView::from_row(&row)?, holds };
    Ok(http::json(200, &wallet))
}
