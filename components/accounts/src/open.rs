//! `POST /accounts {currency}`: opens a wallet, with the `account.opened` event in the same
//! statement. The owner's one active wallet of a currency is claimed in
//! `accounts.owner_wallets` first, and the wallet's id is drawn on its owner's shard
//! (`accounts.id_on_shard_of`; the id as given on one PostgreSQL server). The currency's
//! settlement account is opened by its first deposit or withdrawal.

use serde::Deserialize;
use uuid::Uuid;
use wasmpay_common::{
    auth, config,
    currency::Currency,
    db::{Db, Query, sqlstate},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
};

use crate::account::{AccountView, EMPTY_ACCOUNT_COLUMNS};

#[derive(Deserialize)]
struct OpenBody {
    #[serde(default)]
    currency: Option<String>,
}

/// `allowed_currencies`: comma-separated ISO codes this deployment accepts; empty = all.
async fn currency_allowed(currency: Currency) -> Result<bool, Problem> {
    let allowed = config::text("allowed_currencies").await?;
    let codes: Vec<&str> = allowed.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    Ok(codes.is_empty() || codes.iter().any(|code| code.eq_ignore_ascii_case(currency.code())))
}

pub async fn handle(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let body: OpenBody = http::json_body(&request)?;
    let currency = match body.currency.as_deref().map(Currency::parse) {
        Some(Ok(currency)) => currency,
        Some(Err(e)) => return Err(FieldError::new("currency", e.to_string()).into()),
        None => return Err(FieldError::new("currency", "is required").into()),
    };
    if !currency_allowed(currency).await? {
        return Err(Problem::unprocessable(
            "currency-not-supported",
            "Currency not supported",
            format!("this deployment does not hold {currency}"),
        ));
    }
    let account_id = Uuid::now_v7();
    let db = Db::connect_as(&caller).await?;
    let opened = db.query_opt(
        &Query::with(
            &format!("wallet AS (
                 INSERT INTO accounts.owner_wallets (owner_id, currency, account_id)
                 VALUES ($2, $3, accounts.id_on_shard_of($1, $2))
                 ON CONFLICT DO NOTHING
                 RETURNING account_id
             ), a AS (
                 INSERT INTO accounts.accounts (id, kind, owner_id, currency, scale)
                 SELECT account_id, 'user', $2, $3, $5 FROM wallet
                 RETURNING *
             ), event AS (
                 INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT $4, 'accounts', id::text, 'account.opened',
                        jsonb_build_object('accountId', id, 'ownerId', owner_id, 'currency', currency)
                 FROM a
             )"),
            &format!("SELECT {EMPTY_ACCOUNT_COLUMNS} FROM a"),
        ),
        &[
            account_id.into(),
            caller.user_id.into(),
            currency.code().to_owned().into(),
            Uuid::now_v7().into(),
            i16::try_from(currency.scale()).unwrap_or(i16::MAX).into(),
        ],
    )
    .await;
    let opened = match opened {
        Err(e) if e.sqlstate() == Some(sqlstate::FOREIGN_KEY_VIOLATION) => {
            return Err(Problem::not_found("the user of this access token no longer exists"));
        }
        other => other?,
    };
    let Some(row) = opened else {
        return Err(Problem::conflict(
            "account-exists",
            "Wallet already open",
            format!("you already have an active {currency} wallet"),
        ));
    };
    Ok(http::json(201, &AccountView::from_row(&row)?))
}
