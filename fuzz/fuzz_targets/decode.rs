//! Feeds arbitrary bytes to the MQTT decoder, with the checks in `../check.rs`: nothing
//! panics, every error maps to a failure reason code, every packet decoded re-encodes (in no
//! more bytes than it took, to `encoded_len` bytes) and decodes back to itself, and chunked
//! feeding sees exactly what whole feeding sees. The first byte selects the starting version,
//! the maximum packet size and the chunk size (see `check.rs`).
//!
//! Run with `bash .ci/fuzz SECONDS` from the repository root. The seed corpus is in
//! `corpus/decode/`; `crates/mqtt-codec/tests/fuzz_corpus.rs` replays it with the same checks
//! and generates the seeds.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
