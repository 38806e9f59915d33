//! The Spin CLI serving the application (`spin up`) as a child process: the runtime users
//! run, for the end-to-end suite and the benchmarks. The child listens on a free port of
//! 127.0.0.1, keeps its state and logs in a directory of its own, and dies with this
//! process (parent-death signal).

use std::{
    collections::BTreeMap,
    fs,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{cluster::free_port, paths, process::Supervised};

/// How long `spin up` may take to load the application and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts when the free port was taken by someone else before Spin bound it.
const MAX_START_ATTEMPTS: usize = 3;

/// The Spin CLI: `$SPIN` if set, else `spin` on `PATH`, else the build kept beside the
/// repository for tests (`../shared/bin/spin`).
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SPIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("spin")).find(|p| p.is_file()));
    on_path.or_else(|| Some(paths::repo_root().join("../shared/bin/spin")).filter(|p| p.is_file()))
}

/// How wasmpay runs `spin up` (and `wasmpay-host`, which takes the same flags): how its
/// WASIp3 instances are reused and how long a request may run. BENCHMARKS.md ("Instance
/// reuse") has the measurements behind the values; `cargo xtask up`, the tests, the
/// benchmarks and `deploy/` use exactly these.
pub const INSTANCE_FLAGS: [(&str, &str); 3] = [
    ("--max-instance-reuse-count", "128"),
    ("--max-instance-concurrent-reuse-count", "8"),
    ("--request-timeout", "30s"),
];

/// [`INSTANCE_FLAGS`], owned.
pub fn instance_flags() -> Vec<(String, String)> {
    INSTANCE_FLAGS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

/// Flags as command-line arguments.
pub fn instance_args(flags: &[(String, String)]) -> Vec<String> {
    flags.iter().flat_map(|(name, value)| [name.clone(), value.clone()]).collect()
}

/// What to serve: the manifest and what `spin up` gets on its command line.
#[derive(Debug, Clone)]
pub struct SpinUp {
    pub manifest: PathBuf,
    /// `--variable name=value`: wins over every provider.
    pub variables: BTreeMap<String, String>,
    /// Components to load from another file than the manifest's `source` (a build in
    /// another target directory): the manifest is copied with those sources replaced.
    pub component_sources: BTreeMap<String, PathBuf>,
    /// Component dependencies to load from another file, by component id and dependency key.
    pub dependency_sources: BTreeMap<(String, String), PathBuf>,
    pub runtime_config: Option<PathBuf>,
    /// `-f`: run this reference (a registry image) instead of the manifest.
    pub from_registry: Option<String>,
    /// Instance reuse and request timeout flags (default: [`INSTANCE_FLAGS`]).
    pub instance_flags: Vec<(String, String)>,
}

impl Default for SpinUp {
    fn default() -> Self {
        Self {
            manifest: PathBuf::new(),
            variables: BTreeMap::new(),
            component_sources: BTreeMap::new(),
            dependency_sources: BTreeMap::new(),
            runtime_config: None,
            from_registry: None,
            instance_flags: instance_flags(),
        }
    }
}

/// A running `spin up`; stopped when dropped.
pub struct SpinApp {
    child: Supervised,
    addr: SocketAddr,
    dir: PathBuf,
}

impl SpinApp {
    pub async fn start(up: &SpinUp) -> anyhow::Result<Self> {
        let spin = binary().context("the Spin CLI was found neither as $SPIN, on PATH, nor at ../shared/bin/spin")?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&spin, up).await {
                Err(e) if attempt < MAX_START_ATTEMPTS && format!("{e:#}").contains("in use") => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    async fn start_once(spin: &Path, up: &SpinUp) -> anyhow::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!("wasmpay-spin-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut command = Command::new(spin);
        command.arg("up");
        match &up.from_registry {
            Some(reference) => command.args(["--from", reference, "--insecure", "--cache-dir"]).arg(dir.join("cache")),
            None => command.arg("--from").arg(manifest_with_sources(up, &dir)?),
        };
        command
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(dir.join("state"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("spin.log"))?)
            .stderr(fs::File::create(dir.join("spin.err"))?);
        if let Some(runtime_config) = &up.runtime_config {
            command.arg("--runtime-config-file").arg(runtime_config);
        }
        for (name, value) in &up.variables {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        command.args(instance_args(&up.instance_flags));
        // Only this application's variables: none leak in from the caller's environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                command.env_remove(name);
            }
        }
        let child = Supervised::spawn(command, libc::SIGKILL)?;
        let app = Self { child, addr, dir };
        app.wait_until_listening().await?;
        Ok(app)
    }

    async fn wait_until_listening(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.status() {
                bail!("spin up exited with {status} before listening:\n{}", self.output());
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("spin up did not listen on {} within {START_TIMEOUT:?}:\n{}", self.addr, self.output());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.pid()
    }

    /// What Spin printed so far (its own messages and the components' output).
    pub fn output(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("spin.err"), read("spin.log"))
    }
}

impl Drop for SpinApp {
    fn drop(&mut self) {
        self.child.stop(libc::SIGTERM, Duration::from_secs(5));
        self.child.stop(libc::SIGKILL, Duration::from_secs(5));
        if std::thread::panicking() {
            eprintln!("--- spin up output ({}) ---\n{}", self.dir.display(), self.output());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Pushes the application to an OCI registry, as `spin registry push` does for any Spin
/// host (`--insecure`: a local registry over plain HTTP).
pub fn push(up: &SpinUp, reference: &str) -> anyhow::Result<()> {
    let spin = binary().context("the Spin CLI was found neither as $SPIN, on PATH, nor at ../shared/bin/spin")?;
    let dir = std::env::temp_dir().join(format!("wasmpay-spin-push-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let output = Command::new(spin)
        .args(["registry", "push", "--insecure", "--from"])
        .arg(manifest_with_sources(up, &dir)?)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg(reference)
        .stdin(Stdio::null())
        .output()
        .context("cannot run spin registry push")?;
    let _ = fs::remove_dir_all(&dir);
    anyhow::ensure!(
        output.status.success(),
        "spin registry push {reference} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn component<'a>(components: &'a mut toml::Table, id: &str) -> anyhow::Result<&'a mut toml::Table> {
    components
        .get_mut(id)
        .and_then(toml::Value::as_table_mut)
        .with_context(|| format!("the manifest has no component {id}"))
}

/// The manifest to run or push: the original, or a copy in `dir` whose component sources
/// point at the files given (everything else unchanged).
fn manifest_with_sources(up: &SpinUp, dir: &Path) -> anyhow::Result<PathBuf> {
    if up.component_sources.is_empty() && up.dependency_sources.is_empty() {
        return Ok(up.manifest.clone());
    }
    let text = fs::read_to_string(&up.manifest).with_context(|| format!("cannot read {}", up.manifest.display()))?;
    let mut manifest: toml::Table = text.parse().with_context(|| format!("{} is not TOML", up.manifest.display()))?;
    let components = manifest
        .get_mut("component")
        .and_then(toml::Value::as_table_mut)
        .context("the manifest has no [component] table")?;
    // The copy lives elsewhere: relative dependency paths are resolved as Spin would have.
    let manifest_dir = up.manifest.parent().unwrap_or(Path::new("."));
    for (_, component) in components.iter_mut() {
        let Some(dependencies) = component.get_mut("dependencies").and_then(toml::Value::as_table_mut) else {
            continue;
        };
        for (_, dependency) in dependencies.iter_mut() {
            if let Some(path) = dependency.get_mut("path")
                && let Some(relative) = path.as_str().filter(|p| Path::new(p).is_relative())
            {
                *path = toml::Value::String(manifest_dir.join(relative).display().to_string());
            }
        }
    }
    for (id, source) in &up.component_sources {
        component(components, id)?.insert("source".into(), toml::Value::String(source.display().to_string()));
    }
    for ((id, key), source) in &up.dependency_sources {
        let dependency = component(components, id)?
            .get_mut("dependencies")
            .and_then(toml::Value::as_table_mut)
            .and_then(|dependencies| dependencies.get_mut(key))
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("component {id} has no dependency {key:?}"))?;
        dependency.insert("path".into(), toml::Value::String(source.display().to_string()));
    }
    let path = dir.join("spin.toml");
    fs::write(&path, toml::to_string(&manifest)?)?;
    Ok(path)
}
