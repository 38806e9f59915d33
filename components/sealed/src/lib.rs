//! Secrets that must travel through events (the raw e-mail verification token) are sealed
//! with AES-256-GCM under a key from a secret variable and opened only by the bridge, just
//! before it calls Novu. The sealed form names its key (`kid`), so keys can rotate: new
//! events use the current key, the bridge keeps older keys until their events are gone.
//! The associated data binds a ciphertext to its context (the user it was issued for), so
//! it cannot be moved into another event.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

pub const ALGORITHM: &str = "A256GCM";

/// The associated data of each kind of sealed secret, shared by sealer and opener.
pub mod context {
    /// An e-mail verification token issued to `user_id`.
    pub fn email_verification(user_id: &str) -> Vec<u8> {
        format!("wasmpay:email-verification:{user_id}").into_bytes()
    }
}
const NONCE_BYTES: usize = 12;

/// A 256-bit key and its id.
#[derive(Clone)]
pub struct Key {
    id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SealError {
    #[error("the key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("the key id must be 1 to 64 characters of [A-Za-z0-9._-]")]
    BadKeyId,
    #[error("no key with id {0:?}")]
    UnknownKey(String),
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value does not open with this key and context")]
    Forged,
    #[error("the system random source failed")]
    Random,
}

impl Key {
    /// A key from its id and the base64 of its 32 bytes.
    pub fn from_base64(id: &str, base64: &str) -> Result<Self, SealError> {
        let valid_id = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_id {
            return Err(SealError::BadKeyId);
        }
        let bytes: [u8; 32] = STANDARD
            .decode(base64.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SealError::BadKey)?;
        Ok(Self { id: id.to_owned(), bytes })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.bytes.into())
    }
}

/// A sealed secret as it appears in an event payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    pub alg: String,
    pub kid: String,
    pub nonce: String,
    pub ciphertext: String,
}

pub fn seal(key: &Key, plaintext: &[u8], context: &[u8]) -> Result<Sealed, SealError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let ciphertext = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context })
        .map_err(|_| SealError::Malformed)?;
    Ok(Sealed {
        alg: ALGORITHM.to_owned(),
        kid: key.id.clone(),
        nonce: STANDARD.encode(nonce),
        ciphertext: STANDARD.encode(ciphertext),
    })
}

/// Opens a sealed value with whichever of `keys` it names.
pub fn open(sealed: &Sealed, keys: &[Key], context: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.alg != ALGORITHM {
        return Err(SealError::UnsupportedAlgorithm(sealed.alg.clone()));
    }
    let key = keys
        .iter()
        .find(|k| k.id == sealed.kid)
        .ok_or_else(|| SealError::UnknownKey(sealed.kid.clone()))?;
    let nonce: [u8; NONCE_BYTES] = STANDARD
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or(SealError::Malformed)?;
    let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| SealError::Malformed)?;
    key.cipher()
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: context })
        .map_err(|_| SealError::Forged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, fill: u8) -> Key {
        Key::from_base64(id, &STANDARD.encode([fill; 32])).unwrap()
    }

    #[test]
    fn opens_what_it_sealed_with_the_named_key() {
        let old = key("2025", 1);
        let current = key("2026", 2);
        let sealed = seal(&current, b"token", b"user-1").unwrap();
        assert_eq!(sealed.kid, "2026");
        assert_eq!(open(&sealed, &[old, current], b"user-1").unwrap(), b"token");
    }

    #[test]
    fn refuses_another_context_a_tampered_value_or_an_unknown_key() {
        let k = key("k1", 7);
        let sealed = seal(&k, b"token", b"user-1").unwrap();
        assert_eq!(open(&sealed, std::slice::from_ref(&k), b"user-2"), Err(SealError::Forged));
        let mut tampered = sealed.clone();
        tampered.ciphertext = STANDARD.encode(b"not the ciphertext at all");
        assert_eq!(open(&tampered, std::slice::from_ref(&k), b"user-1"), Err(SealError::Forged));
        assert_eq!(open(&sealed, &[key("k2", 7)], b"user-1"), Err(SealError::UnknownKey("k1".into())));
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key("k1", 7);
        assert_ne!(seal(&k, b"t", b"c").unwrap().nonce, seal(&k, b"t", b"c").unwrap().nonce);
    }

    #[test]
    fn keys_must_be_32_bytes_with_a_sane_id() {
        assert_eq!(Key::from_base64("k1", "c2hvcnQ=").unwrap_err(), SealError::BadKey);
        assert_eq!(Key::from_base64("k 1", &STANDARD.encode([0; 32])).unwrap_err(), SealError::BadKeyId);
    }
}
