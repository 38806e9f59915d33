//! E-mail verification: tokens are random, stored only as hashes, expire, and travel to the
//! notifier sealed inside the event. Only the latest token of a user is usable.
//!
//! - `POST /auth/verify-email {token}`
//! - `POST /auth/resend-verification` (authenticated, rate-limited): a fresh token; the
//!   previous one stops working.

use chrono::{Duration, NaiveDateTime};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Query},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
    time,
};
use wasmpay_sealed::Sealed;

use crate::{
    secrets::{OpaqueToken, is_token_shaped, new_token, token_hash},
    settings::{self, Settings},
    users::{USER_COLUMNS, UserView},
};

/// A verification token ready to store (its hash) and to send (sealed).
pub struct Issued {
    pub token: OpaqueToken,
    pub expires_at: NaiveDateTime,
    sealed: Sealed,
}

impl Issued {
    /// The `verification` member of the event payload.
    pub fn event_field(&self) -> Value {
        json!({ "token": self.sealed, "expiresAt": time::rfc3339(self.expires_at) })
    }
}

pub async fn issue(user_id: Uuid, ttl_secs: u64) -> Result<Issued, Problem> {
    let key = settings::event_key().await?;
    let token = new_token()?;
    let context = wasmpay_sealed::context::email_verification(&user_id.to_string());
    let sealed = wasmpay_sealed::seal(&key, token.raw.as_bytes(), &context).map_err(|e| {
        eprintln!("cannot seal a verification token: {e}");
        Problem::internal()
    })?;
    let ttl = Duration::seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX / 1_000));
    Ok(Issued {
        token,
        expires_at: time::now() + ttl,
        sealed,
    })
}

#[derive(Deserialize)]
struct VerifyBody {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Serialize)]
struct Verified {
    user: UserView,
    message: &'static str,
}

fn no_such_token() -> Problem {
    Problem::new(
        400,
        "verification-token-invalid",
        "Invalid verification token",
        "this verification token does not exist",
    )
}

pub async fn verify(request: Request, _: Params) -> Result<Response, Problem> {
    let body: VerifyBody = http::json_body(&request)?;
    let Some(token) = body.token else {
        return Err(FieldError::new("token", "is required").into());
    };
    // A token of another shape than ours was never issued: no such token, and no lookup.
    if !is_token_shaped(&token) {
        return Err(no_such_token());
    }
    let db = Db::connect().await?;
    let hash = token_hash(&token);
    // Tokens are kept with their user (on Citus, on the user's shard): find whose it is,
    // then lock it there.
    let Some(owner) = db
        .query_opt(
            &Query::select(
                "SELECT user_id FROM identity.email_verifications WHERE token_hash = $1",
            ),
            &[hash.clone().into()],
        )
        .await?
    else {
        return Err(no_such_token());
    };
    let owner: Uuid = db::get(&owner, 0)?;
    let outcome = db
        .query_opt(
            &Query::with(
                &format!(
                    "presented AS (
                 SELECT v.user_id, v.used_at, v.superseded_at,
                        v.expires_at <= (now() AT TIME ZONE 'UTC') AS expired
                 FROM identity.email_verifications v
                 WHERE v.user_id = $3 AND v.token_hash = $1
                 FOR UPDATE
             ), consumed AS (
                 UPDATE identity.email_verifications v SET used_at = now() AT TIME ZONE 'UTC'
                 FROM presented p
                 WHERE v.user_id = $3 AND v.token_hash = $1
                   AND p.used_at IS NULL AND p.superseded_at IS NULL AND NOT p.expired
                 RETURNING v.user_id
             ), u AS (
                 UPDATE identity.users u
                 SET email_verified_at = LEAST(u.email_verified_at, now() AT TIME ZONE 'UTC'),
                     updated_at = now() AT TIME ZONE 'UTC'
                 FROM consumed c
                 WHERE u.id = $3 AND u.id = c.user_id
                 RETURNING u.*
             ), event AS (
                 INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT $2, 'identity', id::text, 'user.verified',
                        jsonb_build_object('userId', id, 'email', email, 'fullName', full_name)
                 FROM u
             )"
                ),
                &format!(
                    "SELECT CASE
                        WHEN EXISTS (SELECT 1 FROM u) THEN 'verified'
                        WHEN p.used_at IS NOT NULL THEN 'used'
                        WHEN p.superseded_at IS NOT NULL THEN 'superseded'
                        ELSE 'expired'
                    END,
                    {USER_COLUMNS}
             FROM presented p LEFT JOIN u ON true"
                ),
            ),
            &[hash.into(), Uuid::now_v7().into(), owner.into()],
        )
        .await?;
    let Some(row) = outcome else {
        return Err(no_such_token());
    };
    match db::get::<String>(&row, 0)?.as_str() {
        "verified" => Ok(http::json(
            200,
            &Verified {
                user: UserView::from_row(&row, 1)?,
                message: "E-mail address verified.",
            },
        )),
        "used" => Err(Problem::new(
            410,
            "verification-token-used",
            "Verification token already used",
            "this verification token was already used",
        )),
        "superseded" => Err(Problem::new(
            410,
            "verification-token-superseded",
            "Verification token replaced",
            "a newer verification token was sent; use the latest one",
        )),
        _ => Err(Problem::new(
            410,
            "verification-token-expired",
            "Verification token expired",
            "this verification token has expired; ask for a new one",
        )),
    }
}

#[derive(Serialize)]
struct Resent {
    message: &'static str,
    #[serde(rename = "expiresAt")]
    expires_at: String,
}

pub async fn resend(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let settings = Settings::load().await?;
    let issued = issue(caller.user_id, settings.verification_ttl_secs).await?;
    let db = Db::connect_as(&caller).await?;
    let outcome = db.query_opt(
        &Query::with(
            "target AS (
             SELECT u.id, u.email, u.full_name, u.email_verified_at,
                    (SELECT max(v.created_at) FROM identity.email_verifications v WHERE v.user_id = $1) AS last_sent
             FROM identity.users u
             WHERE u.id = $1
             FOR UPDATE OF u
         ), allowed AS (
             SELECT * FROM target
             WHERE email_verified_at IS NULL
               AND (last_sent IS NULL OR last_sent <= (now() AT TIME ZONE 'UTC') - $2::int8 * interval '1 second')
         ), superseded AS (
             UPDATE identity.email_verifications v SET superseded_at = now() AT TIME ZONE 'UTC'
             FROM allowed a
             WHERE v.user_id = a.id AND v.used_at IS NULL AND v.superseded_at IS NULL
         ), issued AS (
             INSERT INTO identity.email_verifications (token_hash, user_id, expires_at)
             SELECT $3, id, $4 FROM allowed
         ), event AS (
             INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
             SELECT $5, 'identity', id::text, 'user.verification_requested',
                    $6::jsonb || jsonb_build_object('userId', id, 'email', email, 'fullName', full_name)
             FROM allowed
         )",
            "SELECT t.email_verified_at IS NOT NULL,
                EXISTS (SELECT 1 FROM allowed),
                ceil(extract(epoch FROM t.last_sent + $2::int8 * interval '1 second' - (now() AT TIME ZONE 'UTC')))::int8
         FROM target t",
        ),
        &[
            caller.user_id.into(),
            i64::try_from(settings.resend_interval_secs).unwrap_or(i64::MAX).into(),
            issued.token.hash.clone().into(),
            issued.expires_at.into(),
            Uuid::now_v7().into(),
            db::jsonb(&json!({ "verification": issued.event_field() }))?,
        ],
    )
    .await?;
    let Some(row) = outcome else {
        return Err(Problem::not_found("the user of this access token no longer exists"));
    };
    let already_verified: bool = db::get(&row, 0)?;
    let sent: bool = db::get(&row, 1)?;
    if already_verified {
        return Err(Problem::conflict(
            "email-already-verified",
            "E-mail already verified",
            "this account's e-mail address is already verified",
        ));
    }
    if !sent {
        let retry_after: Option<i64> = db::get(&row, 2)?;
        let retry_after = retry_after.unwrap_or(1).max(1) as u64;
        return Err(Problem::too_many_requests(
            "verification-resend-too-soon",
            retry_after,
            "a verification e-mail was sent recently; try again later",
        ));
    }
    Ok(http::json(
        202,
        &Resent {
            message: "A new verification e-mail is on its way; earlier links no longer work.",
            expires_at: time::rfc3339(issued.expires_at),
        },
    ))
}
