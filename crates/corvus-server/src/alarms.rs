//! Every connection's timer in one place: the keep alive running out, the topic tally due.
//! One task wakes each connection when its deadline passes.
//!
//! A tokio `Sleep` per waiting connection costs 112 bytes in each connection's task (most
//! connections are waiting at any time), and a timer registration per wake-up. Here a
//! connection's deadline is an atomic in its [`Alarm`]: activity moves it later with one
//! store and no lock. The heap holds one live entry per alarm, at the time it was queued
//! for; when that time comes and the deadline has moved on, the entry goes back in at the
//! new deadline instead of ringing. A deadline moved earlier queues a new entry and leaves
//! the old one stale; stale entries are counted, and swept out when they outnumber the
//! live ones, so the heap stays within twice the connections.
//!
//! An alarm lives in whatever the connection already shares (its kick slot, `kick.rs`), so
//! it costs no allocation of its own, and rings through that holder (the kick slot wakes
//! the connection with the one waker it keeps). The heap holds a plain `Weak` to the
//! holder's type, 16 bytes an entry rather than the 24 of a `Weak<dyn _>`. Times are the broker's clock (`clock::now`,
//! milliseconds since the Unix epoch), the one the core keeps the keep alive by.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::clock::now;

/// No deadline, or no entry in the heap.
const NONE: u64 = u64::MAX;
/// The heap is not swept below this many entries: sweeping a small heap saves nothing.
const SWEEP_FLOOR: usize = 64;

/// What holds an alarm (shared, so the task can reach it while it lives), and is told when
/// it rings.
pub trait Alarmed: Send + Sync {
    fn alarm(&self) -> &Alarm;
    /// The alarm's deadline passed: wake whoever waits for it.
    fn ring(&self);
}

/// One connection's alarm: when it rings; the ringing is its holder's ([`Alarmed::ring`]).
#[derive(Debug)]
pub struct Alarm {
    /// When it should ring ([`NONE`]: never).
    deadline: AtomicU64,
    /// The time of its live heap entry ([`NONE`]: none). Written under the heap's lock.
    queued_for: AtomicU64,
}

impl Default for Alarm {
    fn default() -> Alarm {
        Alarm {
            deadline: AtomicU64::new(NONE),
            queued_for: AtomicU64::new(NONE),
        }
    }
}

/// An entry of the heap: an alarm's holder and the time it was queued for.
struct Entry<A> {
    at: u64,
    owner: Weak<A>,
}

impl<A: Alarmed> Entry<A> {
    /// The entry's holder, if it is still the live entry of a connection that still lives.
    fn live(&self) -> Option<Arc<A>> {
        let owner = self.owner.upgrade()?;
        (owner.alarm().queued_for.load(Ordering::SeqCst) == self.at).then_some(owner)
    }
}

impl<A> PartialEq for Entry<A> {
    fn eq(&self, other: &Entry<A>) -> bool {
        self.at == other.at
    }
}
impl<A> Eq for Entry<A> {}
impl<A> PartialOrd for Entry<A> {
    fn partial_cmp(&self, other: &Entry<A>) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<A> Ord for Entry<A> {
    fn cmp(&self, other: &Entry<A>) -> std::cmp::Ordering {
        self.at.cmp(&other.at)
    }
}

struct Heap<A> {
    entries: BinaryHeap<Reverse<Entry<A>>>,
    /// Entries known to be stale: replaced by an earlier one, or of a forgotten alarm.
    stale: usize,
}

impl<A> Default for Heap<A> {
    fn default() -> Heap<A> {
        Heap {
            entries: BinaryHeap::new(),
            stale: 0,
        }
    }
}

impl<A: Alarmed> Heap<A> {
    /// Marks the alarm's live entry, if any, stale (under the lock).
    fn retire(&mut self, alarm: &Alarm) {
        if alarm.queued_for.swap(NONE, Ordering::SeqCst) != NONE {
            self.stale += 1;
        }
    }

    /// Drops the stale entries once they are most of the heap.
    fn sweep_if_stale(&mut self) {
        if self.entries.len() >= SWEEP_FLOOR && self.stale * 2 > self.entries.len() {
            self.entries.retain(|Reverse(entry)| entry.live().is_some());
            self.entries.shrink_to(self.entries.len() * 2);
            self.stale = 0;
        }
    }
}

/// The alarms of every connection of a broker (held by `A`, the connections' kick slots),
/// and the task that rings them ([`run`]).
///
/// [`run`]: Alarms::run
pub struct Alarms<A> {
    heap: Mutex<Heap<A>>,
    /// An entry earlier than all the others went in: the task sleeps less.
    earlier: Notify,
}

impl<A> Default for Alarms<A> {
    fn default() -> Alarms<A> {
        Alarms {
            heap: Mutex::default(),
            earlier: Notify::new(),
        }
    }
}

impl<A> std::fmt::Debug for Alarms<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms").finish_non_exhaustive()
    }
}

impl<A: Alarmed> Alarms<A> {
    fn heap(&self) -> MutexGuard<'_, Heap<A>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets when `owner`'s alarm rings (`None`: not at all), replacing what was set before.
    pub fn set(&self, owner: &Arc<A>, at: Option<u64>) {
        let alarm = owner.alarm();
        let at = at.unwrap_or(NONE);
        alarm.deadline.store(at, Ordering::SeqCst);
        // A later deadline needs nothing more: the entry there now comes first and goes
        // back in at the new time. (If the task is taking that entry right now, it reads
        // the new deadline after marking the entry gone, or this reads the mark below.)
        if at >= alarm.queued_for.load(Ordering::SeqCst) {
            return;
        }
        let mut heap = self.heap();
        if at >= alarm.queued_for.load(Ordering::SeqCst) {
            return;
        }
        heap.retire(alarm);
        let first = heap.entries.peek().is_none_or(|Reverse(e)| at < e.at);
        alarm.queued_for.store(at, Ordering::SeqCst);
        let owner = Arc::downgrade(owner);
        heap.entries.push(Reverse(Entry { at, owner }));
        heap.sweep_if_stale();
        drop(heap);
        if first {
            self.earlier.notify_one();
        }
    }

    /// The alarm's connection is ending: it never rings again, and its entry is stale.
    pub fn forget(&self, owner: &Arc<A>) {
        let alarm = owner.alarm();
        alarm.deadline.store(NONE, Ordering::SeqCst);
        let mut heap = self.heap();
        heap.retire(alarm);
        heap.sweep_if_stale();
    }

    /// Rings the alarms due at `now` and requeues the ones whose deadline moved; the time
    /// of the next entry, if any.
    fn ring_due(&self, now: u64) -> Option<u64> {
        let mut due = Vec::new();
        let mut heap = self.heap();
        let next = loop {
            match heap.entries.peek() {
                None => break None,
                Some(Reverse(entry)) if entry.at > now => break Some(entry.at),
                Some(_) => {}
            }
            let Some(Reverse(entry)) = heap.entries.pop() else {
                break None;
            };
            let Some(owner) = entry.live() else {
                heap.stale = heap.stale.saturating_sub(1);
                continue;
            };
            let alarm = owner.alarm();
            alarm.queued_for.store(NONE, Ordering::SeqCst);
            match alarm.deadline.load(Ordering::SeqCst) {
                NONE => {}
                deadline if deadline <= now => due.push(owner),
                deadline => {
                    alarm.queued_for.store(deadline, Ordering::SeqCst);
                    heap.entries.push(Reverse(Entry {
                        at: deadline,
                        owner: entry.owner,
                    }));
                }
            }
        };
        drop(heap);
        // Rung outside the lock: waking a task is not the heap's business.
        for owner in due {
            owner.ring();
        }
        next
    }

    /// Rings alarms as they come due, until shutdown.
    pub async fn run(self: Arc<Alarms<A>>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let next = self.ring_due(now());
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                Duration::from_millis(at.saturating_sub(now()))
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.earlier.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::signal::Signal;
    use std::task::Context;

    /// An alarm's holder as a connection's kick slot is one: it wakes its waiter when the
    /// alarm rings.
    #[derive(Default)]
    struct Holder(Alarm, Signal);

    impl Alarmed for Holder {
        fn alarm(&self) -> &Alarm {
            &self.0
        }
        fn ring(&self) {
            self.1.raise();
        }
    }

    fn rang(holder: &Holder) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        holder.1.poll_raised(&mut cx).is_ready()
    }

    #[test]
    fn an_alarm_rings_once_at_its_deadline_and_not_before() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(100));
        assert_eq!(alarms.ring_due(99), Some(100));
        assert!(!rang(&alarm));
        assert_eq!(alarms.ring_due(100), None);
        assert!(rang(&alarm));
        assert!(!rang(&alarm), "rings once");
    }

    #[test]
    fn a_deadline_moved_later_takes_no_new_entry_and_rings_at_the_new_time() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(100));
        alarms.set(&alarm, Some(250));
        assert_eq!(alarms.len(), 1);
        // The entry at 100 comes up, finds the deadline moved and goes back in at 250.
        assert_eq!(alarms.ring_due(100), Some(250));
        assert!(!rang(&alarm));
        assert_eq!(alarms.ring_due(250), None);
        assert!(rang(&alarm));
    }

    #[test]
    fn a_deadline_moved_earlier_rings_early_and_the_stale_entry_is_dropped() {
        let alarms = Alarms::default();
        let alarm = Arc::new(Holder::default());
        alarms.set(&alarm, Some(500));
        alarms.set(&alarm, Some(50));
        assert_eq!(alarms.ring_due(50), Some(500));
        assert!(rang(&alarm));
        // The entry at 500 is stale: it rings nothing.
        assert_eq!(alarms.ring_due(500), None);
        assert!(!rang(&alarm));
        assert_eq!(alarms.len(), 0);
    }

    #[test]
    fn a_cleared_alarm_does_not_ring_and_a_dropped_one_is_forgotten() {
        let alarms = Alarms::default();
        let cleared = Arc::new(Holder::default());
        let dropped = Arc::new(Holder::default());
        alarms.set(&cleared, Some(10));
        alarms.set(&dropped, Some(10));
        alarms.set(&cleared, None);
        drop(dropped);
        assert_eq!(alarms.ring_due(10), None);
        assert!(!rang(&cleared));
        assert_eq!(alarms.len(), 0);
        // Set again after its entry went: a new entry.
        alarms.set(&cleared, Some(20));
        assert_eq!(alarms.ring_due(20), None);
        assert!(rang(&cleared));
    }

    #[test]
    fn a_deadline_that_keeps_moving_earlier_leaves_a_bounded_heap() {
        let alarms = Alarms::default();
        let holders: Vec<_> = (0..100).map(|_| Arc::new(Holder::default())).collect();
        for round in 0..1_000u64 {
            // Each round every connection moves its deadline earlier than the last: a new
            // entry each time, the old one stale.
            for holder in &holders {
                alarms.set(holder, Some(1_000_000 - round));
            }
            assert!(
                alarms.len() <= 2 * holders.len() + SWEEP_FLOOR,
                "{}",
                alarms.len()
            );
        }
        // Forgotten alarms leave stale entries that are swept as well.
        for holder in &holders {
            alarms.forget(holder);
        }
        assert!(alarms.len() <= SWEEP_FLOOR, "{}", alarms.len());
        assert_eq!(alarms.ring_due(u64::MAX - 1), None);
        assert!(holders.iter().all(|h| !rang(h)));
    }

    #[tokio::test]
    async fn the_task_wakes_a_waiting_connection() {
        let alarms = Arc::new(Alarms::default());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(alarms.clone().run(shutdown));
        let alarm = Arc::new(Holder::default());
        // Armed after the task went to sleep for an hour: it must wake for this one.
        tokio::task::yield_now().await;
        alarms.set(&alarm, Some(now() + 20));
        tokio::time::timeout(
            Duration::from_secs(5),
            std::future::poll_fn(|cx| alarm.1.poll_raised(cx)),
        )
        .await
        .expect("rang");
        let _ = stop.send(true);
        task.await.expect("task");
    }
}
