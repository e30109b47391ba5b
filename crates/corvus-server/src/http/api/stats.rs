//! `/api/v1/stats`, `/api/v1/topics/top` and `/api/v1/reload`: the broker as a whole.

use hyper::StatusCode;
use serde::Serialize;

use super::{json, Answer, Query};
use crate::clock;
use crate::http::HttpState;
use crate::stats::BrokerStats;
use crate::topic_rates::TopicRate;

#[derive(Serialize)]
struct Stats {
    version: &'static str,
    #[serde(flatten)]
    stats: BrokerStats,
}

pub fn stats(state: &HttpState) -> hyper::Response<crate::http::Body> {
    json(
        StatusCode::OK,
        &Stats {
            version: env!("CARGO_PKG_VERSION"),
            stats: state.snapshot(),
        },
    )
}

#[derive(Serialize)]
struct TopTopics {
    window_seconds: f64,
    items: Vec<TopicRate>,
}

pub fn top_topics(state: &HttpState, query: &Query) -> Answer {
    let limit = query.number("limit", 10, 1..=100)?;
    let (items, window_seconds) = state.broker.topic_rates.top(limit, clock::now());
    Ok(json(
        StatusCode::OK,
        &TopTopics {
            window_seconds,
            items,
        },
    ))
}

#[derive(Serialize)]
struct Reloaded {
    reloaded: String,
}

/// Reloads what SIGHUP reloads; all or nothing.
pub async fn reload(state: &HttpState) -> Answer {
    let reloader = state.reloader.clone();
    // Reading and checking files (and hashing nothing per request, but a password file's
    // parse) is blocking work.
    let outcome = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match outcome {
        Ok(reloaded) => Ok(json(StatusCode::OK, &Reloaded { reloaded })),
        Err(why) => Err((StatusCode::UNPROCESSABLE_ENTITY, why)),
    }
}
