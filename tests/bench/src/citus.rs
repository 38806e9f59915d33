//! `wasmpay-bench citus`: the ledger on one PostgreSQL server against the same ledger on a
//! three-node Citus cluster (a coordinator and two workers) on this machine, in one run:
//!
//! - pgbench calling `ledger.transfer` (with the caller's session check, as the component
//!   sends it), 32 clients: on PostgreSQL; on Citus between wallets on one shard; on Citus
//!   between wallets on two workers;
//! - `POST /transfers` under Spin against each, the same three ways;
//! - pgbench with one hot wallet on one side of every transfer, on PostgreSQL and on Citus:
//!   a wallet's postings serialize on its row lock, so this rate is 1 / (how long a posting
//!   holds its wallets), the ceiling of one wallet.
//!
//! The wallets are the transfers bench's 10,000 (seeded with fixed ids), of which the ones
//! that hash to their owner's shard are used, as every wallet opened through the API does
//! (accounts.id_on_shard_of): then a transfer between two wallets of one shard touches that
//! shard only. The same pairs are used on PostgreSQL. Rounds alternate; each run also
//! reports the CPU every node spent per transfer, the inputs of the capacity model in
//! BENCHMARKS.md.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use serde_json::json;
use wasmpay_test_support::{
    citus,
    cluster::{self, LocalCluster},
    postgres,
};

use crate::{
    client::{Client, percentiles},
    cpu,
    platform::{JWT_SECRET, Platform, Runtime, Server, TempDir},
    transfers::{CLIENTS, Sql, WALLETS, pgbench_run, seed, token, uuid},
};

const WARMUP: Duration = Duration::from_secs(3);
/// Pairs of each kind drawn for the load.
const PAIRS: usize = 2_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Case {
    Postgres,
    CitusSameShard,
    CitusCrossWorker,
}

impl Case {
    const ALL: [Case; 3] = [Case::Postgres, Case::CitusSameShard, Case::CitusCrossWorker];

    fn label(self) -> &'static str {
        match self {
            Case::Postgres => "PostgreSQL",
            Case::CitusSameShard => "Citus, one shard",
            Case::CitusCrossWorker => "Citus, two workers",
        }
    }

    fn pairs(self) -> &'static str {
        match self {
            Case::Postgres | Case::CitusSameShard => "same",
            Case::CitusCrossWorker => "cross",
        }
    }
}

/// Three nodes started here with the same settings as the bench's PostgreSQL server.
struct Cluster {
    nodes: Vec<LocalCluster>,
    _dir: TempDir,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let dir = TempDir::named("bench-citus")?;
        let settings: Vec<&str> = citus::NODE_SETTINGS.iter().copied().chain(["shared_buffers=256MB"]).collect();
        let mut nodes = Vec::new();
        for name in ["coordinator", "worker-1", "worker-2"] {
            nodes.push(LocalCluster::start(&dir.0.join(name), cluster::free_port()?, &settings)?);
        }
        let ports: Vec<u16> = nodes.iter().map(LocalCluster::port).collect();
        citus::prepare_database(&ports, "bench").await?;
        Ok(Self { nodes, _dir: dir })
    }

    fn url(&self) -> String {
        self.nodes[0].url("bench")
    }

    fn cpu(&self) -> Vec<Duration> {
        self.nodes.iter().map(|node| cpu::tree_cpu(node.pid())).collect()
    }
}

/// Chooses the pairs: wallets that live on their owner's shard, two of one shard, or two on
/// different workers; stores them in `bench.pairs` on both databases.
async fn choose_pairs(citus: &tokio_postgres::Client, plain: &tokio_postgres::Client) -> anyhow::Result<(usize, usize)> {
    let rows = citus
        .query(
            "SELECT n, s.nodeport
             FROM generate_series(1, $1::int) n
             JOIN citus_shards s
               ON s.shardid = get_shard_id_for_distribution_column('accounts.accounts', bench.account_id(n))
              AND s.table_name = 'accounts.accounts'::regclass
             WHERE get_shard_id_for_distribution_column('accounts.accounts', bench.account_id(n))
                 = get_shard_id_for_distribution_column('accounts.accounts', bench.user_id(n))",
            &[&(WALLETS as i32)],
        )
        .await
        .context("cannot place the wallets")?;
    let shards = citus
        .query(
            "SELECT n, get_shard_id_for_distribution_column('accounts.accounts', bench.account_id(n))
             FROM generate_series(1, $1::int) n",
            &[&(WALLETS as i32)],
        )
        .await?;
    let shard_of: HashMap<i32, i64> = shards.iter().map(|row| (row.get(0), row.get(1))).collect();
    let placed: Vec<(i32, i32)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let mut by_shard: BTreeMap<i64, Vec<i32>> = BTreeMap::new();
    for (n, _) in &placed {
        by_shard.entry(shard_of[n]).or_default().push(*n);
    }
    let node_of: HashMap<i32, i32> = placed.iter().copied().collect();
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: usize| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        (random % n as u64) as usize
    };
    let shard_lists: Vec<&Vec<i32>> = by_shard.values().filter(|wallets| wallets.len() >= 2).collect();
    ensure!(!shard_lists.is_empty(), "no shard holds two wallets of their owners");
    let mut same = Vec::new();
    while same.len() < PAIRS {
        let wallets = shard_lists[next(shard_lists.len())];
        let (a, b) = (wallets[next(wallets.len())], wallets[next(wallets.len())]);
        if a != b {
            same.push((a, b));
        }
    }
    let mut cross = Vec::new();
    while cross.len() < PAIRS {
        let (a, b) = (placed[next(placed.len())].0, placed[next(placed.len())].0);
        if node_of[&a] != node_of[&b] {
            cross.push((a, b));
        }
    }
    // The hot wallet is the first placed one; the other side is any other, either direction.
    let hot_wallet = placed[0].0;
    let mut hot = Vec::new();
    while hot.len() < PAIRS {
        let other = placed[next(placed.len())].0;
        if other != hot_wallet {
            hot.push(if next(2) == 0 { (hot_wallet, other) } else { (other, hot_wallet) });
        }
    }
    for db in [citus, plain] {
        db.batch_execute("CREATE TABLE bench.pairs (kind TEXT, i INT, a INT, b INT, PRIMARY KEY (kind, i))").await?;
        for (kind, pairs) in [("same", &same), ("cross", &cross), ("hot", &hot)] {
            for (i, (a, b)) in pairs.iter().enumerate() {
                db.execute("INSERT INTO bench.pairs VALUES ($1, $2, $3, $4)", &[&kind, &(i as i32 + 1), a, b]).await?;
            }
        }
    }
    Ok((placed.len(), by_shard.len()))
}

/// The pgbench transaction: a pair of the kind, then the component's statement.
fn script(kind: &str) -> String {
    format!(
        "\\set i random(1, {PAIRS})\nSELECT a, b FROM bench.pairs WHERE kind = '{kind}' AND i = :i \\gset\n\\set cents random(1, 100)\n{};\n",
        Sql::ForCaller.statement()
    )
}

struct Measured {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU per transfer on each node (the coordinator first), or on the one server.
    cpu_ms: Vec<f64>,
}

async fn http_round(server: &Server, pairs: Arc<Vec<(usize, usize)>>, tokens: Arc<[String]>, tag: &str, duration: Duration) -> anyhow::Result<(f64, f64, f64, BTreeMap<u16, usize>)> {
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let deadline = measure_from + duration;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let authority = server.authority();
            let (pairs, tokens, tag) = (pairs.clone(), tokens.clone(), tag.to_owned());
            tokio::spawn(async move {
                let mut client = Client::connect(&authority).await?;
                let mut latencies = Vec::new();
                let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
                let mut sequence = 0usize;
                while Instant::now() < deadline {
                    let (a, b) = pairs[(c * 7919 + sequence * 104_729) % pairs.len()];
                    sequence += 1;
                    let cents = 1 + sequence % 100;
                    let body = json!({
                        "fromAccountId": uuid("8000", a), "toAccountId": uuid("8000", b),
                        "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"
                    });
                    let payer = format!("Bearer {}", tokens[a - 1]);
                    let key = format!("bench-citus-{tag}-{c}-{sequence}");
                    let sent = Instant::now();
                    let reply = client.send("POST", "/transfers", &[("authorization", &payer), ("idempotency-key", &key)], Some(&body)).await?;
                    if sent >= measure_from {
                        latencies.push(sent.elapsed());
                        *outcomes.entry(reply.status).or_default() += 1;
                    }
                }
                anyhow::Ok((latencies, outcomes))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for client in clients {
        let (client_latencies, client_outcomes) = client.await??;
        latencies.extend(client_latencies);
        for (status, n) in client_outcomes {
            *outcomes.entry(status).or_default() += n;
        }
    }
    let (p50, p99, _) = percentiles(&mut latencies);
    Ok((latencies.len() as f64 / duration.as_secs_f64(), p50, p99, outcomes))
}

async fn load_pairs(db: &tokio_postgres::Client, kind: &str) -> anyhow::Result<Arc<Vec<(usize, usize)>>> {
    let rows = db.query("SELECT a, b FROM bench.pairs WHERE kind = $1 ORDER BY i", &[&kind]).await?;
    Ok(Arc::new(rows.iter().map(|row| (row.get::<_, i32>(0) as usize, row.get::<_, i32>(1) as usize)).collect()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(seconds: u64, rounds: u32) -> anyhow::Result<()> {
    let duration = Duration::from_secs(seconds);
    println!("# citus: starting PostgreSQL and a Citus coordinator with two workers, seeding {WALLETS} wallets in each");
    let plain = Platform::start(&[]).await?;
    let plain_db = postgres::connect(&plain.database_url).await?;
    seed(&plain_db).await?;
    let cluster = Cluster::start().await?;
    postgres::migrate(&cluster.url()).await?;
    let citus_db = postgres::connect(&cluster.url()).await?;
    seed(&citus_db).await?;
    let (placed, shards) = choose_pairs(&citus_db, &plain_db).await?;
    println!("# {placed} of {WALLETS} wallets hash to their owner's shard ({shards} shards); {PAIRS} pairs on one shard, {PAIRS} on two workers");
    for db in [&plain_db, &citus_db] {
        db.batch_execute("VACUUM ANALYZE").await?;
    }

    // pgbench on ledger.transfer.
    let mut sql: Vec<(Case, Measured)> = Vec::new();
    for round in 1..=rounds {
        let mut order = Case::ALL.to_vec();
        order.rotate_left(round as usize % 3);
        for case in order {
            let (url, before) = match case {
                Case::Postgres => (plain.database_url.clone(), vec![cpu::tree_cpu(plain.postmaster().context("our cluster")?)]),
                _ => (cluster.url(), cluster.cpu()),
            };
            let measured = pgbench_run(&plain, &format!("citus-{case:?}-{round}"), &script(case.pairs()), &url, duration)?;
            let after = match case {
                Case::Postgres => vec![cpu::tree_cpu(plain.postmaster().context("our cluster")?)],
                _ => cluster.cpu(),
            };
            let transfers = measured.per_sec * duration.as_secs_f64();
            let cpu_ms: Vec<f64> = before.iter().zip(&after).map(|(b, a)| (*a - *b).as_secs_f64() * 1e3 / transfers).collect();
            println!(
                "pgbench round {round} {:<20} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  CPU/transfer {:?} ms",
                case.label(),
                measured.per_sec,
                measured.p50_ms,
                measured.p99_ms,
                cpu_ms_text(&cpu_ms)
            );
            sql.push((case, Measured { per_sec: measured.per_sec, p50_ms: measured.p50_ms, p99_ms: measured.p99_ms, cpu_ms }));
        }
    }
    // One hot wallet in every transfer: the rate one wallet's postings reach.
    let mut hot: Vec<(&str, f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        let mut order = [("PostgreSQL", plain.database_url.clone()), ("Citus", cluster.url())];
        order.rotate_left(round as usize % 2);
        for (label, url) in order {
            let measured = pgbench_run(&plain, &format!("citus-hot-{label}-{round}"), &script("hot"), &url, duration)?;
            println!(
                "pgbench round {round} hot wallet, {label:<10} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  (a posting holds the wallet {:.2} ms)",
                measured.per_sec,
                measured.p50_ms,
                measured.p99_ms,
                1e3 / measured.per_sec
            );
            hot.push((label, measured.per_sec, measured.p50_ms, measured.p99_ms));
        }
    }
    for db in [&plain_db, &citus_db] {
        let broken: i64 = db.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
        ensure!(broken == 0, "the books do not balance after pgbench");
    }

    // A transfer by id: on its one shard (ledger.transfers is distributed by id), against a
    // look-up that must ask every shard (its entries, distributed by wallet, by transfer id).
    citus_db
        .batch_execute(
            "CREATE TABLE bench.lookups AS
             SELECT row_number() OVER () AS i, id FROM (SELECT id FROM ledger.transfers WHERE kind = 'transfer' LIMIT 2000) t",
        )
        .await?;
    let lookups: i64 = citus_db.query_one("SELECT count(*) FROM bench.lookups", &[]).await?.get(0);
    let lookup = |query: &str| format!("\\set i random(1, {lookups})\nSELECT id FROM bench.lookups WHERE i = :i \\gset\n{query};\n");
    for (n, (label, query)) in [
        ("by id, one shard", "SELECT * FROM ledger.transfers WHERE id = :id"),
        ("by id, every shard", "SELECT * FROM ledger.entries WHERE transfer_id = :id"),
    ]
    .into_iter()
    .enumerate()
    {
        let measured = pgbench_run(&plain, &format!("citus-lookup-{n}"), &lookup(query), &cluster.url(), duration)?;
        println!("pgbench look-up {label:<20} {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms", measured.per_sec, measured.p50_ms, measured.p99_ms);
    }

    // POST /transfers under Spin.
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    let (same, cross) = (load_pairs(&plain_db, "same").await?, load_pairs(&plain_db, "cross").await?);
    let on_plain = plain.serve(Runtime::Spin).await?;
    let citus_platform = Platform::serving(&cluster.url(), &format!("127.0.0.1:{}", cluster.nodes[0].port()))?;
    let on_citus = citus_platform.serve(Runtime::Spin).await?;
    let mut http: Vec<(Case, f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        let mut order = Case::ALL.to_vec();
        order.rotate_left(round as usize % 3);
        for case in order {
            let (server, chosen) = match case {
                Case::Postgres => (&on_plain, same.clone()),
                Case::CitusSameShard => (&on_citus, same.clone()),
                Case::CitusCrossWorker => (&on_citus, cross.clone()),
            };
            let (per_sec, p50, p99, outcomes) = http_round(server, chosen, tokens.clone(), &format!("{case:?}-{round}"), duration).await?;
            let failed: usize = outcomes.iter().filter(|(status, _)| !matches!(status, 201 | 422)).map(|(_, n)| n).sum();
            ensure!(failed == 0, "{}: {failed} requests failed: {outcomes:?}", case.label());
            println!("Spin round {round} {:<20} {per_sec:>7.0}/s  p50 {p50:>6.2} ms  p99 {p99:>6.2} ms  {outcomes:?}", case.label());
            http.push((case, per_sec, p50, p99));
        }
    }
    for db in [&plain_db, &citus_db] {
        let broken: i64 = db.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
        ensure!(broken == 0, "the books do not balance after the HTTP runs");
    }

    println!("\n| case | pgbench ledger.transfer /s | p50 ms | p99 ms | CPU ms per transfer (coordinator; workers) | Spin POST /transfers /s | p50 ms |");
    println!("|---|---|---|---|---|---|---|");
    for case in Case::ALL {
        let of: Vec<&Measured> = sql.iter().filter(|(c, _)| *c == case).map(|(_, m)| m).collect();
        let cpu: Vec<f64> = (0..of[0].cpu_ms.len()).map(|node| median(of.iter().map(|m| m.cpu_ms[node]).collect())).collect();
        let web: Vec<&(Case, f64, f64, f64)> = http.iter().filter(|(c, ..)| *c == case).collect();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.2} |",
            case.label(),
            median(of.iter().map(|m| m.per_sec).collect()),
            median(of.iter().map(|m| m.p50_ms).collect()),
            median(of.iter().map(|m| m.p99_ms).collect()),
            cpu_ms_text(&cpu),
            median(web.iter().map(|w| w.1).collect()),
            median(web.iter().map(|w| w.2).collect()),
        );
    }
    println!("\n| one hot wallet in every transfer (pgbench) | /s | p50 ms | p99 ms | ms a posting holds the wallet |");
    println!("|---|---|---|---|---|");
    for label in ["PostgreSQL", "Citus"] {
        let of: Vec<&(&str, f64, f64, f64)> = hot.iter().filter(|h| h.0 == label).collect();
        let per_sec = median(of.iter().map(|h| h.1).collect());
        println!(
            "| {label} | {per_sec:.0} | {:.2} | {:.2} | {:.2} |",
            median(of.iter().map(|h| h.2).collect()),
            median(of.iter().map(|h| h.3).collect()),
            1e3 / per_sec
        );
    }
    Ok(())
}

fn cpu_ms_text(cpu_ms: &[f64]) -> String {
    match cpu_ms {
        [one] => format!("{one:.3}"),
        [coordinator, workers @ ..] => {
            let each: Vec<String> = workers.iter().map(|w| format!("{w:.3}")).collect();
            format!("{coordinator:.3}; {} (sum {:.3})", each.join(" + "), workers.iter().sum::<f64>())
        }
        [] => String::new(),
    }
}
