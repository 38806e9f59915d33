//! `POST /deposits {accountId, amount}` and `POST /withdrawals {accountId, amount}`: money
//! entering or leaving the platform, between the owner's wallet and the currency's
//! settlement account. A withdrawal never overdraws.

use serde::Deserialize;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db},
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
#[serde(rename_all = "camelCase")]
struct SettlementBody {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    amount: Option<String>,
}

#[derive(Clone, Copy)]
enum Direction {
    Deposit,
    Withdrawal,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Deposit => "deposit",
            Direction::Withdrawal => "withdrawal",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Direction::Deposit => Kind::Deposit,
            Direction::Withdrawal => Kind::Withdrawal,
        }
    }
}

pub async fn deposit(request: Request, _: Params) -> Result<Response, Problem> {
    settle(&request, Direction::Deposit).await
}

pub async fn withdraw(request: Request, _: Params) -> Result<Response, Problem> {
    settle(&request, Direction::Withdrawal).await
}

async fn settle(request: &Request, direction: Direction) -> Result<Response, Problem> {
    let caller = auth::authenticate(request).await?;
    let key = IdempotencyKey::from_request(request)?;
    let body: SettlementBody = http::json_body(request)?;
    let mut errors = Vec::new();
    let account = match body.account_id.as_deref().map(str::parse::<Uuid>) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(FieldError::new("accountId", "must be a wallet id (UUID)"));
            None
        }
        None => {
            errors.push(FieldError::new("accountId", "is required"));
            None
        }
    };
    let amount = match body.amount.as_deref().map(parse_amount) {
        Some(Ok(amount)) => Some(amount),
        Some(Err(e)) => {
            errors.push(FieldError::new("amount", e.to_string()));
            None
        }
        None => {
            errors.push(FieldError::new("amount", "is required"));
            None
        }
    };
    let (Some(account), Some(amount)) = (account, amount) else {
        return Err(Problem::validation(errors));
    };
    let terms = policy::terms(&Intent {
        kind: direction.kind(),
        amount: Some(amount),
        currency: None,
        initiator: caller.user_id,
        wallet: Some(account),
        recipient: None,
        refund_of: None,
        hold: None,
    })
    .await?;
    let print = fingerprint(
        &format!("POST /{}s", direction.name()),
        &[&account.to_string(), &amount.normalize().to_string()],
    );
    let db = Db::connect_as(&caller).await?;
    posting::run(
        &db,
        "SELECT status, body, problem, replayed
         FROM ledger.settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            direction.name().to_owned().into(),
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            Uuid::now_v7().into(),
            account.into(),
            amount.into(),
            db::jsonb(&terms)?,
        ],
    )
    .await
}
