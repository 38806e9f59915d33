//! Delivering a notification to Novu: `POST {NOVU_API_URL}/v1/events/trigger` with
//! `Authorization: ApiKey …`. Network errors, 5xx and 429 are retried with exponential
//! backoff and full jitter (a 429's or 503's `Retry-After` wins), up to a bounded number of
//! attempts; any other 4xx is permanent. Without an API key, notifications are printed.

use std::{collections::BTreeMap, io::Write, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, StatusCode,
    header::{HeaderValue, RETRY_AFTER},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::mapping::Notification;
use crate::{
    config::NotifyArgs,
    metrics::{Metrics, WorkflowLabel},
};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Novu {
    http: HttpsClient,
    request_timeout: Duration,
    trigger_url: String,
    api_key: Option<String>,
    workflows: BTreeMap<&'static str, String>,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

/// What became of one notification.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Permanent: a 4xx other than 429, or the attempts ran out.
    Failed { status: Option<u16>, reason: String },
    /// Shutdown came first; nothing is committed, the event will be redelivered.
    Interrupted,
}

/// Longest response body kept for a dead letter.
const MAX_ERROR_BODY: usize = 2_000;

impl Novu {
    pub fn new(args: &NotifyArgs, workflows: BTreeMap<&'static str, String>) -> anyhow::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .context("cannot load the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            request_timeout: Duration::from_millis(args.notify_request_timeout_ms),
            trigger_url: format!("{}/v1/events/trigger", args.novu_api_url.trim_end_matches('/')),
            api_key: args.novu_api_key.clone().filter(|key| !key.is_empty()),
            workflows,
            max_attempts: args.notify_max_attempts.max(1),
            backoff_base: Duration::from_millis(args.notify_backoff_base_ms),
            backoff_max: Duration::from_millis(args.notify_backoff_max_ms),
        })
    }

    pub fn workflow(&self, notification: &Notification) -> &str {
        self.workflows.get(notification.kind).map_or(notification.kind, String::as_str)
    }

    /// The request body Novu's trigger endpoint documents.
    pub fn body(&self, notification: &Notification) -> Value {
        let recipient = &notification.recipient;
        json!({
            "name": self.workflow(notification),
            "to": {
                "subscriberId": recipient.user_id,
                "email": recipient.email,
                "firstName": recipient.first_name(),
            },
            "payload": notification.payload,
            "transactionId": notification.transaction_id,
        })
    }

    pub async fn deliver(&self, notification: &Notification, metrics: &Metrics, shutdown: &CancellationToken) -> Outcome {
        let label = WorkflowLabel {
            workflow: self.workflow(notification).to_owned(),
        };
        let body = self.body(notification);
        let Some(api_key) = &self.api_key else {
            // Local mode: the notification, one JSON line on stdout.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{}", json!({ "notification": body }));
            metrics.notifications_sent.get_or_create(&label).inc();
            return Outcome::Delivered;
        };
        let body_bytes = Bytes::from(body.to_string());
        let mut attempt = 1;
        loop {
            let (retry_after, failure) = match self.post(api_key, body_bytes.clone()).await {
                Ok((status, _, _)) if status.is_success() => {
                    metrics.notifications_sent.get_or_create(&label).inc();
                    return Outcome::Delivered;
                }
                Ok((status, retry_after, text)) => {
                    if !(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
                        return Outcome::Failed {
                            status: Some(status.as_u16()),
                            reason: format!("Novu answered {status}: {text}"),
                        };
                    }
                    (retry_after, (Some(status.as_u16()), format!("Novu answered {status}: {text}")))
                }
                Err(e) => (None, (None, format!("request failed: {e:#}"))),
            };
            if attempt >= self.max_attempts {
                return Outcome::Failed {
                    status: failure.0,
                    reason: format!("gave up after {attempt} attempts; last: {}", failure.1),
                };
            }
            metrics.notifications_retried.get_or_create(&label).inc();
            let delay = retry_after.unwrap_or_else(|| self.backoff(attempt)).min(self.backoff_max);
            tracing::info!(workflow = %label.workflow, attempt, delay_ms = delay.as_millis() as u64, reason = %failure.1, "retrying Novu");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return Outcome::Interrupted,
            }
            attempt += 1;
        }
    }

    /// One request: the status, its `Retry-After` and (the start of) its body.
    async fn post(&self, api_key: &str, body: Bytes) -> anyhow::Result<(StatusCode, Option<Duration>, String)> {
        let request = Request::post(&self.trigger_url)
            .header("authorization", format!("ApiKey {api_key}"))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let exchange = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let retry_after = parse_retry_after(response.headers().get(RETRY_AFTER));
            let bytes = response.into_body().collect().await?.to_bytes();
            let text: String = String::from_utf8_lossy(&bytes).chars().take(MAX_ERROR_BODY).collect();
            anyhow::Ok((status, retry_after, text))
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} ms", self.request_timeout.as_millis()))?
    }

    /// Exponential backoff with full jitter: a random delay up to base·2^(attempt-1).
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.backoff_max);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(parse_retry_after(Some(&header("3"))), Some(Duration::from_secs(3)));
        let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let parsed = parse_retry_after(Some(&header(&future))).unwrap();
        assert!(parsed > Duration::from_secs(25) && parsed <= Duration::from_secs(30));
        assert_eq!(parse_retry_after(Some(&header("soon"))), None);
        assert_eq!(parse_retry_after(None), None);
    }
}
