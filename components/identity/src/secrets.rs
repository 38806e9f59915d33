//! Passwords (bcrypt) and opaque tokens (random, stored as SHA-256 hashes).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use wasmpay_common::problem::Problem;

pub const MIN_PASSWORD_BYTES: usize = 8;
/// bcrypt reads at most 72 bytes; longer passwords are refused, never truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A new password that meets the policy. Never printed.
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub fn parse(text: String) -> Result<Self, String> {
        match text.len() {
            n if n < MIN_PASSWORD_BYTES => Err(format!("must be at least {MIN_PASSWORD_BYTES} bytes")),
            n if n > MAX_PASSWORD_BYTES => Err(format!(
                "must be at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit; longer passwords are not truncated)"
            )),
            _ => Ok(Self(text)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// bcrypt over every byte: `parse` already refused anything longer than bcrypt reads.
    pub fn hash(&self, cost: u32) -> Result<String, Problem> {
        bcrypt::hash(&self.0, cost).map_err(|e| {
            eprintln!("bcrypt failed: {e}");
            Problem::internal()
        })
    }
}

/// Whether `candidate` matches `stored`. Without a stored hash (unknown account) it does
/// the same bcrypt work and answers no, so both cases take about the same time.
/// A candidate longer than [`MAX_PASSWORD_BYTES`] never matches (bcrypt would compare only
/// its first 72 bytes), but costs the same work.
pub fn verify_password(candidate: &str, stored: Option<&str>, cost: u32) -> bool {
    let bytes = candidate.as_bytes();
    let within_limit = bytes.len() <= MAX_PASSWORD_BYTES;
    match stored {
        Some(hash) => bcrypt::verify(bytes, hash).unwrap_or(false) && within_limit,
        None => {
            let _ = bcrypt::hash(&bytes[..bytes.len().min(MAX_PASSWORD_BYTES)], cost);
            false
        }
    }
}

/// A random bearer secret (refresh or verification token) and the hash that is stored.
pub struct OpaqueToken {
    pub raw: String,
    pub hash: Vec<u8>,
}

/// Bytes of randomness in an opaque token.
const TOKEN_BYTES: usize = 32;

/// 256 bits from the host's secure random source, as 43 base64url characters (no padding).
pub fn new_token() -> Result<OpaqueToken, Problem> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        eprintln!("random source failed: {e}");
        Problem::internal()
    })?;
    let raw = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&raw);
    Ok(OpaqueToken { raw, hash })
}

/// Whether `text` has the shape of a token [`new_token`] makes: the canonical base64url of
/// 32 bytes, which openapi.yaml states as `^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$` (the last
/// character carries 2 bits, the rest zero).
pub fn is_token_shaped(text: &str) -> bool {
    URL_SAFE_NO_PAD.decode(text).is_ok_and(|bytes| bytes.len() == TOKEN_BYTES)
}

pub fn token_hash(raw: &str) -> Vec<u8> {
    Sha256::digest(raw.as_bytes()).to_vec()
}

/// The throttling key of an e-mail address: its SHA-256, so no address is stored for it.
pub fn email_key_hash(email_key: &str) -> Vec<u8> {
    Sha256::digest(email_key.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_policy_is_8_to_72_bytes() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("x".repeat(72)).is_ok());
        assert!(Password::parse("x".repeat(73)).is_err(), "73 bytes must be refused, not truncated");
        // Bytes, not characters: 24 three-byte characters are 72 bytes.
        assert!(Password::parse("€".repeat(24)).is_ok());
        assert!(Password::parse("€".repeat(25)).is_err());
    }

    #[test]
    fn all_72_bytes_count_and_longer_candidates_never_match() {
        let full = "p".repeat(72);
        let hash = Password::parse(full.clone()).unwrap().hash(4).unwrap();
        assert!(verify_password(&full, Some(&hash), 4));
        assert!(!verify_password(&format!("{}q", "p".repeat(71)), Some(&hash), 4));
        assert!(!verify_password(&format!("{full}extra"), Some(&hash), 4), "bcrypt would truncate");
    }

    #[test]
    fn verification_matches_only_the_right_password() {
        let hash = Password::parse("correct horse".into()).unwrap().hash(4).unwrap();
        assert!(verify_password("correct horse", Some(&hash), 4));
        assert!(!verify_password("wrong horse", Some(&hash), 4));
        assert!(!verify_password("correct horse", None, 4));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.raw, b.raw);
        assert_eq!(a.hash, token_hash(&a.raw));
        assert_eq!(a.hash.len(), 32);
        assert!(is_token_shaped(&a.raw), "{}", a.raw);
    }

    #[test]
    fn only_the_canonical_base64url_of_32_bytes_is_token_shaped() {
        let canonical = format!("{}A", "x".repeat(42));
        assert!(is_token_shaped(&canonical));
        assert!(is_token_shaped(&format!("{}w", "-_".repeat(21))));
        for shape in [
            String::new(),
            format!("{}B", "x".repeat(42)),
            format!("{}A=", "x".repeat(42)),
            format!("{}AA", "x".repeat(42)),
            "x".repeat(42),
            format!(" {canonical}"),
            format!("{}+A", "x".repeat(41)),
        ] {
            assert!(!is_token_shaped(&shape), "{shape:?}");
        }
    }
}
