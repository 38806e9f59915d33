//! A real PostgreSQL for tests. With `DATABASE_URL` set, that server is used (its user
//! needs CREATEDB); otherwise a throwaway cluster is started once per test process from the
//! server binaries (`/usr/lib/postgresql/<v>/bin`), as the `postgres` user when running as
//! root. The cluster dies with the process (parent-death signal), is shut down and removed
//! at exit, and clusters left by killed runs are swept at the next start.
//!
//! Each test gets its own database, cloned from a template migrated once per process by the
//! real `bridge migrate`.

use std::{
    fs,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use tokio_postgres::NoTls;

use crate::paths;

/// A PostgreSQL server the tests may create databases on.
#[derive(Debug)]
pub struct Server {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    /// The local cluster's data directory, when this process started it.
    local: Option<PathBuf>,
}

impl Server {
    pub fn url(&self, database: &str) -> String {
        let credentials = match &self.password {
            Some(password) => format!("{}:{password}", self.user),
            None => self.user.clone(),
        };
        format!("postgres://{credentials}@{}:{}/{database}", self.host, self.port)
    }

    /// `host:port`, as an `allowed_outbound_hosts` entry names it.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the local cluster (its `data/` and its socket), if this process
    /// started one.
    pub fn local_dir(&self) -> Option<&Path> {
        self.local.as_deref()
    }

    async fn admin(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url("postgres")).await
    }
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to {}", redact(url)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    }
}

/// The process-wide server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => external(&url),
            _ => start_local_cluster(),
        };
        server.unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e:#}"))
    })
}

fn external(url: &str) -> anyhow::Result<Server> {
    let config: tokio_postgres::Config = url.parse().context("DATABASE_URL is not a valid connection string")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => bail!("DATABASE_URL must name a TCP host"),
    };
    Ok(Server {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        user: config.get_user().unwrap_or("postgres").to_owned(),
        password: config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()),
        local: None,
    })
}

/// A database of one test, named `wasmpay_test_<pid>_<n>`.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub url: String,
}

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

fn next_database_name() -> String {
    format!(
        "wasmpay_test_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    )
}

/// An empty database (no migrations), for tests of the migrations themselves.
pub async fn empty_database() -> anyhow::Result<Database> {
    let server = server();
    let name = next_database_name();
    server
        .admin()
        .await?
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    Ok(Database {
        url: server.url(&name),
        name,
    })
}

/// A database with every migration applied.
pub async fn migrated_database() -> anyhow::Result<Database> {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    // Postgres refuses concurrent copies of one template; clones are quick, so take turns.
    static CLONING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let server = server();
    let template = TEMPLATE
        .get_or_try_init(|| async {
            let template = empty_database().await?;
            migrate(&template.url).await?;
            anyhow::Ok(template.name)
        })
        .await?;
    let name = next_database_name();
    let _turn = CLONING.lock().await;
    server
        .admin()
        .await?
        .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""))
        .await
        .with_context(|| format!("cannot clone the migrated template {template}"))?;
    Ok(Database {
        url: server.url(&name),
        name,
    })
}

/// Runs the real `bridge migrate` against `url`.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(paths::binary("bridge"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .output()
        .await
        .context("cannot run bridge migrate")?;
    ensure!(
        output.status.success(),
        "bridge migrate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

// ---- the local cluster ------------------------------------------------------------------

const CLUSTER_DIR_PREFIX: &str = "wasmpay-pg-";

fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries not found in /usr/lib/postgresql (apt-get install postgresql, or set PG_BIN_DIR or DATABASE_URL)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server under /usr/lib/postgresql")
}

/// Postgres refuses to run as root: as root, run it as the `postgres` user.
fn cluster_owner() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam is given a NUL-terminated name; the result is read before any other
    // passwd lookup can overwrite it.
    let entry = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
    ensure!(
        !entry.is_null(),
        "running as root needs a `postgres` user to own the test cluster (it comes with the postgresql package)"
    );
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

fn postmaster_pid(data: &Path) -> Option<i32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Removes clusters whose test process is gone (killed runs cannot clean up after
/// themselves).
fn sweep_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_prefix(CLUSTER_DIR_PREFIX)) else {
            continue;
        };
        let Ok(owner) = owner.parse::<i32>() else { continue };
        if process_alive(owner) {
            continue;
        }
        if let Some(pid) = postmaster_pid(&entry.path().join("data")) {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

static CLUSTER: Mutex<Option<(i32, PathBuf)>> = Mutex::new(None);

fn start_local_cluster() -> anyhow::Result<Server> {
    sweep_stale_clusters();
    let bin = pg_bin_dir()?;
    let owner = cluster_owner()?;
    let dir = std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    let data = dir.join("data");
    let initdb = as_owner(&mut Command::new(bin.join("initdb")), owner)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", "-D"])
        .arg(&data)
        .output()
        .context("cannot run initdb")?;
    ensure!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));

    let port = free_port()?;
    let mut postgres = Command::new(bin.join("postgres"));
    as_owner(&mut postgres, owner)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args([
            "-c", "listen_addresses=127.0.0.1",
            "-c", "max_connections=400",
            // A throwaway cluster: durability buys nothing here.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("postgres.log"))?);
    let parent = std::process::id() as i32;
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        postgres.pre_exec(move || {
            // Dies with the test process, whatever kills it; set after the uid change,
            // which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    // The parent-death signal follows the spawning *thread*: spawn from a thread that lives
    // as long as the process (it waits for the server).
    let (started, receive) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-fixture".into())
        .spawn(move || match postgres.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(child.id() as i32));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = started.send(Err(e));
            }
        })?;
    let pid = receive.recv()?.context("cannot start postgres")?;
    *CLUSTER.lock().unwrap_or_else(|p| p.into_inner()) = Some((pid, dir.clone()));
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(stop_local_cluster) };

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let log = fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            bail!("postgres did not become ready within 30 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Server {
        host: "127.0.0.1".into(),
        port,
        user: "postgres".into(),
        password: None,
        local: Some(dir),
    })
}

/// At process exit: fast shutdown of the cluster, then remove its directory.
extern "C" fn stop_local_cluster() {
    let Some((pid, dir)) = CLUSTER.lock().ok().and_then(|mut cluster| cluster.take()) else {
        return;
    };
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.join("data/postmaster.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = fs::remove_dir_all(&dir);
}
