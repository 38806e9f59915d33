//! `POST /transfers {fromAccountId, toAccountId | toEmail, amount, currency, description?}`.

use serde::Deserialize;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    currency::Currency,
    db::{self, Db, Param},
    email::Email,
    http::{self, Request, Response},
    money::Money,
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
pub(crate) struct TransferBody {
    #[serde(default)]
    from_account_id: Option<String>,
    #[serde(default)]
    to_account_id: Option<String>,
    #[serde(default)]
    to_email: Option<String>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

pub(crate) enum Recipient {
    Account(Uuid),
    Email(Email),
}

/// Money to move from one of the caller's wallets to someone: a transfer, or the hold that
/// announces one.
pub(crate) struct Transfer {
    pub(crate) from: Uuid,
    pub(crate) to: Recipient,
    pub(crate) money: Money,
    pub(crate) description: Option<String>,
}

impl Transfer {
    /// Refuses a transfer to the wallet it comes from, before anything else is asked.
    pub(crate) fn check_distinct(&self) -> Result<(), Problem> {
        match self.to {
            Recipient::Account(to) if to == self.from => {
                Err(Problem::unprocessable("same-account", "Same wallet", "a transfer needs two different wallets"))
            }
            _ => Ok(()),
        }
    }

    /// The posting the policies are asked about, as `kind`.
    pub(crate) fn intent(&self, kind: Kind, initiator: Uuid) -> Intent<'_> {
        Intent {
            kind,
            amount: Some(self.money.amount()),
            currency: Some(self.money.currency()),
            initiator,
            wallet: Some(self.from),
            recipient: Some(match &self.to {
                Recipient::Account(id) => policy::Recipient::Wallet(*id),
                Recipient::Email(email) => policy::Recipient::Email(email),
            }),
            refund_of: None,
            hold: None,
        }
    }

    /// The recipient as the ledger functions take it: a wallet id, or an e-mail key.
    pub(crate) fn recipient_params(&self) -> (Param, Param) {
        match &self.to {
            Recipient::Account(id) => ((*id).into(), Param::DbNull),
            Recipient::Email(email) => (Param::DbNull, email.key().into()),
        }
    }

    /// The fields the request's fingerprint covers, normalised.
    pub(crate) fn print_fields(&self) -> [String; 5] {
        [
            self.from.to_string(),
            match &self.to {
                Recipient::Account(id) => format!("account:{id}"),
                Recipient::Email(email) => format!("email:{}", email.key()),
            },
            self.money.amount().normalize().to_string(),
            self.money.currency().code().to_owned(),
            self.description.clone().unwrap_or_default(),
        ]
    }
}

/// Longest description kept with a transfer.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// At most 200 characters as sent, no control characters; kept trimmed, and a blank one is
/// none. openapi.yaml's `TransferDescription` states exactly these rules.
pub fn parse_description(text: Option<String>) -> Result<Option<String>, FieldError> {
    let Some(text) = text else { return Ok(None) };
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(FieldError::new("description", "must be at most 200 characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(FieldError::new("description", "must not contain control characters"));
    }
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// The transfer a body describes, or every field error in it, after `errors` the caller
/// found in fields of its own.
pub(crate) fn parse(body: TransferBody, mut errors: Vec<FieldError>) -> Result<Transfer, Problem> {
    let mut uuid = |field: &str, value: Option<String>| match value.map(|v| v.parse::<Uuid>()) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(FieldError::new(field, "must be a wallet id (UUID)"));
            None
        }
        None => None,
    };
    let from = uuid("fromAccountId", body.from_account_id.clone());
    let to_account = uuid("toAccountId", body.to_account_id.clone());
    if body.from_account_id.is_none() {
        errors.push(FieldError::new("fromAccountId", "is required"));
    }
    let to = match (to_account, body.to_email) {
        (Some(id), None) => Some(Recipient::Account(id)),
        (None, Some(email)) if body.to_account_id.is_none() => match Email::parse(&email) {
            Ok(email) => Some(Recipient::Email(email)),
            Err(e) => {
                errors.push(FieldError::new("toEmail", e.to_string()));
                None
            }
        },
        (None, None) if body.to_account_id.is_none() => {
            errors.push(FieldError::new("toAccountId", "toAccountId or toEmail is required"));
            None
        }
        (Some(_), Some(_)) => {
            errors.push(FieldError::new("toEmail", "give toAccountId or toEmail, not both"));
            None
        }
        _ => None,
    };
    let currency = match body.currency.as_deref().map(Currency::parse) {
        Some(Ok(currency)) => Some(currency),
        Some(Err(e)) => {
            errors.push(FieldError::new("currency", e.to_string()));
            None
        }
        None => {
            errors.push(FieldError::new("currency", "is required"));
            None
        }
    };
    let money = match (body.amount.as_deref(), currency) {
        (Some(text), Some(currency)) => Money::parse(text, currency)
            .map_err(|e| errors.push(FieldError::new("amount", e.to_string())))
            .ok(),
        (None, _) => {
            errors.push(FieldError::new("amount", "is required"));
            None
        }
        (Some(_), None) => None,
    };
    let description = parse_description(body.description).map_err(|e| errors.push(e)).ok().flatten();
    match (from, to, money) {
        (Some(from), Some(to), Some(money)) if errors.is_empty() => Ok(Transfer {
            from,
            to,
            money,
            description,
        }),
        _ => Err(Problem::validation(errors)),
    }
}

pub async fn handle(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let key = IdempotencyKey::from_request(&request)?;
    let transfer = parse(http::json_body(&request)?, Vec::new())?;
    transfer.check_distinct()?;
    let terms = policy::terms(&transfer.intent(Kind::Transfer, caller.user_id)).await?;
    let (to_account, to_email_key) = transfer.recipient_params();
    let fields = transfer.print_fields();
    let print = fingerprint("POST /transfers", &fields.each_ref().map(String::as_str));
    let db = Db::connect_as(&caller).await?;
    posting::run(
        &db,
        "SELECT status, body, problem, replayed
         FROM ledger.transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            caller.user_id.into(),
            key.as_str().to_owned().into(),
            print.into(),
            idempotency_key_ttl_secs().await?.into(),
            Uuid::now_v7().into(),
            Uuid::now_v7().into(),
            transfer.from.into(),
            to_account,
            to_email_key,
            transfer.money.currency().code().to_owned().into(),
            transfer.money.amount().into(),
            transfer.description.into(),
            db::jsonb(&terms)?,
        ],
    )
    .await
}
