//! The caller's own account: `GET /users/me`, `PATCH /users/me {fullName}`,
//! `POST /users/me/password {currentPassword, newPassword}`.

use serde::Deserialize;
use uuid::Uuid;
use wasmpay_common::{
    auth,
    db::{self, Db, Query},
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
};

use crate::{
    login::{recent_failures, record_failure, throttled},
    secrets::{Password, email_key_hash, verify_password},
    settings::Settings,
    users::{USER_COLUMNS, UserView, parse_full_name},
};

fn user_gone() -> Problem {
    Problem::not_found("the user of this access token no longer exists")
}

pub async fn get(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(&Query::select(&format!("SELECT {USER_COLUMNS} FROM identity.users u WHERE u.id = $1")), &[caller.user_id.into()])
        .await?
        .ok_or_else(user_gone)?;
    Ok(http::json(200, &UserView::from_row(&row, 0)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileChanges {
    #[serde(default)]
    full_name: Option<String>,
}

pub async fn update(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let changes: ProfileChanges = http::json_body(&request)?;
    let full_name = match changes.full_name.as_deref().map(parse_full_name) {
        Some(Ok(name)) => name,
        Some(Err(message)) => return Err(FieldError::new("fullName", message).into()),
        None => return Err(FieldError::new("fullName", "is required").into()),
    };
    let db = Db::connect_as(&caller).await?;
    let row = db
        .query_opt(
            &Query::with(
                "u AS (
                     UPDATE identity.users u SET full_name = $2, updated_at = now() AT TIME ZONE 'UTC'
                     WHERE u.id = $1
                     RETURNING u.*
                 )",
                &format!("SELECT {USER_COLUMNS} FROM u"),
            ),
            &[caller.user_id.into(), full_name.into()],
        )
        .await?
        .ok_or_else(user_gone)?;
    Ok(http::json(200, &UserView::from_row(&row, 0)?))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    #[serde(default)]
    current_password: Option<String>,
    #[serde(default)]
    new_password: Option<String>,
}

/// Changes the password after checking the current one (throttled like logins), ends
/// every other session and records `user.password_changed`.
pub async fn change_password(request: Request, _: Params) -> Result<Response, Problem> {
    let caller = auth::authenticate(&request).await?;
    let change: PasswordChange = http::json_body(&request)?;
    let Some(current) = change.current_password else {
        return Err(FieldError::new("currentPassword", "is required").into());
    };
    let new_password = match change.new_password.map(Password::parse) {
        Some(Ok(password)) if password.as_str() == current => {
            return Err(FieldError::new("newPassword", "must differ from the current password").into());
        }
        Some(Ok(password)) => password,
        Some(Err(message)) => return Err(FieldError::new("newPassword", message).into()),
        None => return Err(FieldError::new("newPassword", "is required").into()),
    };
    let settings = Settings::load().await?;
    let db = Db::connect_as(&caller).await?;
    let account = db
        .query_opt(
            &Query::select(
                "SELECT u.password_hash, u.email_key FROM identity.users u WHERE u.id = $1",
            ),
            &[caller.user_id.into()],
        )
        .await?
        .ok_or_else(user_gone)?;
    let stored_hash: String = db::get(&account, 0)?;
    let throttle_key = email_key_hash(&db::get::<String>(&account, 1)?);
    let (failures, retry_after) = recent_failures(&db, &throttle_key, &settings).await?;
    if failures >= settings.login_max_failures {
        return Err(throttled(retry_after));
    }
    if !verify_password(&current, Some(&stored_hash), settings.bcrypt_cost) {
        record_failure(&db, throttle_key, settings.login_failure_window_secs).await?;
        return Err(Problem::forbidden(
            "current-password-incorrect",
            "Current password incorrect",
            "the current password is incorrect",
        ));
    }
    let new_hash = new_password.hash(settings.bcrypt_cost)?;
    db.query_one(
        &Query::with(
            "u AS (
                 UPDATE identity.users
                 SET password_hash = $2, updated_at = now() AT TIME ZONE 'UTC'
                 WHERE id = $1
                 RETURNING id, email, full_name, updated_at
             ), others AS (
                 UPDATE identity.sessions
                 SET revoked_at = now() AT TIME ZONE 'UTC', revoked_reason = 'password-changed'
                 WHERE user_id = $1 AND id <> $3 AND revoked_at IS NULL
             ), cleared AS (
                 DELETE FROM identity.login_failures WHERE email_key = $4
             ), event AS (
                 INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT $5, 'identity', id::text, 'user.password_changed',
                        jsonb_build_object('userId', id, 'email', email, 'fullName', full_name,
                                           'changedAt', to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
                 FROM u
             )",
            "SELECT 1",
        ),
        &[
            caller.user_id.into(),
            new_hash.into(),
            caller.session_id.into(),
            throttle_key.into(),
            Uuid::now_v7().into(),
        ],
    )
    .await?;
    Ok(http::no_content())
}
