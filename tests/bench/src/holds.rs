//! `wasmpay-bench holds`: what a two-phase payment costs against a one-phase one, end to end
//! under Spin. One server, one database, the same 32 clients over the same 10,000 wallets,
//! in alternating rounds:
//!
//! - transfer: `POST /transfers` of 0.01 to 1.00 USD between random wallets;
//! - hold + capture: the payer's `POST /holds` of the same amounts, then the payee's `POST
//!   /holds/{id}/capture` of all of it, one after the other on the client's connection.
//!
//! A payment is one transfer, or one hold and its capture; the ratio is payments per second
//! of the two-phase flow over the one-phase flow, round by round.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use serde_json::json;
use wasmpay_test_support::postgres;

use crate::{
    client::{Client, percentiles},
    platform::{JWT_SECRET, Platform, Runtime, Server},
    transfers::{CLIENTS, WALLETS, seed, token, uuid},
};

const WARMUP: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, PartialEq)]
enum Flow {
    Transfer,
    HoldAndCapture,
}

impl Flow {
    fn label(self) -> &'static str {
        match self {
            Flow::Transfer => "transfer",
            Flow::HoldAndCapture => "hold + capture",
        }
    }
}

struct Payments {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers by status, every request of the measured window (a hold and its capture are two).
    outcomes: BTreeMap<u16, usize>,
}

/// A small deterministic generator: every round of a flow picks the same wallets.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

async fn payments(server: &Server, tokens: Arc<[String]>, flow: Flow, round: u32, duration: Duration) -> anyhow::Result<Payments> {
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let deadline = measure_from + duration;
    let clients = (0..CLIENTS).map(|c| {
        let authority = server.authority();
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let mut client = Client::connect(&authority).await?;
            let mut random = Xorshift(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
            let mut latencies = Vec::new();
            let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let payment_started = Instant::now();
                sequence += 1;
                let a = 1 + random.below(WALLETS);
                let b = 1 + (a + random.below(WALLETS - 1)) % WALLETS;
                let cents = 1 + random.below(100);
                let body = json!({
                    "fromAccountId": uuid("8000", a), "toAccountId": uuid("8000", b),
                    "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "USD"
                });
                let payer = format!("Bearer {}", tokens[a - 1]);
                // Each flow and round its own keys: both flows pick the same payers in the same order.
                let flow_name = if flow == Flow::Transfer { "transfer" } else { "hold" };
                let key = format!("bench-{flow_name}-{round}-{c}-{sequence}");
                let mut statuses = Vec::with_capacity(2);
                match flow {
                    Flow::Transfer => {
                        let reply = client.send("POST", "/transfers", &[("authorization", &payer), ("idempotency-key", &key)], Some(&body)).await?;
                        statuses.push(reply.status);
                    }
                    Flow::HoldAndCapture => {
                        let placed = client.send("POST", "/holds", &[("authorization", &payer), ("idempotency-key", &key)], Some(&body)).await?;
                        statuses.push(placed.status);
                        if placed.status == 201 {
                            let hold: serde_json::Value = serde_json::from_slice(&placed.body).context("a hold's body")?;
                            let id = hold["id"].as_str().context("a hold's id")?;
                            let payee = format!("Bearer {}", tokens[b - 1]);
                            let captured = client
                                .send("POST", &format!("/holds/{id}/capture"), &[("authorization", &payee), ("idempotency-key", &key)], None)
                                .await?;
                            statuses.push(captured.status);
                        }
                    }
                }
                if payment_started >= measure_from {
                    latencies.push(payment_started.elapsed());
                    for status in statuses {
                        *outcomes.entry(status).or_default() += 1;
                    }
                }
            }
            anyhow::Ok((latencies, outcomes))
        })
    });
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
    Ok(Payments { per_sec: latencies.len() as f64 / duration.as_secs_f64(), p50_ms, p99_ms, outcomes })
}

pub async fn run(seconds: u64, rounds: u32, runtime: Runtime) -> anyhow::Result<()> {
    let platform = Platform::start(&[]).await?;
    let db = postgres::connect(&platform.database_url).await?;
    seed(&db).await?;
    db.batch_execute("VACUUM ANALYZE").await?;
    let server = platform.serve(runtime).await?;
    let tokens: Arc<[String]> = (1..=WALLETS).map(|n| token(n, JWT_SECRET)).collect();
    println!(
        "# holds: payments under {}, {WALLETS} wallets, {CLIENTS} clients, uniform; {rounds} rounds of {seconds} s per flow \
         after {} s of warm-up, alternating",
        server.name,
        WARMUP.as_secs()
    );
    let duration = Duration::from_secs(seconds);
    // A first pass of each flow, unmeasured: the first flow measured otherwise meets a cold cache.
    for flow in [Flow::Transfer, Flow::HoldAndCapture] {
        payments(&server, tokens.clone(), flow, 0, Duration::from_secs(5)).await?;
    }
    let mut results: Vec<(u32, Flow, Payments)> = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 { [Flow::Transfer, Flow::HoldAndCapture] } else { [Flow::HoldAndCapture, Flow::Transfer] };
        for flow in order {
            let measured = payments(&server, tokens.clone(), flow, round, duration).await?;
            let failed: usize = measured.outcomes.iter().filter(|(status, _)| **status != 201).map(|(_, n)| n).sum();
            ensure!(failed == 0, "{}: {failed} requests were not 201: {:?}", flow.label(), measured.outcomes);
            println!(
                "round {round} {:>14}: {:>7.1} payments/s, p50 {:.1} ms, p99 {:.1} ms ({} requests)",
                flow.label(),
                measured.per_sec,
                measured.p50_ms,
                measured.p99_ms,
                measured.outcomes.values().sum::<usize>()
            );
            results.push((round, flow, measured));
        }
    }
    let broken: i64 = db.query_one("SELECT coalesce(sum(violations), 0)::int8 FROM ledger.check_invariants()", &[]).await?.get(0);
    ensure!(broken == 0, "the books do not balance after the run");
    let pending: i64 = db.query_one("SELECT count(*) FROM ledger.holds WHERE status = 'pending'", &[]).await?.get(0);
    ensure!(pending <= CLIENTS as i64, "{pending} holds were left uncaptured");
    let median = |flow: Flow, value: fn(&Payments) -> f64| {
        let mut values: Vec<f64> = results.iter().filter(|(_, f, _)| *f == flow).map(|(_, _, m)| value(m)).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!("\n| flow | payments/s (median) | p50 ms (median) | p99 ms (median) |\n|---|---|---|---|");
    for flow in [Flow::Transfer, Flow::HoldAndCapture] {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            flow.label(),
            median(flow, |m| m.per_sec),
            median(flow, |m| m.p50_ms),
            median(flow, |m| m.p99_ms)
        );
    }
    let mut ratios: Vec<f64> = (1..=rounds)
        .map(|round| {
            let rate = |flow: Flow| results.iter().find(|(r, f, _)| *r == round && *f == flow).map_or(f64::NAN, |(_, _, m)| m.per_sec);
            rate(Flow::HoldAndCapture) / rate(Flow::Transfer)
        })
        .collect();
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    ratios.sort_by(f64::total_cmp);
    println!("hold + capture / transfer, payments per second, per round {} — median {:.3}", shown.join(", "), ratios[ratios.len() / 2]);
    Ok(())
}
