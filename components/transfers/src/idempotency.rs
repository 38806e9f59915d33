//! `Idempotency-Key`: required on every money-moving POST, scoped to the caller. The
//! ledger stores the request's fingerprint with the outcome: the same key and request
//! replay it, the same key with another request is refused.

use sha2::{Digest, Sha256};
use wasmpay_common::{http::Request, problem::Problem};

pub const HEADER: &str = "idempotency-key";
const MAX_KEY_CHARS: usize = 255;

/// A key as the client sent it: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn from_request(request: &Request) -> Result<Self, Problem> {
        let Some(value) = request.header(HEADER) else {
            return Err(Problem::new(
                400,
                "idempotency-key-required",
                "Idempotency-Key required",
                "money-moving requests need an Idempotency-Key header (for example a UUID)",
            ));
        };
        let key = value.trim();
        let visible_ascii = key.bytes().all(|b| b.is_ascii_graphic());
        if key.is_empty() || key.len() > MAX_KEY_CHARS || !visible_ascii {
            return Err(Problem::new(
                400,
                "idempotency-key-invalid",
                "Invalid Idempotency-Key",
                "an Idempotency-Key is 1 to 255 visible ASCII characters",
            ));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over the operation and its normalised fields: equal requests, equal prints.
pub fn fingerprint(operation: &str, fields: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    for field in fields {
        // Length-prefixed, so no two field lists print alike.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_fields() {
        assert_ne!(fingerprint("t", &["ab", "c"]), fingerprint("t", &["a", "bc"]));
        assert_eq!(fingerprint("t", &["a", "b"]), fingerprint("t", &["a", "b"]));
        assert_ne!(fingerprint("t", &["a"]), fingerprint("u", &["a"]));
    }
}
