//! `cargo xtask <command>`:
//!
//! - `build`: the web app's front end (`npm ci` when its lockfile changed, then
//!   `components/web/app/build.mjs`; and the browser tests' npm packages), the four
//!   components and the Rust policy plugins for wasm32-wasip2 (release), the JavaScript
//!   policy plugin (componentize-js), and every native target of
//!   the workspace (the bridge, wasmpay-host and the tests) in one cargo invocation, so
//!   that `cargo test` finds them built: building the binaries alone would resolve
//!   dependency features differently and compile wasmtime a second time.
//! - `test [args…]`: `build`, then the whole test suite (`cargo test`, args passed on) with
//!   the end-to-end tests under wasmpay-host, then the end-to-end tests again under real
//!   Spin (`spin up`) when the Spin CLI is found ($SPIN, `PATH`, or `../shared/bin/spin`).
//! - `up`: the platform on this machine: a local PostgreSQL in `.wasmpay/` (unless
//!   `DATABASE_URL` is set; `DATABASE_CA_FILE` names the CA of a server the system does not
//!   trust), migrations, the components under `spin up` when Spin is
//!   installed, else under the wasmpay host, and — when `tansu` is installed (or
//!   `KAFKA_BROKERS` is set) — a Kafka-protocol broker and the bridge, printing the
//!   notifications it would send to Novu. Ctrl-C stops everything it started.
//! - `schema`: `migrations/schema.sql`, the schema the migrations build as pg_dump prints
//!   it (`wasmpay_test_support::schema`), from a throwaway PostgreSQL migrated by the bridge.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, bail, ensure};
use wasmpay_dburl::DatabaseUrl;
use wasmpay_test_support::{
    cluster::{self, LocalCluster},
    paths::{self, COMPONENTS, RUST_POLICIES, TEST_POLICIES},
    schema, spin,
};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let outcome = match command.as_str() {
        "build" => build(),
        "test" => build().and_then(|()| test(&rest)),
        "up" => up(),
        "schema" => write_schema(),
        _ => {
            eprintln!("usage: cargo xtask <build | test [cargo test args…] | up | schema>");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The checkout `cargo xtask` was run in. `cargo run` names it at run time; the path
/// compiled in is only a fallback, since clones sharing one `CARGO_TARGET_DIR` share this
/// binary too.
fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest_dir.parent().expect("xtask/ is in the repository").to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(repo_root());
    // `cargo run` describes the xtask package to this process; build scripts that watch
    // those variables (ring's) would otherwise rerun, and rebuild everything above them,
    // each time cargo runs directly instead of through xtask.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let describes_xtask = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(&*name, "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE");
        if describes_xtask {
            command.env_remove(&*name);
        }
    }
    command
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?} failed ({status})");
    Ok(())
}

fn step(message: &str) {
    eprintln!("\x1b[1m==> {message}\x1b[0m");
}

/// The directory cargo builds into (honours `CARGO_TARGET_DIR`).
fn target_dir() -> anyhow::Result<PathBuf> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(metadata["target_directory"].as_str().context("no target_directory")?.into())
}

fn build() -> anyhow::Result<()> {
    build_web_app()?;
    step("building the components (wasm32-wasip2, release)");
    // Two invocations: built with the components, the plugins' dependencies would get the
    // standard library the components enable (cargo unifies features per invocation), and
    // with it imports a plugin must not have.
    let [misbehaving, nosy] = TEST_POLICIES;
    for packages in [[&COMPONENTS[..], &[nosy]].concat(), [&RUST_POLICIES[..], &[misbehaving]].concat()] {
        let mut wasm = cargo();
        wasm.args(["build", "--target", "wasm32-wasip2", "--release"]);
        for package in packages {
            wasm.args(["-p", package]);
        }
        run(&mut wasm)?;
    }
    build_js_policy()?;
    step("building the native binaries and the tests");
    run(cargo().args(["build", "--workspace", "--bins", "--tests"]))
}

/// The front end the web component embeds (npm packages, then build.mjs, which rewrites
/// only files that changed, so the component is recompiled only when the front end did),
/// and the browser tests' Playwright.
fn build_web_app() -> anyhow::Result<()> {
    let root = repo_root();
    let app = root.join("components/web/app");
    npm_ci(&app)?;
    npm_ci(&root.join("tests/browser"))?;
    step("building the web app (TypeScript checked, bundled by esbuild)");
    run(Command::new("node").arg("build.mjs").current_dir(&app))
}

/// The JavaScript policy plugin (policies/blocklist-js), componentized by
/// componentize-js into `<target>/policies/blocklist-js.wasm`; its build.mjs skips the
/// work when nothing changed.
fn build_js_policy() -> anyhow::Result<()> {
    let plugin = repo_root().join("policies/blocklist-js");
    npm_ci(&plugin)?;
    let output = target_dir()?.join("policies/blocklist-js.wasm");
    step("building the JavaScript policy plugin (componentize-js)");
    run(Command::new("node").arg("build.mjs").arg(&output).current_dir(&plugin))
}

/// `npm ci` in `dir`, only when its package-lock.json is newer than the installed tree. No
/// package's install script runs: none of ours needs one (esbuild and tsc come as
/// per-platform binary packages), and the build runs no registry code it does not call.
fn npm_ci(dir: &Path) -> anyhow::Result<()> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(&dir.join("node_modules/.package-lock.json"));
    if installed.is_some() && installed >= modified(&dir.join("package-lock.json")) {
        return Ok(());
    }
    step(&format!("installing npm packages in {} (npm ci)", dir.display()));
    run(Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir))
    .context("Node.js and npm are needed to build the web app")
}

fn test(args: &[String]) -> anyhow::Result<()> {
    // The browser tests pass saying SKIPPED without Chromium; cargo test shows that only on
    // failure, so say it here.
    let chromium = wasmpay_test_support::paths::chromium();
    if !chromium.is_file() && std::env::var_os("WASMPAY_REQUIRE_BROWSER").is_none() {
        eprintln!(
            "\x1b[1mChromium not found ({}; install Debian's chromium or set CHROMIUM): the browser tests will be SKIPPED\x1b[0m",
            chromium.display()
        );
    }
    step("running the test suite (end-to-end tests under wasmpay-host, on PostgreSQL)");
    run(cargo().arg("test").args(with_test_args(args, &["--skip", "citus::"])).env("WASMPAY_E2E_RUNTIME", "host"))?;
    let Some(spin) = spin::binary() else {
        eprintln!(
            "\x1b[1mSpin CLI not found ($SPIN, PATH, ../shared/bin/spin): the end-to-end tests ran under wasmpay-host only\x1b[0m"
        );
        return Ok(());
    };
    step(&format!("running the end-to-end tests under real Spin ({}), on PostgreSQL", spin.display()));
    // The whole workspace selected, as in the first pass, so features resolve the same
    // way and nothing is rebuilt; only the end-to-end test target runs.
    run(cargo()
        .args(["test", "--workspace", "--test", "e2e"])
        .args(with_test_args(args, &["--skip", "citus::"]))
        .env("WASMPAY_E2E_RUNTIME", "spin")
        .env("SPIN", &spin))?;
    if !wasmpay_test_support::citus::installed() {
        anyhow::ensure!(
            std::env::var_os("WASMPAY_REQUIRE_CITUS").is_none(),
            "Citus is not installed and WASMPAY_REQUIRE_CITUS is set: the Citus pass cannot run"
        );
        eprintln!(
            "\x1b[1mCitus not installed in {} (.ci/run installs it from ../shared/citus): the Citus pass did not run\x1b[0m",
            wasmpay_test_support::cluster::pg_bin_dir().map(|dir| dir.display().to_string()).unwrap_or_default()
        );
        return Ok(());
    }
    step("running the end-to-end tests under real Spin on a three-node Citus cluster (identity, wallets, transfers, holds, the storm, policies, the bridge, rebalancing)");
    run(cargo()
        .args(["test", "--workspace", "--test", "e2e"])
        .args(with_test_args(args, CITUS_PASS))
        .env("WASMPAY_E2E_RUNTIME", "spin")
        .env("WASMPAY_E2E_DATABASE", "citus")
        .env("SPIN", spin))
}

/// What the Citus pass runs: the tests of what Citus changes (every statement of the
/// components and the ledger, the relay) and the Citus tests themselves; not the tests of
/// plain PostgreSQL's relay wake-up, which Citus has no use for.
const CITUS_PASS: &[&str] = &[
    "identity::", "users::", "sessions::", "accounts::", "transfers::", "holds::", "concurrency::", "policies::",
    "bridge::", "citus::",
    "--skip", "bridge::an_idle_relay_is_woken_by_the_next_commit_and_misses_none_while_it_falls_asleep",
];

/// `args` (cargo's, then the test binaries' after `--`) with `extra` for the test binaries.
/// Filters given on the command line replace a pass's own.
fn with_test_args(args: &[String], extra: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.to_vec();
    let user_filters = all.iter().position(|a| a == "--").is_some_and(|i| all[i + 1..].iter().any(|a| !a.starts_with('-')));
    if !all.iter().any(|a| a == "--") {
        all.push("--".into());
    }
    for arg in extra {
        // A pass's own filters give way to the caller's; its skips stay.
        let is_filter = !arg.starts_with("--") && !all.last().is_some_and(|last| last == "--skip");
        if is_filter && user_filters {
            continue;
        }
        all.push((*arg).to_owned());
    }
    all
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Port of the local PostgreSQL started by `up`.
fn local_pg_port() -> anyhow::Result<u16> {
    match std::env::var("WASMPAY_PG_PORT") {
        Ok(port) => port.parse().context("WASMPAY_PG_PORT must be a port number"),
        Err(_) => Ok(54329),
    }
}

fn up() -> anyhow::Result<()> {
    let root = repo_root();
    let listen = std::env::var("WASMPAY_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    // Ctrl-C reaches every process of the terminal's group; this process waits for its
    // children to stop instead of dying first.
    outlive_interrupts();

    let (database_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            step("starting PostgreSQL in .wasmpay/postgres");
            let cluster = LocalCluster::start(&root.join(".wasmpay/postgres"), local_pg_port()?, &[])?;
            create_database(&cluster.url("postgres"), "wasmpay")?;
            (cluster.url("wasmpay"), Some(cluster))
        }
    };
    let outcome = serve(&root, &database_url, &listen);
    if let Some(cluster) = cluster {
        step("stopping PostgreSQL");
        cluster.stop();
    }
    outcome
}

fn serve(root: &Path, database_url: &str, listen: &str) -> anyhow::Result<()> {
    let db_host = db_host(database_url)?;
    let spin_cli = spin::binary();
    if let Some(spin_cli) = &spin_cli {
        step("building with spin build");
        run(Command::new(spin_cli).arg("build").current_dir(root).env_remove("CARGO_TARGET_DIR"))?;
        run(cargo().args(["build", "-p", "bridge"]))?;
    } else {
        build()?;
    }
    let target = target_dir()?;
    migrate(&target, database_url)?;

    let secrets = local_secrets(root)?;
    let _events = match events(root, &target, database_url, &secrets)? {
        Some(events) => Some(events),
        None => {
            eprintln!("tansu is not installed and KAFKA_BROKERS is not set: running without the broker and the bridge");
            None
        }
    };

    let mut server = if let Some(spin_cli) = &spin_cli {
        // What wasmpay-host refuses to load (a policy plugin importing a capability), Spin
        // would run with every capability call denied: refuse it here instead.
        wasmpay_host::check_dependencies(&wasmpay_host::HostConfig::new(root.join("spin.toml")))?;
        step(&format!("serving with spin up on http://{listen}"));
        let mut command = Command::new(spin_cli);
        command.args(["up", "--listen", listen, "--runtime-config-file", "runtime-config.toml"]);
        command
    } else {
        step(&format!("Spin is not installed: serving with the wasmpay host on http://{listen}"));
        let mut command = Command::new(target.join("debug/wasmpay-host"));
        command.args(["--listen", listen, "--runtime-config-file", "runtime-config.toml"]);
        for component in COMPONENTS {
            let wasm = target.join(format!("wasm32-wasip2/release/{component}.wasm"));
            command.arg("--component-source").arg(format!("{component}={}", wasm.display()));
        }
        for ((component, key), path) in paths::policy_slot_sources() {
            command.arg("--dependency-source").arg(format!("{component}:{key}={}", path.display()));
        }
        command
    };
    // wasmpay's instance reuse and request timeout; wasmpay-host takes Spin's flags.
    server.args(spin::instance_args(&spin::instance_flags()));
    for (name, value) in &secrets {
        server.env(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()), value);
    }
    // The database's CA, for a server the system does not trust: the bridge reads the file
    // (it inherits DATABASE_CA_FILE), the components get its contents as db_ca_cert.
    if let Some(path) = std::env::var_os("DATABASE_CA_FILE") {
        let pem = std::fs::read_to_string(&path).with_context(|| format!("cannot read DATABASE_CA_FILE {}", path.display()))?;
        server.env("SPIN_VARIABLE_DB_CA_CERT", pem);
    }
    let mut child = server
        .current_dir(root)
        .env("SPIN_VARIABLE_DB_URL", database_url)
        .env("SPIN_VARIABLE_DB_HOST", &db_host)
        .spawn()
        .context("cannot start the server")?;
    // Announce the URL once it answers (or report that the server gave up).
    while std::net::TcpStream::connect(listen).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited with {status} before listening");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("\nwasmpay is up at http://{listen}  (the wallet: http://{listen}/app/, the API reference: http://{listen}/docs/)  Ctrl-C stops it\n");
    let status = child.wait()?;
    if !status.success() && status.code().is_some() {
        bail!("the server exited with {status}");
    }
    Ok(())
}

/// A child process killed when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The broker (tansu, in memory, unless `KAFKA_BROKERS` names one) and `bridge run`, whose
/// notifications are printed (no `NOVU_API_KEY`) unless the environment says otherwise.
fn events(root: &Path, target: &Path, database_url: &str, secrets: &[(String, String)]) -> anyhow::Result<Option<(Option<Running>, Running)>> {
    let (brokers, broker) = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => (brokers, None),
        _ if on_path("tansu") => {
            step("starting tansu (Kafka-protocol broker, in memory) on 127.0.0.1:9092");
            let child = Command::new("tansu")
                .args([
                    "broker",
                    "--listener-url", "tcp://127.0.0.1:9092",
                    "--advertised-listener-url", "tcp://127.0.0.1:9092",
                    "--storage-engine", "memory://tansu/",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(root.join(".wasmpay/tansu.log"))?)
                .spawn()
                .context("cannot start tansu")?;
            ("127.0.0.1:9092".to_owned(), Some(Running(child)))
        }
        _ => return Ok(None),
    };
    step("starting the bridge (relay + notifier; notifications are printed)");
    // The key the components seal with: the environment's, else the generated one.
    let variable = |name: &str| {
        std::env::var(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()))
            .ok()
            .or_else(|| secrets.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
    };
    let key_id = variable("event_encryption_key_id").unwrap_or_else(|| "k1".to_owned());
    let key = variable("event_encryption_key").unwrap_or_default();
    let bridge = Command::new(target.join("debug/bridge"))
        .arg("run")
        .env("DATABASE_URL", database_url)
        .env("KAFKA_BROKERS", &brokers)
        .env("EVENT_KEYS", format!("{key_id}={key}"))
        .spawn()
        .context("cannot start the bridge")?;
    Ok(Some((broker, Running(bridge))))
}

/// The secrets a local run needs, generated once into `.wasmpay/secrets` (mode 0600) unless
/// the environment already provides them.
fn local_secrets(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    use std::{io::Read, os::unix::fs::OpenOptionsExt};

    use base64::Engine;
    let path = root.join(".wasmpay/secrets");
    if !path.exists() {
        let mut random = [0u8; 64];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let contents = format!(
            "jwt_secret={}\nevent_encryption_key={}\n",
            hex(&random[..32]),
            base64::engine::general_purpose::STANDARD.encode(&random[32..])
        );
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, contents.as_bytes())?;
    }
    Ok(std::fs::read_to_string(&path)?
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| std::env::var(format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())).is_err())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// `host:port` of a connection string, as `allowed_outbound_hosts` needs it. A string the
/// components could not use (a plaintext fallback, or fewer checks than Spin makes) stops
/// `up` before anything starts.
fn db_host(database_url: &str) -> anyhow::Result<String> {
    let url = DatabaseUrl::parse(database_url).context("DATABASE_URL")?;
    let spin_address = url.spin_address().context("DATABASE_URL (the components' db_url)")?;
    let config: tokio_postgres::Config = spin_address.parse().context("DATABASE_URL is not a connection string")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("DATABASE_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

/// Applies migrations/ with the bridge this checkout built.
fn migrate(target: &Path, database_url: &str) -> anyhow::Result<()> {
    step("migrating the database (bridge migrate)");
    run(Command::new(target.join("debug/bridge"))
        .arg("migrate")
        .env("DATABASE_URL", database_url))
}

/// Writes the schema snapshot. Its database is always a throwaway cluster of the server
/// binaries pg_dump comes with, never `DATABASE_URL`: the snapshot must not depend on
/// which server a developer points at.
fn write_schema() -> anyhow::Result<()> {
    let root = repo_root();
    step("building the bridge");
    run(cargo().args(["build", "-p", "bridge"]))?;
    let target = target_dir()?;
    let dir = std::env::temp_dir().join(format!("wasmpay-schema-{}", std::process::id()));
    step(&format!(
        "starting a throwaway PostgreSQL in {}",
        dir.display()
    ));
    let cluster = LocalCluster::start(&dir, cluster::free_port()?, &["fsync=off"])?;
    let dumped = create_database(&cluster.url("postgres"), "wasmpay")
        .and_then(|()| migrate(&target, &cluster.url("wasmpay")))
        .and_then(|()| {
            step("dumping the schema (pg_dump --schema-only)");
            schema::dump(&cluster.url("wasmpay"))
        });
    step("stopping PostgreSQL");
    cluster.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let dumped = dumped?;

    let path = root.join(schema::SNAPSHOT);
    // Rewritten only when it changed: the bridge rebuilds when anything in migrations/ does.
    if std::fs::read_to_string(&path).is_ok_and(|current| current == dumped) {
        eprintln!("{} is up to date", schema::SNAPSHOT);
        return Ok(());
    }
    std::fs::write(&path, &dumped).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {} ({} lines)",
        schema::SNAPSHOT,
        dumped.lines().count()
    );
    Ok(())
}

fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = wasmpay_test_support::postgres::connect(admin_url).await?;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
        }
        anyhow::Ok(())
    })
}

/// Survives Ctrl-C so the children can be waited for. A handler (not SIG_IGN, which
/// children would inherit) is reset to the default by exec, so every child still stops.
fn outlive_interrupts() {
    extern "C" fn noted(_: libc::c_int) {}
    // SAFETY: the handler is async-signal-safe (it does nothing).
    unsafe { libc::signal(libc::SIGINT, noted as *const () as libc::sighandler_t) };
}
