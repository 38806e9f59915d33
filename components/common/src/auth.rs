//! Access tokens: JWTs signed with HS256 under the `jwt_secret` variable. Every component
//! authenticates requests here, the same way: the algorithm is pinned (a token claiming
//! any other, `none` included, is refused), and the signature, `exp`, `iss` and `aud` are
//! checked. Only the identity component issues tokens.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    config::{self, ConfigError},
    http::Request,
    problem::Problem,
};

/// Shortest secret accepted: HS256 wants at least the hash size of key material.
pub const MIN_SECRET_BYTES: usize = 32;

pub struct JwtConfig {
    secret: Vec<u8>,
    pub issuer: String,
    pub audience: String,
}

impl JwtConfig {
    /// Reads `jwt_secret`, `jwt_issuer` and `jwt_audience`.
    pub async fn load() -> Result<Self, ConfigError> {
        let secret = config::text("jwt_secret").await?.into_bytes();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                name: "jwt_secret",
                reason: format!("must be at least {MIN_SECRET_BYTES} bytes"),
            });
        }
        Ok(Self {
            secret,
            issuer: config::text("jwt_issuer").await?,
            audience: config::text("jwt_audience").await?,
        })
    }
}

/// The claims of a wasmpay access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: Uuid,
    /// The session the token belongs to.
    pub sid: Uuid,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
    /// Unique per token.
    pub jti: Uuid,
}

/// Who is calling: the subject and session of a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
}

/// Signs an access token for `principal`, valid `ttl_secs` from `now_secs`.
pub fn issue(config: &JwtConfig, principal: Principal, now_secs: u64, ttl_secs: u64) -> Result<String, Problem> {
    let claims = Claims {
        sub: principal.user_id,
        sid: principal.session_id,
        iat: now_secs,
        exp: now_secs + ttl_secs,
        iss: config.issuer.clone(),
        aud: config.audience.clone(),
        jti: Uuid::new_v4(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&config.secret)).map_err(|e| {
        eprintln!("cannot sign an access token: {e}");
        Problem::internal()
    })
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is invalid")]
    Invalid,
}

/// Verifies a token: HS256 only, valid signature, not expired, our issuer and audience.
pub fn verify(config: &JwtConfig, token: &str) -> Result<Principal, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&config.secret), &validation).map_err(
        |e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        },
    )?;
    Ok(Principal {
        user_id: data.claims.sub,
        session_id: data.claims.sid,
    })
}

/// The caller of a request that must carry `Authorization: Bearer <access token>`.
/// Missing credentials and bad tokens are 401s with the RFC 6750 challenge.
pub async fn authenticate(request: &Request) -> Result<Principal, Problem> {
    let header = request.header("authorization").unwrap_or_default();
    let Some(token) = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
    else {
        return Err(Problem::unauthorized("this request needs an access token (Authorization: Bearer …)")
            .with_header("www-authenticate", "Bearer realm=\"wasmpay\""));
    };
    let config = JwtConfig::load().await?;
    verify(&config, token).map_err(|error| invalid_token(&error.to_string()))
}

/// 401 for an access token that is not (or no longer) good, with the RFC 6750 challenge.
pub fn invalid_token(reason: &str) -> Problem {
    Problem::new(401, "invalid-token", "Invalid access token", reason).with_header(
        "www-authenticate",
        format!("Bearer realm=\"wasmpay\", error=\"invalid_token\", error_description=\"{reason}\""),
    )
}

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;

    fn config() -> JwtConfig {
        JwtConfig {
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
            issuer: "wasmpay".into(),
            audience: "wasmpay-api".into(),
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn principal() -> Principal {
        Principal {
            user_id: Uuid::new_v4(),
            session_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn a_token_it_issued_verifies() {
        let who = principal();
        let token = issue(&config(), who, now(), 60).unwrap();
        assert_eq!(verify(&config(), &token), Ok(who));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let token = issue(&config(), principal(), now() - 120, 60).unwrap();
        assert_eq!(verify(&config(), &token), Err(TokenError::Expired));
    }

    #[test]
    fn another_issuer_audience_or_secret_is_refused() {
        let token = issue(&config(), principal(), now(), 60).unwrap();
        let mut other = config();
        other.issuer = "someone-else".into();
        assert_eq!(verify(&other, &token), Err(TokenError::Invalid));
        let mut other = config();
        other.audience = "another-api".into();
        assert_eq!(verify(&other, &token), Err(TokenError::Invalid));
        let mut other = config();
        other.secret = b"a-different-secret-of-32-bytes!!".to_vec();
        assert_eq!(verify(&other, &token), Err(TokenError::Invalid));
    }

    #[test]
    fn unsigned_and_other_algorithm_tokens_are_refused() {
        let token = issue(&config(), principal(), now(), 60).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"HS512","typ":"JWT"}"#, r#"{"alg":"RS256","typ":"JWT"}"#] {
            let forged = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
            assert_eq!(verify(&config(), &forged), Err(TokenError::Invalid), "{header}");
        }
    }
}
