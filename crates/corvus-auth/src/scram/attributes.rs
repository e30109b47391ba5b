//! The text of SCRAM messages (RFC 5802 section 7): `k=value` attributes separated by commas,
//! user names escaped as `saslname`, and the split of each message into the parts the proofs
//! are computed over.

use super::ScramError;

/// `value` of the attribute `key=value`, or an error naming what was expected.
fn attribute<'a>(
    part: Option<&'a str>,
    key: char,
    missing: &'static str,
) -> Result<&'a str, ScramError> {
    part.and_then(|p| p.strip_prefix(key))
        .and_then(|p| p.strip_prefix('='))
        .ok_or(ScramError::Malformed(missing))
}

/// A nonce: printable ASCII but `,` (RFC 5802 `printable`), not empty.
fn check_nonce(nonce: &str) -> Result<&str, ScramError> {
    let printable = nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if nonce.is_empty() || !printable {
        return Err(ScramError::Malformed("the nonce is empty or not printable"));
    }
    Ok(nonce)
}

/// `saslname` to the name: `=2C` is `,` and `=3D` is `=`; any other `=` is invalid.
pub(super) fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escaped = rest.get(at..at + 3);
        out.push(match escaped {
            Some("=2C") => ',',
            Some("=3D") => '=',
            _ => return Err(ScramError::Malformed("a user name has a bad `=` escape")),
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("the user name is empty"));
    }
    Ok(out)
}

pub(super) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The client's first message, in the pieces the exchange needs.
#[derive(Debug)]
pub(super) struct ClientFirst<'a> {
    /// `n,,` or `y,,` (with an authorization identity between the commas if one was given):
    /// the client-final message repeats it, base64, as its channel binding.
    pub gs2_header: &'a str,
    /// Everything after the header, part of the AuthMessage.
    pub bare: &'a str,
    pub user: String,
    pub nonce: &'a str,
}

pub(super) fn parse_client_first(message: &str) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = message
        .split_once(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    match flag {
        // `y`: the client could bind the channel but thinks we cannot; fine, we cannot.
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("unknown channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ScramError::Malformed("the GS2 header is incomplete"))?;
    let gs2_header = &message[..flag.len() + authzid.len() + 2];
    if bare.starts_with("m=") {
        return Err(ScramError::Malformed(
            "mandatory extensions are not supported",
        ));
    }
    let mut parts = bare.split(',');
    let user = decode_saslname(attribute(parts.next(), 'n', "expected `n=user`")?)?;
    let nonce = check_nonce(attribute(parts.next(), 'r', "expected `r=nonce`")?)?;
    if !authzid.is_empty() {
        let authzid = decode_saslname(attribute(Some(authzid), 'a', "expected `a=authzid`")?)?;
        if authzid != user {
            return Err(ScramError::AuthorizationIdentity);
        }
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        user,
        nonce,
    })
}

/// The client's final message.
#[derive(Debug)]
pub(super) struct ClientFinal<'a> {
    /// Base64 of the GS2 header (no channel binding data).
    pub binding: &'a str,
    pub nonce: &'a str,
    /// Everything before `,p=`: part of the AuthMessage.
    pub without_proof: &'a str,
    pub proof: &'a str,
}

pub(super) fn parse_client_final(message: &str) -> Result<ClientFinal<'_>, ScramError> {
    let (without_proof, proof) = message
        .rsplit_once(",p=")
        .ok_or(ScramError::Malformed("expected `,p=proof` at the end"))?;
    let mut parts = without_proof.split(',');
    let binding = attribute(parts.next(), 'c', "expected `c=binding`")?;
    let nonce = check_nonce(attribute(parts.next(), 'r', "expected `r=nonce`")?)?;
    Ok(ClientFinal {
        binding,
        nonce,
        without_proof,
        proof,
    })
}

/// The server's first message.
#[derive(Debug)]
pub(super) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: &'a str,
    pub iterations: u32,
}

pub(super) fn parse_server_first(message: &str) -> Result<ServerFirst<'_>, ScramError> {
    if message.starts_with("m=") {
        return Err(ScramError::Malformed(
            "mandatory extensions are not supported",
        ));
    }
    if let Some(error) = message.strip_prefix("e=") {
        return Err(ScramError::ServerError(error.to_string()));
    }
    let mut parts = message.split(',');
    let nonce = check_nonce(attribute(parts.next(), 'r', "expected `r=nonce`")?)?;
    let salt = attribute(parts.next(), 's', "expected `s=salt`")?;
    let iterations = attribute(parts.next(), 'i', "expected `i=iterations`")?
        .parse()
        .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// The server's final message: its signature, or the error it reports.
pub(super) fn parse_server_final(message: &str) -> Result<&str, ScramError> {
    let first = message.split(',').next().unwrap_or_default();
    if let Some(error) = first.strip_prefix("e=") {
        return Err(ScramError::ServerError(error.to_string()));
    }
    attribute(Some(first), 'v', "expected `v=signature`")
}
