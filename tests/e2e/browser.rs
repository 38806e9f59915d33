//! The wallet app in a real browser: tests/browser/wallet.mjs drives Debian's Chromium with
//! Playwright against the full stack started here — the components under the current
//! runtime, the bridge with a real broker, and the Novu stand-in, whose verification e-mail
//! this side reads and hands to the browser. Screenshots of every page land in
//! `<target>/browser-artifacts/<runtime>/`.
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
};
use wasmpay_test_support::{kafka, novu::NovuStandIn, paths};

use crate::{
    app::{Runtime, TestApp},
    bridge::{BridgeConfig, NOVU_KEY},
    money::{assert_books_balance, count},
};

/// The whole walk through the app may take this long before it counts as hung.
const SUITE_LIMIT: Duration = Duration::from_secs(300);

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
    let script = paths::repo_root().join("tests/browser/wallet.mjs");
    assert!(
        paths::repo_root().join("tests/browser/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser: run the tests with `cargo xtask test` (its build runs npm ci)"
    );
    let app = TestApp::spawn().await;
    let novu = NovuStandIn::start(NOVU_KEY).await.unwrap();
    let mut bridge_config = BridgeConfig::new(&app, kafka::shared().brokers(), &novu);
    bridge_config.verification_url_template = format!("{}/app/verify-email?token={{token}}", app.url(""));
    let bridge = bridge_config.spawn("run");

    let runtime = match Runtime::current() {
        Runtime::Host => "host",
        Runtime::Spin => "spin",
    };
    let artifacts = paths::target_dir().join("browser-artifacts").join(runtime);
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut browser = Command::new("node")
        .arg(&script)
        .env("BASE_URL", app.url(""))
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
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

    let walk = async {
        while let Some(line) = from_browser.next_line().await.unwrap() {
            match line.strip_prefix("wasmpay-test: verification-link ") {
                Some(email) => {
                    let link = verification_link(&novu, email).await;
                    to_browser.write_all(format!("{link}\n").as_bytes()).await.unwrap();
                }
                None => eprintln!("browser: {line}"),
            }
        }
        browser.wait().await.unwrap()
    };
    let status = tokio::time::timeout(SUITE_LIMIT, walk)
        .await
        .unwrap_or_else(|_| panic!("the browser suite did not finish within {SUITE_LIMIT:?}"));
    let stderr = stderr.await.unwrap();
    assert!(
        status.success(),
        "the browser suite failed under {runtime:?} (screenshots in {}):\n{stderr}\nbridge log:\n{}",
        artifacts.display(),
        bridge.log()
    );

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
