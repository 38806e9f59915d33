//! `DELETE /accounts/{id}`: closes a wallet whose balance is exactly zero.
//!
//! One conditional UPDATE decides. A posting that is changing the balance holds the row
//! lock, so the close waits for it and then sees the new balance; once the close commits,
//! postings find the wallet closed (and the `closed_is_empty` constraint would refuse any
//! that did not look).

use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Query},
    http::{self, Request, Response},
    problem::Problem,
    router::Params,
};

use crate::account::{AccountView, EMPTY_ACCOUNT_COLUMNS};

pub async fn handle(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("no wallet with this id");
    let id = params.uuid("id").ok_or_else(not_found)?;
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(
            &Query::with(
                &format!("target AS MATERIALIZED (
                     SELECT a.id, a.status, a.balance FROM accounts.accounts a
                     WHERE a.id = $1 AND a.owner_id = $2
                 ), a AS (
                     UPDATE accounts.accounts a
                     SET status = 'closed', closed_at = now() AT TIME ZONE 'UTC',
                         updated_at = now() AT TIME ZONE 'UTC', version = version + 1
                     WHERE a.id = $1 AND a.owner_id = $2 AND a.status = 'active' AND a.balance = 0
                     RETURNING a.*
                 ), released AS (
                     DELETE FROM accounts.owner_wallets
                     WHERE owner_id = $2 AND account_id = $1 AND EXISTS (SELECT 1 FROM a)
                 ), event AS (
                     INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                     SELECT $3, 'accounts', id::text, 'account.closed',
                            jsonb_build_object('accountId', id, 'ownerId', owner_id, 'currency', currency)
                     FROM a
                 )"),
                &format!("SELECT EXISTS (SELECT 1 FROM a), t.status, {EMPTY_ACCOUNT_COLUMNS}
                 FROM target t LEFT JOIN a ON true"),
            ),
            &[id.into(), caller.user_id.into(), Uuid::now_v7().into()],
        )
        .await?
        .ok_or_else(not_found)?;
    if db::get::<bool>(&row, 0)? {
        return Ok(http::json(200, &AccountView::from_row(&row[2..])?));
    }
    if db::get::<String>(&row, 1)? == "closed" {
        return Err(Problem::conflict("account-closed", "Wallet closed", "this wallet is already closed"));
    }
    Err(Problem::conflict(
        "account-not-empty",
        "Wallet not empty",
        "only a wallet with a zero balance can be closed; withdraw or transfer the rest first",
    ))
}
