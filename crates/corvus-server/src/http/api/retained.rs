//! `/api/v1/retained`: the retained messages, one topic's message, and clearing it.

use std::sync::Arc;

use base64::Engine;
use corvus_core::Message;
use hyper::StatusCode;
use mqtt_codec::topic::{validate_topic_filter, validate_topic_name};
use serde::Serialize;

use super::{json, no_content, not_found, Answer, Page, Query};
use crate::clock;
use crate::http::HttpState;

/// A retained message (the OpenAPI `Retained`).
#[derive(Debug, Serialize)]
struct Retained {
    topic: String,
    qos: u8,
    payload_bytes: usize,
    /// The payload as text, when it is UTF-8.
    payload: Option<String>,
    payload_base64: String,
    expires_at: Option<u64>,
}

impl Retained {
    fn new(message: &Message) -> Retained {
        Retained {
            topic: message.topic.to_string(),
            qos: message.qos as u8,
            payload_bytes: message.payload.len(),
            payload: std::str::from_utf8(&message.payload)
                .ok()
                .map(str::to_owned),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(&message.payload),
            expires_at: message.expires_at,
        }
    }
}

fn bad_request(what: &str, e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, format!("{what} {e}"))
}

pub fn list(state: &HttpState, query: &Query) -> Answer {
    let filter = query.get("filter").unwrap_or("#");
    validate_topic_filter(filter).map_err(|e| bad_request("the filter", e))?;
    let mut messages = state.broker.retained_matching(filter, clock::now());
    messages.sort_by(|a, b| a.topic.cmp(&b.topic));
    let page = Page::of(messages, query)?.map(|m| Retained::new(&m));
    Ok(json(StatusCode::OK, &page))
}

/// The live message retained on `topic`.
fn live(state: &HttpState, topic: &str) -> Result<Arc<Message>, (StatusCode, String)> {
    validate_topic_name(topic).map_err(|e| bad_request("the topic", e))?;
    state
        .broker
        .retained_message(topic)
        .filter(|m| !m.is_expired(clock::now()))
        .ok_or_else(|| not_found("no message is retained on this topic"))
}

pub fn get(state: &HttpState, topic: &str) -> Answer {
    let message = live(state, topic)?;
    Ok(json(StatusCode::OK, &Retained::new(&message)))
}

pub fn delete(state: &HttpState, topic: &str) -> Answer {
    validate_topic_name(topic).map_err(|e| bad_request("the topic", e))?;
    match state.broker.clear_retained(topic) {
        true => Ok(no_content()),
        false => Err(not_found("no message is retained on this topic")),
    }
}
