//! Transfer throughput: authenticated `POST /transfers` at 32 concurrent clients over 10,000 funded wallets, under
//! real Spin (`spin up`, what users run) and under the in-process wasmpay host, or under an external server given by
//! URL, against the raw-SQL limit: the engine's own `ledger.transfer` driven by pgbench on the same database in the
//! same run, uniformly and with one hot wallet in every transfer — and against the yardstick, pgledger's
//! `pgledger_create_transfer` driven the same way in its own database of the same cluster (see pgledger.rs). Then a
//! health route (one query on a pooled connection) under each runtime.

use std::{
    collections::BTreeMap,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use wasmpay_test_support::{cluster, paths, postgres, spin};

use crate::{
    client::{Client, percentiles},
    cpu,
    platform::{Build, JWT_SECRET, Platform, Runtime, Server},
    worktree,
};

pub const WALLETS: usize = 10_000;
pub const CLIENTS: usize = 32;
/// The name of pgledger's rows in the summary.
const PGLEDGER: &str = "pgledger";

/// Deterministic ids, so the HTTP clients and pgbench name the same wallets.
const SEED: &str = r#"
CREATE SCHEMA bench;
CREATE FUNCTION bench.account_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION bench.user_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION bench.session_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT ('00000000-0000-4000-a000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO identity.users (id, email, email_key, full_name, password_hash, email_verified_at)
SELECT bench.user_id(n), 'user' || n || '@bench.example', 'user' || n || '@bench.example', 'User ' || n,
       '$2b$04$benchbenchbenchbenchbeOkTq0sS1hCHXxEnW4YbAZ8OjwLPTcTq', now() AT TIME ZONE 'UTC'
FROM generate_series(1, $WALLETS) n;
-- A live session per user, as after a login: every authenticated statement checks it.
INSERT INTO identity.sessions (id, user_id) SELECT bench.session_id(n), bench.user_id(n) FROM generate_series(1, $WALLETS) n;
INSERT INTO identity.refresh_tokens (token_hash, user_id, session_id, expires_at)
SELECT sha256(convert_to('bench-refresh-' || n, 'UTF8')), bench.user_id(n), bench.session_id(n),
       (now() AT TIME ZONE 'UTC') + interval '30 days'
FROM generate_series(1, $WALLETS) n;
INSERT INTO identity.email_addresses (email_key, user_id)
SELECT 'user' || n || '@bench.example', bench.user_id(n) FROM generate_series(1, $WALLETS) n;
INSERT INTO accounts.accounts (id, kind, owner_id, currency, scale)
SELECT bench.account_id(n), 'user', bench.user_id(n), 'USD', 2 FROM generate_series(1, $WALLETS) n;
INSERT INTO accounts.owner_wallets (owner_id, currency, account_id)
SELECT bench.user_id(n), 'USD', bench.account_id(n) FROM generate_series(1, $WALLETS) n;
-- Fund through the engine, so the books balance from the start.
SELECT count(*) FROM generate_series(1, $WALLETS) n,
    LATERAL ledger.settle('deposit', bench.user_id(n), 'seed-' || n, sha256(convert_to('seed-' || n, 'UTF8')), 86400,
                          gen_random_uuid(), gen_random_uuid(), bench.account_id(n),
                          CASE WHEN n = 1 THEN 100000000 ELSE 100000 END, '{}');
"#;

/// The terms the standard policy (policies/standard) gives a transfer within its limit: the
/// ledger checks the sender's e-mail is verified. (A space after every ':', or pgbench
/// takes `:null` for one of its variables.)
pub const STANDARD_TRANSFER_TERMS: &str = r#"'{"fee": null, "requirements": [{"policy": 1, "check": "verified-initiator", "problem": {"status": 403, "slug": "email-not-verified", "title": "E-mail not verified", "detail": "verify your e-mail address before moving money"}}]}'::jsonb"#;

/// How pgbench sends the transfer.
#[derive(Clone, Copy, Debug)]
pub enum Sql {
    /// The bare function call: the raw-SQL yardstick.
    Bare,
    /// With the caller's session check, exactly as an authenticated request sends it.
    ForCaller,
}

impl Sql {
    /// The statement, with pgbench expressions for the component's parameters: the same
    /// text `wasmpay_common::db::Query` produces for the component.
    pub(crate) fn statement(self) -> String {
        use wasmpay_common::db::Query;
        let call = "SELECT status, body, problem, replayed FROM ledger.transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
        let text = match self {
            Sql::Bare => call.to_owned(),
            Sql::ForCaller => Query::call(call).session_checked(14),
        };
        let arguments = [
            "bench.user_id(:a)", "gen_random_uuid()::text", "sha256(convert_to(:a || '-' || :b, 'UTF8'))", "86400",
            "gen_random_uuid()", "gen_random_uuid()", "bench.account_id(:a)", "bench.account_id(:b)", "NULL", "'USD'",
            ":cents / 100.0", "NULL", STANDARD_TRANSFER_TERMS, "bench.session_id(:a)", "bench.user_id(:a)",
        ];
        // Highest first, so that $1 does not eat the start of $13.
        let text = arguments.iter().enumerate().rev().fold(text, |text, (i, argument)| text.replace(&format!("${}", i + 1), argument));
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// The pgbench transaction: one call of the same function the component calls, with the
/// same argument kinds (fresh key and ids, random wallets, 0.01..1.00 USD).
pub fn pgbench_script(hot: bool, sql: Sql) -> String {
    let pick = if hot {
        "\\set other random(2, 10000)\n\\set hot_first random(0, 1)\n\\set a 1 + :hot_first * (:other - 1)\n\\set b :other + :hot_first * (1 - :other)\n"
    } else {
        "\\set a random(1, 10000)\n\\set b 1 + (:a + random(0, 9998)) % 10000\n"
    };
    format!("{pick}\\set cents random(1, 100)\n{};\n", sql.statement())
}

pub fn uuid(prefix: &str, n: usize) -> String {
    format!("00000000-0000-4000-{prefix}-{n:012}")
}

/// An access token for user `n`, signed as the identity component signs them.
pub fn token(n: usize, secret: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "sub": uuid("9000", n), "sid": uuid("a000", n), "iat": now, "exp": now + 3_600,
            "iss": "wasmpay", "aud": "wasmpay-api", "jti": uuid("b000", n)
        })
        .to_string(),
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What the clients send.
#[derive(Clone, Copy)]
pub enum Workload {
    /// Authenticated `POST /transfers` between random wallets; with `hot`, wallet 1 is on one side of every transfer.
    Transfers { hot: bool },
    /// `GET /transfers/health`: the component and one query on a pooled connection.
    Health,
}

/// Who makes the requests of a run.
#[derive(Clone, Copy)]
enum Runner<'a> {
    /// pgbench calling `ledger.transfer` itself, in the given form (transfers only).
    Pgbench(Sql),
    /// pgbench calling `pgledger_create_transfer` in the pgledger database at this URL: the
    /// yardstick (transfers only).
    Pgledger(&'a str),
    /// The load generator of this process, over HTTP.
    Http(&'a Server),
}

pub struct Measured {
    /// CPU per request, over the whole run (warm-up included): the client side (the runtime serving the requests and
    /// the load generator, or pgbench) and Postgres; `None` where the process is not this one's to watch.
    pub client_cpu_ms: Option<f64>,
    pub server_cpu_ms: Option<f64>,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers in the measured window.
    pub requests: usize,
    /// Requests sent, warm-up included.
    pub sent: usize,
    pub outcomes: BTreeMap<u16, usize>,
    /// Connections Postgres accepted during the run, warm-up included (pg_stat_database.sessions).
    pub connections: i64,
}

impl Measured {
    /// Several runs of one thing as one: rates, latencies and CPU averaged, counts summed.
    fn mean(runs: Vec<Measured>) -> Measured {
        let n = runs.len() as f64;
        let average = |f: fn(&Measured) -> f64| runs.iter().map(f).sum::<f64>() / n;
        let average_cpu = |f: fn(&Measured) -> Option<f64>| runs.iter().map(f).sum::<Option<f64>>().map(|sum| sum / n);
        let mut outcomes = BTreeMap::new();
        for (status, count) in runs.iter().flat_map(|run| &run.outcomes) {
            *outcomes.entry(*status).or_default() += count;
        }
        Measured {
            client_cpu_ms: average_cpu(|m| m.client_cpu_ms),
            server_cpu_ms: average_cpu(|m| m.server_cpu_ms),
            per_sec: average(|m| m.per_sec),
            p50_ms: average(|m| m.p50_ms),
            p99_ms: average(|m| m.p99_ms),
            requests: runs.iter().map(|m| m.requests).sum(),
            sent: runs.iter().map(|m| m.sent).sum(),
            outcomes,
            connections: runs.iter().map(|m| m.connections).sum(),
        }
    }
}

pub async fn http_run(
    server: &Server,
    tokens: Arc<[String]>,
    workload: Workload,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let clients = (0..CLIENTS).map(|c| {
        let authority = server.authority();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(&authority).await?;
            let mut random = Xorshift(0x2545_F491_4F6C_DD1D ^ (c as u64 + 1));
            let mut latencies = Vec::new();
            let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
            let mut sequence = 0u64;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                sequence += 1;
                let reply = match workload {
                    Workload::Transfers { hot } => {
                        let (a, b) = if hot {
                            let other = 2 + random.below(WALLETS - 1);
                            if random.below(2) == 0 { (1, other) } else { (other, 1) }
                        } else {
                            let a = 1 + random.below(WALLETS);
                            (a, 1 + (a + random.below(WALLETS - 1)) % WALLETS)
                        };
                        let cents = 1 + random.below(100);
                        let key = format!("bench-{c}-{sequence}");
                        let authorization = format!("Bearer {}", tokens[a - 1]);
                        let body = json!({
                            "fromAccountId": uuid("8000", a), "toAccountId": uuid("8000", b),
                            "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"
                        });
                        client
                            .send("POST", "/transfers", &[("authorization", &authorization), ("idempotency-key", &key)], Some(&body))
                            .await?
                    }
                    Workload::Health => client.send("GET", "/transfers/health", &[], None).await?,
                };
                if now >= measure_from {
                    latencies.push(reply.latency);
                    *outcomes.entry(reply.status).or_default() += 1;
                }
            }
            anyhow::Ok((latencies, outcomes, sequence as usize))
        })
    });
    // Spawn every client before awaiting any.
    let clients: Vec<_> = clients.collect();
    let mut latencies = Vec::new();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut sent = 0;
    for client in clients {
        let (client_latencies, client_outcomes, client_sent) = client.await??;
        latencies.extend(client_latencies);
        sent += client_sent;
        for (status, n) in client_outcomes {
            *outcomes.entry(status).or_default() += n;
        }
    }
    let (p50_ms, p99_ms, _) = percentiles(&mut latencies);
    Ok(Measured {
        client_cpu_ms: None,
        server_cpu_ms: None,
        per_sec: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms,
        p99_ms,
        requests: latencies.len(),
        sent,
        outcomes,
        connections: 0,
    })
}

/// pgbench running `script` against `database_url` (32 clients, prepared statements);
/// `label` names its scratch directory.
pub fn pgbench_run(platform: &Platform, label: &str, script: &str, database_url: &str, duration: Duration) -> anyhow::Result<Measured> {
    let dir = platform.scratch().join(format!("pgbench-{label}"));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("transfer.sql");
    std::fs::write(&file, script)?;
    // The connection string as the database name: pgbench expands it (host, port, user, password).
    let output = Command::new(cluster::pg_bin_dir()?.join("pgbench"))
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-c", &CLIENTS.to_string(), "-j", "2", "-T"])
        .arg(duration.as_secs().to_string())
        .args(["-l", "--log-prefix", "tx", "-f"])
        .arg(&file)
        .arg(database_url)
        .output()
        .context("cannot run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "pgbench failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let per_sec: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .context("pgbench printed no tps")?
        .parse()?;
    let mut latencies = Vec::new();
    for log in std::fs::read_dir(&dir)? {
        let path = log?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("tx.")) {
            for line in std::fs::read_to_string(&path)?.lines() {
                // client_id transaction_no time_us script_no time_epoch time_us
                if let Some(micros) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                    latencies.push(Duration::from_micros(micros));
                }
            }
            // The next run of the same shape writes its own logs.
            std::fs::remove_file(&path)?;
        }
    }
    let requests = latencies.len();
    let (p50_ms, p99_ms, _) = percentiles(&mut latencies);
    Ok(Measured {
        client_cpu_ms: None,
        server_cpu_ms: None,
        per_sec,
        p50_ms,
        p99_ms,
        requests,
        sent: requests,
        outcomes: BTreeMap::new(),
        connections: 0,
    })
}

/// Counters read before and after a run, to charge it the CPU it used.
struct Usage {
    client: Option<Duration>,
    postgres: Option<Duration>,
    transfers: i64,
    sessions: i64,
}

/// One benchmark run's fixed parts: the database, the wallets' tokens and the timing.
struct Bench<'a> {
    platform: &'a Platform,
    admin: tokio_postgres::Client,
    tokens: Arc<[String]>,
    warmup: Duration,
    duration: Duration,
}

impl Bench<'_> {
    async fn usage(&self, runner: Runner<'_>) -> anyhow::Result<Usage> {
        let (own, children) = cpu::own();
        let client = match runner {
            // pgbench is a child of this process, counted once reaped.
            Runner::Pgbench(_) | Runner::Pgledger(_) => Some(children),
            // The host runs in this process; Spin in a process of its own.
            Runner::Http(server) if server.cpu_visible() => Some(own + server.process_cpu()),
            Runner::Http(_) => None,
        };
        Ok(Usage {
            client,
            postgres: self.platform.postmaster().map(cpu::tree_cpu),
            transfers: transfer_count(&self.admin).await?,
            sessions: self
                .admin
                .query_one("SELECT sessions FROM pg_stat_database WHERE datname = current_database()", &[])
                .await?
                .get(0),
        })
    }

    /// One measured run, its CPU charged per transfer made (warm-up included) or, for the health route, per request.
    async fn run(&self, runner: Runner<'_>, workload: Workload) -> anyhow::Result<Measured> {
        // Start each run from the same state: the previous run's rows vacuumed and analysed (so that autovacuum does
        // not charge them to this run) and clean buffers (so that no checkpoint lands in it: each run is shorter than
        // checkpoint_timeout). Best effort: an external database may not allow it.
        let _ = self.admin.batch_execute("VACUUM ANALYZE").await;
        let _ = self.admin.batch_execute("CHECKPOINT").await;
        let before = self.usage(runner).await?;
        let mut measured = match (runner, workload) {
            (Runner::Pgbench(sql), Workload::Transfers { hot }) => {
                let label = format!("{}-{sql:?}", if hot { "hot" } else { "uniform" });
                pgbench_run(self.platform, &label, &pgbench_script(hot, sql), &self.platform.database_url, self.duration)?
            }
            (Runner::Pgledger(url), Workload::Transfers { hot }) => {
                let _ = postgres::connect(url).await?.batch_execute("VACUUM ANALYZE").await;
                let label = format!("pgledger-{}", if hot { "hot" } else { "uniform" });
                pgbench_run(self.platform, &label, &crate::pgledger::script(hot), url, self.duration)?
            }
            (Runner::Pgbench(_) | Runner::Pgledger(_), Workload::Health) => anyhow::bail!("pgbench has no health route"),
            (Runner::Http(server), _) => http_run(server, self.tokens.clone(), workload, self.warmup, self.duration)
                .await
                .map_err(|e| match server.output() {
                    Some(output) => e.context(format!("{} printed:\n{output}", server.name)),
                    None => e,
                })?,
        };
        let after = self.usage(runner).await?;
        let count = match (runner, workload) {
            // pgledger's transfers are in its own database: pgbench's transactions count them.
            (Runner::Pgledger(_), _) => measured.requests as f64,
            (_, Workload::Transfers { .. }) => (after.transfers - before.transfers) as f64,
            (_, Workload::Health) => measured.sent as f64,
        };
        let per = |b: Option<Duration>, a: Option<Duration>| Some((a? - b?).as_secs_f64() * 1_000.0 / count);
        measured.client_cpu_ms = per(before.client, after.client);
        measured.server_cpu_ms = per(before.postgres, after.postgres);
        measured.connections = after.sessions - before.sessions;
        Ok(measured)
    }
}

async fn statements_per_transfer(admin: &tokio_postgres::Client) -> anyhow::Result<Vec<(String, f64)>> {
    let transfers: i64 = admin
        .query_one("SELECT calls FROM pg_stat_statements WHERE query LIKE '%FROM ledger.transfer(%' ORDER BY calls DESC LIMIT 1", &[])
        .await?
        .get(0);
    let rows = admin
        .query(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls FROM pg_stat_statements
             WHERE calls >= $1::int8 / 2 AND toplevel ORDER BY calls DESC",
            &[&transfers],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as f64 / transfers as f64)).collect())
}

/// Where Postgres spends a transfer: one pgbench run of the bare `ledger.transfer`
/// (uniform), with nested statements tracked (pg_stat_statements.track = all) and the
/// PL/pgSQL functions' own time (track_functions = all) — set for this run's sessions only,
/// since tracking costs time — and the WAL and rows it wrote, all per transfer. Printed as
/// Markdown tables.
async fn postgres_profile(bench: &Bench<'_>) -> anyhow::Result<()> {
    println!("\n## Where Postgres spends a transfer (pgbench, bare ledger.transfer, uniform)");
    let admin = &bench.admin;
    admin
        .batch_execute(
            "ALTER DATABASE bench SET pg_stat_statements.track = 'all';
             ALTER DATABASE bench SET track_functions = 'all';",
        )
        .await?;
    admin.batch_execute("VACUUM ANALYZE").await?;
    admin.batch_execute("CHECKPOINT").await?;
    admin
        .batch_execute("SELECT pg_stat_statements_reset(); SELECT pg_stat_reset(); SELECT pg_stat_reset_shared('wal');")
        .await?;
    let before = transfer_count(admin).await?;
    let measured = pgbench_run(bench.platform, "profile", &pgbench_script(false, Sql::Bare), &bench.platform.database_url, bench.duration)?;
    report("pgbench, Bare, tracking on", &measured);
    // Backends flush their statistics when they exit; pgbench's have.
    admin.batch_execute("SELECT pg_stat_force_next_flush()").await.ok();
    let transfers = (transfer_count(admin).await? - before) as f64;
    ensure!(transfers > 0.0, "the profiling run made no transfer");

    println!("\n| statement (top level or nested) | calls per transfer | ms per transfer (incl. nested) |\n| --- | --- | --- |");
    let statements = admin
        .query(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls::float8, total_exec_time
             FROM pg_stat_statements
             WHERE calls::float8 >= $1::float8 / 2 AND query NOT LIKE '%pg_stat%'
             ORDER BY total_exec_time DESC LIMIT 20",
            &[&transfers],
        )
        .await?;
    for row in &statements {
        let (query, calls, time): (String, f64, f64) = (row.get(0), row.get(1), row.get(2));
        println!("| `{}` | {:.2} | {:.3} |", query.replace('|', "\\|"), calls / transfers, time / transfers);
    }

    println!("\n| function | calls per transfer | own ms per transfer |\n| --- | --- | --- |");
    let functions = admin
        .query(
            "SELECT schemaname || '.' || funcname, calls::float8, self_time FROM pg_stat_user_functions ORDER BY self_time DESC",
            &[],
        )
        .await?;
    for row in &functions {
        let (name, calls, time): (String, f64, f64) = (row.get(0), row.get(1), row.get(2));
        println!("| `{name}` | {:.2} | {:.3} |", calls / transfers, time / transfers);
    }

    println!("\n| table | rows inserted | updated (HOT) | deleted | indexes | index entries written | per transfer |\n| --- | --- | --- | --- | --- | --- | --- |");
    let tables = admin
        .query(
            "SELECT t.schemaname || '.' || t.relname, t.n_tup_ins::float8, t.n_tup_upd::float8, t.n_tup_hot_upd::float8,
                    t.n_tup_del::float8, (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid)::float8
             FROM pg_stat_user_tables t
             WHERE t.n_tup_ins + t.n_tup_upd + t.n_tup_del > 0
             ORDER BY 1",
            &[],
        )
        .await?;
    let (mut rows_written, mut entries_written) = (0.0, 0.0);
    for row in &tables {
        let (name, ins, upd, hot, del, indexes): (String, f64, f64, f64, f64, f64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        // An insert and a non-HOT update add an entry to every index of the table.
        let entries = (ins + upd - hot) * indexes;
        rows_written += ins + upd + del;
        entries_written += entries;
        println!(
            "| `{name}` | {:.2} | {:.2} ({:.2}) | {:.2} | {indexes} | {:.2} | |",
            ins / transfers,
            upd / transfers,
            hot / transfers,
            del / transfers,
            entries / transfers
        );
    }
    println!(
        "| all | | | | | | {:.2} rows, {:.2} index entries |",
        rows_written / transfers,
        entries_written / transfers
    );

    let wal = admin.query_one("SELECT wal_records::float8, wal_fpi::float8, wal_bytes::float8 FROM pg_stat_wal", &[]).await?;
    let (records, fpi, bytes): (f64, f64, f64) = (wal.get(0), wal.get(1), wal.get(2));
    println!(
        "\nWAL per transfer: {:.0} bytes in {:.1} records ({:.2} full-page images), over {transfers:.0} transfers",
        bytes / transfers,
        records / transfers,
        fpi / transfers
    );
    Ok(())
}

async fn transfer_count(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'", &[]).await?.get(0))
}

async fn invariants(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let broken: i64 = client.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
    ensure!(broken == 0, "the books do not balance after the run");
    Ok(())
}

/// Seeds the wallets, unless an earlier run against the same database did (each run vacuums and analyses first).
pub async fn seed(admin: &tokio_postgres::Client) -> anyhow::Result<()> {
    let seeded: bool = admin.query_one("SELECT to_regnamespace('bench') IS NOT NULL", &[]).await?.get(0);
    if seeded {
        println!("the bench wallets exist in this database already (schema bench): reusing them");
    } else {
        admin
            .batch_execute(&SEED.replace("$WALLETS", &WALLETS.to_string()))
            .await
            .context("seeding failed (is the database migrated?)")?;
    }
    Ok(())
}

fn milliseconds(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.3} ms"))
}

fn report(label: &str, m: &Measured) {
    println!(
        "{label:<44} {:>6.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   CPU/request: client side {}, postgres {}   \
         ({} requests{}, {} new connections)",
        m.per_sec,
        m.p50_ms,
        m.p99_ms,
        milliseconds(m.client_cpu_ms),
        milliseconds(m.server_cpu_ms),
        m.requests,
        if m.outcomes.is_empty() { String::new() } else { format!(", statuses {:?}", m.outcomes) },
        m.connections
    );
    // 422 is a transfer refused for insufficient funds (the hot case may see a few); anything else is a failure.
    let failed: usize = m.outcomes.iter().filter(|(status, _)| !matches!(status, 200 | 201 | 422)).map(|(_, n)| n).sum();
    if failed > 0 {
        println!("  WARNING: {failed} requests failed (statuses above): these figures do not measure the intended work");
    }
    if m.outcomes.contains_key(&401) {
        println!("  (401: the server rejects the bench's access tokens: with --target-url, is --jwt-secret its jwt_secret?)");
    }
}

/// One row of the summary.
struct Row {
    case: &'static str,
    /// The runtime, `pgledger` for the yardstick, or `None` for pgbench on `ledger.transfer`.
    server: Option<String>,
    measured: Measured,
}

impl Row {
    fn http(case: &'static str, server: &Server, measured: Measured) -> Self {
        Self {
            case,
            server: Some(server.name.clone()),
            measured,
        }
    }
}

pub struct Options {
    pub seconds: u64,
    pub pin: bool,
    /// An external server (http://host:port) to measure instead of starting Spin and the host.
    pub target_url: Option<String>,
    /// The database that external server uses.
    pub database_url: Option<String>,
    /// That server's jwt_secret (default: the one the servers started here get).
    pub jwt_secret: Option<String>,
}

/// The last commit whose components were WASIp2 (spin-sdk 5.2: a fresh instance and a reset
/// pooled connection per request under Spin), measured beside this checkout's WASIp3 build.
pub const WASIP2_COMMIT: &str = "f117abb";

/// The API components of [`WASIP2_COMMIT`] (built in a worktree) with this checkout's web
/// component and policy plugins, under that commit's manifest; the database schema is the same.
fn wasip2_build(platform: &Platform) -> anyhow::Result<Build> {
    let built = worktree::build(platform.scratch(), WASIP2_COMMIT, &["identity", "accounts", "transfers"], "bench-wasip2")?;
    let mut component_sources = built.components;
    component_sources.insert("web".into(), paths::component("web"));
    Ok(Build {
        manifest: built.manifest,
        component_sources,
        dependency_sources: paths::policy_slot_sources(),
        instance_flags: Vec::new(),
    })
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let seconds = options.seconds;
    let platform = match &options.database_url {
        Some(url) => Platform::external(url)?,
        None => Platform::start(&[("max_transfer_amount", "*=1000000")]).await?,
    };
    if options.pin {
        cpu::pin_server(platform.postmaster().context("--pin needs the cluster this process starts")?, 0)?;
    }
    println!(
        "# transfers: {WALLETS} wallets, {CLIENTS} clients, {seconds} s per run after 3 s of warm-up (HTTP){}",
        match &options.target_url {
            Some(url) => format!(", against {url} and its database"),
            None if options.pin => ", Postgres pinned to core 0, the rest to core 1".to_owned(),
            None => ", all on 2 shared cores".to_owned(),
        }
    );
    let admin = postgres::connect(&platform.database_url).await?;
    seed(&admin).await?;
    // The yardstick every figure is also a ratio to, measured in this same run.
    let pgledger = match crate::pgledger::anchor() {
        Some(dir) if platform.cluster.is_some() => {
            println!("pgledger (the yardstick): {} loaded into database pgledger", dir.display());
            Some(crate::pgledger::load(&platform, &dir).await?)
        }
        Some(_) => {
            println!("*** pgledger is loaded only into a cluster this run starts: no pgledger figures with --database-url ***");
            None
        }
        None => {
            println!("*** pgledger not found (../shared/anchors/pgledger, or $PGLEDGER_DIR): the pgledger runs are SKIPPED ***");
            None
        }
    };
    let statements = admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()")
        .await
        .is_ok();
    if !statements {
        println!("(pg_stat_statements is not loaded in this database's server: no statement counts)");
    }

    // The servers under test, Spin first: its figures are the headline.
    let mut servers = Vec::new();
    let mut wasip2_beside = false;
    let mut spin_missing = false;
    match &options.target_url {
        Some(url) => {
            let server = Server::external(url)?;
            Client::connect(&server.authority()).await.context("the target does not accept connections")?;
            servers.push(server);
        }
        None => {
            match spin::binary().filter(|binary| binary.is_file()) {
                Some(binary) => {
                    let version = Command::new(&binary).arg("--version").output();
                    let version = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
                    let server = platform.serve(Runtime::Spin).await?;
                    println!(
                        "Spin: {} ({}), spin up pid {}",
                        binary.display(),
                        version.unwrap_or_else(|e| format!("no version: {e}")),
                        server.pid().unwrap_or_default()
                    );
                    servers.push(server);
                    wasip2_beside = true;
                    let mut wasip2 = platform.serve_build(Runtime::Spin, wasip2_build(&platform)?, &[]).await?;
                    wasip2.name = format!("Spin, WASIp2 build ({WASIP2_COMMIT})");
                    println!("{}: spin up pid {}", wasip2.name, wasip2.pid().unwrap_or_default());
                    servers.push(wasip2);
                }
                None => {
                    spin_missing = true;
                    let spin = std::env::var("SPIN").map_or_else(|_| String::new(), |p| format!(" ($SPIN={p} is no file)"));
                    println!("*** Spin CLI not found ($SPIN, PATH, ../shared/bin/spin){spin}: the Spin runs are SKIPPED ***");
                }
            }
            servers.push(platform.serve(Runtime::Host).await?);
        }
    }
    if options.pin {
        for server in &servers {
            if let Some(pid) = server.pid() {
                // Started by this process once pinned: its processes and threads inherited core 1.
                for pid in cpu::tree(pid) {
                    let cores = cpu::allowed_cores(pid).unwrap_or_default();
                    ensure!(cores == "1", "{} (pid {pid}) may run on cores {cores}, not only on core 1", server.name);
                }
                println!("{} (pid {pid} and its children) runs on core 1, with the load generator", server.name);
            }
        }
    }

    let secret = options.jwt_secret.as_deref().unwrap_or(JWT_SECRET);
    let bench = Bench {
        platform: &platform,
        tokens: (1..=WALLETS).map(|n| token(n, secret)).collect(),
        admin,
        warmup: Duration::from_secs(3),
        duration: Duration::from_secs(seconds),
    };

    let mut rows = Vec::new();
    for hot in [false, true] {
        let case = if hot { "hot wallet" } else { "uniform" };
        let workload = Workload::Transfers { hot };
        println!("\n## POST /transfers, {case}");
        let (yardstick, raw) = match &pgledger {
            // The machine's speed drifts between runs by more than the ratio's margin (pgledger's rate has moved by
            // a third between runs of one morning): the yardstick and ledger.transfer run in the order A B B A and
            // are compared by their means, so that both see the same drift.
            Some(url) => {
                let (mut yardstick, mut raw) = (Vec::new(), Vec::new());
                for runner in [Runner::Pgledger(url), Runner::Pgbench(Sql::Bare), Runner::Pgbench(Sql::Bare), Runner::Pgledger(url)] {
                    let measured = bench.run(runner, workload).await?;
                    let (label, runs) = match runner {
                        Runner::Pgledger(_) => ("pgledger_create_transfer", &mut yardstick),
                        _ => ("ledger.transfer", &mut raw),
                    };
                    report(&format!("pgbench {label}, {case}, round {}", runs.len() + 1), &measured);
                    runs.push(measured);
                }
                let (yardstick, raw) = (Measured::mean(yardstick), Measured::mean(raw));
                report(&format!("pgbench pgledger_create_transfer, {case}, mean"), &yardstick);
                report(&format!("pgbench ledger.transfer, {case}, mean"), &raw);
                (Some(yardstick), raw)
            }
            None => {
                let raw = bench.run(Runner::Pgbench(Sql::Bare), workload).await?;
                report(&format!("pgbench ledger.transfer, {case}"), &raw);
                (None, raw)
            }
        };
        // The first server measured after pgbench meets a colder database: with the WASIp2
        // build beside this one, the two Spin builds run in the order A B B A and their means
        // are compared, as pgledger and ledger.transfer are.
        let order: Vec<usize> = if wasip2_beside { vec![0, 1, 1, 0, 2] } else { (0..servers.len()).collect() };
        let mut runs: Vec<Vec<Measured>> = servers.iter().map(|_| Vec::new()).collect();
        for index in order {
            let server = &servers[index];
            if statements {
                bench.admin.batch_execute("SELECT pg_stat_statements_reset()").await?;
            }
            let measured = bench.run(Runner::Http(server), workload).await?;
            report(&format!("POST /transfers under {}, {case}, round {}", server.name, runs[index].len() + 1), &measured);
            if statements && !hot && runs[index].is_empty() {
                println!("  statements per HTTP transfer under {} (pg_stat_statements):", server.name);
                for (statement, per_transfer) in statements_per_transfer(&bench.admin).await? {
                    println!("    {per_transfer:>5.2}  {statement}");
                }
            }
            runs[index].push(measured);
        }
        let http: Vec<Measured> = runs.into_iter().map(Measured::mean).collect();
        for (server, measured) in servers.iter().zip(&http) {
            report(&format!("POST /transfers under {}, {case}, mean", server.name), measured);
        }
        invariants(&bench.admin).await?;
        for (server, measured) in servers.iter().zip(&http) {
            println!("ratio to pgbench ({case}), {}: {:.2}x", server.name, measured.per_sec / raw.per_sec);
        }
        if let Some(pgledger) = &yardstick {
            println!("ratio to pgledger ({case}), pgbench ledger.transfer: {:.2}x", raw.per_sec / pgledger.per_sec);
            for (server, measured) in servers.iter().zip(&http) {
                println!("ratio to pgledger ({case}), {}: {:.2}x", server.name, measured.per_sec / pgledger.per_sec);
            }
        }
        print_spin_to_host(&servers, &http);
        if let Some(measured) = yardstick {
            rows.push(Row { case, server: Some(PGLEDGER.to_owned()), measured });
        }
        rows.push(Row { case, server: None, measured: raw });
        rows.extend(servers.iter().zip(http).map(|(server, measured)| Row::http(case, server, measured)));
    }

    println!("\n## GET /transfers/health");
    let mut health = Vec::new();
    for server in &servers {
        let measured = bench.run(Runner::Http(server), Workload::Health).await?;
        report(&format!("GET /transfers/health under {}", server.name), &measured);
        health.push(measured);
    }
    print_spin_to_host(&servers, &health);
    rows.extend(servers.iter().zip(health).map(|(server, measured)| Row::http("health", server, measured)));

    statement_shapes(&bench).await?;
    if options.database_url.is_none() {
        notify_cost(&bench).await?;
        payload_sizes(&bench.admin).await?;
        postgres_profile(&bench).await?;
    }
    summary(&rows, spin_missing);
    Ok(())
}

/// What the components' statement form costs Postgres: pgbench (uniform) on the bare call
/// and on the call with the session check as `db::Query` wraps it, in two rounds of opposite
/// order so that neither shape gets the fresher database.
async fn statement_shapes(bench: &Bench<'_>) -> anyhow::Result<()> {
    println!("\n## ledger.transfer as the components send it (pgbench, uniform; rounds A B, then B A)");
    let shapes = [Sql::Bare, Sql::ForCaller];
    let mut per_sec = [0.0; 2];
    for round in [[0, 1], [1, 0]] {
        for shape in round {
            let measured = bench.run(Runner::Pgbench(shapes[shape]), Workload::Transfers { hot: false }).await?;
            report(&format!("pgbench, {:?}", shapes[shape]), &measured);
            per_sec[shape] += measured.per_sec / 2.0;
        }
    }
    println!(
        "mean of both rounds: Bare {:.0}/s, ForCaller {:.0}/s ({:.3}x)",
        per_sec[0],
        per_sec[1],
        per_sec[1] / per_sec[0]
    );
    Ok(())
}

/// What the relay's wake-up costs: pgbench (uniform) on the bare call with the outbox's
/// statement trigger as a listening relay makes it (every writer notifies, as every writer
/// did before V10), as a polling relay makes it (none does), and disabled, in two rounds of
/// opposite order. A notifying transaction takes a cluster-wide lock at commit and holds it
/// through its WAL flush, so notifying commits cannot share a flush.
async fn notify_cost(bench: &Bench<'_>) -> anyhow::Result<()> {
    const MODES: [(&str, Option<bool>); 3] = [("relay listening", Some(true)), ("relay polling", Some(false)), ("trigger off", None)];
    println!("\n## The outbox's NOTIFY (pgbench, bare ledger.transfer, uniform; rounds in one order, then the other)");
    let mut per_sec = [0.0; MODES.len()];
    for round in [[0, 1, 2], [2, 1, 0]] {
        for mode in round {
            let (label, listening) = MODES[mode];
            match listening {
                Some(listening) => {
                    bench.admin.execute("UPDATE outbox.relay_wakeup SET listening = $1", &[&listening]).await?;
                }
                None => bench.admin.batch_execute("ALTER TABLE outbox.events DISABLE TRIGGER events_wake_relay").await?,
            }
            let measured = bench.run(Runner::Pgbench(Sql::Bare), Workload::Transfers { hot: false }).await;
            bench
                .admin
                .batch_execute("ALTER TABLE outbox.events ENABLE TRIGGER events_wake_relay; UPDATE outbox.relay_wakeup SET listening = false")
                .await?;
            let measured = measured?;
            report(&format!("pgbench, Bare, {label}"), &measured);
            per_sec[mode] += measured.per_sec / 2.0;
        }
    }
    let shown: Vec<String> = MODES
        .iter()
        .zip(per_sec)
        .map(|((label, _), rate)| format!("{label} {rate:.0}/s ({:.3}x of trigger off)", rate / per_sec[2]))
        .collect();
    println!("mean of both rounds: {}", shown.join(", "));
    Ok(())
}

/// Whether the JSON a posting stores is large enough to be TOASTed (Postgres moves a value
/// out of line when its row would pass about 2 kB): the sizes of the outbox payloads and of
/// the stored idempotent responses, and their tables' TOAST sizes.
async fn payload_sizes(admin: &tokio_postgres::Client) -> anyhow::Result<()> {
    println!("\n## Stored JSON per transfer (TOAST)");
    for (what, table, column, which) in [
        ("outbox payload of ledger events", "outbox.events", "payload", "aggregate_type = 'ledger'"),
        ("stored response of idempotency keys", "ledger.idempotency_keys", "body", "body IS NOT NULL"),
    ] {
        let sql = format!(
            "SELECT avg(pg_column_size({column}))::float8, max(pg_column_size({column}))::float8,
                    count(*) FILTER (WHERE pg_column_size({column}) > 2000)::float8, count(*)::float8,
                    pg_relation_size((SELECT reltoastrelid FROM pg_class WHERE oid = '{table}'::regclass))::float8
             FROM {table} WHERE {which}"
        );
        let row = admin.query_one(&sql, &[]).await?;
        let (mean, max, over, rows, toast): (Option<f64>, Option<f64>, f64, f64, f64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        println!(
            "{what}: {:.0} bytes on average, {:.0} at most, {over:.0} of {rows:.0} over 2,000 bytes; TOAST table {toast:.0} bytes",
            mean.unwrap_or_default(),
            max.unwrap_or_default()
        );
    }
    Ok(())
}

/// Spin's figures over the host's, when both ran.
fn print_spin_to_host(servers: &[Server], measured: &[Measured]) {
    let of = |name: &str| servers.iter().position(|s| s.name == name).map(|i| &measured[i]);
    if let (Some(spin), Some(host)) = (of("Spin"), of("wasmpay-host")) {
        println!(
            "Spin / wasmpay-host: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            spin.per_sec / host.per_sec,
            spin.p50_ms / host.p50_ms,
            spin.p99_ms / host.p99_ms
        );
    }
}

fn summary(rows: &[Row], spin_missing: bool) {
    let find = |case: &str, server: Option<&str>| {
        rows.iter().find(|r| r.case == case && r.server.as_deref() == server).map(|r| &r.measured)
    };
    println!("\n## Summary");
    if let (Some(uniform), Some(hot)) = (find("uniform", Some(PGLEDGER)), find("hot wallet", Some(PGLEDGER))) {
        let ratio = |case, server| find(case, server).map_or(f64::NAN, |m| m.per_sec) / find(case, Some(PGLEDGER)).unwrap().per_sec;
        println!(
            "Against pgledger in this run ({:.0}/s uniform, {:.0}/s hot): pgbench ledger.transfer {:.2}x uniform, {:.2}x hot; \
             POST /transfers under Spin {:.2}x uniform, {:.2}x hot",
            uniform.per_sec,
            hot.per_sec,
            ratio("uniform", None),
            ratio("hot wallet", None),
            ratio("uniform", Some("Spin")),
            ratio("hot wallet", Some("Spin"))
        );
    }
    match (find("uniform", Some("Spin")), find("hot wallet", Some("Spin")), find("health", Some("Spin"))) {
        (Some(uniform), Some(hot), Some(health)) => {
            let raw = |case| find(case, None).map_or(f64::NAN, |m| m.per_sec);
            println!(
                "Headline, under Spin: POST /transfers {:.0}/s uniform ({:.2}x pgbench), {:.0}/s hot wallet ({:.2}x pgbench); \
                 GET /transfers/health {:.0}/s, p99 {:.1} ms",
                uniform.per_sec,
                uniform.per_sec / raw("uniform"),
                hot.per_sec,
                hot.per_sec / raw("hot wallet"),
                health.per_sec,
                health.p99_ms
            );
        }
        _ if spin_missing => println!("No Spin figures: the Spin CLI was not found (set $SPIN or put spin on PATH)."),
        _ => {}
    }
    println!(
        "\n| case | measured | req/s | p50 / p99 | ratio to pgledger | ratio to pgbench | Spin / host | CPU per request: client side / Postgres |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for row in rows {
        let m = &row.measured;
        let what = match (&row.server, row.case) {
            (None, _) => "pgbench `ledger.transfer`".to_owned(),
            (Some(server), _) if server == PGLEDGER => "pgbench `pgledger_create_transfer`".to_owned(),
            (Some(server), "health") => format!("{server} `GET /transfers/health`"),
            (Some(server), _) => format!("{server} `POST /transfers`"),
        };
        let to_raw = match (&row.server, find(row.case, None)) {
            (Some(server), Some(raw)) if server != PGLEDGER => format!("{:.2}×", m.per_sec / raw.per_sec),
            _ => "".to_owned(),
        };
        let to_pgledger = match (&row.server, find(row.case, Some(PGLEDGER))) {
            (Some(server), _) if server == PGLEDGER => "".to_owned(),
            (_, Some(yardstick)) => format!("{:.2}×", m.per_sec / yardstick.per_sec),
            _ => "".to_owned(),
        };
        let to_host = match (row.server.as_deref(), find(row.case, Some("wasmpay-host"))) {
            (Some("Spin"), Some(host)) => format!("{:.2}×", m.per_sec / host.per_sec),
            _ => "".to_owned(),
        };
        let cpu = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.2}"));
        println!(
            "| {} | {what} | {:.0}/s | {:.1} / {:.1} ms | {to_pgledger} | {to_raw} | {to_host} | {} / {} ms |",
            row.case,
            m.per_sec,
            m.p50_ms,
            m.p99_ms,
            cpu(m.client_cpu_ms),
            cpu(m.server_cpu_ms)
        );
    }
}
