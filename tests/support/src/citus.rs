//! A three-node Citus cluster for tests: a coordinator and two workers, each a
//! [`LocalCluster`] of the same server binaries with the `citus` extension preloaded, on
//! this machine. It is started once per test process when `WASMPAY_E2E_DATABASE=citus`
//! (then every migrated test database is a distributed one, created on the coordinator
//! and both workers) or when a test asks for [`cluster`] itself. Citus itself is installed
//! into the server's directories (`.ci/run` does so from `../shared/citus`).
//!
//! Each database is a clone, made on every node at once, of a template that `bridge
//! migrate` distributed through the coordinator: a Citus database is a set of per-node
//! databases whose metadata names only nodes and shards, so copies of all of them are a
//! consistent distributed database of their own.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{
    cluster::{self, LocalCluster},
    postgres::{Database, connect, migrate},
};

const DIR_PREFIX: &str = "wasmpay-citus-";

/// What every Citus node needs: the extension preloaded, prepared transactions for two-phase
/// commit (as many as connections), logical replication for online shard moves.
pub const NODE_SETTINGS: &[&str] = &[
    "shared_preload_libraries=citus",
    "citus.enable_statistics_collection=off",
    "max_connections=500",
    "max_prepared_transactions=500",
    "wal_level=logical",
    "max_replication_slots=20",
    "max_wal_senders=20",
];

/// And for the tests: no durability; eight shards per table (32 by default) to keep a test
/// database quick to clone; and room for a background worker per database (Citus runs a
/// maintenance daemon in each, which also starts a rebalance's jobs), as a test run leaves
/// a database per test.
const TEST_SETTINGS: &[&str] = &[
    "citus.shard_count=8",
    "max_worker_processes=256",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// Whether this test run targets Citus (`WASMPAY_E2E_DATABASE=citus`).
pub fn wanted() -> bool {
    match std::env::var("WASMPAY_E2E_DATABASE").as_deref() {
        Ok("citus") => true,
        Ok("" | "postgres") | Err(_) => false,
        Ok(other) => panic!("WASMPAY_E2E_DATABASE={other}: expected postgres or citus"),
    }
}

/// Whether the `citus` extension is installed beside the server binaries the tests run.
pub fn installed() -> bool {
    cluster::pg_bin_dir().is_ok_and(|bin| {
        bin.parent()
            .is_some_and(|version| version.join("lib/citus.so").is_file())
    })
}

/// The running nodes: the coordinator first, then the two workers every database has;
/// workers started later for one test's database are kept apart.
pub struct Citus {
    dir: PathBuf,
    nodes: Vec<LocalCluster>,
    added: Mutex<Vec<LocalCluster>>,
}

/// The clusters' pids and directories, for the exit handler.
static RUNNING: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

/// The process-wide Citus cluster, started on first use.
pub fn cluster() -> &'static Citus {
    static CLUSTER: OnceLock<Citus> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Citus::start().unwrap_or_else(|e| panic!("no Citus cluster for the tests: {e:#}"))
    })
}

impl Citus {
    fn start() -> anyhow::Result<Self> {
        sweep_stale();
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(remove_clusters) };
        let mut nodes = Vec::new();
        for name in ["coordinator", "worker-1", "worker-2"] {
            nodes.push(start_node(&dir, name)?);
        }
        Ok(Self {
            dir,
            nodes,
            added: Mutex::new(Vec::new()),
        })
    }

    /// The coordinator's port: the components, the bridge and the tests connect to it.
    pub fn coordinator_port(&self) -> u16 {
        self.nodes[0].port()
    }

    pub fn coordinator_url(&self, database: &str) -> String {
        node_url(self.coordinator_port(), database)
    }

    /// The coordinator's and the two workers' ports.
    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(LocalCluster::port).collect()
    }

    /// A migrated distributed database of its own.
    pub async fn migrated_database(&self) -> anyhow::Result<Database> {
        static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
        static CLONING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let template = TEMPLATE
            .get_or_try_init(|| async {
                let name = format!("wasmpay_citus_template_{}", std::process::id());
                let template = self.empty_database(&name).await?;
                migrate(&template.url).await?;
                anyhow::Ok(name)
            })
            .await?;
        let name = crate::postgres::next_database_name();
        let _turn = CLONING.lock().await;
        for port in self.ports() {
            clone(port, template, &name).await?;
        }
        Ok(Database {
            url: self.coordinator_url(&name),
            name,
        })
    }

    /// A migrated distributed database made from nothing, not cloned: one a node can be
    /// added to (a clone's metadata still names its template's database as a distributed
    /// object, which a new node would be asked to find).
    pub async fn migrated_database_made_afresh(&self) -> anyhow::Result<Database> {
        let database = self
            .empty_database(&crate::postgres::next_database_name())
            .await?;
        migrate(&database.url).await?;
        Ok(database)
    }

    /// A database on every node with the extension created and the workers registered on
    /// the coordinator: what an operator prepares before `bridge migrate`.
    pub async fn empty_database(&self, name: &str) -> anyhow::Result<Database> {
        prepare_database(&self.ports(), name).await?;
        Ok(Database {
            url: self.coordinator_url(name),
            name: name.to_owned(),
        })
    }

    /// Starts one more worker, creates `database` on it with the extension and registers it
    /// on that database's coordinator (`citus_add_node`), as an operator adds a node; returns
    /// its port. Its shards come with a rebalance.
    pub async fn add_worker(&self, database: &str) -> anyhow::Result<u16> {
        let mut added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        let name = format!("worker-{}", self.nodes.len() + added.len());
        let worker = start_node(&self.dir, &name)?;
        let port = worker.port();
        added.push(worker);
        drop(added);
        connect(&node_url(port, "postgres"))
            .await?
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .await?;
        connect(&node_url(port, database))
            .await?
            .batch_execute("CREATE EXTENSION citus")
            .await?;
        // Creating the extension turns the node's TLS on with a reload; until that is done
        // the coordinator's first connection may fail.
        let coordinator = connect(&self.coordinator_url(database)).await?;
        let mut attempts = 0;
        loop {
            match coordinator
                .execute(
                    "SELECT citus_add_node('127.0.0.1', $1)",
                    &[&i32::from(port)],
                )
                .await
            {
                Ok(_) => return Ok(port),
                Err(_) if attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    let log = fs::read_to_string(self.dir.join(&name).join("postgres.log"))
                        .unwrap_or_default();
                    bail!("cannot add the worker on port {port}: {e:?}\nits log:\n{log}");
                }
            }
        }
    }
}

fn start_node(root: &Path, name: &str) -> anyhow::Result<LocalCluster> {
    let dir = root.join(name);
    let settings: Vec<&str> = NODE_SETTINGS.iter().chain(TEST_SETTINGS).copied().collect();
    let node = LocalCluster::start(&dir, cluster::free_port()?, &settings).with_context(|| {
        format!("cannot start the Citus {name} (is Citus installed? .ci/run installs it)")
    })?;
    RUNNING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((node.pid(), dir));
    Ok(node)
}

/// Creates `name` with the extension on every node of `ports` (the coordinator first) and
/// registers the coordinator and the workers in it.
pub async fn prepare_database(ports: &[u16], name: &str) -> anyhow::Result<()> {
    for &port in ports {
        let admin = connect(&node_url(port, "postgres")).await?;
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await?;
        connect(&node_url(port, name)).await?.batch_execute("CREATE EXTENSION citus").await?;
    }
    let coordinator = connect(&node_url(ports[0], name)).await?;
    coordinator
        .execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", &[&i32::from(ports[0])])
        .await
        .context("cannot register the coordinator")?;
    for &port in &ports[1..] {
        coordinator
            .execute("SELECT citus_add_node('127.0.0.1', $1)", &[&i32::from(port)])
            .await
            .with_context(|| format!("cannot add the worker on port {port}"))?;
    }
    Ok(())
}

fn node_url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// `CREATE DATABASE … TEMPLATE` on one node. Postgres refuses while anyone is connected to
/// the template, and Citus keeps connections to it (its maintenance daemon, the coordinator's
/// cached connections to the workers): end them and retry.
async fn clone(port: u16, template: &str, name: &str) -> anyhow::Result<()> {
    let admin = connect(&node_url(port, "postgres")).await?;
    let mut attempts = 0;
    loop {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&template],
            )
            .await?;
        match admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e)
                if attempts < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => bail!("cannot clone {template} on port {port}: {e:?}"),
        }
    }
}

/// Removes Citus clusters whose test process is gone.
fn sweep_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Ok(owner) = owner.parse::<i32>() else {
            continue;
        };
        if cluster::process_alive(owner) {
            continue;
        }
        for node in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
            stop_stale(&node.path());
        }
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn stop_stale(node: &Path) {
    if let Some(pid) = cluster::postmaster_pid(&node.join("data")) {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
    }
}

/// At process exit: shut every node down and remove the cluster's directory.
extern "C" fn remove_clusters() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    let mut root = None;
    for (pid, dir) in running {
        cluster::stop(pid, &dir);
        root = dir.parent().map(Path::to_owned);
    }
    if let Some(root) = root {
        let _ = fs::remove_dir_all(root);
    }
}
