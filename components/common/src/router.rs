//! A component's route table. Matches on the full request path, as Spin hands it over,
//! with the same `routefinder` patterns Spin uses (`:name` segments, `*` wildcard), and
//! answers unknown paths with a 404 problem and known paths with another method with a
//! 405 problem listing the allowed methods.

use spin_sdk::http::{Method, Request, Response};

use crate::problem::Problem;

/// Path parameters captured by a route such as `/accounts/:id`.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// A parameter that must be a UUID; anything else names no resource.
    pub fn uuid(&self, name: &str) -> Option<uuid::Uuid> {
        self.get(name)?.parse().ok()
    }
}

pub type Handler = fn(&Request, &Params) -> Result<Response, Problem>;

#[derive(Default)]
pub struct Router {
    by_method: Vec<(Method, routefinder::Router<Handler>)>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Get, path, handler)
    }

    pub fn post(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Post, path, handler)
    }

    pub fn patch(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Patch, path, handler)
    }

    pub fn delete(self, path: &str, handler: Handler) -> Self {
        self.route(Method::Delete, path, handler)
    }

    fn route(mut self, method: Method, path: &str, handler: Handler) -> Self {
        let position = match self.by_method.iter().position(|(m, _)| *m == method) {
            Some(position) => position,
            None => {
                self.by_method.push((method, routefinder::Router::new()));
                self.by_method.len() - 1
            }
        };
        // Route patterns are literals in the component's source; a bad one is a programming
        // error caught by the component's own tests.
        self.by_method[position]
            .1
            .add(path, handler)
            .unwrap_or_else(|e| panic!("invalid route pattern {path}: {e}"));
        self
    }

    pub fn handle(&self, request: &Request) -> Response {
        let path = request.path();
        let method = request.method();
        let matched = self
            .by_method
            .iter()
            .find(|(m, _)| m == method)
            .and_then(|(_, router)| router.best_match(path));
        match matched {
            Some(found) => {
                let params = Params(
                    found
                        .captures()
                        .iter()
                        .map(|(name, value)| (name.to_owned(), value.to_owned()))
                        .collect(),
                );
                let handler = *found.handler();
                handler(request, &params).unwrap_or_else(Problem::into_response)
            }
            None => self.unmatched(path).into_response(),
        }
    }

    fn unmatched(&self, path: &str) -> Problem {
        let allowed: Vec<&str> = self
            .by_method
            .iter()
            .filter(|(_, router)| router.best_match(path).is_some())
            .map(|(method, _)| method_name(method))
            .collect();
        if allowed.is_empty() {
            Problem::not_found(format!("no resource at {path}"))
        } else {
            Problem::method_not_allowed(&allowed)
        }
    }
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Connect => "CONNECT",
        Method::Trace => "TRACE",
        Method::Other(_) => "OTHER",
    }
}
