//! Velocity limits on transfers, per sender wallet and currency over any rolling 24 hours:
//! `transfer_velocity = "USD=10/5000, *=20/100000"` — at most 10 transfers and 5,000 USD,
//! and for other currencies 20 transfers and 100,000 (either side of the '/' may be empty:
//! "10/" bounds the count only, "/5000" the amount only).
//!
//! The plugin cannot see past transfers: it hands the ceiling to the ledger, which counts
//! the wallet's transfers of the window under the wallet's row lock, so racing transfers
//! from one wallet are checked one after another and never both slip past the limit.
//!
//! A hold and a capture count like transfers: placing a hold is checked as the transfer it
//! announces, and a capture is the payer's transfer, checked against the payer's window.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{format, string::String, vec::Vec};

use wasmpay_policy::{
    Ceiling, Condition, Decimal, Decision, Guest, Posting, Refusal, Requirement, Terms,
    positive_amount, transfer_table,
};

const SETTING: &str = "transfer_velocity";
const WINDOW_SECS: u32 = 24 * 60 * 60;

struct Velocity;

impl Guest for Velocity {
    fn evaluate(posting: Posting, settings: Vec<(String, String)>) -> Decision {
        decide(&posting, &settings)
    }
}

wasmpay_policy::export!(Velocity);

#[derive(Debug, Clone, PartialEq)]
struct Limit {
    max_count: Option<u32>,
    max_amount: Option<Decimal>,
}

impl Limit {
    fn parse(text: &str) -> Result<Self, String> {
        let (count, amount) = text.split_once('/').ok_or_else(|| format!("{text:?} is not COUNT/AMOUNT"))?;
        let (count, amount) = (count.trim(), amount.trim());
        let limit = Limit {
            max_count: match count {
                "" => None,
                count => Some(count.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("{count:?} is not a positive count"))?),
            },
            max_amount: match amount {
                "" => None,
                amount => Some(positive_amount(amount)?),
            },
        };
        if limit.max_count.is_none() && limit.max_amount.is_none() {
            return Err("give a count, an amount or both".into());
        }
        Ok(limit)
    }

    fn requirement(&self, currency: Option<&str>) -> Requirement {
        Requirement {
            condition: Condition::Within(Ceiling {
                currency: currency.map(Into::into),
                window_secs: WINDOW_SECS,
                max_amount: self.max_amount.map(|amount| format!("{amount}")),
                max_count: self.max_count,
            }),
            refusal: Refusal::new(
                429,
                "velocity-limit-exceeded",
                "Velocity limit exceeded",
                "this wallet has reached the most it may send in this currency in 24 hours; try again later",
            ),
        }
    }
}

pub fn decide(posting: &Posting, settings: &[(String, String)]) -> Decision {
    let limits = match transfer_table(posting, settings, SETTING, Limit::parse) {
        Ok(Some(limits)) => limits,
        Ok(None) => return wasmpay_policy::allow(),
        Err(refusal) => return refusal,
    };
    let mut terms = Terms {
        fee: None,
        requirements: Vec::new(),
    };
    match &posting.currency {
        Some(currency) => terms
            .requirements
            .extend(limits.for_currency(&currency.code).map(|limit| limit.requirement(Some(&currency.code)))),
        None => terms.requirements.extend(limits.entries().map(|(code, limit)| limit.requirement(code))),
    }
    Decision::Allow(terms)
}

#[cfg(test)]
mod tests {
    use wasmpay_policy::{Currency, PostingKind};

    use super::*;

    fn transfer(code: &str) -> Posting {
        Posting {
            kind: PostingKind::Transfer,
            amount: Some("10".into()),
            currency: Some(Currency { code: code.into(), minor_units: 2 }),
            initiator: "0190a8a8-0000-7000-8000-000000000001".into(),
            wallet: Some("0190a8a8-0000-7000-8000-000000000002".into()),
            recipient: None,
            refund_of: None,
            hold: None,
        }
    }

    fn ceilings(posting: &Posting, table: &str) -> Vec<(Option<String>, u32, Option<String>, Option<u32>)> {
        let Decision::Allow(terms) = decide(posting, &[(SETTING.into(), table.into())]) else {
            panic!("refused");
        };
        terms
            .requirements
            .into_iter()
            .map(|r| match r.condition {
                Condition::Within(c) => (c.currency, c.window_secs, c.max_amount, c.max_count),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_transfers_currency_picks_its_ceiling() {
        assert_eq!(
            ceilings(&transfer("USD"), "USD=10/5000, *=20/"),
            [(Some("USD".into()), WINDOW_SECS, Some("5000".into()), Some(10))]
        );
        assert_eq!(ceilings(&transfer("EUR"), "USD=10/5000, *=20/"), [(Some("EUR".into()), WINDOW_SECS, None, Some(20))]);
        assert_eq!(ceilings(&transfer("EUR"), "USD=/5000"), []);
    }

    #[test]
    fn a_hold_and_a_capture_count_like_transfers_and_other_postings_do_not() {
        let table = "USD=10/5000";
        let expected = ceilings(&transfer("USD"), table);
        assert_eq!(expected.len(), 1);
        for kind in [PostingKind::Hold, PostingKind::Capture] {
            assert_eq!(ceilings(&Posting { kind, ..transfer("USD") }, table), expected, "{kind:?}");
        }
        for kind in [PostingKind::Deposit, PostingKind::Withdrawal, PostingKind::Refund] {
            assert_eq!(ceilings(&Posting { kind, ..transfer("USD") }, table), [], "{kind:?}");
        }
    }

    #[test]
    fn bad_settings_stop_postings() {
        for bad in ["USD=10", "USD=/", "USD=0/", "USD=x/1", "USD=1/-5"] {
            let decision = decide(&transfer("USD"), &[(SETTING.into(), bad.into())]);
            assert!(matches!(decision, Decision::Refuse(ref r) if r.status == 503), "{bad}");
        }
    }
}
