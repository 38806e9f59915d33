//! TLS in front of a test broker: a certificate authority made for the test (with the
//! `openssl` command), and stunnel (Debian's `stunnel4`) terminating TLS on 127.0.0.1 and
//! forwarding to the broker's plaintext port. tansu 0.6 speaks plaintext only; it
//! advertises the terminator's port, so clients reach every broker connection through TLS.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};

use crate::process::Supervised;

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed,
/// and a second, unrelated CA: PEM files in one directory.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed none of the above.
    pub other_ca: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl (Debian: apt-get install openssl)")?;
    ensure!(output.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    Ok(())
}

impl Pki {
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for ca in ["ca", "other-ca"] {
            openssl(dir, &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", &format!("{ca}.key"), "-out", &format!("{ca}.pem"), "-subj", &format!("/CN=wasmpay test {ca}"),
            ])?;
        }
        let leaves = [
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ];
        for (name, extensions) in leaves {
            std::fs::write(dir.join(format!("{name}.ext")), format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n{extensions}"))?;
            openssl(dir, &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"),
                "-out", &format!("{name}.csr"), "-subj", &format!("/CN=wasmpay test {name}"),
            ])?;
            openssl(dir, &[
                "x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", &format!("{name}.pem"), "-extfile", &format!("{name}.ext"),
            ])?;
        }
        Ok(Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            other_ca: dir.join("other-ca.pem"),
        })
    }
}

/// stunnel accepting TLS on `port` and forwarding to 127.0.0.1:`upstream`.
pub struct Terminator {
    child: Supervised,
    log: PathBuf,
}

fn stunnel() -> anyhow::Result<PathBuf> {
    ["stunnel4", "stunnel"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH")
                .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        })
        .context("stunnel is not installed (Debian: apt-get install stunnel4)")
}

impl Terminator {
    /// With `client_ca`, clients must present a certificate that CA signed (mutual TLS).
    pub fn start(dir: &Path, port: u16, upstream: u16, pki: &Pki, client_ca: Option<&Path>) -> anyhow::Result<Self> {
        let config = dir.join(format!("stunnel-{port}.conf"));
        let log = dir.join(format!("stunnel-{port}.log"));
        let mut text = format!(
            "foreground = yes\npid =\noutput = {}\ndebug = notice\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{upstream}\ncert = {}\nkey = {}\n",
            log.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        );
        if let Some(ca) = client_ca {
            text.push_str(&format!("CAfile = {}\nrequireCert = yes\nverifyChain = yes\n", ca.display()));
        }
        std::fs::write(&config, text)?;
        let mut command = Command::new(stunnel()?);
        command.arg(&config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = Supervised::spawn(command, libc::SIGKILL).context("cannot start stunnel")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.status() {
                bail!("stunnel exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            if Instant::now() > deadline {
                bail!("stunnel did not listen within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self { child, log })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.child.stop(libc::SIGKILL, Duration::from_secs(5));
    }
}
