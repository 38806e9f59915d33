//! A fee on every transfer, per currency: `transfer_fees = "USD=0.30+25bp, *=10bp"` (a
//! fixed part in major units, basis points of the amount, or both joined by '+'). The fee
//! is rounded half-even to the currency's minor unit; a fee that rounds to zero is none.
//! The sender pays it on top of the amount, and the ledger credits it to the currency's fee
//! account. A capture is the transfer a hold becomes and pays the same fee on the amount
//! captured; the hold itself only reserves money and pays none. Deposits, withdrawals and
//! refunds carry no fee.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{format, string::String, vec::Vec};

use wasmpay_policy::{Decimal, Decision, Guest, Posting, PostingKind, RoundingStrategy, Terms, amount, transfer_table};

const SETTING: &str = "transfer_fees";
const BASIS_POINTS_PER_UNIT: u32 = 10_000;

struct Fees;

impl Guest for Fees {
    fn evaluate(posting: Posting, settings: Vec<(String, String)>) -> Decision {
        decide(&posting, &settings)
    }
}

wasmpay_policy::export!(Fees);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fee {
    fixed: Decimal,
    basis_points: Decimal,
}

impl Fee {
    fn parse(text: &str) -> Result<Self, String> {
        let mut fee = Fee {
            fixed: Decimal::ZERO,
            basis_points: Decimal::ZERO,
        };
        for part in text.split('+').map(str::trim) {
            let (number, into_bp) = match part.strip_suffix("bp") {
                Some(number) => (number.trim(), true),
                None => (part, false),
            };
            let value: Decimal = number.parse().map_err(|_| format!("{part:?} is neither an amount nor basis points (25bp)"))?;
            if value < Decimal::ZERO {
                return Err(format!("{part:?} is negative"));
            }
            if into_bp {
                fee.basis_points += value;
            } else {
                fee.fixed += value;
            }
        }
        Ok(fee)
    }

    /// The fee on `amount`, rounded half-even to `minor_units` decimals.
    pub fn on(&self, amount: Decimal, minor_units: u32) -> Decimal {
        let proportional = amount * self.basis_points / Decimal::from(BASIS_POINTS_PER_UNIT);
        (self.fixed + proportional).round_dp_with_strategy(minor_units, RoundingStrategy::MidpointNearestEven)
    }
}

pub fn decide(posting: &Posting, settings: &[(String, String)]) -> Decision {
    let fees = match transfer_table(posting, settings, SETTING, Fee::parse) {
        Ok(Some(fees)) => fees,
        Ok(None) => return wasmpay_policy::allow(),
        Err(refusal) => return refusal,
    };
    // A hold only reserves money: the transfer it announces pays its fee when captured.
    if posting.kind == PostingKind::Hold {
        return wasmpay_policy::allow();
    }
    let mut terms = Terms {
        fee: None,
        requirements: Vec::new(),
    };
    // A transfer and a capture always name their currency and amount.
    if let (Some(currency), Some(moved)) = (&posting.currency, posting.amount.as_deref().and_then(amount))
        && let Some(fee) = fees.for_currency(&currency.code)
    {
        let charged = fee.on(moved, u32::from(currency.minor_units));
        if charged > Decimal::ZERO {
            terms.fee = Some(format!("{charged}"));
        }
    }
    Decision::Allow(terms)
}

#[cfg(test)]
mod tests {
    use wasmpay_policy::Currency;

    use super::*;

    fn transfer(amount: &str, code: &str, minor_units: u8) -> Posting {
        Posting {
            kind: PostingKind::Transfer,
            amount: Some(amount.into()),
            currency: Some(Currency { code: code.into(), minor_units }),
            initiator: "0190a8a8-0000-7000-8000-000000000001".into(),
            wallet: Some("0190a8a8-0000-7000-8000-000000000002".into()),
            recipient: None,
            refund_of: None,
            hold: None,
        }
    }

    fn fee_of(posting: &Posting, table: &str) -> Option<String> {
        match decide(posting, &[(SETTING.into(), table.into())]) {
            Decision::Allow(terms) => terms.fee,
            Decision::Refuse(refusal) => panic!("{refusal:?}"),
        }
    }

    #[test]
    fn fixed_plus_basis_points_rounded_half_even() {
        assert_eq!(fee_of(&transfer("100", "USD", 2), "USD=0.30+25bp").as_deref(), Some("0.55"));
        // 0.125 and 0.135 are both midpoints: to the even cent.
        assert_eq!(fee_of(&transfer("12.50", "USD", 2), "USD=100bp").as_deref(), Some("0.12"));
        assert_eq!(fee_of(&transfer("13.50", "USD", 2), "USD=100bp").as_deref(), Some("0.14"));
        assert_eq!(fee_of(&transfer("250", "VND", 0), "*=100bp").as_deref(), Some("2"));
        assert_eq!(fee_of(&transfer("1", "USD", 2), "USD=10bp"), None, "0.001 rounds to nothing");
        assert_eq!(fee_of(&transfer("1", "EUR", 2), "USD=1"), None, "no entry, no fee");
    }

    #[test]
    fn only_transfers_and_captures_pay_and_bad_settings_stop_postings() {
        let posting = |kind| Posting { kind, ..transfer("100", "USD", 2) };
        assert_eq!(fee_of(&posting(PostingKind::Capture), "USD=0.30+25bp").as_deref(), Some("0.55"));
        for kind in [PostingKind::Hold, PostingKind::Deposit, PostingKind::Withdrawal, PostingKind::Refund] {
            assert_eq!(fee_of(&posting(kind), "*=1"), None, "{kind:?}");
        }
        for bad in ["USD=-1", "USD=x", "USD=1+2+xbp"] {
            for kind in [PostingKind::Transfer, PostingKind::Hold, PostingKind::Capture] {
                let decision = decide(&posting(kind), &[(SETTING.into(), bad.into())]);
                assert!(matches!(decision, Decision::Refuse(ref r) if r.status == 503), "{bad} {kind:?}");
            }
        }
    }
}
