//! Output that waits for the store. Under sync policy `always`, nothing a connection sends
//! after it has written to the store may leave before that write is on disk: a PUBACK or
//! PUBREC promises the message is durable, a CONNACK or SUBACK that the session or
//! subscription is, and a PUBLISH of a persisted delivery must not reach the client before
//! its place in the queue is durable (or a crash could deliver a QoS 2 message twice).
//!
//! Encoded packets go to the write buffer when nothing is waiting; otherwise they queue
//! behind the store batch (ticket) they depend on, in order, and move to the write buffer
//! as batches become durable.

use std::collections::VecDeque;

use bytes::BytesMut;
use corvus_store::Ticket;

#[derive(Debug, Default)]
pub struct HeldOutput {
    /// Bytes waiting for a ticket, oldest first; tickets increase.
    segments: VecDeque<(Ticket, BytesMut)>,
}

impl HeldOutput {
    /// Where the next packet goes, given the ticket the connection depends on (`needed`,
    /// 0 for none) and the highest durable one. `durable` is asked only when something
    /// depends on the store: reading it takes the store's lock, and most packets (those of
    /// a connection that wrote nothing to the store) need not.
    pub fn buffer<'a>(
        &'a mut self,
        needed: Ticket,
        durable: impl FnOnce() -> Ticket,
        write_buf: &'a mut BytesMut,
    ) -> &'a mut BytesMut {
        if self.segments.is_empty() && (needed == 0 || needed <= durable()) {
            return write_buf;
        }
        let ticket = needed.max(self.segments.back().map_or(0, |(t, _)| *t));
        if self.segments.back().is_none_or(|(t, _)| *t != ticket) {
            self.segments.push_back((ticket, BytesMut::new()));
        }
        match self.segments.back_mut() {
            Some((_, buf)) => buf,
            None => write_buf,
        }
    }

    /// Moves everything covered by `durable` to the write buffer, in order.
    pub fn release(&mut self, durable: Ticket, write_buf: &mut BytesMut) {
        while self.segments.front().is_some_and(|(t, _)| *t <= durable) {
            if let Some((_, buf)) = self.segments.pop_front() {
                write_buf.extend_from_slice(&buf);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// The ticket the oldest held output waits for.
    pub fn first_ticket(&self) -> Option<Ticket> {
        self.segments.front().map(|(t, _)| *t)
    }

    /// The ticket everything held waits for.
    pub fn last_ticket(&self) -> Option<Ticket> {
        self.segments.back().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_wait_for_their_ticket_and_keep_their_order() {
        let mut held = HeldOutput::default();
        let mut out = BytesMut::new();
        held.buffer(0, || 0, &mut out).extend_from_slice(b"a");
        held.buffer(2, || 1, &mut out).extend_from_slice(b"b");
        // Needs nothing itself, but must not overtake "b".
        held.buffer(0, || 1, &mut out).extend_from_slice(b"c");
        held.buffer(3, || 1, &mut out).extend_from_slice(b"d");
        assert_eq!(&out[..], b"a");
        held.release(2, &mut out);
        assert_eq!(&out[..], b"abc");
        assert!(!held.is_empty());
        held.release(3, &mut out);
        assert_eq!(&out[..], b"abcd");
        assert!(held.is_empty());
        held.buffer(3, || 3, &mut out).extend_from_slice(b"e");
        assert_eq!(&out[..], b"abcde");
    }

    #[test]
    fn the_durable_ticket_is_read_only_when_something_depends_on_the_store() {
        let mut held = HeldOutput::default();
        let mut out = BytesMut::new();
        let unread = || -> Ticket { panic!("the durable ticket was read for nothing") };
        held.buffer(0, unread, &mut out).extend_from_slice(b"a");
        assert_eq!(&out[..], b"a");
        let read = std::cell::Cell::new(false);
        held.buffer(
            2,
            || {
                read.set(true);
                1
            },
            &mut out,
        )
        .extend_from_slice(b"b");
        assert!(read.get(), "a packet that depends on the store asks");
        assert_eq!(&out[..], b"a");
    }
}
