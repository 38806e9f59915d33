//! Connections an instance keeps between its requests.
//!
//! Spin serves WASIp3 components from reused instances: up to 128 requests each by default,
//! up to 16 at once. A connection opened through `spin:postgres` comes from Spin's pool,
//! which resets the session on every checkout (`CLOSE ALL; … DISCARD SEQUENCES;`, a round
//! trip and a good share of Postgres's CPU for a short statement). An instance that keeps
//! its connections between requests skips that; these rules make it safe:
//!
//! - **One request per connection.** A request [`Lease::take`]s a connection for itself:
//!   no other request's statement runs on it until the lease ends, so no two requests share
//!   a transaction or wait behind each other's statements. A second request in flight takes
//!   another connection.
//! - **Nothing carries over.** Every statement the components send is a transaction of its
//!   own and sets no session state (no `BEGIN`, `SET`, `LISTEN`, temporary table or session
//!   advisory lock; functions scope their settings with `SET` clauses), so a kept connection
//!   is as clean after a request as before it. The only session setting, the statement
//!   timeout, is set once when the connection is opened and is the same for every request.
//! - **Only healthy connections are kept.** A connection goes back to the idle list only when
//!   its last statement finished: a lease dropped with a statement in flight, or one whose
//!   statement failed for another reason than its own SQL (no SQLSTATE, or a connection
//!   or shutdown SQLSTATE), gives its connection back to Spin, which replaces it. Such a
//!   failure also drops every idle connection of the instance, which a server restart would
//!   have ended too: only the request that found the connection dead sees the error.
//! - **Only while the instance is busy.** When an instance's last request in flight ends,
//!   every connection it kept goes back to Spin. An idle instance lingers until Spin
//!   retires it (`--idle-instance-timeout`, 1 s), and connections it held meanwhile would be
//!   missing from Spin's pool (64 per component and address) for the instances that have
//!   requests: measured, keeping them made requests wait for a connection about a second at
//!   p99 (BENCHMARKS.md, "Instances and connections").
//! - **Bounded.** A request holds one connection, an instance keeps at most
//!   [`MAX_IDLE_CONNECTIONS`] idle, only while another of its requests runs.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
};

use spin_sdk::pg::Connection;

use super::{DbError, Target};

/// Connections a busy instance keeps idle, at most. Spin's pool holds 64 connections per
/// component and address; eight per instance leaves room for the others.
pub const MAX_IDLE_CONNECTIONS: usize = 8;

struct Idle {
    target: Rc<Target>,
    connection: Connection,
}

thread_local! {
    /// Connections no request is using, the most recently used last.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
    /// Leases alive: requests of this instance holding a connection now.
    static LEASED: Cell<usize> = const { Cell::new(0) };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// No statement running; the connection may be kept.
    Ready,
    /// A statement was sent and has not finished.
    Busy,
    /// The connection failed, or may have: it is given back to Spin, never kept.
    Lost,
}

/// One request's exclusive use of a connection.
pub struct Lease {
    target: Rc<Target>,
    connection: Option<Connection>,
    health: Cell<Health>,
    /// The connection served an earlier request of this instance.
    reused: bool,
}

impl Lease {
    /// A connection to the database `target` names (its connection string and CA): an idle
    /// one of this instance, else a new one `open` gets from Spin.
    pub async fn take<F, R, E>(target: Rc<Target>, open: F) -> Result<Self, E>
    where
        F: FnOnce() -> R,
        R: Future<Output = Result<Connection, E>>,
    {
        let idle = IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            let position = idle.iter().rposition(|kept| kept.target == target)?;
            Some(idle.remove(position).connection)
        });
        let (connection, reused) = match idle {
            Some(connection) => (connection, true),
            None => (open().await?, false),
        };
        LEASED.with(|leased| leased.set(leased.get() + 1));
        Ok(Self {
            target,
            connection: Some(connection),
            health: Cell::new(Health::Ready),
            reused,
        })
    }

    /// The leased connection, for one statement: call [`Lease::finished`] with its outcome.
    pub fn start(&self) -> &Connection {
        self.health.set(Health::Busy);
        self.connection.as_ref().expect("a lease holds its connection until dropped")
    }

    /// Records how the statement ended. A failure of the connection (not of the
    /// statement's SQL) loses it, and every idle connection of the instance with it.
    pub fn finished<T>(&self, outcome: &Result<T, DbError>) {
        match outcome {
            Err(error) if error.is_connection_failure() => {
                self.health.set(Health::Lost);
                let dropped = IDLE.with(|idle| std::mem::take(&mut *idle.borrow_mut()).len());
                eprintln!(
                    "database connection lost ({} connection): {error}; dropped it and {dropped} idle connection(s) of this instance",
                    if self.reused { "a kept" } else { "a new" }
                );
            }
            _ => self.health.set(Health::Ready),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let others = LEASED.with(|leased| {
            leased.set(leased.get() - 1);
            leased.get()
        });
        let Some(connection) = self.connection.take() else { return };
        if others == 0 {
            // The instance has no request in flight: it may idle until Spin retires it
            // (`--idle-instance-timeout`), and connections it kept meanwhile would be
            // missing from Spin's pool for instances that have requests.
            IDLE.with(|idle| idle.borrow_mut().clear());
            return;
        }
        if self.health.get() != Health::Ready {
            return;
        }
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < MAX_IDLE_CONNECTIONS {
                idle.push(Idle {
                    target: self.target.clone(),
                    connection,
                });
            }
        });
    }
}
