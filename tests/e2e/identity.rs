//! Identity: registration, verification, login, sessions, profile — and the attacks each
//! defence exists for. Every test here fails if its defence is removed.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    app::{EVENT_KEY_ID, TestApp},
    users::{
        PASSWORD, User, access_claims, claims, forge, hs256, jwt_secret, logged_in, login, newest_event, now_secs,
        register, signed_up, unique_email, verification_token, verified,
    },
};

// ---- registration -------------------------------------------------------------------------

#[tokio::test]
async fn registration_creates_an_unverified_user_and_its_event() {
    let app = TestApp::spawn().await;
    let email = unique_email("Ada.Register");
    let reply = register(&app, &format!("  {email} "), PASSWORD, " Ada Lovelace ").await;
    reply.expect(201);
    let user = &reply.json()["user"];
    assert_eq!(user["email"], email.as_str(), "trimmed");
    assert_eq!(user["fullName"], "Ada Lovelace");
    assert_eq!(user["emailVerified"], false);
    assert!(reply.json()["message"].is_string());

    let event = newest_event(&app, user["id"].as_str().unwrap(), &["user.registered"]).await;
    assert_eq!(event["email"], email.as_str());
    let sealed = &event["verification"]["token"];
    assert_eq!(sealed["alg"], "A256GCM");
    assert_eq!(sealed["kid"], EVENT_KEY_ID);
    // The raw token is in the event only sealed, and in the database only hashed.
    let raw = verification_token(&app, user["id"].as_str().unwrap()).await;
    let sql = app.sql().await;
    let everything: String = sql
        .query_one(
            "SELECT (SELECT string_agg(payload::text, ' ') FROM outbox.events)
                 || (SELECT string_agg(encode(token_hash, 'escape'), ' ') FROM identity.email_verifications)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!everything.contains(&raw), "the raw verification token is stored in the clear");
}

#[tokio::test]
async fn the_sealed_token_does_not_open_without_the_key_or_for_another_user() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "sealed").await;
    let event = newest_event(&app, &user.id, &["user.registered"]).await;
    let sealed: wasmpay_sealed::Sealed = serde_json::from_value(event["verification"]["token"].clone()).unwrap();
    let wrong_key = wasmpay_sealed::Key::from_base64(EVENT_KEY_ID, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    let context = wasmpay_sealed::context::email_verification(&user.id);
    assert!(wasmpay_sealed::open(&sealed, &[wrong_key], &context).is_err());
    let right_key = wasmpay_sealed::Key::from_base64(EVENT_KEY_ID, crate::app::EVENT_KEY).unwrap();
    let other_user = wasmpay_sealed::context::email_verification("someone-else");
    assert!(wasmpay_sealed::open(&sealed, &[right_key], &other_user).is_err());
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = TestApp::spawn().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"email": "not-an-email", "password": PASSWORD, "confirmPassword": PASSWORD, "fullName": "A"}), "email"),
        (json!({"password": PASSWORD, "confirmPassword": PASSWORD, "fullName": "A"}), "email"),
        (json!({"email": unique_email("v"), "password": "short", "confirmPassword": "short", "fullName": "A"}), "password"),
        (
            json!({"email": unique_email("v"), "password": "x".repeat(73), "confirmPassword": "x".repeat(73), "fullName": "A"}),
            "password",
        ),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "confirmPassword": "something else", "fullName": "A"}),
            "confirmPassword",
        ),
        (json!({"email": unique_email("v"), "password": PASSWORD, "confirmPassword": PASSWORD}), "fullName"),
        (json!({"email": unique_email("v"), "password": PASSWORD, "confirmPassword": PASSWORD, "fullName": "  "}), "fullName"),
        (
            json!({"email": unique_email("v"), "password": PASSWORD, "confirmPassword": PASSWORD, "fullName": "x".repeat(101)}),
            "fullName",
        ),
    ];
    for (body, field) in cases {
        let reply = app.post("/auth/register").json(&body).send().await;
        reply.expect(422);
        assert_eq!(reply.problem(), "validation-failed");
        let errors = reply.json()["errors"].clone();
        assert!(
            errors.as_array().unwrap().iter().any(|e| e["field"] == field),
            "{field} not reported for {body}: {errors}"
        );
    }
    let users: i64 = app.sql().await.query_one("SELECT count(*) FROM identity.users", &[]).await.unwrap().get(0);
    assert_eq!(users, 0, "an invalid registration changes nothing");
}

#[tokio::test]
async fn a_72_byte_password_is_the_longest_accepted_and_is_not_truncated() {
    let app = TestApp::spawn().await;
    let email = unique_email("long");
    let password = "p".repeat(72);
    register(&app, &email, &password, "Long").await.expect(201);
    login(&app, &email, &password).await.expect(200);
    // A different 72-byte password differing only in the last byte is wrong.
    login(&app, &email, &format!("{}q", "p".repeat(71))).await.expect(401);
}

#[tokio::test]
async fn an_address_registers_once_whatever_its_case() {
    let app = TestApp::spawn().await;
    let email = unique_email("dupe");
    register(&app, &email, PASSWORD, "First").await.expect(201);
    let again = register(&app, &email.to_uppercase(), PASSWORD, "Second").await;
    again.expect(409);
    assert_eq!(again.problem(), "email-taken");
}

#[tokio::test]
async fn a_failing_event_insert_leaves_no_user() {
    let app = TestApp::spawn().await;
    app.sql()
        .await
        .batch_execute(
            "ALTER TABLE outbox.events ADD CONSTRAINT refuse_registrations CHECK (event_type <> 'user.registered')",
        )
        .await
        .unwrap();
    let reply = register(&app, &unique_email("atomic"), PASSWORD, "Atomic").await;
    reply.expect(500);
    assert_eq!(reply.problem(), "internal");
    let sql = app.sql().await;
    let leftovers: i64 = sql
        .query_one(
            "SELECT (SELECT count(*) FROM identity.users) + (SELECT count(*) FROM identity.email_verifications)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "user, token and event are one transaction");
}

// ---- verification ---------------------------------------------------------------------------

#[tokio::test]
async fn a_verification_token_verifies_once() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "verify").await;
    let token = verification_token(&app, &user.id).await;
    let reply = app.post("/auth/verify-email").json(&json!({ "token": token })).send().await;
    reply.expect(200);
    assert_eq!(reply.json()["user"]["emailVerified"], true);
    let event = newest_event(&app, &user.id, &["user.verified"]).await;
    assert_eq!(event["userId"], user.id.as_str());

    let again = app.post("/auth/verify-email").json(&json!({ "token": token })).send().await;
    again.expect(410);
    assert_eq!(again.problem(), "verification-token-used");
    let me = app.get("/users/me").bearer(&user.access).send().await;
    assert_eq!(me.json()["emailVerified"], true);
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_distinct_problems() {
    let app = TestApp::spawn().await;
    let unknown = app.post("/auth/verify-email").json(&json!({ "token": "no-such-token" })).send().await;
    unknown.expect(400);
    assert_eq!(unknown.problem(), "verification-token-invalid");

    let user = signed_up(&app, "expired").await;
    let token = verification_token(&app, &user.id).await;
    app.sql()
        .await
        .execute(
            "UPDATE identity.email_verifications SET created_at = created_at - interval '2 days', expires_at = created_at - interval '1 day'",
            &[],
        )
        .await
        .unwrap();
    let expired = app.post("/auth/verify-email").json(&json!({ "token": token })).send().await;
    expired.expect(410);
    assert_eq!(expired.problem(), "verification-token-expired");

    let missing = app.post("/auth/verify-email").json(&json!({})).send().await;
    missing.expect(422);
}

#[tokio::test]
async fn resending_replaces_the_token_and_is_rate_limited() {
    let app = TestApp::spawn_with(|config| config.variable("verification_resend_interval_secs", "0")).await;
    let user = signed_up(&app, "resend").await;
    let first = verification_token(&app, &user.id).await;
    let resent = app.post("/auth/resend-verification").bearer(&user.access).send().await;
    resent.expect(202);
    let second = verification_token(&app, &user.id).await;
    assert_ne!(first, second);

    let old = app.post("/auth/verify-email").json(&json!({ "token": first })).send().await;
    old.expect(410);
    assert_eq!(old.problem(), "verification-token-superseded");
    app.post("/auth/verify-email").json(&json!({ "token": second })).send().await.expect(200);

    let done = app.post("/auth/resend-verification").bearer(&user.access).send().await;
    done.expect(409);
    assert_eq!(done.problem(), "email-already-verified");

    let limited = TestApp::spawn().await;
    let user = signed_up(&limited, "limited").await;
    let reply = limited.post("/auth/resend-verification").bearer(&user.access).send().await;
    reply.expect(429);
    assert_eq!(reply.problem(), "verification-resend-too-soon");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    limited.post("/auth/resend-verification").send().await.expect(401);
}

// ---- login, tokens, sessions ------------------------------------------------------------------

#[tokio::test]
async fn login_issues_a_bearer_token_pair_for_the_profile() {
    let app = TestApp::spawn().await;
    let email = unique_email("Login");
    register(&app, &email, PASSWORD, "Grace Hopper").await.expect(201);
    let reply = login(&app, &email.to_uppercase(), PASSWORD).await;
    reply.expect(200);
    let body = reply.json();
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    assert_eq!(body["user"]["fullName"], "Grace Hopper");
    let claims = access_claims(body["accessToken"].as_str().unwrap());
    assert_eq!(claims["sub"], body["user"]["id"]);
    for claim in ["sid", "iat", "exp", "iss", "aud", "jti"] {
        assert!(!claims[claim].is_null(), "{claim} missing");
    }
    let me = app.get("/users/me").bearer(body["accessToken"].as_str().unwrap()).send().await;
    me.expect(200);
    assert_eq!(me.json()["email"], email.as_str());
    assert!(!String::from_utf8_lossy(&me.body).contains("$2"), "no password hash in responses");
}

#[tokio::test]
async fn profile_updates_and_validates_the_name() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "profile").await;
    let reply = app.patch("/users/me").bearer(&user.access).json(&json!({ "fullName": "  New Name " })).send().await;
    reply.expect(200);
    assert_eq!(reply.json()["fullName"], "New Name");
    app.patch("/users/me").bearer(&user.access).json(&json!({ "fullName": "" })).send().await.expect(422);
    app.patch("/users/me").json(&json!({ "fullName": "x" })).send().await.expect(401);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_session() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "rotate").await;
    let rotated = app.post("/auth/refresh").json(&json!({ "refreshToken": user.refresh })).send().await;
    rotated.expect(200);
    let next_refresh = rotated.json()["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(next_refresh, user.refresh);
    let next_access = rotated.json()["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(access_claims(&next_access)["sid"], access_claims(&user.access)["sid"], "same session");

    // The first token again: it leaked. The session ends, the legitimate successor with it.
    let replay = app.post("/auth/refresh").json(&json!({ "refreshToken": user.refresh })).send().await;
    replay.expect(401);
    assert_eq!(replay.problem(), "invalid-refresh-token");
    let successor = app.post("/auth/refresh").json(&json!({ "refreshToken": next_refresh })).send().await;
    successor.expect(401);
    let reason: String = app
        .sql()
        .await
        .query_one("SELECT revoked_reason FROM identity.sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "refresh-token-reuse");

    app.post("/auth/refresh").json(&json!({ "refreshToken": "made-up" })).send().await.expect(401);
}

#[tokio::test]
async fn logout_ends_the_session_and_sessions_can_be_listed_and_revoked() {
    let app = TestApp::spawn().await;
    let phone = signed_up(&app, "devices").await;
    let laptop = logged_in(&app, &phone.email, PASSWORD).await;

    let listed = app.get("/auth/sessions").bearer(&laptop.access).send().await;
    listed.expect(200);
    let sessions = listed.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    let phone_session = access_claims(&phone.access)["sid"].as_str().unwrap().to_owned();
    app.delete(&format!("/auth/sessions/{phone_session}")).bearer(&laptop.access).send().await.expect(204);
    app.post("/auth/refresh").json(&json!({ "refreshToken": phone.refresh })).send().await.expect(401);
    app.delete(&format!("/auth/sessions/{phone_session}")).bearer(&laptop.access).send().await.expect(404);
    app.delete("/auth/sessions/not-a-uuid").bearer(&laptop.access).send().await.expect(404);

    app.post("/auth/logout").bearer(&laptop.access).send().await.expect(204);
    app.post("/auth/refresh").json(&json!({ "refreshToken": laptop.refresh })).send().await.expect(401);
    app.post("/auth/logout").send().await.expect(401);
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let app = TestApp::spawn().await;
    let here = signed_up(&app, "password").await;
    let elsewhere = logged_in(&app, &here.email, PASSWORD).await;
    let new_password = "a brand new passphrase";

    let wrong = app
        .post("/users/me/password")
        .bearer(&here.access)
        .json(&json!({ "currentPassword": "not it at all", "newPassword": new_password }))
        .send()
        .await;
    wrong.expect(403);
    assert_eq!(wrong.problem(), "current-password-incorrect");
    app.post("/users/me/password")
        .bearer(&here.access)
        .json(&json!({ "currentPassword": PASSWORD, "newPassword": "short" }))
        .send()
        .await
        .expect(422);

    app.post("/users/me/password")
        .bearer(&here.access)
        .json(&json!({ "currentPassword": PASSWORD, "newPassword": new_password }))
        .send()
        .await
        .expect(204);
    app.post("/auth/refresh").json(&json!({ "refreshToken": elsewhere.refresh })).send().await.expect(401);
    app.post("/auth/refresh").json(&json!({ "refreshToken": here.refresh })).send().await.expect(200);
    login(&app, &here.email, PASSWORD).await.expect(401);
    login(&app, &here.email, new_password).await.expect(200);
    let event = newest_event(&app, &here.id, &["user.password_changed"]).await;
    assert_eq!(event["email"], here.email.as_str());
}

// ---- attacks --------------------------------------------------------------------------------

async fn expect_invalid_token(app: &TestApp, token: &str, what: &str) {
    let reply = app.get("/users/me").bearer(token).send().await;
    assert_eq!(reply.status, 401, "{what} was accepted");
    assert_eq!(reply.problem(), "invalid-token", "{what}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer") && challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let user = signed_up(&app, "forgery").await;
    let now = now_secs();
    let genuine = forge(&hs256("HS256"), &claims(&user, now), jwt_secret());
    app.get("/users/me").bearer(&genuine).send().await.expect(200);

    // alg=none: no signature at all.
    let payload = genuine.split('.').nth(1).unwrap();
    let header_none = base64_url(&json!({ "alg": "none", "typ": "JWT" }).to_string());
    expect_invalid_token(&app, &format!("{header_none}.{payload}."), "alg=none").await;
    // HS/RS confusion: an RS256 header over an HMAC made with the secret (or a public key).
    expect_invalid_token(&app, &forge(&hs256("RS256"), &claims(&user, now), jwt_secret()), "RS256 header").await;
    expect_invalid_token(&app, &forge(&hs256("HS512"), &claims(&user, now), jwt_secret()), "HS512 header").await;
    // Tampered payload: another subject under the genuine signature.
    let mut tampered_claims = claims(&user, now);
    tampered_claims["sub"] = json!("00000000-0000-7000-8000-000000000001");
    let tampered_payload = base64_url(&tampered_claims.to_string());
    let signature = genuine.split('.').nth(2).unwrap();
    let header = genuine.split('.').next().unwrap();
    expect_invalid_token(&app, &format!("{header}.{tampered_payload}.{signature}"), "tampered payload").await;
    // Signed with another secret.
    expect_invalid_token(&app, &forge(&hs256("HS256"), &claims(&user, now), b"an-attackers-own-secret-0123456789"), "other secret").await;
    // Expired, wrong issuer, wrong audience — each correctly signed.
    let mut expired = claims(&user, now - 3_600);
    expired["exp"] = json!(now - 60);
    expect_invalid_token(&app, &forge(&hs256("HS256"), &expired, jwt_secret()), "expired").await;
    let mut issuer = claims(&user, now);
    issuer["iss"] = json!("evil");
    expect_invalid_token(&app, &forge(&hs256("HS256"), &issuer, jwt_secret()), "wrong iss").await;
    let mut audience = claims(&user, now);
    audience["aud"] = json!("another-api");
    expect_invalid_token(&app, &forge(&hs256("HS256"), &audience, jwt_secret()), "wrong aud").await;
    expect_invalid_token(&app, "not.a.jwt", "garbage").await;

    let missing = app.get("/users/me").send().await;
    missing.expect(401);
    assert_eq!(missing.problem(), "unauthorized");
    assert!(missing.header("www-authenticate").unwrap().starts_with("Bearer"));
}

fn base64_url(text: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn one_users_token_cannot_reach_anothers_data() {
    let app = TestApp::spawn().await;
    let alice = signed_up(&app, "alice").await;
    let bob = signed_up(&app, "bob").await;
    let me = app.get("/users/me").bearer(&alice.access).send().await;
    assert_eq!(me.json()["id"], alice.id.as_str());
    let bobs_session = access_claims(&bob.access)["sid"].as_str().unwrap().to_owned();
    app.delete(&format!("/auth/sessions/{bobs_session}")).bearer(&alice.access).send().await.expect(404);
    app.post("/auth/refresh").json(&json!({ "refreshToken": bob.refresh })).send().await.expect(200);
    let sessions = app.get("/auth/sessions").bearer(&alice.access).send().await.json();
    assert!(sessions["sessions"].as_array().unwrap().iter().all(|s| s["id"] != bobs_session.as_str()));
}

#[tokio::test]
async fn repeated_failures_are_throttled_until_the_window_passes() {
    let app = TestApp::spawn_with(|config| {
        config
            .variable("login_max_failures", "3")
            .variable("login_failure_window_secs", "4")
    })
    .await;
    let user = signed_up(&app, "throttle").await;
    for _ in 0..3 {
        login(&app, &user.email, "wrong password").await.expect(401);
    }
    let throttled = login(&app, &user.email, PASSWORD).await;
    throttled.expect(429);
    assert_eq!(throttled.problem(), "too-many-login-attempts");
    let retry_after: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry_after), "{retry_after}");
    // Unknown addresses are throttled the same way (no enumeration through 429s).
    let stranger = unique_email("stranger");
    for _ in 0..3 {
        login(&app, &stranger, "guess").await.expect(401);
    }
    login(&app, &stranger, "guess").await.expect(429);

    tokio::time::sleep(Duration::from_secs(retry_after + 1)).await;
    login(&app, &user.email, PASSWORD).await.expect(200);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    // A realistic cost, so skipping bcrypt for unknown addresses would show.
    let app = TestApp::spawn_with(|config| {
        config.variable("bcrypt_cost", "10").variable("login_max_failures", "1000")
    })
    .await;
    let user = signed_up(&app, "enumeration").await;
    let unknown = login(&app, &unique_email("nobody"), "whatever password").await;
    let wrong = login(&app, &user.email, "whatever password").await;
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));
    assert_eq!(unknown.header("www-authenticate"), wrong.header("www-authenticate"));

    async fn median_ms(app: &TestApp, email: &str) -> f64 {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            login(app, email, "whatever password").await.expect(401);
            samples.push(started.elapsed().as_secs_f64() * 1_000.0);
        }
        samples.sort_by(f64::total_cmp);
        samples[2]
    }
    let unknown_ms = median_ms(&app, &unique_email("nobody")).await;
    let wrong_ms = median_ms(&app, &user.email).await;
    assert!(
        unknown_ms > wrong_ms * 0.5 && unknown_ms < wrong_ms * 2.0,
        "unknown e-mail {unknown_ms:.1} ms vs wrong password {wrong_ms:.1} ms"
    );
}

#[tokio::test]
async fn sql_metacharacters_are_data() {
    let app = TestApp::spawn().await;
    let email = format!("o'brien+{}@example.com", std::process::id());
    let name = "Robert'); DROP TABLE identity.users; --";
    let password = "p'ss\"word; SELECT 1 --";
    let registered = register(&app, &email, password, name).await;
    registered.expect(201);
    assert_eq!(registered.json()["user"]["fullName"], name);
    let user = logged_in(&app, &email, password).await;
    app.patch("/users/me")
        .bearer(&user.access)
        .json(&json!({ "fullName": "x' OR '1'='1" }))
        .send()
        .await
        .expect(200);
    login(&app, "' OR '1'='1' --@example.com", "' OR '1'='1").await.expect(401);
    app.post("/auth/verify-email").json(&json!({ "token": "' OR 1=1 --" })).send().await.expect(400);
    app.post("/auth/refresh").json(&json!({ "refreshToken": "'; DELETE FROM identity.sessions; --" })).send().await.expect(401);
    let users: i64 = app.sql().await.query_one("SELECT count(*) FROM identity.users", &[]).await.unwrap().get(0);
    assert_eq!(users, 1);
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let malformed = app.post("/auth/login").body("application/json", b"{\"email\": ".to_vec()).send().await;
    malformed.expect(400);
    assert_eq!(malformed.problem(), "malformed-json");
    let wrong_type = app.post("/auth/login").body("text/plain", b"email=a&password=b".to_vec()).send().await;
    wrong_type.expect(415);
    assert_eq!(wrong_type.problem(), "unsupported-media-type");
    let huge = json!({ "email": "a@example.com", "password": "x".repeat(20_000) });
    let oversized = app.post("/auth/login").json(&huge).send().await;
    oversized.expect(413);
    assert_eq!(oversized.problem(), "payload-too-large");
    let mistyped = app.post("/auth/register").json(&json!({ "email": 42 })).send().await;
    mistyped.expect(422);
    let verified_user: User = verified(&app, "bodies").await;
    app.patch("/users/me").bearer(&verified_user.access).body("application/json", b"[]".to_vec()).send().await.expect(422);
}
