//! Checks the messages one subscriber received from each publisher: every sequence number
//! once, in order. A sequence number that jumps ahead leaves a gap; a late arrival that
//! fills a gap is reordered, one seen before is a duplicate, and what is still missing at
//! the end (counted against what the publisher says it sent) is lost.

use std::collections::HashSet;

/// Gaps remembered per publisher at most: beyond this a run is losing so much that late
/// arrivals are counted as duplicates rather than remembered (the loss is reported anyway).
const MAX_GAPS: usize = 1 << 20;

/// One subscriber's view of one publisher.
#[derive(Debug, Default, Clone)]
struct Stream {
    /// The next sequence number expected in order.
    next: u64,
    /// Sequence numbers skipped over and not seen since.
    gaps: HashSet<u64>,
    /// Distinct messages received.
    distinct: u64,
    duplicated: u64,
    reordered: u64,
}

/// What one subscriber received, by publisher.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    streams: Vec<Stream>,
    /// Messages whose payload was not a benchmark stamp, or named an unknown publisher.
    pub foreign: u64,
}

/// The totals of a check against what was sent (in a report's JSON as they are here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Distinct messages received.
    pub received: u64,
    /// Messages expected (sent by the publishers this subscriber listens to).
    pub expected: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Messages that were not this run's, or came to a subscriber whose filters do not
    /// match them.
    pub foreign: u64,
}

impl Verdict {
    /// Adds another subscriber's verdict.
    pub fn add(&mut self, other: Verdict) {
        self.received += other.received;
        self.expected += other.expected;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.foreign += other.foreign;
    }

    /// Every message arrived once, in order.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.reordered == 0 && self.foreign == 0
    }
}

impl Checker {
    /// A checker for messages from `publishers` publishers (ids `0..publishers`).
    pub fn new(publishers: usize) -> Checker {
        Checker {
            streams: vec![Stream::default(); publishers],
            foreign: 0,
        }
    }

    /// Records message `seq` from `publisher`.
    pub fn record(&mut self, publisher: u32, seq: u64) {
        let Some(s) = self.streams.get_mut(publisher as usize) else {
            self.foreign += 1;
            return;
        };
        if seq == s.next {
            s.next += 1;
            s.distinct += 1;
        } else if seq > s.next {
            let missing = seq - s.next;
            if s.gaps.len() as u64 + missing <= MAX_GAPS as u64 {
                s.gaps.extend(s.next..seq);
            }
            s.next = seq + 1;
            s.distinct += 1;
        } else if s.gaps.remove(&seq) {
            s.reordered += 1;
            s.distinct += 1;
        } else {
            s.duplicated += 1;
        }
    }

    /// Distinct messages received so far from `publisher`.
    pub fn distinct_from(&self, publisher: u32) -> u64 {
        self.streams
            .get(publisher as usize)
            .map_or(0, |s| s.distinct)
    }

    /// The verdict, given how many messages each publisher this subscriber listens to sent
    /// (`sent[p]` for the publishers in `listens_to`).
    pub fn verdict(&self, sent: &[u64], listens_to: &[u32]) -> Verdict {
        let mut v = Verdict {
            foreign: self.foreign,
            ..Verdict::default()
        };
        for (p, s) in self.streams.iter().enumerate() {
            let expected = match listens_to.contains(&(p as u32)) {
                true => sent.get(p).copied().unwrap_or(0),
                false => 0,
            };
            v.received += s.distinct;
            v.expected += expected;
            v.lost += expected.saturating_sub(s.distinct);
            v.duplicated += s.duplicated;
            v.reordered += s.reordered;
            // Messages from a publisher this subscriber should not hear from are foreign.
            if expected == 0 {
                v.foreign += s.distinct;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(seqs: &[u64], sent: u64) -> Verdict {
        let mut c = Checker::new(1);
        for &s in seqs {
            c.record(0, s);
        }
        c.verdict(&[sent], &[0])
    }

    #[test]
    fn in_order_is_clean() {
        let v = check(&[0, 1, 2, 3], 4);
        assert!(v.is_clean(), "{v:?}");
        assert_eq!((v.received, v.expected), (4, 4));
    }

    #[test]
    fn a_missing_message_is_lost_even_at_the_end() {
        assert_eq!(check(&[0, 2, 3], 4).lost, 1);
        assert_eq!(check(&[0, 1], 4).lost, 2);
        assert_eq!(check(&[], 3).lost, 3);
    }

    #[test]
    fn a_late_message_is_reordered_and_a_repeat_duplicated() {
        let v = check(&[0, 2, 1, 3], 4);
        assert_eq!((v.reordered, v.lost, v.duplicated), (1, 0, 0), "{v:?}");
        let v = check(&[0, 1, 1, 2, 0], 3);
        assert_eq!((v.duplicated, v.lost, v.reordered), (2, 0, 0), "{v:?}");
        let v = check(&[0, 2, 1, 1], 3);
        assert_eq!((v.reordered, v.duplicated), (1, 1), "{v:?}");
    }

    #[test]
    fn messages_from_elsewhere_are_foreign() {
        let mut c = Checker::new(2);
        c.record(5, 0);
        c.record(1, 0);
        // This subscriber listens to publisher 0 only.
        let v = c.verdict(&[0, 1], &[0]);
        assert_eq!(v.foreign, 2, "{v:?}");
        assert!(!v.is_clean());
    }
}
