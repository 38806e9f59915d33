//! Postgres over TLS with the operator's own CA, under either runtime: a cluster that
//! accepts TCP connections over TLS only, with a certificate signed by a CA made for the
//! test. With that CA (`db_ca_cert` for the components, `DATABASE_CA_FILE` for the bridge)
//! everything works; with another CA, or none, or plaintext, or an `sslmode` that could fall
//! back to plaintext or check less than asked, nothing connects, the error says why, and
//! nothing changes.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use wasmpay_host::HostConfig;
use wasmpay_test_support::{
    cluster::{LocalCluster, free_port},
    paths,
    postgres::{self, Database},
    tls::Pki,
};

use crate::{
    app::{Server, TestApp},
    money::{assert_books_balance, balance, funded_wallet, transfer, wallet},
    users::verified,
};

/// A TLS-only cluster with a migrated database, and the CA that signed its certificate.
struct TlsDatabase {
    cluster: LocalCluster,
    pki: Pki,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const DATABASE: &str = "wasmpay";

impl TlsDatabase {
    async fn start(tag: &str) -> Self {
        let dir = TempDir(std::env::temp_dir().join(format!("wasmpay-tls-db-{}-{tag}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        let pki = Pki::generate(&dir.0.join("pki")).expect("a test CA");
        let cluster = LocalCluster::start_tls_only(&dir.0.join("postgres"), free_port().unwrap(), &pki.server_cert, &pki.server_key)
            .expect("a TLS-only cluster");
        postgres::connect(&cluster.socket_url("postgres"))
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .unwrap();
        let database = Self { cluster, pki, _dir: dir };
        let migrated = database.bridge_migrate(&database.url("verify-full"), Some(&database.pki.ca));
        assert!(migrated.status.success(), "bridge migrate over TLS with the CA: {}", String::from_utf8_lossy(&migrated.stderr));
        database
    }

    /// The connection string the components and the bridge get.
    fn url(&self, sslmode: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}?sslmode={sslmode}", self.cluster.port())
    }

    fn bridge_migrate(&self, url: &str, ca_file: Option<&Path>) -> std::process::Output {
        let mut bridge = Command::new(paths::binary("bridge"));
        bridge.arg("migrate").env("DATABASE_URL", url).env_remove("DATABASE_CA_FILE");
        if let Some(ca_file) = ca_file {
            bridge.env("DATABASE_CA_FILE", ca_file);
        }
        bridge.output().expect("bridge runs")
    }

    /// The application on this database, its components given `url` and `ca`; the test's own
    /// connections go through the cluster's socket.
    async fn serve(&self, url: &str, ca: Option<&Path>) -> TestApp {
        let db = Database {
            name: DATABASE.to_owned(),
            url: self.cluster.socket_url(DATABASE),
        };
        let mut config: HostConfig = TestApp::config(&db)
            .variable("db_url", url)
            .variable("db_host", format!("127.0.0.1:{}", self.cluster.port()));
        if let Some(ca) = ca {
            config = config.variable("db_ca_cert", std::fs::read_to_string(ca).unwrap());
        }
        let server = Server::start(config).await.expect("the application starts");
        TestApp::serving(db, server)
    }

    async fn users(&self) -> i64 {
        postgres::connect(&self.cluster.socket_url(DATABASE))
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM identity.users", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_and_bridge_work_over_verified_tls_with_the_operators_ca() {
    let database = TlsDatabase::start("works").await;
    let plaintext = postgres::connect(&database.url("disable")).await;
    assert!(plaintext.is_err(), "the cluster refuses plaintext TCP connections");

    let app = database.serve(&database.url("verify-full"), Some(&database.pki.ca)).await;
    app.get("/auth/health").send().await.expect(200);
    let (alice, bob) = (verified(&app, "tls-alice").await, verified(&app, "tls-bob").await);
    let from = funded_wallet(&app, &alice, "USD", "50.00").await;
    let to = wallet(&app, &bob, "USD").await;
    transfer(&app, &alice, &serde_json::json!({"fromAccountId": from, "toAccountId": to, "amount": "12.50", "currency": "USD"}))
        .await
        .expect(201);
    assert_eq!(balance(&app, &bob, &to).await, "12.50");
    assert_books_balance(&app).await;

    // A connection string without sslmode asks for the same: TLS, certificate and name checked.
    let bare = format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", database.cluster.port());
    let migrated = database.bridge_migrate(&bare, Some(&database.pki.ca));
    assert!(migrated.status.success(), "{}", stderr(&migrated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_no_trusted_ca_signed_fails_clearly_and_changes_nothing() {
    let database = TlsDatabase::start("wrong-ca").await;
    let app = database.serve(&database.url("verify-full"), Some(&database.pki.other_ca)).await;
    let health = app.get("/auth/health").send().await;
    health.expect(503);
    assert_eq!(health.problem(), "unavailable");
    let register = app
        .post("/auth/register")
        .json(&serde_json::json!({"email": "mallory@example.com", "password": "correct horse battery",
            "confirmPassword": "correct horse battery", "fullName": "Mallory"}))
        .send()
        .await;
    register.expect(503);
    assert_eq!(database.users().await, 0, "nothing was written");
    if let Server::Spin(spin) = &app.server {
        let log = spin.output();
        assert!(log.contains("check db_url, db_host and db_ca_cert"), "the component's log names the settings: {log}");
    }

    let wrong_ca = database.bridge_migrate(&database.url("verify-full"), Some(&database.pki.other_ca));
    assert!(!wrong_ca.status.success());
    assert!(stderr(&wrong_ca).contains("DATABASE_CA_FILE"), "the bridge names the setting to fix: {}", stderr(&wrong_ca));
    let system_roots = database.bridge_migrate(&database.url("verify-full"), None);
    assert!(!system_roots.status.success());
    assert!(stderr(&system_roots).contains("set DATABASE_CA_FILE"), "{}", stderr(&system_roots));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_modes_that_check_less_than_asked_never_connect() {
    let database = TlsDatabase::start("modes").await;
    // Plaintext to a TLS-only server: refused by the server.
    let plaintext = database.serve(&database.url("disable"), None).await;
    plaintext.get("/auth/health").send().await.expect(503);
    // prefer may fall back to plaintext; require would check less than Spin's client does:
    // the components refuse both, for every request, before connecting.
    for mode in ["prefer", "require"] {
        let app = database.serve(&database.url(mode), Some(&database.pki.ca)).await;
        let health = app.get("/auth/health").send().await;
        health.expect(503);
        assert_eq!(health.problem(), "unavailable");
    }
    assert_eq!(database.users().await, 0);

    // The bridge refuses a fallback mode at start-up, naming the setting; it honours require
    // (TLS, the certificate not checked) as libpq does.
    let prefer = database.bridge_migrate(&database.url("prefer"), Some(&database.pki.ca));
    assert!(!prefer.status.success());
    assert!(stderr(&prefer).contains("DATABASE_URL") && stderr(&prefer).contains("sslmode=prefer"), "{}", stderr(&prefer));
    let require = database.bridge_migrate(&database.url("require"), None);
    assert!(require.status.success(), "{}", stderr(&require));
    let verify_ca = database.bridge_migrate(&database.url("verify-ca"), Some(&database.pki.ca));
    assert!(verify_ca.status.success(), "{}", stderr(&verify_ca));
}
