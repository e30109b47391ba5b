//! CONNECT: the protocol checks, the refusal, and completing a connection (CONNACK and the
//! re-sending of what was in flight).

use super::*;

impl Connection {
    /// Checks a CONNECT. On success the runtime authenticates, finds or creates the session,
    /// and calls [`Connection::accept`]; on refusal it sends the CONNACK (if any) and closes.
    /// `generated_id` is used for an empty client identifier when one may be assigned.
    pub fn on_connect(
        &mut self,
        connect: Connect,
        now: Millis,
        generated_id: impl FnOnce() -> String,
    ) -> Result<ConnectRequest, Refusal> {
        if self.state != State::AwaitingConnect {
            // A second CONNECT is a protocol error [MQTT-3.1.0-2]; `on_packet` handles it.
            return Err(Refusal {
                reason: ReasonCode::ProtocolError,
                connack: None,
            });
        }
        self.version = connect.protocol;
        self.last_received = now;
        let v5 = connect.protocol.is_v5();
        let props = &connect.properties;

        let (client_id, assigned) = if connect.client_id.is_empty() {
            // 3.1.1 assigns an identifier only to clean sessions [MQTT-3.1.3-8]; 3.1 never.
            let allowed =
                v5 || (connect.clean_start && connect.protocol == ProtocolVersion::V3_1_1);
            if !allowed {
                return Err(self.refuse(ReasonCode::ClientIdentifierNotValid));
            }
            (ClientId::from(generated_id()), true)
        } else {
            (ClientId::from(connect.client_id.as_str()), false)
        };
        if client_id.len() > self.config.max_client_id_len {
            return Err(self.refuse(ReasonCode::ClientIdentifierNotValid));
        }

        self.keep_alive = self.grant_keep_alive(connect.keep_alive);
        if v5 {
            self.client_receive_maximum = props.receive_maximum.unwrap_or(u16::MAX);
            self.client_max_packet_size = props
                .maximum_packet_size
                .unwrap_or(mqtt_codec::MAX_PACKET_SIZE);
            self.client_topic_alias_maximum = props.topic_alias_maximum.unwrap_or(0);
            self.problem_information = props.request_problem_information.unwrap_or(true);
            self.connect_session_expiry = props.session_expiry_interval.unwrap_or(0);
        } else {
            // 3.1.1: a persistent session lasts until the client cleans it.
            self.connect_session_expiry = if connect.clean_start {
                0
            } else {
                NEVER_EXPIRES
            };
        }
        self.session_expiry = self
            .connect_session_expiry
            .min(self.config.max_session_expiry);

        if let Some(will) = connect.will {
            let mut properties = mqtt_codec::PublishProperties {
                payload_format_indicator: will.properties.payload_format_indicator,
                content_type: will.properties.content_type,
                response_topic: will.properties.response_topic,
                correlation_data: will.properties.correlation_data,
                user_properties: will.properties.user_properties,
                ..Default::default()
            };
            let expiry_secs = will.properties.message_expiry_interval;
            properties.message_expiry_interval = None;
            if properties.payload_format_indicator == Some(true)
                && std::str::from_utf8(&will.payload).is_err()
            {
                return Err(self.refuse(ReasonCode::PayloadFormatInvalid));
            }
            if is_reserved_topic(&will.topic) {
                return Err(self.refuse(ReasonCode::TopicNameInvalid));
            }
            if let Some((reason, _)) =
                self.publish_beyond_limits(&will.topic, &properties.user_properties)
            {
                return Err(self.refuse(reason));
            }
            self.will = Some(ArmedWill {
                message: Arc::new(Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                    properties,
                    // Counted from when the will is published (`Session::release_armed_will`).
                    expires_at: expiry_secs.map(u64::from),
                    publisher: Some(client_id.clone()),
                    received_at: None,
                }),
                delay_secs: will.properties.will_delay_interval.unwrap_or(0),
            });
        }
        self.client_id = Some(client_id.clone());
        let authentication = connect.properties.authentication_method.map(|method| {
            self.start_authentication(method.clone());
            Authentication {
                method,
                data: connect.properties.authentication_data,
            }
        });
        Ok(ConnectRequest {
            client_id,
            assigned_client_id: assigned,
            clean_start: connect.clean_start,
            username: connect.username,
            password: connect.password,
            protocol: connect.protocol,
            authentication,
        })
    }

    /// Hands the connection what its authenticated client may do, after
    /// [`Connection::on_connect`] and before [`Connection::accept`]. A will the client may
    /// not publish refuses the CONNECT (0x87; 3.1.1: not authorized).
    pub fn authorize(&mut self, authorizer: Arc<dyn Authorizer>) -> Result<(), Refusal> {
        if let Some(will) = &self.will {
            let message = &will.message;
            let verdict = authorizer.publish(&message.topic, message.retain, message.payload.len());
            if verdict == Verdict::NotAuthorized {
                return Err(self.refuse(ReasonCode::NotAuthorized));
            }
        }
        self.authorizer = authorizer;
        Ok(())
    }

    pub(super) fn grant_keep_alive(&self, requested: u16) -> u16 {
        let max = self.config.max_keep_alive;
        // Only a v5 client can be told a different value (Server Keep Alive).
        if self.version.is_v5() && max > 0 && (requested == 0 || requested > max) {
            max
        } else {
            requested
        }
    }

    /// A refusal CONNACK in the client's version. The session is never present [MQTT-3.2.2-6].
    pub fn refuse(&mut self, reason: ReasonCode) -> Refusal {
        self.state = State::Closed;
        let connack = ConnAck {
            session_present: false,
            reason_code: reason,
            properties: ConnAckProperties::default(),
        };
        Refusal {
            reason,
            connack: Some(Box::new(connack.into())),
        }
    }

    /// Completes a CONNECT: the session is the one found or created for the client (cleaned
    /// by the runtime if Clean Start was set). Sends CONNACK, then re-sends what was in flight.
    pub fn accept(
        &mut self,
        request: &ConnectRequest,
        session: &mut Session,
        session_present: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        self.state = State::Connected;
        session.online = true;
        session.disconnected_at = None;
        // Reconnecting in time cancels a delayed will [MQTT-3.1.3-9].
        session.pending_will = None;
        // The session keeps this connection's will, so that it is persisted with it.
        session.armed_will = self.will.take();
        session.expiry_interval = self.session_expiry;
        // Checked again when the will fires, whatever happened in between.
        session.authorizer = Some(self.authorizer.clone());
        // A resumed session keeps only the subscriptions its client may still make.
        let authorizer = &self.authorizer;
        let removed = session
            .remove_subscriptions_unless(|filter| authorizer.subscribe(authorized_filter(filter)));
        out.extend(
            removed
                .into_iter()
                .map(|filter| Action::Unsubscribe { filter }),
        );

        let mut properties = ConnAckProperties::default();
        if self.version.is_v5() {
            let config = &self.config;
            if request.assigned_client_id {
                properties.assigned_client_identifier =
                    MqttString::try_from(request.client_id.as_ref()).ok();
            }
            properties.receive_maximum = Some(config.receive_maximum);
            properties.maximum_packet_size = Some(config.max_packet_size);
            properties.topic_alias_maximum = Some(config.topic_alias_maximum);
            if self.session_expiry != self.connect_session_expiry {
                properties.session_expiry_interval = Some(self.session_expiry);
            }
            if config.max_keep_alive > 0 {
                properties.server_keep_alive = Some(self.keep_alive);
            }
            self.connack_authentication(&mut properties);
        }
        out.push(Action::Send(
            ConnAck {
                session_present,
                reason_code: ReasonCode::Success,
                properties,
            }
            .into(),
        ));
        self.resend_inflight(session, now, out);
    }

    /// Re-sends unacknowledged messages in their original order, PUBLISH with DUP set, or
    /// PUBREL for those already received [MQTT-4.4.0-1]. The session may hold more than this
    /// client's Receive Maximum allows (an earlier connection allowed more): the rest wait in
    /// `resend_later` until acknowledgements make room [MQTT-4.9.0-2].
    pub(super) fn resend_inflight(
        &mut self,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let max_inflight = self.max_inflight();
        let ids: Vec<PacketId> = session.inflight().map(|f| f.packet_id).collect();
        for (i, packet_id) in ids.into_iter().enumerate() {
            if i < max_inflight {
                self.resend(packet_id, session, now, out);
            } else {
                self.resend_later
                    .get_or_insert_default()
                    .push_back(packet_id);
            }
        }
    }

    pub(super) fn resend(
        &mut self,
        packet_id: PacketId,
        session: &mut Session,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        let Some(flight) = session.inflight().find(|f| f.packet_id == packet_id) else {
            return;
        };
        let packet = match flight.state {
            OutState::AwaitingPubComp => Packet::PubRel(Ack::new(packet_id)),
            state @ (OutState::AwaitingPubAck | OutState::AwaitingPubRec) => {
                let mut publish = self.build_publish(&flight.delivery, now);
                publish.dup = true;
                publish.packet_id = Some(packet_id);
                if self.fit_for_client(&mut publish).is_none() {
                    // This client accepts less than the one it was first sent to: discarded,
                    // as if acknowledged [MQTT-3.1.2-25].
                    session.counters.count(DropReason::TooLargeForClient);
                    if state == OutState::AwaitingPubAck {
                        session.on_puback(packet_id);
                    } else {
                        session.on_pubrec(packet_id, false);
                    }
                    return;
                }
                Packet::Publish(publish)
            }
        };
        out.push(Action::Send(packet));
    }

    /// How many QoS 1/2 messages may be unacknowledged towards the client.
    pub(super) fn max_inflight(&self) -> usize {
        usize::from(
            self.client_receive_maximum
                .min(self.config.max_inflight)
                .max(1),
        )
    }
}
