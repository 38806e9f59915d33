//! The posting policies (`wit/policy/policy.wit`): three plugin slots, asked in order about
//! every posting before the ledger is called. The first refusal wins and nothing else is
//! asked; fees add up; every requirement goes to the ledger function, which checks it
//! under the wallet locks. A slot's answer is checked here before it is trusted: one the
//! engine cannot enforce (a malformed amount, a fee on a deposit, a refusal with a bad
//! status) fails the request with a 503 and posts nothing.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;
use wasmpay_common::{config, currency::Currency, email::Email, problem::Problem};

spin_sdk::wit_bindgen::generate!({
    path: "../../wit/policy",
    world: "wasmpay:policy/engine",
    runtime_path: "spin_sdk::wit_bindgen::rt",
});

use wasmpay::policy::policy::{self as first_policy, Condition, Decision, PostingKind, Refusal, Requirement};

/// The variables every policy is given, when the manifest maps them to this component.
const SETTINGS: [&str; 6] = [
    "max_transfer_amount",
    "max_deposit_amount",
    "max_withdrawal_amount",
    "transfer_fees",
    "transfer_velocity",
    "blocked_parties",
];
/// Refusal statuses a policy may choose.
const REFUSAL_STATUSES: [u16; 5] = [403, 409, 422, 429, 503];
const MAX_SLUG_CHARS: usize = 64;
const MAX_TITLE_CHARS: usize = 100;
const MAX_DETAIL_CHARS: usize = 500;
const MAX_REQUIREMENTS_PER_POLICY: usize = 32;
const MAX_WINDOW_SECS: u32 = 31 * 24 * 60 * 60;
const MAX_AGE_SECS: u64 = 100 * 366 * 24 * 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Transfer,
    Deposit,
    Withdrawal,
    Refund,
}

pub enum Recipient<'a> {
    Wallet(Uuid),
    Email(&'a Email),
}

/// A posting as the request states it.
pub struct Intent<'a> {
    pub kind: Kind,
    pub amount: Option<Decimal>,
    pub currency: Option<Currency>,
    pub initiator: Uuid,
    pub wallet: Option<Uuid>,
    pub recipient: Option<Recipient<'a>>,
    pub refund_of: Option<Uuid>,
}

/// What the policies decided, as the ledger's posting functions take it (`p_terms`), or
/// the problem refusing the posting.
pub async fn terms(intent: &Intent<'_>) -> Result<Value, Problem> {
    let posting = posting(intent);
    let settings = settings().await?;
    let slots: [(&str, fn(&first_policy::Posting, &[(String, String)]) -> Decision); 3] = [
        ("wasmpay:policy/policy", first_policy::evaluate),
        ("second-policy", second_policy::evaluate),
        ("third-policy", third_policy::evaluate),
    ];
    let mut fee = Decimal::ZERO;
    let mut requirements = Vec::new();
    for (number, (slot, evaluate)) in (1..).zip(slots) {
        let unusable = |reason: String| {
            eprintln!("policy {slot} gave an unusable decision: {reason}");
            Problem::new(
                503,
                "policy-failed",
                "Policy failed",
                "a policy plugin gave an answer the engine cannot enforce; nothing was posted",
            )
        };
        match evaluate(&posting, &settings) {
            Decision::Refuse(refusal) => return Err(refused(refusal).map_err(unusable)?),
            Decision::Allow(terms) => {
                if let Some(text) = terms.fee {
                    fee += checked_fee(intent, &text).map_err(unusable)?;
                }
                if terms.requirements.len() > MAX_REQUIREMENTS_PER_POLICY {
                    return Err(unusable(format!("{} requirements", terms.requirements.len())));
                }
                for requirement in terms.requirements {
                    requirements.push(requirement_json(number, requirement).map_err(unusable)?);
                }
            }
        }
    }
    Ok(json!({
        "fee": (fee > Decimal::ZERO).then(|| fee.normalize().to_string()),
        "requirements": requirements,
    }))
}

fn posting(intent: &Intent) -> first_policy::Posting {
    first_policy::Posting {
        kind: match intent.kind {
            Kind::Transfer => PostingKind::Transfer,
            Kind::Deposit => PostingKind::Deposit,
            Kind::Withdrawal => PostingKind::Withdrawal,
            Kind::Refund => PostingKind::Refund,
        },
        amount: intent.amount.map(|amount| amount.normalize().to_string()),
        currency: intent.currency.map(|currency| first_policy::Currency {
            code: currency.code().to_owned(),
            minor_units: u8::try_from(currency.scale()).unwrap_or(u8::MAX),
        }),
        initiator: intent.initiator.to_string(),
        wallet: intent.wallet.map(|id| id.to_string()),
        recipient: intent.recipient.as_ref().map(|recipient| match recipient {
            Recipient::Wallet(id) => first_policy::Recipient::Wallet(id.to_string()),
            Recipient::Email(email) => first_policy::Recipient::Email(email.as_str().to_owned()),
        }),
        refund_of: intent.refund_of.map(|id| id.to_string()),
    }
}

/// The policy variables this component is given; unmapped ones are left out.
async fn settings() -> Result<Vec<(String, String)>, Problem> {
    let mut settings = Vec::new();
    for name in SETTINGS {
        if let Some(value) = config::optional(name).await? {
            settings.push((name.to_owned(), value));
        }
    }
    Ok(settings)
}

fn single_line(text: &str, max_chars: usize) -> Result<(), String> {
    let chars = text.chars().count();
    if chars == 0 || chars > max_chars || text.chars().any(char::is_control) {
        return Err(format!("{text:?} is not 1 to {max_chars} characters on one line"));
    }
    Ok(())
}

fn checked_refusal(refusal: &Refusal) -> Result<(), String> {
    if !REFUSAL_STATUSES.contains(&refusal.status) {
        return Err(format!("refusal status {}", refusal.status));
    }
    let slug = &refusal.slug;
    let words_ok = slug.split('-').all(|word| {
        word.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !words_ok || slug.len() > MAX_SLUG_CHARS {
        return Err(format!("refusal slug {slug:?}"));
    }
    single_line(&refusal.title, MAX_TITLE_CHARS)?;
    single_line(&refusal.detail, MAX_DETAIL_CHARS)
}

fn refused(refusal: Refusal) -> Result<Problem, String> {
    checked_refusal(&refusal)?;
    Ok(Problem::new(refusal.status, refusal.slug, refusal.title, refusal.detail))
}

fn decimal(text: &str) -> Result<Decimal, String> {
    let amount: Decimal = text.parse().map_err(|_| format!("{text:?} is not a decimal amount"))?;
    if amount < Decimal::ZERO {
        return Err(format!("{text:?} is negative"));
    }
    Ok(amount)
}

/// A fee the ledger can charge: on a transfer, within the currency's minor unit.
fn checked_fee(intent: &Intent, text: &str) -> Result<Decimal, String> {
    let (Kind::Transfer, Some(currency)) = (intent.kind, intent.currency) else {
        return Err(format!("a fee on a {:?}", intent.kind));
    };
    let fee = decimal(text)?;
    if fee.normalize().scale() > currency.scale() {
        return Err(format!("fee {text} is finer than {currency}'s minor unit"));
    }
    Ok(fee)
}

fn requirement_json(policy: u32, requirement: Requirement) -> Result<Value, String> {
    checked_refusal(&requirement.refusal)?;
    let problem = json!({
        "status": requirement.refusal.status,
        "slug": requirement.refusal.slug,
        "title": requirement.refusal.title,
        "detail": requirement.refusal.detail,
    });
    Ok(match requirement.condition {
        Condition::VerifiedInitiator => json!({"policy": policy, "check": "verified-initiator", "problem": problem}),
        Condition::InitiatorAgeAtLeast(secs) if secs <= MAX_AGE_SECS => {
            json!({"policy": policy, "check": "initiator-age", "minAgeSecs": secs, "problem": problem})
        }
        Condition::InitiatorAgeAtLeast(secs) => return Err(format!("an account age of {secs} s")),
        Condition::Within(ceiling) => {
            if let Some(code) = &ceiling.currency {
                Currency::parse(code).map_err(|e| format!("ceiling currency {code:?}: {e}"))?;
            }
            if ceiling.window_secs > MAX_WINDOW_SECS {
                return Err(format!("a window of {} s", ceiling.window_secs));
            }
            if ceiling.max_amount.is_none() && ceiling.max_count.is_none() {
                return Err("a ceiling without a maximum".into());
            }
            let max_amount = ceiling.max_amount.as_deref().map(decimal).transpose()?;
            json!({
                "policy": policy,
                "check": "ceiling",
                "currency": ceiling.currency,
                "windowSecs": ceiling.window_secs,
                "maxAmount": max_amount.map(|amount| amount.normalize().to_string()),
                "maxCount": ceiling.max_count,
                "problem": problem,
            })
        }
    })
}
