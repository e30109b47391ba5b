//! The JSON admin API under `/api/v1/`, as `http/openapi.json` documents it: clients,
//! sessions, subscriptions, retained messages, top topics, broker stats, reload.
//!
//! This module owns the routing table ([`ROUTES`], which a test holds against the OpenAPI
//! document), query parsing and paging, and the JSON answers; each resource's answers are
//! in its own module. Listing endpoints walk the sessions, locking each briefly, alone (as a
//! `$SYS` snapshot does): made for people and tools, not for polling many times a second.

mod clients;
mod query;
mod retained;
mod sessions;
mod stats;

use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use super::{Body, HttpState};
pub use query::{percent_decode, Query};

/// Every route: method and path pattern (`{name}` is one percent-encoded path segment,
/// `{topic}` the rest of the path), as the OpenAPI document names them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/topics/top"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/clients/{client_id}"),
    ("POST", "/api/v1/clients/{client_id}/kick"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/{client_id}"),
    ("DELETE", "/api/v1/sessions/{client_id}"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", "/api/v1/retained"),
    ("GET", "/api/v1/retained/{topic}"),
    ("DELETE", "/api/v1/retained/{topic}"),
    ("POST", "/api/v1/reload"),
];

/// Answers a request under `/api/v1/` (the caller checked who asks).
pub async fn handle(
    state: &HttpState,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    let Some((pattern, argument)) = route(path) else {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    };
    let query = match Query::parse(query.unwrap_or("")) {
        Ok(query) => query,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let argument = match argument.map(percent_decode).transpose() {
        Ok(argument) => argument.unwrap_or_default(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let answer = match (method.as_str(), pattern) {
        ("GET", "/api/v1/stats") => Ok(stats::stats(state)),
        ("GET", "/api/v1/topics/top") => stats::top_topics(state, &query),
        ("GET", "/api/v1/clients") => clients::list(state, &query),
        ("GET", "/api/v1/clients/{client_id}") => clients::details(state, &argument),
        ("POST", "/api/v1/clients/{client_id}/kick") => clients::kick(state, &argument).await,
        ("GET", "/api/v1/sessions") => sessions::list(state, &query),
        ("GET", "/api/v1/sessions/{client_id}") => sessions::details(state, &argument),
        ("DELETE", "/api/v1/sessions/{client_id}") => sessions::delete(state, &argument).await,
        ("GET", "/api/v1/subscriptions") => sessions::subscriptions(state, &query),
        ("GET", "/api/v1/retained") => retained::list(state, &query),
        ("GET", "/api/v1/retained/{topic}") => retained::get(state, &argument),
        ("DELETE", "/api/v1/retained/{topic}") => retained::delete(state, &argument),
        ("POST", "/api/v1/reload") => stats::reload(state).await,
        _ => return method_not_allowed(pattern),
    };
    answer.unwrap_or_else(|(status, message)| error(status, &message))
}

/// What an endpoint answers: a response, or a status and what went wrong.
type Answer = Result<Response<Body>, (StatusCode, String)>;

/// The route pattern `path` matches and its argument (still percent-encoded), if any.
fn route(path: &str) -> Option<(&'static str, Option<&str>)> {
    let rest = path.strip_prefix("/api/v1/")?;
    let (resource, argument) = match rest.split_once('/') {
        Some((resource, argument)) => (resource, Some(argument)),
        None => (rest, None),
    };
    let pattern = match (resource, argument) {
        ("stats", None) => "/api/v1/stats",
        ("topics", Some("top")) => return Some(("/api/v1/topics/top", None)),
        ("clients", None) => "/api/v1/clients",
        ("clients", Some(id)) => match id.strip_suffix("/kick") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                return Some(("/api/v1/clients/{client_id}/kick", Some(id)))
            }
            _ if !id.is_empty() && !id.contains('/') => "/api/v1/clients/{client_id}",
            _ => return None,
        },
        ("sessions", None) => "/api/v1/sessions",
        ("sessions", Some(id)) if !id.is_empty() && !id.contains('/') => {
            "/api/v1/sessions/{client_id}"
        }
        ("subscriptions", None) => "/api/v1/subscriptions",
        ("retained", None) => "/api/v1/retained",
        // A topic's levels may be written with `/`; the rest of the path is the topic.
        ("retained", Some(_)) => "/api/v1/retained/{topic}",
        ("reload", None) => "/api/v1/reload",
        _ => return None,
    };
    Some((pattern, argument))
}

fn method_not_allowed(pattern: &str) -> Response<Body> {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, p)| *p == pattern)
        .map(|(m, _)| *m)
        .collect();
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        // Our own structs always serialize; this would be a bug.
        Err(e) => {
            tracing::error!(error = %e, "could not serialize an admin API answer");
            super::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &ErrorBody { error: message })
}

/// An empty answer (204).
fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

fn not_found(what: &str) -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, what.to_owned())
}

/// One page of a listing: `{total, offset, limit, items}`.
#[derive(Serialize)]
struct Page<T> {
    total: usize,
    offset: usize,
    limit: usize,
    items: Vec<T>,
}

impl<T> Page<T> {
    /// The page `query`'s `offset` and `limit` ask for, of `all` (already filtered and in
    /// order).
    fn of(all: Vec<T>, query: &Query) -> Result<Page<T>, (StatusCode, String)> {
        let (offset, limit) = query.paging()?;
        let total = all.len();
        let items = all.into_iter().skip(offset).take(limit).collect();
        Ok(Page {
            total,
            offset,
            limit,
            items,
        })
    }

    /// The same page with each item made into what is shown: costly items (a payload's
    /// encoding) are made for the page only.
    fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            total: self.total,
            offset: self.offset,
            limit: self.limit,
            items: self.items.into_iter().map(f).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_patterns_with_their_argument() {
        let cases = [
            ("/api/v1/stats", Some(("/api/v1/stats", None))),
            ("/api/v1/clients", Some(("/api/v1/clients", None))),
            (
                "/api/v1/clients/a%2Fb",
                Some(("/api/v1/clients/{client_id}", Some("a%2Fb"))),
            ),
            (
                "/api/v1/clients/kick/kick",
                Some(("/api/v1/clients/{client_id}/kick", Some("kick"))),
            ),
            ("/api/v1/clients/a/b", None),
            ("/api/v1/clients/", None),
            (
                "/api/v1/retained/a//b/",
                Some(("/api/v1/retained/{topic}", Some("a//b/"))),
            ),
            ("/api/v1/topics/top", Some(("/api/v1/topics/top", None))),
            ("/api/v1/topics", None),
            ("/api/v2/stats", None),
            ("/api/v1/nothing", None),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path), expected, "{path}");
        }
    }

    /// The OpenAPI document names exactly the routes served (and the endpoints outside
    /// `/api/v1/` the server answers).
    #[test]
    fn the_openapi_document_describes_every_route_and_no_other() {
        let document: serde_json::Value =
            serde_json::from_str(crate::http::OPENAPI).expect("openapi.json is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for method in operations.as_object().expect("operations").keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .chain(
                ["/healthz", "/readyz", "/metrics", "/api/openapi.json"]
                    .map(|p| ("GET".to_string(), p.to_string())),
            )
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
