//! `POST /auth/login`: password check with throttling and no user enumeration.
//!
//! An unknown e-mail and a wrong password get the same 401 body after the same bcrypt
//! work. Failures are counted per address (hashed) in the database; after
//! `login_max_failures` within `login_failure_window_secs`, attempts get 429 with
//! `Retry-After` until the oldest counted failure leaves the window.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wasmpay_common::{
    db::{self, Db, Query},
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
    let (failures, retry_after) = recent_failures(&db, &throttle_key, &settings).await?;
    if failures >= settings.login_max_failures {
        return Err(throttled(retry_after));
    }
    // The address's owner (identity.email_addresses), then the owner's password hash: two
    // look-ups, each by the key its table is distributed by on Citus (one with the other as a
    // subquery would ask every shard of users there).
    let owner = match email_key {
        Some(key) => db
            .query_opt(&Query::select("SELECT user_id FROM identity.email_addresses WHERE email_key = $1"), &[key.into()])
            .await?
            .map(|row| db::get::<Uuid>(&row, 0))
            .transpose()?,
        None => None,
    };
    let account = match owner {
        Some(owner) => {
            db.query_opt(&Query::select("SELECT u.id, u.password_hash FROM identity.users u WHERE u.id = $1"), &[owner.into()])
                .await?
        }
        None => None,
    };
    let user_id: Option<Uuid> = account.as_ref().map(|row| db::get(row, 0)).transpose()?;
    let stored_hash: Option<String> = account.as_ref().map(|row| db::get(row, 1)).transpose()?;
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

/// The failed attempts for `throttle_key` within the window, and when the oldest one that
/// counts toward the limit leaves it (seconds).
pub async fn recent_failures(
    db: &Db,
    throttle_key: &[u8],
    settings: &Settings,
) -> Result<(i64, Option<i64>), Problem> {
    let row = db
        .query_one(
            &Query::select(
                "SELECT
                (SELECT count(*) FROM identity.login_failures f
                 WHERE f.email_key = $1
                   AND f.failed_at > (now() AT TIME ZONE 'UTC') - $2::int8 * interval '1 second'),
                (SELECT ceil(extract(epoch FROM f.failed_at + $2::int8 * interval '1 second'
                                                 - (now() AT TIME ZONE 'UTC')))::int8
                 FROM identity.login_failures f
                 WHERE f.email_key = $1
                 ORDER BY f.failed_at DESC
                 OFFSET $3::int8 - 1 LIMIT 1)",
            ),
            &[
                throttle_key.to_vec().into(),
                settings.login_failure_window_secs.into(),
                settings.login_max_failures.into(),
            ],
        )
        .await?;
    Ok((db::get(&row, 0)?, db::get(&row, 1)?))
}

/// Counts a failed attempt, pruning a bounded batch of failures older than the window (named
/// by key and time, not by `ctid`, which is only unique within one shard on Citus).
pub async fn record_failure(db: &Db, throttle_key: Vec<u8>, window_secs: i64) -> Result<(), Problem> {
    db.execute(
        "WITH expired AS (
             DELETE FROM identity.login_failures
             WHERE (email_key, failed_at) IN (
                 SELECT email_key, failed_at FROM identity.login_failures
                 WHERE failed_at < (now() AT TIME ZONE 'UTC') - $2::int8 * interval '1 second'
                 LIMIT 100)
         )
         INSERT INTO identity.login_failures (email_key) VALUES ($1)",
        &[throttle_key.into(), window_secs.into()],
    )
    .await?;
    Ok(())
}
