//! How a connection ends: protocol errors, undecodable packets, keep alive timeouts, takeover,
//! shutdown, and settling the session and the will afterwards.

use super::*;

impl Connection {
    /// A protocol violation: v5 clients are told why [MQTT-4.13.1-1]; then the connection
    /// closes, and the will is published (it did not end with a normal DISCONNECT).
    pub fn protocol_error(&mut self, reason: ReasonCode, text: &str, out: &mut Vec<Action>) {
        if self.state == State::Closed {
            return;
        }
        let was_connected = self.state == State::Connected;
        self.state = State::Closed;
        if self.version.is_v5() && was_connected {
            out.push(Action::Send(self.disconnect_packet(reason, text)));
        }
        out.push(Action::Close);
    }

    /// A packet that could not be decoded.
    pub fn on_decode_error(&mut self, error: &DecodeError, out: &mut Vec<Action>) {
        match self.state {
            State::Connected => self.protocol_error(error.reason_code(), &error.to_string(), out),
            State::AwaitingConnect => {
                self.state = State::Closed;
                // An unknown protocol level is answered in the 3.1.1 format the client most
                // likely reads [MQTT-3.1.2-2]; any other broken CONNECT is just closed.
                if matches!(error, DecodeError::UnsupportedProtocol { .. }) {
                    self.version = ProtocolVersion::V3_1_1;
                    let refusal = self.refuse(ReasonCode::UnsupportedProtocolVersion);
                    out.extend(refusal.connack.map(|p| Action::Send(*p)));
                }
                out.push(Action::Close);
            }
            State::Closed => {}
        }
    }

    /// Keep alive ran out [MQTT-3.1.2-24].
    pub fn on_keep_alive_timeout(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(ReasonCode::KeepAliveTimeout, "keep alive timeout", out);
    }

    /// Another connection took the session over [MQTT-3.1.4-3].
    pub fn on_taken_over(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(
            ReasonCode::SessionTakenOver,
            "another connection took the session over",
            out,
        );
    }

    /// The broker shuts down: v5 clients are told so. The will is published like for any
    /// close the client did not ask for with DISCONNECT 0x00 (MQTT 5.0 section 3.1.2.5).
    pub fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(ReasonCode::ServerShuttingDown, "server shutting down", out);
    }

    /// A DISCONNECT with a reason and, when it fits the client's limit, a reason string.
    pub(super) fn disconnect_packet(&self, reason: ReasonCode, text: &str) -> Packet {
        let mut disconnect = Disconnect::new(reason);
        // Problem information does not restrict DISCONNECT [MQTT-3.1.2-29].
        disconnect.properties.reason_string = truncated(text);
        let packet = Packet::Disconnect(disconnect.clone());
        if packet.encoded_len(self.version) as u64 <= u64::from(self.client_max_packet_size) {
            packet
        } else {
            Packet::Disconnect(Disconnect::new(reason))
        }
    }

    /// A reason string for an acknowledgement, if the client asked for problem information.
    pub(super) fn reason_string(&self, text: &str) -> Option<MqttString> {
        (self.version.is_v5() && self.problem_information)
            .then(|| truncated(text))
            .flatten()
    }

    /// The connection has ended, by any path. Settles the session and the will.
    pub fn on_closed(&mut self, session: &mut Session, now: Millis) -> Closed {
        let was_open = self.state != State::AwaitingConnect;
        self.state = State::Closed;
        if !was_open || !session.online {
            return Closed {
                will: None,
                session_ended: false,
            };
        }
        session.online = false;
        session.disconnected_at = Some(now);
        // Queued messages wait on disk while the client is away, not in memory.
        session.spill();
        let session_ended = session.expiry_interval == 0;
        let will = session.release_armed_will(now, session_ended);
        Closed {
            will,
            session_ended,
        }
    }
}
