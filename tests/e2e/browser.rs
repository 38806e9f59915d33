//! The wallet app in a real browser: the walks in tests/browser (wallet.mjs, holds.mjs)
//! drive Debian's Chromium with Playwright against the stack started here — the components
//! under the current runtime and, for the walk that signs up, the bridge with a real broker
//! and the Novu stand-in, whose verification e-mail this side reads and hands to the
//! browser. Screenshots of every page land in `<target>/browser-artifacts/<runtime>/<walk>/`.
//!
//! Chromium is found as `$CHROMIUM` or `/usr/bin/chromium`. Where it is absent the test says
//! so and passes, unless `WASMPAY_REQUIRE_BROWSER=1` (CI sets it) makes that a failure.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
    sync::Mutex,
};
use wasmpay_test_support::{kafka, novu::NovuStandIn, paths};

use crate::{
    app::{Runtime, TestApp},
    bridge::{BridgeConfig, NOVU_KEY},
    money::{assert_books_balance, count},
    users::{self, PASSWORD, User},
};

/// A whole walk through the app may take this long before it counts as hung.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

/// One walk at a time: each runs a whole stack and a browser, and two at once on a small
/// machine make every wait in them a race with the other.
static ONE_WALK_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn chromium() -> Option<PathBuf> {
    let path = paths::chromium();
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("WASMPAY_REQUIRE_BROWSER").is_none(),
        "WASMPAY_REQUIRE_BROWSER is set but Chromium is not at {} (install Debian's chromium, or set CHROMIUM)",
        path.display()
    );
    eprintln!("SKIPPED: the browser tests need Chromium ({} is missing; install Debian's chromium, or set CHROMIUM)", path.display());
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_signs_up_verifies_pays_and_refunds_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let _alone = ONE_WALK_AT_A_TIME.lock().await;
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut bridge_config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    bridge_config.verification_url_template = format!("{}/app/verify-email?token={{token}}", app.url(""));
    let bridge = bridge_config.spawn("run");

    let walked = walk(&app, &chromium, "wallet", &[], async |question| {
        let email = question
            .strip_prefix("verification-link ")
            .unwrap_or_else(|| panic!("the wallet walk asked {question:?}"));
        verification_link(&novu, email).await
    })
    .await;
    let artifacts = walked.unwrap_or_else(|failure| panic!("{failure}\nbridge log:\n{}", bridge.log()));

    // What the browser did, as the books record it: the double-clicked payment once, and
    // every refusal without a trace.
    let once = count(&app, "SELECT count(*) FROM ledger.transfers WHERE description = 'Once'").await;
    assert_eq!(once, 1, "a double-clicked Send made {once} transfers");
    let transfers = count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await;
    assert_eq!(transfers, 2, "the refused transfer left no posting");
    assert_books_balance(&app).await;
    let shots = std::fs::read_dir(&artifacts).map(|d| d.count()).unwrap_or(0);
    assert!(shots >= 15, "{shots} screenshots in {}", artifacts.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_holds_money_and_the_payee_captures_or_releases_it_in_a_real_browser() {
    let Some(chromium) = chromium() else { return };
    let _alone = ONE_WALK_AT_A_TIME.lock().await;
    let app = TestApp::spawn().await;
    let alice = users::verified(&app, "alice").await;
    let bob = users::verified(&app, "bob").await;
    let (alice_name, bob_name) = (full_name(&app, &alice).await, full_name(&app, &bob).await);
    let env = [
        ("PASSWORD", PASSWORD),
        ("ALICE_EMAIL", alice.email.as_str()),
        ("ALICE_NAME", alice_name.as_str()),
        ("BOB_EMAIL", bob.email.as_str()),
        ("BOB_NAME", bob_name.as_str()),
    ];

    let walked = walk(&app, &chromium, "holds", &env, async |question: &str| -> String {
        panic!("the holds walk asked {question:?}")
    }).await;
    let artifacts = walked.unwrap_or_else(|failure| panic!("{failure}"));

    // The holds as the ledger keeps them: the expiry each asked for, the partial capture,
    // and who voided which.
    let rows = app
        .sql()
        .await
        .query(
            "SELECT description, status, voided_by, captured_amount::text,
                    extract(epoch FROM expires_at - created_at)::int8
             FROM ledger.holds ORDER BY created_at",
            &[],
        )
        .await
        .unwrap();
    let holds: Vec<(String, String, Option<String>, Option<String>, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    let hold = |description: &str, status: &str, voided_by: Option<&str>, captured: Option<&str>, expiry_secs: i64| {
        (description.to_owned(), status.to_owned(), voided_by.map(str::to_owned), captured.map(str::to_owned), expiry_secs)
    };
    assert_eq!(
        holds,
        [
            hold("Bike deposit", "captured", None, Some("45.0000"), 86_400),
            // "The platform's default" sends no expiry: hold_default_expiry_secs applies.
            hold("Concert tickets", "voided", Some("payer"), None, 604_800),
            hold("Spare key", "voided", Some("payee"), None, 3_600),
        ]
    );
    let transfers = count(&app, "SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'").await;
    assert_eq!(transfers, 1, "the capture is the only transfer: refusals and voids move nothing");
    assert_books_balance(&app).await;
    let shots = std::fs::read_dir(&artifacts).map(|d| d.count()).unwrap_or(0);
    assert!(shots >= 9, "{shots} screenshots in {}", artifacts.display());
}

/// Runs tests/browser/`<name>`.mjs in Chromium against `app`, with `env` added to its
/// environment. A line it prints as `wasmpay-test: <question>` gets `answer(question)` as a
/// line on its stdin; every other line is echoed. Gives the directory of its screenshots,
/// or why it failed.
async fn walk(
    app: &TestApp,
    chromium: &std::path::Path,
    name: &str,
    env: &[(&str, &str)],
    mut answer: impl AsyncFnMut(&str) -> String,
) -> Result<PathBuf, String> {
    let script = paths::repo_root().join(format!("tests/browser/{name}.mjs"));
    assert!(
        paths::repo_root().join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser: run the tests with `cargo xtask test` (its build runs npm ci)"
    );
    let runtime = match Runtime::current() {
        Runtime::Host => "host",
        Runtime::Spin => "spin",
    };
    let artifacts = paths::target_dir().join("browser-artifacts").join(runtime).join(name);
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut browser = Command::new("node")
        .arg(&script)
        .env("BASE_URL", app.url(""))
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", chromium)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js is needed for the web app's build too)");
    let mut to_browser = browser.stdin.take().unwrap();
    let mut from_browser = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut errors = BufReader::new(browser.stderr.take().unwrap()).lines();
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(line)) = errors.next_line().await {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let conversation = async {
        while let Some(line) = from_browser.next_line().await.unwrap() {
            match line.strip_prefix("wasmpay-test: ") {
                Some(question) => {
                    let reply = answer(question).await;
                    to_browser.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
                }
                None => eprintln!("browser: {line}"),
            }
        }
        browser.wait().await.unwrap()
    };
    let status = tokio::time::timeout(SUITE_LIMIT, conversation)
        .await
        .unwrap_or_else(|_| panic!("the {name} walk did not finish within {SUITE_LIMIT:?}"));
    let stderr = stderr.await.unwrap();
    if status.success() {
        Ok(artifacts)
    } else {
        Err(format!(
            "the {name} walk failed under {runtime:?} (screenshots in {}):\n{stderr}",
            artifacts.display()
        ))
    }
}

/// The user's full name as the app shows it.
async fn full_name(app: &TestApp, user: &User) -> String {
    let reply = app.get("/users/me").bearer(&user.access).send().await;
    reply.expect(200);
    reply.json()["fullName"].as_str().expect("a full name").to_owned()
}

/// The link of the verification e-mail the Novu stand-in received for `email`.
async fn verification_link(novu: &NovuStandIn, email: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = novu
            .effects()
            .into_iter()
            .find(|t| t.name == "email-verification" && t.to["email"] == email);
        if let Some(trigger) = sent {
            return trigger.payload["verificationLink"].as_str().expect("a verification link").to_owned();
        }
        assert!(Instant::now() < deadline, "no verification e-mail for {email} within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
