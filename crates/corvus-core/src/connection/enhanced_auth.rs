//! Enhanced authentication (MQTT 5.0 section 4.12): the AUTH exchange before CONNACK, and
//! re-authentication after it. The core knows no method: it enforces the exchange's rules
//! (the same method throughout, who may send which reason code, one exchange at a time) and
//! carries the method's data; the runtime runs the method.

use bytes::Bytes;
use mqtt_codec::{Auth, AuthProperties};

use super::*;

/// A connection's enhanced authentication, from the CONNECT that names a method. Without
/// one (most clients) there is none, and AUTH is a protocol error [MQTT-4.12.0-7]; the
/// broker never sends one [MQTT-4.12.0-6]. Boxed in the connection for that reason.
#[derive(Debug)]
pub(super) struct AuthState {
    /// The method named in CONNECT.
    method: MqttString,
    /// The method accepted the client before CONNACK ([`Connection::auth_completed`]):
    /// only then does the CONNACK name it, with its last word (its Authentication Data).
    completed: bool,
    connack_data: Option<Bytes>,
    /// A re-authentication is under way.
    reauthenticating: bool,
}

impl Connection {
    /// Remembers the method a CONNECT names.
    pub(super) fn start_authentication(&mut self, method: MqttString) {
        self.auth = Some(Box::new(AuthState {
            method,
            completed: false,
            connack_data: None,
            reauthenticating: false,
        }));
    }

    fn auth_method(&self) -> Option<&MqttString> {
        self.auth.as_ref().map(|auth| &auth.method)
    }

    fn auth_packet(&self, reason_code: ReasonCode, data: Option<Bytes>) -> Packet {
        Packet::Auth(Auth {
            reason_code,
            properties: AuthProperties {
                authentication_method: self.auth_method().cloned(),
                authentication_data: data,
                ..Default::default()
            },
        })
    }

    /// Sends the method's next challenge (AUTH 0x18), before CONNACK or while
    /// re-authenticating.
    pub fn auth_continue(&mut self, data: Bytes, out: &mut Vec<Action>) {
        if self.auth.is_some() && self.state != State::Closed {
            out.push(Action::Send(
                self.auth_packet(ReasonCode::ContinueAuthentication, Some(data)),
            ));
        }
    }

    /// Before CONNACK: the client's answer to [`Connection::auth_continue`], the next
    /// packet it sent. Returns its data, or the refusal if the client broke the exchange's
    /// rules (anything but AUTH 0x18 with the same method).
    pub fn on_auth_response(&mut self, packet: Packet) -> Result<Option<Bytes>, Refusal> {
        match packet {
            Packet::Auth(auth)
                if auth.reason_code == ReasonCode::ContinueAuthentication
                    && auth.properties.authentication_method.as_ref() == self.auth_method() =>
            {
                Ok(auth.properties.authentication_data)
            }
            // The client gave up: nothing to answer.
            Packet::Disconnect(disconnect) => {
                self.state = State::Closed;
                Err(Refusal {
                    reason: disconnect.reason_code,
                    connack: None,
                })
            }
            _ => Err(self.refuse(ReasonCode::ProtocolError)),
        }
    }

    /// Before CONNACK: the method accepted the client; its last data goes in the CONNACK.
    pub fn auth_completed(&mut self, data: Option<Bytes>) {
        if let (State::AwaitingConnect, Some(auth)) = (self.state, self.auth.as_mut()) {
            auth.completed = true;
            auth.connack_data = data;
        }
    }

    /// The re-authentication under way succeeded: AUTH 0x00 with the method's last data.
    pub fn reauth_succeeded(&mut self, data: Option<Bytes>, out: &mut Vec<Action>) {
        let connected = self.state == State::Connected;
        if let Some(auth) = self
            .auth
            .as_mut()
            .filter(|a| connected && a.reauthenticating)
        {
            auth.reauthenticating = false;
            out.push(Action::Send(self.auth_packet(ReasonCode::Success, data)));
        }
    }

    /// Re-authentication failed: DISCONNECT 0x87 and close [MQTT-4.12.1-2].
    pub fn auth_failed(&mut self, out: &mut Vec<Action>) {
        self.protocol_error(ReasonCode::NotAuthorized, "re-authentication failed", out);
    }

    /// AUTH while connected: the start or a step of re-authentication.
    pub(super) fn on_auth(&mut self, auth: Auth, out: &mut Vec<Action>) {
        let Some(state) = self.auth.as_deref() else {
            return self.protocol_error(
                ReasonCode::ProtocolError,
                "AUTH without enhanced authentication at CONNECT",
                out,
            );
        };
        let same_method = auth.properties.authentication_method.as_ref() == Some(&state.method);
        let reauthenticating = state.reauthenticating;
        if !same_method {
            // The method stays the one of CONNECT [MQTT-4.12.1-1].
            return self.protocol_error(
                ReasonCode::ProtocolError,
                "AUTH with another authentication method",
                out,
            );
        }
        let in_sequence = match auth.reason_code {
            ReasonCode::ReAuthenticate => !reauthenticating,
            ReasonCode::ContinueAuthentication => reauthenticating,
            _ => false,
        };
        if !in_sequence {
            return self.protocol_error(ReasonCode::ProtocolError, "AUTH out of sequence", out);
        }
        if let Some(state) = self.auth.as_mut() {
            state.reauthenticating = true;
        }
        out.push(Action::Authenticate {
            data: auth.properties.authentication_data,
        });
    }

    /// The CONNACK names the method of a completed exchange, and carries its last data. A
    /// runtime that accepts a client without running the method names none.
    pub(super) fn connack_authentication(&mut self, properties: &mut ConnAckProperties) {
        if let Some(auth) = self.auth.as_mut().filter(|auth| auth.completed) {
            properties.authentication_method = Some(auth.method.clone());
            properties.authentication_data = auth.connack_data.take();
        }
    }
}
