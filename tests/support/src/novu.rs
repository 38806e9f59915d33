//! A stand-in for Novu's trigger endpoint, `POST /v1/events/trigger`, checking requests as
//! Novu's API does (see docs.novu.co, "Trigger event"):
//!
//! - `Authorization: ApiKey <key>`: a missing header, another scheme or a wrong key is a
//!   401 (`Missing authorization header`, `Invalid authentication scheme: "…"`,
//!   `API Key not found`);
//! - a body that is not a JSON object is a 400; a missing or empty `name`, or a missing or
//!   malformed `to` (a subscriberId string, an object with a string `subscriberId`, or an
//!   array of up to 100 of those), or a non-object `payload` or non-string `transactionId`,
//!   is a 422 with an `errors` map by field;
//! - otherwise 201 `{"data": {"acknowledged": true, "status": "processed",
//!   "transactionId": …}}` with `RateLimit-*` headers. A repeated `transactionId` is
//!   acknowledged the same way but has no effect, as Novu ignores duplicate transactions.
//!
//! It records every request and every effect, and can be told to answer the next requests
//! with a 429 (`Retry-After`), a 500, a 400, or not at all for a while.

use std::{
    collections::{HashSet, VecDeque},
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

const TRIGGER_PATH: &str = "/v1/events/trigger";
const MAX_RECIPIENTS: usize = 100;

/// How to answer one upcoming request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    TooManyRequests { retry_after_secs: u64 },
    ServerError,
    BadRequest,
    /// Answer only after this long (longer than the client's timeout: a hang).
    Delay(Duration),
}

/// One request that reached the endpoint and passed authentication and validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub name: String,
    pub to: Value,
    pub payload: Value,
    pub transaction_id: Option<String>,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    /// Workflows answered with a 400 every time (e.g. one that does not exist).
    rejected_workflows: HashSet<String>,
    requests: usize,
    accepted: Vec<Trigger>,
    effects: Vec<Trigger>,
    seen_transactions: HashSet<String>,
}

pub struct NovuStandIn {
    addr: SocketAddr,
    api_key: String,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl NovuStandIn {
    pub async fn start(api_key: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (key, shared) = (api_key.to_owned(), state.clone());
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (key, state) = (key.clone(), shared.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (key, state) = (key.clone(), state.clone());
                        async move { Ok::<_, Infallible>(answer(request, &key, &state).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Self {
            addr,
            api_key: api_key.to_owned(),
            state,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next requests are answered with these faults, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().faults.extend(faults);
    }

    /// Every trigger of `workflow` is answered with a 400.
    pub fn reject_workflow(&self, workflow: &str) {
        self.state().rejected_workflows.insert(workflow.to_owned());
    }

    /// Requests received, faults included.
    pub fn request_count(&self) -> usize {
        self.state().requests
    }

    /// Valid triggers acknowledged, repeats included.
    pub fn accepted(&self) -> Vec<Trigger> {
        self.state().accepted.clone()
    }

    /// Notifications that took effect: one per transaction id.
    pub fn effects(&self) -> Vec<Trigger> {
        self.state().effects.clone()
    }
}

impl Drop for NovuStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn respond(status: StatusCode, body: Value, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", "application/json".parse().expect("valid"));
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (name.parse::<hyper::header::HeaderName>(), value.parse()) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Novu's error body: statusCode, timestamp, path, message (and error for HTTP errors).
fn error(status: StatusCode, message: Value, extra: Option<(&str, Value)>) -> Response<Full<Bytes>> {
    let mut body = json!({
        "statusCode": status.as_u16(),
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "path": TRIGGER_PATH,
        "message": message,
    });
    if let Some(reason) = status.canonical_reason() {
        body["error"] = json!(reason);
    }
    if let Some((name, value)) = extra {
        body[name] = value;
    }
    respond(status, body, &[])
}

fn rate_limit_headers() -> Vec<(&'static str, String)> {
    vec![
        ("RateLimit-Limit", "300".to_owned()),
        ("RateLimit-Remaining", "299".to_owned()),
        ("RateLimit-Reset", "1".to_owned()),
        ("RateLimit-Policy", "300;w=5;burst=330;comment=\"token bucket\";category=\"trigger\"".to_owned()),
    ]
}

async fn answer(request: Request<Incoming>, api_key: &str, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    lock().requests += 1;
    if request.method() != hyper::Method::POST || request.uri().path() != TRIGGER_PATH {
        return error(StatusCode::NOT_FOUND, json!(format!("Cannot {} {}", request.method(), request.uri().path())), None);
    }
    let authorization = request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match authorization.as_deref().map(|value| value.split_once(' ').unwrap_or((value, ""))) {
        None => return error(StatusCode::UNAUTHORIZED, json!("Missing authorization header"), None),
        Some((scheme, _)) if scheme != "ApiKey" => {
            return error(StatusCode::UNAUTHORIZED, json!(format!("Invalid authentication scheme: \"{scheme}\"")), None);
        }
        Some((_, key)) if key.trim() != api_key => return error(StatusCode::UNAUTHORIZED, json!("API Key not found"), None),
        Some(_) => {}
    }
    let fault = lock().faults.pop_front();
    match fault {
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut headers = rate_limit_headers();
            headers.push(("Retry-After", retry_after_secs.to_string()));
            headers.retain(|(name, _)| *name != "RateLimit-Remaining");
            headers.push(("RateLimit-Remaining", "0".to_owned()));
            return respond(
                StatusCode::TOO_MANY_REQUESTS,
                json!({
                    "statusCode": 429,
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "path": TRIGGER_PATH,
                    "message": "API rate limit exceeded",
                }),
                &headers,
            );
        }
        Some(Fault::ServerError) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, json!("Internal server error, contact support"), None);
        }
        Some(Fault::BadRequest) => return error(StatusCode::BAD_REQUEST, json!("Bad request"), None),
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, json!("Invalid JSON body"), None);
    };
    let trigger = match validate(&body) {
        Ok(trigger) => trigger,
        Err(errors) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, json!("Validation Error"), Some(("errors", Value::Object(errors))));
        }
    };
    let mut state = lock();
    if state.rejected_workflows.contains(&trigger.name) {
        drop(state);
        return error(StatusCode::BAD_REQUEST, json!(format!("workflow {} is not accepted", trigger.name)), None);
    }
    let transaction_id = trigger
        .transaction_id
        .clone()
        .unwrap_or_else(|| format!("generated-{}", state.accepted.len()));
    state.accepted.push(trigger.clone());
    if state.seen_transactions.insert(transaction_id.clone()) {
        state.effects.push(trigger);
    }
    respond(
        StatusCode::CREATED,
        json!({ "data": { "acknowledged": true, "status": "processed", "transactionId": transaction_id } }),
        &rate_limit_headers(),
    )
}

fn validate(body: &Map<String, Value>) -> Result<Trigger, Map<String, Value>> {
    let mut errors = Map::new();
    let mut invalid = |field: &str, message: &str, value: Option<&Value>| {
        errors.insert(field.to_owned(), json!({ "messages": [message], "value": value }));
    };
    let name = match body.get("name") {
        Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
        other => {
            invalid("name", "name should not be empty", other);
            None
        }
    };
    let recipient_ok = |r: &Value| match r {
        Value::String(id) => !id.is_empty(),
        Value::Object(subscriber) => matches!(subscriber.get("subscriberId"), Some(Value::String(id)) if !id.is_empty()),
        _ => false,
    };
    let to = body.get("to");
    let to_ok = match to {
        Some(Value::Array(recipients)) => !recipients.is_empty() && recipients.len() <= MAX_RECIPIENTS && recipients.iter().all(recipient_ok),
        Some(recipient) => recipient_ok(recipient),
        None => false,
    };
    if !to_ok {
        invalid("to", "to must be a subscriberId, a subscriber with a subscriberId, or an array of up to 100 of them", to);
    }
    if let Some(payload) = body.get("payload")
        && !payload.is_object()
    {
        invalid("payload", "payload must be an object", Some(payload));
    }
    let transaction_id = match body.get("transactionId") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => {
            invalid("transactionId", "transactionId must be a string", Some(other));
            None
        }
    };
    match name {
        Some(name) if errors.is_empty() => Ok(Trigger {
            name,
            to: to.cloned().unwrap_or(Value::Null),
            payload: body.get("payload").cloned().unwrap_or(json!({})),
            transaction_id,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(novu: &NovuStandIn, authorization: Option<&str>, body: &str) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{TRIGGER_PATH}", novu.url()))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    const VALID: &str = r#"{"name":"w","to":{"subscriberId":"u1","email":"a@example.com"},"payload":{},"transactionId":"t1"}"#;

    #[tokio::test]
    async fn authentication_is_checked_as_novu_does() {
        let novu = NovuStandIn::start("secret").await.unwrap();
        assert_eq!(post(&novu, None, VALID).await.1["message"], "Missing authorization header");
        assert_eq!(post(&novu, Some("Bearer secret"), VALID).await.0, 401);
        let (status, body) = post(&novu, Some("ApiKey wrong"), VALID).await;
        assert_eq!((status, body["message"].as_str()), (401, Some("API Key not found")));
        assert!(novu.accepted().is_empty());
    }

    #[tokio::test]
    async fn name_and_to_are_required_and_shaped() {
        let novu = NovuStandIn::start("k").await.unwrap();
        for (body, field) in [
            (r#"{"to":"u1"}"#, "name"),
            (r#"{"name":"","to":"u1"}"#, "name"),
            (r#"{"name":"w"}"#, "to"),
            (r#"{"name":"w","to":{"email":"a@example.com"}}"#, "to"),
            (r#"{"name":"w","to":"u1","payload":"text"}"#, "payload"),
            (r#"{"name":"w","to":"u1","transactionId":7}"#, "transactionId"),
        ] {
            let (status, answer) = post(&novu, Some("ApiKey k"), body).await;
            assert_eq!(status, 422, "{body}");
            assert!(answer["errors"][field].is_object(), "{body}: {answer}");
        }
        assert_eq!(post(&novu, Some("ApiKey k"), "not json").await.0, 400);
        assert_eq!(post(&novu, Some("ApiKey k"), r#"{"name":"w","to":["u1",{"subscriberId":"u2"}]}"#).await.0, 201);
    }

    #[tokio::test]
    async fn a_repeated_transaction_is_acknowledged_without_effect() {
        let novu = NovuStandIn::start("k").await.unwrap();
        let (status, body) = post(&novu, Some("ApiKey k"), VALID).await;
        assert_eq!(status, 201);
        assert_eq!(body["data"], json!({ "acknowledged": true, "status": "processed", "transactionId": "t1" }));
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 201);
        assert_eq!((novu.accepted().len(), novu.effects().len()), (2, 1));
    }

    #[tokio::test]
    async fn faults_answer_the_next_requests_in_order() {
        let novu = NovuStandIn::start("k").await.unwrap();
        novu.fail_next([Fault::TooManyRequests { retry_after_secs: 2 }, Fault::ServerError, Fault::BadRequest]);
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 429);
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 500);
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 400);
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 201);
        novu.reject_workflow("w");
        assert_eq!(post(&novu, Some("ApiKey k"), VALID).await.0, 400);
        assert_eq!(novu.effects().len(), 1);
    }
}
