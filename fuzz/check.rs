//! The checks every fuzz input gets, shared by the fuzz target (`fuzz_targets/decode.rs`) and
//! the corpus replay under `cargo test` (`crates/mqtt-codec/tests/fuzz_corpus.rs`), which both
//! include this file, so the two can never drift apart.
//!
//! An input is one selector byte and then the bytes to decode. The selector picks: bits 0-1
//! the version the decoder starts in (0: 3.1.1, 2: 3.1, 1 or 3: 5.0); bits 2-4 the maximum
//! packet size (an index into [`MAX_PACKET_SIZES`]); bits 5-7 the size of the chunks the bytes
//! are also fed in, 2^n.

use bytes::BytesMut;
use mqtt_codec::{DecodeError, Decoder, Packet, ProtocolVersion, MAX_PACKET_SIZE};

pub const MAX_PACKET_SIZES: [u32; 8] = [MAX_PACKET_SIZE, 1 << 20, 4096, 256, 64, 16, 5, 2];

/// Decodes `data` (selector byte, then input) whole and in chunks and checks that:
/// nothing panics; every error maps to a failure reason code (>= 0x80); every packet decoded
/// re-encodes, in no more bytes than it took, to `encoded_len` bytes that decode back to it;
/// and the chunked run sees exactly what the whole run sees.
pub fn check(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let version = match selector & 0b11 {
        0 => ProtocolVersion::V3_1_1,
        2 => ProtocolVersion::V3_1,
        _ => ProtocolVersion::V5,
    };
    let max = MAX_PACKET_SIZES[usize::from((selector >> 2) & 0b111)];
    let whole = run(version, max, input, input.len().max(1));
    let chunked = run(version, max, input, 1 << (selector >> 5));
    assert_eq!(
        whole, chunked,
        "feeding the bytes in chunks changed the outcome"
    );
}

pub fn run(
    version: ProtocolVersion,
    max: u32,
    input: &[u8],
    chunk: usize,
) -> Vec<Result<Packet, DecodeError>> {
    let mut decoder = Decoder::new(version).with_max_packet_size(max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let session = decoder.version();
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let mut wire = BytesMut::new();
                    packet
                        .encode(session, &mut wire)
                        .expect("decoded packet re-encodes");
                    assert!(wire.len() <= before - buf.len(), "{packet:?} grew");
                    assert_eq!(packet.encoded_len(session), wire.len(), "{packet:?}");
                    let again = Decoder::new(session).decode(&mut wire);
                    assert_eq!(again, Ok(Some(packet.clone())));
                    assert!(wire.is_empty(), "{packet:?} re-decoded short");
                    events.push(Ok(packet));
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(
                        e.reason_code() as u8 >= 0x80,
                        "{e} maps to {}",
                        e.reason_code()
                    );
                    events.push(Err(e));
                    return events;
                }
            }
        }
    }
    events
}
