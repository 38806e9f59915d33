//! HTTP routing as Spin does it: `/...` becomes a trailing `*`, `:name` captures a segment,
//! `routefinder`'s best match picks the most specific route whatever the declaration order,
//! and a later trigger with the same route replaces an earlier one (with a warning).

use crate::manifest::HttpRoute;

#[derive(Debug, Clone)]
struct Entry {
    component: String,
    raw_route: String,
    based_route: String,
    /// For `/prefix/...` routes, the prefix whose remainder becomes `spin-path-info`.
    wildcard_prefix: Option<String>,
}

pub struct Router {
    inner: routefinder::Router<Entry>,
}

/// The route a request matched, and what Spin tells the component about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub component: String,
    pub raw_route: String,
    pub based_route: String,
    pub path_info: String,
    pub named_segments: Vec<(String, String)>,
}

impl Router {
    /// Builds the router; the second value lists duplicate routes that will never be used.
    pub fn build(routes: &[HttpRoute]) -> anyhow::Result<(Self, Vec<String>)> {
        let mut effective: Vec<Entry> = Vec::new();
        let mut duplicates = Vec::new();
        for route in routes {
            let entry = parse_route(route);
            match effective.iter_mut().find(|e| e.raw_route == entry.raw_route) {
                Some(existing) => {
                    duplicates.push(format!(
                        "  {}: {} (duplicate of {})",
                        existing.component, existing.raw_route, entry.component
                    ));
                    *existing = entry;
                }
                None => effective.push(entry),
            }
        }
        let mut inner = routefinder::Router::new();
        for entry in effective {
            let pattern = match &entry.wildcard_prefix {
                Some(prefix) => format!("{prefix}/*"),
                None => entry.based_route.clone(),
            };
            inner
                .add(pattern.as_str(), entry)
                .map_err(|e| anyhow::anyhow!("invalid route {pattern:?}: {e}"))?;
        }
        Ok((Self { inner }, duplicates))
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        let found = self.inner.best_match(path)?;
        let entry = found.handler();
        let path_info = match &entry.wildcard_prefix {
            Some(prefix) => path.get(prefix.len()..).unwrap_or_default().to_owned(),
            None => String::new(),
        };
        let named_segments = found
            .captures()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Some(RouteMatch {
            component: entry.component.clone(),
            raw_route: entry.raw_route.clone(),
            based_route: entry.based_route.clone(),
            path_info,
            named_segments,
        })
    }
}

fn parse_route(route: &HttpRoute) -> Entry {
    let absolute = if route.route.starts_with('/') {
        route.route.clone()
    } else {
        format!("/{}", route.route)
    };
    let based_route = match absolute.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => absolute,
    };
    let wildcard_prefix = based_route
        .strip_suffix("/...")
        .or_else(|| based_route.strip_suffix("/*"))
        .map(str::to_owned);
    Entry {
        component: route.component.clone(),
        raw_route: route.route.clone(),
        based_route,
        wildcard_prefix,
    }
}

impl RouteMatch {
    /// The headers Spin adds to the request a component receives.
    pub fn spin_headers(&self, full_url: &str, client_addr: &str) -> Vec<(String, String)> {
        let component_route = self
            .raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route)
            .to_owned();
        let mut headers = vec![
            ("spin-path-info".to_owned(), self.path_info.clone()),
            ("spin-full-url".to_owned(), full_url.to_owned()),
            ("spin-matched-route".to_owned(), self.based_route.clone()),
            ("spin-base-path".to_owned(), "/".to_owned()),
            ("spin-raw-component-route".to_owned(), self.raw_route.clone()),
            ("spin-component-route".to_owned(), component_route),
            ("spin-client-addr".to_owned(), client_addr.to_owned()),
        ];
        for (name, value) in &self.named_segments {
            headers.push((format!("spin-path-match-{}", name.to_ascii_lowercase()), value.clone()));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let routes: Vec<HttpRoute> = routes
            .iter()
            .map(|(route, component)| HttpRoute {
                route: (*route).into(),
                component: (*component).into(),
            })
            .collect();
        Router::build(&routes).unwrap().0
    }

    #[test]
    fn a_specific_route_beats_a_wildcard_whatever_the_order() {
        let router = router(&[
            ("/accounts/...", "accounts"),
            ("/accounts/:id/transactions", "transfers"),
            ("/...", "fallback"),
        ]);
        assert_eq!(router.route("/accounts/42/transactions").unwrap().component, "transfers");
        assert_eq!(router.route("/accounts/42").unwrap().component, "accounts");
        assert_eq!(router.route("/accounts").unwrap().component, "accounts");
        assert_eq!(router.route("/elsewhere").unwrap().component, "fallback");
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let router = router(&[("/health", "a")]);
        assert!(router.route("/health").is_some());
        assert!(router.route("/health/x").is_none());
        assert!(router.route("/").is_none());
    }

    #[test]
    fn path_info_is_the_remainder_after_the_wildcard_prefix() {
        let router = router(&[("/x/...", "x")]);
        for (path, info) in [("/x", ""), ("/x/", "/"), ("/x/a/b", "/a/b"), ("/x/a/", "/a/")] {
            assert_eq!(router.route(path).unwrap().path_info, info, "{path}");
        }
    }

    #[test]
    fn headers_match_what_spin_sends() {
        let router = router(&[("/accounts/...", "accounts")]);
        let headers = router
            .route("/accounts/123")
            .unwrap()
            .spin_headers("http://127.0.0.1:3000/accounts/123?x=1", "127.0.0.1:54321");
        let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("spin-full-url"), Some("http://127.0.0.1:3000/accounts/123?x=1"));
        assert_eq!(get("spin-path-info"), Some("/123"));
        assert_eq!(get("spin-matched-route"), Some("/accounts/..."));
        assert_eq!(get("spin-raw-component-route"), Some("/accounts/..."));
        assert_eq!(get("spin-component-route"), Some("/accounts"));
        assert_eq!(get("spin-base-path"), Some("/"));
        assert_eq!(get("spin-client-addr"), Some("127.0.0.1:54321"));
    }

    #[test]
    fn named_segments_become_path_match_headers() {
        let router = router(&[("/accounts/:id/transactions", "transfers")]);
        let found = router.route("/accounts/abc/transactions").unwrap();
        let headers = found.spin_headers("http://h/accounts/abc/transactions", "c");
        assert!(headers.contains(&("spin-path-match-id".into(), "abc".into())));
        assert_eq!(found.path_info, "");
    }

    #[test]
    fn the_last_duplicate_route_wins_and_is_reported() {
        let routes = vec![
            HttpRoute {
                route: "/a/...".into(),
                component: "first".into(),
            },
            HttpRoute {
                route: "/a/...".into(),
                component: "second".into(),
            },
        ];
        let (router, duplicates) = Router::build(&routes).unwrap();
        assert_eq!(router.route("/a/b").unwrap().component, "second");
        assert_eq!(duplicates.len(), 1);
    }
}
