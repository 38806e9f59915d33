//! Sessions and their tokens: a login starts a session with a short-lived access token and
//! a single-use refresh token; refreshing rotates it; presenting a rotated refresh token
//! again revokes the whole session (it leaked).
//!
//! - `POST /auth/refresh {refreshToken}`
//! - `POST /auth/logout` · `GET /auth/sessions` · `DELETE /auth/sessions/{id}`

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use wasmpay_common::{
    auth::{self, JwtConfig, Principal},
    db::{self, Db, Param, Query},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
    time,
};

use crate::{
    secrets::{new_token, token_hash},
    settings::Settings,
    users::{USER_COLUMNS, UserView},
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
}

async fn token_pair(principal: Principal, refresh_token: String, settings: &Settings) -> Result<TokenPair, Problem> {
    let jwt = JwtConfig::load().await?;
    Ok(TokenPair {
        access_token: auth::issue(&jwt, principal, time::unix_now(), settings.access_ttl_secs)?,
        token_type: "Bearer",
        expires_in: settings.access_ttl_secs,
        refresh_token,
    })
}

fn ttl_param(secs: u64) -> Param {
    i64::try_from(secs).unwrap_or(i64::MAX).into()
}

/// Longest User-Agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Starts a session after a successful login and clears the address's failure count.
pub async fn start(
    db: &Db,
    user_id: Uuid,
    request: &Request,
    settings: &Settings,
    throttle_key: Vec<u8>,
) -> Result<(TokenPair, UserView), Problem> {
    let session_id = Uuid::now_v7();
    let refresh = new_token()?;
    let user_agent: Option<String> = request
        .header_lossy("user-agent")
        .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect());
    let row = db.query_one(
        &Query::with(
            &format!("cleared AS (
                 DELETE FROM identity.login_failures WHERE email_key = $1
             ), s AS (
                 INSERT INTO identity.sessions (id, user_id, user_agent) VALUES ($2, $3, $4) RETURNING id
             ), t AS (
                 INSERT INTO identity.refresh_tokens (token_hash, user_id, session_id, expires_at)
                 SELECT $5, $3, id, (now() AT TIME ZONE 'UTC') + $6::int8 * interval '1 second' FROM s
             )"),
            &format!("SELECT {USER_COLUMNS} FROM identity.users u WHERE u.id = $3"),
        ),
        &[
            throttle_key.into(),
            session_id.into(),
            user_id.into(),
            user_agent.into(),
            refresh.hash.into(),
            ttl_param(settings.refresh_ttl_secs),
        ],
    )
    .await?;
    let principal = Principal { user_id, session_id };
    Ok((token_pair(principal, refresh.raw, settings).await?, UserView::from_row(&row, 0)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    #[serde(default)]
    refresh_token: Option<String>,
}

fn invalid_refresh_token(detail: &str) -> Problem {
    Problem::new(401, "invalid-refresh-token", "Invalid refresh token", detail)
        .with_header("www-authenticate", "Bearer realm=\"wasmpay\", error=\"invalid_token\"")
}

pub async fn refresh(request: Request, _: Params) -> Result<Response, Problem> {
    let body: RefreshBody = http::json_body(&request)?;
    let presented = match body.refresh_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() && token.len() <= 128 => token.to_owned(),
        Some(_) => return Err(invalid_refresh_token("this refresh token is not valid")),
        None => return Err(FieldError::new("refreshToken", "is required").into()),
    };
    let settings = Settings::load().await?;
    let successor = new_token()?;
    let db = Db::connect().await?;
    let hash = token_hash(&presented);
    // Tokens are kept with their user (on Citus, on the user's shard): find whose it is,
    // then lock it and its session there.
    let Some(owner) = db
        .query_opt(
            &Query::select("SELECT user_id FROM identity.refresh_tokens WHERE token_hash = $1"),
            &[hash.clone().into()],
        )
        .await?
    else {
        return Err(invalid_refresh_token("this refresh token is not valid"));
    };
    let owner: Uuid = db::get(&owner, 0)?;
    let outcome = db.query_opt(
        &Query::with(
            "presented AS (
             SELECT t.token_hash, t.session_id, s.user_id, t.rotated_at, s.revoked_at,
                    t.expires_at <= (now() AT TIME ZONE 'UTC') AS expired
             FROM identity.refresh_tokens t
             JOIN identity.sessions s ON s.user_id = t.user_id AND s.id = t.session_id
             WHERE t.user_id = $4 AND t.token_hash = $1
             FOR UPDATE OF t, s
         ), rotated AS (
             UPDATE identity.refresh_tokens t SET rotated_at = now() AT TIME ZONE 'UTC'
             FROM presented p
             WHERE t.user_id = $4 AND t.token_hash = p.token_hash
               AND p.rotated_at IS NULL AND p.revoked_at IS NULL AND NOT p.expired
             RETURNING t.session_id
         ), successor AS (
             INSERT INTO identity.refresh_tokens (token_hash, user_id, session_id, expires_at)
             SELECT $2, $4, session_id, (now() AT TIME ZONE 'UTC') + $3::int8 * interval '1 second' FROM rotated
         ), touched AS (
             UPDATE identity.sessions s SET last_used_at = now() AT TIME ZONE 'UTC'
             FROM rotated r WHERE s.user_id = $4 AND s.id = r.session_id
         ), reused AS (
             UPDATE identity.sessions s
             SET revoked_at = now() AT TIME ZONE 'UTC', revoked_reason = 'refresh-token-reuse'
             FROM presented p
             WHERE s.user_id = $4 AND s.id = p.session_id AND p.rotated_at IS NOT NULL AND p.revoked_at IS NULL
         )",
            "SELECT CASE
                    WHEN EXISTS (SELECT 1 FROM rotated) THEN 'rotated'
                    WHEN p.revoked_at IS NOT NULL THEN 'revoked'
                    WHEN p.rotated_at IS NOT NULL THEN 'reused'
                    ELSE 'expired'
                END,
                p.session_id, p.user_id
         FROM presented p",
        ),
        &[hash.into(), successor.hash.into(), ttl_param(settings.refresh_ttl_secs), owner.into()],
    )
    .await?;
    let Some(row) = outcome else {
        return Err(invalid_refresh_token("this refresh token is not valid"));
    };
    match db::get::<String>(&row, 0)?.as_str() {
        "rotated" => {
            let principal = Principal {
                session_id: db::get(&row, 1)?,
                user_id: db::get(&row, 2)?,
            };
            Ok(http::json(200, &token_pair(principal, successor.raw, &settings).await?))
        }
        "reused" => Err(invalid_refresh_token(
            "this refresh token was already used; the session has been revoked, sign in again",
        )),
        "revoked" => Err(invalid_refresh_token("this session has ended; sign in again")),
        _ => Err(invalid_refresh_token("this refresh token has expired; sign in again")),
    }
}

pub async fn logout(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let db = Db::connect_as(&caller).await?;
    db.query_one(
        &Query::with(
            "ended AS (
                 UPDATE identity.sessions
                 SET revoked_at = now() AT TIME ZONE 'UTC', revoked_reason = 'logout'
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
             )",
            "SELECT 1",
        ),
        &[caller.session_id.into(), caller.user_id.into()],
    )
    .await?;
    Ok(http::no_content())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    id: Uuid,
    user_agent: Option<String>,
    created_at: String,
    last_used_at: String,
    current: bool,
}

#[derive(Serialize)]
struct SessionList {
    sessions: Vec<SessionView>,
}

/// Most sessions listed; older ones are still revocable by id.
const MAX_LISTED_SESSIONS: i64 = 100;

pub async fn list(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let db = Db::connect_as(&caller).await?;
    let rows = db.query_all(
        &Query::select("SELECT s.id, s.user_agent, s.created_at, s.last_used_at
         FROM identity.sessions s
         WHERE s.user_id = $1 AND s.revoked_at IS NULL
           AND EXISTS (SELECT 1 FROM identity.refresh_tokens t
                       WHERE t.user_id = s.user_id AND t.session_id = s.id AND t.rotated_at IS NULL
                         AND t.expires_at > (now() AT TIME ZONE 'UTC'))
         ORDER BY s.last_used_at DESC
         LIMIT $2"),
        &[caller.user_id.into(), MAX_LISTED_SESSIONS.into()],
    )
    .await?;
    let sessions = rows
        .iter()
        .map(|row| {
            let id: Uuid = db::get(row, 0)?;
            Ok(SessionView {
                id,
                user_agent: db::get(row, 1)?,
                created_at: time::rfc3339(db::get::<NaiveDateTime>(row, 2)?),
                last_used_at: time::rfc3339(db::get::<NaiveDateTime>(row, 3)?),
                current: id == caller.session_id,
            })
        })
        .collect::<Result<_, db::DbError>>()?;
    Ok(http::json(200, &SessionList { sessions }))
}

pub async fn revoke(request: Request, params: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let not_found = || Problem::not_found("no active session with this id");
    let session_id: Uuid = params.uuid("id").ok_or_else(not_found)?;
    let db = Db::connect_as(&caller).await?;
    let revoked = db.query_one(
        &Query::with(
            "ended AS (
                 UPDATE identity.sessions
                 SET revoked_at = now() AT TIME ZONE 'UTC', revoked_reason = 'revoked-by-user'
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
                 RETURNING id
             )",
            "SELECT count(*) FROM ended",
        ),
        &[session_id.into(), caller.user_id.into()],
    )
    .await?;
    if db::get::<i64>(&revoked, 0)? == 0 {
        return Err(not_found());
    }
    Ok(http::no_content())
}
