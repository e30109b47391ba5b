//! `/api/v1/sessions` and `/api/v1/subscriptions`: every session, connected or not, with
//! its queue, drops and subscriptions; ending a session.

use corvus_core::Session;
use hyper::StatusCode;
use serde::Serialize;

use super::clients::{drops_by_reason, evict_and_wait, subscriptions_of, Client, Subscription};
use super::{json, no_content, not_found, Answer, Page, Query};
use crate::clock;
use crate::http::HttpState;

/// A session (the OpenAPI `Session`).
#[derive(Debug, Serialize)]
struct SessionSummary {
    client_id: String,
    connected: bool,
    expiry_interval: u32,
    expires_at: Option<u64>,
    subscriptions: usize,
    queued: usize,
    queued_bytes: usize,
    inflight: usize,
    dropped: u64,
    will_pending: bool,
}

impl SessionSummary {
    fn new(session: &Session, connected: bool) -> SessionSummary {
        SessionSummary {
            client_id: session.client_id().to_string(),
            connected,
            expiry_interval: session.expiry_interval,
            expires_at: (!connected).then(|| session.expires_at()).flatten(),
            subscriptions: session.subscription_count(),
            queued: session.queued_len(),
            queued_bytes: session.queued_bytes(),
            inflight: session.inflight_len(),
            dropped: session.counters.total_dropped(),
            will_pending: session.pending_will.is_some(),
        }
    }
}

/// A session with its details (the OpenAPI `SessionDetails`).
#[derive(Debug, Serialize)]
struct SessionDetails {
    #[serde(flatten)]
    summary: SessionSummary,
    dropped_by_reason: std::collections::BTreeMap<&'static str, u64>,
    subscription_list: Vec<Subscription>,
    client: Option<Client>,
}

pub fn list(state: &HttpState, query: &Query) -> Answer {
    let connected = query.boolean("connected")?;
    let mut sessions: Vec<SessionSummary> = state
        .broker
        .sessions_by_client()
        .into_iter()
        .filter(|(client_id, _)| query.searched(&[client_id]))
        .filter_map(|(_, handle)| {
            let online = handle.is_online();
            connected
                .is_none_or(|wanted| wanted == online)
                .then(|| SessionSummary::new(&handle.lock(), online))
        })
        .collect();
    sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Ok(json(StatusCode::OK, &Page::of(sessions, query)?))
}

pub fn details(state: &HttpState, client_id: &str) -> Answer {
    let handle = state
        .broker
        .session(client_id)
        .ok_or_else(|| not_found("no session for this client id"))?;
    let info = handle.connection_info();
    let session = handle.lock();
    let details = SessionDetails {
        summary: SessionSummary::new(&session, info.is_some()),
        dropped_by_reason: drops_by_reason(&session),
        subscription_list: subscriptions_of(&session),
        client: info.map(|info| Client::new(client_id, &info, &session)),
    };
    drop(session);
    Ok(json(StatusCode::OK, &details))
}

/// Ends the session: its connection first (0x98), then the session itself.
pub async fn delete(state: &HttpState, client_id: &str) -> Answer {
    let handle = state
        .broker
        .session(client_id)
        .ok_or_else(|| not_found("no session for this client id"))?;
    if handle.is_online() {
        match evict_and_wait(state, client_id).await {
            // It left by itself meanwhile.
            Err((StatusCode::NOT_FOUND, _)) | Ok(()) => {}
            Err(other) => return Err(other),
        }
    }
    if state.broker.session(client_id).is_none() {
        // It ended with its connection (expiry 0).
        return Ok(no_content());
    }
    match state.broker.discard_session(client_id, clock::now()) {
        true => Ok(no_content()),
        false => Err((
            StatusCode::CONFLICT,
            "a new connection took the session meanwhile".into(),
        )),
    }
}

pub fn subscriptions(state: &HttpState, query: &Query) -> Answer {
    let only_client = query.get("client_id");
    let containing = query.get("filter");
    let handles = match only_client {
        Some(client_id) => state.broker.session(client_id).into_iter().collect(),
        None => state.broker.session_handles(),
    };

    let mut list: Vec<Subscription> = Vec::new();
    for handle in handles {
        let session = handle.lock();
        list.extend(subscriptions_of(&session));
    }
    list.retain(|s| containing.is_none_or(|text| s.filter().contains(text)));
    list.sort_by(|a, b| (a.client_id(), a.filter()).cmp(&(b.client_id(), b.filter())));
    Ok(json(StatusCode::OK, &Page::of(list, query)?))
}
