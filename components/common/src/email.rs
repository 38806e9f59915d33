//! E-mail addresses: parsed once into a type that can only hold a valid, normalised one.

use std::{fmt, str::FromStr};

use email_address::EmailAddress;

/// A syntactically valid address with a domain name (no IP literals), at most 254 bytes,
/// trimmed. Uniqueness and lookups are case-insensitive: compare [`Email::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must be an e-mail address such as name@example.com")]
    Invalid,
    #[error("must be at most 254 characters")]
    TooLong,
}

pub const MAX_EMAIL_BYTES: usize = 254;

impl Email {
    pub fn parse(text: &str) -> Result<Self, EmailError> {
        let text = text.trim();
        if text.len() > MAX_EMAIL_BYTES {
            return Err(EmailError::TooLong);
        }
        let parsed = EmailAddress::from_str(text).map_err(|_| EmailError::Invalid)?;
        let domain = parsed.domain();
        let plain_domain = domain.contains('.')
            && !domain.starts_with('[')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let plain_local = parsed.local_part().bytes().all(|b| b.is_ascii_graphic() && b != b'"');
        if !plain_domain || !plain_local {
            return Err(EmailError::Invalid);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive form the database compares.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims_ordinary_addresses() {
        let email = Email::parse("  Ada.Lovelace+pay@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ada.Lovelace+pay@Example.COM");
        assert_eq!(email.key(), "ada.lovelace+pay@example.com");
    }

    #[test]
    fn refuses_what_is_not_a_plain_address() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@localhost", "ada@[127.0.0.1]", "a b@example.com", "\"a\"@example.com", "ada@exa_mple.com", "ada@example..com", "ada@example.com'; DROP TABLE users;--"] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }
}
