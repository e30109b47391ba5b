//! What decoding costs in memory, measured with a counting global allocator.
//!
//! The decoder must never allocate in proportion to a length a peer merely declares: a fixed
//! header announcing 256 MB followed by nothing must cost (almost) nothing, whatever the maximum
//! packet size, and in general decoding may allocate no more than a small constant plus a
//! multiple of the bytes actually received.
//!
//! The counters are per thread, so the tests of this binary can run in parallel: each one
//! measures only what its own thread allocates between two points.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use mqtt_codec::{
    DecodeError, Decoder, MqttString, Packet, ProtocolVersion, Publish, MAX_PACKET_SIZE,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------------
// The counting allocator
// ---------------------------------------------------------------------------------------------

struct Counting;

thread_local! {
    // Const-initialised `Cell`s of plain integers: no lazy initialisation and no destructor,
    // so touching them from inside the allocator cannot allocate or recurse.
    /// Bytes this thread has allocated and not freed (negative if it frees what another
    /// thread allocated; only differences matter).
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    /// The highest `CURRENT` has been since the last `reset_peak`.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(bytes: usize) {
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + bytes as isize;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(bytes: usize) {
    let _ = CURRENT.try_with(|current| current.set(current.get() - bytes as isize));
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping touches only
// thread-local integers.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            // Counted as a fresh allocation followed by freeing the old block: the worst case,
            // where both exist at once while the contents are copied.
            grow(new_size);
            shrink(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most memory this thread had allocated at any
/// moment during `f`, over what it had allocated when `f` started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, (peak - start).max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Thresholds
// ---------------------------------------------------------------------------------------------

/// The most the decoder reserves ahead of a partial packet (`decoder.rs`), and never more than
/// the maximum packet size allows the packet to still need.
const RESERVE_AHEAD: usize = 8 * 1024;

/// A fixed allowance per decode call, for what does not grow with the input: the boxed
/// CONNECT or CONNACK (a few hundred bytes each), the shared header `bytes` allocates when a
/// frame is first split off the read buffer, the first small allocation of a `Vec`, and an
/// error's excerpt of a client string (at most 100 bytes plus an ellipsis).
const PER_CALL: usize = 2 * 1024;

/// Heap per byte of the packet being decoded that decoding may turn into structure. The worst
/// case is a run of empty user properties: 5 wire bytes (identifier and two empty lengths)
/// become a 64-byte `(MqttString, MqttString)`, and a doubling `Vec` holds up to 2 slots per
/// element, 3 while it reallocates (old and new block both live): 3 × 64 / 5 ≈ 38.4.
/// Subscriptions (at least 4 wire bytes → 40 bytes, so 30), subscription identifiers (2 → 4)
/// and reason codes (1 → 1) cost less. A packet is never larger than the maximum packet size,
/// so this term is bounded by it too.
const PER_PACKET_BYTE: usize = 40;

/// What one decode call may allocate at most, given what it returned: `received` bytes
/// appended to the buffer so far, `available` of them still in it, maximum packet size `max`.
/// Nothing here depends on a length the input declares without sending.
fn allowance(pending: bool, received: usize, available: usize, max: u32) -> usize {
    let max = max as usize;
    if pending {
        // `Ok(None)` is the only outcome that reserves, and it decodes nothing. The decoder
        // asks for at most `RESERVE_AHEAD` beyond what the buffer holds, and never more than
        // the packet still needs (so never more than `max`). `BytesMut` grows only when what
        // is needed exceeds its capacity, and then to the larger of what is needed and double
        // its capacity, so its capacity never exceeds twice the most ever needed:
        // 2 × (received + reserve). At its peak a reallocation adds that new block.
        2 * (received + RESERVE_AHEAD.min(max))
    } else {
        // A packet or an error: no reserving, only the packet's structure (or the error's
        // excerpt), from a frame no larger than what is there nor than `max`.
        PER_CALL + PER_PACKET_BYTE * available.min(max)
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A PUBLISH fixed header declaring the largest remaining length MQTT can express,
/// 268,435,455 bytes (256 MiB), with nothing after it.
const HUGE_HEADER: [u8; 5] = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];

#[test]
fn declaring_256_mib_with_a_1_mib_limit_allocates_nothing() {
    let mut decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(1 << 20);
    let mut buf = BytesMut::from(&HUGE_HEADER[..]);
    let (result, peak) = peak_during(|| decoder.decode(&mut buf));
    assert!(
        matches!(result, Err(DecodeError::PacketTooLarge { .. })),
        "{result:?}"
    );
    // The size check happens before anything is reserved and the error holds no heap data:
    // this measures 0. A handful of bytes is tolerated so the test does not pin an
    // implementation detail; 256 MiB or even 1 MiB is what it guards against.
    assert!(peak <= 64, "{peak} bytes allocated");
}

#[test]
fn declaring_256_mib_without_a_limit_reserves_only_a_little() {
    // With no maximum packet size the declared size is acceptable, so the decoder waits for
    // the rest; it must not reserve the 256 MiB the peer has not sent.
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut decoder = Decoder::new(version);
        let mut buf = BytesMut::from(&HUGE_HEADER[..]);
        let (result, peak) = peak_during(|| decoder.decode(&mut buf));
        assert_eq!(result, Ok(None));
        assert!(
            peak <= RESERVE_AHEAD + HUGE_HEADER.len() + 64,
            "{peak} bytes allocated"
        );
    }
}

#[test]
fn declaring_just_under_the_limit_reserves_only_a_little() {
    // Remaining length 1 MiB - 5 (a 4-byte varint), within a 1 MiB limit.
    let remaining = (1u32 << 20) - 5;
    let mut wire = vec![0x30];
    let mut v = remaining;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            wire.push(byte);
            break;
        }
        wire.push(byte | 0x80);
    }
    wire.extend_from_slice(&[0x00, 0x03, b'a', b'/', b'b']);
    let mut decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(1 << 20);
    let mut buf = BytesMut::from(&wire[..]);
    let (result, peak) = peak_during(|| decoder.decode(&mut buf));
    assert_eq!(result, Ok(None));
    assert!(peak <= RESERVE_AHEAD + wire.len() + 64, "{peak} bytes");
}

#[test]
fn a_large_packet_trickling_in_grows_the_buffer_geometrically() {
    // Capping what is reserved ahead must not cost a large packet a reallocation per read:
    // `BytesMut` grows by doubling, so a 1 MiB packet read 1 KiB at a time reallocates a
    // logarithmic number of times (8 KiB → 2 MiB is 8 doublings), and the buffer never holds
    // more than about twice what has arrived plus the reserve (see `allowance`).
    let publish = Publish::new(MqttString::from_static("big"), vec![0xAB; 1 << 20].into());
    let mut wire = BytesMut::new();
    Packet::from(publish.clone())
        .encode(ProtocolVersion::V5, &mut wire)
        .unwrap();
    let mut decoder = Decoder::new(ProtocolVersion::V5);
    let mut buf = BytesMut::new();
    let mut received = 0;
    let mut reallocations = 0;
    let mut decoded = Vec::new();
    for chunk in wire.chunks(1024) {
        let capacity = buf.capacity();
        buf.extend_from_slice(chunk);
        received += chunk.len();
        decoded.extend(decoder.decode(&mut buf).unwrap());
        if buf.capacity() != capacity {
            reallocations += 1;
        }
        assert!(buf.capacity() <= 2 * (received + RESERVE_AHEAD));
    }
    assert_eq!(decoded, vec![Packet::Publish(publish)]);
    assert!(reallocations <= 16, "{reallocations} reallocations");
}

// ---------------------------------------------------------------------------------------------
// Arbitrary input
// ---------------------------------------------------------------------------------------------

fn put_varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes that reach past the fixed header often: a plausible first byte and a remaining
/// length that is often larger than what follows (the declared-but-absent case), then noise;
/// or the densest structure the codec decodes.
fn input() -> impl Strategy<Value = Vec<u8>> {
    let first = prop_oneof![
        select(vec![
            0x10u8, 0x20, 0x30, 0x32, 0x34, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0, 0xC0,
            0xD0, 0xE0, 0xF0,
        ]),
        any::<u8>(),
    ];
    let declared = prop_oneof![
        0usize..128,
        128usize..16_384,
        Just(mqtt_codec::VARINT_MAX as usize),
        0..=mqtt_codec::VARINT_MAX as usize,
    ];
    let header_then_noise =
        (first, declared, vec(any::<u8>(), 0..512)).prop_map(|(first, declared, body)| {
            let mut bytes = vec![first];
            put_varint(declared, &mut bytes);
            bytes.extend_from_slice(&body);
            bytes
        });
    // A v5 PUBACK carrying `n` empty user properties, possibly cut short.
    let user_properties = (1usize..200, any::<prop::sample::Index>()).prop_map(|(n, cut)| {
        let properties = [0x26, 0, 0, 0, 0].repeat(n);
        let mut property_length = Vec::new();
        put_varint(properties.len(), &mut property_length);
        let mut bytes = vec![0x40];
        put_varint(3 + property_length.len() + properties.len(), &mut bytes);
        bytes.extend_from_slice(&[0x00, 0x01, 0x10]);
        bytes.extend_from_slice(&property_length);
        bytes.extend_from_slice(&properties);
        bytes.truncate(cut.index(bytes.len()) + 1);
        bytes
    });
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        3 => header_then_noise,
        1 => user_properties,
    ]
}

/// Feeds `input` in chunks of `chunk` bytes and decodes after each, measuring every decode
/// call on its own. Returns the worst excess of a call over its allowance (0 if none) and the
/// bytes that call had.
fn worst_excess(version: ProtocolVersion, max: u32, input: &[u8], chunk: usize) -> (usize, usize) {
    let mut decoder = Decoder::new(version).with_max_packet_size(max);
    let mut buf = BytesMut::new();
    let mut received = 0;
    let mut worst = (0, 0);
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        received += piece.len();
        loop {
            let available = buf.len();
            let (result, peak) = peak_during(|| decoder.decode(&mut buf));
            let pending = matches!(result, Ok(None));
            let excess = peak.saturating_sub(allowance(pending, received, available, max));
            if excess > worst.0 {
                worst = (excess, available);
            }
            match result {
                // The caller would act on the packet and drop it.
                Ok(Some(packet)) => drop(packet),
                Ok(None) => break,
                Err(_) => return worst,
            }
        }
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decoding_allocates_at_most_a_constant_plus_a_multiple_of_the_input(
        input in input(),
        version in select(vec![ProtocolVersion::V3_1_1, ProtocolVersion::V5]),
        max in select(vec![MAX_PACKET_SIZE, 1 << 20, 1024, 64]),
        chunk in prop_oneof![Just(usize::MAX), 1usize..64],
    ) {
        let (excess, available) = worst_excess(version, max, &input, chunk);
        prop_assert_eq!(
            excess, 0,
            "a decode call with {} bytes available exceeded its allowance", available
        );
    }
}
