//! What the broker writes to its store, and how a recovered store becomes sessions again.
//!
//! The rule for what is persisted: a session whose Session Expiry Interval is above zero
//! (`Session::is_persistent`: one that can outlive its connection, and so a crash) has its
//! record, subscriptions, inbound QoS 2 ids and QoS 1/2 deliveries persisted; a session that
//! ends with its connection has nothing worth keeping. Retained messages are always
//! persisted. QoS 0 deliveries never are: at most once allows losing them.

use std::sync::Arc;

use corvus_core::session::{InFlight, StoreEvent};
use corvus_core::{Authorizer, ClientId, Principal, Session};
use corvus_store::journal::ReplayedSession;
use corvus_store::keyed::{LoadedSession, SessionRecord};
use corvus_store::StoreOp;

use crate::broker::Broker;

/// The record the store keeps for a session.
pub fn session_record(session: &Session) -> SessionRecord {
    SessionRecord {
        expiry_interval: session.expiry_interval,
        disconnected_at: session.disconnected_at,
        pending_will: session.pending_will.clone(),
        armed_will: session.armed_will.clone(),
        last_packet_id: session.last_packet_id(),
        // Only a will needs it checked again: no bearer token on disk without one.
        principal: (session.pending_will.is_some() || session.armed_will.is_some())
            .then(|| session.authorizer.as_ref()?.principal())
            .flatten(),
    }
}

/// Turns what a session reported into store ops, in order. The session reports only what is
/// persisted (see `Session::take_store_events`).
pub fn session_ops(session: &mut Session, out: &mut Vec<StoreOp>) {
    // Most settles (every packet's) have nothing to report: no client id clone for them.
    if !session.has_store_events() {
        return;
    }
    let client = session.client_id().clone();
    out.extend(session.take_store_events().map(|event| {
        let client = client.clone();
        match event {
            StoreEvent::Sent { message, packet_id } => StoreOp::Sent {
                client,
                message,
                packet_id,
            },
            StoreEvent::Released { message, packet_id } => StoreOp::Released {
                client,
                message,
                packet_id,
            },
            StoreEvent::Done { message } => StoreOp::Done { client, message },
            StoreEvent::Subscribed { filter, entry } => StoreOp::PutSubscription {
                client,
                filter,
                entry,
            },
            StoreEvent::Unsubscribed { filter } => StoreOp::DeleteSubscription { client, filter },
            StoreEvent::InboundQos2Removed(packet_id) => {
                StoreOp::InboundReleased { client, packet_id }
            }
        }
    }));
}

/// Makes the authorizer of a recovered session from its record's principal and its client id
/// (the runtime's rules: `Security::restore_authorizer`).
pub type RestoreAuthorizer<'a> =
    dyn Fn(Option<&str>, &str, &Arc<Broker>) -> Arc<dyn Authorizer> + 'a;

/// Rebuilds a session from what the store recovered. It starts offline: a session that was
/// online when the broker stopped counts its expiry from `now`. Its authorizer, which checks
/// its wills when they fire, is made by `restore` from the principal recorded with it.
pub fn restore_session(
    broker: &Arc<Broker>,
    loaded: LoadedSession,
    queue: Option<ReplayedSession>,
    now: corvus_core::Millis,
    restore: &RestoreAuthorizer<'_>,
) -> Session {
    let mut session = Session::new(loaded.client_id.clone(), &broker.config());
    let record = loaded.record;
    session.authorizer = Some(restore(
        record.principal.as_ref().map(Principal::as_str),
        &loaded.client_id,
        broker,
    ));
    session.expiry_interval = record.expiry_interval;
    session.online = false;
    session.disconnected_at = Some(record.disconnected_at.unwrap_or(now));
    session.pending_will = record.pending_will;
    session.armed_will = record.armed_will;
    for (filter, entry) in loaded.subscriptions {
        session.add_subscription(filter, entry);
    }
    let queue = queue.unwrap_or_default();
    for packet_id in queue.inbound_qos2 {
        session.receive_qos2(packet_id);
    }
    session.restore_messages(
        record.last_packet_id,
        queue.queue.into_iter().map(|q| q.delivery),
        queue.inflight.into_iter().map(|f| InFlight {
            packet_id: f.packet_id,
            delivery: f.delivery,
            state: f.state,
        }),
    );
    // Restoring is not news for the store.
    session.take_store_events().for_each(drop);
    session
}

/// A session's record op, or its deletion when it is no longer persisted.
pub fn record_op(session: &Session) -> StoreOp {
    let client: ClientId = session.client_id().clone();
    if session.is_persistent() {
        StoreOp::PutSession {
            client,
            record: session_record(session),
        }
    } else {
        StoreOp::DeleteSession { client }
    }
}

/// For retained messages: put, or delete for an empty payload.
pub fn retained_op(message: &Arc<corvus_core::Message>) -> StoreOp {
    if message.payload.is_empty() {
        StoreOp::DeleteRetained(message.topic.clone())
    } else {
        StoreOp::PutRetained(message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvus_core::session::ArmedWill;
    use corvus_core::{BrokerConfig, Message, Principal, Verdict};

    #[derive(Debug)]
    struct TokenHolder;

    impl Authorizer for TokenHolder {
        fn publish(&self, _: &str, _: bool, _: usize) -> Verdict {
            Verdict::Allowed
        }
        fn subscribe(&self, _: &str) -> bool {
            true
        }
        fn principal(&self) -> Option<Principal> {
            Some("token:secret".into())
        }
    }

    /// The principal (possibly a bearer token) is written only while a will needs it.
    #[test]
    fn the_principal_is_recorded_only_with_a_will() {
        let mut session = Session::new("c".into(), &BrokerConfig::default());
        session.authorizer = Some(Arc::new(TokenHolder));
        assert_eq!(session_record(&session).principal, None);
        session.armed_will = Some(ArmedWill {
            message: Arc::new(Message {
                topic: mqtt_codec::MqttString::from_static("w"),
                payload: bytes::Bytes::new(),
                qos: mqtt_codec::QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
                expires_at: None,
                publisher: None,
                received_at: None,
            }),
            delay_secs: 0,
        });
        let record = session_record(&session);
        assert_eq!(record.principal, Some("token:secret".into()));
        assert!(!format!("{record:?}").contains("secret"), "{record:?}");
    }
}
