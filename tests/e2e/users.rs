//! Helpers that act as a user of the API: sign up, verify, log in, and (as an attacker)
//! forge tokens.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::app::{EVENT_KEY, EVENT_KEY_ID, JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, Reply, TestApp};

pub const PASSWORD: &str = "correct horse battery staple";

/// An address no other test uses.
pub fn unique_email(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{tag}.{}.{}@example.com", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

pub async fn register(app: &TestApp, email: &str, password: &str, full_name: &str) -> Reply {
    app.post("/auth/register")
        .json(&json!({ "email": email, "password": password, "confirmPassword": password, "fullName": full_name }))
        .send()
        .await
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> Reply {
    app.post("/auth/login").json(&json!({ "email": email, "password": password })).send().await
}

/// A registered, logged-in user whose e-mail is not verified.
pub async fn signed_up(app: &TestApp, tag: &str) -> User {
    let email = unique_email(tag);
    let registered = register(app, &email, PASSWORD, &format!("{tag} user")).await;
    registered.expect(201);
    logged_in(app, &email, PASSWORD).await
}

/// A registered user with a verified e-mail, logged in.
pub async fn verified(app: &TestApp, tag: &str) -> User {
    let user = signed_up(app, tag).await;
    let token = verification_token(app, &user.id).await;
    app.post("/auth/verify-email").json(&json!({ "token": token })).send().await.expect(200);
    user
}

pub async fn logged_in(app: &TestApp, email: &str, password: &str) -> User {
    let reply = login(app, email, password).await;
    reply.expect(200);
    let body = reply.json();
    User {
        id: body["user"]["id"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        access: body["accessToken"].as_str().unwrap().to_owned(),
        refresh: body["refreshToken"].as_str().unwrap().to_owned(),
    }
}

/// The newest verification token sent to `user_id`, opened from its event as the bridge
/// would open it.
pub async fn verification_token(app: &TestApp, user_id: &str) -> String {
    let payload = newest_event(app, user_id, &["user.registered", "user.verification_requested"]).await;
    let sealed: wasmpay_sealed::Sealed = serde_json::from_value(payload["verification"]["token"].clone()).unwrap();
    let key = wasmpay_sealed::Key::from_base64(EVENT_KEY_ID, EVENT_KEY).unwrap();
    let raw = wasmpay_sealed::open(&sealed, &[key], &wasmpay_sealed::context::email_verification(user_id)).unwrap();
    String::from_utf8(raw).unwrap()
}

/// The payload of the newest outbox event of one of `types` for `aggregate_id`.
pub async fn newest_event(app: &TestApp, aggregate_id: &str, types: &[&str]) -> Value {
    let sql = app.sql().await;
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    let row = sql
        .query_one(
            "SELECT payload FROM outbox.events WHERE aggregate_id = $1 AND event_type = ANY($2)
             ORDER BY position DESC LIMIT 1",
            &[&aggregate_id, &types],
        )
        .await
        .unwrap_or_else(|e| panic!("no {types:?} event for {aggregate_id}: {e}"));
    row.get(0)
}

/// A JWT with any header and claims, signed with HMAC-SHA256 under `secret` whatever the
/// header claims: the attacker's tool.
pub fn forge(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// Claims as the identity component issues them, for `user` at `now`.
pub fn claims(user: &User, now: u64) -> Value {
    let session = access_claims(&user.access)["sid"].clone();
    json!({
        "sub": user.id, "sid": session, "iat": now, "exp": now + 300,
        "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "jti": "00000000-0000-4000-8000-000000000000"
    })
}

pub fn access_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

pub fn hs256(header_alg: &str) -> Value {
    json!({ "alg": header_alg, "typ": "JWT" })
}

pub fn jwt_secret() -> &'static [u8] {
    JWT_SECRET.as_bytes()
}
