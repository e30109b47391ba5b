//! The header every benchmark payload starts with: which publisher sent it, its sequence
//! number from that publisher, and when it was sent. The rest of the payload is padding.
//!
//! Times are nanoseconds since the run's start on the generator's monotonic clock: the
//! publishers and subscribers are in the same process, so no clock sync is involved.

/// Bytes of the header: publisher (u32), sequence (u64), sent at (u64), little-endian.
pub const STAMP_LEN: usize = 20;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub publisher: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// Writes the header into the first [`STAMP_LEN`] bytes of `payload`.
    pub fn write(&self, payload: &mut [u8]) {
        payload[0..4].copy_from_slice(&self.publisher.to_le_bytes());
        payload[4..12].copy_from_slice(&self.seq.to_le_bytes());
        payload[12..20].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// Reads the header; `None` if the payload is too short to hold one (not ours).
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let header = payload.get(..STAMP_LEN)?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut p = [0u8; 4];
        p.copy_from_slice(&header[0..4]);
        Some(Stamp {
            publisher: u32::from_le_bytes(p),
            seq: u64_at(4),
            sent_ns: u64_at(12),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_and_short_payloads_are_refused() {
        let stamp = Stamp {
            publisher: 7,
            seq: u64::MAX - 1,
            sent_ns: 123_456_789,
        };
        let mut payload = vec![b'x'; 64];
        stamp.write(&mut payload);
        assert_eq!(Stamp::read(&payload), Some(stamp));
        assert_eq!(&payload[STAMP_LEN..], &[b'x'; 64 - STAMP_LEN][..]);
        assert_eq!(Stamp::read(&payload[..STAMP_LEN - 1]), None);
    }
}
