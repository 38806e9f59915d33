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
        _ => Vec::new(),
    })
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

    #[test]
    fn events_without_notifications_are_skipped_and_broken_ones_refused() {
        assert_eq!(map("account.opened", &json!({})).unwrap(), Vec::new());
        assert!(map("transfer.completed", &json!({ "sender": {} })).is_err());
        let keys = [key()];
        let context = Context { keys: &keys, verification_url_template: "" };
        assert!(notifications("not-a-uuid", "account.opened", &json!({}), &context).is_err());
    }
}
