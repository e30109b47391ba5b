//! Messages towards the client: turning queued deliveries into PUBLISH packets within the
//! client's Receive Maximum and Maximum Packet Size, with topic aliases when it accepts them.

use super::*;

impl Connection {
    /// Moves queued messages into packets, as far as the client's Receive Maximum allows and
    /// until about `budget` bytes of packets were produced. Returns true if it stopped for
    /// the budget: the runtime writes what it has and calls again.
    pub fn fill_outgoing(
        &mut self,
        session: &mut Session,
        now: Millis,
        budget: usize,
        out: &mut Vec<Action>,
    ) -> bool {
        self.sent_stamps.clear();
        if self.state != State::Connected {
            return false;
        }
        let max_inflight = self.max_inflight();
        // Resends that waited for room go first, so that order is kept; those the client
        // acknowledged meanwhile (it saw them on an earlier connection) need none.
        if let Some(mut later) = self.resend_later.take() {
            later.retain(|id| session.inflight().any(|f| f.packet_id == *id));
            while session.inflight_len() - later.len() < max_inflight {
                let Some(packet_id) = later.pop_front() else {
                    break;
                };
                self.resend(packet_id, session, now, out);
            }
            if !later.is_empty() {
                self.resend_later = Some(later);
            }
        }
        let mut produced = 0;
        while produced < budget {
            let Some(delivery) = session.next_to_send(max_inflight, now) else {
                break;
            };
            let mut publish = self.build_publish(&delivery, now);
            if delivery.qos != QoS::AtMostOnce {
                // Placeholder so the size below counts the identifier's two bytes.
                publish.packet_id = mqtt_codec::PacketId::new(1);
            }
            // Too large for the client: discarded, as if sent [MQTT-3.1.2-25].
            let Some(size) = self.fit_for_client(&mut publish) else {
                session.discard(&delivery, DropReason::TooLargeForClient);
                continue;
            };
            produced += size;
            // Sent for the first time (re-sends above are not): its latency ends here.
            self.sent_stamps.extend(delivery.received_at);
            if delivery.qos != QoS::AtMostOnce {
                publish.packet_id = Some(session.start_inflight(delivery));
            }
            out.push(Action::Send(Packet::Publish(publish)));
        }
        produced >= budget
    }

    /// The [`Stamp`]s of the messages the last [`fill_outgoing`](Self::fill_outgoing) sent
    /// for the first time, one per PUBLISH that carries one, in the order sent. Re-sends,
    /// retained messages sent at subscribe time and bodies read back from the store have
    /// none.
    pub fn sent_stamps(&self) -> &[Stamp] {
        &self.sent_stamps
    }

    pub(super) fn build_publish(&self, delivery: &Delivery, now: Millis) -> Publish {
        let message = &delivery.message;
        let mut properties = message.properties.clone();
        if self.version.is_v5() {
            properties.message_expiry_interval = message.remaining_expiry_secs(now);
            properties.subscription_identifiers = delivery.subscription_ids.clone();
        }
        Publish {
            dup: false,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic.clone(),
            packet_id: None,
            properties,
            payload: message.payload.clone(),
        }
    }

    /// Applies a topic alias (see below) unless that takes the packet past the client's
    /// Maximum Packet Size: an alias can add up to three bytes, so without one it may still
    /// fit. Returns the packet's size, or `None` if it is too large for the client either way.
    pub(super) fn fit_for_client(&mut self, publish: &mut Publish) -> Option<usize> {
        let max = u64::from(self.client_max_packet_size);
        // An alias changes only these two fields; keep them to undo it.
        let (topic, alias) = (publish.topic.clone(), publish.properties.topic_alias);
        let known = self.aliases.outbound_count();
        self.apply_outgoing_alias(publish);
        let size = publish.encoded_len(self.version);
        if size as u64 <= max {
            return Some(size);
        }
        // Forget an alias just assigned: the client never saw it.
        self.aliases.forget_outbound_after(known);
        publish.topic = topic;
        publish.properties.topic_alias = alias;
        let size = publish.encoded_len(self.version);
        (size as u64 <= max).then_some(size)
    }

    /// Uses a topic alias when the client accepts them: the first message on a topic
    /// carries topic and alias, later ones the alias alone. Aliases are never reassigned.
    pub(super) fn apply_outgoing_alias(&mut self, publish: &mut Publish) {
        if !self.version.is_v5() || self.client_topic_alias_maximum == 0 {
            return;
        }
        if let Some(alias) = self.aliases.outbound(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = MqttString::default();
            return;
        }
        let next = self.aliases.outbound_count() + 1;
        if next <= usize::from(self.client_topic_alias_maximum) {
            let alias = next as u16;
            self.aliases.add_outbound(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }
}
