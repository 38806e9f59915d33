//! RFC 9457 problem details: the one way a component reports an error to a client.
//!
//! Every failure has a stable `type` (a URI under [`TYPE_BASE`] ending in a slug such as
//! `insufficient-funds`) that clients may branch on; `title` is fixed per type and
//! `detail` explains this occurrence.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::http::Response;

/// Base URI of every problem `type` this platform emits.
pub const TYPE_BASE: &str = "https://wasmpay.dev/problems/";

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Boxed: a problem travels in every `Err` of the request path, which should stay small.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem(Box<Details>);

#[derive(Debug, Clone, PartialEq)]
struct Details {
    status: u16,
    slug: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: String,
    extensions: Map<String, Value>,
    headers: Vec<(&'static str, String)>,
}

impl Problem {
    /// `slug` and `title` are fixed strings, except for the problems a policy plugin defines.
    pub fn new(
        status: u16,
        slug: impl Into<Cow<'static, str>>,
        title: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Details {
            status,
            slug: slug.into(),
            title: title.into(),
            detail: detail.into(),
            extensions: Map::new(),
            headers: Vec::new(),
        }))
    }

    /// Adds a member next to the standard ones (RFC 9457 §3.2 extension members).
    pub fn with_extension(mut self, name: &str, value: Value) -> Self {
        self.0.extensions.insert(name.to_owned(), value);
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.0.status
    }

    pub fn slug(&self) -> &str {
        &self.0.slug
    }

    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "bad-request", "Bad request", detail)
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(400, "malformed-json", "Malformed JSON body", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", "Authentication required", detail)
    }

    pub fn forbidden(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(403, slug, title, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        Self::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("this resource supports {}", allowed.join(", ")),
        )
        .with_header("allow", allowed.join(", "))
    }

    pub fn conflict(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(409, slug, title, detail)
    }

    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "payload-too-large",
            "Request body too large",
            format!("the request body must not exceed {limit_bytes} bytes"),
        )
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the request body must be {expected}"),
        )
    }

    /// 422 for a well-formed request whose fields break a rule; `errors` lists each field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [only] => format!("{}: {}", only.field, only.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        let errors = errors
            .into_iter()
            .map(|e| json!({ "field": e.field, "message": e.message }))
            .collect();
        Self::new(422, "validation-failed", "Invalid request", detail)
            .with_extension("errors", Value::Array(errors))
    }

    pub fn unprocessable(slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(422, slug, title, detail)
    }

    pub fn too_many_requests(slug: &'static str, retry_after_secs: u64, detail: impl Into<String>) -> Self {
        Self::new(429, slug, "Too many requests", detail)
            .with_header("retry-after", retry_after_secs.to_string())
            .with_extension("retryAfter", json!(retry_after_secs))
    }

    /// A failure the client cannot fix. The cause is logged by the component, never sent.
    pub fn internal() -> Self {
        Self::new(500, "internal", "Internal error", "the request could not be completed; it changed nothing")
    }

    pub fn service_unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, "unavailable", "Service unavailable", detail).with_header("retry-after", "1")
    }

    pub fn to_json(&self) -> Value {
        let details = &self.0;
        let mut body = Map::new();
        body.insert("type".into(), json!(format!("{TYPE_BASE}{}", details.slug)));
        body.insert("title".into(), json!(details.title));
        body.insert("status".into(), json!(details.status));
        body.insert("detail".into(), json!(details.detail));
        for (name, value) in &details.extensions {
            body.insert(name.clone(), value.clone());
        }
        Value::Object(body)
    }

    pub fn into_response(self) -> Response {
        let body = self.to_json().to_string();
        let mut builder = Response::builder();
        builder.status(self.0.status).header("content-type", CONTENT_TYPE);
        for (name, value) in self.0.headers {
            builder.header(name, value);
        }
        builder.body(body).build()
    }
}

/// One invalid field of a request body or query string.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<FieldError> for Problem {
    fn from(error: FieldError) -> Self {
        Problem::validation(vec![error])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc9457_members_and_extensions() {
        let problem = Problem::validation(vec![FieldError::new("amount", "must be positive")]);
        let body = problem.to_json();
        assert_eq!(body["type"], "https://wasmpay.dev/problems/validation-failed");
        assert_eq!(body["status"], 422);
        assert_eq!(body["detail"], "amount: must be positive");
        assert_eq!(body["errors"][0]["field"], "amount");
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let problem = Problem::method_not_allowed(&["GET", "DELETE"]);
        assert_eq!(problem.status(), 405);
        assert_eq!(problem.0.headers, vec![("allow", "GET, DELETE".to_owned())]);
    }
}
