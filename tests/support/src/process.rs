//! Child processes bound to the test process's lifetime. A parent-death signal follows the
//! *thread* that spawned the child, so each child is spawned from a thread of its own that
//! lives exactly as long as the child (it waits for it).

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Command, ExitStatus},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;

pub struct Supervised {
    pid: i32,
    status: Arc<Mutex<Option<ExitStatus>>>,
}

impl Supervised {
    /// Spawns `command`; the child receives `signal` if this process dies.
    pub fn spawn(mut command: Command, signal: i32) -> anyhow::Result<Self> {
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                // Set after any uid change, which clears it.
                libc::prctl(libc::PR_SET_PDEATHSIG, signal);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let status = Arc::new(Mutex::new(None));
        let recorded = status.clone();
        let (started, receive) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("supervised-child".into()).spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(child.id() as i32));
                let exit = child.wait().unwrap_or_else(|_| ExitStatus::from_raw(-1));
                *recorded.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit);
            }
            Err(e) => {
                let _ = started.send(Err(e));
            }
        })?;
        let pid = receive.recv()?.context("cannot start the child process")?;
        Ok(Self { pid, status })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit status, once the child has exited.
    pub fn status(&self) -> Option<ExitStatus> {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `signal` and waits up to `limit` for the child to exit.
    pub fn stop(&self, signal: i32, limit: Duration) -> Option<ExitStatus> {
        if self.status().is_none() {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe { libc::kill(self.pid, signal) };
        }
        let deadline = Instant::now() + limit;
        while self.status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.status()
    }
}
