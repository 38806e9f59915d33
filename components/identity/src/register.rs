//! `POST /auth/register`: creates the user, their first verification token and the
//! `user.registered` event in one statement, so either all three exist or none does.

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use wasmpay_common::{
    db::{self, Db, Query},
    email::Email,
    http::{self, Request, Response},
    problem::{FieldError, Problem},
    router::Params,
};

use crate::{
    secrets::Password,
    settings::Settings,
    users::{USER_COLUMNS, UserView, parse_full_name},
    verification,
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    confirm_password: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
}

struct Registration {
    email: Email,
    password: Password,
    full_name: String,
}

impl TryFrom<RegisterBody> for Registration {
    type Error = Problem;

    fn try_from(body: RegisterBody) -> Result<Self, Problem> {
        let mut errors = Vec::new();
        let email = match body.email.as_deref().map(Email::parse) {
            Some(Ok(email)) => Some(email),
            Some(Err(e)) => {
                errors.push(FieldError::new("email", e.to_string()));
                None
            }
            None => {
                errors.push(FieldError::new("email", "is required"));
                None
            }
        };
        let password = match body.password {
            Some(password) => {
                if body.confirm_password.as_deref() != Some(password.as_str()) {
                    errors.push(FieldError::new("confirmPassword", "must equal password"));
                }
                Password::parse(password).map_err(|m| errors.push(FieldError::new("password", m))).ok()
            }
            None => {
                errors.push(FieldError::new("password", "is required"));
                None
            }
        };
        let full_name = match body.full_name.as_deref().map(parse_full_name) {
            Some(Ok(name)) => Some(name),
            Some(Err(message)) => {
                errors.push(FieldError::new("fullName", message));
                None
            }
            None => {
                errors.push(FieldError::new("fullName", "is required"));
                None
            }
        };
        match (email, password, full_name) {
            (Some(email), Some(password), Some(full_name)) if errors.is_empty() => Ok(Self {
                email,
                password,
                full_name,
            }),
            _ => Err(Problem::validation(errors)),
        }
    }
}

#[derive(Serialize)]
struct Registered {
    user: UserView,
    message: &'static str,
}

pub async fn handle(request: Request, _: Params) -> Result<Response, Problem> {
    let registration = Registration::try_from(http::json_body::<RegisterBody>(&request)?)?;
    let settings = Settings::load().await?;
    let password_hash = registration.password.hash(settings.bcrypt_cost)?;
    let user_id = Uuid::now_v7();
    let issued = verification::issue(user_id, settings.verification_ttl_secs).await?;
    let payload = json!({
        "userId": user_id,
        "email": registration.email.as_str(),
        "fullName": registration.full_name,
        "verification": issued.event_field(),
    });
    let db = Db::connect().await?;
    let created = db.query_opt(
        &Query::with(
            &format!("address AS (
                 INSERT INTO identity.email_addresses (email_key, user_id)
                 VALUES ($9, $1)
                 ON CONFLICT (email_key) DO NOTHING
                 RETURNING user_id
             ), u AS (
                 INSERT INTO identity.users (id, email, email_key, full_name, password_hash)
                 SELECT user_id, $2, $9, $3, $4 FROM address
                 RETURNING *
             ), token AS (
                 INSERT INTO identity.email_verifications (token_hash, user_id, expires_at)
                 SELECT $5, id, $6 FROM u
             ), event AS (
                 INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload)
                 SELECT $7, 'identity', id::text, 'user.registered', $8 FROM u
             )"),
            &format!("SELECT {USER_COLUMNS} FROM u"),
        ),
        &[
            user_id.into(),
            registration.email.as_str().to_owned().into(),
            registration.full_name.clone().into(),
            password_hash.into(),
            issued.token.hash.clone().into(),
            issued.expires_at.into(),
            Uuid::now_v7().into(),
            db::jsonb(&payload)?,
            registration.email.key().into(),
        ],
    )
    .await?;
    let Some(row) = created else {
        return Err(Problem::conflict(
            "email-taken",
            "E-mail already registered",
            "an account with this e-mail address already exists",
        ));
    };
    Ok(http::json(
        201,
        &Registered {
            user: UserView::from_row(&row, 0)?,
            message: "Account created. Check your e-mail for the verification link.",
        },
    ))
}
