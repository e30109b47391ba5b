//! Packets by hand, byte for byte: the abuse cases send what no well-behaved encoder would
//! produce (ill-formed UTF-8, duplicate properties, lengths that lie), so they are built here
//! rather than through the codec. Everything is MQTT 5.0 unless a function says otherwise.

/// Body under construction: a packet body, or a property list. Fields are appended in wire
/// order; [`Body::frame`] puts the fixed header in front.
#[derive(Debug, Clone, Default)]
pub struct Body(Vec<u8>);

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    pub fn u8(mut self, value: u8) -> Body {
        self.0.push(value);
        self
    }

    pub fn u16(mut self, value: u16) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u32(mut self, value: u32) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A Variable Byte Integer, minimally encoded.
    pub fn varint(mut self, value: u32) -> Body {
        self.0.extend_from_slice(&varint(value));
        self
    }

    /// A UTF-8 string or binary field: two-byte length, then the bytes as given (valid or not).
    pub fn str(self, bytes: &[u8]) -> Body {
        let len = u16::try_from(bytes.len()).expect("string field fits 64 KiB");
        self.u16(len).raw(bytes)
    }

    pub fn raw(mut self, bytes: &[u8]) -> Body {
        self.0.extend_from_slice(bytes);
        self
    }

    /// A property list: its length, then the properties.
    pub fn props(self, props: Body) -> Body {
        let len = u32::try_from(props.0.len()).unwrap();
        self.varint(len).raw(&props.0)
    }

    // Single properties, for a property list: identifier, then value.

    pub fn prop_u8(self, id: u8, value: u8) -> Body {
        self.u8(id).u8(value)
    }

    pub fn prop_u16(self, id: u8, value: u16) -> Body {
        self.u8(id).u16(value)
    }

    pub fn prop_u32(self, id: u8, value: u32) -> Body {
        self.u8(id).u32(value)
    }

    pub fn prop_str(self, id: u8, value: &[u8]) -> Body {
        self.u8(id).str(value)
    }

    /// A string pair property (a User Property): identifier, name, value.
    pub fn prop_pair(self, id: u8, name: &[u8], value: &[u8]) -> Body {
        self.u8(id).str(name).str(value)
    }

    /// The whole packet: `first` (type and flags), the remaining length, the body.
    pub fn frame(self, first: u8) -> Vec<u8> {
        let mut out = vec![first];
        out.extend_from_slice(&varint(u32::try_from(self.0.len()).unwrap()));
        out.extend(self.0);
        out
    }
}

/// Property identifiers used by the cases (MQTT 5.0 section 2.2.2.2).
pub mod prop {
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// A Variable Byte Integer (MQTT 5.0 section 1.5.5), minimally encoded.
pub fn varint(mut value: u32) -> Vec<u8> {
    assert!(
        value <= 268_435_455,
        "{value} does not fit a Variable Byte Integer"
    );
    let mut out = Vec::new();
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return out;
        }
    }
}

/// Just a fixed header: `first`, then a remaining length of `declared` and no body at all.
pub fn header_only(first: u8, declared: u32) -> Vec<u8> {
    let mut out = vec![first];
    out.extend_from_slice(&varint(declared));
    out
}

/// The largest remaining length MQTT can express (256 MB - 1).
pub const HUGE: u32 = 268_435_455;

/// A CONNECT's parts; [`Connect::bytes`] lays them out. Start from [`Connect::new`].
#[derive(Debug, Clone)]
pub struct Connect<'a> {
    pub client_id: &'a [u8],
    pub username: Option<&'a [u8]>,
    pub props: Body,
    pub keep_alive: u16,
}

impl<'a> Connect<'a> {
    /// Clean start, keep alive 60, no properties, no will, user name or password.
    pub fn new(client_id: &'a [u8]) -> Connect<'a> {
        Connect {
            client_id,
            username: None,
            props: Body::new(),
            keep_alive: 60,
        }
    }

    pub fn username(mut self, username: &'a [u8]) -> Connect<'a> {
        self.username = Some(username);
        self
    }

    pub fn props(mut self, props: Body) -> Connect<'a> {
        self.props = props;
        self
    }

    pub fn bytes(self) -> Vec<u8> {
        let flags = 0x02 | if self.username.is_some() { 0x80 } else { 0 };
        let mut body = Body::new()
            .str(b"MQTT")
            .u8(5)
            .u8(flags)
            .u16(self.keep_alive)
            .props(self.props)
            .str(self.client_id);
        if let Some(username) = self.username {
            body = body.str(username);
        }
        body.frame(0x10)
    }
}

/// A PUBLISH: `first` (0x30 | DUP, QoS, RETAIN flags), topic bytes as given, packet id if
/// any, properties, payload.
pub fn publish(first: u8, topic: &[u8], id: Option<u16>, props: Body, payload: &[u8]) -> Vec<u8> {
    let mut body = Body::new().str(topic);
    if let Some(id) = id {
        body = body.u16(id);
    }
    body.props(props).raw(payload).frame(first)
}

/// A QoS 0 PUBLISH with no properties.
pub fn publish0(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    publish(0x30, topic, None, Body::new(), payload)
}

/// A QoS 2 PUBLISH with no properties.
pub fn publish2(topic: &[u8], id: u16, payload: &[u8]) -> Vec<u8> {
    publish(0x34, topic, Some(id), Body::new(), payload)
}

/// A SUBSCRIBE of one filter with subscription options `options` (QoS in the low bits).
pub fn subscribe(id: u16, filter: &[u8], options: u8) -> Vec<u8> {
    Body::new()
        .u16(id)
        .props(Body::new())
        .str(filter)
        .u8(options)
        .frame(0x82)
}

#[test]
fn varint_matches_the_spec_examples() {
    // MQTT 5.0 section 1.5.5, table 1-1: the boundaries of each length.
    assert_eq!(varint(0), [0x00]);
    assert_eq!(varint(127), [0x7F]);
    assert_eq!(varint(128), [0x80, 0x01]);
    assert_eq!(varint(16_383), [0xFF, 0x7F]);
    assert_eq!(varint(16_384), [0x80, 0x80, 0x01]);
    assert_eq!(varint(2_097_151), [0xFF, 0xFF, 0x7F]);
    assert_eq!(varint(2_097_152), [0x80, 0x80, 0x80, 0x01]);
    assert_eq!(varint(HUGE), [0xFF, 0xFF, 0xFF, 0x7F]);
}

#[test]
fn the_builder_lays_out_a_connect_the_codec_accepts() {
    let bytes = Connect::new(b"id")
        .username(b"user")
        .props(Body::new().prop_u16(prop::RECEIVE_MAXIMUM, 5))
        .bytes();
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    let decoded = mqtt_codec::Decoder::new(mqtt_codec::ProtocolVersion::V5)
        .decode(&mut buf)
        .expect("valid")
        .expect("complete");
    match decoded {
        mqtt_codec::Packet::Connect(c) => {
            assert_eq!(&*c.client_id, "id");
            assert_eq!(c.username.as_deref(), Some("user"));
            assert_eq!(c.properties.receive_maximum, Some(5));
            assert!(c.clean_start);
        }
        other => panic!("{other:?}"),
    }
}
