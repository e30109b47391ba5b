//! The topics clients publish to most, by rate: what the dashboard's "top topics" shows and
//! `GET /api/v1/topics/top` answers.
//!
//! Counting must cost the publish path next to nothing, whatever the number of connections:
//! each connection tallies its own messages by topic in a small local map ([`TopicTally`],
//! no lock, no clock, one allocation per new topic per hand-over) and, after each batch of
//! packets it reads, hands the tally to the broker's [`TopicRates`] if a second has passed
//! since it last did, under one lock. The shared counts are bounded: at most
//! [`TRACKED_TOPICS`] topics, the quietest replaced when a new one comes (the space-saving
//! algorithm: a newcomer inherits the replaced count, so a busy topic is never missed, and a
//! count is at most that much too high). Rates are over the last whole window
//! ([`WINDOW`]), so they are up to a window old.
//!
//! No clock is read here: callers pass the time in.

use std::collections::HashMap;
use std::sync::Mutex;

use corvus_core::Millis;

/// Topics counted at once, broker-wide.
pub const TRACKED_TOPICS: usize = 1024;
/// Topics a connection tallies before it hands its tally over early.
const TALLY_TOPICS: usize = 64;
/// How often a connection hands its tally over, at most.
const TALLY_EVERY: Millis = 1_000;
/// The window rates are measured over.
pub const WINDOW: Millis = 5_000;

/// One connection's messages by topic since it last handed them over. The map is made at
/// the first message: connections that only subscribe (most of them) carry a pointer.
#[derive(Debug, Default)]
pub struct TopicTally {
    // Boxed for its inline size (48 bytes), not its contents, which clippy cannot know.
    #[allow(clippy::box_collection)]
    counts: Option<Box<HashMap<Box<str>, u64>>>,
    /// When it was last handed over.
    handed_over: Millis,
}

impl TopicTally {
    /// Counts one message on `topic`.
    pub fn record(&mut self, topic: &str) {
        let counts = self.counts.get_or_insert_default();
        match counts.get_mut(topic) {
            Some(n) => *n += 1,
            None => {
                counts.insert(topic.into(), 1);
            }
        }
    }

    fn len(&self) -> usize {
        self.counts.as_ref().map_or(0, |counts| counts.len())
    }

    /// Whether the tally should be handed over at `now`: it holds something, and a second
    /// has passed since the last time or it holds many topics.
    pub fn is_due(&self, now: Millis) -> bool {
        !self.is_empty()
            && (self.len() >= TALLY_TOPICS || now.saturating_sub(self.handed_over) >= TALLY_EVERY)
    }

    /// When it is due if nothing more is counted (`None` while it holds nothing).
    pub fn due_at(&self) -> Option<Millis> {
        (!self.is_empty()).then_some(self.handed_over + TALLY_EVERY)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A topic and its rate (the admin API's `TopicRate`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TopicRate {
    pub topic: String,
    pub messages_per_second: f64,
}

#[derive(Debug, Default)]
struct Windows {
    started: Millis,
    current: HashMap<Box<str>, u64>,
    previous: Option<ClosedWindow>,
}

/// The last whole window: its counts, busiest first, and how long it lasted.
#[derive(Debug)]
struct ClosedWindow {
    counts: Vec<(Box<str>, u64)>,
    lasted: Millis,
}

impl Windows {
    /// Closes the current window if it has lasted [`WINDOW`].
    fn roll(&mut self, now: Millis) {
        // The first window starts with the first use, not at the epoch.
        if self.started == 0 {
            self.started = now;
            return;
        }
        let lasted = now.saturating_sub(self.started);
        if lasted < WINDOW {
            return;
        }
        let mut counts: Vec<_> = std::mem::take(&mut self.current).into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.previous = Some(ClosedWindow { counts, lasted });
        self.started = now;
    }

    fn add(&mut self, topic: Box<str>, n: u64) {
        if let Some(count) = self.current.get_mut(&topic) {
            *count += n;
            return;
        }
        if self.current.len() >= TRACKED_TOPICS {
            // Space-saving: the quietest topic makes room, and its count is inherited.
            let quietest = self
                .current
                .iter()
                .min_by_key(|(_, &count)| count)
                .map(|(topic, &count)| (topic.clone(), count));
            if let Some((quietest, count)) = quietest {
                self.current.remove(&quietest);
                self.current.insert(topic, count + n);
            }
            return;
        }
        self.current.insert(topic, n);
    }
}

/// The broker's topic rates (see the module docs).
#[derive(Debug, Default)]
pub struct TopicRates {
    windows: Mutex<Windows>,
}

impl TopicRates {
    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a connection's tally.
    pub fn absorb(&self, tally: &mut TopicTally, now: Millis) {
        tally.handed_over = now;
        let mut windows = self.windows();
        windows.roll(now);
        for (topic, n) in tally.counts.iter_mut().flat_map(|counts| counts.drain()) {
            windows.add(topic, n);
        }
    }

    /// The `limit` busiest topics of the last whole window, busiest first, and how long
    /// that window was in seconds. Before the first window closes, the current one's.
    pub fn top(&self, limit: usize, now: Millis) -> (Vec<TopicRate>, f64) {
        let mut windows = self.windows();
        windows.roll(now);
        let (counts, lasted): (Vec<(&str, u64)>, Millis) = match &windows.previous {
            Some(closed) => (
                closed.counts.iter().map(|(t, n)| (&**t, *n)).collect(),
                closed.lasted,
            ),
            None => {
                let mut counts: Vec<_> = windows.current.iter().map(|(t, n)| (&**t, *n)).collect();
                counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                (counts, now.saturating_sub(windows.started))
            }
        };
        // A window just begun has lasted next to nothing; a second keeps its rates sane.
        let seconds = (lasted.max(1_000)) as f64 / 1000.0;
        let top = counts
            .into_iter()
            .take(limit)
            .map(|(topic, n)| TopicRate {
                topic: topic.to_owned(),
                messages_per_second: n as f64 / seconds,
            })
            .collect();
        (top, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(topics: &[(&str, u64)]) -> TopicTally {
        let mut tally = TopicTally::default();
        for &(topic, n) in topics {
            for _ in 0..n {
                tally.record(topic);
            }
        }
        tally
    }

    #[test]
    fn a_tally_is_due_a_second_after_the_last_hand_over_or_with_many_topics() {
        let rates = TopicRates::default();
        let mut tally = TopicTally::default();
        assert!(!tally.is_due(10_000), "nothing to hand over");
        tally.record("a");
        assert!(tally.is_due(10_000));
        rates.absorb(&mut tally, 10_000);
        tally.record("a");
        assert!(!tally.is_due(10_999));
        assert!(tally.is_due(11_000));
        assert_eq!(tally.due_at(), Some(11_000));
        rates.absorb(&mut tally, 11_000);
        assert_eq!(tally.due_at(), None);
        let mut wide = TopicTally {
            handed_over: 5_000,
            ..TopicTally::default()
        };
        let due: Vec<bool> = (0..TALLY_TOPICS)
            .map(|i| {
                wide.record(&format!("t/{i}"));
                wide.is_due(5_000)
            })
            .collect();
        assert_eq!(due.iter().filter(|&&d| d).count(), 1);
        assert!(due[TALLY_TOPICS - 1]);
    }

    #[test]
    fn rates_are_over_the_last_whole_window_busiest_first() {
        let rates = TopicRates::default();
        let start = 1_700_000_000_000;
        rates.absorb(&mut tally(&[("a", 10), ("b", 50), ("c", 50)]), start);
        // Before a window closes: the current one, over at least a second.
        let (top, seconds) = rates.top(10, start + 500);
        assert_eq!(seconds, 1.0);
        let names: Vec<_> = top.iter().map(|t| t.topic.as_str()).collect();
        assert_eq!(names, ["b", "c", "a"]);
        assert_eq!(top[2].messages_per_second, 10.0);
        // The window closes at 5 s: 50 messages over 5 s.
        rates.absorb(&mut tally(&[("a", 1000)]), start + 5_000);
        let (top, seconds) = rates.top(2, start + 6_000);
        assert_eq!(seconds, 5.0);
        assert_eq!(
            top,
            [
                TopicRate {
                    topic: "b".into(),
                    messages_per_second: 10.0
                },
                TopicRate {
                    topic: "c".into(),
                    messages_per_second: 10.0
                }
            ]
        );
        // The next window holds only what came after.
        let (top, _) = rates.top(10, start + 10_000);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].topic, "a");
        assert_eq!(top[0].messages_per_second, 200.0);
        // A quiet broker's rates fall to nothing.
        let (top, _) = rates.top(10, start + 15_000);
        assert!(top.is_empty());
    }

    #[test]
    fn counts_are_bounded_and_a_busy_newcomer_is_not_missed() {
        let rates = TopicRates::default();
        let mut many = TopicTally::default();
        for i in 0..TRACKED_TOPICS + 100 {
            many.record(&format!("quiet/{i}"));
        }
        rates.absorb(&mut many, 0);
        rates.absorb(&mut tally(&[("busy", 30)]), 0);
        assert_eq!(rates.windows().current.len(), TRACKED_TOPICS);
        let (top, _) = rates.top(1, 0);
        assert_eq!(top[0].topic, "busy");
        // Its count is at most one quiet topic's count too high.
        assert!((30.0..=31.0).contains(&top[0].messages_per_second));
    }
}
