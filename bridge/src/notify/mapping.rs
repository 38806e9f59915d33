//! Which notifications an event asks for, and to whom.
//!
//! | event | notification | recipient |
//! | --- | --- | --- |
//! | `user.registered`, `user.verification_requested` | `email-verification` | the user |
//! | `user.password_changed` | `password-changed` | the user |
//! | `transfer.completed` | `transfer-sent`, `transfer-received` | sender, recipient |
//! | `deposit.completed` | `deposit-received` | the wallet's owner |
//! | `withdrawal.completed` | `withdrawal-completed` | the wallet's owner |
//! | `transfer.refunded` | `transfer-refunded` | the refunded sender |
//! | `hold.placed` | `hold-placed` | the payer |
//! | `hold.captured` | `hold-captured` | payer, payee |
//! | `hold.voided` | `hold-voided` | payer, payee |
//! | `hold.expired` | `hold-expired` | the payer |
//!
//! Other events (`user.verified`, `account.opened`, …) need no notification and are
//! skipped. Each notification's `transactionId` is derived from the event id and the
//! recipient, so a redelivered event produces the same ids and Novu drops the repeats.

use serde_json::{Value, json};
use uuid::Uuid;
use wasmpay_sealed::{Key, Sealed};

#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub user_id: String,
    pub email: String,
    pub full_name: String,
}

impl Recipient {
    /// The first word of the name, as `firstName`.
    pub fn first_name(&self) -> &str {
        self.full_name.split_whitespace().next().unwrap_or_default()
    }

    fn from(value: &Value, context: &str) -> Result<Self, MappingError> {
        let field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| MappingError(format!("{context}.{name} is missing")))
        };
        Ok(Self {
            user_id: field("userId")?,
            email: field("email")?,
            full_name: field("fullName")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// One of `config::WORKFLOWS`.
    pub kind: &'static str,
    pub recipient: Recipient,
    pub payload: Value,
    pub transaction_id: String,
}

/// An event the notifier cannot turn into notifications (dead-lettered).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

pub struct Context<'a> {
    pub keys: &'a [Key],
    pub verification_url_template: &'a str,
}

/// The notifications of one event; empty for events that need none.
pub fn notifications(event_id: &str, event_type: &str, payload: &Value, context: &Context) -> Result<Vec<Notification>, MappingError> {
    let event = Uuid::parse_str(event_id).map_err(|_| MappingError(format!("event id {event_id:?} is not a UUID")))?;
    let notify = |kind: &'static str, recipient: Recipient, payload: Value| Notification {
        kind,
        transaction_id: Uuid::new_v5(&event, format!("{kind}:{}", recipient.user_id).as_bytes()).to_string(),
        recipient,
        payload,
    };
    let text = |path: &str| payload.pointer(path).cloned().unwrap_or(Value::Null);
    Ok(match event_type {
        "user.registered" | "user.verification_requested" => {
            let user = Recipient::from(payload, "payload")?;
            let sealed: Sealed = serde_json::from_value(payload.pointer("/verification/token").cloned().unwrap_or(Value::Null))
                .map_err(|e| MappingError(format!("no sealed verification token: {e}")))?;
            let token = wasmpay_sealed::open(&sealed, context.keys, &wasmpay_sealed::context::email_verification(&user.user_id))
                .map_err(|e| MappingError(format!("cannot open the verification token: {e}")))?;
            let token = String::from_utf8(token).map_err(|_| MappingError("the verification token is not text".into()))?;
            let link = context
                .verification_url_template
                .replace("{token}", &form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>());
            let payload = json!({
                "fullName": user.full_name,
                "verificationLink": link,
                "expiresAt": text("/verification/expiresAt"),
            });
            vec![notify("email-verification", user, payload)]
        }
        "user.password_changed" => {
            let user = Recipient::from(payload, "payload")?;
            let payload = json!({ "fullName": user.full_name, "changedAt": text("/changedAt") });
            vec![notify("password-changed", user, payload)]
        }
        "transfer.completed" => {
            let sender = Recipient::from(&payload["sender"], "sender")?;
            let recipient = Recipient::from(&payload["recipient"], "recipient")?;
            let common = |counterparty: &str, name: &str| {
                json!({
                    "transferId": text("/transferId"),
                    "amount": text("/amount"),
                    "currency": text("/currency"),
                    "description": text("/description"),
                    counterparty: name,
                })
            };
            vec![
                notify("transfer-sent", sender.clone(), common("recipientName", &recipient.full_name)),
                notify("transfer-received", recipient, common("senderName", &sender.full_name)),
            ]
        }
        "deposit.completed" | "withdrawal.completed" => {
            let owner = Recipient::from(&payload["account"], "account")?;
            let kind = if event_type == "deposit.completed" { "deposit-received" } else { "withdrawal-completed" };
            let payload = json!({
                "transferId": text("/transferId"),
                "amount": text("/amount"),
                "currency": text("/currency"),
                "balanceAfter": text("/balanceAfter"),
            });
            vec![notify(kind, owner, payload)]
        }
        "transfer.refunded" => {
            let refunded = Recipient::from(&payload["refundedTo"], "refundedTo")?;
            let by = Recipient::from(&payload["refundedBy"], "refundedBy")?;
            let payload = json!({
                "transferId": text("/transferId"),
                "refundId": text("/refundId"),
                "amount": text("/amount"),
                "currency": text("/currency"),
                "refundedByName": by.full_name,
            });
            vec![notify("transfer-refunded", refunded, payload)]
        }
        "hold.placed" | "hold.expired" => {
            let (payer, payee) = hold_parties(payload)?;
            let kind = if event_type == "hold.placed" { "hold-placed" } else { "hold-expired" };
            vec![notify(kind, payer, hold_payload(payload, &["expiresAt"], "payeeName", &payee))]
        }
        "hold.captured" | "hold.voided" => {
            let (payer, payee) = hold_parties(payload)?;
            let (kind, members): (&'static str, &[&str]) = if event_type == "hold.captured" {
                ("hold-captured", &["transferId", "capturedAmount", "releasedAmount"])
            } else {
                ("hold-voided", &["voidedBy", "voidedAt"])
            };
            vec![
                notify(kind, payer.clone(), hold_payload(payload, members, "payeeName", &payee)),
                notify(kind, payee, hold_payload(payload, members, "payerName", &payer)),
            ]
        }
        _ => Vec::new(),
    })
}

/// The payer and the payee of a hold event.
fn hold_parties(payload: &Value) -> Result<(Recipient, Recipient), MappingError> {
    Ok((Recipient::from(&payload["payer"], "payer")?, Recipient::from(&payload["payee"], "payee")?))
}

/// What a hold notification says: the hold, the `members` its event adds, and the other
/// party's name as `counterparty`.
fn hold_payload(payload: &Value, members: &[&str], counterparty: &str, other: &Recipient) -> Value {
    let mut said = json!({
        "holdId": payload["holdId"],
        "amount": payload["amount"],
        "currency": payload["currency"],
        "description": payload["description"],
        counterparty: other.full_name,
    });
    for member in members {
        said[*member] = payload[*member].clone();
    }
    said
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::STANDARD};

    use super::*;

    const EVENT: &str = "01900000-0000-7000-8000-000000000001";

    fn key() -> Key {
        Key::from_base64("k1", &STANDARD.encode([7u8; 32])).unwrap()
    }

    fn party(id: &str, name: &str) -> Value {
        json!({ "userId": id, "email": format!("{id}@example.com"), "fullName": name, "accountId": "a" })
    }

    fn map(event_type: &str, payload: &Value) -> Result<Vec<Notification>, MappingError> {
        let keys = [key()];
        let context = Context {
            keys: &keys,
            verification_url_template: "https://app.example/verify?token={token}",
        };
        notifications(EVENT, event_type, payload, &context)
    }

    #[test]
    fn a_registration_becomes_a_verification_email_with_the_opened_token() {
        let sealed = wasmpay_sealed::seal(&key(), b"tok+en/1", &wasmpay_sealed::context::email_verification("u1")).unwrap();
        let payload = json!({
            "userId": "u1", "email": "ada@example.com", "fullName": "Ada Lovelace",
            "verification": { "token": sealed, "expiresAt": "2026-11-22T00:00:00Z" }
        });
        let sent = map("user.registered", &payload).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].kind, "email-verification");
        assert_eq!(sent[0].recipient.first_name(), "Ada");
        assert_eq!(sent[0].payload["verificationLink"], "https://app.example/verify?token=tok%2Ben%2F1");
    }

    #[test]
    fn a_token_sealed_for_another_user_is_refused() {
        let sealed = wasmpay_sealed::seal(&key(), b"token", &wasmpay_sealed::context::email_verification("u2")).unwrap();
        let payload = json!({ "userId": "u1", "email": "a@example.com", "fullName": "A", "verification": { "token": sealed } });
        assert!(map("user.registered", &payload).is_err());
    }

    #[test]
    fn a_transfer_notifies_both_parties_with_stable_distinct_ids() {
        let payload = json!({
            "transferId": "t1", "amount": "12.34", "currency": "USD", "description": null,
            "sender": party("s", "Sam Sender"), "recipient": party("r", "Rita Recipient")
        });
        let first = map("transfer.completed", &payload).unwrap();
        let again = map("transfer.completed", &payload).unwrap();
        assert_eq!(first.iter().map(|n| n.kind).collect::<Vec<_>>(), ["transfer-sent", "transfer-received"]);
        assert_eq!(first[0].payload["recipientName"], "Rita Recipient");
        assert_eq!(first[1].payload["senderName"], "Sam Sender");
        assert_ne!(first[0].transaction_id, first[1].transaction_id);
        assert_eq!(first, again, "redelivery maps to the same transaction ids");
    }

    fn hold(added: Value) -> Value {
        let mut payload = json!({
            "holdId": "h1", "amount": "40.00", "currency": "EUR", "description": "Hotel deposit",
            "expiresAt": "2026-12-01T10:00:00.000000Z",
            "payer": party("p", "Paula Payer"), "payee": party("q", "Quentin Payee")
        });
        payload.as_object_mut().unwrap().extend(added.as_object().unwrap().clone());
        payload
    }

    #[test]
    fn a_hold_placed_or_expired_notifies_the_payer_only() {
        for (event_type, kind) in [("hold.placed", "hold-placed"), ("hold.expired", "hold-expired")] {
            let sent = map(event_type, &hold(json!({ "createdAt": "2026-11-24T10:00:00.000000Z" }))).unwrap();
            assert_eq!(sent.len(), 1, "{event_type}");
            assert_eq!(sent[0].kind, kind);
            assert!(crate::config::WORKFLOWS.contains(&kind));
            assert_eq!(sent[0].recipient.user_id, "p");
            assert_eq!(
                sent[0].payload,
                json!({
                    "holdId": "h1", "amount": "40.00", "currency": "EUR", "description": "Hotel deposit",
                    "expiresAt": "2026-12-01T10:00:00.000000Z", "payeeName": "Quentin Payee"
                })
            );
        }
    }

    #[test]
    fn a_captured_hold_notifies_both_parties_with_stable_distinct_ids() {
        let payload = hold(json!({
            "transferId": "t1", "capturedAmount": "30.00", "releasedAmount": "10.00", "fee": "0.30",
            "createdAt": "2026-11-25T10:00:00.000000Z"
        }));
        let first = map("hold.captured", &payload).unwrap();
        assert_eq!(first, map("hold.captured", &payload).unwrap(), "redelivery maps to the same transaction ids");
        assert_eq!(first.iter().map(|n| (n.kind, n.recipient.user_id.as_str())).collect::<Vec<_>>(), [
            ("hold-captured", "p"),
            ("hold-captured", "q")
        ]);
        assert!(crate::config::WORKFLOWS.contains(&"hold-captured"));
        assert_ne!(first[0].transaction_id, first[1].transaction_id);
        assert_eq!(first[0].payload["payeeName"], "Quentin Payee");
        assert_eq!(first[1].payload["payerName"], "Paula Payer");
        for told in &first {
            assert_eq!(told.payload["transferId"], "t1");
            assert_eq!(told.payload["capturedAmount"], "30.00");
            assert_eq!(told.payload["releasedAmount"], "10.00");
            assert_eq!(told.payload["amount"], "40.00");
        }
    }

    #[test]
    fn a_voided_hold_notifies_both_parties_of_who_voided_it() {
        let payload = hold(json!({ "voidedBy": "payee", "voidedAt": "2026-11-25T10:00:00.000000Z" }));
        let sent = map("hold.voided", &payload).unwrap();
        assert_eq!(sent.iter().map(|n| (n.kind, n.recipient.user_id.as_str())).collect::<Vec<_>>(), [
            ("hold-voided", "p"),
            ("hold-voided", "q")
        ]);
        assert!(crate::config::WORKFLOWS.contains(&"hold-voided"));
        for told in &sent {
            assert_eq!(told.payload["voidedBy"], "payee");
            assert_eq!(told.payload["voidedAt"], "2026-11-25T10:00:00.000000Z");
            assert_eq!(told.payload["holdId"], "h1");
        }
    }

    #[test]
    fn a_hold_event_without_both_parties_is_refused() {
        let mut payload = hold(json!({}));
        payload.as_object_mut().unwrap().remove("payee");
        for event_type in ["hold.placed", "hold.captured", "hold.voided", "hold.expired"] {
            let refused = map(event_type, &payload).unwrap_err();
            assert_eq!(refused.0, "payee.userId is missing", "{event_type}");
        }
    }

    #[test]
    fn events_without_notifications_are_skipped_and_broken_ones_refused() {
        assert_eq!(map("account.opened", &json!({})).unwrap(), Vec::new());
        assert!(map("transfer.completed", &json!({ "sender": {} })).is_err());
        let keys = [key()];
        let context = Context { keys: &keys, verification_url_template: "" };
        assert!(notifications("not-a-uuid", "account.opened", &json!({}), &context).is_err());
    }
}
