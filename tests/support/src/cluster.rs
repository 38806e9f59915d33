//! A PostgreSQL cluster run from the server binaries (`/usr/lib/postgresql/<v>/bin`, or
//! `PG_BIN_DIR`): initialised on first use, run as the `postgres` user when this process is
//! root (Postgres refuses root), and bound to this process's lifetime by a parent-death
//! signal so a killed test run or `cargo xtask up` leaves no server behind.

use std::{
    fs,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};

use crate::process::Supervised;

pub struct LocalCluster {
    pid: i32,
    _child: Supervised,
    port: u16,
    dir: PathBuf,
}

impl LocalCluster {
    /// Starts the cluster in `dir` (its data in `dir/data`, initialised if absent, its log
    /// in `dir/postgres.log`) on 127.0.0.1:`port` with extra `-c` settings.
    pub fn start(dir: &Path, port: u16, settings: &[&str]) -> anyhow::Result<Self> {
        let bin = pg_bin_dir()?;
        let owner = cluster_owner()?;
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
        }
        let data = dir.join("data");
        if !data.join("PG_VERSION").exists() {
            let initdb = as_owner(&mut Command::new(bin.join("initdb")), owner)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions", "-D"])
                .arg(&data)
                .output()
                .context("cannot run initdb")?;
            ensure!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        }
        let mut postgres = Command::new(bin.join("postgres"));
        as_owner(&mut postgres, owner)
            // Its own home: a server that connects to others (Citus) reads client
            // certificates from `~/.postgresql`, and this process's home may be root's.
            .env("HOME", dir)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for setting in settings {
            postgres.args(["-c", setting]);
        }
        postgres
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("postgres.log"))?);
        // Dies with this process, whatever kills it.
        let child = Supervised::spawn(postgres, libc::SIGQUIT)?;
        let pid = child.pid();
        let cluster = Self {
            pid,
            _child: child,
            port,
            dir: dir.to_owned(),
        };
        cluster.wait_ready(&bin)?;
        Ok(cluster)
    }

    fn wait_ready(&self, bin: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline || !process_alive(self.pid) {
                let log = fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                bail!("postgres did not become ready:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A plaintext connection string (the cluster listens without TLS unless started with it).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    /// A connection string through the cluster's Unix socket, which `start_tls_only` leaves
    /// open to the tests' own plaintext connections.
    pub fn socket_url(&self, database: &str) -> String {
        format!("host={} port={} user=postgres dbname={database} sslmode=disable", self.dir.display(), self.port)
    }

    /// A cluster that accepts TCP connections over TLS only (`hostssl`; plaintext is refused
    /// by `pg_hba.conf`), presenting `certificate` and `key` (PEM); its Unix socket stays open
    /// to local connections.
    pub fn start_tls_only(dir: &Path, port: u16, certificate: &Path, key: &Path) -> anyhow::Result<Self> {
        let owner = cluster_owner()?;
        fs::create_dir_all(dir)?;
        let files = [
            ("server.pem", certificate, 0o644),
            ("server.key", key, 0o600),
        ];
        for (name, source, mode) in files {
            let target = dir.join(name);
            fs::copy(source, &target).with_context(|| format!("cannot copy {}", source.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&target, Some(uid), Some(gid))?;
            }
        }
        let hba = dir.join("pg_hba.conf");
        fs::write(
            &hba,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&hba, Some(uid), Some(gid))?;
        }
        let settings = [
            "ssl=on".to_owned(),
            format!("ssl_cert_file={}", dir.join("server.pem").display()),
            format!("ssl_key_file={}", dir.join("server.key").display()),
            format!("hba_file={}", hba.display()),
        ];
        Self::start(dir, port, &settings.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Fast shutdown, waiting up to 10 s for the server to finish.
    pub fn stop(&self) {
        stop(self.pid, &self.dir);
    }
}

/// Fast shutdown of the server `pid` whose cluster lives in `dir`.
pub fn stop(pid: i32, dir: &Path) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.join("data/postmaster.pid").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The directory of the server binaries (`PG_BIN_DIR`, else the newest Debian install).
pub fn pg_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL server binaries not found in /usr/lib/postgresql \
             (apt-get install postgresql, or set PG_BIN_DIR or DATABASE_URL)",
        )?
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
        "running as root needs a `postgres` user to own the cluster (it comes with the postgresql package)"
    );
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// The pid in a cluster's `postmaster.pid`, if it is running.
pub fn postmaster_pid(data: &Path) -> Option<i32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// A port nobody listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
