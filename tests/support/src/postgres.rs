//! A real PostgreSQL for tests. With `DATABASE_URL` set, that server is used (its user
//! needs CREATEDB); otherwise a throwaway cluster is started once per test process from the
//! server binaries (`/usr/lib/postgresql/<v>/bin`), as the `postgres` user when running as
//! root. The cluster dies with the process (parent-death signal), is shut down and removed
//! at exit, and clusters left by killed runs are swept at the next start.
//!
//! Each test gets its own database, cloned from a template migrated once per process by the
//! real `bridge migrate`. With `WASMPAY_E2E_DATABASE=citus` the server is the coordinator
//! of a three-node Citus cluster (`crate::citus`) and every database is a distributed one.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use anyhow::{Context, bail, ensure};
use tokio_postgres::NoTls;

use crate::{
    citus,
    cluster::{self, LocalCluster},
    paths,
};

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
        // Plaintext on purpose: a connection string without sslmode asks for verified TLS.
        format!("postgres://{credentials}@{}:{}/{database}?sslmode=disable", self.host, self.port)
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
        if citus::wanted() {
            return Server {
                host: "127.0.0.1".into(),
                port: citus::cluster().coordinator_port(),
                user: "postgres".into(),
                password: None,
                local: None,
            };
        }
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

pub(crate) fn next_database_name() -> String {
    format!(
        "wasmpay_test_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    )
}

/// An empty database (no migrations), for tests of the migrations themselves.
pub async fn empty_database() -> anyhow::Result<Database> {
    let name = next_database_name();
    if citus::wanted() {
        return citus::cluster().empty_database(&name).await;
    }
    let server = server();
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
    if citus::wanted() {
        return citus::cluster().migrated_database().await;
    }
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

// ---- the per-process cluster --------------------------------------------------------------

const CLUSTER_DIR_PREFIX: &str = "wasmpay-pg-";

/// The running cluster and its directory, for the exit handler.
static CLUSTER: Mutex<Option<(i32, PathBuf)>> = Mutex::new(None);

/// Removes clusters whose test process is gone (a killed run cannot clean up after itself).
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
        if cluster::process_alive(owner) {
            continue;
        }
        if let Some(pid) = cluster::postmaster_pid(&entry.path().join("data")) {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn start_local_cluster() -> anyhow::Result<Server> {
    sweep_stale_clusters();
    let dir = std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let cluster = LocalCluster::start(
        &dir,
        cluster::free_port()?,
        // A throwaway cluster: durability buys nothing here.
        &["max_connections=400", "fsync=off", "synchronous_commit=off", "full_page_writes=off"],
    )?;
    *CLUSTER.lock().unwrap_or_else(|p| p.into_inner()) = Some((cluster.pid(), dir.clone()));
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(remove_local_cluster) };
    Ok(Server {
        host: "127.0.0.1".into(),
        port: cluster.port(),
        user: "postgres".into(),
        password: None,
        local: Some(dir),
    })
}

/// At process exit: shut the cluster down and remove its directory.
extern "C" fn remove_local_cluster() {
    let Some((pid, dir)) = CLUSTER.lock().ok().and_then(|mut cluster| cluster.take()) else {
        return;
    };
    cluster::stop(pid, &dir);
    let _ = fs::remove_dir_all(&dir);
}
