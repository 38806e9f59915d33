//! Transfer throughput: authenticated `POST /transfers` through the host at 32 concurrent
//! clients over 10,000 funded wallets, against the raw-SQL limit — the engine's own
//! `ledger.transfer` driven by pgbench on the same database in the same run — uniformly
//! and with one hot wallet in every transfer.

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use wasmpay_test_support::{cluster, postgres};

use crate::{
    client::{Client, percentiles},
    cpu,
    platform::{JWT_SECRET, Platform},
};

pub const WALLETS: usize = 10_000;
pub const CLIENTS: usize = 32;

/// Deterministic ids, so the HTTP clients and pgbench name the same wallets.
const SEED: &str = r#"
CREATE SCHEMA bench;
CREATE FUNCTION bench.account_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid $$;
CREATE FUNCTION bench.user_id(n int) RETURNS uuid LANGUAGE sql IMMUTABLE AS
    $$ SELECT ('00000000-0000-4000-9000-' || lpad(n::text, 12, '0'))::uuid $$;
INSERT INTO identity.users (id, email, email_key, full_name, password_hash, email_verified_at)
SELECT bench.user_id(n), 'user' || n || '@bench.example', 'user' || n || '@bench.example', 'User ' || n,
       '$2b$04$benchbenchbenchbenchbeOkTq0sS1hCHXxEnW4YbAZ8OjwLPTcTq', now() AT TIME ZONE 'UTC'
FROM generate_series(1, $WALLETS) n;
INSERT INTO accounts.accounts (id, kind, currency, scale) VALUES (gen_random_uuid(), 'settlement', 'USD', 2);
INSERT INTO accounts.accounts (id, kind, owner_id, currency, scale)
SELECT bench.account_id(n), 'user', bench.user_id(n), 'USD', 2 FROM generate_series(1, $WALLETS) n;
-- Fund through the engine, so the books balance from the start.
SELECT count(*) FROM generate_series(1, $WALLETS) n,
    LATERAL ledger.settle('deposit', bench.user_id(n), 'seed-' || n, sha256(convert_to('seed-' || n, 'UTF8')), 86400,
                          gen_random_uuid(), gen_random_uuid(), bench.account_id(n),
                          CASE WHEN n = 1 THEN 100000000 ELSE 100000 END, '{}');
CREATE EXTENSION pg_stat_statements;
"#;

/// The pgbench transaction: one call of the same function the component calls, with the
/// same argument kinds (fresh key and ids, random wallets, 0.01..1.00 USD).
fn pgbench_script(hot: bool) -> String {
    let pick = if hot {
        "\\set other random(2, 10000)\n\\set hot_first random(0, 1)\n\\set a 1 + :hot_first * (:other - 1)\n\\set b :other + :hot_first * (1 - :other)\n"
    } else {
        "\\set a random(1, 10000)\n\\set b 1 + (:a + random(0, 9998)) % 10000\n"
    };
    format!(
        "{pick}\\set cents random(1, 100)\n\
         SELECT status FROM ledger.transfer(bench.user_id(:a), gen_random_uuid()::text, sha256(convert_to(:a || '-' || :b, 'UTF8')), 86400, \
         gen_random_uuid(), gen_random_uuid(), bench.account_id(:a), bench.account_id(:b), NULL, 'USD', :cents / 100.0, NULL);\n"
    )
}

fn uuid(prefix: &str, n: usize) -> String {
    format!("00000000-0000-4000-{prefix}-{n:012}")
}

/// An access token for user `n`, signed as the identity component signs them.
fn token(n: usize) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "sub": uuid("9000", n), "sid": uuid("a000", n), "iat": now, "exp": now + 3_600,
            "iss": "wasmpay", "aud": "wasmpay-api", "jti": uuid("b000", n)
        })
        .to_string(),
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("any key length");
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

pub struct Measured {
    /// CPU per transfer: the client side (host and load generator, or pgbench) and Postgres.
    pub client_cpu_ms: f64,
    pub server_cpu_ms: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: usize,
    pub outcomes: BTreeMap<u16, usize>,
}

async fn http_run(platform: &Platform, tokens: &[String], hot: bool, warmup: Duration, duration: Duration) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let clients = (0..CLIENTS).map(|c| {
        let authority = platform.authority();
        let tokens = tokens.to_vec();
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
                let (a, b) = if hot {
                    let other = 2 + random.below(WALLETS - 1);
                    if random.below(2) == 0 { (1, other) } else { (other, 1) }
                } else {
                    let a = 1 + random.below(WALLETS);
                    (a, 1 + (a + random.below(WALLETS - 1)) % WALLETS)
                };
                let cents = 1 + random.below(100);
                sequence += 1;
                let key = format!("bench-{c}-{sequence}");
                let authorization = format!("Bearer {}", tokens[a - 1]);
                let body = json!({
                    "fromAccountId": uuid("8000", a), "toAccountId": uuid("8000", b),
                    "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"
                });
                let reply = client
                    .send("POST", "/transfers", &[("authorization", &authorization), ("idempotency-key", &key)], Some(&body))
                    .await?;
                if now >= measure_from {
                    latencies.push(reply.latency);
                    *outcomes.entry(reply.status).or_default() += 1;
                }
            }
            anyhow::Ok((latencies, outcomes))
        })
    });
    // Spawn every client before awaiting any.
    let clients: Vec<_> = clients.collect();
    let mut latencies = Vec::new();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for client in clients {
        let (client_latencies, client_outcomes) = client.await??;
        latencies.extend(client_latencies);
        for (status, n) in client_outcomes {
            *outcomes.entry(status).or_default() += n;
        }
    }
    let (p50_ms, p99_ms, _) = percentiles(&mut latencies);
    Ok(Measured {
        client_cpu_ms: 0.0,
        server_cpu_ms: 0.0,
        per_sec: latencies.len() as f64 / duration.as_secs_f64(),
        p50_ms,
        p99_ms,
        requests: latencies.len(),
        outcomes,
    })
}

fn pgbench_run(platform: &Platform, hot: bool, duration: Duration) -> anyhow::Result<Measured> {
    let dir = platform.cluster.dir().join(if hot { "pgbench-hot" } else { "pgbench-uniform" });
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("transfer.sql");
    std::fs::write(&script, pgbench_script(hot))?;
    let output = Command::new(cluster::pg_bin_dir()?.join("pgbench"))
        .current_dir(&dir)
        .args(["-n", "-M", "prepared", "-c", &CLIENTS.to_string(), "-j", "2", "-T"])
        .arg(duration.as_secs().to_string())
        .args(["-l", "--log-prefix", "tx", "-f"])
        .arg(&script)
        .args(["-h", "127.0.0.1", "-p", &platform.cluster.port().to_string(), "-U", "postgres", "bench"])
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
        }
    }
    let requests = latencies.len();
    let (p50_ms, p99_ms, _) = percentiles(&mut latencies);
    Ok(Measured {
        client_cpu_ms: 0.0,
        server_cpu_ms: 0.0,
        per_sec,
        p50_ms,
        p99_ms,
        requests,
        outcomes: BTreeMap::new(),
    })
}

async fn statements_per_transfer(database_url: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let client = postgres::connect(database_url).await?;
    let transfers: i64 = client
        .query_one("SELECT calls FROM pg_stat_statements WHERE query LIKE '%FROM ledger.transfer(%' ORDER BY calls DESC LIMIT 1", &[])
        .await?
        .get(0);
    let rows = client
        .query(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls FROM pg_stat_statements
             WHERE calls >= $1::int8 / 2 AND toplevel ORDER BY calls DESC",
            &[&transfers],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as f64 / transfers as f64)).collect())
}

async fn transfer_count(client: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(client.query_one("SELECT count(*) FROM ledger.transfers WHERE kind = 'transfer'", &[]).await?.get(0))
}

async fn invariants(database_url: &str) -> anyhow::Result<()> {
    let client = postgres::connect(database_url).await?;
    let broken: i64 = client.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
    ensure!(broken == 0, "the books do not balance after the run");
    Ok(())
}

fn report(label: &str, m: &Measured) {
    println!(
        "{label:<34} {:>6.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   CPU/transfer: client {:.3} ms, postgres {:.3} ms   ({} transfers{})",
        m.per_sec,
        m.p50_ms,
        m.p99_ms,
        m.client_cpu_ms,
        m.server_cpu_ms,
        m.requests,
        if m.outcomes.is_empty() { String::new() } else { format!(", statuses {:?}", m.outcomes) }
    );
}

pub async fn run(seconds: u64, pin: bool) -> anyhow::Result<()> {
    let platform = Platform::start(&[("max_transfer_amount", "*=1000000")]).await?;
    if pin {
        cpu::pin_server(platform.cluster.pid(), 0)?;
    }
    println!(
        "# transfers: {WALLETS} wallets, {CLIENTS} clients, {seconds} s per run{}",
        if pin { ", Postgres pinned to core 0, the rest to core 1" } else { ", all on 2 shared cores" }
    );
    let admin = postgres::connect(&platform.database_url).await?;
    admin
        .batch_execute(&SEED.replace("$WALLETS", &WALLETS.to_string()))
        .await
        .context("seeding failed")?;
    admin.batch_execute("VACUUM ANALYZE").await?;
    let tokens: Vec<String> = (1..=WALLETS).map(token).collect();
    let duration = Duration::from_secs(seconds);
    let warmup = Duration::from_secs(3);

    let mut rows = Vec::new();
    for hot in [false, true] {
        let case = if hot { "hot wallet" } else { "uniform" };
        admin.batch_execute("SELECT pg_stat_statements_reset()").await?;
        let postmaster = platform.cluster.pid();
        // CPU is counted over the whole run, warm-up included, divided by every transfer made.
        let (own_before, _) = cpu::own();
        let server_before = cpu::server(postmaster);
        let transfers_before = transfer_count(&admin).await?;
        let mut http = http_run(&platform, &tokens, hot, warmup, duration).await?;
        let made = (transfer_count(&admin).await? - transfers_before) as f64;
        http.client_cpu_ms = (cpu::own().0 - own_before).as_secs_f64() * 1_000.0 / made;
        http.server_cpu_ms = (cpu::server(postmaster) - server_before).as_secs_f64() * 1_000.0 / made;
        let statements = statements_per_transfer(&platform.database_url).await?;
        let (_, children_before) = cpu::own();
        let server_before = cpu::server(postmaster);
        let transfers_before = transfer_count(&admin).await?;
        let mut raw = pgbench_run(&platform, hot, duration)?;
        let made = (transfer_count(&admin).await? - transfers_before) as f64;
        raw.client_cpu_ms = (cpu::own().1 - children_before).as_secs_f64() * 1_000.0 / made;
        raw.server_cpu_ms = (cpu::server(postmaster) - server_before).as_secs_f64() * 1_000.0 / made;
        invariants(&platform.database_url).await?;
        report(&format!("POST /transfers, {case}"), &http);
        report(&format!("pgbench ledger.transfer, {case}"), &raw);
        println!("ratio to the raw-SQL limit: {:.2}x", http.per_sec / raw.per_sec);
        if !hot {
            println!("statements per HTTP transfer (pg_stat_statements):");
            for (statement, per_transfer) in &statements {
                println!("  {per_transfer:>5.2}  {statement}");
            }
        }
        rows.push((case, http, raw));
    }
    println!("\n| case | POST /transfers | p50 / p99 | pgbench (raw SQL) | p50 / p99 | ratio |\n| --- | --- | --- | --- | --- | --- |");
    for (case, http, raw) in &rows {
        println!(
            "| {case} | {:.0}/s | {:.1} / {:.1} ms | {:.0}/s | {:.1} / {:.1} ms | {:.2}× |",
            http.per_sec, http.p50_ms, http.p99_ms, raw.per_sec, raw.p50_ms, raw.p99_ms, http.per_sec / raw.per_sec
        );
    }
    Ok(())
}
