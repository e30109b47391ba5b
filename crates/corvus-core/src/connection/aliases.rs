//! A connection's topic aliases, both ways (MQTT 5.0 section 3.3.2.3.4).
//!
//! Made at the first alias: most clients use none, and two empty maps inline would cost
//! every connection about 90 bytes.

use std::collections::HashMap;

use mqtt_codec::MqttString;

#[derive(Debug, Default)]
pub(super) struct TopicAliases(Option<Box<Maps>>);

#[derive(Debug, Default)]
struct Maps {
    /// Set by the client's PUBLISHes.
    inbound: HashMap<u16, MqttString>,
    /// Assigned by the broker, 1 upwards, never reassigned.
    outbound: HashMap<MqttString, u16>,
}

impl TopicAliases {
    fn maps(&mut self) -> &mut Maps {
        self.0.get_or_insert_default()
    }

    /// The topic the client set for `alias`.
    pub(super) fn inbound(&self, alias: u16) -> Option<&MqttString> {
        self.0.as_ref()?.inbound.get(&alias)
    }

    pub(super) fn set_inbound(&mut self, alias: u16, topic: MqttString) {
        self.maps().inbound.insert(alias, topic);
    }

    /// The alias the broker gave `topic`.
    pub(super) fn outbound(&self, topic: &MqttString) -> Option<u16> {
        self.0.as_ref()?.outbound.get(topic).copied()
    }

    /// How many aliases the broker has given.
    pub(super) fn outbound_count(&self) -> usize {
        self.0.as_ref().map_or(0, |maps| maps.outbound.len())
    }

    pub(super) fn add_outbound(&mut self, topic: MqttString, alias: u16) {
        self.maps().outbound.insert(topic, alias);
    }

    /// Forgets the aliases above the first `count` (assigned to a packet never sent).
    pub(super) fn forget_outbound_after(&mut self, count: usize) {
        if let Some(maps) = self.0.as_mut() {
            maps.outbound
                .retain(|_, alias| usize::from(*alias) <= count);
        }
    }
}
