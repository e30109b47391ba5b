//! The limits on what a connected client sends that the protocol leaves open: topic length
//! and depth, user properties, subscriptions per session. Each bounds what one client can
//! make the broker hold (a filter with 65 000 levels in the subscription index, 100 000 user
//! properties copied to every subscriber); each is answered with a reason code for that one
//! packet or filter, and the connection goes on.

use mqtt_codec::UserProperties;

use super::*;

impl Connection {
    /// Whether a topic name or filter is longer or deeper than the broker accepts.
    pub(super) fn topic_beyond_limits(&self, topic: &str) -> bool {
        topic.len() > self.config.max_topic_length
            // Counting separators stops early on a deep one: levels = separators + 1.
            || topic.bytes().filter(|&b| b == b'/').nth(self.config.max_topic_levels.saturating_sub(1)).is_some()
    }

    /// Whether a PUBLISH's or a will's user properties are more, or larger, than accepted.
    pub(super) fn user_properties_beyond_limits(&self, properties: &UserProperties) -> bool {
        if properties.len() > self.config.max_user_properties {
            return true;
        }
        let bytes: usize = properties.iter().map(|(k, v)| k.len() + v.len()).sum();
        bytes > self.config.max_user_property_bytes
    }

    /// Why a PUBLISH (or a will) is beyond the limits: its reason code and text.
    pub(super) fn publish_beyond_limits(
        &self,
        topic: &str,
        properties: &UserProperties,
    ) -> Option<(ReasonCode, &'static str)> {
        if self.topic_beyond_limits(topic) {
            Some((
                ReasonCode::TopicNameInvalid,
                "topic longer or deeper than allowed",
            ))
        } else if self.user_properties_beyond_limits(properties) {
            Some((
                ReasonCode::ImplementationSpecificError,
                "more user properties than allowed",
            ))
        } else {
            None
        }
    }
}
