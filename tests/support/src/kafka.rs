//! A real Kafka-protocol broker for tests: tansu (`cargo install tansu --version 0.6.0
//! --locked --features libsql,dynostore`), started on a free port, dying with the test
//! process. In memory by default; on SQLite when a test must restart it without losing
//! what it stored. `Broker::start_with` also gives it SCRAM users (then every client must
//! authenticate) or has it advertise another port (a TLS terminator's, see `tls`).

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{cluster, process::Supervised};

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Storage {
    #[default]
    Memory,
    /// `tansu.db` in the broker's directory: survives restarts.
    Sqlite,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub storage: Storage,
    /// The port clients are told to connect to, when not the broker's own.
    pub advertised_port: Option<u16>,
    /// SCRAM users: (name, password, `scram256` or `scram512`). With any, the broker
    /// requires SASL authentication (and keeps them on SQLite: tansu adds users only while
    /// it does not require authentication, so it is started twice).
    pub scram_users: Vec<(String, String, &'static str)>,
}

pub struct Broker {
    port: u16,
    options: Options,
    authentication: bool,
    dir: PathBuf,
    child: Option<Supervised>,
}

/// The tansu binary: `TANSU`, else `tansu` on PATH.
fn tansu() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("TANSU") {
        return Ok(path.into());
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("tansu")).find(|p| p.is_file()))
        .context("tansu is not installed: cargo install tansu --version 0.6.0 --locked --features libsql,dynostore")
}

impl Broker {
    pub fn start(storage: Storage) -> anyhow::Result<Self> {
        Self::start_with(Options { storage, ..Options::default() })
    }

    pub fn start_with(mut options: Options) -> anyhow::Result<Self> {
        let port = cluster::free_port()?;
        let dir = std::env::temp_dir().join(format!("wasmpay-tansu-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if !options.scram_users.is_empty() {
            options.storage = Storage::Sqlite;
        }
        let mut broker = Self {
            port,
            options,
            authentication: false,
            dir,
            child: None,
        };
        broker.launch()?;
        if !broker.options.scram_users.is_empty() {
            for (name, password, mechanism) in &broker.options.scram_users {
                let output = Command::new(tansu()?)
                    .args(["user", "create", name, password, "--mechanism", mechanism])
                    .args(["--broker", &format!("tcp://127.0.0.1:{}", broker.port)])
                    .stdin(Stdio::null())
                    .output()?;
                anyhow::ensure!(output.status.success(), "tansu user create {name}: {}", String::from_utf8_lossy(&output.stderr));
            }
            broker.authentication = true;
            broker.restart()?;
        }
        Ok(broker)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let address = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.options.advertised_port.unwrap_or(self.port));
        let storage = match self.options.storage {
            Storage::Memory => "memory://tansu/".to_owned(),
            Storage::Sqlite => "sqlite://tansu.db".to_owned(),
        };
        let mut command = Command::new(tansu()?);
        command
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &address, "--advertised-listener-url", &advertised, "--storage-engine", &storage])
            .args(self.authentication.then_some("--authentication"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("tansu.log"))?);
        self.child = Some(Supervised::spawn(command, libc::SIGKILL).context("cannot start tansu")?);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_ref().and_then(Supervised::status) {
                let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
                bail!("tansu exited with {status}:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("tansu did not listen within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// `host:port` for `bootstrap.servers`: the advertised port (a TLS terminator's, when
    /// there is one).
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.options.advertised_port.unwrap_or(self.port))
    }

    /// The broker's own (plaintext) port.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the broker (as a crash would).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.stop(libc::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process-wide in-memory broker; tests keep apart by topic prefix. Directories left
/// by killed runs are removed first.
pub fn shared() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        sweep_stale_directories();
        Broker::start(Storage::Memory).unwrap_or_else(|e| panic!("no Kafka broker for the tests: {e:#}"))
    })
}

fn sweep_stale_directories() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix("wasmpay-tansu-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        if owner.is_some_and(|pid| !cluster::process_alive(pid)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
