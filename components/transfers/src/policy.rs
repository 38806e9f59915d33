//! The posting policies (`wit/policy/policy.wit`): three plugin slots speaking contract
//! 0.2.0 and a compatibility slot speaking 0.1.0, asked in order about every posting before
//! the ledger is called. The first refusal wins and nothing else is asked; fees add up;
//! every requirement goes to the ledger function, which checks it under the wallet locks. A
//! slot's answer is checked here before it is trusted: one the engine cannot enforce (a
//! malformed amount, a fee on a deposit, a refusal with a bad status) fails the request
//! with a 503 and posts nothing.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;
use wasmpay_common::{config, currency::Currency, email::Email, problem::Problem};

spin_sdk::wit_bindgen::generate!({
    path: "../../wit/policy",
    world: "wasmpay:policy/engine@0.2.0",
    runtime_path: "spin_sdk::wit_bindgen::rt",
    // The compatibility slot's interface belongs to another package, wasmpay:policy@0.1.0.
    // Only its posting differs from 0.2.0's: every other type is the same record or variant,
    // so its answers are read into 0.2.0's types (the generated lifting code would not
    // compile if they were not) and checked by the same code.
    with: {
        "wasmpay:policy/policy@0.1.0": generate,
        "wasmpay:policy/policy@0.1.0/currency": crate::policy::policy_0_2::Currency,
        "wasmpay:policy/policy@0.1.0/recipient": crate::policy::policy_0_2::Recipient,
        "wasmpay:policy/policy@0.1.0/refusal": crate::policy::policy_0_2::Refusal,
        "wasmpay:policy/policy@0.1.0/ceiling": crate::policy::policy_0_2::Ceiling,
        "wasmpay:policy/policy@0.1.0/condition": crate::policy::policy_0_2::Condition,
        "wasmpay:policy/policy@0.1.0/requirement": crate::policy::policy_0_2::Requirement,
        "wasmpay:policy/policy@0.1.0/terms": crate::policy::policy_0_2::Terms,
        "wasmpay:policy/policy@0.1.0/decision": crate::policy::policy_0_2::Decision,
    },
});

use wasmpay::{
    policy0_1_0::policy as policy_0_1,
    policy0_2_0::policy::{self as policy_0_2, Condition, Decision, PostingKind, Refusal, Requirement},
};

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
    /// Placing a hold: asked like the transfer it announces (`POST /holds`).
    Hold,
    /// Capturing a hold: the transfer from the payer it becomes.
    Capture,
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
    /// The hold a capture takes.
    pub hold: Option<Uuid>,
}

/// The version of the plugin contract a slot speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Contract {
    V0_1,
    V0_2,
}

/// What the policies decided, as the ledger's posting functions take it (`p_terms`), or
/// the problem refusing the posting.
pub async fn terms(intent: &Intent<'_>) -> Result<Value, Problem> {
    let posting = posting(intent);
    let posting_0_1 = posting_0_1(&posting);
    let settings = settings().await?;
    let slots: [(&str, Contract, &dyn Fn() -> Decision); 4] = [
        ("first-policy", Contract::V0_2, &|| first_policy::evaluate(&posting, &settings)),
        ("second-policy", Contract::V0_2, &|| second_policy::evaluate(&posting, &settings)),
        ("third-policy", Contract::V0_2, &|| third_policy::evaluate(&posting, &settings)),
        ("wasmpay:policy/policy@0.1.0", Contract::V0_1, &|| policy_0_1::evaluate(&posting_0_1, &settings)),
    ];
    let mut fee = Decimal::ZERO;
    let mut requirements = Vec::new();
    for (number, (slot, contract, evaluate)) in (1..).zip(slots) {
        let unusable = |reason: String| {
            eprintln!("policy {slot} gave an unusable decision: {reason}");
            Problem::new(
                503,
                "policy-failed",
                "Policy failed",
                "a policy plugin gave an answer the engine cannot enforce; nothing was posted",
            )
        };
        match evaluate() {
            Decision::Refuse(refusal) => return Err(refused(refusal).map_err(unusable)?),
            Decision::Allow(terms) => {
                if let Some(text) = terms.fee {
                    fee += charged_fee(intent, contract, &text).map_err(unusable)?;
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

fn posting(intent: &Intent) -> policy_0_2::Posting {
    policy_0_2::Posting {
        kind: match intent.kind {
            Kind::Transfer => PostingKind::Transfer,
            Kind::Deposit => PostingKind::Deposit,
            Kind::Withdrawal => PostingKind::Withdrawal,
            Kind::Refund => PostingKind::Refund,
            Kind::Hold => PostingKind::Hold,
            Kind::Capture => PostingKind::Capture,
        },
        amount: intent.amount.map(|amount| amount.normalize().to_string()),
        currency: intent.currency.map(|currency| policy_0_2::Currency {
            code: currency.code().to_owned(),
            minor_units: u8::try_from(currency.scale()).unwrap_or(u8::MAX),
        }),
        initiator: intent.initiator.to_string(),
        wallet: intent.wallet.map(|id| id.to_string()),
        recipient: intent.recipient.as_ref().map(|recipient| match recipient {
            Recipient::Wallet(id) => policy_0_2::Recipient::Wallet(id.to_string()),
            Recipient::Email(email) => policy_0_2::Recipient::Email(email.as_str().to_owned()),
        }),
        refund_of: intent.refund_of.map(|id| id.to_string()),
        hold: intent.hold.map(|id| id.to_string()),
    }
}

/// The posting as contract 0.1.0 states it. That version names no holds: a hold and its
/// capture reach its plugins as the transfer from the payer to the payee they are, and
/// the hold a capture takes is left out.
fn posting_0_1(posting: &policy_0_2::Posting) -> policy_0_1::Posting {
    policy_0_1::Posting {
        kind: match posting.kind {
            PostingKind::Transfer | PostingKind::Hold | PostingKind::Capture => policy_0_1::PostingKind::Transfer,
            PostingKind::Deposit => policy_0_1::PostingKind::Deposit,
            PostingKind::Withdrawal => policy_0_1::PostingKind::Withdrawal,
            PostingKind::Refund => policy_0_1::PostingKind::Refund,
        },
        amount: posting.amount.clone(),
        currency: posting.currency.clone(),
        initiator: posting.initiator.clone(),
        wallet: posting.wallet.clone(),
        recipient: posting.recipient.clone(),
        refund_of: posting.refund_of.clone(),
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

/// The fee a slot's answer adds to the posting. A 0.1.0 plugin was asked about a hold as the
/// transfer it announces, so the fee it names is that transfer's: it is charged when the
/// hold is captured, not when the money is reserved, and ignored here. A 0.2.0 plugin knew
/// it was a hold: its fee is refused like a fee on any posting that cannot carry one.
fn charged_fee(intent: &Intent, contract: Contract, text: &str) -> Result<Decimal, String> {
    if intent.kind == Kind::Hold && contract == Contract::V0_1 {
        return Ok(Decimal::ZERO);
    }
    checked_fee(intent, text)
}

/// A fee the ledger can charge: on a transfer (a capture is one), within the currency's
/// minor unit.
fn checked_fee(intent: &Intent, text: &str) -> Result<Decimal, String> {
    let (Kind::Transfer | Kind::Capture, Some(currency)) = (intent.kind, intent.currency) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(kind: Kind) -> Intent<'static> {
        Intent {
            kind,
            amount: Some(Decimal::new(1250, 2)),
            currency: Some(Currency::parse("USD").expect("a currency")),
            initiator: Uuid::from_u128(1),
            wallet: Some(Uuid::from_u128(2)),
            recipient: Some(Recipient::Wallet(Uuid::from_u128(3))),
            refund_of: None,
            hold: (kind == Kind::Capture).then(|| Uuid::from_u128(4)),
        }
    }

    #[test]
    fn contract_0_1_plugins_see_a_hold_and_a_capture_as_the_transfer_they_are() {
        for kind in [Kind::Hold, Kind::Capture] {
            let posting = posting(&intent(kind));
            let seen = posting_0_1(&posting);
            assert_eq!(seen.kind, policy_0_1::PostingKind::Transfer, "{kind:?}");
            assert_eq!(seen.amount.as_deref(), Some("12.5"));
            assert!(matches!(&seen.currency, Some(currency) if currency.code == "USD" && currency.minor_units == 2));
            assert_eq!(seen.initiator, Uuid::from_u128(1).to_string());
            assert_eq!(seen.wallet, Some(Uuid::from_u128(2).to_string()));
            let payee = Uuid::from_u128(3).to_string();
            assert!(matches!(&seen.recipient, Some(policy_0_2::Recipient::Wallet(id)) if *id == payee));
        }
        let capture = posting(&intent(Kind::Capture));
        assert_eq!((capture.kind, capture.hold), (PostingKind::Capture, Some(Uuid::from_u128(4).to_string())));
        assert_eq!(posting(&intent(Kind::Hold)).kind, PostingKind::Hold);
        let kinds =
            [(Kind::Deposit, policy_0_1::PostingKind::Deposit), (Kind::Refund, policy_0_1::PostingKind::Refund)];
        for (kind, seen) in kinds {
            assert_eq!(posting_0_1(&posting(&intent(kind))).kind, seen);
        }
    }

    #[test]
    fn fees_are_charged_on_transfers_and_captures_and_ignored_on_a_hold_only_from_0_1_plugins() {
        for contract in [Contract::V0_1, Contract::V0_2] {
            for kind in [Kind::Transfer, Kind::Capture] {
                assert_eq!(
                    charged_fee(&intent(kind), contract, "0.30"),
                    Ok(Decimal::new(30, 2)),
                    "{kind:?} {contract:?}"
                );
            }
            assert!(charged_fee(&intent(Kind::Deposit), contract, "0.30").is_err(), "{contract:?}");
            assert!(charged_fee(&intent(Kind::Capture), contract, "0.001").is_err(), "{contract:?}");
        }
        assert_eq!(charged_fee(&intent(Kind::Hold), Contract::V0_1, "0.30"), Ok(Decimal::ZERO));
        assert_eq!(charged_fee(&intent(Kind::Hold), Contract::V0_2, "0.30"), Err("a fee on a Hold".into()));
    }
}
