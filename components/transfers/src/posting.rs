//! Running a posting: one call of a ledger function, retried if Postgres reports a
//! serialization failure or deadlock (the call changed nothing then), and turning its
//! result into the response — the same status and body on a replay.

use rust_decimal::Decimal;
use serde::Deserialize;
use wasmpay_common::{
    db::{self, Db, DbError, Param, Query},
    http::{self, Request, Response},
    money::parse_amount,
    problem::{FieldError, Problem},
};

#[derive(Deserialize)]
struct PartBody {
    #[serde(default)]
    amount: Option<String>,
}

/// The `amount` of a request that may take part of something (a refund of a transfer, a
/// capture of a hold): none, with no body or no `amount`, asks for all that is left.
pub fn part_amount(request: &Request) -> Result<Option<Decimal>, Problem> {
    if request.body().is_empty() {
        return Ok(None);
    }
    let body: PartBody = http::json_body(request)?;
    match body.amount.as_deref().map(parse_amount) {
        Some(Ok(amount)) => Ok(Some(amount)),
        Some(Err(e)) => Err(FieldError::new("amount", e.to_string()).into()),
        None => Ok(None),
    }
}

/// Attempts of one posting when Postgres asks for a retry.
const MAX_ATTEMPTS: usize = 3;
/// `lock_not_available`: the ledger function's lock_timeout expired.
const LOCK_NOT_AVAILABLE: &str = "55P03";

pub async fn run(db: &Db, statement: &str, params: &[Param]) -> Result<Response, Problem> {
    let mut attempt = 1;
    let row = loop {
        match db.query_one(&Query::call(statement), params).await {
            Ok(row) => break row,
            Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => attempt += 1,
            Err(e) if e.is_transient() || e.sqlstate() == Some(LOCK_NOT_AVAILABLE) => {
                eprintln!("posting gave up: {e}");
                return Err(Problem::conflict(
                    "request-in-progress",
                    "Request in progress",
                    "a request with this Idempotency-Key or on these wallets is still running; retry shortly",
                )
                .with_header("retry-after", "1"));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let status: i32 = db::get(&row, 0)?;
    let replayed: bool = db::get(&row, 3)?;
    let body: Option<serde_json::Value> = db::get(&row, 1)?;
    let mut response = match (db::get::<Option<String>>(&row, 2)?, body) {
        (Some(slug), Some(policy_problem)) => policy_refusal(status, slug, &policy_problem)?.into_response(),
        (Some(slug), None) => refused(status, &slug)?.into_response(),
        (None, body) => wasmpay_common::http::json(
            u16::try_from(status).map_err(|_| bad_status(status))?,
            &body.unwrap_or_default(),
        ),
    };
    if replayed {
        response.set_header("idempotent-replayed", "true");
    }
    Ok(response)
}

fn bad_status(status: i32) -> Problem {
    eprintln!("the ledger returned status {status}");
    Problem::internal()
}

/// The problem for a posting a policy's requirement refused: its slug, and the title and
/// detail the policy gave, stored with the idempotency key.
fn policy_refusal(status: i32, slug: String, problem: &serde_json::Value) -> Result<Problem, DbError> {
    let text = |name: &str| problem[name].as_str().map(str::to_owned);
    let (Some(title), Some(detail), Ok(status)) = (text("title"), text("detail"), u16::try_from(status)) else {
        return Err(DbError::Other(format!("the ledger stored an unreadable refusal {problem} for {slug}")));
    };
    Ok(Problem::new(status, slug, title, detail))
}

/// The problem for a posting the ledger refused, by its slug.
fn refused(status: i32, slug: &str) -> Result<Problem, DbError> {
    let (slug, title, detail): (&'static str, &'static str, &'static str) = match slug {
        "account-not-found" => ("account-not-found", "Wallet not found", "you have no wallet with this id"),
        "recipient-not-found" => (
            "recipient-not-found",
            "Recipient not found",
            "the recipient has no active wallet in this currency",
        ),
        "same-account" => ("same-account", "Same wallet", "a transfer needs two different wallets"),
        "email-not-verified" => (
            "email-not-verified",
            "E-mail not verified",
            "verify your e-mail address before moving money",
        ),
        "account-closed" => ("account-closed", "Wallet closed", "a wallet in this posting is closed"),
        "currency-mismatch" => (
            "currency-mismatch",
            "Currency mismatch",
            "both wallets must hold the currency of the transfer",
        ),
        "insufficient-funds" => (
            "insufficient-funds",
            "Insufficient funds",
            "the wallet's available balance (its balance less its active holds) is lower than the amount",
        ),
        "amount-too-precise" => (
            "amount-too-precise",
            "Amount too precise",
            "the amount has more decimals than the wallet's currency allows",
        ),
        "amount-above-limit" => (
            "amount-above-limit",
            "Amount above limit",
            "the amount exceeds the most one posting may move in this currency",
        ),
        "transfer-not-found" => (
            "transfer-not-found",
            "Transfer not found",
            "you did not receive a transfer with this id",
        ),
        "not-refundable" => ("not-refundable", "Not refundable", "only transfers between users can be refunded"),
        "refund-exceeds-transfer" => (
            "refund-exceeds-transfer",
            "Refund exceeds transfer",
            "refunds of a transfer cannot exceed what is left of it",
        ),
        "hold-not-found" => (
            "hold-not-found",
            "Hold not found",
            "neither of your wallets takes part in a hold with this id",
        ),
        "capture-by-payee-only" => (
            "capture-by-payee-only",
            "Only the payee captures",
            "a hold is captured by the owner of the wallet it is in favour of; the payer can void it",
        ),
        "hold-not-active" => (
            "hold-not-active",
            "Hold not active",
            "the hold was already captured or voided",
        ),
        "hold-expired" => ("hold-expired", "Hold expired", "the hold expired and its money is free again"),
        "capture-exceeds-hold" => (
            "capture-exceeds-hold",
            "Capture exceeds hold",
            "a capture takes more than zero and at most the amount held",
        ),
        "idempotency-key-reused" => (
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used for a different request",
        ),
        other => {
            return Err(DbError::Other(format!("the ledger refused with an unknown outcome {other:?}")));
        }
    };
    let status = u16::try_from(status).map_err(|_| DbError::Other(format!("bad status {status}")))?;
    Ok(Problem::new(status, slug, title, detail))
}
