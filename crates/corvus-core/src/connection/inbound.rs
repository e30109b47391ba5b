//! Packets from the client after CONNECT: PUBLISH and the acknowledgement flows, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ, DISCONNECT, and the packets a client must never send.

use super::*;

impl Connection {
    /// Handles one packet from the client.
    pub fn on_packet(
        &mut self,
        packet: Packet,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        if self.state != State::Connected {
            return;
        }
        self.last_received = now;
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, session, now, out),
            Packet::PubAck(ack) => {
                session.on_puback(ack.packet_id);
            }
            Packet::PubRec(ack) => {
                let success = ack.reason_code.is_success();
                if !session.on_pubrec(ack.packet_id, success) {
                    let reply = self.ack(ack.packet_id, ReasonCode::PacketIdentifierNotFound);
                    out.push(Action::Send(Packet::PubRel(reply)));
                } else if success {
                    out.push(Action::Send(Packet::PubRel(Ack::new(ack.packet_id))));
                }
            }
            Packet::PubRel(ack) => {
                let reason = if session.release_qos2(ack.packet_id) {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                out.push(Action::Send(Packet::PubComp(
                    self.ack(ack.packet_id, reason),
                )));
            }
            Packet::PubComp(ack) => {
                session.on_pubcomp(ack.packet_id);
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, session, out),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe, session, out),
            Packet::PingReq => out.push(Action::Send(Packet::PingResp)),
            Packet::Disconnect(disconnect) => self.on_disconnect(disconnect, session, out),
            Packet::Connect(_) => {
                self.protocol_error(ReasonCode::ProtocolError, "second CONNECT", out)
            }
            Packet::Auth(auth) => self.on_auth(auth, out),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.protocol_error(ReasonCode::ProtocolError, "packet only a server sends", out)
            }
        }
    }

    /// An acknowledgement, with a reason code only v5 can carry.
    pub(super) fn ack(&self, packet_id: mqtt_codec::PacketId, reason: ReasonCode) -> Ack {
        Ack::with_reason(packet_id, reason)
    }

    pub(super) fn on_publish(
        &mut self,
        mut publish: Publish,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        // Subscription Identifiers flow from the broker only [MQTT-3.3.4-6].
        if !publish.properties.subscription_identifiers.is_empty() {
            return self.protocol_error(
                ReasonCode::ProtocolError,
                "subscription identifier in a client's PUBLISH",
                out,
            );
        }
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias > self.config.topic_alias_maximum {
                return self.protocol_error(
                    ReasonCode::TopicAliasInvalid,
                    "topic alias above the maximum",
                    out,
                );
            }
            if publish.topic.is_empty() {
                match self.aliases.inbound(alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return self.protocol_error(
                            ReasonCode::ProtocolError,
                            "unknown topic alias",
                            out,
                        )
                    }
                }
            } else {
                self.aliases.set_inbound(alias, publish.topic.clone());
            }
        }
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            if let Some(id) = publish.packet_id {
                // A resend of a message still awaiting PUBREL is acknowledged, not delivered again.
                if session.is_awaiting_pubrel(id) {
                    out.push(Action::Send(Packet::PubRec(Ack::new(id))));
                    return;
                }
                if session.inbound_qos2_len() >= usize::from(self.config.receive_maximum) {
                    return self.protocol_error(
                        ReasonCode::ReceiveMaximumExceeded,
                        "receive maximum exceeded",
                        out,
                    );
                }
            }
        }
        if let Some((reason, drop, text)) = self.publish_refusal(&publish) {
            // Counted against the publisher's session, like every other drop.
            session.counters.count(drop);
            if let Some(id) = publish.packet_id {
                let mut ack = self.ack(id, reason);
                ack.properties.reason_string = self.reason_string(text);
                // In 3.1.1 there is no negative acknowledgement: acknowledge and drop.
                let wrap = |ack| match qos {
                    QoS::AtLeastOnce => Packet::PubAck(ack),
                    _ => Packet::PubRec(ack),
                };
                let mut packet = wrap(ack.clone());
                // No reason string that would take the packet past the client's limit
                // [MQTT-3.4.2-2], [MQTT-3.5.2-2].
                if packet.encoded_len(self.version) as u64 > u64::from(self.client_max_packet_size)
                {
                    ack.properties.reason_string = None;
                    packet = wrap(ack);
                }
                out.push(Action::Send(packet));
            }
            return;
        }
        let mut properties = publish.properties;
        let expires_at = properties
            .message_expiry_interval
            .take()
            .map(|secs| now + u64::from(secs) * 1000);
        properties.subscription_identifiers.clear();
        let message = Arc::new(Message {
            topic: publish.topic,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            properties,
            expires_at,
            publisher: self.client_id.clone(),
            // The runtime stamps it: the core reads no clock.
            received_at: None,
        });
        match (qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                out.push(Action::Publish {
                    message,
                    receipt: None,
                });
                out.push(Action::Send(Packet::PubAck(Ack::new(id))));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                session.receive_qos2(id);
                let receipt = session.records_changes().then_some(id);
                out.push(Action::Publish { message, receipt });
                out.push(Action::Send(Packet::PubRec(Ack::new(id))));
            }
            _ => out.push(Action::Publish {
                message,
                receipt: None,
            }),
        }
    }

    /// Why a PUBLISH is refused, if it is: its reason code, the drop reason it is counted
    /// under, and a reason string. Checked in this order: the broker's own topics, the
    /// payload format, the limits, then what the client is granted.
    fn publish_refusal(&self, publish: &Publish) -> Option<(ReasonCode, DropReason, &'static str)> {
        if is_reserved_topic(&publish.topic) {
            return Some((
                ReasonCode::NotAuthorized,
                DropReason::NotAuthorized,
                "$SYS topics are the broker's",
            ));
        }
        if publish.properties.payload_format_indicator == Some(true)
            && std::str::from_utf8(&publish.payload).is_err()
        {
            return Some((
                ReasonCode::PayloadFormatInvalid,
                DropReason::PayloadFormatInvalid,
                "payload is not UTF-8",
            ));
        }
        if let Some((reason, text)) =
            self.publish_beyond_limits(&publish.topic, &publish.properties.user_properties)
        {
            return Some((reason, DropReason::LimitExceeded, text));
        }
        self.authorizer
            .publish(&publish.topic, publish.retain, publish.payload.len())
            .refusal()
    }

    pub(super) fn on_subscribe(
        &mut self,
        subscribe: Subscribe,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let identifier = subscribe.properties.subscription_identifier;
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained = Vec::new();
        for sub in subscribe.subscriptions {
            // Each filter stands alone: a refused one does not stop the others.
            let refused = if self.topic_beyond_limits(&sub.filter) {
                Some(ReasonCode::TopicFilterInvalid)
            } else if !self.authorizer.subscribe(authorized_filter(&sub.filter)) {
                Some(ReasonCode::NotAuthorized)
            } else if session.subscription_count() >= self.config.max_subscriptions
                && !session.has_subscription(&sub.filter)
            {
                Some(ReasonCode::QuotaExceeded)
            } else {
                None
            };
            if let Some(reason) = refused {
                reason_codes.push(reason);
                continue;
            }
            let entry = SubscriptionEntry {
                options: sub.options,
                identifier,
            };
            let replaced = session.add_subscription(sub.filter.clone(), entry.clone());
            out.push(Action::Subscribe {
                filter: sub.filter.clone(),
                entry: entry.clone(),
            });
            // Retained messages go to new non-shared subscriptions only (MQTT 5.0 3.3.1.3).
            let shared = mqtt_codec::topic::SharedFilter::parse(&sub.filter).is_some();
            let send = match sub.options.retain_handling {
                mqtt_codec::RetainHandling::SendAtSubscribe => true,
                mqtt_codec::RetainHandling::SendIfNew => !replaced,
                mqtt_codec::RetainHandling::DoNotSend => false,
            };
            if send && !shared {
                retained.push(Action::SendRetained {
                    filter: sub.filter,
                    entry,
                });
            }
            reason_codes.push(match sub.options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }
        out.push(Action::Send(
            SubAck {
                packet_id: subscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }
            .into(),
        ));
        out.extend(retained);
    }

    pub(super) fn on_unsubscribe(
        &mut self,
        unsubscribe: Unsubscribe,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        let mut reason_codes = Vec::new();
        for filter in unsubscribe.filters {
            let existed = session.remove_subscription(&filter);
            out.push(Action::Unsubscribe { filter });
            if self.version.is_v5() {
                reason_codes.push(if existed {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                });
            }
        }
        out.push(Action::Send(
            UnsubAck {
                packet_id: unsubscribe.packet_id,
                properties: Default::default(),
                reason_codes,
            }
            .into(),
        ));
    }

    pub(super) fn on_disconnect(
        &mut self,
        disconnect: Disconnect,
        session: &mut Session,
        out: &mut Vec<Action>,
    ) {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // A session created to end with the connection cannot be extended at the end
            // (MQTT 5.0 section 3.14.2.2.2).
            if self.connect_session_expiry == 0 && expiry != 0 {
                return self.protocol_error(
                    ReasonCode::ProtocolError,
                    "session expiry set on DISCONNECT after 0 on CONNECT",
                    out,
                );
            }
            self.session_expiry = expiry.min(self.config.max_session_expiry);
            session.expiry_interval = self.session_expiry;
        }
        // Only 0x04 asks for the will; any other client DISCONNECT discards it [MQTT-3.1.2-8].
        if disconnect.reason_code != ReasonCode::DisconnectWithWillMessage {
            session.armed_will = None;
        }
        self.state = State::Closed;
        out.push(Action::Close);
    }
}
