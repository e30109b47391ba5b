//! Who gets a published message, and how: from the subscriptions that match its topic, one
//! delivery per session.
//!
//! - A session with several matching subscriptions gets one copy, at the highest QoS among
//!   them, carrying every matching subscription identifier (MQTT 5.0 section 3.3.4; the same
//!   rule for 3.1.1 clients).
//! - The delivered QoS is the lower of the message's and the subscription's.
//! - No Local skips the publisher's own non-shared subscriptions [MQTT-3.8.3-3].
//! - Retain As Published keeps the RETAIN flag; otherwise it is cleared [MQTT-3.3.1-12/13].
//! - Each matching shared group gives the message to one member, round robin, preferring
//!   members whose client is online.
//!
//! This module decides; it enqueues nothing. The runtime hands each delivery to its session.

use std::collections::HashMap;
use std::sync::Arc;

use crate::topic_tree::{Match, SubscriptionEntry, SubscriptionTree};
use crate::types::{ClientId, Delivery, Message};

/// The deliveries for `message`. `is_online` steers shared-subscription picks.
pub fn plan_deliveries(
    message: &Arc<Message>,
    tree: &SubscriptionTree,
    is_online: impl Fn(&ClientId) -> bool,
) -> Vec<(ClientId, Delivery)> {
    let mut deliveries: Vec<(ClientId, Delivery)> = Vec::new();
    // Index into `deliveries` by client, for merging overlapping non-shared subscriptions.
    let mut by_client: HashMap<ClientId, usize> = HashMap::new();
    tree.for_each_match(&message.topic, |found| match found {
        Match::Client { client, entry } => {
            if entry.options.no_local && message.publisher.as_ref() == Some(client) {
                return;
            }
            match by_client.get(client) {
                Some(&i) => merge(&mut deliveries[i].1, message, entry),
                None => {
                    by_client.insert(client.clone(), deliveries.len());
                    deliveries.push((client.clone(), delivery(message, entry)));
                }
            }
        }
        Match::Shared { group } => {
            if let Some((client, entry)) = group.pick(&is_online) {
                deliveries.push((client.clone(), delivery(message, entry)));
            }
        }
    });
    deliveries
}

fn delivery(message: &Arc<Message>, entry: &SubscriptionEntry) -> Delivery {
    Delivery {
        message: message.clone(),
        qos: message.qos.min(entry.options.qos),
        retain: entry.options.retain_as_published && message.retain,
        subscription_ids: entry.identifier.into_iter().collect(),
        stored_id: None,
        received_at: message.received_at,
    }
}

fn merge(delivery: &mut Delivery, message: &Message, entry: &SubscriptionEntry) {
    delivery.qos = delivery.qos.max(message.qos.min(entry.options.qos));
    delivery.retain |= entry.options.retain_as_published && message.retain;
    delivery.subscription_ids.extend(entry.identifier);
}

/// The delivery of a retained message to a subscription that has just been made: RETAIN set
/// [MQTT-3.3.1-8], QoS capped by the subscription.
pub fn retained_delivery(message: &Arc<Message>, entry: &SubscriptionEntry) -> Delivery {
    Delivery {
        message: message.clone(),
        qos: message.qos.min(entry.options.qos),
        retain: true,
        subscription_ids: entry.identifier.into_iter().collect(),
        stored_id: None,
        // Its age is how long it was retained, not how long the broker took.
        received_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::{MqttString, PublishProperties, QoS, SubscriptionOptions};

    fn message(
        topic: &'static str,
        qos: QoS,
        retain: bool,
        publisher: Option<&str>,
    ) -> Arc<Message> {
        Arc::new(Message {
            topic: MqttString::from_static(topic),
            payload: Bytes::from_static(b"x"),
            qos,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: publisher.map(Into::into),
            received_at: None,
        })
    }

    fn entry(qos: QoS, id: Option<u32>) -> SubscriptionEntry {
        SubscriptionEntry {
            options: SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
            identifier: id,
        }
    }

    #[test]
    fn overlapping_subscriptions_give_one_copy_at_the_highest_qos_with_all_ids() {
        let mut tree = SubscriptionTree::new();
        let c: ClientId = "c".into();
        tree.subscribe(&c, "a/+", entry(QoS::AtMostOnce, Some(1)));
        tree.subscribe(&c, "a/#", entry(QoS::AtLeastOnce, Some(2)));
        tree.subscribe(&c, "a/b", entry(QoS::ExactlyOnce, None));
        let plan = plan_deliveries(
            &message("a/b", QoS::AtLeastOnce, false, None),
            &tree,
            |_| true,
        );
        assert_eq!(plan.len(), 1);
        let d = &plan[0].1;
        assert_eq!(d.qos, QoS::AtLeastOnce, "capped by the message's QoS");
        let mut ids = d.subscription_ids.clone();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn routed_copies_carry_the_receive_stamp_and_retained_ones_do_not() {
        let mut tree = SubscriptionTree::new();
        let (c, d): (ClientId, ClientId) = ("c".into(), "d".into());
        tree.subscribe(&c, "t", entry(QoS::AtLeastOnce, None));
        tree.subscribe(&d, "t", entry(QoS::AtMostOnce, None));
        let stamp = Some(crate::types::Stamp::from_micros(7));
        let mut stamped = (*message("t", QoS::AtLeastOnce, true, None)).clone();
        stamped.received_at = stamp;
        let stamped = Arc::new(stamped);
        let plan = plan_deliveries(&stamped, &tree, |_| true);
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|(_, d)| d.received_at == stamp));
        let retained = retained_delivery(&stamped, &entry(QoS::AtLeastOnce, None));
        assert_eq!(retained.received_at, None);
    }

    #[test]
    fn mqtt_3_8_3_3_no_local_skips_the_publisher() {
        let mut tree = SubscriptionTree::new();
        let me: ClientId = "me".into();
        let other: ClientId = "other".into();
        let mut no_local = entry(QoS::AtLeastOnce, None);
        no_local.options.no_local = true;
        tree.subscribe(&me, "t", no_local.clone());
        tree.subscribe(&other, "t", no_local);
        let plan = plan_deliveries(
            &message("t", QoS::AtLeastOnce, false, Some("me")),
            &tree,
            |_| true,
        );
        let clients: Vec<_> = plan.iter().map(|(c, _)| c.as_ref()).collect();
        assert_eq!(clients, vec!["other"]);
    }

    #[test]
    fn retain_as_published_keeps_the_flag_otherwise_cleared() {
        let mut tree = SubscriptionTree::new();
        let keep: ClientId = "keep".into();
        let clear: ClientId = "clear".into();
        let mut rap = entry(QoS::AtMostOnce, None);
        rap.options.retain_as_published = true;
        tree.subscribe(&keep, "t", rap);
        tree.subscribe(&clear, "t", entry(QoS::AtMostOnce, None));
        let plan = plan_deliveries(&message("t", QoS::AtMostOnce, true, None), &tree, |_| true);
        for (client, d) in plan {
            assert_eq!(d.retain, client.as_ref() == "keep");
        }
    }

    #[test]
    fn shared_group_gives_each_message_to_one_member_round_robin() {
        let mut tree = SubscriptionTree::new();
        let a: ClientId = "a".into();
        let b: ClientId = "b".into();
        tree.subscribe(&a, "$share/g/t", entry(QoS::AtLeastOnce, None));
        tree.subscribe(&b, "$share/g/t", entry(QoS::AtLeastOnce, None));
        let mut got = Vec::new();
        for _ in 0..4 {
            let plan = plan_deliveries(&message("t", QoS::AtLeastOnce, false, None), &tree, |_| {
                true
            });
            assert_eq!(plan.len(), 1);
            got.push(plan[0].0.to_string());
        }
        assert_eq!(got, vec!["a", "b", "a", "b"]);
    }

    #[test]
    fn shared_group_prefers_online_members() {
        let mut tree = SubscriptionTree::new();
        let a: ClientId = "a".into();
        let b: ClientId = "b".into();
        tree.subscribe(&a, "$share/g/t", entry(QoS::AtLeastOnce, None));
        tree.subscribe(&b, "$share/g/t", entry(QoS::AtLeastOnce, None));
        for _ in 0..3 {
            let plan = plan_deliveries(&message("t", QoS::AtLeastOnce, false, None), &tree, |c| {
                c.as_ref() == "b"
            });
            assert_eq!(plan[0].0.as_ref(), "b");
        }
    }

    #[test]
    fn shared_and_plain_subscriptions_of_one_client_are_separate_copies() {
        let mut tree = SubscriptionTree::new();
        let a: ClientId = "a".into();
        tree.subscribe(&a, "$share/g/t", entry(QoS::AtLeastOnce, Some(1)));
        tree.subscribe(&a, "t", entry(QoS::AtLeastOnce, Some(2)));
        let plan = plan_deliveries(&message("t", QoS::AtLeastOnce, false, None), &tree, |_| {
            true
        });
        assert_eq!(plan.len(), 2);
    }
}
