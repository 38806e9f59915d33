//! The standard policy, wasmpay's rules before plugins existed:
//! - one posting moves at most the operator's limit for its kind and currency
//!   (`max_transfer_amount`, `max_deposit_amount`, `max_withdrawal_amount`: "CODE=AMOUNT"
//!   in major units, comma-separated, "*" for the other currencies);
//! - sending money (a transfer or a refund) needs a verified e-mail address.
//!
//! A hold and a capture obey the transfer rules: a hold announces a transfer of its amount
//! and a capture is one, so neither may exceed `max_transfer_amount` and the payer's e-mail
//! address must be verified for both.
//!
//! A transfer names its currency, so its limit is checked here; a deposit's or
//! withdrawal's currency is its wallet's, so their limits go to the ledger as ceilings.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{format, string::String, vec::Vec};

use wasmpay_policy::{
    Ceiling, Condition, CurrencyTable, Decision, Guest, Posting, PostingKind, Refusal, Requirement, Terms, amount,
    positive_amount, table,
};

struct Standard;

impl Guest for Standard {
    fn evaluate(posting: Posting, settings: Vec<(String, String)>) -> Decision {
        decide(&posting, &settings)
    }
}

wasmpay_policy::export!(Standard);

fn limit_setting(kind: PostingKind) -> Option<&'static str> {
    match kind {
        PostingKind::Transfer | PostingKind::Hold | PostingKind::Capture => Some("max_transfer_amount"),
        PostingKind::Deposit => Some("max_deposit_amount"),
        PostingKind::Withdrawal => Some("max_withdrawal_amount"),
        PostingKind::Refund => None,
    }
}

fn above_limit(detail: String) -> Refusal {
    Refusal::new(422, "amount-above-limit", "Amount above limit", detail)
}

pub fn decide(posting: &Posting, settings: &[(String, String)]) -> Decision {
    let mut requirements = Vec::new();
    if let Some(name) = limit_setting(posting.kind) {
        let limits = match table(settings, name, positive_amount) {
            Ok(Some(limits)) => limits,
            Ok(None) => CurrencyTable::parse("", positive_amount).expect("an empty table parses"),
            Err(refusal) => return refusal,
        };
        match (&posting.currency, posting.amount.as_deref().and_then(amount)) {
            (Some(currency), Some(moved)) => {
                if let Some(limit) = limits.for_currency(&currency.code)
                    && moved > *limit
                {
                    return Decision::Refuse(above_limit(format!("one transfer may move at most {limit} {}", currency.code)));
                }
            }
            _ => requirements.extend(limits.entries().map(|(code, limit)| Requirement {
                condition: Condition::Within(Ceiling {
                    currency: code.map(Into::into),
                    window_secs: 0,
                    max_amount: Some(format!("{limit}")),
                    max_count: None,
                }),
                refusal: above_limit(String::from("the amount exceeds the most one posting may move in this currency")),
            })),
        }
    }
    if posting.kind.is_transfer() || posting.kind == PostingKind::Refund {
        requirements.push(Requirement {
            condition: Condition::VerifiedInitiator,
            refusal: Refusal::new(403, "email-not-verified", "E-mail not verified", "verify your e-mail address before moving money"),
        });
    }
    Decision::Allow(Terms { fee: None, requirements })
}

#[cfg(test)]
mod tests {
    use wasmpay_policy::Currency;

    use super::*;

    fn posting(kind: PostingKind, amount: &str, currency: Option<&str>) -> Posting {
        Posting {
            kind,
            amount: Some(amount.into()),
            currency: currency.map(|code| Currency { code: code.into(), minor_units: 2 }),
            initiator: "0190a8a8-0000-7000-8000-000000000001".into(),
            wallet: Some("0190a8a8-0000-7000-8000-000000000002".into()),
            recipient: None,
            refund_of: None,
            hold: None,
        }
    }

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (String::from(*k), String::from(*v))).collect()
    }

    #[test]
    fn a_transfer_above_its_currency_limit_is_refused_here() {
        let settings = settings(&[("max_transfer_amount", "*=100, VND=1000000")]);
        let Decision::Refuse(refusal) = decide(&posting(PostingKind::Transfer, "100.01", Some("USD")), &settings) else {
            panic!("not refused");
        };
        assert_eq!((refusal.status, refusal.slug.as_str()), (422, "amount-above-limit"));
        assert_eq!(refusal.detail, "one transfer may move at most 100 USD");
        let Decision::Allow(terms) = decide(&posting(PostingKind::Transfer, "5000", Some("VND")), &settings) else {
            panic!("refused");
        };
        assert!(terms.fee.is_none());
        assert!(matches!(terms.requirements.as_slice(), [Requirement { condition: Condition::VerifiedInitiator, .. }]));
    }

    #[test]
    fn a_hold_and_a_capture_obey_the_transfer_rules() {
        let settings = settings(&[("max_transfer_amount", "USD=100"), ("max_deposit_amount", "USD=1")]);
        for kind in [PostingKind::Hold, PostingKind::Capture] {
            let Decision::Refuse(refusal) = decide(&posting(kind, "100.01", Some("USD")), &settings) else {
                panic!("{kind:?} above the transfer limit not refused");
            };
            assert_eq!(refusal.slug, "amount-above-limit", "{kind:?}");
            let Decision::Allow(terms) = decide(&posting(kind, "100", Some("USD")), &settings) else {
                panic!("{kind:?} within the transfer limit refused");
            };
            assert!(
                matches!(terms.requirements.as_slice(), [Requirement { condition: Condition::VerifiedInitiator, .. }]),
                "{kind:?}: {:?}",
                terms.requirements
            );
        }
    }

    #[test]
    fn deposit_limits_go_to_the_ledger_as_ceilings() {
        let settings = settings(&[("max_deposit_amount", "*=100000, VND=2500000000")]);
        let Decision::Allow(terms) = decide(&posting(PostingKind::Deposit, "5", None), &settings) else {
            panic!("refused");
        };
        let ceilings: Vec<_> = terms
            .requirements
            .iter()
            .map(|r| match &r.condition {
                Condition::Within(c) => (c.currency.clone(), c.window_secs, c.max_amount.clone()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ceilings,
            [(None, 0, Some("100000".into())), (Some("VND".into()), 0, Some("2500000000".into()))]
        );
    }

    #[test]
    fn a_malformed_limit_stops_postings() {
        let decision = decide(&posting(PostingKind::Withdrawal, "5", None), &settings(&[("max_withdrawal_amount", "USD=-1")]));
        assert!(matches!(decision, Decision::Refuse(Refusal { status: 503, .. })));
    }
}
