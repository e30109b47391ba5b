//! Enhanced authentication (MQTT 5.0 AUTH) as the broker runs it: which methods it knows,
//! and the steps of SCRAM-SHA-256 against the password file's SCRAM verifiers. The
//! connection task moves the messages; this module decides.

use bytes::Bytes;
use corvus_auth::scram::{self, ScramError, ServerExchange};
use mqtt_codec::ReasonCode;

use super::{denied, Denied, Identity, ListenerAuth, Security};

/// An exchange waiting for the client's next message.
#[derive(Debug)]
pub struct Exchange(ServerExchange);

impl Exchange {
    /// The user the client claims to be, not yet proven (for logs).
    pub fn claimed_user(&self) -> &str {
        self.0.user()
    }
}

impl Security {
    /// Whether a client on this listener may authenticate with `method`: SCRAM-SHA-256 when
    /// a password file is configured, except on listeners where the client certificate names
    /// the user (the certificate decides there, nothing else).
    pub fn knows_method(&self, method: &str, listener: ListenerAuth) -> bool {
        method == scram::METHOD && self.password_file.is_some() && listener.cert_identity.is_none()
    }

    /// The first step: the client's first message (from CONNECT or AUTH 0x19), answered
    /// with the server-first message to send in AUTH 0x18.
    pub fn scram_start(&self, client_first: Option<&[u8]>) -> Result<(Exchange, Bytes), Denied> {
        let passwords = self.passwords().ok_or_else(|| {
            denied(
                ReasonCode::BadAuthenticationMethod,
                "no password file loaded",
            )
        })?;
        let nonce = scram::fresh_nonce().map_err(|e| {
            denied(
                ReasonCode::UnspecifiedError,
                format!("the OS random generator failed: {e}"),
            )
        })?;
        let (exchange, server_first) =
            scram::start_exchange(client_first.unwrap_or_default(), &nonce, |user| {
                passwords.scram_lookup(user)
            })
            .map_err(refused)?;
        Ok((Exchange(exchange), Bytes::from(server_first)))
    }

    /// The second step: the client's proof. On success, who the client is and the
    /// server-final message (the broker's signature) for the CONNACK or AUTH 0x00.
    pub fn scram_finish(
        &self,
        exchange: Exchange,
        client_final: Option<&[u8]>,
    ) -> Result<(Identity, Bytes), Denied> {
        let (user, server_final) = exchange
            .0
            .finish(client_final.unwrap_or_default())
            .map_err(refused)?;
        Ok((Identity::User(user), Bytes::from(server_final)))
    }
}

/// A failed step: 0x86 when the credentials are wrong, 0x87 for what the broker does not
/// allow or cannot read.
fn refused(error: ScramError) -> Denied {
    let reason = match error {
        ScramError::UnknownUser(_) | ScramError::InvalidProof(_) => {
            ReasonCode::BadUserNameOrPassword
        }
        _ => ReasonCode::NotAuthorized,
    };
    denied(reason, format!("SCRAM-SHA-256: {error}"))
}
