//! An OCI registry on 127.0.0.1 (Debian's `docker-registry`, the CNCF Distribution
//! registry), over plain HTTP, storing in a directory of its own: where `spin registry push`
//! sends the application and `spin up -f <reference>` fetches it, as on any Spin host.

use std::{
    fs,
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{cluster::free_port, process::Supervised};

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Registry {
    child: Supervised,
    port: u16,
    dir: PathBuf,
}

impl Registry {
    pub fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("wasmpay-registry-{}-{port}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: warn\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )?;
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("registry.log"))?);
        let child = Supervised::spawn(command, libc::SIGKILL)
            .context("cannot start docker-registry (Debian package docker-registry)")?;
        let registry = Self { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if registry.child.status().is_some() || Instant::now() > deadline {
                bail!("docker-registry did not start: {}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(registry)
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference.
    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.child.stop(libc::SIGKILL, Duration::from_secs(5));
        let _ = fs::remove_dir_all(&self.dir);
    }
}
