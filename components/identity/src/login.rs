//! `POST /auth/login`: password check with throttling and no user enumeration.
//!
//! An unknown e-mail and a wrong password get the same 401 body after the same bcrypt
//! work. Failures are counted per address (hashed) in the database; after
//! `login_max_failures` within `login_failure_window_secs`, attempts get 429 with
//! `Retry-After` until the oldest counted failure leaves the window.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wasmpay_common::{
    db::{self, Db, Param, Query},
    email::Email,
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
};

use crate::{
    secrets::{email_key_hash, verify_password},
    sessions::{self, TokenPair},
    settings::Settings,
    users::UserView,
};

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Serialize)]
struct LoggedIn {
    #[serde(flatten)]
    tokens: TokenPair,
    user: UserView,
}

/// The same answer for an unknown e-mail and a wrong password.
fn invalid_credentials() -> Problem {
    Problem::unauthorized("the e-mail address or password is incorrect").with_header("www-authenticate", "Bearer realm=\"wasmpay\"")
}

pub async fn handle(request: Request, _: Params) -> Result<Response, Problem> {
    let body: LoginBody = http::json_body(&request)?;
    let (Some(email), Some(password)) = (body.email, body.password) else {
        return Err(Problem::validation(vec![FieldError::new("email, password", "both are required")]));
    };
    // A malformed address cannot belong to an account: it looks up no user (it may hold what
    // no text column can, such as NUL) and is answered and throttled as any unknown one.
    let email_key = Email::parse(&email).ok().map(|e| e.key());
    let settings = Settings::load().await?;
    let throttle_key = email_key_hash(email_key.as_deref().unwrap_or(&email.trim().to_lowercase()));
    let db = Db::connect().await?;
    let attempt = db.query_one(
        &Query::select("SELECT u.id, u.password_hash,
                (SELECT count(*) FROM identity.login_failures f
                 WHERE f.email_key = $1
                   AND f.failed_at > (now() AT TIME ZONE 'UTC') - $3::int8 * interval '1 second'),
                (SELECT ceil(extract(epoch FROM f.failed_at + $3::int8 * interval '1 second'
                                                 - (now() AT TIME ZONE 'UTC')))::int8
                 FROM identity.login_failures f
                 WHERE f.email_key = $1
                 ORDER BY f.failed_at DESC
                 OFFSET $4::int8 - 1 LIMIT 1)
         FROM (SELECT 1) AS one
         LEFT JOIN identity.users u ON u.email_key = $2"),
        &[
            throttle_key.clone().into(),
            email_key.map_or(Param::DbNull, Into::into),
            settings.login_failure_window_secs.into(),
            settings.login_max_failures.into(),
        ],
    )
    .await?;
    let user_id: Option<Uuid> = db::get(&attempt, 0)?;
    let stored_hash: Option<String> = db::get(&attempt, 1)?;
    let failures: i64 = db::get(&attempt, 2)?;
    if failures >= settings.login_max_failures {
        let retry_after: Option<i64> = db::get(&attempt, 3)?;
        return Err(throttled(retry_after));
    }
    let matches = verify_password(&password, stored_hash.as_deref(), settings.bcrypt_cost);
    let Some(user_id) = user_id.filter(|_| matches) else {
        record_failure(&db, throttle_key, settings.login_failure_window_secs).await?;
        return Err(invalid_credentials());
    };
    let (tokens, user) = sessions::start(&db, user_id, &request, &settings, throttle_key).await?;
    Ok(http::json(200, &LoggedIn { tokens, user }))
}

pub fn throttled(retry_after_secs: Option<i64>) -> Problem {
    let retry_after = retry_after_secs.unwrap_or(1).max(1) as u64;
    Problem::too_many_requests(
        "too-many-login-attempts",
        retry_after,
        "too many failed attempts for this account; try again later",
    )
}

/// Counts a failed attempt, pruning a bounded batch of failures older than the window.
pub async fn record_failure(db: &Db, throttle_key: Vec<u8>, window_secs: i64) -> Result<(), Problem> {
    db.execute(
        "WITH expired AS (
             DELETE FROM identity.login_failures
             WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM identity.login_failures
                 WHERE failed_at < (now() AT TIME ZONE 'UTC') - $2::int8 * interval '1 second'
                 LIMIT 100))
         )
         INSERT INTO identity.login_failures (email_key) VALUES ($1)",
        &[throttle_key.into(), window_secs.into()],
    )
    .await?;
    Ok(())
}
