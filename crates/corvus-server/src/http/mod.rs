//! The broker's HTTP endpoint (`[http] listen`, `--http-listen`): Prometheus metrics, the
//! JSON admin API, the live dashboard and health checks, for operators and their tools.
//!
//! This module owns the server (HTTP/1.1 on hyper), who may ask (a bearer token from the
//! config; without one, only clients on loopback), and the top-level routing. What each
//! endpoint says is in its own module: `prometheus.rs` for `/metrics`, `api/` for
//! `/api/v1/`, `dashboard.rs` for `/dashboard/`; `openapi.json` documents them all.
//!
//! Answers are built in memory; no endpoint reads a request body; each connection must send
//! its request head within [`HEADER_TIMEOUT`].

pub mod api;
pub mod dashboard;
mod prometheus;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::reload::Reloader;
use crate::stats::{self, BrokerStats, SharedStats};

/// A connection that has not sent a whole request head by then is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the endpoint reads or acts on.
pub struct HttpState {
    pub broker: Arc<Broker>,
    /// The bearer token every request but the health checks must carry; `None`: only
    /// clients on loopback are answered.
    pub token: Option<String>,
    /// The statistics tracker `$SYS` shares (one start, one set of load averages).
    pub stats: SharedStats,
    /// What `POST /api/v1/reload` reloads.
    pub reloader: Arc<Reloader>,
}

impl HttpState {
    /// A statistics snapshot with the load averages brought up to now.
    pub fn snapshot(&self) -> BrokerStats {
        stats::snapshot(&self.stats, &self.broker, Instant::now())
    }
}

/// The OpenAPI document of everything this endpoint serves.
pub const OPENAPI: &str = include_str!("openapi.json");

impl std::fmt::Debug for HttpState {
    // Never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

pub type Body = Full<Bytes>;

/// Serves HTTP on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Finished connections leave the set as new ones come.
        while connections.try_join_next().is_some() {}
        let state = state.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, peer, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                // The request being answered is finished, then the connection closes.
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
    // The server's shutdown grace bounds this wait.
    while connections.join_next().await.is_some() {}
}

/// One request: checks who asks, then routes.
async fn handle(state: &HttpState, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Health checks say nothing secret and must work for probes without credentials.
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
        // The endpoint starts once the store is recovered and every listener bound.
        (&Method::GET, "/readyz") => return text(StatusCode::OK, "ready\n"),
        _ => {}
    }
    // The API's description and the dashboard's files say nothing secret either, but a
    // broker without a token answers only loopback clients, whatever they ask.
    let public = match method {
        Method::GET => public_answer(&path),
        _ => None,
    };
    let header = match public {
        Some(_) => None,
        None => request.headers().get(AUTHORIZATION),
    };
    let refused = match (&public, &state.token) {
        (Some(_), Some(_)) => None,
        _ => refusal(state, peer, header),
    };
    if let Some(refusal) = refused {
        info!(%peer, %method, path = %path, "refused http request: {}", refusal.status());
        return refusal;
    }
    if let Some(answer) = public {
        return answer;
    }
    match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(Body::from(prometheus::render(state)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        _ if path.starts_with("/api/v1/") => {
            api::handle(state, &method, &path, request.uri().query()).await
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The answer to `GET path` when it needs no token: the API's description, the dashboard's
/// files and the redirects to it.
fn public_answer(path: &str) -> Option<Response<Body>> {
    match path {
        "/api/openapi.json" => Some(static_file("application/json", OPENAPI)),
        "/" | "/dashboard" => Some(redirect("/dashboard/")),
        _ => dashboard::asset(path).map(|(content_type, body)| static_file(content_type, body)),
    }
}

fn static_file(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Built into the binary: after an upgrade, a browser must not keep the old script.
    headers.insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    response
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(hyper::header::LOCATION, HeaderValue::from_static(to));
    response
}

/// With a token configured, the request must carry it (`Authorization: Bearer <token>`);
/// without one, only loopback clients are answered. The refusal to send, if any.
fn refusal(
    state: &HttpState,
    peer: SocketAddr,
    header: Option<&HeaderValue>,
) -> Option<Response<Body>> {
    let Some(token) = &state.token else {
        return (!peer.ip().is_loopback()).then(|| {
            text(
                StatusCode::FORBIDDEN,
                "no http token configured: answering loopback clients only\n",
            )
        });
    };
    let presented = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match presented {
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) => None,
        _ => {
            let mut refusal = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            refusal
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(refusal)
        }
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(token: Option<&str>) -> HttpState {
        let broker = Arc::new(Broker::new(corvus_core::BrokerConfig::default()));
        let config = crate::Config::default();
        let security =
            Arc::new(crate::security::Security::load(&config).expect("the default security loads"));
        HttpState {
            reloader: Arc::new(Reloader::new(
                broker.clone(),
                security,
                Vec::new(),
                Vec::new(),
                config,
            )),
            broker,
            token: token.map(str::to_owned),
            stats: Arc::new(std::sync::Mutex::new(stats::StatsTracker::new(
                Instant::now(),
            ))),
        }
    }

    #[test]
    fn without_a_token_only_loopback_is_answered() {
        let open = state(None);
        assert!(refusal(&open, "127.0.0.1:5000".parse().unwrap(), None).is_none());
        assert!(refusal(&open, "[::1]:5000".parse().unwrap(), None).is_none());
        let refused = refusal(&open, "192.0.2.7:5000".parse().unwrap(), None).unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn with_a_token_everyone_must_present_it() {
        let guarded = state(Some("s3cret"));
        let bearer = |v: &'static str| HeaderValue::from_static(v);
        for peer in ["127.0.0.1:5000", "192.0.2.7:5000"] {
            let peer = peer.parse().unwrap();
            assert!(refusal(&guarded, peer, Some(&bearer("Bearer s3cret"))).is_none());
            for wrong in [None, Some(bearer("Bearer s3cre")), Some(bearer("s3cret"))] {
                let refused = refusal(&guarded, peer, wrong.as_ref()).unwrap();
                assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
                assert!(refused.headers().contains_key(WWW_AUTHENTICATE));
            }
        }
    }
}
