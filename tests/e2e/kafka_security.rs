//! The bridge against a secured broker: TLS (and mutual TLS) terminated by stunnel in front
//! of tansu with a CA made for the test, SASL/SCRAM users on tansu, and the settings the
//! bridge refuses before it connects. Whatever fails, no event is lost or marked published.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use wasmpay_test_support::{
    cluster::free_port,
    kafka::{Broker, Options},
    novu::NovuStandIn,
    paths,
    tls::{Pki, Terminator},
};

use crate::{
    app::TestApp,
    bridge::{BridgeConfig, BridgeProcess, NOVU_KEY, eventually, unpublished},
    users::{PASSWORD, register, unique_email},
};

fn scratch(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wasmpay-tls-{}-{tag}-{}", std::process::id(), free_port().unwrap()))
}

fn setting(key: &str, value: impl ToString) -> (String, String) {
    (key.to_owned(), value.to_string())
}

/// Waits until the bridge's log shows `needle` (the bridge may stop: the log stays).
async fn logged(bridge: &BridgeProcess, needle: &str) {
    eventually(Duration::from_secs(40), &format!("{needle:?} in the bridge's log"), || {
        let log = bridge.log();
        async move { log.contains(needle) }
    })
    .await;
}

/// Registers a user and waits for the one verification e-mail it causes.
async fn one_verification_email(app: &TestApp, novu: &NovuStandIn, tag: &str) {
    let email = unique_email(tag);
    register(app, &email, PASSWORD, "Tess Secure").await.expect(201);
    eventually(Duration::from_secs(40), "the verification e-mail", || {
        let sent = novu.effects().iter().any(|t| t.name == "email-verification" && t.to["email"] == email.as_str());
        async move { sent }
    })
    .await;
    eventually(Duration::from_secs(20), "every event published", || async { unpublished(app).await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_over_tls_and_a_broker_the_ca_did_not_sign_gets_none() {
    let dir = scratch("tls");
    let pki = Pki::generate(&dir).unwrap();
    let tls_port = free_port().unwrap();
    let broker = Broker::start_with(Options { advertised_port: Some(tls_port), ..Options::default() }).unwrap();
    let _terminator = Terminator::start(&dir, tls_port, broker.port(), &pki, None).unwrap();
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, broker.brokers(), &novu);

    // Trusting another CA: a clear error, and the event stays in the outbox.
    config.env = vec![setting("KAFKA_SECURITY_PROTOCOL", "ssl"), setting("KAFKA_CA_FILE", pki.other_ca.display())];
    let mut untrusting = config.spawn("run");
    let held_back = unique_email("untrusted");
    register(&app, &held_back, PASSWORD, "Una Trusted").await.expect(201);
    logged(&untrusting, "certificate verify failed").await;
    assert!(unpublished(&app).await >= 1, "an event was marked published without a broker acknowledging it");
    assert!(novu.effects().is_empty());
    untrusting.kill();

    // Trusting the right CA: everything waiting goes out, once.
    config.env = vec![setting("KAFKA_SECURITY_PROTOCOL", "ssl"), setting("KAFKA_CA_FILE", pki.ca.display())];
    let bridge = config.spawn("run");
    one_verification_email(&app, &novu, "tls").await;
    // Published is not yet notified: the held-back event's trigger may come after the new one's.
    let sent_to = |email: &str| novu.effects().iter().filter(|t| t.name == "email-verification" && t.to["email"] == email).count();
    eventually(Duration::from_secs(40), "the held-back verification e-mail", || {
        let sent = sent_to(&held_back) > 0;
        async move { sent }
    })
    .await;
    let sent = novu.effects().into_iter().filter(|t| t.name == "email-verification").count();
    assert_eq!(sent, 2, "the event held back while the CA was wrong, and the new one, once each");
    assert_eq!(sent_to(&held_back), 1, "the held-back event, once");
    assert!(!bridge.log().contains("certificate verify failed"), "{}", bridge.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_over_mutual_tls_works_and_a_wrong_password_or_missing_client_certificate_does_not() {
    let dir = scratch("sasl");
    let pki = Pki::generate(&dir).unwrap();
    let tls_port = free_port().unwrap();
    let password = "relay-password-7c1e";
    let broker = Broker::start_with(Options {
        advertised_port: Some(tls_port),
        scram_users: vec![("wasmpay-bridge".into(), password.into(), "scram512")],
        ..Options::default()
    })
    .unwrap();
    let _terminator = Terminator::start(&dir, tls_port, broker.port(), &pki, Some(&pki.ca)).unwrap();
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut config = BridgeConfig::new(&app, broker.brokers(), &novu);
    let secured = |password: &str, client_certificate: bool| {
        let mut env = vec![
            setting("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            setting("KAFKA_CA_FILE", pki.ca.display()),
            setting("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            setting("KAFKA_SASL_USERNAME", "wasmpay-bridge"),
            setting("KAFKA_SASL_PASSWORD", password),
        ];
        if client_certificate {
            env.push(setting("KAFKA_CERT_FILE", pki.client_cert.display()));
            env.push(setting("KAFKA_KEY_FILE", pki.client_key.display()));
        }
        env
    };

    // A wrong password: refused by the broker, said in the log, never the password itself.
    config.env = secured("not-the-password", true);
    let mut refused = config.spawn("run");
    register(&app, &unique_email("wrong-password"), PASSWORD, "Wren Wrong").await.expect(201);
    logged(&refused, "SASL authentication error").await;
    assert!(unpublished(&app).await >= 1);
    assert!(!refused.log().contains("not-the-password"), "the bridge logged the password");
    refused.kill();

    // No client certificate: the terminator refuses the handshake.
    config.env = secured(password, false);
    let mut anonymous = config.spawn("run");
    eventually(Duration::from_secs(40), "the refused handshake", || {
        let (log, tls) = (anonymous.log(), std::fs::read_to_string(dir.join(format!("stunnel-{tls_port}.log"))).unwrap_or_default());
        async move { log.contains("kafka client error") && tls.contains("peer did not return a certificate") }
    })
    .await;
    assert!(unpublished(&app).await >= 1);
    anonymous.kill();

    // The right password and a certificate: everything goes out.
    config.env = secured(password, true);
    let bridge = config.spawn("run");
    one_verification_email(&app, &novu, "sasl").await;
    // The held-back event may be on another partition than this one, so consumed later.
    let verifications = || novu.effects().iter().filter(|t| t.name == "email-verification").count();
    eventually(Duration::from_secs(20), "the held-back verification e-mail", || {
        let sent = verifications();
        async move { sent >= 2 }
    })
    .await;
    assert_eq!(verifications(), 2);
    assert!(!bridge.log().contains(password), "the bridge logged the password");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bridge relay` with `env`: its exit status and what it printed.
fn refused_settings(app: &TestApp, env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(paths::binary("bridge"))
        .arg("relay")
        .env_clear()
        .env("DATABASE_URL", &app.db.url)
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .env("OPS_LISTEN", format!("127.0.0.1:{}", free_port().unwrap()))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn wrong_kafka_settings_stop_the_bridge_before_it_connects() {
    let app = TestApp::spawn().await;
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")], "KAFKA_SECURITY_PROTOCOL=sasl_ssl needs KAFKA_SASL_MECHANISM"),
        (
            &[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"), ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"), ("KAFKA_SASL_USERNAME", "u")],
            "KAFKA_SECURITY_PROTOCOL=sasl_ssl needs KAFKA_SASL_PASSWORD",
        ),
        (&[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"), ("KAFKA_SASL_MECHANISM", "GSSAPI")], "invalid value 'GSSAPI'"),
        (&[("KAFKA_SASL_PASSWORD", "hunter2-secret")], "KAFKA_SASL_PASSWORD is set but KAFKA_SECURITY_PROTOCOL=plaintext uses no SASL"),
        (&[("KAFKA_SECURITY_PROTOCOL", "ssl"), ("KAFKA_CA_FILE", "/no/such/ca.pem")], "KAFKA_CA_FILE=/no/such/ca.pem cannot be read"),
        (&[("KAFKA_PROPERTIES", "enable.idempotence=false")], "KAFKA_PROPERTIES may not set enable.idempotence"),
        (&[("KAFKA_PROPERTIES", "no.such.property=1")], "No such configuration property: \"no.such.property\""),
    ];
    for (env, expected) in cases {
        let (succeeded, output) = refused_settings(&app, env);
        assert!(!succeeded, "{env:?} was accepted:\n{output}");
        assert!(output.contains(expected), "{env:?}: expected {expected:?} in:\n{output}");
        assert!(!output.contains("hunter2-secret"), "the password was printed:\n{output}");
    }
    assert_eq!(unpublished(&app).await, 0);
}
