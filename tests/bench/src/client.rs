//! A minimal keep-alive HTTP/1.1 client: one connection per simulated client, so the load
//! generator costs little of the two cores it shares with the host and Postgres.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The longest a request may wait for its answer.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub latency: Duration,
}

impl Client {
    pub async fn connect(authority: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(authority).await.with_context(|| format!("cannot connect to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: authority.to_owned(),
        })
    }

    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&serde_json::Value>) -> anyhow::Result<Reply> {
        let mut request = Request::builder().method(method).uri(path).header("host", &self.authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(json.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body)?;
        let started = Instant::now();
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        // A server that never answers (Spin 4.0.0-4.0.2 on a query returning no row) fails the run instead of hanging it.
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {path}: no answer from {} within {TIMEOUT:?}", self.authority))??;
        Ok(Reply {
            status,
            body,
            latency: started.elapsed(),
        })
    }
}

/// p50 / p99 / max of a set of latencies, in milliseconds.
pub fn percentiles(latencies: &mut [Duration]) -> (f64, f64, f64) {
    latencies.sort();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
    };
    (at(0.50), at(0.99), at(1.0))
}
