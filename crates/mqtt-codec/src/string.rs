//! `MqttString`: an immutable, cheaply cloned UTF-8 string that shares the buffer it was decoded
//! from, so topics and properties are sliced out of a packet rather than copied.
//!
//! The type guarantees what MQTT requires of a UTF-8 Encoded String [MQTT-1.5.3-1],
//! [MQTT-1.5.4-1], [MQTT-1.5.4-2]: well-formed UTF-8 (which excludes encoded surrogates), no
//! U+0000, at most 65,535 bytes.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// Why bytes are not an MQTT UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StringError {
    #[error("not well-formed UTF-8")]
    InvalidUtf8,
    #[error("contains the null character U+0000")]
    NullCharacter,
    #[error("longer than 65535 bytes")]
    TooLong,
}

/// A validated MQTT UTF-8 string backed by [`Bytes`].
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct MqttString(Bytes);

impl MqttString {
    /// The largest length a UTF-8 Encoded String can have on the wire.
    pub const MAX_LEN: usize = u16::MAX as usize;

    /// Validates `bytes` without copying them.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttString, StringError> {
        validate(&bytes)?;
        Ok(MqttString(bytes))
    }

    /// A string from a literal, checked like any other.
    ///
    /// # Panics
    /// If the literal breaks the MQTT string rules; use [`MqttString::try_from`] for runtime input.
    pub fn from_static(s: &'static str) -> MqttString {
        match validate(s.as_bytes()) {
            Ok(()) => MqttString(Bytes::from_static(s.as_bytes())),
            Err(e) => panic!("invalid static MQTT string {s:?}: {e}"),
        }
    }

    /// The string's text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates the bytes as UTF-8 and the bytes are immutable.
        #[allow(unsafe_code)]
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying shared bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the string, keeping its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// Checks the MQTT string rules. Rust's UTF-8 validation already rejects overlong forms and
/// encoded surrogates (U+D800..U+DFFF), as [MQTT-1.5.4-1] requires.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), StringError> {
    if bytes.len() > MqttString::MAX_LEN {
        return Err(StringError::TooLong);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| StringError::InvalidUtf8)?;
    if text.as_bytes().contains(&0) {
        return Err(StringError::NullCharacter);
    }
    Ok(())
}

impl TryFrom<&str> for MqttString {
    type Error = StringError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        validate(s.as_bytes())?;
        Ok(MqttString(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for MqttString {
    type Error = StringError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(s.as_bytes())?;
        Ok(MqttString(Bytes::from(s)))
    }
}

impl Deref for MqttString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Hash as `str` does, so that `Borrow<str>` lookups in hash maps agree with `Eq`.
impl Hash for MqttString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_1_5_4_2_null_character_is_rejected() {
        assert_eq!(
            MqttString::from_bytes(Bytes::from_static(b"a\0b")),
            Err(StringError::NullCharacter)
        );
    }

    #[test]
    fn mqtt_1_5_4_1_encoded_surrogate_is_rejected() {
        // U+D800 encoded as if it were a scalar value.
        let bytes = Bytes::from_static(&[0xED, 0xA0, 0x80]);
        assert_eq!(MqttString::from_bytes(bytes), Err(StringError::InvalidUtf8));
    }

    #[test]
    fn overlong_encoding_is_rejected() {
        let bytes = Bytes::from_static(&[0xC0, 0xAF]);
        assert_eq!(MqttString::from_bytes(bytes), Err(StringError::InvalidUtf8));
    }

    #[test]
    fn mqtt_1_5_4_3_bom_is_kept() {
        let s = MqttString::try_from("\u{FEFF}x").unwrap();
        assert_eq!(s.as_str(), "\u{FEFF}x");
    }

    #[test]
    fn longest_string_is_accepted_and_one_more_is_not() {
        let max = "a".repeat(MqttString::MAX_LEN);
        assert!(MqttString::try_from(max.as_str()).is_ok());
        let over = "a".repeat(MqttString::MAX_LEN + 1);
        assert_eq!(MqttString::try_from(over), Err(StringError::TooLong));
    }

    #[test]
    fn hashes_like_str() {
        use std::collections::HashSet;
        let mut set = HashSet::new();
        set.insert(MqttString::from_static("a/b"));
        assert!(set.contains("a/b"));
    }
}
