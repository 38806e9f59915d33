//! Property-based fuzzing of the whole API: schemathesis generates requests from openapi.yaml
//! (schema-valid and schema-invalid ones, every documented and some undocumented method) and
//! sends them to the application under this run's runtime, logged in as a verified user. It
//! fails on any server error, any response the document does not describe (status, headers,
//! media type, schema), a 405 without the right `Allow`, a schema-invalid request accepted,
//! and a schema-valid request refused by no rule the document states
//! (`schemathesis/wasmpay_hooks.py`). `schemathesis/schemathesis.toml` sets the seed, the
//! examples per operation and the checks.
//!
//! schemathesis comes from PyPI, pinned with its dependencies in
//! `schemathesis/requirements.txt`. `.ci/run` installs it and sets `WASMPAY_REQUIRE_FUZZ`:
//! there, a missing or other version fails this test. Elsewhere a missing one skips it, saying
//! so. The executable is `$SCHEMATHESIS`, else `schemathesis` on `PATH`.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::Command;
use wasmpay_test_support::paths;

use crate::{
    app::{Runtime, TestApp},
    users::{PASSWORD, verified},
};

/// How to install the pinned schemathesis, for the messages that ask for it.
const INSTALL: &str = "python3 -m venv <dir> && <dir>/bin/pip install -r tests/e2e/schemathesis/requirements.txt, \
                       then SCHEMATHESIS=<dir>/bin/schemathesis (as .ci/run does)";

/// The longest the run may take. It ends by itself well before (about 15 s under
/// wasmpay-host, 30 s under Spin), when every operation had its examples; a run that does not
/// is stopped and fails rather than stalling CI.
const TIME_LIMIT: Duration = Duration::from_secs(90);

fn config_dir() -> PathBuf {
    paths::repo_root().join("tests/e2e/schemathesis")
}

/// The version requirements.txt pins.
fn pinned_version() -> String {
    let requirements = std::fs::read_to_string(config_dir().join("requirements.txt")).expect("requirements.txt");
    requirements
        .lines()
        .find_map(|line| line.strip_prefix("schemathesis=="))
        .expect("requirements.txt pins schemathesis==<version>")
        .trim()
        .to_owned()
}

fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("schemathesis")).find(|p| p.is_file()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_find_the_api_exactly_as_documented() {
    let required = std::env::var_os("WASMPAY_REQUIRE_FUZZ").is_some_and(|v| !v.is_empty());
    let pinned = pinned_version();
    let Some(schemathesis) = executable() else {
        assert!(!required, "WASMPAY_REQUIRE_FUZZ is set but schemathesis {pinned} is not installed: {INSTALL}");
        eprintln!("SKIPPED the fuzz run: schemathesis is not installed ({INSTALL}; WASMPAY_REQUIRE_FUZZ=1 makes this a failure)");
        return;
    };
    let version = Command::new(&schemathesis)
        .arg("--version")
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", schemathesis.display()));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    assert_eq!(
        version,
        format!("schemathesis, version {pinned}"),
        "{} is not the pinned schemathesis: {INSTALL}",
        schemathesis.display()
    );

    // The run fails logins on purpose (wrong current passwords); throttling the fuzz user would
    // turn the rest of the run into 429s.
    let app = TestApp::spawn_with(|config| config.variable("login_max_failures", "1000000")).await;
    let user = verified(&app, "fuzz").await;
    let work = std::env::temp_dir().join(format!("wasmpay-fuzz-{}-{:?}", std::process::id(), Runtime::current()));
    std::fs::create_dir_all(&work).expect("a working directory");
    let mut command = Command::new(&schemathesis);
    command
        .arg("--config-file")
        .arg(config_dir().join("schemathesis.toml"))
        .args(["run", "--no-color", "--url"])
        .arg(app.url(""))
        .arg(paths::repo_root().join("openapi.yaml"))
        .env("WASMPAY_FUZZ_EMAIL", &user.email)
        .env("WASMPAY_FUZZ_PASSWORD", PASSWORD)
        .env("PYTHONPATH", config_dir())
        .current_dir(&work)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let output = tokio::time::timeout(TIME_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the fuzz run under {:?} did not end within {TIME_LIMIT:?}", Runtime::current()))
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&work);
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the fuzz run under {:?} failed ({}):\n{report}",
        Runtime::current(),
        output.status
    );
    let summary = report.lines().skip_while(|line| !line.contains("SUMMARY")).collect::<Vec<_>>().join("\n");
    eprintln!("fuzz run under {:?}: {:.0?}\n{summary}", Runtime::current(), started.elapsed());
}
