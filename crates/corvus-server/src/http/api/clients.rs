//! `/api/v1/clients`: the connected clients, one client's details, and the kick.

use std::time::Duration;

use corvus_core::{DropReason, Session};
use hyper::StatusCode;
use serde::Serialize;

use super::{json, not_found, Answer, Page, Query};
use crate::broker::{EvictReason, Eviction};
use crate::connection_info::ConnectionInfo;
use crate::http::HttpState;

/// How long a kick waits for the connection to close.
const KICK_WAIT: Duration = Duration::from_secs(5);

/// A connected client (the OpenAPI `Client`).
#[derive(Debug, Serialize)]
pub struct Client {
    client_id: String,
    username: Option<String>,
    identity: String,
    peer: String,
    listener: String,
    transport: &'static str,
    protocol: &'static str,
    connected_at: u64,
    keep_alive: u16,
    clean_start: bool,
    messages_received: u64,
    messages_sent: u64,
    subscriptions: usize,
    queued: usize,
    inflight: usize,
    dropped: u64,
}

impl Client {
    pub fn new(client_id: &str, info: &ConnectionInfo, session: &Session) -> Client {
        let facts = &info.facts;
        Client {
            client_id: client_id.to_owned(),
            username: facts.username.as_deref().map(str::to_owned),
            identity: facts.identity.to_string(),
            peer: facts.peer.to_string(),
            listener: facts.listener.addr.to_string(),
            transport: facts.listener.kind,
            protocol: info.protocol_name(),
            connected_at: facts.connected_at,
            keep_alive: facts.keep_alive,
            clean_start: facts.clean_start,
            messages_received: info.messages_received(),
            messages_sent: info.messages_sent(),
            subscriptions: session.subscription_count(),
            queued: session.queued_len(),
            inflight: session.inflight_len(),
            dropped: session.counters.total_dropped(),
        }
    }
}

/// A session's drops by reason, every reason present (the OpenAPI `dropped_by_reason`).
pub fn drops_by_reason(session: &Session) -> std::collections::BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .map(|&reason| (reason.label(), session.counters.dropped(reason)))
        .collect()
}

/// A subscription (the OpenAPI `Subscription`).
#[derive(Debug, Serialize)]
pub struct Subscription {
    client_id: String,
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    identifier: Option<u32>,
}

impl Subscription {
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn filter(&self) -> &str {
        &self.filter
    }
}

/// A session's subscriptions, by filter.
pub fn subscriptions_of(session: &Session) -> Vec<Subscription> {
    let mut list: Vec<Subscription> = session
        .subscriptions()
        .map(|(filter, entry)| Subscription {
            client_id: session.client_id().to_string(),
            filter: filter.to_string(),
            qos: entry.options.qos as u8,
            no_local: entry.options.no_local,
            retain_as_published: entry.options.retain_as_published,
            retain_handling: entry.options.retain_handling as u8,
            identifier: entry.identifier,
        })
        .collect();
    list.sort_by(|a, b| a.filter.cmp(&b.filter));
    list
}

/// A connected client with its session's details (the OpenAPI `ClientDetails`).
#[derive(Debug, Serialize)]
struct ClientDetails {
    #[serde(flatten)]
    client: Client,
    queued_bytes: usize,
    inbound_qos2: usize,
    session_expiry_interval: u32,
    dropped_by_reason: std::collections::BTreeMap<&'static str, u64>,
    subscription_list: Vec<Subscription>,
}

/// The connected clients the query's filters select, by client id, paged; only the page's
/// sessions are locked (briefly, one at a time) for their figures.
pub fn list(state: &HttpState, query: &Query) -> Answer {
    let username = query.get("username");
    let protocol = query.get("protocol");
    let mut selected: Vec<_> = state
        .broker
        .sessions_by_client()
        .into_iter()
        .filter_map(|(client_id, handle)| Some((client_id, handle.connection_info()?, handle)))
        .filter(|(client_id, info, _)| {
            let facts = &info.facts;
            username.is_none_or(|u| facts.username.as_deref() == Some(u))
                && protocol.is_none_or(|p| info.protocol_name() == p)
                && query.searched(&[
                    client_id.as_ref(),
                    facts.username.as_deref().unwrap_or(""),
                    &facts.peer.to_string(),
                ])
        })
        .collect();
    selected.sort_by(|a, b| a.0.cmp(&b.0));
    let page = Page::of(selected, query)?
        .map(|(client_id, info, handle)| Client::new(&client_id, &info, &handle.lock()));
    Ok(json(StatusCode::OK, &page))
}

pub fn details(state: &HttpState, client_id: &str) -> Answer {
    let handle = state
        .broker
        .session(client_id)
        .ok_or_else(|| not_found("no client with this id is connected"))?;
    let info = handle
        .connection_info()
        .ok_or_else(|| not_found("no client with this id is connected"))?;
    let session = handle.lock();
    let details = ClientDetails {
        client: Client::new(client_id, &info, &session),
        queued_bytes: session.queued_bytes(),
        inbound_qos2: session.inbound_qos2_len(),
        session_expiry_interval: session.expiry_interval,
        dropped_by_reason: drops_by_reason(&session),
        subscription_list: subscriptions_of(&session),
    };
    drop(session);
    Ok(json(StatusCode::OK, &details))
}

#[derive(Serialize)]
struct Kicked<'a> {
    client_id: &'a str,
    kicked: bool,
}

/// Disconnects the client with 0x98 and waits for its connection to close.
pub async fn kick(state: &HttpState, client_id: &str) -> Answer {
    evict_and_wait(state, client_id).await?;
    Ok(json(
        StatusCode::OK,
        &Kicked {
            client_id,
            kicked: true,
        },
    ))
}

/// Asks the connection holding `client_id`'s session to leave (0x98) and waits until it
/// has closed and settled the session. Not connected: 404.
pub async fn evict_and_wait(
    state: &HttpState,
    client_id: &str,
) -> Result<(), (StatusCode, String)> {
    let left = match state.broker.evict(client_id, EvictReason::Administrator) {
        Eviction::NotConnected => return Err(not_found("no client with this id is connected")),
        Eviction::Asked(left) => tokio::time::timeout(KICK_WAIT, left).await.is_ok(),
        // Leaving already: wait for it to let go of the session.
        Eviction::Leaving => {
            let gone = async {
                while state
                    .broker
                    .session(client_id)
                    .is_some_and(|h| h.is_online())
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(KICK_WAIT, gone).await.is_ok()
        }
    };
    match left {
        true => Ok(()),
        false => Err((
            StatusCode::GATEWAY_TIMEOUT,
            format!("the connection did not close within {KICK_WAIT:?}"),
        )),
    }
}
