//! Login cost: bcrypt verification inside the identity component (wasm, through the host
//! and Postgres) against the same verification in native code, at one cost factor.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    client::{Client, percentiles},
    platform::{Platform, Runtime},
};

pub async fn run(cost: u32, samples: usize) -> anyhow::Result<()> {
    println!("# login at bcrypt cost {cost}, {samples} samples each");

    let hash = bcrypt::hash("correct horse battery staple", cost)?;
    let mut native = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        assert!(bcrypt::verify("correct horse battery staple", &hash)?);
        native.push(started.elapsed());
    }
    let (native_p50, native_p99, _) = percentiles(&mut native);
    println!("native bcrypt verify            p50 {native_p50:8.1} ms   p99 {native_p99:8.1} ms");

    let platform = Platform::start(&[("bcrypt_cost", &cost.to_string()), ("login_max_failures", "1000000")]).await?;
    let server = platform.serve(Runtime::Host).await?;
    let mut client = Client::connect(&server.authority()).await?;
    let credentials = json!({ "email": "bench@example.com", "password": "correct horse battery staple" });
    let mut registration = credentials.clone();
    registration["confirmPassword"] = credentials["password"].clone();
    registration["fullName"] = json!("Bench");
    let registered = client.send("POST", "/auth/register", &[], Some(&registration)).await?;
    anyhow::ensure!(registered.status == 201, "registration failed: {}", String::from_utf8_lossy(&registered.body));

    let mut measure = async |path: &str, body: Option<&serde_json::Value>, expected: u16| -> anyhow::Result<Vec<Duration>> {
        let mut latencies = Vec::with_capacity(samples);
        for _ in 0..samples {
            let reply = client.send(if body.is_some() { "POST" } else { "GET" }, path, &[], body).await?;
            anyhow::ensure!(reply.status == expected, "{path}: {} {}", reply.status, String::from_utf8_lossy(&reply.body));
            latencies.push(reply.latency);
        }
        Ok(latencies)
    };
    let (health_p50, health_p99, _) = percentiles(&mut measure("/auth/health", None, 200).await?);
    let (login_p50, login_p99, _) = percentiles(&mut measure("/auth/login", Some(&credentials), 200).await?);
    let unknown = json!({ "email": "nobody@example.com", "password": "correct horse battery staple" });
    let (unknown_p50, unknown_p99, _) = percentiles(&mut measure("/auth/login", Some(&unknown), 401).await?);
    println!("GET /auth/health (baseline)     p50 {health_p50:8.1} ms   p99 {health_p99:8.1} ms");
    println!("POST /auth/login (wasm)         p50 {login_p50:8.1} ms   p99 {login_p99:8.1} ms");
    println!("POST /auth/login unknown e-mail p50 {unknown_p50:8.1} ms   p99 {unknown_p99:8.1} ms");
    println!(
        "wasm login / native verify: {:.2}x (login includes ~{health_p50:.1} ms of request and database work)",
        login_p50 / native_p50
    );
    Ok(())
}
